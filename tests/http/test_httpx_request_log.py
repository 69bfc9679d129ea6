"""httpx logs every request's URL at INFO; through the httpx backend, a token in the query
or a password in the URL must not reach the log (DESIGN: no secret in a log line)."""

from __future__ import annotations

import logging

import pytest

from asyncify_kit.http import HttpClient

from .conftest import ServerInfo

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_request_log_line_carries_no_secret(
    http_server: ServerInfo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    base = http_server.url.replace("http://", "http://ann:pw-Zk9SECRET@")
    async with HttpClient(base, backend="httpx", retries=0) as http:
        r = await http.get("/echo", params={"access_token": "tok-Zk9SECRET", "page": 2})
        assert r.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("HTTP Request: GET" in line for line in lines), lines
    assert not [line for line in lines if "Zk9SECRET" in line], lines
    (line,) = [line for line in lines if "HTTP Request: GET" in line]
    assert "access_token=[redacted]" in line and "page=2" in line, line
    assert "@" not in line, line  # (the user info travels in the Authorization header)
