"""The fast backend: `aiohttp.ClientSession` (asyncio only).

aiohttp has no write timeout (its ``sock_read`` starts once the body is sent): the backend
writes a body of more than 64 KiB itself, piece by piece, each within the write timeout.
Cookies are accepted from IP-address hosts too (``CookieJar(unsafe=True)``),
as the other backends do, and sent as set: the caller's never wrapped in double quotes
(``quote_cookie=False``), a server's as the server wrote them (`_CookieJar`). Response
header lines of up to 64 KiB are read, as requests reads them. aiohttp's automatic
``Content-Type: application/octet-stream`` is off: a request carries the ``Content-Type``
the facade or the caller set, or none.
"""

from __future__ import annotations

import asyncio
import itertools
import select
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping
from contextvars import ContextVar
from http.cookies import Morsel
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aiohttp.payload
import yarl
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict, CIMultiDictProxy

from ..._errors import causes
from ...exceptions import (
    ConnectError,
    HTTPError,
    ReadError,
    TimeoutException,
    TransportError,
    Unsupported,
)
from .._models import Request, Response, Timeout
from .._redact import redact_url
from .base import (
    BODY_HEADERS,
    BackendStream,
    ClientConfig,
    HttpBackend,
    TranslatingIterator,
    current_event_loop,
    header_text,
    http_error,
    raw_header_items,
    redirect_method,
    redirect_url,
    without_userinfo,
)

__all__ = ["AiohttpBackend"]

# a body above this size is written in pieces, each within the write timeout (aiohttp's
# stream writer waits for the transport to drain only past 64 KiB: a smaller body never waits)
_TIMED_BODY = 1 << 16
#: each piece of a body above `_TIMED_BODY` is written within the write timeout: pieces of
#: 64 KiB, each under its own `asyncio.wait_for`, made an 8 MiB upload 1.3x slower than
#: plain aiohttp's (ad hoc A/B, 9 interleaved rounds); 256 KiB under one rescheduled
#: deadline, about as fast
_WRITE_PIECE = 1 << 18


class _WriteTimeout(asyncio.TimeoutError):
    """A piece of a request body was not written within the write timeout."""


#: set on the cancellation that ends a wait for a free connection (`_Connector`)
_POOL_WAIT = "_asyncify_kit_pool_wait"

#: the message of aiohttp's ``ClientConnectionError`` for a request the client's close ended
#: before it had a connection (see `_Connector`)
_CONNECTOR_CLOSED = "Connector is closed."


class _Connector(aiohttp.TCPConnector):
    """aiohttp raises the same ``ConnectionTimeoutError`` when its ``connect`` timeout ends a
    wait for a free connection (the pool) and when it ends a connection attempt: the
    cancellation that ends such a wait is marked (`_POOL_WAIT`), for `_pool_timed_out`.

    It also keeps every connection given back idle (until ``keepalive_timeout``): one given
    back while *max_keepalive* others are idle is closed instead, as httpx does. And a
    request still waiting for a free connection when the client closes fails with
    `_CONNECTOR_CLOSED`, as one whose connection is being made does: aiohttp cancelled its
    wait, and a raw ``CancelledError`` reached a caller no one had cancelled."""

    def __init__(self, *, max_keepalive: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_keepalive = max_keepalive

    if hasattr(aiohttp.TCPConnector, "_release"):  # (a private method, and attribute)

        def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
            idle = getattr(self, "_conns", None)
            if not should_close and idle is not None:
                should_close = sum(map(len, idle.values())) >= self._max_keepalive
            super()._release(key, protocol, should_close=should_close)

    if hasattr(aiohttp.TCPConnector, "_close"):  # (a private method, and attribute)

        def _close(self, *args: Any, **kwargs: Any) -> Any:
            waiters: dict[Any, Any] = getattr(self, "_waiters", {})
            if not self.closed and not self._loop.is_closed():
                for keyed in waiters.values():
                    for waiter in keyed:
                        if not waiter.done():  # (done: its wait is over; aiohttp cancels it)
                            waiter.set_exception(aiohttp.ClientConnectionError(_CONNECTOR_CLOSED))
            return super()._close(*args, **kwargs)

    if hasattr(aiohttp.TCPConnector, "_wait_for_available_connection"):  # (a private method)

        async def _wait_for_available_connection(self, *args: Any, **kwargs: Any) -> None:
            try:
                await super()._wait_for_available_connection(*args, **kwargs)
            except asyncio.CancelledError as exc:
                setattr(exc, _POOL_WAIT, True)
                raise


def _morsel(name: str, value: str, coded_value: str) -> Morsel[str]:
    """A cookie to send: its name and value only (``coded_value`` is what goes out)."""
    morsel: Morsel[str] = Morsel()
    # as aiohttp does: `Morsel.set` would check the name again
    morsel.__setstate__({"key": name, "value": value, "coded_value": coded_value})  # type: ignore[attr-defined]
    return morsel


def _caller_cookies(cookies: Mapping[str, str]) -> dict[str, Morsel[str]]:
    """The caller's cookies for the jar, each to be sent as given (`_CookieJar`)."""
    return {name: _morsel(name, value, value) for name, value in cookies.items()}


class _CookieJar(aiohttp.CookieJar):
    """Every cookie sent as it was set: the caller's as given, never in double quotes
    (``quote_cookie=False``: aiohttp would quote a base64 value), and a server's as the
    server wrote it, double quotes included, as httpx and requests send it (aiohttp sent
    ``q=abc==`` for ``Set-Cookie: q="abc=="``). The jar holds the caller's cookies with the
    value as their coded value (`_caller_cookies`, which a value never starts with a double
    quote in: the facade refuses one), so a coded value in double quotes is a server's."""

    def __init__(self) -> None:
        super().__init__(unsafe=True, quote_cookie=False)

    @classmethod
    def _parse_date(cls, date_str: str) -> int | None:  # (a private hook)
        """The time *date_str* names; the epoch as 1 s past it: aiohttp took its 0 for no
        date, and kept a cookie set to expire then (Express's ``clearCookie``: a logout)
        for the session, where httpx and requests remove it."""
        when: int | None = super()._parse_date(date_str)
        return 1 if when == 0 else when

    def _build_morsel(self, cookie: Morsel[str]) -> Morsel[str]:  # (a private hook)
        if cookie.coded_value[:1] == '"':
            return _morsel(cookie.key, cookie.value, cookie.coded_value)
        built: Morsel[str] = super()._build_morsel(cookie)
        return built


def _with_fragment(url: str, request_url: str, history: tuple[aiohttp.ClientResponse, ...]) -> str:
    """The final *url* with the fragment httpx and requests give it, which aiohttp drops:
    the last one a redirect's ``Location`` had, else the request's (a redirect to a URL
    without one inherits it: RFC 9110, 10.2.2)."""
    fragment = request_url.partition("#")[2] if "#" in request_url else None
    for hop in history:
        location = hop.headers.get("Location", "")
        if "#" in location:
            fragment = location.partition("#")[2]
    if fragment is None or "#" in url:
        return url
    return f"{url}#{fragment}"


def _pool_timed_out(exc: BaseException) -> bool:
    """Whether a ``ConnectionTimeoutError`` ended a wait for a free connection: the timeout
    that aiohttp raises from (or while handling) the cancellation `_Connector` marked."""
    # (the three exceptions under the timeout: the cancellation is among them)
    return any(getattr(cause, _POOL_WAIT, False) for cause in itertools.islice(causes(exc), 1, 4))


def _client_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
    connect = timeout.connect
    if connect is not None and timeout.pool is not None:
        acquire: float | None = connect + timeout.pool
    else:
        acquire = None
    return aiohttp.ClientTimeout(
        total=None, connect=acquire, sock_connect=connect, sock_read=timeout.read
    )


class _BodyPayload(aiohttp.payload.BytesPayload):
    """A body written in 256 KiB pieces, each within *write_timeout* seconds (if not None),
    else a `_WriteTimeout`: aiohttp would wait forever for a server that stops reading the
    body.

    A write cancelled part way (its caller cancelled, or aiohttp ending it because the
    answer came first: a ``413`` to an upload the server refuses) aborts the connection:
    aiohttp would close it gracefully, and the transport would hold it open, the rest of
    the piece still to send, until the server reads it or resets, past the client's own
    close if the server does neither."""

    def __init__(self, value: bytes, write_timeout: float | None) -> None:
        # aiohttp warns that a large bytes body "might lock the event loop"; handing the
        # bytes to the transport is one copy, so say it once here, without the warning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            super().__init__(value)
        self._write_timeout = write_timeout

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        view = memoryview(self._value)
        if content_length is not None:
            view = view[:content_length]
        seconds = self._write_timeout
        pieces = (view[start : start + _WRITE_PIECE] for start in range(0, len(view), _WRITE_PIECE))
        answered = _Answered(writer)
        try:
            if seconds is None:
                for piece in pieces:
                    await answered.let_in()
                    await writer.write(piece)
            else:
                await self._write_timed(writer, pieces, seconds, answered)
        except asyncio.CancelledError:
            _abort(writer)
            raise

    async def _write_timed(
        self,
        writer: AbstractStreamWriter,
        pieces: Iterator[memoryview],
        seconds: float,
        answered: _Answered,
    ) -> None:
        if sys.version_info >= (3, 11):
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(seconds) as deadline:
                    for piece in pieces:
                        await answered.let_in()
                        await writer.write(piece)
                        deadline.reschedule(loop.time() + seconds)
            except TimeoutError as exc:
                if not deadline.expired():
                    raise
                self._timed_out(writer, exc)
        else:  # (3.10: no asyncio.timeout)
            for piece in pieces:
                await answered.let_in()
                try:
                    await asyncio.wait_for(writer.write(piece), seconds)
                except asyncio.TimeoutError as exc:
                    self._timed_out(writer, exc)

    def _timed_out(self, writer: AbstractStreamWriter, exc: BaseException) -> NoReturn:
        _abort(writer)  # closed, the transport would wait for its buffer to drain: for good
        raise _WriteTimeout(
            f"no piece of the request body written in {self._write_timeout} s"
        ) from exc


class _Answered:
    """Lets an answer the server sent while the body is written reach aiohttp first.

    A server may answer before it has read the whole body (a ``413`` to an upload it
    refuses), then close the connection at once, which resets it: the next write fails,
    and asyncio then closes the socket with the answer unread. That happened when the event
    loop ran the body's next write before the read it had queued for the same wake-up. So
    before each piece, when the socket has something to read, the writer steps back for the
    loop's read (twice at most: a paused reader would never take it). That narrows the
    race, and `_read_before_reset` closes it: the answer and the reset may also arrive
    between that check and the transport's write (9 of 2,000 POSTs, with three processes
    spinning on the two cores)."""

    __slots__ = ("_poll",)

    def __init__(self, writer: AbstractStreamWriter) -> None:
        self._poll: select.poll | None = None
        transport: asyncio.Transport | None = getattr(writer, "transport", None)
        if transport is None or not hasattr(select, "poll"):
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)
            if transport.get_extra_info("ssl_object") is None:  # (TLS: records, not data)
                _read_before_reset(transport.get_protocol(), sock)

    async def let_in(self) -> None:
        poll = self._poll
        if poll is None:
            return
        for _ in range(2):
            if not poll.poll(0):
                return
            await asyncio.sleep(0)


def _read_before_reset(protocol: asyncio.BaseProtocol, sock: Any) -> None:
    """Have *protocol* (aiohttp's, of a plain TCP connection) read what is left on its
    socket *sock* before it learns that a write was reset.

    asyncio ends a connection whose write fails (``ECONNRESET``, ``EPIPE``) at once, and
    closes the socket after `connection_lost`: an answer that arrived with the reset was
    never read. The socket still holds it, so the replaced `connection_lost` hands it to
    aiohttp first (``data_received``), then goes on as aiohttp's own. It is set on this
    connection's protocol for the connection's life (a reset may come while the last
    piece still waits in the transport's buffer), and removes itself when called."""
    attributes = getattr(protocol, "__dict__", None)
    if attributes is None or "connection_lost" in attributes:  # (or set before, on this one)
        return
    lost = protocol.connection_lost

    def connection_lost(exc: Exception | None) -> None:
        del protocol.connection_lost  # (aiohttp's own again; and no reference cycle left)
        try:
            if isinstance(exc, (ConnectionResetError, BrokenPipeError)) and isinstance(
                protocol, asyncio.Protocol
            ):
                for data in _unread(sock):
                    protocol.data_received(data)
        finally:  # (whatever the data did to aiohttp's parser, its waiters learn of the end)
            lost(exc)

    protocol.connection_lost = connection_lost  # type: ignore[method-assign]


def _unread(sock: Any) -> Iterator[bytes]:
    """What a reset connection's socket *sock* (non-blocking, still open) holds unread:
    nothing more arrives after a reset, so this ends with the received data."""
    try:
        copy = sock.dup()
    except (OSError, AttributeError):
        return
    with copy:
        copy.setblocking(False)
        while True:
            try:
                data = copy.recv(1 << 16)
            except OSError:  # (BlockingIOError: all read; or the reset itself)
                return
            if not data:
                return
            yield data


def _yarl_url(url: str) -> str | yarl.URL:
    """*url*, as the facade encoded it (see ``_canonical_url``), for aiohttp to send as it
    is: yarl decodes the escapes of characters it allows in a query (``%2F`` to ``/``,
    ``%27`` to ``'``), which httpx and requests send escaped. An ASCII URL is taken as
    encoded; one with a non-ASCII host (the rest is ASCII) is left to yarl, which encodes
    the host (IDNA)."""
    if "%" not in url or not url.isascii():
        return url
    return yarl.URL(url, encoded=True)


def _abort(writer: AbstractStreamWriter) -> None:
    """Drop the connection of *writer* at once, the rest of its buffer unsent."""
    transport = getattr(writer, "transport", None)
    if transport is not None:
        transport.abort()


def _payload(
    content: bytes | None, write_timeout: float | None
) -> aiohttp.payload.Payload | bytes | None:
    if content is None or len(content) <= _TIMED_BODY:
        return content
    return _BodyPayload(content, write_timeout)


def _has_content_type(headers: Any) -> bool:
    """Whether *headers* (pairs, a mapping or None) name a Content-Type."""
    if not headers:
        return False
    names = headers.keys() if hasattr(headers, "keys") else (name for name, _ in headers)
    return any(name.lower() == "content-type" for name in names)


def _headers(headers: list[tuple[str, str]] | None) -> list[tuple[str, str]] | None:
    """*headers* with each repeated name spelled as its first occurrence: aiohttp sends only
    the last value of a name spelled two ways (``X-Tag: a`` then ``x-tag: b``)."""
    if headers is None or len(headers) < 2:
        return headers
    first: dict[str, str] = {}
    for name, _ in headers:
        first.setdefault(name.lower(), name)
    if len(first) == len(headers):
        return headers
    return [(first[name.lower()], value) for name, value in headers]


_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_LOCATION_HEADERS = ("location", "uri")  # aiohttp follows either


#: the ``Location`` of a redirect in which `_followed_location` found a bad port, in the
#: current task: aiohttp (with ``requote_redirect_url=False``) reads such a port only as it
#: goes on, where it raises a raw ``ValueError`` (with requoting, its own error)
_UNFOLLOWABLE: ContextVar[str | None] = ContextVar("asyncify_kit_unfollowable", default=None)


def _followed_location(value: str, current: str) -> str:
    """What aiohttp reads as the target of a redirect from *current* whose ``Location`` is
    *value* (as aiohttp decoded it: UTF-8, other bytes as lone surrogates): the URL of
    `redirect_url`, which the session takes as it is (``requote_redirect_url=False``),
    with its host name in IDNA form. A value `redirect_url` leaves to aiohttp gets what
    aiohttp's own requoting gave it, without user info."""
    text = value if value.isascii() else header_text(value.encode("utf-8", "surrogateescape"))
    target = redirect_url(text, current)
    if target is None:
        try:
            return str(yarl.URL(without_userinfo(text)))
        except (ValueError, TypeError):
            location = without_userinfo(text)
            _UNFOLLOWABLE.set(location)  # (aiohttp raises its own error at once for some)
            return location
    if not target.isascii():  # an international host name; the rest is escaped
        parts = urlsplit(target)
        host = yarl.URL(target).raw_host or ""
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return target


class _ClientResponse(aiohttp.ClientResponse):
    """A response whose ``headers``, for a redirect, hold in its ``Location`` (and
    ``URI``) the URL every backend follows (`_followed_location`): aiohttp sent a space in
    a query as ``+``, and a value that was not UTF-8 as it was; and it read ``user:password@``
    there as credentials, to send as Basic auth to the next URL (or raised a raw
    ``ValueError`` when the request had an ``Authorization`` header). The facade's
    `Response` shows the headers as received (``raw_headers``)."""

    _followed: CIMultiDictProxy[str] | None = None

    @property  # over aiohttp's reify: read-only, as that one is
    def headers(self) -> CIMultiDictProxy[str]:
        headers = super().headers
        if self.status not in _REDIRECT_STATUSES:
            return headers
        if self._followed is None:
            current = str(self.url)
            self._followed = CIMultiDictProxy(
                CIMultiDict(
                    (
                        name,
                        _followed_location(value, current)
                        if name.lower() in _LOCATION_HEADERS
                        else value,
                    )
                    for name, value in headers.items()
                )
            )
        return self._followed


async def _on_request_redirect(
    session: aiohttp.ClientSession,
    context: object,
    params: aiohttp.TraceRequestRedirectParams,
) -> None:
    """Drop the ``Content-Type`` of a body a redirect drops: aiohttp changes the method by
    `redirect_method` and drops the body and its ``Content-Length``, but keeps its type.
    *params.headers* are the headers aiohttp sends the redirect with (it changes them after
    this signal)."""
    method = params.method
    if redirect_method(method, params.response.status) != method:
        for name in BODY_HEADERS:
            params.headers.popall(name, None)


#: the longest response header line read (requests': http.client's ``_MAXLINE``)
_MAX_HEADER_LINE = 65536

_REDIRECT_TRACE = aiohttp.TraceConfig()
_REDIRECT_TRACE.on_request_redirect.append(_on_request_redirect)
_REDIRECT_TRACE.freeze()


def _no_resend(session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """*session* without aiohttp's own resend: a GET, PUT, DELETE ... whose reused
    keep-alive connection the server closed without an answer was sent again, once, even
    with ``retries=0`` (the server saw it twice; httpx and requests send it once). What is
    retried is the facade's `Retry` alone, on every backend. (A private attribute, aiohttp's
    test client turns it off the same way; where it is missing there is nothing to turn off.)
    """
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


class _Chunks(TranslatingIterator):
    """The chunks of a body; aiohttp's ``RuntimeError("Connection closed.")`` (a read after
    the session closed the connection) is a `ReadError` too, as on httpx."""

    async def __anext__(self) -> bytes:
        try:
            return await super().__anext__()
        except RuntimeError as exc:
            if not str(exc).startswith("Connection closed"):
                raise  # a misuse, such as two readers at once, stays a RuntimeError
            raise self._translate(exc) from exc


class _AiohttpStream(BackendStream):
    def __init__(
        self, backend: AiohttpBackend, response: aiohttp.ClientResponse, request: Request
    ) -> None:
        self._backend = backend
        self._response = response
        self._request = request

    def aiter_chunks(self, chunk_size: int | None) -> AsyncIterator[bytes]:
        content = self._response.content
        source = content.iter_any() if chunk_size is None else content.iter_chunked(chunk_size)
        return _Chunks(
            source,
            (aiohttp.ClientError, asyncio.TimeoutError),
            lambda exc: self._backend.translate(exc, self._request),
        )

    async def aclose(self) -> None:
        self._response.release()


class AiohttpBackend(HttpBackend):
    """`HttpClient` over `aiohttp.ClientSession`; the fastest backend, asyncio only."""

    name = "aiohttp"
    trio = False

    def __init__(self, config: ClientConfig) -> None:
        super().__init__(config)
        self._session: aiohttp.ClientSession | None = None
        # the same connections and cookies, with the redirect trace (`_REDIRECT_TRACE`): for
        # requests that carry a body or a Content-Type, the only ones it can change; aiohttp
        # awaits a trace's signals on every request (16 µs of 212 on a GET, measured)
        self._traced: aiohttp.ClientSession | None = None
        self._all_traced = _has_content_type(config.headers)
        self._timeout = _client_timeout(config.timeout)

    async def aopen(self) -> None:
        library = current_event_loop()
        if library != "asyncio":
            raise Unsupported(
                f"the aiohttp backend runs on asyncio only, but this code runs on {library}; "
                "use backend='httpx' or backend='requests', which work on trio"
            )
        config = self.config
        connector = _Connector(
            max_keepalive=config.limits.max_keepalive,
            limit=config.limits.max_connections,
            limit_per_host=0,
            keepalive_timeout=config.limits.keepalive_expiry,
            ssl=config.ssl_context if config.ssl_context is not None else False,
        )
        settings: dict[str, Any] = {
            "connector": connector,
            "headers": config.headers,
            # unquoted: aiohttp would send a value holding "=", "/", "?" ... (base64, say)
            # in double quotes, which httpx and requests do not, and servers may not strip
            "cookie_jar": _CookieJar(),
            "timeout": self._timeout,
            "raise_for_status": False,
            "auto_decompress": True,
            # the facade sets Content-Type for the bodies it encodes; for raw bytes and for
            # no body it sends none, like httpx and requests (aiohttp would add octet-stream)
            "skip_auto_headers": ("Content-Type",),
            "response_class": _ClientResponse,
            # a redirect's target comes out of `_ClientResponse.headers` escaped already
            "requote_redirect_url": False,
            # a response header line of up to 64 KiB, as requests (http.client) reads;
            # aiohttp's default of 8,190 bytes refused a large cookie or token header
            "max_line_size": _MAX_HEADER_LINE,
            "max_field_size": _MAX_HEADER_LINE,
        }
        self._session = _no_resend(
            aiohttp.ClientSession(
                cookies=_caller_cookies(config.cookies) if config.cookies else None, **settings
            )
        )
        self._traced = _no_resend(
            aiohttp.ClientSession(
                connector_owner=False, trace_configs=[_REDIRECT_TRACE], **settings
            )
        )

    async def aclose(self) -> None:
        traced, self._traced = self._traced, None
        session, self._session = self._session, None
        if traced is not None:
            await traced.close()  # (not the connector: the other session owns it)
        if session is not None:
            await session.close()

    def translate(self, exc: BaseException, request: Request) -> HTTPError:
        """The facade error for an aiohttp (or asyncio timeout) exception."""
        secrets = self.config.secrets
        if isinstance(exc, _WriteTimeout) or isinstance(exc.__cause__, _WriteTimeout):
            # raw (an OSError without errno) or, where asyncio.TimeoutError is no OSError,
            # wrapped by aiohttp in a ClientConnectionError
            return http_error(
                TimeoutException, "write timeout", request, exc, secrets, phase="write"
            )
        if isinstance(exc, aiohttp.ConnectionTimeoutError) and _pool_timed_out(exc):
            return http_error(TimeoutException, "pool timeout", request, exc, secrets, phase="pool")
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return http_error(
                TimeoutException, "connect timeout", request, exc, secrets, phase="connect"
            )
        if isinstance(exc, (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError)):
            return http_error(TimeoutException, "read timeout", request, exc, secrets, phase="read")
        if isinstance(exc, asyncio.TimeoutError):
            return http_error(TimeoutException, "pool timeout", request, exc, secrets, phase="pool")
        if isinstance(exc, RuntimeError):  # "Connection closed.", from _Chunks
            return http_error(ReadError, "connection broken while reading", request, exc, secrets)
        if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ClientHttpProxyError)):
            # (ClientHttpProxyError: the proxy refused the CONNECT tunnel, with its status)
            return http_error(ConnectError, "connection failed", request, exc, secrets)
        # before ClientResponseError, which TooManyRedirects subclasses
        if isinstance(exc, aiohttp.TooManyRedirects):
            return http_error(TransportError, "too many redirects", request, exc, secrets)
        if isinstance(
            exc,
            (
                aiohttp.ServerDisconnectedError,
                aiohttp.ClientPayloadError,
                aiohttp.ClientOSError,
                aiohttp.ClientResponseError,
            ),
        ):
            return http_error(ReadError, "connection broken while reading", request, exc, secrets)
        if type(exc) is aiohttp.ClientConnectionError and str(exc).startswith(
            _CONNECTOR_CLOSED[:-1]
        ):
            # the client closed while the request waited for or made its connection: a
            # ReadError, as for one whose connection the close broke (and as on httpx)
            return http_error(ReadError, "the client was closed", request, exc, secrets)
        return http_error(TransportError, "transport error", request, exc, secrets)

    def _kwargs(self, request: Request) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "headers": _headers(request.headers),
            "data": _payload(request.content, (request.timeout or self.config.timeout).write),
            "allow_redirects": self.follow_for(request),
            # aiohttp counts the redirect that fails (its max_redirects=3 follows two) and
            # reads 0 as "no limit": one more follows exactly max_redirects, as httpx and
            # requests do, and 0 follows none
            "max_redirects": self.config.max_redirects + 1,
        }
        if request.cookies is not None:
            kwargs["cookies"] = request.cookies
        if request.timeout is not None:
            kwargs["timeout"] = _client_timeout(request.timeout)
        if self.config.proxy is not None:
            # per request (a session-wide proxy needs aiohttp 3.10); the session's trust_env
            # stays False: no proxy or netrc of the environment
            kwargs["proxy"] = self.config.proxy
        return kwargs

    def _session_or_fail(self, request: Request) -> aiohttp.ClientSession:
        if request.content is not None or self._all_traced or _has_content_type(request.headers):
            session = self._traced
        else:
            session = self._session
        if session is None:
            raise RuntimeError("the aiohttp backend is not open; use `async with HttpClient()`")
        return session

    def _response(
        self,
        r: aiohttp.ClientResponse,
        request: Request,
        started: float,
        content: bytes | None,
        stream: BackendStream | None = None,
    ) -> Response:
        url = str(r.url)
        if r.history or "#" in request.url:
            url = _with_fragment(url, request.url, r.history)
        return Response.from_backend(
            r.status,
            # as received: `headers` spells a well-known name aiohttp's way ("Set-Cookie" for
            # "set-cookie"), and decodes values as UTF-8 with lone surrogates for other bytes
            lambda: raw_header_items(r.raw_headers),
            content,
            url,
            request,
            time.perf_counter() - started,
            r.reason,
            stream,
        )

    def _failure(self, exc: BaseException, request: Request) -> HTTPError:
        """The facade error for what a request raised (see `translate`). A raw
        ``ValueError`` from aiohttp is a `TransportError` when it came of a redirect to a
        bad port (see `_UNFOLLOWABLE`); any other is re-raised."""
        location = _UNFOLLOWABLE.get()
        if location is not None:
            _UNFOLLOWABLE.set(None)
        if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError)):
            return self.translate(exc, request)
        if location is None:
            raise exc
        what = f"cannot follow the redirect to {redact_url(location)!r}"
        return http_error(TransportError, what, request, exc, self.config.secrets)

    async def send(self, request: Request) -> Response:
        session = self._session_or_fail(request)
        started = time.perf_counter()
        try:
            url = _yarl_url(request.url)
            async with session.request(request.method, url, **self._kwargs(request)) as r:
                content = await r.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise self._failure(exc, request) from exc
        return self._response(r, request, started, content)

    async def send_stream(self, request: Request) -> Response:
        session = self._session_or_fail(request)
        started = time.perf_counter()
        try:
            url = _yarl_url(request.url)
            r = await session.request(request.method, url, **self._kwargs(request))
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise self._failure(exc, request) from exc
        return self._response(r, request, started, None, _AiohttpStream(self, r, request))
