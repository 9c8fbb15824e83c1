"""The ``tierstore`` command line, run as real processes against local folders and real S3
servers (moto, Ceph radosgw), through a TOML config the way a user writes one.

Every call checks that no traceback (unless ``-v``) and no credential of the config reaches
stdout or stderr.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from storefixtures import make_config, toml_for

from tierstore import Config, load_config
from tierstore.config import redact

TIMEOUT = 180

# The commands' long flows run on local folders and on moto: the command line is the same over
# every S3 server, and what servers differ in is tested under it on Ceph too (test_store,
# test_tiers, test_crash); the credential check and the demo run on Ceph as well.
FLOW_KINDS = ["local", "moto"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}
    env["TIERSTORE_HOME"] = str(home)
    return env


def secrets_of(config: Config) -> list[str]:
    """The option values that ``redact`` hides: what must never be printed."""
    found: list[str] = []

    def walk(options: Any, shown: Any) -> None:
        for name, value in options.items():
            if isinstance(value, dict):
                walk(value, shown[name])
            elif shown[name] == "***":
                found.append(str(value))

    for tier in config.tiers.values():
        walk(tier.options, redact(tier.options))
    return found


@dataclass
class Cli:
    """``tierstore [--config PATH] ...`` in a subprocess, checked for leaks and tracebacks."""

    config: Path | None
    home: Path
    secrets: list[str] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        config = ["--config", str(self.config)] if self.config else []
        return [sys.executable, "-m", "tierstore.cli", *config, *args]

    def __call__(self, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.command(*args), capture_output=True, text=True,
                              env=_env(self.home), cwd=self.home, timeout=TIMEOUT)
        output = done.stdout + done.stderr
        assert done.returncode == status, f"exit {done.returncode} from {args}:\n{output}"
        assert "-v" in args or "Traceback" not in output, output
        for secret in self.secrets:
            assert secret not in output, f"a credential was printed by {args}"
        return done

    def json(self, *args: str, status: int = 0) -> Any:
        return json.loads(self(*args, "--json", status=status).stdout)

    def error(self, *args: str, status: int = 1) -> str:
        """The one line a failing command prints on stderr."""
        done = self(*args, status=status)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("tierstore: error: "), done.stderr
        return lines[0]


@pytest.fixture
def cli(store_config: Config, tmp_path: Path) -> Cli:
    """The CLI over ``store_config`` (local, moto, ceph), written as TOML."""
    path = tmp_path / "cli.toml"
    path.write_text(toml_for(store_config))
    return Cli(path, tmp_path, secrets_of(store_config))


@pytest.fixture
def local_cli(tmp_path: Path) -> Cli:
    """The CLI over local folders only, for what is not about kinds of tier."""
    path = tmp_path / "cli.toml"
    path.write_text(toml_for(make_config(tmp_path / "store", "local")))
    return Cli(path, tmp_path)


def make_tree(root: Path) -> dict[str, bytes]:
    """A small folder to put: relative path -> content."""
    files = {"a.bin": os.urandom(300_000), "sub/b.txt": b"hello\n",
             "sub/deeper/c.bin": os.urandom(2 * 2**20 + 7)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def hot_root(cli: Cli) -> Path:
    assert cli.config is not None
    return Path(urlparse(load_config(cli.config).tiers["hot"].url).path)


# -- put, ls, stat, du ------------------------------------------------------------------------


@pytest.mark.parametrize("store_config", FLOW_KINDS, indirect=True)
def test_put_folder_then_ls_stat_du(cli: Cli, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "data")
    done = cli("put", "-r", "data", "ds")
    assert done.stdout.startswith("put 3 objects") and "tier warm" in done.stdout

    assert cli("ls").stdout.split() == ["ds/"]
    assert [e["key"] for e in cli.json("ls", "ds")] == ["ds/a.bin", "ds/sub/"]
    listed = {e["key"]: e for e in cli.json("ls", "-r", "ds")}
    assert listed.keys() == {f"ds/{rel}" for rel in files}
    assert all(e["tiers"] == ["warm"] and e["pinned"] is None for e in listed.values())
    assert listed["ds/sub/deeper/c.bin"]["size"] == len(files["sub/deeper/c.bin"])
    long = cli("ls", "-l", "-r", "ds").stdout.splitlines()
    assert long[0].split() == ["SIZE", "TIERS", "PINNED", "READS", "KEY"]
    assert any(line.endswith("ds/sub/b.txt") and " warm " in line for line in long)

    info = cli.json("stat", "ds/sub/b.txt")
    assert (info["key"], info["size"], info["tiers"]) == ("ds/sub/b.txt", 6, ["warm"])
    assert [(r["tier"], r["tier_class"], r["state"]) for r in info["replicas"]] == [
        ("warm", "warm", "ready")]
    assert info["checksum"] and "replicas:" in cli("stat", "ds/sub/b.txt").stdout

    usage = {r["tier"]: r for r in cli.json("du")}
    assert usage["warm"]["objects"] == 3
    assert usage["warm"]["bytes"] == sum(map(len, files.values()))
    assert usage["hot"]["objects"] == 0 and usage["hot"]["fill"] is None
    assert "2.3 MiB" in cli("du").stdout


@pytest.mark.parametrize("store_config", ["moto"], indirect=True)
def test_bulk_put_to_s3_keeps_stderr_clean(cli: Cli, tmp_path: Path) -> None:
    make_tree(tmp_path / "data")
    assert cli("put", "-r", "data", "ds").stderr == ""


@pytest.mark.parametrize("store_config", FLOW_KINDS, indirect=True)
def test_put_single_file_to_key_and_into_prefix(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "one.bin").write_bytes(b"1" * 10)
    (tmp_path / "two.bin").write_bytes(b"2" * 20)
    cli("put", "one.bin", "exact/name", "--tier", "hot")
    cli("put", "one.bin", "two.bin", "many/")
    assert {e["key"]: e["tiers"] for e in cli.json("ls", "-r", "")} == {
        "exact/name": ["hot"], "many/one.bin": ["warm"], "many/two.bin": ["warm"]}
    assert "exists" in cli.error("put", "one.bin", "exact/name")
    cli("put", "two.bin", "exact/name", "--overwrite")
    assert cli.json("stat", "exact/name")["size"] == 20


# -- mv, pin, unpin, get, rm, fsck ------------------------------------------------------------


@pytest.mark.parametrize("store_config", FLOW_KINDS, indirect=True)
def test_mv_pin_get_rm(cli: Cli, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "data")
    cli("put", "-r", "data", "ds")
    assert "moved 3 objects" in cli("mv", "-r", "ds", "--tier", "cold").stdout
    assert {tuple(e["tiers"]) for e in cli.json("ls", "-r", "ds")} == {("cold",)}
    cli("mv", "ds/a.bin", "--tier", "hot")
    assert cli.json("stat", "ds/a.bin")["tiers"] == ["hot"]

    cli("pin", "ds/sub/b.txt", "--tier", "hot")
    pinned = cli.json("stat", "ds/sub/b.txt")
    assert pinned["pinned"] == "hot" and sorted(pinned["tiers"]) == ["cold", "hot"]
    assert "pinned" in cli.error("mv", "ds/sub/b.txt", "--tier", "warm")
    cli("unpin", "ds/sub/b.txt")
    assert cli.json("stat", "ds/sub/b.txt")["pinned"] is None

    cli("get", "ds/sub/deeper/c.bin", "c.copy")
    assert (tmp_path / "c.copy").read_bytes() == files["sub/deeper/c.bin"]
    cli("get", "-r", "ds", "back")
    assert {p.relative_to(tmp_path / "back").as_posix(): p.read_bytes()
            for p in (tmp_path / "back").rglob("*") if p.is_file()} == files
    assert cli.json("stat", "ds/sub/deeper/c.bin")["access"]["count"] == 2

    assert "ok" in cli("fsck", "--deep").stdout
    assert "removed 3 objects" in cli("rm", "-r", "ds").stdout
    assert cli.json("ls") == [] and cli.json("fsck")["ok"] is True


def test_fsck_lists_orphans_and_missing_replicas(local_cli: Cli, tmp_path: Path) -> None:
    make_tree(tmp_path / "data")
    local_cli("put", "-r", "data", "ds", "--tier", "hot")
    (hot_root(local_cli) / "ds" / "a.bin").unlink()
    (hot_root(local_cli) / "stray.bin").write_bytes(b"?")
    report = local_cli("fsck", status=1).stdout
    assert "orphan: hot: stray.bin" in report and "missing: ds/a.bin on hot" in report
    data = local_cli.json("fsck", "--deep", status=1)
    assert data["ok"] is False and data["orphans"] == [{"tier": "hot", "path": "stray.bin"}]
    assert [m["key"] for m in data["missing"]] == ["ds/a.bin"]


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("store_config", FLOW_KINDS, indirect=True)
def test_errors_are_one_line_without_traceback(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"x")
    assert "no such object" in cli.error("rm", "nope")  # the store is made here: the commands
    assert "no such object: 'nope'" in cli.error("stat", "nope")  # that only look make none
    assert "no such object" in cli.error("get", "nope")
    assert "no such object" in cli.error("mv", "-r", "nope/", "--tier", "hot")
    assert "unknown tier 'lukewarm' (configured: cold, hot, warm)" in cli.error(
        "put", "f.bin", "k", "--tier", "lukewarm")
    assert "unknown tier" in cli.error("mv", "k", "--tier", "lukewarm")
    assert "invalid key" in cli.error("put", "f.bin", "a/../b")
    assert "f.missing" in cli.error("put", "f.missing", "k")
    assert cli.json("ls") == []  # nothing was half-written by any of them
    assert "invalid choice" in cli.error("frobnicate", status=2)
    assert "required" in cli.error("put", "f.bin", status=2)
    assert "--tier" in cli.error("mv", "k", status=2)


def test_verbose_shows_the_traceback(local_cli: Cli) -> None:
    local_cli("recover")  # a store to look in
    done = local_cli("-v", "stat", "nope", status=1)
    assert "Traceback" in done.stderr and done.stderr.endswith(
        "tierstore: error: no such object: 'nope'\n")


@pytest.mark.parametrize(("text", "names"), [
    ('[tiers.hot]\nclass = "lukewarm"\nurl = "x"\n', "tiers.hot.class"),
    ('[tiers.hot]\nclass = "hot"\n', "tiers.hot.url"),
    ('default_tier = "warm"\n[tiers.hot]\nclass = "hot"\nurl = "x"\n', "default_tier"),
    ("[tiers.hot\n", "not valid TOML"),
])
def test_malformed_config_names_file_and_field(tmp_path: Path, text: str, names: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    line = Cli(bad, tmp_path).error("ls")
    assert str(bad) in line and names in line


def test_missing_config_file(tmp_path: Path) -> None:
    line = Cli(tmp_path / "absent.toml", tmp_path).error("du")
    assert "absent.toml" in line and "cannot read config" in line


def _put_interrupted(local_cli: Cli, tmp_path: Path, hung: str) -> tuple[int, str]:
    """``put f.bin k`` with ``hung`` (``module:attribute``, an async function of the store's
    path) replaced by one that says so and waits forever, then SIGINT: the exit status and
    stderr. So the signal surely lands at that step."""
    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    module, name = hung.split(":")
    # a shell's background job inherits SIGINT ignored, and Python keeps it so: as run from
    # a terminal, the CLI gets Python's own handler
    hang = (f"import asyncio, signal, sys, {module} as m\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "async def hung(*args, **kwargs):\n"
            "    print('hung', flush=True)\n"
            "    await asyncio.sleep(3600)\n"
            f"{'m.' + name} = hung\n"
            "from tierstore.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    command = [sys.executable, "-c", hang, *local_cli.command("put", "f.bin", "k")[3:]]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp_path), cwd=tmp_path)
    assert proc.stdout is not None and proc.stdout.readline() == "hung\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, err


def test_interrupt_exits_130_and_rolls_back(local_cli: Cli, tmp_path: Path) -> None:
    """SIGINT mid-write. Simulated: the tier's write of a batch of small files is replaced by
    one that waits forever, so that the signal surely lands while a replica is being
    written."""
    status, err = _put_interrupted(local_cli, tmp_path,
                                   "tierstore.tier.local:LocalTier.write_files")
    assert status == 130 and err == "tierstore: error: interrupted: nothing was " \
        "saved (what was being written was rolled back)\n", err
    assert local_cli.json("fsck")["ok"] and local_cli.json("ls") == []  # rolled back at once


def test_an_interrupt_after_the_commit_says_the_object_was_saved(local_cli: Cli,
                                                                 tmp_path: Path) -> None:
    """Reported: Ctrl-C during a large put said "interrupted" (exit 130) while the object had
    been saved. SIGINT now lands, surely, after the bytes were committed (the step after the
    commit waits forever): the line says what the catalog holds."""
    status, err = _put_interrupted(local_cli, tmp_path,
                                   "tierstore.store.replicas:place_after_put")
    assert status == 130 and \
        err == "tierstore: error: interrupted: 'k' was saved whole before it\n", err
    assert [o["key"] for o in local_cli.json("ls")] == ["k"] and local_cli.json("fsck")["ok"]


# -- progress ---------------------------------------------------------------------------------


def test_progress_only_on_a_terminal(local_cli: Cli, tmp_path: Path) -> None:
    make_tree(tmp_path / "data")
    assert local_cli("put", "-r", "data", "quiet").stderr == ""
    main, child = pty.openpty()
    proc = subprocess.Popen(local_cli.command("put", "-r", "data", "loud"), stdin=child,
                            stdout=child, stderr=child, env={**_env(tmp_path), "TERM": "xterm"},
                            cwd=tmp_path)
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.wait(timeout=TIMEOUT) == 0
    assert b"/3 files" in seen and b"put 3 objects" in seen


# -- init, recover, demo ----------------------------------------------------------------------


def test_init_writes_a_config_that_loads(tmp_path: Path) -> None:
    cli = Cli(None, tmp_path)
    assert "wrote" in cli("init", "--home", "store").stdout
    written = tmp_path / "store" / "tierstore.toml"
    config = load_config(written)
    assert list(config.tiers) == ["hot", "warm", "cold"] and config.default_tier == "warm"
    assert config.home == tmp_path / "store"
    assert "--force" in cli.error("init", "--home", "store")
    cli("init", "--home", "store", "--force")
    home_cli = Cli(None, tmp_path / "store")  # found through $TIERSTORE_HOME
    (tmp_path / "store" / "f.bin").write_bytes(b"abc")
    home_cli("put", "f.bin", "k")
    assert {r["tier"]: r["capacity"] for r in home_cli.json("du")}["hot"] == 50 * 2**30


def test_recover_reports_as_json(local_cli: Cli) -> None:
    assert local_cli.json("recover") == {"rolled_back": [], "finished": [], "skipped": 0}
    assert "rolled back 0 interrupted copies" in local_cli("recover").stdout


def test_demo_in_a_fresh_home(tmp_path: Path) -> None:
    cli = Cli(None, tmp_path / "fresh")
    cli.home.mkdir()
    for _ in range(2):  # a second run cleans up after the first
        out = cli("demo").stdout
    assert "mean(x)" in out and "matches the source" in out and "identical to" in out
    rows = {line.split()[-1]: line.split() for line in out.splitlines()
            if line.strip().endswith((".parquet", ".bin"))}
    assert rows["demo/parquet/part-0.parquet"][2] == "hot"
    assert rows["demo/shards/shard-001.bin"][2] == "warm"
    assert rows["demo/shards/shard-002.bin"][2:4] == ["hot,cold", "hot"]
    assert "removed 17 objects of an earlier demo" in out
    assert len(cli.json("ls", "-r", "demo")) == 17
    # the daemon's cycles: the shard read every cycle went up, the Parquet files came down
    assert "cycle 1: copied demo/shards/shard-003.bin cold -> hot" in out
    assert "moved demo/parquet/part-0.parquet hot -> warm" in out
    assert re.search(r"epoch 1: .*; loss [\d.]+", out) and "8 of 8 shards on hot" in out
    assert re.search(r"epoch 1: .* hot 100%", out)  # and the staged copies are the ones read
    stat = cli.json("stat", "demo/shards/shard-003.bin")
    assert "hot" in [r["tier"] for r in stat["replicas"] if r["state"] == "ready"]


def test_demo_on_configured_tiers(cli: Cli) -> None:
    out = cli("demo").stdout
    assert "matches the source" in out and "what lives where" in out


# -- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize("store_config", ["moto", pytest.param("ceph", marks=pytest.mark.ceph)],
                         indirect=True)
def test_no_credential_in_any_output(cli: Cli, store_config: Config, tmp_path: Path,
                                    dead_endpoint: str) -> None:
    assert cli.secrets  # the S3 tiers' key and secret
    make_tree(tmp_path / "data")
    cli("put", "-r", "data", "ds", "--tier", "cold")
    for args in (["ls", "-l", "-r"], ["stat", "ds/a.bin"], ["du"], ["fsck", "--deep"],
                 ["recover"], ["mv", "ds/a.bin", "--tier", "warm"], ["get", "ds/a.bin"]):
        cli(*args)
        if args[0] in ("ls", "stat", "du", "fsck", "recover"):
            cli(*args, "--json")
    cli("-v", "stat", "nope", status=1)
    dead = tmp_path / "dead.toml"  # same credentials, a server that is down
    dead.write_text(toml_for(store_config).replace(
        urlparse(store_config.tiers["cold"].options["client_kwargs"]["endpoint_url"]).netloc,
        urlparse(dead_endpoint).netloc))
    down = Cli(dead, tmp_path, cli.secrets)
    failed = down("put", "data/a.bin", "other", "--tier", "cold", status=1).stderr
    assert failed.splitlines()[-1].startswith("tierstore: error: tier 'cold': ")
    assert "Traceback" in down("-v", "fsck", status=1).stderr


def test_a_folder_without_r_is_refused(local_cli: Cli, tmp_path: Path) -> None:
    """As cp does: a folder needs -r; nothing is stored."""
    make_tree(tmp_path / "data")
    assert local_cli.error("put", "data", "ds") == "tierstore: error: data is a folder: use -r"
    assert local_cli.json("ls") == []


def test_a_command_that_only_looks_makes_no_store(tmp_path: Path) -> None:
    """ls, stat, du, get and fsck where there is no store: one line saying where they looked,
    and nothing created (no ./.tierstore, no catalog)."""
    env = {k: v for k, v in _env(tmp_path).items() if k not in ("TIERSTORE_HOME",
                                                                 "TIERSTORE_CONFIG")}
    for argv in (["ls"], ["stat", "k"], ["du"], ["get", "k"], ["fsck"]):
        done = subprocess.run([sys.executable, "-m", "tierstore.cli", *argv], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 1, (argv, done.stderr)
        assert done.stderr.startswith("tierstore: error: no store at ") and \
            done.stderr.count("\n") == 1, done.stderr
        assert list(tmp_path.iterdir()) == [], argv



def test_info_says_which_store_and_how_it_was_chosen(tmp_path: Path) -> None:
    """Where there is no config, the embedded default under ./.tierstore, not yet made (and
    info makes nothing); with --config, that file, and no credential of its catalog's URL."""
    env = {k: v for k, v in _env(tmp_path).items() if k not in ("TIERSTORE_HOME",
                                                                 "TIERSTORE_CONFIG")}

    def info(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tierstore.cli", "info", *argv], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)

    text = info().stdout
    assert "config:  <embedded default> (no tierstore.toml in ./.tierstore" in text
    assert f"home:    {tmp_path / '.tierstore'}" in text and "none yet" in text
    assert list(tmp_path.iterdir()) == []
    config = tmp_path / "store.toml"
    secret = "s3cr3t-pass"
    config.write_text(toml_for(make_config(tmp_path / "home", "local")).replace(
        f'catalog = "sqlite:///{tmp_path / "home"}/catalog.db"',
        f'catalog = "postgresql://trainer:{secret}@db.example:5432/tierstore"'))
    done = info("--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["config"] == str(config) and shown["chosen_by"] == "--config"
    assert shown["exists"] is None and [t["name"] for t in shown["tiers"]] == ["hot", "warm",
                                                                             "cold"]
    assert secret not in done.stdout and "db.example" in shown["catalog"]


def test_a_destination_get_cannot_write_is_the_one_named(local_cli: Cli, tmp_path: Path) -> None:
    """Not the hidden partial file the bytes are written to first; and stat says health in
    words."""
    (tmp_path / "f.txt").write_bytes(b"hello")
    local_cli("put", "f.txt", "k")
    # /proc takes no new files, even from root (CI's user), which ignores permissions
    assert local_cli.error("get", "k", "/proc/x") == \
        "tierstore: error: /proc/x: No such file or directory"
    assert "healthy" in local_cli("stat", "k").stdout


def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path: Path) -> None:
    """The command's entry point has control before its imports: a Ctrl-C among them (made
    to arrive there, by an import hook, as a person's would at any moment of the third of a
    second they take) is one line and exit 130, as later."""
    script = textwrap.dedent("""
        import sys
        class CtrlC:  # Ctrl-C arrives while tierstore.store is being imported
            def find_spec(self, name, path=None, target=None):
                if name == "tierstore.store":
                    raise KeyboardInterrupt
        sys.meta_path.insert(0, CtrlC())
        sys.argv = ["tierstore", "ls"]
        from tierstore.entry import main
        main()
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=TIMEOUT, env=_env(tmp_path))
    assert (done.returncode, done.stderr) == (130, "tierstore: error: interrupted\n")
