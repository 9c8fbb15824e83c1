"""The errors tierstore raises.

One root, :class:`TierstoreError`, and typed leaves that also subclass the built-in exception
that fits, so ``except FileNotFoundError`` works for callers that know nothing of tierstore.
Backend errors are translated at the tier edge (``raise ... from exc``); messages never carry
credentials.
"""

from __future__ import annotations

import errno

__all__ = [
    "CatalogError",
    "ChecksumMismatch",
    "ConfigError",
    "CopyInFlight",
    "IntensityError",
    "IntensityMalformed",
    "IntensityUnavailable",
    "InvalidKey",
    "LeaseLost",
    "MissingExtra",
    "NoReadableReplica",
    "ObjectChanged",
    "ObjectExists",
    "ObjectNotFound",
    "ReplicaError",
    "ReplicaReady",
    "Terminated",
    "TierError",
    "TierFull",
    "TierUnavailable",
    "TierstoreError",
    "UnknownTier",
    "one_line",
    "require",
]


class TierstoreError(Exception):
    """Root of every error tierstore raises on purpose."""


class ConfigError(TierstoreError, ValueError):
    """A configuration file or value is malformed; the message names the file and the field.

    Parameters
    ----------
    message : str
        What is wrong (kept without the file and field as :attr:`message`).
    source : str, optional
        The file.
    field : str, optional
        The field.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        where = ": ".join(part for part in (source, field) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message  # without where
        self.source = source
        self.field = field


class InvalidKey(TierstoreError, ValueError):
    """An object key is not a safe relative path.

    Parameters
    ----------
    key : object
        The key refused (shown cut to 80 characters).
    reason : str
        Why.
    """

    def __init__(self, key: object, reason: str):
        shown = repr(key) if len(repr(key)) <= 80 else repr(key)[:77] + "..."
        super().__init__(f"invalid key {shown}: {reason}")
        self.key = key
        self.reason = reason


class UnknownTier(TierstoreError, KeyError):
    """A tier name is not in the configuration.

    Parameters
    ----------
    name : str
        The name asked for.
    known : list of str
        The configured tiers, named in the message.
    """

    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown tier {name!r} (configured: {', '.join(sorted(known))})")
        self.name = name

    def __str__(self) -> str:  # KeyError quotes its argument; we want the sentence
        return str(self.args[0])


class ObjectNotFound(TierstoreError, FileNotFoundError):
    """No object with this key (or no ready replica of it) exists.

    Parameters
    ----------
    key : str
        The key.
    detail : str, default ""
        More, appended to the message.
    """

    def __init__(self, key: str, detail: str = ""):
        super().__init__(f"no such object: {key!r}{': ' + detail if detail else ''}")
        self.key = key


class ObjectChanged(TierstoreError, OSError):
    """An adopted object's file was written over or removed behind the store's back: its
    copies elsewhere hold what it was, so none is served; adopting its prefix again takes
    the new content (or the removal) in.

    Parameters
    ----------
    key : str
        The object's key.
    tier : str
        The tier of its adopted file.
    path : str
        The adopted prefix, for the ``tierstore adopt`` the message suggests.
    now : str
        What the file is now.
    """

    def __init__(self, key: str, tier: str, path: str, now: str):
        super().__init__(f"{key!r} changed on tier {tier!r} since it was adopted ({now}): its "
                         f"copies are not served; run `tierstore adopt {path} --tier {tier}` "
                         "to take the change in")
        self.key, self.tier = key, tier


class ObjectExists(TierstoreError, FileExistsError):
    """An object with this key exists and overwriting was not asked for.

    Parameters
    ----------
    key : str
        The key.
    detail : str, default "pass overwrite=True to replace it"
        Why it is refused.
    """

    def __init__(self, key: str, detail: str = "pass overwrite=True to replace it"):
        super().__init__(f"object exists: {key!r} ({detail})")
        self.key = key


class TierError(TierstoreError, OSError):
    """A tier's storage failed an operation (translated from the backend's error).

    Parameters
    ----------
    tier : str
        The tier.
    op : str
        The operation (``read``, ``write``, ``verify``, ...).
    detail : str
        What failed, without credentials.
    """

    def __init__(self, tier: str, op: str, detail: str):
        super().__init__(f"tier {tier!r}: {op} failed: {detail}")
        self.tier = tier
        self.op = op


class TierUnavailable(TierError, ConnectionError):
    """A tier's server cannot be reached (connection refused, timeout, missing bucket)."""


class TierFull(TierError):
    """A write would take a tier past its configured ``capacity``: the hard limit, checked
    before a byte is written (the watermarks are the soft ones the daemon keeps usage under).
    Its ``errno`` is ENOSPC, as for a full disk.

    Parameters
    ----------
    tier : str
        The tier.
    key : str
        The object written.
    nbytes : int
        Its size.
    used, capacity : int
        The bytes in use on the tier and its capacity.
    """

    def __init__(self, tier: str, key: str, nbytes: int, used: int, capacity: int):
        super().__init__(tier, "write", f"no room for {key!r} ({nbytes} bytes): {used} of "
                                        f"its {capacity} bytes capacity in use")
        self.errno = errno.ENOSPC
        self.key = key


class ChecksumMismatch(TierstoreError, OSError):
    """Bytes read back do not match the checksum recorded at ingest.

    Parameters
    ----------
    key : str
        The object's key.
    tier : str
        The tier read.
    expected, actual : str
        The recorded checksum and that of the bytes read.
    """

    def __init__(self, key: str, tier: str, expected: str, actual: str):
        super().__init__(
            f"checksum mismatch for {key!r} on tier {tier!r}: expected {expected}, got {actual}"
        )
        self.key = key
        self.tier = tier


class ReplicaError(TierstoreError, ValueError):
    """A replica operation would break an invariant (e.g. drop the last ready replica)."""


class CopyInFlight(ReplicaError):
    """Another copy of the object to that tier is under way (a reader's read-through fill, a
    daemon's move): nothing to do twice."""


class ReplicaReady(ReplicaError):
    """A copy to a tier that already holds a ready replica of the object (one that was not
    there when the copy was planned: a reader's read-through fill put it there)."""


class LeaseLost(ReplicaError):
    """Work done under a lease (a daemon's node or leader lease) after the lease expired or
    passed to another holder: the catalog refuses its writes (a fenced write)."""


class NoReadableReplica(TierstoreError, OSError):
    """Every replica of an object failed; the message names what each one answered.

    Parameters
    ----------
    key : str
        The object's key.
    failures : list of (str, BaseException)
        Each tier tried and its error, in the order tried.
    """

    def __init__(self, key: str, failures: list[tuple[str, BaseException]]):
        answers = "; ".join(f"{tier}: {type(exc).__name__}: {exc}" for tier, exc in failures)
        super().__init__(f"no readable replica of {key!r}: {answers}")
        self.key = key
        self.failures = failures


class IntensityError(TierstoreError):
    """A carbon-intensity source (:mod:`tierstore.carbon`) gave no usable answer; the message
    names the source (a file, or a URL with its credentials redacted), never a token."""


class IntensityUnavailable(IntensityError, ConnectionError):
    """An intensity server cannot be reached, timed out or refused the request."""


class IntensityMalformed(IntensityError, ValueError):
    """A forecast file or a server's answer is not a forecast tierstore can read."""


class CatalogError(TierstoreError, RuntimeError):
    """The catalog is unusable (corrupt file, schema newer than this tierstore, locked)."""


class MissingExtra(TierstoreError, ImportError):
    """A part of tierstore needs packages its install left out (an extra): the message names
    the extra to install.

    Parameters
    ----------
    part : str
        The part of tierstore (``tierstore.loader``).
    package : str
        The package it needs.
    extra : str
        The extra that installs it.
    """

    def __init__(self, part: str, package: str, extra: str):
        super().__init__(f"{part} needs {package}, which this install of tierstore lacks: "
                         f"pip install 'tierstore[{extra}]'")
        self.extra = extra


def require(module: str, *, part: str, package: str, extra: str) -> None:
    """Import ``module`` or raise :class:`MissingExtra` naming ``extra``."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(part, package, extra) from exc


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM), which the command line takes as it takes
    Ctrl-C: what is under way rolls back or cleans up before it exits."""


def one_line(exc: BaseException) -> str:
    """``exc`` as one line of text, as the command line and the daemon's log report it: an
    OS error as ``path: what`` (its errno's words), an interrupt as ``interrupted`` (or
    ``terminated``)."""
    if isinstance(exc, KeyboardInterrupt):
        word = "terminated" if isinstance(exc, Terminated) else "interrupted"
        return f"{word}: {exc}" if str(exc) else word
    if isinstance(exc, OSError) and not isinstance(exc, TierstoreError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the message
