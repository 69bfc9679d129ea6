"""Defects a second audit of the HTTP facade found, each checked on every backend and event
loop it concerns, against real servers on loopback: streams held open on httpx, httpx's
keep-alive limit, aiohttp's own resend, the requests backend's latency on a body that is not
chunked, closing the client under a request, malformed ``Content-Length`` headers, absolute
URLs of other schemes, and the ``repr`` of a request's headers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

from asyncify_kit.exceptions import ConfigError
from asyncify_kit.http import (
    HttpClient,
    HTTPError,
    Limits,
    ReadError,
    Request,
    Response,
    Timeout,
)

from .conftest import QuietHandler, ServerInfo, local_server
from .test_audit_fixes import _CountingServer, counting_server  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio


# -- streams held open --------------------------------------------------------------------------


class _EndlessStreamHandler(QuietHandler):
    """A chunked body's first chunk, then nothing until the client closes the connection
    (an event stream that stays open)."""

    def do_GET(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        self.wfile.flush()
        self.rfile.read(1)  # until the client closes the connection
        self.close_connection = True


@pytest.fixture
def endless_url() -> Iterator[str]:
    with local_server(_EndlessStreamHandler) as url:
        yield url


# on trio, httpx's generators of a body left early warn when collected (an httpx limitation:
# see test_stream_left_early)
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (AsyncHTTP11Connection|"
    r"HTTP11ConnectionByteStream|PoolByteStream|AsyncResponseStream|BoundAsyncStream|Response)\."
    ":pytest.PytestUnraisableExceptionWarning"
)
async def test_open_streams_use_every_allowed_connection(endless_url: str, backend: str) -> None:
    """httpx counted a stream as under way only until its headers came: every open stream
    went to the first of its 4 pools (25 connections each of the 100 allowed), and the 26th
    failed with a pool timeout while 25 were open."""
    async with (
        HttpClient(endless_url, backend=backend, timeout=Timeout(5, pool=1), retries=0) as http,
        AsyncExitStack() as streams,
    ):
        for i in range(30):
            r = await streams.enter_async_context(http.stream("GET", f"/events/{i}"))
            assert r.status_code == 200
        # each still reads on its own connection
        r = await streams.enter_async_context(http.stream("GET", "/events/last"))
        assert await r.aiter_bytes().__anext__() == b"hello"


# -- httpx's keep-alive limit -------------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 3])
async def test_at_most_max_keepalive_connections_stay_open(
    counting_server: _CountingServer,  # noqa: F811 (the fixture imported above)
    backend: str,
    keep: int,
) -> None:
    """httpx gave each of its 4 pools ``max(1, max_keepalive // 4)``: 4 stayed open."""
    url = f"http://127.0.0.1:{counting_server.server_port}"
    async with HttpClient(url, backend=backend, limits=Limits(max_keepalive=keep)) as http:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(http.get, f"/{i}")
        with anyio.move_on_after(3):
            while counting_server.open > keep:  # (the server sees a close a little later)
                await anyio.sleep(0.02)
        assert counting_server.open == keep


# -- aiohttp's own resend -----------------------------------------------------------------------


class _AnswerlessHandler(QuietHandler):
    """``/warm``: a keep-alive answer; anything else is counted, then the connection is
    closed without an answer (a request processed, its answer lost)."""

    seen: list[str]

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        del body
        if self.path == "/warm":
            self.answer(b"ok")
            return
        self.seen.append(f"{self.command} {self.path}")
        self.close_connection = True

    do_GET = do_PUT = do_DELETE = _any


@pytest.fixture
def answerless() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("_Handler", (_AnswerlessHandler,), {"seen": seen})
    with local_server(handler) as url:
        yield url, seen


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_retries_0_sends_a_request_once(
    answerless: tuple[str, list[str]], backend: str, method: str
) -> None:
    """aiohttp sent an idempotent request again, once, when the server closed its reused
    keep-alive connection without an answer: ``retries=0`` or not, it charged twice."""
    url, seen = answerless
    async with HttpClient(url, backend=backend, retries=0, timeout=5) as http:
        await http.get("/warm")  # the next request goes on this keep-alive connection
        with pytest.raises(ReadError):
            await http.request(method, "/charge", json={"amount": 10})
    assert seen == [f"{method} /charge"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aiohttp_resend_is_off_on_every_session(http_server: ServerInfo) -> None:
    """The switch is private (``ClientSession._retry_connection``): if aiohttp renames it,
    this fails, and the backend must turn the resend off another way."""
    async with HttpClient(http_server.url, backend="aiohttp") as http:
        backend: Any = http._backend
        for session in (backend._session, backend._traced):
            assert session._retry_connection is False


# -- requests: a body that is not chunked, as it arrives ---------------------------------------


class _TrickleHandler(QuietHandler):
    """One NDJSON line, then (once ``go`` is set, or after 5 s) a second one; the body has a
    ``Content-Length`` (``/length``) or ends at the connection's close (``/close``)."""

    go: threading.Event

    def do_GET(self) -> None:
        lines = [b'{"n": 1}\n', b'{"n": 2}\n']
        if self.path == "/length":
            framing = b"Content-Length: %d\r\n" % sum(map(len, lines))
        else:
            framing = b"Connection: close\r\n"
            self.close_connection = True
        self.wfile.write(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n" + lines[0])
        self.wfile.flush()
        self.go.wait(5)
        self.wfile.write(lines[1])


@pytest.fixture
def trickle() -> Iterator[tuple[str, threading.Event]]:
    go = threading.Event()
    with local_server(type("_Handler", (_TrickleHandler,), {"go": go})) as url:
        yield url, go


@pytest.mark.parametrize("path", ["/length", "/close"])
@pytest.mark.parametrize("read", ["lines", "bytes"])
async def test_a_body_without_chunks_arrives_as_it_is_sent(
    trickle: tuple[str, threading.Event], backend: str, path: str, read: str
) -> None:
    """requests waited for 256 KiB or the end of the body before it gave any of it."""
    url, go = trickle
    expected: list[Any] = [b'{"n": 1}\n', b'{"n": 2}\n']
    async with (
        HttpClient(url, backend=backend, timeout=10, retries=0) as http,
        http.stream("GET", path) as r,
    ):
        chunks: Any = r.aiter_lines() if read == "lines" else r.aiter_bytes()
        if read == "lines":
            expected = ['{"n": 1}', '{"n": 2}']
        with anyio.fail_after(2):
            assert await chunks.__anext__() == expected[0]
        go.set()
        assert [chunk async for chunk in chunks] == expected[1:]


# -- closing the client under a request ---------------------------------------------------------


class _SlowAnswerHandler(QuietHandler):
    def do_GET(self) -> None:
        time.sleep(0.5)
        self.answer(b"ok")


@pytest.fixture
def slow_url() -> Iterator[str]:
    with local_server(_SlowAnswerHandler) as url:
        yield url


async def _close_under(http: HttpClient, requests: int) -> list[Response | HTTPError]:
    """The outcomes of *requests* GETs under way when *http* closes."""
    outcomes: list[Response | HTTPError] = []

    async def get() -> None:
        try:
            outcomes.append(await http.get("/slow"))
        except HTTPError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(requests):
            tg.start_soon(get)
        await anyio.sleep(0.2)
        await http.aclose()
    return outcomes


async def test_closing_the_client_under_a_request(slow_url: str, backend: str) -> None:
    """aiohttp raised a bare `TransportError` ("Connector is closed.", after resending the
    request on a connector already closed), where httpx raised `ReadError`."""
    async with HttpClient(slow_url, backend=backend, retries=0, timeout=5) as http:
        (outcome,) = await _close_under(http, 1)
    if backend == "requests":  # its thread finishes the exchange
        assert isinstance(outcome, Response) and outcome.text == "ok"
    else:
        assert type(outcome) is ReadError, repr(outcome)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aiohttp_closing_the_client_under_a_wait_for_a_connection(slow_url: str) -> None:
    """aiohttp cancelled the wait for a free connection: a raw ``CancelledError`` reached a
    caller no one had cancelled."""
    limits = Limits(max_connections=1)
    async with HttpClient(slow_url, backend="aiohttp", retries=0, limits=limits) as http:
        outcomes = await _close_under(http, 2)
    assert [type(outcome) for outcome in outcomes] == [ReadError, ReadError], outcomes


# -- malformed Content-Length -------------------------------------------------------------------

BAD_LENGTHS = {
    "/two": b"Content-Length: 2\r\nContent-Length: 3\r\n",
    "/list": b"Content-Length: 2, 3\r\n",
    "/word": b"Content-Length: abc\r\n",
    "/negative": b"Content-Length: -1\r\n",
    "/superscript": b"Content-Length: \xb2\r\n",  # "²" in Latin-1: str.isdigit takes it
}


class _BadLengthHandler(QuietHandler):
    def do_GET(self) -> None:
        head = BAD_LENGTHS.get(self.path, b"Content-Length: 3, 3\r\n")
        self.wfile.write(b"HTTP/1.1 200 OK\r\n" + head + b"\r\nxyz")
        self.close_connection = True


@pytest.fixture
def bad_length_url() -> Iterator[str]:
    with local_server(_BadLengthHandler) as url:
        yield url


@pytest.mark.parametrize("path", list(BAD_LENGTHS))
async def test_a_malformed_content_length_is_a_read_error(
    bad_length_url: str, backend: str, path: str
) -> None:
    """requests returned a 200 with the body read to the close for ``abc`` and ``-1``, and
    raised a bare `TransportError` for two lengths that differ."""
    async with HttpClient(bad_length_url, backend=backend, retries=0, timeout=5) as http:
        with pytest.raises(ReadError):
            await http.get(path)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_requests_reads_one_content_length_given_twice(bad_length_url: str) -> None:
    async with HttpClient(bad_length_url, backend="requests", retries=0, timeout=5) as http:
        assert (await http.get("/same")).content == b"xyz"


# -- absolute URLs of other schemes -------------------------------------------------------------


@pytest.mark.parametrize("url", ["ws://other.example/socket", "htp://other.example/x", "FTP://h/"])
async def test_an_absolute_url_of_another_scheme_is_refused(
    http_server: ServerInfo, backend: str, url: str
) -> None:
    """With a base_url, it was sent to the base_url's server as the path ``/ws://...``."""
    for base in (http_server.url + "/echo", None):
        async with HttpClient(base, backend=backend, retries=0) as http:
            with pytest.raises(ConfigError, match="http:// or https://"):
                await http.get(url)
            with pytest.raises(ConfigError, match="http:// or https://"):
                async with http.stream("GET", url):
                    pass
            if base is not None:  # a relative URL with "://" further on is still one
                assert (await http.get("x/a://b")).json()["path"] == "/echo/x/a://b"


# -- the repr of a request's headers ------------------------------------------------------------


def test_request_headers_repr_hides_credentials() -> None:
    headers = [("Authorization", "Bearer tok-123"), ("X-Api-Key", "k-456"), ("X-Id", "7")]
    request = Request("GET", "http://h/", headers=headers)
    assert request.headers == headers and isinstance(request.headers, list)
    for text in (repr(request.headers), str(request.headers), f"{[request.headers]}"):
        assert "tok-123" not in text and "k-456" not in text, text
        assert "('X-Id', '7')" in text
    assert Request("GET", "http://h/").headers is None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_response_request_headers_repr_hides_credentials(http_server: ServerInfo) -> None:
    """``Response.request.headers`` is a list; its repr showed a bearer token, and the Basic
    credentials made of a URL's password."""
    url = http_server.url.replace("http://", "http://ann:s3cret-pw@")
    async with HttpClient(backend="httpx", retries=0) as http:
        r = await http.get(url + "/echo", headers={"X-Api-Key": "k-456", "X-Id": "7"})
    assert r.request is not None and r.request.headers is not None
    text = repr(r.request.headers)
    assert "k-456" not in text and "YW5u" not in text and "('X-Id', '7')" in text, text
    assert ("X-Id", "7") in r.request.headers
