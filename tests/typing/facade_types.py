"""Type tests of the facades, detection and configuration: checked by mypy and pyright, never run.

Same rules as ``api_types.py``: each ``assert_type`` pins a public type, and each
``# type: ignore[...]`` must be needed (mypy's warn_unused_ignores), so a signature that
loosens fails the check too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from typing_extensions import assert_type

from asyncify_kit import BackendURL, configure
from asyncify_kit.aws import client
from asyncify_kit.detect import BlockingDetector, BlockingReport, detect_blocking
from asyncify_kit.http import HttpClient, Response, Retry, Timeout
from asyncify_kit.sql import Database, DatabaseConnection, Row, Transaction
from asyncify_kit.storage import ObjectInfo, Storage


@dataclasses.dataclass
class Item:
    id: int
    name: str


# -- SQL ------------------------------------------------------------------------------------


async def check_database() -> None:
    async with Database("sqlite:///:memory:", max_size=2) as db:
        assert_type(db, Database)
        assert_type(await db.fetch_all("select 1"), list[Row])
        assert_type(await db.fetch_all("select :id", {"id": 1}, as_=Item), list[Item])
        assert_type(await db.fetch_one("select 1"), Row | None)
        assert_type(await db.fetch_one("select 1", as_=Item), Item | None)
        assert_type(await db.execute("delete from t"), int)
        assert_type(await db.execute_many("insert into t values (:x)", [{"x": 1}]), None)
        assert_type(db.iterate("select 1", batch_size=10), AsyncGenerator[Row, None])
        async with aclosing(db.iterate("select 1", as_=Item)) as items:
            async for item in items:
                assert_type(item, Item)
        async with db.transaction(isolation="serializable", read_only=True) as tx:
            assert_type(tx, Transaction)
        db.transaction(isolation="serialisable")  # type: ignore[arg-type]  # a typo: a ConfigError
        async with db.connection() as conn:
            assert_type(conn, DatabaseConnection)
            assert_type(await conn.fetch_all("select 1"), list[Row])
        await db.fetch_all("select 1", [1])  # type: ignore[call-overload]
        await db.execute(b"select 1")  # type: ignore[arg-type]


async def check_transaction_decorator(db: Database) -> None:
    @db.transaction()
    async def transfer(cents: int) -> str:
        return str(cents)

    assert_type(await transfer(1), str)
    await transfer("1")  # type: ignore[arg-type]


def check_row(row: Row) -> None:
    assert_type(row["id"], Any)
    assert_type(row[0], Any)
    assert_type(row[0:2], tuple[Any, ...])
    assert_type(dict(row), dict[str, Any])
    assert_type(list(row), list[str])


# -- storage --------------------------------------------------------------------------------


async def check_storage() -> None:
    async with Storage("memory://") as st:
        assert_type(st, Storage)
        await st.write("a/b.txt", b"data")
        assert_type(await st.read("a/b.txt"), bytes)
        assert_type(await st.read_text("a/b.txt"), str)
        assert_type(await st.exists("a/b.txt"), bool)
        assert_type(await st.stat("a/b.txt"), ObjectInfo)
        async for chunk in st.stream("a/b.txt"):
            assert_type(chunk, bytes)
        assert_type(st.list("a/"), AsyncIterator[ObjectInfo])
        async for info in st.list("a/", recursive=False):
            assert_type(info, ObjectInfo)
        async with st.open("big.bin", "wb") as f:
            await f.write(b"chunk")
        assert_type(await st.presign("a/b.txt", expires=60), str)
        st.open("big.bin", "w")  # type: ignore[arg-type]
        await st.read(1)  # type: ignore[arg-type]


# -- HTTP -----------------------------------------------------------------------------------


async def check_http() -> None:
    async with HttpClient(
        "https://api.example.com", backend="httpx", timeout=Timeout(10, connect=2), retries=3
    ) as http:
        assert_type(http, HttpClient)
        r = await http.get("/items", params={"page": 2})
        assert_type(r, Response)
        assert_type(r.status_code, int)
        assert_type(r.content, bytes)
        assert_type(r.text, str)
        assert_type(await http.post("/items", json={"id": 1}, retries=Retry(1)), Response)
        async with http.stream("GET", "/big") as streamed:
            assert_type(streamed, Response)
            async for chunk in streamed.aiter_bytes():
                assert_type(chunk, bytes)
        await http.get("/items", parms={"page": 2})  # type: ignore[call-arg]


# -- AWS ------------------------------------------------------------------------------------


async def check_aws() -> None:
    async with client("sqs", backend="boto3", region_name="eu-west-1") as sqs:
        await sqs.list_queues()
    client("sqs", backend="botocore")  # type: ignore[arg-type]


# -- detection and configuration ------------------------------------------------------------


async def check_detection() -> None:
    with detect_blocking(mode="collect", allow=["time.sleep"]) as detector:
        assert_type(detector, BlockingDetector)
    assert_type(detector.reports[0], BlockingReport)
    detect_blocking(mode="loud")  # type: ignore[arg-type]

    @detect_blocking()
    async def handler(x: int) -> str:
        return str(x)

    assert_type(await handler(1), str)
    await handler("1")  # type: ignore[arg-type]


def check_configuration() -> None:
    configure(pools={"db": 8}, default_threads=40, shutdown_timeout=5)
    url = BackendURL.parse("postgresql://u:pw@host/db")
    assert_type(url.port, int | None)
    assert_type(url.replace(driver="psycopg"), BackendURL)
    configure(pools={"db": "8"})  # type: ignore[dict-item]
