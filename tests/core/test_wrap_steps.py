"""`wrap()`: a generator method is an async iterator, an ``@contextmanager`` method an async
context manager, both run off the loop; on a sticky proxy, on the proxy's own thread.

They came back as they were: iterating or entering them ran their code on the event loop
(and, for a sticky proxy, off the thread a thread-affine object such as a `sqlite3`
connection must be used on).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator

import pytest

from asyncify_kit import wrap

pytestmark = pytest.mark.anyio


class Repository:
    """Records the thread of each step of its generator and context manager methods."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []
        self.con: sqlite3.Connection | None = None

    def here(self, what: str) -> None:
        self.log.append((what, threading.get_ident()))

    def ident(self) -> int:
        return threading.get_ident()

    def rows(self, n: int) -> Iterator[int]:
        try:
            for i in range(n):
                self.here(f"row {i}")
                yield i
        finally:
            self.here("closed")

    @contextlib.contextmanager
    def session(self) -> Iterator[Repository]:
        self.here("enter")
        try:
            yield self
        finally:
            self.here("exit")

    def open(self) -> None:
        self.con = sqlite3.connect(":memory:")  # usable on this thread only
        self.con.execute("create table t (x integer)")
        self.con.executemany("insert into t values (?)", [(1,), (2,), (3,)])

    def values(self) -> Iterator[int]:
        assert self.con is not None
        for (x,) in self.con.execute("select x from t order by x"):
            yield x

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        assert self.con is not None
        with self.con:
            yield self.con

    def close(self) -> None:
        if self.con is not None:
            self.con.close()


async def test_generator_and_context_manager_methods_run_off_the_loop() -> None:
    repo = Repository()
    proxy = wrap(repo)
    assert [x async for x in proxy.rows(3)] == [0, 1, 2]
    async with proxy.session() as session:
        assert session is repo
    loop_thread = threading.get_ident()
    threads = {thread for _, thread in repo.log}
    assert loop_thread not in threads
    # one thread per iterator (and per context manager), from the first step to the close
    assert [what for what, _ in repo.log] == ["row 0", "row 1", "row 2", "closed", "enter", "exit"]
    assert len({thread for _, thread in repo.log[:4]}) == 1
    assert len({thread for _, thread in repo.log[4:]}) == 1


async def test_leaving_early_closes_the_generator_on_its_thread() -> None:
    repo = Repository()
    async with wrap(repo).rows(10) as rows:
        async for x in rows:
            if x == 1:
                break
    assert [what for what, _ in repo.log] == ["row 0", "row 1", "closed"]
    assert len({thread for _, thread in repo.log}) == 1


async def test_a_sticky_proxy_runs_them_on_its_own_thread() -> None:
    repo = Repository()
    async with wrap(repo, sticky=True) as proxy:
        thread = await proxy.ident()
        async with proxy.rows(5) as rows:
            async for x in rows:
                assert await proxy.ident() == thread  # calls interleave with the steps
                if x == 2:
                    break
        async with proxy.session():
            pass
        assert await proxy.ident() == thread  # the thread is still the proxy's
    assert repo.log and {t for _, t in repo.log} == {thread}
    assert [what for what, _ in repo.log] == ["row 0", "row 1", "row 2", "closed", "enter", "exit"]


async def test_a_thread_affine_object_through_a_sticky_proxy() -> None:
    """sqlite3 refuses a connection used from another thread than its own: every step of
    the generator and the context manager must run on the proxy's thread."""
    async with wrap(Repository(), sticky=True) as repo:
        await repo.open()
        assert [x async for x in repo.values()] == [1, 2, 3]
        async with repo.transaction() as con:
            assert isinstance(con, sqlite3.Connection)
        assert [x async for x in repo.values()] == [1, 2, 3]
        await repo.close()  # on its thread too (Python 3.13's sqlite3 warns of one left open)


async def test_after_the_sticky_proxy_closed() -> None:
    repo = Repository()
    proxy = wrap(repo, sticky=True)
    rows = proxy.rows(3)
    assert await rows.__anext__() == 0
    await proxy.aclose()
    with pytest.raises(StopAsyncIteration):  # closed with the proxy, as a generator is
        await rows.__anext__()
    with pytest.raises(RuntimeError, match="was closed"):
        proxy.rows(3)
    with pytest.raises(RuntimeError, match="was closed"):
        proxy.session()
    await rows.aclose()  # closed already
    # closing the proxy closed the generator first, on the proxy's thread
    assert [what for what, _ in repo.log] == ["row 0", "closed"]
    assert len({t for _, t in repo.log}) == 1
