"""`aws.client("s3", backend="aioboto3")`'s downloads close the body of a response that
arrives for a part whose fetch was cancelled.

aiobotocore's ``get_object`` can be cancelled after aiohttp has the response and before it
is returned (its own awaits after the request): the response is then dropped with its
connection open, an "Unclosed connection" `ResourceWarning` when collected. A cancelled
``download_file`` did that in the suite once its timing shifted. The download's parts now
run ``get_object`` as a task of their own; cancelled, a part waits for it and closes the
body of what it got. Here a client whose ``get_object`` awaits again once it holds the
response, and drops that response if cancelled there, stands for aiobotocore.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from asyncify_kit import aws
from asyncify_kit._s3_transfer import _download, _Writer
from tests.conftest import service_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # (aioboto3 runs on asyncio only)


class _Sink:
    async def write(self, data: bytes) -> None:
        pass


async def test_a_response_arriving_for_a_cancelled_part_has_its_body_closed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    kwargs = {
        "endpoint_url": service_url("s3"),
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    bucket = f"dropped-{uuid.uuid4().hex[:10]}"
    received: list[Any] = []
    holding = asyncio.Event()
    async with aws.client("s3", backend="aioboto3", **kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(
            Bucket=bucket, Key="k", Body=b"x" * (6 << 20)
        )  # below the multipart threshold: one part, not all read

        class Client:
            head_object = s3.head_object

            async def get_object(self, **kw: Any) -> Any:
                response = await s3.get_object(**kw)
                received.append(response)
                holding.set()
                await asyncio.sleep(0.3)  # cancelled here, aiobotocore drops what it holds
                return response

        async def sink() -> _Writer:
            return _Writer(_Sink())

        download = asyncio.ensure_future(_download(Client(), bucket, "k", None, None, None, sink))
        await holding.wait()
        download.cancel()
        with pytest.raises(asyncio.CancelledError):
            await download
        body = received[0]["Body"]
        assert body.closed  # before: open, its connection with it
        await s3.delete_object(Bucket=bucket, Key="k")
        await s3.delete_bucket(Bucket=bucket)
