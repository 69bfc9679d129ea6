"""`aws.client("s3")`'s managed transfers stop when their caller is cancelled, on both backends.

With ``backend="boto3"`` (the only S3 client on trio) boto3 runs a whole transfer as one call
in a worker thread, and a cancelled caller waits for that thread (the "wait" policy): nothing
told s3transfer to stop, so a cancelled ``download_file`` replaced its file with the new
object, a cancelled upload made its object, a cancelled ``copy`` made its copy, and the
caller left only once all of it was done. Against the moto server, with objects of 40 MiB
sent in parts of 5 MiB one at a time, each request (an ``after-call`` hook) or each write
of the sink slowed down, so that a transfer is mid-way when its caller is cancelled and
would take seconds more to end. (What boto3 leaves open when stopped, a file or a socket,
would fail the test: the suite turns ``ResourceWarning`` into errors.)
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

import asyncify_kit
from asyncify_kit import aws
from tests.conftest import service_url

CASES = [("aioboto3", "asyncio"), ("boto3", "asyncio"), ("boto3", "trio")]

pytestmark = pytest.mark.anyio

MIB = 1 << 20
SIZE = 40 * MIB  # eight parts
#: multipart from 5 MiB on, in parts of 5 MiB (S3's smallest), one request at a time
PARTS = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=1)
#: what each slowed request takes more: the eight parts of a transfer take 1.6 s at least
DELAY = 0.2
#: how long a cancelled caller may take to leave: the request under way, and boto3's
#: clean-ups (before, the caller left once the seven parts left were done, 1.4 s or more)
PROMPT = 1.0


@pytest.fixture(params=CASES, ids=[f"{b}-{loop}" for b, loop in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> str:
    return case[1]


@pytest.fixture
def backend(case: tuple[str, str]) -> Any:
    return case[0]


@pytest.fixture(scope="module")
def payload() -> bytes:
    return bytes(range(256)) * (SIZE // 256)


@pytest.fixture
def source(tmp_path: Path, payload: bytes) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(payload)
    return path


@pytest.fixture
async def s3(backend: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    kwargs = {
        "endpoint_url": service_url("s3"),
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    async with aws.client("s3", backend=backend, **kwargs) as client:
        await client.create_bucket(Bucket=(bucket := f"cancel-{uuid.uuid4().hex[:10]}"))
        client.test_bucket = bucket
        yield client


def slow_down(s3: Any, backend: str, operation: str, started: threading.Event) -> None:
    """Every *operation* request of *s3* takes `DELAY` seconds more, once answered; the
    first sets *started*."""
    event = f"after-call.s3.{operation}"
    if backend == "aioboto3":

        async def slow(**_: Any) -> None:
            started.set()
            await asyncio.sleep(DELAY)

        s3.meta.events.register(event, slow)
    else:

        def slow_in_thread(**_: Any) -> None:
            started.set()  # (in one of boto3's threads)
            time.sleep(DELAY)

        s3.meta.events.register(event, slow_in_thread)


def transfer_threads() -> set[threading.Thread]:
    """The threads of s3transfer's executors (``ThreadPoolExecutor-N_M``) alive."""
    return {t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")}


async def cancel_midway(started: threading.Event, transfer: Callable[[], Awaitable[None]]) -> float:
    """Run *transfer* and cancel it once *started* is set; the seconds its caller then took
    to leave. The caller gets its own cancellation, not an error of the transfer."""
    threads = transfer_threads()

    async def run() -> None:
        await transfer()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.fail_after(10):
                while not started.is_set():
                    await anyio.sleep(0.001)
            scope.cancel()
            cancelled = time.monotonic()
    left = time.monotonic() - cancelled
    assert scope.cancelled_caught
    assert transfer_threads() <= threads  # s3transfer's executors were shut down
    assert asyncify_kit.stats().running == 0
    return left


async def files(directory: Path) -> list[str]:
    return sorted([p.name async for p in anyio.Path(directory).iterdir()])


async def unfinished_uploads(s3: Any) -> list[Any]:
    uploads: list[Any] = (await s3.list_multipart_uploads(Bucket=s3.test_bucket)).get("Uploads", [])
    return uploads


async def exists(s3: Any, key: str) -> bool:
    try:
        await s3.head_object(Bucket=s3.test_bucket, Key=key)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "404"
        return False
    return True


async def test_a_cancelled_download_file_leaves_the_file_as_it_was(
    s3: Any, backend: str, payload: bytes, tmp_path: Path
) -> None:
    # boto3 failed: the file was replaced by the object, the caller left after 1.6 s
    await s3.put_object(Bucket=s3.test_bucket, Key="blob", Body=payload)
    target = tmp_path / "kept.bin"
    await anyio.Path(target).write_bytes(b"precious")
    started = threading.Event()
    slow_down(s3, backend, "GetObject", started)

    async def download() -> None:
        await s3.download_file(s3.test_bucket, "blob", str(target), Config=PARTS)

    assert await cancel_midway(started, download) < PROMPT
    assert await anyio.Path(target).read_bytes() == b"precious"
    assert await files(tmp_path) == ["kept.bin"]  # no temp file left


@pytest.mark.parametrize("method", ["upload_file", "upload_fileobj"])
async def test_a_cancelled_upload_makes_no_object_and_leaves_no_upload(
    s3: Any, backend: str, source: Path, method: str
) -> None:
    # boto3 failed: the object was made, the caller left after 1.6 s
    started = threading.Event()
    slow_down(s3, backend, "UploadPart", started)
    progress: list[int] = []

    async def upload() -> None:
        if method == "upload_file":
            await s3.upload_file(str(source), s3.test_bucket, "blob", Config=PARTS)
        else:
            async with await anyio.open_file(source, "rb") as file:  # an async file object
                await s3.upload_fileobj(
                    file, s3.test_bucket, "blob", Callback=progress.append, Config=PARTS
                )

    assert await cancel_midway(started, upload) < PROMPT
    assert not await exists(s3, "blob")
    assert await unfinished_uploads(s3) == []
    assert sum(progress) < SIZE  # the user's Callback still had the steps made


async def test_a_cancelled_copy_makes_no_copy_and_leaves_no_upload(
    s3: Any, backend: str, payload: bytes
) -> None:
    # boto3 failed: the copy was made, the caller left after 1.6 s
    await s3.put_object(Bucket=s3.test_bucket, Key="blob", Body=payload)
    started = threading.Event()
    slow_down(s3, backend, "UploadPartCopy", started)

    async def copy() -> None:
        source = {"Bucket": s3.test_bucket, "Key": "blob"}
        await s3.copy(source, s3.test_bucket, "copy", Config=PARTS)

    assert await cancel_midway(started, copy) < PROMPT
    assert not await exists(s3, "copy")
    assert await unfinished_uploads(s3) == []


class SlowSink:
    """An async file object whose writes take a while (a slow disk, a network peer)."""

    def __init__(self, started: threading.Event) -> None:
        self.started = started
        self.written = 0

    async def write(self, data: bytes) -> int:
        self.started.set()
        await anyio.sleep(0.01)
        self.written += len(data)
        return len(data)


async def test_a_cancelled_download_fileobj_stops_writing_to_its_async_sink(
    s3: Any, payload: bytes
) -> None:
    # boto3 failed: every part was fetched at once, then all 40 MiB written (1.6 s, 160
    # writes of 256 KiB), the caller waiting for the last
    await s3.put_object(Bucket=s3.test_bucket, Key="blob", Body=payload)
    started = threading.Event()
    sink = SlowSink(started)

    async def download() -> None:
        await s3.download_fileobj(s3.test_bucket, "blob", sink, Config=PARTS)

    assert await cancel_midway(started, download) < PROMPT
    written = sink.written
    assert written < SIZE // 2
    await anyio.sleep(0.2)
    assert sink.written == written  # nothing written once the caller left


@pytest.mark.parametrize("method", ["upload_file", "download_file"])
async def test_a_small_transfer_cancelled_is_done_whole_or_not_at_all(
    s3: Any, backend: str, tmp_path: Path, method: str
) -> None:
    """A transfer of one request (below the multipart threshold) whose caller is cancelled
    while that request is under way: with boto3 it may have made no progress to report
    before it ends, and is then done (the object made, the file replaced); either way it is
    whole or not at all, with nothing left behind."""
    started = threading.Event()
    source, target = tmp_path / "source.bin", tmp_path / "target.bin"
    await anyio.Path(source).write_bytes(b"new" * 1000)
    await anyio.Path(target).write_bytes(b"old")
    if method == "upload_file":
        slow_down(s3, backend, "PutObject", started)

        async def transfer() -> None:
            await s3.upload_file(str(source), s3.test_bucket, "blob", Config=PARTS)

    else:
        await s3.put_object(Bucket=s3.test_bucket, Key="blob", Body=b"new" * 1000)
        slow_down(s3, backend, "GetObject", started)

        async def transfer() -> None:
            await s3.download_file(s3.test_bucket, "blob", str(target), Config=PARTS)

    assert await cancel_midway(started, transfer) < PROMPT
    if await exists(s3, "blob"):
        response = await s3.get_object(Bucket=s3.test_bucket, Key="blob")
        async with response["Body"] as body:
            assert await body.read() == b"new" * 1000
    assert await anyio.Path(target).read_bytes() in (b"old", b"new" * 1000)
    assert await files(tmp_path) == ["source.bin", "target.bin"]
    assert await unfinished_uploads(s3) == []
