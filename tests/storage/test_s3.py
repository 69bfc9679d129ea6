"""S3 specifics: configuration from the standard AWS environment, multipart thresholds,
objects written by other tools, and the asyncio-only rule of aioboto3; a connection broken in
the middle of a body, as StorageErrors."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import pytest

from asyncify_kit import ConfigError, _aio_payloads
from asyncify_kit.detect._detector import current_loop_kind
from asyncify_kit.storage import AlreadyExists, NotFound, Storage, StorageError
from asyncify_kit.storage._backends import _s3 as s3_backend

from .conftest import s3_client
from .local_helpers import cancel_when

CASES = [("s3", "asyncio"), ("s3+boto3", "asyncio"), ("s3+boto3", "trio")]

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize(("scheme", "anyio_backend"), CASES, ids=[f"{s}-{b}" for s, b in CASES]),
]

MiB = 1024 * 1024


async def test_endpoint_and_region_from_environment(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, bucket = s3_bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    async with Storage(f"{scheme}://{bucket}/env-{uuid.uuid4().hex[:8]}") as st:
        await st.write("k", b"via the environment")
        assert await st.read("k") == b"via the environment"


async def test_multipart_threshold_and_parts(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str]
) -> None:
    endpoint, bucket = s3_bucket
    prefix = f"mp-{uuid.uuid4().hex[:8]}"
    url = (
        f"{scheme}://{bucket}/{prefix}?endpoint_url={endpoint}"
        f"&multipart_threshold={6 * MiB}&multipart_chunksize={5 * MiB}"
    )
    async with Storage(url) as st:
        await st.write("small", b"s" * (6 * MiB))  # at the threshold: one PUT
        await st.write("large", b"l" * (6 * MiB + 1))  # above: 2 parts of <= 5 MiB
        async with st.open("streamed", "wb") as f:
            for _ in range(11):
                await f.write(b"m" * MiB)  # 11 MiB: 3 parts
        assert (await st.stat("small")).etag.count("-") == 0  # type: ignore[union-attr]
        assert (await st.stat("large")).etag.endswith("-2")  # type: ignore[union-attr]
        assert (await st.stat("streamed")).etag.endswith("-3")  # type: ignore[union-attr]
        assert await st.read("streamed", offset=11 * MiB - 3) == b"mmm"
        with pytest.raises(AlreadyExists):
            await st.write("large", b"x" * (7 * MiB), if_not_exists=True)
        assert (await st.stat("large")).size == 6 * MiB + 1
    client = s3_client(endpoint)
    uploads = await anyio.to_thread.run_sync(
        lambda: client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    )
    assert uploads.get("Uploads", []) == []


async def test_foreign_keys_are_skipped_in_listings(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str]
) -> None:
    endpoint, bucket = s3_bucket
    prefix = f"foreign-{uuid.uuid4().hex[:8]}"
    client = s3_client(endpoint)
    for key in ("ok.txt", "dir/", "a//b", "../up", "sub/fine"):
        put = functools.partial(client.put_object, Bucket=bucket, Key=f"{prefix}/{key}", Body=b"x")
        await anyio.to_thread.run_sync(put)
    async with Storage(f"{scheme}://{bucket}/{prefix}?endpoint_url={endpoint}") as st:
        assert [i.key async for i in st.list()] == ["ok.txt", "sub/fine"]


async def test_cancelled_large_write_leaves_no_upload(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str]
) -> None:
    endpoint, bucket = s3_bucket
    prefix = f"cancel-{uuid.uuid4().hex[:8]}"
    url = f"{scheme}://{bucket}/{prefix}?endpoint_url={endpoint}&multipart_chunksize={5 * MiB}"
    async with Storage(url) as st:
        await st.write("k", b"previous")
        for delay in (0.02, 0.1):
            with anyio.move_on_after(delay) as scope:
                await st.write("k", b"n" * (26 * MiB))  # bytes above the threshold: 6 parts
            if scope.cancelled_caught:
                assert await st.read("k") == b"previous"
            else:  # the machine was fast enough to finish: then it is all there
                assert (await st.stat("k")).size == 26 * MiB
    client = s3_client(endpoint)
    uploads = await anyio.to_thread.run_sync(
        lambda: client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    )
    assert uploads.get("Uploads", []) == []


async def start_cutting_proxy(tg: anyio.abc.TaskGroup, endpoint: str, cut: int) -> str:
    """Start, in *tg*, a TCP proxy to *endpoint* that closes each connection after *cut*
    bytes of response: a connection breaking in the middle of a body. Returns its URL."""
    target = urlsplit(endpoint)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp(target.hostname or "", target.port or 80) as up:

            async def forward() -> None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    async for data in client:
                        await up.send(data)

            async def back() -> None:
                sent = 0
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    async for data in up:
                        if sent + len(data) >= cut:
                            await client.send(data[: cut - sent])
                            break
                        sent += len(data)
                        await client.send(data)
                pair.cancel_scope.cancel()  # then both sides are closed, mid-body

            async with anyio.create_task_group() as pair:
                pair.start_soon(forward)
                pair.start_soon(back)

    async def serve() -> None:
        async with listener:
            await listener.serve(handle)

    tg.start_soon(serve)
    return f"http://127.0.0.1:{port}"


async def test_connection_broken_mid_body_is_a_storage_error(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str]
) -> None:
    """The body of a read breaks off (the connection closes after 1 MiB of 8): read, stream
    and open "rb" raise StorageError, the driver's exception chained, as for any S3 error."""
    endpoint, bucket = s3_bucket
    prefix = f"cut-{uuid.uuid4().hex[:8]}"
    client = s3_client(endpoint)
    put = functools.partial(
        client.put_object, Bucket=bucket, Key=f"{prefix}/big.bin", Body=b"b" * (8 * MiB)
    )
    await anyio.to_thread.run_sync(put)

    async def whole(st: Storage) -> object:
        return await st.read("big.bin")

    async def streamed(st: Storage) -> object:
        async with st.stream("big.bin", chunk_size=256 * 1024) as chunks:
            return [len(chunk) async for chunk in chunks]

    async def file_read(st: Storage) -> object:
        async with st.open("big.bin", "rb") as f:
            return await f.read()

    async with anyio.create_task_group() as tg:
        proxy = await start_cutting_proxy(tg, endpoint, MiB)
        url = f"{scheme}://{bucket}/{prefix}?endpoint_url={proxy}&max_attempts=1"
        async with Storage(url) as st:
            for operation in (whole, streamed, file_read):
                with pytest.raises(StorageError, match=r"big\.bin") as info:
                    await operation(st)
                assert type(info.value) is StorageError
                assert info.value.__cause__ is info.value.orig is not None
                assert not isinstance(info.value.orig, StorageError)
            # a caller that catches the error and reads on is refused, not handed a truncated
            # object as if it were complete
            async with st.stream("big.bin", chunk_size=256 * 1024) as chunks:
                with pytest.raises(StorageError, match=r"big\.bin"):
                    async for _ in chunks:
                        pass
                with pytest.raises(StorageError, match="earlier read failed"):
                    await chunks.__anext__()
            async with st.open("big.bin", "rb") as f:
                with pytest.raises(StorageError, match=r"big\.bin"):
                    await f.read()
                with pytest.raises(StorageError, match="earlier read failed"):
                    await f.read()
        tg.cancel_scope.cancel()


async def test_a_request_answered_by_a_closed_connection_is_a_storage_error(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str]
) -> None:
    """The connection closes before any answer: a transport error, whose `response` is None
    in botocore. `read` raised AttributeError (looking for S3's error code in it), where
    `stat` raised StorageError."""
    endpoint, bucket = s3_bucket
    async with anyio.create_task_group() as tg:
        proxy = await start_cutting_proxy(tg, endpoint, 0)
        url = f"{scheme}://{bucket}/none-{uuid.uuid4().hex[:8]}?endpoint_url={proxy}&max_attempts=1"
        async with Storage(url) as st:
            for operation in (
                lambda: st.read("k"),
                lambda: st.read("k", offset=3),
                lambda: st.read("k", offset=3, length=2),
                lambda: st.stat("k"),
            ):
                with pytest.raises(StorageError, match="'k'") as info:
                    await operation()
                assert type(info.value) is StorageError
                assert info.value.__cause__ is info.value.orig is not None
        tg.cancel_scope.cancel()


async def test_a_write_to_a_server_that_never_answers_ends_with_the_read_timeout(
    scheme: str, anyio_backend: str, aws_env: None
) -> None:
    """A server that takes the connection and never answers (its accept queue holds it):
    a write ends with a `StorageError` after the read timeout, as a read does. On s3:// it
    hung for good: botocore sends a PUT with ``Expect: 100-continue``, and aiohttp waits for
    the ``100 Continue`` with no timeout."""
    server = socket.socket()
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        options = "max_attempts=1&read_timeout=0.3&connect_timeout=1"
        async with Storage(f"{scheme}://bucket/p?endpoint_url={endpoint}&{options}") as st:
            for operation in (lambda: st.write("k", b"x"), lambda: st.read("k")):
                with anyio.fail_after(10), pytest.raises(StorageError, match="'k'") as info:
                    await operation()
                # (on 3.10 aioboto3's said "failed": its asyncio.TimeoutError is not the builtin)
                assert " timed out: " in str(info.value)
    finally:
        server.close()


async def test_a_write_to_a_server_that_stops_reading_ends_with_the_read_timeout(
    scheme: str, anyio_backend: str, aws_env: None
) -> None:
    """A server that takes the connection and never reads from it: once the socket buffers
    are full, the write ends with a `StorageError` after about the read timeout (on s3://
    the kernel's ``TCP_USER_TIMEOUT``; boto3 sends with a socket timeout). On s3:// it hung
    for good: aiohttp has no write timeout."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        options = "max_attempts=1&read_timeout=0.5&connect_timeout=0.5"
        body = b"x" * (7 * MiB)  # one PUT (under the multipart threshold), beyond the buffers
        async with Storage(f"{scheme}://bucket/p?endpoint_url={endpoint}&{options}") as st:
            started = anyio.current_time()
            with anyio.fail_after(20), pytest.raises(StorageError, match="'k'") as info:
                await st.write("k", body)
            assert anyio.current_time() - started < 10
            assert " timed out: " in str(info.value)
    finally:
        server.close()


async def test_max_attempts_counts_the_tries_in_all(
    scheme: str, anyio_backend: str, aws_env: None
) -> None:
    """``max_attempts=2`` makes two tries of a call that keeps failing with a retryable
    error (``500 InternalError``), as documented ("tries per call"): botocore's own
    ``max_attempts`` counts the retries, and three went out."""
    requests: list[bytes] = []
    error = b"<Error><Code>InternalError</Code><Message>no</Message></Error>"
    answer = (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error)
    )

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client:
            received = b""
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while b"\r\n\r\n" not in received:
                    received += await client.receive()
                requests.append(received.split(b"\r\n", 1)[0])
                await client.send(answer)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        url = f"{scheme}://bucket/p?endpoint_url=http://127.0.0.1:{port}&max_attempts=2"
        async with Storage(url) as st:
            with anyio.fail_after(20), pytest.raises(StorageError, match="'k'"):
                await st.read("k")
        tg.cancel_scope.cancel()
    assert [line.split(b" ")[0] for line in requests] == [b"GET", b"GET"], requests


def _uploads(endpoint: str, bucket: str, prefix: str) -> list[str]:
    listed = s3_client(endpoint).list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [upload["Key"] for upload in listed.get("Uploads", [])]


async def test_closing_the_storage_aborts_the_uploads_of_writes_under_way(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str]
) -> None:
    """A "wb" file still open, and a large write still running in another task, as their
    Storage closes: their multipart uploads are aborted (they were left behind, as the
    aborts came after the client's close and were refused), and both fail with the
    `RuntimeError` of a closed Storage."""
    endpoint, bucket = s3_bucket
    prefix = f"close-{uuid.uuid4().hex[:8]}"
    url = (
        f"{scheme}://{bucket}/{prefix}?endpoint_url={endpoint}"
        f"&multipart_threshold={5 * MiB}&multipart_chunksize={5 * MiB}"
    )
    async with Storage(url) as st:
        f = await st.open("open-file.bin", "wb")
        await f.write(b"x" * (6 * MiB))  # one part sent: the upload exists
        assert await anyio.to_thread.run_sync(_uploads, endpoint, bucket, prefix)
    with pytest.raises(RuntimeError, match="not open"):
        await f.close()
    assert await anyio.to_thread.run_sync(_uploads, endpoint, bucket, prefix) == []

    st = Storage(url)
    await st.__aenter__()
    failed: list[BaseException] = []

    async def large_write() -> None:
        try:
            await st.write("in-flight.bin", b"y" * (40 * MiB))
        except RuntimeError as exc:
            failed.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(large_write)
        with anyio.fail_after(20):
            while not await anyio.to_thread.run_sync(_uploads, endpoint, bucket, prefix):
                await anyio.sleep(0.01)
        await st.aclose()
    assert failed and "not open" in str(failed[0])
    assert await anyio.to_thread.run_sync(_uploads, endpoint, bucket, prefix) == []


@pytest.mark.parametrize("size", [1000, 4 * MiB])  # all of it received at once, or not
async def test_reading_an_open_file_after_its_storage_closed(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str], size: int
) -> None:
    """A file or a stream still open when its Storage closes: on s3:// (the client closes the
    connections) every later read raises `RuntimeError` naming the closed Storage ("not
    open"), where it raised aiohttp's own ``RuntimeError('Connection closed.')`` or returned
    the bytes that had arrived, by the object's size. On s3+boto3:// (a body keeps its
    connection) reads go on to the end."""
    endpoint, bucket = s3_bucket
    url = f"{scheme}://{bucket}/closed-{uuid.uuid4().hex[:8]}?endpoint_url={endpoint}"
    data = bytes(range(256)) * (size // 256)
    async with Storage(url) as st:
        await st.write("k", data)
        f = await st.open("k", "rb", chunk_size=500)
        assert await f.read(10) == data[:10]
        stream = st.stream("k", chunk_size=500)
        assert await stream.__anext__() == data[:500]
    if scheme == "s3":
        with pytest.raises(RuntimeError, match=r"^s3://.* is not open: it was closed"):
            await f.read()
        with pytest.raises(RuntimeError, match=r"^s3://.* is not open: it was closed"):
            await stream.__anext__()
    else:
        assert await f.read() == data[10:]
        assert b"".join([chunk async for chunk in stream]) == data[500:]
    await f.close()
    await stream.aclose()


async def test_a_read_waiting_when_its_storage_closes_ends(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str]
) -> None:
    """A read waiting for the next bytes of a body when its Storage closes ends: on s3:// with
    that `RuntimeError`. It waited for good: aiohttp, closing the client's connections,
    drops the body's stream without waking its reader. On s3+boto3:// it reads to the end."""
    endpoint, bucket = s3_bucket
    url = f"{scheme}://{bucket}/closing-{uuid.uuid4().hex[:8]}?endpoint_url={endpoint}"
    data = b"x" * (4 * MiB)  # more than aiohttp takes in before its reader asks
    st = Storage(url)
    await st.__aenter__()
    await st.write("k", data)
    f = await st.open("k", "rb")
    assert await f.read(10) == data[:10]
    outcome: list[object] = []

    async def read_on() -> None:
        try:
            outcome.append(await f.read())
        except RuntimeError as exc:
            outcome.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_on)
            await anyio.sleep(0)  # it waits for the body's next bytes
            await st.aclose()
    if scheme == "s3":
        assert isinstance(outcome[0], RuntimeError)
        assert "is not open: it was closed" in str(outcome[0])
    else:
        assert outcome == [data[10:]]
    await f.close()


@pytest.mark.parametrize("source", ["url", "AWS_PROFILE", "ASYNCIFY_STORAGE_URL"])
async def test_unknown_profile_is_a_config_error(
    scheme: str, source: str, anyio_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile that no AWS config file has, named by the URL, by ``AWS_PROFILE``, or by a
    URL from the environment: a configuration mistake, as a bad region is (it was a
    `StorageError`, as if S3 had answered)."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))  # none: no profiles
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    url = f"{scheme}://bucket/p?endpoint_url=http://127.0.0.1:9"
    if source == "AWS_PROFILE":
        monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    else:
        url += "&profile=no-such-profile"
    if source == "ASYNCIFY_STORAGE_URL":
        monkeypatch.setenv("ASYNCIFY_STORAGE_URL", url)
        url = ""
    with pytest.raises(ConfigError, match="no-such-profile") as info:
        async with Storage(url or None):
            pass
    cause = info.value.__cause__
    while isinstance(cause, ConfigError):  # (the variable's name is put before the message)
        cause = cause.__cause__
    assert type(cause).__name__ == "ProfileNotFound"
    if source == "ASYNCIFY_STORAGE_URL":
        assert str(info.value).startswith("environment variable ASYNCIFY_STORAGE_URL: ")


@pytest.mark.parametrize(
    ("query", "option"),
    [
        ("endpoint_url=not-a-url", "endpoint_url"),
        ("endpoint_url=http://[::1", "endpoint_url"),
        ("endpoint_url=ftp://127.0.0.1:9", "endpoint_url"),
        ("endpoint_url=http://127.0.0.1:9&region=not+a+region!", "region"),
    ],
)
async def test_bad_endpoint_or_region_is_a_config_error(
    scheme: str, anyio_backend: str, aws_env: None, query: str, option: str
) -> None:
    """An endpoint or region botocore refuses is the ConfigError naming the option that any
    bad option value is, not botocore's bare ValueError, nor a StorageError at the first
    request (``ftp://``)."""
    with pytest.raises(ConfigError, match=f"option '{option}'") as info:
        async with Storage(f"{scheme}://bucket/p?{query}") as st:
            await st.write("k", b"x")
    if "+" in query:  # (the region's own check quotes the value as every option check does)
        assert "'not a region!' (a '+' in a URL's query string is a space)" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AWS_ENDPOINT_URL_S3", "not-a-url"), ("AWS_DEFAULT_REGION", "not a region!")],
)
async def test_bad_endpoint_or_region_from_the_environment_is_a_config_error(
    scheme: str,
    anyio_backend: str,
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match="invalid S3 client configuration") as info:
        async with Storage(f"{scheme}://bucket/p") as st:
            await st.write("k", b"x")
    assert value in str(info.value)
    assert info.value.__cause__ is not None


async def test_presigned_urls_use_signature_v4(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str]
) -> None:
    """botocore presigns with the legacy Signature Version 2 unless told otherwise, which S3
    refuses for buckets created since June 2020 and in regions opened since 2014; the
    ``expires`` limit of `Storage.presign` (7 days) is SigV4's. The links work here too."""
    endpoint, bucket = s3_bucket
    async with Storage(
        f"{scheme}://{bucket}/v4-{uuid.uuid4().hex[:8]}?endpoint_url={endpoint}"
    ) as st:
        await st.write("k.txt", b"signed")
        for method in ("GET", "PUT"):
            link = await st.presign("k.txt", method=method, expires=600)
            query = parse_qs(urlsplit(link).query)
            assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"], link
            assert query["X-Amz-Expires"] == ["600"]
            assert "Signature" not in query and "AWSAccessKeyId" not in query
        get = functools.partial(urllib.request.urlopen, await st.presign("k.txt"), timeout=10)
        assert await anyio.to_thread.run_sync(lambda: get().read()) == b"signed"


class _Answer:
    """The HTTP side of an answer a botocore ``before-call`` handler gives instead of S3."""

    status_code = 400
    headers: dict[str, str] = {}  # noqa: RUF012 - read only


def _refuse_copy_object(**_: object) -> tuple[_Answer, dict[str, object]]:
    """S3's answer to a ``CopyObject`` of a source over 5 GiB, which moto does not give."""
    message = "The specified copy source is larger than the maximum allowable size for a copy"
    return _Answer(), {
        "Error": {"Code": "InvalidRequest", "Message": f"{message} source: 5368709120"},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }


async def test_a_copy_larger_than_copy_object_takes_is_copied_in_parts(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 copies at most 5 GiB with one ``CopyObject`` and refuses a larger source with
    ``InvalidRequest``: `copy` and `move` of such an object failed. The test lowers that
    limit to 5 MiB, has ``CopyObject`` refuse as S3 does (moto has no limit), and lets moto
    copy the parts for real (``UploadPartCopy``)."""
    monkeypatch.setattr(s3_backend, "_COPY_LIMIT", 5 * MiB)
    monkeypatch.setattr(s3_backend, "_COPY_PART", 5 * MiB)
    endpoint, bucket = s3_bucket
    prefix = f"bigcopy-{uuid.uuid4().hex[:8]}"
    data = os.urandom(12 * MiB + 7)
    async with Storage(f"{scheme}://{bucket}/{prefix}?endpoint_url={endpoint}") as st:
        await st.write("big.bin", data, content_type="application/x-big")
        await st.write("small.bin", b"small")
        events = st.backend._client.meta.events  # type: ignore[attr-defined]
        events.register("before-call.s3.CopyObject", _refuse_copy_object)
        await st.copy("big.bin", "copy.bin")
        assert await st.read("copy.bin") == data
        info = await st.stat("copy.bin")
        assert info.etag is not None and info.etag.endswith("-3")  # 5 + 5 + 2 MiB
        assert info.content_type == "application/x-big"
        await st.move("copy.bin", "moved.bin")
        assert await st.read("moved.bin") == data
        assert not await st.exists("copy.bin")
        with pytest.raises(StorageError, match="InvalidRequest"):  # S3's refusal, not a size
            await st.copy("small.bin", "small-copy.bin")
        with pytest.raises(NotFound):
            await st.copy("missing.bin", "x.bin")

        first_part = threading.Event()
        events.register("after-call.s3.UploadPartCopy", lambda **_: first_part.set())
        assert await cancel_when(first_part, functools.partial(st.copy, "big.bin", "cancelled.bin"))
        assert not await st.exists("cancelled.bin")
    assert await anyio.to_thread.run_sync(_uploads, endpoint, bucket, prefix) == []


class _PartsInFlight:
    """botocore handlers counting the ``UploadPartCopy`` calls sent and not yet answered
    (the boto3 backend sends them from worker threads), and the most at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def sent(self, **_: object) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def answered(self, **_: object) -> None:
        with self._lock:
            self.now -= 1


def _refuse_a_part(number: int) -> Callable[..., object]:
    """A ``before-call`` handler answering ``UploadPartCopy`` of part *number* as S3 does when
    its ``CopySourceIfMatch`` does not hold (the source was replaced since its ``HEAD``)."""

    def handler(params: dict[str, object], **_: object) -> object:
        query = params.get("query_string")
        if not isinstance(query, dict) or str(query.get("partNumber")) != str(number):
            return None
        answer = _Answer()
        answer.status_code = 412
        message = "At least one of the pre-conditions you specified did not hold"
        return answer, {
            "Error": {"Code": "PreconditionFailed", "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 412},
        }

    return handler


async def test_parts_of_a_large_copy_go_at_once_and_the_first_failure_stops_them(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts of a copy above `_COPY_LIMIT` go several at a time, as boto3's ``copy``
    sends them (they went one after another: a 50 GiB copy took 100 part copies in turn).
    A part refused because the source changed (S3's 412 for ``CopySourceIfMatch``) fails
    the copy with a `StorageError` saying so, not the `AlreadyExists` a 412 means for a
    write, and leaves neither the destination nor an unfinished upload."""
    monkeypatch.setattr(s3_backend, "_COPY_LIMIT", 5 * MiB)
    monkeypatch.setattr(s3_backend, "_COPY_PART", 5 * MiB)
    endpoint, bucket = s3_bucket
    prefix = f"partscopy-{uuid.uuid4().hex[:8]}"
    data = os.urandom(20 * MiB + 3)  # 5 parts
    async with Storage(f"{scheme}://{bucket}/{prefix}?endpoint_url={endpoint}") as st:
        await st.write("big.bin", data)
        events = st.backend._client.meta.events  # type: ignore[attr-defined]
        events.register("before-call.s3.CopyObject", _refuse_copy_object)
        parts = _PartsInFlight()
        events.register("before-call.s3.UploadPartCopy", parts.sent)
        events.register("after-call.s3.UploadPartCopy", parts.answered)
        await st.copy("big.bin", "copy.bin")
        assert await st.read("copy.bin") == data
        info = await st.stat("copy.bin")
        assert info.etag is not None and info.etag.endswith("-5")
        assert parts.most >= 2, parts.most

        events.unregister("after-call.s3.UploadPartCopy", parts.answered)
        events.register_first("before-call.s3.UploadPartCopy", _refuse_a_part(3))
        with pytest.raises(StorageError, match=r"'big\.bin' .* changed while it was copied") as e:
            await st.copy("big.bin", "changed.bin")
        assert not isinstance(e.value, AlreadyExists)
        assert not await st.exists("changed.bin")
    assert await anyio.to_thread.run_sync(_uploads, endpoint, bucket, prefix) == []


async def test_a_large_whole_read_is_joined_off_the_loop(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole-object read on ``s3://`` was one aiohttp ``read()``, which joins what it
    received on the event loop (100 MB: 63-86 ms of the loop). From `JOIN_IN_THREAD` bytes
    on (lowered to 1 MiB here), the slices are joined in a worker thread; the CRC32 is
    still checked. (``s3+boto3://`` reads in its threads anyway.)"""
    monkeypatch.setattr(_aio_payloads, "JOIN_IN_THREAD", MiB)
    joins: list[bool] = []  # for each join: on the event loop's thread?
    join = _aio_payloads._joined

    def recorded(parts: list[bytes]) -> bytes:
        joins.append(current_loop_kind() is not None)
        return join(parts)

    monkeypatch.setattr(_aio_payloads, "_joined", recorded)
    endpoint, bucket = s3_bucket
    data = os.urandom(3 * MiB + 5)
    async with Storage(f"{scheme}://{bucket}/join?endpoint_url={endpoint}") as st:
        await st.write("big.bin", data)
        assert await st.read("big.bin") == data
        assert await st.read("big.bin", offset=10, length=2 * MiB) == data[10 : 10 + 2 * MiB]
        assert await st.read("big.bin", length=100) == data[:100]  # (small: one read)
    assert joins == ([False, False] if scheme == "s3" else [])
