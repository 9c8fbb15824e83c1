"""The public API's docstrings follow numpydoc (as zarr and pandas write them).

numpydoc is not a dependency, so its sections are found with a few regular expressions: a
public callable that takes parameters has a ``Parameters`` section naming each of them, one
that returns something has a ``Returns`` (or ``Yields``) section, a dataclass names its
fields under ``Attributes``, and ``SyncStore``'s methods point to ``Store``'s (``See Also``).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

import pytest

# The modules users import, and the names each exports (its ``__all__``); ``tierstore.tier``
# contributes its base class only.
MODULES = ["tierstore", "tierstore.loader", "tierstore.policies", "tierstore.energy",
           "tierstore.carbon"]
EXTRA = [("tierstore.tier", "Tier")]
OURS = ("tierstore",)  # members inherited from elsewhere (torch, enum) are not ours to document

SECTION = re.compile(r"^ *(\w[\w ]*)\n *-{3,}$", re.MULTILINE)


def sections(doc: str) -> dict[str, str]:
    """A numpydoc docstring's sections by title (``""`` for the text before the first)."""
    doc = inspect.cleandoc(doc)
    found = list(SECTION.finditer(doc))
    out = {"": doc[:found[0].start()] if found else doc}
    for n, match in enumerate(found):
        end = found[n + 1].start() if n + 1 < len(found) else len(doc)
        out[match.group(1).strip()] = doc[match.end():end]
    return out


def named(section: str) -> set[str]:
    """The names a Parameters/Attributes section describes (``a, b : int`` names both)."""
    names = set()
    for line in section.splitlines():
        if line and not line[0].isspace():
            for name in line.split(" : ")[0].split(","):
                names.add(name.strip().lstrip("*"))
    return names


def public_objects() -> Iterator[tuple[str, Any]]:
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            yield f"{module_name}.{name}", getattr(module, name)
    for module_name, name in EXTRA:
        yield f"{module_name}.{name}", getattr(importlib.import_module(module_name), name)


def members(cls: type) -> Iterator[tuple[str, Any]]:
    """A class's public methods defined in tierstore (the nearest definition of each)."""
    seen = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith(OURS):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(value, (classmethod, staticmethod)):
                value = value.__func__
            if inspect.isfunction(value):
                yield name, value


def callables() -> Iterator[tuple[str, Any, str | None]]:
    """(qualified name, function or class, the name of the class it belongs to)."""
    for qualname, obj in public_objects():
        if inspect.isclass(obj):
            yield qualname, obj, None
            if not issubclass(obj, enum.Enum):
                for name, fn in members(obj):
                    yield f"{qualname}.{name}", fn, qualname
        elif inspect.isfunction(obj):
            yield qualname, obj, None


def parameters(fn: Any) -> list[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [p.name for p in signature.parameters.values() if p.name not in ("self", "cls")]


def returns_something(fn: Any) -> bool:
    annotation = inspect.signature(fn).return_annotation
    return annotation not in (inspect.Signature.empty, None, "None") and \
        not str(annotation).startswith("NoReturn")


def problems(qualname: str, obj: Any, owner: str | None) -> list[str]:
    doc = obj.__doc__ if inspect.isclass(obj) else inspect.getdoc(obj)
    if inspect.isclass(obj) and obj.__doc__ is None:
        return ["no docstring"]
    if not doc:
        return ["no docstring"]
    found = sections(doc)
    summary = found[""].strip().split("\n\n")[0]
    out = []
    if "\n" in summary:
        out.append("the summary is more than one line")
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            fields = {f.name for f in dataclasses.fields(obj)}
            missing = fields - named(found.get("Attributes", ""))
            if missing:
                out.append(f"Attributes lacks {sorted(missing)}")
        elif "__init__" in vars(obj) and not issubclass(obj, enum.Enum):
            wanted = parameters(obj.__init__)
            missing = set(wanted) - named(found.get("Parameters", ""))
            if missing:
                out.append(f"Parameters lacks {sorted(missing)}")
        return out
    wanted = parameters(obj)
    if wanted:
        missing = set(wanted) - named(found.get("Parameters", ""))
        if missing:
            out.append(f"Parameters lacks {sorted(missing)}")
    if returns_something(obj) and not {"Returns", "Yields"} & set(found):
        out.append("no Returns section")
    if owner == "tierstore.SyncStore" and "See Also" not in found:
        out.append("no See Also (the Store method it blocks on)")
    return out


# Not converted yet: the work left, by module. Each is an expected failure that must fail
# (strict), so a converted one is taken off this list.
PENDING: frozenset[str] = frozenset()


ALL = sorted({q: (q, o, c) for q, o, c in callables()}.values(), key=lambda t: t[0])


@pytest.mark.parametrize(("qualname", "obj", "owner"), [
    pytest.param(*t, marks=pytest.mark.xfail(strict=True, reason="not numpydoc yet"))
    if t[0] in PENDING else t for t in ALL], ids=[t[0] for t in ALL])
def test_numpydoc(qualname: str, obj: Any, owner: str | None) -> None:
    assert not problems(qualname, obj, owner), f"{qualname}: {problems(qualname, obj, owner)}"


def test_pending_are_public() -> None:
    assert PENDING.issubset(t[0] for t in ALL), "PENDING names what the public API no longer has"


def test_sections_parse() -> None:
    doc = """Summary.

    Parameters
    ----------
    key, tier : str
        Which.
    *args : Any
        More.

    Returns
    -------
    int
    """
    found = sections(doc)
    assert named(found["Parameters"]) == {"key", "tier", "args"}
    assert "Returns" in found
