"""boto3's managed S3 transfers on the loop thread: one ``aws`` report per call, raised before.

``upload_file``, ``download_fileobj``, ``copy``... run in s3transfer's threads while the call
waits for them; the detector must report the call itself (with the S3 advice), not the joins
and API calls it makes, and in raise mode raise before anything is transferred. boto3 copies
these methods into each S3 client class when it makes one: clients made before the detector
started and while it runs are both covered. Everything runs against the moto S3 server.
"""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import boto3.s3.inject
import botocore.exceptions
import pytest
from boto3.s3.transfer import S3Transfer

from asyncify_kit import BlockingCallError, run_sync
from asyncify_kit.detect import detect_blocking
from tests.conftest import service_url
from tests.storage.conftest import s3_client

pytestmark = pytest.mark.anyio

TRANSFERS = ("upload_file", "download_file", "upload_fileobj", "download_fileobj", "copy")


@pytest.fixture(scope="module")
def endpoint() -> str:
    return service_url("s3")


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Iterator[tuple[Any, str]]:
    """``(client, bucket)``: a client made before any detector starts, and an empty bucket."""
    client = s3_client(endpoint)
    bucket = f"asyncify-detect-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield client, bucket
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def local_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 1000)
    return path


def _exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError:
        return False
    return True


async def test_each_managed_transfer_is_one_aws_report(
    s3: tuple[Any, str], local_file: pathlib.Path
) -> None:
    client, bucket = s3
    key = uuid.uuid4().hex
    copy_source = {"Bucket": bucket, "Key": f"{key}-a"}
    target = str(local_file) + ".copy"
    with detect_blocking(mode="collect") as detector:
        client.upload_file(str(local_file), bucket, f"{key}-a")
        client.download_file(bucket, f"{key}-a", target)
        client.upload_fileobj(io.BytesIO(b"y" * 10), bucket, f"{key}-b")
        client.download_fileobj(bucket, f"{key}-b", io.BytesIO())
        client.copy(copy_source, bucket, f"{key}-c")
        with S3Transfer(client) as transfer:  # its end joins s3transfer's threads
            transfer.upload_file(str(local_file), bucket, f"{key}-d")
            transfer.download_file(bucket, f"{key}-d", target)
    assert [r.function for r in detector.reports] == [
        *(f"boto3.S3.Client.{method}" for method in TRANSFERS),
        "boto3.s3.transfer.S3Transfer.upload_file",
        "boto3.s3.transfer.S3Transfer.download_file",
        "s3transfer.TransferManager.shutdown",
    ]
    for report in detector.reports:
        assert report.kind == "aws"
        assert "asyncify_kit.storage.Storage('s3://...')" in report.fix
        assert report.user_frame is not None and report.user_frame.filename == __file__
    lines = [r.site.line for r in detector.reports]
    assert lines[0].startswith("client.upload_file(")
    assert lines[-1].startswith("with S3Transfer(client)")
    assert await run_sync(_exists, client, bucket, f"{key}-c")


async def test_raise_mode_raises_before_anything_is_transferred(
    s3: tuple[Any, str], local_file: pathlib.Path
) -> None:
    client, bucket = s3
    key = uuid.uuid4().hex
    resource = await run_sync(boto3.resource, "s3", endpoint_url=client.meta.endpoint_url)
    with detect_blocking(mode="raise") as detector:
        with pytest.raises(BlockingCallError, match=r"boto3\.S3\.Client\.upload_fileobj "):
            client.upload_fileobj(io.BytesIO(b"y"), bucket, f"{key}-a")
        with pytest.raises(BlockingCallError, match=r"boto3\.S3\.Client\.upload_file "):
            resource.Bucket(bucket).upload_file(str(local_file), f"{key}-b")
    assert [(r.function, r.kind) for r in detector.reports] == [
        ("boto3.S3.Client.upload_fileobj", "aws"),
        ("boto3.S3.Client.upload_file", "aws"),
    ]
    assert all(r.duration is None for r in detector.reports)  # not run
    assert not await run_sync(_exists, client, bucket, f"{key}-a")
    assert not await run_sync(_exists, client, bucket, f"{key}-b")


async def test_transfers_off_the_loop_are_not_reported(
    s3: tuple[Any, str], local_file: pathlib.Path
) -> None:
    client, bucket = s3
    key = uuid.uuid4().hex
    with detect_blocking(mode="raise") as detector:
        await run_sync(client.upload_file, str(local_file), bucket, key)
        await run_sync(client.download_fileobj, bucket, key, io.BytesIO())
    assert detector.reports == []


def _transfer_methods(client: Any) -> list[Any]:
    return [type(client).__dict__[method] for method in TRANSFERS]


# checks the global patch state: the plugin's own detector would keep the patches in
@pytest.mark.allow_blocking
async def test_client_classes_are_patched_and_restored_when_made_before_or_during(
    s3: tuple[Any, str], endpoint: str
) -> None:
    client, bucket = s3
    originals = [getattr(boto3.s3.inject, method) for method in TRANSFERS]
    assert _transfer_methods(client) == originals
    with detect_blocking(mode="collect") as detector:
        assert _transfer_methods(client) != originals
        late = await run_sync(s3_client, endpoint)  # a new client class, made while active
        late.upload_fileobj(io.BytesIO(b"z"), bucket, uuid.uuid4().hex)
    assert [r.function for r in detector.reports] == ["boto3.S3.Client.upload_fileobj"]
    assert _transfer_methods(client) == originals
    assert _transfer_methods(late) == originals
    assert [getattr(boto3.s3.inject, method) for method in TRANSFERS] == originals


FIRST_CLIENT_SCRIPT = """
import asyncio, io, sys
import boto3
from asyncify_kit import run_sync
from asyncify_kit.detect import detect_blocking

assert "boto3.s3.inject" not in sys.modules  # boto3 imports it for its first S3 client


async def main() -> None:
    with detect_blocking(mode="collect") as detector:
        client = await run_sync(boto3.client, "s3", endpoint_url=sys.argv[1])
        await run_sync(client.create_bucket, Bucket=sys.argv[2])
        client.upload_fileobj(io.BytesIO(b"x"), sys.argv[2], "k")
        await run_sync(client.delete_object, Bucket=sys.argv[2], Key="k")
        await run_sync(client.delete_bucket, Bucket=sys.argv[2])
    print([(r.function, r.kind) for r in detector.reports])


asyncio.run(main())
"""


def test_a_first_s3_client_made_while_detecting_is_covered(endpoint: str) -> None:
    env = {
        **os.environ,
        "PYTHONWARNINGS": "error",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    bucket = f"asyncify-detect-{uuid.uuid4().hex[:12]}"
    proc = subprocess.run(
        [sys.executable, "-c", FIRST_CLIENT_SCRIPT, endpoint, bucket],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == "[('boto3.S3.Client.upload_fileobj', 'aws')]\n"
