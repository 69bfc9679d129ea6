"""Through a proxy, both AWS backends verify the endpoint's certificate.

aiobotocore gave a connector whose requests go through a proxy (``Config(proxies=...)`` or
``HTTPS_PROXY``), without a ``proxy_ca_bundle`` or ``proxy_client_cert``, ``ssl=False``: an
endpoint with an untrusted certificate was accepted through the proxy's tunnel, where boto3
refuses it. Here an https front with a certificate of a CA made for the test stands before
moto, and a forward proxy on loopback relays the tunnels.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

import pytest
from botocore.config import Config
from botocore.exceptions import SSLError
from scripts.tls_files import make_ca

from asyncify_kit import aws
from asyncify_kit.storage import Storage, StorageError
from tests.http.proxy_server import ForwardProxy, TlsFront

from .conftest import service_url

pytestmark = pytest.mark.anyio

CASES: list[tuple[Literal["aioboto3", "boto3"], str]] = [
    ("aioboto3", "asyncio"),
    ("boto3", "asyncio"),
    ("boto3", "trio"),
]
#: what botocore and the storage facade say of a certificate they refuse
REFUSED = r"(?i)certificate verify failed|SSL validation failed"
SCHEMES = [("s3", "asyncio"), ("s3+boto3", "asyncio"), ("s3+boto3", "trio")]


class _Endpoint:
    """An https front of moto whose certificate comes from a CA made here (``ca_file``)."""

    def __init__(self, directory: Path) -> None:
        moto = urlsplit(service_url("s3"))
        self.ca_file, cert_file, key_file = make_ca(directory, "s3-front", "127.0.0.1")
        origin = (moto.hostname or "127.0.0.1", moto.port or 80)
        self.front = TlsFront(origin, str(cert_file), str(key_file))
        self.url = self.front.url


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Endpoint]:
    made = _Endpoint(tmp_path_factory.mktemp("s3-front"))
    yield made
    made.front.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    for name in ("NO_PROXY", "no_proxy", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    made = ForwardProxy()
    yield made
    made.close()


def _tunnels(proxy: ForwardProxy, endpoint: _Endpoint) -> int:
    """How many tunnels to the endpoint the proxy opened."""
    target = f"CONNECT {urlsplit(endpoint.url).netloc} "
    return sum(line.startswith(target) for line, _ in proxy.seen)


@pytest.mark.parametrize(("backend", "anyio_backend"), CASES)
async def test_aws_client_verifies_the_endpoint_through_a_proxy(
    backend: Literal["aioboto3", "boto3"],
    anyio_backend: str,
    endpoint: _Endpoint,
    proxy: ForwardProxy,
) -> None:
    options = {
        "endpoint_url": endpoint.url,
        "region_name": "us-east-1",
        "config": Config(
            proxies={"https": f"http://127.0.0.1:{proxy.port}"}, retries={"max_attempts": 1}
        ),
    }
    with pytest.raises(SSLError, match=REFUSED):
        async with aws.client("s3", backend=backend, **options) as client:
            await client.list_buckets()
    assert _tunnels(proxy, endpoint) >= 1  # (refused at the endpoint, through the proxy)
    async with aws.client("s3", backend=backend, verify=str(endpoint.ca_file), **options) as client:
        assert "Buckets" in await client.list_buckets()


@pytest.mark.parametrize(("scheme", "anyio_backend"), SCHEMES)
async def test_storage_verifies_the_endpoint_through_an_environment_proxy(
    scheme: str,
    anyio_backend: str,
    endpoint: _Endpoint,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    url = f"{scheme}://bucket-{uuid.uuid4().hex[:8]}/p?endpoint_url={quote(endpoint.url)}"
    url += "&region=us-east-1&max_attempts=1"
    with pytest.raises(StorageError, match=REFUSED):
        async with Storage(url) as st:
            await st.exists("k")
    assert _tunnels(proxy, endpoint) >= 1
    async with Storage(f"{url}&ca_bundle={quote(str(endpoint.ca_file))}") as st:
        assert not await st.exists("k")  # (no such bucket: S3 answers 404 to a HEAD)
