"""Type checks of the HTTP facade's public API: checked by mypy, never executed."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

from typing_extensions import assert_type

from asyncify_kit.http import Headers, HttpClient, Response, Retry, Timeout


async def api() -> None:
    async with HttpClient(
        "http://127.0.0.1:1", timeout=Timeout(5, connect=1), retries=Retry(2)
    ) as http:
        assert_type(http, HttpClient)
        r = await http.get("/items", params={"page": 1}, headers={"X": "y"}, timeout=3)
        assert_type(r, Response)
        assert_type(r.status_code, int)
        assert_type(r.headers, Headers)
        assert_type(r.headers.get_list("set-cookie"), list[str])
        assert_type(r.content, bytes)
        assert_type(r.text, str)
        r.encoding = "iso-8859-1"
        assert_type(r.encoding, str)
        assert_type(r.json(), Any)
        assert_type(r.url, str)
        assert_type(r.elapsed, datetime.timedelta)
        assert_type(r.raise_for_status(), Response)
        await http.post("/orders", json={"id": 1}, idempotent=True, retries=0)
        async with http.stream("GET", "/big") as s:
            assert_type(s, Response)
            assert_type(s.aiter_bytes(65536), AsyncIterator[bytes])
            assert_type(s.aiter_lines(), AsyncIterator[str])
        await http.get("/x", bogus=1)  # type: ignore[call-arg]
