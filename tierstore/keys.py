"""Object keys: relative POSIX-like paths that cannot escape a tier's root."""

from __future__ import annotations

from .errors import InvalidKey

__all__ = ["MARK_DIR", "MAX_KEY_BYTES", "MAX_SEGMENT_BYTES", "RESERVED_PREFIX", "SPECIAL",
           "is_mark", "validate_key", "validate_prefix"]

MAX_KEY_BYTES = 1024  # S3's own limit on key length
MAX_SEGMENT_BYTES = 255  # NAME_MAX on every local filesystem we target
RESERVED_PREFIX = ".tierstore"  # first segment kept for tierstore's own files on a tier
MARK_DIR = f"{RESERVED_PREFIX}/mark"  # temporary names of claims that write nothing

# What a backend reads in a path as something other than a name, so that a key holding it
# would name another key's object, or several keys' objects. Refused rather than escaped: a
# key stays its objects' name on every tier, in every listing and in every tier:// path.
SPECIAL = {
    "?": "s3fs cuts '?versionId=...' off a path, gcsfs and adlfs read a URL query there, and "
         "fsspec's glob (rm, cp, get) takes it for a wildcard",
    "#": "gcsfs reads '#<number>' as an object generation, adlfs as a URL fragment",
    "*": "fsspec's glob (rm, cp, get) takes it for a wildcard",
    "[": "fsspec's glob (rm, cp, get) takes it for the start of a wildcard set",
    "::": "fsspec chains URLs at '::' (tier://a::b opens the local file b)",
}


def validate_key(key: object) -> str:
    """Return ``key`` if it is a safe object key, else raise :class:`InvalidKey`.

    A key is a non-empty relative path of ``/``-separated segments, none empty, ``.`` or
    ``..``, with no control characters or backslashes, none of the characters in
    :data:`SPECIAL` (``?``, ``#``, ``*``, ``[``, ``::``), at most 1024 bytes of UTF-8, and not
    under the reserved ``.tierstore/`` folder. So distinct keys are distinct objects on every
    tier: no backend reads part of a key as a version, a query or a pattern.
    """
    if not isinstance(key, str):
        raise InvalidKey(key, f"must be a string, not {type(key).__name__}")
    if not key:
        raise InvalidKey(key, "empty")
    if key.startswith("/"):
        raise InvalidKey(key, "absolute paths are not keys")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise InvalidKey(key, "contains a control character")
    if "\\" in key:
        raise InvalidKey(key, "contains a backslash")
    for special, why in SPECIAL.items():
        if special in key:
            raise InvalidKey(key, f"contains {special!r}: {why}, so the key could name "
                                  "another key's object")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey(key, "not valid UTF-8 (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(key, f"longer than {MAX_KEY_BYTES} bytes")
    segments = key.split("/")
    for segment in segments:
        if segment == "":
            raise InvalidKey(key, "empty path segment (// or trailing /)")
        if segment in (".", ".."):
            raise InvalidKey(key, f"{segment!r} segments are not allowed")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidKey(key, f"a segment is longer than {MAX_SEGMENT_BYTES} bytes")
    if segments[0] == RESERVED_PREFIX:
        raise InvalidKey(key, f"{RESERVED_PREFIX}/ is reserved for tierstore")
    return key


def validate_prefix(prefix: object) -> str:
    """Validate a listing prefix: ``""`` (everything) or a key, optionally ending in ``/``."""
    if prefix == "":
        return ""
    if isinstance(prefix, str) and prefix.endswith("/"):
        return validate_key(prefix[:-1]) + "/"
    return validate_key(prefix)


def is_mark(tmp: str | None) -> bool:
    """Whether a copying replica whose temporary name is ``tmp`` only marks a reader's fetch
    (a read-through fill without room): it will write nothing, so it takes no room."""
    return tmp is not None and tmp.startswith(MARK_DIR + "/")
