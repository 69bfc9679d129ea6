"""The runtime blocking detector: patch blocking functions, report calls made on a loop thread.

While at least one `BlockingDetector` is active, every function of `_rules.RULES` is replaced by
a thin wrapper. Off the event-loop thread the wrapper only checks "is this thread running a
loop?" (sniffio's thread-local, that trio sets while its scheduler runs, in ``trio.run`` or
its guest mode, then ``asyncio._get_running_loop()``, a C call that never raises) and calls
the original. On the loop thread it skips calls that cannot block (non-blocking sockets, zero
timeouts), walks the stack to find the first frame of user code, applies the allow-lists and
hands a `BlockingReport` to the active detectors that watch this thread (see `_receivers`),
which raise, warn, log or collect it.

Activations are reference-counted under a lock: the patches go in with the first activation
and come out with the last, whatever the thread. A blocking call that is reported (or allowed)
runs with a thread-local guard, so the calls it makes itself (``requests.get`` -> socket calls)
are not reported again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fnmatch
import functools
import importlib
import inspect
import linecache
import logging
import math
import os
import re
import sys
import threading
import time
import warnings
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Final, Literal, TypeVar, cast

from ..exceptions import BlockingCallError, ConfigError
from ._rules import FIXES, RULES, Rule, fix_for, socket_nonblocking

_sniffio_thread_local: Any
try:  # trio sets sniffio's thread-local to "trio" for the whole of trio.run()
    from sniffio import thread_local as _sniffio_thread_local
except ImportError:  # pragma: no cover - sniffio comes with trio; without it there is no trio
    _sniffio_thread_local = None


def _forget_trio_in_child() -> None:
    # A process forked from inside trio.run (multiprocessing's "fork") runs no trio loop, but
    # the forking thread's thread-locals survive the fork: sniffio's still says "trio", and the
    # child's blocking calls were reported (raised, in raise mode). asyncio forgets its running
    # loop in a forked child the same way (a pid check, an at-fork hook since Python 3.12).
    if _sniffio_thread_local is not None and _sniffio_thread_local.name == "trio":
        _sniffio_thread_local.name = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_trio_in_child)

__all__ = [
    "BlockingCallWarning",
    "BlockingDetector",
    "BlockingReport",
    "CallSite",
    "Mode",
    "allow_blocking",
    "current_loop_kind",
    "detect_blocking",
]

logger = logging.getLogger("asyncify_kit.detect")

Mode = Literal["raise", "warn", "log", "collect"]
_MODES: Final = ("raise", "warn", "log", "collect")
#: modes whose detector decides the fate of a call; "warn" and "log" ones pass it on outward
_DECIDING: Final = ("raise", "collect")
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# asyncio._get_running_loop is in asyncio.events.__all__ (the low-level API for custom loops):
# unlike get_running_loop() it returns None instead of raising, which keeps the hot path cheap.
_get_running_loop: Final = asyncio._get_running_loop


class BlockingCallWarning(RuntimeWarning):
    """Emitted by ``detect_blocking(mode="warn")`` for each blocking call on the loop thread."""


def current_loop_kind() -> str | None:
    """``"asyncio"`` or ``"trio"`` if this thread is running that event loop now, else None.

    >>> current_loop_kind() is None
    True
    """
    # trio first: in its guest mode (on an asyncio host) trio's steps run in the host's loop
    if _sniffio_thread_local is not None and _sniffio_thread_local.name == "trio":
        return "trio"
    if _get_running_loop() is not None:
        return "asyncio"
    return None


# -- frames -------------------------------------------------------------------------------------

#: top-level packages whose frames are never "user code": the report's user frame is the first
#: frame outside these, the standard library and asyncify_kit itself.
FRAMEWORKS: Final = frozenset(
    {
        "_pytest",
        "aioboto3",
        "aiobotocore",
        "aiofiles",
        "aiohttp",
        "aiomysql",
        "anyio",
        "asgiref",
        "asyncmy",
        "asyncpg",
        "attr",
        "attrs",
        "boto3",
        "botocore",
        "certifi",
        "charset_normalizer",
        "databases",
        "exceptiongroup",
        "fastapi",
        "h11",
        "httpcore",
        "httptools",
        "httpx",
        "hypothesis",
        "idna",
        "outcome",
        "pluggy",
        "psycopg",
        "psycopg2",
        "psycopg_pool",
        "pydantic",
        "pydantic_core",
        "pymysql",
        "pytest",
        "pytest_asyncio",
        "requests",
        "s3transfer",
        "sniffio",
        "sqlalchemy",
        "starlette",
        "trio",
        "typing_extensions",
        "urllib3",
        "uvicorn",
        "uvloop",
        "websockets",
    }
)

#: a blocking call made by one of these (through the standard library at most) is the runtime's
#: own business: the loop's internals, tracebacks/warnings/inspect reading source lines,
#: imports, and logging handlers.
EXEMPT: Final = frozenset(
    {
        "anyio",
        "asyncio",
        "hypothesis",
        "importlib",
        "inspect",
        "linecache",
        "logging",
        "pkgutil",
        "pluggy",
        "selectors",
        "sniffio",
        "tokenize",
        "traceback",
        "trio",
        "uvloop",
        "warnings",
        "zipimport",
        "_pytest",
    }
)

_STDLIB: Final = frozenset(sys.stdlib_module_names)
_LIBRARY: Final = FRAMEWORKS | _STDLIB
_USER_MODULES_IN_PACKAGE: Final = ("asyncify_kit._demo",)
_MAX_STACK: Final = 64


def _module_of(frame: FrameType) -> str:
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else ""


#: functions of the demo app that stand in for a blocking library call (the handlers that call
#: them are its user code)
_LIBRARY_STAND_INS: Final = frozenset({("asyncify_kit._demo", "legacy_report")})


_INSTALLED: Final = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


def is_library_code(module: str, filename: str, function: str) -> bool:
    """Library code: the stdlib, asyncify_kit, known frameworks, anything installed."""
    if (module, function) in _LIBRARY_STAND_INS or is_library_module(module):
        return True
    return any(part in filename for part in _INSTALLED)


def _is_library_frame(frame: FrameType, module: str) -> bool:
    code = frame.f_code
    return is_library_code(module, code.co_filename, code.co_name)


def is_library_module(module: str) -> bool:
    """True for the stdlib, asyncify_kit (but its demo app) and the known frameworks."""
    if module == "asyncify_kit" or module.startswith("asyncify_kit."):
        return not module.startswith(_USER_MODULES_IN_PACKAGE)
    return module.partition(".")[0] in _LIBRARY


def _shown_path(filename: str) -> str:
    """*filename* relative to the working directory when it is inside it."""
    try:
        cwd = os.getcwd()
    except OSError:
        return filename
    prefix = cwd.rstrip(os.sep) + os.sep
    return filename[len(prefix) :] if filename.startswith(prefix) else filename


@dataclass(frozen=True)
class CallSite:
    """One frame of a report: where, in which function and module, and the source line."""

    filename: str
    lineno: int
    function: str
    module: str
    line: str

    @classmethod
    def from_frame(cls, frame: FrameType, lineno: int | None = None) -> CallSite:
        code = frame.f_code
        line_number = frame.f_lineno if lineno is None else lineno
        return cls(
            filename=code.co_filename,
            lineno=line_number,
            function=code.co_name,
            module=_module_of(frame),
            line=linecache.getline(code.co_filename, line_number).strip(),
        )

    def __str__(self) -> str:
        return f"{_shown_path(self.filename)}:{self.lineno} in {self.function}"


@dataclass
class BlockingReport:
    """One blocking call made on an event-loop thread while detection was on.

    ``function`` is the blocking function as users know it (``time.sleep``,
    ``requests.Session.request``), ``user_frame`` the first frame of user code on the way to it,
    ``fix`` the suggested replacement. ``duration`` is how long the call blocked (None when it
    was not run: raise mode). ``route`` is the HTTP route being served, when
    `BlockingMiddleware` is in place.
    """

    function: str
    kind: str
    fix: str
    loop: str
    caller: CallSite
    user_frame: CallSite | None
    stack: tuple[CallSite, ...]
    thread: str
    detail: str | None = None
    route: str | None = None
    duration: float | None = None
    time: float = field(default_factory=time.time)

    @property
    def site(self) -> CallSite:
        """The user frame, or the frame that made the call if no user code was on the stack."""
        return self.user_frame or self.caller

    def format(self) -> str:
        """A multi-line description: what blocked, where, and what to use instead."""
        what = self.function + (f" ({self.detail})" if self.detail else "")
        lines = [f"blocking call {what} on the {self.loop} event-loop thread"]
        if self.route:
            lines[0] += f" while serving {self.route}"
        site = self.site
        lines.append(f"  at {site}" + (f": {site.line}" if site.line else ""))
        if self.user_frame is not None and self.caller != self.user_frame:
            lines.append(f"  called from {self.caller}")
        if self.duration is not None:
            lines.append(f"  blocked the loop for {self.duration * 1000:.1f} ms")
        lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# -- allow-lists ---------------------------------------------------------------------------------

_SITE = re.compile(r"^(?P<file>.+):(?P<line>\d+|\*)$")
#: what ``kind:<kind>`` accepts: the kinds of `RULES` (and of the checked sqlite3 and files)
KINDS: Final = frozenset(FIXES) | {rule.kind for rule in RULES}


@dataclass(frozen=True)
class AllowList:
    """Parsed allow patterns: function globs, ``module:<glob>``, ``kind:<kind>``, ``file:line``."""

    functions: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    sites: tuple[tuple[str, int | None], ...] = ()
    everything: bool = False

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> AllowList:
        functions: list[str] = []
        modules: list[str] = []
        kinds: list[str] = []
        sites: list[tuple[str, int | None]] = []
        everything = False
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(
                    f"invalid allow pattern {pattern!r}; accepted: a function glob "
                    "('time.sleep', 'os.*'), 'module:<glob>', 'kind:<kind>' or '<file>:<line>'"
                )
            if pattern == "*":
                everything = True
            elif pattern.startswith("module:"):
                modules.append(pattern[len("module:") :])
            elif pattern.startswith("kind:"):
                kind = pattern[len("kind:") :]
                if kind not in KINDS:
                    raise ConfigError(
                        f"invalid allow pattern {pattern!r}: no kind {kind!r}; accepted: "
                        + ", ".join(f"kind:{k}" for k in sorted(KINDS))
                    )
                kinds.append(kind)
            elif (match := _SITE.match(pattern)) is not None:
                line = match["line"]
                file = match["file"].replace("\\", "/")
                if not file.startswith(("/", "*")):
                    file = "*" + ("" if file.startswith("/") else "/") + file
                sites.append((file, None if line == "*" else int(line)))
            else:
                functions.append(pattern)
        return cls(tuple(functions), tuple(modules), tuple(kinds), tuple(sites), everything)

    def __bool__(self) -> bool:
        return bool(self.everything or self.functions or self.modules or self.kinds or self.sites)

    def allows(self, rule_name: str, kind: str, frames: list[FrameType]) -> bool:
        if self.everything:
            return True
        if any(fnmatch.fnmatchcase(rule_name, p) for p in self.functions):
            return True
        if kind in self.kinds:
            return True
        if self.modules:
            for frame in frames:
                module = _module_of(frame)
                if any(fnmatch.fnmatchcase(module, p) for p in self.modules):
                    return True
        if self.sites:
            for frame in frames:
                filename = frame.f_code.co_filename.replace("\\", "/")
                for file, line in self.sites:
                    if (line is None or line == frame.f_lineno) and (
                        fnmatch.fnmatchcase(filename, file)
                        or fnmatch.fnmatchcase("/" + filename, file)
                    ):
                        return True
        return False


#: blocking calls of third-party libraries that are small, by design and out of the user's
#: hands; allowed unless ``detect_blocking(allow_known=False)``.
KNOWN_ALLOW: Final = (
    # asyncpg looks for ~/.pgpass and ~/.postgresql/ certificates (a few stat calls) on connect
    "module:asyncpg.connect_utils",
)


@dataclass(eq=False)
class _AllowScope:
    """One open ``with allow_blocking(...)`` block. *open* turns false when the block ends: a
    task started inside it holds a copy of the context, scope included, and may outlive it."""

    owner: allow_blocking
    allow: AllowList
    open: bool = True


#: the allow_blocking blocks open in this context, innermost last
_allowed: contextvars.ContextVar[tuple[_AllowScope, ...]] = contextvars.ContextVar(
    "asyncify_kit_allow_blocking", default=()
)

#: set by BlockingMiddleware for the request being served: returns "GET /items/{id}"
route_provider: contextvars.ContextVar[Callable[[], str | None] | None] = contextvars.ContextVar(
    "asyncify_kit_route", default=None
)


def _allowed_here(rule_name: str, kind: str, frames: list[FrameType]) -> bool:
    """True if an open `allow_blocking` block of this context allows the call."""
    return any(
        scope.open and scope.allow.allows(rule_name, kind, frames) for scope in _allowed.get()
    )


class allow_blocking:
    """Allow blocking calls inside a block or function, even while a detector is active.

    With no pattern everything is allowed; otherwise only what the patterns name (same syntax as
    ``detect_blocking(allow=...)``). Scoped to the current context (task, and the tasks it
    starts inside the block, until the block ends), so other tasks on the same loop are still
    checked. One instance can be shared (a module-level constant) by any number of tasks.

    >>> import time
    >>> with detect_blocking(mode="raise"), allow_blocking("time.sleep"):
    ...     time.sleep(0)
    """

    def __init__(self, *patterns: str) -> None:
        self.allow = AllowList.parse(patterns) if patterns else AllowList(everything=True)

    def __enter__(self) -> allow_blocking:
        # set, never reset: a Token only resets in the context that made it, and this instance
        # may be entered by several tasks at once; each context keeps its own stack of scopes
        _allowed.set((*_allowed.get(), _AllowScope(self, self.allow)))
        return self

    def __exit__(self, *exc: object) -> None:
        scopes = _allowed.get()
        for index in range(len(scopes) - 1, -1, -1):
            if scopes[index].owner is self and scopes[index].open:
                scopes[index].open = False  # for the tasks started inside that outlive it
                _allowed.set(scopes[:index] + scopes[index + 1 :])
                return

    def __call__(self, fn: F) -> F:
        return _decorate(fn, lambda: self)


def _decorate(fn: F, scope: Callable[[], contextlib.AbstractContextManager[Any]]) -> F:
    """*fn* run inside ``scope()``. For a generator function (sync or async), each step of
    the generator runs inside it, and nothing between the steps: the code consuming the items
    is not in the scope, and the body is, however long after the call it runs."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def run_async_gen(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            steps = cast(AsyncGenerator[Any, Any], fn(*args, **kwargs))
            sent: Any = None
            thrown: BaseException | None = None
            try:
                while True:
                    with scope():
                        try:
                            if thrown is None:
                                item = await steps.asend(sent)
                            else:
                                item = await steps.athrow(thrown)
                        except StopAsyncIteration:
                            return
                    sent = thrown = None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        raise
                    except BaseException as exc:  # athrow(): the body gets it
                        thrown = exc
            finally:
                with scope():
                    await steps.aclose()

        return cast(F, run_async_gen)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def run_gen(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            steps = cast(Generator[Any, Any, Any], fn(*args, **kwargs))
            sent: Any = None
            thrown: BaseException | None = None
            try:
                while True:
                    with scope():
                        try:
                            item = steps.send(sent) if thrown is None else steps.throw(thrown)
                        except StopIteration as stop:
                            return stop.value
                    sent = thrown = None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        raise
                    except BaseException as exc:  # throw(): the body gets it
                        thrown = exc
            finally:
                with scope():
                    steps.close()

        return cast(F, run_gen)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with scope():
                return await cast(Callable[..., Awaitable[Any]], fn)(*args, **kwargs)

        return cast(F, run_async)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with scope():
            return fn(*args, **kwargs)

    return cast(F, run)


# -- the active state -----------------------------------------------------------------------


class _Local(threading.local):
    depth = 0  # > 0 while a reported or allowed blocking call runs on this thread


_local = _Local()
_state_lock = threading.Lock()


@dataclass(frozen=True)
class _Activation:
    """One activation of a detector: *thread* is the loop thread it watches, None for all."""

    detector: BlockingDetector
    thread: int | None


#: active detectors, outermost first
_sessions: list[_Activation] = []
_listeners: list[Callable[[BlockingReport], None]] = []
_active = False
_tracking = 0  # active detectors with track_files=True


def is_active() -> bool:
    """True while at least one detector is active."""
    return _active


def tracking_files() -> bool:
    """True while an active detector checks reads and writes of file objects."""
    return _tracking > 0


def add_listener(listener: Callable[[BlockingReport], None]) -> None:
    """Also hand every report to *listener* (BlockingMiddleware counts them per route)."""
    with _state_lock:
        _listeners.append(listener)


def remove_listener(listener: Callable[[BlockingReport], None]) -> None:
    with _state_lock:
        if listener in _listeners:
            _listeners.remove(listener)


class BlockingDetector:
    """An activation of the blocking detector; see `detect_blocking`."""

    def __init__(
        self,
        mode: Mode = "raise",
        allow: Iterable[str] = (),
        *,
        max_reports: int = 1000,
        log_interval: float = 60.0,
        allow_known: bool = True,
        track_files: bool = False,
    ) -> None:
        if mode not in _MODES:
            raise ConfigError(
                f"invalid mode {mode!r} for detect_blocking; accepted: {', '.join(_MODES)}"
            )
        if isinstance(max_reports, bool) or not isinstance(max_reports, int) or max_reports < 0:
            raise ConfigError(
                f"invalid max_reports {max_reports!r} for detect_blocking; accepted: a whole "
                "number >= 0"
            )
        if (
            isinstance(log_interval, bool)
            or not isinstance(log_interval, (int, float))
            or not 0 <= log_interval <= math.inf  # nan: every call logged, no rate limit
        ):
            raise ConfigError(
                f"invalid log_interval {log_interval!r} for detect_blocking; accepted: seconds "
                ">= 0 (math.inf: once per line)"
            )
        if isinstance(allow, str):
            allow = (allow,)
        self.mode: Mode = mode
        self.allow = AllowList.parse((*allow, *(KNOWN_ALLOW if allow_known else ())))
        self.track_files = track_files
        self.max_reports = max_reports
        self.log_interval = log_interval
        self.reports: list[BlockingReport] = []
        self.dropped = 0
        self._lock = threading.Lock()
        self._logged: dict[tuple[str, str, int], float] = {}

    def __enter__(self) -> BlockingDetector:
        _activate(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _deactivate(self)

    def __call__(self, fn: F) -> F:
        """Use the detector as a decorator: active for each call of *fn* (sync or async)."""
        return _decorate(fn, lambda: self)

    def clear(self) -> list[BlockingReport]:
        """Return the reports collected so far and forget them."""
        with self._lock:
            reports, self.reports = self.reports, []
            self.dropped = 0
        return reports

    def handle(self, report: BlockingReport, user: FrameType | None) -> None:
        """Record *report*, then raise, warn, log or just keep it, by mode."""
        self.keep(report)
        self.act(report, user)

    def keep(self, report: BlockingReport) -> None:
        """Record *report* in `reports` (up to *max_reports*; then count it as dropped)."""
        with self._lock:
            if len(self.reports) < self.max_reports:
                self.reports.append(report)
            else:
                self.dropped += 1

    def act(self, report: BlockingReport, user: FrameType | None) -> None:
        """Raise, warn or log *report*, by mode (collect: nothing)."""
        if self.mode == "raise":
            raise BlockingCallError(report.format())
        if self.mode == "warn":
            site = report.site
            registry = user.f_globals.setdefault("__warningregistry__", {}) if user else None
            warnings.warn_explicit(
                report.format(),
                BlockingCallWarning,
                site.filename,
                site.lineno,
                module=site.module or None,
                registry=registry,
            )
        elif self.mode == "log":
            key = (report.function, report.site.filename, report.site.lineno)
            now = time.monotonic()
            with self._lock:
                last = self._logged.get(key)
                if last is not None and now - last < self.log_interval:
                    return
                self._logged[key] = now
            logger.warning("%s", report.format())

    def __repr__(self) -> str:
        return f"<BlockingDetector mode={self.mode!r} reports={len(self.reports)}>"


def detect_blocking(
    mode: Mode = "raise",
    allow: Iterable[str] = (),
    *,
    max_reports: int = 1000,
    log_interval: float = 60.0,
    allow_known: bool = True,
    track_files: bool = False,
) -> BlockingDetector:
    """Report blocking calls made on an event-loop thread (asyncio or trio) while active.

    Use it as a context manager or a decorator (sync or async functions). *mode*:

    - ``"raise"``: the blocking call raises `BlockingCallError` instead of running;
    - ``"warn"``: a `BlockingCallWarning` at the user's line (once per line, as warnings do);
    - ``"log"``: a warning on the ``asyncify_kit.detect`` logger, once per line per
      *log_interval* seconds;
    - ``"collect"``: nothing but the report in ``.reports``.

    Every mode keeps the reports (up to *max_reports*) in ``.reports``. *allow* takes function
    globs (``"time.sleep"``, ``"os.*"``), ``"module:<glob>"`` (any frame between the call and
    the user's code in a matching module), ``"kind:<kind>"`` (``file``, ``dns``, ``http``...),
    and call sites ``"<file>:<line>"`` (``"app/legacy.py:42"``, ``"app/legacy.py:*"``).
    *allow_known* adds `KNOWN_ALLOW`: small by-design blocking calls of third-party libraries
    (asyncpg reading its ~/.postgresql files on connect). *track_files* also checks reads,
    writes, flushes and closes of the file objects ``open()`` returns while it is active,
    wherever they were opened (they are rebuilt as subclasses of their usual io classes;
    flushes and closes only of files open for writing).

    Calls made in worker threads (``asyncify``, ``run_in_executor``, ``to_thread``) are never
    reported: only the thread that runs the loop is watched. Detectors nest: one activated on
    a thread running a loop watches that loop only, one activated elsewhere every loop; a
    ``"log"`` or ``"warn"`` detector passes each call on to the detectors around it, a
    ``"raise"`` or ``"collect"`` one decides it (the pytest plugin's is not defeated by an
    app's log-mode detector).

    ```python
    import asyncio
    import time

    from asyncify_kit.detect import detect_blocking


    async def main() -> None:
        with detect_blocking(mode="collect") as detector:
            time.sleep(0.01)
        print(detector.reports[0].function)  # time.sleep


    asyncio.run(main())
    ```
    """
    return BlockingDetector(
        mode,
        allow,
        max_reports=max_reports,
        log_interval=log_interval,
        allow_known=allow_known,
        track_files=track_files,
    )


def _watched_thread() -> int | None:
    """This thread, if it runs an event loop: what a detector activated now watches."""
    return threading.get_ident() if current_loop_kind() is not None else None


def _activate(session: BlockingDetector) -> None:
    global _active, _tracking
    activation = _Activation(session, _watched_thread())
    with _state_lock:
        _sessions.append(activation)
        _tracking += session.track_files
        if len(_sessions) == 1:
            try:
                _install()
            except BaseException:
                _sessions.pop()
                _tracking -= session.track_files
                _uninstall()
                raise
            _active = True


def _deactivate(session: BlockingDetector) -> None:
    global _active, _tracking
    thread = _watched_thread()
    with _state_lock:
        # the latest activation of *session* made here, else its latest (stopped elsewhere)
        found = [i for i, a in enumerate(_sessions) if a.detector is session]
        same = [i for i in found if _sessions[i].thread == thread]
        if found:
            del _sessions[(same or found)[-1]]
            _tracking -= session.track_files
        if not _sessions and _active:
            _active = False
            _uninstall()


@contextmanager
def suspended() -> Iterator[None]:
    """Do not report anything on this thread inside the block (the detector's own work)."""
    _local.depth += 1
    try:
        yield
    finally:
        _local.depth -= 1


# -- reporting -------------------------------------------------------------------------------


#: the loops' functions that call a callback scheduled by the app: ``loop.call_soon(time.sleep,
#: 1)`` has one of these, not user code, next to the blocking call (module, function name)
_DISPATCHERS: Final = frozenset(
    {
        ("asyncio.events", "_run"),  # Handle._run: call_soon, call_later, add_reader...
        ("trio._core._entry_queue", "run_cb"),  # TrioToken.run_sync_soon
        ("trio._threads", "unprotected_fn"),  # trio.from_thread.run_sync
        ("anyio._backends._asyncio", "wrapper"),  # anyio.from_thread.run_sync on asyncio
    }
)


def _callback_site(frames: list[FrameType]) -> tuple[CallSite | None, str | None]:
    """Where a blocking loop callback was scheduled (if known), and a note for the report.

    The callback has no frame of user code: *frames* end at the loop's dispatching function.
    asyncio's debug mode records where each callback was scheduled; without it, say so.
    """
    dispatcher = frames[-1]
    if (_module_of(dispatcher), dispatcher.f_code.co_name) not in _DISPATCHERS:
        return None, None
    handle = dispatcher.f_locals.get("self") if _module_of(dispatcher) == "asyncio.events" else None
    if not isinstance(handle, asyncio.Handle):
        return None, "run by the event loop as a callback"
    scheduled = getattr(handle, "_source_traceback", None)
    if not scheduled:
        return (
            None,
            "run by the event loop as a callback; asyncio debug mode shows where it was scheduled",
        )
    last = scheduled[-1]
    site = CallSite(last.filename, last.lineno or 0, last.name, "", (last.line or "").strip())
    return site, "run by the event loop as a callback"


def _walk(start: FrameType | None) -> tuple[list[FrameType], FrameType | None] | None:
    """Frames from the call out to the first user frame; None if the call is exempt.

    A call is exempt when an `EXEMPT` module is among the frames right next to it (before the
    first frame outside the standard library): the loop's own machinery, imports, traceback and
    source lookups, logging. Further out they do not count (every call on a loop thread has
    asyncio or trio at the bottom of its stack), except the import system: a library's
    module-level code run by an import on the loop is the import's cost, not a call to fix;
    and logging: user code that logging runs (an app's own handler) is a logging handler too.
    One loop frame next to the call is not exempt, a `_DISPATCHERS` one: the loop running a
    blocking function the app scheduled as a callback; the walk ends there, with no user frame.
    """
    frames: list[FrameType] = []
    frame = start
    adjacent = True
    while frame is not None and len(frames) < _MAX_STACK:
        module = _module_of(frame)
        if module.startswith("asyncify_kit.detect"):  # our own wrappers
            frame = frame.f_back
            continue
        if adjacent:
            top = module.partition(".")[0]
            if top in EXEMPT:
                if (module, frame.f_code.co_name) not in _DISPATCHERS:
                    return None
                # the loop ran the blocking function (through the stdlib at most) as a callback
                # of the app's; what is further out is the loop itself, not who scheduled it
                frames.append(frame)
                return frames, None
            adjacent = top in _STDLIB
        elif module.startswith("importlib._bootstrap"):
            return None  # a library's module-level code, run by an import
        frames.append(frame)
        if not _is_library_frame(frame, module):
            return (frames, frame) if not _called_by_logging(frame) else None
        frame = frame.f_back
    return frames, None


def _called_by_logging(user: FrameType) -> bool:
    """True if *user* runs inside a logging call: an app's own handler (its ``emit`` writing a
    file), filter or formatter, called by ``Handler.handle`` or ``Logger.callHandlers``."""
    frame = user.f_back
    for _ in range(_MAX_STACK):
        if frame is None:
            return False
        if _module_of(frame).partition(".")[0] == "logging":
            return True
        frame = frame.f_back
    return False


def _responsible(frames: list[FrameType]) -> FrameType:
    """The first frame outside the standard library: the code that made the call."""
    for frame in frames:
        if _module_of(frame).partition(".")[0] not in _STDLIB:
            return frame
    return frames[0]


def _receivers(rule_name: str, kind: str, frames: list[FrameType]) -> list[BlockingDetector]:
    """The active detectors that take a report of this call, the one that decides last.

    A detector activated on a thread running an event loop watches that thread only; one
    activated elsewhere (around ``asyncio.run``, in a sync test) watches every thread. Those
    watching this thread are asked innermost first, those of this thread before the others;
    each that does not allow the call takes the report. A ``"log"`` or ``"warn"`` detector
    only observes: the call goes on to the next one out, so an app's production detector never
    hides it from a stricter one around it (the pytest plugin's). A ``"collect"`` or
    ``"raise"`` detector decides, by its allow-list: no detector further out is asked.
    """
    thread = threading.get_ident()
    active = _sessions[:]  # a copy: other threads activate and deactivate meanwhile
    order = [a for a in reversed(active) if a.thread == thread]
    order += [a for a in reversed(active) if a.thread is None]
    receivers: list[BlockingDetector] = []
    for activation in order:
        detector = activation.detector
        if detector not in receivers and not detector.allow.allows(rule_name, kind, frames):
            receivers.append(detector)
        if detector.mode in _DECIDING:
            break
    return receivers


def blocking_call(
    rule_name: str,
    kind: str,
    fix: str,
    detail: str | None,
    loop: str,
    start: FrameType | None,
    call: Callable[[], Any],
) -> Any:
    """Report (or allow) one blocking call made on the loop thread, then run it."""
    _local.depth += 1
    try:
        report: BlockingReport | None = None
        walked = _walk(start) if _sessions else None
        if walked is not None and walked[0]:
            frames, user = walked
            user_site = CallSite.from_frame(user) if user is not None else None
            if user is None:  # a loop callback of the app's, or no user code at all
                user_site, note = _callback_site(frames)
                if note is not None:
                    detail = f"{detail}; {note}" if detail else note
            allowed = _allowed_here(rule_name, kind, frames)
            receivers = [] if allowed else _receivers(rule_name, kind, frames)
            if receivers:
                provider = route_provider.get()
                report = BlockingReport(
                    function=rule_name,
                    kind=kind,
                    fix=fix,
                    loop=loop,
                    caller=CallSite.from_frame(_responsible(frames)),
                    user_frame=user_site,
                    stack=tuple(CallSite.from_frame(f) for f in frames[:16]),
                    thread=threading.current_thread().name,
                    detail=detail,
                    route=provider() if provider is not None else None,
                )
                for listener in list(_listeners):
                    try:
                        listener(report)
                    except Exception:  # a listener must never break the call it observes
                        logger.exception("blocking-call listener %r failed", listener)
                for detector in receivers:  # each keeps it, even if a warning raises
                    detector.keep(report)
                for detector in receivers:
                    detector.act(report, user)
        if report is None:
            return call()
        started = time.perf_counter()
        try:
            return call()
        finally:
            report.duration = time.perf_counter() - started
    finally:
        _local.depth -= 1


def _covered(iterator: Iterator[T]) -> Generator[T, Any, Any]:
    """*iterator*, each step of it run as part of the reported call that returned it.

    ``Path.glob()`` returns at once; its ``os.scandir`` calls run while the caller consumes it.
    The call was reported (or allowed) once, where it was made: the steps run under the same
    guard as the call itself, so what they do is not reported again, call by call.
    """
    inner = iterator if isinstance(iterator, Generator) else (item for item in iterator)
    step: Callable[[Any], T] = inner.send
    value: Any = None
    while True:
        try:
            with suspended():
                item = step(value)
        except StopIteration as stop:
            return stop.value
        try:
            value = yield item
            step = inner.send
        except GeneratorExit:
            with suspended():
                inner.close()
            raise
        except BaseException as exc:
            step, value = inner.throw, exc


def _make_wrapper(rule: Rule, original: Callable[..., Any]) -> Callable[..., Any]:
    nonblocking = rule.nonblocking
    describe = rule.detail
    name, kind, fix, lazy = rule.name, rule.kind, rule.fix, rule.lazy
    get_loop = _get_running_loop
    sniffio_tl = _sniffio_thread_local
    local = _local

    def blocking_wrapper(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if sniffio_tl is not None and sniffio_tl.name == "trio":  # guest mode too
            loop = "trio"
        elif get_loop() is not None:
            loop = "asyncio"
        else:
            return original(*args, **kwargs)
        if local.depth or (nonblocking is not None and nonblocking(args, kwargs)):
            return original(*args, **kwargs)
        detail = describe(args, kwargs) if describe is not None else None
        result = blocking_call(
            name,
            kind,
            fix,
            detail,
            loop,
            sys._getframe(1),
            functools.partial(original, *args, **kwargs),
        )
        if lazy and isinstance(result, Iterator):
            return _covered(result)
        return result

    if nonblocking is socket_nonblocking:
        # socket methods: the loop's own non-blocking sockets take the shortest path
        def socket_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            if self.timeout == 0.0:
                return original(self, *args, **kwargs)
            return blocking_wrapper(self, *args, **kwargs)

        wrapper: Callable[..., Any] = socket_wrapper
    else:
        wrapper = blocking_wrapper
    with contextlib.suppress(AttributeError, TypeError):  # C callables may lack __name__
        functools.update_wrapper(wrapper, original)
    wrapper.__asyncify_detect_rule__ = rule  # type: ignore[attr-defined]
    return wrapper


# -- patching -------------------------------------------------------------------------------


@dataclass
class _Patch:
    owner: Any
    attr: str
    original: Any  # what owner.__dict__ held, or _INHERITED
    installed: Any
    #: the classes derived from this one get *installed* copied in when they are made
    #: (`Rule.injected_into`): those made while it was in are restored with it
    copied_into: type | None = None


_INHERITED: Final = object()
_OS_CAPABILITY_SETS: Final = (
    "supports_dir_fd",
    "supports_effective_ids",
    "supports_fd",
    "supports_follow_symlinks",
)
_patches: list[_Patch] = []


def _resolve(rule: Rule) -> tuple[Any, str] | None:
    module = sys.modules.get(rule.module)
    if module is None:
        if not rule.stdlib and rule.module.partition(".")[0] not in sys.modules:
            return None  # a driver the app does not use
        try:
            module = importlib.import_module(rule.module)
        except ImportError:
            return None
    owner: Any = module
    *path, attr = rule.target.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    if not hasattr(owner, attr):
        return None
    return owner, attr


def _install() -> None:
    for rule in RULES:
        found = _resolve(rule)
        if found is None:
            continue
        owner, attr = found
        _undo_stale(owner, attr)
        if isinstance(owner, type):
            raw = owner.__dict__.get(attr, _INHERITED)
            if raw is _INHERITED:
                wrapped: Any = _make_wrapper(rule, getattr(owner, attr))
            elif isinstance(raw, classmethod):
                wrapped = classmethod(_make_wrapper(rule, raw.__func__))
            elif isinstance(raw, staticmethod):
                wrapped = staticmethod(_make_wrapper(rule, raw.__func__))
            else:
                wrapped = _make_wrapper(rule, raw)
        else:
            raw = getattr(owner, attr)
            if rule.module == "sqlite3" and attr == "connect":
                wrapped = _make_wrapper(rule, _sqlite_connect(raw))
            elif rule.kind == "file" and attr == "open" and rule.module in ("builtins", "io"):
                from ._files import tracked_open

                wrapped = _make_wrapper(rule, tracked_open(raw))
            else:
                wrapped = _make_wrapper(rule, raw)
        _locate(wrapped, owner, attr)
        _originals[_function_of(wrapped)] = raw
        copied_into = _injected_into(rule)
        setattr(owner, attr, wrapped)
        _patches.append(_Patch(owner, attr, raw, wrapped, copied_into))
        if copied_into is not None:
            for cls in _subclasses(copied_into):
                if cls.__dict__.get(attr) is raw:
                    setattr(cls, attr, wrapped)
                    _patches.append(_Patch(cls, attr, raw, wrapped))
        if owner is os:
            # `os.open in os.supports_dir_fd` must stay true for the wrapper (shutil, pathlib,
            # storage backends ask before using dir_fd/follow_symlinks)
            for capability in _OS_CAPABILITY_SETS:
                members = getattr(os, capability, None)
                if isinstance(members, set) and raw in members:
                    members.add(wrapped)


def _locate(wrapped: Any, owner: Any, attr: str) -> None:
    """Name *wrapped* after the place it is installed (``os.stat``, not ``posix.stat``).

    pickle stores a function as its ``__module__`` and ``__qualname__`` and refuses one it does
    not find there: ``functools.update_wrapper`` copies the original's, and ``posix.stat``
    (``io.open``, ...) is still the original, so ``os.stat`` could not be sent to a process
    pool while a detector was active.
    """
    function = _function_of(wrapped)
    if isinstance(owner, type):
        function.__module__, function.__qualname__ = (
            owner.__module__,
            f"{owner.__qualname__}.{attr}",
        )
    else:
        function.__module__, function.__qualname__ = owner.__name__, attr


def _injected_into(rule: Rule) -> type | None:
    """The class whose subclasses get a copy of *rule*'s function when they are made."""
    if rule.injected_into is None:
        return None
    module, name = rule.injected_into
    base = getattr(sys.modules.get(module), name, None)
    return base if isinstance(base, type) else None


def _subclasses(base: type) -> list[type]:
    """Every live class derived from *base*, however indirectly."""
    found: dict[type, None] = {}
    pending = [base]
    while pending:
        subclasses: list[type] = type.__subclasses__(pending.pop())
        for cls in subclasses:
            if cls not in found:
                found[cls] = None
                pending.append(cls)
    return list(found)


def _uninstall() -> None:
    while _patches:
        patch = _patches.pop()
        if patch.copied_into is not None:
            # classes made while the patch was in hold a copy of it
            for cls in _subclasses(patch.copied_into):
                if cls.__dict__.get(patch.attr) is patch.installed:
                    setattr(cls, patch.attr, patch.original)
        if patch.owner is os:  # whatever happens to the attribute, the wrapper is gone
            _forget_capabilities(patch.installed)
        current = _current(patch.owner, patch.attr)
        if current is patch.installed:
            _restore(patch.owner, patch.attr, current, patch.original)
        elif _stale_original(current) is not _NOT_STALE:
            # a wrapper of an earlier activation, put back by whoever saved it then (a
            # fixture's monkeypatch undone at teardown): what it replaced goes back
            _undo_stale(patch.owner, patch.attr)
        else:
            # someone patched over us (a test's monkeypatch, another tool): leave theirs
            logger.debug("not restoring %r.%s: replaced by another patch", patch.owner, patch.attr)


#: each wrapper installed (as long as something holds it): what its owner held before it, a
#: `_Patch`'s original. By identity: a copy of a wrapper's attributes (functools.wraps in a
#: test's spy) is not a wrapper.
_originals: weakref.WeakKeyDictionary[Callable[..., Any], Any] = weakref.WeakKeyDictionary()
_NOT_STALE: Final = object()


def _function_of(value: Any) -> Any:
    return value.__func__ if isinstance(value, (classmethod, staticmethod)) else value


def _current(owner: Any, attr: str) -> Any:
    """What *owner* holds as *attr* itself (a class's own, not an inherited one)."""
    return owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)


def _stale_original(value: Any) -> Any:
    """What the detector wrapper *value* replaced when installed, or _NOT_STALE if no wrapper."""
    try:
        return _originals.get(_function_of(value), _NOT_STALE)
    except TypeError:  # not weakly referenceable (a C function, None): not a wrapper
        return _NOT_STALE


def _undo_stale(owner: Any, attr: str) -> None:
    """Put back what a wrapper left from an earlier activation replaced, if one is in place.

    A wrapper is saved by whoever patches a patched function while a detector is active
    (``monkeypatch.setattr(time, "sleep", ...)``) and restored when they undo their patch, which
    may be after that detector ended. Outside of an activation, every wrapper is stale.
    """
    for _ in range(_MAX_STACK):  # bounded: one level is the rule, a wrapper saved twice is not
        current = _current(owner, attr)
        original = _stale_original(current)
        if original is _NOT_STALE:
            return
        _restore(owner, attr, current, original)


def _forget_capabilities(wrapper: Any) -> None:
    """Take an os wrapper out of ``os.supports_fd`` and the others `_install` put it in."""
    for capability in _OS_CAPABILITY_SETS:
        members = getattr(os, capability, None)
        if isinstance(members, set):
            members.discard(wrapper)


def _restore(owner: Any, attr: str, installed: Any, original: Any) -> None:
    if owner is os:
        _forget_capabilities(installed)
    if original is _INHERITED:
        delattr(owner, attr)
    else:
        setattr(owner, attr, original)


# -- sqlite3: C methods cannot be patched, so connections made while active are subclasses ------


def guarded(name: str, kind: str, call: Callable[[], Any]) -> Any:
    """Run *call*, reporting it as the blocking *name* if made on a loop thread while active."""
    if not _active or _local.depth:
        return call()
    loop = current_loop_kind()
    if loop is None:
        return call()
    return blocking_call(
        name, kind, f"{name} -> {fix_for(kind)}", None, loop, sys._getframe(1), call
    )


@functools.cache
def _sqlite_types() -> tuple[type[Any], type[Any]]:
    import sqlite3

    base_cursor, base_connection = sqlite3.Cursor, sqlite3.Connection

    def check(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        qualified = f"sqlite3.{name}"

        def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            return guarded(qualified, "sqlite3", functools.partial(method, self, *args, **kwargs))

        checked.__name__ = checked.__qualname__ = method.__name__
        return checked

    def cursor(self: Any, factory: Any = None) -> Any:
        return base_connection.cursor(self, factory or detected_cursor)

    cursor_methods = ("execute", "executemany", "executescript", "fetchone", "fetchmany")
    detected_cursor = type(
        "Cursor",
        (base_cursor,),
        {m: check(f"Cursor.{m}", getattr(base_cursor, m)) for m in (*cursor_methods, "fetchall")},
    )

    def via_cursor(name: str) -> Callable[..., Any]:
        # the C Connection.execute builds a plain cursor; go through ours so rows are checked
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(self.cursor(), name)(*args, **kwargs)

        method.__name__ = name
        return method

    connection_methods = {
        **{m: via_cursor(m) for m in ("execute", "executemany", "executescript")},
        "commit": base_connection.commit,
        "rollback": base_connection.rollback,
    }
    detected_connection = type(
        "Connection",
        (base_connection,),
        {
            "cursor": cursor,
            **{m: check(f"Connection.{m}", fn) for m, fn in connection_methods.items()},
        },
    )
    return detected_connection, detected_cursor


def _sqlite_connect(connect: Callable[..., Any]) -> Callable[..., Any]:
    """sqlite3.connect that builds a checked Connection subclass unless given a factory."""

    @functools.wraps(connect)
    def sqlite_connect(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if len(args) < 6 and "factory" not in kwargs:
            kwargs["factory"] = _sqlite_types()[0]
        return connect(*args, **kwargs)

    return sqlite_connect
