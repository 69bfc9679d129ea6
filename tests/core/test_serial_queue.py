"""`SerialQueue`: calls that take turns on one worker, each with its own outcome.

Every async test runs on asyncio and trio. A first call that blocks on a `threading.Event`
keeps the turn busy, so the calls after it are queued behind it for certain.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from typing import Any

import anyio
import pytest

from asyncify_kit import CallCancelled, _executor, check_cancelled, configure
from asyncify_kit._executor import SerialQueue, get_pool
from asyncify_kit._offload import run_serial

pytestmark = pytest.mark.anyio


@pytest.fixture
def queue() -> SerialQueue:
    """A queue on a fresh pool of 4 threads."""
    name = f"test-serial-{uuid.uuid4().hex[:8]}"
    configure(pools={name: 4})
    return SerialQueue(get_pool(name))


class Recorder:
    """Sync calls that note their order, thread and how many of them run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.order: list[int] = []
        self.threads: set[int] = set()

    def call(self, n: int, hold: float = 0.002) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.order.append(n)
            self.threads.add(threading.get_ident())
        time.sleep(hold)
        with self.lock:
            self.running -= 1
        return n * 10


async def _gate(queue: SerialQueue, release: threading.Event, started: threading.Event) -> str:
    def blocker() -> str:
        started.set()
        release.wait(10)
        return "gate"

    return await run_serial(queue, blocker)


async def _until_idle(queue: SerialQueue) -> None:
    """The caller has its result just before the turn ends: wait (bounded) for its end."""
    with anyio.fail_after(5):
        while not queue.idle or queue.pool.stats().running:
            await anyio.sleep(0.001)


async def _record(queue: SerialQueue, rec: Recorder, n: int) -> None:
    await run_serial(queue, rec.call, n)


async def _wait_thread_event(event: threading.Event) -> None:
    with anyio.fail_after(10):
        while not event.is_set():
            await anyio.sleep(0.001)


async def test_calls_take_turns_in_order_on_one_thread(queue: SerialQueue) -> None:
    rec = Recorder()
    release, started = threading.Event(), threading.Event()
    results: dict[int, Any] = {}

    async def one(n: int) -> None:
        results[n] = await run_serial(queue, rec.call, n)

    async def gate() -> None:
        results[-1] = await _gate(queue, release, started)

    async with anyio.create_task_group() as tg:
        tg.start_soon(gate)
        await _wait_thread_event(started)
        for n in range(20):
            tg.start_soon(one, n)
            await anyio.sleep(0)  # each task submits before the next starts
        await anyio.sleep(0.01)
        assert rec.order == []  # all queued behind the gate
        release.set()
    assert results == {-1: "gate", **{n: n * 10 for n in range(20)}}
    assert rec.order == list(range(20))
    assert rec.most == 1
    assert len(rec.threads) == 1  # one turn ran them all
    await _until_idle(queue)


async def test_each_call_gets_its_own_outcome(queue: SerialQueue) -> None:
    def maybe_fail(n: int) -> int:
        if n % 3 == 0:
            raise ValueError(f"bad {n}")
        return n

    outcomes: dict[int, object] = {}

    async def one(n: int) -> None:
        try:
            outcomes[n] = await run_serial(queue, maybe_fail, n)
        except ValueError as exc:
            outcomes[n] = str(exc)

    async with anyio.create_task_group() as tg:
        for n in range(9):
            tg.start_soon(one, n)
    assert outcomes == {n: (f"bad {n}" if n % 3 == 0 else n) for n in range(9)}


async def test_a_call_cancelled_before_its_turn_never_runs(queue: SerialQueue) -> None:
    rec = Recorder()
    release, started = threading.Event(), threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_gate, queue, release, started)
        await _wait_thread_event(started)
        # the gate holds the turn for 10 s: a caller that waited for its turn would time out
        with anyio.fail_after(5), anyio.CancelScope() as scope:
            scope.cancel()  # cancels the await: the call is withdrawn from the queue
            await run_serial(queue, rec.call, 1)
        tg.start_soon(_record, queue, rec, 2)
        await anyio.sleep(0.01)
        release.set()
    assert scope.cancelled_caught
    assert rec.order == [2]


async def test_a_running_call_sees_its_cancellation_and_the_queue_goes_on(
    queue: SerialQueue,
) -> None:
    rec = Recorder()
    entered = threading.Event()
    seen: list[str] = []

    def cooperative() -> None:
        entered.set()
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                check_cancelled()
                time.sleep(0.001)
        except CallCancelled:
            seen.append("cancelled")
            raise

    async def victim(scope: anyio.CancelScope) -> None:
        with scope:
            await run_serial(queue, cooperative)

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(victim, scope)
        await _wait_thread_event(entered)
        tg.start_soon(_record, queue, rec, 7)
        await anyio.sleep(0.01)
        scope.cancel()
    assert seen == ["cancelled"]
    assert rec.order == [7]


async def test_separate_queues_run_in_parallel(queue: SerialQueue) -> None:
    other = SerialQueue(queue.pool)
    barrier = threading.Barrier(2, timeout=5)

    def meet() -> bool:
        barrier.wait()  # breaks (raises) unless both queues run at the same time
        return True

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_serial, queue, meet)
        tg.start_soon(run_serial, other, meet)
    assert not barrier.broken


async def test_a_finished_turn_gives_its_worker_back(queue: SerialQueue) -> None:
    for n in range(3):
        assert await run_serial(queue, Recorder().call, n, 0.0) == n * 10
    await _until_idle(queue)


def test_a_worker_failing_between_calls_hands_the_rest_to_a_new_turn(
    queue: SerialQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    done: list[str] = []
    resubmitted: list[object] = []

    def job(name: str) -> _executor.Job:
        return _executor.Job(lambda: done.append(name), (), {}, contextvars.copy_context(), None)

    def failing_execute(job: _executor.Work, pool: _executor.Pool, **kwargs: object) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(queue.pool, "_submit", resubmitted.append)
    queue.submit(job("a"))  # starts a turn: here, the (stubbed) submission
    queue.submit(job("b"))
    assert resubmitted == [queue]
    monkeypatch.setattr(_executor, "_execute", failing_execute)
    with pytest.raises(KeyboardInterrupt):
        queue.serve()
    assert resubmitted == [queue, queue]  # "b" waits for the new turn
    assert not queue.idle
    monkeypatch.undo()
    queue.serve()
    assert done == ["b"]
    assert queue.idle


async def test_stats_count_the_calls_that_ran_and_name_the_running_one(
    queue: SerialQueue,
) -> None:
    rec = Recorder()
    release, started = threading.Event(), threading.Event()
    pool = queue.pool
    async with anyio.create_task_group() as tg:
        tg.start_soon(_gate, queue, release, started)
        await _wait_thread_event(started)
        assert pool.stats().running_calls == ("_gate.<locals>.blocker",)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await run_serial(queue, rec.call, 1)  # withdrawn: never runs, not counted
        for n in (2, 3):
            tg.start_soon(_record, queue, rec, n)
        await anyio.sleep(0.01)
        release.set()
    await _until_idle(queue)
    assert sorted(rec.order) == [2, 3]
    assert pool.stats().completed == 3  # the gate and two calls


def _counted_jobs(queue: SerialQueue, n: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Queue *n* quick calls on *queue* (its turn not started: the pool's submission is
    stubbed); each notes how many calls had run when its outcome was handed over."""
    ran: list[int] = []
    handed: list[tuple[int, int]] = []  # (call, calls run by then)

    def call(i: int) -> int:
        ran.append(i)
        return i

    def notify(job: _executor.Work) -> None:
        handed.append((job.value, len(ran)))

    for i in range(n):
        queue.submit(_executor.Job(call, (i,), {}, contextvars.copy_context(), notify))
    return ran, handed


def test_quick_calls_hand_over_their_outcomes_in_batches_while_many_are_queued(
    queue: SerialQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue.pool, "_submit", lambda item: None)
    monkeypatch.setattr(_executor, "_HOLD_SECONDS", 60.0)  # no call counts as slow here
    ran, handed = _counted_jobs(queue, 40)
    queue.serve()
    assert ran == list(range(40))
    assert [call for call, _ in handed] == list(range(40))  # each once, in order
    # batches of 8 while at least 8 more wait; then each at once, so none waits for the queue
    # to run dry
    expected = [(i, (i // 8 + 1) * 8) for i in range(32)] + [(i, i + 1) for i in range(32, 40)]
    assert handed == expected
    assert queue.idle


def test_a_slow_call_hands_over_at_once_with_what_is_held(
    queue: SerialQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue.pool, "_submit", lambda item: None)
    monkeypatch.setattr(_executor, "_HOLD_SECONDS", 0.0)  # every call is slow
    _, handed = _counted_jobs(queue, 20)
    queue.serve()
    assert handed == [(i, i + 1) for i in range(20)]


def test_held_outcomes_reach_their_callers_when_the_worker_fails(
    queue: SerialQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue.pool, "_submit", lambda item: None)
    monkeypatch.setattr(_executor, "_HOLD_SECONDS", 60.0)
    ran, handed = _counted_jobs(queue, 20)
    real_execute = _executor._execute

    def execute(job: _executor.Work, pool: _executor.Pool, **kwargs: Any) -> bool:
        if len(ran) == 3:
            raise KeyboardInterrupt  # the worker itself, between calls
        return real_execute(job, pool, **kwargs)

    monkeypatch.setattr(_executor, "_execute", execute)
    with pytest.raises(KeyboardInterrupt):
        queue.serve()
    assert handed == [(0, 3), (1, 3), (2, 3)]  # held, then handed over on the way out


async def test_many_callers_in_flight_get_their_own_outcomes_some_cancelled(
    queue: SerialQueue,
) -> None:
    """Outcomes handed over in batches still reach each caller, on both loops, with callers
    cancelled while their calls wait or run."""
    results: dict[int, int] = {}
    cancelled: list[int] = []

    def call(n: int) -> int:
        if n % 7 == 0:
            time.sleep(0.0002)  # a few slower calls mixed in
        return n * 3

    async def caller(first: int) -> None:
        for n in range(first, first + 10):
            with anyio.CancelScope() as scope:
                if n % 13 == 0:
                    scope.cancel()  # withdrawn before its turn, or cancelled while it runs
                results[n] = await run_serial(queue, call, n)
            if scope.cancelled_caught:
                cancelled.append(n)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for first in range(0, 2000, 10):  # 200 callers in flight
                tg.start_soon(caller, first)
    assert sorted([*results, *cancelled]) == list(range(2000))
    assert all(results[n] == n * 3 for n in results)
    assert all(n % 13 == 0 for n in cancelled)
    await _until_idle(queue)


# -- deferred work -------------------------------------------------------------------------------


async def test_deferred_work_runs_after_the_caller_has_its_outcome_on_the_same_worker(
    queue: SerialQueue,
) -> None:
    release, deferred_started = threading.Event(), threading.Event()
    threads: dict[str, int] = {}

    def later() -> None:
        threads["deferred"] = threading.get_ident()
        deferred_started.set()
        release.wait(10)

    def call() -> str:
        threads["call"] = threading.get_ident()
        queue.defer(later)
        return "done"

    rec = Recorder()
    with anyio.fail_after(5):  # the caller does not wait for the deferred work
        assert await run_serial(queue, call) == "done"
    await _wait_thread_event(deferred_started)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_record, queue, rec, 1)
        await anyio.sleep(0.01)
        assert rec.order == []  # joined the turn: it runs once the deferred work is done
        assert not queue.idle
        release.set()
    assert rec.order == [1]
    assert threads["deferred"] == threads["call"] == rec.threads.pop()
    await _until_idle(queue)


async def test_deferred_work_stays_bounded_while_calls_keep_the_turn_busy(
    queue: SerialQueue,
) -> None:
    release, started = threading.Event(), threading.Event()
    log: list[str] = []

    def call(n: int) -> None:
        log.append(f"call {n}")
        queue.defer(lambda: log.append(f"deferred {n}"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(_gate, queue, release, started)
        await _wait_thread_event(started)
        for n in range(50):
            tg.start_soon(run_serial, queue, call, n)
            await anyio.sleep(0)
        await anyio.sleep(0.01)
        release.set()
    await _until_idle(queue)
    calls = [entry for entry in log if entry.startswith("call")]
    assert calls == [f"call {n}" for n in range(50)]
    assert sorted(entry for entry in log if entry.startswith("deferred")) == sorted(
        f"deferred {n}" for n in range(50)
    )
    pending = 0
    for entry in log:
        pending += 1 if entry.startswith("call") else -1
        assert 0 <= pending <= _executor._DEFER_MAX
    assert log.index("deferred 0") < log.index("call 49")  # not all left to the turn's end


async def test_failing_deferred_work_is_logged_and_the_queue_goes_on(
    queue: SerialQueue, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise ValueError("clean-up broke")

    def call() -> int:
        queue.defer(broken)
        return 1

    assert await run_serial(queue, call) == 1
    await _until_idle(queue)
    assert await run_serial(queue, abs, -2) == 2
    await _until_idle(queue)
    failures = [r for r in caplog.records if r.getMessage().startswith("deferred clean-up")]
    assert len(failures) == 1
    assert failures[0].levelname == "WARNING"
    assert failures[0].exc_info is not None and "clean-up broke" in str(failures[0].exc_info[1])
