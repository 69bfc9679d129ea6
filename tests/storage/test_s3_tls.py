"""An S3-compatible endpoint over https whose certificate comes from a private CA (MinIO,
Ceph and the like, in-house): ``?ca_bundle=PATH`` trusts that CA on both S3 backends.

The endpoint is moto behind a TLS front on loopback (`TlsFront`), with a certificate of a CA
made for the test. Before, the only ways to trust such a CA were ``AWS_CA_BUNDLE`` or the
profile's ``ca_bundle``, for every AWS endpoint of the process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from scripts.tls_files import make_ca

from asyncify_kit import ConfigError
from asyncify_kit.storage import Storage, StorageError
from tests.http.proxy_server import TlsFront

CASES = [("s3", "asyncio"), ("s3+boto3", "asyncio"), ("s3+boto3", "trio")]

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize(("scheme", "anyio_backend"), CASES, ids=[f"{s}-{b}" for s, b in CASES]),
]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca(tmp_path_factory.mktemp("s3-ca"), "s3", "127.0.0.1")


@pytest.fixture
def https_endpoint(
    s3_bucket: tuple[str, str], certificates: tuple[Path, Path, Path]
) -> Iterator[tuple[str, str]]:
    """``(https endpoint, bucket)``: the test bucket, through TLS."""
    endpoint, bucket = s3_bucket
    parts = urlsplit(endpoint)
    _, cert_file, key_file = certificates
    front = TlsFront((parts.hostname or "", parts.port or 80), str(cert_file), str(key_file))
    yield front.url, bucket
    front.close()


async def test_a_private_ca_is_trusted_with_ca_bundle(
    scheme: str,
    anyio_backend: str,
    https_endpoint: tuple[str, str],
    certificates: tuple[Path, Path, Path],
) -> None:
    endpoint, bucket = https_endpoint
    ca_file = certificates[0]
    base = f"{scheme}://{bucket}/tls-{uuid.uuid4().hex[:8]}?endpoint_url={endpoint}"
    async with Storage(f"{base}&ca_bundle={ca_file}&region=us-east-1") as st:
        await st.write("a.txt", b"over tls")
        assert await st.read("a.txt") == b"over tls"
    # without it, the certificate fails (a StorageError that says so), on both backends
    async with Storage(f"{base}&region=us-east-1&max_attempts=1") as st:
        with pytest.raises(StorageError, match="certificate verify failed"):
            await st.read("a.txt")


async def test_a_missing_ca_bundle_is_a_config_error(
    scheme: str, anyio_backend: str, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=r"'ca_bundle'.*no such file"):
        async with Storage(f"{scheme}://bucket?ca_bundle={missing}&region=us-east-1"):
            pass
