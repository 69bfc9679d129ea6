"""The storage section on file systems made fresh for each run: what atomic writes cost where.

    .venv/bin/python -m benchmarks.fs_matrix [--fs tmpfs,ext4,...] [--runs 2] [--quick]
        [--size-mib 2048] [--workdir /var/tmp] [--output DIR]

The ``file://`` write figures depend on the file system and on what ran on it in the last
minutes: ext4 without a journal skips every inode freed in the last seconds to minutes on each
file creation, so atomic writes slow down after churn (see the notes of the storage section),
and a run of the benchmark on the root disk measures the churn left by whatever ran before it.
This runs ``python -m benchmarks --section storage`` with ``TMPDIR`` inside a file system made
for that run alone, the kinds taking turns run by run:

- ``tmpfs``: a new directory under ``/dev/shm`` (nothing to mount);
- ``ext4``: a sparse image formatted with ``mkfs.ext4``'s defaults (so with a journal), mounted
  with ``-o loop``;
- ``ext4-nojournal``: the same without a journal (``-O ^has_journal``);
- ``ext4-nojournal-discard``: that, mounted with ``-o loop,discard`` as the root disk of the
  machines this project's CI runs on is (ext4, no journal, ``discard``). Each file freed then
  discards its blocks at once; on a loop device that punches a hole in the image file, which
  costs more than the root disk's discard: this kind exaggerates it, the one before leaves it
  out.

The ext4 kinds need Linux, root (``mount``) and ``mkfs.ext4`` (e2fsprogs); their images live
in a temporary directory under ``--workdir`` and are unmounted and removed afterwards, also on
failure. Each run's full output goes to ``OUTPUT/<run>-<kind>/`` (``results.json``,
``results.md``, ``stdout.txt``; not kept in git); at the end a table gives, per run and
scenario, the ratio to aiofiles of ``file://``, of the best peer and of the no-hop floor,
printed and written to ``OUTPUT/summary.md`` (default OUTPUT: ``benchmarks/results/fs_matrix``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_storage import KIT_FILE, KIT_FILE_NO_HOP


@dataclass(frozen=True)
class Kind:
    """A file system to make for one run."""

    name: str
    mkfs: tuple[str, ...] | None  # mkfs.ext4's extra options; None: a directory on tmpfs
    mount_options: str = "loop"


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("tmpfs", None),
        Kind("ext4", ()),
        Kind("ext4-nojournal", ("-O", "^has_journal")),
        Kind("ext4-nojournal-discard", ("-O", "^has_journal"), "loop,discard"),
    )
}
_REPO = Path(__file__).resolve().parent.parent  # where `python -m benchmarks` runs
RESULTS = _REPO / "benchmarks" / "results" / "fs_matrix"
SCENARIOS = ("read-1", "read-100", "write-1", "write-100")
COLUMNS = ("run", "file system", "scenario", "file://", "best peer", "no-hop floor")


class MatrixError(RuntimeError):
    """This machine cannot make or mount the file systems asked for."""


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise MatrixError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


def check_can_make(kinds: Sequence[Kind]) -> None:
    """Raise `MatrixError` naming what is missing to make *kinds* here (before any run)."""
    if any(kind.mkfs is None for kind in kinds) and not os.path.isdir("/dev/shm"):
        raise MatrixError("tmpfs: no /dev/shm on this machine")
    if any(kind.mkfs is not None for kind in kinds):
        if sys.platform != "linux":
            raise MatrixError("the ext4 kinds need Linux (loop devices)")
        if os.geteuid() != 0:
            raise MatrixError("the ext4 kinds need root to mount their images; use --fs tmpfs")
        for tool in ("mkfs.ext4", "mount", "umount"):
            if shutil.which(tool) is None:
                raise MatrixError(f"the ext4 kinds need {tool} (Debian: e2fsprogs, mount)")


@contextlib.contextmanager
def fresh_file_system(kind: Kind, workdir: Path, size_mib: int) -> Iterator[Path]:
    """A directory on a file system of *kind* made for this run; removed (unmounted) after."""
    if kind.mkfs is None:
        where = Path(tempfile.mkdtemp(prefix="asyncify-fs-matrix-", dir="/dev/shm"))
        try:
            yield where
        finally:
            shutil.rmtree(where, ignore_errors=True)
        return
    image = workdir / f"{kind.name}.img"
    point = workdir / f"{kind.name}.mnt"
    with open(image, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)  # sparse: costs no disk until written
    try:
        _run(["mkfs.ext4", "-q", "-F", *kind.mkfs, str(image)])
        point.mkdir()
        _run(["mount", "-o", kind.mount_options, str(image), str(point)])
        try:
            yield point
        finally:
            _run(["umount", str(point)])
    finally:
        with contextlib.suppress(OSError):  # missing, or still mounted: umount's error shows
            point.rmdir()
        image.unlink()


def run_storage_section(where: Path, output: Path, *, quick: bool) -> Path:
    """Run the storage section with TMPDIR=*where*; its results.json under *output*."""
    output.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "benchmarks", "--section", "storage", "--output", str(output)]
    if quick:
        argv.append("--quick")
    env = {**os.environ, "TMPDIR": str(where)}
    with open(output / "stdout.txt", "w", encoding="utf-8") as out:
        done = subprocess.run(argv, stdout=out, env=env, cwd=_REPO, check=False)
    if done.returncode != 0:
        raise MatrixError(f"the storage section failed ({done.returncode}); see {output}")
    return output / "results.json"


def _ratio(result: dict[str, Any] | None) -> str:
    return "-" if result is None else f"{result['ratio']:.3f}x"


def summarize(run: int, kind: str, results_json: Path) -> list[tuple[str, ...]]:
    """One table row per scenario: the ratios to aiofiles of file://, the best peer, the floor."""
    data = json.loads(results_json.read_text(encoding="utf-8"))
    (section,) = [s for s in data["sections"] if s["name"] == "storage"]
    if section["status"] != "ok":
        raise MatrixError(f"the storage section did not run: {section['reason']}")
    rows: list[tuple[str, ...]] = []
    for scenario in section["scenarios"]:
        if scenario["name"] not in SCENARIOS:
            continue
        by_name = {r["implementation"]: r for r in scenario["results"]}
        peers = [r for r in scenario["results"] if r["peer"] and not r["reference"]]
        best = min(peers, key=lambda r: r["ratio"])
        rows.append(
            (
                str(run),
                kind,
                scenario["name"],
                _ratio(by_name.get(KIT_FILE)),
                f"{_ratio(best)} {best['implementation']}",
                _ratio(by_name.get(KIT_FILE_NO_HOP)),
            )
        )
    return rows


def table(rows: Sequence[tuple[str, ...]]) -> str:
    """A Markdown table of *rows* under `COLUMNS`."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fs_matrix",
        description="The storage section on file systems made fresh for each run.",
    )
    parser.add_argument("--fs", default=",".join(KINDS), help=f"of {', '.join(KINDS)}")
    parser.add_argument("--runs", type=int, default=2, help="runs of each kind, alternated")
    parser.add_argument("--quick", action="store_true", help="the section's smoke run")
    parser.add_argument("--size-mib", type=int, default=2048, help="size of each ext4 image")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"), help="for the images")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.fs.split(",") if name.strip()]
    unknown = [name for name in names if name not in KINDS]
    if unknown or not names or args.runs < 1:
        parser.error(f"--fs takes {', '.join(KINDS)} (got {args.fs!r}); --runs at least 1")
    kinds = [KINDS[name] for name in names]
    try:
        check_can_make(kinds)
    except MatrixError as exc:
        parser.error(str(exc))
    try:
        rows = measure(kinds, args.runs, args.workdir, args.output, args.size_mib, args.quick)
    except MatrixError as exc:
        print(f"fs_matrix: {exc}", file=sys.stderr)
        return 1
    summary = table(rows)
    (args.output / "summary.md").write_text(summary + "\n", encoding="utf-8")
    print(summary)
    return 0


def measure(
    kinds: Sequence[Kind], runs: int, workdir: Path, output: Path, size_mib: int, quick: bool
) -> list[tuple[str, ...]]:
    """Run the section *runs* times on each of *kinds* in turn; the summary's rows."""
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="asyncify-fs-matrix-", dir=workdir) as scratch:
        for run in range(1, runs + 1):
            for kind in kinds:
                print(f"run {run} of {runs}: {kind.name}", file=sys.stderr, flush=True)
                with fresh_file_system(kind, Path(scratch), size_mib) as where:
                    out = output / f"{run}-{kind.name}"
                    results = run_storage_section(where, out, quick=quick)
                rows += summarize(run, kind.name, results)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
