"""The legacy backend: a `requests.Session` run in worker threads (asyncio and trio).

Each request is one hop to a thread of the default pool; a cancelled caller leaves at once
(``cancel="abandon"``) while the thread finishes the exchange (an HTTP error it ends in is
dropped, not logged; a streamed response no one takes is closed, `_Handoff`). A streamed
body is read in chunk hops: one hop per chunk, the response held by one thread from first
chunk to close. requests has no write timeout of its own: its connect and read timeouts are
enforced, and urllib3 sends the request with the connect timeout on the socket (a stalled
upload is a write `TimeoutException` after it). The pools hold at most ``max_connections``
connections per host; a request beyond them waits for one at most the pool timeout
(`_PoolWait`), or until the client closes (`_PoolRules.close`).

requests keeps one value per header name. A header given more than once (``headers=[("X-Tag",
"a"), ("X-Tag", "b")]``, for the client or a request) is therefore sent through urllib3's
`HTTPHeaderDict`, which writes each value on its own line as httpx and aiohttp do (urllib3
1.x joins them into one line, ``X-Tag: a, b``).
"""

from __future__ import annotations

import errno
import http.client
import queue
import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from contextlib import contextmanager, suppress
from email.errors import MissingHeaderBodySeparatorDefect
from http.cookiejar import CookieJar
from typing import Any, cast
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3.connection
import urllib3.exceptions

try:
    from urllib3 import HTTPHeaderDict
except ImportError:  # urllib3 1.x exports it from its private module only
    from urllib3._collections import HTTPHeaderDict

from ..._cleanup import finish
from ..._executor import check_cancelled
from ..._offload import OffloadedIterator, asyncify, run_sync
from ...exceptions import (
    CallCancelled,
    ConnectError,
    HTTPError,
    ReadError,
    TimeoutException,
    TransportError,
)
from .._models import Request, Response
from .base import (
    BODY_HEADERS,
    BackendStream,
    ClientConfig,
    HttpBackend,
    LocalhostCookies,
    header_text,
    http_error,
    latin1_header_items,
    redirect_method,
    redirect_url,
    without_userinfo,
)

__all__ = ["RequestsBackend"]

STREAM_CHUNK = 256 * 1024

Repeated = dict[str, list[tuple[str, str]]]


def repeated_headers(headers: list[tuple[str, str]]) -> Repeated:
    """Each header name (lower case) given more than once in *headers*, with all its pairs."""
    by_name: Repeated = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append((name, value))
    return {name: pairs for name, pairs in by_name.items() if len(pairs) > 1}


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str | None) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url or "")
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(scheme)


class _CookieJar(LocalhostCookies, requests.cookies.RequestsCookieJar):  # type: ignore[misc]
    """requests' jar, which sends a ``Domain=localhost`` cookie back (`LocalhostCookies`)."""


class _Session(requests.Session):
    """A `requests.Session` whose requests and redirects carry what aiohttp's and httpx's
    carry.

    A request's own cookies (``cookies=``) replace the session's cookies of the same names
    (requests sends both, the session's first) and follow the redirects that stay on the
    request's origin (scheme, host, port) only: requests copies them, as domain-less cookies,
    to any host a redirect leads to. They reach `prepare_request` and `rebuild_auth` through
    `own_cookies` (a thread-local: each request runs on one thread, redirects included).
    And requests drops ``Proxy-Authorization`` on every redirect (it re-derives it from the
    proxy settings, and this session has none): here it follows the redirects that stay on
    the origin, like ``Authorization``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._own = threading.local()

    @contextmanager
    def own_cookies(self, cookies: dict[str, str] | None) -> Iterator[None]:
        """Send *cookies* with the request this thread sends in the block."""
        own = self._own
        own.cookies, own.left = cookies, False
        try:
            yield
        finally:
            own.cookies = None

    def _set_cookies(
        self, prepared: requests.PreparedRequest, cookies: dict[str, str] | None
    ) -> None:
        jar = self.cookies.copy()  # holds what the responses so far set too
        if cookies:
            for cookie in list(cast("CookieJar", jar)):  # Cookie objects, not names
                if cookie.name in cookies:
                    jar.clear(cookie.domain, cookie.path, cookie.name)
            for name, value in cookies.items():
                jar.set(name, value)
        prepared.headers.pop("Cookie", None)
        prepared._cookies = jar  # type: ignore[attr-defined]  # copied by each redirect
        prepared.prepare_cookies(jar)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        cookies = getattr(self._own, "cookies", None)
        if cookies:
            self._set_cookies(prepared, cookies)
        return prepared

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """The URL of `redirect_url`, as every backend follows it: without user info
        (requests followed it with the ``user:password@`` in the URL, so in
        ``Response.url``, though it sent no credentials from it), and read as `header_text`
        reads it (requests failed with a raw ``UnicodeDecodeError`` on a value that was not
        UTF-8). requests' own reading, without user info, for a value `redirect_url` leaves
        to it."""
        if not resp.is_redirect:
            return None
        raw: str = resp.headers["location"]  # decoded as Latin-1 by http.client
        target = redirect_url(header_text(raw.encode("latin-1", "replace")), resp.url)
        if target is not None:
            return target
        location = super().get_redirect_target(resp)
        return None if location is None else without_userinfo(location)

    def should_strip_auth(self, old_url: str, new_url: str) -> bool:
        """Drop ``Authorization`` on every redirect to another origin: requests keeps it
        from ``http://host`` to ``https://host``."""
        return _origin(old_url) != _origin(new_url)

    def rebuild_method(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        """The method by `redirect_method`: requests turns any 302 into a GET, as httpx did."""
        method = prepared_request.method or "GET"
        prepared_request.method = redirect_method(method, response.status_code)

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        previous = response.request
        if (
            response.status_code in (301, 302, 303)
            and prepared_request.method == previous.method
            and previous.body is not None
        ):
            # requests drops the body of any 301, 302 or 303 redirect, after rebuild_method
            # and before this: one that keeps its method keeps its body (a PUT's, say)
            prepared_request.body = previous.body
            for name in BODY_HEADERS:
                value = previous.headers.get(name)
                if value is not None:
                    prepared_request.headers[name] = value
        cookies = getattr(self._own, "cookies", None)
        if _origin(prepared_request.url) != _origin(previous.url):
            self._own.left = True
            self._set_cookies(prepared_request, None)  # the session's cookies only, for good
        else:
            proxy_authorization = previous.headers.get("Proxy-Authorization")
            if proxy_authorization is not None:
                prepared_request.headers["Proxy-Authorization"] = proxy_authorization
            if cookies and not self._own.left:
                self._set_cookies(prepared_request, cookies)


class _PoolWait(threading.local):
    """The pool timeout of the request this thread sends: urllib3 takes one per call only
    (``urlopen(pool_timeout=...)``), and requests passes none."""

    seconds: float | None = None


_POOL_WAIT = _PoolWait()


#: a Content-Length (str.isdigit would take "²" too)
_DIGITS = re.compile(r"[0-9]+")

#: informational responses skipped before a final one, at most (h11 and aiohttp set none)
_MAX_INFORMATIONAL = 100


class _FinalResponse(http.client.HTTPResponse):
    """http.client skips a ``100 Continue`` only: it took any other informational response
    (``103 Early Hints``, ``102 Processing``) for the final one, with no body, and dropped
    the connection with the real response unread. They are skipped here, as httpx and
    aiohttp skip them (``101 Switching Protocols`` ends the exchange: it stays final)."""

    def begin(self) -> None:
        """http.client took a line that is not a header (``X-Sp : v``: a space before the
        colon) for the end of the headers, dropping the rest (``Content-Length`` too) into
        the body, then read that body until the read timeout, and urllib3 only logged it. It
        is a protocol error at once, as on httpx (h11) and aiohttp, and the connection is
        not reused."""
        super().begin()
        if any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in self.msg.defects):
            payload = self.msg.get_payload()
            line = payload.partition("\n")[0].rstrip("\r") if isinstance(payload, str) else ""
            self.close()
            raise http.client.HTTPException(f"invalid header line {line!r}")
        lengths = self.msg.get_all("Content-Length")
        if lengths and not self.chunked:
            self._check_content_length(lengths)

    def _check_content_length(self, values: list[str]) -> None:
        """A ``Content-Length`` that is not a number (``abc``, ``-1``), or two that differ
        (RFC 9112, 6.3: an unrecoverable error), is a protocol error, as on httpx and
        aiohttp: http.client read the body of the first up to the connection's close (a 200
        with whatever came), and urllib3 raised a bare error of its own for the second (a
        `TransportError`). One value repeated (``5, 5``) is that value, as urllib3 reads it."""
        found = {part.strip(" \t") for value in values for part in value.split(",")}
        if len(found) == 1 and _DIGITS.fullmatch(found.pop()):
            return
        shown = ", ".join(values)
        self.close()
        raise http.client.HTTPException(f"invalid Content-Length {shown!r}")

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(_MAX_INFORMATIONAL):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 101 < status < 200:
                return version, status, reason
            http.client._read_headers(self.fp)  # type: ignore[attr-defined]
        raise http.client.HTTPException(
            f"more than {_MAX_INFORMATIONAL} informational responses before the final one"
        )


class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = _FinalResponse


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    """An https connection that reads the answer a server sent before it had read the whole
    request body, then closed: urllib3 does so over plain http, where the failed write
    raises `BrokenPipeError`; over TLS it raises `ssl.SSLEOFError`, which urllib3 took for a
    connection that failed (`ConnectError`, after its retries)."""

    response_class = _FinalResponse

    def send(self, data: Any) -> None:
        try:
            super().send(data)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            raise BrokenPipeError(errno.EPIPE, f"the server closed the connection ({exc})") from exc


def _connection_for_caller(conn: Any) -> Any:
    """*conn*, just taken from a pool, unless the caller has gone meanwhile (cancelled or
    timed out while the request waited for a free connection: the thread, abandoned, ran
    on): then nothing is sent. The connection is closed and `CallCancelled` raised; urllib3
    then gives its pool slot back (it puts None back for a connection that failed)."""
    try:
        check_cancelled()
    except CallCancelled:
        conn.close()
        raise
    return conn


class _PoolRules:
    """What the backend's connection pools add to urllib3's (mixed into both, http and https):
    a wait for a free connection of at most the pool timeout (`_PoolWait`), nothing sent for
    a caller gone while it waited (`_connection_for_caller`), and the client's keep-alive
    limits, which urllib3 does not have: it keeps every connection it has opened idle, up to
    the pool's size, for as long as the server keeps it.

    A connection going back to the pool is stamped with the time and counted idle, or closed
    if *max_keepalive* idle ones are counted already; one taken from the pool that has been
    idle longer than *keepalive_expiry* is closed before use (urllib3 then opens a new one
    for the request). At most once a second (or per *keepalive_expiry*, if shorter), giving
    one back also closes the idle ones that have expired. A closed connection keeps its
    place in the pool, which is what limits *max_connections*. The adapter makes subclasses
    that set both limits (`_pool_classes`).
    """

    max_keepalive: int = 20
    keepalive_expiry: float = 5.0
    pool: Any  # urllib3's LifoQueue of connections (None for a free place)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle_lock = threading.Lock()  # (taken after the queue's mutex, never before)
        self._idle_open = 0  # connections stamped idle: in the pool, or being taken from it
        self._swept = time.monotonic()

    def urlopen(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("pool_timeout") is None:
            kwargs["pool_timeout"] = _POOL_WAIT.seconds
        return super().urlopen(method, url, *args, **kwargs)  # type: ignore[misc]

    def close(self) -> None:
        """urllib3's close, which also fails the requests waiting for a free connection:
        urllib3 left them waiting on the closed pool's queue, which nothing fills again,
        until their pool timeout (a `TimeoutException` long after the client closed; for
        good, thread included, with ``pool=None``). One is woken here; it fails with
        `ClosedPoolError` and wakes the next (`_get_conn`)."""
        waiting = self.pool
        super().close()  # type: ignore[misc]
        if waiting is not None:
            _wake_one(waiting)

    def _get_conn(self, timeout: float | None = None) -> Any:
        waiting = self.pool  # (urllib3's close sets None: what a taker waits on stays)
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        if self.pool is None:
            # closed while this request waited (woken by `close`, or given a connection
            # just before): nothing is sent, and the connection, not pooled, is closed
            conn.close()
            if waiting is not None:
                _wake_one(waiting)
            raise urllib3.exceptions.ClosedPoolError(self, "Pool is closed.")  # type: ignore[arg-type]
        if getattr(conn, _IDLE_SINCE, None) is not None:
            with self._idle_lock:
                since = getattr(conn, _IDLE_SINCE, None)  # (None: a sweep closed it)
                if since is not None:
                    setattr(conn, _IDLE_SINCE, None)
                    self._idle_open -= 1
            if since is not None and time.monotonic() - since > self.keepalive_expiry:
                conn.close()
        return _connection_for_caller(conn)

    def _put_conn(self, conn: Any) -> None:
        if conn is not None and conn.sock is not None and self.pool is not None:
            now = time.monotonic()
            if now - self._swept >= min(self.keepalive_expiry, 1.0):
                self._sweep(now)
            with self._idle_lock:
                keep = self._idle_open < self.max_keepalive
                if keep:
                    self._idle_open += 1
                    setattr(conn, _IDLE_SINCE, now)
            if not keep:
                conn.close()
        super()._put_conn(conn)  # type: ignore[misc]

    def _sweep(self, now: float) -> None:
        """Close the idle connections of the pool that have expired."""
        self._swept = now
        oldest = now - self.keepalive_expiry
        queue = self.pool
        if queue is None:
            return
        with queue.mutex, self._idle_lock:  # (what a taker holds: none is taken meanwhile)
            for other in queue.queue:
                if other is None:
                    continue
                since = getattr(other, _IDLE_SINCE, None)
                if since is not None and since < oldest:
                    setattr(other, _IDLE_SINCE, None)
                    self._idle_open -= 1
                    other.close()


#: the attribute of a pooled connection that holds when it went idle
_IDLE_SINCE = "_asyncify_idle"


def _wake_one(waiting: queue.Queue[Any]) -> None:
    """Wake one request waiting on *waiting*, the queue of a closed pool: a None (urllib3's
    free place) that it takes and, seeing the pool closed, puts back for the next."""
    with suppress(queue.Full):  # (full: a connection given back meanwhile wakes one too)
        waiting.put(None, block=False)


class _HTTPConnectionPool(_PoolRules, urllib3.HTTPConnectionPool):
    """The pool for http (see `_PoolRules`); its connections skip informational responses
    (`_FinalResponse`)."""

    ConnectionCls = _HTTPConnection  # pyright: ignore[reportAssignmentType]


class _HTTPSConnectionPool(_PoolRules, urllib3.HTTPSConnectionPool):
    """`_HTTPConnectionPool` for https."""

    ConnectionCls = _HTTPSConnection  # pyright: ignore[reportAssignmentType]


def _pool_classes(max_keepalive: int, keepalive_expiry: float) -> dict[str, type[Any]]:
    """The pool class of each scheme, with these keep-alive limits."""
    limits = {"max_keepalive": max_keepalive, "keepalive_expiry": keepalive_expiry}
    return {
        "http": type("_HTTPConnectionPool", (_HTTPConnectionPool,), limits),
        "https": type("_HTTPSConnectionPool", (_HTTPSConnectionPool,), limits),
    }


class _Adapter(requests.adapters.HTTPAdapter):
    """An `HTTPAdapter` whose pools hold at most *pool_maxsize* connections each (a request
    beyond them waits for a free one, at most the pool timeout: requests' own pools open
    more, and keep *pool_maxsize* of them), and whose `close` closes its connection pools.

    urllib3 2.8's ``PoolManager.clear()`` (what ``HTTPAdapter.close()`` calls) forgets its
    pools without closing them: their idle keep-alive connections stay open until the pools
    are garbage-collected, and every urllib3 error holds its pool (``.pool``), in a reference
    cycle or as the ``orig`` of a `TimeoutException` a caller keeps. A closed pool also closes
    a connection still in use (an abandoned request's) when its exchange ends.
    """

    def __init__(
        self, ssl_context: ssl.SSLContext | None, pool_classes: dict[str, type[Any]], **kwargs: Any
    ) -> None:
        self._ssl_context = ssl_context  # (both used by __init__: init_poolmanager)
        self._pool_classes = pool_classes
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # the pools behind a proxy are ours too (pool timeout, informational responses)
        if self._ssl_context is not None:  # (used when the manager is made)
            proxy_kwargs["ssl_context"] = self._ssl_context
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pool_classes
        return manager

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """The pools verify with the client's context alone: requests would also set
        certifi's bundle on them, which urllib3 loads into that context (so a client given
        one CA file would trust certifi's authorities too)."""
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if self._ssl_context is not None:
            conn.ca_certs = None
            conn.ca_cert_dir = None

    def close(self) -> None:
        for manager in (self.poolmanager, *self.proxy_manager.values()):
            pools = manager.pools
            for key in pools.keys():  # noqa: SIM118 - iterating the container raises
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
        super().close()


def _wake_reader(raw: Any) -> None:
    """Shut down the socket under *raw* (a urllib3 response), from any thread: a read blocked
    on it returns at once. Closing the response instead would race the reading thread inside
    http.client, which is not thread-safe (``AttributeError: 'NoneType' object has no
    attribute ...``), and would not wake it: the read would go on until the read timeout."""
    shutdown = getattr(raw, "shutdown", None)  # urllib3 >= 2.3
    if shutdown is not None:
        try:
            shutdown()
        except (NotImplementedError, ValueError, RuntimeError, OSError):
            pass  # already closed or released: nothing reads from it any more
        else:
            return
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _reads_as_it_arrives(raw: Any) -> bool:
    """Whether `_as_it_arrives` can read the body of *raw* (a urllib3 2 response, not
    chunked: urllib3 reads a chunked body one chunk at a time already)."""
    if not isinstance(raw, urllib3.HTTPResponse) or not hasattr(raw, "read1"):
        return False  # (urllib3 1.x has no read1; or a response an adapter made)
    return not (raw.chunked and raw.supports_chunked_reads())


def _as_it_arrives(response: requests.Response) -> Iterator[bytes]:
    """The decoded body of *response* as it arrives: what one read of the socket gives, at
    most `STREAM_CHUNK` bytes. requests' ``iter_content`` reads with urllib3's ``read(amt)``,
    which waits for *amt* bytes: a body sent with a ``Content-Length`` or ending at the
    connection's close (NDJSON lines, a progress feed) reached the caller only once 256 KiB
    had arrived, or the body ended. urllib3's errors become requests' as there."""
    raw = response.raw
    try:
        while True:
            data = raw.read1(STREAM_CHUNK, decode_content=True)
            if not data:
                break
            yield data
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.ConnectionError(exc) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc


class _RequestsStream(BackendStream):
    """A streamed body read on a worker thread, one chunk per hop.

    The response is only ever used by one thread at a time. While a chunk is being read
    (``_reading``), nothing else closes it: `aclose` (a cancelled reader, a block left early)
    and `abort` (the client closed) shut the socket down, which wakes the read, and the
    reading thread closes the response itself. Between chunks they close it directly, and the
    reader, if resumed, reads no more. ``_lock`` makes "start a read" and "close" exclusive,
    and "shut the socket down" and urllib3's "give the connection back to the pool" too: the
    read that reaches the end of the body gives it back from inside (see `_on_release`).
    """

    def __init__(
        self, backend: RequestsBackend, response: requests.Response, request: Request
    ) -> None:
        self._backend = backend
        self._response = response
        self._request = request
        self._lock = threading.Lock()
        self._reading = False  # a worker thread is inside a read of this body
        self._closed = False
        self._done = False  # the caller is done with the body: a read in progress ends quietly
        self._aborted = False  # the client was closed before this body was read
        self._released = False  # urllib3 gave the connection back to its pool
        self._woken = False  # its socket was shut down under a read
        self._chunks: OffloadedIterator[bytes] | None = None
        self._body: Iterator[bytes] | None = None  # requests' iterator of the body, once read

    def _on_release(self) -> None:
        """urllib3's ``release_conn`` of the response while it is read (`_read_chunks`).
        From then on another request may use the connection, so `_wake` leaves its socket
        alone; and a connection whose socket `_wake` shut down already is closed, not reused."""
        raw = self._response.raw
        with self._lock:
            self._released = True
            woken = self._woken
        if woken:
            raw.close()
        type(raw).release_conn(raw)

    def _wake(self) -> None:
        """Shut the socket down under the read in progress (the caller holds ``_lock``),
        unless the connection is back in the pool: the read has ended, and the socket may
        be another request's now."""
        if not self._released:
            self._woken = True
            _wake_reader(self._response.raw)

    def _aborted_error(self, exc: BaseException) -> HTTPError:
        return http_error(
            ReadError,
            "connection broken while reading",
            self._request,
            exc,
            self._backend.config.secrets,
        )

    def _claim_close(self) -> bool:
        """Whether the caller is the one to close the response: not while a chunk is being
        read, and only once."""
        with self._lock:
            if self._closed or self._reading:
                return False
            self._closed = True
            return True

    def _read_chunks(self, chunk_size: int | None) -> Generator[bytes, None, None]:
        # kept on the stream too: collected with this frame (this generator closed between
        # chunks, on its thread), urllib3's generator of the body would close the connection
        # and give it back to the pool behind the back of whoever closes the response, maybe
        # at the same time on another thread: the pool would hand it to two requests
        response = self._response
        raw = response.raw
        if chunk_size is None and _reads_as_it_arrives(raw):
            chunks = self._body = _as_it_arrives(response)
        else:
            chunks = self._body = response.iter_content(chunk_size or STREAM_CHUNK)
        # urllib3 calls it on the response itself, from inside the read that ends the body
        raw.release_conn = self._on_release  # type: ignore[method-assign]  # for this read only
        try:
            while True:
                with self._lock:
                    if self._done or self._aborted or self._closed:
                        break
                    self._reading = True
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
                finally:
                    with self._lock:
                        self._reading = False
                yield chunk
        finally:
            del raw.release_conn  # the class's again: no reference cycle is left
        if self._aborted and not self._done:
            gone = ConnectionAbortedError("the HttpClient was closed")
            raise self._aborted_error(gone) from gone

    def _chunks_in_thread(self, chunk_size: int | None) -> Generator[bytes, None, None]:
        try:
            yield from self._read_chunks(chunk_size)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            if self._done:
                return  # the socket was shut down under the read of a body no one reads
            if self._aborted:
                raise self._aborted_error(exc) from exc
            raise self._backend.translate(exc, self._request) from exc
        except (OSError, ValueError, AttributeError) as exc:
            # what a read raises when the socket is shut down or the response closed under it
            if self._done:
                return
            if not self._aborted:
                raise
            raise self._aborted_error(exc) from exc
        finally:
            if self._claim_close():
                self._response.close()

    async def abort(self) -> None:
        """Close the connection for the client's aclose(): the rest of the body, if read,
        raises `ReadError` (requests would leave the connection open and go on reading)."""
        # (the reading thread holds this lock for a few assignments only, never over a read)
        with self._lock:  # asyncify: ignore[sync-wait]
            self._aborted = True
            reading = self._reading
            if reading:
                self._wake()  # the reading thread closes the response
        if not reading and self._claim_close():
            await finish(run_sync(self._response.close))

    def aiter_chunks(self, chunk_size: int | None) -> AsyncIterator[bytes]:
        self._chunks = asyncify(cancel="abandon")(self._chunks_in_thread)(chunk_size)
        return self._chunks

    async def aclose(self) -> None:
        with self._lock:  # asyncify: ignore[sync-wait]  (a few assignments: see abort)
            self._done = True
            if self._reading:
                # a reader cancelled in the middle of a chunk: its thread is still in the read
                self._wake()
        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            await chunks.aclose()  # runs the generator's finally on its thread, if still open
        if self._claim_close():
            # a clean-up: it runs even in a cancelled scope (a reader cancelled mid-chunk
            # closes the stream at once), else the connection would stay open for good
            await finish(run_sync(self._response.close))


class _Handoff:
    """The stream of one `send_stream`, handed from its thread to its caller, who may have left.

    Under ``cancel="abandon"`` the thread's result is dropped when the caller has left (a
    timeout while it waits for the headers): dropped unclosed, the response kept its slot of
    urllib3's blocking pool for good (the socket was closed when collected, the slot never
    given back), and after ``max_connections`` such cancellations every request failed with
    a pool timeout. Whichever of the two comes second closes the response: the thread, if
    the caller left first (`deliver`), else the caller (`leave`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left = False
        self._stream: _RequestsStream | None = None

    def deliver(self, stream: _RequestsStream) -> bool:
        """Hand *stream* over (on its thread); False if the caller has left: the thread closes
        it."""
        with self._lock:
            if self._left:
                return False
            self._stream = stream
            return True

    def leave(self) -> _RequestsStream | None:
        """The caller leaves without a result: the stream it must close, if already handed
        over."""
        # (the thread holds this lock for two assignments only, never over a call)
        with self._lock:  # asyncify: ignore[sync-wait]
            self._left = True
            stream, self._stream = self._stream, None
            return stream


def _received_headers(r: requests.Response) -> list[tuple[str, str]]:
    """The headers of *r* as received, as the other backends give them: in their order and
    with their names as sent (urllib3's ``HTTPHeaderDict`` groups a repeated name's values
    under its first spelling, and ``X-A, X-B, X-A`` came out as ``X-A, X-A, X-B``), each
    value without the whitespace that ends it (RFC 9110, 5.5: not part of the value;
    http.client kept it), as `header_text` reads it (http.client decoded it as Latin-1)."""
    raw = r.raw
    message = getattr(getattr(raw, "_original_response", None), "msg", None)
    if message is not None:
        items: Iterable[tuple[str, str]] = message.items()
    else:  # (not read from a connection by urllib3: a response made by hand or an adapter)
        items = (raw.headers if raw is not None else r.headers).items()
    return latin1_header_items((name, value.rstrip(" \t")) for name, value in items)


class RequestsBackend(HttpBackend):
    """`HttpClient` over a `requests.Session` in worker threads, for code migrating from it."""

    name = "requests"
    trio = True

    def __init__(self, config: ClientConfig) -> None:
        super().__init__(config)
        self._session: _Session | None = None
        self._streams: weakref.WeakSet[_RequestsStream] = weakref.WeakSet()
        self._repeated = repeated_headers(config.headers)
        self._send = asyncify(cancel="abandon")(self._send_in_thread)
        self._send_stream = asyncify(cancel="abandon")(self._stream_in_thread)

    def _make_session(self) -> _Session:
        config = self.config
        session = _Session()
        session.cookies = _CookieJar()
        adapter = _Adapter(
            config.ssl_context,
            _pool_classes(config.limits.max_keepalive, config.limits.keepalive_expiry),
            pool_connections=10,
            pool_maxsize=config.limits.max_connections,
            max_retries=0,
            pool_block=True,
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.clear()
        session.headers.update(
            {
                "User-Agent": requests.utils.default_user_agent(),
                "Accept": "*/*",
                "Accept-Encoding": "gzip, deflate",
            }
        )
        for name, value in config.headers:
            session.headers[name] = value
        for name, value in config.cookies.items():
            session.cookies.set(name, value)
        session.max_redirects = config.max_redirects
        session.verify = config.ssl_context is not None  # (verified with the adapter's context)
        session.trust_env = False  # no proxy, netrc or CA bundle of the environment
        if config.proxy is not None:
            session.proxies = {"http": config.proxy, "https": config.proxy}
        return session

    async def aopen(self) -> None:
        self._session = await run_sync(self._make_session)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        streams, self._streams = list(self._streams), weakref.WeakSet()
        for stream in streams:  # closing the session leaves the connections in use open
            await stream.abort()
        if session is not None:
            await finish(run_sync(session.close))

    def translate(self, exc: BaseException, request: Request) -> HTTPError:
        """The facade error for a requests (or urllib3) exception."""
        secrets = self.config.secrets
        inner = exc.args[0] if isinstance(exc, requests.ConnectionError) and exc.args else None
        reason = getattr(inner, "reason", None)
        # urllib3's NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError
        if isinstance(exc, requests.ConnectTimeout) or (
            isinstance(reason, urllib3.exceptions.ConnectTimeoutError)
            and not isinstance(reason, urllib3.exceptions.NewConnectionError)
        ):
            return http_error(
                TimeoutException, "connect timeout", request, exc, secrets, phase="connect"
            )
        if isinstance(exc, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)) or (
            isinstance(inner, urllib3.exceptions.ReadTimeoutError)
        ):
            return http_error(TimeoutException, "read timeout", request, exc, secrets, phase="read")
        if isinstance(exc, urllib3.exceptions.EmptyPoolError):  # from a blocking pool only
            return http_error(TimeoutException, "pool timeout", request, exc, secrets, phase="pool")
        if isinstance(exc, urllib3.exceptions.ClosedPoolError) or isinstance(
            inner, urllib3.exceptions.ClosedPoolError
        ):
            # the client closed while the request waited for a free connection: a ReadError,
            # as on httpx and aiohttp
            return http_error(ReadError, "the client was closed", request, exc, secrets)
        # urllib3 wraps a socket timeout while it sends the request (its body to a server that
        # stopped reading, say) as ProtocolError("Connection aborted.", TimeoutError(...));
        # one while it waits for the response is a ReadTimeoutError
        aborted = exc if isinstance(exc, urllib3.exceptions.ProtocolError) else inner
        if isinstance(aborted, urllib3.exceptions.ProtocolError) and any(
            isinstance(arg, TimeoutError) for arg in aborted.args
        ):
            return http_error(
                TimeoutException, "write timeout", request, exc, secrets, phase="write"
            )
        if isinstance(
            exc,
            (
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
                urllib3.exceptions.ProtocolError,
            ),
        ):
            return http_error(ReadError, "connection broken while reading", request, exc, secrets)
        if isinstance(exc, requests.ConnectionError):
            if isinstance(inner, urllib3.exceptions.MaxRetryError) and not isinstance(
                reason, urllib3.exceptions.ProtocolError
            ):
                return http_error(ConnectError, "connection failed", request, exc, secrets)
            return http_error(ReadError, "connection broken while reading", request, exc, secrets)
        if isinstance(exc, requests.TooManyRedirects):
            return http_error(TransportError, "too many redirects", request, exc, secrets)
        return http_error(TransportError, "transport error", request, exc, secrets)

    def _repeated_for(self, request: Request) -> Repeated:
        """The header names sent more than once with *request*, merged as httpx and aiohttp
        merge them: a name the request sets replaces the client's values for that name."""
        own = request.headers
        if not own:
            return self._repeated
        names = {name.lower() for name, _ in own}
        if not self._repeated and len(names) == len(own):
            return {}
        inherited = [(k, v) for k, v in self.config.headers if k.lower() not in names]
        return repeated_headers(inherited + own)

    def _send_repeated(
        self, session: _Session, request: Request, repeated: Repeated, **kwargs: Any
    ) -> requests.Response:
        """``session.request`` for a request with repeated headers: prepared by requests (one
        value per name), then every value of the repeated names put back."""
        prepared = session.prepare_request(
            requests.Request(
                request.method,
                request.url,
                headers=dict(request.headers or ()),
                data=request.content or {},
            )
        )
        headers = HTTPHeaderDict()
        for name, value in prepared.headers.items():
            for pair in repeated.get(name.lower(), [(name, value)]):
                headers.add(*pair)
        # not requests' CaseInsensitiveDict, but a mapping requests and urllib3 both handle
        prepared.headers = headers  # type: ignore[assignment]
        stream = kwargs.pop("stream")
        settings = session.merge_environment_settings(prepared.url, {}, stream, None, None)
        return session.send(prepared, **kwargs, **settings)

    def _call(self, request: Request, stream: bool) -> requests.Response:
        session = self._session
        if session is None:
            # closed after the client took the request (it refuses one when closed) and
            # before this thread picked it up: as for a request that waited for the pool
            raise http_error(
                ReadError,
                "the client was closed",
                request,
                RuntimeError("closed before the request was sent"),
            )
        timeout = self.timeout_for(request)
        kwargs: dict[str, Any] = {
            "timeout": (timeout.connect, timeout.read),
            "allow_redirects": self.follow_for(request),
            "stream": stream,
        }
        repeated = self._repeated_for(request)
        _POOL_WAIT.seconds = timeout.pool  # this thread's, for its redirects too
        try:
            with session.own_cookies(request.cookies):
                if repeated:
                    return self._send_repeated(session, request, repeated, **kwargs)
                if request.headers is not None:
                    kwargs["headers"] = dict(request.headers)
                return session.request(request.method, request.url, data=request.content, **kwargs)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise self.translate(exc, request) from exc
        except ValueError as exc:
            # urllib.parse on a redirect's Location ("Invalid IPv6 URL", "Port out of range");
            # the request's own URL and headers were checked by the client
            raise http_error(
                TransportError, "transport error", request, exc, self.config.secrets
            ) from exc

    def _response(
        self,
        r: requests.Response,
        request: Request,
        started: float,
        content: bytes | None,
        stream: BackendStream | None = None,
    ) -> Response:
        return Response.from_backend(
            r.status_code,
            lambda: _received_headers(r),
            content,
            r.url,
            request,
            time.perf_counter() - started,
            r.reason,
            stream,
        )

    # The threads return the HTTP error of a request rather than raise it, and the caller
    # raises it: the thread of a cancelled caller finishes the exchange on its own, and the
    # error it ends in is then dropped with it, as on the other backends, where a raised one
    # would be logged as a late error (at WARNING, with its traceback, per cancelled request).

    def _send_in_thread(self, request: Request) -> Response | HTTPError:
        started = time.perf_counter()
        try:
            r = self._call(request, stream=False)
            try:
                content = r.content
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                raise self.translate(exc, request) from exc
        except HTTPError as exc:
            return exc
        return self._response(r, request, started, content)

    async def send(self, request: Request) -> Response:
        outcome = await self._send(request)
        if isinstance(outcome, HTTPError):
            raise outcome
        return outcome

    def _stream_in_thread(
        self, request: Request, handoff: _Handoff
    ) -> tuple[Response, _RequestsStream] | HTTPError:
        started = time.perf_counter()
        try:
            r = self._call(request, stream=True)
        except HTTPError as exc:
            return exc
        stream = _RequestsStream(self, r, request)
        if not handoff.deliver(stream):
            r.close()  # the caller has left: the connection goes back to the pool
        return self._response(r, request, started, None, stream), stream

    async def send_stream(self, request: Request) -> Response:
        handoff = _Handoff()
        try:
            outcome = await self._send_stream(request, handoff)
        except BaseException:
            stream = handoff.leave()
            if stream is not None:  # handed over, yet the caller was cancelled all the same
                await stream.aclose()
            raise
        if isinstance(outcome, HTTPError):
            raise outcome
        response, stream = outcome
        self._streams.add(stream)  # on the event loop: aclose() closes what is still open
        return response
