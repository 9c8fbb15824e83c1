"""WebDataset-style tar shards: a sample is the run of members that share a basename.

``train/00017.jpg`` and ``train/00017.cls`` are the fields ``jpg`` and ``cls`` of the sample
whose ``__key__`` is ``train/00017`` (the name up to the first dot of its last segment, as
WebDataset splits it). Headers are parsed straight out of the bytes (ustar, GNU long names,
pax extended headers), never through :mod:`tarfile`'s seeking file object: at ingest to find
each sample's byte range, and at read time only within that range.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ShardFormatError
from .base import Buffer, Layout, ShardFormat, ShardReader

if TYPE_CHECKING:
    from ..index import DatasetIndex, ShardEntry

__all__ = ["TarFormat", "TarMember", "iter_members", "pack_tar", "pack_tar_layout", "split_name"]

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


def _number(raw: Buffer, shard: str, where: int) -> int:
    field = bytes(raw)
    if field[0] & 0x80:  # GNU base-256 for values too large for octal
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] & 0x40 else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise _damaged(shard, f"bad number {text!r} in the tar header at byte {where}") \
            from None


def _damaged(shard: str, what: str) -> ShardFormatError:
    return ShardFormatError(f"tar shard {shard!r}: {what}")


def _check_header(block: Buffer, shard: str, where: int) -> None:
    stored = _number(block[148:156], shard, where)
    raw = bytes(block)
    unsigned = sum(raw[:148]) + 8 * 32 + sum(raw[156:])
    if stored != unsigned:
        raise _damaged(shard, f"damaged tar header at byte {where} (header checksum "
                              f"{stored:o}, computed {unsigned:o})")


def _size(value: int, shard: str, where: int) -> int:
    """A member's size; a negative one (GNU base-256 allows it) would never move on."""
    if value < 0:
        raise _damaged(shard, f"negative size {value} in the tar header at byte {where}")
    return value


def _pax_records(data: Buffer, shard: str, where: int) -> dict[str, str]:
    """``key=value`` records of a pax extended header (``"<len> <key>=<value>\\n"`` each).

    Each record's length counts its own digits, space and newline, so a valid record is at
    least four bytes and ends within the data: a length that does not (0, negative, past the
    end) is damage, and would otherwise leave the parser in place or send it backwards.
    """
    raw, out, pos = bytes(data), {}, 0
    while pos < len(raw) and raw[pos:pos + 1] != b"\0":
        space = raw.find(b" ", pos, pos + 21)  # a length of 20 digits is already absurd
        digits = raw[pos:space] if space > pos else b""
        length = int(digits) if digits.isdigit() else 0
        end = pos + length
        if length < len(digits) + 3 or end > len(raw) or raw[end - 1:end] != b"\n":
            raise _damaged(shard, f"bad pax header at byte {where} (a record of length "
                                  f"{digits!r} at offset {pos} of its {len(raw)} bytes)")
        key, sep, value = raw[space + 1:end - 1].partition(b"=")
        if not sep:
            raise _damaged(shard, f"bad pax header at byte {where} (a record without '=' at "
                                  f"offset {pos})")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return out


def _pax_size(text: str, shard: str, where: int) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise _damaged(shard, f"bad pax size {text[:40]!r} for the member whose headers "
                              f"begin at byte {where}")
    return int(text)


def iter_members(data: Buffer, start: int = 0, end: int | None = None, *,
                 shard: str = "?") -> Iterator[TarMember]:
    """The regular files of the tar bytes ``data[start:end]``, in order.

    Directories, links and global headers are skipped; the stream ends at a zero block or at
    ``end``. Every header moves the position on by at least one block, so the parse ends;
    a header that fails its checksum, claims a negative size, holds a bad pax record or runs
    past ``end`` raises :class:`ShardFormatError` naming ``shard`` and the header's offset.
    """
    view = memoryview(data)
    stop = len(view) if end is None else end
    if not 0 <= start <= stop <= len(view):
        raise ShardFormatError(f"tar shard {shard!r}: bytes {start}-{stop} lie outside its "
                               f"{len(view)} bytes")
    pos, first, long_name, pax = start, None, None, {}
    while pos + BLOCK <= stop:
        block = view[pos:pos + BLOCK]
        if block == _ZERO_BLOCK:
            return
        _check_header(block, shard, pos)
        kind = bytes(block[156:157])
        size = _size(_number(block[124:136], shard, pos), shard, pos)
        name = _cstr(block[0:100])
        if bytes(block[257:262]) == b"ustar" and (prefix := _cstr(block[345:500])):
            name = f"{prefix}/{name}"
        first = pos if first is None else first
        data_start = pos + BLOCK
        if kind in (b"x", b"g", b"L", b"K"):  # extended headers: data describe the next member
            _need(data_start + size, stop, shard, pos)
            if kind == b"x":
                pax = _pax_records(view[data_start:data_start + size], shard, pos)
            elif kind == b"L":
                long_name = _cstr(view[data_start:data_start + size])
            elif kind == b"g":
                first = None
            pos = data_start + _padded(size)
            continue
        if "size" in pax:
            size = _pax_size(pax["size"], shard, first)
        name = pax.get("path", long_name or name)
        _need(data_start + size, stop, shard, pos)
        if kind in _REGULAR:
            yield TarMember(name, first, data_start, size)
        pos, first, long_name, pax = data_start + _padded(size), None, None, {}
    if pos < stop and end is None:
        raise _damaged(shard, f"tar truncated at byte {pos} (a partial header)")


def _need(upto: int, stop: int, shard: str, where: int) -> None:
    if upto > stop:
        raise _damaged(shard, f"tar truncated: the member at byte {where} needs {upto} "
                              f"bytes, there are {stop}")


class TarFormat(ShardFormat):
    """WebDataset-style tar shards; a raw sample is ``{"__key__", "__shard__", ext: bytes}``."""

    name = "tar"
    ranged_samples = True

    def scan(self, data: Buffer, key: str) -> Layout:
        offsets: list[int] = []
        current: str | None = None
        end = 0
        for member in iter_members(data, shard=key):
            split = split_name(member.name)
            if split is None:  # WebDataset skips names without an extension too
                continue
            if split[0] != current:
                offsets.append(member.header)
                current = split[0]
            end = member.end
        offsets.append(end)  # where the last sample ends (0 for a shard of none)
        return Layout(samples=len(offsets) - 1, offsets=tuple(offsets))

    def open(self, data: Buffer, shard: ShardEntry, index: DatasetIndex) -> ShardReader:
        if shard.offsets is None:
            raise ShardFormatError(f"the index has no sample offsets for tar shard "
                                   f"{shard.key!r}; rewrite the index")
        return _TarReader(memoryview(data), shard.key, shard.offsets)

    def ranged_sample(self, data: Buffer, shard: ShardEntry, i: int) -> dict[str, Any]:
        if shard.offsets is None:
            raise ShardFormatError(f"the index has no sample offsets for tar shard "
                                   f"{shard.key!r}; rewrite the index")
        return _TarReader(memoryview(data), shard.key, shard.offsets, shard.offsets[i]).sample(i)


class _TarReader(ShardReader):
    """Samples out of ``view``: the shard's bytes from ``base`` on."""

    def __init__(self, view: memoryview, key: str, offsets: tuple[int, ...], base: int = 0):
        self._view = view
        self._key = key
        self._offsets = offsets
        self._base = base

    def sample(self, i: int) -> dict[str, Any]:
        start, end = self._offsets[i] - self._base, self._offsets[i + 1] - self._base
        out: dict[str, Any] = {"__shard__": self._key}
        for member in iter_members(self._view, start, end, shard=self._key):
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
                                   f"{self._offsets[i]}-{self._offsets[i + 1]}; the index "
                                   "does not match the shard")
        return out


def pack_tar(samples: Iterable[Mapping[str, Any]]) -> bytes:
    """A tar shard of ``samples``: each a mapping with ``__key__`` and ``ext -> bytes``
    (str values are UTF-8 encoded). Member metadata is fixed, so equal input gives equal
    bytes."""
    return pack_tar_layout(samples)[0]


def pack_tar_layout(samples: Iterable[Mapping[str, Any]]) -> tuple[bytes, Layout]:
    """:func:`pack_tar`'s bytes and their :class:`Layout` (what :meth:`TarFormat.scan` would
    find in them), learnt while packing: nothing is parsed back.

    The bytes are those :mod:`tarfile` writes in its pax format (a plain ustar header for a
    name of at most 100 ASCII bytes, a pax header before any other), assembled in one join:
    a member's header is filled into a template, and its data is copied once, not streamed
    through ``tarfile``'s file objects (which cost more than the upload of the bytes)."""
    pieces: list[Buffer] = []
    offsets: list[int] = []
    current: str | None = None
    pos = end = 0
    for sample in samples:
        key = sample.get("__key__")
        if not isinstance(key, str) or not key or "." in key.rsplit("/", 1)[-1]:
            raise ValueError(f"a sample needs a __key__ without a dot in its last segment, "
                             f"got {key!r}")
        for ext, value in sample.items():
            if ext.startswith("__"):
                continue
            payload = value.encode() if isinstance(value, str) else value
            size = memoryview(payload).nbytes
            name = f"{key}.{ext}"
            header = _ustar_header(name, size) or _pax_header(name, size)
            if (split := split_name(name)) is not None:  # what scan() counts as a sample
                if split[0] != current:
                    offsets.append(pos)
                    current = split[0]
                end = pos + len(header) + _padded(size)
            pieces += (header, payload, _ZERO_BLOCK[:_padded(size) - size])
            pos += len(header) + _padded(size)
    offsets.append(end)
    archive = pos + 2 * BLOCK  # two zero blocks end it; tarfile pads to whole records
    pieces.append(bytes(-(-archive // tarfile.RECORDSIZE) * tarfile.RECORDSIZE - pos))
    return b"".join(pieces), Layout(samples=len(offsets) - 1, offsets=tuple(offsets))


def _header_template() -> tuple[bytes, int]:
    """The ustar header :mod:`tarfile` writes for a member of ours with an empty name and
    size field, and the sum of its bytes with the checksum field as spaces."""
    info = tarfile.TarInfo("")
    info.mtime, info.mode, info.uname, info.gname = 0, 0o444, "", ""
    raw = bytearray(info.tobuf(tarfile.USTAR_FORMAT, "ascii", "strict"))
    raw[124:136] = bytes(12)
    raw[148:156] = b" " * 8
    return bytes(raw), sum(raw)


_TEMPLATE, _TEMPLATE_SUM = _header_template()
_MAX_OCTAL_SIZE = 8**11  # sizes from here on need a pax header (tarfile's rule)


def _ustar_header(name: str, size: int) -> bytes | None:
    """The header of a member of ``size`` bytes named ``name``, as :mod:`tarfile` writes it
    in pax format, where a plain ustar header holds it (else None)."""
    raw = name.encode("ascii", "surrogateescape") if name.isascii() else None
    if raw is None or len(raw) > 100 or size >= _MAX_OCTAL_SIZE:
        return None
    field = b"%011o\0" % size
    check = _TEMPLATE_SUM + sum(raw) + sum(field)
    return b"".join((raw, _TEMPLATE[len(raw):124], field, _TEMPLATE[136:148],
                     b"%06o\0 " % check, _TEMPLATE[156:]))


def _pax_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = size, 0, 0o444, "", ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
