"""A call made while its caller is already cancelled never starts; clean-ups always run.

Before, a call made inside a cancelled anyio/trio scope, or with a ``task.cancel()`` not yet
delivered, was submitted and then withdrawn when the cancellation reached its await: whether
a worker had picked it up first was a race (``run_sync`` in a cancelled anyio scope ran its
function 225 times in 500). anyio's ``to_thread.run_sync`` checks first; so do we now.

The other side: the exit of an offloaded context manager and the close of an offloaded
generator are clean-ups. They must run on their own thread whatever cancellation is under
way, and the caller leaves only once they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest

from asyncify_kit import asyncify, configure, run_sync, wrap

pytestmark = pytest.mark.anyio

ROUNDS = 100
ON_ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])


class Counter:
    """Counts the calls made to it, from any thread."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def hit(self) -> int:
        with self._lock:
            self.calls += 1
            return self.calls


def forms(counter: Counter) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every way to offload one call, each calling ``counter.hit``."""
    fast = asyncify(counter.hit)
    timed = asyncify(timeout=5.0)(counter.hit)
    abandon = asyncify(cancel="abandon")(counter.hit)
    proxy = wrap(counter)
    sticky = wrap(counter, sticky=True)

    @asyncify
    def items() -> Iterator[int]:
        yield counter.hit()

    async def first_item() -> int:
        async with items() as it:
            async for item in it:
                return item
        raise AssertionError("no item")

    return {
        "run_sync": lambda: run_sync(counter.hit),
        "asyncify": fast,
        "asyncify timeout": timed,
        "asyncify abandon": abandon,
        "wrap": lambda: proxy.hit(),
        "wrap sticky": lambda: sticky.hit(),
        "generator step": first_item,
    }


FORM_NAMES = list(forms(Counter()))
FORMS = pytest.mark.parametrize("form", FORM_NAMES)


@FORMS
async def test_a_call_in_a_cancelled_scope_never_starts(form: str) -> None:
    counter = Counter()
    call = forms(counter)[form]
    for _ in range(ROUNDS):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await call()
            pytest.fail("the call returned in a cancelled scope")
        assert scope.cancelled_caught
    assert counter.calls == 0


@FORMS
async def test_a_cancelled_outer_scope_counts_and_a_shield_protects(form: str) -> None:
    counter = Counter()
    call = forms(counter)[form]
    for _ in range(ROUNDS):
        with anyio.CancelScope() as outer:
            with anyio.CancelScope():
                outer.cancel()
                await call()
    assert counter.calls == 0
    for _ in range(ROUNDS):
        with anyio.CancelScope() as outer:
            outer.cancel()
            with anyio.CancelScope(shield=True):
                await call()  # a clean-up under a shield runs
    assert counter.calls == ROUNDS


@ON_ASYNCIO
@FORMS
async def test_a_call_with_a_native_cancel_pending_never_starts(form: str) -> None:
    counter = Counter()
    call = forms(counter)[form]

    async def cancelled_then_call() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # not delivered until this task next yields
        await call()

    for _ in range(ROUNDS):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(cancelled_then_call())
    assert counter.calls == 0


@ON_ASYNCIO
async def test_a_task_made_from_a_cancelled_task_still_runs_its_call() -> None:
    """The check looks at the task that awaits the call, not the one that made it."""
    counter = Counter()
    fast = asyncify(counter.hit)
    results: list[int] = []

    async def cancelled_parent() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        child = asyncio.ensure_future(fast())  # made while this task's cancel is pending
        child.add_done_callback(lambda fut: results.append(fut.result()))
        await asyncio.sleep(1)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(cancelled_parent())
    for _ in range(500):
        if results:
            break
        await asyncio.sleep(0.01)
    assert results == [1]


class Tracked:
    """A context manager function and a generator function that log where they ran."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def where(self) -> str:
        return "main" if threading.current_thread() is threading.main_thread() else "worker"

    @contextlib.contextmanager
    def managed(self) -> Iterator[int]:
        self.log.append("enter")
        try:
            yield 1
        finally:
            self.log.append(f"exit on {self.where()}")

    def items(self) -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            self.log.append(f"close on {self.where()}")


async def test_exit_and_close_run_on_their_thread_when_the_scope_is_cancelled() -> None:
    tracked = Tracked()
    managed = asyncify(tracked.managed)
    items = asyncify(tracked.items)
    for _ in range(ROUNDS):
        with anyio.CancelScope() as scope:
            async with managed():
                scope.cancel()
                await anyio.sleep(0)
        with anyio.CancelScope() as scope:
            async with items() as it:
                async for _item in it:
                    scope.cancel()
                    await anyio.sleep(0)
    assert tracked.log == ["enter", "exit on worker", "close on worker"] * ROUNDS


@ON_ASYNCIO
async def test_a_second_native_cancel_waits_for_the_exit_then_is_raised() -> None:
    tracked = Tracked()
    managed = asyncify(tracked.managed)
    slow_entered = threading.Event()
    exit_started = threading.Event()
    release_exit = threading.Event()

    @contextlib.contextmanager
    def slow_exit() -> Iterator[None]:
        slow_entered.set()
        try:
            yield
        finally:
            exit_started.set()
            release_exit.wait(5)
            tracked.log.append("slow exit done")

    slow = asyncify(slow_exit)

    async def body() -> None:
        async with managed(), slow():
            await asyncio.sleep(10)

    for _ in range(20):
        tracked.log.clear()
        slow_entered.clear()
        exit_started.clear()
        release_exit.clear()
        task = asyncio.create_task(body())
        while not slow_entered.is_set():
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # the task is in its sleep now
        task.cancel()
        while not exit_started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()  # while the exit runs
        await asyncio.sleep(0.01)
        assert not task.done()  # it waits for the exit, whatever the cancellation
        release_exit.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert tracked.log == ["enter", "slow exit done", "exit on worker"]


@ON_ASYNCIO
async def test_a_cancelled_entry_exits_before_the_caller_leaves() -> None:
    """Cancelled while ``__enter__`` runs: the caller waits for it, then for the exit."""
    log: list[str] = []
    go = threading.Event()

    @asyncify
    @contextlib.contextmanager
    def slow_entry() -> Iterator[None]:
        log.append("entering")
        go.wait(5)
        try:
            yield
        finally:
            log.append("exit")

    async def body() -> None:
        async with slow_entry():
            pytest.fail("entered a cancelled block")

    for _ in range(20):
        log.clear()
        go.clear()
        task = asyncio.create_task(body())
        while not log:
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.sleep(0.01)
        assert not task.done()
        go.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert log == ["entering", "exit"]  # no exit left to run after the caller left


async def test_an_exit_that_raises_after_a_cancelled_entry_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    go = threading.Event()
    entered = threading.Event()

    @asyncify
    @contextlib.contextmanager
    def failing_exit() -> Iterator[None]:
        entered.set()
        go.wait(5)
        try:
            yield
        finally:
            raise OSError("exit failed")

    async def enter_then_wait() -> None:
        async with failing_exit():
            pytest.fail("entered a cancelled block")

    async with anyio.create_task_group() as tg:
        tg.start_soon(enter_then_wait)
        while not entered.is_set():
            await anyio.sleep(0.001)
        tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):  # (else the sleep ends at once, and go waits 5 s)
            await anyio.sleep(0.01)
        go.set()
    assert "exiting" in caplog.text and "exit failed" in caplog.text


@pytest.mark.parametrize("policy", ["wait", "abandon"])
async def test_a_cancelled_step_closes_the_generator_before_the_caller_leaves(
    policy: str,
) -> None:
    """Under "wait" the caller of the cancelled step waits for the close; under "abandon" it
    leaves at once, and `aclose()` (leaving ``async with``) waits for it."""
    log: list[str] = []
    go = threading.Event()

    def items() -> Iterator[int]:
        try:
            yield 1
            go.wait(5)
            yield 2
        finally:
            on_worker = threading.current_thread() is not threading.main_thread()
            log.append("closed" if on_worker else "closed on the loop's thread")

    offloaded = asyncify(cancel="wait" if policy == "wait" else "abandon")(items)
    for _ in range(10):
        log.clear()
        go.clear()
        async with offloaded() as it:
            assert await it.__anext__() == 1
            with anyio.move_on_after(0.02):
                threading.Timer(0.05, go.set).start()  # the step ends after the cancellation
                await it.__anext__()
            if policy == "wait":
                assert log == ["closed"]  # closed by the time the cancelled step raised
        assert log == ["closed"]  # and by the time the block is left, in any case


@ON_ASYNCIO
async def test_an_anyio_shield_does_not_hold_off_a_pending_task_cancel() -> None:
    """As anyio documents: its shields stop its own cancellation, not asyncio's."""
    counter = Counter()

    async def cancelled_in_a_shield() -> None:
        with anyio.CancelScope(shield=True):
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await run_sync(counter.hit)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(cancelled_in_a_shield())
    assert counter.calls == 0


# -- a first step made while cancelled, with no thread free ---------------------------------

STEP_KINDS = ["generator", "context manager", "sticky generator", "sticky context manager"]


class Busy:
    """One pool of one thread, and a sticky proxy, each kept busy until `release`; the
    generator and context manager functions of both, which log whether they ran."""

    def __init__(self) -> None:
        self.pool = f"precancelled-{uuid.uuid4().hex[:8]}"
        configure(pools={self.pool: 1})
        self.release = threading.Event()
        self.ran: list[str] = []
        self.proxy = wrap(self, sticky=True)

    def block(self) -> None:
        self.release.wait(10)

    def items(self) -> Iterator[int]:
        self.ran.append("generator")
        yield 1

    @contextlib.contextmanager
    def managed(self) -> Iterator[int]:
        self.ran.append("context manager")
        yield 1

    async def first_step(self, kind: str) -> object:
        """What *kind* awaits first: the generator's first item, the context's entry."""
        if kind == "generator":
            return await asyncify(pool=self.pool)(self.items)().__anext__()
        if kind == "context manager":
            return await asyncify(pool=self.pool)(self.managed)().__aenter__()
        if kind == "sticky generator":
            return await self.proxy.items().__anext__()
        return await self.proxy.managed().__aenter__()

    async def hog(self, kind: str) -> None:
        """Keep the thread *kind* needs busy: the pool's only one, or the proxy's."""
        if kind.startswith("sticky"):
            await self.proxy.block()
        else:
            await asyncify(pool=self.pool)(self.block)()


@pytest.mark.parametrize("kind", STEP_KINDS)
async def test_a_first_step_in_a_cancelled_scope_waits_for_no_thread(kind: str) -> None:
    """It raises at once, as a call does. It waited for the busy thread (forever, behind an
    open generator holding a pool's only thread) to close or exit what never started."""
    busy = Busy()
    threading.Timer(3, busy.release.set).start()  # (bounds the wait before the fix)
    async with anyio.create_task_group() as tg:
        tg.start_soon(busy.hog, kind)
        await anyio.sleep(0.05)
        started = time.monotonic()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await busy.first_step(kind)
        took = time.monotonic() - started
        busy.release.set()
    await busy.proxy.aclose()
    assert scope.cancelled_caught
    assert took < 1, took
    assert busy.ran == []


@ON_ASYNCIO
@pytest.mark.parametrize("kind", STEP_KINDS)
async def test_a_first_step_with_a_native_cancel_pending_waits_for_no_thread(kind: str) -> None:
    busy = Busy()
    threading.Timer(3, busy.release.set).start()

    async def cancelled_then_step() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # not delivered until this task next yields
        await busy.first_step(kind)

    hog = asyncio.ensure_future(busy.hog(kind))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(cancelled_then_step())
    took = time.monotonic() - started
    busy.release.set()
    await hog
    await busy.proxy.aclose()
    assert took < 1, took
    assert busy.ran == []


async def test_an_iterator_whose_first_step_was_cancelled_can_still_be_used() -> None:
    """Nothing started: the next step, made outside the cancelled scope, starts it."""
    busy = Busy()
    items = asyncify(pool=busy.pool)(busy.items)()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await items.__anext__()
    assert busy.ran == []
    async with items:
        assert [item async for item in items] == [1]
    await busy.proxy.aclose()
