"""A large request body over https leaves the event loop free while it is encrypted.

httpcore hands a bytes body to its network stream in one piece, and anyio's and trio's TLS
streams encrypt what they are given at once, on the event loop: a 5 MB POST held the loop
23 ms (a stack-sampling watchdog). The httpx backend writes it in slices instead; this
checks the size of each encryption and that every byte still arrives, in order.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncify_kit.http import HttpClient

from .conftest import QuietHandler, local_server
from .tls_servers import make_certificate

pytestmark = pytest.mark.anyio

BODY = bytes(range(256)) * (20 * 1024)  # 5 MiB
SLICE = 256 * 1024


class _Digest(QuietHandler):
    """Answers a POST with the SHA-256 of its body."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.answer(hashlib.sha256(body).hexdigest().encode())


@pytest.fixture
def https_url(tmp_path: Path) -> Iterator[str]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*make_certificate("127.0.0.1", tmp_path))
    with local_server(_Digest, tls) as url:
        yield f"{url}/upload"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_large_body_is_encrypted_in_slices(
    anyio_backend: str, https_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    write = ssl.SSLObject.write

    def spy(self: ssl.SSLObject, data: Any) -> int:
        sizes.append(len(data))
        return write(self, data)

    monkeypatch.setattr(ssl.SSLObject, "write", spy)
    async with HttpClient(backend="httpx", timeout=10, verify=False) as http:
        response = await http.post(https_url, content=BODY)
        assert response.status_code == 200
        assert response.text == hashlib.sha256(BODY).hexdigest()
    assert sum(sizes) >= len(BODY)
    assert max(sizes) <= SLICE
