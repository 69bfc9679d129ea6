"""`asyncify`, `run_sync` and `wrap`: run blocking sync code in worker threads.

Cancellation is one explicit policy, identical on asyncio and trio:

* ``cancel="wait"`` (default): a cancelled caller waits for the thread to finish, then raises
  its cancellation. `check_cancelled()` lets the sync code stop early.
* ``cancel="abandon"``: the caller leaves at once; the thread keeps its place in the pool
  until it really returns; an exception it raises later is logged.

``timeout=`` bounds one call: a call still running at its deadline ends in `TimeoutError`
(under "wait", when the thread has finished; under "abandon", at the deadline). A result that
arrives late is never returned; one whose function returned by the deadline is, even if the
loop handles the deadline before the wake-up that carries it.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import contextvars
import functools
import inspect
import logging
import os
import sys
import time
import types
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import AbstractContextManager
from types import BuiltinFunctionType, FunctionType, MethodType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, final, overload

from typing_extensions import deprecated

from ._cleanup import finish
from ._executor import (
    DEFAULT_POOL,
    DONE,
    PENDING,
    RUNNING,
    Job,
    Lane,
    Pool,
    SerialQueue,
    Work,
    _sniffio_thread_local,
    asyncio_loop,
    get_pool,
    late_error,
    loop_waker,
    timeout_error,
)
from .exceptions import CallCancelled, ConfigError

if TYPE_CHECKING:
    # the type `@contextmanager` returns: only those functions become async context managers
    from contextlib import _GeneratorContextManager

    from typing_extensions import ParamSpec, Self
else:
    try:
        from typing import ParamSpec
    except ImportError:  # pragma: no cover - Python 3.9
        from typing_extensions import ParamSpec

__all__ = [
    "AsyncProxy",
    "CancelPolicy",
    "OffloadedContextManager",
    "OffloadedIterator",
    "asyncify",
    "run_sync",
    "wrap",
]

logger = logging.getLogger("asyncify_kit")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
O = TypeVar("O")  # noqa: E741 - the wrapped object's type
C = TypeVar("C")

CancelPolicy = Literal["wait", "abandon"]

# with the separator: a sibling package named asyncify_kit_* keeps its frames
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _validate(pool: str, cancel: str, timeout: float | None) -> None:
    if not isinstance(pool, str) or not pool:
        raise ConfigError(f"pool must be a non-empty pool name, not {pool!r}")
    if cancel not in ("wait", "abandon"):
        raise ConfigError(f"invalid cancel policy {cancel!r}; accepted: 'wait' or 'abandon'")
    if timeout is None:
        return
    accepted = "accepted: a number of seconds > 0 (math.inf: no limit) or None"
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ConfigError(f"invalid timeout {timeout!r}; {accepted}")
    try:
        seconds = float(timeout)  # what the deadline arithmetic does with it at each call
    except OverflowError:
        raise ConfigError(f"invalid timeout: a whole number too large; {accepted}") from None
    if not seconds > 0:
        raise ConfigError(f"invalid timeout {timeout!r}; {accepted}")


def _strip_library_frames(exc: BaseException) -> BaseException:
    """Drop this package's frames from *exc*'s traceback, keeping the user's."""
    tb = exc.__traceback__
    kept: list[TracebackType] = []
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            kept.append(tb)
        tb = tb.tb_next
    new_tb: TracebackType | None = None
    for entry in reversed(kept):
        new_tb = TracebackType(new_tb, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return exc.with_traceback(new_tb)


if sys.version_info < (3, 11):
    # Up to Python 3.10 a bare ``raise`` re-raises the traceback its handler caught, kept in
    # the thread's "exception being handled" state (sys.exc_info()), not the exception's
    # ``__traceback__``: the stripped traceback would be lost at each bare ``raise`` after
    # `_strip_library_frames`. `raise exc` would keep it, but add the raising frame again (a
    # library frame, which no handler outside strips). So on 3.10 the stripping also sets
    # the handled exception's traceback (CPython's PyErr_SetExcInfo), when *exc* is the
    # exception being handled, as it is at each call (3.11 takes ``__traceback__``).
    _strip_traceback = _strip_library_frames

    def _strip_and_set_handled(exc: BaseException) -> BaseException:
        _strip_traceback(exc)
        if sys.exc_info()[1] is exc:
            setter = _handled_traceback_setter()
            if setter is not None:
                setter(exc)
        return exc

    @functools.cache
    def _handled_traceback_setter() -> Callable[[BaseException], None] | None:
        """``PyErr_SetExcInfo`` through ctypes (imported at the first error, on 3.10 only);
        None where there is no such C API (not CPython): tracebacks then keep library frames.
        """
        try:
            import ctypes

            # prototypes of our own: the shared ctypes.pythonapi attributes stay untouched
            obj = ctypes.py_object
            set_exc_info = ctypes.PYFUNCTYPE(None, obj, obj, obj)(
                ("PyErr_SetExcInfo", ctypes.pythonapi)
            )
            incref = ctypes.PYFUNCTYPE(None, obj)(("Py_IncRef", ctypes.pythonapi))
        except (ImportError, AttributeError):  # pragma: no cover - not CPython
            return None

        def set_handled(exc: BaseException) -> None:
            kind, tb = type(exc), exc.__traceback__
            for ref in (kind, exc, tb):  # PyErr_SetExcInfo steals a reference to each
                incref(ref)
            set_exc_info(kind, exc, tb)

        return set_handled

    _strip_library_frames = _strip_and_set_handled


_running_loop = asyncio_loop  # the asyncio loop of this task; None under trio


# anyio's table of its tasks' state on asyncio (the dict inside its WeakKeyDictionary, keyed
# by weak references), once anyio's asyncio backend has been imported
_anyio_task_states: dict[Any, Any] | None = None
# the last task found in that table, and its state (a weak reference: it may end meanwhile)
_anyio_last: tuple[weakref.ref[Any], Any] | None = None
_weak = weakref.ref


def _current_task_of(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    return asyncio.current_task(loop)


# up to 3.11 the running task of each loop is in this dict, faster read directly (a third of
# the time of current_task(loop) here); later versions keep it elsewhere
_current_tasks = getattr(asyncio.tasks, "_current_tasks", None)
_current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = (
    _current_tasks.get
    if sys.version_info < (3, 12) and isinstance(_current_tasks, dict)
    else _current_task_of
)


def _find_anyio_task_states() -> dict[Any, Any] | None:
    global _anyio_task_states
    backend = sys.modules.get("anyio._backends._asyncio")
    if backend is not None:
        _anyio_task_states = backend._task_states.data
    return _anyio_task_states


def _anyio_scope_cancelled(scope: Any) -> bool:
    """Whether *scope*, an anyio cancel scope, or one around it up to a shield, is cancelled:
    what ``anyio.lowlevel.checkpoint_if_cancelled`` looks at on asyncio."""
    try:
        while scope is not None:
            if scope._cancel_called:
                return True
            if scope._shield:
                return False
            scope = scope._parent_scope
    except AttributeError:  # pragma: no cover - another anyio's internals: as before the check
        pass
    return False


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the current asyncio task is already cancelled: by a ``task.cancel()`` not yet
    delivered (``asyncio.timeout``, ``wait_for``), or by a cancelled anyio scope (anyio keeps
    state only for the tasks that entered one of its scopes).

    A call made then is not started: its first await would raise the cancellation anyway,
    and whether a worker had picked it up by that time would be a race. (On the hot path of
    every call: kept to a few lookups.)
    """
    task = _current_task(loop)
    if task is None:
        return False
    try:
        if task._must_cancel:  # type: ignore[attr-defined]  # asyncio's Task, C or Python
            return True
    except AttributeError:  # pragma: no cover - a look-alike task: anyio's check only
        pass
    global _anyio_last
    last = _anyio_last
    if last is not None and last[0]() is task:  # anyio keeps one state per task, for good
        return _anyio_scope_cancelled(last[1].cancel_scope)
    states = _anyio_task_states
    if states is None:
        states = _find_anyio_task_states()
        if states is None:
            return False  # anyio's asyncio backend never ran: no scope can be cancelled
    key = _weak(task)
    state = states.get(key)
    if state is None:
        return False
    _anyio_last = (key, state)
    return _anyio_scope_cancelled(state.cancel_scope)


async def _checkpoint_if_cancelled(loop: asyncio.AbstractEventLoop) -> None:
    """Raise a cancellation already pending for the current task (see `_cancel_pending`)."""
    while _cancel_pending(loop):  # noqa: ASYNC110 - no event to wait for: anyio's loop too
        await asyncio.sleep(0)  # the task (or anyio, for its scope) throws it in here


async def checkpoint_if_cancelled() -> None:
    """Raise the caller's cancellation if it is already cancelled, else return at once
    (without yielding): what an operation with effects calls before it starts any."""
    loop = _running_loop()
    if loop is None:
        import trio

        await trio.lowlevel.checkpoint_if_cancelled()
    elif _cancel_pending(loop):
        await _checkpoint_if_cancelled(loop)


async def _run_job(
    job: Job, pool: Pool, submit: Callable[[Job], None], cancel: str, timeout: float | None
) -> Any:
    """Submit *job* and wait for it under the cancel policy; return or raise its outcome."""
    loop = _running_loop()
    if loop is not None:
        return await _run_job_asyncio(loop, job, pool, submit, cancel, timeout)
    return await _run_job_trio(job, pool, submit, cancel, timeout)


async def _run_job_asyncio(
    loop: asyncio.AbstractEventLoop,
    job: Job,
    pool: Pool,
    submit: Callable[[Job], None],
    cancel: str,
    timeout: float | None,
) -> Any:
    if _cancel_pending(loop):  # a call made while cancelled never starts
        await _checkpoint_if_cancelled(loop)
    fut = job.future = loop.create_future()
    job.notify = loop_waker(loop)
    handle = None
    if timeout is not None:
        job.deadline = time.monotonic() + timeout
    submit(job)  # before the timer: a lane lost in a fork refuses the job (Lane.put)
    if timeout is not None:
        handle = loop.call_later(timeout, _on_timeout_asyncio, job, pool, cancel)
    try:
        return await fut
    except asyncio.CancelledError:
        if fut.cancelled():
            await _after_cancel_asyncio(loop, job, pool, cancel)
        raise
    finally:
        if handle is not None:
            handle.cancel()


def _returned_in_time(job: Work) -> bool:
    """Whether the function has returned (or raised) no later than the call's deadline.

    Its outcome then stands even though the loop handles the deadline before the wake-up
    that carries it: the worker sets ``finished`` only after the outcome itself.
    """
    return 0.0 < job.finished <= job.deadline


def _on_timeout_asyncio(job: Work, pool: Pool, cancel: str) -> None:
    fut = job.outcome_future()
    if fut.done() or _returned_in_time(job):
        return  # settle() hands the outcome over when the worker's wake-up arrives
    state = pool.abandon(job) if cancel == "abandon" else pool.request_cancel(job)
    if state == PENDING or cancel == "abandon":
        fut.set_exception(timeout_error(job))
    elif state == RUNNING:
        job.timed_out = True


async def _after_cancel_asyncio(
    loop: asyncio.AbstractEventLoop, job: Work, pool: Pool, cancel: str
) -> None:
    """Under "abandon", leave; under "wait", wait (shielded) for a thread still running."""
    if cancel == "abandon":
        pool.abandon(job)
        return
    if pool.request_cancel(job) != RUNNING:
        return
    waiter = loop.create_future()
    job.redirect(waiter)
    await _wait_shielded(waiter)
    _log_late_error(job, "its caller was cancelled")


async def _run_job_trio(
    job: Job, pool: Pool, submit: Callable[[Job], None], cancel: str, timeout: float | None
) -> Any:
    import trio

    await trio.lowlevel.checkpoint_if_cancelled()  # a call made while cancelled never starts
    token = trio.lowlevel.current_trio_token()
    event = trio.Event()

    def wake(_job: Work) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(event.set)

    job.notify = wake
    if timeout is not None:
        job.deadline = time.monotonic() + timeout
    submit(job)
    try:
        if timeout is None:
            await event.wait()
        else:
            with trio.move_on_after(timeout):
                await event.wait()
            if not event.is_set() and not _returned_in_time(job):
                state = pool.abandon(job) if cancel == "abandon" else pool.request_cancel(job)
                if state != DONE:  # withdrawn, or still running at the deadline
                    if state == RUNNING and cancel == "wait":
                        with trio.CancelScope(shield=True):
                            await event.wait()
                    raise timeout_error(job)
            # the outcome is there, though its wake-up may still be on its way
            if job.finished > job.deadline:
                raise timeout_error(job)
    except trio.Cancelled:
        state = pool.abandon(job) if cancel == "abandon" else pool.request_cancel(job)
        if state == RUNNING and cancel == "wait":
            with trio.CancelScope(shield=True):
                await event.wait()
            error = late_error(job)
            if error is not None:
                logger.warning(
                    "%s raised after its caller was cancelled", job.describe(), exc_info=error
                )
        raise
    if job.error is not None:
        raise job.error
    return job.value


async def _offload(
    pool_name: str,
    cancel: str,
    timeout: float | None,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    submit: Callable[[Job], None] | None = None,
    release: Callable[[Any], object] | None = None,
) -> Any:
    pool = get_pool(pool_name)
    if submit is None:
        submit = pool.submit
    job = Job(fn, args, kwargs, contextvars.copy_context(), None)
    loop = asyncio_loop()  # None: trio (not awaited in a handler: no __context__)
    try:
        if loop is None:
            return await _run_job_trio(job, pool, submit, cancel, timeout)
        return await _run_job_asyncio(loop, job, pool, submit, cancel, timeout)
    except BaseException as exc:
        if release is not None and job.error is None and job.value is not None:
            _release_later(pool, release, job.value)
        _strip_library_frames(exc)
        raise  # bare: keeps the call's own __cause__/__context__/__suppress_context__


def _release_later(pool: Pool, release: Callable[[Any], object], value: Any) -> None:
    """Run ``release(value)`` on a worker of *pool*, no caller waiting; log what it raises."""

    def run() -> None:
        try:
            release(value)
        except Exception:
            logger.warning("releasing an unclaimed %r failed", value, exc_info=True)

    name = _callable_name(release, "__qualname__")
    pool.submit(Job(run, (), {}, contextvars.Context(), None, name=name))


async def run_owned(
    pool: str,
    release: Callable[[R], object],
    fn: Callable[P, R],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """`run_sync` in *pool*, for a call that returns a resource (a file descriptor, an open
    file): if the caller does not take the result (it was cancelled or timed out while the
    call ran, under the "wait" policy, so the call has ended), ``release(result)`` runs on a
    worker of *pool* instead of the resource leaking."""
    _check_sync(fn)
    try:
        return await _offload(  # type: ignore[no-any-return]
            pool, "wait", None, fn, args, kwargs, release=release
        )
    except BaseException as exc:
        _strip_library_frames(exc)  # this frame too
        raise


class Call(asyncio.Future, Work):  # type: ignore[type-arg]  # a Future of any result
    """One offloaded call on asyncio: the job a worker thread runs *and* the future it completes.

    Calling an `asyncify`-decorated function inside a running asyncio loop submits the call at
    once and returns this object, so no coroutine and no Task stand between the caller and
    the thread: ``gather``, ``ensure_future`` and ``wait_for`` take it as the Future it is
    (with 1,000 calls in flight that saves an asyncio Task per call), and ``await`` goes
    through `__await__`, which applies the cancel policy. It also implements the coroutine
    protocol (``send``, ``throw``, ``close``) and is registered as a
    `collections.abc.Coroutine`, so ``asyncio.create_task(f())`` and anyio's ``start_soon``
    accept it.

    Cancellation, by how the call is awaited:

    * ``await f()`` (also through ``create_task``): `Future.cancel` cancels this future and
      the CancelledError reaches `__await__`, which runs the policy (under "wait" it waits for
      the thread, shielded, then re-raises).
    * as a plain Future (``gather``, ``wait_for``, ``shield``): `cancel` runs the policy itself;
      under "wait" a running call is cancelled only when its thread has finished.
    """

    # Slots, so the hot path pays for few stores: `start_call` sets only what every call
    # reads; the rest is set where it first matters and read with a default elsewhere.
    __slots__ = (
        "abandoned",
        "args",
        "awaited",
        "cancel_requested",
        "counted",
        "ctx",
        "deadline",
        "deferred_cancel",
        "end_claim",
        "enqueued",
        "error",
        "finished",
        "fn",
        "handle",
        "kwargs",
        "notify",
        "plain",
        "policy",
        "pool",
        "start_claim",
        "stepper",
        "timed_out",
        "value",
        "waiter",
    )

    # the call's own
    pool: Pool
    policy: str
    plain: bool  # no timeout and not cancelled as a Future: `settle` takes the short way
    awaited: bool
    handle: asyncio.TimerHandle | None
    waiter: asyncio.Future[Any] | None
    stepper: Generator[Any, None, Any] | None
    deferred_cancel: tuple[Any, ...] | None

    # -- the worker's outcome, delivered on the loop's thread (see _executor._LoopWaker) --

    def settle(self) -> None:
        if self.plain and not self.done():
            if self.error is None:
                self.set_result(self.value)
            else:
                self.set_exception(self.error)
            return
        waiter = getattr(self, "waiter", None)
        if waiter is not None:  # the caller was cancelled and waits for the thread to end
            if not waiter.done():
                waiter.set_result(None)
            return
        self._cancel_timer()
        if self.done():
            return
        deferred = getattr(self, "deferred_cancel", None)
        if deferred is not None:  # cancelled as a Future under "wait"
            _log_late_error(self, "its caller was cancelled")
            _Future.cancel(self, *deferred)
        elif self.deadline and (self.timed_out or self.finished > self.deadline):
            self.set_exception(timeout_error(self))
        elif self.error is not None:
            self.set_exception(self.error)
        else:
            self.set_result(self.value)

    def _cancel_timer(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None:
            handle.cancel()
            self.handle = None

    def outcome_future(self) -> asyncio.Future[Any]:
        return getattr(self, "waiter", None) or self

    def redirect(self, waiter: asyncio.Future[Any]) -> None:
        self.waiter = waiter

    def on_timeout(self) -> None:
        self.handle = None
        _on_timeout_asyncio(self, self.pool, self.policy)

    # -- cancellation --------------------------------------------------------------------------

    def cancel(self, msg: Any | None = None) -> bool:
        if getattr(self, "awaited", False) or self.done():  # awaited: __await__ applies it
            return _Future.cancel(self, msg)
        self.plain = False
        self._cancel_timer()
        if self.policy == "abandon":
            self.pool.abandon(self)
            return _Future.cancel(self, msg)
        if self.pool.request_cancel(self) != RUNNING:
            return _Future.cancel(self, msg)
        self.deferred_cancel = (msg,)  # cancelled by settle(), once the thread has finished
        return True

    async def _after_cancel(self) -> None:
        self._cancel_timer()
        await _after_cancel_asyncio(self.get_loop(), self, self.pool, self.policy)

    # -- awaiting ------------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Any]:
        if not self.done():
            self.awaited = True
            self._asyncio_future_blocking = True
            try:
                yield self
            except asyncio.CancelledError:
                if self.cancelled():
                    yield from self._after_cancel().__await__()
                raise
            except BaseException as exc:  # the Task throws the call's error in here
                _strip_library_frames(exc)
                raise
        try:
            return self.result()
        except BaseException as exc:
            _strip_library_frames(exc)
            raise  # bare: keeps the call's own __cause__/__context__/__suppress_context__

    __iter__ = __await__

    # the coroutine protocol, for asyncio.create_task(f()) and anyio's start_soon

    def _stepper(self) -> Generator[Any, None, Any]:
        stepper = getattr(self, "stepper", None)
        if stepper is None:
            stepper = self.stepper = self.__await__()
        return stepper

    def send(self, value: None) -> Any:
        try:
            return self._stepper().send(value)
        except StopIteration:  # the result
            self.stepper = None  # finished: drop the generator (its frame refers to self)
            raise
        except BaseException as exc:
            self.stepper = None
            _strip_library_frames(exc)  # this frame too
            raise

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = typ if val is None else val
        if isinstance(exc, type):
            exc = exc()
        stepper = getattr(self, "stepper", None)
        if stepper is None:
            # before the first step (a task cancelled before it ran): the call was submitted
            # when it was made, so it is withdrawn, or the policy applied, as if cancelled
            # while awaited; a fresh __await__ would raise *exc* without either
            stepper = self.stepper = self._thrown_before_start(exc)
            throw = stepper.send
            exc = None
        else:
            throw = stepper.throw
        try:
            return throw(exc)
        except StopIteration:
            self.stepper = None
            raise
        except BaseException as error:
            self.stepper = None
            _strip_library_frames(error)  # this frame too
            raise

    def _thrown_before_start(self, exc: BaseException) -> Generator[Any, None, Any]:
        if not self.done():
            if isinstance(exc, asyncio.CancelledError):
                self.awaited = True  # as __await__: Future.cancel only marks it from now on
                _Future.cancel(self)
                yield from self._after_cancel().__await__()
            else:
                self.cancel()  # the caller is gone: as a plain Future cancelled
        raise exc

    def close(self) -> None:
        """Close the coroutine: a call not finished is cancelled as a plain Future (withdrawn
        if not started; else under its policy, without waiting: no one awaits it now)."""
        stepper = getattr(self, "stepper", None)
        if stepper is not None:
            self.stepper = None
            stepper.close()
        if not self.done():
            self.awaited = False
            self.cancel()


collections.abc.Coroutine.register(Call)  # pyright: ignore[reportAttributeAccessIssue]
_Future = asyncio.Future


def _log_late_error(call: Work, why: str) -> None:
    error = late_error(call)
    if error is not None:
        logger.warning("%s raised after %s", call.describe(), why, exc_info=error)


async def _wait_shielded(waiter: asyncio.Future[Any]) -> None:
    """Wait for *waiter* while the caller is being cancelled (the "wait" policy)."""
    import anyio

    with anyio.CancelScope(shield=True):  # stops anyio re-delivering its own cancellation
        while not waiter.done():
            # a native task.cancel() (asyncio.timeout, wait_for) is not stopped by the scope:
            # under "wait" the caller still leaves only when the thread has ended; the
            # call's own outcome is dropped (its error is logged)
            with contextlib.suppress(BaseException):
                await asyncio.shield(waiter)


_copy_context = contextvars.copy_context
_get_running_loop = asyncio._get_running_loop


def start_call(
    loop: asyncio.AbstractEventLoop,
    pool: Pool,
    policy: str,
    timeout: float | None,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Call:
    """Submit ``fn(*args, **kwargs)`` to *pool* now; the `Call` future completes with it."""
    call = Call(loop=loop)
    call.fn = fn
    call.args = args
    call.kwargs = kwargs
    call.ctx = _copy_context()
    call.notify = loop_waker(loop)
    call.error = None
    call.cancel_requested = False
    call.start_claim = [None]
    call.end_claim = [None]
    call.pool = pool
    call.policy = policy
    if timeout is None:
        call.deadline = 0.0
        call.plain = True
    else:
        call.plain = False
        call.timed_out = False
        call.finished = 0.0
        call.deadline = time.monotonic() + timeout
        call.handle = loop.call_later(timeout, call.on_timeout)
    pool.submit(call)
    return call


async def _coroutine_function_code() -> None:
    """Its code object is what makes an `OffloadedFunction` a coroutine function to inspect."""


class OffloadedFunction:
    """What `asyncify` makes of a plain sync function: call it, await the result.

    Inside a running asyncio loop a call submits the work at once and returns a `Call` (a
    Future that is also a coroutine); elsewhere (trio, before a loop runs, or in a task
    already cancelled) it returns a coroutine that submits when awaited. Either way
    ``await f(...)`` runs ``fn(...)`` in a worker thread of the pool.

    Frameworks decide whether to await an endpoint with ``inspect.iscoroutinefunction`` or
    ``asyncio.iscoroutinefunction``; both are true for it (it is function-like: name, code,
    defaults, annotations, and binds to instances like a function), whatever it wraps: a
    ``functools.partial`` or a callable object, which have no name to copy, get one.
    `inspect.signature` follows ``__wrapped__`` to what it wraps.
    """

    __code__ = _coroutine_function_code.__code__
    __defaults__ = None
    __kwdefaults__ = None

    def __init__(self, fn: Callable[..., Any], pool: str, cancel: str, timeout: float | None):
        functools.update_wrapper(self, fn)
        # what inspect wants of a function-like object (`_signature_is_functionlike`), which
        # a partial or a callable object does not give update_wrapper to copy
        own = self.__dict__
        if not isinstance(own.get("__name__"), str):
            self.__name__ = _callable_name(fn, "__name__")
        if not isinstance(own.get("__qualname__"), str):
            self.__qualname__ = _callable_name(fn, "__qualname__")
        if not isinstance(own.get("__annotations__"), dict):
            self.__annotations__ = {}
        if sys.version_info >= (3, 12):
            inspect.markcoroutinefunction(self)
        self._fn = fn
        self._pool_name = pool
        self._pool: Pool | None = None  # looked up at the first call: configure() may come later
        self._policy = cancel
        self._timeout = timeout

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:  # (a `self=` is for the function)
        loop = _get_running_loop()  # asyncio_loop(), inlined: this is the hot path
        if loop is None or (_sniffio_thread_local and _sniffio_thread_local.name == "trio"):
            return _offload(self._pool_name, self._policy, self._timeout, self._fn, args, kwargs)
        if _cancel_pending(loop):  # submitted when awaited, if its task is not cancelled then
            return _offload(self._pool_name, self._policy, self._timeout, self._fn, args, kwargs)
        pool = self._pool
        if pool is None:
            pool = self._pool = get_pool(self._pool_name)
        return start_call(loop, pool, self._policy, self._timeout, self._fn, args, kwargs)

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return types.MethodType(self, obj)

    def __reduce__(self) -> str:
        # pickled by reference, like the function it stands for
        return getattr(self, "__qualname__", None) or repr(self._fn)

    def __repr__(self) -> str:
        name = getattr(self, "__qualname__", None) or repr(self._fn)
        return f"<asyncified function {name} at {id(self):#x}>"


def _callable_name(fn: object, attr: str) -> str:
    """The ``__name__`` (or ``__qualname__``) of *fn*: of the function a partial wraps, else
    of a callable object's type (``operator.itemgetter(0)``: ``itemgetter``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, attr, None)
    if isinstance(name, str):
        return name
    kind_name: str = getattr(type(fn), attr)
    return kind_name


_ASYNC_CODE_FLAGS = (
    inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
)


def _check_sync(fn: object) -> None:
    """`_reject_async`, with a fast path for plain functions and builtins (the hot path)."""
    kind = type(fn)
    if kind is FunctionType:
        if fn.__code__.co_flags & _ASYNC_CODE_FLAGS:  # type: ignore[attr-defined]
            _reject_async(fn)
    elif kind is MethodType and type(fn.__func__) is FunctionType:  # type: ignore[attr-defined]
        if fn.__func__.__code__.co_flags & _ASYNC_CODE_FLAGS:  # type: ignore[attr-defined]
            _reject_async(fn)  # a proxy's methods (`wrap`) come this way
    elif kind is not BuiltinFunctionType:
        _reject_async(fn)


def _reject_async(fn: object) -> None:
    """Raise `TypeError` unless *fn* is a sync callable.

    Follows ``__wrapped__`` (what `functools.wraps` records): a sync wrapper of an async
    function, such as what ``@contextlib.asynccontextmanager`` makes of an async generator
    function, is async too. A sync function wrapped by a sync decorator is accepted.
    """
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    if isinstance(target, (classmethod, staticmethod)):
        target = target.__func__
    if not callable(target):
        raise TypeError(f"asyncify needs a callable, not {type(target).__name__}")
    layer: object = target
    for _ in range(_MAX_WRAPPED):  # bounded: `unittest.mock.call` has __wrapped__ endlessly
        while isinstance(layer, functools.partial):
            layer = layer.func
        # what calling it runs: a class's metaclass makes an instance (sync, whatever the
        # instances' own __call__ is: an ASGI app class); an instance runs its __call__
        caller = type(layer) if isinstance(layer, type) else layer
        call = getattr(caller, "__call__", None)  # noqa: B004 - async __call__ of instances too
        if _is_async_def(layer) or (not inspect.isroutine(layer) and _is_async_def(call)):
            # only now: repr() of a bound method's object may itself block (psutil reads /proc)
            name = getattr(target, "__qualname__", None) or repr(target)
            wraps = "" if layer is target else " (it wraps an async function)"
            raise TypeError(
                f"asyncify needs a sync callable, but {name} is async{wraps}; "
                "await it directly instead"
            )
        layer = getattr(layer, "__wrapped__", None)
        if layer is None:
            return


# how many ``__wrapped__`` layers `_reject_async` looks through
_MAX_WRAPPED = 100


def _is_async_def(fn: object) -> bool:
    """`inspect.iscoroutinefunction` or `inspect.isasyncgenfunction`, mocks aside (see
    `_mock_code`)."""
    if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
        return False
    return not _mock_code(fn)


def _mock_code(fn: object) -> bool:
    """Whether the code flags inspect tests for *fn* are not a number, as a mock's: the
    methods of ``create_autospec(cls, instance=True)`` pass `inspect.isfunction`, and their
    ``__code__.co_flags & flag`` is a truthy mock, so inspect calls them coroutine, async
    generator and generator functions at once. They are plain sync callables."""
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif inspect.ismethod(fn):
            fn = fn.__func__
        else:
            break
    flags = getattr(getattr(fn, "__code__", None), "co_flags", 0)
    return not isinstance(flags, int)


def _contextmanager_code() -> Any:
    @contextlib.contextmanager
    def probe() -> Iterator[None]:
        yield

    return probe.__code__


_CM_HELPER_CODE = _contextmanager_code()
_CO_GENERATOR = inspect.CO_GENERATOR


def _steps_kind(
    fn: object,
) -> type[OffloadedIterator[Any]] | type[OffloadedContextManager[Any]] | None:
    """What `asyncify` (and a proxy's method) makes of calling *fn*: `OffloadedIterator` if
    the call makes a generator, `OffloadedContextManager` if it is an ``@contextmanager``
    function's, None for a plain call.

    As type checkers see it: through a sync wrapper that `functools.wraps` recorded in
    ``__wrapped__`` (a decorator typed with ParamSpec returns what it wraps returns), and
    through a callable object to its ``__call__``. Once per function (per attribute read, for
    a proxy), never per call. A mock's code flags are no number (see `_mock_code`): a plain
    call.
    """
    if type(fn) is BuiltinFunctionType:  # a C function or method (a driver's): no more
        return None
    layer: object = fn
    for _ in range(_MAX_WRAPPED):  # bounded, as in _reject_async
        while isinstance(layer, functools.partial):  # as inspect.isgeneratorfunction does
            layer = layer.func
        code = getattr(layer, "__code__", None)  # a bound method reads its function's
        if code is None and not isinstance(layer, type) and not inspect.isroutine(layer):
            # a callable object: calling it runs its class's __call__ (a class makes an
            # instance, whatever its instances' __call__ does)
            call = getattr(type(layer), "__call__", None)  # noqa: B004 - the method, not a test
            code = getattr(call, "__code__", None)
        if code is _CM_HELPER_CODE:
            return OffloadedContextManager
        flags = getattr(code, "co_flags", 0)
        if isinstance(flags, int) and flags & _CO_GENERATOR:
            return OffloadedIterator
        layer = getattr(layer, "__wrapped__", None)
        if layer is None:
            return None
    return None


class _Exhausted:
    pass


_EXHAUSTED = _Exhausted()


async def _run_step(lane: Lane, step: Job, cancel: str, timeout: float | None) -> Any:
    """Run *step* (a generator's next item, a context manager's entry) on *lane*, under the
    *cancel* policy and *timeout* of any call."""
    try:
        return await _run_job(step, lane.pool, lane.put, cancel, timeout)
    except BaseException as exc:
        _strip_library_frames(exc)
        raise  # bare: keeps the call's own __cause__/__context__/__suppress_context__


def _withdrawn(step: Job) -> bool:
    """Whether *step*, which ended in an error, was withdrawn before any thread took it (its
    caller cancelled or timed out while it waited for the lane's thread): it never ran."""
    return not step.start_claim and bool(step.end_claim)


def _put_cleanup(
    lane: Lane,
    ctx: contextvars.Context,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    name: str,
) -> Job:
    """Queue a clean-up step (a context manager's exit, a generator's close) on *lane* now,
    for `_wait_cleanup` to wait for (on the loop that runs this task); *name*: its user's
    function's (see `Job`)."""
    job = Job(fn, args, {}, ctx, None, name=name)
    loop = _running_loop()
    if loop is None:
        import trio

        token = trio.lowlevel.current_trio_token()
        event = job.future = trio.Event()

        def wake(_job: Work) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(event.set)

        job.notify = wake
    else:
        job.future = loop.create_future()
        job.notify = loop_waker(loop)
    lane.put(job)
    return job


async def _wait_cleanup(job: Job) -> Any:
    """Wait for a clean-up step queued by `_put_cleanup` whatever cancels the caller
    (`finish`): withdrawn, it would leave the object open with no thread to close it on. A
    cancellation that came meanwhile is raised afterwards; else the step's outcome."""
    try:
        if _running_loop() is None:
            await finish(job.future.wait())
            if job.error is not None:
                raise job.error
            return job.value
        return await finish(_outcome(job.future))
    except BaseException as exc:
        _strip_library_frames(exc)
        raise


async def _outcome(fut: asyncio.Future[Any]) -> Any:
    return await fut


async def _run_step_to_end(
    lane: Lane,
    ctx: contextvars.Context,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    name: str,
) -> Any:
    """Run a clean-up step on *lane* to its end; see `_wait_cleanup`."""
    return await _wait_cleanup(_put_cleanup(lane, ctx, fn, args, name))


async def _cleanup_after(exc: BaseException | None, job: Job, what: str) -> None:
    """Wait for clean-up *job*, queued as *exc* is being raised (which the caller raises
    next). A cancellation that came meanwhile is raised, unless *exc* is one already; an
    error of the clean-up itself is logged: *exc* is what the caller is told about."""
    try:
        await _wait_cleanup(job)
    except asyncio.CancelledError:
        if not isinstance(exc, asyncio.CancelledError):
            raise
    except BaseException:
        logger.warning("%s raised", what, exc_info=True)


class OffloadedIterator(AsyncIterator[T_co]):
    """The async iterator an `asyncify`-decorated generator function returns.

    The generator lives on one worker thread of its pool from the first item until it is
    exhausted or closed; `aclose()` (or leaving ``async with``) runs its ``finally`` blocks on
    that same thread. Each item costs one thread hop.
    """

    def __init__(
        self,
        fn: Callable[..., Iterator[T_co]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        pool: str,
        cancel: str,
        timeout: float | None,
        lent: tuple[Lane, object] | None = None,
    ) -> None:
        self._fn = fn
        # what errors, logs and stats() call its steps: not the library's methods that run them
        self._name = _callable_name(fn, "__qualname__")
        self._args = args
        self._kwargs = kwargs
        self._pool_name = pool
        self._cancel = cancel
        self._timeout = timeout
        self._ctx = contextvars.copy_context()
        self._holder: list[Iterator[T_co]] = []
        self._lane: Lane | None = None
        # a sticky proxy's thread and the proxy (kept alive): steps run there, and it stays
        # open when this iterator finishes
        self._lent = lent
        self._finished = False
        self._closing: Job | None = None  # the close queued when a step failed
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def _next_in_thread(self) -> Any:
        if not self._holder:
            self._holder.append(self._fn(*self._args, **self._kwargs))
        try:
            return next(self._holder[0])
        except StopIteration:
            return _EXHAUSTED
        except StopAsyncIteration as exc:  # would end the caller's `async for` silently
            # as an async generator's does (PEP 525), and as StopIteration from a call
            raise RuntimeError(f"{self._name} raised StopAsyncIteration") from exc

    def _ensure_lane(self) -> Lane:
        lane = self._lane
        if lane is None:
            if self._lent is not None:
                lane = self._lane = _lent_lane(self._lent[0])
            else:
                lane = self._lane = Lane(get_pool(self._pool_name), holder=self._name)
                lane.start()
            self._finalizer = weakref.finalize(
                self,
                _close_lane_later,
                lane,
                self._ctx,
                _close_generator,
                (self._holder,),
                self._lent is None,
                self._name,
            )
        elif self._lent is not None:
            _lent_lane(lane)  # still open
        return lane

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T_co:
        if self._finished:
            raise StopAsyncIteration
        if self._lane is None:
            # a first step made while cancelled never starts, as a call does; checked before
            # the lane starts, else the close of nothing waits for a free thread of the pool
            await checkpoint_if_cancelled()
        lane = self._ensure_lane()
        step = Job(self._next_in_thread, (), {}, self._ctx, None, name=self._name)
        try:
            item = await _run_step(lane, step, self._cancel, self._timeout)
        except BaseException as exc:
            # a first step withdrawn made no generator: nothing to close, and no wait for a
            # thread (a close queued on the lane would wait for one, to do nothing)
            closing = self._release(run_close=bool(self._holder) or not _withdrawn(step))
            if closing is not None and self._cancel == "wait":  # the step has ended: close now
                await _cleanup_after(exc, closing, f"closing {self._name}")
            _strip_library_frames(exc)  # this frame too
            raise  # bare: keeps the call's own __cause__/__context__/__suppress_context__
        if item is _EXHAUSTED:
            self._release(run_close=False)
            raise StopAsyncIteration
        return item  # type: ignore[no-any-return]

    def _close_in_thread(self) -> None:
        _close_generator(self._holder)

    def _release(self, *, run_close: bool) -> Job | None:
        """Finish: queue the generator's close on its thread (if *run_close*), free the lane."""
        self._finished = True
        if self._finalizer is not None:
            self._finalizer.detach()
        lane = self._lane
        if lane is None:
            return None
        if run_close and not lane.lost and not lane.closed:
            self._closing = _put_cleanup(lane, self._ctx, self._close_in_thread, (), self._name)
        _free_lane(lane, self._lent)
        return self._closing

    async def aclose(self) -> None:
        """Close the generator on its own thread (its ``finally`` blocks run there)."""
        if self._finished:
            closing = self._closing
            if closing is not None:  # a step failed: its close may still be under way
                await _cleanup_after(None, closing, f"closing {self._name}")
            return
        self._finished = True
        if self._finalizer is not None:
            self._finalizer.detach()
        lane = self._lane
        # lost: its generator cannot run in this process; closed: a sticky proxy's, closed
        if lane is None or lane.lost or lane.closed:
            return
        try:
            await _run_step_to_end(lane, self._ctx, self._close_in_thread, (), self._name)
        except BaseException as exc:
            _strip_library_frames(exc)  # this frame too
            raise
        finally:
            _free_lane(lane, self._lent)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _close_generator(holder: list[Iterator[Any]]) -> None:
    if holder:
        gen = holder.pop()
        close = getattr(gen, "close", None)
        if close is not None:
            close()


def _close_lane_later(
    lane: Lane,
    ctx: contextvars.Context,
    close: Callable[..., None],
    args: tuple[Any, ...],
    own: bool,
    name: str,
) -> None:
    """Finalizer of an iterator dropped unfinished, or of a context manager dropped entered:
    ``close(*args)`` (its generator's close, its exit) on its own thread, then release it."""
    if not lane.lost and not lane.closed:
        lane.put(Job(close, args, {}, ctx, None, name=name))
    if own:
        lane.close()


def _free_lane(lane: Lane, lent: tuple[Lane, object] | None) -> None:
    """Release *lane*, unless it is a sticky proxy's (*lent*), which stays the proxy's."""
    if lent is None:
        lane.close()


def _describe(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _lane_closed(lane: Lane, message: str) -> RuntimeError:
    """The error for a step on a closed *lane*: *message*, unless it closed because no
    thread could be started for it (`Lane.fail`)."""
    return RuntimeError(lane.closed_message() if lane.failure else message)


def _lent_lane(lane: Lane) -> Lane:
    """*lane*, a sticky proxy's, if the proxy is still open."""
    if lane.closed:
        raise _lane_closed(lane, "the sticky proxy whose method made this was closed")
    return lane


class OffloadedContextManager(Generic[T_co]):
    """The async context manager an `asyncify`-decorated context manager function returns.

    ``__enter__`` and ``__exit__`` run on the same worker thread, which the context manager
    holds from entry to exit; exit therefore never waits for pool capacity. One made by a
    sticky proxy's method and still open when the proxy is closed is exited then, on the
    proxy's thread, as a block interrupted: ``__exit__`` gets a `GeneratorExit`, as an open
    generator's ``close()`` does (so a ``with con:`` inside rolls back rather than commits);
    leaving its block afterwards waits for that exit and does nothing more.
    """

    def __init__(
        self,
        fn: Callable[..., AbstractContextManager[T_co]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        pool: str,
        cancel: str,
        timeout: float | None,
        lent: tuple[Lane, object] | None = None,
    ) -> None:
        self._fn = fn
        # what errors, logs and stats() call its steps: not the library's methods that run them
        self._name = _callable_name(fn, "__qualname__")
        self._args = args
        self._kwargs = kwargs
        self._pool_name = pool
        self._cancel = cancel
        self._timeout = timeout
        self._ctx = contextvars.copy_context()
        self._holder: list[AbstractContextManager[T_co]] = []  # the context manager, entered
        self._lane: Lane | None = None
        self._lent = lent  # a sticky proxy's thread and the proxy, as in OffloadedIterator
        self._exited = False  # its exit is queued or done (no second one)
        self._closing: Job | None = None  # the exit queued when its sticky proxy was closed
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def _enter_in_thread(self) -> T_co:
        cm = self._fn(*self._args, **self._kwargs)
        value = cm.__enter__()
        self._holder.append(cm)
        return value

    def _exit_in_thread(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if not self._holder:
            return None
        return self._holder.pop().__exit__(exc_type, exc, tb)

    def _abort_in_thread(self) -> None:
        exc = CallCancelled("the caller was cancelled while entering the context manager")
        self._exit_in_thread(CallCancelled, exc, None)

    def _close_in_thread(self) -> None:
        _exit_interrupted(self._holder)

    def _set_exited(self) -> None:
        """Its exit is queued or done, or it will never be entered: no second exit, and none
        by the finalizer."""
        self._exited = True
        if self._finalizer is not None:
            self._finalizer.detach()

    def _release(self, *, run_close: bool) -> Job | None:
        """Its sticky proxy is closing: queue the exit (a `GeneratorExit`, if *run_close*) on
        the proxy's thread now, before the thread leaves, unless it was never entered or its
        exit is already under way. Leaving the block later waits for this exit."""
        lane = self._lane
        if lane is None or self._exited:
            return None
        self._set_exited()
        if run_close and not lane.lost and not lane.closed:
            self._closing = _put_cleanup(lane, self._ctx, self._close_in_thread, (), self._name)
        return self._closing

    async def _await_closing(self, exc: BaseException | None) -> None:
        closing, self._closing = self._closing, None
        if closing is not None:
            await _cleanup_after(exc, closing, f"exiting {self._name}")

    async def __aenter__(self) -> T_co:
        if self._lane is not None:
            raise RuntimeError("this offloaded context manager was already entered")
        # an entry made while cancelled never starts, as a call does; checked before the lane
        # starts, else the exit of nothing waits for a free thread (of the pool, or the proxy's)
        await checkpoint_if_cancelled()
        if self._lent is not None:
            lane = self._lane = _lent_lane(self._lent[0])
        else:
            lane = self._lane = Lane(get_pool(self._pool_name), holder=self._name)
            lane.start()
        # dropped while entered (no __aexit__): exited on its thread, as a block interrupted
        self._finalizer = weakref.finalize(
            self,
            _close_lane_later,
            lane,
            self._ctx,
            _exit_dropped,
            (self._holder, self._name),
            self._lent is None,
            self._name,
        )
        step = Job(self._enter_in_thread, (), {}, self._ctx, None, name=self._name)
        try:
            value: T_co = await _run_step(lane, step, self._cancel, self._timeout)
        except BaseException as exc:
            if self._exited:  # its sticky proxy was closed meanwhile, and exits it
                await self._await_closing(exc)
            elif _withdrawn(step):  # never entered: nothing to exit, no thread to wait for
                self._set_exited()
                _free_lane(lane, self._lent)
            else:
                # entered by the time a cancellation or timeout came: exit before leaving
                # (the thread stays held until then); a no-op if __enter__ raised or never ran
                self._set_exited()
                try:
                    abort = _put_cleanup(lane, self._ctx, self._abort_in_thread, (), self._name)
                finally:
                    _free_lane(lane, self._lent)
                what = f"exiting {self._name} after a failed entry"
                await _cleanup_after(exc, abort, what)
            _strip_library_frames(exc)  # this frame too
            raise  # bare: keeps the call's own __cause__/__context__/__suppress_context__
        if self._exited:  # its sticky proxy was closed while it was entered: exited since
            await self._await_closing(None)
            raise RuntimeError("the sticky proxy whose method made this was closed")
        return value

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:  # `bool`, not `bool | None`: type checkers then know it may swallow the error
        lane = self._lane
        if lane is None:
            raise RuntimeError("__aexit__ called on an offloaded context manager never entered")
        if self._exited:  # exited when its sticky proxy was closed (or exited already)
            await self._await_closing(None)
            return False
        self._set_exited()
        try:
            suppress: bool | None = await _run_step_to_end(
                lane, self._ctx, self._exit_in_thread, (exc_type, exc, tb), self._name
            )
            return bool(suppress)
        except BaseException as error:
            _strip_library_frames(error)  # this frame too
            raise
        finally:
            _free_lane(lane, self._lent)


def _exit_interrupted(holder: list[AbstractContextManager[Any]]) -> None:
    """Exit the context manager in *holder*, if entered, as a block interrupted: its
    ``__exit__`` gets a `GeneratorExit`, what a generator's ``close()`` throws (so a ``with
    con:`` inside rolls back rather than commits)."""
    if holder:
        holder.pop().__exit__(GeneratorExit, GeneratorExit(), None)


def _exit_dropped(holder: list[AbstractContextManager[Any]], name: str) -> None:
    """`_exit_interrupted`, for a context manager dropped while entered: no caller is told
    what its exit raises, so it is logged."""
    try:
        _exit_interrupted(holder)
    except Exception:
        logger.warning("exiting %s, dropped while entered, raised", name, exc_info=True)


@final
class AsyncDefRefused:
    """What type checkers see for ``asyncify(fn)`` when *fn* is an ``async def`` function or
    an async generator function: not callable, so each use is an error. At run time
    `asyncify` raises `TypeError` there (an async function needs no offloading: await it)."""

    def __init__(self) -> None:  # pragma: no cover - never made
        raise TypeError("never made")


_ASYNC_DEF = "asyncify() takes sync callables; an async def function needs no thread: await it"


@final
class _Unspecific:
    """A return type no function has, for the overload that comes before the async refusal.

    ``Any`` and ``NoReturn`` are assignable to every type, and mypy solves a function's own
    TypeVar (``def first(xs: list[T]) -> T``) to whatever an overload asks for: such a sync
    function matched the refusal (or, without it, the generator overload) and was typed
    uncallable. Only they fit this type, and their overload types them a plain call,
    ``Callable[..., Coroutine[Any, Any, Any]]``: precise parameters would carry mypy's
    solution for the TypeVar. pyright keeps a bare TypeVar generic, so such a function reaches
    the plain overload there, precisely; for ``-> Any`` mypy finds several overloads matching
    and types the decorated function Any. A TypeVar with a bound (``Self`` too) fits neither
    this overload nor the refusal, as both take ``Callable[P, ...]``: against
    ``Callable[..., ...]`` mypy solves a TypeVar past its bound.
    """


_U = TypeVar("_U", bound=_Unspecific)


class _Decorator(Protocol):
    @overload
    def __call__(
        self, fn: classmethod[C, P, R], /
    ) -> classmethod[C, P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]  # see _Unspecific
        self, fn: Callable[P, _U], /
    ) -> Callable[..., Coroutine[Any, Any, Any]]: ...
    @overload
    @deprecated(_ASYNC_DEF)  # pyright reports the message where it is chosen
    def __call__(  # type: ignore[overload-overlap]  # async before sync: refused
        self, fn: Callable[P, Awaitable[Any] | AsyncIterator[Any]], /
    ) -> AsyncDefRefused: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]  # staticmethod objects are callable too
        self, fn: staticmethod[P, R], /
    ) -> staticmethod[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]  # generators before plain calls, by design
        self, fn: Callable[P, Iterator[T]], /
    ) -> Callable[P, OffloadedIterator[T]]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]  # context managers before plain calls
        self, fn: Callable[P, _GeneratorContextManager[T]], /
    ) -> Callable[P, OffloadedContextManager[T]]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, Coroutine[Any, Any, R]]: ...


# The overloads that take a function accept the options too: ``asyncify(fn, timeout=5)``.
@overload
def asyncify(
    fn: classmethod[C, P, R],
    /,
    *,
    pool: str = ...,
    cancel: CancelPolicy = ...,
    timeout: float | None = ...,
) -> classmethod[C, P, Coroutine[Any, Any, R]]: ...
@overload
def asyncify(  # type: ignore[overload-overlap]  # see _Unspecific
    fn: Callable[P, _U],
    /,
    *,
    pool: str = ...,
    cancel: CancelPolicy = ...,
    timeout: float | None = ...,
) -> Callable[..., Coroutine[Any, Any, Any]]: ...
@overload
@deprecated(_ASYNC_DEF)  # pyright reports the message where it is chosen
def asyncify(  # type: ignore[overload-overlap]  # async before sync: refused
    fn: Callable[P, Awaitable[Any] | AsyncIterator[Any]],
    /,
    *,
    pool: str = ...,
    cancel: CancelPolicy = ...,
    timeout: float | None = ...,
) -> AsyncDefRefused: ...
@overload
def asyncify(  # type: ignore[overload-overlap]  # staticmethod objects are callable too
    fn: staticmethod[P, R],
    /,
    *,
    pool: str = ...,
    cancel: CancelPolicy = ...,
    timeout: float | None = ...,
) -> staticmethod[P, Coroutine[Any, Any, R]]: ...
@overload
def asyncify(  # type: ignore[overload-overlap]  # generators before plain calls, by design
    fn: Callable[P, Iterator[T]],
    /,
    *,
    pool: str = ...,
    cancel: CancelPolicy = ...,
    timeout: float | None = ...,
) -> Callable[P, OffloadedIterator[T]]: ...
@overload
def asyncify(  # type: ignore[overload-overlap]  # context managers before plain calls
    fn: Callable[P, _GeneratorContextManager[T]],
    /,
    *,
    pool: str = ...,
    cancel: CancelPolicy = ...,
    timeout: float | None = ...,
) -> Callable[P, OffloadedContextManager[T]]: ...
@overload
def asyncify(
    fn: Callable[P, R],
    /,
    *,
    pool: str = ...,
    cancel: CancelPolicy = ...,
    timeout: float | None = ...,
) -> Callable[P, Coroutine[Any, Any, R]]: ...
@overload
def asyncify(
    *, pool: str = ..., cancel: CancelPolicy = ..., timeout: float | None = ...
) -> _Decorator: ...
def asyncify(
    fn: Any = None,
    /,
    *,
    pool: str = DEFAULT_POOL,
    cancel: CancelPolicy = "wait",
    timeout: float | None = None,
) -> Any:
    """Turn a blocking sync callable into a non-blocking one that runs in a worker thread.

    Works bare (``@asyncify``), with options (``@asyncify(pool="db", timeout=5)``) or on a
    function with options (``asyncify(time.sleep, timeout=5)``), on functions,
    instance/class/static methods (either decorator order), generator functions (which
    become async iterators) and ``@contextmanager`` functions (which become async context
    managers), also under a sync decorator that records them with `functools.wraps`, and on
    callable objects (one whose ``__call__`` is a generator function becomes an async
    iterator)::

        @asyncify
        def load(path: str) -> bytes:
            with open(path, "rb") as f:
                return f.read()

        data = await load("a.bin")

    Options: *pool*, a pool created with `configure` (default ``"default"``, 40 threads);
    *cancel*, ``"wait"`` or ``"abandon"``; *timeout*, seconds per call.
    """
    _validate(pool, cancel, timeout)

    def decorate(fn: Any) -> Any:
        if isinstance(fn, classmethod):
            return classmethod(decorate(fn.__func__))
        if isinstance(fn, staticmethod):
            return staticmethod(decorate(fn.__func__))
        _reject_async(fn)
        kind = _steps_kind(fn)
        if kind is OffloadedIterator:

            @functools.wraps(fn)
            def iterate(*args: Any, **kwargs: Any) -> OffloadedIterator[Any]:
                return OffloadedIterator(fn, args, kwargs, pool, cancel, timeout)

            return iterate
        if kind is OffloadedContextManager:

            @functools.wraps(fn)
            def manage(*args: Any, **kwargs: Any) -> OffloadedContextManager[Any]:
                return OffloadedContextManager(fn, args, kwargs, pool, cancel, timeout)

            return manage

        return OffloadedFunction(fn, pool, cancel, timeout)

    if fn is None:
        return decorate
    return decorate(fn)


async def run_sync(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn(*args, **kwargs)`` once in the default pool and return its result.

    >>> await run_sync(time.sleep, 0.1)

    For a pool, a cancel policy or a timeout, use ``asyncify(fn, ...)`` instead.
    """
    _check_sync(fn)
    try:
        return await _offload(DEFAULT_POOL, "wait", None, fn, args, kwargs)  # type: ignore[no-any-return]
    except BaseException as exc:
        _strip_library_frames(exc)  # this frame too
        raise


async def run_serial(
    queue: SerialQueue, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    """Run ``fn(*args, **kwargs)`` once, in turn with the other calls of *queue*.

    As `run_sync` (the "wait" cancel policy, no timeout), on the worker that serves *queue*:
    see `SerialQueue`.
    """
    _check_sync(fn)
    try:
        return await _offload(  # type: ignore[no-any-return]
            queue.pool.name, "wait", None, fn, args, kwargs, queue.submit
        )
    except BaseException as exc:
        _strip_library_frames(exc)  # this frame too
        raise


class AsyncProxy(Generic[O]):
    """An object whose methods are awaitable and run in worker threads; see `wrap`.

    Non-callable attributes are returned as they are. ``proxy.wrapped`` is the object itself.
    With ``sticky=True`` every call runs on one dedicated thread, in order; `aclose()` (or
    leaving ``async with``) releases that thread.
    """

    def __init__(
        self,
        obj: O,
        *,
        pool: str = DEFAULT_POOL,
        sticky: bool = False,
        cancel: CancelPolicy = "wait",
        timeout: float | None = None,
    ) -> None:
        _validate(pool, cancel, timeout)
        self._obj = obj
        self._pool = pool
        self._cancel = cancel
        self._timeout = timeout
        self._lane: Lane | None = None
        # the async iterators and context managers its methods made (sticky only): closing
        # the proxy closes the generators and exits the context managers still open, on its
        # thread, first
        self._opened: weakref.WeakSet[OffloadedIterator[Any] | OffloadedContextManager[Any]]
        self._opened = weakref.WeakSet()
        if sticky:
            lane = self._lane = Lane(get_pool(pool))
            lane.start(dedicated=True, name=type(obj).__name__)
            weakref.finalize(self, lane.close)

    @property
    def wrapped(self) -> O:
        """The wrapped sync object."""
        return self._obj

    def __getattr__(self, name: str) -> Any:
        if name in _PROXY_OWN:  # not set yet (a copy or an unpickling under way): no recursion
            raise AttributeError(name)
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr
        _check_sync(attr)  # an async method would come back as an un-awaited coroutine
        lane = self._lane
        kind = _steps_kind(attr)
        if kind is not None:
            return self._steps_method(name, attr, lane, kind)
        if lane is None:
            pool, cancel, timeout = self._pool, self._cancel, self._timeout

            async def call(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await _offload(pool, cancel, timeout, attr, args, kwargs)
                except BaseException as exc:
                    _strip_library_frames(exc)  # this frame too
                    raise
        else:
            cancel, timeout = self._cancel, self._timeout
            # the method keeps the proxy alive: its finalizer would close the lane under it
            # (``await wrap(obj, sticky=True).method()`` drops the proxy before the call)
            owner = self

            async def call(*args: Any, **kwargs: Any) -> Any:
                if lane.closed or owner._lane is not lane:
                    raise _lane_closed(lane, f"this sticky proxy of {name!r} was closed")
                job = Job(attr, args, kwargs, contextvars.copy_context(), None)
                try:
                    return await _run_job(job, lane.pool, lane.put, cancel, timeout)
                except BaseException as exc:
                    _strip_library_frames(exc)
                    raise  # bare: keeps the call's own chain (see _offload)

        call.__name__ = name
        call.__qualname__ = f"{type(self._obj).__name__}.{name}"
        return call

    def _steps_method(
        self,
        name: str,
        attr: Any,
        lane: Lane | None,
        kind: type[OffloadedIterator[Any]] | type[OffloadedContextManager[Any]],
    ) -> Any:
        """A generator method, as an async iterator (an ``@contextmanager`` one, as an async
        context manager) whose steps run on the proxy's thread, if sticky, else on one
        thread of the pool each, as `asyncify` makes them."""
        lent = None if lane is None else (lane, self)
        pool, cancel, timeout = self._pool, self._cancel, self._timeout

        opened = self._opened

        def steps(*args: Any, **kwargs: Any) -> Any:
            if lent is None:
                return kind(attr, args, kwargs, pool, cancel, timeout)
            if lent[0].closed:
                raise _lane_closed(lent[0], f"this sticky proxy of {name!r} was closed")
            made = kind(attr, args, kwargs, pool, cancel, timeout, lent)
            opened.add(made)
            return made

        steps.__name__ = name
        steps.__qualname__ = f"{type(self._obj).__name__}.{name}"
        return steps

    async def aclose(self) -> None:
        """Release the dedicated thread of a sticky proxy (after the calls already queued,
        and after closing the generators of the async iterators its methods made, and
        exiting their context managers, that are still open, on that thread; a context
        manager's ``__exit__`` gets a `GeneratorExit`, as a generator's ``close()`` does)."""
        if self._lane is not None:
            for opened in list(self._opened):
                opened._release(run_close=True)
            self._lane.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __reduce__(self) -> tuple[Any, ...]:
        if self._lane is not None:
            raise TypeError(
                "a sticky AsyncProxy owns a thread and cannot be copied or pickled; "
                "wrap the copied object again"
            )
        return (_rewrap, (self._obj, self._pool, self._cancel, self._timeout))

    def __repr__(self) -> str:
        kind = "sticky " if self._lane is not None else ""
        return f"<AsyncProxy {kind}of {type(self._obj).__name__} in pool {self._pool!r}>"


_PROXY_OWN = frozenset({"_obj", "_pool", "_cancel", "_timeout", "_lane", "_opened"})


def post_to_sticky(proxy: AsyncProxy[Any], fn: Callable[..., Any], /, *args: Any) -> None:
    """Queue ``fn(*args)`` on a sticky *proxy*'s thread, behind the calls already queued, and
    return at once (no caller waits; what it raises is logged). For clean-ups that must run
    on that thread and cannot be awaited (a ``terminate()``); a no-op once the proxy is
    closed, or for a proxy without a thread of its own. (A function, not a method: a proxy's
    own attributes would hide the wrapped object's of the same name.)"""
    lane = proxy._lane
    if lane is None or lane.closed or lane.lost:
        return

    def run() -> None:
        try:
            fn(*args)
        except Exception:
            logger.warning("%s, posted to a sticky proxy, raised", _describe(fn), exc_info=True)

    lane.put(Job(run, (), {}, contextvars.Context(), None, name=_callable_name(fn, "__qualname__")))


def _rewrap(obj: O, pool: str, cancel: CancelPolicy, timeout: float | None) -> AsyncProxy[O]:
    """Unpickle (or copy) a non-sticky proxy: a new one of the same object and options."""
    return AsyncProxy(obj, pool=pool, cancel=cancel, timeout=timeout)


def wrap(
    obj: O,
    *,
    pool: str = DEFAULT_POOL,
    sticky: bool = False,
    cancel: CancelPolicy = "wait",
    timeout: float | None = None,
) -> AsyncProxy[O]:
    """Wrap a sync object so that every method call is awaitable and runs off the loop.

    >>> s3 = wrap(boto3.client("s3"), pool="aws")
    >>> await s3.list_buckets()
    >>> con = wrap(sqlite3.connect("app.db", check_same_thread=False), sticky=True)

    ``sticky=True`` runs every call on one dedicated thread, for thread-affine objects.
    """
    return AsyncProxy(obj, pool=pool, sticky=sticky, cancel=cancel, timeout=timeout)
