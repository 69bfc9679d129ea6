"""``verify`` is the same trust on every backend, against real TLS servers on loopback whose
certificates come from certificate authorities made here.

Before, each library trusted its own default: httpx and requests certifi's bundle, aiohttp the
system's store (where ``SSL_CERT_FILE`` applies), and ``verify`` took only ``True`` or
``False``: no backend could be given a private CA, and ``SSL_CERT_FILE`` worked on two of the
three.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from scripts.tls_files import make_ca

from asyncify_kit.exceptions import ConfigError, ConnectError
from asyncify_kit.http import HttpClient
from tests.http.tls_servers import handler

pytestmark = [
    pytest.mark.anyio,
    # verify=False, as asked: requests (urllib3) warns of it on each request
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

HOST = "127.0.0.1"


class _Site:
    def __init__(self, directory: Path, name: str) -> None:
        self.ca_file, cert_file, key_file = make_ca(directory, name, HOST)
        self.server = ThreadingHTTPServer((HOST, 0), handler(HOST, "https"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"https://{HOST}:{self.server.server_address[1]}/echo"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, _Site]]:
    """Two TLS servers, each with a certificate of a CA of its own ("a" and "b")."""
    directory = tmp_path_factory.mktemp("ca")
    made = {name: _Site(directory, name) for name in ("a", "b")}
    yield made
    for site in made.values():
        site.close()


async def _fetch(backend: str, url: str, verify: Any) -> int:
    async with HttpClient(backend=backend, verify=verify, retries=0) as http:
        response = await http.get(url)
        assert json.loads(response.content)["scheme"] == "https"
        return response.status_code


async def test_a_ca_file_is_trusted_alone(backend: str, sites: dict[str, _Site]) -> None:
    a, b = sites["a"], sites["b"]
    assert await _fetch(backend, a.url, str(a.ca_file)) == 200
    assert await _fetch(backend, a.url, a.ca_file) == 200  # a Path too
    with pytest.raises(ConnectError, match="certificate verify failed"):
        await _fetch(backend, b.url, a.ca_file)


async def test_an_ssl_context_is_used_as_given(backend: str, sites: dict[str, _Site]) -> None:
    site = sites["a"]
    context = ssl.create_default_context(cafile=site.ca_file)
    for _ in range(2):
        assert await _fetch(backend, site.url, context) == 200
    # nothing was added to it (requests would load certifi's bundle into it)
    assert len(context.get_ca_certs()) == 1


async def test_default_trust_is_the_same_on_every_backend(
    backend: str, sites: dict[str, _Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    site = sites["b"]
    # a private CA is not trusted by default...
    with pytest.raises(ConnectError, match="certificate verify failed"):
        await _fetch(backend, site.url, True)
    # ...unless OpenSSL's default store names it (it did on aiohttp and httpx, not requests)
    monkeypatch.setenv("SSL_CERT_FILE", str(site.ca_file))
    assert await _fetch(backend, site.url, True) == 200
    assert await _fetch(backend, site.url, False) == 200


class _BytesPath:
    def __fspath__(self) -> bytes:
        return b"/ca.pem"


@pytest.mark.parametrize("bad", [1, None, b"/etc/ssl/certs/ca-certificates.crt", _BytesPath()])
def test_an_invalid_verify_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="verify"):
        HttpClient(verify=bad)


@pytest.fixture
def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pem"
    path.write_text("not a certificate\n")
    return path


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_missing_or_unreadable_ca_file_is_a_config_error(
    anyio_backend: str, tmp_path: Path, garbage: Path
) -> None:
    for path, why in [
        (tmp_path / "missing.pem", "no such file"),
        (tmp_path, "no such file"),  # a directory
        (garbage, "no CA certificate could be read"),
    ]:
        http = HttpClient(verify=str(path))
        with pytest.raises(ConfigError, match=why):
            await http.__aenter__()
