"""deploy/: the compose file, the Kubernetes manifests, the systemd unit and their configs.

Nothing here starts a container, a cluster or a service (these machines have none). What is
checked: every file parses; what a file names (images, volumes, services, Secrets, ConfigMaps,
files) exists; every ``tierstore ...`` command line anywhere in deploy/ parses with tierstore's
own argument parser, so renaming a command or a flag breaks this test; grace periods exceed the
daemon's shutdown timeout; the metrics port is the same everywhere; every TOML config loads.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from storefixtures import make_config, toml_for

from tierstore import open_store
from tierstore.cli import build_parser
from tierstore.config import Config, load_config
from tierstore.policies import PolicyConfig

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
UNIT = DEPLOY / "systemd" / "tierstore-daemon.service"
EXAMPLES_IN_IMAGE = "/opt/tierstore/examples"  # where deploy/Dockerfile copies examples/
POD_KINDS = {"DaemonSet", "Deployment", "StatefulSet", "Job", "ReplicaSet"}


# -- reading the files ------------------------------------------------------------------------


def yaml_docs(path: Path) -> list[Any]:
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def compose() -> dict[str, Any]:
    [doc] = yaml_docs(COMPOSE)
    return dict(doc)


def k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml_docs(path)]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in k8s_objects() if obj["kind"] == kind]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in k8s_objects():
        if obj["kind"] in POD_KINDS:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values]}} (keys may repeat; no continuations)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}: keep each setting on one line: {line}"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None and sep, f"{path.name}: not a setting: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def configmap_toml() -> str:
    [cm] = [obj for obj in k8s_kind("ConfigMap") if obj["metadata"]["name"] == "tierstore-config"]
    text: str = cm["data"]["tierstore.toml"]
    return text


# -- command lines ----------------------------------------------------------------------------


def shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell snippet: continuations joined, split at ``&&``, ``||``,
    ``;`` and ``|``; comments, redirections, ``sudo`` with its options and ``VAR=value``
    dropped."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True  # split at blanks and at ; & | ( ) < > only
        words: list[str] = list(lexer)
        parts: list[list[str]] = [[]]
        for word in words:
            if word in ("&&", "||", ";", "|", "&"):
                parts.append([])
            else:
                parts[-1].append(word)
        for tokens in parts:
            redirect = [i for i, word in enumerate(tokens) if re.fullmatch(r"[<>&]+", word)]
            tokens = tokens[:redirect[0]] if redirect else tokens  # the command, not a file
            while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[0]):
                tokens = tokens[1:]
            if tokens[:1] == ["sudo"]:
                tokens = tokens[1:]
                while tokens and tokens[0].startswith("-"):
                    tokens = tokens[2:] if tokens[0] in ("-u", "-g") else tokens[1:]
            if tokens:
                yield tokens


def inner_argv(argv: list[str]) -> Iterator[list[str]]:
    """The programs ``argv`` runs: itself, what follows ``--`` (``kubectl exec``), what
    ``docker compose exec|run SERVICE`` runs, and the commands of a ``sh -c`` script."""
    if "--" in argv:
        yield argv[argv.index("--") + 1:]
    elif argv[:2] == ["docker", "compose"]:
        verbs = [i for i, token in enumerate(argv) if token in ("exec", "run")]
        if verbs:
            rest = argv[verbs[0] + 1:]
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            yield rest[1:]  # after the service's name
    elif argv and Path(argv[0]).name in ("sh", "bash") and len(argv) >= 3 \
            and re.fullmatch(r"-[a-z]*c", argv[1]):
        yield from shell_commands(argv[2])
    else:
        yield argv


def compose_argvs() -> Iterator[tuple[str, list[str]]]:
    for name, service in compose()["services"].items():
        argv: list[str] = []
        for field in ("entrypoint", "command"):
            value = service.get(field)
            argv += shlex.split(value) if isinstance(value, str) else list(value or [])
        if argv:
            yield f"compose {name}", argv


def k8s_argvs() -> Iterator[tuple[str, list[str]]]:
    for name, spec in pod_specs():
        for container in containers(spec):
            argv = [*container.get("command", []), *container.get("args", [])]
            if argv:
                yield f"k8s {name}/{container['name']}", argv


def systemd_argvs() -> Iterator[tuple[str, list[str]]]:
    for value in unit_file(UNIT)["Service"]["ExecStart"]:
        yield "systemd ExecStart", shlex.split(value.lstrip("-@:+!"))


def dockerfile_argvs() -> Iterator[tuple[str, list[str]]]:
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        match = re.match(r"(CMD|ENTRYPOINT)\s+(\[.*\])\s*$", line)
        if match:
            yield f"Dockerfile {match.group(1)}", json.loads(match.group(2))


def readme_argvs() -> Iterator[tuple[str, list[str]]]:
    """The commands in the shell blocks of deploy/README.md and the project's README.md."""
    for where, readme, fence in (("README", DEPLOY / "README.md", r"^```[a-z]*\n"),
                                 ("README top", DEPLOY.parent / "README.md", r"^```sh\n")):
        text = readme.read_text()
        for block in re.findall(fence + r"(.*?)^```", text, re.M | re.S):
            for argv in shell_commands(block):
                yield where, argv


def all_argvs() -> list[tuple[str, list[str]]]:
    out = []
    for source in (compose_argvs, k8s_argvs, systemd_argvs, dockerfile_argvs, readme_argvs):
        for where, argv in source():
            out += [(where, inner) for inner in inner_argv(argv) if inner]
    return out


def tierstore_commands() -> list[tuple[str, list[str]]]:
    return [(where, argv) for where, argv in all_argvs() if Path(argv[0]).name == "tierstore"]


def example_commands() -> list[tuple[str, list[str]]]:
    return [(where, argv) for where, argv in all_argvs()
            if Path(argv[0]).name.startswith("python") and len(argv) > 1
            and argv[1].endswith(".py")]


def parse(argv: list[str]) -> argparse.Namespace:
    """``tierstore ARGV`` through tierstore's own parser; fails the test if it does not parse."""
    assert "-h" not in argv and "--help" not in argv
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # the message is on stderr, which pytest shows
        pytest.fail(f"does not parse (exit {exc.code}): {shlex.join(argv)}")


def seconds(text: str) -> float:
    """``45s``, ``1min``, ``60`` (systemd and compose durations) as seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h)?", text.strip())
    assert match, text
    scale = {None: 1, "ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    return float(match.group(1)) * scale[match.group(2)]


def daemon_args(where: str) -> argparse.Namespace:
    [(_, argv)] = [(w, a) for w, a in tierstore_commands()
                   if w.startswith(where) and a[1:2] == ["daemon"]]
    return parse(argv)


def train_module() -> ModuleType:
    return _load_example("train")


def _load_example(name: str) -> ModuleType:
    """deploy/examples/NAME.py, imported."""
    spec = importlib.util.spec_from_file_location(f"deploy_{name}",
                                                  DEPLOY / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- every file parses --------------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    assert COMPOSE in files and K8S / "kustomization.yaml" in files
    for path in files:
        assert yaml_docs(path), path


def test_k8s_objects_are_complete() -> None:
    objects = k8s_objects()
    assert {"Namespace", "ConfigMap", "Secret", "Service", "StatefulSet", "DaemonSet",
            "Job"} <= {obj["kind"] for obj in objects}
    names = set()
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind"), obj
        assert isinstance(obj.get("metadata"), dict) and obj["metadata"].get("name"), obj
        assert (obj["kind"], obj["metadata"]["name"]) not in names, "defined twice"
        names.add((obj["kind"], obj["metadata"]["name"]))
        if obj["kind"] in POD_KINDS and obj["kind"] != "Job":  # a Job's selector is made
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_kustomization_lists_every_manifest() -> None:
    [kustomization] = yaml_docs(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = [entry.split("#")[0].strip() for entry in kustomization["resources"]]
    manifests = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == manifests
    [namespace] = k8s_kind("Namespace")
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    images = {c["image"].split(":")[0] for _, spec in pod_specs() for c in containers(spec)}
    assert {i["name"] for i in kustomization.get("images", [])} <= images


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders() -> None:
    """``kubectl kustomize`` needs no cluster: it checks the kustomization and applies it."""
    done = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert len(rendered) == len(k8s_objects())
    for obj in rendered:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "tierstore", obj["metadata"]


# -- what the files name exists -----------------------------------------------------------------


def test_compose_services_name_what_exists() -> None:
    doc = compose()
    services, volumes = doc["services"], set(doc.get("volumes") or {})
    used: set[str] = set()
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: no image or build"
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for mount in service.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount["source"]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: bind mount {source} missing"
            else:
                assert source in volumes, f"{name}: volume {source} is not declared"
                used.add(source)
        for target, how in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = how["condition"]
            assert condition in ("service_started", "service_healthy",
                                 "service_completed_successfully"), condition
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is not one-shot"
    assert used == volumes, f"declared but unused: {volumes - used}"
    assert {"postgres", "minio-init", "tierstore", "train"} <= set(services)
    assert sum(name.startswith("minio") and name[5:].isdigit() for name in services) == 4


def test_compose_variables_are_in_env_example() -> None:
    """Every ``${VAR}`` compose substitutes is in env.example (copied to deploy/.env)."""
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    example = (DEPLOY / "env.example").read_text()
    defined = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", example, re.M))
    assert used and used <= defined, used - defined
    assert "POSTGRES_PASSWORD" in used


def test_k8s_pods_name_what_exists() -> None:
    secrets = {obj["metadata"]["name"]: set(obj.get("stringData") or obj.get("data") or {})
               for obj in k8s_kind("Secret")}
    configmaps = {obj["metadata"]["name"] for obj in k8s_kind("ConfigMap")}
    services = {obj["metadata"]["name"] for obj in k8s_kind("Service")}
    for name, spec in pod_specs():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, name
        for container in containers(spec):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], set()), (name, ref)
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in {
                    t["metadata"]["name"] for obj in k8s_kind("StatefulSet")
                    for t in obj["spec"].get("volumeClaimTemplates", [])}, (name, mount)
    for obj in k8s_kind("StatefulSet"):
        assert obj["spec"]["serviceName"] in services
    for secret in k8s_kind("Secret"):  # placeholders only, never a real credential
        assert set((secret.get("stringData") or {}).values()) == {"CHANGE-ME"}


def test_example_job_script_is_in_the_image() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"COPY deploy/examples {EXAMPLES_IN_IMAGE}" in dockerfile
    assert "!deploy/examples/**" in (DEPLOY / "Dockerfile.dockerignore").read_text()
    found = example_commands()
    assert {where.split()[0] for where, _ in found} >= {"compose", "k8s"}
    for where, argv in found:
        assert argv[1].startswith(EXAMPLES_IN_IMAGE + "/"), where
        assert (DEPLOY / "examples" / argv[1][len(EXAMPLES_IN_IMAGE) + 1:]).is_file(), where


# -- every tierstore command line parses ----------------------------------------------------------


def test_commands_are_found_everywhere() -> None:
    """The extraction below finds the commands it should, so the parsing test is not vacuous."""
    found = tierstore_commands()
    wheres = {where.split()[0] for where, _ in found}
    assert wheres == {"compose", "k8s", "systemd", "Dockerfile", "README"}, wheres
    daemons = [where for where, argv in found if argv[1:2] == ["daemon"]]
    assert {"compose tierstore", "k8s tierstore-daemon/daemon", "systemd ExecStart",
            "Dockerfile CMD"} <= set(daemons)
    assert sum(where == "README" for where, _ in found) >= 6
    top = {argv[1] for where, argv in found if where == "README top" and len(argv) > 1}
    assert {"bench", "catalog", "daemon"} <= top, top


@pytest.mark.parametrize(("where", "argv"), tierstore_commands(),
                         ids=[f"{w}: {shlex.join(a)}" for w, a in tierstore_commands()])
def test_tierstore_command_parses(where: str, argv: list[str]) -> None:
    args = parse(argv)
    assert callable(args.run)


@pytest.mark.parametrize(("where", "argv"), example_commands(),
                         ids=[f"{w}: {shlex.join(a)}" for w, a in example_commands()])
def test_example_command_parses(where: str, argv: list[str]) -> None:
    module = train_module()
    try:
        args = module.parse_args(argv[2:])
    except SystemExit as exc:
        pytest.fail(f"{where}: does not parse (exit {exc.code}): {shlex.join(argv)}")
    assert args.steps > 0


# -- how the daemon is run ----------------------------------------------------------------------


def test_grace_periods_exceed_the_shutdown_timeout() -> None:
    services = compose()["services"]
    assert seconds(services["tierstore"]["stop_grace_period"]) > \
        daemon_args("compose").shutdown_timeout
    [daemonset] = k8s_kind("DaemonSet")
    grace = daemonset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > daemon_args("k8s").shutdown_timeout
    service = unit_file(UNIT)["Service"]
    assert seconds(service["TimeoutStopSec"][0]) > daemon_args("systemd").shutdown_timeout
    assert service["KillSignal"] == ["SIGTERM"] and service["Restart"] == ["on-failure"]
    assert service["ProtectSystem"] == ["strict"]


def test_metrics_are_served_where_they_are_scraped() -> None:
    args = daemon_args("k8s")
    assert args.metrics_host == "0.0.0.0" and not args.no_metrics
    [daemonset] = k8s_kind("DaemonSet")
    template = daemonset["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == args.metrics_port
    [daemon] = [c for c in template["spec"]["containers"] if c["name"] == "daemon"]
    ports = {p["name"]: p["containerPort"] for p in daemon["ports"]}
    probe = daemon["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and ports[probe["port"]] == args.metrics_port

    args = daemon_args("compose")
    assert args.metrics_host == "0.0.0.0"
    service = compose()["services"]["tierstore"]
    assert f"127.0.0.1:{args.metrics_port}/healthz" in " ".join(service["healthcheck"]["test"])
    assert any(str(p).endswith(f":{args.metrics_port}") for p in service["ports"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on the unit, its program swapped for this venv's tierstore
    (verify insists that the program exists)."""
    program = Path(sys.executable).parent / "tierstore"
    [(_, argv)] = list(systemd_argvs())
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(argv[0], str(program)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- the configs --------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("TIERSTORE_", "PG", "AWS_")):
            monkeypatch.delenv(name)
    return monkeypatch


def load(path: Path) -> Config:
    config = load_config(path)
    PolicyConfig.from_config(config)  # a bad [policies] table raises
    assert urlsplit(config.catalog).password is None, "a password in the catalog URL"
    for tier in config.tiers.values():
        assert not {"key", "secret", "password", "token"} & set(tier.options), tier.name
    return config


def test_compose_config_loads(clean_env: pytest.MonkeyPatch) -> None:
    config = load(DEPLOY / "tierstore.toml")
    assert config.catalog.startswith("postgresql://") and "@postgres:" in config.catalog
    assert config.tiers["hot"].url == "file:///data/hot" and str(config.home) == "/data"
    service = compose()["services"]["tierstore"]
    assert "./tierstore.toml:" + service["environment"]["TIERSTORE_CONFIG"] + ":ro" in \
        service["volumes"]
    assert any(str(m).endswith(":/data") for m in service["volumes"])
    assert {"PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= \
        set(service["environment"])


def render_argv(spec: dict[str, Any]) -> list[str]:
    """The ``render-config`` init container's command, its paths as mounted."""
    [init] = [c for c in spec.get("initContainers", []) if c["name"] == "render-config"]
    env = {e["name"]: e for e in init["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["config-template"]["configMap"]["name"] == "tierstore-config"
    assert "emptyDir" in volumes["config"] and mounts["config"] == "/etc/tierstore"
    argv: list[str] = [*init["command"], *init.get("args", [])]
    assert argv[:2] == ["sh", "-c"] and mounts["config-template"] in argv[2], argv
    return argv


def render(spec: dict[str, Any], node: str, tmp_path: Path) -> Path:
    """Run the pod's ``render-config`` script with ``sh``, its mounts moved under tmp_path,
    for a pod on ``node``; return the config it wrote where TIERSTORE_CONFIG points."""
    argv = render_argv(spec)
    [init] = [c for c in spec["initContainers"] if c["name"] == "render-config"]
    script = argv[2]
    root = tmp_path / node
    paths = sorted((m["mountPath"] for m in init["volumeMounts"]), key=len, reverse=True)
    for path in paths:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    # in one pass, longest first: /etc/tierstore-template is not /etc/tierstore + "-template"
    pattern = r"(?<![\w/.-])(" + "|".join(map(re.escape, paths)) + r")(?=/)"
    script = re.sub(pattern, lambda m: str(root) + m.group(1), script)
    (root / "etc/tierstore-template/tierstore.toml").write_text(configmap_toml())
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODE_NAME": node}
    done = subprocess.run([argv[0], argv[1], script], capture_output=True, text=True, env=env,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return root / "etc/tierstore/tierstore.toml"


def test_k8s_config_template_loads(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ConfigMap's template, NODE_NAME still in it, is valid TOML and a valid config."""
    toml = tmp_path / "tierstore.toml"
    toml.write_text(configmap_toml())
    config = load(toml)
    assert config.tiers["hot-NODE_NAME"].site == "NODE_NAME"


@pytest.mark.skipif(shutil.which("sh") is None or shutil.which("sed") is None, reason="no sh")
def test_k8s_config_is_rendered_per_node(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each pod's init container writes its node's config: on two nodes, two configs whose hot
    tiers have different names, each in its node's site, sharing the warm and cold tiers."""
    specs = dict(pod_specs())
    assert render_argv(specs["tierstore-daemon"]) == render_argv(specs["tierstore-train-example"])
    for name in ("tierstore-daemon", "tierstore-train-example"):
        configs = {}
        for node in ("gpu-node-7", "ip-10-0-1-2.ec2.internal"):
            clean_env.setenv("TIERSTORE_SITE", node)  # what the downward API sets
            rendered = render(specs[name], node, tmp_path / name)
            assert "NODE_NAME" not in rendered.read_text()
            configs[node] = config = load(rendered)
            [hot] = [t for t in config.tiers.values() if t.tier_class.name == "HOT"]
            assert hot.name == "hot-" + node.replace(".", "_") and hot.site == node == config.site
            assert hot.url == "file:///data/hot"
        a, b = configs.values()
        assert set(a.tiers) - {"warm", "cold"} != set(b.tiers) - {"warm", "cold"}
        assert len(a.tiers) == len(b.tiers) == 3
        for shared in ("warm", "cold"):
            assert a.tiers[shared] == b.tiers[shared]
            assert a.tiers[shared].site == "cluster"
        assert a.catalog == b.catalog and a.default_tier == b.default_tier == "warm"


def test_k8s_config_loads(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    [(_, spec)] = [(n, s) for n, s in pod_specs() if n == "tierstore-daemon"]
    clean_env.setenv("TIERSTORE_SITE", "gpu-node-7")  # what the downward API sets
    config = load(render(spec, "gpu-node-7", tmp_path))
    assert config.site == "gpu-node-7" and config.tiers["hot-gpu-node-7"].site == "gpu-node-7"
    assert config.tiers["warm"].site == config.tiers["cold"].site == "cluster"
    [service] = [s for s in k8s_kind("Service") if s["metadata"]["name"] == "tierstore-postgres"]
    [namespace] = k8s_kind("Namespace")
    host = urlsplit(config.catalog).hostname or ""
    assert host.startswith(f"{service['metadata']['name']}.{namespace['metadata']['name']}.")
    assert urlsplit(config.catalog).port == service["spec"]["ports"][0]["port"]
    for name, spec in pod_specs():
        if name == "tierstore-postgres":
            continue
        [main] = spec["containers"]
        env = {e["name"]: e for e in main["env"]}
        assert env["TIERSTORE_CONFIG"]["value"] == "/etc/tierstore/tierstore.toml", name
        assert "> " + env["TIERSTORE_CONFIG"]["value"] in render_argv(spec)[2], name
        assert env["TIERSTORE_SITE"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        assert {"PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env), name
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        assert mounts["/etc/tierstore"] == "config" and str(config.home) in mounts, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "hostPath" in volumes[mounts[str(config.home)]], f"{name}: hot tier not on the node"


def test_systemd_config_loads(clean_env: pytest.MonkeyPatch) -> None:
    config = load(DEPLOY / "systemd" / "tierstore.toml")
    args = daemon_args("systemd")
    assert Path(args.config).name == "tierstore.toml"
    service = unit_file(UNIT)["Service"]
    writable = [Path(p.lstrip("-")) for v in service["ReadWritePaths"] for p in v.split()]
    writable += [Path("/var/lib") / d for v in service["StateDirectory"] for d in v.split()]
    needed = [Path(config.catalog.removeprefix("sqlite:///")).parent, config.home]
    needed += [Path(urlsplit(t.url).path) for t in config.tiers.values()
               if t.url.startswith("file://")]
    for path in needed:
        assert any(path == w or w in path.parents for w in writable), f"{path} is read-only"


# -- the example training job -------------------------------------------------------------------


def test_example_training_job_runs(tmp_path: Path) -> None:
    """deploy/examples/train.py on the embedded default store: ingests, then trains."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}
    env["TIERSTORE_HOME"] = str(tmp_path / "store")
    command = [sys.executable, str(DEPLOY / "examples" / "train.py"), "--samples", "512",
               "--steps", "12", "--batch-size", "32", "--workers", "1"]
    first = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ingested 512 samples in 2 shards" in first.stdout
    assert re.search(r"step 10 loss \d", first.stdout) and "done: 12 steps" in first.stdout
    again = subprocess.run([*command[:-2], "--workers", "0"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already ingested" in again.stdout and "done: 12 steps" in again.stdout


# -- the Grafana dashboard ----------------------------------------------------------------------


def test_the_dashboard_queries_only_series_tierstore_serves(tmp_path: Path) -> None:
    """Every ``tierstore_*`` series the dashboard's queries name is one a daemon or a loader
    serves (scraped here from a real daemon registry and a real loader's collector)."""
    import prometheus_client
    from prometheus_client.parser import text_string_to_metric_families

    from tierstore import open_store
    from tierstore.loader import TierDataset, TierLoader, write_tar_shards
    from tierstore.loader.metrics import register_prometheus
    from tierstore.telemetry import DaemonMetrics

    dashboard = json.loads((DEPLOY / "grafana" / "tierstore.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries.append(dashboard["templating"]["list"][1]["query"])
    named = {m for q in queries for m in re.findall(r"\btierstore_[a-z0-9_]+", q)}
    assert len(named) >= 15

    daemon = DaemonMetrics()
    daemon.moves.labels("recency", "done").inc()  # labelled series appear once used
    daemon.moved_bytes.labels("warm", "hot").inc(1)
    daemon.cycles.labels("ok").inc()
    daemon.tier_bytes.labels("hot", "hot").set(1)
    daemon.tier_capacity.labels("hot", "hot").set(2)
    served = prometheus_client.generate_latest(daemon.registry).decode()
    with open_store(make_config(tmp_path, "local")) as store:
        write_tar_shards(store, "ds", [{"__key__": f"s{i}", "bin": b"x" * 100}
                                       for i in range(8)])
        loader = TierLoader(TierDataset(store, "ds"), batch_size=4)
        assert sum(len(b["bin"]) for b in loader) == 8
        served += prometheus_client.generate_latest(register_prometheus(loader)).decode()
    series = {s.name for family in text_string_to_metric_families(served)
              for s in family.samples}
    assert named <= series, sorted(named - series)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_daemons_metrics_reach_only_who_is_let(tmp_path: Path) -> None:
    """The headless Service, the NetworkPolicy and the PodDisruptionBudget select the
    DaemonSet's pods, on its metrics port; the ServiceMonitor selects that Service's port."""
    [daemonset] = k8s_kind("DaemonSet")
    pods = daemonset["spec"]["template"]["metadata"]["labels"]
    [daemon] = [c for c in daemonset["spec"]["template"]["spec"]["containers"]
                if c["name"] == "daemon"]
    port = {p["name"]: p["containerPort"] for p in daemon["ports"]}["metrics"]
    [service] = [s for s in k8s_kind("Service") if s["metadata"]["name"].endswith("-metrics")]
    assert service["spec"]["selector"].items() <= pods.items()
    assert service["spec"]["clusterIP"] == "None"
    [serves] = service["spec"]["ports"]
    assert serves["targetPort"] == "metrics" and serves["port"] == port
    [policy] = k8s_kind("NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pods.items()
    [rule] = policy["spec"]["ingress"]  # one way in: the metrics port, from labelled places
    assert [p["port"] for p in rule["ports"]] == ["metrics"]
    assert [set(f) for f in rule["from"]] == [{"namespaceSelector"}]
    [budget] = k8s_kind("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()
    [monitor] = yaml_docs(K8S / "prometheus-operator" / "servicemonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [serves["name"]]
    [kustomization] = yaml_docs(K8S / "prometheus-operator" / "kustomization.yaml")
    assert kustomization["resources"] == ["../", "servicemonitor.yaml"]


def test_place_job_turns_locate_into_node_affinity(tmp_path: Path) -> None:
    """deploy/examples/place_job.py reads what ``tierstore locate --json`` prints (a real
    store's, through the command line) and requires a node that holds the whole prefix."""
    config = make_config(tmp_path / "store", "local")
    with open_store(config) as store:
        store.put("ds/a", b"abc")
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))
    located = subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(toml),
                              "locate", "ds/", "--json"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    placed = subprocess.run([sys.executable, str(DEPLOY / "examples" / "place_job.py")],
                            input=located, capture_output=True, text=True, timeout=60,
                            check=True).stdout
    terms = json.loads(placed)["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expression = terms["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert expression == {"key": "kubernetes.io/hostname", "operator": "In",
                          "values": [config.tiers[config.default_tier].site]}
    partial = [{"site": "n1", "complete": False, "bytes": 30, "missing_bytes": 70},
               {"site": "n2", "complete": False, "bytes": 90, "missing_bytes": 10},
               {"site": "n3", "complete": False, "bytes": 0, "missing_bytes": 100}]
    spec = _load_example("place_job").affinity(partial, "kubernetes.io/hostname")
    preferred = spec["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert [(p["weight"], p["preference"]["matchExpressions"][0]["values"]) for p in preferred] \
        == [(90, ["n2"]), (30, ["n1"])]
