"""A seeded storm of cancelled and timed-out operations on every backend, then a health check.

200 operations (queries, statements, transactions with savepoints, iterations, pinned
connections, ``execute_many``), about 50 in flight on a small pool, each under a random
cancellation: a tiny ``anyio.move_on_after``/``fail_after`` (``asyncio.wait_for`` too on
asyncio), an explicit ``CancelScope.cancel()`` from another task, a failing task group, or a
timeout around one statement inside a block that goes on afterwards. The plan is drawn from a
fixed seed; where the cancellations land depends on timing.

Afterwards the database must be healthy: no connection lent out or waiting, and as many on
the server as in the pool; no pooled connection inside a transaction (the server says so, and
each connection sees exactly the committed rows); no worker thread busy; every transaction
all or nothing (rolled back when cancelled in its body); and every later query succeeds.
After ``disconnect()`` the server holds no connection of the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import random
import threading
import traceback
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest
import sniffio

from asyncify_kit import BackendURL, run_sync
from asyncify_kit._executor import all_pools
from asyncify_kit.sql import ConnectionLost, Database, DatabaseError

pytestmark = pytest.mark.anyio

#: one planned operation: called once, in the task that runs it
Operation = Callable[[], Coroutine[Any, Any, None]]

OPERATIONS = 200
IN_FLIGHT = 50
MAX_SIZE = 6
#: the plan's seed; set ASYNCIFY_TEST_STORM_SEED to try others
SEED = int(os.environ.get("ASYNCIFY_TEST_STORM_SEED", "20240611"))

#: a statement that takes a few milliseconds on the server (:n scales it)
SLOW = {
    "postgresql": "select count(*) from generate_series(1, :n * 1000)",
    "mysql": "select sleep(:n / 1000)",
    "sqlite": (
        "with recursive c(x) as (select 1 union all select x + 1 from c where x < :n * 2000)"
        " select count(*) from c"
    ),
}


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, object]]:
    return (case[1], {})


def _lost_with_a_cancelled_statement(exc: DatabaseError) -> bool:
    """Whether *exc* says that a block (its transaction, its pinned connection) went with a
    statement cancelled in it: the native async drivers discard the connection of a
    statement cancelled midway (`ConnectionLost`), and PostgreSQL aborts the transaction of
    one it stopped on the server."""
    return isinstance(exc, ConnectionLost) or "current transaction is aborted" in str(exc)


class Boom(Exception):
    """The failure of one task in a task group (its siblings are cancelled)."""


def _without_booms(exc: BaseException) -> BaseException | None:
    """*exc* without its `Boom` exceptions (an exception group may hold others: a
    cancellation of the whole group), or None when nothing else is left."""
    split = getattr(exc, "split", None)  # (an exception group; named so on Python 3.11+)
    if split is None:
        return None if isinstance(exc, Boom) else exc
    rest: BaseException | None = split(Boom)[1]
    return rest


@dataclasses.dataclass
class Ledger:
    """What each transaction (by its ``tx`` number) must have left in the table."""

    committed: dict[int, int] = dataclasses.field(default_factory=dict)  # tx -> its rows
    rolled_back: set[int] = dataclasses.field(default_factory=set)
    either: dict[int, int] = dataclasses.field(default_factory=dict)  # all its rows or none
    errors: list[BaseException] = dataclasses.field(default_factory=list)
    kinds: dict[int, str] = dataclasses.field(default_factory=dict)  # tx -> its operation

    def record(self, tx: int, rows: int, state: str) -> None:
        """*state*: how far the block got: ``done`` (committed), ``ending`` (cancelled in
        its commit: either), anything else (cancelled or failed before it: rolled back)."""
        if state == "done":
            self.committed[tx] = rows
        elif state == "ending":
            self.either[tx] = rows
        else:
            self.rolled_back.add(tx)


class Storm:
    """The operations of one storm on *db*; *tx_table* holds the transactions' rows."""

    def __init__(self, db: Database, items: str, tx_table: str, rng: random.Random) -> None:
        self.db = db
        self.items = items
        self.tx_table = tx_table
        self.rng = rng
        self.ledger = Ledger()
        self.next_tx = 0
        self.finished = 0  # operations (cancellable ones) that ran to their end
        self.slow = SLOW[db.dialect]

    def tx_number(self, kind: str) -> int:
        self.next_tx += 1
        self.ledger.kinds[self.next_tx] = kind
        return self.next_tx

    async def insert(self, tx: int, k: int) -> None:
        await self.db.execute(
            f"insert into {self.tx_table} (tx, k) values (:tx, :k)", {"tx": tx, "k": k}
        )

    # -- the operations (each draws its parameters when it is planned) -------------------

    def fetch_all(self) -> Operation:
        n = self.rng.randint(1, 100)

        async def run() -> None:
            rows = await self.db.fetch_all(
                f"select id, v from {self.items} where id <= :n order by id", {"n": n}
            )
            assert [r.id for r in rows] == list(range(1, n + 1))

        return run

    def slow_value(self) -> Operation:
        n = self.rng.randint(1, 20)

        async def run() -> None:
            await self.db.fetch_val(self.slow, {"n": n})

        return run

    def echo(self) -> Operation:
        n = self.rng.randint(0, 10**6)

        async def run() -> None:
            assert await self.db.fetch_val("select :n", {"n": str(n)}) == str(n)

        return run

    def execute(self) -> Operation:
        item = self.rng.randint(1, 300)

        async def run() -> None:
            changed = await self.db.execute(
                f"update {self.items} set v = v where id = :id", {"id": item}
            )
            assert changed == 1

        return run

    def transaction(self) -> Operation:
        tx, rows = self.tx_number("transaction"), self.rng.randint(2, 4)
        n, pause = self.rng.randint(1, 10), self.rng.uniform(0, 0.01)

        async def run() -> None:
            state = "opening"
            try:
                async with self.db.transaction():
                    state = "body"
                    for k in range(rows):
                        await self.insert(tx, k)
                        if k == 0:
                            await self.db.fetch_val(self.slow, {"n": n})
                        await anyio.sleep(pause)
                    state = "ending"
                state = "done"
            finally:
                self.ledger.record(tx, rows, state)

        return run

    def savepoint(self) -> Operation:
        """A transaction with a savepoint under a timeout of its own: the transaction goes
        on whether the savepoint was released or rolled back."""
        outer, inner = self.tx_number("savepoint: outer"), self.tx_number("savepoint: inner")
        limit, pause = self.rng.uniform(0, 0.02), self.rng.uniform(0, 0.01)

        async def run() -> None:
            state, inner_state = "opening", "opening"
            try:
                async with self.db.transaction():
                    state = "body"
                    await self.insert(outer, 0)
                    with anyio.move_on_after(limit):
                        async with self.db.transaction():
                            inner_state = "body"
                            await self.insert(inner, 0)
                            await anyio.sleep(pause)
                            await self.insert(inner, 1)
                            inner_state = "ending"
                        inner_state = "done"
                    await self.insert(outer, 1)
                    state = "ending"
                state = "done"
            except DatabaseError as exc:
                if inner_state == "done" or not _lost_with_a_cancelled_statement(exc):
                    raise
            finally:
                self.ledger.record(outer, 2, state)
                if inner_state not in ("done", "ending") or state not in ("done", "ending"):
                    self.ledger.record(inner, 2, "rolled back")
                elif state == "done" and inner_state == "done":
                    self.ledger.record(inner, 2, "done")
                else:
                    self.ledger.record(inner, 2, "ending")

        return run

    def statement_timeout_in_transaction(self) -> Operation:
        """A timeout around one statement of a transaction, which then goes on: it commits
        whole, or fails (and is rolled back) whole."""
        tx = self.tx_number("statement timeout in a transaction")
        n, limit = self.rng.randint(2, 20), self.rng.uniform(0, 0.01)

        async def run() -> None:
            state = "opening"
            try:
                async with self.db.transaction():
                    state = "body"
                    await self.insert(tx, 0)
                    with anyio.move_on_after(limit):
                        await self.db.fetch_val(self.slow, {"n": n})
                    await self.insert(tx, 1)
                    state = "ending"
                state = "done"
            except DatabaseError as exc:
                if not _lost_with_a_cancelled_statement(exc):
                    raise
            finally:
                self.ledger.record(tx, 2, state)

        return run

    def statement_timeout_in_connection(self) -> Operation:
        """A timeout around one statement in a ``db.connection()`` block, which then goes
        on: a later statement gets its own result, or an error, never another's."""
        n, limit, value = self.rng.randint(2, 20), self.rng.uniform(0, 0.01), self.rng.random()

        async def run() -> None:
            async with self.db.connection():
                with anyio.move_on_after(limit):
                    await self.db.fetch_val(self.slow, {"n": n})
                try:
                    got = await self.db.fetch_val("select :v", {"v": repr(value)})
                except DatabaseError as exc:
                    if not _lost_with_a_cancelled_statement(exc):
                        raise
                    return
                assert got == repr(value)

        return run

    def execute_many(self) -> Operation:
        tx, rows = self.tx_number("execute_many"), self.rng.randint(2, 30)

        async def run() -> None:
            state = "opening"
            try:
                await self.db.execute_many(
                    f"insert into {self.tx_table} (tx, k) values (:tx, :k)",
                    [{"tx": tx, "k": k} for k in range(rows)],
                )
                state = "done"
            finally:
                # cancelled: the batch may have committed just before (either)
                self.ledger.record(tx, rows, "done" if state == "done" else "ending")

        return run

    def read_only(self) -> Operation:
        """A read-only transaction (on SQLite, ``PRAGMA query_only`` for its length)."""
        n = self.rng.randint(1, 10)

        async def run() -> None:
            async with self.db.transaction(read_only=True):
                assert await self.db.fetch_val(f"select count(*) from {self.items}") == 300
                await self.db.fetch_val(self.slow, {"n": n})

        return run

    def batch_in_transaction(self) -> Operation:
        """``execute_many`` inside a transaction (a savepoint), between two statements."""
        tx, rows = self.tx_number("execute_many in a transaction"), self.rng.randint(2, 20)

        async def run() -> None:
            state = "opening"
            try:
                async with self.db.transaction():
                    state = "body"
                    await self.insert(tx, 0)
                    await self.db.execute_many(
                        f"insert into {self.tx_table} (tx, k) values (:tx, :k)",
                        [{"tx": tx, "k": k} for k in range(1, rows + 1)],
                    )
                    await self.insert(tx, rows + 1)
                    state = "ending"
                state = "done"
            finally:
                self.ledger.record(tx, rows + 2, state)

        return run

    def iterate_in_transaction(self) -> Operation:
        """An iteration (left early, or not) between the statements of a transaction."""
        tx, stop = self.tx_number("iterate in a transaction"), self.rng.randint(1, 300)
        batch = self.rng.randint(1, 50)

        async def run() -> None:
            state = "opening"
            seen = 0
            try:
                async with self.db.transaction():
                    state = "body"
                    await self.insert(tx, 0)
                    query = f"select id from {self.items} order by id"
                    async with aclosing(self.db.iterate(query, batch_size=batch)) as rows:
                        async for row in rows:
                            seen += 1
                            assert row.id == seen
                            if seen == stop:
                                break
                    await self.insert(tx, 1)
                    state = "ending"
                state = "done"
            finally:
                self.ledger.record(tx, 2, state)

        return run

    def iterate(self) -> Operation:
        stop, batch = self.rng.randint(1, 300), self.rng.randint(1, 50)
        pause = self.rng.uniform(0, 0.002)

        async def run() -> None:
            seen = 0
            query = f"select id from {self.items} order by id"
            async with aclosing(self.db.iterate(query, batch_size=batch)) as rows:
                async for row in rows:
                    seen += 1
                    assert row.id == seen
                    if seen == stop:
                        break
                    if seen % 50 == 0:
                        await anyio.sleep(pause)
            assert seen == min(stop, 300)

        return run

    def iterate_pinned(self) -> Operation:
        """An iteration in a ``db.connection()`` block, with statements in the loop body."""
        stop, batch = self.rng.randint(1, 120), self.rng.randint(1, 40)

        async def run() -> None:
            seen = 0
            async with self.db.connection():
                query = f"select id from {self.items} where id <= 120 order by id"
                async with aclosing(self.db.iterate(query, batch_size=batch)) as rows:
                    async for row in rows:
                        seen += 1
                        assert row.id == seen
                        if seen % 40 == 0:
                            assert await self.db.fetch_val("select :n", {"n": str(seen)}) == (
                                str(seen)
                            )
                        if seen == stop:
                            break
            assert seen == stop

        return run

    def pinned(self) -> Operation:
        n = self.rng.randint(1, 10)

        async def run() -> None:
            async with self.db.connection() as conn:
                for k in range(3):
                    assert await conn.fetch_val("select :k", {"k": str(k)}) == str(k)
                    await self.db.fetch_val(self.slow, {"n": n})

        return run

    def failing_group(self) -> Operation:
        """Three operations in a task group that one failing task cancels."""
        members = [self.plan_one(cancel=False) for _ in range(3)]
        delay = self.rng.uniform(0, 0.02)

        async def fail() -> None:
            await anyio.sleep(delay)
            raise Boom

        async def run() -> None:
            try:
                async with anyio.create_task_group() as tg:
                    for member in members:
                        tg.start_soon(member)
                    tg.start_soon(fail)
            except BaseException as exc:  # the group's: Boom, and maybe a cancellation
                rest = _without_booms(exc)
                if rest is exc:
                    raise
                if rest is not None:
                    raise rest from None

        return run

    # -- the plan ------------------------------------------------------------------------

    KINDS = (
        ("fetch_all", 3),
        ("slow_value", 3),
        ("echo", 2),
        ("execute", 2),
        ("transaction", 4),
        ("savepoint", 2),
        ("statement_timeout_in_transaction", 2),
        ("statement_timeout_in_connection", 2),
        ("execute_many", 1),
        ("read_only", 1),
        ("batch_in_transaction", 1),
        ("iterate_in_transaction", 1),
        ("iterate", 2),
        ("iterate_pinned", 1),
        ("pinned", 1),
        ("failing_group", 1),
    )

    def plan_one(self, *, cancel: bool = True) -> Operation:
        names = [name for name, _ in self.KINDS]
        weights = [weight for _, weight in self.KINDS]
        name = self.rng.choices(names, weights)[0]
        if not cancel and name == "failing_group":
            name = "transaction"
        op: Operation = getattr(self, name)()
        return self.cancelled(op) if cancel else op

    def cancelled(self, op: Operation) -> Operation:
        """*op* under one of the cancellations, drawn now."""
        rng = self.rng
        mode = rng.choices(
            ["none", "move_on_after", "fail_after", "asyncio.wait_for", "cancel"],
            [3, 3, 2, 1, 2],
        )[0]
        limit = rng.uniform(0, 0.03)

        async def op_counted() -> None:
            await op()
            self.finished += 1

        async def run() -> None:
            if mode == "move_on_after":
                with anyio.move_on_after(limit):
                    await op_counted()
            elif mode == "fail_after":
                try:
                    with anyio.fail_after(limit):
                        await op_counted()
                except TimeoutError:
                    pass
            elif mode == "asyncio.wait_for" and sniffio.current_async_library() == "asyncio":
                # asyncio's own cancellation, of the task that wait_for runs it in
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(op_counted(), limit)
            elif mode == "cancel":
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:

                        async def cancel_soon() -> None:
                            await anyio.sleep(limit)
                            scope.cancel()

                        tg.start_soon(cancel_soon)
                        await op_counted()
                        tg.cancel_scope.cancel()
            else:
                await op_counted()

        return run


def _no_errors(errors: list[BaseException]) -> None:
    if errors:
        shown = "".join(traceback.format_exception(errors[0]))
        pytest.fail(f"{len(errors)} operation(s) failed: {errors}; the first:\n{shown}")


@contextlib.contextmanager
def collecting(errors: list[BaseException]) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        errors.append(exc)


async def _server_connections(control: Database, dialect: str, app: str) -> list[tuple[Any, ...]]:
    """(id, in a transaction) of the server's connections: on PostgreSQL those named *app*,
    on MariaDB every connection to *control*'s database but its own (under pytest-xdist each
    worker has a database of its own)."""
    if dialect == "postgresql":
        rows = await control.fetch_all(
            "select pid, state from pg_stat_activity where application_name = :app",
            {"app": app},
        )
        return [(r.pid, str(r.state).startswith("idle in transaction")) for r in rows]
    rows = await control.fetch_all(
        "select p.id, t.trx_id from information_schema.processlist p"
        " left join information_schema.innodb_trx t on t.trx_mysql_thread_id = p.id"
        " where p.db = database() and p.id <> connection_id()",
    )
    return [(r.id, r.trx_id is not None) for r in rows]


async def _pooled_connections_are_clean(
    db: Database, tx_table: str, expected: dict[int, int]
) -> None:
    """Hold every idle pooled connection at once; on each, no transaction is open, and the
    committed rows (*expected*: tx -> rows) are exactly what it sees."""
    count = db.pool_stats().idle
    held = 0
    all_held = anyio.Event()
    query = f"select tx, count(*) as n from {tx_table} group by tx"

    async def check() -> None:
        nonlocal held
        async with db.connection() as conn:
            held += 1
            if held == count:
                all_held.set()
            with anyio.fail_after(10):
                await all_held.wait()
            if db.dialect == "mysql":
                assert await conn.fetch_val("select @@in_transaction") == 0
            elif db.dialect == "sqlite":
                assert not await run_sync(lambda: conn.raw.in_transaction)
            seen = {int(r.tx): int(r.n) for r in await conn.fetch_all(query)}
            assert seen == expected

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(check)


def _busy_threads() -> list[str]:
    busy: list[str] = []
    for pool in all_pools():
        stats = pool.stats()
        busy += [f"{pool.name}: {call}" for call in stats.running_calls]
        if stats.waiting:
            busy.append(f"{pool.name}: {stats.waiting} queued")
    return busy


def _closing_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "asyncify-sql-close"]


async def _eventually(check: Callable[[], Awaitable[bool]], what: Callable[[], object]) -> None:
    """Wait (2 s at most) for *check*: some releases end on a thread a moment later."""
    with anyio.move_on_after(2):
        while not await check():
            await anyio.sleep(0.02)
    if not await check():
        pytest.fail(f"{what()}")


def _ledger_mismatches(ledger: Ledger, counts: dict[int, int]) -> list[str]:
    """How the committed rows (*counts*: tx -> rows) differ from what *ledger* expects."""
    wrong = [
        f"{ledger.kinds[tx]} {tx}: committed, {counts.get(tx, 0)} of its {rows} rows"
        for tx, rows in ledger.committed.items()
        if counts.get(tx) != rows
    ]
    wrong += [
        f"{ledger.kinds[tx]} {tx}: rolled back, yet {counts[tx]} row(s) committed"
        for tx in ledger.rolled_back
        if tx in counts
    ]
    wrong += [
        f"{ledger.kinds[tx]} {tx}: all or nothing, yet {counts[tx]} of its {rows} rows"
        for tx, rows in ledger.either.items()
        if counts.get(tx, rows) != rows
    ]
    return wrong


async def test_cancellation_storm_leaves_a_healthy_database(
    url: BackendURL, table: str, case: tuple[str, str]
) -> None:
    app = f"storm-{uuid.uuid4().hex[:8]}"  # names the storm's connections on PostgreSQL
    options: dict[str, Any] = {"min_size": 2, "max_size": MAX_SIZE}
    if url.dialect == "postgresql":
        options["application_name"] = app
    items, tx_table = f"{table}_items", f"{table}_tx"
    control = Database(url, min_size=1, max_size=1)
    await control.connect()
    try:
        await control.execute(f"create table {items} (id integer primary key, v integer)")
        await control.execute(f"create table {tx_table} (tx integer, k integer)")
        await control.execute_many(
            f"insert into {items} (id, v) values (:id, :v)",
            [{"id": i, "v": i} for i in range(1, 301)],
        )

        async def storm_connections() -> list[tuple[Any, ...]]:
            """(id, in a transaction) of each server connection of the storm's database."""
            if url.dialect == "sqlite":
                return []
            found = await _server_connections(control, url.dialect, app)
            return [c for c in found if c[0] not in before]

        before: set[Any] = set()
        before = {c[0] for c in await storm_connections()}  # (MariaDB: all but the storm's)
        abandoned = {pool.name: pool.stats().abandoned for pool in all_pools()}
        db = Database(url, **options)
        await db.connect()
        storm = Storm(db, items, tx_table, random.Random(f"{SEED}-{case[0]}-{case[1]}"))
        plan = [storm.plan_one() for _ in range(OPERATIONS)]
        errors = storm.ledger.errors
        limiter = anyio.CapacityLimiter(IN_FLIGHT)

        async def one(op: Operation) -> None:
            async with limiter:
                with collecting(errors):
                    await op()

        try:
            try:
                with anyio.fail_after(15):
                    async with anyio.create_task_group() as tg:
                        for op in plan:
                            tg.start_soon(one, op)
            except TimeoutError:
                # what was stuck, rather than the cancellations of every operation left
                pytest.fail(
                    f"the storm did not end within 15 s: pool {db.pool_stats()}, threads "
                    f"{_busy_threads()}, {storm.finished} operation(s) finished, errors "
                    f"{errors[:5]}"
                )
            _no_errors(errors)
            # the storm stormed: many operations were cut short, many ran to their end
            assert OPERATIONS // 5 <= storm.finished <= OPERATIONS - OPERATIONS // 5

            # nothing lent out or waiting, and no worker thread busy (nor left behind)
            async def idle() -> bool:
                stats = db.pool_stats()
                return (stats.in_use, stats.waiting) == (0, 0) and not _busy_threads()

            await _eventually(idle, lambda: f"pool {db.pool_stats()}, threads {_busy_threads()}")
            stats = db.pool_stats()
            assert stats.size == stats.idle <= MAX_SIZE, stats
            assert all(p.stats().abandoned == abandoned.get(p.name, 0) for p in all_pools())

            # the server holds the pool's connections, none of them in a transaction
            async def matches() -> bool:
                if url.dialect == "sqlite":
                    return True
                mine = await storm_connections()
                return len(mine) == db.pool_stats().size and not any(c[1] for c in mine)

            await _eventually(matches, lambda: f"pool {db.pool_stats()}")

            # every transaction all or nothing; rolled back when cancelled before its end
            query = f"select tx, count(*) as n from {tx_table} group by tx"
            counts = {int(r.tx): int(r.n) for r in await control.fetch_all(query)}
            assert not _ledger_mismatches(storm.ledger, counts)
            # every pooled connection outside any transaction, seeing just those rows
            await _pooled_connections_are_clean(db, tx_table, counts)

            # and every later operation succeeds
            followers = [storm.plan_one(cancel=False) for _ in range(40)]
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    for op in followers:
                        tg.start_soon(one, op)
            _no_errors(errors)
            assert db.pool_stats().in_use == 0
        finally:
            await db.disconnect()

        assert db.pool_stats().size == 0

        async def all_closed() -> bool:
            gc.collect()
            return not await storm_connections() and not _closing_threads()

        await _eventually(
            all_closed, lambda: f"after disconnect(): {_closing_threads()}, {_busy_threads()}"
        )
    finally:
        try:
            await control.execute(f"drop table {items}")
            await control.execute(f"drop table {tx_table}")
        finally:
            await control.disconnect()
