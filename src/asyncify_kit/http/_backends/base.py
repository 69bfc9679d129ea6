"""The interface every HTTP backend implements, and the error translation they share.

A backend receives fully prepared `Request` objects (absolute URL without user info, body
already encoded, extra headers but never a ``Cookie`` header: the cookies of one, the client's
or the request's, come in ``Request.cookies``) and returns `Response` objects. The client-wide
settings arrive once, as a `ClientConfig`. Foreign exceptions are translated here, at the
boundary, into the facade's tree and chained (``raise ... from exc``, ``.orig``)::

    HTTPError
    ├── TransportError          anything else that broke the exchange
    │   ├── ConnectError        the connection could not be established
    │   └── ReadError           the connection broke while reading (dropped, truncated)
    └── TimeoutException        connect, read, write or pool timeout (``.phase`` says which)
"""

from __future__ import annotations

import abc
import copy as copy_module
import http.cookiejar
import re
import ssl
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

from ..._errors import causes
from ..._executor import asyncio_loop
from ...exceptions import HTTPError, TimeoutException
from .._models import Limits, Request, Response, Timeout
from .._redact import REDACTED, redact_header, redact_text, redact_url
from .._tls import VerifyInput

__all__ = [
    "BODY_HEADERS",
    "BackendStream",
    "ClientConfig",
    "HttpBackend",
    "LocalhostCookies",
    "TimeoutPhase",
    "TranslatingIterator",
    "canonical_part",
    "canonical_url",
    "current_event_loop",
    "http_error",
    "redirect_method",
    "redirect_url",
    "without_userinfo",
]

TimeoutPhase = Literal["connect", "read", "write", "pool"]


# ``scheme://user:password@`` or ``//user:password@`` at the start of a Location: the user
# info runs to the last "@" before the path, query or fragment (as urllib.parse reads it)
_LOCATION_USERINFO = re.compile(r"^(?P<head>[ \t]*(?:[A-Za-z][A-Za-z0-9+.-]*:)?//)[^/?#]*@")


def without_userinfo(location: str) -> str:
    """A redirect's *location* without the ``user:password@`` of its authority, if any.

    Every backend follows such a redirect to the URL without its user info, and sends no
    credentials made from it (aiohttp sent them as Basic auth; httpx and requests kept them in
    the URL, hence in ``Response.url`` and httpx's log of each request). Unlike a URL the
    caller gives, these credentials come from the server.

    >>> without_userinfo("http://ann:s3cret@example.org:8080/x?y=1")
    'http://example.org:8080/x?y=1'
    >>> without_userinfo("/relative@path")
    '/relative@path'
    """
    if "@" not in location:
        return location
    return _LOCATION_USERINFO.sub(r"\g<head>", location, count=1)


# RFC 3986: what a path, a query or a fragment may hold as it is (unreserved characters,
# sub-delims, ":", "@", "/", and "?" past the path; "%" only to start an escape)
_URL_TEXT = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _escape_char(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def canonical_part(text: str) -> str:
    """*text* (a path, a query or a fragment) percent-encoded as requests and aiohttp send
    it: every character RFC 3986 does not allow there escaped (a space, ``"<>\\^`{|}``,
    ``[`` and ``]``, non-ASCII text as UTF-8), a ``%`` that starts no escape as ``%25``, an
    escaped unreserved character (``%7E``) as itself; other escapes kept as they are."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        match = _URL_TEXT.match(text, i)
        end = match.end() if match is not None else i
        if end > i:
            out.append(text[i:end])
            i = end
            continue
        char = text[i]
        escape = _ESCAPE.match(text, i) if char == "%" else None
        if escape is not None:
            decoded = chr(int(escape.group(1), 16))
            out.append(decoded if decoded in _UNRESERVED else escape.group(0).upper())
            i += 3
        else:
            out.append(_escape_char(char))
            i += 1
    return "".join(out)


def canonical_url(url: str) -> str:
    """*url* (absolute) with its path, query and fragment as `canonical_part` has them, so
    that every backend sends the same request target: httpx sent ``|``, ``^``, ``[``,
    ``]``, ``\\``, ``{``, ``}`` and a lone ``%`` as they were, aiohttp a space in the query
    as ``+``, where the others escape them. An empty query (``/a?``) is none (``/a``), and
    the path's ``.`` and ``..`` segments are removed as RFC 3986 removes them: httpx sent
    ``/a/x/..`` as ``/a`` and ``/a/x/.`` as ``/a/x``, the others ``/a/`` and ``/a/x/``.

    >>> canonical_url("http://h/a/x/..?q=a b"), canonical_url("http://h/a/%2E/b")
    ('http://h/a/?q=a%20b', 'http://h/a/b')
    """
    scheme, sep, rest = url.partition("://")
    start = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if 0 <= found < start:
            start = found
    target = rest[start:]
    end = target.find("#")
    if end < 0:
        end = len(target)
    question = target.find("?", 0, end)  # (a "?" in the fragment is the fragment's)
    if question >= 0 and question == end - 1:
        # "?" and no query: the URL has none, as aiohttp and requests send and report it
        # (httpx kept the "?" in `Response.url`)
        target = target[:question] + target[question + 1 :]
        url = scheme + sep + rest[:start] + target
    if not _URL_TEXT.fullmatch(target.replace("#", "?", 1)):
        target, hash_, fragment = target.partition("#")
        target = canonical_part(target)
        if hash_:
            target += "#" + canonical_part(fragment)
        url = scheme + sep + rest[:start] + target
    if "/." in target:  # (rare: a cheap test first) maybe a dot segment in the path
        path_end = len(target)
        for mark in "?#":
            found = target.find(mark)
            if 0 <= found < path_end:
                path_end = found
        path = target[:path_end]
        if path.startswith("/") and _DOT_SEGMENT.search(path):
            url = scheme + sep + rest[:start] + _without_dot_segments(path) + target[path_end:]
    return url


# what comes before a reference's path: ``scheme:`` and ``//authority``, either optional
_REFERENCE_HEAD = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?(?://[^/?#]*)?")


# a "." or ".." segment of a path (what `_without_dot_segments` removes)
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")


def _without_dot_segments(path: str) -> str:
    """*path* with its ``.`` and ``..`` segments resolved (RFC 3986, 5.2.4).

    >>> _without_dot_segments("/a/b/../c/./d/.."), _without_dot_segments("/../x")
    ('/a/c/', '/x')
    """
    segments = path.split("/")
    kept: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if len(kept) > 0:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", ".."):
        kept.append("")  # "/a/." is the directory "/a/"
    return segments[0] + "/" + "/".join(kept)


def redirect_url(location: str, current: str) -> str | None:
    """The URL a redirect from *current* to *location* (its ``Location``, decoded as
    `header_text` decodes it) leads to, the same on every backend: *location* without user
    info (`without_userinfo`), its path, query and fragment escaped as `canonical_part`
    escapes them, then resolved against *current* (RFC 3986: ``..`` and ``.`` segments
    removed), keeping *current*'s fragment when *location* has none (RFC 9110). None when
    it leads to no ``http`` or ``https`` URL this can read (an empty value, another scheme,
    a bad port or IPv6 address): the library then reads it, and raises its own error.

    Each library read a ``Location`` its own way: httpx sent ``|``, ``^``, ``[``, ``]``, a
    lone ``%`` and ``%2e%2e`` segments as they were, aiohttp a space in a query as ``+``,
    and requests failed on a value that was not UTF-8.

    >>> redirect_url("../b c?q=a|b", "http://example.org/x/y/z#top")
    'http://example.org/x/b%20c?q=a%7Cb#top'
    >>> redirect_url("//ann:pw@example.net/%7Eann/%2e%2e/x", "https://example.org/")
    'https://example.net/x'
    >>> redirect_url("ftp://example.org/file", "http://example.org/") is None
    True
    """
    location = without_userinfo(location.strip(" \t"))
    if not location:
        return None
    head = _REFERENCE_HEAD.match(location)
    start = head.end() if head is not None else 0
    rest, hash_, fragment = location[start:].partition("#")
    reference = location[:start] + canonical_part(rest)
    if hash_:
        reference += "#" + canonical_part(fragment)
    try:
        target = urljoin(current, reference)
        parts = urlsplit(target)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if "." in parts.path:  # urljoin leaves them in a reference with its own authority
        target = urlunsplit(parts._replace(path=_without_dot_segments(parts.path)))
    if not hash_ and not parts.fragment:
        previous = urlsplit(current).fragment
        if previous:
            target = f"{target}#{previous}"
    return target


# the headers that describe a request's body: a redirect that drops the body drops them too
BODY_HEADERS = ("Content-Type", "Content-Length", "Transfer-Encoding")


def redirect_method(method: str, status: int) -> str:
    """The method of the request that a *status* redirect of a *method* request leads to, by
    the rule of RFC 9110 and the Fetch standard (browsers, httpx's 301 and 303): a 303 turns
    any method but HEAD into GET, a 301 or 302 turns POST into GET, and every other method,
    and any method on a 307 or 308, is kept. A redirect whose method changes sends no body
    and none of `BODY_HEADERS`; one that keeps its method keeps its body.

    >>> redirect_method("POST", 302), redirect_method("PUT", 302), redirect_method("PUT", 303)
    ('GET', 'PUT', 'GET')
    """
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        return "GET"
    return method


def header_text(raw: bytes) -> str:
    """A response header value's text: UTF-8 when it is valid UTF-8, else Latin-1 (each
    byte one character), on every backend. The libraries decode non-ASCII values each their
    own way: http.client as Latin-1 (UTF-8 came out as mojibake), aiohttp as UTF-8 with
    lone surrogates for other bytes (which cannot be printed or encoded), httpx as UTF-8 or
    Latin-1 for all the headers of a response at once."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class LocalhostCookies(http.cookiejar.CookieJar):
    """A cookie jar (mixed into httpx's and requests' own) that keeps a cookie a host without
    a dot (``localhost``) set for its own name (``Domain=localhost``) as one for that host
    alone, so that it goes back to it, as aiohttp sends it.

    http.cookiejar stored that cookie, then sent it nowhere: it compares a host without a
    dot by its "effective" name, ``localhost.local``, which the domain ``.localhost`` does
    not match (its policy cannot be changed for them: both libraries copy the jar into one
    with the default policy for each request). A development server on ``localhost`` that
    names its domain lost its session cookie on those two backends only.
    """

    def make_cookies(
        self, response: Any, request: urllib.request.Request
    ) -> Sequence[http.cookiejar.Cookie]:
        cookies = super().make_cookies(response, request)
        if not any(c.domain_specified for c in cookies):  # (the usual case: no Domain)
            return cookies
        host = (urlsplit(request.get_full_url()).hostname or "").lower()
        if "." in host:
            return cookies
        return [_host_only(c, host) if c.domain.lstrip(".") == host else c for c in cookies]


def _host_only(cookie: http.cookiejar.Cookie, host: str) -> http.cookiejar.Cookie:
    """*cookie* as if it came without a ``Domain``, from *host* (a name without a dot)."""
    copy = copy_module.copy(cookie)
    copy.domain = f"{host}.local"  # (what http.cookiejar keeps for such a host's cookies)
    copy.domain_specified = False
    copy.domain_initial_dot = False
    return copy


def raw_header_items(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Header lines as a library parsed them (bytes), as the facade gives them: each name as
    the server wrote it, each value as `header_text` reads it."""
    return [(name.decode("latin-1"), header_text(value)) for name, value in raw]


def latin1_header_items(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header items a library decoded as Latin-1, their values as `header_text` reads them."""
    return [
        (name, value if value.isascii() else header_text(value.encode("latin-1")))
        for name, value in items
    ]


def current_event_loop() -> str:
    """``"asyncio"``, ``"trio"`` or ``"unknown"``: the event loop running the caller."""
    if asyncio_loop() is None:
        trio = sys.modules.get("trio")
        if trio is not None and trio.lowlevel.in_trio_run():
            return "trio"
        return "unknown"
    return "asyncio"


@dataclass(repr=False)
class ClientConfig:
    """The client-wide settings a backend is built with.

    Its ``repr`` shows no secret: credential headers (`redact_header`), cookie values and the
    *secrets* (the values backends redact from foreign error messages) are redacted.
    """

    timeout: Timeout
    limits: Limits
    headers: list[tuple[str, str]] = field(default_factory=list)
    cookies: dict[str, str] = field(default_factory=dict)
    follow_redirects: bool = True
    max_redirects: int = 20
    verify: VerifyInput = True
    # what verifies servers (None: nothing), from `verify` as the client opens (`ssl_context`)
    ssl_context: ssl.SSLContext | None = None
    proxy: str | None = None  # http://[user:password@]host:port; never one of the environment
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:
        headers = [(k, redact_text(redact_header(k, v), self.secrets)) for k, v in self.headers]
        cookies = dict.fromkeys(self.cookies, REDACTED)
        secrets = (REDACTED,) * len(self.secrets)
        return (
            f"ClientConfig(timeout={self.timeout!r}, limits={self.limits!r}, "
            f"headers={headers!r}, cookies={cookies!r}, "
            f"follow_redirects={self.follow_redirects!r}, max_redirects={self.max_redirects!r}, "
            f"verify={self.verify!r}, "
            f"proxy={None if self.proxy is None else redact_url(self.proxy)!r}, "
            f"secrets={secrets!r})"
        )


def http_error(
    cls: type[HTTPError],
    what: str,
    request: Request,
    exc: BaseException,
    secrets: tuple[str, ...] = (),
    *,
    phase: TimeoutPhase | None = None,
) -> HTTPError:
    """A facade error for *exc*, with a message that names the request but no secret.

    The caller raises it ``from exc``; *phase* is set on timeouts.
    """
    detail = redact_text(_detail(exc), secrets)
    error = cls(f"{what} for {request.method} {redact_url(request.url)}: {detail}", orig=exc)
    if isinstance(error, TimeoutException):
        error.phase = phase or "read"
    return error


def _detail(exc: BaseException) -> str:
    """What went wrong, in words: *exc*'s message, or when it has none (httpx on trio raises
    a bare ``ConnectError`` for a certificate that fails) the first one down its causes."""
    said = next((cause for cause in causes(exc) if str(cause)), None)
    if said is None:
        return type(exc).__name__
    return str(said) if said is exc else f"{type(exc).__name__}: {said}"


class TranslatingIterator(AsyncIterator[bytes]):
    """Chunks from a library's iterator, its exceptions translated by *translate*."""

    def __init__(
        self,
        source: AsyncIterator[bytes],
        errors: tuple[type[BaseException], ...],
        translate: Callable[[BaseException], HTTPError],
    ) -> None:
        self._source = source
        self._errors = errors
        self._translate = translate

    async def __anext__(self) -> bytes:
        try:
            return await self._source.__anext__()
        except self._errors as exc:
            raise self._translate(exc) from exc


class BackendStream(abc.ABC):
    """The unread body of a streamed response; *released* once its ``stream()`` block ended
    (`Response.aclose`): the body can no longer be read."""

    consumed: bool = False
    released: bool = False

    @abc.abstractmethod
    def aiter_chunks(self, chunk_size: int | None) -> AsyncIterator[bytes]:
        """The decoded body as it arrives, in chunks of about *chunk_size* bytes."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the connection; safe to call more than once."""


class HttpBackend(abc.ABC):
    """One HTTP library behind `HttpClient`.

    Life cycle: ``__init__(config)`` (no I/O), ``await aopen()``, any number of concurrent
    `send` / `send_stream` calls, ``await aclose()``. A backend that runs on asyncio only sets
    ``trio = False``; the client refuses it under trio with `Unsupported`.
    """

    name: ClassVar[str]
    trio: ClassVar[bool] = True

    def __init__(self, config: ClientConfig) -> None:
        self.config = config

    @abc.abstractmethod
    async def aopen(self) -> None:
        """Create the library's session or client (any blocking setup runs in a thread)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close every connection."""

    @abc.abstractmethod
    async def send(self, request: Request) -> Response:
        """Send *request* and return its response with the body read."""

    @abc.abstractmethod
    async def send_stream(self, request: Request) -> Response:
        """Send *request* and return its response once the headers are in; the body is a
        `BackendStream` the caller reads and closes."""

    def timeout_for(self, request: Request) -> Timeout:
        """The request's own timeout, else the client's."""
        return request.timeout if request.timeout is not None else self.config.timeout

    def follow_for(self, request: Request) -> bool:
        """Whether to follow redirects for *request*."""
        if request.follow_redirects is None:
            return self.config.follow_redirects
        return request.follow_redirects
