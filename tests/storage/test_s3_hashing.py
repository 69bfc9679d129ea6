"""The aioboto3 backends (``aws.client``, ``s3://``) hash large request bodies off the loop.

botocore computes the SHA-256 of a payload it signs (every service over plain http, every
service but S3 over https) and the CRC32 of an S3 upload's checksum header (over plain
http) in the calling thread: the event loop's, in aiobotocore. From 256 KiB on, both are
computed in worker threads (`asyncify_kit._aio_payloads`); the requests carry the same
values.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import uuid
import zlib
from typing import Any

import pytest

from asyncify_kit import aws
from asyncify_kit.storage import Storage
from tests.conftest import service_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aioboto3 runs on asyncio only


class _Hashed:
    """Records, for each piece of data botocore hashes (the SHA-256 of a payload it signs,
    the CRC32 of a checksum header), its length and whether the event loop's thread did
    it; and the headers of each request sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from botocore import auth, httpchecksum

        from asyncify_kit import _aio_payloads

        self.pieces: list[tuple[int, bool]] = []
        self.headers: list[dict[str, str]] = []
        sha256 = auth.sha256
        record = self._record

        class RecordedSha256:
            def __init__(self, data: bytes = b"") -> None:
                self._hash = sha256()
                self.update(data)

            def update(self, data: bytes) -> None:
                record(data)
                self._hash.update(data)

            def __getattr__(self, name: str) -> Any:  # (hmac's digest_size, copy...)
                return getattr(self._hash, name)

        crc_update = httpchecksum.Crc32Checksum.update

        def recorded_crc(self: Any, chunk: bytes) -> None:
            record(chunk)
            crc_update(self, chunk)

        monkeypatch.setattr(auth, "sha256", RecordedSha256)
        monkeypatch.setattr(_aio_payloads, "sha256", RecordedSha256)
        monkeypatch.setattr(httpchecksum.Crc32Checksum, "update", recorded_crc)

    def _record(self, data: bytes) -> None:
        if data:
            try:
                asyncio.get_running_loop()
                self.pieces.append((len(data), True))
            except RuntimeError:
                self.pieces.append((len(data), False))

    def sent(self, request: Any = None, **kwargs: Any) -> None:
        """A ``before-send`` handler: keeps the request's headers."""
        self.headers.append(
            {
                k.lower(): v.decode() if isinstance(v, bytes) else v
                for k, v in request.headers.items()
            }
        )

    def largest_on_loop(self) -> int:
        """The most bytes hashed at once on the loop's thread (0 for none)."""
        return max((size for size, on_loop in self.pieces if on_loop), default=0)


def _crc32_header(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("body_kind", ["bytes", "file at an offset"])
async def test_large_s3_uploads_are_hashed_off_the_loop(
    body_kind: str, s3_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """To an ``http://`` endpoint botocore signs the payload's SHA-256 and sends its CRC32
    in a header, both computed on the event loop in aiobotocore (14-37 ms for 8 MiB here).
    From 256 KiB on they are computed in a worker thread; the request carries the same
    values, of the bytes sent (a file object from its position on)."""
    endpoint, bucket = s3_bucket
    hashed = _Hashed(monkeypatch)
    data = os.urandom(1024 * 1024 + 7)
    body: Any = data if body_kind == "bytes" else io.BytesIO(data)
    sent = data
    if body_kind != "bytes":
        body.seek(1000)
        sent = data[1000:]
    key = f"hashed/{uuid.uuid4().hex}"
    async with aws.client("s3", endpoint_url=endpoint, region_name="us-east-1") as client:
        client.meta.events.register("before-send.s3.PutObject", hashed.sent)
        answer = await client.put_object(Bucket=bucket, Key=key, Body=body)
        assert hashed.largest_on_loop() < 256 * 1024, hashed.pieces
        # (the download's CRC32 is checked as the body is read, by the reader's chunks)
        got = await client.get_object(Bucket=bucket, Key=key)
        async with got["Body"] as stream:
            assert await stream.read() == sent
    headers = hashed.headers[-1]
    assert headers["x-amz-content-sha256"] == hashlib.sha256(sent).hexdigest()
    assert headers["x-amz-checksum-crc32"] == _crc32_header(sent)
    assert answer["ChecksumCRC32"] == _crc32_header(sent)
    assert zlib.crc32(sent) == int.from_bytes(base64.b64decode(answer["ChecksumCRC32"]), "big")


async def test_small_s3_uploads_are_hashed_on_the_loop(
    s3_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under 256 KiB botocore hashes as it does, without a thread hop (a 4 KiB object)."""
    endpoint, bucket = s3_bucket
    hashed = _Hashed(monkeypatch)
    data = os.urandom(4096)
    async with aws.client("s3", endpoint_url=endpoint, region_name="us-east-1") as client:
        client.meta.events.register("before-send.s3.PutObject", hashed.sent)
        await client.put_object(Bucket=bucket, Key=f"small/{uuid.uuid4().hex}", Body=data)
    assert (4096, True) in hashed.pieces
    assert hashed.headers[-1]["x-amz-content-sha256"] == hashlib.sha256(data).hexdigest()


async def test_storage_writes_are_hashed_off_the_loop(
    s3_bucket: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``s3://`` backend: a 1 MiB write, and a multipart one (parts of 8 MiB)."""
    endpoint, bucket = s3_bucket
    hashed = _Hashed(monkeypatch)
    one = os.urandom(1024 * 1024)
    parts = os.urandom(9 * 1024 * 1024)
    url = f"s3://{bucket}/st-{uuid.uuid4().hex}?endpoint_url={endpoint}&region=us-east-1"
    async with Storage(url) as st:
        await st.write("one", one)
        async with st.open("parts", "wb") as f:
            for start in range(0, len(parts), 1024 * 1024):
                await f.write(parts[start : start + 1024 * 1024])
        # every byte hashed twice (SHA-256 and CRC32), none of them on the loop
        assert sum(size for size, _ in hashed.pieces) >= 2 * (len(one) + len(parts))
        assert hashed.largest_on_loop() < 256 * 1024, hashed.pieces
        assert await st.read("one") == one
        assert await st.read("parts") == parts


async def test_other_services_payloads_are_hashed_off_the_loop(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every SigV4 service signs its payload's SHA-256 (over https too, S3 aside): a 300 KB
    DynamoDB item."""
    endpoint = service_url("s3")  # (moto's server answers every service)
    hashed = _Hashed(monkeypatch)
    table = f"hashed-{uuid.uuid4().hex[:8]}"
    value = "v" * 300_000
    async with aws.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1") as ddb:
        await ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        try:
            await ddb.put_item(TableName=table, Item={"id": {"S": "a"}, "v": {"S": value}})
            item = await ddb.get_item(TableName=table, Key={"id": {"S": "a"}})
            assert item["Item"]["v"]["S"] == value
        finally:
            await ddb.delete_table(TableName=table)
    assert any(size >= 300_000 and not on_loop for size, on_loop in hashed.pieces), hashed.pieces
    assert hashed.largest_on_loop() < 256 * 1024, hashed.pieces
