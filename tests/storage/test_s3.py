"""S3 specifics: configuration from the standard AWS environment, multipart thresholds,
objects written by other tools, and the asyncio-only rule of aioboto3."""

from __future__ import annotations

import functools
import uuid

import anyio
import pytest

from asyncify_kit.storage import AlreadyExists, Storage

from .conftest import s3_client

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
