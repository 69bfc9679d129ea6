"""The event-loop blocking experiment behind ``asyncify-kit demo``.

A FastAPI app runs under uvicorn on 127.0.0.1, in a child process of its own. It has a fast
``GET /`` and four slow endpoints that each wait ``d`` seconds:

- ``blocking``: an ``async def`` handler calling ``time.sleep(d)`` — the bug;
- ``asyncify``: the same sync function decorated with ``@asyncify`` and awaited;
- ``threadpool``: a plain ``def`` endpoint, which FastAPI runs in its threadpool;
- ``native``: ``await asyncio.sleep(d)``, a native async call.

For each variant a load generator (httpx.AsyncClient on its own event loop, in its own
thread) fires bursts of N concurrent slow requests, burst after burst, until ``window``
seconds have passed; meanwhile a prober (another event loop, the main one) sends ``GET /``
every 10 ms and records how long each answer took. A blocked server loop answers nothing,
so the blocking variant's probe latency grows to about N x d, while the others stay near
a millisecond.

Example::

    result = run_demo(concurrency=10, duration=0.2)
    print(format_table(result))
    print(result.verdict())
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import signal
import socket
import sys
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from multiprocessing.connection import Connection
from typing import Any, Protocol

import httpx
import uvicorn
from fastapi import FastAPI

from ._offload import asyncify

PROBE_INTERVAL = 0.010
# blocking p99 / @asyncify p99 from which the verdict says the loop stalled (the ratio that
# tests/test_demo.py requires of a real run)
STALL_RATIO = 10.0
SERVER_START_TIMEOUT = 30.0
SERVER_BACKLOG = 1024
# how long the server may take to shut down gracefully at the end of a run (then it is killed)
SERVER_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Variant:
    """One way of calling the slow function from a request handler."""

    key: str
    label: str
    path: str


VARIANTS: tuple[Variant, ...] = (
    Variant("blocking", "blocking call in async def", "/slow/blocking"),
    Variant("asyncify", "same call under @asyncify", "/slow/asyncify"),
    Variant("threadpool", "plain def endpoint (threadpool)", "/slow/threadpool"),
    Variant("native", "native async (asyncio.sleep)", "/slow/native"),
)


def legacy_report(seconds: float) -> float:
    """Stand-in for any blocking library call (``requests.get``, boto3, a sync DB driver)."""
    time.sleep(seconds)
    return seconds


report_offloaded = asyncify(legacy_report)


def build_app(slow_started: Flag | None = None) -> FastAPI:
    """The demo app: a fast ``GET /`` and one slow endpoint per variant.

    Every slow handler sets *slow_started* when it begins, so the prober measures only while
    slow work is really running on the server.
    """
    started: Flag = slow_started if slow_started is not None else threading.Event()
    app = FastAPI(title="asyncify-kit demo", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/")
    async def fast() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/slow/blocking")
    async def slow_blocking(d: float) -> dict[str, float]:
        started.set()
        # the bug under study: a sync call inside async def stops the whole event loop
        return {"slept": legacy_report(d)}  # asyncify: ignore

    @app.get("/slow/asyncify")
    async def slow_asyncify(d: float) -> dict[str, float]:
        started.set()
        return {"slept": await report_offloaded(d)}

    @app.get("/slow/threadpool")
    def slow_threadpool(d: float) -> dict[str, float]:
        started.set()
        return {"slept": legacy_report(d)}

    @app.get("/slow/native")
    async def slow_native(d: float) -> dict[str, float]:
        started.set()
        await asyncio.sleep(d)
        return {"slept": d}

    return app


class Flag(Protocol):
    """What the server and the prober share: ``threading.Event`` or ``multiprocessing.Event``."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


def listening_socket() -> socket.socket:
    """A TCP socket listening on a free 127.0.0.1 port."""
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says TCP; without it every keep-alive response waits ~40 ms for a delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(SERVER_BACKLOG)
    return sock


def _server_process(ports: Connection, slow_started: Flag) -> None:
    """Body of the server process: uvicorn on its own event loop, nothing else running."""
    sock = listening_socket()
    ports.send(sock.getsockname()[1])
    ports.close()
    config = uvicorn.Config(
        build_app(slow_started),
        loop="asyncio",
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=SERVER_BACKLOG,
    )
    uvicorn.Server(config).run(sockets=[sock])  # SIGTERM makes it shut down gracefully


@contextmanager
def serve() -> Iterator[tuple[str, Flag]]:
    """Run the demo app under uvicorn in a child process; yield its base URL and start flag.

    A separate process keeps the measurement honest: the server's event loop does not share
    a GIL with the load generator and the prober. The socket listens before the URL is
    yielded, so early requests wait in the backlog instead of failing.
    """
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    slow_started = context.Event()
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_server_process, args=(send, slow_started), name="asyncify-kit-demo-server"
    )
    with _sigint_ignored():  # inherited: a Ctrl-C reaches uvicorn only, never a traceback
        process.start()
    send.close()
    interrupted = False
    try:
        if not receive.poll(SERVER_START_TIMEOUT):
            raise RuntimeError(
                f"the demo server did not start on 127.0.0.1 within {SERVER_START_TIMEOUT:.0f} s"
            )
        port = receive.recv()
        yield f"http://127.0.0.1:{port}", slow_started
    except BaseException:
        interrupted = True
        raise
    finally:
        receive.close()
        if not interrupted:
            process.terminate()  # a graceful shutdown
            process.join(timeout=SERVER_STOP_TIMEOUT)
        if process.is_alive():  # interrupted (Ctrl-C): no wait for its handlers to end
            process.kill()
            process.join(timeout=5)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a child process starts, so that the child starts with it ignored
    (uvicorn handles it while it runs, then puts back "ignored"). Otherwise a Ctrl-C in the
    terminal, which reaches the whole process group, raised KeyboardInterrupt in the child
    while it imported, or after uvicorn's shutdown, each printing a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can be set in the main thread only
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100) of *values*, linearly interpolated; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class VariantResult:
    """What one variant did to the fast endpoint's latency (all times in milliseconds)."""

    variant: Variant
    probes_ms: list[float] = field(default_factory=list)
    bursts_ms: list[float] = field(default_factory=list)
    slow_requests: int = 0

    @property
    def p50_ms(self) -> float:
        return percentile(self.probes_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.probes_ms, 99)

    @property
    def max_ms(self) -> float:
        return max(self.probes_ms) if self.probes_ms else math.nan

    @property
    def burst_ms(self) -> float:
        """Mean time for one burst of N slow requests to complete."""
        return sum(self.bursts_ms) / len(self.bursts_ms) if self.bursts_ms else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant.key,
            "label": self.variant.label,
            "p50_ms": _measured(self.p50_ms, 3),
            "p99_ms": _measured(self.p99_ms, 3),
            "max_ms": _measured(self.max_ms, 3),
            "probes": len(self.probes_ms),
            "slow_requests": self.slow_requests,
            "burst_ms": _measured(self.burst_ms, 1),
        }


def _measured(value: float, digits: int) -> float | None:
    """*value* rounded for the JSON report; None (null) for nan or inf: nothing measured."""
    return round(value, digits) if math.isfinite(value) else None


@dataclass
class DemoResult:
    """The four variants side by side, with the parameters that produced them."""

    concurrency: int
    duration: float
    window: float
    results: list[VariantResult]
    elapsed: float = 0.0

    def get(self, key: str) -> VariantResult:
        for result in self.results:
            if result.variant.key == key:
                return result
        raise KeyError(key)

    def blocking_ratio(self) -> float:
        """The blocking variant's p99 divided by the @asyncify variant's; nan when either
        variant got no probe answered (inf if only the @asyncify p99 is 0)."""
        blocking = self.get("blocking").p99_ms
        asyncified = self.get("asyncify").p99_ms
        if math.isnan(blocking) or math.isnan(asyncified):
            return math.nan
        if asyncified > 0:
            return blocking / asyncified
        return math.inf if blocking > 0 else math.nan

    def verdict(self) -> str:
        """One line comparing the two p99s, worded from the measured ratio."""
        blocking = self.get("blocking").p99_ms
        offloaded = self.get("asyncify").p99_ms
        ratio = self.blocking_ratio()
        head = "blocking call in async def:"
        if math.isnan(ratio):
            missing = [key for key in ("blocking", "asyncify") if not self.get(key).probes_ms]
            why = f"no probe answered for {' and '.join(missing)}" if missing else "both p99 0 ms"
            return f"{head} no verdict ({why}); measure longer (--window)."
        times = f"{ratio:,.0f}x" if math.isfinite(ratio) else "far above"
        measured = (
            f"{head} p99 {blocking:,.0f} ms — {times} the @asyncify variant ({offloaded:,.1f} ms)"
        )
        if ratio >= STALL_RATIO:
            return f"{measured}; one sync call in async def stalls every other request on the loop."
        return (
            f"{measured}; under {STALL_RATIO:.0f}x, this run shows no clear stall of the loop: "
            "raise the concurrency (-n) or the duration (-d)."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "duration_s": self.duration,
            "window_s": self.window,
            "elapsed_s": round(self.elapsed, 2),
            "variants": [result.to_dict() for result in self.results],
            "blocking_vs_asyncify_p99": _measured(self.blocking_ratio(), 1),
            "verdict": self.verdict(),
            "environment": environment(),
        }

    def to_json(self) -> str:
        """Strict JSON: what was not measured is null (never NaN or Infinity)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)


def environment() -> dict[str, str]:
    """Versions that matter for reading the numbers."""
    found = {"python": sys.version.split()[0]}
    for package in ("asyncify-kit", "fastapi", "uvicorn", "httpx"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


async def _load(
    base_url: str, path: str, concurrency: int, duration: float, window: float
) -> tuple[list[float], int]:
    """Fire bursts of *concurrency* slow requests until *window* has passed; burst times."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(concurrency * duration * 4 + 30)
    bursts: list[float] = []
    sent = 0
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        while not bursts or time.perf_counter() - start < window:
            began = time.perf_counter()
            # every request's error retrieved: when the server goes away, all of them fail,
            # and those gather() does not raise were each logged with a traceback
            answers = await asyncio.gather(
                *(client.get(path, params={"d": duration}) for _ in range(concurrency)),
                return_exceptions=True,
            )
            responses: list[httpx.Response] = []
            for answer in answers:
                if isinstance(answer, BaseException):
                    raise answer
                responses.append(answer)
            for response in responses:
                response.raise_for_status()
            sent += len(responses)
            bursts.append((time.perf_counter() - began) * 1000)
    return bursts, sent


class LoadStopped(Exception):
    """The load generator was stopped (`LoadThread.stop`) before its window ended."""


class LoadThread:
    """The load generator's event loop, run in a worker thread by `run`, which another thread
    can stop at once (`stop`): a Ctrl-C then ends the run without waiting for the bursts of
    the window, and the process's exit for the thread."""

    def __init__(self, load: Coroutine[Any, Any, tuple[list[float], int]]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._stopped = False
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None

    def run(self) -> tuple[list[float], int]:
        """Run the load to its end (in the calling thread); `LoadStopped` if stopped."""
        try:
            return asyncio.run(self._main())
        except asyncio.CancelledError:
            raise LoadStopped from None

    async def _main(self) -> tuple[list[float], int]:
        task = asyncio.current_task()  # (always one, inside asyncio.run)
        # (a few assignments under the lock, which `stop` holds as briefly)
        with self._lock:  # asyncify: ignore[sync-wait]
            if self._stopped:
                self._load.close()
                raise asyncio.CancelledError
            if task is not None:
                self._running = (asyncio.get_running_loop(), task)
        try:
            return await self._load
        finally:
            with self._lock:  # asyncify: ignore[sync-wait]
                self._running = None  # the loop may close now: `stop` no longer calls it

    def stop(self) -> None:
        """Cancel the load, from any thread; it ends at its next await."""
        with self._lock:
            self._stopped = True
            if self._running is not None:
                loop, task = self._running
                loop.call_soon_threadsafe(task.cancel)


class Prober:
    """A minimal keep-alive HTTP/1.1 client for ``GET /``, on raw asyncio streams.

    The prober must be cheap: on a busy machine every millisecond of client CPU shows up as
    probe latency, and httpx spends about ten times more per request than this. Idle
    connections are reused; a probe that finds none opens a new one, so probes never queue
    behind each other on the client side.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    async def get(self) -> None:
        """Send ``GET /`` and read the whole response; RuntimeError unless it is a 200."""
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self._host, self._port)
        writer.write(self._request)
        head = await reader.readuntil(b"\r\n\r\n")
        status, _, rest = head.partition(b"\r\n")
        if not status.startswith(b"HTTP/1.1 200"):
            writer.close()
            raise RuntimeError(f"GET / answered {status.decode(errors='replace')!r}")
        length = 0
        for line in rest.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        self._idle.append((reader, writer))

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def measure(
    base_url: str,
    variant: Variant,
    concurrency: int,
    duration: float,
    window: float,
    slow_started: Flag,
) -> VariantResult:
    """Probe ``GET /`` while the load thread keeps N slow requests of *variant* in flight.

    Probing starts when the server reports that a slow handler has begun and stops when the
    last burst has been answered. Probes are sent on a fixed schedule (one every 10 ms), not
    one after the other: a probe stuck behind a blocked loop does not delay the next one, so
    the stall is sampled as often as a real client would meet it, and each latency is counted
    from the moment the probe was due (no coordinated omission).
    """
    result = VariantResult(variant)
    url = httpx.URL(base_url)
    probe = Prober(url.host, url.port or 80)
    loop = asyncio.get_running_loop()
    started: asyncio.Future[bool] | None = None
    load_thread: LoadThread | None = None
    load: asyncio.Future[tuple[list[float], int]] | None = None
    probes: list[asyncio.Task[None]] = []
    try:
        await probe.get()  # connected and warm before the load starts
        slow_started.clear()
        load_thread = LoadThread(_load(base_url, variant.path, concurrency, duration, window))
        load = loop.run_in_executor(None, load_thread.run)
        started = loop.run_in_executor(None, slow_started.wait, SERVER_START_TIMEOUT)
        first: set[asyncio.Future[Any]] = {load, started}
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)

        async def probe_once(due: float) -> None:
            await probe.get()
            result.probes_ms.append((time.perf_counter() - due) * 1000)

        due = time.perf_counter()
        while not load.done():
            probes.append(asyncio.ensure_future(probe_once(due)))
            due += PROBE_INTERVAL
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await asyncio.gather(*probes)
        result.bursts_ms, result.slow_requests = await load
    finally:
        # Cancelled (Ctrl-C) or failed: stop the load thread at once and end every probe,
        # their errors retrieved (not each logged with a traceback as the loop closes).
        if load_thread is not None:
            load_thread.stop()
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        if load is not None:
            await asyncio.wait({load})
            if not load.cancelled():
                load.exception()
        if started is not None:
            slow_started.set()  # frees the waiting thread if the load failed before any handler ran
            await started
        await probe.aclose()
    return result


async def _warm_up(base_url: str) -> None:
    """One request per endpoint so first-call costs (imports, thread start) are not measured."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for variant in VARIANTS:
            (await client.get(variant.path, params={"d": 0})).raise_for_status()
        (await client.get("/")).raise_for_status()


async def _measure_all(
    base_url: str, concurrency: int, duration: float, window: float, slow_started: Flag
) -> list[VariantResult]:
    await _warm_up(base_url)
    return [
        await measure(base_url, variant, concurrency, duration, window, slow_started)
        for variant in VARIANTS
    ]


def run_demo(concurrency: int = 10, duration: float = 0.2, window: float = 1.0) -> DemoResult:
    """Run the experiment end to end: server up, four variants measured, server down.

    Example::

        result = run_demo(concurrency=5, duration=0.1, window=0.5)
        assert result.blocking_ratio() > 10
    """
    began = time.perf_counter()
    with serve() as (base_url, slow_started):
        results = asyncio.run(_measure_all(base_url, concurrency, duration, window, slow_started))
    return DemoResult(concurrency, duration, window, results, time.perf_counter() - began)


def format_table(result: DemoResult) -> str:
    """The human-readable table: probe latency of ``GET /`` per variant."""
    header = (
        f"GET / latency while {result.concurrency} concurrent handlers each wait "
        f"{result.duration * 1000:,.0f} ms (probe every {PROBE_INTERVAL * 1000:.0f} ms)"
    )
    columns = f"{'variant':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'probes':>8}{'burst ms':>10}"
    lines = [header, "", columns, "-" * len(columns)]
    for item in result.results:
        lines.append(
            f"{item.variant.label:<34}{_cell(item.p50_ms, 9, 1)}{_cell(item.p99_ms, 9, 1)}"
            f"{_cell(item.max_ms, 9, 1)}{len(item.probes_ms):>8}{_cell(item.burst_ms, 10, 0)}"
        )
    lines += [
        "",
        "burst ms: time for one burst of concurrent slow requests to finish "
        f"(ideal: {result.duration * 1000:,.0f} ms).",
        result.verdict(),
    ]
    return "\n".join(lines)


def _cell(value: float, width: int, digits: int) -> str:
    """A table cell: *value* with thousands separators, or "-" when nothing was measured."""
    return f"{value:>{width},.{digits}f}" if math.isfinite(value) else f"{'-':>{width}}"


def save_plot(result: DemoResult, path: str) -> None:
    """A PNG bar chart of p50/p99 per variant (log scale), for the docs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [item.variant.label for item in result.results]
    p50 = [item.p50_ms for item in result.results]
    p99 = [item.p99_ms for item in result.results]
    positions = range(len(labels))
    width = 0.38
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    bars50 = ax.bar([p - width / 2 for p in positions], p50, width, label="p50")
    bars99 = ax.bar([p + width / 2 for p in positions], p99, width, label="p99")
    ax.bar_label(bars50, fmt="%.1f", fontsize=8)
    ax.bar_label(bars99, fmt="%.1f", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("GET / latency, ms (log scale)")
    ax.set_xticks(list(positions), labels, rotation=12, ha="right", fontsize=9)
    ax.set_title(
        f"Fast endpoint latency while {result.concurrency} handlers each wait "
        f"{result.duration * 1000:.0f} ms"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
