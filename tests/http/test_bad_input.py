"""Bad input from the caller is a `ConfigError` naming the problem, the same on every backend
and event loop, never a library's own exception; the server is the real one on loopback."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from asyncify_kit.exceptions import ConfigError
from asyncify_kit.http import HttpClient

from .conftest import ServerInfo

pytestmark = pytest.mark.anyio

BAD_URLS = {
    "http://127.0.0.1:99999/x": "out of range",
    "http://ann:pw-secret@127.0.0.1:99999/x": "out of range",
    "http://127.0.0.1:8x/x": "(?i)port",
    "http://[::1/x": "IPv6",
    "http:///x": "no host",
    "http://exa mple.org/x": "space",
    "http://host\tname/x": "space",
}


@pytest.mark.parametrize("url", list(BAD_URLS))
async def test_invalid_request_url(http_server: ServerInfo, backend: str, url: str) -> None:
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        with pytest.raises(ConfigError, match=BAD_URLS[url]) as info:
            await http.get(url)
        assert "pw-secret" not in str(info.value)
        with pytest.raises(ConfigError, match=BAD_URLS[url]):
            async with http.stream("GET", url):
                pass
        assert (await http.get("/ok")).text == "ok"  # the client is still usable


@pytest.mark.parametrize("url", list(BAD_URLS))
def test_invalid_base_url(backend: str, url: str) -> None:
    with pytest.raises(ConfigError, match=BAD_URLS[url]) as info:
        HttpClient(url.removesuffix("/x"), backend=backend)
    assert "pw-secret" not in str(info.value)


BAD_HEADERS = [
    ({"X-A": "a\r\nX-Injected: 1"}, "value for header 'X-A'"),
    ({"X-A": "nul\x00"}, "value for header 'X-A'"),
    ({"X-A": "h\u00e9llo"}, "value for header 'X-A'"),
    ({"X-A": "\u2603"}, "value for header 'X-A'"),
    ({"X-A": " leading space"}, "value for header 'X-A'"),
    ({"X-A": "trailing tab\t"}, "value for header 'X-A'"),
    ({"X A": "v"}, "header name 'X A'"),
    ({"X-A:": "v"}, "header name"),
    ({"Authorization: Bearer tok-secret": "x"}, "header name"),
]


@pytest.mark.parametrize(("headers", "message"), BAD_HEADERS)
async def test_invalid_header(
    http_server: ServerInfo, backend: str, headers: dict[str, str], message: str
) -> None:
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        with pytest.raises(ConfigError, match=message) as info:
            await http.get("/echo", headers=headers)
        for value in headers.values():
            assert value not in str(info.value) or value == "v"
        assert "tok-secret" not in str(info.value)
        with pytest.raises(ConfigError, match=message):
            async with http.stream("GET", "/echo", headers=headers):
                pass
    with pytest.raises(ConfigError, match=message):
        HttpClient(http_server.url, backend=backend, headers=headers)


async def test_header_bytes_go_as_text_and_none_is_refused(
    http_server: ServerInfo, backend: str
) -> None:
    """A header name or value given as bytes goes out as its text (it went out as its repr,
    ``b'...'``), non-ASCII bytes are refused as non-ASCII text is, and a ``None`` value is a
    `ConfigError` (it went out as "None")."""
    async with HttpClient(
        http_server.url, backend=backend, retries=0, headers={b"X-Client": b"c1"}
    ) as http:
        mixed = [(b"X-Bytes", b"v1"), ("X-Int", 7)]
        echo = (await http.get("/echo", headers=mixed)).json()  # type: ignore[arg-type]
        sent = {name.lower(): value for name, value in echo["headers"]}
        assert (sent["x-client"], sent["x-bytes"], sent["x-int"]) == ("c1", "v1", "7")
        with pytest.raises(ConfigError, match="value for header 'X-A'"):
            await http.get("/echo", headers={"X-A": b"caf\xc3\xa9"})
        with pytest.raises(ConfigError, match="value of header 'X-A' is None"):
            await http.get("/echo", headers={"X-A": None})  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="a header name is None"):
            await http.get("/echo", headers=[(None, "v")])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="value of header 'X-A' is None"):
        HttpClient(http_server.url, headers={"X-A": None})  # type: ignore[arg-type]


BAD_BODIES: list[dict[str, Any]] = [
    {"params": {"a": {"b": 1}}},  # was sent as a=b
    {"params": {"a": [1, [2, 3]]}},  # was sent as a=1&a=[2, 3]
    {"params": [("a", {1, 2})]},
    {"data": {"a": {"b": 1}}},
    {"data": {"a": {"b": 1}}, "files": {"f": b"x"}},
    {"json": {"v": float("nan")}},  # was sent as {"v":NaN}, which is no JSON
    {"json": {"v": float("inf")}},
    {"json": {"when": datetime.date(2026, 1, 1)}},  # was a raw TypeError
    {"json": {b"key": 1}},
]


@pytest.mark.parametrize("kwargs", BAD_BODIES)
async def test_invalid_params_form_or_json(
    http_server: ServerInfo, backend: str, kwargs: dict[str, Any]
) -> None:
    """A field value that is a mapping, a set or a nested list, and a json= value that
    json.dumps refuses or that holds NaN or an infinity, are a `ConfigError` naming the
    problem, before anything is sent."""
    what = "json body" if "json" in kwargs else "value for field"
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        with pytest.raises(ConfigError, match=what):
            await http.post("/echo", **kwargs)
        with pytest.raises(ConfigError, match=what):
            async with http.stream("POST", "/echo", **kwargs):
                pass


BAD_COOKIES = [
    {"c": "1; admin=1"},  # aiohttp quoted it; httpx and requests sent a second cookie
    {"c": "two words"},
    {"c": "caf\u00e9"},
    {"c": 'quo"te'},
    {"c": "back\\slash"},
    {"c": "a,b"},
    {"c": "line\r\nX-Injected: 1"},
]


@pytest.mark.parametrize("cookies", BAD_COOKIES)
async def test_invalid_cookie(
    http_server: ServerInfo, backend: str, cookies: dict[str, str]
) -> None:
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        with pytest.raises(ConfigError, match="value for cookie 'c'") as info:
            await http.get("/cookies", cookies=cookies)
        assert cookies["c"] not in str(info.value)
        with pytest.raises(ConfigError, match="value for cookie 'c'"):
            async with http.stream("GET", "/cookies", cookies=cookies):
                pass
        with pytest.raises(ConfigError, match="cookie name"):
            await http.get("/cookies", cookies={"a b": "v"})
    with pytest.raises(ConfigError, match="value for cookie 'c'"):
        HttpClient(http_server.url, backend=backend, cookies=cookies)


async def test_valid_headers_and_cookies_are_sent_as_given(
    http_server: ServerInfo, backend: str
) -> None:
    value = "visible ASCII !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~, spaces and\ttabs"
    cookie = "b64+/=!#$%&'()*-.:<=>?@[]^_`{|}~"
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        echo = (await http.get("/echo", headers={"X-Odd_Name.~!": value})).json()
        assert ["x-odd_name.~!", value] in echo["headers"]
        echo = (await http.get("/echo", headers={"X-Empty": ""})).json()
        assert ["x-empty", ""] in echo["headers"]
        assert (await http.get("/cookies", cookies={"c": cookie})).json() == {"c": cookie}


@pytest.mark.parametrize("name", ["path", "Domain", "expires", "max-age", "secure"])
async def test_cookie_named_like_an_attribute(
    http_server: ServerInfo, backend: str, name: str
) -> None:
    # aiohttp raised http.cookies.CookieError; httpx and requests sent it
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        with pytest.raises(ConfigError, match=f"cookie name '{name}'.*attribute"):
            await http.get("/cookies", cookies={name: "v"})
    with pytest.raises(ConfigError, match=f"cookie name '{name}'.*attribute"):
        HttpClient(http_server.url, backend=backend, cookies={name: "v"})


@pytest.mark.parametrize("chunk_size", [0, -1, 1.5, True])
async def test_invalid_chunk_size(http_server: ServerInfo, backend: str, chunk_size: Any) -> None:
    # 0 and -1 made a streamed body an endless run of empty chunks (a hang), and -1 a read
    # body empty; a float raised each library's own TypeError
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        async with http.stream("GET", "/bytes/1000") as r:
            with pytest.raises(ConfigError, match="chunk_size"):
                r.aiter_bytes(chunk_size)
            with pytest.raises(ConfigError, match="chunk_size"):
                r.aiter_text(chunk_size)
            assert len(await r.aread()) == 1000  # the body is still there to read
        r = await http.get("/bytes/1000")
        with pytest.raises(ConfigError, match="chunk_size"):
            r.aiter_bytes(chunk_size)
        assert [len(c) async for c in r.aiter_bytes(400)] == [400, 400, 200]


@pytest.mark.parametrize("method", ["GE T", "GET\r\nX-Injected: 1", "", "\u00e9", 5])
async def test_invalid_method(http_server: ServerInfo, backend: str, method: Any) -> None:
    # aiohttp raised a raw ValueError, httpx a raw TypeError for non-ASCII; aiohttp and
    # requests sent an empty method; an int raised AttributeError everywhere
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        for url in ("/echo", f"{http_server.url}/echo"):  # the fast path and the full one
            with pytest.raises(ConfigError, match="HTTP method"):
                await http.request(method, url)
            with pytest.raises(ConfigError, match="HTTP method"):
                async with http.stream(method, url):
                    pass
        assert (await http.request("propfind", "/echo")).json()["method"] == "PROPFIND"
