"""`AsyncFile`: what `Storage.open` gives, a buffered async file over one object.

Reading fetches whole chunks (one thread hop or one network read per chunk) and serves
``read(n)``, ``readline()`` and ``async for line`` from the buffer, so iterating over a
million short lines costs a few hundred hops, not a million. Writing buffers small writes and
hands the backend large chunks; the object appears only when the file is closed without an
error, and an error or a cancellation inside ``async with`` discards it. So does a `write` or
`flush` that fails or is interrupted (a timeout, a cancellation), even when the caller catches
that and goes on: the bytes it was handing over may be lost, so the file refuses any further
write and its `close` raises instead of publishing an object with a hole. A read that fails
or is interrupted may likewise have lost the chunk it was fetching: the file releases its
reader at once and refuses any further read, rather than return the bytes after a gap.
"""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ..exceptions import StorageError
from ._backends.base import MAX_READ, ByteReader, ByteWriter, broken_read, shielded

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._backends.base import StorageBackend

__all__ = ["AsyncFile", "FileOpener"]

DEFAULT_CHUNK = 256 * 1024

Mode = Literal["rb", "wb"]


class AsyncFile:
    """A binary file over one stored object, opened for reading (``"rb"``) or writing (``"wb"``).

    >>> async with storage.open("log.txt", "rb") as f:
    ...     async for line in f:
    ...         print(line)

    In ``"wb"`` mode, `close` (or leaving ``async with`` normally) publishes the object
    atomically; `abort` (or an exception or cancellation inside ``async with``) discards it.
    A `write` or `flush` that raises or is cancelled discards it too: later writes and
    `close` raise `StorageError`, and the previous object stays. In ``"rb"`` mode, after a
    `read` or `readline` that raises or is cancelled, the position is unknown: the reader is
    released, and later reads raise `StorageError`.
    """

    def __init__(
        self,
        key: str,
        mode: Mode,
        *,
        reader: ByteReader | None = None,
        writer: ByteWriter | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        self.key = key
        self.mode: Mode = mode
        self._reader = reader
        self._writer = writer
        self._chunk = chunk_size
        self._buf = bytearray()
        self._eof = False
        self._closed = False
        # why writing broke off (the object was discarded), or reading (the position is lost)
        self._failed: str | None = None

    @property
    def name(self) -> str:
        """The key, like a built-in file's ``name``."""
        return self.key

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self, want: Mode) -> None:
        if self._closed:
            raise ValueError(f"I/O operation on closed file {self.key!r}")
        if self.mode != want:
            raise StorageError(
                f"file {self.key!r} is open in {self.mode!r} mode; this needs {want!r}"
            )
        if self._failed is not None:
            raise self._failure()

    def _failure(self) -> StorageError:
        if self.mode == "rb":
            return broken_read(self.key, self._failed or "")
        return StorageError(
            f"file {self.key!r} was discarded: an earlier write failed or was interrupted "
            f"({self._failed}), so it could miss bytes; nothing will be published"
        )

    async def _break(self, exc: BaseException) -> None:
        """A write or flush failed or was interrupted: discard the object, refuse the rest."""
        assert self._writer is not None
        self._failed = type(exc).__name__
        self._buf.clear()
        await shielded(self._writer)

    async def _lose(self, exc: BaseException) -> None:
        """A read failed or was interrupted: its chunk may be lost; release the reader now and
        refuse the rest (reading on would return the bytes after a gap)."""
        assert self._reader is not None
        self._failed = type(exc).__name__
        self._buf.clear()
        await shielded(self._reader)

    async def _fill(self, want: int) -> bool:
        """Fetch one more chunk (at least *want* bytes asked); False at the end."""
        assert self._reader is not None  # mode 'rb' guarantees it
        if self._eof:
            return False
        try:
            # never more than MAX_READ at once: a file read allocates what it is asked for
            data = await self._reader.read(min(max(self._chunk, want), MAX_READ))
        except BaseException as exc:
            await self._lose(exc)
            raise
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    async def read(self, size: int | None = -1) -> bytes:
        """Up to *size* bytes (everything left when negative or None); ``b""`` at the end."""
        self._check("rb")
        if size is None or size < 0:
            while await self._fill(self._chunk):
                pass
            out = bytes(self._buf)
            self._buf.clear()
            return out
        while len(self._buf) < size and await self._fill(size - len(self._buf)):
            pass
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    async def readline(self, size: int | None = -1) -> bytes:
        """One line, with its ``\\n`` (not on the last line if the object lacks it), of at
        most *size* bytes when that is >= 0 (None: no limit, as for a built-in file)."""
        self._check("rb")
        if size is None:
            size = -1
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end != -1:
                cut = end + 1
                break
            if 0 <= size <= len(self._buf):
                cut = size
                break
            start = len(self._buf)
            if not await self._fill(self._chunk):
                cut = len(self._buf)
                break
        if 0 <= size < cut:
            cut = size
        out = bytes(self._buf[:cut])
        del self._buf[:cut]
        return out

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append *data*; returns its length. Memory stays bounded by the chunk size."""
        self._check("wb")
        assert self._writer is not None  # mode 'wb' guarantees it
        view = memoryview(data).cast("B")
        n = len(view)
        if len(self._buf) + n < self._chunk:
            self._buf += view
            return n
        if self._buf:
            self._buf += view
            block = bytes(self._buf)
            self._buf.clear()
        else:
            block = bytes(view)
        try:
            await self._writer.write(block)
        except BaseException as exc:
            await self._break(exc)
            raise
        return n

    async def flush(self) -> None:
        """Hand buffered bytes to the backend (still invisible until `close`)."""
        self._check("wb")
        assert self._writer is not None
        try:
            if self._buf:
                block = bytes(self._buf)
                self._buf.clear()
                await self._writer.write(block)
            await self._writer.flush()
        except BaseException as exc:
            await self._break(exc)
            raise

    async def close(self) -> None:
        """Finish: a reader is released; a writer publishes the object. Idempotent.

        A writer whose `write` or `flush` failed earlier publishes nothing: `StorageError`.
        """
        if self._closed:
            return
        if self._writer is not None:
            writer = self._writer
            if self._failed is not None:  # already discarded by _break
                self._closed = True
                raise self._failure()
            try:
                if self._buf:
                    block = bytes(self._buf)
                    self._buf.clear()
                    await writer.write(block)
                await writer.commit()
            except BaseException:
                self._closed = True
                await shielded(writer)
                raise
            self._closed = True
        elif self._reader is not None:
            self._closed = True
            self._buf.clear()
            await self._reader.aclose()

    async def abort(self) -> None:
        """Discard a file being written (the previous object stays); close a reader."""
        if self._closed:
            return
        self._closed = True
        self._buf.clear()
        if self._writer is not None:
            await shielded(self._writer)
        elif self._reader is not None:
            await self._reader.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            await self.abort()
        else:
            await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncFile {self.key!r} mode={self.mode!r} {state}>"


class FileOpener:
    """The result of `Storage.open`: use it with ``async with`` or ``await`` it."""

    def __init__(
        self,
        backend: StorageBackend,
        key: str,
        mode: Mode,
        *,
        if_not_exists: bool,
        content_type: str | None,
        chunk_size: int,
    ) -> None:
        self._backend = backend
        self._key = key
        self._mode: Mode = mode
        self._if_not_exists = if_not_exists
        self._content_type = content_type
        self._chunk = chunk_size
        self._file: AsyncFile | None = None

    async def _open(self) -> AsyncFile:
        if self._mode == "rb":
            reader = await self._backend.open_reader(self._key)
            return AsyncFile(self._key, "rb", reader=reader, chunk_size=self._chunk)
        writer = await self._backend.open_writer(
            self._key, if_not_exists=self._if_not_exists, content_type=self._content_type
        )
        return AsyncFile(self._key, "wb", writer=writer, chunk_size=self._chunk)

    def __await__(self) -> Generator[Any, None, AsyncFile]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncFile:
        self._file = await self._open()
        return self._file

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        file, self._file = self._file, None
        if file is not None:
            await file.__aexit__(exc_type, exc, tb)
