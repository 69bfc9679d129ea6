"""Defects an audit of the offload layer found, each reproduced here with real threads.

* ``asyncify`` of a ``functools.partial`` or a callable object was not a coroutine function
  to inspect (no ``__name__`` to copy), so FastAPI handed its dependants the un-awaited call.
* A sticky proxy closed while a context manager of one of its ``@contextmanager`` methods was
  open: leaving that block waited forever for a thread already gone.
* A task cancelled before its first step threw its cancellation past the call: a call not
  yet started still ran, and under "wait" the caller left while the thread ran.
* Offloaded generators and context managers left the library's frames in tracebacks.
* ``@asyncify`` over ``@asynccontextmanager`` was accepted at decoration time.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import operator
import os
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI

import asyncify_kit
from asyncify_kit import asyncify, configure, stats, wrap
from asyncify_kit._executor import Job, Lane, get_pool

if TYPE_CHECKING:
    from typing_extensions import assert_type

    from asyncify_kit import OffloadedIterator

pytestmark = pytest.mark.anyio

ON_ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])
PACKAGE_DIR = os.path.dirname(os.path.abspath(asyncify_kit.__file__)) + os.sep


def load(user_id: int, verbose: bool = False) -> dict[str, object]:
    return {"id": user_id, "verbose": verbose}


class Loader:
    def __call__(self, user_id: int) -> dict[str, object]:
        return {"id": user_id}


# -- 1. function-like whatever it wraps -------------------------------------------------------


def test_partial_and_callable_object_are_coroutine_functions() -> None:
    by_partial = asyncify(functools.partial(load, verbose=True))
    by_object = asyncify(Loader())
    by_builtin_object: Any = asyncify(operator.itemgetter(0))
    for fn in (by_partial, by_object, by_builtin_object):
        assert inspect.iscoroutinefunction(fn), fn
        if sys.version_info < (3, 14):  # deprecated from 3.14 on
            assert asyncio.iscoroutinefunction(fn), fn
    # the signature is still what the wrapped callable takes
    partial_parameters = inspect.signature(by_partial).parameters
    assert list(partial_parameters) == ["user_id", "verbose"]
    assert partial_parameters["verbose"].default is True
    assert list(inspect.signature(by_object).parameters) == ["user_id"]
    assert by_partial.__name__ == "load"
    assert by_object.__name__ == "Loader"
    assert by_builtin_object.__name__ == "itemgetter"


@ON_ASYNCIO
async def test_partial_and_callable_object_as_fastapi_dependencies_are_awaited() -> None:
    app = FastAPI()
    app.get("/partial")(partial_endpoint)
    app.get("/object")(object_endpoint)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/partial")).json() == {"id": 7, "verbose": True}
        assert (await client.get("/object", params={"user_id": 8})).json() == {"id": 8}


by_partial = asyncify(functools.partial(load, 7, verbose=True))
by_object = asyncify(Loader())


async def partial_endpoint(got: Annotated[dict[str, object], Depends(by_partial)]) -> object:
    return got


async def object_endpoint(got: Annotated[dict[str, object], Depends(by_object)]) -> object:
    return got


# -- 2. a sticky proxy closed while one of its context managers is open ----------------------


class Session:
    """Records where and how its context manager exits."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, int]] = []

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        self.log.append(("enter", "", threading.get_ident()))
        try:
            yield self
        except BaseException as exc:
            self.log.append(("exit", type(exc).__name__, threading.get_ident()))
            raise
        else:
            self.log.append(("exit", "", threading.get_ident()))


BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


def run_bounded(main: Callable[[], Awaitable[None]], backend: str) -> None:
    """``anyio.run(main)`` on a thread of its own, failing if it has not ended in 10 s: the
    wait these tests looked for held off every cancellation, so it could only be left."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            anyio.run(main, backend=backend)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, name="run-bounded", daemon=True)
    thread.start()
    thread.join(10)
    assert outcome, "still waiting after 10 s"
    if outcome[0] is not None:
        raise outcome[0]


@BACKENDS
def test_closing_a_sticky_proxy_exits_its_open_context_managers(backend: str) -> None:
    run_bounded(sticky_proxy_closed_in_a_session, backend)


async def sticky_proxy_closed_in_a_session() -> None:
    target = Session()
    async with wrap(target, sticky=True) as proxy:
        async with proxy.session():
            await proxy.aclose()
        # exited on the proxy's thread, as a block interrupted, once
        (_, _, thread), (what, how, exit_thread) = target.log
        assert (what, how, exit_thread) == ("exit", "GeneratorExit", thread)
        with pytest.raises(RuntimeError, match="closed"):
            proxy.session()  # a new one is refused

    # by hand, the exit returns at once: nothing left to do
    proxy = wrap(target, sticky=True)
    cm = proxy.session()
    await cm.__aenter__()
    await proxy.aclose()
    assert await cm.__aexit__(None, None, None) is False
    assert [how for what, how, _ in target.log if what == "exit"] == ["GeneratorExit"] * 2


class Store:
    """A sqlite3 database whose transaction is a ``@contextmanager`` method."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self) -> None:
        # closed by the test once the proxy (and its thread) is gone
        self.con = sqlite3.connect(self.path, check_same_thread=False)
        self.con.execute("create table if not exists t (x integer)")
        self.con.commit()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.con:  # commits on success, rolls back on an exception
            yield

    def insert(self, x: int) -> None:
        self.con.execute("insert into t values (?)", (x,))


def count_rows(path: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as con:
        (n,) = con.execute("select count(*) from t").fetchone()
        return int(n)


@BACKENDS
def test_closing_a_sticky_proxy_rolls_back_an_open_transaction(backend: str, tmp_path: Any) -> None:
    path = str(tmp_path / "store.db")
    target = Store(path)

    async def main() -> None:
        async with wrap(target, sticky=True) as store:
            await store.open()
            async with store.transaction():
                await store.insert(1)
                await store.aclose()  # the block did not finish: nothing is committed

    try:
        run_bounded(main, backend)
        assert not target.con.in_transaction  # rolled back, not left open
    finally:
        if hasattr(target, "con"):
            target.con.close()
    assert count_rows(path) == 0


def test_a_closed_lane_refuses_a_job_at_once() -> None:
    for dedicated in (True, False):
        lane = Lane(get_pool("default"))
        lane.start(dedicated=dedicated, name="audit")
        ran: list[int] = []
        lane.close()
        with pytest.raises(RuntimeError, match="closed"):
            lane.put(Job(ran.append, (1,), {}, contextvars.copy_context(), None))
        assert ran == []


# -- 3. a task cancelled before its first step -------------------------------------------------


class Gate:
    """A pool of one thread, held by a call until `release`."""

    def __init__(self, pool: str) -> None:
        configure(pools={pool: 1})
        self.pool = pool
        self.opened = threading.Event()
        self.ran: list[str] = []
        # Any: on asyncio a call is its `Call` future, which these tests look into
        self.hold: Any = asyncify(pool=pool)(self._hold)
        self.record: Any = asyncify(pool=pool)(self._record)

    def _hold(self) -> None:
        self.opened.wait(10)

    def _record(self, tag: str) -> str:
        self.ran.append(tag)
        return tag

    async def release(self, held: Awaitable[None]) -> None:
        self.opened.set()
        await held
        # calls run in order: one withdrawn would have run before this one
        assert await self.record("after") == "after"


async def until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not predicate():
            await asyncio.sleep(0.001)


@ON_ASYNCIO
async def test_task_cancelled_before_its_first_step_withdraws_a_queued_call() -> None:
    gate = Gate("audit-queued")
    held = gate.hold()
    call = gate.record("queued")  # submitted now, behind the held call
    task = asyncio.create_task(call)
    task.cancel()  # before the task's first step
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.cancelled()
    await gate.release(held)
    assert gate.ran == ["after"]  # withdrawn: never ran


@ON_ASYNCIO
async def test_task_cancelled_before_its_first_step_waits_for_a_running_call() -> None:
    started, finished = threading.Event(), threading.Event()

    @asyncify
    def work() -> None:
        started.set()
        time.sleep(0.2)
        finished.set()

    call = work()
    await until(started.is_set)  # running on its thread; the task below never steps
    task = asyncio.create_task(call)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()  # "wait": the caller left once the thread had finished


@ON_ASYNCIO
async def test_task_cancelled_before_its_first_step_abandons_under_abandon() -> None:
    configure(pools={"audit-abandon": 2})
    started, release = threading.Event(), threading.Event()

    @asyncify(pool="audit-abandon", cancel="abandon")
    def work() -> None:
        started.set()
        release.wait(10)

    call = work()
    await until(started.is_set)
    task = asyncio.create_task(call)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stats("audit-abandon").abandoned == 1  # the pool knows its caller left
    release.set()
    await until(lambda: stats("audit-abandon").running == 0)


if sys.version_info >= (3, 11):  # asyncio.TaskGroup

    @ON_ASYNCIO
    async def test_failed_task_group_withdraws_its_calls_not_started() -> None:
        configure(pools={"audit-two": 2})
        ran: list[int] = []

        @asyncify(pool="audit-two")
        def charge(order: int) -> None:
            time.sleep(0.05)
            ran.append(order)

        with pytest.raises(ExceptionGroup):  # noqa: F821 - a builtin on 3.11+, where this runs
            async with asyncio.TaskGroup() as tg:
                for order in range(6):
                    tg.create_task(charge(order))
                raise ValueError("validation failed")
        # the calls already running were waited for ("wait"), the others withdrawn
        pool = stats("audit-two")
        assert (pool.running, pool.waiting) == (0, 0)
        done = list(ran)
        assert len(done) <= 2
        await asyncify(pool="audit-two")(time.sleep)(0)  # would have run after them
        assert ran == done


@ON_ASYNCIO
async def test_closing_a_stepped_call_withdraws_it() -> None:
    gate = Gate("audit-close")
    held = gate.hold()
    call = gate.record("closed")
    assert call.send(None) is call  # stepped once, as a task would: waiting for the thread
    call.close()
    assert call.cancelled()
    await gate.release(held)
    assert gate.ran == ["after"]


# -- 4. tracebacks -----------------------------------------------------------------------------


def fail() -> None:
    raise ValueError("boom")


def library_frames(exc: BaseException) -> list[str]:
    return [
        f"{frame.filename}:{frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename.startswith(PACKAGE_DIR)
    ]


class Source:
    def rows(self) -> Iterator[int]:
        yield 1
        fail()


@asyncify
def failing_rows() -> Iterator[int]:
    yield 1
    fail()


@asyncify
def failing_close() -> Iterator[int]:
    try:
        yield 1
    finally:
        fail()


@asyncify
@contextlib.contextmanager
def failing_enter() -> Iterator[None]:
    fail()
    yield


@asyncify
@contextlib.contextmanager
def failing_exit() -> Iterator[None]:
    yield
    fail()


async def test_tracebacks_of_generators_and_context_managers_have_no_library_frames() -> None:
    async def step_fails() -> None:
        async for _ in failing_rows():
            pass

    async def sticky_step_fails() -> None:
        async with wrap(Source(), sticky=True) as proxy:
            async for _ in proxy.rows():
                pass

    async def close_fails() -> None:
        rows = failing_close()
        await rows.__anext__()
        await rows.aclose()

    async def enter_fails() -> None:
        async with failing_enter():
            pass

    async def exit_fails() -> None:
        async with failing_exit():
            pass

    for case in (step_fails, sticky_step_fails, close_fails, enter_fails, exit_fails):
        with pytest.raises(ValueError, match="boom") as info:
            await case()
        names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        assert case.__name__ in names and "fail" in names, names
        assert library_frames(info.value) == [], case.__name__


# -- 5. async functions behind a sync wrapper --------------------------------------------------


def test_asyncify_refuses_an_async_context_manager_function() -> None:
    @contextlib.asynccontextmanager
    async def session() -> AsyncIterator[str]:
        yield "s"

    async def fetch() -> int:
        return 1

    @functools.wraps(fetch)
    def logged(*args: Any, **kwargs: Any) -> Any:  # a sync decorator over an async def
        return fetch(*args, **kwargs)

    for fn in (session, logged, functools.partial(session)):
        with pytest.raises(TypeError, match="async"):
            asyncify(fn)

    # a sync function under a sync decorator stays accepted
    @functools.wraps(load)
    def traced(*args: Any, **kwargs: Any) -> Any:
        return load(*args, **kwargs)

    assert inspect.iscoroutinefunction(asyncify(traced))


# -- 6. types (checked by mypy, never run) -----------------------------------------------------

if TYPE_CHECKING:

    @asyncify
    def generated(n: int) -> Generator[int, None, None]:
        yield n

    @asyncify(pool="default")
    def generated_with_return(n: int) -> Generator[int, None, str]:
        yield n
        return "done"

    @asyncify
    def iterated(n: int) -> Iterator[int]:
        yield n

    def check_generator_types() -> None:
        assert_type(generated(1), OffloadedIterator[int])
        assert_type(generated_with_return(1), OffloadedIterator[int])
        assert_type(iterated(1), OffloadedIterator[int])
