"""``file+aiofiles://ROOT``: the ``file://`` layout and guarantees, with data through aiofiles.

Reads and writes of file content go through aiofiles file objects (one thread hop for each
open, read, write and close, as aiofiles does); paths are still opened without following
any symbolic link (an ``opener`` doing the ``O_NOFOLLOW`` walk), writes are still atomic,
and metadata operations run through the core engine like ``file://``. The file objects are
opened by the core engine too, then wrapped as ``aiofiles.open`` wraps them: a caller
cancelled while a file opens does not leak it (it is closed, and a temp file removed, for
it). Use it where aiofiles is already the house standard; ``file://`` is faster. asyncio
only, as aiofiles is.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO, Any, cast

import aiofiles.threadpool

from .._keys import split_key
from ._file import (
    FileBackend,
    TempFile,
    begin_stream,
    discard_if_dropped,
    open_beneath,
    translate,
)
from .base import ByteReader, ByteWriter, broken_write, finish, shielded

__all__ = ["AiofilesBackend"]


def _open_file(root_fd: int, parts: list[str], key: str) -> tuple[IO[bytes], int]:
    """The regular file *parts* under ROOT opened for reading, as ``aiofiles.open`` opens it
    (a buffered file named *key*), and its size when opened."""
    file = open(key, "rb", opener=lambda _path, _flags: open_beneath(root_fd, parts))  # noqa: SIM115
    try:
        return file, os.fstat(file.fileno()).st_size
    except BaseException:
        file.close()
        raise


def _close_opened(opened: tuple[IO[bytes], int]) -> None:
    opened[0].close()


def _abandon_writer(opened: tuple[TempFile, IO[bytes]]) -> None:
    temp, file = opened
    try:
        file.close()
    finally:
        temp.discard()


def _wrap(file: IO[bytes]) -> Any:
    """The aiofiles object over an open file: what ``await aiofiles.open(...)`` returns."""
    return aiofiles.threadpool.wrap(file, loop=None, executor=None)


async def _close(file: Any) -> None:
    # to the end: a cancelled caller's file is still closed now, not by the garbage collector
    await finish(file.close())


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
            await _close(file)


class _AiofilesWriter(ByteWriter):
    def __init__(
        self,
        backend: AiofilesBackend,
        temp: TempFile,
        raw: IO[bytes],
        key: str,
        if_not_exists: bool,
    ) -> None:
        """*raw*: the file object on *temp*, which aiofiles wraps here."""
        self._backend = backend
        self._temp = temp
        self._file: Any = _wrap(raw)
        self._key = key
        self._if_not_exists = if_not_exists
        self._failed = False  # a write raised or was cancelled: its bytes may be missing
        self._dropped = discard_if_dropped(self, backend, temp, raw)

    async def write(self, data: bytes) -> None:
        try:
            await self._file.write(data)
        except OSError as exc:
            self._failed = True
            await shielded(self)
            raise translate(exc, self._key, self._backend.describe(), writing=True) from exc
        except BaseException:
            self._failed = True
            raise

    async def flush(self) -> None:
        try:
            await self._file.flush()
        except OSError as exc:
            self._failed = True
            raise translate(exc, self._key, self._backend.describe(), writing=True) from exc
        except BaseException:
            self._failed = True
            raise

    async def commit(self) -> None:
        if self._failed:
            raise broken_write(self._key, self._backend.describe())
        try:
            await self._file.close()
            await self._backend._run(self._temp.commit, if_not_exists=self._if_not_exists)
        except OSError as exc:
            raise translate(exc, self._key, self._backend.describe(), writing=True) from exc
        self._dropped.detach()

    async def abort(self) -> None:
        try:
            if not self._file.closed:
                # closing flushes the file's buffer, which can fail as the write or flush that
                # led here did (ENOSPC, EFBIG): those bytes are discarded anyway, and the temp
                # file must go (the file is closed even then)
                with contextlib.suppress(OSError):
                    await self._file.close()
        finally:
            await self._backend._run(self._temp.discard)
            self._dropped.detach()


class AiofilesBackend(FileBackend):
    """Files under ROOT, content read and written through aiofiles."""

    name = "file+aiofiles"

    async def _open(self, key: str) -> tuple[IO[bytes], int]:
        try:
            return await self._run_owned(
                _close_opened, _open_file, self.root_fd, split_key(key), key
            )
        except OSError as exc:
            raise translate(exc, key, self.describe()) from exc

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        raw, size = await self._open(key)
        f = _wrap(raw)
        try:
            if offset > size:  # past the end (seek and read refuse an offset near 2**63)
                return b""
            if offset:
                await f.seek(offset)
            if length is not None and length <= size - offset:
                data: bytes = await f.read(length)
                return data
            # to the end, as it is now; never a buffer of *length* bytes that are not there
            data = await f.read(-1)
            return data if length is None else data[:length]
        except OSError as exc:
            raise translate(exc, key, self.describe()) from exc
        finally:
            await _close(f)

    async def write(
        self, key: str, data: bytes, *, if_not_exists: bool, content_type: str | None
    ) -> None:
        writer = await self.open_writer(key, if_not_exists=if_not_exists, content_type=content_type)
        try:
            await writer.write(data)
            await writer.commit()
        except BaseException:
            await shielded(writer)
            raise

    async def open_reader(self, key: str) -> ByteReader:
        raw, _ = await self._open(key)
        return _AiofilesReader(_wrap(raw))

    async def open_writer(
        self, key: str, *, if_not_exists: bool, content_type: str | None
    ) -> ByteWriter:
        parts = split_key(key)
        root_fd = self.root_fd
        fsync = self.fsync

        def begin() -> tuple[TempFile, IO[bytes]]:
            # on a descriptor of ROOT of its own: the Storage may be closed before the write
            # ends, and its descriptor's number given to another directory (`begin_stream`)
            temp = cast(  # atomic: a TempFile
                TempFile,
                begin_stream(root_fd, parts, if_not_exists=if_not_exists, fsync=fsync, atomic=True),
            )
            try:
                # a descriptor of its own: closing the file object leaves the temp file's
                file = open(key, "wb", opener=lambda _path, _flags: os.dup(temp.fd))  # noqa: SIM115
            except BaseException:
                temp.discard()
                raise
            return temp, file

        try:
            temp, file = await self._run_owned(_abandon_writer, begin)
        except OSError as exc:
            raise translate(exc, key, self.describe(), writing=True) from exc
        return _AiofilesWriter(self, temp, file, key, if_not_exists)
