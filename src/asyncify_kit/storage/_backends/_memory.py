"""``memory://``: objects in a dict of this process, for tests and prototypes.

``memory://`` gives each `Storage` its own empty store; ``memory://NAME`` shares one store
per name across every `Storage` of the process (cleared by nobody but you), event loops in
other threads included: each store has a lock, taken for the instant of each change (and of
a listing's snapshot of the keys), so ``if_not_exists``, ``move`` and ``list`` hold there
too. Nothing here does I/O; writes are still all or nothing. Each operation (each read
or write of an open file, each page of 1,000 of a listing) still yields to the event loop
once, as the other backends' I/O does: a timeout or a cancelled scope around a loop of
them takes effect, and one called cancelled raises before it does anything. The one slow
step, the MD5 hash of an object (its etag, as S3's: 2 ms per MiB), runs in a worker thread
for objects of `_HASH_IN_THREAD` bytes or more, with the joining of a streamed write's
chunks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from anyio.lowlevel import checkpoint

from ..._config import BackendURL
from ..._offload import run_sync
from ...exceptions import AlreadyExists, NotFound
from .base import ByteReader, ByteWriter, ObjectInfo, StorageBackend, broken_write

__all__ = ["MemoryBackend"]


@dataclass(frozen=True)
class _Blob:
    data: bytes
    modified: datetime
    etag: str
    content_type: str | None


class _Store:
    """The objects of one store, and the lock its changes take (a named store is shared by
    every thread of the process)."""

    def __init__(self) -> None:
        self.blobs: dict[str, _Blob] = {}
        self.lock = threading.Lock()


_named_stores: dict[str, _Store] = {}
_named_lock = threading.Lock()


#: objects this large or larger are hashed in a worker thread (MD5 of 256 KiB: about 0.5 ms
#: of the event loop; of 8 MiB, 16 ms); smaller ones on the loop, for less than a thread hop
_HASH_IN_THREAD = 256 * 1024


#: keys a listing goes through between two yields to the event loop (S3's page size)
_PAGE = 1000


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _joined_md5(parts: list[bytes]) -> tuple[bytes, str]:
    data = b"".join(parts)
    return data, _md5(data)


async def _blob(parts: list[bytes], content_type: str | None) -> _Blob:
    """The object of the bytes *parts* (emptied: they are the blob's alone), made now."""
    if sum(map(len, parts)) >= _HASH_IN_THREAD:
        data, etag = await run_sync(_joined_md5, parts)
    else:
        data, etag = _joined_md5(parts)
    parts.clear()
    return _Blob(data, datetime.now(timezone.utc), etag, content_type)


class _MemoryReader(ByteReader):
    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    async def read(self, size: int) -> bytes:
        await checkpoint()
        chunk = bytes(self._view[self._pos : self._pos + size])
        self._pos += len(chunk)
        return chunk

    async def aclose(self) -> None:
        self._view = memoryview(b"")


class _MemoryWriter(ByteWriter):
    def __init__(
        self, backend: MemoryBackend, key: str, if_not_exists: bool, content_type: str | None
    ) -> None:
        self._backend = backend
        self._key = key
        self._if_not_exists = if_not_exists
        self._content_type = content_type
        self._parts: list[bytes] = []
        self._done = False
        self._broken = False  # a write was cancelled: its bytes are missing

    async def write(self, data: bytes) -> None:
        if self._done:
            raise ValueError(f"writer of {self._key!r} is closed")
        try:
            await checkpoint()
        except BaseException:  # cancelled: these bytes are not in, as on every backend
            self._broken = True
            raise
        self._parts.append(data)

    async def commit(self) -> None:
        if self._done:
            raise ValueError(f"writer of {self._key!r} is closed")
        if self._broken:
            raise broken_write(self._key, self._backend.describe())
        self._done = True
        blob = await _blob(self._parts, self._content_type)
        self._backend._put(self._key, blob, self._if_not_exists)

    async def abort(self) -> None:
        self._done = True
        self._parts = []


class MemoryBackend(StorageBackend):
    """Objects kept in a dict; ``memory://NAME`` shares the dict by name."""

    name = "memory"

    def __init__(self, url: BackendURL, options: dict[str, Any]) -> None:
        super().__init__(url, options)
        store_name = url.location.strip("/")
        if store_name:
            with _named_lock:
                self._shared = _named_stores.setdefault(store_name, _Store())
        else:
            self._shared = _Store()
        self._store = self._shared.blobs
        self._lock = self._shared.lock
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True

    def carry_over(self, previous: StorageBackend) -> None:
        # an unnamed store is the Storage's own: opened again, it holds what it held
        if isinstance(previous, MemoryBackend) and not self.url.location.strip("/"):
            self._shared = previous._shared
            self._store = self._shared.blobs
            self._lock = self._shared.lock

    def _check_open(self) -> None:
        """Refuse an operation begun after the Storage was closed (a stream, listing or file
        opener made before), as the other backends do: `RuntimeError`. A file already open
        reads (or commits) on, as on ``file://``."""
        if self._closed:
            raise RuntimeError(f"{self.describe()} is not open")

    def _get(self, key: str) -> _Blob:
        self._check_open()
        blob = self._store.get(key)
        if blob is None:
            raise NotFound(f"no object {key!r} in {self.describe()}")
        return blob

    def _put(self, key: str, blob: _Blob, if_not_exists: bool) -> None:
        with self._lock:  # the check and the change at once, whatever the other threads do
            if if_not_exists and key in self._store:
                raise AlreadyExists(f"object {key!r} already exists in {self.describe()}")
            self._store[key] = blob

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        await checkpoint()
        data = self._get(key).data
        end = None if length is None else offset + length
        return data[offset:end]

    async def write(
        self, key: str, data: bytes, *, if_not_exists: bool, content_type: str | None
    ) -> None:
        await checkpoint()
        self._check_open()
        self._put(key, await _blob([data], content_type), if_not_exists)

    async def open_reader(self, key: str) -> ByteReader:
        await checkpoint()
        return _MemoryReader(self._get(key).data)

    async def open_writer(
        self, key: str, *, if_not_exists: bool, content_type: str | None
    ) -> ByteWriter:
        await checkpoint()
        self._check_open()
        # refused at open, as the other backends do; commit checks again (a race)
        if if_not_exists and key in self._store:
            raise AlreadyExists(f"object {key!r} already exists in {self.describe()}")
        return _MemoryWriter(self, key, if_not_exists, content_type)

    async def stat(self, key: str) -> ObjectInfo:
        await checkpoint()
        blob = self._get(key)
        return ObjectInfo(key, len(blob.data), blob.modified, blob.etag, blob.content_type)

    async def exists(self, key: str) -> bool:
        await checkpoint()
        self._check_open()
        return key in self._store

    async def delete(self, key: str, *, missing_ok: bool) -> None:
        await checkpoint()
        self._check_open()
        with self._lock:
            blob = self._store.pop(key, None)
        if blob is None and not missing_ok:
            raise NotFound(f"no object {key!r} in {self.describe()}")

    async def copy(self, src: str, dst: str) -> None:
        await checkpoint()
        blob = self._get(src)
        # the same bytes (immutable) and etag; modified now, as a copy on S3 and on file://
        copied = dataclasses.replace(blob, modified=datetime.now(timezone.utc))
        with self._lock:
            self._store[dst] = copied

    async def move(self, src: str, dst: str) -> None:
        await checkpoint()
        with self._lock:  # two moves of one key: one moves it, the other finds it gone
            blob = self._get(src)
            # modified now, as on S3 (where a move is a copy) and on file:// (which sets it)
            self._store[dst] = dataclasses.replace(blob, modified=datetime.now(timezone.utc))
            if dst != src:
                del self._store[src]

    async def list(self, prefix: str, *, recursive: bool) -> AsyncIterator[ObjectInfo]:
        await checkpoint()
        self._check_open()
        with self._lock:  # a snapshot: iterating the dict itself fails if a thread changes it
            names = list(self._store)
        keys = sorted((k for k in names if k.startswith(prefix)), key=lambda k: k.encode("utf-8"))
        last_dir = None
        for n, key in enumerate(keys):
            if n and not n % _PAGE:  # a page, as S3 gives them
                await checkpoint()
            blob = self._store.get(key)
            if blob is None:
                continue
            rest = key[len(prefix) :]
            if not recursive and "/" in rest:
                sub = prefix + rest[: rest.index("/") + 1]
                if sub != last_dir:
                    last_dir = sub
                    yield ObjectInfo(sub, 0, is_dir=True)
                continue
            # no content_type, as on the other backends (S3's listing has none): stat() has it
            yield ObjectInfo(key, len(blob.data), blob.modified, blob.etag)
