"""The one interface every storage backend implements.

`StorageBackend` receives keys that `Storage` has already validated, so a backend never sees
``..``, an absolute path or a NUL byte. Errors leave a backend only as the StorageError tree
(`NotFound`, `AlreadyExists`, `PermissionDenied`, `InvalidPath`, `StorageError`) or
`Unsupported`, with the driver's exception chained as ``__cause__`` and ``.orig``.

Streaming is built from two small objects: a `ByteReader` (``read(n)`` returns at most *n*
bytes, ``b""`` at the end) and a `ByteWriter` (``write`` then ``commit``, or ``abort``). A
writer publishes nothing before ``commit``: the previous object stays readable and an aborted
write leaves no trace (no temp file, no unfinished multipart upload).
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..._cleanup import finish
from ..._config import BackendURL
from ..._offload import _running_loop
from ...exceptions import NotFound, StorageError, Unsupported

__all__ = [
    "MAX_READ",
    "ByteReader",
    "ByteWriter",
    "ObjectInfo",
    "StorageBackend",
    "broken_read",
    "broken_write",
    "chunk_bytes",
    "close_source",
    "finish",
    "on_asyncio",
    "shielded",
]

MAX_READ = 16 * 1024 * 1024
"""The most `Storage.stream` and `AsyncFile` ask of one `ByteReader.read`, whatever the chunk
or read size: a file read allocates its whole size up front (``os.read``, a buffered
``read``), so a ``chunk_size`` of ``2**40`` would otherwise fail with `MemoryError` (or
`OverflowError` from ``2**63``) on a 10-byte object, where S3 and memory:// return it."""


@dataclass(frozen=True)
class ObjectInfo:
    """What `Storage.stat` and `Storage.list` report about one object.

    `etag` changes whenever the content changes (an MD5 on memory://, S3's ETag, and
    ``mtime-size`` on file://). `content_type` comes from `Storage.stat`: `Storage.list`
    leaves it None on every backend (S3's listing does not return it).
    A non-recursive listing also yields one entry per sub-"directory", with ``is_dir=True``,
    a key ending in ``/`` and ``size == 0``.
    """

    key: str
    size: int
    modified: datetime | None = None
    etag: str | None = None
    content_type: str | None = None
    is_dir: bool = False


class ByteReader(abc.ABC):
    """An open object being read sequentially."""

    @abc.abstractmethod
    async def read(self, size: int) -> bytes:
        """At most *size* (> 0) bytes; ``b""`` at the end of the object."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the underlying file or connection (idempotent)."""


class ByteWriter(abc.ABC):
    """An object being written; nothing is visible before `commit`."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Append *data* (any size; the writer keeps its memory bounded)."""

    async def flush(self) -> None:  # noqa: B027 - optional for backends that buffer
        """Push buffered bytes towards storage, where the backend can do so early."""

    @abc.abstractmethod
    async def commit(self) -> None:
        """Publish the object atomically; after this the writer is closed.

        After a `write` that raised or was cancelled it publishes nothing and raises
        `StorageError` (see `broken_write`): that write's bytes may be missing.
        """

    @abc.abstractmethod
    async def abort(self) -> None:
        """Discard everything written (idempotent); the previous object is untouched."""


def chunk_bytes(chunk: object) -> bytes:
    """*chunk*, a chunk of a streamed write, as bytes; `TypeError` unless it is bytes-like.

    Not ``bytes(chunk)``: that makes ``n`` zero bytes of an int ``n`` and accepts a list of
    ints, so an iterable yielding ints (iterating over a bytes object does) would store zeros.
    """
    if isinstance(chunk, bytes):
        return chunk
    try:
        view = memoryview(chunk)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            "a streamed write takes an async iterable of bytes-like chunks (bytes, bytearray, "
            f"memoryview), and this one yielded a {type(chunk).__name__}"
        ) from None
    return view.tobytes()


async def close_source(source: AsyncIterator[Any]) -> None:
    """Close *source*, the chunks of a streamed write that failed or was cancelled, if it is
    an async generator: its ``finally`` blocks (releasing what it holds) run now, in the
    writer's task, as when a write takes every chunk, and not when the garbage collector
    finds it suspended (asyncio then closes it in a task of its own, trio warns). It has
    nothing more to give that write (all or nothing). Other async iterators, such as a stream
    or a file the caller owns, are left open.

    Not shielded, as ``contextlib.aclosing`` does not shield it: a generator that awaits in
    its ``finally`` meets the caller's cancellation there.
    """
    if inspect.isasyncgen(source):
        await source.aclose()


def broken_write(key: str, where: str) -> StorageError:
    """What `ByteWriter.commit` raises when an earlier `write` failed or was interrupted."""
    return StorageError(
        f"cannot publish {key!r} in {where}: an earlier write to it failed or was "
        "interrupted, so the object could miss bytes; abort it"
    )


def on_asyncio() -> bool:
    """Whether an asyncio event loop runs this task (not trio)."""
    return _running_loop() is not None


async def shielded(stream: ByteWriter | ByteReader) -> None:
    """Abort a writer, or close a reader, to its end even while the caller is being
    cancelled (`finish`)."""
    await finish(stream.aclose() if isinstance(stream, ByteReader) else stream.abort())


def broken_read(key: str, why: str) -> StorageError:
    """What reading on raises after a read of *key* failed or was interrupted (*why*)."""
    return StorageError(
        f"cannot read on from {key!r}: an earlier read failed or was interrupted ({why}), so "
        "the position in the object is unknown (bytes could be skipped); open it again"
    )


class StorageBackend(abc.ABC):
    """Base class of the storage backends (``file``, ``file+aiofiles``, ``s3``, ``s3+boto3``,
    ``memory``); `Storage` is the public face and validates every key first.

    Third-party backends subclass this and register through the ``asyncify_kit.backends``
    entry-point group as ``"storage:<scheme>"``.
    """

    name: str = "storage"
    """The scheme, used in error messages."""

    def __init__(self, url: BackendURL, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options

    async def aopen(self) -> None:  # noqa: B027 - backends without resources keep the default
        """Acquire resources (a client, a root directory handle); called by ``__aenter__``."""

    async def aclose(self) -> None:  # noqa: B027 - see aopen
        """Release what `aopen` acquired; called by ``__aexit__``."""

    def carry_over(self, previous: StorageBackend) -> None:  # noqa: B027 - most keep nothing
        """Take over what outlives an open from *previous*, the backend of the same `Storage`'s
        last open (before `aopen`): ``memory://``'s objects."""

    @abc.abstractmethod
    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        """The bytes of *key* from *offset*, at most *length* of them (all when None)."""

    @abc.abstractmethod
    async def write(
        self, key: str, data: bytes, *, if_not_exists: bool, content_type: str | None
    ) -> None:
        """Replace *key* by *data* atomically; `AlreadyExists` if *if_not_exists* and it exists."""

    async def write_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        if_not_exists: bool,
        content_type: str | None,
    ) -> None:
        """Write an object from chunks with bounded memory; all or nothing.

        A write that fails or is cancelled once it has asked *chunks* for a chunk closes an
        async generator it was given (`close_source`).
        """
        source = aiter(chunks)
        writer = await self.open_writer(key, if_not_exists=if_not_exists, content_type=content_type)
        try:
            async for chunk in source:
                await writer.write(chunk_bytes(chunk))
            await writer.commit()
        except BaseException:
            try:
                await shielded(writer)
            finally:
                await close_source(source)
            raise

    @abc.abstractmethod
    async def open_reader(self, key: str) -> ByteReader:
        """Open *key* for sequential reading (`NotFound` if missing)."""

    @abc.abstractmethod
    async def open_writer(
        self, key: str, *, if_not_exists: bool, content_type: str | None
    ) -> ByteWriter:
        """Start writing *key*; the object appears only on `ByteWriter.commit`."""

    @abc.abstractmethod
    async def stat(self, key: str) -> ObjectInfo:
        """Size, modification time, etag and content type of *key* (`NotFound` if missing)."""

    async def exists(self, key: str) -> bool:
        """Whether *key* names an object."""
        try:
            await self.stat(key)
        except NotFound:
            return False
        return True

    @abc.abstractmethod
    async def delete(self, key: str, *, missing_ok: bool) -> None:
        """Remove *key* (`NotFound` if missing unless *missing_ok*)."""

    @abc.abstractmethod
    async def copy(self, src: str, dst: str) -> None:
        """Copy *src* to *dst*, replacing *dst* atomically."""

    async def move(self, src: str, dst: str) -> None:
        """Rename *src* to *dst* (copy then delete unless the backend can rename)."""
        await self.copy(src, dst)
        await self.delete(src, missing_ok=True)

    @abc.abstractmethod
    def list(self, prefix: str, *, recursive: bool) -> AsyncIterator[ObjectInfo]:
        """Objects whose key starts with *prefix*, in key order, fetched page by page."""

    async def presign(self, key: str, *, method: str, expires: int) -> str:
        """A URL granting *method* on *key* for *expires* seconds (S3 backends only)."""
        raise Unsupported(
            f"the {self.name!r} storage backend cannot presign URLs; presigned URLs need "
            "the 's3' or 's3+boto3' backend"
        )

    def describe(self) -> str:
        """The backend URL with every secret hidden, for reprs and messages."""
        return self.url.render()
