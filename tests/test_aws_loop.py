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
from pathlib import Path
from typing import Any

import pytest

from asyncify_kit import aws
from asyncify_kit.storage import Storage

from .conftest import service_url

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


def test_a_first_client_imports_its_modules_off_the_loop() -> None:
    """In a fresh interpreter: the first ``s3://`` Storage and the first ``aws.client`` (one
    request each) import no module of the AWS stack on the event loop's thread."""
    endpoint = service_url("s3")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    env.pop("AWS_PROFILE", None)
    done = subprocess.run(
        [sys.executable, "-I", str(PROBE), endpoint],
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
    assert {"aiobotocore.client", "aiohttp", "s3transfer"} <= set(imported["elsewhere"])


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
