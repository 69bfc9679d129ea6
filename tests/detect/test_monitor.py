"""LoopMonitor on asyncio and trio: lag, stalls with the sampled line, pool saturation.

These tests stall their own loop on purpose (``time.sleep`` and busy loops on the loop thread),
so they carry ``allow_blocking`` for the project's ``--detect-blocking`` runs.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time

import anyio
import anyio.to_thread
import pytest
from fastapi import FastAPI

from asyncify_kit import ConfigError, asyncify, configure
from asyncify_kit.detect import LoopMonitor, StallReport
from asyncify_kit.fastapi import install_detection

pytestmark = [pytest.mark.anyio, pytest.mark.allow_blocking]

PROMETHEUS_LINE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"\})? -?[0-9.e+-]+$')


def _spin(seconds: float) -> int:
    """CPU-bound work: no blocking call to patch, only the stack sampler can see it."""
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        count += 1
    return count


async def test_stall_is_reported_with_the_line_that_stalled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncify_kit.detect")
    stalls: list[StallReport] = []
    monitor = LoopMonitor(
        interval=0.01, stall_threshold=0.08, report_interval=0, on_stall=stalls.append
    )
    async with monitor:
        await anyio.sleep(0.05)
        time.sleep(0.4)  # the stall
        await anyio.sleep(0.05)
        _spin(0.4)
        await anyio.sleep(0.1)
    # a loaded machine may add a stall of its own (the loop thread not scheduled): look for ours
    shown = [s.format() for s in stalls]
    sleep_stalls = [s for s in stalls if s.frame and s.frame.line == "time.sleep(0.4)  # the stall"]
    spin_stalls = [s for s in stalls if s.frame and s.frame.function == "_spin"]
    assert len(sleep_stalls) == 1, shown
    assert len(spin_stalls) == 1, shown
    (sleep_stall,) = sleep_stalls
    assert sleep_stall.frame is not None
    assert sleep_stall.frame.filename == __file__
    assert 0.25 < sleep_stall.duration < 2
    assert sleep_stall.samples >= 2
    metrics = monitor.metrics()
    assert metrics["stalls"] == len(stalls) >= 2
    assert metrics["lag_seconds"]["max"] >= 0.25
    logged = [r.getMessage() for r in caplog.records if "stalled for" in r.getMessage()]
    assert len(logged) == len(stalls)
    assert any("time.sleep(0.4)  # the stall" in message for message in logged)


async def test_stall_reports_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="asyncify_kit.detect")
    async with LoopMonitor(interval=0.01, stall_threshold=0.05, report_interval=60) as monitor:
        for _ in range(3):
            await anyio.sleep(0.05)
            time.sleep(0.15)
        await anyio.sleep(0.05)
    assert monitor.metrics()["stalls"] >= 3  # a loaded machine may add one
    assert len([r for r in caplog.records if "stalled for" in r.getMessage()]) == 1


async def test_lag_metrics_as_dict_and_prometheus_text() -> None:
    async with LoopMonitor(interval=0.01) as monitor:
        await anyio.sleep(0.3)
    metrics = monitor.metrics()
    assert metrics["probes"] >= 5
    lag = metrics["lag_seconds"]
    assert 0 <= lag["p50"] <= lag["p90"] <= lag["p99"] <= lag["max"]
    assert lag["p50"] < 0.02
    assert metrics["anyio_limiter"]["total"] >= 1
    text = monitor.prometheus()
    assert "# TYPE asyncify_loop_lag_seconds summary" in text
    assert 'asyncify_loop_lag_seconds{quantile="0.99"}' in text
    for line in text.splitlines():
        assert line.startswith("# ") or PROMETHEUS_LINE.match(line), line


async def test_pool_saturation_fires_while_loop_lag_stays_low(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncify_kit.detect")
    configure(pools={"detect-tiny": 2})
    slow = asyncify(pool="detect-tiny")(time.sleep)
    async with LoopMonitor(interval=0.01, stall_threshold=0.2) as monitor:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(slow, 0.1)
        await anyio.sleep(0.05)
    metrics = monitor.metrics()
    pool = metrics["pools"]["detect-tiny"]
    assert pool["saturation_events"] >= 1
    assert pool["size"] == 2
    # the calls queued for whole 0.1 s sleeps while the loop itself kept answering at once
    # (p50: a GC pause of a loaded machine may still show up in the tail)
    assert pool["queue_wait_p99"] >= 0.09
    assert metrics["lag_seconds"]["p50"] < 0.02
    assert any("'detect-tiny' is saturated" in r.getMessage() for r in caplog.records)
    assert 'asyncify_pool_saturation_events_total{pool="detect-tiny"}' in monitor.prometheus()


async def test_anyio_default_limiter_saturation() -> None:
    limiter = anyio.to_thread.current_default_thread_limiter()
    before = limiter.total_tokens
    limiter.total_tokens = 2
    try:
        async with LoopMonitor(interval=0.01, stall_threshold=0.2) as monitor:
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(anyio.to_thread.run_sync, time.sleep, 0.1)
            await anyio.sleep(0.05)
    finally:
        limiter.total_tokens = before
    gauge = monitor.metrics()["anyio_limiter"]
    assert gauge["saturation_events"] >= 1
    assert monitor.metrics()["lag_seconds"]["p50"] < 0.02


def test_start_needs_a_running_loop_and_valid_settings() -> None:
    with pytest.raises(RuntimeError, match="must be called from code running in an event loop"):
        LoopMonitor().start()
    with pytest.raises(ConfigError, match="stall_threshold"):
        LoopMonitor(stall_threshold=0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("interval", math.nan),  # the watchdog spun at 100% CPU and never probed
        ("interval", math.inf),  # the watchdog thread died of OverflowError
        ("interval", True),
        pytest.param("interval", 10**400, id="interval-10**400"),
        ("interval", -1),
        ("stall_threshold", math.nan),  # never a stall: a monitor that reports nothing
        ("stall_threshold", math.inf),
        ("sample_interval", 0),  # sampled in a busy loop during a stall
        ("sample_interval", -1),
        ("sample_interval", math.nan),
        ("ongoing_after", math.nan),
        ("report_interval", math.nan),
        ("report_interval", -1),
        ("window", 0),
        ("window", True),
    ],
)
def test_bad_settings_are_config_errors(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"invalid {name} .* for LoopMonitor; accepted: "):
        LoopMonitor(**{name: value})  # type: ignore[arg-type]


def test_bad_stall_threshold_is_refused_by_install_detection() -> None:
    app = FastAPI()
    with pytest.raises(ConfigError, match="invalid stall_threshold nan"):
        install_detection(app, stall_threshold=math.nan)
    assert app.user_middleware == []


def test_report_interval_takes_zero_and_inf() -> None:
    assert LoopMonitor(report_interval=0).report_interval == 0
    assert LoopMonitor(report_interval=math.inf).report_interval == math.inf
    assert LoopMonitor(interval=1, sample_interval=0.5).sample_interval == 0.5


def _watchdogs() -> int:
    return sum(t.name == "asyncify-loop-monitor" for t in threading.enumerate())


async def test_restart_runs_one_watchdog() -> None:
    before = _watchdogs()
    monitor = LoopMonitor(interval=0.01)
    for _ in range(3):
        monitor.start()
        await anyio.sleep(0.02)
        monitor.stop()
    monitor.start()
    await anyio.sleep(0.1)
    assert _watchdogs() <= before + 1  # the stopped ones have exited
    monitor.stop()
    await anyio.sleep(0.05)
    assert _watchdogs() <= before


def test_a_probe_lost_with_its_loop_does_not_blind_the_next_start() -> None:
    """Started again on a new loop after the loop it watched ended with a probe posted and
    never run, the monitor watches the new loop. The new watchdog shared the old one's probe
    state: it waited for the lost probe for good, posted nothing to the new loop and counted
    none of its stalls (a fresh-clone run of the middleware's test met this)."""
    import asyncio

    monitor = LoopMonitor(stall_threshold=0.05)
    posted = threading.Event()

    def lost(callback: object, *args: object) -> None:
        posted.set()  # and never run: the loop ends first

    async def leave_with_a_probe_posted() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon_threadsafe = lost  # type: ignore[method-assign,assignment]
        try:
            monitor.start()
            deadline = time.perf_counter() + 10
            while not posted.is_set() and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
        finally:
            del loop.call_soon_threadsafe  # (asyncio.run's shutdown needs it)
        assert posted.is_set()

    async def stall_on_a_new_loop() -> None:
        monitor.stop()
        monitor.start()
        await asyncio.sleep(0.1)
        _spin(0.2)
        deadline = time.perf_counter() + 10
        while not monitor.metrics()["stalls"] and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)

    try:
        asyncio.run(leave_with_a_probe_posted())
        asyncio.run(stall_on_a_new_loop())
    finally:
        monitor.stop()
    assert monitor.metrics()["stalls"] == 1
