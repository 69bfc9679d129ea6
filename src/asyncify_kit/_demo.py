"""The event-loop blocking experiment behind ``asyncify-kit demo``.

A FastAPI app runs under uvicorn on 127.0.0.1 (in a thread of this process, on its own event
loop). It has a fast ``GET /`` and four slow endpoints that each wait ``d`` seconds:

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
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from ._offload import asyncify

PROBE_INTERVAL = 0.010
MAX_PROBES_IN_FLIGHT = 256
SERVER_START_TIMEOUT = 10.0


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


def build_app(slow_started: threading.Event | None = None) -> FastAPI:
    """The demo app: a fast ``GET /`` and one slow endpoint per variant.

    Every slow handler sets *slow_started* when it begins, so the prober measures only while
    slow work is really running on the server.
    """
    started = slow_started if slow_started is not None else threading.Event()
    app = FastAPI(title="asyncify-kit demo", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/")
    async def fast() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/slow/blocking")
    async def slow_blocking(d: float) -> dict[str, float]:
        started.set()
        # the bug under study: a sync call inside async def stops the whole event loop
        return {"slept": legacy_report(d)}

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


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run *app* under uvicorn on a free 127.0.0.1 port in a thread; yield its base URL."""
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says TCP; without it every keep-alive response waits ~40 ms for a delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        loop="asyncio",
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=512,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="demo-uvicorn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo server did not start on 127.0.0.1")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


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
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "probes": len(self.probes_ms),
            "slow_requests": self.slow_requests,
            "burst_ms": round(self.burst_ms, 1),
        }


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
        """The blocking variant's p99 divided by the @asyncify variant's."""
        asyncified = self.get("asyncify").p99_ms
        return self.get("blocking").p99_ms / asyncified if asyncified > 0 else math.inf

    def verdict(self) -> str:
        blocking = self.get("blocking")
        return (
            f"blocking call in async def: p99 {blocking.p99_ms:,.0f} ms "
            f"— {self.blocking_ratio():,.0f}x the @asyncify variant "
            f"({self.get('asyncify').p99_ms:,.1f} ms); one sync call in async def stalls "
            f"every other request on the loop."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "duration_s": self.duration,
            "window_s": self.window,
            "elapsed_s": round(self.elapsed, 2),
            "variants": [result.to_dict() for result in self.results],
            "blocking_vs_asyncify_p99": round(self.blocking_ratio(), 1),
            "verdict": self.verdict(),
            "environment": environment(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


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
            responses = await asyncio.gather(
                *(client.get(path, params={"d": duration}) for _ in range(concurrency))
            )
            for response in responses:
                response.raise_for_status()
            sent += len(responses)
            bursts.append((time.perf_counter() - began) * 1000)
    return bursts, sent


def _run_load(
    base_url: str, path: str, concurrency: int, duration: float, window: float
) -> tuple[list[float], int]:
    return asyncio.run(_load(base_url, path, concurrency, duration, window))


async def measure(
    base_url: str,
    variant: Variant,
    concurrency: int,
    duration: float,
    window: float,
    slow_started: threading.Event,
) -> VariantResult:
    """Probe ``GET /`` while the load thread keeps N slow requests of *variant* in flight.

    Probing starts when the server reports that a slow handler has begun and stops when the
    last burst has been answered. Probes are sent on a fixed schedule (one every 10 ms), not
    one after the other: a probe stuck behind a blocked loop does not delay the next one, so
    the stall is sampled as often as a real client would meet it, and each latency is counted
    from the moment the probe was due (no coordinated omission).
    """
    result = VariantResult(variant)
    limits = httpx.Limits(max_connections=MAX_PROBES_IN_FLIGHT, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as probe:
        (await probe.get("/")).raise_for_status()  # connected and warm before the load starts
        slow_started.clear()
        loop = asyncio.get_running_loop()
        load = loop.run_in_executor(
            None, _run_load, base_url, variant.path, concurrency, duration, window
        )
        started = loop.run_in_executor(None, slow_started.wait, SERVER_START_TIMEOUT)
        first: set[asyncio.Future[Any]] = {load, started}
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)

        async def probe_once(due: float) -> None:
            response = await probe.get("/")
            result.probes_ms.append((time.perf_counter() - due) * 1000)
            response.raise_for_status()

        probes: list[asyncio.Task[None]] = []
        due = time.perf_counter()
        while not load.done():
            probes.append(asyncio.ensure_future(probe_once(due)))
            due += PROBE_INTERVAL
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await asyncio.gather(*probes)
        await started
        result.bursts_ms, result.slow_requests = await load
    return result


async def _warm_up(base_url: str) -> None:
    """One request per endpoint so first-call costs (imports, thread start) are not measured."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for variant in VARIANTS:
            (await client.get(variant.path, params={"d": 0})).raise_for_status()
        (await client.get("/")).raise_for_status()


async def _measure_all(
    base_url: str, concurrency: int, duration: float, window: float, slow_started: threading.Event
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
    slow_started = threading.Event()
    with serve(build_app(slow_started)) as base_url:
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
            f"{item.variant.label:<34}{item.p50_ms:>9,.1f}{item.p99_ms:>9,.1f}"
            f"{item.max_ms:>9,.1f}{len(item.probes_ms):>8}{item.burst_ms:>10,.0f}"
        )
    lines += [
        "",
        "burst ms: time for one burst of concurrent slow requests to finish "
        f"(ideal: {result.duration * 1000:,.0f} ms).",
        result.verdict(),
    ]
    return "\n".join(lines)


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
