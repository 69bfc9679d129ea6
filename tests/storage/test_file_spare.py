"""``file://`` small atomic writes into a prepared spare file (``O_TMPFILE``).

A rewrite lands as a temp file + rename would (old or new content, never a mix, symbolic
links refused, nothing left behind), while preparing the next file and freeing the replaced
one happen after the caller has its answer. Also: what happens without ``O_TMPFILE``, in a
replaced directory, in a forked child, on failure and on cancellation.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

from asyncify_kit import CallCancelled, check_cancelled
from asyncify_kit.storage import InvalidPath, Storage, StorageError
from asyncify_kit.storage._backends import _file
from asyncify_kit.storage._keys import TEMP_PREFIX
from tests.conftest import exit_code_in_a_forked_child
from tests.storage.local_helpers import cancel_when, fd_targets, held_under

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not (_file._SPARES and os.path.isdir("/proc/self/fd")),
        reason="spare files need O_TMPFILE, O_PATH and /proc/self/fd (Linux)",
    ),
]

T = TypeVar("T")


async def on_disk(fn: Callable[[], T]) -> T:
    """Run a setup or check on the disk off the event loop (the blocking detector is on)."""
    return await anyio.to_thread.run_sync(fn)


async def leftovers(root: Path) -> list[Path]:
    return await on_disk(lambda: list(root.rglob(f"{TEMP_PREFIX}*")))


async def assert_nothing_left(root: Path) -> None:
    """No temp file under *root*, and no descriptor open on a file there (spare or held)."""
    assert await leftovers(root) == []
    assert await held_under(root) == []


def backend_of(st: Storage) -> _file.FileBackend:
    backend = st.backend
    assert isinstance(backend, _file.FileBackend)
    return backend


async def settle(st: Storage) -> None:
    """Wait (bounded) until every directory's turn, deferred work included, has ended."""
    with anyio.fail_after(5):
        while not all(lane.queue.idle for lane in backend_of(st)._serial.values()):
            await anyio.sleep(0.001)


def spare(st: Storage, *dirs: str) -> _file.SpareFile:
    return backend_of(st)._serial[dirs].spare


class WriteCounter:
    """Counts the writes that made their own temp file (`_file._write_file`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = _file._write_file

        def counted(*args: object) -> None:
            self.calls += 1
            real(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(_file, "_write_file", counted)


async def test_rewrites_go_through_the_spare_file_and_free_the_replaced_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = WriteCounter(monkeypatch)
    root = tmp_path / "root"
    inodes = []
    async with Storage(f"file://{root}?fsync=false") as st:
        await st.write("k", b"first")  # no spare yet: a temp file of its own
        await settle(st)
        assert spare(st).fd != -1  # prepared after the write was answered
        mode = (await anyio.Path(root / "k").stat()).st_mode
        for i in range(5):
            await st.write("k", b"v%d" % i)
            assert await st.read("k") == b"v%d" % i
            stat = await anyio.Path(root / "k").stat()
            assert stat.st_mode == mode and stat.st_nlink == 1
            inodes.append(stat.st_ino)
            await settle(st)
            # only the next spare file is held: the replaced file was closed, so freed
            held = await held_under(root)
            assert len(held) == 1 and held[0].endswith("(deleted)"), held
        assert counter.calls == 1
        # each rewrite is a new file renamed over the key (a freed inode's number is reused)
        assert all(a != b for a, b in itertools.pairwise(inodes))
        assert await on_disk(lambda: sorted(os.listdir(root))) == ["k"]
    assert await held_under(root) == []  # closing the storage closes the spare file


async def test_rewrites_in_a_subdirectory_and_in_flight_land_whole(tmp_path: Path) -> None:
    root = tmp_path / "root"
    async with Storage(f"file://{root}?fsync=false") as st:
        await st.write("a/b/k", b"0")
        await settle(st)
        assert spare(st, "a", "b").fd != -1
        await st.write("a/b/k", b"1")
        assert await st.read("a/b/k") == b"1"
        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(st.write, f"a/b/k{i % 7}", b"%d" % i * 1000)
        for j in range(7):  # one of the writes, whole (trio starts tasks in any order)
            assert await st.read(f"a/b/k{j}") in {b"%d" % i * 1000 for i in range(j, 60, 7)}
        await settle(st)
        assert len(await held_under(root)) == 1
    await assert_nothing_left(root)


async def test_a_symbolic_link_at_the_key_is_refused_by_a_spare_write(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    await on_disk(lambda: outside.write_bytes(b"secret"))
    async with Storage(f"file://{root}?fsync=false") as st:
        await st.write("k", b"0")
        await settle(st)
        assert spare(st).fd != -1
        await on_disk(lambda: (root / "link").symlink_to(outside))
        with pytest.raises(InvalidPath, match="symbolic link"):
            await st.write("link", b"overwritten")
        assert await on_disk(outside.read_bytes) == b"secret"
        assert await on_disk((root / "link").is_symlink)
        await settle(st)
        assert len(await held_under(root)) == 1  # the used spare file was closed, a new one made
    assert await leftovers(root) == []


async def test_a_failed_spare_write_keeps_the_old_content_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"

    def half_then_full(fd: int, data: bytes | memoryview) -> None:
        os.write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    async with Storage(f"file://{root}?fsync=false") as st:
        await st.write("k", b"old")
        await settle(st)
        assert spare(st).fd != -1
        monkeypatch.setattr(_file, "_write_all", half_then_full)
        with pytest.raises(StorageError, match="No space left"):
            await st.write("k", b"new content")
        monkeypatch.undo()
        assert await st.read("k") == b"old"
        await settle(st)
        assert len(await held_under(root)) <= 1
    await assert_nothing_left(root)


async def test_a_cancelled_spare_write_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    entered = threading.Event()
    real = _file._write_all

    def slow(fd: int, data: bytes | memoryview) -> None:
        real(fd, data)
        entered.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the caller was cancelled
            try:
                check_cancelled()
            except CallCancelled:
                return  # the write's own check, before the rename, sees it too
            time.sleep(0.001)

    async with Storage(f"file://{root}?fsync=false") as st:
        await st.write("k", b"old")
        await settle(st)
        assert spare(st).fd != -1
        monkeypatch.setattr(_file, "_write_all", slow)
        cancelled = await cancel_when(entered, lambda: st.write("k", b"new"))
        await settle(st)
        monkeypatch.undo()
        assert cancelled
        assert await st.read("k") == b"old"
        assert len(await held_under(root)) <= 1
    await assert_nothing_left(root)


async def test_without_o_tmpfile_every_write_makes_its_own_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # opening a directory for writing fails with EISDIR: what a kernel or a file system
    # without O_TMPFILE answers
    monkeypatch.setattr(_file, "_TMPFILE_FLAGS", os.O_WRONLY | os.O_DIRECTORY)
    counter = WriteCounter(monkeypatch)
    root = tmp_path / "root"
    async with Storage(f"file://{root}?fsync=false") as st:
        for i in range(4):
            await st.write("k", b"%d" % i)
            await settle(st)
        assert await st.read("k") == b"3"
        assert not spare(st).enabled and spare(st).fd == -1
        assert counter.calls == 4
        assert await held_under(root) == []
    assert await leftovers(root) == []


async def test_a_refused_link_turns_spare_files_off_and_the_write_still_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link

    def link(src: str, dst: str, **kwargs: object) -> None:
        if src.startswith("/proc/self/fd/"):  # as under a policy refusing such links
            raise PermissionError(errno.EPERM, "Operation not permitted")
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]

    root = tmp_path / "root"
    async with Storage(f"file://{root}?fsync=false") as st:
        await st.write("k", b"0")
        await settle(st)
        assert spare(st).fd != -1
        monkeypatch.setattr(os, "link", link)
        counter = WriteCounter(monkeypatch)
        await st.write("k", b"1")
        assert counter.calls == 1  # started over with a temp file of its own
        assert await st.read("k") == b"1"
        await settle(st)
        assert not spare(st).enabled
        assert await held_under(root) == []
        await st.write("k", b"2")
        assert counter.calls == 2
    assert await leftovers(root) == []


async def test_a_spare_file_is_not_used_in_a_directory_replaced_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    async with Storage(f"file://{root}?fsync=false") as st:
        await st.write("a/k", b"0")
        await settle(st)
        prepared = spare(st, "a")
        assert prepared.fd != -1 and prepared.dir_id is not None
        await st.delete("a/k")  # the emptied directory is removed (as an S3 prefix)
        assert not await anyio.Path(root / "a").exists()
        counter = WriteCounter(monkeypatch)
        await st.write("a/k", b"1")  # a new directory: the old one's spare file is set aside
        assert counter.calls == 1
        assert await st.read("a/k") == b"1"
        await settle(st)
        assert len(await held_under(root)) == 1  # set aside, closed, and one made in the new
    await assert_nothing_left(root)


async def write_into_directories(
    st: Storage, root: Path, count: int, data: bytes, *, most_held: int
) -> None:
    """Write ``d0/k`` .. ``d{count-1}/k`` one after another; at no point are more than
    *most_held* files held open under *root*."""
    for i in range(count):
        await st.write(f"d{i}/k", data)
        await settle(st)
        assert len(await held_under(root)) <= most_held


async def test_dropped_directories_spare_files_are_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_file, "_SERIAL_QUEUES_KEPT", 3)
    root = tmp_path / "root"
    async with Storage(f"file://{root}?fsync=false") as st:
        await write_into_directories(st, root, 10, b"x", most_held=3)
        assert len(backend_of(st)._serial) <= 3
    assert await held_under(root) == []


async def test_spare_files_held_are_capped_per_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_file, "_SPARES_KEPT", 2)
    root = tmp_path / "root"
    async with Storage(f"file://{root}?fsync=false") as st:
        for round_ in range(2):
            await write_into_directories(st, root, 5, b"%d" % round_, most_held=2)
        assert len(await held_under(root)) == 2  # the budget is given back as files are used
        held = [d for d in range(5) if spare(st, f"d{d}").fd != -1]
        counter = WriteCounter(monkeypatch)
        for d in held:
            await st.write(f"d{d}/k", b"spare")  # those holding one still use it
        assert counter.calls == 0
        for d in range(5):
            assert await st.read(f"d{d}/k") == (b"spare" if d in held else b"1")
    assert await held_under(root) == []


async def test_leaving_a_cancelled_task_still_closes_every_descriptor(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with anyio.CancelScope() as scope:
        async with Storage(f"file://{root}?fsync=false") as st:
            for d in ("", "a/", "a/b/"):
                await st.write(f"{d}k", b"0")
            await settle(st)
            assert len(await held_under(root)) == 3  # a spare file in each directory
            scope.cancel()
            await anyio.sleep(1)  # cancelled here: the exit runs in a cancelled task
    assert scope.cancelled_caught
    assert await held_under(root) == []
    assert str(root) not in await on_disk(fd_targets)  # nor ROOT itself


async def test_closing_the_storage_closes_what_a_rewrite_left_to_deferred_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close queued behind a rewrite returns once the descriptors that rewrite left to
    deferred work (the replaced file, held until freed) are closed. They were closed after
    the close's caller had its outcome (here each close of descriptors takes 0.2 s)."""
    root = tmp_path / "root"
    writing, go_on = threading.Event(), threading.Event()
    write_all, close_fds = _file._write_all, _file._close_fds

    def held_write(fd: int, data: bytes) -> None:
        if data == b"held":
            writing.set()
            go_on.wait(10)
        write_all(fd, data)

    def slow_close(*fds: int) -> None:
        time.sleep(0.2)
        close_fds(*fds)

    monkeypatch.setattr(_file, "_write_all", held_write)
    monkeypatch.setattr(_file, "_close_fds", slow_close)
    st = Storage(f"file://{root}?fsync=false")
    await st.__aenter__()
    held_after_close: list[str] = []
    try:
        await st.write("k", b"first")  # a temp file of its own; a spare file prepared after
        await settle(st)
        lane = backend_of(st)._serial[()]

        async def close() -> None:
            await st.aclose()
            held_after_close.extend(await held_under(root))

        async with anyio.create_task_group() as tg:
            tg.start_soon(st.write, "k", b"held")  # through the spare file, held in its write
            with anyio.fail_after(10):
                while not writing.is_set():
                    await anyio.sleep(0.001)
                tg.start_soon(close)
                while not lane.queue.waiting:  # the close's turn is queued behind the write
                    await anyio.sleep(0.001)
            go_on.set()
    finally:
        go_on.set()
        await st.aclose()
    assert held_after_close == []
    async with Storage(f"file://{root}") as again:
        assert await again.read("k") == b"held"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_never_writes_into_its_parents_spare_file(tmp_path: Path) -> None:
    """The child shares the parent's open spare file (and its offset): were both to use it,
    the parent's key and the child's would become one file."""
    root = tmp_path / "root"
    st = Storage(f"file://{root}?fsync=false")

    async def start() -> None:
        await st.__aenter__()
        await st.write("parent", b"0")
        await settle(st)

    asyncio.run(start())
    assert spare(st).fd != -1

    def child() -> bool:
        async def write() -> bytes:
            await st.write("child", b"from the child")
            return await st.read("child")

        return asyncio.run(write()) == b"from the child"

    assert exit_code_in_a_forked_child(child) == 0

    async def finish() -> tuple[bytes, bytes]:
        try:
            await st.write("parent", b"from the parent")
            return await st.read("parent"), await st.read("child")
        finally:
            await st.__aexit__(None, None, None)

    assert asyncio.run(finish()) == (b"from the parent", b"from the child")
    assert (root / "parent").stat().st_ino != (root / "child").stat().st_ino
