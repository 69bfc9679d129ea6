"""A failed or cancelled multipart write aborts its own upload only, never the upload of another
writer of the same key (which then completes), on a real moto server."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from botocore.exceptions import ReadTimeoutError

from asyncify_kit.storage import Storage, StorageError

from .conftest import s3_client

CASES = [("s3", "asyncio"), ("s3+boto3", "asyncio"), ("s3+boto3", "trio")]

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


async def uploads_under(endpoint: str, bucket: str, prefix: str) -> list[str]:
    """The ids of the multipart uploads in progress under *prefix*."""
    client = s3_client(endpoint)
    resp = await anyio.to_thread.run_sync(
        functools.partial(client.list_multipart_uploads, Bucket=bucket, Prefix=prefix)
    )
    return sorted(u["UploadId"] for u in resp.get("Uploads", []))


async def abort_uploads(endpoint: str, bucket: str, prefix: str, ids: list[str]) -> None:
    client = s3_client(endpoint)
    for upload_id in ids:
        abort = functools.partial(
            client.abort_multipart_upload, Bucket=bucket, Key=f"{prefix}/k", UploadId=upload_id
        )
        await anyio.to_thread.run_sync(abort)


def raw_client(st: Storage) -> Any:
    """The botocore client under a `Storage` (boto3's own under the s3+boto3 proxy)."""
    client = st.backend._client  # type: ignore[attr-defined]
    return getattr(client, "wrapped", client)


def lose_create_responses(scheme: str, client: Any, created: list[str]) -> None:
    """Make *client*'s create_multipart_upload reach S3 for real, then fail as if its response
    were lost on the way back: S3 has the upload, the caller never learns its id."""
    real = client.create_multipart_upload

    def lost() -> ReadTimeoutError:
        return ReadTimeoutError(endpoint_url="http://moto/lost-response")

    if scheme == "s3":

        async def create_aio(**kwargs: Any) -> Any:
            created.append((await real(**kwargs))["UploadId"])
            raise lost()

        client.create_multipart_upload = create_aio
    else:

        def create(**kwargs: Any) -> Any:
            created.append(real(**kwargs)["UploadId"])
            raise lost()

        client.create_multipart_upload = create


@pytest.mark.parametrize(("scheme", "anyio_backend"), CASES, ids=[f"{s}-{b}" for s, b in CASES])
@pytest.mark.parametrize("how", ["write", "open"])
async def test_a_lost_create_response_aborts_no_other_writers_upload(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str], how: str
) -> None:
    """Writer B has a multipart upload of ``k`` under way when writer A's create call fails
    after S3 made A's upload. A's cleanup must not abort B's upload (it used to list the
    key's uploads and abort them all): B completes, and only A's upload, whose id A never
    got, is left (for the bucket's lifecycle rule)."""
    endpoint, bucket = s3_bucket
    prefix = f"own-{uuid.uuid4().hex[:8]}"
    url = (
        f"{scheme}://{bucket}/{prefix}?endpoint_url={endpoint}"
        f"&multipart_threshold={5 * MiB}&multipart_chunksize={5 * MiB}"
    )
    created: list[str] = []
    async with Storage(url) as a, Storage(url) as b:
        lose_create_responses(scheme, raw_client(a), created)
        async with b.open("k", "wb") as f:
            await f.write(b"b" * (5 * MiB))  # one part sent: B's upload exists on S3
            b_upload = await uploads_under(endpoint, bucket, prefix)
            assert len(b_upload) == 1
            with pytest.raises(StorageError):
                if how == "write":
                    await a.write("k", b"a" * (6 * MiB))
                else:
                    async with a.open("k", "wb") as fa:
                        await fa.write(b"a" * (6 * MiB))
            assert len(created) == 1  # A's upload was made on S3
            assert await uploads_under(endpoint, bucket, prefix) == sorted(b_upload + created)
            await f.write(b"B" * MiB)
        assert await b.read("k") == b"b" * (5 * MiB) + b"B" * MiB
    left = await uploads_under(endpoint, bucket, prefix)
    await abort_uploads(endpoint, bucket, prefix, left)
    assert left == created  # B's was completed; A's id never reached A


@pytest.mark.parametrize("scheme", ["s3", "s3+boto3"])
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_natively_cancelled_create_aborts_its_own_upload_only(
    scheme: str, anyio_backend: str, s3_bucket: tuple[str, str]
) -> None:
    """A native asyncio cancellation (``wait_for``) lands while writer A's create call is in
    flight, after S3 made the upload: A still learns that upload's id and aborts it, and
    only it: writer B's upload of the same key completes."""
    endpoint, bucket = s3_bucket
    prefix = f"own-cancel-{uuid.uuid4().hex[:8]}"
    url = (
        f"{scheme}://{bucket}/{prefix}?endpoint_url={endpoint}"
        f"&multipart_threshold={5 * MiB}&multipart_chunksize={5 * MiB}"
    )
    made = threading.Event()
    async with Storage(url) as a, Storage(url) as b:
        await a.write("k", b"previous")
        client = raw_client(a)
        real = client.create_multipart_upload
        if scheme == "s3":

            async def create_aio(**kwargs: Any) -> Any:
                resp = await real(**kwargs)
                made.set()
                await asyncio.sleep(0.3)  # the response still on its way when cancelled
                return resp

            client.create_multipart_upload = create_aio
        else:

            def create(**kwargs: Any) -> Any:
                resp = real(**kwargs)
                made.set()
                time.sleep(0.3)
                return resp

            client.create_multipart_upload = create

        async def a_chunks() -> AsyncIterator[bytes]:
            yield b"a" * (6 * MiB)

        async with b.open("k", "wb") as f:
            await f.write(b"b" * (5 * MiB))
            assert len(await uploads_under(endpoint, bucket, prefix)) == 1
            task = asyncio.ensure_future(a.write("k", a_chunks()))
            while not made.is_set():
                await asyncio.sleep(0.005)
            task.cancel()  # natively, while the create call is in flight
            with pytest.raises(asyncio.CancelledError):
                await task
            assert len(await uploads_under(endpoint, bucket, prefix)) == 1  # B's, A's aborted
            await f.write(b"B" * MiB)
        assert await b.read("k") == b"b" * (5 * MiB) + b"B" * MiB
    assert await uploads_under(endpoint, bucket, prefix) == []
