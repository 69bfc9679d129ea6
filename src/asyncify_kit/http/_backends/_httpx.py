"""The default backend: `httpx.AsyncClient` (asyncio and trio)."""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from ..._offload import run_sync
from ...exceptions import ConnectError, HTTPError, ReadError, TimeoutException, TransportError
from .._models import Request, Response, Timeout
from .._redact import redact_url
from .base import (
    BackendStream,
    ClientConfig,
    HttpBackend,
    LocalhostCookies,
    TranslatingIterator,
    header_text,
    http_error,
    raw_header_items,
    redirect_method,
    redirect_url,
)

__all__ = ["HttpxBackend"]


class _RedactedRequestLog(logging.Filter):
    """httpx logs each request's URL at INFO (``HTTP Request: GET https://...``) as it is,
    with a token in its query or a password in its user info; this filter on its logger
    redacts them as the library's own errors do (`redact_url`), for every httpx client of the
    process (a record it cannot read is passed on unchanged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(arg, httpx.URL) for arg in args):
            record.args = tuple(
                redact_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in args
            )
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _RedactedRequestLog) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_RedactedRequestLog())

# the request extension that carries a request's redirect state through httpx's redirects
_REDIRECTS = "asyncify_kit.redirects"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _has_header(headers: list[tuple[str, str]] | None, name: str) -> bool:
    """Whether *headers* hold *name* (lower case)."""
    return bool(headers) and any(k.lower() == name for k, _ in headers or ())


class _InvalidLocation(httpx.TransportError):
    """A redirect to a URL httpx accepts but cannot connect to (a port above 65535)."""


class _AsyncClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` whose redirects change the method as aiohttp's and requests'
    do (`redirect_method`): httpx turns any 302 into a GET (a PUT's body lost), and kept the
    ``Content-Type`` of the body it drops."""

    def _redirect_method(self, request: httpx.Request, response: httpx.Response) -> str:
        return redirect_method(request.method, response.status_code)

    def _redirect_url(self, request: httpx.Request, response: httpx.Response) -> httpx.URL:
        """The URL of `redirect_url`, as every backend follows it (httpx sent ``|``, ``^``,
        ``[``, ``]``, a lone ``%`` and ``%2e%2e`` segments of a ``Location`` as they
        were); httpx's own reading for a value `redirect_url` leaves to it (and its error)."""
        url = super()._redirect_url(request, response)
        location = next(
            (value for name, value in response.headers.raw if name.lower() == b"location"), None
        )
        if location is None:
            return url
        target = redirect_url(header_text(location), str(request.url))
        return url if target is None else httpx.URL(target)

    def _redirect_headers(
        self, request: httpx.Request, url: httpx.URL, method: str
    ) -> httpx.Headers:
        headers = super()._redirect_headers(request, url, method)
        if method != request.method:  # httpx drops the body and its length, not its type
            headers.pop("Content-Type", None)
        return headers


@dataclass
class _RedirectState:
    """The origin of a request, the cookies given for it alone, and how far along its
    redirects it is (httpx copies a request's extensions into each redirect it builds)."""

    origin: tuple[str, str, int | None]
    cookies: dict[str, str] | None
    hops: int = 0
    left: bool = False


def _httpx_timeout(timeout: Timeout) -> httpx.Timeout:
    return httpx.Timeout(
        connect=timeout.connect, read=timeout.read, write=timeout.write, pool=timeout.pool
    )


class _HttpxStream(BackendStream):
    """A streamed body; it counts as a request under way on its client (``busy[index]``,
    see `HttpxBackend._pick`) until closed: it holds that client's connection till then."""

    def __init__(
        self,
        backend: HttpxBackend,
        response: httpx.Response,
        request: Request,
        busy: list[int],
        index: int,
    ) -> None:
        self._backend = backend
        self._response = response
        self._request = request
        self._chunks: AsyncIterator[bytes] | None = None
        self._busy: list[int] | None = busy
        self._index = index

    def aiter_chunks(self, chunk_size: int | None) -> AsyncIterator[bytes]:
        self._chunks = self._response.aiter_bytes(chunk_size)
        return TranslatingIterator(
            self._chunks,
            (httpx.HTTPError,),
            lambda exc: self._backend.translate(exc, self._request),  # type: ignore[arg-type]
        )

    async def aclose(self) -> None:
        busy, self._busy = self._busy, None
        if busy is not None:  # (at once, once: the awaits below may be cancelled)
            busy[self._index] -= 1
        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            await chunks.aclose()  # type: ignore[attr-defined]
        await self._response.aclose()


def _asyncio_transport(stream: httpcore.AsyncNetworkStream) -> asyncio.Transport | None:
    """The asyncio transport under an httpcore stream of anyio's (plain or TLS), or None
    (trio, or a version of either library that keeps it elsewhere)."""
    inner = getattr(stream, "_stream", None)  # httpcore's AnyIOStream: an anyio ByteStream
    inner = getattr(inner, "transport_stream", inner)  # anyio's TLSStream: the socket's
    transport = getattr(inner, "_transport", None)  # anyio's asyncio SocketStream
    return transport if isinstance(transport, asyncio.Transport) else None


def _socket_readable(sock: socket.socket) -> bool:
    """Whether *sock* has data or an end of stream to read (or is closed): httpcore's
    ``is_socket_readable``, what it asks a pooled connection before reusing it."""
    fd = sock.fileno()
    if fd < 0:
        return True
    if not hasattr(select, "poll"):  # pragma: no cover - Windows
        return bool(select.select([fd], [], [], 0)[0])
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


def _readable_after_failed_write(stream: httpcore.AsyncNetworkStream) -> None:
    """Let the TLS layer of *stream* read on after a write failed. anyio's and trio's TLS
    streams then refuse to read as well as to write (a record lost on the way out breaks
    writing only: TLS reads with keys and numbers of their own), so the answer a server sent
    before it closed was lost over https. httpcore only reads the answer, then closes."""
    tls = getattr(stream, "_stream", None)  # httpcore's AnyIOStream or TrioStream
    if getattr(tls, "_broken", None) is True:  # anyio's TLSStream
        tls._broken = False  # type: ignore[union-attr]
    state = getattr(tls, "_state", None)
    if type(tls).__module__.startswith("trio") and getattr(state, "name", None) == "BROKEN":
        tls._state = type(state).OK  # type: ignore[union-attr]  # trio's SSLStream


#: the most a network stream is given to write at once (see `_EarlyAnswerStream.write`)
_WRITE_SLICE = 256 * 1024


class _EarlyAnswerStream(httpcore.AsyncNetworkStream):
    """An httpcore stream that reads the answer a server sent before it had read the whole
    request body, after the write failed.

    A server may answer early (``413 Payload Too Large``, or a ``401``), then close the
    connection: the write then fails, and httpcore goes on to read the answer. But anyio
    reads from an asyncio transport only while a read is waiting, and asyncio closes the
    socket, the unread answer with it, as soon as a write fails: httpx raised `ReadError`
    where requests (and httpx on trio, over plain http) return the answer. So on asyncio
    reading is on from the first write of a request to its first read, then as anyio has it
    (on only while a read waits): what arrives meanwhile is held, at most what the server
    sends while the body is written. Over TLS, see `_readable_after_failed_write`; there it
    also writes a large body in slices of `_WRITE_SLICE` bytes (see `write`)."""

    __slots__ = ("_sliced", "_socket", "_stream", "_transport")

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._transport = transport = _asyncio_transport(stream)
        # the socket anyio's stream holds (the transport's, made once), for `get_extra_info`
        self._socket: socket.socket | None = (
            None if transport is None else transport.get_extra_info("socket")
        )
        # over TLS only: a plain socket takes a large buffer without work on the loop, and
        # in one piece a write that fails once the server has answered and closed fails
        # where the loop reads (an answer sent before the reset reaches the caller); in
        # slices, the next slice's write met the reset first, and the answer was lost
        self._sliced = stream.get_extra_info("ssl_object") is not None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return await self._stream.read(max_bytes, timeout)
        finally:
            if self._transport is not None:
                self._transport.pause_reading()  # (anyio's own state: it resumes to read)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._transport is not None:
            self._transport.resume_reading()  # (a no-op when closing or already reading)
        try:
            if not self._sliced or len(buffer) <= _WRITE_SLICE:
                await self._stream.write(buffer, timeout)
            else:
                # httpcore writes a bytes body in one piece, and a TLS stream encrypts what
                # it is given at once, on the event loop: 23 ms for 5 MB. In slices, each
                # is encrypted and handed to the socket in turn, the loop free in between
                # (a slice waits, as any write, while much of the last is still unsent).
                view = memoryview(buffer)
                for start in range(0, len(view), _WRITE_SLICE):
                    await self._stream.write(bytes(view[start : start + _WRITE_SLICE]), timeout)
        except httpcore.WriteError:
            _readable_after_failed_write(self._stream)
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _EarlyAnswerStream(stream)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            # what httpcore asks of a pooled connection twice a request (is it closed?):
            # its anyio stream builds a table of every attribute to answer, 15 us of the
            # loop each time here, 3% of a GET; the socket's own answer takes 1.7 us
            return _socket_readable(self._socket)
        return self._stream.get_extra_info(info)


class _Closing:
    """Whether the backend whose pools share this is closed (`_EarlyAnswerBackend`)."""

    __slots__ = ("closed",)

    def __init__(self) -> None:
        self.closed = False


class _EarlyAnswerBackend(httpcore.AsyncNetworkBackend):
    """The network backend of an httpcore pool, its streams wrapped in `_EarlyAnswerStream`.

    It opens no connection once the client is closed (*closing*): httpcore's ``aclose``
    closes the connections the pool has, and a request still waiting for a free one was
    given a new one when the last request under way ended, then sent, after the close. Now
    it fails at once, with the `ReadError` of the requests the close broke.
    """

    __slots__ = ("_backend", "_closing")

    def __init__(self, backend: httpcore.AsyncNetworkBackend, closing: _Closing) -> None:
        self._backend = backend
        self._closing = closing

    def _check_open(self) -> None:
        if self._closing.closed:
            raise httpcore.ReadError("the client was closed")

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._check_open()
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _EarlyAnswerStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._check_open()
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return _EarlyAnswerStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _read_early_answers(client: httpx.AsyncClient, closing: _Closing) -> None:
    """Wrap the network backend of each connection pool of *client* (its own, and those of
    the proxies it mounted) in `_EarlyAnswerBackend`, closed with *closing*. A pool kept
    elsewhere by a later httpx is left as it is."""
    mounts: dict[Any, Any] = getattr(client, "_mounts", {})
    transports = [getattr(client, "_transport", None), *mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.AsyncNetworkBackend) and not isinstance(
            backend, _EarlyAnswerBackend
        ):
            pool._network_backend = _EarlyAnswerBackend(backend, closing)  # type: ignore[union-attr]


def shard_count(max_connections: int, max_keepalive: int | None = None) -> int:
    """How many `httpx.AsyncClient` pools share *max_connections* (one per 25, at most 8),
    and no more than *max_keepalive*: each pool keeps at least one connection for reuse
    (one that kept none would open a connection for every request it takes)."""
    shards = max(1, min(8, max_connections // 25))
    if max_keepalive is not None:
        shards = max(1, min(shards, max_keepalive))
    return shards


def split(total: int, parts: int) -> list[int]:
    """*total* shared out among *parts*, the remainder one each to the first.

    >>> split(20, 8), split(3, 2)
    ([3, 3, 3, 3, 2, 2, 2, 2], [2, 1])
    """
    share, rest = divmod(total, parts)
    return [share + (i < rest) for i in range(parts)]


class HttpxBackend(HttpBackend):
    """`HttpClient` over `httpx.AsyncClient`; every timeout phase is enforced.

    httpcore's connection pool does work proportional to (open connections x waiting
    requests) on every request event, so one pool of 200 connections under 200 concurrent
    requests spends most of its time scheduling. The backend therefore spreads requests
    over a few clients (one per 25 allowed connections, at most 8, and at most
    ``max_keepalive``: `shard_count`), which share one cookie jar and one TLS context and
    split the connection limits between them. Each request goes to the client with the
    fewest requests under way (the first of those), a streamed one counted until its stream
    is closed: one at a time, they all go to the first client and its one connection
    (round-robin over 8 clients cost one request at a time 1.2-2.6% more than one client, in
    three ad hoc runs of 21 rounds).
    """

    name = "httpx"
    trio = True

    def __init__(self, config: ClientConfig) -> None:
        super().__init__(config)
        self._clients: list[httpx.AsyncClient] = []
        self._busy: list[int] = []  # requests under way on each client (see `_pick`)
        self._jar = httpx.Cookies()  # the one jar every client shares, set by aopen()
        self._closing = _Closing()  # the clients' pools open no connection once set
        # credentials of the client: its requests need the redirect state of _build
        self._credentials = _has_header(config.headers, "authorization") or _has_header(
            config.headers, "proxy-authorization"
        )

    def _make_clients(self) -> list[httpx.AsyncClient]:
        config = self.config
        limits = config.limits
        keepalive = min(limits.max_keepalive, limits.max_connections)
        shards = shard_count(limits.max_connections, keepalive)
        # each limit shared out whole (`split`): `max(1, max_keepalive // shards)` a pool
        # kept 4 connections with max_keepalive=1 or 3, and `110 // 4` lost 2 of 110
        ssl_context = config.ssl_context
        if ssl_context is None:  # verify=False
            ssl_context = httpx.create_ssl_context(verify=False)
        clients: list[httpx.AsyncClient] = [
            _AsyncClient(
                headers=config.headers,
                cookies=config.cookies,
                timeout=_httpx_timeout(config.timeout),
                limits=httpx.Limits(
                    max_connections=connections,
                    max_keepalive_connections=keep,
                    keepalive_expiry=limits.keepalive_expiry,
                ),
                follow_redirects=config.follow_redirects,
                max_redirects=config.max_redirects,
                verify=ssl_context,
                # no proxy, netrc or SSL settings read from the environment, as on the other
                # backends: only the client's own `proxy`
                proxy=config.proxy,
                trust_env=False,
                event_hooks={"request": [self._on_request]},
            )
            for connections, keep in zip(
                split(limits.max_connections, shards), split(keepalive, shards), strict=True
            )
        ]
        jar = LocalhostCookies()
        for cookie in clients[0].cookies.jar:  # the client's own cookies (config.cookies)
            jar.set_cookie(cookie)
        for client in clients:
            client.cookies.jar = jar  # one cookie jar for the whole HttpClient
        for client in clients:
            _read_early_answers(client, self._closing)
        self._jar = clients[0].cookies
        return clients

    async def aopen(self) -> None:
        self._closing = _Closing()
        # building a client loads the CA bundle from disk: a blocking call, so in a thread
        clients = await run_sync(self._make_clients)
        self._clients, self._busy = clients, [0] * len(clients)

    async def aclose(self) -> None:
        # set first: the close ends the requests under way, handing their places on
        self._closing.closed = True
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()

    def translate(self, exc: httpx.HTTPError, request: Request) -> HTTPError:
        """The facade error for an httpx exception."""
        secrets = self.config.secrets
        if isinstance(exc, httpx.ConnectTimeout):
            return http_error(
                TimeoutException, "connect timeout", request, exc, secrets, phase="connect"
            )
        if isinstance(exc, httpx.ReadTimeout):
            return http_error(TimeoutException, "read timeout", request, exc, secrets, phase="read")
        if isinstance(exc, httpx.WriteTimeout):
            return http_error(
                TimeoutException, "write timeout", request, exc, secrets, phase="write"
            )
        if isinstance(exc, httpx.PoolTimeout):
            return http_error(TimeoutException, "pool timeout", request, exc, secrets, phase="pool")
        if isinstance(exc, (httpx.ConnectError, httpx.ProxyError)):
            # (ProxyError: the proxy refused the CONNECT tunnel, "407 Proxy Authentication...")
            return http_error(ConnectError, "connection failed", request, exc, secrets)
        if isinstance(exc, _InvalidLocation) or (
            isinstance(exc, httpx.RemoteProtocolError)
            and str(exc).startswith("Invalid URL in location header")
        ):
            # the server's Location cannot be followed: TransportError, as on aiohttp
            return http_error(TransportError, "transport error", request, exc, secrets)
        if isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError, httpx.DecodingError)):
            return http_error(ReadError, "connection broken while reading", request, exc, secrets)
        if isinstance(exc, httpx.TooManyRedirects):
            return http_error(TransportError, "too many redirects", request, exc, secrets)
        return http_error(TransportError, "transport error", request, exc, secrets)

    async def _on_request(self, request: httpx.Request) -> None:
        """Give each redirect of a request what aiohttp and requests give it: the request's
        own cookies while the redirects stay on its origin (httpx builds a redirect's
        ``Cookie`` header from the client's jar alone), and no ``Proxy-Authorization`` from
        the first redirect to another origin on (httpx drops only ``Authorization``). A
        redirect to a port above 65535 fails here, as a `TransportError`, not deep in the
        connection code (a raw ``ExceptionGroup`` on asyncio). A redirect to a URL with user
        info goes to that URL without it (httpx sends no credentials from it, but kept it in
        the URL: in ``Response.url`` and in the log line of each request)."""
        if request.url.userinfo:  # the request's own URL has none: this is a redirect's
            request.url = request.url.copy_with(userinfo=b"")
        port = request.url.port  # the request's own URL was checked: this is a redirect's
        if port is not None and port > 65535:
            raise _InvalidLocation(
                f"Invalid URL in location header: port {port} out of range 0-65535",
                request=request,
            )
        state: _RedirectState | None = request.extensions.get(_REDIRECTS)
        if state is None or state.left:
            return
        state.hops += 1
        if state.hops == 1:
            return  # the request itself: _build set its Cookie header
        if _origin(request.url) != state.origin:
            state.left = True  # for good: the later hops copy this one's headers
            request.headers.pop("Proxy-Authorization", None)
            request.headers.pop("Authorization", None)  # httpx keeps it from http to https
            return
        if state.cookies:
            self._set_cookie_header(request, state.cookies)

    def _set_cookie_header(self, request: httpx.Request, cookies: dict[str, str]) -> None:
        """The ``Cookie`` header of *request*: the jar's cookies for its URL, those named in
        *cookies* replaced by them (httpx's own merge sends both, the jar's value first)."""
        merged = httpx.Cookies(self._jar)
        for name in cookies:
            merged.delete(name)
        merged.update(cookies)
        request.headers.pop("Cookie", None)
        merged.set_cookie_header(request)

    def _pick(self) -> tuple[httpx.AsyncClient, list[int], int]:
        """The client with the fewest requests under way (streams still open included), the
        list that counts them and its index there (the caller counts its request in and
        out)."""
        clients = self._clients
        if not clients:
            raise RuntimeError("the httpx backend is not open; use `async with HttpClient()`")
        busy = self._busy
        index = busy.index(min(busy))
        return clients[index], busy, index

    def _build(self, client: httpx.AsyncClient, request: Request) -> httpx.Request:
        extensions: dict[str, Any] = {}
        if request.timeout is not None:
            extensions["timeout"] = _httpx_timeout(request.timeout).as_dict()
        own = request.cookies
        built = client.build_request(
            request.method,
            request.url,
            headers=request.headers,
            content=request.content,
            extensions=extensions or None,
        )
        if own:
            self._set_cookie_header(built, own)
        if own or "authorization" in built.headers or "proxy-authorization" in built.headers:
            built.extensions[_REDIRECTS] = _RedirectState(_origin(built.url), own)
        return built

    def _response(
        self,
        r: httpx.Response,
        request: Request,
        started: float,
        content: bytes | None,
        stream: BackendStream | None = None,
    ) -> Response:
        return Response.from_backend(
            r.status_code,
            # as received (`multi_items()` lowers the names, and decodes the values of a
            # response all as UTF-8, or all as Latin-1 when one of them is not UTF-8)
            lambda: raw_header_items(r.headers.raw),
            content,
            str(r.url),
            request,
            time.perf_counter() - started,
            r.reason_phrase,
            stream,
        )

    async def send(self, request: Request) -> Response:
        client, busy, index = self._pick()
        started = time.perf_counter()
        follow = (
            self.config.follow_redirects
            if request.follow_redirects is None
            else (request.follow_redirects)
        )
        busy[index] += 1
        try:
            # the fast path sets no redirect state: only for a request without credentials
            if (
                request.cookies is None
                and request.timeout is None
                and not self._credentials
                and not _has_header(request.headers, "authorization")
                and not _has_header(request.headers, "proxy-authorization")
            ):
                r = await client.request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    content=request.content,
                    follow_redirects=follow,
                )
            else:
                r = await client.send(self._build(client, request), follow_redirects=follow)
        except httpx.HTTPError as exc:
            raise self.translate(exc, request) from exc
        finally:
            busy[index] -= 1
        return self._response(r, request, started, r.content)

    async def send_stream(self, request: Request) -> Response:
        client, busy, index = self._pick()
        started = time.perf_counter()
        # counted until the stream is closed (`_HttpxStream.aclose`), not only until the
        # answer's head: an open stream holds its connection, and counted idle, every stream
        # went to the first client, which refused the 26th of 100 allowed (a pool timeout)
        busy[index] += 1
        try:
            r = await client.send(
                self._build(client, request), stream=True, follow_redirects=self.follow_for(request)
            )
        except httpx.HTTPError as exc:
            busy[index] -= 1
            raise self.translate(exc, request) from exc
        except BaseException:  # (cancelled)
            busy[index] -= 1
            raise
        stream = _HttpxStream(self, r, request, busy, index)
        return self._response(r, request, started, None, stream)
