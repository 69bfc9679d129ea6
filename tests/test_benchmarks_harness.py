"""The benchmark harness on a tiny fake section: interleaving, ratio math, targets, outputs."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from benchmarks.__main__ import main
from benchmarks._harness import (
    Case,
    Runner,
    Scenario,
    Section,
    Target,
    discover,
    render_markdown,
    run_benchmarks,
)

from tests.conftest import require_file_system, service_url

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class FakeClock:
    """Runners that report fixed per-op costs, varying by round, and record the call order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.opened: list[str] = []
        self.closed: list[str] = []

    def fixed(self, name: str, per_op: list[float]) -> Callable[[int], float]:
        rounds = iter(per_op)

        def run(ops: int) -> float:
            self.calls.append(name)
            return next(rounds) * ops

        return run

    def async_fixed(self, name: str, per_op: list[float]) -> Runner:
        sync = self.fixed(name, per_op)

        async def run(ops: int) -> float:
            await anyio.sleep(0)
            return sync(ops)

        return run

    def with_setup(self, name: str, per_op: list[float]) -> Case:
        @asynccontextmanager
        async def setup() -> AsyncIterator[Runner]:
            self.opened.append(name)
            try:
                yield self.async_fixed(name, per_op)
            finally:
                self.closed.append(name)

        return Case("work", name, setup=setup, peer=False)


def _section(clock: FakeClock, requires: tuple[str, ...] = ()) -> Section:
    # rounds: warmup first (value ignored), then 3 timed rounds
    return Section(
        name="fake",
        title="Fake work",
        baseline="base",
        scenarios=(
            Scenario(
                "work",
                "the work",
                ops=10,
                targets=(
                    Target("ours", max_ratio=0.6, faster_than_peers=True),
                    Target("ours-setup", max_ratio=0.1),
                ),
            ),
        ),
        cases=lambda: [
            Case("work", "base", run=clock.fixed("base", [9.0, 2.0, 4.0, 1.0])),
            Case("work", "peer", run=clock.fixed("peer", [9.0, 1.0, 6.0, 1.5])),
            Case("work", "ours", run=clock.async_fixed("ours", [9.0, 1.0, 1.0, 0.5]), peer=False),
            clock.with_setup("ours-setup", [9.0, 0.5, 2.0, 0.5]),
            Case("work", "floor", run=clock.fixed("floor", [9.0, 0.1, 0.1, 0.1]), reference=True),
        ],
        requires=requires,
        packages=("anyio", "surely-not-installed-dist"),
        notes=("a note",),
    )


def test_ratios_targets_and_outputs(tmp_path: Path) -> None:
    clock = FakeClock()
    report = run_benchmarks([_section(clock)], repeats=3, warmup=1, out_dir=tmp_path, log=print)

    # interleaved: 4 rounds of 5 cases, the start rotated by one each round
    assert clock.calls[:5] == ["base", "peer", "ours", "ours-setup", "floor"]
    assert clock.calls[5:10] == ["peer", "ours", "ours-setup", "floor", "base"]
    assert len(clock.calls) == 20
    assert clock.opened == clock.closed == ["ours-setup"]

    (record,) = report["sections"]
    (scenario,) = record["scenarios"]
    results = {r["implementation"]: r for r in scenario["results"]}
    assert results["base"]["samples_s"] == [2.0, 4.0, 1.0]
    assert results["base"]["median_s"] == 2.0
    assert results["base"]["ratio"] == 1.0
    # per-round ratios 0.5, 1.5, 1.5 -> median 1.5 (not median/median = 1.5/2 = 0.75)
    assert results["peer"]["ratio"] == pytest.approx(1.5)
    assert results["peer"]["median_s"] == pytest.approx(1.5)
    # per-round ratios 0.5, 0.25, 0.5 -> 0.5
    assert results["ours"]["ratio"] == pytest.approx(0.5)
    # per-round ratios 0.25, 0.5, 0.5 -> 0.5
    assert results["ours-setup"]["ratio"] == pytest.approx(0.5)

    verdicts = {(t["implementation"], t["goal"]): t["passed"] for t in scenario["targets"]}
    assert verdicts == {
        ("ours", "<= 0.6x baseline"): True,
        # 0.5 vs base 1.0 and peer 1.5; the reference "floor" (0.05) is nobody's peer
        ("ours", "faster than every peer"): True,
        ("ours-setup", "<= 0.1x baseline"): False,
    }
    assert record["packages"] == {
        "anyio": importlib.metadata.version("anyio"),
        "surely-not-installed-dist": "not installed",
    }

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["machine"]["cpu_count"] >= 1
    assert saved["sections"][0]["scenarios"][0]["results"][1]["ratio"] == pytest.approx(1.5)
    markdown = (tmp_path / "results.md").read_text()
    assert markdown == render_markdown(saved)
    assert "| `base` (baseline) | 2 s (1.00x) |" in markdown
    assert "| `peer` | 1.5 s (1.50x) |" in markdown
    assert "| the work | `ours-setup` | <= 0.1x baseline | 0.5x | MISS |" in markdown
    assert "- a note" in markdown
    assert (tmp_path / "fake.png").read_bytes().startswith(PNG_MAGIC)


def test_repeat_factor_multiplies_the_rounds(tmp_path: Path) -> None:
    clock = FakeClock()
    rounds = [9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # a warm-up, then 2 x 3 timed rounds
    section = Section(
        name="finer",
        title="Finer rounds",
        baseline="base",
        scenarios=(Scenario("work", "the work", ops=10),),
        cases=lambda: [Case("work", "base", run=clock.fixed("base", rounds))],
        repeat_factor=3,
    )
    report = run_benchmarks([section], repeats=2, warmup=1, out_dir=tmp_path, log=print)
    [record] = report["sections"]
    assert record["repeats"] == 6
    [result] = record["scenarios"][0]["results"]
    assert result["samples_s"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert clock.calls == ["base"] * 7
    assert "over 6 interleaved repeats" in render_markdown(report)


def test_missing_service_skips_section_and_keeps_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_benchmarks([_section(FakeClock())], repeats=1, out_dir=tmp_path, log=print)
    monkeypatch.delenv("FAKE_BENCH_SERVICE_URL", raising=False)

    skipped = Section(
        name="needs-service",
        title="Needs a service",
        baseline="x",
        scenarios=(),
        cases=lambda: pytest.fail("cases() must not be called for a skipped section"),
        requires=("FAKE_BENCH_SERVICE_URL",),
    )
    report = run_benchmarks([skipped], repeats=1, out_dir=tmp_path, log=print)

    names = {r["name"]: r for r in report["sections"]}
    assert set(names) == {"fake", "needs-service"}  # the earlier section is kept
    assert names["needs-service"]["status"] == "skipped"
    assert "FAKE_BENCH_SERVICE_URL" in names["needs-service"]["reason"]
    markdown = (tmp_path / "results.md").read_text()
    assert "Skipped: service not running (FAKE_BENCH_SERVICE_URL not set)." in markdown
    assert not (tmp_path / "needs-service.png").exists()


def test_case_needs_exactly_one_of_run_and_setup() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Case("s", "impl")


def test_cli_lists_and_rejects_unknown_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert "offload" in {section.name for section in discover()}
    assert main(["--list"]) == 0
    assert "offload" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--section", "no-such-section"])
    assert "unknown section" in capsys.readouterr().err


def test_failing_section_is_reported_and_its_resources_closed(tmp_path: Path) -> None:
    closed: list[str] = []

    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        def run(ops: int) -> float:
            raise RuntimeError("driver exploded")

        try:
            yield run
        finally:
            closed.append("setup")

    broken = Section(
        name="broken",
        title="Broken",
        baseline="b",
        scenarios=(Scenario("s", "s", ops=1),),
        cases=lambda: [Case("s", "b", setup=setup)],
    )
    report = run_benchmarks([broken], repeats=1, out_dir=tmp_path, log=print)

    (record,) = report["sections"]
    assert record["status"] == "error"
    assert record["reason"] == "RuntimeError: driver exploded"
    assert closed == ["setup"]
    assert "Failed: RuntimeError: driver exploded." in (tmp_path / "results.md").read_text()


def test_setup_and_runs_share_one_long_lived_task(tmp_path: Path) -> None:
    """Like a server's lifespan: anyio keeps its worker threads for its root task's life."""
    tasks: list[object] = []

    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        tasks.append(asyncio.current_task())

        async def run(ops: int) -> float:
            tasks.append(asyncio.current_task())
            return 1.0

        yield run
        tasks.append(asyncio.current_task())

    section = Section(
        name="lifespan",
        title="Lifespan",
        baseline="b",
        scenarios=(Scenario("s", "s", ops=1),),
        cases=lambda: [Case("s", "b", setup=setup)],
    )
    run_benchmarks([section], repeats=3, warmup=1, out_dir=tmp_path, log=print)
    assert len(tasks) == 6
    assert len({id(task) for task in tasks}) == 1


class RefusedConnection:
    """A setup whose resource cannot be opened."""

    async def __aenter__(self) -> Runner:
        raise ConnectionRefusedError("no server on 127.0.0.1:1")

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def test_failing_setup_is_reported(tmp_path: Path) -> None:
    section = Section(
        name="no-server",
        title="No server",
        baseline="b",
        scenarios=(Scenario("s", "s", ops=1),),
        cases=lambda: [Case("s", "b", setup=RefusedConnection)],
    )
    (record,) = run_benchmarks([section], repeats=1, out_dir=tmp_path, log=print)["sections"]
    assert record["status"] == "error"
    assert record["reason"] == "ConnectionRefusedError: no server on 127.0.0.1:1"


@pytest.mark.skipif(not Path("/proc/self/mountinfo").exists(), reason="Linux /proc only")
def test_the_storage_benchmark_names_the_file_system_of_a_path() -> None:
    from benchmarks.bench_storage import describe_file_system

    assert describe_file_system("/proc/self") == "proc on proc"  # the longest mount point wins
    root = describe_file_system("/")
    assert " on " in root
    assert describe_file_system("/no/such/dir/below/root") == root


@pytest.mark.parametrize(
    ("file_system", "explains_churn"),
    [
        ("ext4 (no journal) on /dev/vda", True),
        ("ext4 (journal) on /dev/loop0", False),
        ("tmpfs on tmpfs", False),
    ],
)
def test_the_storage_note_explains_only_the_file_system_in_use(
    monkeypatch: pytest.MonkeyPatch, file_system: str, explains_churn: bool
) -> None:
    from benchmarks import bench_storage

    monkeypatch.setattr(bench_storage, "describe_file_system", lambda path: file_system)
    note = bench_storage.file_system_note("/some/dir")
    assert note.startswith(f"Files in /some/dir (set TMPDIR to measure elsewhere): {file_system}.")
    assert ("recently_deleted" in note) is explains_churn
    assert note.endswith("docs/storage.md has figures on a journaled ext4 and on tmpfs.")


def test_the_atomic_write_churn_script_measures_each_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import atomic_write_churn

    table = atomic_write_churn.run(str(tmp_path), files=20, rounds=2)
    assert [sorted(row) for row in table] == [sorted(atomic_write_churn.WAYS)] * 2
    assert all(value > 0 for row in table for value in row.values())
    out = capsys.readouterr().out
    assert "20 files of 4096 bytes" in out
    assert list(tmp_path.iterdir()) == []  # its directory is removed


def test_the_loop_cost_script_measures_each_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import loop_cost

    from asyncify_kit import _executor

    hold = _executor._HOLD_MAX
    table = loop_cost.run(str(tmp_path), ops=40, in_flight=10, rounds=1)
    assert [row["way"] for row in table] == list(loop_cost.WAYS)
    for row in table:
        assert row["µs/op"] > 0 and row["loop CPU µs/op"] > 0
        assert row["loop waits/op"] > 0  # the selector's waits are counted
    assert hold == _executor._HOLD_MAX  # "one by one" puts the batching back
    out = capsys.readouterr().out
    assert "40 operations on 4096-byte files, 10 in flight" in out
    assert list(tmp_path.iterdir()) == []  # its directories are removed


@pytest.mark.allow_blocking  # the floors write in the loop's thread on purpose
@pytest.mark.parametrize(
    "kind", ["file:// atomic write, no hop (floor)", "open/write/close, no hop (floor)"]
)
def test_the_storage_floor_rows_write_in_the_loops_own_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    import tempfile

    from benchmarks import bench_storage

    from asyncify_kit import stats

    assert kind in (bench_storage.KIT_FILE_NO_HOP, bench_storage.REWRITE_NO_HOP)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where _directory makes its files
    completed = stats().completed

    async def main() -> None:
        async with bench_storage._file_setup(kind, True, 1)() as run:
            (root,) = tmp_path.iterdir()
            written = [root / name for name in bench_storage.NAMES[:30]]
            before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in written]
            assert await run(30) > 0
            after = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in written]
            assert all(b != a for b, a in zip(before, after, strict=True))  # each written again
            assert all(p.read_bytes() == bench_storage.PAYLOAD for p in written)
            assert sorted(p.name for p in root.iterdir()) == bench_storage.NAMES  # no temp file
            # no hop: neither asyncio's executor (its cleanup uses one) nor our pool ran anything
            assert asyncio.get_running_loop()._default_executor is None  # type: ignore[attr-defined]

    asyncio.run(main())
    assert stats().completed == completed
    assert list(tmp_path.iterdir()) == []  # its directory is removed


def test_the_hop_cost_script_measures_each_way_and_length(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import hop_cost

    assert hop_cost.buffer_for(0) == b""
    assert len(hop_cost.buffer_for(50)) > len(hop_cost.buffer_for(5)) > 0
    table = hop_cost.run([0, 20], calls=5, rounds=1)
    assert [(row["way"], row["length"]) for row in table] == [
        (way, length) for way in hop_cost.WAYS for length in (0, 20)
    ]
    for row in table:
        assert 0 < row["call µs"] < row["µs/call"]
        assert row["hop µs"] == pytest.approx(row["µs/call"] - row["call µs"])
    assert "5 calls one at a time" in capsys.readouterr().out


def test_the_sqlite_turns_script_measures_each_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import sqlite_turns

    from asyncify_kit.sql._backends._sqlite import _SqliteSession

    own = _SqliteSession._in_turn
    table = sqlite_turns.run(str(tmp_path), transactions=20, writers=5, pool=2, rounds=1)
    assert [row["way"] for row in table] == list(sqlite_turns.WAYS)
    for row in table:
        assert all(row[column] > 0 for column in sqlite_turns.COLUMNS)
    assert _SqliteSession._in_turn is own  # the backend's line is back on
    assert list(tmp_path.iterdir()) == []  # its databases are removed
    assert "20 one-row transactions" in capsys.readouterr().out


def test_the_connect_hold_script_measures_each_driver_and_ssl_mode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import connect_hold

    url = service_url("postgres")
    assert connect_hold._driver_url("postgresql+psycopg2://u@h/d", "asyncpg") == (
        "postgresql+asyncpg://u@h/d"
    )
    table = connect_hold.run(url, connections=2, rounds=1)
    assert [(row["driver"], row["ssl"]) for row in table] == [
        (driver, ssl) for driver in connect_hold.DRIVERS for ssl in connect_hold.SSL_MODES
    ]
    for row in table:
        assert 0 < row["longest hold ms"] < row["connect ms"]
    out = capsys.readouterr().out
    assert "2 connections one at a time" in out
    assert f"{connect_hold.REFERENCE}: " in out
    assert url.split("@")[0].split(":")[-1] not in out  # the password is not printed


@pytest.mark.parametrize("threadsafe", [True, False])
def test_the_offload_reference_row_wakes_its_loop_with_call_soon_threadsafe(
    threadsafe: bool,
) -> None:
    from benchmarks import bench_offload

    make = (
        bench_offload._asyncify_kit_threadsafe_wake if threadsafe else bench_offload._asyncify_kit
    )
    wakes: list[object] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counted(callback: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
            wakes.append(callback)
            return original(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
        async with bench_offload._setup(make, "one_at_a_time")() as run:
            assert await cast(Awaitable[float], run(20)) > 0

    asyncio.run(main())
    drains = [w for w in wakes if getattr(w, "__name__", "") == "drain"]
    if threadsafe:
        assert len(drains) >= 20  # a wake per call, one at a time
    else:
        assert drains == []  # the default: the loop watches the waker's descriptor


def _storage_results(path: Path, status: str = "ok") -> Path:
    """A results.json with one storage scenario, as the harness writes it."""

    def result(name: str, ratio: float, *, peer: bool = True, reference: bool = False) -> Any:
        return {"implementation": name, "peer": peer, "reference": reference, "ratio": ratio}

    from benchmarks.bench_storage import KIT_FILE, KIT_FILE_NO_HOP

    scenario = {
        "name": "write-1",
        "results": [
            result("aiofiles", 1.0),
            result("anyio.Path", 0.45),
            result("asyncio.to_thread(open)", 0.41),
            result(KIT_FILE, 0.39, peer=False),
            result(KIT_FILE_NO_HOP, 0.2, peer=False, reference=True),
            result("a reference peer", 0.01, reference=True),
        ],
    }
    other = {"name": "not-a-matrix-scenario", "results": [result("aiofiles", 1.0)]}
    section: dict[str, Any] = {"name": "storage", "status": status, "reason": "it broke"}
    section["scenarios"] = [scenario, other]
    path.write_text(json.dumps({"sections": [{"name": "offload"}, section]}), encoding="utf-8")
    return path


def test_the_fs_matrix_summary_names_the_best_peer_and_the_floor(tmp_path: Path) -> None:
    from benchmarks import fs_matrix

    rows = fs_matrix.summarize(2, "ext4", _storage_results(tmp_path / "results.json"))
    assert rows == [("2", "ext4", "write-1", "0.390x", "0.410x asyncio.to_thread(open)", "0.200x")]
    lines = fs_matrix.table(rows).splitlines()
    assert lines[0] == "| " + " | ".join(fs_matrix.COLUMNS) + " |"
    assert lines[2] == "| 2 | ext4 | write-1 | 0.390x | 0.410x asyncio.to_thread(open) | 0.200x |"
    broken = _storage_results(tmp_path / "broken.json", status="error")
    with pytest.raises(fs_matrix.MatrixError, match="did not run: it broke"):
        fs_matrix.summarize(1, "ext4", broken)


def test_the_fs_matrix_refuses_unknown_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import fs_matrix

    with pytest.raises(SystemExit) as exited:
        fs_matrix.main(["--fs", "tmpfs,xfs"])
    assert exited.value.code == 2
    assert (
        "--fs takes tmpfs, ext4, ext4-nojournal, ext4-nojournal-discard (got 'tmpfs,xfs')"
        in capsys.readouterr().err
    )


def _mounted_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line for line in f if str(path) in line]


@pytest.mark.parametrize(
    ("kind", "file_system", "discard"),
    [
        ("tmpfs", "tmpfs on tmpfs", False),
        ("ext4", "ext4 (journal) on /dev/loop", False),
        ("ext4-nojournal", "ext4 (no journal) on /dev/loop", False),
        ("ext4-nojournal-discard", "ext4 (no journal) on /dev/loop", True),
    ],
)
def test_the_fs_matrix_makes_each_kind_fresh_and_removes_it(
    tmp_path: Path, kind: str, file_system: str, discard: bool
) -> None:
    from benchmarks import fs_matrix
    from benchmarks.bench_storage import describe_file_system

    require_file_system(kind)
    with fs_matrix.fresh_file_system(fs_matrix.KINDS[kind], tmp_path, 64) as where:
        assert describe_file_system(str(where)).startswith(file_system)
        assert list(where.iterdir()) in ([], [where / "lost+found"])  # a new file system
        if kind != "tmpfs":
            (mount,) = _mounted_under(where)
            super_options = mount.split()[-1].split(",")  # after "- ext4 /dev/loopN"
            assert ("discard" in super_options) is discard
    assert list(tmp_path.iterdir()) == []  # image and mount point removed
    assert _mounted_under(tmp_path) == []
    assert not where.exists()
    with (
        pytest.raises(RuntimeError, match="the run failed"),
        fs_matrix.fresh_file_system(fs_matrix.KINDS[kind], tmp_path, 64) as where,
    ):
        (where / "half-written").write_bytes(b"x")
        raise RuntimeError("the run failed")
    assert list(tmp_path.iterdir()) == []  # removed on failure too
    assert _mounted_under(tmp_path) == []
    assert not where.exists()


@pytest.mark.parametrize("kind", ["tmpfs", "ext4-nojournal-discard"])
def test_the_fs_matrix_runs_the_storage_section_on_a_fresh_file_system(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    from benchmarks import fs_matrix

    require_file_system(kind)
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    argv = ["--fs", kind, "--runs", "1", "--quick", "--size-mib", "256"]
    assert fs_matrix.main([*argv, "--output", str(out), "--workdir", str(work)]) == 0
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert capsys.readouterr().out == summary
    rows = summary.splitlines()[2:]
    assert [row.split(" | ")[2] for row in rows] == list(fs_matrix.SCENARIOS)
    assert all(row.startswith(f"| 1 | {kind} | ") for row in rows)
    results = json.loads((out / f"1-{kind}" / "results.json").read_text(encoding="utf-8"))
    (section,) = results["sections"]
    where = "tmpfs on tmpfs" if kind == "tmpfs" else "ext4 (no journal) on /dev/loop"
    assert any(f": {where}" in note for note in section["notes"])  # TMPDIR was inside it
    assert list(work.iterdir()) == []  # the image and its mount point removed
    assert _mounted_under(work) == []


# the baselines connect as the raw drivers do, resolving names on the loop (outside the timing)
@pytest.mark.allow_blocking
def test_every_sql_benchmark_case_opens_and_runs_against_the_servers(
    postgres_url: str, mysql_url: str
) -> None:
    """Each case of `make bench`'s sql section sets up (pools, encode/databases with the URL
    it renders, threads) and runs a few operations: a broken setup fails here, not only in
    a 9-minute benchmark run."""
    from benchmarks import bench_sql

    async def run_once(case: Case) -> float:
        assert case.setup is not None
        async with case.setup() as runner:
            elapsed = runner(bench_sql.CONCURRENCY)
            return await elapsed if not isinstance(elapsed, float) else elapsed

    cases = list(bench_sql.SECTION.cases())
    assert {case.implementation for case in cases} >= {bench_sql.KIT, bench_sql.ENCODE}
    for case in cases:
        assert asyncio.run(run_once(case)) > 0, case
