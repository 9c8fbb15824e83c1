"""What the daemon tells the outside: Prometheus metrics, a health endpoint, and log lines.

The metrics live in a registry of their own (not ``prometheus_client``'s global one), served
with ``/healthz`` by a small server (:class:`MetricsServer`) bound to 127.0.0.1 unless told
otherwise, which no number of idle connections can exhaust. Training processes
on the node leave their loaders' metrics as Prometheus text files in the store's home
(:func:`loader_metrics_folder`, written by :class:`tierstore.loader.metrics.MetricsFile`);
the daemon serves the fresh ones beside its own, each series labelled with the ``process``
that wrote it (as node_exporter's textfile collector does), and removes the files of loaders
killed before they could remove their own. Log lines are one event each, as ``key=value``
text or as JSON objects, and any credential of the config that a message might carry (an error
from a storage library, say) is masked before it is written.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from wsgiref.handlers import SimpleHandler

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from .config import Config, TierClass
from .energy import EnergyModel, Estimate
from .errors import TierstoreError
from .redaction import mask, secret_values

__all__ = ["DaemonMetrics", "LoaderFiles", "LogFormatter", "MetricsError", "MetricsServer",
           "configure_logs", "loader_metrics_folder", "log_pairs", "secrets_of"]

STATES = ["starting", "running", "stopping", "stopped"]
Health = Callable[[], tuple[bool, Mapping[str, Any]]]
LOADER_FILES_STALE_S = 60.0  # a loader's file not rewritten for this long is left out
LOADER_FILES_DEAD_S = 600.0  # ... and for this long is a dead loader's: removed
IDLE_TIMEOUT_S = 10.0  # to send a whole request, or to take a whole answer
MAX_CONNECTIONS = 64  # open at once; a new one drops the oldest still sending its request
ANSWER_THREADS = 2  # build answers (a scrape reads the loaders' files)
REQUEST_LIMIT = 16 * 1024  # bytes of a request's line and headers; longer ones are dropped
log = logging.getLogger(__name__)


def loader_metrics_folder(config: Config) -> Path:
    """Where loaders of ``config``'s store leave their metrics for its daemon."""
    return Path(config.home) / "metrics"


class LoaderFiles:
    """A collector of the loaders' metric files in ``folder``: every ``*.prom`` file written
    within ``stale_s`` seconds, its series labelled ``process`` (the file's name), series of
    the same name from several files merged into one family. :meth:`remove_dead` removes the
    loaders' files not written for ``dead_s`` seconds."""

    def __init__(self, folder: Path, stale_s: float = LOADER_FILES_STALE_S,
                 dead_s: float = LOADER_FILES_DEAD_S):
        self.folder, self.stale_s, self.dead_s = folder, stale_s, dead_s

    def remove_dead(self) -> int:
        """Remove the files of loaders (``loader-*.prom``, and a half-written one's
        ``.tmp``) not written for ``dead_s`` seconds: a loader that was killed left them, and
        nothing else would. A live loader rewrites its file every few seconds, so the age
        alone tells (a process id would not: the writer may be on another host sharing the
        home, or in another PID namespace); one slower than ``dead_s`` just writes it again.
        Returns how many were removed."""
        removed, now = 0, time.time()
        for path in [*self.folder.glob("loader-*.prom"), *self.folder.glob("loader-*.prom.tmp")]:
            try:
                if now - path.stat().st_mtime > self.dead_s:
                    path.unlink()
                    removed += 1
            except OSError as exc:  # gone meanwhile, or not ours to remove: never fail
                log.debug("could not remove loader metrics %s: %s", path, exc)
        return removed

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
        self.loader_files = LoaderFiles(loaders) if loaders is not None else None
        if self.loader_files is not None:
            r.register(self.loader_files)
        tier = ["tier", "tier_class"]
        self.tier_objects = Gauge("tierstore_tier_objects", "Objects with a ready replica on "
                                  "the tier", tier, registry=r)
        self.tier_bytes = Gauge("tierstore_tier_bytes", "Bytes of ready replicas on the tier",
                                tier, registry=r)
        self.tier_capacity = Gauge("tierstore_tier_capacity_bytes", "Configured capacity of "
                                   "the tier (bounded tiers only)", tier, registry=r)
        # energy, estimated by the [energy] model (tierstore.energy)
        self.storage_watts = Gauge("tierstore_storage_watts", "Power the ready replicas on the "
                                   "tier draw, estimated (watts per TB of its class)", tier,
                                   registry=r)
        self.tiering_saved_watts = Gauge("tierstore_tiering_saved_watts", "Power saved by "
                                         "holding bytes off the hot class, estimated: what "
                                         "they would draw there less what they draw where "
                                         "they are", registry=r)
        self.move_joules = Counter("tierstore_daemon_move_joules", "Energy of the bytes moves "
                                   "copied (read, carried, written), estimated, per pair of "
                                   "tiers", ["src", "dst"], registry=r)
        self.move_grams = Counter("tierstore_daemon_move_grams_co2e", "Emissions of that "
                                  "energy at the grid's intensity then, estimated",
                                  ["src", "dst"], registry=r)
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
        self.moves_held = Gauge("tierstore_daemon_moves_held", "Moves of the last plan held "
                                "for a cleaner hour of the grid, by why (cleaner_hour: a "
                                "cleaner hour comes before their deadline; room_held: they "
                                "need room a held move frees)", ["why"], registry=r)
        self.held_bytes = Gauge("tierstore_daemon_held_bytes", "Bytes of the moves the last "
                                "plan held", registry=r)
        self.intensity = Gauge("tierstore_grid_intensity_gco2e_per_kwh", "The grid's carbon "
                               "intensity now, as the [carbon] source forecast it (NaN when it "
                               "did not answer)", registry=r)
        self.intensity_errors = Counter("tierstore_daemon_intensity_errors", "Cycles whose "
                                        "intensity source did not answer (their moves ran at "
                                        "once)", registry=r)
        self.cycles = Counter("tierstore_daemon_cycles", "Cycles run, by outcome (ok, failed)",
                              ["outcome"], registry=r)
        self.cycle_seconds = Gauge("tierstore_daemon_last_cycle_duration_seconds",
                                   "Duration of the last cycle", registry=r)
        self.cycle_time = Gauge("tierstore_daemon_last_cycle_timestamp_seconds",
                                "Unix time the last cycle ended", registry=r)
        self.leader = Gauge("tierstore_daemon_leader", "1 while this daemon holds the "
                            "cluster's leader lease, else 0 (in a cluster only)", registry=r)
        self.state = Enum("tierstore_daemon_state", "The daemon's run state", states=STATES,
                          registry=r)

    def tiers(self, reports: Iterable[Any], energy: EnergyModel) -> dict[str, float]:
        """Objects, bytes, capacity and power per tier, from :meth:`Store.usage` reports;
        the estimated watts per tier."""
        saved, power = 0.0, {}
        for rep in reports:
            self.tier_objects.labels(rep.tier, rep.tier_class).set(rep.objects)
            self.tier_bytes.labels(rep.tier, rep.tier_class).set(rep.bytes)
            if rep.capacity is not None:
                self.tier_capacity.labels(rep.tier, rep.tier_class).set(rep.capacity)
            tier_class = TierClass[rep.tier_class.upper()]
            watts = energy.storage_watts(tier_class, rep.bytes)
            self.storage_watts.labels(rep.tier, rep.tier_class).set(watts)
            saved += energy.storage_watts(TierClass.HOT, rep.bytes) - watts
            power[rep.tier] = watts
        self.tiering_saved_watts.set(saved)
        return power

    def moved(self, src: str, dst: str, nbytes: int, estimate: Estimate) -> None:
        """``nbytes`` copied from ``src`` to ``dst``, and what that cost."""
        self.moved_bytes.labels(src, dst).inc(nbytes)
        self.move_joules.labels(src, dst).inc(estimate.joules)
        self.move_grams.labels(src, dst).inc(estimate.grams_co2e)


class _Answer(SimpleHandler):
    """wsgiref's handler of one request, its whole response written to ``out``."""

    server_software = "tierstore"

    def __init__(self, environ: dict[str, str]) -> None:
        self.out = io.BytesIO()
        super().__init__(io.BytesIO(), self.out, io.StringIO(), environ)
        self.os_environ = {}  # the daemon's environment (credentials) stays out

    def log_exception(self, exc_info: Any) -> None:
        log.warning("metrics endpoint failed", exc_info=exc_info)


class MetricsServer:
    """``/metrics`` (Prometheus text) and ``/healthz`` (JSON; 200 while healthy, else 503)
    on ``host`` (127.0.0.1 by default; ``0.0.0.0`` in a container, to be scraped from
    outside), on a thread of its own.

    Whoever reaches the port (in a cluster, any pod) holds at most a socket of it: one event
    loop reads every request (its line and headers, up to 16 KiB), and only a whole request
    reaches the ``answer_threads`` that build answers. A connection that has not sent its
    request, or not taken its answer, within ``idle_timeout`` seconds is closed; of more than
    ``max_connections`` open at once, the oldest still sending its request is dropped. So a
    probe that asks at once is answered, however many idle connections pile up.
    """

    def __init__(self, metrics: DaemonMetrics, health: Health, port: int,
                 host: str = "127.0.0.1", *, idle_timeout: float = IDLE_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS, answer_threads: int = ANSWER_THREADS):
        self._metrics = make_wsgi_app(metrics.registry)
        self._health = health
        self.host, self.port = host, port
        self.idle_timeout, self.max_connections = idle_timeout, max_connections
        self.answer_threads = answer_threads
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Future[None]] = set()  # one per connection, till it ends
        self._open: set[asyncio.StreamWriter] = set()  # all but those dropped
        self._sending: dict[asyncio.StreamWriter, None] = {}  # no whole request yet; oldest 1st

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
            sock = socket.create_server((self.host, self.port))
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {self.host}:{self.port}: "
                               f"{exc.strerror or exc} (choose another --metrics-host or "
                               "--metrics-port, 0 for a free one, or --no-metrics)") from exc
        self.port = sock.getsockname()[1]
        self._loop, self._stopping = asyncio.new_event_loop(), asyncio.Event()
        self._pool = ThreadPoolExecutor(self.answer_threads,
                                        thread_name_prefix="tierstore-metrics-answer")
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True,
                                        name="tierstore-metrics")
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join()
            self._pool.shutdown(cancel_futures=True)
            self._thread = None

    def _run(self, sock: socket.socket) -> None:
        try:
            self._loop.run_until_complete(self._serve(sock))
        finally:
            self._loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        server = await asyncio.start_server(self._connection, sock=sock, limit=REQUEST_LIMIT)
        await self._stopping.wait()
        server.close()
        await asyncio.sleep(0)  # connections accepted last start their tasks
        for writer in self._open:  # not cancelled: 3.11's streams log a cancelled task
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open.add(writer)
        self._sending[writer] = None
        if len(self._open) > self.max_connections:
            self._drop_oldest_sending()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_timeout)
            del self._sending[writer]
            answer = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._answer, head)
            writer.write(answer)
            await asyncio.wait_for(writer.drain(), self.idle_timeout)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass  # idle, half-sent, too long, dropped or gone: no one to answer
        finally:
            self._tasks.discard(task)
            self._open.discard(writer)
            self._sending.pop(writer, None)
            writer.close()

    def _drop_oldest_sending(self) -> None:
        """Close the oldest connection still sending its request (its read then ends), at
        once: the next connection accepted in this turn of the loop counts without it."""
        oldest = next(iter(self._sending))
        del self._sending[oldest]
        self._open.discard(oldest)
        oldest.transport.abort()

    def _answer(self, head: bytes) -> bytes:
        """The whole response to a request whose line and headers are ``head``."""
        line, *headers = head.decode("latin-1").split("\r\n")
        try:
            method, target, protocol = line.split(" ")
        except ValueError:
            return b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
        path, _, query = target.partition("?")
        environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "QUERY_STRING": query,
                   "PATH_INFO": unquote(path, "iso-8859-1"), "SERVER_PROTOCOL": protocol,
                   "SERVER_NAME": self.host, "SERVER_PORT": str(self.port)}
        for header in headers:
            name, colon, value = header.partition(":")
            if colon:
                environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
        answer = _Answer(environ)
        answer.run(self._app)
        return answer.out.getvalue()


def secrets_of(config: Config) -> list[str]:
    """The secrets in ``config`` (its tiers' options and URLs, its catalog URL), as
    :func:`~tierstore.redaction.secret_values` finds them: never to be written."""
    found = secret_values(config.catalog)
    for tier in config.tiers.values():
        found += secret_values(tier.options) + secret_values(tier.url)
    return found


_BARE = re.compile(r"^[^\s\"=]+$")


class LogFormatter(logging.Formatter):
    """One line per record: ``TIME LEVEL MESSAGE key=value ...`` or, with ``json``, a JSON
    object with ``time``, ``level``, ``logger``, ``message`` and the record's fields (given
    as ``extra={"fields": {...}}``). ``secrets`` are masked wherever they appear, and
    whatever :func:`~tierstore.redaction.redact` finds (a URL's password, ``password=...``)."""

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
            line = f"{when} {level:<7} {record.getMessage()} {log_pairs(fields)}".rstrip()
        return mask(line, self.secrets)


def configure_logs(logger: logging.Logger, style: str, secrets: Iterable[str]) -> None:
    """Every tierstore line in ``style`` with ``secrets`` masked; ``logger`` at INFO at least
    (the command line's handler sits on the ``tierstore`` logger)."""
    formatter = LogFormatter(style, secrets)
    for handler in logging.getLogger("tierstore").handlers:
        handler.setFormatter(formatter)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)


def log_pairs(fields: Mapping[str, Any]) -> str:
    """A log record's fields as ``key=value ...``, a value quoted where it holds a space, a
    quote or an equals sign (None as ``-``)."""
    return " ".join(f"{k}={_text(v)}" for k, v in fields.items())


def _text(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if _BARE.match(text) else json.dumps(text)
