"""S3 under cancellation: a response body or a client that arrives from the network or from
its thread for a caller that was cancelled meanwhile is closed, and so is one whose closing
step runs in a cancelled task."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from asyncify_kit.storage import Storage
from asyncify_kit.storage._backends import _boto3

from .local_helpers import cancel_when, returns_late

CASES = [("s3", "asyncio"), ("s3+boto3", "asyncio"), ("s3+boto3", "trio")]
BOTO3 = [case for case in CASES if case[0] == "s3+boto3"]

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


def cases(which: list[tuple[str, str]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        ("scheme", "anyio_backend"), which, ids=[f"{s}-{b}" for s, b in which]
    )


def body_closed(body: Any) -> bool:
    """Whether the connection of a get_object body was closed: urllib3's response under
    boto3's ``StreamingBody``, aiohttp's under aiobotocore's."""
    return bool(getattr(body, "_raw_stream", body).closed)


async def eventually(check: Callable[[], bool]) -> bool:
    """*check()*, waited for up to 5 s: a release runs on a worker, after the caller left."""
    with anyio.move_on_after(5):
        while not check():
            await anyio.sleep(0.01)
    return bool(check())


@cases(CASES)
@pytest.mark.parametrize("what", ["read", "rb", "stream"])
async def test_a_body_arriving_for_a_cancelled_caller_is_closed(
    scheme: str,
    anyio_backend: str,
    s3_bucket: tuple[str, str],
    what: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """get_object's response holds an open connection. Cancelled just as it arrives (boto3:
    its thread has it, the caller will never get it), the body is closed for the caller."""
    endpoint, bucket = s3_bucket
    url = f"{scheme}://{bucket}/late-{uuid.uuid4().hex[:8]}?endpoint_url={endpoint}"
    arrived, cancelled = threading.Event(), threading.Event()
    responses: list[Any] = []
    async with Storage(url) as st:
        await st.write("k", b"x" * MiB)
        client = st.backend._client  # type: ignore[attr-defined]
        if scheme == "s3+boto3":
            client = client.wrapped
            real = client.get_object

            def get_object(**kwargs: Any) -> Any:
                responses.append(real(**kwargs))
                return responses[-1]

            monkeypatch.setattr(client, "get_object", returns_late(get_object, arrived))
        else:
            real_aio = client.get_object

            async def get_object_aio(**kwargs: Any) -> Any:
                responses.append(await real_aio(**kwargs))
                arrived.set()
                with anyio.CancelScope(shield=True):  # handed over once the cancel was sent
                    while not cancelled.is_set():
                        await anyio.sleep(0.001)
                return responses[-1]

            monkeypatch.setattr(client, "get_object", get_object_aio)

        async def use() -> None:
            if what == "read":
                await st.read("k")
            elif what == "rb":
                async with st.open("k", "rb") as f:
                    await f.read()
            else:
                async with st.stream("k") as chunks:
                    async for _ in chunks:
                        pass

        assert await cancel_when(arrived, use, cancelled)
        monkeypatch.undo()
        assert await eventually(lambda: body_closed(responses[0]["Body"]))
        assert await st.read("k") == b"x" * MiB


@cases(CASES)
async def test_a_read_cancelled_in_its_body_closes_it(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``read`` closes the body in a ``finally``: when the caller is cancelled while the body
    is being read, that close still runs."""
    endpoint, bucket = s3_bucket
    url = f"{scheme}://{bucket}/mid-{uuid.uuid4().hex[:8]}?endpoint_url={endpoint}"
    reached = threading.Event()
    bodies: list[Any] = []
    async with Storage(url) as st:
        await st.write("k", b"x" * MiB)
        real = st.backend.body_read  # type: ignore[attr-defined]

        async def body_read(body: Any, size: int | None) -> bytes:
            bodies.append(body)
            data: bytes = await real(body, 64 * 1024)  # a part of it, for real
            reached.set()
            await anyio.sleep_forever()
            return data

        monkeypatch.setattr(st.backend, "body_read", body_read)
        assert await cancel_when(reached, lambda: st.read("k"))
        monkeypatch.undo()
        assert await eventually(lambda: body_closed(bodies[0]))


def pooled(client: Any) -> int:
    """The connection pools a boto3 client holds (none once it is closed)."""
    return len(client._endpoint.http_session._manager.pools)


@pytest.mark.parametrize(
    ("scheme", "anyio_backend"), [("s3+boto3", "asyncio"), ("s3+boto3", "trio")]
)
async def test_a_client_arriving_for_a_cancelled_open_is_closed(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """boto3's client is made in a thread: cancelled as it arrives, it is closed for the
    caller, with the connection it already holds (aioboto3's opens none before its first
    call, and is handed over with no checkpoint on the way)."""
    endpoint, bucket = s3_bucket
    made: list[Any] = []
    real = _boto3.Boto3Backend._make_client

    def make_client(backend: _boto3.Boto3Backend) -> Any:
        client = real(backend)
        client.list_buckets()  # one pooled connection, as after a credentials request
        made.append(client)
        return client

    arrived = threading.Event()
    monkeypatch.setattr(_boto3.Boto3Backend, "_make_client", returns_late(make_client, arrived))
    storage = Storage(f"{scheme}://{bucket}/p?endpoint_url={endpoint}")
    assert await cancel_when(arrived, storage.__aenter__)
    monkeypatch.undo()
    assert await eventually(lambda: pooled(made[0]) == 0)
    assert "closed" in repr(storage)


@cases(CASES)
async def test_leaving_storage_in_a_cancelled_task_closes_the_client(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str]
) -> None:
    endpoint, bucket = s3_bucket
    with anyio.CancelScope() as scope:
        async with Storage(f"{scheme}://{bucket}/p?endpoint_url={endpoint}") as st:
            await st.write("k", b"x")  # a pooled connection
            client = st.backend._client  # type: ignore[attr-defined]
            scope.cancel()
            await anyio.sleep(5)
    assert scope.cancelled_caught
    if scheme == "s3+boto3":
        assert pooled(client.wrapped) == 0
    else:
        assert all(session.closed for session in client._endpoint.http_session._sessions.values())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_call_outlasting_the_close_is_cancelled_before_the_client_closes(
    anyio_backend: str, s3_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call still under way once the close has waited `_CALLS_DRAIN` seconds for it is
    cancelled, and fails with the closed Storage's `RuntimeError`. It used to go on after the
    client's close, and aiobotocore made a connection pool for it (an aiohttp session) that
    nobody closed: the moto server is slow enough with a 5 MiB part for that to happen."""
    from asyncify_kit.storage._backends import _s3

    endpoint, bucket = s3_bucket
    monkeypatch.setattr(_s3, "_CALLS_DRAIN", 0.2)
    st = Storage(f"s3://{bucket}/slow-{uuid.uuid4().hex[:8]}?endpoint_url={endpoint}")
    await st.__aenter__()
    client = st.backend._client  # type: ignore[attr-defined]
    real = client.head_object
    started = anyio.Event()

    async def slow_head_object(**kwargs: Any) -> Any:
        started.set()
        await anyio.sleep(1)  # longer than the close waits
        return await real(**kwargs)

    monkeypatch.setattr(client, "head_object", slow_head_object)
    failed: list[BaseException] = []

    async def stat() -> None:
        try:
            await st.exists("k")
        except RuntimeError as exc:
            failed.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(stat)
        await started.wait()
        with anyio.fail_after(0.9):  # before the call would have gone on
            await st.aclose()
    assert failed and "is not open" in str(failed[0])
    assert client._endpoint.http_session._sessions == {}  # no session made after the close
