"""WebDataset-style tar shards: a sample is the run of members that share a basename.

``train/00017.jpg`` and ``train/00017.cls`` are the fields ``jpg`` and ``cls`` of the sample
whose ``__key__`` is ``train/00017`` (the name up to the first dot of its last segment, as
WebDataset splits it). Headers are parsed straight out of the bytes (ustar, GNU long names,
pax extended headers), never through :mod:`tarfile`'s seeking file object: at ingest to find
each sample's byte range, and at read time only within that range.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ShardFormatError
from .format import Buffer, Layout, ShardFormat, ShardReader

if TYPE_CHECKING:
    from .index import DatasetIndex, ShardEntry

__all__ = ["TarFormat", "TarMember", "iter_members", "pack_tar", "split_name"]

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\0", b"7")
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # WebDataset's base_plus_ext


@dataclass(frozen=True, slots=True)
class TarMember:
    """A regular file in a tar: its name, where its headers begin, where its data lies."""

    name: str
    header: int
    start: int
    size: int

    @property
    def end(self) -> int:
        """Where the next header begins (data padded to whole blocks)."""
        return self.start + _padded(self.size)


def split_name(name: str) -> tuple[str, str] | None:
    """``(key, extension)`` of a member name, or None for a name with no extension."""
    match = _KEY_EXT.match(name)
    return (match.group(1), match.group(2)) if match else None


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _cstr(raw: Buffer) -> str:
    text = bytes(raw).split(b"\0", 1)[0]
    return text.decode("utf-8", "surrogateescape")


def _number(raw: Buffer, where: int) -> int:
    field = bytes(raw)
    if field[0] & 0x80:  # GNU base-256 for values too large for octal
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] & 0x40 else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ShardFormatError(f"bad number {text!r} in the tar header at byte {where}") \
            from None


def _check_header(block: Buffer, where: int) -> None:
    stored = _number(block[148:156], where)
    raw = bytes(block)
    unsigned = sum(raw[:148]) + 8 * 32 + sum(raw[156:])
    if stored != unsigned:
        raise ShardFormatError(f"damaged tar header at byte {where} (header checksum "
                               f"{stored:o}, computed {unsigned:o})")


def _pax_records(data: Buffer, where: int) -> dict[str, str]:
    """``key=value`` records of a pax extended header (``"<len> <key>=<value>\\n"`` each)."""
    raw, out, pos = bytes(data), {}, 0
    while pos < len(raw) and raw[pos:pos + 1] != b"\0":
        space = raw.find(b" ", pos)
        try:
            length = int(raw[pos:space])
        except ValueError:
            raise ShardFormatError(f"bad pax header at byte {where}") from None
        record = raw[space + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def iter_members(data: Buffer, start: int = 0, end: int | None = None) -> Iterator[TarMember]:
    """The regular files of the tar bytes ``data[start:end]``, in order.

    Directories, links and global headers are skipped; the stream ends at a zero block or at
    ``end``. A header that fails its checksum or runs past ``end`` raises
    :class:`ShardFormatError`.
    """
    view = memoryview(data)
    stop = len(view) if end is None else end
    pos, first, long_name, pax = start, None, None, {}
    while pos + BLOCK <= stop:
        block = view[pos:pos + BLOCK]
        if block == _ZERO_BLOCK:
            return
        _check_header(block, pos)
        kind = bytes(block[156:157])
        size = _number(block[124:136], pos)
        name = _cstr(block[0:100])
        if bytes(block[257:262]) == b"ustar" and (prefix := _cstr(block[345:500])):
            name = f"{prefix}/{name}"
        first = pos if first is None else first
        data_start = pos + BLOCK
        if kind in (b"x", b"g", b"L", b"K"):  # extended headers: data describe the next member
            _need(data_start + size, stop, pos)
            if kind == b"x":
                pax = _pax_records(view[data_start:data_start + size], pos)
            elif kind == b"L":
                long_name = _cstr(view[data_start:data_start + size])
            elif kind == b"g":
                first = None
            pos = data_start + _padded(size)
            continue
        if "size" in pax:
            size = int(pax["size"])
        name = pax.get("path", long_name or name)
        _need(data_start + size, stop, pos)
        if kind in _REGULAR:
            yield TarMember(name, first, data_start, size)
        pos, first, long_name, pax = data_start + _padded(size), None, None, {}
    if pos < stop and end is None:
        raise ShardFormatError(f"tar truncated at byte {pos} (a partial header)")


def _need(upto: int, stop: int, where: int) -> None:
    if upto > stop:
        raise ShardFormatError(f"tar truncated: the member at byte {where} needs {upto} bytes, "
                               f"there are {stop}")


class TarFormat(ShardFormat):
    """WebDataset-style tar shards; a raw sample is ``{"__key__", "__shard__", ext: bytes}``."""

    name = "tar"

    def scan(self, data: Buffer, key: str) -> Layout:
        offsets: list[int] = []
        current: str | None = None
        end = 0
        for member in iter_members(data):
            split = split_name(member.name)
            if split is None:  # WebDataset skips names without an extension too
                continue
            if split[0] != current:
                offsets.append(member.header)
                current = split[0]
            end = member.end
        if offsets:
            offsets.append(end)
        return Layout(samples=max(0, len(offsets) - 1), offsets=tuple(offsets))

    def open(self, data: Buffer, shard: ShardEntry, index: DatasetIndex) -> ShardReader:
        if shard.offsets is None:
            raise ShardFormatError(f"the index has no sample offsets for tar shard "
                                   f"{shard.key!r}; rewrite the index")
        return _TarReader(memoryview(data), shard.key, shard.offsets)


class _TarReader(ShardReader):
    def __init__(self, view: memoryview, key: str, offsets: tuple[int, ...]):
        self._view = view
        self._key = key
        self._offsets = offsets

    def sample(self, i: int) -> dict[str, Any]:
        start, end = self._offsets[i], self._offsets[i + 1]
        out: dict[str, Any] = {"__shard__": self._key}
        for member in iter_members(self._view, start, end):
            split = split_name(member.name)
            if split is None:
                continue
            key, ext = split
            if out.setdefault("__key__", key) != key:
                raise ShardFormatError(f"sample {i} of {self._key!r} holds members of two "
                                       f"samples ({out['__key__']!r} and {key!r}); the index "
                                       "does not match the shard")
            out[ext] = bytes(self._view[member.start:member.start + member.size])
        if "__key__" not in out:
            raise ShardFormatError(f"sample {i} of {self._key!r} has no members at bytes "
                                   f"{start}-{end}; the index does not match the shard")
        return out


def pack_tar(samples: Iterable[Mapping[str, Any]]) -> bytes:
    """A tar shard of ``samples``: each a mapping with ``__key__`` and ``ext -> bytes``
    (str values are UTF-8 encoded). Member metadata is fixed, so equal input gives equal
    bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for sample in samples:
            key = sample.get("__key__")
            if not isinstance(key, str) or not key or "." in key.rsplit("/", 1)[-1]:
                raise ValueError(f"a sample needs a __key__ without a dot in its last "
                                 f"segment, got {key!r}")
            for ext, value in sample.items():
                if ext.startswith("__"):
                    continue
                payload = value.encode() if isinstance(value, str) else bytes(value)
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(payload), 0, 0o444
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()
