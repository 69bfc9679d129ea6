"""`asyncify_kit.aws.client`: one call shape for aioboto3 and for boto3 in threads.

Against the moto server: S3 (with a streaming body, a paginator and the transfer methods) and
SQS.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import anyio
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError, ResponseStreamingError
from s3transfer.exceptions import S3DownloadFailedError

from asyncify_kit import ConfigError, asyncify, aws
from tests.conftest import service_url
from tests.storage.local_helpers import cancel_when, raises_late, returns_late

CASES = [("aioboto3", "asyncio"), ("boto3", "asyncio"), ("boto3", "trio")]
BOTO3 = [case for case in CASES if case[0] == "boto3"]

pytestmark = pytest.mark.anyio


@pytest.fixture(params=CASES, ids=[f"{b}-{loop}" for b, loop in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> str:
    return case[1]


@pytest.fixture
def backend(case: tuple[str, str]) -> Any:
    return case[0]


@pytest.fixture
def client_kwargs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return {
        "endpoint_url": service_url("s3"),
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }


async def test_s3_calls_bodies_and_paginators(backend: Any, client_kwargs: dict[str, Any]) -> None:
    bucket = f"aws-client-{uuid.uuid4().hex[:10]}"
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        for i in range(5):
            await s3.put_object(Bucket=bucket, Key=f"k/{i}", Body=f"line {i}\nsecond\n".encode())
        response = await s3.get_object(Bucket=bucket, Key="k/3")
        async with response["Body"] as body:
            assert await body.read() == b"line 3\nsecond\n"
        response = await s3.get_object(Bucket=bucket, Key="k/4")
        chunks = [chunk async for chunk in response["Body"].iter_chunks(4)]
        assert b"".join(chunks) == b"line 4\nsecond\n"
        assert all(len(c) <= 4 for c in chunks)
        paginator = s3.get_paginator("list_objects_v2")
        pages = [
            page
            async for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
        ]
        assert len(pages) == 3
        assert [o["Key"] for page in pages for o in page["Contents"]] == [
            f"k/{i}" for i in range(5)
        ]
        url = await s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "k/0"}, ExpiresIn=60
        )
        assert url.startswith(client_kwargs["endpoint_url"]) and "Signature" in url
        with pytest.raises(ClientError) as info:
            await s3.head_object(Bucket=bucket, Key="missing")
        assert info.value.response["Error"]["Code"] == "404"
        assert s3.exceptions.NoSuchKey is not None
        assert s3.meta.service_model.service_name == "s3"


async def test_body_lines_are_botocores_on_both_backends(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """``iter_lines()`` strips the line endings, as botocore's and aiobotocore's do;
    ``keepends=True`` keeps them."""
    bucket = f"aws-lines-{uuid.uuid4().hex[:10]}"
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="lines.txt", Body=b"one\ntwo\r\nthree")
        body = (await s3.get_object(Bucket=bucket, Key="lines.txt"))["Body"]
        async with body:
            assert [line async for line in body.iter_lines()] == [b"one", b"two", b"three"]
        body = (await s3.get_object(Bucket=bucket, Key="lines.txt"))["Body"]
        async with body:
            lines = [line async for line in body.iter_lines(4, keepends=True)]
        assert lines == [b"one\n", b"two\r\n", b"three"]


async def test_async_with_body_gives_the_body_on_both_backends(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """``async with response["Body"] as body`` gives the body itself on both backends (with
    aiobotocore's own the raw aiohttp response came out, with another ``read``, no
    ``iter_chunks`` nor ``iter_lines``), and ``await body.close()`` closes it on both."""
    bucket = f"aws-with-{uuid.uuid4().hex[:10]}"
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="k", Body=b"one\ntwo\nthree\n")
        response = await s3.get_object(Bucket=bucket, Key="k")
        async with response["Body"] as body:
            assert body is response["Body"]
            assert await body.read(4) == b"one\n"
            chunks = [chunk async for chunk in body.iter_chunks(3)]
            assert b"".join(chunks) == b"two\nthree\n" and all(len(c) <= 3 for c in chunks)
        async with (await s3.get_object(Bucket=bucket, Key="k"))["Body"] as body:
            assert [line async for line in body.iter_lines()] == [b"one", b"two", b"three"]
        body = (await s3.get_object(Bucket=bucket, Key="k"))["Body"]
        assert await body.read(3) == b"one"
        await body.close()
        if backend == "aioboto3":
            assert body.closed  # aiohttp's response, released with its connection
            body = (await s3.get_object(Bucket=bucket, Key="k"))["Body"]
            body.close()  # as aiobotocore's: closed at once, without being awaited
            assert body.closed


async def test_sqs(backend: Any, client_kwargs: dict[str, Any]) -> None:
    async with aws.client("sqs", backend=backend, **client_kwargs) as sqs:
        queue = await sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")
        url = queue["QueueUrl"]

        async def send(i: int) -> None:
            await sqs.send_message(QueueUrl=url, MessageBody=f"job {i}")

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(send, i)
        received: list[str] = []
        while len(received) < 10:
            response = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
            for message in response.get("Messages", []):
                received.append(message["Body"])
                await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        assert sorted(received) == sorted(f"job {i}" for i in range(10))


async def test_dynamodb(backend: Any, client_kwargs: dict[str, Any]) -> None:
    table = f"t{uuid.uuid4().hex[:8]}"
    async with aws.client("dynamodb", backend=backend, **client_kwargs) as ddb:
        await ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        # the last response, as aiobotocore's waiter gives it (boto3's gave None)
        done = await ddb.get_waiter("table_exists").wait(TableName=table)
        assert done["Table"]["TableName"] == table
        await ddb.put_item(TableName=table, Item={"id": {"S": "a"}, "n": {"N": "1"}})
        item = await ddb.get_item(TableName=table, Key={"id": {"S": "a"}})
        assert item["Item"]["n"] == {"N": "1"}


async def test_unknown_backend(client_kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="'aioboto3' or 'boto3'"):
        async with aws.client("s3", backend="nope", **client_kwargs):  # type: ignore[arg-type]
            pass


def pooled(client: Any) -> int:
    """The connection pools a boto3 client holds (none once it is closed)."""
    return len(client._endpoint.http_session._manager.pools)


def body_closed(body: Any) -> bool:
    """Whether a streaming body of either backend was closed with its connection."""
    raw = body._body  # AsyncBody (boto3) or _AioBody (aioboto3)
    return bool(getattr(raw, "_raw_stream", raw).closed)


async def eventually(check: Callable[[], bool]) -> bool:
    """*check()*, waited for up to 5 s: a release runs on a worker, after the caller left."""
    with anyio.move_on_after(5):
        while not check():
            await anyio.sleep(0.01)
    return bool(check())


async def test_leaving_a_client_in_a_cancelled_task_closes_it(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """Leaving ``async with aws.client(...)`` because the task is cancelled still closes the
    client and its pooled connections (the boto3 backend's close was itself cancelled)."""
    bucket = f"aws-cancel-{uuid.uuid4().hex[:10]}"
    with anyio.CancelScope() as scope:
        async with aws.client("s3", backend=backend, **client_kwargs) as s3:
            await s3.create_bucket(Bucket=bucket)  # a pooled connection
            scope.cancel()
            await anyio.sleep(5)
    assert scope.cancelled_caught
    if backend == "boto3":
        assert pooled(s3.wrapped) == 0
    else:
        assert all(s.closed for s in s3._endpoint.http_session._sessions.values())


async def test_a_body_left_in_a_cancelled_task_is_closed(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """``async with response["Body"]`` left because the task is cancelled, or ``await
    body.close()`` in a cancelled task, closes the body's connection on both backends."""
    bucket = f"aws-body-{uuid.uuid4().hex[:10]}"
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="k", Body=b"x" * (1024 * 1024))
        with anyio.CancelScope() as scope:
            body = (await s3.get_object(Bucket=bucket, Key="k"))["Body"]
            async with body:
                assert await body.read(10) == b"x" * 10
                scope.cancel()
                await anyio.sleep(5)
        assert scope.cancelled_caught
        assert body_closed(body)
        body = (await s3.get_object(Bucket=bucket, Key="k"))["Body"]
        assert await body.read(10) == b"x" * 10
        with anyio.CancelScope() as scope:
            scope.cancel()
            await body.close()
        assert body_closed(body)


@pytest.mark.parametrize("case", BOTO3, ids=[f"{b}-{loop}" for b, loop in BOTO3])
async def test_a_boto3_client_arriving_for_a_cancelled_caller_is_closed(
    backend: Any, client_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """boto3's client is made in a thread: when the caller is cancelled meanwhile, the client
    it will never get is closed for it, with the connection it already holds."""
    made: list[Any] = []
    real = aws._boto3_client

    def make_client(service: str, kwargs: dict[str, Any]) -> Any:
        client = real(service, kwargs)
        client.list_buckets()  # one pooled connection
        made.append(client)
        return client

    arrived = threading.Event()
    monkeypatch.setattr(aws, "_boto3_client", returns_late(make_client, arrived))

    async def enter() -> None:
        async with aws.client("s3", backend=backend, **client_kwargs):
            pass

    assert await cancel_when(arrived, enter)
    monkeypatch.undo()
    assert await eventually(lambda: pooled(made[0]) == 0)


@pytest.mark.parametrize("case", BOTO3, ids=[f"{b}-{loop}" for b, loop in BOTO3])
async def test_a_body_arriving_for_a_cancelled_caller_is_closed(
    backend: Any, client_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``get_object`` runs in a thread: when its caller is cancelled meanwhile, the response's
    body (an open connection) that nobody will get is closed for it."""
    bucket = f"aws-late-{uuid.uuid4().hex[:10]}"
    responses: list[Any] = []
    arrived = threading.Event()
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="k", Body=b"x" * (1024 * 1024))
        real = s3.wrapped.get_object

        def get_object(**kwargs: Any) -> Any:
            responses.append(real(**kwargs))
            return responses[-1]

        monkeypatch.setattr(s3.wrapped, "get_object", returns_late(get_object, arrived))
        assert await cancel_when(arrived, lambda: s3.get_object(Bucket=bucket, Key="k"))
        monkeypatch.undo()
        body = responses[0]["Body"]
        assert await eventually(lambda: bool(body._raw_stream.closed))


@pytest.mark.parametrize("case", BOTO3, ids=[f"{b}-{loop}" for b, loop in BOTO3])
async def test_an_error_arriving_for_a_cancelled_caller_is_not_logged(
    backend: Any,
    client_kwargs: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A call whose caller was cancelled while it ran in its thread, and which then fails as
    calls do (a missing key), is dropped with its error, as aiobotocore's is. It was logged
    at WARNING with the ``ClientError``'s traceback, once per cancelled call."""
    caplog.set_level(logging.DEBUG, logger="asyncify_kit")
    bucket = f"aws-late-{uuid.uuid4().hex[:10]}"
    failed: list[ClientError] = []
    arrived = threading.Event()
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        real = s3.wrapped.head_object

        def head_object(**kwargs: Any) -> Any:
            try:
                return real(**kwargs)
            except ClientError as exc:
                failed.append(exc)
                raise

        monkeypatch.setattr(s3.wrapped, "head_object", raises_late(head_object, arrived))
        assert await cancel_when(arrived, lambda: s3.head_object(Bucket=bucket, Key="k"))
        monkeypatch.undo()
        await s3.delete_bucket(Bucket=bucket)
    assert len(failed) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_body_and_an_event_stream_are_async_iterables_on_both_backends(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """``async for chunk in response["Body"]`` (aiobotocore's 1 KiB chunks) and ``async for
    event in response["Payload"]`` (an event stream: S3 Select) work on both backends; with
    boto3 neither had ``__aiter__``, and iterating the sync event stream blocked the loop."""
    bucket = f"aws-iter-{uuid.uuid4().hex[:10]}"
    data = b"name,n\n" + b"".join(f"row{i},{i}\n".encode() for i in range(300))
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="t.csv", Body=data)
        body = (await s3.get_object(Bucket=bucket, Key="t.csv"))["Body"]
        async with body:
            chunks = [chunk async for chunk in body]
        assert b"".join(chunks) == data and len(chunks) > 1
        assert all(len(chunk) <= 1024 for chunk in chunks)
        response = await s3.select_object_content(
            Bucket=bucket,
            Key="t.csv",
            Expression="select s.name from s3object s where s.n = '7'",
            ExpressionType="SQL",
            InputSerialization={"CSV": {"FileHeaderInfo": "USE"}},
            OutputSerialization={"CSV": {}},
        )
        payload = response["Payload"]
        events = [event async for event in payload]
        records = b"".join(e["Records"]["Payload"] for e in events if "Records" in e)
        assert records == b"row7\n"
        assert "End" in events[-1]
        await payload.close()


async def test_paginators_build_full_results_and_search_on_both_backends(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """``paginate(...)`` gives aiobotocore's page iterator shape on both backends: with boto3
    ``build_full_result()`` and ``search()`` were missing."""
    bucket = f"aws-pages-{uuid.uuid4().hex[:10]}"
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        for i in range(5):
            await s3.put_object(Bucket=bucket, Key=f"k/{i}", Body=b"x")
        paginator = s3.get_paginator("list_objects_v2")
        config = {"PageSize": 2}
        full = await paginator.paginate(Bucket=bucket, PaginationConfig=config).build_full_result()
        assert [o["Key"] for o in full["Contents"]] == [f"k/{i}" for i in range(5)]
        pages = paginator.paginate(Bucket=bucket, PaginationConfig=config)
        keys = [key async for key in pages.search("Contents[].Key")]
        assert keys == [f"k/{i}" for i in range(5)]


async def test_a_client_used_after_its_block_refuses_to_call(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """A call on a client after its ``async with`` block ended raises, on both backends: it
    used to succeed, opening a connection (with aioboto3 an aiohttp session) nobody closed."""
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.list_buckets()
    with pytest.raises(RuntimeError, match="ListBuckets inside the block"):
        await s3.list_buckets()
    with pytest.raises(RuntimeError, match="client is closed"):
        async for _ in s3.get_paginator("list_buckets").paginate():
            pass
    if backend == "boto3":
        assert pooled(s3.wrapped) == 0


@asyncify
def open_sockets() -> int:
    """The sockets this process holds open (read from /proc, in a worker thread)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


async def test_a_body_left_unread_is_closed_with_its_client(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """A body neither read to its end nor closed when the ``async with aws.client(...)`` block
    ends is closed with the client, on both backends: with boto3 its connection (out of the
    pool, so closing the client did not close it) stayed open."""
    bucket = f"aws-unread-{uuid.uuid4().hex[:10]}"
    before = await open_sockets()
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="k", Body=b"x" * (2 * 1024 * 1024))
        body = (await s3.get_object(Bucket=bucket, Key="k"))["Body"]
        assert await body.read(10) == b"x" * 10
        assert await open_sockets() > before  # the body's connection at least
    with anyio.move_on_after(5):
        while await open_sockets() > before:  # every connection of the client closed
            await anyio.sleep(0.01)
    assert await open_sockets() <= before


# -- what a body offers: aiobotocore's StreamingBody, on both backends ----------------------

LINES = b"one\ntwo\r\nthree\rfour\n\nfive"


class Suspensions:
    """An awaitable counting how often the awaitable it wraps suspends its task: a thread hop
    is at least one suspension, so reading lines one hop per line shows as thousands."""

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self._awaitable = awaitable
        self.count = 0

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self._awaitable.__await__()
        step: Callable[[Any], Any] = inner.send
        value: Any = None
        while True:
            try:
                yielded = step(value)
            except StopIteration as stop:
                return stop.value
            self.count += 1
            try:
                value = yield yielded
                step = inner.send
            except BaseException as exc:  # a cancellation: the wrapped awaitable handles it
                step, value = inner.throw, exc


async def test_body_readlines_tell_and_content_length_are_aiobotocores(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """``await body.readlines()`` (the lines left, without their endings), ``body.tell()``
    (the bytes read so far) and ``body.content_length`` (the response's Content-Length, an
    int) on both backends: the boto3 backend's body had none of them."""
    bucket = f"aws-readlines-{uuid.uuid4().hex[:10]}"
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="k", Body=LINES)
        await s3.put_object(Bucket=bucket, Key="empty", Body=b"")
        async with (await s3.get_object(Bucket=bucket, Key="k"))["Body"] as body:
            assert body.content_length == len(LINES) and type(body.content_length) is int
            assert body.tell() == 0 and type(body.tell()) is int
            assert await body.read(2) == b"on"
            assert body.tell() == 2
            assert await body.readlines() == [b"e", b"two", b"three", b"four", b"", b"five"]
            assert body.tell() == len(LINES)
            assert await body.readlines() == []
            assert body.tell() == len(LINES)
        response = await s3.get_object(Bucket=bucket, Key="k", Range="bytes=4-8")
        async with response["Body"] as body:
            assert body.content_length == 5
            assert await body.readlines() == [b"two"]
            assert body.tell() == 5
        async with (await s3.get_object(Bucket=bucket, Key="empty"))["Body"] as body:
            assert body.content_length == 0
            assert await body.readlines() == []
            assert body.tell() == 0


async def test_body_readinto_and_anext_are_aiobotocores(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """``await body.readinto(buffer)``, ``await body.anext()`` and ``await anext(body)`` (the
    next chunk of at most 1 KiB) on both backends: the boto3 backend's body had neither, and
    aioboto3's ``readinto`` did not count in ``tell()``, so a later ``read()`` failed."""
    bucket = f"aws-readinto-{uuid.uuid4().hex[:10]}"
    data = bytes(range(256)) * 20
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="k", Body=data)
        async with (await s3.get_object(Bucket=bucket, Key="k"))["Body"] as body:
            buffer = bytearray(100)
            assert await body.readinto(buffer) == 100 and buffer == data[:100]
            view = memoryview(bytearray(50))
            assert await body.readinto(view) == 50 and view.tobytes() == data[100:150]
            assert body.tell() == 150
            first = await body.anext()
            assert 0 < len(first) <= 1024 and first == data[150 : 150 + len(first)]
            second = await anext(body)
            assert 0 < len(second) <= 1024
            rest = await body.read()
            assert first + second + rest == data[150:]
            assert body.tell() == len(data)
            assert await body.readinto(bytearray(10)) == 0
            with pytest.raises(StopAsyncIteration):
                await body.anext()
            with pytest.raises(StopAsyncIteration):
                await anext(body)


def every_read(body: Any) -> dict[str, Callable[[], Awaitable[object]]]:
    """Each way to read a body, as a call that reads (or iterates) it to its end."""

    async def chunks() -> list[bytes]:
        return [chunk async for chunk in body.iter_chunks(4)]

    async def lines() -> list[bytes]:
        return [line async for line in body.iter_lines(4, keepends=True)]

    async def iterated() -> list[bytes]:
        return [chunk async for chunk in body]

    return {
        "read()": lambda: body.read(),
        "read(5)": lambda: body.read(5),
        "readinto": lambda: body.readinto(bytearray(5)),
        "readlines": lambda: body.readlines(),
        "iter_chunks": chunks,
        "iter_lines": lines,
        "async for": iterated,
    }


async def test_body_at_its_end_and_after_close_is_aiobotocores(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """At the end of a body every read gives nothing (``anext`` raises StopAsyncIteration) and
    ``readable()`` is False; once the body is closed (``close()``, ``async with`` left, or its
    client's block ended) every read raises botocore's ``ResponseStreamingError``, on both
    backends: with boto3 a closed body's reads returned b"" or raised IncompleteReadError, and
    aioboto3's ``readable()`` raised AttributeError."""
    bucket = f"aws-closed-{uuid.uuid4().hex[:10]}"
    nothing: dict[str, object] = {
        "read()": b"",
        "read(5)": b"",
        "readinto": 0,
        "readlines": [],
        "iter_chunks": [],
        "iter_lines": [],
        "async for": [],
    }
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="k", Body=LINES)
        body = (await s3.get_object(Bucket=bucket, Key="k"))["Body"]
        assert body.readable() is True
        assert await body.read() == LINES
        assert body.readable() is False
        for name, read in every_read(body).items():
            assert await read() == nothing[name], name
        with pytest.raises(StopAsyncIteration):
            await body.anext()
        assert body.tell() == len(LINES)
        await body.close()
        assert body.readable() is False and body.tell() == len(LINES)
        for name, read in every_read(body).items():
            with pytest.raises(ResponseStreamingError):
                await read()
            assert body.tell() == len(LINES), name

        body = (await s3.get_object(Bucket=bucket, Key="k"))["Body"]
        assert await body.read(3) == b"one" and body.readable() is True
        await body.close()
        assert body.readable() is False and body.tell() == 3
        for read in every_read(body).values():
            with pytest.raises(ResponseStreamingError):
                await read()
        with pytest.raises(ResponseStreamingError):
            await body.anext()

        async with (await s3.get_object(Bucket=bucket, Key="k"))["Body"] as body:
            assert await body.read(3) == b"one"
        assert body.readable() is False
        with pytest.raises(ResponseStreamingError):
            await body.read()

        body = (await s3.get_object(Bucket=bucket, Key="k"))["Body"]
        assert await body.read(3) == b"one"
    assert body.readable() is False  # closed with its client
    for read in every_read(body).values():
        with pytest.raises(ResponseStreamingError):
            await read()


async def test_body_lines_cost_a_thread_hop_per_chunk_not_per_line(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """``iter_lines(chunk_size)`` reads one chunk per thread hop and cuts it into lines on the
    loop, and ``readlines()`` reads the rest in one hop, on both backends (aioboto3 makes no
    hop at all): the boto3 backend's ``iter_lines`` made one hop per line."""
    bucket = f"aws-hops-{uuid.uuid4().hex[:10]}"
    data = b"".join(b"line %d\n" % i for i in range(2000))  # 18,890 bytes
    async with aws.client("s3", backend=backend, **client_kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="k", Body=data)
        async with (await s3.get_object(Bucket=bucket, Key="k"))["Body"] as body:

            async def lines() -> list[bytes]:
                return [line async for line in body.iter_lines(chunk_size=8192)]

            counted = Suspensions(lines())
            assert await counted == data.splitlines()
            assert counted.count <= 40  # 3 chunks and the empty read at the end: 4 hops
        async with (await s3.get_object(Bucket=bucket, Key="k"))["Body"] as body:
            assert await body.read(3) == b"lin"
            counted = Suspensions(body.readlines())
            assert await counted == [b"e 0", *data.splitlines()[1:]]
            assert counted.count <= 10
        async with (await s3.get_object(Bucket=bucket, Key="k"))["Body"] as body:
            lines_kept = [line async for line in body.iter_lines(chunk_size=3, keepends=True)]
        assert lines_kept == data.splitlines(keepends=True)


class _RawS3:
    """A server on loopback, in a thread, that takes S3 PUTs as some S3-compatible stores
    (and proxies) do: it ignores ``Expect: 100-continue`` and waits for the body, then
    answers ``200``. It records each request's ``Expect`` header, the seconds between its
    headers and its body, and the socket options of our end of each connection (same
    process: found by its address)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[tuple[str | None, float]] = []
        self.client_options: list[tuple[int, int]] = []  # (SO_KEEPALIVE, TCP_USER_TIMEOUT)
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _options_of_our_end(self, peer: tuple[str, int]) -> tuple[int, int]:
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                    continue
                sock = socket.socket(fileno=os.dup(int(fd)))
                with sock:
                    if sock.type == socket.SOCK_STREAM and sock.getsockname() == peer:
                        keepalive = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
                        user = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
                        return keepalive, user
        raise AssertionError(f"no socket of this process at {peer}")

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            self.client_options.append(self._options_of_our_end(peer))
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            while True:
                head: dict[str, str] = {}
                if not (request_line := stream.readline()).strip():
                    return
                while (line := stream.readline()).strip():
                    name, _, value = line.decode("latin-1").partition(":")
                    head[name.strip().lower()] = value.strip()
                headers_at = time.monotonic()
                body = stream.read(int(head.get("content-length", "0")))
                waited = time.monotonic() - headers_at if body else 0.0
                self.requests.append((head.get("expect"), waited))
                assert request_line.startswith(b"PUT ")
                conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "e"\r\nContent-Length: 0\r\n\r\n')

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


@contextlib.contextmanager
def raw_s3() -> Generator[_RawS3, None, None]:
    server = _RawS3()
    try:
        yield server
    finally:
        server.close()


def _quick(**options: Any) -> Config:
    return Config(retries={"total_max_attempts": 1}, **options)


async def test_a_put_to_a_store_that_sends_no_100_continue_goes_through_after_a_second(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """A store that ignores ``Expect: 100-continue`` and waits for the body: the body goes
    after a second, as botocore sends it, and the PUT succeeds. With aioboto3 it waited for
    the ``100 Continue`` for good (aiohttp arms its read timeout once the body is sent)."""
    with raw_s3() as server:
        kwargs = {**client_kwargs, "endpoint_url": server.endpoint}
        async with aws.client("s3", backend=backend, config=_quick(), **kwargs) as s3:
            with anyio.fail_after(10):
                reply = await s3.put_object(Bucket="b", Key="k", Body=b"payload")
                assert reply["ETag"] == '"e"'
                reply = await s3.put_object(Bucket="b", Key="k", Body=io.BytesIO(b"more"))
                assert reply["ETag"] == '"e"'
    assert [expect for expect, _ in server.requests] == ["100-continue"] * 2
    assert all(0.9 < waited < 5 for _, waited in server.requests), server.requests


async def test_a_client_bounds_its_writes_and_keeps_botocores_socket_options(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """``Config(tcp_keepalive=True)`` sets ``SO_KEEPALIVE`` on both backends (aiobotocore
    left botocore's socket options unused), and the aioboto3 backend's connections give up
    on unacknowledged data after the longer of the read and connect timeouts
    (``TCP_USER_TIMEOUT``; boto3 sends with a socket timeout instead)."""
    with raw_s3() as server:
        kwargs = {**client_kwargs, "endpoint_url": server.endpoint}
        config = _quick(tcp_keepalive=True, read_timeout=2.5, connect_timeout=1)
        async with aws.client("s3", backend=backend, config=config, **kwargs) as s3:
            with anyio.fail_after(10):
                await s3.put_object(Bucket="b", Key="k", Body=b"payload")
    assert server.client_options == [(1, 2500 if backend == "aioboto3" else 0)]


@contextlib.contextmanager
def silent_server(receive_buffer: int | None = None) -> Generator[str, None, None]:
    """The endpoint of a server on loopback whose accept queue takes connections and that
    never reads nor answers (*receive_buffer*: its sockets' ``SO_RCVBUF``)."""
    server = socket.socket()
    if receive_buffer is not None:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


async def test_a_put_to_a_server_that_never_answers_ends_with_the_read_timeout(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """A server whose accept queue holds the connection and that never answers: a PUT ends
    with botocore's ``ReadTimeoutError`` on both backends. With aioboto3 it hung for good,
    waiting for a ``100 Continue``."""
    with silent_server() as endpoint:
        kwargs = {**client_kwargs, "endpoint_url": endpoint}
        config = _quick(read_timeout=0.5, connect_timeout=0.5)
        async with aws.client("s3", backend=backend, config=config, **kwargs) as s3:
            with anyio.fail_after(10), pytest.raises(ReadTimeoutError):
                await s3.put_object(Bucket="b", Key="k", Body=b"x")


async def test_a_put_to_a_server_that_stops_reading_ends_after_the_timeouts(
    backend: Any, client_kwargs: dict[str, Any]
) -> None:
    """A server that never reads: once the socket buffers are full, a 7 MiB PUT ends with a
    botocore connection error within seconds on both backends (aioboto3: the kernel's
    ``TCP_USER_TIMEOUT``; boto3: its socket timeout). With aioboto3 it hung for good."""
    with silent_server(receive_buffer=65536) as endpoint:
        kwargs = {**client_kwargs, "endpoint_url": endpoint}
        config = _quick(read_timeout=0.5, connect_timeout=0.5)
        async with aws.client("s3", backend=backend, config=config, **kwargs) as s3:
            started = anyio.current_time()
            with anyio.fail_after(20), pytest.raises(BotoCoreError):
                await s3.put_object(Bucket="b", Key="k", Body=b"x" * (7 * 1024 * 1024))
            assert anyio.current_time() - started < 10


def test_bounded_config_keeps_the_callers_options() -> None:
    """`aws.bounded_config` turns a botocore ``Config`` into an ``AioConfig`` with the same
    options, copies an ``AioConfig`` (its connector arguments kept), and leaves one naming
    its own HTTP session class as it is."""
    from aiobotocore.config import AioConfig
    from aiobotocore.httpsession import AIOHTTPSession

    class OwnSession(AIOHTTPSession):  # type: ignore[misc]
        pass

    config = Config(read_timeout=7, retries={"mode": "standard"}, signature_version="s3v4")
    bounded = aws.bounded_config(config)
    assert isinstance(bounded, AioConfig)
    assert issubclass(bounded.http_session_cls, AIOHTTPSession)
    assert bounded.http_session_cls is not AIOHTTPSession
    assert (bounded.read_timeout, bounded.retries, bounded.signature_version) == (
        7,
        {"mode": "standard"},
        "s3v4",
    )
    own = AioConfig(read_timeout=3, connector_args={"keepalive_timeout": 5})
    copied = aws.bounded_config(own)
    assert copied is not own and own.http_session_cls is AIOHTTPSession
    assert (copied.read_timeout, copied.connector_args["keepalive_timeout"]) == (3, 5)
    own_session = AioConfig(http_session_cls=OwnSession)
    assert aws.bounded_config(own_session) is own_session
    assert aws.bounded_config(None).http_session_cls is bounded.http_session_cls


# --- S3 transfers: upload_file, upload_fileobj, download_file, download_fileobj, copy ------
#
# They keep boto3's promises on both backends. With aioboto3's own methods (15.5), the tests
# marked "aioboto3 failed" failed: a download emptied the file it replaced before it knew the
# key existed and left half a file when cancelled, a failed or cancelled multipart upload
# stayed on S3 with its uploader tasks pending for good, and so did a cancelled multipart
# copy.

MIB = 1 << 20


#: multipart from 5 MiB on, in parts of 5 MiB (S3's smallest), 2 requests at a time
def small_parts(concurrency: int = 2) -> TransferConfig:
    return TransferConfig(
        multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=concurrency
    )


SMALL_PARTS = small_parts()


@pytest.fixture
async def s3(backend: Any, client_kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    async with aws.client("s3", backend=backend, **client_kwargs) as client:
        await client.create_bucket(Bucket=(bucket := f"transfer-{uuid.uuid4().hex[:10]}"))
        client.test_bucket = bucket
        yield client


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(12 * MIB + 12345)  # three parts: 5 MiB, 5 MiB, the rest


async def leftovers(directory: Path, name: str) -> list[str]:
    """Files in *directory* other than *name* (boto3's temp files: *name*.XXXXXXXX)."""
    return sorted([p.name async for p in anyio.Path(directory).iterdir() if p.name != name])


async def unfinished_uploads(s3: Any) -> list[Any]:
    uploads: list[Any] = (await s3.list_multipart_uploads(Bucket=s3.test_bucket)).get("Uploads", [])
    return uploads


@pytest.mark.parametrize("size", [0, 1000, 5 * MIB, 12 * MIB + 12345])
async def test_upload_and_download_files_round_trip(
    s3: Any, payload: bytes, tmp_path: Path, size: int
) -> None:
    source = tmp_path / "source.bin"
    await anyio.Path(source).write_bytes(payload[:size])
    sent: list[int] = []
    await s3.upload_file(
        str(source),
        s3.test_bucket,
        "blob",
        ExtraArgs={"ContentType": "application/x-test"},
        Callback=sent.append,
        Config=SMALL_PARTS,
    )
    head = await s3.head_object(Bucket=s3.test_bucket, Key="blob")
    assert head["ContentLength"] == size
    assert head["ContentType"] == "application/x-test"
    # Callback gets the bytes of each step, not running totals (boto3's meaning)
    assert sum(sent) == size
    target = tmp_path / "copy.bin"
    got: list[int] = []
    await s3.download_file(s3.test_bucket, "blob", target, Callback=got.append, Config=SMALL_PARTS)
    assert await anyio.Path(target).read_bytes() == payload[:size]
    assert sum(got) == size
    assert await leftovers(tmp_path, "copy.bin") == ["source.bin"]
    assert await unfinished_uploads(s3) == []


@pytest.mark.parametrize("size", [1000, 6 * MIB])  # one put_object; a multipart upload
async def test_a_failed_upload_file_is_boto3s_s3uploadfailederror(
    s3: Any, payload: bytes, tmp_path: Path, size: int
) -> None:
    """aioboto3 raised the ClientError itself (NoSuchBucket), where boto3's `upload_file`
    raises `S3UploadFailedError` naming the file and the target; and a Filename that is not
    a path was a TypeError there, boto3's ValueError here."""
    from boto3.exceptions import S3UploadFailedError

    source = tmp_path / "source.bin"
    await anyio.Path(source).write_bytes(payload[:size])
    missing = f"missing-{uuid.uuid4().hex[:10]}"
    with pytest.raises(S3UploadFailedError, match=f"Failed to upload .*source.bin to {missing}/k"):
        await s3.upload_file(source, missing, "k", Config=SMALL_PARTS)
    for bad in (123, None):
        with pytest.raises(ValueError, match="Filename must be a string or a path-like"):
            await s3.upload_file(bad, s3.test_bucket, "k")
        with pytest.raises(ValueError, match="Filename must be a string or a path-like"):
            await s3.download_file(s3.test_bucket, "k", bad)


async def test_file_objects_round_trip(s3: Any, payload: bytes) -> None:
    await s3.upload_fileobj(io.BytesIO(payload), s3.test_bucket, "blob", Config=SMALL_PARTS)
    sink = io.BytesIO()
    await s3.download_fileobj(s3.test_bucket, "blob", sink, Config=SMALL_PARTS)
    assert sink.getvalue() == payload


class AsyncFile:
    """An async file object, as aiofiles gives (``await read(n)``, ``await write(b)``)."""

    def __init__(self, data: bytes = b"") -> None:
        self.buffer = io.BytesIO(data)

    async def read(self, size: int = -1) -> bytes:
        await anyio.sleep(0)
        return self.buffer.read(size)

    async def write(self, data: bytes) -> int:
        await anyio.sleep(0)
        return self.buffer.write(data)


async def test_async_file_objects_on_both_backends(s3: Any, payload: bytes) -> None:
    # boto3 failed: it took write's coroutine for done (a download wrote nothing) and read's
    # for data (TypeError: object of type 'coroutine' has no len())
    await s3.upload_fileobj(AsyncFile(payload), s3.test_bucket, "blob", Config=SMALL_PARTS)
    sink = AsyncFile()
    await s3.download_fileobj(s3.test_bucket, "blob", sink, Config=SMALL_PARTS)
    assert sink.buffer.getvalue() == payload


async def test_a_missing_key_leaves_the_file_as_it_was(s3: Any, tmp_path: Path) -> None:
    # aioboto3 failed: it emptied the file, then asked for the key
    target = tmp_path / "kept.txt"
    await anyio.Path(target).write_bytes(b"precious")
    with pytest.raises(ClientError) as caught:
        await s3.download_file(s3.test_bucket, "missing", str(target))
    assert caught.value.response["Error"]["Code"] == "404"
    assert await anyio.Path(target).read_bytes() == b"precious"
    assert await leftovers(tmp_path, "kept.txt") == []


async def test_a_cancelled_download_leaves_the_file_old_or_new(
    s3: Any, payload: bytes, tmp_path: Path
) -> None:
    # aioboto3 failed: a part written, the rest not, in place of the old content
    await s3.put_object(Bucket=s3.test_bucket, Key="blob", Body=payload)
    target = tmp_path / "kept.bin"
    await anyio.Path(target).write_bytes(b"precious")
    first_part = threading.Event()

    async def download() -> None:
        await s3.download_file(
            s3.test_bucket,
            "blob",
            str(target),
            Callback=lambda _: first_part.set(),
            Config=small_parts(concurrency=1),
        )

    await cancel_when(first_part, download)
    # (one that ended before the cancellation reached it is whole: see
    # tests/test_aws_cancel_transfers.py for downloads cancelled mid-way)
    assert await anyio.Path(target).read_bytes() in (b"precious", payload)
    assert await leftovers(tmp_path, "kept.bin") == []


async def test_an_object_replaced_while_downloaded_fails_the_download(
    s3: Any,
    backend: Any,
    client_kwargs: dict[str, Any],
    payload: bytes,
    tmp_path: Path,
) -> None:
    # every part is fetched with IfMatch set to the ETag head_object gave, as boto3's are
    await s3.put_object(Bucket=s3.test_bucket, Key="blob", Body=payload)
    target = tmp_path / "kept.bin"
    await anyio.Path(target).write_bytes(b"precious")
    gets = 0
    replacement = os.urandom(len(payload))
    async with aws.client("s3", backend="boto3", **client_kwargs) as other:
        sync_other = other.wrapped
        if backend == "aioboto3":

            async def replace_before_the_second_get(**_: Any) -> None:
                nonlocal gets
                gets += 1
                if gets == 2:
                    await other.put_object(Bucket=s3.test_bucket, Key="blob", Body=replacement)

        else:

            def replace_before_the_second_get(**_: Any) -> None:  # type: ignore[misc]
                nonlocal gets  # (boto3: in its worker thread)
                gets += 1
                if gets == 2:
                    sync_other.put_object(Bucket=s3.test_bucket, Key="blob", Body=replacement)

        s3.meta.events.register("before-call.s3.GetObject", replace_before_the_second_get)
        config = small_parts(concurrency=1)
        with pytest.raises(S3DownloadFailedError, match="did not match expected ETag"):
            await s3.download_file(s3.test_bucket, "blob", str(target), Config=config)
    assert await anyio.Path(target).read_bytes() == b"precious"
    assert await leftovers(tmp_path, "kept.bin") == []


async def test_a_cancelled_upload_leaves_no_unfinished_upload(s3: Any, payload: bytes) -> None:
    # aioboto3 failed: the multipart upload stayed, its uploader tasks pending for good
    first_part = threading.Event()
    tasks_before = _tasks()

    async def upload() -> None:
        await s3.upload_fileobj(
            io.BytesIO(payload),
            s3.test_bucket,
            "blob",
            Callback=lambda _: first_part.set(),
            Config=SMALL_PARTS,
        )

    await cancel_when(first_part, upload)
    with anyio.fail_after(10):
        while await unfinished_uploads(s3):  # (boto3: its thread aborts it)
            await anyio.sleep(0.05)
    assert _tasks() <= tasks_before


class FailingFile(io.RawIOBase):
    """A file whose reads fail after *good* parts' worth of bytes."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise OSError("the disk went away")
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return b"x" * size


async def test_a_failed_upload_is_aborted(s3: Any) -> None:
    # aioboto3 failed: the upload stayed on S3, and ten uploader tasks pending
    tasks_before = _tasks()
    with pytest.raises(OSError, match="the disk went away"):
        await s3.upload_fileobj(FailingFile(11 * MIB), s3.test_bucket, "blob", Config=SMALL_PARTS)
    assert await unfinished_uploads(s3) == []
    assert _tasks() <= tasks_before
    with pytest.raises(ClientError):
        await s3.head_object(Bucket=s3.test_bucket, Key="blob")


async def test_extra_args_are_checked_as_boto3_checks_them(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Invalid extra_args key 'Colour', must be one of: "):
        await s3.upload_fileobj(
            io.BytesIO(b"x"), s3.test_bucket, "blob", ExtraArgs={"Colour": "blue"}
        )
    with pytest.raises(ValueError, match="Invalid extra_args key 'ContentType', must be one of"):
        await s3.download_file(
            s3.test_bucket, "blob", str(tmp_path / "x"), ExtraArgs={"ContentType": "a/b"}
        )
    assert await leftovers(tmp_path, "") == []


def _tasks() -> set[Any]:
    """The asyncio tasks alive (none on trio)."""
    try:
        return set(asyncio.all_tasks())
    except RuntimeError:
        return set()


@pytest.mark.parametrize("size", [1000, 12 * MIB + 12345])
async def test_copy_copies_small_and_multipart(s3: Any, payload: bytes, size: int) -> None:
    await s3.put_object(Bucket=s3.test_bucket, Key="blob", Body=payload[:size])
    copied: list[int] = []
    await s3.copy(
        {"Bucket": s3.test_bucket, "Key": "blob"},
        s3.test_bucket,
        "copy",
        ExtraArgs={"MetadataDirective": "REPLACE", "ContentType": "application/x-copy"},
        Callback=copied.append,
        Config=SMALL_PARTS,
    )
    response = await s3.get_object(Bucket=s3.test_bucket, Key="copy")
    async with response["Body"] as body:
        assert await body.read() == payload[:size]
    assert sum(copied) == size
    assert await unfinished_uploads(s3) == []


async def test_a_copy_that_fails_or_is_cancelled_is_aborted(s3: Any, payload: bytes) -> None:
    # aioboto3 failed: a cancelled multipart copy stayed on S3
    await s3.put_object(Bucket=s3.test_bucket, Key="blob", Body=payload)
    source = {"Bucket": s3.test_bucket, "Key": "blob"}
    first_part = threading.Event()

    async def copy() -> None:
        await s3.copy(
            source,
            s3.test_bucket,
            "copy",
            Callback=lambda _: first_part.set(),
            Config=small_parts(concurrency=1),
        )

    await cancel_when(first_part, copy)
    with anyio.fail_after(10):
        while await unfinished_uploads(s3):  # (boto3: its thread aborts it)
            await anyio.sleep(0.05)
    part_copies = 0

    def fail_the_second_part(**_: Any) -> None:
        nonlocal part_copies
        part_copies += 1
        if part_copies == 2:
            raise RuntimeError("injected failure")

    s3.meta.events.register("before-call.s3.UploadPartCopy", fail_the_second_part)
    with pytest.raises(RuntimeError, match="injected failure"):
        await s3.copy(source, s3.test_bucket, "copy2", Config=small_parts(concurrency=1))
    assert await unfinished_uploads(s3) == []
    with pytest.raises(TypeError, match="Expecting dictionary formatted"):
        await s3.copy(f"{s3.test_bucket}/blob", s3.test_bucket, "copy3")
    with pytest.raises(ValueError, match="Invalid extra_args key 'Body'"):
        await s3.copy(source, s3.test_bucket, "copy3", ExtraArgs={"Body": b"x"})


async def test_an_upload_cancelled_while_s3_creates_it_is_aborted(
    s3: Any, backend: Any, payload: bytes
) -> None:
    # the cancellation comes once S3 made the upload, before its answer (the upload's id)
    # reached the caller: the call is still waited for, and that upload aborted
    creating = threading.Event()
    if backend == "aioboto3":

        async def slow_create(**_: Any) -> None:
            creating.set()
            await asyncio.sleep(0.3)

    else:

        def slow_create(**_: Any) -> None:  # type: ignore[misc]
            creating.set()  # (boto3: in its worker thread)
            time.sleep(0.3)

    s3.meta.events.register("after-call.s3.CreateMultipartUpload", slow_create)

    async def upload() -> None:
        await s3.upload_fileobj(io.BytesIO(payload), s3.test_bucket, "blob", Config=SMALL_PARTS)

    assert await cancel_when(creating, upload)
    with anyio.fail_after(10):
        while await unfinished_uploads(s3):
            await anyio.sleep(0.05)
