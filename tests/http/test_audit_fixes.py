"""Defects an audit of the HTTP facade found, each checked on every backend it concerns:
URL passwords in error messages, uploads to a server that stops reading, how a redirect
rewrites the method and body, the requests backend's connection limit, reading a streamed
body after its block, and ``None`` in ``params`` and form ``data``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import pytest

from asyncify_kit.exceptions import ConfigError
from asyncify_kit.http import HttpClient, Limits, ReadError, Timeout, TimeoutException
from asyncify_kit.http._redact import redact_text, redact_url

from .conftest import ServerInfo

pytestmark = pytest.mark.anyio


# -- URL passwords in error messages ----------------------------------------------------------

# passwords holding what ends a user info, a host or a port for urllib: "@" (it splits at the
# last one), "/", "?", "#" (not percent-encoded), ":" and a space; each part ends in "-pw"
HOSTILE_PASSWORDS = [
    "left-pw@right-pw",
    "left-pw/right-pw",
    "left-pw#right-pw",
    "left-pw?right-pw",
    "left-pw:right-pw",
    "a-pw/b-pw?c-pw#d-pw@e-pw",
    "a-pw b-pw@c-pw",
]


def _urls(password: str) -> list[str]:
    """URLs with *password* that are refused: a port out of range, or a password that urllib
    reads as a port."""
    return [
        f"http://ann:{password}@127.0.0.1:99999/x",
        f"https://ann:{password}@example.org:65536/x?page=1",
        f"http://a@b:{password}@127.0.0.1:70000/",
    ]


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_no_part_of_a_url_password_in_redacted_urls(password: str) -> None:
    for url in _urls(password):
        assert "-pw" not in redact_url(url)
        if " " not in password:  # in free text, a URL ends at a space
            assert "-pw" not in redact_text(f"GET {url!r} failed")
    assert redact_url(f"https://ann:{password}@example.org/x") == (
        "https://ann:[redacted]@example.org/x"
    )


def test_redact_url_in_doubt_redacts_to_the_last_at_sign() -> None:
    """``ann:1234/b-pw@host`` is a valid URL of host ``ann``, port 1234, or a password."""
    assert redact_url("http://ann:1234/b-pw@127.0.0.1/x") == "http://ann:[redacted]@127.0.0.1/x"
    assert redact_url("http://a@b:c-pw@h/") == "http://a@b:[redacted]@h/"


def test_redact_url_keeps_an_at_sign_after_the_host() -> None:
    assert redact_url("https://example.org/users/@me?to=a@b") == (
        "https://example.org/users/@me?to=a@b"
    )
    text = "GET https://example.org/x failed; write to admin@example.org"
    assert redact_text(text) == text


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
async def test_no_part_of_a_url_password_in_config_errors(
    http_server: ServerInfo, backend: str, password: str
) -> None:
    for url in _urls(password):
        with pytest.raises(ConfigError) as info:
            HttpClient(url, backend=backend)
        assert "-pw" not in str(info.value)
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        for url in _urls(password):
            with pytest.raises(ConfigError) as info:
                await http.get(url)
            assert "-pw" not in str(info.value)
            assert "[redacted]" in str(info.value)


# -- an upload to a server that stops reading -------------------------------------------------


@pytest.fixture
def deaf_server() -> Iterator[str]:
    """``http://127.0.0.1:<port>``: accepts connections and never reads from them."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()
        for conn in held:
            conn.close()


# on trio, httpx's ByteStream of a request body whose sending failed warns when collected
# unfinished (an httpx limitation: see test_cancellation_storm)
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object ByteStream\.__aiter__"
    ":pytest.PytestUnraisableExceptionWarning"
)
async def test_a_stalled_upload_times_out_in_the_write_phase(
    deaf_server: str, backend: str
) -> None:
    """aiohttp waited forever (its read timeout starts once the body is sent); the requests
    backend raised `ReadError`. The requests backend writes with the connect timeout."""
    timeout = Timeout(5, connect=0.5, write=0.5)
    async with HttpClient(deaf_server, backend=backend, timeout=timeout, retries=0) as http:
        started = time.monotonic()
        with anyio.fail_after(15), pytest.raises(TimeoutException) as info:
            await http.put("/upload", content=b"u" * (32 << 20))
    assert info.value.phase == "write"
    assert time.monotonic() - started < 4


# -- how a redirect rewrites the method and body ----------------------------------------------

# (method, status) -> the method of the redirect: RFC 9110 and Fetch, what browsers do
REDIRECT_METHODS = {
    **{(m, 303): "GET" for m in ("POST", "PUT", "PATCH", "DELETE")},
    **{("POST", s): "GET" for s in (301, 302)},
    **{(m, s): m for m in ("PUT", "PATCH", "DELETE") for s in (301, 302)},
    **{(m, s): m for m in ("POST", "PUT", "PATCH", "DELETE") for s in (307, 308)},
}


async def test_redirect_methods_and_bodies(http_server: ServerInfo, backend: str) -> None:
    """httpx and requests turned a PUT, PATCH or DELETE on a 302 into a body-less GET (aiohttp
    kept it); requests sent it on a 301 with an empty body; httpx and aiohttp kept the
    ``Content-Type`` of the body they dropped."""
    seen = {}
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        for method, status in REDIRECT_METHODS:
            r = await http.request(method, f"/redirect-status/{status}", json={"x": 1})
            echo = r.json()
            headers = dict(echo["headers"])
            seen[method, status] = (
                echo["method"],
                echo["body"],
                headers.get("content-type"),
                headers.get("content-length"),
            )
    expected = {
        key: (
            (kept, '{"x":1}', "application/json", "7")
            if kept == key[0]
            else ("GET", "", None, None)
        )
        for key, kept in REDIRECT_METHODS.items()
    }
    assert seen == expected


# -- the connection limit ---------------------------------------------------------------------


class _CountingServer(ThreadingHTTPServer):
    """Answers every GET after 0.2 s, over keep-alive connections it counts."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.lock = threading.Lock()
        self.open = self.most = self.opened = 0


class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _CountingServer

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.open += 1
            self.server.opened += 1
            self.server.most = max(self.server.most, self.server.open)

    def finish(self) -> None:
        with self.server.lock:
            self.server.open -= 1
        super().finish()

    def do_GET(self) -> None:
        time.sleep(0.2)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def counting_server() -> Iterator[_CountingServer]:
    server = _CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_max_connections_is_a_limit(counting_server: _CountingServer, backend: str) -> None:
    """The requests backend opened one connection per concurrent request (and kept
    ``max_connections`` of them)."""
    url = f"http://127.0.0.1:{counting_server.server_port}"
    limits = Limits(max_connections=2)
    async with (
        HttpClient(url, backend=backend, limits=limits) as http,
        anyio.create_task_group() as tg,
    ):
        for i in range(8):
            tg.start_soon(http.get, f"/{i}")
    assert counting_server.most <= 2
    assert counting_server.opened <= 2


# -- reading a streamed body after its block --------------------------------------------------


# on trio, httpx's generators of a body left early warn when collected (an httpx limitation:
# see test_stream_left_early)
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (AsyncHTTP11Connection|"
    r"HTTP11ConnectionByteStream|PoolByteStream|AsyncResponseStream|BoundAsyncStream|Response)\."
    ":pytest.PytestUnraisableExceptionWarning"
)
async def test_reading_a_body_after_its_stream_block_raises(
    http_server: ServerInfo, backend: str
) -> None:
    """requests gave an empty body, httpx raised its own ``StreamClosed``, aiohttp a
    `TransportError`."""
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        async with http.stream("GET", "/bytes/200000") as r:
            pass
        with pytest.raises(RuntimeError, match="block has ended"):
            await r.aread()
        with pytest.raises(RuntimeError, match="block has ended"):
            r.aiter_bytes()
        # an iteration begun in the block cannot go on after it either
        async with http.stream("GET", "/stream/2000000?chunk=1000") as r:
            chunks = r.aiter_bytes()
            assert await chunks.__anext__()
        with pytest.raises(RuntimeError, match="block has ended"):
            await chunks.__anext__()
        # a body read in the block stays readable
        async with http.stream("GET", "/bytes/1000") as r:
            await r.aread()
        assert len(await r.aread()) == 1000
        assert (await http.get("/ok")).text == "ok"


# -- None in params and form data -------------------------------------------------------------


async def test_none_values_are_left_out(http_server: ServerInfo, backend: str) -> None:
    """Every backend sent them as the text ``None``; requests itself leaves them out."""
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        params = {"cursor": None, "page": 2, "tag": ["a", None]}
        assert (await http.get("/echo", params=params)).json()["query"] == "page=2&tag=a"
        pairs = [("cursor", None), ("page", "2")]
        assert (await http.get("/echo", params=pairs)).json()["query"] == "page=2"
        r = await http.post("/echo", data={"cursor": None, "x": "1", "tag": [None, "b"]})
        assert r.json()["body"] == "x=1&tag=b"
        r = await http.post("/echo", data={"cursor": None, "x": "1"}, files={"f": ("f.txt", b"hi")})
        assert "cursor" not in r.json()["form"] and "None" not in r.json()["body"]


async def test_cookies_are_shared_by_requests_with_and_without_a_body(
    http_server: ServerInfo, backend: str
) -> None:
    """aiohttp sends requests with a body through a second session (with the redirect hook):
    both sessions share one cookie jar, so a cookie set by either is sent by the other."""
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        await http.get("/cookies/set", params={"by_get": "1"})
        posted = await http.post("/cookies", json={"x": 1})
        assert posted.json() == {"by_get": "1"}
        await http.post("/cookies/set?by_post=2", content=b"body")
        got = await http.get("/cookies")
        assert got.json() == {"by_get": "1", "by_post": "2"}


# -- large response headers -------------------------------------------------------------------


@pytest.mark.parametrize("size", [10_000, 40_000])
async def test_large_response_headers_are_read_by_every_backend(
    http_server: ServerInfo, backend: str, size: int
) -> None:
    """A response header and a cookie of *size* bytes each (a large token, a session cookie):
    aiohttp refused any header line above 8,190 bytes (`ReadError`), where requests reads up
    to 64 KiB and httpx 100 KiB of headers still arriving."""
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        r = await http.get(f"/big-header/{size}")
        assert r.status_code == 200
        assert r.headers["x-big"] == "h" * size
        assert r.headers["set-cookie"] == "big=" + "c" * size


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("backend", ["aiohttp", "requests"])
async def test_a_header_line_above_64_kib_is_a_read_error(
    http_server: ServerInfo, backend: str, anyio_backend: str
) -> None:
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        with pytest.raises(ReadError):
            await http.get("/big-header/70000")


# -- fragments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "final"),
    [
        ("/ok#top", "/ok#top"),
        ("/redirect/1#top", "/redirect/0#top"),  # a Location without one inherits it
        ("/goto?to=/ok%23loc#top", "/ok#loc"),  # the Location's own
    ],
)
async def test_the_response_url_keeps_the_fragment(
    http_server: ServerInfo, backend: str, path: str, final: str
) -> None:
    """httpx and requests give ``Response.url`` the fragment (RFC 9110, 10.2.2); aiohttp
    dropped it."""
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        assert (await http.get(path)).url == http_server.url + final


# -- non-ASCII response headers -------------------------------------------------------------


async def test_non_ascii_header_values_are_utf8_else_latin1(
    http_server: ServerInfo, backend: str
) -> None:
    """One value in UTF-8 and one in Latin-1, in one response: each reads "café" on every
    backend. requests gave UTF-8 as mojibake, aiohttp Latin-1 as a lone surrogate, and httpx
    decoded every value as Latin-1 as soon as one was not UTF-8."""
    async with HttpClient(http_server.url, backend=backend, retries=0) as http:
        r = await http.get("/nonascii-headers")
        assert (r.headers["x-utf8"], r.headers["x-latin1"]) == ("caf\u00e9", "caf\u00e9")


# -- informational responses ------------------------------------------------------------------


async def test_informational_responses_are_skipped(early_hints_server: str, backend: str) -> None:
    """requests (http.client) took a 103 Early Hints for the final response, with no body,
    and dropped the connection holding the real one; httpx and aiohttp skip it."""
    async with HttpClient(early_hints_server, backend=backend, retries=0) as http:
        for path in ("/first", "/second"):  # (the second on the kept-alive connection)
            r = await http.get(path)
            assert (r.status_code, r.content) == (200, path.encode())
            assert "link" not in r.headers


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_requests_skips_at_most_100_informational_responses(
    early_hints_server: str, anyio_backend: str
) -> None:
    async with HttpClient(early_hints_server, backend="requests", retries=0) as http:
        with pytest.raises(ReadError, match="more than 100 informational responses"):
            await http.get("/endless")
