"""`HttpClient`: one async HTTP client over httpx, aiohttp or a threaded requests session."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, TypedDict
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import anyio
from typing_extensions import Unpack

from .._config import BackendURL, env_setting, redact_url_text
from .._offload import checkpoint_if_cancelled, run_sync
from .._registry import BackendSpec, backends, load_backend, lookup
from ..exceptions import ConfigError, HTTPError, Unsupported
from ._backends.base import ClientConfig, HttpBackend, canonical_url, current_event_loop
from ._content import FilesInput, FormInput, encode_body, without_none
from ._models import Headers, HeadersInput, Limits, Request, Response, Timeout, TimeoutInput
from ._redact import redact_text, redact_url
from ._retry import Retry, RetryInput
from ._tls import VerifyInput, check_verify, ssl_context

__all__ = ["DEFAULT_BACKEND", "ENV_BACKEND", "HttpClient"]

logger = logging.getLogger("asyncify_kit.http")

DEFAULT_BACKEND = "httpx"
ENV_BACKEND = "ASYNCIFY_HTTP_BACKEND"

ParamsInput = Mapping[str, Any] | Iterable[tuple[str, Any]] | str
AuthInput = tuple[str, str]

_UNSET: Any = object()


class RequestOptions(TypedDict, total=False):
    """The keyword arguments of `HttpClient.request` after the method and URL."""

    params: ParamsInput | None
    headers: HeadersInput | None
    cookies: Mapping[str, str] | None
    content: bytes | str | None
    data: FormInput | None
    files: FilesInput | None
    json: Any
    timeout: TimeoutInput
    follow_redirects: bool | None
    retries: RetryInput
    idempotent: bool | None


def _basic(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


# RFC 9110 5.1 and 5.5, RFC 6265 4.1.1: what every backend sends byte for byte. The libraries
# differ on anything else (httpx raises UnicodeEncodeError for non-ASCII, aiohttp a ValueError
# for a line break, requests sends Latin-1; aiohttp quotes a cookie value with a space or a
# ";" where the others send it as is, so "1; admin=1" would add a cookie)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?")
_COOKIE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
# the attribute names of Set-Cookie, which aiohttp (http.cookies) refuses as cookie names
_COOKIE_ATTRIBUTES = frozenset(
    {"comment", "domain", "expires", "httponly", "max-age", "partitioned", "path", "samesite"}
    | {"secure", "version"}
)


def _header_items(headers: HeadersInput | None) -> list[tuple[str, str]]:
    """*headers* as pairs; a `ConfigError` for a name or value no backend may send as is
    (the message names the header, never its value)."""
    if headers is None:
        return []
    items = (headers if isinstance(headers, Headers) else Headers(headers)).multi_items()
    for name, value in items:
        if not _TOKEN.fullmatch(name):
            raise ConfigError(
                f"invalid header name {redact_text(repr(name))}: a name is letters, digits and "
                "!#$%&'*+-.^_`|~"
            )
        if not _FIELD_VALUE.fullmatch(value):
            raise ConfigError(
                f"invalid value for header {name!r}: a value may hold printable ASCII, spaces "
                "and tabs only, and neither starts nor ends with a space or tab (no line break, "
                "control or non-ASCII character; percent-encode other text)"
            )
    return items


def _method(method: str) -> str:
    """*method* in upper case; a `ConfigError` unless it is a token (``GET``, ``PROPFIND``):
    aiohttp raised a raw ValueError, httpx a TypeError for non-ASCII, and aiohttp and
    requests sent an empty method."""
    if not isinstance(method, str) or not _TOKEN.fullmatch(method):
        raise ConfigError(
            f"invalid HTTP method {redact_text(repr(method))}: a method is a word of letters, "
            "digits and !#$%&'*+-.^_`|~, such as 'GET'"
        )
    return method.upper()


def _cookie_dict(cookies: Mapping[str, str] | None) -> dict[str, str]:
    """*cookies* as a dict; a `ConfigError` naming a cookie (never its value) whose name or
    value the backends would send differently, or not at all."""
    if cookies is None:
        return {}
    if not isinstance(cookies, Mapping):
        raise ConfigError(f"invalid cookies {type(cookies).__name__}; accepted: a mapping")
    result: dict[str, str] = {}
    for name, value in cookies.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigError(
                f"invalid cookie name {redact_text(repr(name))}: a name is letters, digits and "
                "!#$%&'*+-.^_`|~"
            )
        if name.lower() in _COOKIE_ATTRIBUTES:
            raise ConfigError(
                f"invalid cookie name {name!r}: it is a cookie attribute name "
                f"({', '.join(sorted(_COOKIE_ATTRIBUTES))})"
            )
        if not isinstance(value, str) or not _COOKIE_VALUE.fullmatch(value):
            raise ConfigError(
                f"invalid value for cookie {name!r}: a value may hold printable ASCII except "
                "space, '\"', ',', ';' and '\\' (percent-encode other text)"
            )
        result[name] = value
    return result


def _cookie_header_cookies(value: str, into: dict[str, str]) -> None:
    """The cookies of one ``Cookie`` header *value* (``a=1; b=2``) added to *into*; a
    `ConfigError` (that shows no value) for what is not a list of valid name=value pairs, or
    names a cookie twice."""
    for pair in value.split(";"):
        pair = pair.strip(" \t")
        if not pair:
            continue
        name, eq, cookie = pair.partition("=")
        name, cookie = name.rstrip(" \t"), cookie.lstrip(" \t")
        if not eq or not _TOKEN.fullmatch(name):
            raise ConfigError(
                "invalid Cookie header: it must be name=value pairs separated by '; ', each "
                "name letters, digits and !#$%&'*+-.^_`|~ (or pass cookies={name: value})"
            )
        if name in into:
            raise ConfigError(f"invalid Cookie header: it gives the cookie {name!r} twice")
        into.update(_cookie_dict({name: cookie}))


def _split_cookie_header(
    items: list[tuple[str, str]],
) -> tuple[list[tuple[str, str]], dict[str, str] | None]:
    """*items* without their ``Cookie`` headers, and the cookies those gave (``None`` when
    there was no ``Cookie`` header). A ``Cookie`` header is not handed to the backends as a
    header: each library treats it its own way (httpx and requests send it instead of the
    jar's cookies and drop it on redirects, aiohttp merges it with the jar's, the jar winning)."""
    if not any(name.lower() == "cookie" for name, _ in items):
        return items, None
    cookies: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in items:
        if name.lower() == "cookie":
            _cookie_header_cookies(value, cookies)
        else:
            rest.append((name, value))
    return rest, cookies


def _split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """*url* without ``user:password@``, and the credentials it carried."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username or ""), unquote(parts.password or ""))


def _proxy_url(proxy: object) -> str | None:
    """*proxy* checked: ``http://[user:password@]host[:port]``, or None."""
    if proxy is None:
        return None
    if not isinstance(proxy, str):
        raise ConfigError(f"a proxy must be a URL string, not {type(proxy).__name__}")
    scheme = proxy.partition("://")[0].lower()
    if scheme != "http":
        raise ConfigError(
            f"invalid proxy {redact_url(proxy)!r}: accepted: http://[user:password@]host[:port] "
            "(an HTTP proxy; https:// URLs go through it in a CONNECT tunnel)"
        )
    _check_authority(proxy)
    parts = urlsplit(proxy)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"invalid proxy {redact_url(proxy)!r}: it may have no path, query or fragment"
        )
    return proxy.rstrip("/")


# an absolute URL of a scheme (``ws://``, ``ftp://``, ``htp://``): never a relative one
_OTHER_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _check_scheme(url: str) -> None:
    head = url[:8].lower()
    if not (head.startswith("http://") or head.startswith("https://")):
        raise ConfigError(
            f"cannot send a request to {redact_url(url)!r}: the URL must be absolute and start "
            "with http:// or https:// (or give the client a base_url)"
        )


def _authority_error(message: str, url: str) -> str:
    """Why urllib could not parse *url*, in words of ours: its own *message* may quote a part
    of the host or port, which a password holding "/", "?" or "#" ends up in."""
    if message.startswith("Port out of range"):
        return "its port is out of range 0-65535"
    if message.startswith("Port could not be cast"):
        reason = "its port is not a number"
    elif message.startswith("Invalid IPv6 URL"):
        reason = "Invalid IPv6 URL: a '[' or ']' is unmatched"
    else:
        reason = "its host or port cannot be parsed"
    if "@" in url:
        reason += " (a password holding '/', '?' or '#' must be percent-encoded)"
    return reason


def _check_authority(url: str) -> None:
    """A `ConfigError` for an absolute http(s) *url* whose host or port cannot be sent to
    (each library failed its own way: a raw ``ValueError``, ``httpx.InvalidURL``, an
    ``ExceptionGroup`` or a `TransportError`)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed lazily: raises for a port that is not 0-65535
        host = parts.hostname
    except ValueError as exc:
        reason = _authority_error(str(exc), url)
    else:
        # urlsplit drops tabs and newlines: look at the authority as given
        authority = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0].rpartition("@")[2]
        if not host:
            reason = "it has no host"
        elif any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in authority):
            reason = "its host contains a space or a control character"
        else:
            return
    raise ConfigError(f"invalid URL {redact_url(url)!r}: {reason}")


#: what a backend's name may be: a URL scheme (``httpx``, ``my-http+driver``), ASCII only
_BACKEND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]*(?:\+[A-Za-z][A-Za-z0-9._-]*)?")


def _shown_backend(value: str) -> str:
    """*value*, which is no backend name, as an error may show it: the variable may hold a
    proxy URL or a password set in the wrong place. A URL's password is hidden, as a backend
    URL's is; a name with white space around it (``'httpx '``, ``'httpx\\n'``) is shown,
    to point at it; any other text is not, as it may be a password."""
    if "://" in value:
        return f" {redact_url_text(value)!r}"
    if _BACKEND_NAME.fullmatch(value.strip()):
        return f" {value!r}"
    return " (not shown: it may hold a password)"


def resolve_backend(name: str | None) -> BackendSpec:
    """The registry row of backend *name* (argument > ``ASYNCIFY_HTTP_BACKEND`` > httpx);
    an unknown or malformed name is a `ConfigError` listing the known ones, which starts
    with the variable's name when the name was read from it (as a URL's errors do)."""
    source = None
    chosen: object = name
    if not name:
        chosen = env_setting(ENV_BACKEND)
        if chosen:
            source = f"environment variable {ENV_BACKEND}"
        else:
            chosen = DEFAULT_BACKEND
    origin = f"{source}: " if source else ""
    known = ", ".join(spec.scheme for spec in backends("http"))
    if not isinstance(chosen, str):
        raise ConfigError(
            f"an HTTP backend name must be a string, not {type(chosen).__name__}; known: {known}"
        )
    if not _BACKEND_NAME.fullmatch(chosen):
        raise ConfigError(
            f"{origin}invalid HTTP backend name{_shown_backend(chosen)}; known: {known}"
        )
    # (a name the pattern takes is a scheme `BackendURL.parse` takes)
    url = BackendURL.parse(f"{chosen.lower()}://").replace(source=source)
    return lookup("http", url)  # (an unknown one: a `ConfigError` starting with *origin*)


class HttpClient:
    """An async HTTP client whose library is configuration, not code.

    ``backend`` is ``"httpx"`` (default; asyncio and trio), ``"aiohttp"`` (fastest; asyncio
    only) or ``"requests"`` (a `requests.Session` in worker threads; asyncio and trio), or
    comes from ``ASYNCIFY_HTTP_BACKEND``. Whatever the backend, requests and responses,
    timeouts (`Timeout`), retries (`Retry`) and errors (the `HTTPError` tree) are the same::

        async with HttpClient("http://127.0.0.1:8000", timeout=10, retries=3) as http:
            r = await http.get("/items", params={"page": 2})
            r.raise_for_status()
            items = r.json()
            async with http.stream("GET", "/export.csv") as r:
                async for line in r.aiter_lines():
                    ...

    *auth* is ``(username, password)`` for Basic auth (a password in *base_url* works too).
    *retries* retries idempotent requests after connect errors, connect/read timeouts and
    429/502/503/504 (honouring ``Retry-After``); pass a `Retry` for more control. *verify* is
    the same trust on every backend: ``True`` (the system's CA store and certifi's bundle),
    the path of a PEM file of CA certificates (that file alone), an `ssl.SSLContext`, or
    ``False`` (no verification). *proxy*
    (``http://[user:password@]host[:port]``) sends every request through that HTTP proxy
    (https in a CONNECT tunnel); no backend reads a proxy from the environment. Credentials
    never appear in a ``repr``, a log line or an error message.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        backend: str | None = None,
        timeout: TimeoutInput = _UNSET,
        retries: RetryInput = _UNSET,
        headers: HeadersInput | None = None,
        auth: AuthInput | None = None,
        cookies: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        follow_redirects: bool = True,
        max_redirects: int = 20,
        verify: VerifyInput = True,
        proxy: str | None = None,
    ) -> None:
        self._spec = resolve_backend(backend)
        self._timeout = Timeout() if timeout is _UNSET else Timeout.coerce(timeout)
        self._retry = Retry() if retries is _UNSET else Retry.coerce(retries)
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigError(f"invalid limits {limits!r}; accepted: asyncify_kit.http.Limits")
        if (
            isinstance(max_redirects, bool)
            or not isinstance(max_redirects, int)
            or (max_redirects < 0)
        ):
            raise ConfigError(f"invalid max_redirects {max_redirects!r}; accepted: integer >= 0")
        # a Cookie header (of the client or of a request) is sent as cookies given for each
        # request: with the jar's, replacing those of the same names (see _prepare)
        default_headers, header_cookies = _split_cookie_header(_header_items(headers))
        self._header_cookies = header_cookies or {}
        secrets: list[str] = list(self._header_cookies.values())
        self._base = ""
        credentials = None
        if base_url is not None:
            _check_scheme(base_url)
            _check_authority(base_url)
            clean, credentials = _split_userinfo(base_url)
            parts = urlsplit(clean)
            if parts.query or parts.fragment:
                raise ConfigError(
                    f"base_url {redact_url(base_url)!r} may not have a query or fragment"
                )
            self._base = clean if clean.endswith("/") else clean + "/"
        if auth is not None:
            if not (
                isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(p, str) for p in auth)
            ):
                raise ConfigError("invalid auth; accepted: a (username, password) tuple")
            credentials = auth
        if credentials is not None:
            secrets.append(credentials[1])
            default_headers = [(k, v) for k, v in default_headers if k.lower() != "authorization"]
            default_headers.append(("Authorization", _basic(*credentials)))
        for name, value in default_headers:
            if name.lower() in ("authorization", "proxy-authorization"):
                secrets.append(value.split(" ", 1)[-1])
        client_cookies = _cookie_dict(cookies)
        secrets.extend(client_cookies.values())
        proxy_url = _proxy_url(proxy)
        if proxy_url is not None:
            _, proxy_credentials = _split_userinfo(proxy_url)
            if proxy_credentials is not None:
                secrets.append(proxy_credentials[1])
                secrets.append(_basic(*proxy_credentials).split(" ", 1)[1])
        self._secrets = tuple(s for s in secrets if s)
        self._config = ClientConfig(
            timeout=self._timeout,
            limits=limits or Limits(),
            headers=default_headers,
            cookies=client_cookies,
            follow_redirects=bool(follow_redirects),
            max_redirects=max_redirects,
            verify=check_verify(verify),
            proxy=proxy_url,
            secrets=self._secrets,
        )
        self._backend: HttpBackend | None = None

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """The name of the backend in use (``"httpx"``, ``"aiohttp"``, ``"requests"``)."""
        return self._spec.scheme

    @property
    def is_open(self) -> bool:
        """Whether the client is open: from the end of a successful ``async with`` entry to
        the start of `aclose` (leaving the block)."""
        return self._backend is not None

    @property
    def base_url(self) -> str:
        """The base URL, without user info (``""`` when none was given)."""
        return self._base

    async def __aenter__(self) -> HttpClient:
        if self._backend is not None:
            raise RuntimeError("this HttpClient is already open")
        if not self._spec.trio and current_event_loop() != "asyncio":
            raise Unsupported(
                f"the {self._spec.scheme} HTTP backend runs on asyncio only, but this code runs "
                f"on {current_event_loop()}; use backend='httpx' or backend='requests', "
                "which work on trio"
            )
        # the first use imports the backend's library: a blocking import, so in a thread
        _, cls = await run_sync(load_backend, "http", BackendURL.parse(f"{self._spec.scheme}://"))
        # (reads certificate files: in a thread too)
        self._config.ssl_context = await run_sync(ssl_context, self._config.verify)
        backend: HttpBackend = cls(self._config)
        await backend.aopen()
        self._backend = backend
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection; the client cannot be used until it is opened again."""
        backend, self._backend = self._backend, None
        if backend is not None:
            with anyio.CancelScope(shield=True):
                await backend.aclose()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        base = f" base_url={self._base!r}" if self._base else ""
        return f"<HttpClient backend={self.backend!r}{base} {state}>"

    # -- requests ------------------------------------------------------------------------------

    def _url(self, url: str, params: ParamsInput | None) -> tuple[str, tuple[str, str] | None]:
        if not isinstance(url, str):
            raise ConfigError(f"a URL must be a string, not {type(url).__name__}")
        credentials = None
        head = url[:8].lower()
        if head.startswith("http://") or head.startswith("https://"):
            _check_authority(url)
            if "@" in url:
                url, credentials = _split_userinfo(url)
        elif _OTHER_SCHEME.match(url):
            # with a base_url too: "ws://host/x" was sent to it, as the path "/ws://host/x"
            raise ConfigError(
                f"cannot send a request to {redact_url(url)!r}: the URL must start with "
                "http:// or https://, or be relative to the client's base_url (no scheme)"
            )
        elif self._base:
            url = self._base + url.lstrip("/")
        else:
            _check_scheme(url)
        if params:
            query = (
                params if isinstance(params, str) else urlencode(without_none(params), doseq=True)
            )
            if query:  # (params that are all None, or empty lists, add nothing)
                base, hash_, fragment = url.partition("#")
                if base.find("?") == len(base) - 1:  # an empty query ("/a?"): none
                    base = base[:-1]
                url = base + ("&" if "?" in base else "?") + query + hash_ + fragment
        return canonical_url(url), credentials

    async def _prepare(
        self,
        method: str,
        url: str,
        params: ParamsInput | None,
        headers: HeadersInput | None,
        cookies: Mapping[str, str] | None,
        content: bytes | str | None,
        data: FormInput | None,
        files: FilesInput | None,
        json: Any,
        timeout: TimeoutInput,  # noqa: ASYNC109 - the HTTP timeout handed to the backend
        follow_redirects: bool | None,
    ) -> Request:
        full_url, credentials = self._url(url, params)
        extra = _header_items(headers) if headers is not None else None
        # the cookies sent besides the jar's: those of the request's Cookie header, else of
        # the client's, then cookies= (which win over a header naming the same cookie)
        header_cookies = None
        if extra:
            extra, header_cookies = _split_cookie_header(extra)
        if header_cookies is None:
            header_cookies = self._header_cookies
        own_cookies: dict[str, str] | None = None
        if cookies is not None or header_cookies:
            own_cookies = {**header_cookies, **_cookie_dict(cookies)}
        if content is not None or data is not None or files is not None or json is not None:
            body, content_type = await encode_body(
                content=content, data=data, files=files, json=json
            )
            if content_type is not None and not any(
                k.lower() == "content-type" for k, _ in extra or ()
            ):
                extra = [*(extra or ()), ("Content-Type", content_type)]
        else:
            body = None
        if credentials is not None:
            extra = [(k, v) for k, v in extra or () if k.lower() != "authorization"]
            extra.append(("Authorization", _basic(*credentials)))
        return Request(
            _method(method),
            full_url,
            headers=extra,
            content=body,
            cookies=own_cookies,
            timeout=None if timeout is _UNSET else Timeout.coerce(timeout),
            follow_redirects=follow_redirects,
        )

    def _open_backend(self) -> HttpBackend:
        backend = self._backend
        if backend is None:
            raise RuntimeError(
                "this HttpClient is not open; use `async with HttpClient(...) as http:`"
            )
        return backend

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: ParamsInput | None = None,
        headers: HeadersInput | None = None,
        cookies: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        data: FormInput | None = None,
        files: FilesInput | None = None,
        json: Any = None,
        timeout: TimeoutInput = _UNSET,  # noqa: ASYNC109 - the HTTP timeout, per phase
        follow_redirects: bool | None = None,
        retries: RetryInput = _UNSET,
        idempotent: bool | None = None,
    ) -> Response:
        """Send one request and return its response with the body read.

        *url* is absolute or relative to *base_url*; *params* become the query string;
        *content* (bytes/str), *json*, *data* (form fields) and *files* (multipart) are the
        body. *timeout*, *follow_redirects* and *retries* override the client's for this
        request; ``idempotent=True`` lets a POST or PATCH be retried, ``False`` forbids it.

        >>> r = await http.request("POST", "/orders", json={"id": 1}, idempotent=True)
        """
        backend = self._open_backend()
        await checkpoint_if_cancelled()  # called cancelled: nothing is sent
        if (
            params is None
            and headers is None
            and cookies is None
            and content is None
            and data is None
            and files is None
            and json is None
            and timeout is _UNSET
            and follow_redirects is None
            and url[:1] == "/"
            and self._base
        ):
            # the common case, fast; joined like _url: every leading "/" goes ("//items" too)
            req = Request(
                _method(method),
                canonical_url(self._base + url.lstrip("/")),
                cookies=dict(self._header_cookies) if self._header_cookies else None,
            )
        else:
            req = await self._prepare(
                method,
                url,
                params,
                headers,
                cookies,
                content,
                data,
                files,
                json,
                timeout,
                follow_redirects,
            )
        policy = self._retry if retries is _UNSET else Retry.coerce(retries)
        if not policy.allows(req.method, idempotent):
            return await backend.send(req)
        attempt = 0
        while True:
            try:
                response = await backend.send(req)
            except HTTPError as exc:
                if attempt >= policy.total or not policy.should_retry_error(exc):
                    raise
                attempt += 1
                delay = policy.backoff(attempt)
                self._log_retry(req, str(type(exc).__name__), attempt, policy.total, delay)
            else:
                if response.status_code not in policy.statuses or attempt >= policy.total:
                    return response
                attempt += 1
                delay = policy.wait_for(attempt, response.headers.get("retry-after"))
                self._log_retry(req, str(response.status_code), attempt, policy.total, delay)
            await anyio.sleep(delay)

    def _log_retry(self, req: Request, cause: str, attempt: int, total: int, delay: float) -> None:
        logger.info(
            "retrying %s %s after %s (retry %d of %d) in %.3f s",
            req.method,
            redact_url(req.url),
            cause,
            attempt,
            total,
            delay,
        )

    @asynccontextmanager
    async def _stream(
        self,
        method: str,
        url: str,
        retries: RetryInput,
        idempotent: bool | None,
        **kwargs: Any,
    ) -> AsyncIterator[Response]:
        backend = self._open_backend()
        await checkpoint_if_cancelled()  # called cancelled: nothing is sent
        req = await self._prepare(method, url, **kwargs)
        policy = self._retry if retries is _UNSET else Retry.coerce(retries)
        retry = policy.allows(req.method, idempotent)
        attempt = 0
        while True:
            try:
                response = await backend.send_stream(req)
            except HTTPError as exc:
                if not retry or attempt >= policy.total or not policy.should_retry_error(exc):
                    raise
                attempt += 1
                delay = policy.backoff(attempt)
                self._log_retry(req, str(type(exc).__name__), attempt, policy.total, delay)
            else:
                if (
                    not retry
                    or response.status_code not in policy.statuses
                    or attempt >= policy.total
                ):
                    break
                await response.aclose()
                attempt += 1
                delay = policy.wait_for(attempt, response.headers.get("retry-after"))
                self._log_retry(req, str(response.status_code), attempt, policy.total, delay)
            await anyio.sleep(delay)
        try:
            yield response
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    def stream(
        self,
        method: str,
        url: str,
        *,
        params: ParamsInput | None = None,
        headers: HeadersInput | None = None,
        cookies: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        data: FormInput | None = None,
        files: FilesInput | None = None,
        json: Any = None,
        timeout: TimeoutInput = _UNSET,
        follow_redirects: bool | None = None,
        retries: RetryInput = _UNSET,
        idempotent: bool | None = None,
    ) -> AbstractAsyncContextManager[Response]:
        """Send a request and give its response as soon as the headers are in; read the body
        with ``aiter_bytes()``, ``aiter_text()``, ``aiter_lines()`` or ``aread()``. The
        connection is released when the block ends. Memory stays flat however large the body.

        >>> async with http.stream("GET", "/big.bin") as r:
        ...     async for chunk in r.aiter_bytes():
        ...         sink.write(chunk)
        """
        return self._stream(
            method,
            url,
            retries,
            idempotent,
            params=params,
            headers=headers,
            cookies=cookies,
            content=content,
            data=data,
            files=files,
            json=json,
            timeout=timeout,
            follow_redirects=follow_redirects,
        )

    async def get(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        """``request("GET", url, ...)``."""
        return await self.request("GET", url, **kwargs)

    async def head(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        """``request("HEAD", url, ...)``."""
        return await self.request("HEAD", url, **kwargs)

    async def options(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        """``request("OPTIONS", url, ...)``."""
        return await self.request("OPTIONS", url, **kwargs)

    async def delete(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        """``request("DELETE", url, ...)``."""
        return await self.request("DELETE", url, **kwargs)

    async def post(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        """``request("POST", url, ...)``."""
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        """``request("PUT", url, ...)``."""
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        """``request("PATCH", url, ...)``."""
        return await self.request("PATCH", url, **kwargs)
