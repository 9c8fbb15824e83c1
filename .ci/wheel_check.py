"""The two checks of ``make wheel-check`` (``.ci/wheel-check``) on a built wheel.

::

    python .ci/wheel_check.py contents dist/tierstore-*.whl   # in the source tree
    python -I - imports < .ci/wheel_check.py                  # in the wheel's venv, elsewhere

``contents``: the wheel holds exactly the source tree's modules, each folder of pyproject's
``package-dir`` under the package it maps to (so a subpackage left out of the build fails
here, not at a user's ``import tierstore``), and the package data pyproject names, and nothing
else: no tests, no benchmark results.

``imports``: every module the installed distribution lists (its RECORD) imports, and from the
installed copy. Run with ``-I`` from stdin, so neither the current folder nor PYTHONPATH can
lend a source tree's modules to the check.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import tomllib
import traceback
import zipfile
from pathlib import Path, PurePosixPath

DIST = "tierstore"


def source_files() -> set[str]:
    """The wheel paths the source tree's modules install to (``tierstore/loader/x.py`` ...),
    and the package data pyproject names (``[tool.setuptools.package-data]``)."""
    config = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    data = setuptools.get("package-data", {})
    mapped = setuptools["package-dir"]
    files = set()
    for package, folder in mapped.items():
        for path in Path(folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                files.add(str(PurePosixPath(*package.split("."), *path.relative_to(folder).parts)))
    for package, patterns in data.items():
        # a package's data lies in its folder: that of the longest mapped package it is in
        # (tierstore.cli.bench.common is bench/common/)
        root = max((name for name in mapped if package == name or package.startswith(name + ".")),
                   key=len)
        folder = Path(mapped[root], *package[len(root):].split(".")[1:])
        for pattern in patterns:
            for path in folder.glob(pattern):
                files.add(str(PurePosixPath(*package.split("."),
                                            *path.relative_to(folder).parts)))
    return files


def check_contents(wheel: str) -> list[str]:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {name for name in names if ".dist-info/" not in name}
    expected = source_files()
    problems = [f"missing from the wheel: {name}" for name in sorted(expected - shipped)]
    problems += [f"not a module of the source tree: {name}" for name in sorted(shipped - expected)]
    if not problems:
        print(f"wheel-check: {Path(wheel).name} holds the {len(expected)} modules of the tree")
    return problems


def module_name(path: PurePosixPath) -> str:
    parts = path.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def check_imports() -> list[str]:
    dist = importlib.metadata.distribution(DIST)
    site = Path(str(dist.locate_file(""))).resolve()
    modules = sorted(module_name(PurePosixPath(str(file))) for file in dist.files or ()
                     if file.suffix == ".py" and file.parts[0] == DIST)
    problems = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as error:  # a module's import may fail in any way: report them all
            where = traceback.extract_tb(error.__traceback__)[-1]
            problems.append(f"import {name} failed at {where.filename}:{where.lineno}: "
                            f"{type(error).__name__}: {error}")
            continue
        origin = Path(module.__file__ or "").resolve()
        if not origin.is_relative_to(site):
            problems.append(f"{name} was imported from {origin}, not from {site}")
    if not modules:
        problems.append(f"the installed {DIST} lists no module")
    if not problems:
        print(f"wheel-check: imported all {len(modules)} modules from {site}")
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["contents"] and len(argv) == 2:
        problems = check_contents(argv[1])
    elif argv == ["imports"]:
        problems = check_imports()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for problem in problems:
        print(f"wheel-check: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
