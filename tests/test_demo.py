"""``asyncify-kit demo``: the experiment runs end to end and shows what blocking does.

The demo runs in a subprocess, exactly as ``make demo`` runs it (its server deliberately
blocks its own event loop, which must not disturb this test process). The asserted ratio is
a semantic property, not a micro-benchmark: while N handlers each block the loop for d
seconds, a probe waits for up to N x d; offloaded, it waits for about a millisecond.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest

from asyncify_kit import cli
from asyncify_kit._demo import (
    VARIANTS,
    DemoResult,
    Variant,
    VariantResult,
    format_table,
    percentile,
)

# N x d = 3 s of serialized blocking: the @asyncify p99 must stay under 300 ms, a margin that
# holds on a 2-core machine loaded with other work (its p99 is ~5-70 ms there)
CONCURRENCY = 10
DURATION = 0.3


def run_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncify_kit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_json() -> dict[str, Any]:
    done = run_cli(
        "demo", "-n", str(CONCURRENCY), "--duration", str(DURATION), "--window", "1.0", "--json"
    )
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def by_variant(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["variant"]: item for item in report["variants"]}


def test_blocking_p99_is_at_least_ten_times_the_asyncify_p99(demo_json: dict[str, Any]) -> None:
    variants = by_variant(demo_json)
    blocking, offloaded = variants["blocking"], variants["asyncify"]
    assert blocking["p99_ms"] >= 10 * offloaded["p99_ms"], demo_json
    assert demo_json["blocking_vs_asyncify_p99"] >= 10


def test_blocking_stalls_the_loop_for_about_n_times_d(demo_json: dict[str, Any]) -> None:
    blocking = by_variant(demo_json)["blocking"]
    # the handlers run one after the other: a probe waits for most of the queue
    assert blocking["max_ms"] >= 0.5 * CONCURRENCY * DURATION * 1000
    assert blocking["burst_ms"] >= 0.9 * CONCURRENCY * DURATION * 1000


def test_every_non_blocking_variant_runs_the_slow_calls_concurrently(
    demo_json: dict[str, Any],
) -> None:
    serial_ms = CONCURRENCY * DURATION * 1000
    for key in ("asyncify", "threadpool", "native"):
        item = by_variant(demo_json)[key]
        assert item["burst_ms"] < 0.7 * serial_ms, item
        assert item["slow_requests"] >= CONCURRENCY
        assert item["probes"] > 0


def test_json_report_is_complete(demo_json: dict[str, Any]) -> None:
    assert demo_json["concurrency"] == CONCURRENCY
    assert demo_json["duration_s"] == DURATION
    assert [item["variant"] for item in demo_json["variants"]] == [
        "blocking",
        "asyncify",
        "threadpool",
        "native",
    ]
    for item in demo_json["variants"]:
        assert item["p50_ms"] <= item["p99_ms"] <= item["max_ms"]
    assert demo_json["verdict"].startswith("blocking call in async def: p99 ")
    assert "fastapi" in demo_json["environment"]


def test_table_output_and_plot(tmp_path: Path) -> None:
    chart = tmp_path / "demo.png"
    done = run_cli("demo", "-n", "3", "--duration", "0.05", "--window", "0.2", "--plot", str(chart))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for label in (
        "blocking call in async def",
        "same call under @asyncify",
        "plain def endpoint (threadpool)",
        "native async (asyncio.sleep)",
    ):
        assert any(line.startswith(label) for line in lines), done.stdout
    assert any(line.startswith("blocking call in async def: p99") for line in lines)
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "-n", "0"],
        ["demo", "--concurrency", "many"],
        ["demo", "--duration", "-1"],
        ["demo", "--window", "0"],
        [],
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    assert "usage: asyncify-kit" in capsys.readouterr().err


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0], 100) == 2.0
    assert math.isnan(percentile([], 50))


def test_verdict_names_the_ratio() -> None:
    def result(key: str, probes: list[float]) -> VariantResult:
        return VariantResult(Variant(key, key, f"/slow/{key}"), probes_ms=probes)

    demo = DemoResult(
        concurrency=10,
        duration=0.2,
        window=1.0,
        results=[result("blocking", [1000.0, 2000.0]), result("asyncify", [10.0, 20.0])],
    )
    assert demo.blocking_ratio() == pytest.approx(percentile([1000.0, 2000.0], 99) / 19.9)
    assert "100x the @asyncify variant" in demo.verdict()


def _demo_result(blocking: list[float], offloaded: list[float]) -> DemoResult:
    results = [
        VariantResult(variant, probes_ms=probes, bursts_ms=[1.0] if probes else [])
        for variant, probes in zip(VARIANTS, [blocking, offloaded, [1.0], [1.0]], strict=True)
    ]
    return DemoResult(concurrency=1, duration=0.001, window=0.05, results=results)


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("blocking", "offloaded"), [([1.0, 2.0], []), ([], [1.0]), ([], []), ([0.0], [0.0])]
)
def test_json_report_stays_strict_json_when_a_variant_was_not_measured(
    blocking: list[float], offloaded: list[float]
) -> None:
    demo = _demo_result(blocking, offloaded)
    report = _strict_json(demo.to_json())
    assert report["blocking_vs_asyncify_p99"] is None
    for item in report["variants"]:
        if not item["probes"]:
            assert (item["p50_ms"], item["p99_ms"], item["max_ms"], item["burst_ms"]) == (None,) * 4
    verdict = demo.verdict()
    assert verdict == report["verdict"]
    assert verdict.startswith("blocking call in async def: no verdict (")
    assert "nan" not in verdict and "inf" not in verdict and "stalls" not in verdict
    table = format_table(demo)
    assert "nan" not in table


def test_verdict_claims_a_stall_only_from_the_ratio_the_tests_require() -> None:
    slight = _demo_result([1.0, 1.2], [1.0, 1.1])
    assert slight.blocking_ratio() < 10
    assert "stalls" not in slight.verdict()
    assert "under 10x" in slight.verdict()
    clear = _demo_result([1000.0, 2000.0], [10.0, 20.0])
    assert clear.blocking_ratio() >= 10
    assert clear.verdict().endswith("stalls every other request on the loop.")


@pytest.mark.parametrize("where", ["missing-dir", "directory"])
def test_unwritable_plot_path_is_a_one_line_error_before_the_run(
    tmp_path: Path, where: str
) -> None:
    target = tmp_path / "no-such-dir" / "demo.png" if where == "missing-dir" else tmp_path
    done = run_cli("demo", "-n", "1", "-d", "0.001", "--window", "0.05", "--plot", str(target))
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"asyncify-kit demo: error: cannot write {target}: "
        + ("No such file or directory" if where == "missing-dir" else "Is a directory")
    ]
    assert done.stdout == ""  # refused before the experiment ran


def test_writable_plot_path_check_leaves_no_file_behind(tmp_path: Path) -> None:
    fresh = tmp_path / "chart.png"
    assert cli._unwritable(str(fresh)) is None
    assert not fresh.exists()
    kept = tmp_path / "old.png"
    kept.write_bytes(b"old chart")
    assert cli._unwritable(str(kept)) is None
    assert kept.read_bytes() == b"old chart"


def test_missing_demo_extra_names_the_pip_line() -> None:
    # sys.modules[name] = None makes `import name` fail as if the package were not installed
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from asyncify_kit.cli import main\n"
        "sys.exit(main(['demo']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "'uvicorn'" in done.stderr
    assert "pip install 'asyncify-kit[demo]'" in done.stderr


# the demo's command line, with Python's own SIGINT handler whatever this process ignores
_DEMO_WITH_CTRL_C = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from asyncify_kit.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _established(process: Any) -> list[Any]:
    connections = getattr(process, "net_connections", None) or process.connections
    return [c for c in connections(kind="tcp") if c.status == psutil.CONN_ESTABLISHED]


def _gone(process: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_stops_the_demo_at_once_with_one_line() -> None:
    """A Ctrl-C while the demo measured took 2.5-6 s to end it, with ~40 lines of tracebacks
    ("Future exception was never retrieved", httpx.ReadError) and the exit status of a
    process killed by SIGINT. Now: one line, exit code 130, the server process gone."""
    args = ["demo", "-n", "5", "--duration", "0.2", "--window", "10", "--json"]
    demo = subprocess.Popen(
        [sys.executable, "-c", _DEMO_WITH_CTRL_C, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's foreground job
    )
    try:
        parent = psutil.Process(demo.pid)
        deadline = time.monotonic() + 60
        while len(_established(parent)) < 3:  # the load's connections and the prober's
            assert demo.poll() is None, demo.communicate()
            assert time.monotonic() < deadline, "the demo never started measuring"
            time.sleep(0.05)
        children = parent.children(recursive=True)
        time.sleep(0.3)
        os.killpg(demo.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        began = time.monotonic()
        out, err = demo.communicate(timeout=30)
        elapsed = time.monotonic() - began
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert (demo.returncode, err.splitlines(), out) == (
        130,
        ["asyncify-kit demo: interrupted"],
        "",
    ), err
    assert elapsed < 5.0
    assert children  # the server (and multiprocessing's resource tracker)
    assert all(_gone(child) for child in children)
