"""``HttpClient(proxy=...)``: every backend sends its requests through the given HTTP proxy
(``http://`` in absolute form, ``https://`` in a CONNECT tunnel), with the proxy's
credentials, and none reads a proxy from the environment.

Before, the httpx backend followed ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` (and
``~/.netrc``) while aiohttp and requests went direct, so choosing a backend changed the
route a request took; and no backend could be given a proxy.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from asyncify_kit.exceptions import ConfigError, ConnectError
from asyncify_kit.http import HttpClient
from tests.http.proxy_server import ForwardProxy
from tests.http.tls_servers import handler, make_certificate

pytestmark = [
    pytest.mark.anyio,
    # verify=False, as asked: requests (urllib3) warns of it on each request
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

HOST = "127.0.0.1"
USER, PASSWORD = "ann", "p@ss:w/rd%"
PROXY_USERINFO = "ann:p%40ss%3Aw%2Frd%25"


def _serve(scheme: str, directory: Path) -> Iterator[str]:
    server = ThreadingHTTPServer((HOST, 0), handler(HOST, scheme))
    if scheme == "https":
        cert_file, key_file = make_certificate(HOST, directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A plain and a TLS origin on loopback ports of their own, each answering ``/echo``
    with the headers it got; "ca": the file of the CA of the TLS origin's certificate."""
    directory = tmp_path_factory.mktemp("certs")
    plain, secure = _serve("http", directory), _serve("https", directory)
    # (make_certificate's CA, "server": see scripts/tls_files.make_ca)
    yield {"http": next(plain), "https": next(secure), "ca": str(directory / "ca-server.pem")}
    for server in (plain, secure):
        next(server, None)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy()
    yield server
    server.close()


@pytest.fixture
def private_proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy((USER, PASSWORD))
    yield server
    server.close()


async def test_the_origin_certificate_is_verified_through_the_tunnel(
    backend: str, origins: dict[str, str], proxy: ForwardProxy
) -> None:
    """Through a proxy, the origin's certificate is checked as it is without one: the test
    origin's (of a CA made for the test) is refused unless ``verify`` names that CA.
    (aiobotocore, under `asyncify_kit.aws`, did not check it through a proxy:
    tests/test_aws_proxy.py.)"""
    with pytest.raises(ConnectError, match=r"(?i)certificate verify failed"):
        async with HttpClient(backend=backend, proxy=proxy.url) as http:
            await http.get(f"{origins['https']}/echo")
    assert proxy.seen  # (refused at the origin, through the proxy)
    async with HttpClient(backend=backend, proxy=proxy.url, verify=origins["ca"]) as http:
        assert (await http.get(f"{origins['https']}/echo")).status_code == 200
    assert len(proxy.seen) >= 2


def _with_userinfo(url: str, userinfo: str) -> str:
    return url.replace("http://", f"http://{userinfo}@", 1)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_requests_go_through_the_proxy(
    backend: str, scheme: str, origins: dict[str, str], proxy: ForwardProxy
) -> None:
    origin = origins[scheme]
    async with HttpClient(backend=backend, proxy=proxy.url, verify=False) as http:
        for _ in range(2):
            response = await http.get(f"{origin}/echo", headers={"X-Probe": "1"})
            assert response.status_code == 200
            body = json.loads(response.content)
            assert body["scheme"] == scheme
            assert body["headers"]["x-probe"] == "1"
            assert "proxy-authorization" not in body["headers"]
    authority = origin.partition("://")[2]
    # (http.client, under requests, sends its CONNECT as HTTP/1.0)
    expected = f"GET {origin}/echo" if scheme == "http" else f"CONNECT {authority}"
    assert proxy.seen and {line.rpartition(" ")[0] for line, _ in proxy.seen} == {expected}
    assert {auth for _, auth in proxy.seen} == {None}


async def test_informational_responses_are_skipped_behind_a_proxy(
    backend: str, early_hints_server: str, proxy: ForwardProxy
) -> None:
    """The requests backend's own pools (which skip a 103 Early Hints, and wait for a free
    connection at most the pool timeout) serve proxied requests too: urllib3 made plain ones
    for a proxy, which took the 103 for the final response."""
    origin = early_hints_server
    async with HttpClient(origin, backend=backend, proxy=proxy.url, retries=0) as http:
        for path in ("/first", "/second"):
            r = await http.get(path)
            assert (r.status_code, r.content) == (200, path.encode())
    assert len(proxy.seen) == 2


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_the_proxy_credentials_are_sent_to_the_proxy_only(
    backend: str, scheme: str, origins: dict[str, str], private_proxy: ForwardProxy
) -> None:
    url = _with_userinfo(private_proxy.url, PROXY_USERINFO)
    http = HttpClient(backend=backend, proxy=url, verify=False)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for text in (repr(http), repr(http._config)):
        assert PASSWORD not in text and token not in text and "p%40ss" not in text
    async with http:
        response = await http.get(f"{origins[scheme]}/echo")
        assert response.status_code == 200
        seen = json.loads(response.content)["headers"]
        assert "proxy-authorization" not in seen and "authorization" not in seen
    assert private_proxy.seen
    assert {auth for _, auth in private_proxy.seen} == {f"Basic {token}"}


async def test_a_proxy_that_refuses_the_credentials(
    backend: str, origins: dict[str, str], private_proxy: ForwardProxy
) -> None:
    url = _with_userinfo(private_proxy.url, "ann:wrong-password")
    async with HttpClient(backend=backend, proxy=url, verify=False) as http:
        # plain http: the proxy's answer is the response
        response = await http.get(f"{origins['http']}/echo")
        assert response.status_code == 407
        # https: no tunnel, so no response: a ConnectError that names neither password
        with pytest.raises(ConnectError) as caught:
            await http.get(f"{origins['https']}/echo")
    message = str(caught.value)
    assert "407" in message
    assert "wrong-password" not in message and PASSWORD not in message


async def test_no_proxy_is_read_from_the_environment(
    backend: str,
    origins: dict[str, str],
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
        monkeypatch.setenv(name.lower(), proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with HttpClient(backend=backend, verify=False) as http:
        for scheme in ("http", "https"):
            response = await http.get(f"{origins[scheme]}/echo")
            assert response.status_code == 200
    assert proxy.seen == []


@pytest.mark.parametrize(
    "bad",
    [
        "socks5://127.0.0.1:1080",
        "https://127.0.0.1:3128",
        "127.0.0.1:3128",
        "http://",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:3128/path",
        "http://127.0.0.1:3128?x=1",
        b"http://127.0.0.1:3128",
        3128,
    ],
)
def test_an_invalid_proxy_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"proxy|URL"):
        HttpClient(proxy=bad)  # type: ignore[arg-type]


def test_an_invalid_proxy_error_hides_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        HttpClient(proxy="socks5://ann:s3cr3t-pw@127.0.0.1:1080")
    assert "s3cr3t-pw" not in str(caught.value)
