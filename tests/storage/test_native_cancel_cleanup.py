"""A native asyncio cancellation landing while the storage closes or discards something.

``task.cancel()``, ``asyncio.timeout`` and ``wait_for`` cancel a task past anyio's shields.
A close, an abort or a discard that was still waiting for its thread (the engine's pool, or
aiofiles' executor, both full) when such a cancellation landed was withdrawn: a file, a temp
file, a descriptor or a connection stayed open (until the garbage collector found it, or for
good). Found by tests/storage/test_cancellation_storm.py (a timeout landing as a read on
``file+aiofiles://`` closed its file). Each test here fills the pool the close goes to, so
that it waits for a thread, and cancels the task then.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncify_kit
from asyncify_kit import asyncify
from asyncify_kit.storage import Storage

from .local_helpers import fd_targets, held_under

pytestmark = pytest.mark.anyio

ONE_THREAD = "storage-native-cancel"  # a pool of one thread: file:// goes there (?pool=)
asyncify_kit.configure(pools={ONE_THREAD: 1})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def pool_full(pool: str) -> AsyncIterator[threading.Event]:
    """The one thread of *pool* taken until the event given is set: calls there wait."""
    gate = threading.Event()
    taken = threading.Event()

    def hold() -> None:
        taken.set()
        gate.wait(10)

    busy = asyncio.ensure_future(asyncify(pool=pool)(hold)())
    try:
        while not taken.is_set():
            await asyncio.sleep(0.001)
        yield gate
    finally:
        gate.set()
        await busy


@asynccontextmanager
async def executor_full() -> AsyncIterator[threading.Event]:
    """The loop's default executor (aiofiles runs there) of one thread, taken until the event
    given is set."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(1))
    gate = threading.Event()
    busy = loop.run_in_executor(None, gate.wait, 10)
    try:
        yield gate
    finally:
        gate.set()
        await busy


async def cancel_natively(step: Callable[[], Awaitable[object]], gate: threading.Event) -> None:
    """Run *step* in a task, cancel it with ``task.cancel()`` once it waits for a thread,
    and free that thread (*gate*) once the cancellation has reached it."""
    task = asyncio.ensure_future(step())
    for _ in range(5):  # to where it waits for its thread
        await asyncio.sleep(0)
    assert not task.done()
    task.cancel()
    for _ in range(5):  # to where the cancellation has reached it
        await asyncio.sleep(0)
    gate.set()
    with anyio.fail_after(5):
        await asyncio.wait([task])
    assert task.cancelled()


@pytest.mark.parametrize("what", ["rb", "stream"])
async def test_aiofiles_close_of_a_reader(what: str, tmp_path: Path) -> None:
    """Closing an "rb" file or a stream on ``file+aiofiles://`` closes its file in aiofiles'
    executor: the cancellation withdrew that close, and the file stayed open."""
    root = tmp_path / "root"
    async with Storage(f"file+aiofiles://{root}") as st:
        await st.write("k", b"line\n" * 10)
        if what == "rb":
            f = await st.open("k", "rb")
            assert await f.readline() == b"line\n"
            close: Callable[[], Awaitable[object]] = f.close
        else:
            stream = st.stream("k", chunk_size=5)
            assert await stream.__anext__() == b"line\n"
            close = stream.aclose
        async with executor_full() as gate:
            await cancel_natively(close, gate)
        assert await held_under(root) == []


async def test_file_discard_of_a_writer(tmp_path: Path) -> None:
    """An "wb" file left by an error discards its temp file in a thread of the pool: the
    cancellation withdrew that, and the temp file stayed, with three descriptors."""
    root = tmp_path / "root"
    async with Storage(f"file://{root}?pool={ONE_THREAD}") as st:
        await st.write("k", b"old")
        f = await st.open("k", "wb")
        await f.write(b"new")
        await f.flush()
        async with pool_full(ONE_THREAD) as gate:
            await cancel_natively(f.abort, gate)
        assert await held_under(root) == []
        assert await anyio.to_thread.run_sync(lambda: [p.name for p in root.iterdir()]) == ["k"]
        assert await st.read("k") == b"old"


async def test_file_close_of_the_storage(tmp_path: Path) -> None:
    """Leaving a ``file://`` Storage closes its descriptor of ROOT (and its spare files) in a
    thread of the pool: the cancellation withdrew that, and ROOT stayed open."""
    root = tmp_path / "root"
    st = Storage(f"file://{root}?pool={ONE_THREAD}&fsync=false")
    await st.__aenter__()
    await st.write("d/k", b"x")  # a spare file for d/ (Linux)
    async with pool_full(ONE_THREAD) as gate:
        await cancel_natively(st.aclose, gate)
    assert "closed" in repr(st)
    assert await held_under(root) == []
    assert str(root) not in await anyio.to_thread.run_sync(fd_targets)


@contextmanager
def default_pool_of_one() -> Iterator[None]:
    size = asyncify_kit.stats().size
    asyncify_kit.configure(default_threads=1)
    try:
        yield
    finally:
        asyncify_kit.configure(default_threads=size)


def body_closed(body: Any) -> bool:
    """Whether the connection of a boto3 get_object body was closed."""
    return bool(body._raw_stream.closed)


async def test_boto3_close_of_a_body(s3_bucket: tuple[str, str]) -> None:
    """Closing an "rb" file on ``s3+boto3://`` closes its response body (a connection) in a
    thread of the default pool: the cancellation withdrew that, and the connection stayed
    checked out."""
    endpoint, bucket = s3_bucket
    url = f"s3+boto3://{bucket}/native-{uuid.uuid4().hex[:8]}?endpoint_url={endpoint}"
    async with Storage(url) as st:
        await st.write("k", b"x" * (4 * 1024 * 1024))  # more than urllib3 reads ahead
        f = await st.open("k", "rb")
        assert await f.read(10) == b"x" * 10
        reader: Any = f._reader
        body = reader._body
        assert not body_closed(body)
        with default_pool_of_one():
            async with pool_full(asyncify_kit.stats().name) as gate:
                await cancel_natively(f.close, gate)
        assert body_closed(body)
