"""Install by role: a part used without its extra says, in one line, which extra to install.
The packages are hidden from a child interpreter (``sys.modules[name] = None`` makes their
import fail as if they were not installed); `make wheel-check` installs the real core alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HIDE = "import sys\nfor name in {hidden!r}: sys.modules[name] = None\n"


def child(hidden: list[str], code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HIDE.format(hidden=hidden) + code],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_loader_without_torch_names_its_extra(tmp_path: Path) -> None:
    done = child(["torch"], "import tierstore.loader", tmp_path)
    assert done.returncode == 1
    assert "tierstore.errors.MissingExtra: tierstore.loader needs PyTorch" in done.stderr
    assert "pip install 'tierstore[loader]'" in done.stderr


def test_the_core_imports_none_of_the_extras(tmp_path: Path) -> None:
    done = child(["torch", "psycopg", "matplotlib"],
                 "import tierstore, tierstore.cli, tierstore.daemon, tierstore.fs\n"
                 "from tierstore.cli import main\n"
                 "sys.exit(main(['--help']))", tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("hidden, argv, extra", [
    (["matplotlib"], ["bench", "report", "{json}", "--out", "{out}"], "bench"),
    (["psycopg"], ["--config", "{toml}", "ls"], "postgres"),
])
def test_a_command_without_its_extra_fails_in_one_line(tmp_path: Path, hidden: list[str],
                                                       argv: list[str], extra: str) -> None:
    (tmp_path / "r.json").write_text('{"benchmark": "migrate", "results": []}')
    (tmp_path / "s.toml").write_text(
        'catalog = "postgresql://nobody@127.0.0.1:1/none"\n'
        '[tiers.hot]\nclass = "hot"\nurl = "file:///tmp/tierstore-extras-test"\n')
    args = [a.format(json=tmp_path / "r.json", out=tmp_path / "out", toml=tmp_path / "s.toml")
            for a in argv]
    done = child(hidden, f"from tierstore.cli import main\nsys.exit(main({args!r}))", tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("tierstore: error: "), \
        done.stderr
    assert f"pip install 'tierstore[{extra}]'" in done.stderr


def test_version(tmp_path: Path) -> None:
    from tierstore import __version__

    done = child([], "from tierstore.cli import main\nsys.exit(main(['--version']))", tmp_path)
    assert done.returncode == 0 and done.stdout == f"tierstore {__version__}\n"
