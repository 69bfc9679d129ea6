"""One behaviour for every storage backend: file, file+aiofiles, s3, s3+boto3 and memory.

Each test runs on every backend, on asyncio and (where the backend supports it) on trio.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import resource
import signal
import threading
import urllib.request
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncify_kit import Unsupported, run_sync
from asyncify_kit.exceptions import AsyncifyError
from asyncify_kit.storage import (
    AlreadyExists,
    ByteReader,
    InvalidPath,
    NotFound,
    ObjectInfo,
    Storage,
    StorageError,
)
from asyncify_kit.storage._backends import _file, _s3
from asyncify_kit.storage._keys import TEMP_PREFIX

from .conftest import S3_SCHEMES, s3_client, storage_url
from .local_helpers import cancel_when, held_under

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024

CASES = [
    ("file", "asyncio"),
    ("file", "trio"),
    ("file+aiofiles", "asyncio"),
    ("s3", "asyncio"),
    ("s3+boto3", "asyncio"),
    ("s3+boto3", "trio"),
    ("memory", "asyncio"),
    ("memory", "trio"),
]


@pytest.fixture(params=CASES, ids=[f"{scheme}-{loop}" for scheme, loop in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> str:
    return case[1]


@pytest.fixture
def scheme(case: tuple[str, str]) -> str:
    return case[0]


@pytest.fixture
def url(scheme: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return storage_url(scheme, request, tmp_path)


@pytest.fixture
async def st(url: str) -> AsyncIterator[Storage]:
    async with Storage(url) as storage:
        yield storage


async def leftovers(st: Storage, tmp_path: Path) -> list[str]:
    """Temp files (file backends) or unfinished multipart uploads (S3) left behind."""
    return await anyio.to_thread.run_sync(_leftovers, st, tmp_path)


def _leftovers(st: Storage, tmp_path: Path) -> list[str]:
    if st.url.dialect == "file":
        return [p.name for p in tmp_path.rglob(f"{TEMP_PREFIX}*")]
    if st.url.dialect == "s3":
        backend = st.backend
        assert isinstance(backend, _s3.S3Backend)
        client = s3_client(st.url.options["endpoint_url"])
        uploads = client.list_multipart_uploads(Bucket=backend.bucket, Prefix=backend.prefix)
        return [u["Key"] for u in uploads.get("Uploads", [])]
    return []


async def chunks(*parts: bytes | bytearray) -> AsyncIterator[bytes]:
    for part in parts:
        await anyio.sleep(0)
        yield bytes(part) if isinstance(part, bytearray) else part


# -- whole objects ---------------------------------------------------------------------------


async def test_write_then_read(st: Storage) -> None:
    await st.write("a/b/c.bin", b"\x00\x01payload")
    assert await st.read("a/b/c.bin") == b"\x00\x01payload"
    await st.write_text("notes/é.txt", "héllo wörld")
    assert await st.read_text("notes/é.txt") == "héllo wörld"
    await st.write("empty", b"")
    assert await st.read("empty") == b""
    await st.write("view", memoryview(b"from a view"))
    assert await st.read("view") == b"from a view"


async def test_write_text_refuses_bytes_before_any_io(st: Storage) -> None:
    with pytest.raises(TypeError, match=r"write_text\(\) takes a str, not bytes"):
        await st.write_text("t.txt", b"bytes")  # type: ignore[arg-type]
    assert not await st.exists("t.txt")


async def test_read_range(st: Storage) -> None:
    await st.write("r.bin", bytes(range(100)))
    assert await st.read("r.bin", offset=10, length=5) == bytes(range(10, 15))
    assert await st.read("r.bin", offset=95) == bytes(range(95, 100))
    assert await st.read("r.bin", offset=95, length=50) == bytes(range(95, 100))
    assert await st.read("r.bin", offset=100) == b""
    assert await st.read("r.bin", offset=500, length=3) == b""
    assert await st.read("r.bin", length=0) == b""
    with pytest.raises(ValueError, match="offset"):
        await st.read("r.bin", offset=-1)
    with pytest.raises(ValueError, match="length"):
        await st.read("r.bin", length=-2)


async def test_read_range_far_past_the_end(st: Storage) -> None:
    """ "At most *length* bytes": a length or an offset far beyond the object is what is
    there, never a buffer of that size (MemoryError) or an overflow."""
    await st.write("small.txt", b"hello")
    for length in (2**31, 2**40, 2**62, 2**63, 2**64):
        assert await st.read("small.txt", length=length) == b"hello"
        assert await st.read("small.txt", offset=2, length=length) == b"llo"
    for offset in (5, 6, 2**40, 2**63 - 1, 2**63, 2**64):
        assert await st.read("small.txt", offset=offset) == b""
        assert await st.read("small.txt", offset=offset, length=2**64) == b""
    with pytest.raises(NotFound):
        await st.read("missing", offset=2**64, length=2**64)


async def test_overwrite_replaces_and_changes_etag(st: Storage) -> None:
    await st.write("k.txt", b"first version")
    first = await st.stat("k.txt")
    await st.write("k.txt", b"second, longer version")
    second = await st.stat("k.txt")
    assert await st.read("k.txt") == b"second, longer version"
    assert first.etag and second.etag and first.etag != second.etag


async def test_if_not_exists(st: Storage, tmp_path: Path) -> None:
    await st.write("once.txt", b"original", if_not_exists=True)
    with pytest.raises(AlreadyExists) as info:
        await st.write("once.txt", b"replacement", if_not_exists=True)
    assert isinstance(info.value, FileExistsError)
    with pytest.raises(AlreadyExists):
        await st.write("once.txt", chunks(b"x" * 10, b"y"), if_not_exists=True)
    with pytest.raises(AlreadyExists):
        async with st.open("once.txt", "wb", if_not_exists=True) as f:
            await f.write(b"z")
    assert await st.read("once.txt") == b"original"
    assert await leftovers(st, tmp_path) == []


async def test_if_not_exists_is_refused_when_opening(st: Storage, tmp_path: Path) -> None:
    await st.write("once.txt", b"original")
    with pytest.raises(AlreadyExists):
        await st.open("once.txt", "wb", if_not_exists=True)  # at open, before any write
    # and again at close: a key written meanwhile by someone else wins
    f = await st.open("late.txt", "wb", if_not_exists=True)
    try:
        await f.write(b"mine")
        await st.write("late.txt", b"theirs")
        with pytest.raises(AlreadyExists):
            await f.close()
    finally:
        await f.abort()
    assert await st.read("once.txt") == b"original"
    assert await st.read("late.txt") == b"theirs"
    assert await leftovers(st, tmp_path) == []


async def test_write_from_async_iterable(st: Storage) -> None:
    await st.write("stream.bin", chunks(b"ab", b"", bytearray(b"cd"), b"e" * 1000))
    assert await st.read("stream.bin") == b"abcd" + b"e" * 1000


class Anything:
    """An async iterator over *parts*, whatever they are (a class: a generator abandoned by a
    failed write would warn when collected under trio)."""

    def __init__(self, *parts: object) -> None:
        self.parts = list(parts)

    def __aiter__(self) -> Anything:
        return self

    async def __anext__(self) -> Any:
        await anyio.sleep(0)
        if not self.parts:
            raise StopAsyncIteration
        return self.parts.pop(0)


async def test_streamed_write_refuses_chunks_that_are_not_bytes(
    st: Storage, tmp_path: Path
) -> None:
    """A streamed write takes bytes-like chunks (any buffer) and refuses anything else with
    `TypeError`, storing nothing. ``bytes(chunk)`` made an int ``n`` into ``n`` zero bytes
    (an iterable over a bytes object yields ints) and a list of ints into bytes, and the
    write went through; a str or None failed with a message about ``bytes()``."""
    await st.write("k", b"old")
    for bad in (5, [65, 66], "text", None):
        with pytest.raises(TypeError, match=f"bytes-like chunks .* yielded a {type(bad).__name__}"):
            await st.write("k", Anything(b"a", bad, b"c"))
        with pytest.raises(TypeError, match="bytes-like chunks"):
            await st.write("new", Anything(bad))
    assert await st.read("k") == b"old"
    assert not await st.exists("new")
    assert await leftovers(st, tmp_path) == []
    await st.write("k", Anything(b"a", bytearray(b"b"), memoryview(b"cxd")[::2], array("B", [101])))
    assert await st.read("k") == b"abcde"


async def test_write_rejects_other_types(st: Storage) -> None:
    with pytest.raises(TypeError, match="bytes or an async iterable"):
        await st.write("x", "text is not bytes")  # type: ignore[arg-type]
    assert not await st.exists("x")


async def test_large_object_round_trip(st: Storage) -> None:
    payload = bytes(range(256)) * (11 * 1024 * 4)  # 11 MiB: multipart on S3
    await st.write("big/one.bin", payload)
    assert (await st.stat("big/one.bin")).size == len(payload)
    assert await st.read("big/one.bin") == payload
    got = bytearray()
    async with st.stream("big/one.bin", chunk_size=3 * 1024 * 1024) as stream:
        async for chunk in stream:
            assert 0 < len(chunk) <= 3 * 1024 * 1024
            got += chunk
    assert got == payload


@pytest.mark.parametrize("size", [2**40, 2**63], ids=["2**40", "2**63"])
async def test_huge_chunk_and_read_sizes_allocate_nothing_more(st: Storage, size: int) -> None:
    """A chunk or read size far beyond the object is served like any other, as ``read(key,
    length=2**62)`` is: the file backends asked the file for that many bytes at once
    (`MemoryError`, `OverflowError` from 2**63) where S3 and memory:// returned the object."""
    await st.write("k", b"hello\nworld")
    await st.write("empty", b"")
    async with st.stream("k", chunk_size=size) as chunks:
        assert [chunk async for chunk in chunks] == [b"hello\nworld"]
    async with st.stream("empty", chunk_size=size) as chunks:
        assert [chunk async for chunk in chunks] == []
    async with st.open("k", "rb", chunk_size=size) as f:
        assert await f.readline() == b"hello\n"
        assert [line async for line in f] == [b"world"]
    async with st.open("k", "rb") as f:
        assert await f.read(size) == b"hello\nworld"
        assert await f.read(size) == b""
    async with st.open("empty", "rb") as f:
        assert await f.read(size) == b""


# -- errors ----------------------------------------------------------------------------------


async def test_missing_key_is_not_found_everywhere(st: Storage) -> None:
    await st.write("present", b"1")
    operations: list[Any] = [
        st.read("missing"),
        st.read("missing", offset=3, length=2),
        st.read_text("missing"),
        st.stat("missing"),
        st.delete("missing"),
        st.copy("missing", "elsewhere"),
        st.move("missing", "elsewhere"),
        st.open("missing", "rb").__aenter__(),
        st.stream("missing").__anext__(),
    ]
    for operation in operations:
        with pytest.raises(NotFound) as info:
            await operation
        assert isinstance(info.value, FileNotFoundError)
        assert isinstance(info.value, StorageError) and isinstance(info.value, AsyncifyError)
        assert "missing" in str(info.value)
        if st.url.dialect != "memory":
            assert info.value.__cause__ is not None
            assert info.value.orig is info.value.__cause__ or info.value.orig is not None
    assert not await st.exists("missing")
    assert not await st.exists("elsewhere")
    await st.delete("missing", missing_ok=True)
    assert await st.read("present") == b"1"


async def test_prefix_of_a_key_is_not_an_object(st: Storage) -> None:
    await st.write("dir/file.txt", b"x")
    with pytest.raises(NotFound):
        await st.read("dir")
    with pytest.raises(NotFound):
        await st.stat("dir")
    assert not await st.exists("dir")
    assert not await st.exists("dir/file.txt/deeper")


async def test_invalid_keys_rejected(st: Storage) -> None:
    for key in ("", "/abs", "../up", "a/../b", "a\\b", "nul\x00", "a//b", "dir/", "./a"):
        with pytest.raises(InvalidPath):
            await st.write(key, b"x")
        with pytest.raises(InvalidPath):
            await st.read(key)
    with pytest.raises(InvalidPath):
        st.list("../")
    assert [info async for info in st.list()] == []


async def test_not_open_is_a_clear_error(url: str) -> None:
    storage = Storage(url)
    with pytest.raises(RuntimeError, match="not open"):
        await storage.read("a")
    assert "closed" in repr(storage)


# -- metadata --------------------------------------------------------------------------------


async def test_stat(st: Storage) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    await st.write("docs/readme.txt", b"hello")
    await st.write("data/blob", b"\x00" * 10, content_type="application/x-custom")
    info = await st.stat("docs/readme.txt")
    assert isinstance(info, ObjectInfo)
    assert (info.key, info.size, info.is_dir) == ("docs/readme.txt", 5, False)
    assert info.modified is not None and info.modified.tzinfo is not None
    assert before <= info.modified <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert info.etag
    assert info.content_type == "text/plain"
    blob = await st.stat("data/blob")
    if st.url.dialect == "file":
        assert blob.content_type == "application/octet-stream"  # file:// cannot store it
    else:
        assert blob.content_type == "application/x-custom"


async def test_exists_and_delete(st: Storage) -> None:
    await st.write("a/x", b"1")
    await st.write("a/y", b"2")
    assert await st.exists("a/x")
    await st.delete("a/x")
    assert not await st.exists("a/x")
    assert await st.read("a/y") == b"2"
    await st.delete("a/y")
    assert [info.key async for info in st.list()] == []
    with pytest.raises(NotFound):
        await st.delete("a/y")


async def test_copy_and_move(st: Storage) -> None:
    await st.write("src/one.txt", b"content")
    await st.write("dst/two.txt", b"old")
    await st.copy("src/one.txt", "dst/two.txt")
    assert await st.read("dst/two.txt") == b"content"
    assert await st.read("src/one.txt") == b"content"
    await st.move("src/one.txt", "moved/deep/three.txt")
    assert await st.read("moved/deep/three.txt") == b"content"
    assert not await st.exists("src/one.txt")
    await st.move("moved/deep/three.txt", "moved/deep/three.txt")
    assert await st.read("moved/deep/three.txt") == b"content"
    keys = [info.key async for info in st.list()]
    assert keys == ["dst/two.txt", "moved/deep/three.txt"]


async def test_a_storage_opened_again_holds_what_it_held(url: str) -> None:
    """One `Storage` object, closed and opened again: its objects are still there, on
    `memory://` too (each open of an unnamed store used to start an empty one)."""
    storage = Storage(url)
    async with storage:
        await storage.write("kept.txt", b"still here")
    async with storage:
        assert await storage.read("kept.txt") == b"still here"
    async with Storage(url) as other:
        expected = [] if url == "memory://" else ["kept.txt"]  # another Storage: its own
        assert [info.key async for info in other.list()] == expected


async def test_a_moved_object_is_modified_at_the_move(st: Storage, scheme: str) -> None:
    """`move` gives the object the time of the move on every backend, as S3 (which copies
    it) must: file:// and memory:// used to keep the time of its last write."""
    await st.write("m/src.txt", b"content")
    written = await st.stat("m/src.txt")
    await anyio.sleep(1.1 if scheme in S3_SCHEMES else 0.1)  # S3 has whole seconds
    start = datetime.now(timezone.utc)
    if scheme in S3_SCHEMES:
        start = start.replace(microsecond=0)
    else:  # a file system's clock runs a tick (1-10 ms) behind
        start -= timedelta(milliseconds=20)
    await st.move("m/src.txt", "m/dst.txt")
    moved = await st.stat("m/dst.txt")
    assert moved.modified is not None and written.modified is not None
    assert moved.modified >= start > written.modified
    assert (moved.size, moved.content_type) == (written.size, written.content_type)
    assert [info.modified async for info in st.list("m/")] == [moved.modified]


# -- listing ---------------------------------------------------------------------------------

KEYS = ["a.txt", "a/b.txt", "a/c/d.txt", "a0", "b/e.txt", "ba", "z"]


async def _fill(st: Storage) -> None:
    for key in reversed(KEYS):
        await st.write(key, key.encode())


async def test_list_recursive(st: Storage) -> None:
    await _fill(st)
    infos = [info async for info in st.list()]
    assert [i.key for i in infos] == KEYS
    assert all(not i.is_dir and i.size == len(i.key) for i in infos)
    assert [i.key async for i in st.list("a/")] == ["a/b.txt", "a/c/d.txt"]
    assert [i.key async for i in st.list("a")] == ["a.txt", "a/b.txt", "a/c/d.txt", "a0"]
    assert [i.key async for i in st.list("b")] == ["b/e.txt", "ba"]
    assert [i.key async for i in st.list("nothing/")] == []
    assert [i.key async for i in st.list("a/c/d.txt")] == ["a/c/d.txt"]


async def test_list_takes_a_prefix_ending_in_a_partial_dot_segment(st: Storage) -> None:
    """The prefix is a string prefix: ``"."`` lists the dot-files and ``"cfg/."`` those of
    ``cfg/``; the unfinished last segment was refused as a ``.`` or ``..`` segment."""
    for key in (".env", "..x", "cfg/.hidden", "cfg/visible"):
        await st.write(key, b"1")
    assert [i.key async for i in st.list(".")] == ["..x", ".env"]
    assert [i.key async for i in st.list("..")] == ["..x"]
    assert [i.key async for i in st.list("cfg/.")] == ["cfg/.hidden"]
    assert [i.key async for i in st.list(".", recursive=False)] == ["..x", ".env"]
    for bad in ("./", "../", "cfg/./", "cfg/../x", "./.env"):
        with pytest.raises(InvalidPath):
            st.list(bad)


async def test_list_non_recursive(st: Storage) -> None:
    await _fill(st)
    top = [info async for info in st.list(recursive=False)]
    assert [(i.key, i.is_dir) for i in top] == [
        ("a.txt", False),
        ("a/", True),
        ("a0", False),
        ("b/", True),
        ("ba", False),
        ("z", False),
    ]
    assert [i.key async for i in st.list("a/", recursive=False)] == ["a/b.txt", "a/c/"]


async def test_list_shows_keys_whose_later_segments_look_like_a_drive(st: Storage) -> None:
    """Only a key's first segment may not look like a Windows drive: ``a/C:foo`` is a key,
    and file:// skipped it (and ``d/``, holding only such keys) in its listings."""
    keys = ["a/C:foo", "a/plain", "d/C:/x"]
    for key in keys:
        await st.write(key, b"x")
    assert [i.key async for i in st.list()] == keys
    assert [i.key async for i in st.list(recursive=False)] == ["a/", "d/"]
    assert [i.key async for i in st.list("d/", recursive=False)] == ["d/C:/"]
    assert [i.key async for i in st.list("a/C")] == ["a/C:foo"]


async def test_list_paginates(st: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_file, "_LIST_PAGE", 2)
    monkeypatch.setattr(_s3, "_LIST_PAGE", 2)
    keys = [f"p/{i:02d}" for i in range(7)]
    for key in keys:
        await st.write(key, b"x")
    assert [i.key async for i in st.list("p/")] == keys
    assert [i.key async for i in st.list(recursive=False)] == ["p/"]


async def test_a_compressed_file_is_of_its_compressions_type(st: Storage) -> None:
    """``x.csv.gz`` holds gzip bytes: typed ``text/csv`` (what `mimetypes` says it holds), S3
    would serve them as CSV without a ``Content-Encoding``."""
    expected = {
        "t.csv.gz": "application/gzip",
        "t.tar.bz2": "application/x-bzip2",
        "t.tar.xz": "application/x-xz",
        "t.txt.br": "application/x-brotli",
        "t.tar": "application/x-tar",
        "t.csv": "text/csv",
    }
    for key in expected:
        await st.write(key, b"x")
    assert {key: (await st.stat(key)).content_type for key in expected} == expected


async def test_list_leaves_content_type_to_stat(st: Storage) -> None:
    """S3's listing has no content type (one request per object would): no backend's has."""
    await st.write("r.csv", b"a,b\n")
    await st.write("blob", b"x", content_type="application/x-custom")
    listed = [(i.key, i.content_type) async for i in st.list()]
    assert listed == [("blob", None), ("r.csv", None)]
    assert (await st.stat("r.csv")).content_type == "text/csv"


@pytest.mark.parametrize(
    "content_type",
    ["", "text/plain\r\nX-Injected: 1", "tëxt/plain", " text/plain", "text/plain ", 123, b"a/b"],
)
async def test_bad_content_types_are_refused_before_any_io(st: Storage, content_type: Any) -> None:
    """A content type no backend can store as given is refused before any I/O, the same on
    every backend (memory:// kept it, file:// ignored it, S3 failed or altered it)."""
    error = TypeError if not isinstance(content_type, str) else ValueError
    await st.write("k", b"old", content_type="text/plain; charset=utf-8")
    with pytest.raises(error, match="content_type"):
        await st.write("k", b"new", content_type=content_type)
    with pytest.raises(error, match="content_type"):
        await st.write_text("k2", "new", content_type=content_type)
    with pytest.raises(error, match="content_type"):
        async with st.open("k3", "wb", content_type=content_type) as f:
            await f.write(b"new")
    assert await st.read("k") == b"old"
    assert [i.key async for i in st.list()] == ["k"]
    info = await st.stat("k")
    if st.url.dialect != "file":
        assert info.content_type == "text/plain; charset=utf-8"


async def test_failed_writes_leave_no_sub_prefix(st: Storage, tmp_path: Path) -> None:
    """A write that fails leaves nothing a listing shows: no object, and no sub-prefix (on
    file://, no directory made for it)."""
    await st.write("kept/x", b"1")
    with pytest.raises(ZeroDivisionError):
        async with st.open("ghost/sub/file.txt", "wb") as f:
            await f.write(b"data")
            raise ZeroDivisionError("the failure under test")

    async def failing() -> AsyncIterator[bytes]:
        yield b"partial"
        raise OSError("source broke")

    with pytest.raises(OSError, match="source broke"):
        await st.write("ghost2/deep/x.bin", failing())
    with pytest.raises(AlreadyExists):
        await st.write("kept/x", failing(), if_not_exists=True)
    with pytest.raises(NotFound):
        await st.copy("missing", "ghost3/copy")
    with pytest.raises(NotFound):
        await st.move("missing", "ghost4/moved")
    top = [(i.key, i.is_dir) async for i in st.list(recursive=False)]
    assert top == [("kept/", True)]
    assert [i.key async for i in st.list("ghost/", recursive=False)] == []
    assert [i.key async for i in st.list()] == ["kept/x"]
    assert await leftovers(st, tmp_path) == []


# -- streaming and files ---------------------------------------------------------------------


async def test_stream_chunks_and_early_close(st: Storage) -> None:
    payload = b"0123456789" * 1000
    await st.write("s.bin", payload)
    got = [chunk async for chunk in st.stream("s.bin", chunk_size=4096)]
    assert b"".join(got) == payload
    assert all(0 < len(c) <= 4096 for c in got)
    async with st.stream("s.bin", chunk_size=100) as stream:
        first = await stream.__anext__()
        assert payload.startswith(first)
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    with pytest.raises(ValueError, match="chunk_size"):
        st.stream("s.bin", chunk_size=0)


async def test_stream_chunks_are_full_but_the_last(st: Storage) -> None:
    """Every chunk holds `chunk_size` bytes but the last, on every backend: s3:// yielded
    what aiohttp had buffered (chunks of 144 or 536 bytes for 1,000 asked, mid-object)."""
    payload = os.urandom(1_024_000)
    await st.write("full.bin", payload)
    for size, sizes in ((1000, [1000] * 1024), (300_000, [300_000] * 3 + [124_000])):
        got = [chunk async for chunk in st.stream("full.bin", chunk_size=size)]
        assert b"".join(got) == payload
        assert [len(c) for c in got] == sizes


async def test_open_read_lines(st: Storage) -> None:
    lines = [f"line {i}\n".encode() for i in range(2000)] + [b"last without newline"]
    await st.write("log.txt", b"".join(lines))
    async with st.open("log.txt", "rb", chunk_size=1000) as f:
        assert await f.read(5) == b"line "
        assert await f.readline() == b"0\n"
        assert await f.readline(4) == b"line"
        rest = [line async for line in f]
    assert rest == [b" 1\n", *lines[2:]]
    f2 = await st.open("log.txt")
    try:
        assert await f2.read() == b"".join(lines)
        assert await f2.read(10) == b""
        assert await f2.readline() == b""
    finally:
        await f2.close()
    assert f2.closed
    with pytest.raises(ValueError, match="closed"):
        await f2.read()


async def test_open_read_and_readline_take_none_as_a_built_in_file_does(st: Storage) -> None:
    """``read(None)`` and ``readline(None)`` mean "no limit", as on a built-in file (and
    aiofiles): they raised `TypeError` comparing None with 0."""
    await st.write("n.txt", b"one\ntwo\nthree")
    async with st.open("n.txt", "rb", chunk_size=2) as f:
        assert await f.readline(None) == b"one\n"
        assert await f.read(None) == b"two\nthree"
        assert await f.read(None) == b""
        assert await f.readline(None) == b""


async def test_operations_begun_after_close_are_refused_on_every_backend(st: Storage) -> None:
    """A stream, a listing or a file opener made while the Storage was open, and first used
    after it was closed, raises `RuntimeError` ("not open") on every backend: memory:// went
    on serving them, so a test on it passed where file:// and S3 fail."""
    await st.write("k", b"data")
    stream = st.stream("k")
    listing = st.list()
    opener = st.open("k", "rb")
    writer = st.open("w", "wb")
    await st.aclose()
    with pytest.raises(RuntimeError, match="not open"):
        await stream.__anext__()
    with pytest.raises(RuntimeError, match="not open"):
        await listing.__anext__()
    with pytest.raises(RuntimeError, match="not open"):
        await opener
    with pytest.raises(RuntimeError, match="not open"):
        await writer


# each backend's ByteReader (module in asyncify_kit.storage._backends, class)
READERS = {
    "file": ("_file", "_FileReader"),
    "file+aiofiles": ("_aiofiles", "_AiofilesReader"),
    "s3": ("_s3", "_S3Reader"),
    "s3+boto3": ("_s3", "_S3Reader"),
    "memory": ("_memory", "_MemoryReader"),
}


class BrokenRead:
    """Breaks the next read of *scheme*'s readers once `arm`ed: it fetches its chunk for real,
    then never hands it over. It waits to be cancelled (*how* "cancelled": a timeout around a
    read whose thread had read, or whose network read had returned) or raises (*how*
    "failed": a connection that broke)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, scheme: str, how: str) -> None:
        module, name = READERS[scheme]
        cls = getattr(importlib.import_module(f"asyncify_kit.storage._backends.{module}"), name)
        self.real: Callable[[ByteReader, int], Awaitable[bytes]] = cls.read
        self.how = how
        self.reached = threading.Event()
        self.reader: ByteReader | None = None
        self.armed = False

        async def read(reader: ByteReader, size: int) -> bytes:
            data = await self.real(reader, size)
            if self.armed:
                self.armed = False
                self.reader = reader
                self.reached.set()
                if how == "failed":
                    raise StorageError("the connection broke (injected)")
                await anyio.sleep_forever()
            return data

        monkeypatch.setattr(cls, "read", read)

    async def interrupt(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Run *fn*, whose read breaks."""
        self.armed = True
        self.reached.clear()
        if self.how == "cancelled":
            assert await cancel_when(self.reached, fn)
        else:
            with pytest.raises(StorageError, match="injected"):
                await fn()

    async def released(self) -> bool:
        """Whether the broken reader was closed (a closed reader reads nothing or refuses)."""
        assert self.reader is not None
        try:
            return await self.real(self.reader, 1) == b""
        except ValueError:  # "read from a closed reader"
            return True


PAYLOAD = bytes(range(256)) * 64


@pytest.mark.parametrize("how", ["cancelled", "failed"])
async def test_file_read_on_after_a_broken_read_raises(
    st: Storage, scheme: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of an "rb" file that fails or is interrupted may have lost the chunk it was
    fetching: a caller that catches that and reads on must not get the bytes after the gap.
    The reader is released at once, and every later read raises."""
    await st.write("r.bin", PAYLOAD)
    broken = BrokenRead(monkeypatch, scheme, how)
    async with st.open("r.bin", "rb", chunk_size=4096) as f:
        assert await f.read(4096) == PAYLOAD[:4096]
        await broken.interrupt(lambda: f.read(4096))
        reads_on: list[Callable[[], Awaitable[bytes]]] = [
            lambda: f.read(10),
            f.readline,
            f.__anext__,
            f.read,
        ]
        for read_on in reads_on:
            with pytest.raises(StorageError, match="earlier read failed or was interrupted"):
                await read_on()
        assert await broken.released()
    assert f.closed
    assert await st.read("r.bin") == PAYLOAD  # other reads are unaffected


@pytest.mark.parametrize("how", ["cancelled", "failed"])
async def test_stream_after_a_broken_chunk_raises(
    st: Storage, scheme: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a chunk fetch that fails or is interrupted, a stream must not end as if the
    object were complete (nor go on after a gap): it releases its reader at once and every
    later fetch raises, also after leaving ``async with``; so does one whose open failed."""
    await st.write("r.bin", PAYLOAD)
    broken = BrokenRead(monkeypatch, scheme, how)
    async with st.stream("r.bin", chunk_size=4096) as stream:
        assert PAYLOAD.startswith(await stream.__anext__())
        await broken.interrupt(stream.__anext__)
        with pytest.raises(StorageError, match="earlier read failed or was interrupted"):
            await stream.__anext__()
        with pytest.raises(StorageError, match="earlier read failed or was interrupted"):
            async for _ in stream:
                pass
        assert await broken.released()
    with pytest.raises(StorageError, match="earlier read failed or was interrupted"):
        await stream.__anext__()

    stream = st.stream("missing")
    with pytest.raises(NotFound):
        await stream.__anext__()
    with pytest.raises(StorageError, match=r"earlier read .*\(NotFound\)"):
        await stream.__anext__()


async def test_open_write(st: Storage, tmp_path: Path) -> None:
    async with st.open("w/out.csv", "wb", chunk_size=64) as f:
        for i in range(500):
            assert await f.write(f"{i},{i * i}\n".encode()) > 0
            if i == 250:
                await f.flush()
        assert not await st.exists("w/out.csv")  # nothing visible before close
        with pytest.raises(StorageError, match="'wb' mode"):
            await f.read()
    expected = "".join(f"{i},{i * i}\n" for i in range(500)).encode()
    assert await st.read("w/out.csv") == expected
    assert (await st.stat("w/out.csv")).content_type == "text/csv"
    assert await leftovers(st, tmp_path) == []
    with pytest.raises(ValueError, match="mode"):
        st.open("w/out.csv", "ab")  # type: ignore[arg-type]


async def test_open_write_error_keeps_previous(st: Storage, tmp_path: Path) -> None:
    await st.write("keep.bin", b"previous")
    with pytest.raises(ZeroDivisionError):
        async with st.open("keep.bin", "wb", chunk_size=1024) as f:
            await f.write(b"n" * 6 * 1024 * 1024)  # one S3 part sent already
            1 / 0  # noqa: B018 - the failure under test
    assert await st.read("keep.bin") == b"previous"
    assert await leftovers(st, tmp_path) == []


async def test_interrupted_file_write_discards_the_file(st: Storage, tmp_path: Path) -> None:
    """A cancelled (or failed) ``write`` of a "wb" file may have lost the bytes it was handing
    to the backend, and earlier ones it had buffered: even when the caller catches that and
    goes on, the file refuses more writes and ``close`` publishes nothing."""
    await st.write("keep.bin", b"previous")
    f = await st.open("keep.bin", "wb", chunk_size=64 * 1024)
    try:
        await f.write(b"a" * (9 * MiB))  # S3: one part sent, 1 MiB left in its buffer
        with anyio.CancelScope() as scope:
            scope.cancel()  # a deadline already past: the next checkpoint is cancelled
            await f.write(b"b" * (8 * MiB))  # S3: the buffer and 7 MiB make the next part
        # memory:// hands data over without awaiting anything: nothing to interrupt
        assert scope.cancelled_caught or st.url.dialect == "memory"
        if scope.cancelled_caught:
            with pytest.raises(StorageError, match="interrupted"):
                await f.write(b"c")
            with pytest.raises(StorageError, match="interrupted"):
                await f.flush()
            with pytest.raises(StorageError, match="interrupted"):
                await f.close()
            assert f.closed
    finally:
        await f.abort()
    assert await st.read("keep.bin") == b"previous"
    assert await leftovers(st, tmp_path) == []

    if st.url.dialect == "memory":
        return
    with pytest.raises(StorageError, match="interrupted"):  # the caller carries on: no publish
        async with st.open("keep.bin", "wb", chunk_size=64 * 1024) as f:
            await f.write(b"a" * (9 * MiB))
            with anyio.move_on_after(0):
                await f.write(b"b" * (8 * MiB))
            await f.write(b"c")
    assert await st.read("keep.bin") == b"previous"
    assert await leftovers(st, tmp_path) == []


async def test_writer_refuses_to_commit_after_an_interrupted_write(
    st: Storage, tmp_path: Path
) -> None:
    """The same below `AsyncFile`, for a backend's own `ByteWriter`."""
    await st.write("keep.bin", b"previous")
    writer = await st.backend.open_writer("keep.bin", if_not_exists=False, content_type=None)
    try:
        await writer.write(b"a" * (9 * MiB))
        with anyio.CancelScope() as scope:
            scope.cancel()
            await writer.write(b"b" * (8 * MiB))
        assert scope.cancelled_caught  # memory:// too, which used to take the bytes at once
        with pytest.raises(StorageError, match="interrupted"):
            await writer.commit()
    finally:
        await writer.abort()
    assert await st.read("keep.bin") == b"previous"
    assert await leftovers(st, tmp_path) == []


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Files of this process cannot grow past *limit* bytes (``RLIMIT_FSIZE``): a write past it
    fails with ``EFBIG``, a real error of the file system call, as a full disk's ``ENOSPC``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the process is killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


FILE_CASES = [case for case in CASES if case[0].startswith("file")]


@pytest.mark.parametrize("case", FILE_CASES, ids=[f"{s}-{loop}" for s, loop in FILE_CASES])
async def test_a_flush_refused_by_the_disk_is_a_storage_error_and_leaves_nothing(
    st: Storage, tmp_path: Path
) -> None:
    """The bytes a flush hands over are refused (``EFBIG`` here; ``ENOSPC`` alike): a
    StorageError, the old object kept, and no temp file left open or on disk, even when the
    caller closes the file itself. On file+aiofiles, discarding the temp file closed it first,
    which flushed again, failed the same way, and skipped its removal: a raw OSError, and a
    ``.~asyncify-*`` file and its descriptor left behind."""
    await st.write("k", b"old")
    for closing in ("async with", "close()"):
        f = await st.open("k", "wb", chunk_size=64 * 1024)
        await f.write(b"x" * MiB)  # handed to the backend: on disk
        await f.write(b"y" * 100)  # kept in a buffer
        with pytest.raises(StorageError, match="too large") as info, file_size_limit(MiB):
            await f.flush()
        assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(StorageError, match="discarded"):
            if closing == "close()":
                await f.close()
            else:
                async with f:
                    pass
        assert await st.read("k") == b"old"
        assert await leftovers(st, tmp_path) == []
        assert [t for t in await held_under(tmp_path) if TEMP_PREFIX in t] == []


async def test_stream_write_failure_keeps_previous(st: Storage, tmp_path: Path) -> None:
    await st.write("keep.bin", b"previous")

    async def failing() -> AsyncIterator[bytes]:
        yield b"a" * (6 * 1024 * 1024)
        yield b"b" * (6 * 1024 * 1024)
        raise OSError("source broke")

    with pytest.raises(OSError, match="source broke"):
        await st.write("keep.bin", failing())
    assert await st.read("keep.bin") == b"previous"
    assert await leftovers(st, tmp_path) == []


async def test_cancelled_write_keeps_previous(st: Storage, tmp_path: Path) -> None:
    await st.write("keep.bin", b"previous")
    sent = anyio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * (6 * 1024 * 1024)
        yield b"b" * (6 * 1024 * 1024)
        sent.set()
        await anyio.sleep(3600)
        yield b"never"

    async with anyio.create_task_group() as tg:
        tg.start_soon(st.write, "keep.bin", slow())
        await sent.wait()
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert await st.read("keep.bin") == b"previous"
    assert await leftovers(st, tmp_path) == []

    with anyio.move_on_after(0.2):
        async with st.open("keep.bin", "wb") as f:
            await f.write(b"c" * (6 * 1024 * 1024))
            await anyio.sleep(3600)
    assert await st.read("keep.bin") == b"previous"
    assert await leftovers(st, tmp_path) == []


class Chunks:
    """The chunks of a streamed write, from an async generator that notes when it ends."""

    def __init__(self, *chunks: object, cancel: anyio.CancelScope | None = None) -> None:
        self.chunks = chunks
        self.cancel = cancel  # cancelled after the first chunk was taken
        self.finished = False

    async def gen(self) -> AsyncIterator[bytes]:
        try:
            for i, chunk in enumerate(self.chunks):
                if i == 1 and self.cancel is not None:
                    self.cancel.cancel()
                yield chunk  # type: ignore[misc]  # an int too, on purpose
        finally:
            self.finished = True


async def test_a_failed_stream_write_closes_the_generator_it_was_given(st: Storage) -> None:
    """A streamed write that fails or is cancelled once it has taken a chunk closes the async
    generator it was given: its ``finally`` has run when the error reaches the caller, as
    after a write that took every chunk. It was left suspended at its ``yield``, to be closed
    whenever the garbage collector found it (and trio warned that it was "garbage collected
    before it had been exhausted"). A generator the write never took a chunk from is left as
    it is: it can still be written elsewhere."""
    await st.write("keep.bin", b"previous")
    source = Chunks(b"good", 12)  # an int: TypeError, the generator suspended at its yield
    with pytest.raises(TypeError, match="yielded a int"):
        await st.write("keep.bin", source.gen())
    assert source.finished

    if st.url.dialect != "memory":  # memory:// takes chunks without awaiting: no cancel point
        with anyio.CancelScope() as scope:
            # the second chunk is a whole S3 part, sent at once: every backend awaits it
            source = Chunks(b"a" * 100, b"b" * (8 * MiB), b"never", cancel=scope)
            await st.write("keep.bin", source.gen())
        assert scope.cancelled_caught
        assert source.finished
    assert await st.read("keep.bin") == b"previous"

    source = Chunks(b"whole")
    unstarted = source.gen()
    with pytest.raises(AlreadyExists):
        await st.write("keep.bin", unstarted, if_not_exists=True)
    assert not source.finished
    await st.write("other.bin", unstarted)
    assert await st.read("other.bin") == b"whole"


# -- presign ---------------------------------------------------------------------------------


async def test_presign(st: Storage, scheme: str) -> None:
    await st.write("shared.txt", b"for your eyes")
    if scheme not in S3_SCHEMES:
        with pytest.raises(Unsupported, match="'s3'"):
            await st.presign("shared.txt")
        return
    url = await st.presign("shared.txt", expires=60)
    body = await anyio.to_thread.run_sync(lambda: urllib.request.urlopen(url, timeout=10).read())
    assert body == b"for your eyes"
    put_url = await st.presign("upload.txt", method="PUT", expires=60)
    request = urllib.request.Request(
        put_url, data=b"uploaded", method="PUT", headers={"Content-Type": "text/plain"}
    )
    await anyio.to_thread.run_sync(lambda: urllib.request.urlopen(request, timeout=10).read())
    assert await st.read("upload.txt") == b"uploaded"
    with pytest.raises(ValueError, match="expires"):
        await st.presign("shared.txt", expires=0)


def test_cases_cover_every_backend() -> None:
    from asyncify_kit._registry import backends

    schemes = {spec.scheme for spec in backends("storage")}
    assert schemes == {scheme for scheme, _ in CASES}
    trio_capable = {spec.scheme for spec in backends("storage") if spec.trio}
    assert trio_capable == {scheme for scheme, loop in CASES if loop == "trio"}


async def test_a_wb_file_dropped_open_leaves_nothing_once_the_storage_closes(
    url: str, tmp_path: Path
) -> None:
    """A "wb" file never closed (an exception between `open` and `close`, outside `async
    with`): file:// left its temp file and 3 descriptors for good, S3 its multipart upload
    (its writer was held weakly, so the close did not abort it)."""
    await run_sync(abs, -1)  # this loop's wake descriptor, if it has none yet
    fds = await run_sync(_open_fds)
    async with Storage(url) as st:

        async def drop() -> None:
            f = await st.open("k", "wb")
            await f.write(b"x" * (9 * MiB))  # S3: a part sent (8 MiB), so an upload is made
            await f.flush()

        await drop()
        gc.collect()
    async with Storage(url) as st:
        assert await leftovers(st, tmp_path) == []
        assert not await st.exists("k")
    assert await run_sync(_open_fds) <= fds


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
