"""``file+aiofiles://ROOT``: the ``file://`` layout and guarantees, with data through aiofiles.

Reads and writes of file content go through aiofiles file objects (one thread hop for each
open, read, write and close, as aiofiles does); paths are still opened without following
any symbolic link (an ``opener`` doing the ``O_NOFOLLOW`` walk), writes are still atomic,
and metadata operations run through the core engine like ``file://``. Use it where aiofiles
is already the house standard; ``file://`` is faster. asyncio only, as aiofiles is.
"""

from __future__ import annotations

import os
from typing import Any

import aiofiles

from .._keys import split_key
from ._file import FileBackend, TempFile, _refuse_existing, open_beneath, translate
from .base import ByteReader, ByteWriter

__all__ = ["AiofilesBackend"]


class _AiofilesReader(ByteReader):
    def __init__(self, file: Any) -> None:
        self._file: Any = file

    async def read(self, size: int) -> bytes:
        if self._file is None:
            raise ValueError("read from a closed reader")
        data: bytes = await self._file.read(size)
        return data

    async def aclose(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            await file.close()


class _AiofilesWriter(ByteWriter):
    def __init__(
        self, backend: AiofilesBackend, temp: TempFile, file: Any, key: str, if_not_exists: bool
    ) -> None:
        self._backend = backend
        self._temp = temp
        self._file: Any = file
        self._key = key
        self._if_not_exists = if_not_exists

    async def write(self, data: bytes) -> None:
        try:
            await self._file.write(data)
        except OSError as exc:
            await self.abort()
            raise translate(exc, self._key, self._backend.describe(), writing=True) from exc

    async def flush(self) -> None:
        await self._file.flush()

    async def commit(self) -> None:
        try:
            await self._file.close()
            await self._backend._run(self._temp.commit, if_not_exists=self._if_not_exists)
        except OSError as exc:
            raise translate(exc, self._key, self._backend.describe(), writing=True) from exc

    async def abort(self) -> None:
        if not self._file.closed:
            await self._file.close()
        await self._backend._run(self._temp.discard)


class AiofilesBackend(FileBackend):
    """Files under ROOT, content read and written through aiofiles."""

    name = "file+aiofiles"

    def _opener(self, parts: list[str]) -> Any:
        root_fd = self.root_fd

        def opener(_path: str, _flags: int) -> int:
            return open_beneath(root_fd, parts)

        return opener

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        try:
            async with aiofiles.open(key, "rb", opener=self._opener(split_key(key))) as f:
                if offset:
                    await f.seek(offset)
                data: bytes = await f.read(-1 if length is None else length)
                return data
        except OSError as exc:
            raise translate(exc, key, self.describe()) from exc

    async def write(
        self, key: str, data: bytes, *, if_not_exists: bool, content_type: str | None
    ) -> None:
        writer = await self.open_writer(key, if_not_exists=if_not_exists, content_type=content_type)
        try:
            await writer.write(data)
            await writer.commit()
        except BaseException:
            from .base import shielded

            await shielded(writer)
            raise

    async def open_reader(self, key: str) -> ByteReader:
        try:
            file = await aiofiles.open(key, "rb", opener=self._opener(split_key(key)))
        except OSError as exc:
            raise translate(exc, key, self.describe()) from exc
        return _AiofilesReader(file)

    async def open_writer(
        self, key: str, *, if_not_exists: bool, content_type: str | None
    ) -> ByteWriter:
        parts = split_key(key)
        root_fd = self.root_fd

        def begin() -> TempFile:
            if if_not_exists:
                _refuse_existing(root_fd, parts)
            return TempFile(root_fd, parts, self.fsync)

        try:
            temp = await self._run(begin)
        except OSError as exc:
            raise translate(exc, key, self.describe(), writing=True) from exc
        try:
            file = await aiofiles.open(key, "wb", opener=lambda _path, _flags: os.dup(temp.fd))
        except BaseException:
            await self._run(temp.discard)
            raise
        return _AiofilesWriter(self, temp, file, key, if_not_exists)
