"""The asyncio fast path: inside a running loop a decorated function returns a `Call`.

A `Call` is the call's own Future (submitted when the function is called) and a coroutine
at the same time. These tests pin what that changes and what it must not change: the cancel
policies seen through ``gather``/``wait_for``/``create_task``/``cancel()``/``close()``, eager
start, laziness outside a loop, coroutine-function detection, pickling.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import logging
import pickle
import threading
import time
import uuid
from typing import Any

import pytest

from asyncify_kit import CancelPolicy, asyncify, configure, stats
from asyncify_kit._offload import Call, OffloadedFunction

pytestmark = pytest.mark.anyio
POLICIES = pytest.mark.parametrize("policy", ["wait", "abandon"])


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: on trio (and outside a loop) a call is a plain coroutine."""
    return "asyncio"


@asyncify
def double(x: int) -> int:
    """Module level, so pickle can find it by name."""
    return 2 * x


def _slow(
    seconds: float, ended: list[float] | None = None, started: threading.Event | None = None
) -> str:
    if started is not None:
        started.set()
    time.sleep(seconds)
    if ended is not None:
        ended.append(time.monotonic())
    return "late result"


def _fresh_pool() -> str:
    name = f"call-{uuid.uuid4().hex[:8]}"
    configure(pools={name: 4})
    return name


async def _running(started: threading.Event) -> None:
    """Until a call's thread has started it (a fixed sleep was too short under CI's load: a
    call cancelled before its thread takes it never runs, so there is nothing to wait for)."""
    for _ in range(1000):
        if started.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the call did not start within 5 s")


async def _settled(pool: str) -> None:
    for _ in range(500):
        s = stats(pool)
        if s.running == 0 and s.waiting == 0 and s.abandoned == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"pool {pool} did not settle: {stats(pool)}")


async def test_a_call_is_a_future_and_a_coroutine() -> None:
    call = double(21)
    assert isinstance(call, Call)
    assert asyncio.isfuture(call)
    assert asyncio.iscoroutine(call)
    assert isinstance(call, collections.abc.Coroutine)
    assert asyncio.ensure_future(call) is call  # gather and wait create no Task for it
    assert await call == 42
    assert await asyncio.create_task(double(5)) == 10
    assert list(await asyncio.gather(double(1), double(2))) == [2, 4]


async def test_a_call_starts_when_called_inside_a_loop() -> None:
    started = threading.Event()

    @asyncify
    def mark() -> None:
        started.set()

    call = mark()
    await asyncio.sleep(0)  # one loop step: the thread runs without the call being awaited
    assert await asyncio.to_thread(started.wait, 5.0)
    await call


def test_outside_a_loop_a_call_is_a_lazy_coroutine() -> None:
    ran: list[int] = []

    @asyncify
    def record(x: int) -> int:
        ran.append(x)
        return x

    coro = record(7)
    assert inspect.iscoroutine(coro)
    assert ran == []  # nothing submitted before it is awaited
    assert asyncio.run(coro) == 7
    assert ran == [7]


def test_decorated_functions_and_methods_are_coroutine_functions() -> None:
    class Repo:
        @asyncify
        def get(self) -> int:
            return 1

        @classmethod
        @asyncify
        def build(cls) -> Repo:
            return cls()

    for fn in (double, Repo.get, Repo().get, Repo.build):
        assert inspect.iscoroutinefunction(fn), fn
        assert asyncio.iscoroutinefunction(fn), fn
    assert isinstance(double, OffloadedFunction)
    assert getattr(double, "__name__", None) == "double"
    assert double.__doc__ == "Module level, so pickle can find it by name."
    assert "double" in repr(double)


def test_a_module_level_decorated_function_pickles_by_reference() -> None:
    assert pickle.loads(pickle.dumps(double)) is double


@POLICIES
async def test_gather_cancelled_applies_the_policy(policy: CancelPolicy) -> None:
    """Cancelling a task in ``gather`` cancels the calls as Futures: "wait" leaves only
    when the threads have ended, "abandon" at once; capacity comes back either way."""
    pool = _fresh_pool()
    call = asyncify(pool=pool, cancel=policy)(_slow)
    ended: list[float] = []
    started = threading.Event()
    slow: Any = call(0.3, ended, started)
    quick: Any = call(0.01)

    async def fan_out() -> None:
        await asyncio.gather(slow, quick)

    task = asyncio.create_task(fan_out())
    # gather itself leaves when its first child ends cancelled: so the quick child must be
    # over, and the slow one running, when the task is cancelled (a fixed 50 ms sleep was
    # too short for either under CI's load)
    await _running(started)
    for _ in range(1000):
        if quick.done():
            break
        await asyncio.sleep(0.005)
    assert quick.done() and not slow.done()
    task.cancel()
    start = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    if policy == "wait":
        assert ended, "the caller left while its thread was still running"
    else:
        assert time.monotonic() - start < 0.2
        assert ended == []
    await _settled(pool)


@POLICIES
async def test_cancel_of_the_call_itself(policy: CancelPolicy) -> None:
    """A call used as a plain Future: ``cancel()`` itself applies the policy."""
    pool = _fresh_pool()
    call = asyncify(pool=pool, cancel=policy)(_slow)
    ended: list[float] = []
    started = threading.Event()
    fut: Any = call(0.3, ended, started)
    await _running(started)
    assert not fut.done()
    assert fut.cancel()
    if policy == "wait":
        assert not fut.done()  # cancelled only once the thread has finished
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(fut), 5.0)
        assert ended, "cancelled before the thread ended"
    else:
        assert fut.cancelled()
        assert ended == []
    await _settled(pool)


async def test_a_queued_call_cancelled_as_a_future_never_runs() -> None:
    configure(pools={"call-one": 1})
    ran: list[str] = []
    blocker = asyncify(pool="call-one")(_slow)
    record = asyncify(pool="call-one")(ran.append)
    first = blocker(0.2)
    queued: Any = record("queued")
    await asyncio.sleep(0.02)
    assert queued.cancel()
    assert queued.cancelled()  # withdrawn at once: it had not started
    await first
    await _settled("call-one")
    assert ran == []


async def test_late_error_of_a_call_cancelled_as_a_future_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = threading.Event()

    @asyncify
    def fails_late() -> None:
        started.set()
        time.sleep(0.15)
        raise ValueError("late")

    fut: Any = fails_late()
    await _running(started)
    fut.cancel()
    with (
        caplog.at_level(logging.WARNING, logger="asyncify_kit"),
        pytest.raises(asyncio.CancelledError),
    ):
        await asyncio.gather(fut)
    assert any(
        "fails_late raised after its caller was cancelled" in r.getMessage() for r in caplog.records
    )


@POLICIES
async def test_timeout_through_gather(policy: CancelPolicy) -> None:
    call = asyncify(cancel=policy, timeout=0.05)(_slow)
    ended: list[float] = []
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.gather(call(0.3, ended))
    took = time.monotonic() - start
    if policy == "wait":
        assert took >= 0.25 and ended
    else:
        assert took < 0.25


@POLICIES
async def test_close_of_an_unawaited_call_applies_the_policy(policy: CancelPolicy) -> None:
    pool = _fresh_pool()
    call = asyncify(pool=pool, cancel=policy)(_slow)
    fut: Any = call(0.2)
    await asyncio.sleep(0.02)
    fut.close()  # as a dropped coroutine would be closed
    if policy == "abandon":
        assert fut.cancelled()
    await _settled(pool)
    # under "wait" the call ends cancelled once the loop has taken the thread's end, which
    # may come after the pool's counts show it (the worker counts first, then wakes the loop)
    for _ in range(500):
        if fut.done():
            break
        await asyncio.sleep(0.01)
    assert fut.cancelled()


async def test_throw_into_a_call_driven_as_a_coroutine() -> None:
    fut: Any = double(3)
    assert fut.send(None) is fut  # first step: waiting for the thread
    with pytest.raises(KeyError):
        fut.throw(KeyError("boom"))


async def test_errors_through_gather_keep_their_type_and_frames() -> None:
    @asyncify
    def broken() -> None:
        raise LookupError("missing")

    with pytest.raises(LookupError, match="missing") as info:
        await asyncio.gather(broken())
    names = [entry.name for entry in info.traceback]
    assert "broken" in names
