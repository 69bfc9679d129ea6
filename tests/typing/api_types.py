"""Type tests of the public offload API: checked by mypy --strict and pyright, never run.

Like trio's ``_tests/type_tests``: each ``assert_type`` fails the type check when the API's
types drift, and each ``# type: ignore[...]`` must be needed (mypy's warn_unused_ignores),
so the negative cases fail too if a signature loosens. pytest does not collect this module
(its name does not start with ``test_``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Coroutine, Generator, Iterator
from contextlib import contextmanager
from typing import Any

from typing_extensions import assert_type

from asyncify_kit import (
    AsyncProxy,
    OffloadedContextManager,
    OffloadedIterator,
    PoolStats,
    asyncify,
    check_cancelled,
    configure,
    run_sync,
    stats,
    wrap,
)
from asyncify_kit._offload import AsyncDefRefused  # not exported: only in type errors


class Row:
    id: int


# -- functions ------------------------------------------------------------------------------


@asyncify
def load(path: str) -> bytes:
    return path.encode()


@asyncify(pool="db", cancel="abandon", timeout=5.0)
def query(sql: str, *, limit: int = 10) -> list[Row]:
    return []


def double(x: int) -> int:
    return x * 2


async def check_functions() -> None:
    coro = assert_type(load("a.bin"), Coroutine[Any, Any, bytes])
    coro.close()
    assert_type(await load("a.bin"), bytes)
    assert_type(await query("select 1", limit=3), list[Row])
    assert_type(await asyncify(pool="db")(double)(2), int)
    assert_type(await asyncify(double)(2), int)
    await load(1)  # type: ignore[arg-type]
    await query("select 1", limit="3")  # type: ignore[arg-type]
    await query("select 1", 3)  # type: ignore[call-arg]


async def check_run_sync() -> None:
    assert_type(await run_sync(double, 1), int)
    assert_type(await run_sync(sqlite3.connect, ":memory:"), sqlite3.Connection)
    await run_sync(double, "1")  # type: ignore[arg-type]
    await run_sync(double)  # type: ignore[call-arg]


async def check_create_task() -> None:
    task = asyncio.create_task(load("a.bin"))
    assert_type(task, asyncio.Task[bytes])
    assert_type(await task, bytes)
    results = await asyncio.gather(load("a"), load("b"))
    assert_type(results, tuple[bytes, bytes])


# -- methods --------------------------------------------------------------------------------


class Repository:
    @asyncify
    def get(self, key: str) -> Row:
        return Row()

    @asyncify(timeout=2.0)
    def count(self) -> int:
        return 0

    @asyncify
    @classmethod
    def open_inner(cls, path: str) -> Repository:
        return cls()

    @classmethod
    @asyncify
    def open_outer(cls, path: str) -> Repository:
        return cls()

    @asyncify(pool="db")
    @classmethod
    def open_inner_options(cls, path: str) -> Repository:
        return cls()

    @classmethod
    @asyncify(pool="db")
    def open_outer_options(cls, path: str) -> Repository:
        return cls()

    @asyncify
    @staticmethod
    def parse_inner(text: str) -> float:
        return float(text)

    @staticmethod
    @asyncify
    def parse_outer(text: str) -> float:
        return float(text)

    @asyncify(cancel="abandon")
    @staticmethod
    def parse_inner_options(text: str) -> float:
        return float(text)

    @staticmethod
    @asyncify(cancel="abandon")
    def parse_outer_options(text: str) -> float:
        return float(text)


async def check_methods() -> None:
    repo = Repository()
    assert_type(await repo.get("k"), Row)
    assert_type(await repo.count(), int)
    assert_type(await Repository.open_inner("p"), Repository)
    assert_type(await Repository.open_outer("p"), Repository)
    assert_type(await Repository.open_inner_options("p"), Repository)
    assert_type(await Repository.open_outer_options("p"), Repository)
    assert_type(await repo.open_inner("p"), Repository)
    assert_type(await Repository.parse_inner("1.5"), float)
    assert_type(await Repository.parse_outer("1.5"), float)
    assert_type(await Repository.parse_inner_options("1.5"), float)
    assert_type(await repo.parse_outer_options("1.5"), float)
    await repo.get(1)  # type: ignore[arg-type]
    await Repository.parse_inner(1.5)  # type: ignore[arg-type]
    await Repository.open_outer(3)  # type: ignore[arg-type]
    assert_type(await asyncio.create_task(repo.get("k")), Row)
    assert_type(await asyncio.create_task(Repository.open_inner("p")), Repository)


# -- generators and context managers ----------------------------------------------------------


@asyncify
def lines(path: str) -> Iterator[str]:
    yield path


@asyncify(pool="db")
def rows(sql: str) -> Generator[Row, None, None]:
    yield Row()


@asyncify
def open_database(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path)


@asyncify
@contextmanager
def connect(path: str) -> Iterator[sqlite3.Connection]:
    yield sqlite3.connect(path)


@asyncify(timeout=3.0)
@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[None]:
    yield


async def check_iterators_and_context_managers() -> None:
    stream = lines("a.txt")
    assert_type(stream, OffloadedIterator[str])
    async for line in stream:
        assert_type(line, str)
    assert_type(await stream.__anext__(), str)
    await stream.aclose()
    async with rows("select 1") as results:
        async for row in results:
            assert_type(row, Row)
    lines(1)  # type: ignore[arg-type]
    # a plain function that returns a context manager object is awaited, not entered
    assert_type(await open_database("app.db"), sqlite3.Connection)

    manager = connect("app.db")
    assert_type(manager, OffloadedContextManager[sqlite3.Connection])
    async with manager as con:
        assert_type(con, sqlite3.Connection)
        async with transaction(con) as nothing:
            assert_type(nothing, None)
    connect(b"app.db")  # type: ignore[arg-type]


# -- wrap and the rest ------------------------------------------------------------------------


async def check_wrap() -> None:
    proxy = wrap(sqlite3.connect(":memory:"), sticky=True)
    assert_type(proxy, AsyncProxy[sqlite3.Connection])
    assert_type(proxy.wrapped, sqlite3.Connection)
    await proxy.execute("select 1")
    await proxy.aclose()
    async with wrap(Repository(), pool="db", cancel="abandon", timeout=1.0) as repo:
        assert_type(repo, AsyncProxy[Repository])
    wrap(Repository(), cancel="sometimes")  # type: ignore[arg-type]


def check_pools() -> None:
    configure(pools={"db": 8})
    assert_type(stats("db"), PoolStats)
    assert_type(stats().running, int)
    assert_type(check_cancelled(), None)
    asyncify(cancel="later")  # type: ignore[call-overload]


# -- a plain function that returns an iterator ------------------------------------------------


def cursor_of(sql: str) -> sqlite3.Cursor:
    return sqlite3.connect(":memory:").execute(sql)


async def check_iterator_results() -> None:
    # asyncify types any `-> Iterator[T]` function as an async iterator (see docs/offload.md);
    # run_sync keeps the return type of a plain function that returns an iterator
    assert_type(await run_sync(cursor_of, "select 1"), sqlite3.Cursor)
    await run_sync(cursor_of, 1)  # type: ignore[arg-type]


# -- async functions are refused ------------------------------------------------------------


async def _fetch_async() -> int:
    return 1


async def _rows_async() -> AsyncIterator[int]:
    yield 1


refused = asyncify(_fetch_async)
assert_type(refused, AsyncDefRefused)
refused()  # type: ignore[operator]  # not callable: at run time asyncify raised TypeError
assert_type(asyncify(_rows_async), AsyncDefRefused)
assert_type(asyncify(pool="default")(_fetch_async), AsyncDefRefused)
