"""The offload semantics of DESIGN.md, on asyncio and trio.

Every async test runs on both backends (the ``anyio_backend`` fixture of tests/conftest.py);
the few that exercise ``asyncio.wait_for`` / ``asyncio.timeout`` are marked asyncio-only.
Sync functions record what happened on their threads (thread ids, concurrency, finally
blocks) so the tests check the behaviour itself, not the library's bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncify_kit
from asyncify_kit import (
    CallCancelled,
    CancelPolicy,
    ConfigError,
    _executor,
    asyncify,
    check_cancelled,
    configure,
    run_sync,
    stats,
    wrap,
)
from asyncify_kit._offload import run_owned

pytestmark = pytest.mark.anyio

SRC = Path(asyncify_kit.__file__).resolve().parent.parent
POLICIES = pytest.mark.parametrize("policy", ["wait", "abandon"])


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
def pool() -> str:
    """A fresh pool of 4 threads, so no other test's calls share its numbers."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    configure(pools={name: 4})
    return name


async def settle(pool: str, *, timeout: float = 5.0) -> None:
    """Wait (bounded) until *pool* has nothing running, waiting or abandoned."""
    with anyio.fail_after(timeout):
        while True:
            s = stats(pool)
            if s.running == 0 and s.waiting == 0 and s.abandoned == 0:
                return
            await anyio.sleep(0.01)


class Concurrency:
    """Counts how many calls run at once inside sync code."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.started = 0
        self.finished = 0

    def run(self, seconds: float) -> str:
        with self.lock:
            self.active += 1
            self.started += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(seconds)
        finally:
            with self.lock:
                self.active -= 1
                self.finished += 1
        return "done"


async def elapsed(awaitable: Callable[[], Awaitable[Any]]) -> tuple[float, BaseException | None]:
    """How long *awaitable()* took, and what it raised."""
    start = time.monotonic()
    try:
        await awaitable()
    except BaseException as exc:  # the test inspects it
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


# -- basic calls ----------------------------------------------------------------------------


async def test_function_runs_in_a_worker_thread() -> None:
    @asyncify
    def where(x: int) -> tuple[int, int]:
        return x * 2, threading.get_ident()

    value, thread = await where(21)
    assert value == 42
    assert thread != threading.get_ident()
    assert where.__name__ == "where"


def test_decorated_function_looks_like_a_coroutine_function() -> None:
    """Frameworks (FastAPI, Starlette) await an endpoint only if it is a coroutine function."""

    def load(path: str, *, mode: str = "rb") -> bytes:
        """Read a file."""
        return b""

    decorated = asyncify(load)
    assert inspect.iscoroutinefunction(decorated)
    assert inspect.signature(decorated) == inspect.signature(load)
    assert decorated.__doc__ == "Read a file."
    assert decorated.__wrapped__ is load  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(load)


async def test_run_sync_passes_args_and_kwargs() -> None:
    def combine(a: int, b: int, *, sep: str) -> str:
        return f"{a}{sep}{b}"

    assert await run_sync(combine, 1, 2, sep="-") == "1-2"


async def test_exceptions_propagate_with_their_type() -> None:
    @asyncify
    def fails() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        await fails()


async def test_stop_iteration_does_not_leak_into_async_code() -> None:
    @asyncify
    def first(items: list[int]) -> int:
        return next(iter(items))

    with pytest.raises(RuntimeError, match="StopIteration"):
        await first([])


async def test_stop_async_iteration_from_a_generator_does_not_end_the_loop_silently() -> None:
    """Raised out of the generator, it would end the caller's ``async for`` as if the items
    had run out; an async generator turns it into RuntimeError (PEP 525), and so does this."""

    @asyncify
    def numbers() -> Iterator[int]:
        yield 1
        raise StopAsyncIteration("the source failed")

    seen: list[int] = []
    with pytest.raises(RuntimeError, match="raised StopAsyncIteration") as info:
        async for n in numbers():
            seen.append(n)
    assert seen == [1]
    assert isinstance(info.value.__cause__, StopAsyncIteration)


class Account:
    rate = 2

    def __init__(self, balance: int) -> None:
        self.balance = balance

    @asyncify
    def bare(self, n: int) -> int:
        return self.balance + n

    @asyncify(cancel="abandon", timeout=5)
    def with_options(self, n: int) -> int:
        return self.balance * n

    @asyncify
    @classmethod
    def cls_inner(cls, n: int) -> int:
        return cls.rate * n

    @classmethod
    @asyncify
    def cls_outer(cls, n: int) -> int:
        return cls.rate * n + 1

    @asyncify(timeout=5)
    @classmethod
    def cls_inner_options(cls, n: int) -> int:
        return cls.rate * n + 2

    @classmethod
    @asyncify(timeout=5)
    def cls_outer_options(cls, n: int) -> int:
        return cls.rate * n + 3

    @asyncify
    @staticmethod
    def static_inner(n: int) -> int:
        return n - 1

    @staticmethod
    @asyncify
    def static_outer(n: int) -> int:
        return n - 2

    @asyncify(pool="default")
    @staticmethod
    def static_inner_options(n: int) -> int:
        return n - 3

    @staticmethod
    @asyncify(pool="default")
    def static_outer_options(n: int) -> int:
        return n - 4


class RichAccount(Account):
    rate = 10


async def test_methods_in_both_decorator_orders() -> None:
    acct = Account(100)
    assert await acct.bare(1) == 101
    assert await acct.with_options(2) == 200
    assert await Account.cls_inner(3) == 6
    assert await Account.cls_outer(3) == 7
    assert await acct.cls_inner(3) == 6
    assert await RichAccount.cls_inner(3) == 30  # cls is bound per subclass
    assert await RichAccount.cls_outer(3) == 31
    assert await Account.cls_inner_options(3) == 8
    assert await RichAccount.cls_outer_options(3) == 33
    assert await Account.static_inner(10) == 9
    assert await acct.static_outer(10) == 8
    assert await Account.static_inner_options(10) == 7
    assert await Account.static_outer_options(10) == 6


async def test_partial_of_a_contextmanager_function_is_an_async_context_manager() -> None:
    threads: list[int] = []

    @contextmanager
    def session(name: str) -> Iterator[str]:
        threads.append(threading.get_ident())
        yield name.upper()
        threads.append(threading.get_ident())

    manage = asyncify(functools.partial(session, "partial"))
    async with manage() as value:
        assert value == "PARTIAL"
    assert len(threads) == 2
    assert threads[0] == threads[1] != threading.get_ident()


async def test_callable_object_and_partial() -> None:
    class Adder:
        def __call__(self, a: int, b: int) -> int:
            return a + b

    assert await asyncify(Adder())(1, 2) == 3
    assert await asyncify(functools.partial(pow, 2))(10) == 1024


# -- rejecting async callables ---------------------------------------------------------------


async def fetch_async() -> int:
    return 1


async def stream_async() -> Any:
    yield 1


class AsyncCallable:
    async def __call__(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("target", "name"),
    [
        (fetch_async, "fetch_async"),
        (stream_async, "stream_async"),
        (AsyncCallable(), "AsyncCallable"),
        (staticmethod(fetch_async), "fetch_async"),
        (functools.partial(fetch_async), "fetch_async"),
    ],
    ids=[
        "coroutine-function",
        "async-generator",
        "async-callable-object",
        "staticmethod",
        "partial",
    ],
)
async def test_async_callables_are_rejected_by_name(target: Any, name: str) -> None:
    with pytest.raises(TypeError, match=rf"{name}.*async"):
        asyncify(target)
    with pytest.raises(TypeError, match=rf"{name}.*async"):
        asyncify(pool="default")(target)
    if not isinstance(target, staticmethod):
        with pytest.raises(TypeError, match=rf"{name}.*async"):
            await run_sync(target)


def test_async_method_rejected_at_class_creation() -> None:
    with pytest.raises(TypeError, match=r"Service\.load"):

        class Service:
            @asyncify
            async def load(self) -> None: ...


async def test_wrap_rejects_async_methods() -> None:
    class Client:
        async def fetch(self) -> int:
            return 1

        def size(self) -> int:
            return 2

    for sticky in (False, True):
        async with wrap(Client(), sticky=sticky) as proxy:
            with pytest.raises(TypeError, match=r"Client\.fetch.*async"):
                proxy.fetch  # noqa: B018 - the attribute access is what raises
            assert await proxy.size() == 2


def test_non_callable_rejected() -> None:
    with pytest.raises(TypeError, match="callable"):
        asyncify(42)  # type: ignore[call-overload]


# -- invalid options and pools -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cancel": "never"}, "invalid cancel policy 'never'; accepted: 'wait' or 'abandon'"),
        ({"timeout": 0}, "invalid timeout 0"),
        ({"timeout": -1.5}, "invalid timeout -1.5"),
        ({"timeout": "5"}, "invalid timeout '5'"),
        ({"timeout": True}, "invalid timeout True"),
        ({"timeout": float("nan")}, "invalid timeout nan"),
        ({"pool": ""}, "pool must be a non-empty pool name"),
    ],
)
def test_invalid_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        asyncify(**options)
    with pytest.raises(ConfigError, match=message):
        wrap(object(), **options)


async def test_unknown_pool_is_a_config_error() -> None:
    @asyncify(pool="no-such-pool")
    def work() -> None: ...

    with pytest.raises(ConfigError, match=r"unknown pool 'no-such-pool'.*configure"):
        await work()
    with pytest.raises(ConfigError, match="unknown pool 'no-such-pool'"):
        stats("no-such-pool")


@pytest.mark.parametrize("size", [0, -1, 2.5, "8", True, None])
def test_configure_rejects_bad_sizes(size: Any) -> None:
    with pytest.raises(ConfigError, match=r"invalid size .* accepted: a whole number >= 1"):
        configure(pools={"sized": size})


@pytest.mark.parametrize(
    "seconds",
    [float("inf"), float("nan"), -1, "5", True, None, pytest.param(10**400, id="10**400")],
)
def test_configure_rejects_bad_shutdown_timeouts(seconds: Any) -> None:
    before = dict(_executor._settings)
    if seconds is None:  # None leaves the setting as it is
        configure(shutdown_timeout=seconds)
    else:
        with pytest.raises(ConfigError, match=r"invalid shutdown_timeout .*; accepted: a finite"):
            configure(shutdown_timeout=seconds)
    assert _executor._settings == before


@pytest.mark.parametrize("name", [3, "", None, b"db"])
def test_configure_rejects_bad_pool_names(name: Any) -> None:
    with pytest.raises(ConfigError, match=r"invalid pool name .*; accepted: a non-empty string"):
        configure(pools={name: 2})
    # nothing was created, so an unknown pool is still reported as such
    with pytest.raises(ConfigError, match="unknown pool 'no-such-pool'"):
        stats("no-such-pool")


def test_configure_rejects_a_non_mapping_and_changes_nothing_when_it_rejects() -> None:
    with pytest.raises(ConfigError, match="invalid pools 'db'; accepted: a dict"):
        configure(pools="db")  # type: ignore[arg-type]
    before = dict(_executor._settings)
    name = f"unmade-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ConfigError, match="invalid size 0"):
        configure(pools={name: 2, "zero": 0}, shutdown_timeout=before["shutdown_timeout"] + 1)
    assert _executor._settings == before
    with pytest.raises(ConfigError, match="unknown pool"):
        stats(name)


def test_a_huge_shutdown_timeout_does_not_break_interpreter_exit() -> None:
    out = _run_python(
        "import asyncio\n"
        "from asyncify_kit import configure, run_sync\n"
        "configure(shutdown_timeout=1e300)\n"
        "print(asyncio.run(run_sync(int, '7')))\n"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "7"
    assert out.stderr == ""


@asynccontextmanager
async def held_calls(pool: str, count: int) -> AsyncIterator[anyio.abc.TaskGroup]:
    """*count* calls on *pool* that each hold their thread until the block ends."""
    release = threading.Event()
    hold = asyncify(pool=pool)(release.wait)
    async with anyio.create_task_group() as tg:
        try:
            for _ in range(count):
                tg.start_soon(hold, 5)
            yield tg
        finally:
            release.set()


async def test_growing_a_pool_starts_threads_for_the_calls_waiting() -> None:
    name = f"grow-{uuid.uuid4().hex[:8]}"
    configure(pools={name: 2})
    async with held_calls(name, 6):
        await _wait_for(lambda: stats(name).waiting == 4)
        configure(pools={name: 6})
        await _wait_for(lambda: stats(name).running == 6)
        s = stats(name)
        assert (s.size, s.threads, s.running, s.waiting) == (6, 6, 6, 0)


async def test_shrinking_a_pool_lets_extra_threads_go_after_their_current_call() -> None:
    name = f"shrink-{uuid.uuid4().hex[:8]}"
    configure(pools={name: 4})
    counter = Concurrency()
    queued = asyncify(pool=name)(counter.run)
    async with held_calls(name, 4) as tg:
        await _wait_for(lambda: stats(name).running == 4)
        for _ in range(4):
            tg.start_soon(queued, 0.02)
        await _wait_for(lambda: stats(name).waiting == 4)
        configure(pools={name: 1})
        s = stats(name)
        assert (s.size, s.running, s.waiting) == (1, 4, 4)
    # the calls queued before the resize ran one at a time, on the one thread left
    assert (counter.peak, counter.finished) == (1, 4)
    await _wait_for(lambda: stats(name).threads == 1)


async def test_shrinking_a_pool_lets_idle_threads_go_at_once() -> None:
    name = f"shrink-idle-{uuid.uuid4().hex[:8]}"
    configure(pools={name: 4})
    async with held_calls(name, 4):
        await _wait_for(lambda: stats(name).running == 4)
    await settle(name)
    assert stats(name).threads == 4  # idle, each would stay for IDLE_TIMEOUT
    configure(pools={name: 1})
    await _wait_for(lambda: stats(name).threads == 1)
    counter = Concurrency()
    work = asyncify(pool=name)(counter.run)
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(work, 0.01)
    assert (counter.peak, counter.finished, stats(name).threads) == (1, 4, 1)


async def test_named_pool_has_its_own_threads() -> None:
    configure(pools={"named-db": 2})
    counter = Concurrency()
    work = asyncify(pool="named-db")(counter.run)
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(work, 0.05)
    assert counter.peak == 2
    with anyio.fail_after(2):  # a worker counts a call just after handing its result back
        while stats("named-db").completed < 6:
            await anyio.sleep(0.01)
    s = stats("named-db")
    assert s.size == 2
    assert s.threads <= 2
    assert s.queue_wait_p99 >= s.queue_wait_p50 >= 0.0


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(SRC), **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=False
    )


_THREADS_PROBE = """
import asyncio, threading, time
import asyncify_kit

lock, active, peak = threading.Lock(), [0], [0]

def work():
    with lock:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
    time.sleep(0.05)
    with lock:
        active[0] -= 1

async def main():
    f = asyncify_kit.asyncify(work)
    await asyncio.gather(*(f() for _ in range(12)))

asyncio.run(main())
print(asyncify_kit.stats().size, peak[0])
"""


def test_asyncify_threads_env_sizes_the_default_pool() -> None:
    out = _run_python(_THREADS_PROBE, ASYNCIFY_THREADS="3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "3"]
    default = _run_python("import asyncify_kit; print(asyncify_kit.stats().size)")
    assert default.stdout.strip() == "40"


@pytest.mark.parametrize("value", ["0", "-2", "many", "²"])
def test_invalid_asyncify_threads_is_a_config_error(value: str) -> None:
    out = _run_python(
        "import asyncify_kit\n"
        "try:\n"
        "    asyncify_kit.stats()\n"
        "except asyncify_kit.ConfigError as exc:\n"
        "    print('ConfigError:', exc)\n",
        ASYNCIFY_THREADS=value,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ConfigError:")
    assert "ASYNCIFY_THREADS" in out.stdout


# -- the 1-thread pool ---------------------------------------------------------------------


@POLICIES
async def test_one_thread_pool_never_runs_two_at_once(policy: CancelPolicy) -> None:
    configure(pools={"one": 1})
    counter = Concurrency()
    call = asyncify(pool="one", cancel=policy)(counter.run)
    timed = asyncify(pool="one", cancel=policy, timeout=0.03)(counter.run)
    outcomes: list[str] = []

    async def impatient(seconds: float, patience: float) -> None:
        with anyio.move_on_after(patience):
            await call(seconds)
            outcomes.append("finished")
            return
        outcomes.append("gave up")

    async def timing_out(seconds: float) -> None:
        try:
            await timed(seconds)
            outcomes.append("finished")
        except TimeoutError:
            outcomes.append("timed out")

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(impatient, 0.06, 0.01 * (i + 1))
            tg.start_soon(timing_out, 0.06)
            tg.start_soon(call, 0.02)
    await settle("one")
    assert counter.peak == 1
    assert counter.active == 0
    assert "gave up" in outcomes
    assert "timed out" in outcomes
    # capacity was held while abandoned threads still ran: the pool never grew
    assert stats("one").threads <= 1


# -- deadlines around a call -----------------------------------------------------------------


def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "late result"


@POLICIES
async def test_fail_after_around_a_slow_call(policy: CancelPolicy) -> None:
    call = asyncify(cancel=policy)(slow)

    async def bounded() -> None:
        with anyio.fail_after(0.1):
            await call(0.5)

    took, exc = await elapsed(bounded)
    assert isinstance(exc, TimeoutError)
    if policy == "wait":
        assert 0.45 <= took < 1.5
    else:
        assert 0.09 <= took < 0.35


@POLICIES
async def test_move_on_after_around_a_slow_call(policy: CancelPolicy) -> None:
    call = asyncify(cancel=policy)(slow)
    start = time.monotonic()
    with anyio.move_on_after(0.1) as scope:
        await call(0.4)
    took = time.monotonic() - start
    assert scope.cancelled_caught
    assert took >= 0.35 if policy == "wait" else took < 0.3


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@POLICIES
async def test_asyncio_wait_for_around_a_slow_call(policy: CancelPolicy) -> None:
    call = asyncify(cancel=policy)(slow)
    took, exc = await elapsed(lambda: asyncio.wait_for(call(0.5), 0.1))
    # asyncio's own TimeoutError: the builtin one from Python 3.11 only
    assert isinstance(exc, asyncio.TimeoutError)
    if policy == "wait":
        assert 0.45 <= took < 1.5
    else:
        assert 0.09 <= took < 0.35


if sys.version_info >= (3, 11):  # asyncio.timeout() is new in Python 3.11

    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    @POLICIES
    async def test_asyncio_timeout_around_a_slow_call(policy: CancelPolicy) -> None:
        call = asyncify(cancel=policy)(slow)

        async def bounded() -> None:
            async with asyncio.timeout(0.1):
                await call(0.5)

        took, exc = await elapsed(bounded)
        assert isinstance(exc, TimeoutError)
        if policy == "wait":
            assert 0.45 <= took < 1.5
        else:
            assert 0.09 <= took < 0.35


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_wait_policy_outlasts_a_second_asyncio_cancellation() -> None:
    """Under "wait" the caller leaves only when the thread has ended, however many times its
    task is cancelled meanwhile (as on trio, where the wait is shielded)."""
    ended: list[float] = []

    @asyncify
    def work(seconds: float) -> None:
        time.sleep(seconds)
        ended.append(time.monotonic())

    task = asyncio.create_task(work(0.4))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended, "the caller left while its thread was still running"

    if sys.version_info >= (3, 11):  # nested deadlines: the outer one expires during the wait
        ended.clear()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.15):
                async with asyncio.timeout(0.05):
                    await work(0.4)
        assert ended, "the caller left while its thread was still running"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_create_task_and_cancel() -> None:
    call = asyncify(slow)
    task = asyncio.create_task(call(0.2))
    await asyncio.sleep(0.05)
    task.cancel()
    start = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - start >= 0.1  # "wait": the caller waited for the thread
    assert await asyncio.create_task(call(0.01)) == "late result"


@POLICIES
@pytest.mark.parametrize("seconds", [0.3, 0.12, 0.105])
async def test_timeout_never_returns_a_result(policy: CancelPolicy, seconds: float) -> None:
    call = asyncify(cancel=policy, timeout=0.1)(slow)
    took, exc = await elapsed(lambda: call(seconds))
    assert isinstance(exc, TimeoutError), exc
    assert "slow" in str(exc)
    if policy == "wait":
        assert took >= seconds - 0.01  # waited for the thread, then still refused the result
    else:
        assert took < 0.25  # left at the deadline


@POLICIES
async def test_timeout_keeps_a_prompt_result(policy: CancelPolicy) -> None:
    call = asyncify(cancel=policy, timeout=1.0)(slow)
    assert await call(0.01) == "late result"


@pytest.mark.parametrize("seconds", [10**400, -(10**400)], ids=["10**400", "-10**400"])
def test_a_timeout_too_large_for_a_float_is_a_config_error(seconds: int) -> None:
    # accepted before, then every call failed with OverflowError computing its deadline
    for make in (lambda: asyncify(timeout=seconds), lambda: wrap(object(), timeout=seconds)):
        with pytest.raises(ConfigError, match=r"invalid timeout.*accepted: a number of seconds"):
            make()


@POLICIES
@pytest.mark.parametrize("seconds", [float("inf"), 1e300, 10**300])
async def test_an_infinite_timeout_is_no_limit(policy: CancelPolicy, seconds: float) -> None:
    """``timeout=math.inf`` (or a huge finite one) means no limit, for every form."""

    def numbers() -> Iterator[int]:
        yield 1
        yield 2

    @contextmanager
    def held() -> Iterator[str]:
        yield "in"

    assert await asyncify(cancel=policy, timeout=seconds)(slow)(0.01) == "late result"
    async with asyncify(cancel=policy, timeout=seconds)(numbers)() as items:
        assert [item async for item in items] == [1, 2]
    async with asyncify(cancel=policy, timeout=seconds)(held)() as value:
        assert value == "in"
    for sticky in (False, True):
        async with wrap([3, 1, 2], sticky=sticky, cancel=policy, timeout=seconds) as proxy:
            assert await proxy.index(1) == 1


@POLICIES
async def test_timeout_race_never_hands_back_a_late_result(policy: CancelPolicy) -> None:
    """Around the deadline a call may time out or finish, but a result is only ever
    returned when the function really returned before the deadline."""
    ends: list[float] = []

    def near_deadline(seconds: float) -> float:
        time.sleep(seconds)
        ends.append(time.monotonic())
        return seconds

    call = asyncify(cancel=policy, timeout=0.03)(near_deadline)
    for i in range(12):
        seconds = 0.024 + 0.001 * i
        start = time.monotonic()
        try:
            await call(seconds)
        except TimeoutError:
            continue
        # returned: the function ended no later than the deadline (timer starts after start)
        assert ends[-1] - start <= 0.03 + 0.02


# -- cancellation ----------------------------------------------------------------------------


@POLICIES
async def test_check_cancelled_stops_a_long_loop(policy: CancelPolicy) -> None:
    progress = {"steps": 0, "stopped": False}

    @asyncify(cancel=policy)
    def crunch() -> None:
        try:
            for _ in range(500):
                check_cancelled()
                progress["steps"] += 1
                time.sleep(0.005)
        except CallCancelled:
            progress["stopped"] = True
            raise

    start = time.monotonic()
    with anyio.move_on_after(0.1):
        await crunch()
    if policy == "wait":
        assert progress["stopped"]
        assert time.monotonic() - start < 1.0  # far from the 2.5 s the loop would take
    with anyio.fail_after(2):
        while not progress["stopped"]:
            await anyio.sleep(0.01)
    assert progress["steps"] < 200


def test_check_cancelled_outside_a_worker_is_a_no_op() -> None:
    check_cancelled()


@POLICIES
async def test_cancelled_calls_leave_stats_and_threads_at_baseline(policy: CancelPolicy) -> None:
    name = f"churn-{policy}"
    configure(pools={name: 8})
    call = asyncify(pool=name, cancel=policy)(slow)
    for _ in range(3):  # warm-up: start the pool's threads
        await call(0.0)
    await settle(name)
    # threads outside this pool's idle workers; the pool may keep up to 8 idle threads
    baseline = threading.active_count() - stats(name).threads
    before = stats(name).completed

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            tg.start_soon(call, 0.002)
        await anyio.sleep(0.02)
        tg.cancel_scope.cancel()

    await settle(name)
    s = stats(name)
    assert (s.running, s.waiting, s.abandoned) == (0, 0, 0)
    assert s.running_calls == ()
    assert s.completed - before < 1000  # most calls were withdrawn before they started
    assert s.threads <= 8
    with anyio.fail_after(5):  # abandoned threads really ended: no thread beyond the pool's
        while threading.active_count() - stats(name).threads > baseline:
            await anyio.sleep(0.02)
    assert threading.active_count() <= baseline + 8

    # the pool still works afterwards, at full size
    counter = Concurrency()
    work = asyncify(pool=name)(counter.run)
    async with anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(work, 0.02)
    assert counter.peak == 8


async def test_abandoned_call_keeps_capacity_until_it_exits(pool: str) -> None:
    configure(pools={pool: 1})
    release = threading.Event()
    started = threading.Event()

    def blocker() -> None:
        started.set()
        release.wait(5)

    with anyio.move_on_after(0.05):
        await asyncify(pool=pool, cancel="abandon")(blocker)()
    assert started.is_set()
    assert stats(pool).abandoned == 1
    second = asyncify(pool=pool)(slow)
    with anyio.move_on_after(0.1) as scope:
        await second(0.0)
    assert scope.cancelled_caught  # the one thread is still held by the abandoned call
    release.set()
    await settle(pool)
    assert await second(0.0) == "late result"


@POLICIES
async def test_call_cancelled_while_queued_never_runs(pool: str, policy: CancelPolicy) -> None:
    configure(pools={pool: 1})
    release = threading.Event()
    ran: list[str] = []

    @asyncify(pool=pool)
    def hog() -> None:
        release.wait(5)

    @asyncify(pool=pool, cancel=policy)
    def queued() -> None:
        ran.append("ran")  # pragma: no cover - must never run

    async with anyio.create_task_group() as tg:
        tg.start_soon(hog)
        with anyio.fail_after(2):
            while stats(pool).running < 1:
                await anyio.sleep(0.01)
        start = time.monotonic()
        with anyio.move_on_after(0.05) as scope:
            await queued()
        assert scope.cancelled_caught
        assert time.monotonic() - start < 0.3  # withdrawn at once, even under "wait"
        assert stats(pool).waiting == 0
        release.set()
    await settle(pool)
    await anyio.sleep(0.05)
    assert ran == []


async def test_late_exception_of_abandoned_call_is_logged(
    pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncify_kit")

    @asyncify(pool=pool, cancel="abandon")
    def explode_later() -> None:
        time.sleep(0.1)
        raise ValueError("late boom")

    with anyio.move_on_after(0.02):
        await explode_later()
    await settle(pool)
    records = [r for r in caplog.records if r.name == "asyncify_kit"]
    assert records, "the late exception was lost"
    record = records[-1]
    assert "explode_later" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)
    assert "late boom" in caplog.text


async def test_late_exception_after_cancel_under_wait_is_logged(
    pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncify_kit")

    @asyncify(pool=pool)
    def explode_later() -> None:
        time.sleep(0.1)
        raise ValueError("late boom under wait")

    with anyio.move_on_after(0.02) as scope:
        await explode_later()
    assert scope.cancelled_caught
    assert "late boom under wait" in caplog.text


async def test_late_call_cancelled_error_is_not_logged(
    pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncify_kit")

    @asyncify(pool=pool, cancel="abandon")
    def polite() -> None:
        for _ in range(100):
            check_cancelled()
            time.sleep(0.005)

    with anyio.move_on_after(0.02):
        await polite()
    await settle(pool)
    assert "polite" not in caplog.text


# -- context, tracebacks ---------------------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def test_contextvars_are_copied_in_and_do_not_leak_back() -> None:
    @asyncify
    def read_and_set() -> str:
        seen = request_id.get()
        request_id.set("changed in thread")
        return seen

    token = request_id.set("req-42")
    try:
        assert await read_and_set() == "req-42"
        assert request_id.get() == "req-42"
    finally:
        request_id.reset(token)


def _user_function_that_fails(x: int) -> int:
    raise ZeroDivisionError(f"cannot divide {x}")


async def test_traceback_shows_caller_and_user_frames_only() -> None:
    call = asyncify(_user_function_that_fails)
    with pytest.raises(ZeroDivisionError) as info:
        await call(7)
    frames = traceback.extract_tb(info.value.__traceback__)
    names = [f.name for f in frames]
    files = [os.path.basename(f.filename) for f in frames]
    assert "test_traceback_shows_caller_and_user_frames_only" in names
    assert names[-1] == "_user_function_that_fails"
    assert "_executor.py" not in files
    assert "contextvars" not in "".join(files)


class _Failing:
    def fail(self, x: int) -> int:
        return _user_function_that_fails(x)


def _library_frames(exc: BaseException) -> list[str]:
    package = os.path.dirname(asyncify_kit.__file__) + os.sep
    return [
        f"{os.path.basename(f.filename)}:{f.name}"
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename.startswith(package)
    ]


async def test_no_library_frame_in_a_traceback_whatever_the_path(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    """Every way in (a decorated call, run_sync, wrap and sticky wrap, a Task made from the
    call on asyncio) gives the caller's and the function's frames, none of the library's."""
    failing = _Failing()
    sticky = wrap(failing, sticky=True)
    paths: dict[str, Callable[[], Awaitable[int]]] = {
        "asyncify": lambda: asyncify(_user_function_that_fails)(7),
        "run_sync": lambda: run_sync(_user_function_that_fails, 7),
        "wrap": lambda: wrap(failing).fail(7),
        "sticky wrap": lambda: sticky.fail(7),
    }
    if anyio_backend[0] == "asyncio":
        paths["create_task"] = lambda: asyncio.ensure_future(asyncify(_user_function_that_fails)(7))
    try:
        for path, call in paths.items():
            with pytest.raises(ZeroDivisionError) as info:
                await call()
            assert _library_frames(info.value) == [], path
            assert traceback.extract_tb(info.value.__traceback__)[-1].name == (
                "_user_function_that_fails"
            ), path
    finally:
        await sticky.aclose()


async def test_frames_of_a_sibling_package_named_like_this_one_are_kept() -> None:
    """Only this package's directory is stripped, not ``asyncify_kit_plugin/`` beside it."""
    filename = str(SRC / "asyncify_kit_plugin" / "tasks.py")
    namespace: dict[str, Any] = {}
    code = compile("def plugin_task():\n    raise KeyError('plugin')\n", filename, "exec")
    exec(code, namespace)  # a function whose frames claim that file name
    for call in (asyncify(namespace["plugin_task"]), lambda: run_sync(namespace["plugin_task"])):
        with pytest.raises(KeyError) as info:
            await call()
        last = traceback.extract_tb(info.value.__traceback__)[-1]
        assert (last.filename, last.name) == (filename, "plugin_task")


async def test_sticky_proxy_copies_the_callers_context_at_each_call() -> None:
    class Reader:
        def current(self) -> str:
            return request_id.get()

    token = request_id.set("at creation")
    try:
        proxy = wrap(Reader(), sticky=True)
    finally:
        request_id.reset(token)
    async with proxy:
        seen = []
        for i in range(3):
            token = request_id.set(f"req-{i}")
            try:
                seen.append(await proxy.current())
            finally:
                request_id.reset(token)
        assert seen == ["req-0", "req-1", "req-2"]
        assert await proxy.current() == "-"


_EMPTY: dict[str, int] = {}


def _implicit_chain() -> None:
    try:
        _EMPTY["key"]
    except KeyError:
        raise ValueError("implicit chain")  # noqa: B904 - the implicit chain is the point


def _explicit_chain() -> None:
    try:
        _EMPTY["key"]
    except KeyError as exc:
        raise ValueError("explicit chain") from exc


def _implicit_chain_stream() -> Iterator[int]:
    yield 1
    _implicit_chain()


class Chains:
    def fail(self) -> None:
        _implicit_chain()


async def test_exception_chains_are_kept() -> None:
    """An offloaded call raises exactly what a direct call would: same __cause__,
    __context__ and __suppress_context__ (the traceback prints the same chain)."""
    sticky_failing = wrap(Chains(), sticky=True)
    for call in (
        asyncify(_implicit_chain),
        lambda: run_sync(_implicit_chain),
        lambda: sticky_failing.fail(),
    ):
        with pytest.raises(ValueError, match="implicit chain") as info:
            await call()
        err = info.value
        assert isinstance(err.__context__, KeyError)
        assert err.__cause__ is None
        assert not err.__suppress_context__
        assert "During handling of the above exception" in "".join(traceback.format_exception(err))

    with pytest.raises(ValueError, match="explicit chain") as explicit:
        await asyncify(_explicit_chain)()
    assert isinstance(explicit.value.__cause__, KeyError)
    assert explicit.value.__suppress_context__

    with pytest.raises(ValueError, match="implicit chain") as streamed:
        async for _ in asyncify(_implicit_chain_stream)():
            pass
    assert isinstance(streamed.value.__context__, KeyError)
    assert not streamed.value.__suppress_context__
    await sticky_failing.aclose()


async def test_traceback_of_a_generator_hides_the_engine() -> None:
    @asyncify
    def broken_stream() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    items = []
    with pytest.raises(OSError, match="disk gone") as info:
        async for item in broken_stream():
            items.append(item)
    assert items == [1]
    frames = traceback.extract_tb(info.value.__traceback__)
    assert frames[-1].name == "broken_stream"
    assert "_executor.py" not in {os.path.basename(f.filename) for f in frames}


# -- generators ------------------------------------------------------------------------------


async def test_generator_closed_after_three_items_finalizes_on_its_thread(pool: str) -> None:
    threads: list[int] = []
    finally_thread: list[int] = []

    @asyncify(pool=pool)
    def numbers() -> Iterator[int]:
        try:
            for i in range(100):
                threads.append(threading.get_ident())
                yield i
        finally:
            finally_thread.append(threading.get_ident())

    stream = numbers()
    got = []
    async for n in stream:
        got.append(n)
        if len(got) == 3:
            break
    await stream.aclose()
    assert got == [0, 1, 2]
    assert len(set(threads)) == 1
    assert finally_thread == threads[:1]
    assert threads[0] != threading.get_ident()
    await settle(pool)


async def test_generator_async_with_closes_on_error(pool: str) -> None:
    events: list[tuple[str, int]] = []

    @asyncify(pool=pool)
    def rows() -> Iterator[int]:
        try:
            for i in range(10):
                events.append(("item", threading.get_ident()))
                yield i
        finally:
            events.append(("finally", threading.get_ident()))

    with pytest.raises(LookupError):
        async with rows() as stream:
            async for n in stream:
                if n == 2:
                    raise LookupError("stop here")
    assert [e[0] for e in events] == ["item", "item", "item", "finally"]
    assert len({e[1] for e in events}) == 1
    await settle(pool)


async def test_generator_exhausted_releases_its_thread(pool: str) -> None:
    @asyncify(pool=pool)
    def three() -> Iterator[str]:
        yield "a"
        yield "b"
        yield "c"

    assert [x async for x in three()] == ["a", "b", "c"]
    await settle(pool)


async def test_generator_dropped_unfinished_is_closed_on_its_thread(pool: str) -> None:
    import gc

    closed = threading.Event()
    threads: list[int] = []

    @asyncify(pool=pool)
    def endless() -> Iterator[int]:
        try:
            while True:
                threads.append(threading.get_ident())
                yield 1
        finally:
            threads.append(threading.get_ident())
            closed.set()

    stream = endless()
    await stream.__anext__()
    del stream
    gc.collect()
    with anyio.fail_after(2):
        while not closed.is_set():
            await anyio.sleep(0.01)
    assert len(set(threads)) == 1
    await settle(pool)


async def test_generator_cancelled_mid_item_still_finalizes(pool: str) -> None:
    finalized = threading.Event()

    @asyncify(pool=pool)
    def slow_items() -> Iterator[int]:
        try:
            yield 1
            time.sleep(0.2)
            yield 2
        finally:
            finalized.set()

    with anyio.move_on_after(0.05):
        async for _ in slow_items():
            pass
    with anyio.fail_after(2):
        while not finalized.is_set():
            await anyio.sleep(0.01)
    await settle(pool)


async def test_generators_hold_one_thread_each(pool: str) -> None:
    configure(pools={pool: 2})

    @asyncify(pool=pool)
    def tagged(tag: str) -> Iterator[tuple[str, int]]:
        for _ in range(5):
            yield tag, threading.get_ident()

    a, b = tagged("a"), tagged("b")
    seen: dict[str, set[int]] = {"a": set(), "b": set()}
    for _ in range(5):  # interleaved: each generator keeps its own thread
        for stream in (a, b):
            tag, thread = await stream.__anext__()
            seen[tag].add(thread)
    await a.aclose()
    await b.aclose()
    assert len(seen["a"]) == 1
    assert len(seen["b"]) == 1
    assert seen["a"] != seen["b"]
    await settle(pool)


@POLICIES
async def test_generator_item_timeout(pool: str, policy: CancelPolicy) -> None:
    log: list[tuple[str, int]] = []

    @asyncify(pool=pool, cancel=policy, timeout=0.05)
    def slow_second() -> Iterator[int]:
        try:
            log.append(("item", threading.get_ident()))
            yield 1
            time.sleep(0.2)
            yield 2
        finally:
            log.append(("finally", threading.get_ident()))

    stream = slow_second()
    assert await stream.__anext__() == 1
    with pytest.raises(TimeoutError):
        await stream.__anext__()
    with pytest.raises(StopAsyncIteration):  # a timed-out iterator is finished
        await stream.__anext__()
    await settle(pool)
    assert [e[0] for e in log] == ["item", "finally"]
    assert log[0][1] == log[1][1]


# -- context managers ------------------------------------------------------------------------


async def test_context_manager_enters_and_exits_on_one_thread(pool: str) -> None:
    events: list[tuple[str, int]] = []

    @asyncify(pool=pool)
    @contextmanager
    def session(name: str) -> Iterator[str]:
        events.append(("enter", threading.get_ident()))
        try:
            yield f"session {name}"
        finally:
            events.append(("exit", threading.get_ident()))

    async with session("a") as value:
        assert value == "session a"
    assert [e[0] for e in events] == ["enter", "exit"]
    assert events[0][1] == events[1][1] != threading.get_ident()
    await settle(pool)


async def test_context_manager_sees_the_body_exception_and_may_suppress(pool: str) -> None:
    seen: list[BaseException | None] = []

    @asyncify(pool=pool)
    @contextmanager
    def swallowing() -> Iterator[None]:
        try:
            yield
        except KeyError as exc:
            seen.append(exc)

    async with swallowing():
        raise KeyError("handled in __exit__")
    assert len(seen) == 1
    assert isinstance(seen[0], KeyError)
    await settle(pool)


async def test_context_manager_exits_with_the_pool_saturated(pool: str) -> None:
    configure(pools={pool: 2})
    release = threading.Event()
    events: list[tuple[str, int]] = []

    @asyncify(pool=pool)
    @contextmanager
    def transaction() -> Iterator[None]:
        events.append(("enter", threading.get_ident()))
        yield
        events.append(("exit", threading.get_ident()))

    @asyncify(pool=pool)
    def hog() -> None:
        release.wait(5)

    async with anyio.create_task_group() as tg:
        async with transaction():
            # the context manager holds one thread; fill the other and queue more behind it
            for _ in range(3):
                tg.start_soon(hog)
            with anyio.fail_after(2):
                while stats(pool).running < 2 or stats(pool).waiting < 2:
                    await anyio.sleep(0.01)
            start = time.monotonic()
        # __exit__ ran although every thread was busy or spoken for
        assert time.monotonic() - start < 0.5
        assert [e[0] for e in events] == ["enter", "exit"]
        assert events[0][1] == events[1][1]
        release.set()
    await settle(pool)


async def test_context_manager_enter_failure_is_raised(pool: str) -> None:
    @asyncify(pool=pool)
    @contextmanager
    def refuses(allowed: bool) -> Iterator[None]:
        if not allowed:
            raise PermissionError("no entry")
        yield  # pragma: no cover - never reached here

    with pytest.raises(PermissionError, match="no entry"):
        async with refuses(False):
            pass  # pragma: no cover
    await settle(pool)


@POLICIES
async def test_context_manager_enter_timeout_still_exits(pool: str, policy: CancelPolicy) -> None:
    log: list[str] = []

    @asyncify(pool=pool, cancel=policy, timeout=0.05)
    @contextmanager
    def slow_to_enter() -> Iterator[None]:
        time.sleep(0.2)
        log.append("entered")
        try:
            yield
        finally:
            log.append("exited")

    with pytest.raises(TimeoutError):
        async with slow_to_enter():
            log.append("body")  # pragma: no cover - must not run
    await settle(pool)
    assert log == ["entered", "exited"]  # the resource acquired late was released


# -- wrap ------------------------------------------------------------------------------------


class Store:
    kind = "store"

    def __init__(self) -> None:
        self.items: dict[str, int] = {}

    def put(self, key: str, value: int) -> int:
        self.items[key] = value
        return threading.get_ident()

    def get(self, key: str) -> int:
        return self.items[key]


async def test_wrap_methods_are_awaitable() -> None:
    store = Store()
    proxy = wrap(store)
    thread = await proxy.put("a", 1)
    assert thread != threading.get_ident()
    assert await proxy.get("a") == 1
    assert proxy.kind == "store"  # plain attributes pass through
    assert proxy.wrapped is store
    with pytest.raises(KeyError):
        await proxy.get("missing")
    assert "AsyncProxy" in repr(proxy)


class SqliteOwner:
    """Creates its sqlite3 connection on the thread that first calls it (check_same_thread)."""

    def __init__(self) -> None:
        self.con: sqlite3.Connection | None = None

    def connect(self) -> int:
        self.con = sqlite3.connect(":memory:")  # check_same_thread=True
        self.con.execute("create table t (x integer)")
        return threading.get_ident()

    def insert(self, x: int) -> int:
        assert self.con is not None
        self.con.execute("insert into t values (?)", (x,))
        return threading.get_ident()

    def total(self) -> int:
        assert self.con is not None
        row = self.con.execute("select sum(x) from t").fetchone()
        return int(row[0])

    def close(self) -> None:
        assert self.con is not None
        self.con.close()


async def test_wrap_sticky_runs_every_call_on_one_thread() -> None:
    async with wrap(SqliteOwner(), sticky=True) as db:
        home = await db.connect()
        threads = set()
        async with anyio.create_task_group() as tg:
            for i in range(20):

                async def insert(i: int = i) -> None:
                    threads.add(await db.insert(i))

                tg.start_soon(insert)
        assert threads == {home}
        assert await db.total() == sum(range(20))
        await db.close()
    with pytest.raises(RuntimeError, match="closed"):
        await db.total()


async def test_dropped_sticky_proxy_releases_its_thread() -> None:
    import gc

    threads: set[int] = set()
    proxy = wrap(Store(), sticky=True)
    threads.add(await proxy.put("a", 1))
    (sticky_thread,) = [t for t in threading.enumerate() if t.ident in threads]
    del proxy
    gc.collect()
    with anyio.fail_after(2):
        while sticky_thread.is_alive():
            await anyio.sleep(0.01)


@POLICIES
async def test_wrap_sticky_timeout_keeps_the_thread_and_order(policy: CancelPolicy) -> None:
    class Napper:
        def nap(self, seconds: float) -> int:
            time.sleep(seconds)
            return threading.get_ident()

    async with wrap(Napper(), sticky=True, cancel=policy, timeout=0.05) as proxy:
        home = await proxy.nap(0)
        with pytest.raises(TimeoutError):
            await proxy.nap(0.2)
        if policy == "abandon":  # the one thread still runs the abandoned call; calls queue
            await anyio.sleep(0.2)
        assert await proxy.nap(0) == home


async def test_wrap_sticky_keeps_call_order() -> None:
    order: list[int] = []

    class Recorder:
        def record(self, i: int) -> None:
            order.append(i)

    proxy = wrap(Recorder(), sticky=True)
    for i in range(10):
        await proxy.record(i)
    await proxy.aclose()
    assert order == list(range(10))


# -- run_owned: a result the caller never took is released ----------------------------------


async def _wait_for(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.005)


async def test_run_owned_releases_the_result_of_a_cancelled_call(pool: str) -> None:
    released: list[tuple[list[int], int]] = []

    def make() -> list[int]:
        time.sleep(0.1)  # the caller is cancelled meanwhile; "wait" lets this finish
        return [1]

    def release(value: list[int]) -> None:
        released.append((value, threading.get_ident()))

    with anyio.move_on_after(0.02) as scope:
        await run_owned(pool, release, make)
    assert scope.cancelled_caught
    await _wait_for(lambda: bool(released))
    assert released[0][0] == [1]
    assert released[0][1] != threading.get_ident()  # on a worker, not the loop


async def test_run_owned_releases_nothing_the_caller_took_or_that_failed(pool: str) -> None:
    released: list[object] = []
    assert await run_owned(pool, released.append, lambda: [2]) == [2]
    with pytest.raises(ZeroDivisionError):
        await run_owned(pool, released.append, _user_function_that_fails, 1)
    with anyio.move_on_after(0.02):  # cancelled, but None is nothing to release
        await run_owned(pool, released.append, time.sleep, 0.1)
    await anyio.sleep(0.15)
    assert released == []


async def test_run_owned_logs_a_failing_release(
    pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    def release(value: object) -> None:
        raise OSError("cannot close")

    def make() -> str:
        time.sleep(0.1)
        return "handle"

    with caplog.at_level(logging.WARNING, logger="asyncify_kit"):
        with anyio.move_on_after(0.02):
            await run_owned(pool, release, make)
        await _wait_for(lambda: "cannot close" in caplog.text)
    assert "releasing an unclaimed 'handle' failed" in caplog.text


# -- stats ---------------------------------------------------------------------------------


async def test_stats_counts_running_and_completed(pool: str) -> None:
    release = threading.Event()

    @asyncify(pool=pool)
    def hold() -> None:
        release.wait(5)

    before = stats(pool)
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(hold)
        with anyio.fail_after(2):
            while stats(pool).running < 4:
                await anyio.sleep(0.01)
        during = stats(pool)
        assert during.running == 4
        assert during.waiting == 2
        assert all("hold" in call for call in during.running_calls)
        release.set()
    with anyio.fail_after(2):  # a worker counts a call just after handing its result back
        while stats(pool).completed - before.completed < 6:
            await anyio.sleep(0.01)
    after = stats(pool)
    assert after.completed - before.completed == 6
    assert (after.running, after.waiting, after.abandoned) == (0, 0, 0)


async def test_stats_is_safe_while_calls_start_and_finish() -> None:
    """stats() from another thread while many short calls run: never 'changed size'."""
    name = "stats-stress"
    configure(pools={name: 100})
    failures: list[BaseException] = []
    stop = threading.Event()

    def poll_stats() -> None:
        while not stop.is_set():
            try:
                stats(name)
            except RuntimeError as exc:  # pragma: no cover - the bug this guards against
                failures.append(exc)
                return

    poller = threading.Thread(target=poll_stats)
    poller.start()
    work = asyncify(pool=name)(time.sleep)
    try:
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline and not failures:
            async with anyio.create_task_group() as tg:
                for _ in range(200):
                    tg.start_soon(work, 0.001)
    finally:
        stop.set()
        await run_sync(poller.join)  # off the loop: Thread.join blocks it
    assert failures == []
