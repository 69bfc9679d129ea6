"""The benchmark harness: sections, interleaved repeats, medians, ratios, table, JSON, chart.

A *section* (one module ``benchmarks/bench_<area>.py`` exposing ``SECTION``) compares several
*implementations* of the same work over a few *scenarios*. Every implementation of a scenario
runs round-robin (one run of each, then the next round, the start rotated every round), so
all of them share the same noise of a busy machine. Per implementation the harness reports the
median time per operation and the median of the per-round ratios to the section's baseline.
Targets are reported as PASS/MISS, never asserted: benchmarks are measurements, not tests.

Example (a complete section module)::

    import time
    from benchmarks._harness import Case, Scenario, Section, Target

    async def _noop(ops: int) -> float:
        start = time.perf_counter()
        for _ in range(ops):
            pass
        return time.perf_counter() - start

    SECTION = Section(
        name="example",
        title="An example",
        baseline="loop",
        scenarios=(Scenario("empty", "empty loop", ops=1000, targets=(Target("loop"),)),),
        cases=lambda: [Case("empty", "loop", run=_noop)],
    )
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import gc
import importlib
import importlib.metadata
import inspect
import json
import math
import os
import pkgutil
import platform
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "RESULTS_DIR",
    "Case",
    "LoopKind",
    "Runner",
    "Scenario",
    "Section",
    "Target",
    "discover",
    "render_markdown",
    "run_benchmarks",
    "timed",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RUN_TIMEOUT = 600.0
"""Seconds one timed run may take before the section is reported as failed (a hang)."""
CLOSE_TIMEOUT = 60.0

Runner = Callable[[int], float | Awaitable[float]]
"""Runs the work ``ops`` times and returns the elapsed seconds (it times itself, so setup
inside the runner stays out of the figure)."""

LoopKind = Literal["asyncio", "uvloop", "trio"]


@dataclass(frozen=True)
class Target:
    """A goal for one implementation in one scenario, reported as PASS or MISS.

    ``max_ratio``: its median ratio to the baseline is at most this value.
    ``faster_than_peers``: its median ratio is below that of every ``peer=True`` case.
    """

    implementation: str
    max_ratio: float | None = None
    faster_than_peers: bool = False


@dataclass(frozen=True)
class Scenario:
    """One workload: ``ops`` operations per timed run (``quick_ops`` under ``--quick``)."""

    name: str
    title: str
    ops: int
    quick_ops: int | None = None
    description: str = ""
    targets: tuple[Target, ...] = ()

    def ops_for(self, quick: bool) -> int:
        if quick:
            return self.quick_ops if self.quick_ops is not None else max(1, self.ops // 10)
        return self.ops


@dataclass(frozen=True)
class Case:
    """One implementation of one scenario.

    Give either ``run`` (a `Runner`, sync or async) or ``setup``: an async context manager
    factory that opens resources (a server, a pool, a connection) and yields the `Runner`;
    it is entered once per scenario on the case's own event loop, before the first run.
    ``loop`` picks the event loop: every asyncio/uvloop case gets a loop of its own, kept for
    the whole scenario; a ``"trio"`` case is run by ``trio.run`` once per timed run (its
    ``setup``, if any, is then entered inside every run, outside the timed part).
    ``peer=False`` marks our own implementations (excluded from "faster than every peer");
    ``reference=True`` marks a reference point that competes with nobody (a no-thread floor,
    a raw driver): never a peer, drawn in light grey.
    """

    scenario: str
    implementation: str
    run: Runner | None = None
    setup: Callable[[], AbstractAsyncContextManager[Runner]] | None = None
    loop: LoopKind = "asyncio"
    peer: bool = True
    reference: bool = False

    def __post_init__(self) -> None:
        if (self.run is None) == (self.setup is None):
            raise ValueError(f"case {self.implementation!r}: give exactly one of run= or setup=")


@dataclass(frozen=True)
class Section:
    """A group of scenarios compared against one baseline implementation.

    ``requires``: environment variables (service URLs) without which the section is skipped
    with a printed reason. ``packages``: distributions whose versions go into the JSON.
    ``cases`` is called only when the section runs (after the ``requires`` check).
    ``repeat_factor``: the section runs ``repeats * repeat_factor`` rounds; give its scenarios
    that many times fewer ``ops`` and the time stays the same, interleaved more finely. For
    scenarios that talk to a server sharing the machine's cores, whose per-round ratios swing
    with the machine's load (here 0.75x-1.36x between rounds of the same two cases).
    """

    name: str
    title: str
    baseline: str
    scenarios: tuple[Scenario, ...]
    cases: Callable[[], Iterable[Case]]
    description: str = ""
    requires: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    repeat_factor: int = 1


def discover() -> list[Section]:
    """Import every ``benchmarks/bench_*.py`` module and return their ``SECTION`` objects."""
    package = Path(__file__).resolve().parent
    sections = []
    for info in sorted(pkgutil.iter_modules([str(package)]), key=lambda m: m.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"benchmarks.{info.name}")
            section = getattr(module, "SECTION", None)
            if not isinstance(section, Section):
                raise TypeError(f"benchmarks/{info.name}.py must define SECTION = Section(...)")
            sections.append(section)
    return sections


# ---------------------------------------------------------------------------------------------
# measuring


async def _call(runner: Runner, ops: int) -> float:
    result = runner(ops)
    if inspect.isawaitable(result):
        return float(await result)
    return float(result)


def _new_loop(kind: LoopKind) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


class _LiveCase:
    """A case ready to run.

    asyncio/uvloop: a thread of its own runs the case's event loop as an application does
    (``loop.run_until_complete(main)``); its one long-lived main task enters the setup, serves
    every timed run the harness sends, then exits the setup, like a server's lifespan. Thread
    runners that tie their workers to the root task (anyio) thus behave as they do in an app.
    Only one case runs at a time; the others wait, idle. trio: ``trio.run`` per timed run.
    """

    def __init__(self, case: Case) -> None:
        self.case = case
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests: asyncio.Queue[tuple[int, concurrent.futures.Future[float]] | None]
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._error: BaseException | None = None

    def open(self) -> None:
        if self.case.loop == "trio":
            return
        self._thread = threading.Thread(
            target=self._serve, name=f"bench-{self.case.implementation}", daemon=True
        )
        self._thread.start()
        self._ready.result()  # raises if the setup failed

    def _serve(self) -> None:
        loop = self._loop = _new_loop(self.case.loop)
        try:
            loop.run_until_complete(self._main())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except BaseException as exc:
            self._error = exc
        finally:
            loop.close()
            if not self._ready.done():
                self._ready.set_exception(self._error or RuntimeError("case loop ended early"))

    async def _main(self) -> None:
        self._requests = asyncio.Queue()
        try:
            async with contextlib.AsyncExitStack() as stack:
                runner = self.case.run
                if self.case.setup is not None:
                    runner = await stack.enter_async_context(self.case.setup())
                if runner is None:
                    raise RuntimeError("case without runner")
                self._ready.set_result(None)
                while (request := await self._requests.get()) is not None:
                    ops, reply = request
                    try:
                        reply.set_result(await _call(runner, ops))
                    except Exception as exc:
                        reply.set_exception(exc)
        except Exception as exc:
            if self._ready.done():
                raise
            self._ready.set_exception(exc)  # setup failed: open() raises it

    def measure(self, ops: int) -> float:
        if self.case.loop == "trio":
            import trio

            return float(trio.run(self._trio_run, ops))
        if self._loop is None:
            raise RuntimeError("case not opened")
        reply: concurrent.futures.Future[float] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._requests.put_nowait, (ops, reply))
        try:
            return reply.result(timeout=RUN_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"{self.case.implementation}: one run took over {RUN_TIMEOUT:g} s (hung?)"
            ) from None

    async def _trio_run(self, ops: int) -> float:
        if self.case.setup is None:
            if self.case.run is None:
                raise RuntimeError("case without runner")
            return await _call(self.case.run, ops)
        async with self.case.setup() as runner:
            return await _call(runner, ops)

    def close(self) -> None:
        if self._thread is None:
            return
        if self._thread.is_alive() and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended (failed setup)
                self._loop.call_soon_threadsafe(self._requests.put_nowait, None)
        self._thread.join(CLOSE_TIMEOUT)
        if self._thread.is_alive():
            raise TimeoutError(
                f"{self.case.implementation}: teardown took over {CLOSE_TIMEOUT:g} s"
            )
        self._thread = None
        if self._error is not None and self._ready.exception() is None:
            raise self._error


def _median_ratios(samples: list[float], baseline: list[float]) -> float:
    return statistics.median(s / b for s, b in zip(samples, baseline, strict=True))


def _evaluate(target: Target, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    mine = results.get(target.implementation)
    if mine is None:
        return [
            {
                "implementation": target.implementation,
                "goal": "measured",
                "measured": "not run",
                "passed": False,
            }
        ]
    if target.max_ratio is not None:
        rows.append(
            {
                "implementation": target.implementation,
                "goal": f"<= {target.max_ratio:g}x baseline",
                "measured": f"{mine['ratio']:.3g}x",
                "passed": mine["ratio"] <= target.max_ratio,
            }
        )
    if target.faster_than_peers:
        peers = [r for name, r in results.items() if r["peer"] and name != target.implementation]
        if peers:
            best = min(peers, key=lambda r: r["ratio"])
            measured = (
                f"{mine['ratio']:.3g}x vs best peer {best['implementation']} {best['ratio']:.3g}x"
            )
            passed = mine["ratio"] < best["ratio"]
        else:
            measured, passed = "no peer measured", False
        rows.append(
            {
                "implementation": target.implementation,
                "goal": "faster than every peer",
                "measured": measured,
                "passed": passed,
            }
        )
    return rows


def _measure_scenario(
    section: Section,
    scenario: Scenario,
    cases: list[Case],
    repeats: int,
    warmup: int,
    quick: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    ops = scenario.ops_for(quick)
    live = [_LiveCase(case) for case in cases]
    samples: dict[str, list[float]] = {case.implementation: [] for case in cases}
    try:
        for item in live:
            item.open()
        for round_no in range(warmup + repeats):
            shift = round_no % len(live)
            for item in live[shift:] + live[:shift]:
                gc.collect()
                elapsed = item.measure(ops)
                if round_no >= warmup:
                    samples[item.case.implementation].append(elapsed / ops)
    finally:
        with contextlib.ExitStack() as closing:  # close every case, even if one close fails
            for item in live:
                closing.callback(item.close)
    baseline = samples.get(section.baseline)
    results: dict[str, dict[str, Any]] = {}
    for case in cases:
        per_op = samples[case.implementation]
        ratio = _median_ratios(per_op, baseline) if baseline else math.nan
        results[case.implementation] = {
            "implementation": case.implementation,
            "peer": case.peer and not case.reference,
            "reference": case.reference,
            "loop": case.loop,
            "median_s": statistics.median(per_op),
            "min_s": min(per_op),
            "max_s": max(per_op),
            "ratio": ratio,
            "samples_s": per_op,
        }
        median = _fmt_time(results[case.implementation]["median_s"])
        log(f"  {scenario.name:<16} {case.implementation:<40} {median:>10}/op {ratio:6.3f}x")
    targets = [row for target in scenario.targets for row in _evaluate(target, results)]
    return {
        "name": scenario.name,
        "title": scenario.title,
        "description": scenario.description,
        "ops": ops,
        "results": list(results.values()),
        "targets": targets,
    }


def _measure_section(
    section: Section, repeats: int, warmup: int, quick: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    repeats *= section.repeat_factor
    record: dict[str, Any] = {
        "name": section.name,
        "title": section.title,
        "description": section.description,
        "baseline": section.baseline,
        "notes": list(section.notes),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "repeats": repeats,
        "quick": quick,
        "packages": _versions(section.packages),
        "status": "ok",
        "reason": "",
        "scenarios": [],
    }
    missing = [name for name in section.requires if not os.environ.get(name)]
    if missing:
        record["status"] = "skipped"
        record["reason"] = f"service not running ({', '.join(missing)} not set)"
        log(f"[{section.name}] skipped: {record['reason']}")
        return record
    try:
        all_cases = list(section.cases())
        log(f"[{section.name}] {section.title}: {len(all_cases)} cases, {repeats} repeats")
        for scenario in section.scenarios:
            cases = [case for case in all_cases if case.scenario == scenario.name]
            if cases:
                record["scenarios"].append(
                    _measure_scenario(section, scenario, cases, repeats, warmup, quick, log)
                )
    except Exception as exc:  # one broken section must not lose the others' figures
        record["status"] = "error"
        record["reason"] = f"{type(exc).__name__}: {exc}"
        record["scenarios"] = []
        log("".join(traceback.format_exception(exc)).rstrip())
        log(f"[{section.name}] failed: {record['reason']}")
    return record


def _versions(packages: Iterable[str]) -> dict[str, str]:
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


# ---------------------------------------------------------------------------------------------
# reporting


def _fmt_time(seconds: float) -> str:
    unit, scale = _axis_unit(seconds)
    return f"{seconds / scale:.3g} {unit}"


def _ops(count: int) -> str:
    return f"{count:,} op" if count == 1 else f"{count:,} ops"


def _axis_unit(seconds: float) -> tuple[str, float]:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return unit, scale
    return "ns", 1e-9


def _render_section(record: dict[str, Any]) -> list[str]:
    lines = [f"## {record['title']} (`{record['name']}`)", ""]
    if record["status"] != "ok":
        outcome = "Skipped" if record["status"] == "skipped" else "Failed"
        return [*lines, f"{outcome}: {record['reason']}.", ""]
    if record["description"]:
        lines += [record["description"], ""]
    scenarios = record["scenarios"]
    header = ["implementation", *(f"{s['title']} ({_ops(s['ops'])})" for s in scenarios)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---" + "|---:" * len(scenarios) + "|")
    names: list[str] = []
    for scenario in scenarios:
        names += [
            r["implementation"] for r in scenario["results"] if r["implementation"] not in names
        ]
    for name in names:
        cells = [f"`{name}`" + (" (baseline)" if name == record["baseline"] else "")]
        for scenario in scenarios:
            found = [r for r in scenario["results"] if r["implementation"] == name]
            cells.append(
                f"{_fmt_time(found[0]['median_s'])} ({found[0]['ratio']:.2f}x)" if found else "-"
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Median time per operation over {record['repeats']} interleaved repeats"
        f"{' (quick run)' if record['quick'] else ''}; in brackets the median of the per-round "
        f"ratios to `{record['baseline']}` (lower is faster).",
        "",
    ]
    targets = [(s["title"], t) for s in scenarios for t in s["targets"]]
    if targets:
        lines += [
            "| scenario | implementation | target | measured | result |",
            "|---|---|---|---|---|",
        ]
        for title, t in targets:
            result = "PASS" if t["passed"] else "MISS"
            lines.append(
                f"| {title} | `{t['implementation']}` | {t['goal']} | {t['measured']} | {result} |"
            )
        lines.append("")
    for note in record["notes"]:
        lines.append(f"- {note}")
    if record["notes"]:
        lines.append("")
    if record["packages"]:
        versions = ", ".join(f"{k} {v}" for k, v in record["packages"].items())
        lines += [f"Versions: {versions}. Measured {record['measured_at']}.", ""]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The Markdown of a whole report (the dict written to ``results.json``)."""
    m = report["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Python {m['python']} ({m['implementation']}) on {m['platform']}, "
        f"{m['cpu_count']} CPUs. Generated by `python -m benchmarks`.",
        "",
    ]
    for record in report["sections"]:
        lines += _render_section(record)
    return "\n".join(lines).rstrip() + "\n"


def _write_chart(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = record["scenarios"]
    fig, axes = plt.subplots(
        len(scenarios), 1, figsize=(9, 0.45 * sum(len(s["results"]) + 2 for s in scenarios) + 1)
    )
    axes_list = list(axes) if len(scenarios) > 1 else [axes]
    for ax, scenario in zip(axes_list, scenarios, strict=True):
        rows = sorted(scenario["results"], key=lambda r: r["median_s"], reverse=True)
        unit, scale = _axis_unit(max(r["median_s"] for r in rows))
        values = [r["median_s"] / scale for r in rows]
        colors = [
            "#888888"
            if r["implementation"] == record["baseline"]
            else "#cccccc"
            if r.get("reference")
            else ("#2a7fff" if not r["peer"] else "#f0a030")
            for r in rows
        ]
        bars = ax.barh([r["implementation"] for r in rows], values, color=colors)
        for bar, r in zip(bars, rows, strict=True):
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {_fmt_time(r['median_s'])} ({r['ratio']:.2f}x)",
                va="center",
                fontsize=8,
            )
        ax.set_title(f"{scenario['title']} ({_ops(scenario['ops'])})", fontsize=10)
        ax.set_xlabel(f"median {unit} per operation (lower is faster)", fontsize=8)
        ax.set_xlim(0, max(values) * 1.35)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"{record['title']} — ratio to {record['baseline']}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_benchmarks(
    sections: Sequence[Section],
    *,
    repeats: int = 7,
    warmup: int = 1,
    quick: bool = False,
    out_dir: Path = RESULTS_DIR,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Measure ``sections``, merge them into ``out_dir/results.json`` and write the Markdown
    and one PNG per measured section. Sections measured earlier and not run now are kept."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [_measure_section(s, repeats, warmup, quick, log) for s in sections]
    json_path = out_dir / "results.json"
    previous: list[dict[str, Any]] = []
    if json_path.exists():
        with contextlib.suppress(ValueError, KeyError):
            previous = json.loads(json_path.read_text())["sections"]
    measured = {r["name"] for r in records}
    merged = [r for r in previous if r["name"] not in measured] + records
    merged.sort(key=lambda r: str(r["name"]))
    report = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "sections": merged,
    }
    json_path.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    (out_dir / "results.md").write_text(render_markdown(report))
    for record in records:
        if record["status"] == "ok" and record["scenarios"]:
            _write_chart(record, out_dir / f"{record['name']}.png")
    return report


async def timed(ops: int, work: Callable[[], Awaitable[object]]) -> float:
    """Await ``work()`` ``ops`` times one after the other; return the elapsed seconds."""
    start = time.perf_counter()
    for _ in range(ops):
        await work()
    return time.perf_counter() - start
