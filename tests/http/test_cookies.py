"""Cookies go on the wire as given (or as the server set them), the same on every backend and
event loop, against the real server on loopback, which echoes the raw values it received; a
``Cookie`` header is sent as the same cookies given with ``cookies=``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asyncify_kit.exceptions import ConfigError
from asyncify_kit.http import HttpClient

from .conftest import ServerInfo

pytestmark = pytest.mark.anyio

# base64 and URL-ish values: aiohttp's default cookie jar sent these in double quotes
VALUES = {"b64": "YWJjZA==", "url": "a/b?c@d", "json": "[1]{}()<>"}


async def test_cookie_values_are_sent_unquoted(http_server: ServerInfo, backend: str) -> None:
    async with HttpClient(http_server.url, backend=backend, retries=0, cookies=VALUES) as http:
        assert (await http.get("/cookies")).json() == VALUES
        request_cookies = {f"r{name}": value for name, value in VALUES.items()}
        seen = (await http.get("/cookies", cookies=request_cookies)).json()
        assert seen == {**VALUES, **request_cookies}
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        await http.get("/cookies/set", params={"srv": "p/q=="})  # Set-Cookie: srv=p/q==
        assert (await http.get("/cookies")).json() == {"srv": "p/q=="}


async def test_a_cookie_a_server_set_in_double_quotes_goes_back_as_set(
    http_server: ServerInfo, backend: str
) -> None:
    """``Set-Cookie: q="abc=="``: the double quotes are part of the value (RFC 6265), and
    httpx and requests send them back; aiohttp sent ``q=abc==``. The caller's own cookies
    still go unquoted."""
    async with HttpClient(http_server.url, backend=backend, retries=0, cookies=VALUES) as http:
        await http.get("/cookies/set", params={"q": '"abc=="', "plain": "p/q=="})
        assert (await http.get("/cookies")).json() == {**VALUES, "q": '"abc=="', "plain": "p/q=="}


async def test_a_cookie_expired_at_the_epoch_is_removed(
    http_server: ServerInfo, backend: str
) -> None:
    """``Expires=Thu, 01 Jan 1970 00:00:00 GMT``, how Express's ``clearCookie`` logs out:
    aiohttp parsed that date to 0, took it for no date, and kept the cookie (empty) for the
    session, sending ``session=`` back; httpx and requests remove it."""
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        await http.get("/cookies/set", params={"session": "s1", "theme": "dark"})
        await http.get("/cookies/clear", params={"session": ""})
        assert (await http.get("/cookies")).json() == {"theme": "dark"}


async def test_request_cookies_replace_the_jars_of_the_same_name(
    http_server: ServerInfo, backend: str
) -> None:
    # httpx and requests sent both "srv=server; srv=mine" (a server reads the first), and
    # requests sent the client's "client=c" again after a redirect; aiohttp sent "srv=mine"
    async with HttpClient(
        http_server.url, backend=backend, retries=0, cookies={"client": "c"}
    ) as http:
        await http.get("/cookies/set", params={"srv": "server"})
        mine = {"srv": "mine", "client": "override"}
        for url, params in (("/echo", None), ("/goto", {"to": "/echo"})):
            echo = (await http.get(url, params=params, cookies=mine)).json()
            sent = [v for k, v in echo["headers"] if k == "cookie"]
            assert len(sent) == 1, sent
            pairs = sorted(pair.strip() for pair in sent[0].split(";"))
            assert pairs == ["client=override", "srv=mine"], (url, sent)
        # the jar itself is unchanged
        assert (await http.get("/cookies")).json() == {"client": "c", "srv": "server"}


def cookie_pairs(echo: dict[str, Any]) -> list[str]:
    """The cookies the server received, as sorted ``name=value`` pairs of its one ``Cookie``
    header (none: ``[]``)."""
    sent = [v for k, v in echo["headers"] if k == "cookie"]
    assert len(sent) <= 1, sent
    return sorted(pair.strip() for pair in sent[0].split(";")) if sent else []


async def echoed(http: HttpClient, url: str, **kwargs: Any) -> list[str]:
    """`cookie_pairs` of ``/echo`` reached through *url*, by request() and by stream() (which
    must agree)."""
    pairs = cookie_pairs((await http.get(url, **kwargs)).json())
    async with http.stream("GET", url, **kwargs) as r:
        assert cookie_pairs(json.loads(await r.aread())) == pairs
    return pairs


async def test_cookie_header_is_sent_with_the_jars_cookies(
    http_server: ServerInfo, other_http_server: ServerInfo, backend: str
) -> None:
    # a Cookie header is sent as the same cookies given with cookies=: with the jar's, those
    # of the same names replaced. httpx and requests sent it instead of the jar's cookies and
    # then the jar's alone after a redirect; aiohttp merged the two, the jar's srv winning
    here, there = http_server.url, other_http_server.url
    async with HttpClient(here, backend=backend, retries=0, cookies={"client": "c"}) as http:
        await http.get("/cookies/set", params={"srv": "server"})
        header = {"Cookie": "mine=1; srv=mine"}
        for url, params in (("/echo", None), ("/goto", {"to": "/echo"})):
            pairs = await echoed(http, url, params=params, headers=header)
            assert pairs == ["client=c", "mine=1", "srv=mine"], url
        # cookies= wins over a Cookie header naming the same cookie
        pairs = await echoed(
            http, "/echo", headers={"cookie": "a=header;b=header"}, cookies={"b": "arg"}
        )
        assert pairs == ["a=header", "b=arg", "client=c", "srv=server"]
        # from the first redirect to another origin on, as cookies= and Authorization: not
        # sent again; the jar's cookies go on
        pairs = await echoed(http, "/goto", params={"to": f"{there}/echo"}, headers=header)
        assert pairs == ["client=c", "srv=server"]
        # the jar itself is unchanged
        assert (await http.get("/cookies")).json() == {"client": "c", "srv": "server"}

    # the client's Cookie header: the same, on every request; a request's replaces it
    async with HttpClient(here, backend=backend, retries=0, headers={"Cookie": "hdr=1"}) as http:
        await http.get("/cookies/set", params={"srv": "server"})
        assert (await http.get("/cookies")).json() == {"hdr": "1", "srv": "server"}
        assert await echoed(http, "/goto", params={"to": "/echo"}) == ["hdr=1", "srv=server"]
        assert await echoed(http, "/echo", headers={"Cookie": "own=2"}) == ["own=2", "srv=server"]
        assert await echoed(http, "/goto", params={"to": f"{there}/echo"}) == ["srv=server"]


BAD_COOKIE_HEADERS = {
    "no-equals-sign-secret": "name=value pairs",
    "a=1; a=2": "cookie 'a' twice",
    "a=two words-secret": "cookie 'a'",
    "a=1, b=2-secret": "cookie 'a'",
    "path=/x-secret": "attribute",
    "x y=1-secret": "name=value pairs",
}


@pytest.mark.parametrize("value", list(BAD_COOKIE_HEADERS))
async def test_invalid_cookie_header(http_server: ServerInfo, backend: str, value: str) -> None:
    # checked as cookies= is (what the backends cannot all send as given is refused), the
    # message naming the cookie, never showing a value
    message = BAD_COOKIE_HEADERS[value]
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        with pytest.raises(ConfigError, match=message) as info:
            await http.get("/echo", headers={"Cookie": value})
        assert "secret" not in str(info.value)
        assert (await http.get("/ok")).text == "ok"
    with pytest.raises(ConfigError, match=message):
        HttpClient(http_server.url, backend=backend, headers=[("Cookie", value)])


@pytest.mark.parametrize("domain", ["localhost", ".localhost"])
async def test_a_cookie_localhost_sets_for_its_own_name_goes_back_to_it(
    http_server: ServerInfo, backend: str, domain: str
) -> None:
    """``Set-Cookie: s=1; Domain=localhost`` from ``http://localhost``: httpx and requests
    (http.cookiejar) stored it and never sent it back; aiohttp did. It is not sent to
    another host (the same server as 127.0.0.1)."""
    url = http_server.url.replace("127.0.0.1", "localhost")
    async with HttpClient(url, backend=backend, retries=0, cookies={"own": "1"}) as http:
        await http.get("/cookies/set", params={"s": "1", "_domain": domain})
        assert (await http.get("/cookies")).json() == {"own": "1", "s": "1"}
        assert (await http.get(f"{http_server.url}/cookies")).json() == {"own": "1"}
