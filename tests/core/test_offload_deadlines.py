"""A call's `timeout=` against the moment its caller is woken, made deterministic.

A function can return before its deadline while the loop handles the deadline first: on
asyncio the timer runs before the batch that carries the outcome, on trio the deadline
cancels the waiting task before the worker's wake-up arrives. The caller must still get the
outcome; a call still running at its deadline must still end in `TimeoutError`. The loops'
clocks are driven by hand (a frozen ``loop.time`` on asyncio, trio's `MockClock`) and the
wake-up is held back where a race would otherwise decide the order, so nothing here waits on
a wall-clock margin.

Also here: `stats()` counts a call running on a sticky proxy's thread as running, abandoned
or not, as it does a call on the pool's own threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest
import trio
import trio.testing

from asyncify_kit import CancelPolicy, _executor, asyncify, check_cancelled, configure, stats, wrap

pytestmark = pytest.mark.anyio

POLICIES = pytest.mark.parametrize("policy", ["wait", "abandon"])
FORMS = pytest.mark.parametrize("form", ["asyncify", "wrap", "wrap sticky"])
ON_ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])
ON_TRIO_MOCK_CLOCK = pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("trio", {"clock": trio.testing.MockClock()}), id="trio")]
)
TIMEOUT = 10.0  # seconds of the loop's clock; the wall clock never gets near it here


@pytest.fixture
def pool() -> str:
    """A fresh pool, so no other test's calls share its numbers."""
    name = f"deadline-{uuid.uuid4().hex[:8]}"
    configure(pools={name: 2})
    return name


class Answer:
    """Returns 42 once *go* is set (at once if it is set already)."""

    def __init__(self, go: threading.Event) -> None:
        self.go = go

    def answer(self) -> int:
        self.go.wait(5)
        return 42


def start_call(
    form: str, pool: str, policy: CancelPolicy, target: Answer
) -> tuple[Callable[[], Coroutine[Any, Any, int]], Callable[[], Coroutine[Any, Any, None]]]:
    """The call as *form* makes it (with `TIMEOUT`), and how to close what it opened."""
    if form == "asyncify":

        async def nothing() -> None:
            pass

        answer = asyncify(pool=pool, cancel=policy, timeout=TIMEOUT)(target.answer)
        return answer, nothing
    proxy = wrap(target, pool=pool, cancel=policy, timeout=TIMEOUT, sticky=form == "wrap sticky")
    return proxy.answer, proxy.aclose


def wait_for_the_outcome_queued(loop: asyncio.AbstractEventLoop) -> None:
    """Block the loop until a worker has queued an outcome for it (the call is done)."""
    pending = _executor.loop_waker(loop).pending
    give_up = time.monotonic() + 5
    while not pending:
        assert time.monotonic() < give_up, "the call never finished"
        time.sleep(0.001)


# -- an outcome produced before the deadline is returned ------------------------------------


@ON_ASYNCIO
@pytest.mark.allow_blocking("time.sleep")  # the loop is held on purpose until the call is done
@FORMS
@POLICIES
async def test_asyncio_returns_an_outcome_ready_when_the_timer_fires(
    pool: str, policy: CancelPolicy, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timer and the loop's wake-up are due together, and the timer is handled first."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    monkeypatch.setattr(loop, "time", lambda: now)  # the loop's clock stands still
    go = threading.Event()
    call, close = start_call(form, pool, policy, Answer(go))
    task = asyncio.ensure_future(call())
    await asyncio.sleep(0)  # a coroutine form submits and starts its timer when first run

    def let_it_finish() -> None:
        go.set()
        wait_for_the_outcome_queued(loop)

    # due just before the call's timer: both run in the same batch, this one first, and the
    # outcome reaches the loop only in the next one
    loop.call_at(now + TIMEOUT - 1, let_it_finish)
    monkeypatch.setattr(loop, "time", lambda: now + TIMEOUT + 1)
    try:
        assert await task == 42
    finally:
        await close()


class HeldWakeUps:
    """A trio token whose wake-ups wait until `deliver`: the caller is woken late."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self.token = token
        self.held: list[Callable[[], object]] = []
        self.asked = trio.Event()

    def run_sync_soon(self, sync_fn: Callable[[], object], *, idempotent: bool = False) -> None:
        self.held.append(sync_fn)
        self.token.run_sync_soon(self.asked.set)

    def deliver(self) -> None:
        while self.held:
            self.held.pop(0)()


@ON_TRIO_MOCK_CLOCK
@FORMS
@POLICIES
async def test_trio_returns_an_outcome_ready_before_its_caller_is_woken(
    pool: str, policy: CancelPolicy, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call returns well before its deadline, but its wake-up is only delivered after
    the deadline has cancelled the waiting task."""
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    wake_ups = HeldWakeUps(trio.lowlevel.current_trio_token())
    monkeypatch.setattr(trio.lowlevel, "current_trio_token", lambda: wake_ups)
    go = threading.Event()
    go.set()
    call, close = start_call(form, pool, policy, Answer(go))
    outcome: list[object] = []

    async def caller() -> None:
        try:
            outcome.append(await call())
        except TimeoutError as exc:
            outcome.append(exc)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            await wake_ups.asked.wait()  # the call is done and asks to wake its caller
            monkeypatch.undo()
            clock.jump(TIMEOUT + 1)  # the deadline passes before the wake-up is delivered
    finally:
        wake_ups.deliver()
        await close()
    assert outcome == [42]


# -- a call still running at its deadline times out -----------------------------------------


class UntilCancelled:
    """Runs until its caller has left (or 5 s), then would return 42."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def answer(self) -> int:
        self.started.set()
        give_up = time.monotonic() + 5
        while time.monotonic() < give_up:
            check_cancelled()
            time.sleep(0.001)
        return 42


@ON_TRIO_MOCK_CLOCK
@FORMS
@POLICIES
async def test_trio_a_call_running_at_its_deadline_times_out(
    pool: str, policy: CancelPolicy, form: str
) -> None:
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    target = UntilCancelled()
    if form == "asyncify":
        call: Callable[[], Coroutine[Any, Any, int]] = asyncify(
            pool=pool, cancel=policy, timeout=TIMEOUT
        )(target.answer)
        proxy = None
    else:
        proxy = wrap(
            target, pool=pool, cancel=policy, timeout=TIMEOUT, sticky=form == "wrap sticky"
        )
        call = proxy.answer
    outcome: list[object] = []

    async def caller() -> None:
        try:
            outcome.append(await call())
        except TimeoutError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        while not target.started.is_set():  # the loop's clock stands still meanwhile
            await trio.lowlevel.checkpoint()
        clock.jump(TIMEOUT + 1)
    if proxy is not None:
        await proxy.aclose()
    assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError), outcome


# -- stats() of sticky proxies ----------------------------------------------------------------


class Gate:
    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def hold(self) -> int:
        self.started.set()
        self.release.wait(5)
        return 1


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.005)


async def test_a_call_on_a_sticky_proxy_counts_as_running(pool: str) -> None:
    gate = Gate()
    async with wrap(gate, pool=pool, sticky=True) as proxy:
        async with anyio.create_task_group() as tg:
            tg.start_soon(proxy.hold)
            await until(gate.started.is_set)
            s = stats(pool)
            assert (s.running, s.abandoned, s.running_calls) == (1, 0, ("Gate.hold",))
            gate.release.set()
        await until(lambda: stats(pool).running == 0)
    assert stats(pool).running_calls == ()


async def test_an_abandoned_call_on_a_sticky_proxy_counts_as_running(pool: str) -> None:
    """As in the pool's own threads: abandoned, and still running until its thread returns."""
    gate = Gate()
    async with wrap(gate, pool=pool, sticky=True, cancel="abandon") as proxy:
        async with anyio.create_task_group() as tg:

            async def leave_once_started() -> None:
                await until(gate.started.is_set)
                tg.cancel_scope.cancel()

            tg.start_soon(leave_once_started)
            await proxy.hold()
        s = stats(pool)
        assert (s.running, s.abandoned, s.running_calls) == (1, 1, ("Gate.hold",))
        gate.release.set()
        await until(lambda: stats(pool).abandoned == 0)
        s = stats(pool)
        assert (s.running, s.abandoned, s.running_calls) == (0, 0, ())
