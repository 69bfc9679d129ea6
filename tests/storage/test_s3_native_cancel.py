"""A native asyncio cancellation in the middle of a multipart upload leaves no upload behind."""

from __future__ import annotations

import asyncio
import uuid

import anyio
import pytest

from asyncify_kit.storage import Storage

from .conftest import s3_client

MiB = 1024 * 1024

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("scheme", ["s3", "s3+boto3"])
async def test_native_asyncio_cancellation_leaves_no_upload(
    scheme: str, s3_bucket: tuple[str, str]
) -> None:
    """``wait_for`` cancels the task natively, past anyio's shields: an upload S3 created
    while its create call was being cancelled is still found and aborted."""
    endpoint, bucket = s3_bucket
    prefix = f"native-{uuid.uuid4().hex[:8]}"
    url = f"{scheme}://{bucket}/{prefix}?endpoint_url={endpoint}&multipart_chunksize={5 * MiB}"
    async with Storage(url) as st:
        await st.write("k", b"previous")
        for delay in (0.001, 0.005, 0.02, 0.1):
            try:
                await asyncio.wait_for(st.write("k", b"n" * (26 * MiB)), delay)
            except asyncio.TimeoutError:  # TimeoutError on 3.11+, its own class on 3.10
                assert await st.read("k") == b"previous"
    client = s3_client(endpoint)
    uploads = await anyio.to_thread.run_sync(
        lambda: client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    )
    assert uploads.get("Uploads", []) == []
