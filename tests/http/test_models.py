"""Unit tests of the HTTP facade's values: headers, timeouts, retry policy, responses,
redaction, and the exported names."""

from __future__ import annotations

import datetime
import email.utils
import logging
from collections.abc import AsyncIterator

import anyio.lowlevel
import pytest

import asyncify_kit.http as http_module
from asyncify_kit.exceptions import ConfigError, HTTPStatusError, TimeoutException
from asyncify_kit.http import (
    BackendStream,
    ClientConfig,
    Headers,
    HttpClient,
    Limits,
    Request,
    Response,
    Retry,
    Timeout,
    parse_retry_after,
)
from asyncify_kit.http._backends.base import canonical_url, without_userinfo
from asyncify_kit.http._redact import redact_text, redact_url

from .conftest import ServerInfo


def test_exported_names() -> None:
    public = {name for name in dir(http_module) if not name.startswith("_")}
    assert sorted(http_module.__all__) == http_module.__all__
    assert set(http_module.__all__) <= public
    for name in http_module.__all__:
        value = getattr(http_module, name)
        if isinstance(value, type) or type(value).__name__ == "function":
            assert value.__module__.startswith("asyncify_kit"), name


def test_headers_case_insensitive_multi_valued() -> None:
    h = Headers([("Set-Cookie", "a=1"), ("X-One", "1"), ("set-cookie", "b=2")])
    assert h["SET-COOKIE"] == "a=1, b=2"
    assert h.get_list("Set-cookie") == ["a=1", "b=2"]
    assert h.get_list("nope") == []
    assert "x-one" in h and "X-ONE" in h
    assert len(h) == 2
    assert list(h) == ["set-cookie", "x-one"]
    assert h.multi_items()[0] == ("Set-Cookie", "a=1")
    assert h == {"x-one": "1", "set-cookie": "a=1, b=2"} or h == Headers(h)
    assert Headers({"A": "1"}) == Headers([("a", "1")])
    with pytest.raises(KeyError):
        h["missing"]


def test_headers_repr_redacts_credentials() -> None:
    h = Headers(
        {
            "Authorization": "Bearer tok-123",
            "Cookie": "sid=abc",
            "Accept": "x/y",
            "Proxy-Authorization": "Basic cHJveHk=",
        }
    )
    text = repr(h)
    for secret in ("tok-123", "sid=abc", "cHJveHk="):
        assert secret not in text
    assert "x/y" in text


def test_headers_repr_redacts_url_passwords() -> None:
    h = Headers([("Location", "http://bob:pw-555@example.org/x?token=tok-6&page=2")])
    assert "pw-555" not in repr(h) and "tok-6" not in repr(h) and "page=2" in repr(h)
    assert h["location"] == "http://bob:pw-555@example.org/x?token=tok-6&page=2"


@pytest.mark.parametrize(
    ("location", "followed"),
    [
        ("http://bob:pw@example.org:8080/x?y=1#z", "http://example.org:8080/x?y=1#z"),
        ("HTTPS://bob@example.org/x", "HTTPS://example.org/x"),
        ("//bob:pw@example.org/x", "//example.org/x"),
        ("http://a@b:pw@example.org/x", "http://example.org/x"),  # to the last "@"
        ("http://bob:pw@[::1]:8080/", "http://[::1]:8080/"),
        ("http://example.org/a@b", "http://example.org/a@b"),  # "@" in the path
        ("http://example.org?to=a@b", "http://example.org?to=a@b"),  # and in the query
        ("/next@x", "/next@x"),
        ("next", "next"),
    ],
)
def test_redirect_location_without_userinfo(location: str, followed: str) -> None:
    assert without_userinfo(location) == followed


def test_timeout() -> None:
    assert Timeout(3) == Timeout(connect=3, read=3, write=3, pool=3)
    t = Timeout(10, connect=2, pool=None)
    assert (t.connect, t.read, t.write, t.pool) == (2.0, 10.0, 10.0, None)
    assert Timeout.coerce(None) == Timeout(None)
    assert Timeout.coerce(5) == Timeout(5)
    assert Timeout.coerce(t) is t
    assert Timeout().read == 10.0
    for bad in (0, -1, float("inf"), True, "5"):
        with pytest.raises(ConfigError):
            Timeout(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Timeout.coerce("slow")  # type: ignore[arg-type]


def test_limits() -> None:
    assert Limits().max_connections == 100
    with pytest.raises(ConfigError):
        Limits(max_connections=0)
    with pytest.raises(ConfigError):
        Limits(keepalive_expiry=-1)


def test_retry_policy() -> None:
    policy = Retry(3, backoff_factor=0.5, backoff_max=1.5, jitter=0.5)
    assert policy.allows("GET", None) and policy.allows("PUT", None)
    assert not policy.allows("POST", None) and not policy.allows("PATCH", None)
    assert policy.allows("POST", True)
    assert not policy.allows("GET", False)
    assert not Retry(0).allows("GET", True)
    assert Retry(2, methods=Retry.ALL_METHODS).allows("POST", None)
    for _ in range(200):
        assert 0.25 <= policy.backoff(1) <= 0.5
        assert 0.5 <= policy.backoff(2) <= 1.0
        assert 0.75 <= policy.backoff(5) <= 1.5  # capped by backoff_max
    assert Retry(1, jitter=0).backoff(3) == 2.0
    assert policy.wait_for(1, "7") == 7.0
    assert Retry(1, max_retry_after=2).wait_for(1, "7") == 2.0
    assert 0.25 <= policy.wait_for(1, "not a date") <= 0.5
    assert Retry(1, respect_retry_after=False, jitter=0).wait_for(1, "7") == 0.5
    timeout = TimeoutException("x")
    timeout.phase = "write"
    assert not policy.should_retry_error(timeout)
    timeout.phase = "read"
    assert policy.should_retry_error(timeout)
    assert Retry.coerce(None).total == 0 and Retry.coerce(4).total == 4
    for bad in (-1, True, "3"):
        with pytest.raises(ConfigError):
            Retry.coerce(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Retry(1, jitter=2)


def test_parse_retry_after() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
    later = email.utils.format_datetime(now + datetime.timedelta(seconds=90), usegmt=True)
    earlier = email.utils.format_datetime(now - datetime.timedelta(seconds=90), usegmt=True)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 3 ") == 3.0
    assert parse_retry_after(later, now=now) == 90.0
    assert parse_retry_after(earlier, now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


async def _lines(response: Response) -> list[str]:
    return [line async for line in response.aiter_lines()]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_response_from_memory(anyio_backend: str) -> None:
    r = Response(
        404,
        headers={"Content-Type": "application/json; charset=utf-8"},
        content=b'{"a": "\xc3\xa9"}',
        url="https://u:pw@h/x",
        request=Request("GET", "https://u:pw@h/x"),
    )
    assert r.json() == {"a": "é"}
    assert r.text == '{"a": "é"}'
    assert r.reason_phrase == "Not Found" and r.is_error and not r.is_success
    assert [c async for c in r.aiter_bytes(4)][:2] == [b'{"a"', b': "\xc3']
    with pytest.raises(HTTPStatusError) as info:
        r.raise_for_status()
    assert info.value.response is r
    assert "pw" not in str(info.value) and "404 Not Found" in str(info.value)
    assert "pw" not in repr(r.request)
    lines = Response(200, content=b"a\r\nb\rc\n\nd")
    assert await _lines(lines) == ["a", "b", "c", "", "d"]
    assert Response(200, content=b"\xff", headers={"content-type": "text/plain"}).text == "\ufffd"
    bogus = Response(200, content=b"x", headers={"content-type": "text/plain; charset=nope"})
    assert bogus.encoding == "utf-8"


class ChunkStream(BackendStream):
    """A streamed body cut into the given chunks, as a backend would hand them over."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.closed = False

    def aiter_chunks(self, chunk_size: int | None) -> AsyncIterator[bytes]:
        return _ReplayChunks(self._chunks)

    async def aclose(self) -> None:
        self.closed = True


class _ReplayChunks(AsyncIterator[bytes]):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = iter(chunks)

    async def __anext__(self) -> bytes:
        await anyio.lowlevel.checkpoint()
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None


async def _streamed_lines(chunks: list[bytes]) -> list[str]:
    stream = ChunkStream(chunks)
    response = Response(200, headers={"content-type": "text/plain; charset=utf-8"}, stream=stream)
    lines = await _lines(response)
    assert stream.closed
    return lines


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aiter_lines_line_endings(anyio_backend: str) -> None:
    body = 'a\r\n{"s":"x\u2028y\u2029z\x85"}\rb\x0bc\x0cd\x1ce\x1df\x1eg\n\r\nh\r'.encode()
    expected = ["a", '{"s":"x\u2028y\u2029z\x85"}', "b\x0bc\x0cd\x1ce\x1df\x1eg", "", "h"]
    assert await _streamed_lines([body]) == expected
    assert await _lines(Response(200, content=body)) == expected
    # the same lines however the body is cut: one "\r\n" over two chunks is one line ending
    for cut in range(1, len(body)):
        assert await _streamed_lines([body[:cut], body[cut:]]) == expected, cut
    assert await _streamed_lines([body[i : i + 1] for i in range(len(body))]) == expected
    assert await _streamed_lines([b"one\r", b"\n", b"\r", b"two"]) == ["one", "", "two"]
    assert await _streamed_lines([b"\r"]) == [""]
    assert await _streamed_lines([b"x\n"]) == ["x"]
    assert await _streamed_lines([]) == []


def test_redact_functions() -> None:
    assert redact_url("https://ann:pw@example.org/a") == "https://ann:[redacted]@example.org/a"
    assert redact_url("https://example.org/a@b") == "https://example.org/a@b"
    text = redact_text(
        "GET http://u:p4ss@h/ Authorization: Bearer abc.def, cookie=sid=1", ["topsecret"]
    )
    assert "p4ss" not in text and "abc.def" not in text and "sid=1" not in text
    assert redact_text("the topsecret value", ["topsecret"]) == "the [redacted] value"


def test_redact_query_parameters() -> None:
    # the names asyncify_kit._config.is_secret_option calls secret, in any case, %-encoded too
    url = (
        "https://h/x?page=2&access_token=t1&Client_Secret=t2;api_key=t3&apikey=t4"
        "&X-Amz-Security-Token=t5&password=p%26q&access%5Ftoken=t6&key=visible#frag"
    )
    assert redact_url(url) == (
        "https://h/x?page=2&access_token=[redacted]&Client_Secret=[redacted];api_key=[redacted]"
        "&apikey=[redacted]&X-Amz-Security-Token=[redacted]&password=[redacted]"
        "&access%5Ftoken=[redacted]&key=visible#frag"
    )
    assert redact_url("https://u:pw@h/x?token=abc") == "https://u:[redacted]@h/x?token=[redacted]"
    assert redact_url("https://h/x?token=&token") == "https://h/x?token=&token"
    assert redact_url("https://h/x?q=token") == "https://h/x?q=token"
    presigned = "https://b.s3/k?X-Amz-Credential=AKIA%2Fx&X-Amz-Signature=ab12&sig=cd34"
    assert redact_url(presigned) == (
        "https://b.s3/k?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]&sig=[redacted]"
    )
    # in free text the value ends at a space or a quote too
    text = redact_text(
        "Max retries exceeded with url: /x?page=1&token=t1 (Caused by ...); "
        "url='http://h/y?api_key=t2', <http://h/z?secret=t3>"
    )
    assert text == (
        "Max retries exceeded with url: /x?page=1&token=[redacted] (Caused by ...); "
        "url='http://h/y?api_key=[redacted]', <http://h/z?secret=[redacted]>"
    )


def test_client_config_repr_redacts_secrets() -> None:
    http = HttpClient(
        "https://ann:hunter22@example.org/api",
        backend="httpx",
        headers=[("Proxy-Authorization", "Basic proxy-555"), ("X-Trace", "t-1")],
        cookies={"sid": "sid-777"},
    )
    built = http._config  # the ClientConfig the backend is built with (backend.config)
    config = ClientConfig(
        Timeout(5),
        Limits(),
        headers=[("Authorization", "Bearer tok-999"), ("X-Api-Key", "key-444"), ("X", "y")],
        cookies={"sid": "sid-777"},
        secrets=("tok-999", "key-444", "sid-777"),
    )
    secrets = ["hunter22", "YW5uOmh1bnRlcjIy", "proxy-555", "sid-777", "tok-999", "key-444"]
    for value in (built, config):
        text = repr(value)
        assert text.startswith("ClientConfig(timeout=Timeout(connect=")
        for secret in secrets:
            assert secret not in text, text
    assert "('X-Trace', 't-1')" in repr(built) and "'sid': '[redacted]'" in repr(built)
    assert "('X', 'y')" in repr(config) and "max_redirects=20" in repr(config)
    assert "secrets=('[redacted]', '[redacted]', '[redacted]')" in repr(config)


def test_client_repr_and_validation() -> None:
    http = HttpClient(
        "https://ann:hunter22@example.org/api",
        backend="httpx",
        headers={"Authorization": "Bearer tok-999"},
    )
    assert "hunter22" not in repr(http) and "tok-999" not in repr(http)
    assert http.base_url == "https://example.org/api/"
    with pytest.raises(ConfigError):
        HttpClient("https://example.org/?q=1")
    with pytest.raises(ConfigError, match="ftp") as info:
        HttpClient("ftp://ann:hunter22@example.org")
    assert "hunter22" not in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("backend", ["httpx", "aiohttp", "requests"])
async def test_secrets_never_leak(
    http_server: ServerInfo,
    backend: str,
    anyio_backend: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = ["hunter22", "tok-999", "sid-777", "proxy-555"]
    url = http_server.url.replace("http://", "http://ann:hunter22@")
    async with HttpClient(
        url,
        backend=backend,
        retries=Retry(1, backoff_factor=0),
        headers={"Proxy-Authorization": "Basic proxy-555"},
        cookies={"sid": "sid-777"},
    ) as http:
        texts = [repr(http)]
        r = await http.get(
            "/retry/leak-" + backend, params={"fail": 5}, headers={"X-Api-Key": "tok-999"}
        )
        texts += [repr(r), repr(r.headers), repr(r.request)]
        with pytest.raises(HTTPStatusError) as status_error:
            r.raise_for_status()
        texts += [str(status_error.value), repr(status_error.value)]
        r = await http.get("/echo", headers={"Authorization": "Bearer tok-999"})
        texts += [repr(r.request), repr(Headers(r.json()["headers"]))]
    bad = f"http://ann:hunter22@127.0.0.1:{http_server.url.rsplit(':', 1)[1]}"
    async with HttpClient(
        http_server.drop_url.replace("http://", "http://ann:hunter22@"), backend=backend, retries=0
    ) as http:
        with pytest.raises(Exception) as transport_error:
            await http.get(f"{bad}/slow", params={"delay": 2}, timeout=0.2)
        texts += [str(transport_error.value), repr(transport_error.value)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    for text in texts:
        for secret in secrets:
            assert secret not in text, text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h/a?", "http://h/a"),
        ("http://h/a?#f", "http://h/a#f"),
        ("http://h?", "http://h"),
        ("http://h/a#f?", "http://h/a#f?"),  # a "?" of the fragment stays
        ("http://h/a??", "http://h/a??"),  # the query "?"
        ("http://h/a?b", "http://h/a?b"),
        ("http://h/a b?", "http://h/a%20b"),
    ],
)
def test_an_empty_query_is_none(url: str, expected: str) -> None:
    assert canonical_url(url) == expected
