"""Offload: the cost of handing a sync call to a worker thread and getting its result back.

Three scenarios, every implementation on a 40-thread pool:

* one call at a time: ``await offload(noop)`` in sequence (pure per-hop latency);
* 1,000 in flight: ``gather`` of 1,000 ``offload(noop)`` calls, repeated (throughput when a
  burst arrives: queueing, wake-ups, per-call bookkeeping);
* a realistic mix: 10,000 calls of ``time.sleep(50e-6)`` (about 50-110 µs of blocking that
  releases the GIL, like a short driver or file call), 100 in flight (100 worker tasks).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from benchmarks._harness import Case, LoopKind, Runner, Scenario, Section, Target, timed

THREADS = 40
"""Thread limit of every implementation (anyio's default limiter; asyncify-kit's default)."""

BURST = 1_000
MIX_IN_FLIGHT = 100
MIX_WORK_S = 50e-6

BASELINE = "anyio.to_thread.run_sync"
SUBJECT = "asyncify-kit"

Offload = Callable[[Callable[[], object]], Awaitable[object]]
"""Runs a zero-argument sync callable in a worker thread; awaits its result."""


def noop() -> None:
    """The no-op whose hand-off we measure."""


def short_work() -> None:
    """About 50 µs of GIL-releasing blocking (the kernel's timer slack may add ~50 µs)."""
    time.sleep(MIX_WORK_S)


# --- the implementations: each returns an `Offload` bound to the running loop ----------------


def _asyncify_kit() -> Offload:
    from asyncify_kit import asyncify, configure

    configure(default_threads=THREADS)
    # `@asyncify` applied once per function, as an application would
    wrapped: dict[Callable[[], object], Callable[[], Awaitable[object]]] = {
        fn: asyncify(fn) for fn in (noop, short_work)
    }

    def offload(fn: Callable[[], object]) -> Awaitable[object]:
        return wrapped[fn]()

    return offload


def _to_thread() -> Offload:
    return asyncio.to_thread


def _run_in_executor() -> Offload:
    loop = asyncio.get_running_loop()
    return functools.partial(loop.run_in_executor, None)


def _anyio() -> Offload:
    import anyio.to_thread

    return anyio.to_thread.run_sync


def _asyncer() -> Offload:
    import asyncer

    wrapped: dict[Callable[[], object], Callable[[], Awaitable[object]]] = {
        fn: asyncer.asyncify(fn) for fn in (noop, short_work)
    }

    def offload(fn: Callable[[], object]) -> Awaitable[object]:
        return wrapped[fn]()

    return offload


def _starlette() -> Offload:
    from starlette.concurrency import run_in_threadpool

    return run_in_threadpool


def _asgiref() -> Offload:
    from asgiref.sync import sync_to_async

    wrapped: dict[Callable[[], object], Callable[[], Awaitable[object]]] = {
        fn: sync_to_async(fn, thread_sensitive=False) for fn in (noop, short_work)
    }

    def offload(fn: Callable[[], object]) -> Awaitable[object]:
        return wrapped[fn]()

    return offload


IMPLEMENTATIONS: list[tuple[str, Callable[[], Offload], LoopKind, bool]] = [
    (SUBJECT, _asyncify_kit, "asyncio", False),
    ("asyncio.to_thread", _to_thread, "asyncio", True),
    ("loop.run_in_executor", _run_in_executor, "asyncio", True),
    (BASELINE, _anyio, "asyncio", True),
    ("asyncer.asyncify", _asyncer, "asyncio", True),
    ("starlette run_in_threadpool", _starlette, "asyncio", True),
    ("asgiref sync_to_async", _asgiref, "asyncio", True),
]
if importlib.util.find_spec("uvloop") is not None:
    IMPLEMENTATIONS.insert(1, (f"{SUBJECT} (uvloop)", _asyncify_kit, "uvloop", False))

# asyncify-kit with the loop woken as before it watched a descriptor of its own
THREADSAFE_WAKE = f"{SUBJECT}, call_soon_threadsafe wake (reference)"
FLOOR = "floor: no thread (reference)"
FUTURE_FLOOR = "floor: ready futures (reference)"


def _asyncify_kit_threadsafe_wake() -> Offload:
    """asyncify-kit whose workers wake this loop with ``call_soon_threadsafe``."""
    from asyncify_kit import _executor

    loop = asyncio.get_running_loop()
    # this case's loop runs in a thread of its own: its cached waker serves only this loop
    _executor._tls.waker = _executor._LoopWaker(loop, watch=False)
    return _asyncify_kit()


def _floor() -> Offload:
    """The same coroutine-and-gather plumbing with no thread at all: the no-op scenarios'
    lower bound on this machine (not a peer; blocking work inline would stall the loop)."""

    async def offload(fn: Callable[[], object]) -> object:
        return fn()

    return offload


def _future_floor() -> Offload:
    """The same without coroutines: each call returns an already-done Future, so ``gather``
    creates no Task. The lower bound for an API whose calls return Futures."""
    loop = asyncio.get_running_loop()

    def offload(fn: Callable[[], object]) -> Awaitable[object]:
        future = loop.create_future()
        future.set_result(fn())
        return future

    return offload


# --- the scenarios ---------------------------------------------------------------------------


async def _one_at_a_time(offload: Offload, ops: int) -> float:
    return await timed(ops, lambda: offload(noop))


async def _in_flight(offload: Offload, ops: int) -> float:
    start = time.perf_counter()
    done = 0
    while done < ops:
        burst = min(BURST, ops - done)
        await asyncio.gather(*(offload(noop) for _ in range(burst)))
        done += burst
    return time.perf_counter() - start


async def _mix(offload: Offload, ops: int) -> float:
    remaining = ops

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await offload(short_work)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(MIX_IN_FLIGHT, ops))))
    return time.perf_counter() - start


SCENARIOS: dict[str, Callable[[Offload, int], Awaitable[float]]] = {
    "one_at_a_time": _one_at_a_time,
    "in_flight": _in_flight,
    "mix": _mix,
}


def _setup(
    make: Callable[[], Offload], scenario: str
) -> Callable[[], AbstractAsyncContextManager[Runner]]:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        # Same thread limit everywhere: asyncio's default executor would otherwise have
        # min(32, cpus + 4) threads (6 here), anyio's limiter has 40.
        executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="bench-default")
        asyncio.get_running_loop().set_default_executor(executor)
        offload = make()
        measure = SCENARIOS[scenario]

        async def run(ops: int) -> float:
            return await measure(offload, ops)

        yield run

    return setup


def _cases() -> list[Case]:
    cases = [
        Case(scenario, name, setup=_setup(make, scenario), loop=loop, peer=peer)
        for scenario in SCENARIOS
        for name, make, loop, peer in IMPLEMENTATIONS
    ]
    cases += [
        Case(
            scenario,
            THREADSAFE_WAKE,
            setup=_setup(_asyncify_kit_threadsafe_wake, scenario),
            reference=True,
        )
        for scenario in SCENARIOS
    ]
    cases += [
        Case(scenario, FLOOR, setup=_setup(_floor, scenario), reference=True)
        for scenario in ("one_at_a_time", "in_flight")
    ]
    cases.append(
        Case("in_flight", FUTURE_FLOOR, setup=_setup(_future_floor, "in_flight"), reference=True)
    )
    return cases


SECTION = Section(
    name="offload",
    title="Offload: per-call overhead of the thread hand-off",
    baseline=BASELINE,
    description=(
        "Time per call of handing a sync function to a worker thread and awaiting its result, "
        "all implementations in one process run, interleaved."
    ),
    scenarios=(
        Scenario(
            "one_at_a_time",
            "no-op, one call at a time",
            ops=2_000,
            quick_ops=300,
            description="`await offload(noop)` in sequence.",
            targets=(Target(SUBJECT, max_ratio=0.6, faster_than_peers=True),),
        ),
        Scenario(
            "in_flight",
            "no-op, 1,000 in flight",
            ops=5 * BURST,
            quick_ops=BURST,
            description="`asyncio.gather` of 1,000 `offload(noop)` calls, repeated.",
            targets=(Target(SUBJECT, max_ratio=0.1, faster_than_peers=True),),
        ),
        Scenario(
            "mix",
            "50 µs sleep, 100 in flight",
            ops=10_000,
            quick_ops=1_000,
            description="`time.sleep(50e-6)` per call, 100 worker tasks sharing the calls.",
            targets=(Target(SUBJECT, faster_than_peers=True),),
        ),
    ),
    cases=_cases,
    packages=("asyncify-kit", "anyio", "asyncer", "starlette", "asgiref", "uvloop"),
    notes=(
        f"Every implementation has {THREADS} threads: anyio's default limiter (used by anyio, "
        f"asyncer and starlette); asyncify-kit's default pool (`configure(default_threads="
        f"{THREADS})`); and each asyncio loop gets `loop.set_default_executor(ThreadPoolExecutor"
        f"({THREADS}))` (asyncio's default is min(32, CPUs + 4)), used by `asyncio.to_thread`, "
        "`loop.run_in_executor(None, ...)` and asgiref.",
        "asgiref runs with `sync_to_async(fn, thread_sensitive=False)`: its default "
        "`thread_sensitive=True` runs every call on one shared thread, in order (a different "
        "job, not a fair comparison).",
        "The mix's work is `time.sleep(50e-6)`: it releases the GIL like a short driver or file "
        "call; Linux timer slack makes each sleep last roughly 60-110 µs.",
        f"`{FLOOR}` awaits the no-op inline through the same coroutine and `gather` "
        "plumbing: the lower bound of the no-op scenarios for a coroutine API (with 1,000 in "
        "flight, mostly the cost of one asyncio Task per coroutine). "
        f"`{FUTURE_FLOOR}` returns already-done Futures instead of coroutines, so `gather` "
        "creates no Task: the bound for an API whose calls return Futures, as asyncify-kit's "
        "do inside a running asyncio loop (the call is its own Future and also a coroutine; "
        "`loop.run_in_executor` returns a Future too). Neither is a peer.",
        f"`{THREADSAFE_WAKE}` is asyncify-kit with its workers waking the loop through "
        "`loop.call_soon_threadsafe`, as it did before the loop watched a descriptor of the "
        "library's own (an eventfd; see docs/offload.md, Engine): the gain of that change, "
        "measured in the same run. Not a peer.",
        "Each implementation runs on its own event loop (asyncio unless marked uvloop); "
        "`asyncify-kit` is applied once per function with `@asyncify`, asyncer and asgiref "
        "wrappers likewise.",
    ),
)
