"""The values the HTTP facade hands out and takes in: `Headers`, `Timeout`, `Limits`,
`Request` and `Response`. They are the same whichever backend sent the request."""

from __future__ import annotations

import codecs
import datetime
import json as jsonlib
import math
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError, HTTPStatusError
from ._redact import redact_header, redact_url

if TYPE_CHECKING:
    from ._backends.base import BackendStream

__all__ = [
    "Headers",
    "HeadersInput",
    "Limits",
    "Request",
    "Response",
    "Timeout",
    "TimeoutInput",
]

# the line endings of aiter_lines: only these (str.splitlines also splits on \x0b, \x0c,
# \x1c-\x1e, \x85, U+2028 and U+2029, which may sit inside an NDJSON record or an SSE field)
_LINE_END = re.compile(r"\r\n|\r|\n")

_REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    418: "I'm a Teapot",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def header_text_of(part: object, name: object = None) -> str:
    """A header's name (or, with *name*, its value) as text: bytes as Latin-1 (a request
    then refuses what is not ASCII, as for text), a number as its digits. ``None`` is a
    `ConfigError`: bytes went out as their ``repr`` (``b'...'``) and ``None`` as the text
    "None" (requests leaves such a header out, httpx raises ``TypeError``)."""
    if isinstance(part, str):
        return part
    if isinstance(part, (bytes, bytearray)):
        return bytes(part).decode("latin-1")
    if part is None:
        what = "a header name" if name is None else f"the value of header {name!r}"
        raise ConfigError(f"{what} is None; leave the header out instead")
    return str(part)


def _header_pair(key: object, value: object) -> tuple[str, str]:
    name = header_text_of(key)
    return name, header_text_of(value, name)


class Headers(Mapping[str, str]):
    """Case-insensitive, multi-valued HTTP headers, in the order received.

    ``headers["set-cookie"]`` joins repeated values with ``", "``; `get_list` returns each one.
    The values of credential headers (``Authorization``, ``Cookie`` ...) never show in ``repr``.

    >>> h = Headers([("Vary", "Accept"), ("vary", "Origin")])
    >>> h["VARY"], h.get_list("vary")
    ('Accept, Origin', ['Accept', 'Origin'])
    """

    __slots__ = ("_index", "_items")

    def __init__(self, headers: HeadersInput | None = None) -> None:
        items: list[tuple[str, str]]
        if headers is None:
            items = []
        elif isinstance(headers, Headers):
            items = headers.multi_items()
        else:
            pairs = headers.items() if isinstance(headers, Mapping) else headers
            items = [
                (key, value)
                if type(key) is str and type(value) is str
                else _header_pair(key, value)
                for key, value in pairs
            ]
        self._items: list[tuple[str, str]] = items
        self._index: dict[str, list[str]] | None = None

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, value in self._items:
                index.setdefault(key.lower(), []).append(value)
            self._index = index
        return index

    def __getitem__(self, name: str) -> str:
        values = self._lookup().get(name.lower())
        if values is None:
            raise KeyError(name)
        return values[0] if len(values) == 1 else ", ".join(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self._lookup())

    def get_list(self, name: str) -> list[str]:
        """Every value of header *name*, in order (``[]`` when absent)."""
        return list(self._lookup().get(name.lower(), ()))

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair as received, repeated names included."""
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._lookup() == other._lookup()
        if isinstance(other, Mapping):
            return self == Headers(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        # a Location (say) may hold a password or a secret query parameter too
        shown = [(k, redact_url(redact_header(k, v))) for k, v in self._items]
        return f"Headers({shown!r})"


HeadersInput = (
    Headers
    | Mapping[str, str | bytes]
    | Mapping[bytes, str | bytes]
    | Iterable[tuple[str | bytes, str | bytes]]
)


def _seconds(value: object, what: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or (math.isinf(value))
    ):
        raise ConfigError(f"invalid {what} timeout {value!r}; accepted: seconds > 0, or None")
    return float(value)


_UNSET: Any = object()


@dataclass(frozen=True)
class Timeout:
    """Timeouts in seconds, split by phase; ``None`` means no limit for that phase.

    *connect*: establishing the connection; *read*: waiting for each piece of the response;
    *write*: sending each piece of the request; *pool*: waiting for a free connection.

    >>> Timeout(10, connect=2)
    Timeout(connect=2.0, read=10.0, write=10.0, pool=10.0)

    The requests backend gives each piece of a request body the connect timeout (urllib3
    sends with it), not the write timeout.
    """

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None

    def __init__(
        self,
        default: float | None = _UNSET,
        *,
        connect: float | None = _UNSET,
        read: float | None = _UNSET,
        write: float | None = _UNSET,
        pool: float | None = _UNSET,
    ) -> None:
        base = 10.0 if default is _UNSET else _seconds(default, "default")
        for name, value in (("connect", connect), ("read", read), ("write", write), ("pool", pool)):
            object.__setattr__(self, name, base if value is _UNSET else _seconds(value, name))

    @classmethod
    def coerce(cls, value: TimeoutInput) -> Timeout:
        """A `Timeout` from a number (every phase), ``None`` (no limits) or a `Timeout`."""
        if isinstance(value, Timeout):
            return value
        if value is None or isinstance(value, (int, float)):
            return cls(value)
        raise ConfigError(
            f"invalid timeout {value!r}; accepted: seconds > 0, None or asyncify_kit.http.Timeout"
        )

    def __repr__(self) -> str:
        return (
            f"Timeout(connect={self.connect}, read={self.read}, write={self.write}, "
            f"pool={self.pool})"
        )


TimeoutInput = Timeout | float | None


@dataclass(frozen=True)
class Limits:
    """Connection-pool limits: at most *max_connections* open at once, *max_keepalive* of them
    kept idle for reuse, each idle one closed after *keepalive_expiry* seconds.

    >>> Limits(max_connections=200)
    Limits(max_connections=200, max_keepalive=20, keepalive_expiry=5.0)
    """

    max_connections: int = 100
    max_keepalive: int = 20
    keepalive_expiry: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_keepalive"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"invalid {name} {value!r}; accepted: an integer >= 1")
        expiry = self.keepalive_expiry
        if isinstance(expiry, bool) or not isinstance(expiry, (int, float)) or expiry < 0:
            raise ConfigError(f"invalid keepalive_expiry {expiry!r}; accepted: seconds >= 0")


class HeaderList(list[tuple[str, str]]):
    """The ``(name, value)`` pairs of `Request.headers`: a plain list, except that its
    ``repr`` hides credentials as that of `Headers` does (it showed a bearer token, or the
    Basic credentials made of a URL's password, to whoever printed or logged it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr([(k, redact_url(redact_header(k, v))) for k, v in self])


class Request:
    """One request as the facade hands it to a backend: method, absolute URL (without user
    info), extra headers (a `HeaderList`), encoded body and per-request settings."""

    __slots__ = ("content", "cookies", "follow_redirects", "headers", "method", "timeout", "url")

    def __init__(
        self,
        method: str,
        url: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        content: bytes | None = None,
        cookies: dict[str, str] | None = None,
        timeout: Timeout | None = None,
        follow_redirects: bool | None = None,
    ) -> None:
        self.method = method
        self.url = url
        if headers is not None and type(headers) is not HeaderList:
            headers = HeaderList(headers)
        self.headers: list[tuple[str, str]] | None = headers
        self.content = content
        self.cookies = cookies
        self.timeout = timeout
        self.follow_redirects = follow_redirects

    def __repr__(self) -> str:
        return f"<Request [{self.method} {redact_url(self.url)}]>"


def _is_text_encoding(name: str) -> bool:
    """Whether bytes can be decoded to text with codec *name*, errors replaced: not for an
    unknown name, nor for the codecs of bytes to bytes (``hex``, ``base64``, ``rot13``,
    a `LookupError` from ``bytes.decode``) or the few that refuse ``errors="replace"``."""
    try:
        b"\x00".decode(name, errors="replace")
    except (LookupError, UnicodeError):
        return False
    return True


def _charset(content_type: str | None) -> str | None:
    if not content_type or "charset" not in content_type.lower():
        return None  # most JSON APIs send none: no header parse for each json()
    msg = Message()
    msg["content-type"] = content_type
    charset = msg.get_param("charset")
    if isinstance(charset, str) and _is_text_encoding(charset):
        return charset
    return None


class Response:
    """An HTTP response, the same for every backend.

    A response from `HttpClient.request` (and `get`, `post` ...) has its body read; one from
    `HttpClient.stream` is read with `aiter_bytes`, `aiter_text`, `aiter_lines` or `aread`.

    >>> r = await http.get("/items")
    >>> r.status_code, r.headers["content-type"], r.json()
    """

    __slots__ = (
        "_content",
        "_elapsed",
        "_encoding",
        "_header_items",
        "_headers",
        "_reason",
        "_stream",
        "request",
        "status_code",
        "url",
    )

    def __init__(
        self,
        status_code: int,
        *,
        headers: HeadersInput | Callable[[], Iterable[tuple[str, str]]] | None = None,
        content: bytes | None = None,
        url: str = "",
        request: Request | None = None,
        elapsed: datetime.timedelta | None = None,
        reason_phrase: str | None = None,
        stream: BackendStream | None = None,
    ) -> None:
        self.status_code = status_code
        self._headers: Headers | None = None
        self._header_items: Callable[[], Iterable[tuple[str, str]]] | None = None
        if callable(headers):
            self._header_items = headers
        else:
            self._headers = Headers(headers)
        self._content = content if content is not None or stream is not None else b""
        self._stream = stream
        self.url = url
        self.request = request
        self._elapsed: datetime.timedelta | float = elapsed if elapsed is not None else 0.0
        self._reason = reason_phrase
        self._encoding: str | None = None

    @classmethod
    def from_backend(
        cls,
        status_code: int,
        header_items: Callable[[], Iterable[tuple[str, str]]],
        content: bytes | None,
        url: str,
        request: Request,
        elapsed: float,
        reason_phrase: str | None,
        stream: BackendStream | None = None,
    ) -> Response:
        """The fast constructor backends use: headers are converted only when read, and
        *elapsed* is in seconds."""
        self = cls.__new__(cls)
        self.status_code = status_code
        self._headers = None
        self._header_items = header_items
        self._content = content
        self._stream = stream
        self.url = url
        self.request = request
        self._elapsed = elapsed
        self._reason = reason_phrase
        self._encoding = None
        return self

    @property
    def elapsed(self) -> datetime.timedelta:
        """The time from sending the request to receiving the response (for a streamed
        response: its headers)."""
        elapsed = self._elapsed
        if not isinstance(elapsed, datetime.timedelta):
            elapsed = self._elapsed = datetime.timedelta(seconds=elapsed)
        return elapsed

    @property
    def reason_phrase(self) -> str:
        """The reason phrase sent by the server, else the standard one for the status."""
        return self._reason or _REASONS.get(self.status_code, "")

    @property
    def headers(self) -> Headers:
        """The response headers (case-insensitive, multi-valued)."""
        headers = self._headers
        if headers is None:
            assert self._header_items is not None  # set in __init__ when headers is None
            headers = self._headers = Headers(list(self._header_items()))
        return headers

    @property
    def content(self) -> bytes:
        """The whole body; for a streamed response only after `aread`."""
        if self._content is None:
            raise RuntimeError(
                "the body of a streamed response is not read yet; call `await response.aread()`"
                " or iterate it with `aiter_bytes()`"
            )
        return self._content

    @property
    def encoding(self) -> str:
        """What `text`, `aiter_text` and `json` decode with: the encoding set here, else the
        charset of the ``Content-Type`` header, else ``utf-8``.

        Set it when the server declares no charset, or a wrong one (requests reads ``text/*``
        without a charset as ISO-8859-1; for its result, ``r.encoding = "iso-8859-1"``). It
        takes effect for every later read, `text` included: nothing decoded is kept (httpx
        refuses the change once ``text`` was read). A name Python cannot decode text with is
        a `ConfigError`.
        """
        return self._encoding or _charset(self.headers.get("content-type")) or "utf-8"

    @encoding.setter
    def encoding(self, value: str) -> None:
        if not isinstance(value, str) or not _is_text_encoding(value):
            raise ConfigError(
                f"invalid encoding {value!r}; accepted: the name of a text encoding Python"
                " knows, such as 'utf-8' or 'iso-8859-1'"
            )
        self._encoding = value

    @property
    def text(self) -> str:
        """The body decoded with `encoding` (undecodable bytes become U+FFFD)."""
        return self.content.decode(self.encoding, errors="replace")

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON (``json.loads`` keyword arguments are passed on).

        The body is decoded with the `encoding` set, else the charset of ``Content-Type``, as
        requests does; without either, UTF-8, -16 or -32 is told from its first bytes (RFC
        8259, as ``json.loads`` does with bytes). A body that is not JSON, or not text in
        that encoding, raises `json.JSONDecodeError` (a `ValueError`), never U+FFFD in the
        data.
        """
        content = self.content
        encoding = self._encoding or _charset(self.headers.get("content-type"))
        if encoding is None:
            encoding = jsonlib.detect_encoding(content)
        try:
            # "surrogatepass" as json.loads(bytes) has it: a lone surrogate reaches the parser
            text = content.decode(encoding, errors="surrogatepass")
        except UnicodeDecodeError as exc:
            raise _undecodable_json(exc) from exc
        # a byte order mark, which json.loads refuses in text (RFC 8259 allows ignoring it)
        return jsonlib.loads(text.removeprefix("\ufeff"), **kwargs)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    def raise_for_status(self) -> Response:
        """Raise `HTTPStatusError` (with ``.response``) for a 4xx or 5xx; else return self."""
        if self.status_code < 400:
            return self
        kind = "client error" if self.status_code < 500 else "server error"
        method = self.request.method if self.request is not None else "request"
        raise HTTPStatusError(
            f"{kind} '{self.status_code} {self.reason_phrase}' for {method} {redact_url(self.url)}",
            response=self,
        )

    async def aread(self) -> bytes:
        """Read the rest of a streamed body into `content` and return it."""
        if self._content is None:
            self._content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self._content

    def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive (of *chunk_size* bytes, except the last, if
        given); a body already read is replayed from memory."""
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            # 0 or less made a streamed body an endless run of empty chunks, and a read one
            # empty (-1); a float failed inside each library with its own TypeError
            raise ConfigError(f"invalid chunk_size {chunk_size!r}; accepted: an integer >= 1")
        if self._content is not None:
            step = chunk_size or max(len(self._content), 1)
            chunks = [self._content[i : i + step] for i in range(0, len(self._content), step)]
            return _ReplayIterator(chunks)
        stream = self._stream
        if stream is not None and stream.released:
            raise _released_error()
        if stream is None or stream.consumed:
            raise RuntimeError("the body of this streamed response was already consumed")
        stream.consumed = True
        return _ChunkIterator(stream, chunk_size)

    def aiter_text(self, chunk_size: int | None = None) -> AsyncIterator[str]:
        """The body decoded incrementally with `encoding`."""
        return _TextIterator(self.aiter_bytes(chunk_size), self.encoding)

    def aiter_lines(self) -> AsyncIterator[str]:
        """The body decoded and split into lines (``\\n``, ``\\r\\n`` or ``\\r``), without the
        line endings. Only those end a line: a U+2028 or a form feed stays in it."""
        return _LineIterator(self.aiter_text())

    async def aclose(self) -> None:
        """Release the connection of a streamed response (done by leaving ``stream()``)."""
        stream = self._stream
        if stream is not None:
            stream.released = True
            await stream.aclose()

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}]>"


def _undecodable_json(exc: UnicodeDecodeError) -> jsonlib.JSONDecodeError:
    """The error of `Response.json` for a body that is not text in its encoding: a
    `json.JSONDecodeError` like any body that is not JSON (a bare `UnicodeDecodeError`
    escaped the ``except json.JSONDecodeError`` clauses written for that), pointing at the
    first undecodable byte."""
    body, start = exc.object, exc.start
    doc = body.decode(exc.encoding, errors="replace")
    pos = len(body[:start].decode(exc.encoding, errors="replace"))
    return jsonlib.JSONDecodeError(f"the body is not valid {exc.encoding} ({exc.reason})", doc, pos)


def _released_error() -> RuntimeError:
    """A read of a streamed body after its ``stream()`` block ended: each library failed its
    own way (httpx's ``StreamClosed``, a `TransportError`, or an empty body)."""
    return RuntimeError(
        "the body of this streamed response can no longer be read: its `stream()` block has "
        "ended; read it inside the block (`await response.aread()`, `aiter_bytes()` ...)"
    )


class _ReplayIterator(AsyncIterator[bytes]):
    """The chunks of a body already in memory."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = iter(chunks)

    async def __anext__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None


class _ChunkIterator(AsyncIterator[bytes]):
    """A streamed body, re-cut to *chunk_size* if given.

    A class rather than an async generator: an iteration left early (``break``) is then
    cleaned up by closing the stream, with no "async generator was garbage collected" warning.
    """

    def __init__(self, stream: BackendStream, chunk_size: int | None) -> None:
        self._stream = stream
        self._source = stream.aiter_chunks(chunk_size)
        self._size = chunk_size
        self._buffer = bytearray()
        self._done = False

    async def __anext__(self) -> bytes:
        if self._stream.released and not self._done:
            self._done = True
            raise _released_error()
        size = self._size
        while not self._done:
            if size is not None and len(self._buffer) >= size:
                chunk = bytes(self._buffer[:size])
                del self._buffer[:size]
                return chunk
            try:
                data = await self._source.__anext__()
            except StopAsyncIteration:
                self._done = True
                break
            except BaseException:
                self._done = True
                await self._stream.aclose()
                raise
            if size is None:
                if data:
                    return data
            else:
                self._buffer += data
        if self._buffer:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            return chunk
        await self._stream.aclose()
        raise StopAsyncIteration


class _TextIterator(AsyncIterator[str]):
    def __init__(self, source: AsyncIterator[bytes], encoding: str) -> None:
        self._source = source
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._done = False

    async def __anext__(self) -> str:
        while not self._done:
            try:
                chunk = await self._source.__anext__()
            except StopAsyncIteration:
                self._done = True
                tail: str = self._decoder.decode(b"", final=True)
                if tail:
                    return tail
                break
            text: str = self._decoder.decode(chunk)
            if text:
                return text
        raise StopAsyncIteration


class _LineIterator(AsyncIterator[str]):
    """The lines of a text stream. The unfinished line is kept in pieces and each chunk is
    scanned once, so a long line over many chunks, or many lines in one, cost linear time."""

    def __init__(self, source: AsyncIterator[str]) -> None:
        self._source = source
        self._ready: deque[str] = deque()
        self._parts: list[str] = []  # the unfinished line; the last may end with a held "\r"
        self._done = False

    async def __anext__(self) -> str:
        ready, parts = self._ready, self._parts
        while not ready:
            if self._done:
                raise StopAsyncIteration
            try:
                text = await self._source.__anext__()
            except StopAsyncIteration:
                self._done = True
                if parts:
                    line = "".join(parts)
                    parts.clear()
                    ready.append(line[:-1] if line[-1:] == "\r" else line)
                continue
            if not text:
                continue
            if parts and parts[-1][-1:] == "\r":  # held back: "\r" + "\n" is one ending
                held = parts.pop()
                if len(held) > 1:
                    parts.append(held[:-1])
                text = "\r" + text
            start = 0
            for match in _LINE_END.finditer(text):
                if match.end() == len(text) and match[0] == "\r":
                    break  # a "\n" may follow this "\r" in the next chunk: one line ending
                parts.append(text[start : match.start()])
                ready.append("".join(parts))
                parts.clear()
                start = match.end()
            if start < len(text):
                parts.append(text[start:])
        return ready.popleft()
