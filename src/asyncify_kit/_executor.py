"""The thread hand-off behind `asyncify`: named pools of worker threads.

A call becomes a `Job` put on its pool's queue (on asyncio, the call's own future, an
``_offload.Call``, is the job). A worker thread runs it in a copy of the caller's contextvars
and then completes the caller itself:

* on asyncio, the worker appends the job to its loop's `_LoopWaker` and wakes the loop once
  per batch (one write to a descriptor the loop watches, for however many results arrived
  meanwhile); the loop then settles each job's future. No per-call checkpoint, no second
  future.
* on trio, the worker sets a `trio.Event` through the run's `TrioToken`.

A pool never runs more calls at once than it has threads, and a thread whose caller left
("abandon" policy) keeps its place until the call really returns. Generators and context
managers hold one worker of their pool for their whole life (a `Lane`), so every step runs on
the same thread and ``__exit__``/``close()`` never wait for pool capacity. Calls that only
contend when they run in parallel can share a `SerialQueue`: one worker runs them in turn.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import functools
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Final

from ._config import env_setting, whole_number
from .exceptions import CallCancelled, ConfigError

__all__ = [
    "Job",
    "Lane",
    "Pool",
    "PoolStats",
    "SerialQueue",
    "Work",
    "configure",
    "current_job",
    "get_pool",
    "stats",
]

logger = logging.getLogger("asyncify_kit")

_sniffio_thread_local: Any
try:  # trio sets sniffio's thread-local to "trio" while its scheduler runs, guest mode included
    from sniffio import thread_local as _sniffio_thread_local
except ImportError:  # pragma: no cover - trio depends on sniffio: without it there is no trio
    _sniffio_thread_local = None
_get_running_loop: Final = asyncio._get_running_loop


def asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop that runs the current task, or None: no loop, or a trio task.

    ``asyncio._get_running_loop()`` alone (a C call that never raises) is not enough: in
    trio's guest mode (``trio.lowlevel.start_guest_run`` on an asyncio host) trio's tasks run
    inside the host loop's callbacks, where it returns the host loop, and an asyncio future
    awaited there breaks trio ("unrecognized yield message"). Trio marks its own steps in
    sniffio's thread-local, in guest mode as in ``trio.run``.
    """
    loop = _get_running_loop()
    if loop is not None and _sniffio_thread_local and _sniffio_thread_local.name == "trio":
        return None
    return loop


PENDING: Final = 0
RUNNING: Final = 1
DONE: Final = 2
CANCELLED: Final = 3

DEFAULT_POOL: Final = "default"
DEFAULT_THREADS: Final = 40
IDLE_TIMEOUT: Final = 10.0
SHUTDOWN_TIMEOUT: Final = 5.0


class Work:
    """What a worker runs: a `Job`, or on asyncio the call's own future (``_offload.Call``).

    Declarations only (no slots of its own): each subclass lays out these attributes.
    """

    if not TYPE_CHECKING:  # mypy would refuse assignments to attributes missing from slots
        __slots__ = ()

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ctx: contextvars.Context
    notify: Callable[[Work], None] | None
    value: Any
    error: BaseException | None
    abandoned: bool
    timed_out: bool
    deadline: float
    finished: float
    cancel_requested: bool
    enqueued: float
    counted: bool
    start_claim: list[None]
    end_claim: list[None]

    def describe(self) -> str:
        return getattr(self.fn, "__qualname__", None) or repr(self.fn)

    def settle(self) -> None:
        """Hand the outcome to the waiting caller (on the loop's thread); see `_LoopWaker`."""
        raise NotImplementedError

    def outcome_future(self) -> asyncio.Future[Any]:
        """The asyncio future that `settle` completes."""
        raise NotImplementedError

    def redirect(self, waiter: asyncio.Future[Any]) -> None:
        """From now on `settle` only completes *waiter*: the caller was cancelled and waits
        for the thread to end (the "wait" policy); the call's own outcome is dropped."""
        raise NotImplementedError


class Job(Work):
    """One call handed to a worker thread, and its outcome."""

    __slots__ = (
        "abandoned",
        "args",
        "cancel_requested",
        "counted",
        "ctx",
        "deadline",
        "end_claim",
        "enqueued",
        "error",
        "finished",
        "fn",
        "future",
        "kwargs",
        "name",
        "notify",
        "start_claim",
        "timed_out",
        "value",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: contextvars.Context,
        notify: Callable[[Work], None] | None,
        *,
        name: str = "",
    ) -> None:
        """*name*: what errors, logs and `stats()` call it, if not *fn*'s name (a step of a
        generator, run by a method of the library's, goes by the generator function's)."""
        self.fn = fn
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.ctx = ctx
        self.notify = notify
        self.future: Any = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.timed_out = False
        # With a timeout: the monotonic deadline, and when the function returned. A result
        # that came back after the deadline is refused even if the loop noticed it late.
        self.deadline = 0.0
        self.finished = 0.0
        self.cancel_requested = False
        self.enqueued = 0.0
        self.counted = False
        # Lock-free hand-over: whoever pops start_claim first decides between "a worker runs
        # it" and "the caller withdrew it"; end_claim likewise between "finished" and
        # "abandoned". list.pop() is atomic, so exactly one side wins each.
        self.start_claim: list[None] = [None]
        self.end_claim: list[None] = [None]

    def describe(self) -> str:
        return self.name or super().describe()

    def settle(self) -> None:
        settle_future(self)

    def outcome_future(self) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.future
        return fut

    def redirect(self, waiter: asyncio.Future[Any]) -> None:
        self.future = waiter


_tls = threading.local()
_perf_counter = time.perf_counter


#: True in the context of a facade's own calls (`quiet_late_errors`): the error such a call
#: ends in after its caller left (a missing file, say) is the outcome the caller gave up,
#: dropped rather than logged at WARNING as a user's call's is
_QUIET_LATE_ERRORS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "asyncify_kit_quiet_late_errors", default=False
)


@contextlib.contextmanager
def quiet_late_errors() -> Iterator[None]:
    """Calls offloaded inside this block (on the event loop: their context is copied when
    they are submitted) drop, not log, an error they end in after their caller left."""
    token = _QUIET_LATE_ERRORS.set(True)
    try:
        yield
    finally:
        _QUIET_LATE_ERRORS.reset(token)


def late_error(job: Work) -> BaseException | None:
    """The error *job* ended in after its caller left, if it is one to log."""
    error = job.error
    if error is None or isinstance(error, CallCancelled):
        return None
    ctx = getattr(job, "ctx", None)
    if ctx is not None and ctx.get(_QUIET_LATE_ERRORS, False):
        return None
    return error


def current_job() -> Work | None:
    """The job the calling worker thread is running, if any."""
    job: Work | None = getattr(_tls, "job", None)
    return job


def check_cancelled() -> None:
    """Raise `CallCancelled` if the caller of the current offloaded call has gone away.

    Call it now and then from long sync work run through `asyncify`: the caller was cancelled
    or timed out, so the rest of the work would be thrown away. Outside a worker thread it
    does nothing.
    """
    job = current_job()
    if job is not None and job.cancel_requested:
        raise CallCancelled(f"the caller of {job.describe()} was cancelled or timed out")


def _execute(
    job: Work,
    pool: Pool,
    idle_tokens: list[None] | None = None,
    completed: list[int] | None = None,
    held: list[Work] | None = None,
    *,
    dedicated: bool = False,
) -> bool:
    """Run *job* on this thread unless it was withdrawn first, then hand its outcome back.

    A pool worker passes its pool's *idle_tokens* and its *completed* cell: it counts the call
    and announces itself idle *before* waking the caller, so a caller that submits its next
    call at once finds this thread instead of starting another one. Returns whether it
    announced itself. *dedicated*: the thread is a sticky proxy's own; the call still shows
    as running in *pool*'s stats, as it shows as abandoned there once its caller left.
    """
    counted = job.counted
    try:
        job.start_claim.pop()
    except IndexError:
        if counted:
            with pool._lock:
                pool._withdrawn -= 1
        return False
    if counted:
        pool._running.add(job)
        pool._waits.append(_perf_counter() - job.enqueued)
    elif dedicated:
        pool._running.add(job)
    _tls.job = job
    try:
        job.value = job.ctx.run(job.fn, *job.args, **job.kwargs)
    except BaseException as exc:  # every outcome crosses back to the caller
        tb = exc.__traceback__
        job.error = exc.with_traceback(tb.tb_next if tb is not None else None)
        if isinstance(exc, StopIteration):
            err = RuntimeError(f"{job.describe()} raised StopIteration")
            err.__cause__ = exc
            job.error = err
    finally:
        _tls.job = None
        if job.deadline:
            job.finished = time.monotonic()
    if counted or dedicated:
        pool._running.discard(job)
    try:
        job.end_claim.pop()
        abandoned = False
    except IndexError:
        abandoned = True
    if counted and completed is not None:
        completed[0] += 1
    if abandoned:
        error = late_error(job)
        if error is not None:
            logger.warning(
                "%s raised after its caller had left (cancel='abandon')",
                job.describe(),
                exc_info=error,
            )
        # only now: stats() shows the call abandoned until its late error is logged
        with pool._lock:
            pool._abandoned -= 1
    if idle_tokens is not None:
        idle_tokens.append(None)
    if not abandoned and job.notify is not None:
        if held is None:
            job.notify(job)
        else:
            held.append(job)
    return idle_tokens is not None


_STOP: Final = object()
# a worker that takes this leaves if its pool has more threads than its size (see Pool.resize)
_RETIRE: Final = object()


class Lane:
    """A worker thread reserved for one generator, context manager or sticky proxy.

    Steps put on the lane run in order on its thread. A pool lane borrows one worker of its
    pool (it waits for capacity once, when it starts, and counts as one running item of the
    pool while it lives); a dedicated lane has its own thread, outside the pool's size, and
    each of its steps counts as running in the pool while it runs.
    """

    def __init__(self, pool: Pool, *, holder: str = "") -> None:
        """*holder*: the name of the function whose generator or context manager holds the
        lane, which `stats()` lists among the pool's running calls while it is open."""
        self.pool = pool
        self.holder = holder
        self.queue: SimpleQueue[Any] = SimpleQueue()
        self.dedicated = False
        self.started = False
        self.closed = False
        self.stopped = False  # its thread has taken the stop and left
        self.lost = False  # started before os.fork(), in the child: its thread is not there
        self.failure = ""  # why no thread serves it, if starting one failed (see `fail`)

    def start(self, *, dedicated: bool = False, name: str = "") -> None:
        self.started = True
        self.dedicated = dedicated
        _lanes.add(self)
        if dedicated:
            thread = threading.Thread(
                target=self.serve, name=f"asyncify-{self.pool.name}-{name or 'sticky'}", daemon=True
            )
            start_thread(thread, lambda error: self.fail(_not_started(error)))
        else:
            self.pool._submit(self)

    def fail(self, message: str) -> None:
        """No thread can serve the lane (starting one failed): its steps, queued and to
        come, fail (`RuntimeError`, saying *message*) instead of waiting forever."""
        self.failure = message
        self.closed = True
        self.stopped = True
        self._refuse_queued()

    def put(self, job: Work) -> None:
        """Queue *job* for the lane's thread; a closed lane refuses it at once (`RuntimeError`):
        its thread leaves after the steps queued before the close, so the job would wait
        forever."""
        if self.lost:  # the job would wait forever
            raise RuntimeError(
                "this generator, context manager or sticky proxy was opened before os.fork(); "
                "its thread does not exist in this process: open it again in the child"
            )
        if self.closed:
            raise RuntimeError(self.closed_message())
        self.queue.put(job)
        if self.stopped:  # closed from another thread meanwhile, and its thread gone
            self._refuse_queued()

    def closed_message(self) -> str:
        if self.failure:
            return f"this generator, context manager or sticky proxy cannot run: {self.failure}"
        if self.dedicated:  # only a sticky proxy has a thread of its own
            return "this sticky proxy was closed: its thread runs no more calls or steps"
        return "this offloaded generator or context manager was closed: its thread was released"

    def _refuse_queued(self) -> None:
        """Fail the jobs left in the queue of a stopped lane (put there by a race with
        `close` from another thread): their callers get `RuntimeError`, not a wait forever."""
        while True:
            try:
                job = self.queue.get_nowait()
            except Empty:
                return
            if job is not _STOP:
                _refuse(job, RuntimeError(self.closed_message()))

    def close(self) -> None:
        """Release the thread after the steps already queued (idempotent, any thread)."""
        if not self.closed:
            self.closed = True
            if self.started:
                self.queue.put(_STOP)

    def serve(self) -> None:
        queue = self.queue
        dedicated = self.dedicated
        while True:
            job = queue.get()
            if job is _STOP:
                self.stopped = True
                self._refuse_queued()
                return
            _execute(job, self.pool, dedicated=dedicated)
            # drop the finished job before blocking in get(): it references its caller (an
            # iterator whose finalizer must run) and the call's result
            del job


class SerialQueue:
    """Calls run one after another by one worker of *pool*, handed on without the event loop.

    For work that only contends when run in parallel, such as creating and renaming files in
    one directory (the kernel serializes them on the directory's lock): 100 calls in flight
    keep one worker busy in turn, instead of 40 workers queued on that lock and the GIL. The
    first call submitted starts a turn on a pool worker (it waits for capacity like any
    call); calls submitted during the turn join its queue; the turn ends when the queue is
    empty. Each call still has its own caller, outcome, cancellation and timeout: a call
    withdrawn before its turn is skipped. While many calls are queued, the outcomes of quick
    ones are handed over in small batches, so the callers' loop is not woken once per call
    (see `_HOLD_MAX`). In `stats()`, the calls that ran count as completed and the running
    one is named; those waiting in a queue are not counted as waiting (the pool sees one
    turn). A call can leave clean-up work for after its caller has its outcome (`defer`).
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._reset()
        _serial_queues.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._jobs: deque[Work] = deque()
        self._serving = False
        self.current: Work | None = None  # the call running now, for stats()
        self._deferred: deque[Callable[[], object]] = deque()

    @property
    def idle(self) -> bool:
        """No turn is running or due (the queue can be dropped)."""
        return not self._serving

    @property
    def waiting(self) -> bool:
        """Calls are queued for their turn (not counting the one running)."""
        return bool(self._jobs)

    def submit(self, job: Work) -> None:
        with self._lock:
            self._jobs.append(job)
            if self._serving:
                return
            self._serving = True
        self.pool._submit(self)

    def fail(self, message: str) -> None:
        """No worker can run the turn (starting one failed): the calls queued fail with
        *message* (`RuntimeError`); the next call submitted starts a turn again."""
        with self._lock:
            jobs = list(self._jobs)
            self._jobs.clear()
            self._serving = False
        for job in jobs:
            _refuse(job, RuntimeError(message))

    def defer(self, fn: Callable[[], object]) -> None:
        """Run *fn* later in this turn, on this worker, once no call is waiting.

        Only from a call running on this queue. The caller already has its outcome when
        *fn* runs, so work that no caller needs to wait for (closing files whose release
        is slow) leaves the callers' latency. A call submitted meanwhile joins the turn
        and runs next, without waking a worker. Deferred work runs before the turn ends,
        and in any case once `_DEFER_MAX` are pending; what *fn* raises is logged.
        """
        self._deferred.append(fn)

    def run_deferred(self) -> None:
        """Run the deferred work now. The turn does it once no call waits; a call running on
        this queue does it when its caller must find it done (closing what the queue's calls
        opened)."""
        deferred = self._deferred
        while deferred:
            fn = deferred.popleft()
            try:
                fn()
            except Exception:
                logger.warning("deferred clean-up %r failed", fn, exc_info=True)
            del fn

    def serve(self, completed: list[int] | None = None) -> None:
        """Run the queued calls until none is left; count those that ran in *completed*."""
        jobs = self._jobs
        held: list[Work] = []
        held_since = 0.0
        try:
            while True:
                if self._deferred and (not jobs or len(self._deferred) >= _DEFER_MAX):
                    _wake(held)  # the outcomes first: deferred work is what no one waits for
                    self.run_deferred()
                    continue
                with self._lock:
                    if not jobs:
                        self._serving = False
                        return
                    job = jobs.popleft()
                self.current = job
                started = _perf_counter()
                _execute(job, self.pool, held=held)
                now = _perf_counter()
                self.current = None
                # a call withdrawn before its turn keeps its end claim: only those that ran
                # count, as in the pool's own workers
                if completed is not None and not job.end_claim:
                    completed[0] += 1
                del job  # keep no finished call (result, arguments) alive between turns
                if held:
                    if len(held) == 1:
                        held_since = now
                    if (
                        len(held) >= _HOLD_MAX
                        or len(jobs) < _HOLD_MAX
                        or now - started > _HOLD_SECONDS
                        or now - held_since > _HOLD_SECONDS
                    ):
                        _wake(held)
        except BaseException:
            self.current = None
            # _execute hands every outcome of the call to its caller; this is the worker
            # itself failing (e.g. KeyboardInterrupt): pass the rest to a new turn
            with self._lock:
                self._serving = bool(jobs or self._deferred)
            if self._serving:
                self.pool._submit(self)
            raise
        finally:
            _wake(held)


_serial_queues: weakref.WeakSet[SerialQueue] = weakref.WeakSet()
_lanes: weakref.WeakSet[Lane] = weakref.WeakSet()  # started ones, for the fork handler

# While at least _HOLD_MAX more calls are queued, a SerialQueue's worker holds back the outcomes
# of quick calls and hands them over in batches of up to _HOLD_MAX. Each hand-off wakes the
# caller's event loop, and waking it once per call, every few tens of microseconds, cost the
# loop more CPU than the calls it served: with 100 atomic 4 KiB writes in flight on tmpfs, 2.0-2.1
# loop waits and 39-46 µs of the loop's CPU per write, against 0.26-0.29 and 14-19 µs in
# batches (python -m benchmarks.loop_cost --dir /dev/shm).
# An outcome waits at most for the calls run within _HOLD_SECONDS of it, plus the one then
# running; a call slower than that hands over at once what is held. The callers held are few
# next to those still queued, who wait for all of them anyway.
_HOLD_MAX = 8
_HOLD_SECONDS = 0.0005
# Deferred clean-ups pending at most, per SerialQueue, while calls keep it busy.
_DEFER_MAX = 16


def _refuse(job: Work, error: BaseException) -> bool:
    """Fail *job*, which no thread will run, with *error*, unless its caller withdrew it
    first (then False) or has left it meanwhile."""
    try:
        job.start_claim.pop()
    except IndexError:
        return False  # withdrawn by its caller
    job.error = error
    try:
        job.end_claim.pop()
    except IndexError:
        return True  # abandoned by its caller
    if job.notify is not None:
        job.notify(job)
    return True


def _not_started(error: BaseException) -> str:
    return f"no worker thread could be started for it ({type(error).__name__}: {error})"


def _wake(held: list[Work]) -> None:
    """Hand the held outcomes to their callers (each loop is woken once for its batch)."""
    while held:
        job = held.pop(0)
        notify = job.notify
        if notify is not None:
            notify(job)


def _describe(item: Work | Lane | SerialQueue) -> str:
    if isinstance(item, Lane):
        return item.holder or "<generator/context lane>"
    if isinstance(item, SerialQueue):
        current = item.current
        return "<serial queue>" if current is None else current.describe()
    return item.describe()


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of one pool: see `stats()`."""

    name: str
    size: int
    threads: int
    running: int
    waiting: int
    abandoned: int
    completed: int
    queue_wait_p50: float
    queue_wait_p90: float
    queue_wait_p99: float
    running_calls: tuple[str, ...]


class Pool:
    """Worker threads for one named pool; threads start on demand and leave when idle."""

    def __init__(self, name: str, size: int) -> None:
        if size < 1:
            raise ConfigError(f"pool {name!r} needs at least 1 thread, got {size}")
        self.name = name
        self.size = size
        self._reset()

    def _reset(self) -> None:
        # _lock guards the rare counters (withdrawn, abandoned); neither submit nor a normal
        # completion takes a lock, so the event loop does not contend with the workers.
        self._lock = threading.Lock()
        self._spawn_lock = threading.Lock()
        self._queue: SimpleQueue[Any] = SimpleQueue()
        # One token per worker that is (about to be) blocked on the queue. A submitter that
        # pops a token knows a worker will take its job; with none left, it starts a thread.
        # Tokens never outnumber idle workers, so a queued job is never left without one.
        self._idle_tokens: list[None] = []
        self._threads = 0
        self._withdrawn = 0
        self._abandoned = 0
        self._markers = 0  # _RETIRE markers in the queue, not counted as waiting
        self._completed: list[list[int]] = []  # one cell per worker thread, summed by stats()
        self._running: set[Any] = set()
        self._waits: deque[float] = deque(maxlen=2048)
        self._workers: list[threading.Thread] = []
        self._serial = 0

    def submit(self, job: Work) -> None:
        """Queue *job*; it runs as soon as one of the pool's threads is free."""
        job.enqueued = time.perf_counter()
        job.counted = True
        self._queue.put(job)
        tokens = self._idle_tokens
        if tokens:
            try:
                tokens.pop()
                return
            except IndexError:
                pass
        self._spawn_if_room()

    def _submit(self, item: Work | Lane | SerialQueue) -> None:
        if not isinstance(item, (Lane, SerialQueue)):
            self.submit(item)
            return
        self._queue.put(item)
        try:
            self._idle_tokens.pop()
        except IndexError:
            self._spawn_if_room()

    def _spawn_if_room(self) -> None:
        if self._threads >= self.size:
            return
        with self._spawn_lock:
            if self._threads >= self.size:
                return
            self._threads += 1
            self._serial += 1
            thread = threading.Thread(
                target=self._work, name=f"asyncify-{self.name}-{self._serial}", daemon=True
            )
            self._workers = [t for t in self._workers if t.is_alive() or t.ident is None]
            self._workers.append(thread)
        start_thread(thread, functools.partial(self._not_started, thread))

    def _not_started(self, thread: threading.Thread, error: BaseException) -> None:
        """*thread* could not start (the process is out of threads, or exiting): count it
        out; if the pool has no thread left, fail the calls waiting for one rather than
        leave them waiting until the next call starts a thread."""
        queue = self._queue
        with self._spawn_lock:
            self._threads -= 1
            with contextlib.suppress(ValueError):
                self._workers.remove(thread)
            stranded = self._threads == 0
            # only what is queued now: an item queued from here on starts a thread of its
            # own (a call made once the failure of a call before it was seen, say)
            waiting = queue.qsize()
        logger.error("asyncify pool %r: a worker thread could not start: %r", self.name, error)
        if not stranded:
            return
        message = _not_started(error)
        kept: list[Any] = []
        for _ in range(waiting):
            try:
                item = queue.get_nowait()
            except Empty:
                break
            if isinstance(item, Work):
                refusal = RuntimeError(f"{item.describe()} cannot run: {message}")
                if not _refuse(item, refusal) and item.counted:
                    with self._lock:
                        self._withdrawn -= 1  # (as a worker taking it would)
            elif isinstance(item, (Lane, SerialQueue)):
                item.fail(message)
            else:
                kept.append(item)  # a _STOP or _RETIRE marker, for a thread to come
        for item in kept:
            queue.put(item)

    def resize(self, size: int) -> None:
        """Apply a new *size* now, to calls already queued as to those to come.

        Growing starts a thread for each call waiting (up to *size*). Shrinking puts one
        `_RETIRE` marker per thread too many ahead of the queued work: each thread beyond
        *size* leaves when it finishes its current call, so the pool soon runs at most *size*
        calls at once. Nothing of this touches a call's own path.
        """
        with self._spawn_lock:
            old = self.size
            self.size = size
            extra = self._threads - size
        if size > old:
            waiting = self._queue.qsize() - self._withdrawn - self._markers - len(self._idle_tokens)
            for _ in range(min(waiting, size - old)):
                self._spawn_if_room()
        elif extra > 0:
            # Take the queued items out and put them back behind the markers, so the extra
            # threads do not serve them first. A marker taken once the pool is back at or
            # under its size is ignored (the taker goes on as after any item); an item
            # submitted meanwhile may go ahead of those taken out.
            queue = self._queue
            queued: list[Any] = []
            try:
                with contextlib.suppress(Empty):
                    while True:
                        queued.append(queue.get_nowait())
                with self._lock:
                    self._markers += extra
                for _ in range(extra):
                    queue.put(_RETIRE)
            finally:
                for item in queued:
                    queue.put(item)

    def _try_withdraw(self, job: Work) -> bool:
        try:
            job.start_claim.pop()
        except IndexError:
            return False
        if job.counted:
            with self._lock:
                self._withdrawn += 1
        return True

    def cancel_pending(self, job: Work) -> bool:
        """Withdraw *job* if no thread took it yet; True if withdrawn."""
        return self._try_withdraw(job)

    def abandon(self, job: Work) -> int:
        """Leave *job*: withdraw it if not started, else let it run on unobserved.

        Returns PENDING (withdrawn), RUNNING (now abandoned) or DONE (it had finished).
        """
        job.cancel_requested = True
        if self._try_withdraw(job):
            return PENDING
        try:
            job.end_claim.pop()
        except IndexError:
            return DONE
        job.abandoned = True
        with self._lock:
            self._abandoned += 1
        return RUNNING

    def request_cancel(self, job: Work) -> int:
        """Ask a job to stop (see `check_cancelled`); withdraw it if it has not started.

        Returns PENDING (withdrawn), RUNNING or DONE.
        """
        job.cancel_requested = True
        if self._try_withdraw(job):
            return PENDING
        return RUNNING if job.end_claim else DONE

    def _work(self) -> None:
        queue = self._queue
        tokens = self._idle_tokens
        completed = [0]
        self._completed.append(completed)
        announced = False  # whether this worker has an idle token out
        while True:
            if not announced:
                try:
                    item = queue.get_nowait()
                except Empty:
                    tokens.append(None)
                    announced = True
                    continue
            else:
                try:
                    item = queue.get(timeout=IDLE_TIMEOUT)
                except Empty:
                    with self._spawn_lock:
                        try:
                            tokens.pop()
                        except IndexError:
                            # a submitter counted on an idle worker: look at the queue again
                            announced = False
                            continue
                        self._threads -= 1
                        return
                try:  # noqa: SIM105 - hot path: suppress() would cost a context manager per job
                    tokens.pop()
                except IndexError:
                    pass  # a submitter took this worker's token already
                announced = False
            # calls first: one isinstance() is the whole dispatch cost of a call
            if isinstance(item, Work):
                announced = _execute(item, self, tokens, completed)
            elif item is _STOP:
                return
            elif item is _RETIRE:
                with self._lock:
                    self._markers -= 1
                with self._spawn_lock:
                    if self._threads > self.size:
                        self._threads -= 1
                        return
            else:
                self._running.add(item)
                try:
                    if isinstance(item, Lane):
                        item.serve()
                    else:
                        item.serve(completed)
                finally:
                    self._running.discard(item)
            del item  # an idle worker keeps no finished job (result, arguments) alive

    def stats(self) -> PoolStats:
        with self._lock:
            waits = sorted(self._waits)
            # workers add and discard without the lock: iterate a copy (set.copy() is atomic)
            current = self._running.copy()
            running = tuple(_describe(item) for item in current)
            return PoolStats(
                name=self.name,
                size=self.size,
                threads=self._threads,
                running=len(current),
                waiting=max(0, self._queue.qsize() - self._withdrawn - self._markers),
                abandoned=self._abandoned,
                completed=sum(cell[0] for cell in self._completed),
                queue_wait_p50=_percentile(waits, 50),
                queue_wait_p90=_percentile(waits, 90),
                queue_wait_p99=_percentile(waits, 99),
                running_calls=running,
            )

    def shutdown(self, timeout: float) -> list[str]:
        """Stop idle threads; wait up to *timeout* s; return the calls still running."""
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in list(self._workers):
            # a finite but huge timeout is more than a lock can wait: as good as forever
            wait = min(threading.TIMEOUT_MAX, max(0.0, deadline - time.monotonic()))
            # (a thread the spawner has not started yet runs no call: it takes a _STOP)
            with contextlib.suppress(RuntimeError):  # "cannot join thread before it is started"
                thread.join(wait)
        with self._lock:
            return [_describe(item) for item in self._running.copy()]


def _percentile(sorted_values: list[float], percent: int) -> float:
    """The nearest-rank percentile: the smallest value that *percent* % of them do not pass
    (of 10 values, p90 is the 9th smallest, not the largest)."""
    if not sorted_values:
        return 0.0
    rank = -(-percent * len(sorted_values) // 100)  # ceil, in whole numbers
    return sorted_values[max(rank, 1) - 1]


_pools: dict[str, Pool] = {}
_pools_lock = threading.Lock()


def _default_size() -> int:
    raw = env_setting("ASYNCIFY_THREADS")
    if raw is None:
        return DEFAULT_THREADS
    size = whole_number(raw)
    if size is None or size < 1:
        raise ConfigError(
            f"invalid value {raw!r} for ASYNCIFY_THREADS; accepted: a whole number >= 1"
        )
    return size


def get_pool(name: str) -> Pool:
    """The pool called *name*; unknown names are a `ConfigError` (see `configure`)."""
    pool = _pools.get(name)
    if pool is not None:
        return pool
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            if name != DEFAULT_POOL:
                known = ", ".join(sorted({DEFAULT_POOL, *_pools}))
                raise ConfigError(
                    f"unknown pool {name!r}; configure it first with "
                    f"asyncify_kit.configure(pools={{{name!r}: N}}); known pools: {known}"
                )
            pool = _pools[name] = Pool(name, _default_size())
        return pool


def forget_pool(name: str) -> None:
    """Drop the named pool *name* from the registry: for a pool made for one owner (the
    worker threads of a database's blocking connections), once that owner is closed. Its
    threads end when idle, as usual; calls already bound to it still run there."""
    if name == DEFAULT_POOL:
        raise ValueError("the default pool cannot be dropped")
    with _pools_lock:
        _pools.pop(name, None)


_settings = {"shutdown_timeout": SHUTDOWN_TIMEOUT}


def ensure_pool(name: str, threads: int) -> None:
    """Make the library's own pool *name* of *threads* threads unless it exists (a size given
    since with `configure` is kept)."""
    try:
        get_pool(name)
    except ConfigError:
        configure(pools={name: threads})


def configure(
    *,
    pools: dict[str, int] | None = None,
    default_threads: int | None = None,
    shutdown_timeout: float | None = None,
) -> None:
    """Create or resize named pools.

    >>> configure(pools={"db": 8})

    *default_threads* sizes the default pool (otherwise ``ASYNCIFY_THREADS`` or 40). A resized
    pool applies its new size at once: a grown one starts threads for the calls waiting; in a
    shrunk one, each thread beyond the new size leaves when its current call returns.
    *shutdown_timeout* bounds how long interpreter exit waits for running calls (default 5 s)
    before it warns and leaves.
    """
    # everything is checked before anything changes
    seconds = None
    if shutdown_timeout is not None:
        seconds = _seconds(shutdown_timeout)
        if seconds is None:
            raise ConfigError(
                f"invalid shutdown_timeout {shutdown_timeout!r}; "
                "accepted: a finite number of seconds >= 0"
            )
    if pools is not None and not isinstance(pools, Mapping):
        raise ConfigError(f"invalid pools {pools!r}; accepted: a dict of pool names to sizes")
    sizes = dict(pools or {})
    if default_threads is not None:
        sizes[DEFAULT_POOL] = default_threads
    for name, size in sizes.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"invalid pool name {name!r}; accepted: a non-empty string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(
                f"invalid size {size!r} for pool {name!r}; accepted: a whole number >= 1"
            )
    if seconds is not None:
        _settings["shutdown_timeout"] = seconds
    with _pools_lock:
        for name, size in sizes.items():
            pool = _pools.get(name)
            if pool is None:
                _pools[name] = Pool(name, size)
            else:
                pool.resize(size)


def _seconds(value: object) -> float | None:
    """*value* as a finite number of seconds >= 0, or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return seconds if 0.0 <= seconds < math.inf else None


def stats(pool: str = DEFAULT_POOL) -> PoolStats:
    """Running, waiting, abandoned-still-running and completed calls, and queue-wait times.

    >>> stats().running
    0
    """
    return get_pool(pool).stats()


def all_pools() -> Iterable[Pool]:
    """Every pool created so far."""
    return list(_pools.values())


# -- completing callers ---------------------------------------------------------------------


class _LoopWaker:
    """Collects finished jobs for one asyncio loop and wakes it once per batch.

    The loop watches a file descriptor of the waker's own (an eventfd on Linux, a pipe on
    other POSIX systems): a worker writes to it, and the loop runs `drain` straight from its
    poll. Against ``call_soon_threadsafe`` this saves, per wake, the handle made by the worker,
    a write and two reads on the loop's self-pipe, and a callback: about an eighth of a no-op
    hop here (the offload benchmark's reference row). Where the loop cannot watch a descriptor
    (Windows, a loop without ``add_reader``), the waker falls back to
    ``call_soon_threadsafe``.

    Lock-free: ``deque.append``/``popleft`` are atomic. The loop reads the descriptor, then
    clears *scheduled*, then empties the queue, so a job appended meanwhile is either taken by
    this drain or sees the flag down and wakes the loop again (at worst one drain too many,
    never a lost job).

    The descriptor is closed when the waker is collected, which is after the loop's selector
    let it go (``loop.close()``) and after the last job that could write to it: a worker never
    writes to a closed (or reused) descriptor.
    """

    __slots__ = ("__weakref__", "_wake_fd", "loop", "pending", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, watch: bool = True) -> None:
        """*watch*: False wakes *loop* with ``call_soon_threadsafe`` even where it could
        watch a descriptor (the benchmarks' reference row)."""
        self.loop = loop
        self.pending: deque[Work] = deque()
        self.scheduled = False
        self._wake_fd = -1  # -1: wake through call_soon_threadsafe
        fds = _watch_wake_fd(loop, self._on_readable) if watch else None
        if fds is not None:
            self._wake_fd = fds[-1]
            # not at interpreter exit: a call left running ("abandon") may still finish
            weakref.finalize(self, _close_fds, fds).atexit = False

    def __call__(self, job: Work) -> None:
        self.pending.append(job)
        if self.scheduled:
            return
        self.scheduled = True
        wake_fd = self._wake_fd
        if wake_fd == -1:
            try:
                self.loop.call_soon_threadsafe(self.drain)
            except RuntimeError:
                self._drop_all()
            return
        if self.loop.is_closed():
            self._drop_all()
            return
        # BlockingIOError: a full pipe, so a wake is pending already
        with contextlib.suppress(BlockingIOError):
            _kick(wake_fd)

    def _drop_all(self) -> None:
        """The loop is closed: log and forget what is queued (also what others add meanwhile:
        a worker that saw the flag up appended before it is lowered, so the re-check sees it).
        """
        while True:
            lost = []
            with contextlib.suppress(IndexError):
                while True:
                    lost.append(self.pending.popleft())
            self.scheduled = False
            if lost:
                logger.warning(
                    "the event loop closed before these offloaded calls finished; their "
                    "results were dropped: %s",
                    ", ".join(j.describe() for j in lost),
                )
            if not self.pending:
                return

    def _on_readable(self, read_fd: int) -> None:
        with contextlib.suppress(BlockingIOError):  # a wake already taken by an earlier drain
            _clear(read_fd)
        self.drain()

    def drain(self) -> None:
        self.scheduled = False
        pending = self.pending
        popleft = pending.popleft
        while pending:
            popleft().settle()


if hasattr(os, "eventfd"):  # Linux

    def _open_wake_fds() -> tuple[int, ...]:
        return (os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC),)

    def _kick(fd: int) -> None:
        os.eventfd_write(fd, 1)

    def _clear(fd: int) -> None:
        os.eventfd_read(fd)

else:  # pragma: no cover - other POSIX systems

    def _open_wake_fds() -> tuple[int, ...]:
        read_fd, write_fd = os.pipe()
        for fd in (read_fd, write_fd):
            os.set_blocking(fd, False)
        return read_fd, write_fd

    def _kick(fd: int) -> None:
        os.write(fd, b"\0")

    def _clear(fd: int) -> None:
        os.read(fd, 4096)


def _watch_wake_fd(
    loop: asyncio.AbstractEventLoop, callback: Callable[[int], None]
) -> tuple[int, ...] | None:
    """Open a wake descriptor and have *loop* call ``callback(read_fd)`` when it is readable;
    the descriptors (the write end last), or None where the loop cannot watch one."""
    if sys.platform == "win32":  # pragma: no cover - select() there takes sockets only
        return None
    fds = _open_wake_fds()
    try:
        # from an empty context: the loop's handle keeps a copy of the current one for the
        # loop's whole life, and a caller's context variables must not live that long
        contextvars.Context().run(loop.add_reader, fds[0], callback, fds[0])
    except (NotImplementedError, AttributeError, RuntimeError, ValueError, OSError):
        _close_fds(fds)
        return None
    return fds


def _close_fds(fds: tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def settle_future(job: Job) -> None:
    """Complete *job*'s asyncio future with its outcome (on the loop's thread)."""
    fut = job.future
    if fut.done():
        return
    if job.timed_out or job.finished > job.deadline > 0:
        fut.set_exception(timeout_error(job))
    elif job.error is not None:
        fut.set_exception(job.error)
    else:
        fut.set_result(job.value)


def timeout_error(job: Work) -> TimeoutError:
    err = TimeoutError(f"{job.describe()} did not finish within its timeout")
    err.__context__ = job.error
    return err


_last_waker: _LoopWaker | None = None
#: every loop's waker, by the loop's id. A waker lives as long as its loop watches its
#: descriptor (the loop's handle holds it) or a job holds it, and holds its loop: while an
#: entry is here, no other loop can have its id.
_wakers: weakref.WeakValueDictionary[int, _LoopWaker] = weakref.WeakValueDictionary()


def loop_waker(loop: asyncio.AbstractEventLoop) -> _LoopWaker:
    """The batching waker of *loop*: one per loop, however many loops a thread runs in turn
    (cached per thread, and the last one used, globally)."""
    global _last_waker
    waker = _last_waker
    if waker is not None and waker.loop is loop:
        return waker
    waker = getattr(_tls, "waker", None)
    if waker is None or waker.loop is not loop:
        waker = _wakers.get(id(loop))
        if waker is None or waker.loop is not loop:
            waker = _wakers[id(loop)] = _LoopWaker(loop)
        _tls.waker = waker
    _last_waker = waker
    return waker


# -- starting threads -----------------------------------------------------------------------
#
# `Thread.start` returns once the new thread runs, and a new thread runs once it has the GIL:
# while the workers ran Python code, each start from the event loop held the loop 20-105 ms
# (a stack-sampling watchdog, 12 staggered CPU-bound calls). The loop hands the threads it
# needs to one spawner thread instead, which waits for them in its place.

_Start = tuple[threading.Thread, Callable[[BaseException], object]]
_spawn_requests: SimpleQueue[_Start] = SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def start_thread(thread: threading.Thread, failed: Callable[[BaseException], object]) -> None:
    """Have *thread* started by the spawner thread, without waiting for it to run. If it
    cannot start (``RuntimeError: can't start new thread``), ``failed(error)`` runs on the
    spawner thread. The spawner itself is started by the first call in the process (if it
    cannot start, ``failed`` runs here, and the next call tries again)."""
    global _spawner
    requests = _spawn_requests
    if _spawner is None:
        with _spawner_lock:
            if _spawner is None:
                spawner = threading.Thread(
                    target=_spawn_forever, args=(requests,), name="asyncify-spawner", daemon=True
                )
                try:
                    spawner.start()
                except Exception as exc:
                    failed(exc)
                    return
                _spawner = spawner
    requests.put((thread, failed))


def _spawn_forever(requests: SimpleQueue[_Start]) -> None:
    while True:
        thread, failed = requests.get()
        try:
            thread.start()
        except Exception as exc:
            try:
                failed(exc)
            except Exception:
                logger.exception("asyncify: handling a thread that could not start failed")
        del thread, failed  # (a finished thread is not kept alive by this one)


# -- process lifecycle ----------------------------------------------------------------------


def _shutdown_at_exit() -> None:
    deadline = time.monotonic() + _settings["shutdown_timeout"]
    for pool in list(_pools.values()):
        still = pool.shutdown(max(0.0, deadline - time.monotonic()))
        if still:
            logger.warning(
                "asyncify pool %r: %d call(s) still running at exit: %s",
                pool.name,
                len(still),
                ", ".join(still),
            )


def _after_fork_in_child() -> None:
    global _pools_lock, _last_waker, _spawn_requests, _spawner, _spawner_lock
    _pools_lock = threading.Lock()
    # the spawner is a thread of the parent's: the child makes its own when it needs one
    _spawn_requests = SimpleQueue()
    _spawner = None
    _spawner_lock = threading.Lock()
    _last_waker = None
    for pool in _pools.values():
        pool._reset()
    for queue in list(_serial_queues):
        queue._reset()  # its turn ran on a thread the child does not have
    for lane in list(_lanes):
        lane.lost = True  # likewise: its steps would wait forever
    _lanes.clear()
    _tls.__dict__.clear()


atexit.register(_shutdown_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
