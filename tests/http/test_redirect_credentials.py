"""What a followed redirect carries, on every backend and event loop, against two real servers
on loopback: ``http_server`` and ``other_http_server`` are two origins (same scheme and host,
different ports)."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from asyncify_kit.http import ConnectError, HttpClient, ReadError, TransportError

from .conftest import ServerInfo
from .server import REDIRECT_PASSWORD

pytestmark = pytest.mark.anyio

REQUEST_COOKIES = {"req": "per-request-value"}


def goto(target: str) -> dict[str, str]:
    """The query of ``/goto``, which answers 302 to *target*."""
    return {"to": target}


async def cookies_seen(http: HttpClient, url: str, **kwargs: Any) -> tuple[str, dict[str, str]]:
    """The final URL and the cookies the final server received, by request() and by stream()
    (which must agree)."""
    r = await http.get(url, **kwargs)
    async with http.stream("GET", url, **kwargs) as streamed:
        body = json.loads(await streamed.aread())
    assert streamed.url == r.url
    assert body == r.json()
    return r.url, body


async def test_request_cookies_kept_on_same_origin_redirects(
    http_server: ServerInfo, backend: str
) -> None:
    here = http_server.url
    async with HttpClient(here, backend=backend, retries=0, cookies={"client": "c"}) as http:
        url, seen = await cookies_seen(http, "/cookies", cookies=REQUEST_COOKIES)
        assert seen == {"client": "c", **REQUEST_COOKIES}
        for target in ("/cookies", f"{here}/cookies", f"/goto?to={quote('/cookies')}"):
            url, seen = await cookies_seen(
                http, "/goto", params=goto(target), cookies=REQUEST_COOKIES
            )
            assert url == f"{here}/cookies", target
            assert seen == {"client": "c", **REQUEST_COOKIES}, target
        # per-request cookies belong to that request only
        assert (await http.get("/cookies")).json() == {"client": "c"}


async def test_request_cookies_dropped_on_cross_origin_redirects(
    http_server: ServerInfo, other_http_server: ServerInfo, backend: str
) -> None:
    here, there = http_server.url, other_http_server.url
    async with HttpClient(here, backend=backend, retries=0, cookies={"client": "c"}) as http:
        # straight to the other origin, through a same-origin hop first, and there and back:
        # once a redirect has left the origin, the per-request cookies are not sent again
        cases = {
            f"{there}/cookies": f"{there}/cookies",
            f"/goto?to={quote(there + '/cookies')}": f"{there}/cookies",
            f"{there}/goto?to={quote(here + '/cookies')}": f"{here}/cookies",
        }
        for target, final in cases.items():
            url, seen = await cookies_seen(
                http, "/goto", params=goto(target), cookies=REQUEST_COOKIES
            )
            assert url == final, target
            assert "req" not in seen, (target, seen)
            assert REQUEST_COOKIES["req"] not in json.dumps(seen)
            assert seen["client"] == "c"  # the client's own cookies go everywhere


def received(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k == name]


CREDENTIAL_HEADERS = {"Authorization": "Bearer tok-123", "Proxy-Authorization": "Basic cHJveHk="}


@pytest.mark.parametrize("where", ["client", "request"])
async def test_credential_headers_kept_on_same_origin_redirects(
    http_server: ServerInfo, backend: str, where: str
) -> None:
    here = http_server.url
    client_headers = CREDENTIAL_HEADERS if where == "client" else None
    request_headers = CREDENTIAL_HEADERS if where == "request" else None
    async with HttpClient(here, backend=backend, retries=0, headers=client_headers) as http:
        for target in ("/echo", f"{here}/echo"):
            r = await http.get("/goto", params=goto(target), headers=request_headers)
            assert r.url == f"{here}/echo"
            for name, value in CREDENTIAL_HEADERS.items():
                assert received(r.json(), name.lower()) == [value], (target, name)


@pytest.mark.parametrize("where", ["client", "request"])
async def test_credential_headers_dropped_on_cross_origin_redirects(
    http_server: ServerInfo, other_http_server: ServerInfo, backend: str, where: str
) -> None:
    here, there = http_server.url, other_http_server.url
    client_headers = CREDENTIAL_HEADERS if where == "client" else None
    request_headers = CREDENTIAL_HEADERS if where == "request" else None
    async with HttpClient(here, backend=backend, retries=0, headers=client_headers) as http:
        for target, final in {
            f"{there}/echo": f"{there}/echo",
            f"{there}/goto?to={quote(here + '/echo')}": f"{here}/echo",
        }.items():
            r = await http.get("/goto", params=goto(target), headers=request_headers)
            assert r.url == final
            for name, value in CREDENTIAL_HEADERS.items():
                assert received(r.json(), name.lower()) == [], (target, name)
                assert value not in r.text


@pytest.mark.parametrize("limit", [0, 1, 3])
async def test_max_redirects_is_the_number_of_redirects_followed(
    http_server: ServerInfo, backend: str, limit: int
) -> None:
    async with HttpClient(http_server.url, backend=backend, retries=0, max_redirects=limit) as http:
        # exactly max_redirects redirects are followed; one more is too many
        r = await http.get(f"/redirect/{limit}")
        assert r.json() == {"redirected": True}
        with pytest.raises(TransportError, match=r"^too many redirects"):
            await http.get(f"/redirect/{limit + 1}")
        with pytest.raises(TransportError, match=r"^too many redirects"):
            async with http.stream("GET", f"/redirect/{limit + 1}"):
                pass


@pytest.mark.parametrize(
    "location", ["http://[::1/x", "http://127.0.0.1:99999/x", "http://127.0.0.1:8x/x"]
)
async def test_redirect_to_an_invalid_url(
    http_server: ServerInfo, backend: str, location: str
) -> None:
    # was: a raw ValueError (requests), a raw ExceptionGroup (httpx, port out of range) or a
    # ReadError (httpx), where aiohttp raised TransportError
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        with pytest.raises(TransportError) as info:
            await http.get("/goto", params=goto(location))
        assert type(info.value) is TransportError
        assert info.value.orig is not None and info.value.__cause__ is info.value.orig
        with pytest.raises(TransportError) as info:
            async with http.stream("GET", "/goto", params=goto(location)):
                pass
        assert type(info.value) is TransportError
        assert (await http.get("/ok")).text == "ok"


def port_of(server: ServerInfo) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


def drop_port(server: ServerInfo) -> int:
    """The port of the server that closes each connection without answering."""
    port = urlsplit(server.drop_url).port
    assert port is not None
    return port


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("userinfo", ["user:password", "user"])
async def test_redirect_to_a_url_with_userinfo(
    http_server: ServerInfo,
    other_http_server: ServerInfo,
    backend: str,
    userinfo: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a Location of http://bob:<password>@host/... is followed to http://host/... and its
    # credentials (the server's, not the caller's) are never sent: aiohttp sent them as Basic
    # auth (or raised a raw ValueError when the request had an Authorization header); httpx
    # and requests kept them in the URL, so in Response.url and in httpx's log of the request
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for auth in (None, ("ann", "ann-pw")):
        async with HttpClient(http_server.url, backend=backend, retries=0, auth=auth) as http:
            for server, same_origin in ((http_server, True), (other_http_server, False)):
                params = {"port": port_of(server), "userinfo": userinfo}
                r = await http.get("/goto-userinfo", params=params)
                assert r.url == f"{server.url}/echo"
                # the caller's own Authorization follows the origin rule, as on any redirect
                expected = ["Basic YW5uOmFubi1wdw=="] if auth and same_origin else []
                assert received(r.json(), "authorization") == expected, (auth, server.url)
                async with http.stream("GET", "/goto-userinfo", params=params) as streamed:
                    body = json.loads(await streamed.aread())
                assert streamed.url == r.url
                assert received(body, "authorization") == expected
                texts += [r.url, repr(r), repr(r.headers), repr(r.request)]
            # not followed: the Location as received, though no repr shows its password
            r = await http.get("/goto-userinfo", params=params, follow_redirects=False)
            assert r.status_code == 302
            assert r.headers["location"].startswith("http://bob")
            texts += [r.url, repr(r.headers)]
            # the errors of a redirect's request show no password either
            for port, error in ((unused_port(), ConnectError), (drop_port(http_server), ReadError)):
                params = {"port": port, "userinfo": userinfo}
                with pytest.raises(error) as info:
                    await http.get("/goto-userinfo", params=params)
                texts += [str(info.value), repr(info.value)]
                with pytest.raises(error) as info:
                    async with http.stream("GET", "/goto-userinfo", params=params):
                        pass
                texts += [str(info.value), repr(info.value)]
    # httpcore's DEBUG trace shows every response header as received, the Location included
    texts += [r.getMessage() for r in caplog.records if not r.name.startswith("httpcore")]
    for text in texts:
        assert REDIRECT_PASSWORD not in text, text
