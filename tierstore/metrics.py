"""What the daemon tells the outside: Prometheus metrics, a health endpoint, and log lines.

The metrics live in a registry of their own (not ``prometheus_client``'s global one), served
with ``/healthz`` by a small threaded WSGI server bound to 127.0.0.1 only. Training processes
on the node leave their loaders' metrics as Prometheus text files in the store's home
(:func:`loader_metrics_folder`, written by :class:`tierstore.loader.metrics.MetricsFile`);
the daemon serves the fresh ones beside its own, each series labelled with the ``process``
that wrote it (as node_exporter's textfile collector does). Log lines are one event each, as
``key=value`` text or as JSON objects, and any credential of the config that a message might
carry (an error from a storage library, say) is masked before it is written.
"""

from __future__ import annotations

import json
import logging
import re
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import unquote, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from .config import Config, redact
from .errors import TierstoreError

__all__ = ["DaemonMetrics", "LoaderFiles", "LogFormatter", "MetricsError", "MetricsServer",
           "configure_logs", "loader_metrics_folder", "secrets_of"]

STATES = ["starting", "running", "stopping", "stopped"]
Health = Callable[[], tuple[bool, Mapping[str, Any]]]
LOADER_FILES_STALE_S = 60.0  # a loader's file not rewritten for this long is left out
log = logging.getLogger(__name__)


def loader_metrics_folder(config: Config) -> Path:
    """Where loaders of ``config``'s store leave their metrics for its daemon."""
    return Path(config.home) / "metrics"


class LoaderFiles:
    """A collector of the loaders' metric files in ``folder``: every ``*.prom`` file written
    within ``stale_s`` seconds, its series labelled ``process`` (the file's name), series of
    the same name from several files merged into one family."""

    def __init__(self, folder: Path, stale_s: float = LOADER_FILES_STALE_S):
        self.folder, self.stale_s = folder, stale_s

    def describe(self) -> list[Any]:
        return []  # read at scrape time

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        now = time.time()
        for path in sorted(self.folder.glob("*.prom")):
            try:
                if now - path.stat().st_mtime > self.stale_s:
                    continue
                parsed = list(text_string_to_metric_families(path.read_text()))
            except (OSError, ValueError) as exc:  # half-gone or foreign: skip, never fail
                log.debug("skipping loader metrics %s: %s", path, exc)
                continue
            for family in parsed:
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "process": path.stem},
                                      sample.value)
        return list(families.values())


class MetricsError(TierstoreError, OSError):
    """The metrics endpoint cannot be served (its port is taken, say)."""


class DaemonMetrics:
    """The daemon's metrics, all named ``tierstore_*``, in their own registry; with
    ``loaders``, the loaders' metric files in that folder too (:class:`LoaderFiles`)."""

    def __init__(self, loaders: Path | None = None) -> None:
        self.registry = r = CollectorRegistry()
        if loaders is not None:
            r.register(LoaderFiles(loaders))
        tier = ["tier", "tier_class"]
        self.tier_objects = Gauge("tierstore_tier_objects", "Objects with a ready replica on "
                                  "the tier", tier, registry=r)
        self.tier_bytes = Gauge("tierstore_tier_bytes", "Bytes of ready replicas on the tier",
                                tier, registry=r)
        self.tier_capacity = Gauge("tierstore_tier_capacity_bytes", "Configured capacity of "
                                   "the tier (bounded tiers only)", tier, registry=r)
        self.moves = Counter("tierstore_daemon_moves", "Moves finished, by the policy that "
                             "wanted them and outcome (done, failed, skipped, cancelled)",
                             ["policy", "outcome"], registry=r)
        self.moved_bytes = Counter("tierstore_daemon_moved_bytes", "Bytes copied by moves, per "
                                   "pair of tiers", ["src", "dst"], registry=r)
        self.in_flight = Gauge("tierstore_daemon_moves_in_flight", "Moves being made now",
                               registry=r)
        self.plan_moves = Gauge("tierstore_daemon_plan_moves", "Moves in the last plan",
                                registry=r)
        self.plan_bytes = Gauge("tierstore_daemon_plan_bytes", "Bytes of the objects the last "
                                "plan moves", registry=r)
        self.plan_refused = Gauge("tierstore_daemon_plan_refused", "Proposals the last plan "
                                  "refused", registry=r)
        self.cycles = Counter("tierstore_daemon_cycles", "Cycles run, by outcome (ok, failed)",
                              ["outcome"], registry=r)
        self.cycle_seconds = Gauge("tierstore_daemon_last_cycle_duration_seconds",
                                   "Duration of the last cycle", registry=r)
        self.cycle_time = Gauge("tierstore_daemon_last_cycle_timestamp_seconds",
                                "Unix time the last cycle ended", registry=r)
        self.state = Enum("tierstore_daemon_state", "The daemon's run state", states=STATES,
                          registry=r)

    def tiers(self, reports: Iterable[Any]) -> None:
        """Objects, bytes and capacity per tier, from :meth:`Store.usage` reports."""
        for rep in reports:
            self.tier_objects.labels(rep.tier, rep.tier_class).set(rep.objects)
            self.tier_bytes.labels(rep.tier, rep.tier_class).set(rep.bytes)
            if rep.capacity is not None:
                self.tier_capacity.labels(rep.tier, rep.tier_class).set(rep.capacity)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can hang on a bad resolver
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]
        self.setup_environ()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: scrapes every few seconds would drown the daemon's own lines."""


class MetricsServer:
    """``/metrics`` (Prometheus text) and ``/healthz`` (JSON; 200 while healthy, else 503)
    on ``host`` (127.0.0.1 by default; ``0.0.0.0`` in a container, to be scraped from
    outside), on a thread of its own."""

    def __init__(self, metrics: DaemonMetrics, health: Health, port: int,
                 host: str = "127.0.0.1"):
        self._metrics = make_wsgi_app(metrics.registry)
        self._health = health
        self._port = port
        self.host = host
        self._server: _Server | None = None

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO") or "/"
        if path == "/healthz":
            ok, body = self._health()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        if path in ("/", "/metrics"):
            return self._metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    def start(self) -> int:
        """Serve; the port bound (a free one when asked for port 0)."""
        try:
            self._server = make_server(self.host, self._port, self._app, _Server, _QuietHandler)
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {self.host}:{self._port}: "
                               f"{exc.strerror or exc} (choose another --metrics-host or "
                               "--metrics-port, 0 for a free one, or --no-metrics)") from exc
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                         name="tierstore-metrics").start()
        return self._server.server_port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def secrets_of(config: Config) -> list[str]:
    """The option values of ``config`` that :func:`redact` hides: never to be written."""
    found: list[str] = []

    def walk(options: Mapping[str, Any], shown: Mapping[str, Any]) -> None:
        for name, value in options.items():
            if isinstance(value, Mapping):
                walk(value, shown[name])
            elif shown[name] == "***" and str(value):
                found.append(str(value))

    for tier in config.tiers.values():
        walk(tier.options, redact(tier.options))
    password = urlsplit(config.catalog).password
    if password:
        found += [password, unquote(password)]
    return found


_BARE = re.compile(r"^[^\s\"=]+$")
_USERINFO = re.compile(r"([A-Za-z0-9+.-]+://)[^/@\s]*@")


class LogFormatter(logging.Formatter):
    """One line per record: ``TIME LEVEL MESSAGE key=value ...`` or, with ``json``, a JSON
    object with ``time``, ``level``, ``logger``, ``message`` and the record's fields (given
    as ``extra={"fields": {...}}``). Secrets and URL passwords are masked."""

    def __init__(self, style: str = "text", secrets: Iterable[str] = ()):
        super().__init__()
        self.json = style == "json"
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[1] is not None:
            fields.setdefault("error", f"{type(record.exc_info[1]).__name__}: "
                                       f"{record.exc_info[1]}")
        when = datetime.fromtimestamp(record.created).astimezone().isoformat(
            timespec="milliseconds")
        level = record.levelname.lower()
        if self.json:
            line = json.dumps({"time": when, "level": level, "logger": record.name,
                               "message": record.getMessage(), **fields}, default=str)
        else:
            pairs = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
            line = f"{when} {level:<7} {record.getMessage()} {pairs}".rstrip()
        return self._mask(line)

    def _mask(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return _USERINFO.sub(r"\1***@", line)


def configure_logs(logger: logging.Logger, style: str, secrets: Iterable[str]) -> None:
    """Every tierstore line in ``style`` with ``secrets`` masked; ``logger`` at INFO at least
    (the command line's handler sits on the ``tierstore`` logger)."""
    formatter = LogFormatter(style, secrets)
    for handler in logging.getLogger("tierstore").handlers:
        handler.setFormatter(formatter)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)


def _text(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if _BARE.match(text) else json.dumps(text)
