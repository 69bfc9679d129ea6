"""The aioboto3 backends (``s3://`` storage, ``aws.client``) keep blocking work off the loop.

aiobotocore makes a client's TLS context at its first request, on the event loop, loading
the CA bundle from disk (every client, an ``http://`` endpoint too), and a first client
imported aiobotocore's client modules and aiohttp on the loop (aiohttp's import loads the
system's CA store): 50 ms of the loop for every opening, 450 ms for the first, on this
machine. Both now happen in worker threads; these tests check where, not how long.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from asyncify_kit import _aio_payloads, aws
from asyncify_kit.storage import Storage

from .conftest import service_url
from .storage.conftest import s3_client

pytestmark = pytest.mark.anyio

PROBE = Path(__file__).with_name("aws_import_probe.py")
#: the packages of the AWS stack a first aioboto3 client imports
AWS_STACK = {
    "aioboto3",
    "aiobotocore",
    "aiofiles",
    "aiohttp",
    "boto3",
    "botocore",
    "multiprocessing",
    "s3transfer",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aioboto3 runs on asyncio only


@pytest.mark.parametrize("backend", ["aioboto3", "boto3"])
def test_a_first_client_imports_its_modules_off_the_loop(backend: str) -> None:
    """In a fresh interpreter: the first S3 Storage and the first ``aws.client`` of a backend
    (one request each) import no module of the AWS stack on the event loop's thread (the
    boto3 backend imported boto3 there: 90-105 ms)."""
    endpoint = service_url("s3")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    env.pop("AWS_PROFILE", None)
    done = subprocess.run(
        [sys.executable, "-I", str(PROBE), endpoint, backend],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout)
    on_loop = [name for name in imported["loop"] if name.partition(".")[0] in AWS_STACK]
    assert on_loop == []
    expected = {"aiobotocore.client", "aiohttp"} if backend == "aioboto3" else {"boto3"}
    assert expected | {"botocore.client", "s3transfer"} <= set(imported["elsewhere"])


@pytest.mark.parametrize("opener", ["storage", "aws.client"])
async def test_a_client_makes_its_tls_context_off_the_loop(
    opener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every new aioboto3 client loads the CA bundle at its first request: in a worker
    thread, not on the event loop."""
    endpoint = service_url("s3")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    calls: list[bool] = []  # for each CA load: was it on the event loop's thread?
    load = ssl.SSLContext.load_verify_locations

    def recorded(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        try:
            asyncio.get_running_loop()
            calls.append(True)
        except RuntimeError:
            calls.append(False)
        load(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", recorded)
    for _ in range(2):  # the first client of the process and one after it
        if opener == "storage":
            url = f"s3://tls-probe/p?endpoint_url={endpoint}&region=us-east-1"
            async with Storage(url) as st:
                await st.exists("k")
        else:
            async with aws.client("s3", endpoint_url=endpoint, region_name="us-east-1") as client:
                await client.list_buckets()
    assert len(calls) >= 2
    assert not any(calls), calls


@pytest.fixture(scope="module")
def listed_bucket() -> tuple[str, str, int]:
    """``(endpoint, bucket, count)``: a bucket of *count* objects whose listing is a response
    body of some 80 KB (long keys), made once for the module."""
    endpoint = service_url("s3")
    bucket = f"parse-{uuid.uuid4().hex[:10]}"
    client = s3_client(endpoint)
    client.create_bucket(Bucket=bucket)
    count = 200
    for i in range(count):
        client.put_object(Bucket=bucket, Key=f"p/{'k' * 100}-{i:04d}", Body=b"x")
    client.close()
    return endpoint, bucket, count


@pytest.mark.parametrize("opener", ["storage", "aws.client"])
async def test_a_large_response_is_parsed_off_the_loop(
    opener: str, listed_bucket: tuple[str, str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's parsing of a response (XML into the output shape, and every timestamp) is
    pure Python: a listing page of 1,000 keys held the loop for 96-170 ms. A body of 16 KiB
    or more is parsed in a worker thread."""
    from botocore import parsers

    endpoint, bucket, count = listed_bucket
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    parsed: list[tuple[int, bool]] = []  # (the body's length, parsed on the loop's thread?)
    to_dom = parsers.BaseXMLResponseParser._parse_xml_string_to_dom

    def recorded(self: Any, xml_string: bytes) -> Any:
        try:
            asyncio.get_running_loop()
            parsed.append((len(xml_string), True))
        except RuntimeError:
            parsed.append((len(xml_string), False))
        return to_dom(self, xml_string)

    monkeypatch.setattr(parsers.BaseXMLResponseParser, "_parse_xml_string_to_dom", recorded)
    if opener == "storage":
        url = f"s3://{bucket}/p?endpoint_url={endpoint}&region=us-east-1"
        async with Storage(url) as st:
            keys = [info.key async for info in st.list("", recursive=True)]
    else:
        async with aws.client("s3", endpoint_url=endpoint, region_name="us-east-1") as client:
            page = await client.list_objects_v2(Bucket=bucket, Prefix="p/")
            keys = [item["Key"] for item in page["Contents"]]
    assert len(keys) == count
    large = [on_loop for size, on_loop in parsed if size >= 16 * 1024]
    assert large, parsed
    assert not any(large), parsed


async def test_a_large_whole_body_is_joined_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``await body.read()`` of a ``get_object`` body was aiohttp's ``read()``, which joins
    what it received on the event loop (100 MB: 63-86 ms of the loop). From
    `_aio_payloads.JOIN_IN_THREAD` bytes on (lowered to 1 MiB here), the slices are joined in a
    worker thread, the CRC32 still checked; a read of a size, and a smaller body, as
    before."""
    from botocore.exceptions import FlexibleChecksumError

    endpoint = service_url("s3")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(_aio_payloads, "JOIN_IN_THREAD", 1024 * 1024)
    joins: list[bool] = []  # for each join: on the event loop's thread?
    join = _aio_payloads._joined

    def recorded(parts: list[bytes]) -> bytes:
        try:
            asyncio.get_running_loop()
            joins.append(True)
        except RuntimeError:
            joins.append(False)
        return join(parts)

    monkeypatch.setattr(_aio_payloads, "_joined", recorded)
    bucket = f"join-{uuid.uuid4().hex[:10]}"
    data = os.urandom(3 * 1024 * 1024 + 5)
    async with aws.client("s3", endpoint_url=endpoint, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=bucket)
        await s3.put_object(Bucket=bucket, Key="big", Body=data)
        await s3.put_object(Bucket=bucket, Key="small", Body=data[:1000])
        body = (await s3.get_object(Bucket=bucket, Key="big"))["Body"]
        assert await body.read() == data
        assert body.tell() == len(data)
        body = (await s3.get_object(Bucket=bucket, Key="big"))["Body"]
        assert await body.read(10) == data[:10]
        assert await body.read() == data[10:]  # (the rest, joined as well)
        body = (await s3.get_object(Bucket=bucket, Key="small"))["Body"]
        assert await body.read() == data[:1000]
        # a body whose bytes do not match its CRC32: the check still fails at the end
        body = (await s3.get_object(Bucket=bucket, Key="big", ChecksumMode="ENABLED"))["Body"]
        monkeypatch.setattr(body._body, "_expected", "AAAAAA==")
        with pytest.raises(FlexibleChecksumError):
            await body.read()
    assert joins == [False, False]  # (none for the small body, nor for the failed check)
