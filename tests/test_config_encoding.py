"""A configuration file that is not UTF-8 (TOML's only encoding): a ConfigError naming the
file, from the library and, as one line, from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tierstore import ConfigError, load_config

LATIN_1 = 'home = "/tmp/caf\xe9"\n'.encode("latin-1")  # é as one byte, 0xe9


def test_a_config_not_in_utf8_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tierstore.toml"
    path.write_bytes(LATIN_1)
    with pytest.raises(ConfigError, match="not UTF-8") as raised:
        load_config(path)
    assert raised.value.source == str(path) and str(path) in str(raised.value)


def test_the_command_line_says_so_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tierstore.toml"
    path.write_bytes(LATIN_1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(path), "ls"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"tierstore: error: {path}: not UTF-8 text"), line
