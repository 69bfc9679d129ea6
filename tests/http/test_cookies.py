"""Cookies go on the wire as given (or as the server set them), the same on every backend and
event loop, against the real server on loopback, which echoes the raw values it received."""

from __future__ import annotations

import pytest

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
