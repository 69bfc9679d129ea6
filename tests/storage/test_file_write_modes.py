"""``file://`` write modes: atomic (the default: temp file + rename) and ``atomic=false``
(in place, like ``open(path, "wb")``), which still refuses symbolic links, hard links,
and anything but a regular file, and still checks keys before any I/O."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

from asyncify_kit import ConfigError
from asyncify_kit.storage import AlreadyExists, InvalidPath, Storage, StorageError
from asyncify_kit.storage._backends import _file
from asyncify_kit.storage._keys import TEMP_PREFIX

pytestmark = pytest.mark.anyio

T = TypeVar("T")


def in_place(root: Path, *, fsync: bool = False) -> str:
    return f"file://{root}?atomic=false&fsync={'true' if fsync else 'false'}"


async def inode(path: Path) -> int:
    return (await anyio.Path(path).stat()).st_ino


async def on_disk(fn: Callable[[], T]) -> T:
    """Run a setup or check on the disk off the event loop (the blocking detector is on)."""
    return await anyio.to_thread.run_sync(fn)


async def leftovers(root: Path) -> list[Path]:
    return await anyio.to_thread.run_sync(lambda: list(root.rglob(f"{TEMP_PREFIX}*")))


@pytest.mark.parametrize("fsync", [False, True])
async def test_in_place_writes_rewrite_the_same_file(tmp_path: Path, fsync: bool) -> None:
    root = tmp_path / "root"
    async with Storage(in_place(root, fsync=fsync)) as st:
        await st.write("a/b/c.bin", b"x" * 10_000)
        first = await inode(root / "a" / "b" / "c.bin")
        await st.write("a/b/c.bin", b"short")  # truncated, not overwritten over the old bytes
        assert await st.read("a/b/c.bin") == b"short"
        assert await inode(root / "a" / "b" / "c.bin") == first
        await st.write_text("a/b/c.bin", "")
        assert await st.read("a/b/c.bin") == b""

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                yield bytes([65 + i]) * 70_000

        await st.write("a/b/c.bin", chunks())
        assert await st.read("a/b/c.bin") == b"".join(bytes([65 + i]) * 70_000 for i in range(5))
        async with st.open("a/b/c.bin", "wb") as f:
            await f.write(b"one ")
            await f.write(b"two")
        assert await st.read("a/b/c.bin") == b"one two"
        assert await inode(root / "a" / "b" / "c.bin") == first
    assert await leftovers(root) == []


async def test_atomic_writes_replace_the_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for url in (f"file://{root}?fsync=false", f"file://{root}?fsync=false&atomic=true"):
        async with Storage(url) as st:
            await st.write("k", b"old")
            first = await inode(root / "k")
            await st.write("k", b"new")
            assert await inode(root / "k") != first
            assert await st.read("k") == b"new"
    assert await leftovers(root) == []


async def test_in_place_if_not_exists(tmp_path: Path) -> None:
    root = tmp_path / "root"
    async with Storage(in_place(root)) as st:
        await st.write("d/k", b"first", if_not_exists=True)
        with pytest.raises(AlreadyExists):
            await st.write("d/k", b"second", if_not_exists=True)
        with pytest.raises(AlreadyExists):
            async with st.open("d/k", "wb", if_not_exists=True) as f:
                await f.write(b"third")
        assert await st.read("d/k") == b"first"


async def test_in_place_interrupted_write_leaves_a_partial_file(tmp_path: Path) -> None:
    """The documented price of atomic=false: no old content to fall back to (and the file
    is cut after the new bytes, so no old byte follows them either)."""
    root = tmp_path / "root"

    async def failing() -> AsyncIterator[bytes]:
        yield b"new-part"
        raise RuntimeError("source broke")

    async with Storage(in_place(root)) as st:
        await st.write("k", b"old content, longer")
        with pytest.raises(RuntimeError, match="source broke"):
            await st.write("k", failing())
        assert await st.read("k") == b"new-part"
    async with Storage(f"file://{root}?fsync=false") as st:  # the atomic default keeps it
        await st.write("k", b"old content, longer")
        with pytest.raises(RuntimeError, match="source broke"):
            await st.write("k", failing())
        assert await st.read("k") == b"old content, longer"
    assert await leftovers(root) == []


@pytest.mark.parametrize("fsync", [False, True])
async def test_in_place_rewrites_leave_exactly_the_new_bytes(tmp_path: Path, fsync: bool) -> None:
    """Overwritten from offset 0 then cut to the new length: no old byte survives."""
    root = tmp_path / "root"
    path = root / "d" / "k.bin"
    sizes = [100_000, 4096, 4095, 70_001, 1, 0, 8192, 5000]
    async with Storage(in_place(root, fsync=fsync)) as st:
        first = None
        for i, size in enumerate(sizes):
            data = os.urandom(size)
            if i % 2:
                await st.write("d/k.bin", data)
            else:
                async with st.open("d/k.bin", "wb") as f:  # several writes, one commit
                    for start in range(0, size, 3000):
                        await f.write(data[start : start + 3000])
            assert await on_disk(path.read_bytes) == data, size
            assert (await anyio.Path(path).stat()).st_size == size
            first = first or await inode(path)
            assert await inode(path) == first
    assert await leftovers(root) == []


async def test_in_place_write_overwrites_before_it_truncates(tmp_path: Path) -> None:
    """While a write runs, the file holds the new bytes then the old tail (the documented
    mix), not an emptied file; the commit cuts the tail."""
    root = tmp_path / "root"
    async with Storage(in_place(root)) as st:
        await st.write("k", b"o" * 10)
        async with st.open("k", "wb") as f:
            await f.write(b"new")
            await f.flush()
            assert await on_disk((root / "k").read_bytes) == b"new" + b"o" * 7
        assert await st.read("k") == b"new"


async def test_in_place_cancelled_write_keeps_only_the_new_prefix(tmp_path: Path) -> None:
    root = tmp_path / "root"
    written = anyio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"n" * 1000
        written.set()
        await anyio.sleep(3600)
        yield b"never"

    async with Storage(in_place(root)) as st:
        await st.write("k", b"o" * 100_000)
        async with anyio.create_task_group() as tg:
            tg.start_soon(st.write, "k", slow())
            await written.wait()
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        assert await st.read("k") == b"n" * 1000  # cut: none of the old 99,000 bytes after
        with anyio.move_on_after(0.2):
            async with st.open("k", "wb") as f:
                await f.write(b"m" * 10)
                await f.flush()  # handed to the file: the bytes "written so far"
                await anyio.sleep(3600)
        assert await st.read("k") == b"m" * 10
    assert await leftovers(root) == []


async def test_in_place_refused_file_is_left_untouched(tmp_path: Path) -> None:
    """Nothing is truncated before the checks: a refused hard-linked file keeps every byte."""
    root = tmp_path / "root"

    def prepare() -> None:
        root.mkdir()
        (root / "a").write_bytes(b"keep all of me")
        os.link(root / "a", root / "b")

    await on_disk(prepare)
    async with Storage(in_place(root)) as st:
        with pytest.raises(InvalidPath, match="2 hard links"):
            await st.write("a", b"x")
        with pytest.raises(InvalidPath, match="2 hard links"):
            async with st.open("b", "wb") as f:
                await f.write(b"x")
    assert await on_disk((root / "a").read_bytes) == b"keep all of me"


@pytest.mark.parametrize("if_not_exists", [False, True])
async def test_in_place_refuses_symlinks(tmp_path: Path, if_not_exists: bool) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    secret = outside / "secret.txt"

    def prepare() -> None:
        outside.mkdir()
        secret.write_bytes(b"keep me")
        root.mkdir()
        (root / "link.txt").symlink_to(secret)
        (root / "dir").symlink_to(outside, target_is_directory=True)

    await on_disk(prepare)
    async with Storage(in_place(root)) as st:
        for key in ("link.txt", "dir/secret.txt", "dir/new.txt"):
            with pytest.raises(InvalidPath, match="symbolic link"):
                await st.write(key, b"pwned", if_not_exists=if_not_exists)
            with pytest.raises(InvalidPath, match="symbolic link"):
                async with st.open(key, "wb", if_not_exists=if_not_exists) as f:
                    await f.write(b"pwned")
    assert await on_disk(secret.read_bytes) == b"keep me"
    assert await on_disk(lambda: sorted(p.name for p in outside.iterdir())) == ["secret.txt"]


async def test_in_place_refuses_hard_links_atomic_replaces_them(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside.txt"

    def prepare() -> None:
        root.mkdir()
        outside.write_bytes(b"keep me")
        os.link(outside, root / "linked.txt")

    await on_disk(prepare)
    async with Storage(in_place(root)) as st:
        with pytest.raises(InvalidPath, match="2 hard links"):
            await st.write("linked.txt", b"pwned")
    assert await on_disk(outside.read_bytes) == b"keep me"
    assert await on_disk((root / "linked.txt").read_bytes) == b"keep me"  # refused untouched
    async with Storage(f"file://{root}?fsync=false") as st:
        await st.write("linked.txt", b"mine")  # a new file replaces the entry
        assert await st.read("linked.txt") == b"mine"
    assert await on_disk(outside.read_bytes) == b"keep me"


async def test_in_place_refuses_directories_and_fifos_without_blocking(tmp_path: Path) -> None:
    """A directory holding something (an empty one makes way, as for atomic writes: see
    test_local's ``test_file_an_empty_directory_at_a_key_makes_way_for_a_write``), a FIFO."""
    root = tmp_path / "root"
    await on_disk(lambda: (root / "adir" / "inner").mkdir(parents=True))
    await on_disk(lambda: os.mkfifo(root / "pipe"))
    async with Storage(in_place(root)) as st:
        with anyio.fail_after(10):
            for key in ("adir", "pipe"):
                with pytest.raises(StorageError, match="cannot write") as info:
                    await st.write(key, b"x")
                assert not isinstance(info.value, (InvalidPath, AlreadyExists))


async def test_in_place_checks_keys_before_any_io(tmp_path: Path) -> None:
    root = tmp_path / "root"
    async with Storage(in_place(root)) as st:
        for key in ("../escape", "/abs", "a/../../b", "a\\b", "", f"{TEMP_PREFIX}x"):
            with pytest.raises(InvalidPath):
                await st.write(key, b"x")
    assert await on_disk(lambda: sorted(p.name for p in tmp_path.iterdir())) == ["root"]
    assert await on_disk(lambda: list(root.iterdir())) == []


async def test_atomic_option_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'atomic'.*true or false"):
        Storage(f"file://{tmp_path}?atomic=sometimes")
    with pytest.raises(ConfigError, match=r"unknown option 'atomic' for the 'file\+aiofiles'"):
        Storage(f"file+aiofiles://{tmp_path}?atomic=false")
    async with Storage(f"file://{tmp_path}?atomic=0") as st:
        assert st.backend.atomic is False  # type: ignore[attr-defined]
    async with Storage(f"file://{tmp_path}") as st:
        assert st.backend.atomic is True  # type: ignore[attr-defined]


async def test_taken_temp_name_falls_back_to_a_random_one(tmp_path: Path) -> None:
    root = tmp_path / "root"
    async with Storage(f"file://{root}?fsync=false") as st:
        await st.write("k", b"0")
        probe = _file._temp_names.next()
        prefix, _, rest = probe.rpartition("-")
        planted = root / f"{prefix}-{int(rest.removesuffix('.tmp'), 16) + 1:x}.tmp"
        await on_disk(lambda: planted.write_bytes(b"someone else's"))
        await st.write("k", b"1")
        assert await st.read("k") == b"1"
        assert await on_disk(planted.read_bytes) == b"someone else's"
        await on_disk(planted.unlink)
    assert await leftovers(root) == []


@pytest.mark.parametrize("atomic", ["true", "false"])
async def test_many_writes_in_flight_in_shared_directories(tmp_path: Path, atomic: str) -> None:
    """Concurrent writes (renames taking turns per directory, or in place) all land whole."""
    root = tmp_path / "root"
    keys = [f"d{i % 3}/k{i % 40}" for i in range(120)]
    async with Storage(f"file://{root}?fsync=false&atomic={atomic}") as st:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i, key in enumerate(keys):
                    tg.start_soon(st.write, key, b"%d:%s" % (i % 40, b"x" * 4096))
        for key in set(keys):
            data = await st.read(key)
            assert data == b"%s:%s" % (key.rpartition("k")[2].encode(), b"x" * 4096)
    assert await leftovers(root) == []


class _TurnProbe:
    """Wraps `_file._write_file` and `_file._write_spare` (a rewrite into a prepared spare
    file): how many writes run at once, per directory and in all."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.now: dict[tuple[str, ...], int] = {}
        self.most: dict[tuple[str, ...], int] = {}
        self.total = 0
        self.most_total = 0
        real = _file._write_file

        real_spare = _file._write_spare

        def probe(root_fd: int, parts: list[str], *args: object) -> None:
            with self.turn(parts):
                real(root_fd, parts, *args)  # type: ignore[arg-type]

        def probe_spare(
            queue: object, spare: object, root_fd: int, parts: list[str], data: bytes
        ) -> bool:
            with self.turn(parts):
                return real_spare(queue, spare, root_fd, parts, data)  # type: ignore[arg-type]

        monkeypatch.setattr(_file, "_write_file", probe)
        monkeypatch.setattr(_file, "_write_spare", probe_spare)

    @contextlib.contextmanager
    def turn(self, parts: list[str]) -> Iterator[None]:
        where = tuple(parts[:-1])
        with self.lock:
            self.now[where] = self.now.get(where, 0) + 1
            self.most[where] = max(self.most.get(where, 0), self.now[where])
            self.total += 1
            self.most_total = max(self.most_total, self.total)
        try:
            time.sleep(0.003)  # long enough for the other writes to queue up
            yield
        finally:
            with self.lock:
                self.now[where] -= 1
                self.total -= 1


async def _write_all(st: Storage, writes: list[tuple[str, bytes]]) -> None:
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for key, data in writes:
                tg.start_soon(st.write, key, data)


async def test_small_atomic_writes_take_turns_per_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = _TurnProbe(monkeypatch)
    root = tmp_path / "root"
    writes = [(f"{d}/k{i}", b"%d" % i) for i in range(12) for d in ("a", "b", "a/c")]
    async with Storage(f"file://{root}?fsync=false") as st:
        await _write_all(st, writes)
        for key, data in writes:
            assert await st.read(key) == data
    assert probe.most == {("a",): 1, ("b",): 1, ("a", "c"): 1}
    assert probe.most_total > 1  # the directories' turns ran side by side
    assert await leftovers(root) == []


@pytest.mark.parametrize("query", ["atomic=false", "large", "fsync=true"])
async def test_in_place_large_and_fsynced_writes_run_in_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    probe = _TurnProbe(monkeypatch)
    root = tmp_path / "root"
    size = _file._SERIAL_WRITE_MAX + 1 if query == "large" else 10
    writes = [(f"a/k{i}", bytes([i]) * size) for i in range(8)]
    options = {"atomic=false": "fsync=false&atomic=false", "large": "fsync=false"}
    url = f"file://{root}?{options.get(query, query)}"
    async with Storage(url) as st:
        await _write_all(st, writes)
        for key, data in writes:
            assert await st.read(key) == data
    assert probe.most[("a",)] > 1


async def test_idle_directory_queues_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_file, "_SERIAL_QUEUES_KEPT", 4)
    async with Storage(f"file://{tmp_path}?fsync=false") as st:
        backend = st.backend
        assert isinstance(backend, _file.FileBackend)
        for i in range(10):
            await st.write(f"d{i}/k", b"x")
            assert len(backend._serial) <= 4
            with anyio.fail_after(5):  # a turn ends just after its caller has the result
                while not all(lane.queue.idle for lane in backend._serial.values()):
                    await anyio.sleep(0.001)
        assert ("d9",) in backend._serial
