"""`Storage`: one async interface over local files, S3 and memory, chosen by URL."""

from __future__ import annotations

import mimetypes
import re
import threading
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .._config import BackendURL, resolve_url, url_errors, validate_options
from .._executor import asyncio_loop
from .._offload import checkpoint_if_cancelled, run_sync
from .._registry import BackendSpec, load_backend, lookup
from ..exceptions import ConfigError, Unsupported
from ._async_file import DEFAULT_CHUNK, FileOpener, Mode
from ._backends.base import (
    MAX_READ,
    ByteReader,
    ObjectInfo,
    StorageBackend,
    broken_read,
    close_source,
    shielded,
)
from ._keys import type_from_key, validate_key, validate_prefix

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DEFAULT_URL", "ENV_VARS", "ObjectStream", "Storage"]

DEFAULT_URL = "file://./data"
ENV_VARS = ("ASYNCIFY_STORAGE_URL",)
STREAM_CHUNK = 1024 * 1024

Data = bytes | bytearray | memoryview


def _check_range(offset: int, length: int | None) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, not {offset!r}")
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int) or length < 0
    ):
        raise ValueError(f"length must be an int >= 0 or None, not {length!r}")


# what an HTTP header value (S3 stores the content type as one) may hold: visible ASCII,
# with spaces inside (``text/plain; charset=utf-8``), never at either end
_CONTENT_TYPE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def guess_content_type(key: str, given: str | None) -> str:
    """*given*, else the type the key's extension suggests, else application/octet-stream.

    A *given* type that no backend could store as it is (not a str, empty, not ASCII, a
    control character such as a line break, spaces at either end) is refused before any I/O:
    S3 would reject or alter it, memory:// would keep it, file:// would ignore it.
    """
    if given is not None:
        if not isinstance(given, str):
            raise TypeError(f"content_type must be a str or None, not {type(given).__name__}")
        if not _CONTENT_TYPE.fullmatch(given):
            raise ValueError(
                f"content_type must be a non-empty MIME type in printable ASCII, without "
                f"line breaks or spaces at either end, such as 'text/csv', not {given!r}"
            )
        return given
    return type_from_key(key)


_mime_lock = threading.Lock()


def _mime_types_loaded() -> bool:
    """Whether `mimetypes` has its database, so that `guess_content_type` reads no file.

    Not ``mimetypes.inited``: `mimetypes.init` sets it as it *starts* loading, so a Storage
    opened while another one's loading ran in a worker thread went on, and its first write
    loaded the types again on the event loop (``guess_type`` loads them while the database
    is not there yet).
    """
    db: object = getattr(mimetypes, "_db", mimetypes)  # (the module itself: no such attribute)
    if db is mimetypes:  # not CPython's module: its own flag is all there is
        return mimetypes.inited
    return db is not None


def _load_mime_types() -> None:
    """Load the MIME types (blocking: in a worker thread), once for Storages opened at once."""
    with _mime_lock:
        if not _mime_types_loaded():
            mimetypes.init()


def _check_chunk(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be an int > 0, not {chunk_size!r}")


def require_asyncio(what: str, alternative: str) -> None:
    """Raise `Unsupported` unless an asyncio event loop runs this task."""
    if asyncio_loop() is None:
        raise Unsupported(
            f"{what} runs on asyncio only, and this is not an asyncio event loop "
            f"(trio?); {alternative}"
        )


class ObjectStream(AsyncIterator[bytes]):
    """The chunks of one object, read with bounded memory (see `Storage.stream`).

    Iterate it to the end, or use it with ``async with`` (or call `aclose`) to release the
    open file or connection early. A chunk fetch that raises or is cancelled releases it at
    once, and every later one raises `StorageError`: the stream never looks complete, nor
    goes on after a gap, when a chunk may have been lost.
    """

    def __init__(self, backend: StorageBackend, key: str, chunk_size: int) -> None:
        self._backend = backend
        self._key = key
        self._chunk = min(chunk_size, MAX_READ)  # smaller chunks are allowed; never a huge buffer
        self._reader: ByteReader | None = None
        self._done = False
        self._failed: str | None = None  # why a chunk fetch broke off

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            if self._failed is not None:
                raise broken_read(self._key, self._failed)
            raise StopAsyncIteration
        try:
            if self._reader is None:
                self._reader = await self._backend.open_reader(self._key)
            data = await self._reader.read(self._chunk)
        except BaseException as exc:
            self._failed = type(exc).__name__
            self._done = True
            reader, self._reader = self._reader, None
            if reader is not None:
                await shielded(reader)
            raise
        if not data:
            await self.aclose()
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        """Release the underlying reader (idempotent)."""
        self._done = True
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class Storage:
    """Read and write objects by key, on local disk, S3 or memory, without blocking the loop.

    The backend is chosen by *url* (else ``ASYNCIFY_STORAGE_URL``, else ``file://./data``):

    * ``file://ROOT``: local files, one thread hop per operation, atomic writes;
    * ``file+aiofiles://ROOT``: the same files through aiofiles (asyncio only);
    * ``s3://bucket/prefix``: S3 through aioboto3 (asyncio only);
    * ``s3+boto3://bucket/prefix``: S3 through boto3 in worker threads (asyncio and trio);
    * ``memory://``: a dict in this process, for tests.

    Keys are relative POSIX paths (``"a/b.txt"``); anything that could escape the store
    raises `InvalidPath` before any I/O.

    >>> async with Storage("memory://") as st:
    ...     await st.write("a/b.txt", b"hello")
    ...     assert await st.read("a/b.txt") == b"hello"
    """

    def __init__(self, url: str | BackendURL | None = None) -> None:
        self.url = resolve_url(url, ENV_VARS, DEFAULT_URL)
        # every check of a URL read from the environment names the variable (so does the
        # opening, for the backend's own checks)
        with url_errors(self.url):
            self._spec: BackendSpec = lookup("storage", self.url)
            self._options: dict[str, Any] = validate_options(
                self.url, self._spec.options, backend=self._spec.scheme
            )
        self._backend: StorageBackend | None = None
        self._last: StorageBackend | None = None  # the backend of the last open

    @property
    def is_open(self) -> bool:
        """Whether the storage is open: from the end of a successful ``async with`` entry to
        the start of `aclose` (leaving the block)."""
        return self._backend is not None

    @property
    def backend(self) -> StorageBackend:
        """The open backend; `RuntimeError` outside ``async with``."""
        if self._backend is None:
            raise RuntimeError(
                f"{self!r} is not open; use it as 'async with Storage(url) as storage:'"
            )
        return self._backend

    async def __aenter__(self) -> Self:
        if self._backend is not None:
            raise RuntimeError(f"{self!r} is already open")
        with url_errors(self.url):
            await self._open()
        return self

    async def _open(self) -> None:
        """Make the backend and open it (`__aenter__`, which names the environment variable
        the URL came from in a `ConfigError` raised here)."""
        if not self._spec.trio:
            require_asyncio(
                f"the {self._spec.scheme!r} storage backend",
                "under trio use 'file://' or 's3+boto3://' instead",
            )
        _, cls = await run_sync(load_backend, "storage", self.url)
        if not _mime_types_loaded():
            await run_sync(_load_mime_types)
        backend = cls(self.url, self._options)
        if not isinstance(backend, StorageBackend):
            raise ConfigError(f"{self._spec.target} is not a StorageBackend")
        if self._last is not None:
            backend.carry_over(self._last)
        await backend.aopen()
        self._backend = self._last = backend

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the backend's resources (also done by leaving ``async with``)."""
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.aclose()

    # -- whole objects ---------------------------------------------------------------------

    async def read(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        """The bytes of *key*, or *length* bytes from *offset* (fewer at the end)."""
        key = validate_key(key)
        _check_range(offset, length)
        if length == 0:
            await self.backend.stat(key)
            return b""
        return await self.backend.read(key, offset, length)

    async def read_text(self, key: str, *, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The content of *key* decoded as text."""
        return (await self.read(key)).decode(encoding, errors)

    async def write(
        self,
        key: str,
        data: Data | AsyncIterable[bytes],
        *,
        if_not_exists: bool = False,
        content_type: str | None = None,
    ) -> None:
        """Store *data* (bytes, or an async iterable of bytes, streamed) under *key*.

        The write is all or nothing: readers see the old object until the new one is
        complete, and an error or cancellation leaves the old one in place (except on a
        ``file://...?atomic=false`` root, which writes in place). With
        *if_not_exists*, an existing key raises `AlreadyExists` and is left unchanged.
        """
        key = validate_key(key)
        content_type = guess_content_type(key, content_type)
        try:
            await checkpoint_if_cancelled()  # called cancelled: nothing written on any backend
        except BaseException:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                await close_source(data)  # type: ignore[arg-type]  # a generator, if it is one
            raise
        if isinstance(data, (bytes, bytearray, memoryview)):
            await self.backend.write(
                key, bytes(data), if_not_exists=if_not_exists, content_type=content_type
            )
        elif hasattr(data, "__aiter__"):
            await self.backend.write_stream(
                key, data, if_not_exists=if_not_exists, content_type=content_type
            )
        else:
            raise TypeError(
                f"data must be bytes or an async iterable of bytes, not {type(data).__name__}"
            )

    async def write_text(
        self,
        key: str,
        text: str,
        *,
        encoding: str = "utf-8",
        if_not_exists: bool = False,
        content_type: str | None = None,
    ) -> None:
        """Store *text* encoded with *encoding* under *key* (see `write`)."""
        if not isinstance(text, str):
            raise TypeError(
                f"write_text() takes a str, not {type(text).__name__}; use write() for bytes"
            )
        await self.write(
            key, text.encode(encoding), if_not_exists=if_not_exists, content_type=content_type
        )

    def stream(self, key: str, *, chunk_size: int = STREAM_CHUNK) -> ObjectStream:
        """The content of *key* as chunks of at most *chunk_size* bytes, in bounded memory.

        >>> async with storage.stream("big.bin") as chunks:
        ...     async for chunk in chunks:
        ...         digest.update(chunk)
        """
        key = validate_key(key)
        _check_chunk(chunk_size)
        return ObjectStream(self.backend, key, chunk_size)

    def open(
        self,
        key: str,
        mode: Mode = "rb",
        *,
        if_not_exists: bool = False,
        content_type: str | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> FileOpener:
        """Open *key* as an `AsyncFile`, for ``"rb"`` or ``"wb"``; ``async with`` or ``await``.

        >>> async with storage.open("out.csv", "wb") as f:
        ...     await f.write(b"a,b\\n")
        """
        key = validate_key(key)
        if mode not in ("rb", "wb"):
            raise ValueError(f"mode must be 'rb' or 'wb', not {mode!r}")
        _check_chunk(chunk_size)
        return FileOpener(
            self.backend,
            key,
            mode,
            if_not_exists=if_not_exists,
            content_type=guess_content_type(key, content_type),
            chunk_size=chunk_size,
        )

    # -- metadata ----------------------------------------------------------------------------

    async def stat(self, key: str) -> ObjectInfo:
        """Size, modification time, etag and content type of *key* (`NotFound` if missing)."""
        return await self.backend.stat(validate_key(key))

    async def exists(self, key: str) -> bool:
        """Whether *key* names an object."""
        return await self.backend.exists(validate_key(key))

    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Remove *key*; a missing key raises `NotFound` unless *missing_ok*."""
        key = validate_key(key)
        await checkpoint_if_cancelled()
        await self.backend.delete(key, missing_ok=missing_ok)

    async def copy(self, src: str, dst: str) -> None:
        """Copy *src* to *dst* (replacing *dst*); `NotFound` if *src* is missing."""
        src, dst = validate_key(src), validate_key(dst)
        if src == dst:
            await self.backend.stat(src)
            return
        await checkpoint_if_cancelled()
        await self.backend.copy(src, dst)

    async def move(self, src: str, dst: str) -> None:
        """Move *src* to *dst* (replacing *dst*); `NotFound` if *src* is missing.

        As on S3, where a move is a copy and a delete, the moved object's `modified` is the
        time of the move on every backend.
        """
        src, dst = validate_key(src), validate_key(dst)
        if src == dst:
            await self.backend.stat(src)
            return
        await checkpoint_if_cancelled()
        await self.backend.move(src, dst)

    def list(self, prefix: str = "", *, recursive: bool = True) -> AsyncIterator[ObjectInfo]:
        """The objects whose key starts with *prefix*, in key order, fetched page by page.

        ``recursive=False`` stops at the next ``/``: deeper keys are summarised by one
        ``ObjectInfo(is_dir=True)`` per sub-prefix, as S3's delimiter does. What the listing
        is not allowed to see is never left out silently: S3's refusal, or (on ``file://``)
        a directory that cannot be read or entered, is `PermissionDenied`.

        >>> async for info in storage.list("reports/", recursive=False):
        ...     print(info.key, info.size)
        """
        return self.backend.list(validate_prefix(prefix), recursive=recursive)

    async def presign(
        self, key: str, *, method: Literal["GET", "PUT"] = "GET", expires: int = 3600
    ) -> str:
        """A URL that grants *method* on *key* for *expires* seconds (S3 backends only)."""
        key = validate_key(key)
        if method not in ("GET", "PUT"):
            raise ValueError(f"method must be 'GET' or 'PUT', not {method!r}")
        if isinstance(expires, bool) or not isinstance(expires, int) or not 0 < expires <= 604800:
            raise ValueError(f"expires must be seconds between 1 and 604800, not {expires!r}")
        return await self.backend.presign(key, method=method, expires=expires)

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Storage {self.url.render()!r} {state}>"
