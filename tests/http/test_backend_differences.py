"""The differences between backends that docs/http.md lists as left to each library, pinned:
if a library changes, the docs (and maybe the facade) must change with it.

Each comes from a server that sends what it should not, or what no backend asked for: many
header lines, stacked or unregistered content codings, a body after a ``204``.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import pytest

from asyncify_kit.exceptions import ReadError
from asyncify_kit.http import HttpClient

from .conftest import QuietHandler, local_server

pytestmark = pytest.mark.anyio

BODY = b"hello world " * 8
CODINGS = {
    "gzip, gzip": gzip.compress(gzip.compress(BODY)),
    "x-gzip": gzip.compress(BODY),
    "identity, gzip": gzip.compress(BODY),
    "gzip": gzip.compress(BODY),
    "deflate": zlib.compress(BODY),
}


class _OddServer(QuietHandler):
    """``/headers/N``: N extra header lines; ``/coding/NAME``: `BODY` sent with that
    ``Content-Encoding``; ``/bad204``: a 204 with 4 bytes of body; anything else: ``ok``."""

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/", 1)
        if parts[0] == "headers":
            extra = b"".join(b"X-H%d: v\r\n" % i for i in range(int(parts[1])))
            self.wfile.write(b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: 2\r\n\r\nok")
        elif parts[0] == "coding":
            coding = parts[1].replace("%20", " ")
            body = CODINGS[coding]
            head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
            self.wfile.write(head % (coding.encode(), len(body)) + body)
        elif parts[0] == "bad204":
            self.wfile.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\njunk")
        else:
            self.answer(b"ok")


@pytest.fixture
def odd_url() -> Iterator[str]:
    with local_server(_OddServer) as url:  # (in a sync fixture: it blocks)
        yield url


# how many header lines each backend reads: requests (http.client) 99, aiohttp 128, httpx
# has no count (only a size)
HEADER_LINES = {"httpx": 1000, "aiohttp": 128, "requests": 99}


async def test_the_number_of_header_lines_each_backend_reads(odd_url: str, backend: str) -> None:
    limit = HEADER_LINES[backend]
    async with HttpClient(odd_url, backend=backend, retries=0) as http:
        # (+1: the Content-Length line the server adds)
        assert (await http.get(f"/headers/{limit - 1}")).text == "ok"
        if backend != "httpx":
            with pytest.raises(ReadError):
                await http.get(f"/headers/{limit}")


# the body each backend returns for a coding: decoded (BODY), left as sent, or a ReadError
DECODED = {
    "gzip": {"httpx", "aiohttp", "requests"},
    "deflate": {"httpx", "aiohttp", "requests"},
    "gzip, gzip": {"httpx", "requests"},
    "x-gzip": {"requests"},
    "identity, gzip": {"httpx"},
}


@pytest.mark.parametrize("coding", list(CODINGS))
async def test_content_codings_each_backend_decodes(
    odd_url: str, backend: str, coding: str
) -> None:
    async with HttpClient(odd_url, backend=backend, retries=0) as http:
        path = "/coding/" + coding.replace(" ", "%20")
        if coding == "identity, gzip" and backend == "requests":
            with pytest.raises(ReadError):
                await http.get(path)
            return
        content = (await http.get(path)).content
    if backend in DECODED[coding]:
        assert content == BODY
    elif coding == "identity, gzip":  # aiohttp: no registered coding, left as sent
        assert content == CODINGS[coding]
    else:
        assert content != BODY  # left encoded (aiohttp: once less, or not at all)


async def test_a_body_after_a_204_hurts_a_different_request_on_each_backend(
    odd_url: str, backend: str
) -> None:
    """aiohttp fails the 204 itself; requests drops the connection before its next request;
    httpx reads the stray bytes as the next response, whose request fails."""
    async with HttpClient(odd_url, backend=backend, retries=0, timeout=5) as http:
        if backend == "aiohttp":
            with pytest.raises(ReadError):
                await http.get("/bad204")
            assert (await http.get("/ok")).text == "ok"
            return
        assert (await http.get("/bad204")).status_code == 204
        if backend == "httpx":
            with pytest.raises(ReadError):
                await http.get("/ok")
        assert (await http.get("/ok")).text == "ok"


class _LengthHandler(QuietHandler):
    """Answers each request, with no body, with the ``Content-Length`` it came with in
    ``X-Sent-Length`` (``-`` for none)."""

    def _any(self) -> None:
        self.send_response(200)
        self.send_header("X-Sent-Length", self.headers.get("Content-Length", "-"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _any
    do_PROPFIND = _any


@pytest.fixture
def length_url() -> Iterator[str]:
    with local_server(_LengthHandler) as url:
        yield url


# the Content-Length each backend sends with a request without a body, by method
BODYLESS_LENGTHS = {
    "httpx": {"POST": "0", "PUT": "0", "PATCH": "0"},
    "aiohttp": {"POST": "0", "PUT": "0", "PATCH": "0", "DELETE": "0", "PROPFIND": "0"},
    "requests": {"POST": "0", "PUT": "0", "PATCH": "0", "DELETE": "0", "OPTIONS": "0"}
    | {"PROPFIND": "0"},
}


async def test_the_content_length_of_a_request_without_a_body(
    length_url: str, backend: str
) -> None:
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"]
    async with HttpClient(length_url, backend=backend, retries=0) as http:
        sent = {m: (await http.request(m, "/")).headers["X-Sent-Length"] for m in methods}
    assert {m: length for m, length in sent.items() if length != "-"} == BODYLESS_LENGTHS[backend]
