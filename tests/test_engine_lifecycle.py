"""The engine's life at the edges: fork, a loop closed with calls in flight, interpreter exit."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

from asyncify_kit import asyncify, configure, run_sync, stats, wrap
from asyncify_kit._executor import DEFAULT_POOL, SerialQueue, get_pool
from asyncify_kit._offload import run_serial
from tests.conftest import exit_code_in_a_forked_child


def _child_result() -> int:
    return os.getpid()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_pool_works_in_a_forked_child() -> None:
    # Warm the pool so the parent has live worker threads when it forks.
    assert asyncio.run(run_sync(_child_result)) == os.getpid()
    assert stats().threads >= 1

    def child() -> bool:
        return asyncio.run(asyncio.wait_for(run_sync(_child_result), 5)) == os.getpid()

    assert exit_code_in_a_forked_child(child) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_serial_queue_whose_turn_was_running_at_fork_works_in_the_child() -> None:
    queue = SerialQueue(get_pool(DEFAULT_POOL))
    release, started = threading.Event(), threading.Event()

    def blocker() -> str:
        started.set()
        release.wait(10)
        return "gate"

    gate: list[str] = []

    def hold_the_turn() -> None:  # from a thread of its own: fork from one without a loop
        gate.append(asyncio.run(run_serial(queue, blocker)))

    holder = threading.Thread(target=hold_the_turn)
    holder.start()
    assert started.wait(5)
    assert not queue.idle

    def child() -> bool:
        return asyncio.run(asyncio.wait_for(run_serial(queue, os.getpid), 5)) == os.getpid()

    try:
        assert exit_code_in_a_forked_child(child) == 0
    finally:
        release.set()
        holder.join(5)
    assert gate == ["gate"]


def _wait_for_idle_pool(caplog: pytest.LogCaptureFixture) -> None:
    """Wait (bounded) until the default pool runs nothing, capturing the library's warnings."""
    with caplog.at_level(logging.WARNING, logger="asyncify_kit"):
        deadline = time.monotonic() + 5
        while stats().running and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)


def test_loop_closed_with_a_call_in_flight_does_not_break_the_workers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = threading.Event()

    def slow() -> str:
        started.set()
        time.sleep(0.2)
        return "late"

    loop = asyncio.new_event_loop()
    task = loop.create_task(run_sync(slow))
    loop.run_until_complete(asyncio.sleep(0.05))
    assert started.is_set() and not task.done()
    # Close the loop under the running call; drop the pending task without running it.
    task._log_destroy_pending = False  # type: ignore[attr-defined]
    loop.close()
    del task
    _wait_for_idle_pool(caplog)
    assert "event loop closed" in caplog.text
    assert "slow" in caplog.text
    # The pool still serves new loops.
    assert asyncio.run(run_sync(lambda: 42)) == 42


def test_loop_closed_under_a_call_future_logs_it_and_the_workers_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same for the asyncio fast path: a call made inside the loop is its own Future."""
    started = threading.Event()

    @asyncify
    def slow_call() -> str:
        started.set()
        time.sleep(0.2)
        return "late"

    async def start() -> Any:
        return slow_call()  # submitted now, never awaited

    loop = asyncio.new_event_loop()
    call = loop.run_until_complete(start())
    assert started.wait(5) and not call.done()
    loop.close()
    _wait_for_idle_pool(caplog)
    assert "event loop closed" in caplog.text
    assert "slow_call" in caplog.text
    assert not call.done()  # nothing touched the closed loop's future
    assert asyncio.run(run_sync(lambda: 42)) == 42


def test_interpreter_exit_is_bounded_and_names_the_running_call() -> None:
    script = textwrap.dedent(
        """
        import asyncio, time
        from asyncify_kit import asyncify, configure

        configure(shutdown_timeout=0.5)

        @asyncify(cancel="abandon")
        def stuck_in_legacy_code():
            time.sleep(30)

        async def main():
            try:
                await asyncio.wait_for(stuck_in_legacy_code(), 0.05)
            except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11 only
                print("left", flush=True)

        asyncio.run(main())
        """
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=False
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "left"
    assert elapsed < 10
    assert "still running at exit" in proc.stderr
    assert "stuck_in_legacy_code" in proc.stderr


def test_idle_workers_leave_and_the_pool_starts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncify_kit import _executor

    monkeypatch.setattr(_executor, "IDLE_TIMEOUT", 0.05)
    _executor.configure(pools={"short-lived": 3})
    call = asyncify(pool="short-lived")(time.sleep)

    async def burst() -> None:
        await asyncio.gather(*(call(0.02) for _ in range(6)))

    asyncio.run(burst())
    deadline = time.monotonic() + 5
    while stats("short-lived").threads and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stats("short-lived").threads == 0
    asyncio.run(burst())
    assert stats("short-lived").completed == 12


def test_sequential_calls_reuse_one_thread() -> None:
    """A caller awaiting one call after another keeps hitting the thread that just finished
    (warm caches, no thread start per call) instead of spreading over the whole pool."""
    configure(pools={"sequential": 8})
    ident = asyncify(pool="sequential")(threading.get_ident)

    async def run() -> set[int]:
        return {await ident() for _ in range(300)}

    assert len(asyncio.run(run())) <= 2
    assert stats("sequential").threads <= 2


def test_run_sync_never_calls_repr_of_a_bound_methods_object() -> None:
    """repr() may block (psutil's Process reads /proc): the sync check must not call it."""

    class Noisy:
        reprs = 0

        def __repr__(self) -> str:
            Noisy.reprs += 1
            return "Noisy()"

        def value(self) -> int:
            return 7

    assert asyncio.run(run_sync(Noisy().value)) == 7
    assert Noisy.reprs == 0


# -- waking the loop ----------------------------------------------------------------------------

_FD_DIR = "/proc/self/fd"


def _open_fds() -> int:
    gc.collect()
    return len(os.listdir(_FD_DIR))


def _triple(n: int) -> int:
    return 3 * n


def _calls_one_at_a_time_and_in_flight() -> Callable[[], Coroutine[Any, Any, list[int]]]:
    """A workload: calls one after another, and 100 in flight (run_sync and `asyncify`)."""
    triple = asyncify(_triple)

    async def work() -> list[int]:
        out = [await run_sync(abs, -n) for n in range(20)]
        out += await asyncio.gather(*(triple(n) for n in range(100)))
        return out

    return work


_EXPECTED = list(range(20)) + [3 * n for n in range(100)]


class _CountingThreadsafe:
    """Counts ``call_soon_threadsafe`` on one loop (set as an attribute of that loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.calls = 0
        self._original = loop.call_soon_threadsafe

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._original(*args, **kwargs)


def test_workers_wake_the_loop_through_its_own_descriptor() -> None:
    """No ``call_soon_threadsafe`` per batch: the loop watches the waker's descriptor."""
    work = _calls_one_at_a_time_and_in_flight()

    async def main() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        counter = _CountingThreadsafe(loop)
        loop.call_soon_threadsafe = counter  # type: ignore[method-assign,assignment]
        return await work(), counter.calls

    results, threadsafe_calls = asyncio.run(main())
    assert results == _EXPECTED
    assert threadsafe_calls == 0


class _NoReaderLoop(asyncio.SelectorEventLoop):
    """A loop that cannot watch a descriptor (as Windows' proactor)."""

    def add_reader(self, *args: Any) -> None:  # type: ignore[override]
        raise NotImplementedError


@pytest.mark.skipif(not os.path.isdir(_FD_DIR), reason="needs /proc/self/fd")
def test_a_loop_that_cannot_watch_a_descriptor_is_woken_with_call_soon_threadsafe() -> None:
    work = _calls_one_at_a_time_and_in_flight()
    asyncio.run(work())  # the pool's threads, and this thread's cached waker, exist before
    before = _open_fds()
    loop = _NoReaderLoop()
    counter = _CountingThreadsafe(loop)
    loop.call_soon_threadsafe = counter  # type: ignore[method-assign,assignment]
    try:
        assert loop.run_until_complete(work()) == _EXPECTED
    finally:
        loop.close()
    assert counter.calls > 0
    asyncio.run(work())  # replaces the cached waker of the closed loop
    assert _open_fds() == before  # the descriptor it could not register was closed


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@pytest.mark.skipif(not os.path.isdir(_FD_DIR), reason="needs /proc/self/fd")
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_each_loops_wake_descriptor_is_closed_once_the_loop_is_gone(kind: str) -> None:
    work = _calls_one_at_a_time_and_in_flight()

    def run_on_a_new_loop() -> list[int]:
        loop = _new_loop(kind)
        try:
            return loop.run_until_complete(work())
        finally:
            loop.close()

    run_on_a_new_loop()
    asyncio.run(work())  # this thread's cached waker now belongs to a loop of its own
    before = _open_fds()
    for _ in range(20):
        assert run_on_a_new_loop() == _EXPECTED
    asyncio.run(work())
    assert _open_fds() == before


@pytest.mark.skipif(not os.path.isdir(_FD_DIR), reason="needs /proc/self/fd")
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_two_loops_run_in_turn_on_one_thread_keep_one_wake_descriptor_each(kind: str) -> None:
    """pytest-asyncio's session loop and its test loops, or an app keeping two loops: each
    return to a loop used to watch a new descriptor, and keep the old one until its close
    (200 turns: 400 descriptors more, and out of them under a low limit)."""
    from asyncify_kit import _executor

    work = _calls_one_at_a_time_and_in_flight()
    first, second = _new_loop(kind), _new_loop(kind)
    try:
        assert first.run_until_complete(work()) == _EXPECTED
        assert second.run_until_complete(work()) == _EXPECTED
        wakers = (_executor.loop_waker(first), _executor.loop_waker(second))
        before = _open_fds()
        for _ in range(50):
            assert first.run_until_complete(work()) == _EXPECTED
            assert second.run_until_complete(work()) == _EXPECTED
        assert _open_fds() == before
        assert (_executor.loop_waker(first), _executor.loop_waker(second)) == wakers
    finally:
        first.close()
        second.close()


def test_uvloop_is_woken_through_the_wakers_descriptor() -> None:
    """uvloop can watch the waker's descriptor too (its methods cannot be replaced to count
    ``call_soon_threadsafe``, so the waker itself is checked)."""
    from asyncify_kit import _executor

    loop = _new_loop("uvloop")
    try:
        assert loop.run_until_complete(_calls_one_at_a_time_and_in_flight()()) == _EXPECTED
        waker = _executor.loop_waker(loop)
        assert waker.loop is loop
        assert waker._wake_fd != -1
    finally:
        loop.close()


def test_the_wake_descriptor_keeps_no_callers_context_variables_alive() -> None:
    """The loop's handle for the descriptor lives as long as the loop: it must not hold a
    copy of the context of the call that happened to create the waker."""
    var: contextvars.ContextVar[object] = contextvars.ContextVar("request_state")

    class RequestState:
        pass

    async def main() -> bool:
        state = RequestState()
        gone = weakref.ref(state)
        var.set(state)
        assert await run_sync(abs, -1) == 1  # the first call on this loop makes its waker
        var.set(None)
        del state
        gc.collect()
        return gone() is None

    assert asyncio.run(main())


# -- starting threads ------------------------------------------------------------------------


class _Starts:
    """Records which thread started each thread whose name begins with *prefix*; with
    *refuse*, such starts fail as when the process is out of threads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, prefix: str, refuse: bool = False):
        self.prefix = prefix
        self.refuse = refuse
        self.by: list[tuple[str, int]] = []
        original = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            if thread.name.startswith(self.prefix):
                self.by.append((thread.name, threading.get_ident()))
                if self.refuse:
                    raise RuntimeError("can't start new thread")
            original(thread)

        monkeypatch.setattr(threading.Thread, "start", start)


def _run(kind: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if kind == "trio":
        import trio

        return trio.run(main)
    return asyncio.run(main())


@pytest.mark.parametrize("kind", ["asyncio", "trio"])
def test_worker_threads_are_started_off_the_event_loop(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Thread.start` waits until the new thread runs, which takes the GIL: with workers
    running Python code that held the loop 20-105 ms per thread started. The spawner thread
    starts them; the loop only asks (pool workers and a sticky proxy's own thread)."""
    pool = f"spawned-off-loop-{kind}"
    starts = _Starts(monkeypatch, f"asyncify-{pool}-")
    configure(pools={pool: 3})
    both_there = threading.Barrier(3, timeout=10)
    call = asyncify(pool=pool)(both_there.wait)

    async def main() -> tuple[int, list[int]]:
        loop_thread = threading.get_ident()
        async with anyio.create_task_group() as group:
            for _ in range(3):  # three calls at once: three threads, each started for one
                group.start_soon(call)
        async with wrap([3, 1, 2], pool=pool, sticky=True) as proxy:
            await proxy.sort()
        return loop_thread, [by for _, by in starts.by]

    loop_thread, by = _run(kind, main)
    assert len(by) == 4, starts.by  # 3 workers, 1 sticky thread
    assert loop_thread not in by


def test_a_worker_that_cannot_start_fails_the_waiting_call_and_the_pool_recovers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of threads, the call gets a `RuntimeError` that says so, and the pool starts a
    thread again for the next call. (Before, the pool went on counting the thread that never
    started: a pool of one thread never ran a call again, and the exit handler's join of that
    thread raised.)"""
    starts = _Starts(monkeypatch, "asyncify-unstartable-", refuse=True)
    configure(pools={"unstartable": 1})
    double = asyncify(pool="unstartable")(_triple)

    async def main() -> int:
        with anyio.fail_after(10):
            with pytest.raises(RuntimeError, match=r"no worker thread could be started"):
                await double(1)
            assert stats("unstartable").threads == 0
            starts.refuse = False
            return await double(2)

    with caplog.at_level(logging.ERROR, logger="asyncify_kit"):
        assert asyncio.run(main()) == 6
    assert "a worker thread could not start" in caplog.text
    assert "can't start new thread" in caplog.text


def test_a_call_made_after_a_start_failed_is_not_failed_by_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread that cannot start fails the calls queued then, and only those: a call made
    once the caller has seen that failure starts a thread of its own. (Before, the spawner
    went on failing whatever the queue held until it was empty, and a call made as soon as
    the first had failed could be taken too: seen once in a CI run of the test above.)"""
    from asyncify_kit import _executor

    starts = _Starts(monkeypatch, "asyncify-unstartable-later-", refuse=True)
    configure(pools={"unstartable-later": 1})
    triple = asyncify(pool="unstartable-later")(_triple)
    first_failed = threading.Event()
    second_queued = threading.Event()
    refuse = _executor._refuse

    def refuse_then_wait(job: Any, error: BaseException) -> bool:
        refused = refuse(job, error)
        if not first_failed.is_set():
            first_failed.set()
            second_queued.wait(10)  # (the spawner goes on only once the next call is queued)
        return refused

    monkeypatch.setattr(_executor, "_refuse", refuse_then_wait)

    async def main() -> int:
        with anyio.fail_after(10):
            with pytest.raises(RuntimeError, match=r"no worker thread could be started"):
                await triple(1)
            starts.refuse = False
            second = triple(2)  # (queued now: asyncio runs a call from its submission)
            second_queued.set()
            result: int = await second
            return result

    assert asyncio.run(main()) == 6


def test_a_sticky_proxy_whose_thread_cannot_start_fails_its_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _Starts(monkeypatch, "asyncify-default-list", refuse=True)  # (named for its object)

    async def main() -> None:
        with anyio.fail_after(10):
            async with wrap([3, 1, 2], sticky=True) as proxy:
                with pytest.raises(RuntimeError, match=r"cannot run: no worker thread could"):
                    await proxy.sort()
                with pytest.raises(RuntimeError, match=r"cannot run: no worker thread could"):
                    await proxy.sort()

    asyncio.run(main())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_child_process_starts_its_own_spawner_and_survives_its_failure() -> None:
    """After a fork the parent's spawner thread is not there: the child's first call starts
    one. If that start fails, the call fails and says why; the next call starts it."""
    assert asyncio.run(run_sync(_child_result)) == os.getpid()  # the parent's spawner runs

    def child() -> bool:
        original = threading.Thread.start
        refused: list[str] = []

        def start(thread: threading.Thread) -> None:
            if thread.name == "asyncify-spawner" and not refused:
                refused.append(thread.name)
                raise RuntimeError("can't start new thread")
            original(thread)

        threading.Thread.start = start  # type: ignore[method-assign,assignment]

        async def main() -> bool:
            with anyio.fail_after(5):
                try:
                    await run_sync(_child_result)
                except RuntimeError as exc:
                    failed = "no worker thread could be started" in str(exc)
                else:
                    failed = False
                return failed and await run_sync(_child_result) == os.getpid()

        logging.disable(logging.ERROR)  # (the failure is logged: not this test's output)
        return asyncio.run(main()) and refused == ["asyncify-spawner"]

    assert exit_code_in_a_forked_child(child) == 0
