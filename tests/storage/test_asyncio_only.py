"""Backends built on asyncio-only libraries refuse trio with a clear `Unsupported`."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from asyncify_kit import Unsupported, aws
from asyncify_kit.storage import Storage


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["s3://bucket/prefix", "file+aiofiles://{tmp}"])
async def test_storage_backend_refuses_trio(url: str, tmp_path: Path) -> None:
    storage = Storage(url.format(tmp=tmp_path / "root"))
    with pytest.raises(Unsupported, match=r"asyncio only.*s3\+boto3"):
        async with storage:
            pass
    assert not await anyio.Path(tmp_path / "root").exists()


@pytest.mark.anyio
async def test_aws_aioboto3_refuses_trio() -> None:
    with pytest.raises(Unsupported, match=r"asyncio only.*backend=.boto3."):
        async with aws.client("s3"):
            pass
