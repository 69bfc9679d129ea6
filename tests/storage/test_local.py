"""Behaviour specific to the local backends and to the facade itself: atomic replacement under
concurrent readers, cancellation of a one-hop write, configuration and options."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from asyncify_kit import ConfigError
from asyncify_kit.storage import NotFound, Storage
from asyncify_kit.storage._keys import TEMP_PREFIX

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
