"""How a response's body becomes text and JSON, on every backend, against a real server on
loopback: the charset a server declares for JSON, `Response.encoding` set by the caller (the
fix requests users know for a page sent without its charset), the error of a body that is
not JSON, and the exceptions the requests migration guide maps requests' clauses to."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from asyncify_kit.exceptions import ConfigError
from asyncify_kit.http import (
    HttpClient,
    HTTPError,
    Response,
    Timeout,
    TimeoutException,
    TransportError,
)

from .conftest import QuietHandler, local_server

pytestmark = pytest.mark.anyio

PAGE = "café crème"


class _LegacyHandler(QuietHandler):
    """``/geo``: JSON in ISO-8859-1, declared so; ``/page``: a Latin-1 ``text/html`` page
    without a charset; ``/json-utf16``: JSON in UTF-16 without a charset; ``/broken``: JSON
    that is not UTF-8, without a charset; ``/html``: an HTML page (a proxy's error page)."""

    def do_GET(self) -> None:
        content_type, body = {
            "/geo": (
                "application/json; charset=iso-8859-1",
                '{"city": "Zürich"}'.encode("iso-8859-1"),
            ),
            "/page": ("text/html", PAGE.encode("latin-1")),
            "/json-utf16": ("application/json", '{"city": "Zürich ☃"}'.encode("utf-16")),
            "/broken": ("application/json", b'{"city": "Z\xfcrich"}'),
            "/html": ("text/html", b"<html>maintenance</html>"),
        }[self.path]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def legacy_url() -> Iterator[str]:
    with local_server(_LegacyHandler) as url:
        yield url


def _client(url: str, backend: str) -> HttpClient:
    return HttpClient(url, backend=backend, timeout=5, retries=0)


async def test_json_decoded_with_the_declared_charset(legacy_url: str, backend: str) -> None:
    """``application/json; charset=iso-8859-1`` is read in that charset, as by requests (the
    bytes went to json.loads, which raised UnicodeDecodeError on the ü)."""
    async with _client(legacy_url, backend) as http:
        r = await http.get("/geo")
        assert r.encoding == "iso-8859-1"
        assert r.text == '{"city": "Zürich"}'
        assert r.json() == {"city": "Zürich"}
        utf16 = await http.get("/json-utf16")  # no charset: UTF-16 told from the bytes
        assert utf16.json() == {"city": "Zürich ☃"}


async def test_json_of_a_body_not_json_is_a_json_decode_error(
    legacy_url: str, backend: str
) -> None:
    """A body that is not JSON, or not UTF-8 when no charset says otherwise, raises
    `json.JSONDecodeError` (a `ValueError`): for the second a bare UnicodeDecodeError escaped
    the ``except json.JSONDecodeError`` written for the first."""
    async with _client(legacy_url, backend) as http:
        html = await http.get("/html")
        with pytest.raises(json.JSONDecodeError):
            html.json()
        broken = await http.get("/broken")
        with pytest.raises(json.JSONDecodeError) as info:
            broken.json()
        assert isinstance(info.value.__cause__, UnicodeDecodeError)
        assert info.value.pos == len('{"city": "Z')  # the first byte that is not UTF-8
        broken.encoding = "iso-8859-1"  # what the server meant
        assert broken.json() == {"city": "Zürich"}


async def test_encoding_set_by_the_caller(legacy_url: str, backend: str) -> None:
    """requests' fix for a page without its charset, ``r.encoding = "iso-8859-1"``, works
    (it raised AttributeError): for `text` even after a first read, and for `aiter_text`."""
    async with _client(legacy_url, backend) as http:
        r = await http.get("/page")
        assert (r.encoding, r.text) == ("utf-8", "caf\ufffd cr\ufffdme")  # the default: UTF-8
        r.encoding = "iso-8859-1"
        assert (r.encoding, r.text) == ("iso-8859-1", PAGE)
        async with http.stream("GET", "/page") as streamed:
            streamed.encoding = "latin-1"
            assert "".join([text async for text in streamed.aiter_text(3)]) == PAGE


@pytest.mark.parametrize("name", ["hex", "base64", "rot13", "no-such-codec", "", None, b"utf-8"])
def test_encoding_refuses_what_cannot_decode_text(name: object) -> None:
    """A name bytes cannot be decoded to text with is a `ConfigError` at once, not a
    LookupError at the next `text`; the encoding stays as it was."""
    r = Response(200, content=b"ok", headers={"content-type": "text/plain; charset=utf-16"})
    with pytest.raises(ConfigError, match="invalid encoding"):
        r.encoding = name  # type: ignore[assignment]
    assert r.encoding == "utf-16"


def test_declared_charset_of_bytes_to_bytes_codec_is_ignored() -> None:
    """``charset=hex`` (a codec Python has, but not of text) is ignored as an unknown one is:
    `text` raised LookupError."""
    r = Response(200, content=b"ok", headers={"content-type": "text/plain; charset=hex"})
    assert (r.encoding, r.text) == ("utf-8", "ok")


@pytest.mark.parametrize("codec", ["utf-8", "utf-16", "utf-16-le", "utf-32"])
def test_json_with_a_byte_order_mark(codec: str) -> None:
    """A body that starts with a byte order mark parses, with its charset declared or not:
    decoding with the declared charset keeps the mark, which json.loads refuses in text."""
    text = '{"x": "é☃"}'
    # Python's utf-16 and utf-32 codecs write a mark of their own; the others none
    body = text.encode(codec) if codec in ("utf-16", "utf-32") else f"\ufeff{text}".encode(codec)
    declared = {"content-type": f"application/json; charset={codec}"}
    assert Response(200, content=body).json() == {"x": "é☃"}
    assert Response(200, content=body, headers=declared).json() == {"x": "é☃"}


# -- the guide's mapping of requests' except clauses (docs/migrate/requests.md) -----------------


async def test_request_exception_clause(legacy_url: str, backend: str) -> None:
    """``except requests.RequestException`` maps to ``except (HTTPError, ValueError)``: the
    second catches `json()` of an HTML page (requests.JSONDecodeError) and a URL without a
    scheme (`ConfigError`; requests' MissingSchema)."""
    async with HttpClient(backend=backend, timeout=5, retries=0) as http:  # no base_url
        for url in (f"{legacy_url}/html", "127.0.0.1/rates"):
            with pytest.raises((HTTPError, ValueError)) as info:
                (await http.get(url)).json()
            assert not isinstance(info.value, HTTPError)


async def test_connection_error_clause(backend: str) -> None:
    """requests' ConnectTimeout is a ConnectionError; here a connect timeout is a
    `TimeoutException` of phase "connect", not a `TransportError`: the guide's clause for
    ``except requests.ConnectionError`` names both."""
    server = socket.socket()
    fill: list[socket.socket] = []
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(3):  # a full accept queue: new connection attempts are dropped
            fill.append(socket.socket())
            fill[-1].setblocking(False)
            fill[-1].connect_ex(("127.0.0.1", port))
        url = f"http://127.0.0.1:{port}"
        timeout = Timeout(5, connect=0.3)
        async with HttpClient(url, backend=backend, timeout=timeout, retries=0) as http:
            started = time.monotonic()
            with pytest.raises((TransportError, TimeoutException)) as info:
                await http.get("/x")
            assert time.monotonic() - started < 2.5
        assert isinstance(info.value, TimeoutException)
        assert not isinstance(info.value, TransportError)
        assert info.value.phase == "connect"
    finally:
        for sock in [*fill, server]:
            sock.close()
