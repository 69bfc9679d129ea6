"""`LoopMonitor`: watch a running event loop from a thread, for production.

A watchdog thread posts a probe to the loop (``loop.call_soon_threadsafe`` on asyncio,
``TrioToken.run_sync_soon`` on trio) every *interval* seconds and measures how long the loop
took to run it: that is the loop's lag. While a probe is late by more than *stall_threshold*,
the loop is stalled, and the watchdog samples the loop thread's stack
(``sys._current_frames()``) every *sample_interval*: the report names the line the loop was
stuck on, whatever stuck it — a blocking call, CPU-bound work, a C extension holding the GIL.

The same thread reads every asyncify pool (`asyncify_kit.stats`), and each probe reads anyio's
default thread limiter on the loop thread: a saturated pool (calls waiting for a thread) shows
up even while the loop itself stays fast. Reports go through `logging` (logger
``asyncify_kit.detect``), at most one per *report_interval* seconds per kind; metrics are
available as a dict and as Prometheus text.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FrameType, TracebackType
from typing import Any, Final

from .._executor import PoolStats, all_pools
from ..exceptions import ConfigError
from ._detector import CallSite, current_loop_kind, is_library_code

__all__ = ["LoopMonitor", "StallReport", "route_frames"]

logger = logging.getLogger("asyncify_kit.detect")

#: code objects whose frame knows the HTTP route being served (BlockingMiddleware registers its
#: own): during a stall the monitor finds them on the loop thread's stack.
route_frames: dict[CodeType, Callable[[FrameType], str | None]] = {}

_MAX_SAMPLES: Final = 200
_MAX_DEPTH: Final = 64
_SHOWN_FRAMES: Final = 8


@dataclass(frozen=True)
class StallReport:
    """One stall: the loop did not run a probe for *duration* seconds.

    ``stack`` is the loop thread's most frequently sampled stack during the stall, outermost
    frame first; ``frame`` its innermost frame of user code (None if nothing was sampled);
    ``route`` the HTTP route being served, when `BlockingMiddleware` is in place. ``ongoing``
    marks a report sent while the stall was still going on.
    """

    loop: str
    started: float
    duration: float
    samples: int
    stack: tuple[CallSite, ...]
    frame: CallSite | None
    route: str | None
    ongoing: bool = False

    def format(self) -> str:
        state = "still stalled after" if self.ongoing else "stalled for"
        head = f"{self.loop} event loop {state} {self.duration * 1000:.0f} ms"
        if self.route:
            head += f" while serving {self.route}"
        lines = [head]
        if self.frame is not None:
            lines.append(f"  at {self.frame}" + (f": {self.frame.line}" if self.frame.line else ""))
        if self.stack:
            shown = self.stack[-_SHOWN_FRAMES:]
            lines.append(f"  loop thread stack, innermost last ({self.samples} samples):")
            if len(shown) < len(self.stack):
                lines.append(f"    ... {len(self.stack) - len(shown)} outer frames")
            lines.extend(f"    {site}" + (f": {site.line}" if site.line else "") for site in shown)
        else:
            lines.append("  (ended before the stack could be sampled)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


@dataclass
class _Gauge:
    saturated: bool = False
    events: int = 0
    last_log: float = 0.0


def _seconds(name: str, value: object, *, zero_or_inf: bool = False) -> float:
    """*value* as seconds: a finite number > 0 (``nan``, ``inf`` and bools are errors: the
    watchdog would spin, crash or never see a stall). *zero_or_inf* also accepts 0 and inf."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # a whole number too large for a float
            seconds = None
    if seconds is not None and (
        0 <= seconds <= math.inf if zero_or_inf else 0 < seconds < math.inf
    ):
        return seconds
    accepted = "seconds >= 0, or math.inf" if zero_or_inf else "a finite number of seconds > 0"
    too_large = isinstance(value, int) and not isinstance(value, bool) and seconds is None
    shown = "(a whole number too large)" if too_large else repr(value)
    raise ConfigError(f"invalid {name} {shown} for LoopMonitor; accepted: {accepted}")


class _Run:
    """One run of a `LoopMonitor`'s watchdog, from `start` to `stop`: the loop it posts its
    probes to, and the probe under way (shared with the loop thread, under the monitor's
    lock)."""

    __slots__ = ("done", "post", "sent", "stop")

    def __init__(self, post: Callable[[Callable[[], None]], object]) -> None:
        self.post = post
        self.stop = threading.Event()
        self.sent: float | None = None  # when the probe under way was posted
        self.done: float | None = None  # when the loop ran it


class LoopMonitor:
    """Watch the running loop: lag percentiles, stalls with stacks, thread-pool saturation.

    Start it inside the loop (``async with LoopMonitor() as monitor:``, or ``monitor.start()``
    from async code and ``monitor.stop()``), on asyncio or trio.

    ```python
    import asyncio
    import time

    from asyncify_kit.detect import LoopMonitor


    async def main() -> None:
        async with LoopMonitor(stall_threshold=0.05) as monitor:
            await asyncio.sleep(0.1)
            time.sleep(0.2)  # a stall: reported through logging, with this line
            await asyncio.sleep(0.1)
        print(monitor.metrics()["stalls"])  # 1
        print(monitor.prometheus().splitlines()[0])


    asyncio.run(main())
    ```
    """

    def __init__(
        self,
        *,
        interval: float = 0.05,
        stall_threshold: float = 0.1,
        sample_interval: float | None = None,
        report_interval: float = 10.0,
        ongoing_after: float = 5.0,
        window: int = 4096,
        on_stall: Callable[[StallReport], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.interval = _seconds("interval", interval)
        self.stall_threshold = _seconds("stall_threshold", stall_threshold)
        self.sample_interval = (
            _seconds("sample_interval", sample_interval)
            if sample_interval is not None
            else max(0.001, min(self.stall_threshold / 5, 0.02))
        )
        # 0: log every report; inf: the first one only
        self.report_interval = _seconds("report_interval", report_interval, zero_or_inf=True)
        self.ongoing_after = _seconds("ongoing_after", ongoing_after)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(
                f"invalid window {window!r} for LoopMonitor; accepted: a whole number >= 1"
            )
        self.logger = log or logger
        self._listeners: list[Callable[[StallReport], None]] = (
            [] if on_stall is None else [on_stall]
        )
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._run: _Run | None = None  # the watchdog's current run (from start to stop)
        self._thread: threading.Thread | None = None
        self._loop_kind: str | None = None
        self._loop_thread = 0
        self._limiter: Any = None
        # measurements
        self._lags: deque[float] = deque(maxlen=window)
        self._lag_sum = 0.0
        self._lag_max = 0.0
        self._probes = 0
        self._stalls = 0
        self._stall_seconds = 0.0
        self._stall_max = 0.0
        self._last_stall: StallReport | None = None
        self._stall_last_log = 0.0
        self._stalls_unlogged = 0
        self._pools: dict[str, dict[str, Any]] = {}
        self._gauges: dict[str, _Gauge] = {}
        self._limiter_stats: dict[str, Any] | None = None
        self._limiter_view: dict[str, Any] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LoopMonitor:
        """Start watching the loop running in this thread (call it from async code)."""
        kind = current_loop_kind()
        if kind is None:
            raise RuntimeError(
                "LoopMonitor.start() must be called from code running in an event loop"
            )
        if self._thread is not None:
            raise RuntimeError("this LoopMonitor is already running")
        post: Callable[[Callable[[], None]], object]
        if kind == "asyncio":
            post = asyncio.get_running_loop().call_soon_threadsafe
        else:
            import trio

            post = trio.lowlevel.current_trio_token().run_sync_soon
        try:
            import anyio.to_thread

            self._limiter = anyio.to_thread.current_default_thread_limiter()
        except Exception:  # no anyio backend for this loop: no limiter gauge
            self._limiter = None
        self._loop_kind = kind
        self._loop_thread = threading.get_ident()
        # a run of its own: a stopped watchdog may still be exiting, with a probe posted to a
        # loop now gone (this one must neither wait for that probe nor post to that loop)
        self._run = run = _Run(post)
        self._thread = threading.Thread(
            target=self._watch, args=(run,), name="asyncify-loop-monitor", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the watchdog thread (returns at once; it exits within one interval)."""
        run = self._run
        if run is not None:
            run.stop.set()
        self._wake.set()
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    async def __aenter__(self) -> LoopMonitor:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def add_stall_listener(self, listener: Callable[[StallReport], None]) -> None:
        """Call *listener* with every stall report (from the watchdog thread)."""
        self._listeners.append(listener)

    # -- the loop side ------------------------------------------------------------------------

    def _probe(self, run: _Run) -> None:
        """Runs on the loop thread: record when the loop got to the probe; read the limiter."""
        now = time.perf_counter()
        limiter = self._limiter
        stats = None
        if limiter is not None:
            try:
                waiting = limiter.statistics().tasks_waiting
                stats = {
                    "total": float(limiter.total_tokens),
                    "borrowed": int(limiter.borrowed_tokens),
                    "waiting": int(waiting),
                }
            except Exception:  # a limiter of another loop, or a closed one
                stats = None
        with self._lock:
            run.done = now
            if stats is not None:
                self._limiter_stats = stats
        self._wake.set()

    # -- the watchdog -----------------------------------------------------------------------

    def _watch(self, run: _Run) -> None:
        stop = run.stop
        wake = self._wake
        next_probe = time.perf_counter()
        samples: list[tuple[tuple[tuple[CodeType, int, str], ...], str | None]] = []
        ongoing_sent = False
        while not stop.is_set():
            now = time.perf_counter()
            with self._lock:
                sent, done = run.sent, run.done
            if sent is not None and done is not None:  # the loop ran the probe
                lag = done - sent
                self._record_lag(lag)
                if lag >= self.stall_threshold:
                    self._stall_ended(sent, lag, samples)
                samples = []
                ongoing_sent = False
                with self._lock:
                    run.sent = run.done = None
                sent = None
            if sent is None:
                if now >= next_probe:
                    self._sample_pools()
                    if not self._send_probe(run, now):
                        return
                    sent = now
                    next_probe = now + self.interval
            elif now - sent >= self.stall_threshold:
                if len(samples) < _MAX_SAMPLES:
                    sample = self._sample_stack()
                    if sample is not None:
                        samples.append(sample)
                if not ongoing_sent and now - sent >= self.ongoing_after:
                    ongoing_sent = True
                    self._emit(
                        self._stall_report(sent, now - sent, samples, ongoing=True), force=True
                    )
            if sent is None:
                timeout = max(0.0, next_probe - time.perf_counter())
            else:
                timeout = self.sample_interval
            wake.wait(timeout)
            wake.clear()

    def _send_probe(self, run: _Run, now: float) -> bool:
        with self._lock:
            run.sent = now
            run.done = None
        try:
            run.post(functools.partial(self._probe, run))
        except Exception:  # the loop closed or the trio run finished: nothing left to watch
            if self._run is run:  # (not a later run's thread)
                self._thread = None
            return False
        return True

    def _record_lag(self, lag: float) -> None:
        with self._lock:
            self._lags.append(lag)
            self._lag_sum += lag
            self._probes += 1
            self._lag_max = max(self._lag_max, lag)

    def _sample_stack(self) -> tuple[tuple[tuple[CodeType, int, str], ...], str | None] | None:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return None
        stack: list[tuple[CodeType, int, str]] = []
        route: str | None = None
        current: FrameType | None = frame
        while current is not None and len(stack) < _MAX_DEPTH:
            code = current.f_code
            module = current.f_globals.get("__name__")
            stack.append((code, current.f_lineno, module if isinstance(module, str) else ""))
            if route is None and code in route_frames:
                try:
                    route = route_frames[code](current)
                except Exception:  # a frame being torn down: no route this time
                    route = None
            current = current.f_back
        stack.reverse()  # outermost first
        return tuple(stack), route

    def _stall_report(
        self,
        started: float,
        duration: float,
        samples: list[tuple[tuple[tuple[CodeType, int, str], ...], str | None]],
        *,
        ongoing: bool = False,
    ) -> StallReport:
        stack: tuple[CallSite, ...] = ()
        frame: CallSite | None = None
        route: str | None = None
        if samples:
            counts = Counter(sample for sample, _ in samples)
            top, _ = counts.most_common(1)[0]
            stack = tuple(_site(code, lineno, module) for code, lineno, module in top)
            routes = [r for _, r in samples if r is not None]
            route = Counter(routes).most_common(1)[0][0] if routes else None
            frame = next(
                (
                    site
                    for site in reversed(stack)
                    if not is_library_code(site.module, site.filename, site.function)
                ),
                stack[-1] if stack else None,
            )
        return StallReport(
            loop=self._loop_kind or "?",
            started=time.time() - (time.perf_counter() - started),
            duration=duration,
            samples=len(samples),
            stack=stack,
            frame=frame,
            route=route,
            ongoing=ongoing,
        )

    def _stall_ended(
        self,
        sent: float,
        lag: float,
        samples: list[tuple[tuple[tuple[CodeType, int, str], ...], str | None]],
    ) -> None:
        report = self._stall_report(sent, lag, samples)
        with self._lock:
            self._stalls += 1
            self._stall_seconds += lag
            self._stall_max = max(self._stall_max, lag)
            self._last_stall = report
        self._emit(report)

    def _emit(self, report: StallReport, *, force: bool = False) -> None:
        for listener in list(self._listeners):
            try:
                listener(report)
            except Exception:
                self.logger.exception("stall listener %r failed", listener)
        now = time.monotonic()
        with self._lock:
            if not force and now - self._stall_last_log < self.report_interval:
                self._stalls_unlogged += 1
                return
            self._stall_last_log = now
            unlogged, self._stalls_unlogged = self._stalls_unlogged, 0
        suffix = f"\n  ({unlogged} more stalls since the last report)" if unlogged else ""
        self.logger.warning("%s%s", report.format(), suffix)

    def _sample_pools(self) -> None:
        pools: dict[str, dict[str, Any]] = {}
        for pool in all_pools():
            stats = pool.stats()
            saturated = stats.waiting > 0
            pools[stats.name] = {
                "size": stats.size,
                "threads": stats.threads,
                "running": stats.running,
                "waiting": stats.waiting,
                "abandoned": stats.abandoned,
                "completed": stats.completed,
                "queue_wait_p99": stats.queue_wait_p99,
                "saturated": saturated,
            }
            self._update_gauge(
                f"pool {stats.name!r}", saturated, functools.partial(_pool_message, stats)
            )
        with self._lock:
            limiter = dict(self._limiter_stats) if self._limiter_stats else None
        if limiter is not None:
            saturated = limiter["waiting"] > 0
            limiter["saturated"] = saturated
            self._update_gauge(
                "anyio",
                saturated,
                lambda: (
                    f"anyio's default thread limiter is saturated: {limiter['borrowed']}/"
                    f"{limiter['total']:.0f} threads busy, {limiter['waiting']} tasks waiting"
                ),
            )
        with self._lock:
            self._pools = pools
            self._limiter_view = limiter

    def _update_gauge(self, key: str, saturated: bool, message: Callable[[], str]) -> None:
        gauge = self._gauges.setdefault(key, _Gauge())
        if saturated and not gauge.saturated:
            gauge.events += 1
            now = time.monotonic()
            if now - gauge.last_log >= self.report_interval:
                gauge.last_log = now
                lag = self._lag_percentile(0.99)
                self.logger.warning("%s; loop lag p99 %.1f ms", message(), lag * 1000)
        gauge.saturated = saturated

    # -- metrics ------------------------------------------------------------------------------

    def _lag_percentile(self, q: float) -> float:
        with self._lock:
            values = sorted(self._lags)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(q * len(values)))]

    def metrics(self) -> dict[str, Any]:
        """Lag percentiles, stall counts and pool gauges as a plain dict (JSON-serialisable)."""
        with self._lock:
            values = sorted(self._lags)
            pools = {name: dict(values_) for name, values_ in self._pools.items()}
            limiter = dict(self._limiter_view) if self._limiter_view else None
            result: dict[str, Any] = {
                "loop": self._loop_kind,
                "running": self._thread is not None,
                "probes": self._probes,
                "lag_seconds": {
                    "p50": _quantile(values, 0.50),
                    "p90": _quantile(values, 0.90),
                    "p99": _quantile(values, 0.99),
                    "max": self._lag_max,
                    "sum": self._lag_sum,
                },
                "stalls": self._stalls,
                "stall_seconds_total": self._stall_seconds,
                "stall_seconds_max": self._stall_max,
                "last_stall": self._last_stall.format() if self._last_stall else None,
            }
        for name, pool in pools.items():
            gauge = self._gauges.get(f"pool {name!r}")
            pool["saturation_events"] = gauge.events if gauge else 0
        if limiter is not None:
            gauge = self._gauges.get("anyio")
            limiter["saturation_events"] = gauge.events if gauge else 0
        result["pools"] = pools
        result["anyio_limiter"] = limiter
        return result

    def prometheus(self, prefix: str = "asyncify") -> str:
        """The metrics in Prometheus' text exposition format."""
        m = self.metrics()
        lag = m["lag_seconds"]
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {prefix}_{name} {help_}")
            out.append(f"# TYPE {prefix}_{name} {kind}")
            out.extend(f"{prefix}_{name}{labels} {_number(value)}" for labels, value in samples)

        metric(
            "loop_lag_seconds",
            "summary",
            "Delay between scheduling a probe on the event loop and the loop running it.",
            [
                ('{quantile="0.5"}', lag["p50"]),
                ('{quantile="0.9"}', lag["p90"]),
                ('{quantile="0.99"}', lag["p99"]),
                ("_sum", lag["sum"]),
                ("_count", m["probes"]),
            ],
        )
        metric("loop_lag_max_seconds", "gauge", "Largest loop lag seen.", [("", lag["max"])])
        metric(
            "loop_stalls_total", "counter", "Stalls longer than the threshold.", [("", m["stalls"])]
        )
        metric(
            "loop_stall_seconds_total",
            "counter",
            "Time spent in stalls.",
            [("", m["stall_seconds_total"])],
        )
        pools: dict[str, dict[str, Any]] = m["pools"]
        for field_, kind, help_ in (
            ("size", "gauge", "Maximum threads of the asyncify pool."),
            ("running", "gauge", "Calls running in the asyncify pool."),
            ("waiting", "gauge", "Calls waiting for a thread of the asyncify pool."),
            ("saturation_events", "counter", "Times the asyncify pool had calls waiting."),
        ):
            name = f"pool_{field_}" + ("_total" if kind == "counter" else "")
            samples = [
                (f'{{pool="{_label(p)}"}}', float(v[field_])) for p, v in sorted(pools.items())
            ]
            metric(name, kind, help_, samples)
        limiter = m["anyio_limiter"]
        if limiter is not None:
            metric(
                "anyio_threads_total",
                "gauge",
                "anyio default limiter tokens.",
                [("", limiter["total"])],
            )
            metric(
                "anyio_threads_borrowed",
                "gauge",
                "anyio worker threads in use.",
                [("", limiter["borrowed"])],
            )
            metric(
                "anyio_threads_waiting",
                "gauge",
                "Tasks waiting for an anyio thread.",
                [("", limiter["waiting"])],
            )
        return "\n".join(out) + "\n"


def _pool_message(s: PoolStats) -> str:
    return (
        f"asyncify pool {s.name!r} is saturated: {s.running}/{s.size} threads busy, "
        f"{s.waiting} calls waiting (queue wait p99 {s.queue_wait_p99 * 1000:.1f} ms); "
        f"raise its size with asyncify_kit.configure(pools={{{s.name!r}: N}})"
    )


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _site(code: CodeType, lineno: int, module: str) -> CallSite:
    import linecache

    return CallSite(
        filename=code.co_filename,
        lineno=lineno,
        function=code.co_name,
        module=module,
        line=linecache.getline(code.co_filename, lineno).strip(),
    )
