"""Any fsspec URL (``s3://bucket/key``, ``gcs://``, ``memory://``...): reads are ranged reads
of the one object (an S3 ranged GET), on the filesystem's own event loop when it is async.

Objects cannot be written in place, so a write of ``len`` bytes at ``offset`` puts a new
object ``<file>_<offset>_<len>``, as fio's own http/S3 engine names them.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import fsspec
from fsspec.core import split_protocol

from tierstore.redaction import redact

from ..common.errors import TargetError
from .target import Target, filler

__all__ = ["FsspecTarget"]


def storage_options(protocol: str, options: dict[str, Any], endpoint_url: str | None
                    ) -> dict[str, Any]:
    """fsspec storage options for a job: its ``storage_options`` plus ``endpoint_url``."""
    out = copy.deepcopy(options)
    if protocol in ("s3", "s3a"):
        client = dict(out.get("client_kwargs") or {})
        if endpoint_url:
            client["endpoint_url"] = endpoint_url
        out["client_kwargs"] = client
        # S3-compatible servers (Ceph RGW, older MinIO) reject botocore's default trailing
        # checksums; the benchmark measures transfer, not integrity.
        config = dict(out.get("config_kwargs") or {})
        config.setdefault("request_checksum_calculation", "when_required")
        config.setdefault("response_checksum_validation", "when_required")
        out["config_kwargs"] = config
    elif endpoint_url:
        out["endpoint_url"] = endpoint_url
    return out


class FsspecTarget(Target):
    """Objects or files behind any fsspec filesystem."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.protocol = split_protocol(self.paths[0])[0] or "file"
        self._fs: Any = None
        self._async = False

    def _options(self) -> dict[str, Any]:
        return storage_options(self.protocol, dict(self.options.storage_options),
                               self.options.endpoint_url)

    def _sync_fs(self) -> Any:
        return fsspec.filesystem(self.protocol, skip_instance_cache=True, **self._options())

    def _fail(self, op: str, index: int, exc: BaseException) -> TargetError:
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        return TargetError(f"{redact(self.paths[index])}: {op} failed: {text}")

    # -- the starting process ------------------------------------------------------------

    async def existing_size(self, index: int) -> int | None:
        return await asyncio.to_thread(self._size, index)

    def _size(self, index: int) -> int | None:
        try:
            return int(self._sync_fs().size(self.paths[index]))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._fail("stat", index, exc) from exc

    async def layout(self, size: int, *, fill: bool) -> None:
        if fill:  # writes create their own objects; only reads need the file
            await asyncio.to_thread(self._layout, size)

    def _layout(self, size: int) -> None:
        fs = self._sync_fs()
        for index, path in enumerate(self.paths):
            try:
                if fs.exists(path) and fs.size(path) >= size:
                    continue
                with fs.open(path, "wb") as handle:
                    for chunk in filler(size):
                        handle.write(chunk)
            except Exception as exc:
                raise self._fail("lay out", index, exc) from exc

    async def cleanup(self) -> None:
        if self.options.unlink:
            fs = self._sync_fs()
            for path in self.paths:
                await asyncio.to_thread(fs.rm_file, path)

    # -- the job process -----------------------------------------------------------------

    async def open(self) -> None:
        cls = fsspec.get_filesystem_class(self.protocol)
        self._async = bool(getattr(cls, "async_impl", False))
        try:
            if not self._async:
                self._fs = self._sync_fs()
                return
            self._fs = cls(asynchronous=True, skip_instance_cache=True,
                           loop=asyncio.get_running_loop(), **self._options())
            if hasattr(self._fs, "set_session"):
                await self._fs.set_session()
        except Exception as exc:
            raise self._fail("connect", 0, exc) from exc

    async def read(self, index: int, offset: int, length: int) -> int:
        path, end = self.paths[index], offset + length
        try:
            if self._async:
                data = await self._fs._cat_file(path, start=offset, end=end)
            else:
                data = await asyncio.to_thread(self._fs.cat_file, path, start=offset, end=end)
        except Exception as exc:
            raise self._fail("read", index, exc) from exc
        return len(data)

    async def write(self, index: int, offset: int, data: memoryview) -> int:
        name = f"{self.paths[index]}_{offset}_{len(data)}"
        try:
            if self._async:
                await self._fs._pipe_file(name, bytes(data))
            else:
                await asyncio.to_thread(self._fs.pipe_file, name, bytes(data))
        except Exception as exc:
            raise self._fail("write", index, exc) from exc
        return len(data)

    async def close(self) -> None:
        session = getattr(self._fs, "_s3", None)
        if self._async and session is not None:
            await session.__aexit__(None, None, None)
        self._fs = None

    def describe(self) -> dict[str, Any]:
        return {"kind": "fsspec", "protocol": self.protocol,
                "files": [redact(p) for p in self.paths],
                "storage_options": redact(self._options())}
