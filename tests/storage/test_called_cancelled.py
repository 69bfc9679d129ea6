"""An operation that changes the store, called while its caller is already cancelled, does
nothing, on every backend; one that reads raises the cancellation too (memory:// returned).

"Already cancelled": a cancelled anyio (or trio) cancel scope around the call, or on asyncio
a ``task.cancel()`` not yet delivered. `file://` ran such a write or delete when its worker
thread picked the call up before the cancellation reached its await (a race); the S3
backends could send the request before their first real await. `Storage` now checks first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from asyncify_kit.storage import Storage

from .conftest import storage_url

pytestmark = pytest.mark.anyio

SCHEMES = ["file", "file+aiofiles", "memory", "s3", "s3+boto3"]
ROUNDS = 20

Operation = Callable[[Storage, int], Awaitable[Any]]
OPERATIONS: dict[str, Operation] = {
    "write": lambda st, i: st.write(f"new/{i}", b"new"),
    "write a stream": lambda st, i: _write_started_stream(st, f"new/{i}"),
    "write_text": lambda st, i: st.write_text(f"new/{i}", "new"),
    "delete": lambda st, i: st.delete("kept"),
    "copy": lambda st, i: st.copy("kept", f"new/{i}"),
    "move": lambda st, i: st.move("kept", f"new/{i}"),
    "overwrite": lambda st, i: st.write("kept", b"changed"),
}


SOURCES_CLOSED: list[str] = []


async def _chunks() -> Any:
    try:
        yield b"n"
        yield b"ew"
    finally:
        SOURCES_CLOSED.append("closed")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # file+aiofiles and s3 run on asyncio only (trio: test_offload_precancelled)


@pytest.fixture(params=SCHEMES)
def url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    return storage_url(request.param, request, tmp_path)


async def _write_started_stream(st: Storage, key: str) -> None:
    """A streamed write of a generator already started: the write it is given to closes it
    (its ``finally`` runs now), also when the write is called cancelled."""
    chunks = _chunks()
    with anyio.CancelScope(shield=True):
        assert await chunks.__anext__() == b"n"
    try:
        await st.write(key, chunks)
    finally:
        assert SOURCES_CLOSED == ["closed"]
        SOURCES_CLOSED.clear()


async def _unchanged(st: Storage) -> None:
    assert await st.read("kept") == b"kept"
    assert [info.key async for info in st.list()] == ["kept"]


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_called_in_a_cancelled_scope(url: str, operation: str) -> None:
    run = OPERATIONS[operation]
    async with Storage(url) as st:
        await st.write("kept", b"kept")
        for i in range(ROUNDS):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await run(st, i)
            assert scope.cancelled_caught
        await _unchanged(st)


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_called_with_a_task_cancel_pending(url: str, operation: str) -> None:
    run = OPERATIONS[operation]
    async with Storage(url) as st:
        await st.write("kept", b"kept")

        async def cancelled_then(i: int) -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await run(st, i)

        for i in range(ROUNDS):
            with pytest.raises(asyncio.CancelledError):
                await asyncio.create_task(cancelled_then(i))
        await _unchanged(st)


async def _read_a_file(st: Storage) -> bytes:
    async with await st.open("kept", "rb") as f:
        return await f.read()


READS: dict[str, Callable[[Storage], Awaitable[Any]]] = {
    "read": lambda st: st.read("kept"),
    "read_text": lambda st: st.read_text("kept"),
    "stat": lambda st: st.stat("kept"),
    "exists": lambda st: st.exists("kept"),
    "open rb": _read_a_file,
    "stream": lambda st: _drain(st.stream("kept")),
    "list": lambda st: _drain(st.list()),
}


async def _drain(items: Any) -> list[Any]:
    return [item async for item in items]


@pytest.mark.parametrize("operation", list(READS))
async def test_a_read_called_in_a_cancelled_scope_raises_the_cancellation(
    url: str, operation: str
) -> None:
    run = READS[operation]
    async with Storage(url) as st:
        await st.write("kept", b"kept")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await run(st)
            pytest.fail(f"{operation} returned in a cancelled scope")
        assert scope.cancelled_caught
