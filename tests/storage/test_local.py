"""Behaviour specific to the local backends and to the facade itself: atomic replacement under
concurrent readers, cancellation of a one-hop write, configuration and options; cancellation
while a file opens, writes racing a delete that prunes their directory, failed writes leaving
no directory, listings without empty directories, reads longer than one system call."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncify_kit
from asyncify_kit import CallCancelled, ConfigError, check_cancelled
from asyncify_kit.storage import AlreadyExists, NotFound, ObjectInfo, Storage, StorageError
from asyncify_kit.storage._backends import _file
from asyncify_kit.storage._keys import TEMP_PREFIX
from tests.storage.local_helpers import cancel_when, fd_targets, held_under, returns_late

pytestmark = pytest.mark.anyio

OLD = b"o" * (4 * 1024 * 1024)
NEW = b"n" * (4 * 1024 * 1024 + 1)


async def temp_files(root: Path) -> list[Path]:
    return await anyio.to_thread.run_sync(lambda: list(root.rglob(f"{TEMP_PREFIX}*")))


async def test_readers_never_see_a_partial_object(tmp_path: Path) -> None:
    root = tmp_path / "root"
    seen: set[int] = set()
    async with Storage(f"file://{root}?fsync=false") as st:
        await st.write("hot.bin", OLD)

        async def writer() -> None:
            for i in range(20):
                await st.write("hot.bin", NEW if i % 2 == 0 else OLD)

        async def reader() -> None:
            for _ in range(40):
                data = await st.read("hot.bin")
                assert data in (OLD, NEW)
                seen.add(len(data))

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            for _ in range(3):
                tg.start_soon(reader)
    assert await temp_files(root) == []


async def test_cancelled_single_hop_write_keeps_old_or_new_and_no_temp(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outcomes = []
    async with Storage(f"file://{root}") as st:
        for delay in (0.0, 0.001, 0.003, 0.01, 0.03):
            await st.write("k.bin", OLD)
            with anyio.move_on_after(delay) as scope:
                await st.write("k.bin", NEW)
            data = await st.read("k.bin")
            assert data in (OLD, NEW)
            outcomes.append((scope.cancelled_caught, data == OLD))
            assert await temp_files(root) == []
    assert any(cancelled and kept for cancelled, kept in outcomes), outcomes


async def test_options_and_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"'fsink'.*known options: atomic, create, fsync, pool"):
        Storage(f"file://{tmp_path}?fsink=1")
    with pytest.raises(ConfigError, match=r"'fsync'.*true or false"):
        Storage(f"file://{tmp_path}?fsync=perhaps")
    with pytest.raises(ConfigError, match="multipart_chunksize"):
        Storage("s3://bucket?multipart_chunksize=1024")
    with pytest.raises(ConfigError, match="unknown storage backend 'ftp'"):
        Storage("ftp://host/x")
    with pytest.raises(ConfigError, match="no bucket"):
        async with Storage("s3+boto3:///prefix"):
            pass
    with pytest.raises(NotFound):
        async with Storage(f"file://{tmp_path / 'absent'}?create=false"):
            pass
    assert not await anyio.Path(tmp_path / "absent").exists()

    monkeypatch.setenv("ASYNCIFY_STORAGE_URL", f"file://{tmp_path / 'from-env'}")
    async with Storage() as st:
        await st.write("x", b"1")
    assert await anyio.Path(tmp_path / "from-env" / "x").read_bytes() == b"1"
    monkeypatch.delenv("ASYNCIFY_STORAGE_URL")
    monkeypatch.chdir(tmp_path)
    async with Storage() as st:  # the embedded default: file://./data
        await st.write("y", b"2")
    assert await anyio.Path(tmp_path / "data" / "y").read_bytes() == b"2"


async def test_pool_option_runs_in_that_pool(tmp_path: Path) -> None:
    from asyncify_kit import configure, stats

    configure(pools={"storage-test": 2})
    before = stats("storage-test").completed
    async with Storage(f"file://{tmp_path}?pool=storage-test") as st:
        await st.write("a/b", b"1")
        assert await st.read("a/b") == b"1"
        assert [i.key async for i in st.list()] == ["a/b"]
    assert stats("storage-test").completed >= before + 3
    with pytest.raises(ConfigError, match="unknown pool 'nope'"):
        async with Storage(f"file://{tmp_path}?pool=nope"):
            pass


async def test_open_twice_and_reuse(tmp_path: Path) -> None:
    storage = Storage("memory://")
    async with storage:
        with pytest.raises(RuntimeError, match="already open"):
            await storage.__aenter__()
        assert "open" in repr(storage)
    async with storage:  # reopened after closing
        await storage.write("a", b"1")


async def test_named_memory_stores_are_shared(tmp_path: Path) -> None:
    async with Storage("memory://shared-test") as a, Storage("memory://shared-test") as b:
        await a.write("k", b"v")
        assert await b.read("k") == b"v"
        await b.delete("k")
    async with Storage("memory://") as c, Storage("memory://") as d:
        await c.write("k", b"v")
        assert not await d.exists("k")


async def test_file_layout_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "root"
    async with Storage(f"file://{root}") as st:
        await st.write("a/b/c.txt", b"deep")
        assert await anyio.Path(root / "a" / "b" / "c.txt").read_bytes() == b"deep"
        await st.delete("a/b/c.txt")
        assert not await anyio.Path(root / "a").exists()  # empty directories pruned, as S3
        await st.write("x/1", b"1")
        await st.write("x/2", b"2")
        await st.delete("x/1")
        assert await anyio.Path(root / "x").exists()
        mode = (await anyio.Path(root / "x" / "2").stat()).st_mode & 0o777
        assert mode == 0o666 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


async def test_one_thread_hop_per_operation(tmp_path: Path) -> None:
    """file:// runs each operation as a single call in its pool; lines cost a hop per chunk."""
    from asyncify_kit import configure, stats

    configure(pools={"hop-count": 4})

    def hops() -> int:
        return stats("hop-count").completed

    async def settled(expected: int) -> int:
        """The pool's count once the worker has booked its call (just after waking us)."""
        with anyio.move_on_after(2):
            while hops() < expected:
                await anyio.sleep(0.001)
        await anyio.sleep(0.01)
        return hops()

    async with Storage(f"file://{tmp_path}?pool=hop-count") as st:
        operations: list[Callable[[], Awaitable[object]]] = [
            lambda: st.write("dir/a.txt", b"x" * 10_000),
            lambda: st.read("dir/a.txt"),
            lambda: st.read("dir/a.txt", offset=5, length=5),
            lambda: st.stat("dir/a.txt"),
            lambda: st.exists("dir/a.txt"),
            lambda: st.copy("dir/a.txt", "dir/b.txt"),
            lambda: st.move("dir/b.txt", "c.txt"),
            lambda: st.delete("c.txt"),
        ]
        for operation in operations:
            before = await settled(0)
            await operation()
            assert await settled(before + 1) == before + 1
        await st.write("lines.txt", b"".join(b"line %d\n" % i for i in range(10_000)))
        before = await settled(0)
        async with st.open("lines.txt", chunk_size=64 * 1024) as f:
            count = sum([1 async for _ in f])
        assert count == 10_000
        # open + ceil(88,890 bytes / 64 KiB) = 2 reads + the empty read at the end + close
        assert await settled(before + 4) - before <= 5


# -- cancellation, concurrent deletes and failures on the local backends ---------------------

LOCAL = [("file", "asyncio"), ("file", "trio"), ("file+aiofiles", "asyncio")]
local_cases = pytest.mark.parametrize(
    ("scheme", "anyio_backend"), LOCAL, ids=[f"{s}-{b}" for s, b in LOCAL]
)


@local_cases
@pytest.mark.parametrize("what", ["wb", "rb", "stream"])
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
async def test_cancelled_open_leaks_nothing(
    scheme: str, what: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while its thread opens the file: what was opened (a descriptor, a temp
    file with its directory's descriptor) is closed and removed for the caller."""
    from asyncify_kit.storage._backends import _aiofiles, _file

    root = tmp_path / "root"
    opened = threading.Event()
    module: Any = _aiofiles if scheme == "file+aiofiles" else _file
    if what == "wb":
        name = "begin_stream" if scheme == "file+aiofiles" else "begin_write"
    else:
        name = "open_beneath"
    async with Storage(f"{scheme}://{root}") as st:
        await st.write("k/obj.txt", b"old")
        monkeypatch.setattr(module, name, returns_late(getattr(module, name), opened))

        async def use() -> None:
            if what == "stream":
                async with st.stream("k/obj.txt") as chunks:
                    async for _ in chunks:
                        pass
            elif what == "wb":
                async with st.open("k/obj.txt", "wb") as f:
                    await f.write(b"new")
            else:
                async with st.open("k/obj.txt", "rb") as f:
                    await f.read()

        cancelled = await cancel_when(opened, use)
        monkeypatch.undo()
        assert cancelled
        with anyio.move_on_after(5):  # released by a worker of the pool, not by the caller
            while await held_under(root) or await temp_files(root):
                await anyio.sleep(0.01)
        assert await held_under(root) == []
        assert await temp_files(root) == []
        assert await st.read("k/obj.txt") == b"old"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_cancelled_storage_open_leaks_no_root_descriptor(
    anyio_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncify_kit.storage._backends import _file

    root = tmp_path / "root"
    opened = threading.Event()
    monkeypatch.setattr(_file, "_open_root", returns_late(_file._open_root, opened))
    storage = Storage(f"file://{root}")
    task = asyncio.ensure_future(storage.__aenter__())  # a native asyncio cancellation
    with anyio.fail_after(5):
        while not opened.is_set():
            await anyio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with anyio.move_on_after(5):
        while str(root) in await anyio.to_thread.run_sync(fd_targets):
            await anyio.sleep(0.01)
    assert str(root) not in await anyio.to_thread.run_sync(fd_targets)


WRITE_PATHS: dict[str, tuple[str, Callable[[Storage], Awaitable[object]]]] = {
    # small and fsync=false: in turn on the directory's queue (spare file or temp file)
    "write small": ("?fsync=false", lambda st: st.write("d/e/new", b"data")),
    "write fsync": ("", lambda st: st.write("d/e/new", b"data")),
    "write in place": ("?atomic=false", lambda st: st.write("d/e/new", b"data")),
    "write large": ("?fsync=false", lambda st: st.write("d/e/new", b"data" * 100_000)),
    "open wb": ("", lambda st: _write_file_object(st)),
    "copy": ("", lambda st: st.copy("src", "d/e/new")),
    "move": ("", lambda st: st.move("src", "d/e/new")),
}


async def _write_file_object(st: Storage) -> None:
    async with st.open("d/e/new", "wb") as f:
        await f.write(b"data")


@pytest.mark.parametrize(
    ("scheme", "anyio_backend", "path"),
    [
        pytest.param(scheme, loop, path, id=f"{scheme}-{loop}-{path}")
        for scheme, loop in LOCAL
        for path in WRITE_PATHS
        if not (scheme == "file+aiofiles" and "?atomic=false" in WRITE_PATHS[path][0])
    ],
)
async def test_a_write_survives_a_sibling_delete_pruning_its_directory(
    scheme: str, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete prunes the directories it empties (as S3 has no empty prefixes). A write of
    another key that is making its way down those directories at that moment makes them
    again, instead of failing with NotFound."""
    from asyncify_kit.storage._backends import _file

    query, write = WRITE_PATHS[path]
    root = tmp_path / "root"
    real_mkdir = os.mkdir
    pruned: list[str] = []

    async with Storage(f"{scheme}://{root}{query}") as st:
        root_fd = st.backend.root_fd  # type: ignore[attr-defined]

        def mkdir(name: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
            if name == "e" and not pruned:
                # the delete of d/sibling, run at the worst moment: the write has opened
                # d and is about to make d/e in it; d, now empty, is removed
                _file._delete_file(root_fd, ["d", "sibling"], False, False)
                pruned.append(name)
            real_mkdir(name, mode, dir_fd=dir_fd)

        await st.write("src", b"data")
        await st.write("d/sibling", b"x")
        if path == "write small" and scheme == "file":
            # a spare file made for d/e (Linux), whose directory is then pruned: the write
            # sets it aside and makes d/e again, with a temp file of its own
            await st.write("d/e/prep", b"x")
            lanes = st.backend._serial  # type: ignore[attr-defined]
            with anyio.fail_after(5):
                while not lanes[("d", "e")].queue.idle:
                    await anyio.sleep(0.001)
            await st.delete("d/e/prep")
        monkeypatch.setattr(os, "mkdir", mkdir)
        await write(st)
        monkeypatch.undo()
        assert pruned == ["e"]
        assert await st.read("d/e/new") == (b"data" * 100_000 if path == "write large" else b"data")
        assert not await st.exists("d/sibling")
    assert await temp_files(root) == []


@local_cases
async def test_failed_writes_remove_the_directories_they_made(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails or is cancelled removes the directories it made (still empty), as
    a delete prunes them: on S3 no prefix outlives its last object."""
    from asyncify_kit.storage._backends import _file

    root = tmp_path / "root"
    async with Storage(f"{scheme}://{root}?fsync=false") as st:
        await st.write("a/kept", b"1")
        with pytest.raises(ZeroDivisionError):
            async with st.open("a/b/c/new.txt", "wb") as f:
                await f.write(b"data")
                raise ZeroDivisionError("the failure under test")
        with anyio.CancelScope() as scope:  # cancelled inside the block, before its publish
            async with st.open("x/y/new.txt", "wb") as f:
                await f.write(b"data")
                scope.cancel()
                await anyio.sleep(1)
        assert scope.cancelled_caught
        if scheme == "file":
            real_write_all = _file._write_all

            def no_space(fd: int, data: bytes | memoryview) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(_file, "_write_all", no_space)
            for key in ("f/g/small", "h/i/large"):
                with pytest.raises(StorageError, match="No space left"):
                    await st.write(key, b"x" if key.endswith("small") else b"x" * 300_000)
            monkeypatch.undo()

            entered = threading.Event()

            def until_cancelled(fd: int, data: bytes | memoryview) -> None:
                real_write_all(fd, data)
                entered.set()
                with contextlib.suppress(CallCancelled):
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        check_cancelled()
                        time.sleep(0.001)

            monkeypatch.setattr(_file, "_write_all", until_cancelled)
            # a single-hop write, cancelled in its thread
            cancelled = await cancel_when(entered, lambda: st.write("j/k/new", b"data"))
            monkeypatch.undo()
            assert cancelled

            def cross_device(*args: object, **kwargs: object) -> None:
                raise OSError(errno.EXDEV, "Invalid cross-device link")

            monkeypatch.setattr(os, "rename", cross_device)
            with pytest.raises(StorageError, match="cross-device"):
                await st.move("a/kept", "m/n/moved")
            monkeypatch.undo()
        listing = await anyio.to_thread.run_sync(
            lambda: sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        )
        assert listing == ["a", "a/kept"]


@local_cases
@pytest.mark.parametrize("end", ["abort", "cancel"])
async def test_a_failed_write_removes_the_directories_a_delete_could_not(
    scheme: str, end: str, tmp_path: Path
) -> None:
    """A delete of a directory's last object cannot remove the directory while another
    write's temp file is in it; when that write then fails or is cancelled, it removes its
    temp file and the directories left empty, though another write made them. Only the
    directories a failed write had made were removed: the two were left, empty, for good
    (found by tests/storage/test_cancellation_storm.py)."""
    root = tmp_path / "root"
    async with Storage(f"{scheme}://{root}?fsync=false") as st:
        await st.write("a/b/k", b"old")  # makes a/ and a/b/
        with anyio.CancelScope() as scope:
            with contextlib.suppress(ZeroDivisionError):
                async with st.open("a/b/k", "wb") as f:  # its temp file goes into a/b/
                    await f.write(b"new")
                    await f.flush()
                    await st.delete("a/b/k")  # a/b/ still holds the temp file: kept
                    assert await temp_files(root) != []
                    if end == "cancel":
                        scope.cancel()
                        await anyio.sleep(1)
                    raise ZeroDivisionError("the failure under test")
        assert scope.cancelled_caught == (end == "cancel")
        assert not await st.exists("a/b/k")
        assert await anyio.to_thread.run_sync(lambda: list(root.iterdir())) == []
        await st.write("a/b/k", b"again")  # the directories are made again
        assert await st.read("a/b/k") == b"again"


@local_cases
async def test_a_cancelled_listing_has_closed_its_directory_when_it_returns(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing cancelled while a worker read a page has closed what it opened (its
    directory) when the cancellation reaches the caller, as a cancelled read has closed its
    file, so that leaving the Storage just after leaves nothing open and no thread busy.
    The listing's generator was closed later, by its own thread, after the caller had left
    (found by tests/storage/test_cancellation_storm.py: a pool thread still busy once the
    Storage was closed)."""
    root = tmp_path / "root"
    closed = threading.Event()
    read = threading.Event()

    def pages(root_fd: int, prefix: str, recursive: bool) -> Any:
        try:
            read.set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the page comes back once the caller left
                try:
                    check_cancelled()
                except CallCancelled:
                    break
                time.sleep(0.001)
            yield [ObjectInfo("d/k", 1)]
        finally:
            time.sleep(0.05)  # a directory slow to close
            closed.set()

    monkeypatch.setattr(_file, "_list_pages", pages)
    async with Storage(f"{scheme}://{root}") as st:
        assert await cancel_when(read, lambda: st.list("d/").__anext__())
        assert closed.is_set()
        assert asyncify_kit.stats().running == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("scheme", ["file", "file+aiofiles"])
async def test_list_shows_no_sub_prefix_for_a_directory_without_objects(
    anyio_backend: str, scheme: str, tmp_path: Path
) -> None:
    """As on S3, a sub-prefix exists only while an object lies under it: an empty directory
    (made by hand, left by a crash) or one holding only a write's temp file is none."""
    root = tmp_path / "root"

    def layout() -> None:
        (root / "empty" / "deeper").mkdir(parents=True)
        (root / "pending").mkdir()
        (root / "pending" / f"{TEMP_PREFIX}0-1.tmp").write_bytes(b"half written")
        (root / "full" / "deep" / "er").mkdir(parents=True)
        (root / "full" / "deep" / "er" / "obj").write_bytes(b"x")

    await anyio.to_thread.run_sync(layout)
    async with Storage(f"{scheme}://{root}") as st:
        top = [(i.key, i.is_dir) async for i in st.list(recursive=False)]
        assert top == [("full/", True)]
        assert [i.key async for i in st.list("full/", recursive=False)] == ["full/deep/"]
        assert [i.key async for i in st.list("empty/", recursive=False)] == []
        assert [i.key async for i in st.list()] == ["full/deep/er/obj"]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_read_goes_on_after_a_capped_read(
    anyio_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux reads at most 2 GiB - 4 KiB in one call: a short ``pread`` before the end is
    not the end (here the cap is made 1,000 bytes). file+aiofiles reads through a buffered
    file object, which goes on by itself."""
    root = tmp_path / "root"
    real_pread = os.pread

    def capped(fd: int, n: int, offset: int) -> bytes:
        return real_pread(fd, min(n, 1000), offset)

    payload = bytes(range(256)) * 20
    async with Storage(f"file://{root}") as st:
        await st.write("k", payload)
        monkeypatch.setattr(os, "pread", capped)
        assert await st.read("k") == payload
        assert await st.read("k", offset=100) == payload[100:]
        assert await st.read("k", offset=100, length=3000) == payload[100:3100]


async def test_a_key_cannot_also_be_a_prefix_on_file(tmp_path: Path) -> None:
    """Keys are files and prefixes directories: ``a`` and ``a/b`` cannot both be objects (S3
    and memory:// allow it). The refusal is a plain `StorageError` that says why, the object
    already there is kept, and nothing is left behind."""
    await refused_key_and_prefix(tmp_path / "root", "file")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # aiofiles runs on asyncio only
async def test_a_key_cannot_also_be_a_prefix_on_file_aiofiles(tmp_path: Path) -> None:
    await refused_key_and_prefix(tmp_path / "root", "file+aiofiles")


async def refused_key_and_prefix(root: Path, scheme: str) -> None:
    why = "a path component is a file, or the key is a directory"
    async with Storage(f"{scheme}://{root}?fsync=false") as st:
        await st.write("a/b", b"under a")
        await st.write("f", b"a file")
        for key, into in (("a", "a directory"), ("f/g", "under a file")):
            for attempt in (st.write(key, b"x"), st.copy("a/b" if key != "a/b" else "f", key)):
                with pytest.raises(StorageError, match=why) as caught:
                    await attempt
                assert type(caught.value) is StorageError, into
        with pytest.raises(StorageError, match=why):
            async with st.open("f/g", "wb") as out:
                await out.write(b"x")
        assert await st.read("a/b") == b"under a"
        assert await st.read("f") == b"a file"
        assert sorted([info.key async for info in st.list("")]) == ["a/b", "f"]
    assert await temp_files(root) == []


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("scheme", ["file", "memory"])
async def test_file_delete_missing_ok_of_a_key_under_an_object(
    anyio_backend: str, scheme: str, tmp_path: Path
) -> None:
    """``f/g`` is no object while ``f`` is one: ``delete(missing_ok=True)`` does nothing, as
    on memory:// (file:// raised `NotFound`: the walk met a file where a directory was)."""
    url = f"file://{tmp_path / 'root'}" if scheme == "file" else "memory://"
    async with Storage(url) as st:
        await st.write("f", b"an object")
        await st.delete("f/g", missing_ok=True)
        await st.delete("f/g/h", missing_ok=True)
        with pytest.raises(NotFound):
            await st.delete("f/g")
        assert await st.read("f") == b"an object"


def _remove_deep(path: Path) -> None:
    """Remove the directory *path* and all under it, depth first without recursion, through
    descriptors: `shutil.rmtree` (and so pytest's cleanup of old ``tmp_path`` directories)
    recurses once per level and fails on a tree 1,500 levels deep."""
    names: list[str] = []
    try:
        fds = [os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)]
    except FileNotFoundError:  # the layout failed before making it
        return
    try:
        while fds:
            sub = None
            with os.scandir(fds[-1]) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fds[-1])
            if sub is not None:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                fds.append(os.open(sub, flags, dir_fd=fds[-1]))
                names.append(sub)
                continue
            os.close(fds.pop())
            if fds:
                os.rmdir(names.pop(), dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)
    os.rmdir(path)


def _nested(root: Path, names: list[str], leaf: str) -> None:
    """Make the directories *names* under *root*, one inside the other (through descriptors:
    the whole path may be longer than PATH_MAX), and an empty file *leaf* in the last one."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        os.close(os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o666, dir_fd=fd))
    finally:
        os.close(fd)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_file_list_of_deep_trees_and_over_long_keys(
    anyio_backend: str, tmp_path: Path
) -> None:
    """A key of 1,023 bytes can be 512 segments deep: listing it, recursively or not, works
    (a non-recursive listing raised `RecursionError` looking for an object below ``a/``).
    Files under keys longer than 1,024 bytes (left by another tool) are skipped, as on S3,
    never listed as keys that every other call refuses; a directory holding nothing else is
    no sub-prefix; and a tree deeper than any key raised `RecursionError` too."""
    root = tmp_path / "root"
    deep = ["a"] * 511  # "a/" * 511 + "x": 1,023 bytes
    wide = ["long", "c" * 250, "d" * 250, "e" * 250, "f" * 250]  # + "/y": 1,010 bytes
    over = ["over", "c" * 250, "d" * 250, "e" * 250, "f" * 250]  # + "/" + 250: 1,260 bytes

    def layout() -> None:
        root.mkdir()
        _nested(root, deep, "x")
        _nested(root, ["b"] * 1500, "x")
        _nested(root, wide, "y")
        _nested(root, [*wide, "g" * 250], "z")
        _nested(root, over, "g" * 250)

    try:
        await anyio.to_thread.run_sync(layout)
        await list_deep_trees(root, deep, wide)
    finally:
        await anyio.to_thread.run_sync(_remove_deep, root)


async def list_deep_trees(root: Path, deep: list[str], wide: list[str]) -> None:
    deep_key = "/".join([*deep, "x"])
    wide_key = "/".join([*wide, "y"])
    async with Storage(f"file://{root}") as st:
        assert [i.key async for i in st.list()] == [deep_key, wide_key]
        top = [(i.key, i.is_dir) async for i in st.list(recursive=False)]
        assert top == [("a/", True), ("long/", True)]
        assert [i.key async for i in st.list("/".join(wide) + "/", recursive=False)] == [wide_key]
        assert [i.key async for i in st.list("a/a/", recursive=False)] == ["a/a/a/"]
        assert [i.key async for i in st.list("b")] == []
        assert [i.key async for i in st.list("over/", recursive=False)] == []
        assert await st.read(deep_key) == b""
        assert (await st.stat(wide_key)).size == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_file_move_onto_a_hard_link_of_the_same_file(
    anyio_backend: str, tmp_path: Path
) -> None:
    """Two keys that are hard links of one file (made by another tool): a move of one onto
    the other leaves only the destination, as on memory:// (``rename`` of two links of one
    file does nothing, so both stayed)."""
    root = tmp_path / "root"
    async with Storage(f"file://{root}") as st:
        await st.write("d/one", b"shared")
        await st.write("other", b"unrelated")
        await anyio.to_thread.run_sync(os.link, root / "d" / "one", root / "two")
        await st.move("d/one", "two")
        assert not await st.exists("d/one")
        assert await st.read("two") == b"shared"
        assert [i.key async for i in st.list()] == ["other", "two"]
        assert await anyio.to_thread.run_sync(lambda: sorted(os.listdir(root))) == [
            "other",
            "two",
        ]
        assert (await anyio.to_thread.run_sync(os.stat, root / "two")).st_nlink == 1


def _reuse_descriptor(number: int, directory: Path) -> None:
    """Open *directory* under the descriptor *number* (just closed): what the next open of
    the process, another `Storage` opening its ROOT for one, gets."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if fd != number:
        with pytest.raises(OSError) as free:
            os.fstat(number)
        assert free.value.errno == errno.EBADF
        os.dup2(fd, number, inheritable=False)
        os.close(fd)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_file_listing_and_writes_that_outlive_their_storage_stay_in_its_root(
    anyio_backend: str, tmp_path: Path
) -> None:
    """A listing paused between pages and a file open for writing, used on after their
    `Storage` was closed and the number of its descriptor of ROOT given to another
    directory: they go on in their own ROOT (the listing reported the other directory's
    files and skipped its own; a write's rename looked for its temp file in the other
    directory, raised `NotFound` and left the temp file behind)."""
    mine, other = tmp_path / "mine", tmp_path / "other"

    def fill() -> None:
        mine.mkdir()
        other.mkdir()
        for i in range(1500):
            (mine / f"k{i:05}").write_bytes(b"one")
            if i >= 1200:
                (other / f"k{i:05}").write_bytes(b"other store")
        (other / "new").write_bytes(b"the other store's own")

    await anyio.to_thread.run_sync(fill)
    async with Storage(f"file://{mine}") as st:
        number = backend_fd(st)
        listing = st.list()
        first = [await listing.__anext__() for _ in range(1000)]
        atomic = await st.open("new", "wb")
        await atomic.write(b"written after")
        nested = await st.open("made/for/it", "wb")
        await nested.write(b"discarded")
    await anyio.to_thread.run_sync(_reuse_descriptor, number, other)
    try:
        rest = [info async for info in listing]
        await atomic.close()
        await nested.abort()
    finally:
        await anyio.to_thread.run_sync(os.close, number)
    assert [i.key for i in first + rest] == [f"k{i:05}" for i in range(1500)]
    assert {i.size for i in first + rest} == {3}
    assert (await anyio.to_thread.run_sync((mine / "new").read_bytes)) == b"written after"
    assert (await anyio.to_thread.run_sync((other / "new").read_bytes)) == (
        b"the other store's own"
    )
    assert not await anyio.to_thread.run_sync((mine / "made").exists)
    assert await temp_files(tmp_path) == []
    assert str(mine) not in await anyio.to_thread.run_sync(fd_targets)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # aiofiles runs on asyncio only
async def test_file_aiofiles_writer_that_outlives_its_storage_stays_in_its_root(
    tmp_path: Path,
) -> None:
    """As above for ``file+aiofiles://``'s ``open(key, "wb")``: its temp file and rename stay
    in its own ROOT when the `Storage`'s descriptor number goes to another directory."""
    mine, other = tmp_path / "mine", tmp_path / "other"

    def fill() -> None:
        mine.mkdir()
        other.mkdir()
        (other / "new").write_bytes(b"the other store's own")

    await anyio.to_thread.run_sync(fill)
    async with Storage(f"file+aiofiles://{mine}") as st:
        number = backend_fd(st)
        written = await st.open("new", "wb")
        await written.write(b"written after")
    await anyio.to_thread.run_sync(_reuse_descriptor, number, other)
    try:
        await written.close()
    finally:
        await anyio.to_thread.run_sync(os.close, number)
    assert (await anyio.to_thread.run_sync((mine / "new").read_bytes)) == b"written after"
    assert (await anyio.to_thread.run_sync((other / "new").read_bytes)) == (
        b"the other store's own"
    )
    assert await temp_files(tmp_path) == []
    assert str(mine) not in await anyio.to_thread.run_sync(fd_targets)


def backend_fd(st: Storage) -> int:
    from asyncify_kit.storage._backends import _file

    backend = st.backend
    assert isinstance(backend, _file.FileBackend)
    return backend.root_fd


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("scheme", ["file", "memory"])
@pytest.mark.parametrize("op", ["copy", "move"])
async def test_file_copy_or_move_from_a_key_under_an_object_is_not_found(
    anyio_backend: str, scheme: str, op: str, tmp_path: Path
) -> None:
    """``f/g`` is no object while ``f`` is one: copying or moving it raises `NotFound` naming
    it, as on memory:// (file:// raised a plain `StorageError`, "cannot write" the
    destination, treating the source's walk as the destination's)."""
    url = f"file://{tmp_path / 'root'}" if scheme == "file" else "memory://"
    async with Storage(url) as st:
        await st.write("f", b"an object")
        with pytest.raises(NotFound, match="'f/g'"):
            await getattr(st, op)("f/g", "d/x")
        assert [i.key async for i in st.list()] == ["f"]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("op", ["copy", "move"])
async def test_file_copy_and_move_errors_name_the_key_at_fault(
    anyio_backend: str, op: str, tmp_path: Path
) -> None:
    """A destination refused (a symbolic link there, a directory holding other objects)
    is named in the error, not the source, even when both end with the same segment; a
    missing source is named as the source."""
    from asyncify_kit.storage import InvalidPath

    root = tmp_path / "root"
    async with Storage(f"file://{root}") as st:
        await st.write("a/f", b"source")
        await st.write("k/x", b"under k")

        def plant() -> None:
            (root / "b").mkdir()
            (root / "b" / "f").symlink_to(root / "a" / "f")

        await anyio.to_thread.run_sync(plant)
        run = getattr(st, op)
        with pytest.raises(InvalidPath, match=r"^'b/f' in .* symbolic link"):
            await run("a/f", "b/f")
        with pytest.raises(StorageError, match=r"^cannot write 'k' in .*the key is a directory"):
            await run("a/f", "k")
        with pytest.raises(NotFound, match=r"^no object 'a/missing' in "):
            await run("a/missing", "k/y")
        assert await st.read("a/f") == b"source"
        assert await st.read("k/x") == b"under k"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_file_cancelled_copy_stops_at_the_next_chunk(
    anyio_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy cancelled while it runs stops before its next chunk, leaving the old
    destination and no temp file: it used to copy the whole source (minutes for a large
    one, with the caller waiting), then throw the copy away."""
    from asyncify_kit.storage._backends import _file

    root = tmp_path / "root"
    monkeypatch.setattr(_file, "_COPY_CHUNK", 1024)
    started = threading.Event()
    chunks = []
    real_write = _file.TempFile.write

    def write(self: _file.TempFile, data: bytes | memoryview) -> None:
        """Write, and the first time return only once the copy's caller is cancelled."""
        chunks.append(len(data))
        real_write(self, data)
        if started.is_set():
            return
        started.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                check_cancelled()
            except CallCancelled:
                return
            time.sleep(0.001)

    async with Storage(f"file://{root}") as st:
        await st.write("src", b"s" * 64 * 1024)
        await st.write("dst", b"old")
        monkeypatch.setattr(_file.TempFile, "write", write)
        assert await cancel_when(started, lambda: st.copy("src", "dst"))
        monkeypatch.undo()
        assert chunks == [1024]
        assert await st.read("dst") == b"old"
        assert await temp_files(root) == []


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("query", ["?fsync=false", "", "?atomic=false"])
async def test_file_if_not_exists_onto_a_prefix_is_refused_as_without_it(
    anyio_backend: str, query: str, tmp_path: Path
) -> None:
    """With ``a/b`` stored, ``a`` is no object (``exists`` says so): writing it with
    ``if_not_exists=True`` is refused as any write to it is, with the plain `StorageError`
    the docs give, not `AlreadyExists` ("object 'a' already exists"). So is a directory
    holding only an empty directory. (An empty directory makes way: see
    `test_file_an_empty_directory_at_a_key_makes_way_for_a_write`.)"""
    root = tmp_path / "root"
    why = "a path component is a file, or the key is a directory"
    async with Storage(f"file://{root}{query}") as st:
        await st.write("a/b", b"under a")
        await anyio.to_thread.run_sync(lambda: (root / "nested" / "empty").mkdir(parents=True))
        for key in ("a", "nested"):
            assert not await st.exists(key)
            for data in (b"small", b"large" * 100_000):
                with pytest.raises(StorageError, match=why) as caught:
                    await st.write(key, data, if_not_exists=True)
                assert type(caught.value) is StorageError
            with pytest.raises(StorageError, match=why) as caught:
                async with st.open(key, "wb", if_not_exists=True) as out:
                    await out.write(b"x")
            assert type(caught.value) is StorageError
        assert [i.key async for i in st.list()] == ["a/b"]
    assert await temp_files(root) == []


@pytest.mark.parametrize(
    ("scheme", "query", "anyio_backend"),
    [
        ("file", "?fsync=false", "asyncio"),
        ("file", "?fsync=false", "trio"),
        ("file", "", "asyncio"),
        ("file", "?atomic=false", "asyncio"),
        ("file", "?atomic=false&fsync=false", "trio"),
        ("file+aiofiles", "?fsync=false", "asyncio"),
        ("file+aiofiles", "", "asyncio"),
    ],
)
async def test_file_an_empty_directory_at_a_key_makes_way_for_a_write(
    scheme: str, query: str, anyio_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty directory at a key (left by a crash or made by another tool) holds no
    object: ``exists`` is False and listings leave it out, as S3 shows no prefix without an
    object. Every way of writing the key (small and large writes, into a spare file or
    not, ``if_not_exists``, ``open(key, "wb")``, ``copy``, ``move``) removes it and puts the
    object there; it used to fail with "the key is a directory"."""
    root = tmp_path / "root"
    spare_met: list[BaseException] = []  # what the spare-file writes met
    real_write_spare = _file._write_spare

    def write_spare(*args: Any) -> bool:
        try:
            return real_write_spare(*args)
        except BaseException as exc:
            spare_met.append(exc)
            raise

    monkeypatch.setattr(_file, "_write_spare", write_spare)

    def mkdirs(*names: str) -> None:
        for name in names:
            (root / name).mkdir()

    async with Storage(f"{scheme}://{root}{query}") as st:
        await st.write("src", b"source")  # a spare file is made for ROOT's next small write
        await st.write("d/src", b"in d")  # and for d/'s
        ways: dict[str, Callable[[str], Awaitable[object]]] = {
            "small": lambda key: st.write(key, b"new"),
            "large": lambda key: st.write(key, b"L" * 400_000),  # past the queued writes' size
            "if_not_exists": lambda key: st.write(key, b"new", if_not_exists=True),
            "copy": lambda key: st.copy("src", key),
        }
        for name, write in ways.items():
            for key in (name, f"d/{name}"):
                await anyio.to_thread.run_sync(mkdirs, key)
                assert not await st.exists(key)
                await write(key)
                assert (await st.stat(key)).size > 0, key
        for key in ("open", "d/open-if-not-exists"):
            await anyio.to_thread.run_sync(mkdirs, key)
            async with st.open(key, "wb", if_not_exists=key != "open") as f:
                await f.write(b"streamed")
            assert await st.read(key) == b"streamed"
        await anyio.to_thread.run_sync(mkdirs, "moved")
        await st.move("d/src", "moved")
        assert await st.read("moved") == b"in d"
        with pytest.raises(AlreadyExists):  # an object is no empty directory
            await st.write("small", b"again", if_not_exists=True)
        assert await st.read("small") == b"new"
    assert await temp_files(root) == []
    if scheme == "file" and query == "?fsync=false" and _file._SPARES:
        # the small writes met the directory in their spare file's rename, then made way
        assert [type(e) for e in spare_met] == [IsADirectoryError, IsADirectoryError]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("query", ["?fsync=false", "", "?atomic=false"])
async def test_file_a_directory_holding_anything_is_never_removed_by_a_write(
    anyio_backend: str, query: str, tmp_path: Path
) -> None:
    """Only an empty directory makes way: one holding a file of another tool, a write's temp
    file or an empty directory refuses every write as before, and is left as it was."""
    root = tmp_path / "root"
    why = "a path component is a file, or the key is a directory"

    def make() -> None:
        (root / "foreign").mkdir(parents=True)
        (root / "foreign" / "notes.txt").write_bytes(b"not mine")
        (root / "temp").mkdir()
        (root / "temp" / f"{TEMP_PREFIX}x.tmp").write_bytes(b"")
        (root / "nested" / "empty").mkdir(parents=True)

    await anyio.to_thread.run_sync(make)
    async with Storage(f"file://{root}{query}") as st:
        await st.write("src", b"source")
        for key in ("foreign", "temp", "nested"):
            attempts: list[Callable[[], Awaitable[object]]] = [
                functools.partial(st.write, key, b"x"),
                functools.partial(st.write, key, b"x", if_not_exists=True),
                functools.partial(st.copy, "src", key),
                functools.partial(st.move, "src", key),
            ]
            for attempt in attempts:
                with pytest.raises(StorageError, match=why) as caught:
                    await attempt()
                assert type(caught.value) is StorageError
            with pytest.raises(StorageError, match=why):
                async with st.open(key, "wb") as f:
                    await f.write(b"x")
        assert await st.read("src") == b"source"
    on_disk = await anyio.to_thread.run_sync(
        lambda: sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    )
    assert on_disk == [
        "foreign",
        "foreign/notes.txt",
        "nested",
        "nested/empty",
        "src",
        "temp",
        f"temp/{TEMP_PREFIX}x.tmp",
    ]


@pytest.mark.parametrize(
    ("scheme", "anyio_backend"),
    [("file", "asyncio"), ("file", "trio"), ("file+aiofiles", "asyncio")],
)
async def test_file_move_and_delete_with_fsync_sync_the_directories(
    anyio_backend: str, scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``fsync=true`` (the default) a move fsyncs the target's directory (the new name)
    and then, when it is another one, the source's (the old name's removal): without the
    second, a crash could bring the source back. A delete fsyncs the directory it removed
    the name from. A crash cannot be simulated here; the fsyncs are recorded by the paths of
    the descriptors they get."""
    root = Path(await anyio.to_thread.run_sync(os.path.realpath, tmp_path)) / "root"
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: Any) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    async with Storage(f"{scheme}://{root}") as st:
        await st.write("a/k", b"moved")
        await st.write("a/stays", b"keeps a/")
        await st.write("same", b"moved in ROOT")
        monkeypatch.setattr(os, "fsync", fsync)
        await st.move("a/k", "b/k")
        assert synced == [str(root / "b"), str(root / "a")]
        synced.clear()
        await st.move("b/k", "k")  # b/ is left empty: removed after the fsyncs
        assert synced == [str(root), str(root / "b")]
        synced.clear()
        await st.move("same", "same2")  # one directory: one fsync
        assert synced == [str(root)]
        synced.clear()
        await st.delete("a/stays")  # the directory of the name removed
        assert synced == [str(root / "a")]
        monkeypatch.undo()
        assert [i.key async for i in st.list()] == ["k", "same2"]


def test_a_failed_write_leaves_no_empty_parent_another_operation_could_not_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`a/` is empty, left by an operation whose prune found this write's `a/b/` in it (a
    cancellation storm left `own04/` so). The write made `b` only, then failed before its
    temp file: it removed `b` and kept `a`, an empty directory no operation would remove."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)

    def no_space(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "no space left on device")

    monkeypatch.setattr(_file, "_dir_lock", no_space)  # after the walk, before the temp file
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError, match="no space"):
            _file.TempFile(root_fd, ["a", "b", "k"], fsync=False)
    finally:
        os.close(root_fd)
    assert list(root.iterdir()) == []
