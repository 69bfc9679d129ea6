"""``python -m benchmarks [--section NAME ...] [--repeats N] [--quick] [--list]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._harness import RESULTS_DIR, discover, render_markdown, run_benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure asyncify-kit against its peers; print a Markdown table and write "
        "results.json, results.md and one PNG chart per section.",
    )
    parser.add_argument(
        "--section", action="append", default=[], metavar="NAME", help="run only this section"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed rounds per scenario (default 7; quick 3)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--quick", action="store_true", help="fewer operations: a smoke run")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR,
        help=f"results directory (default {RESULTS_DIR})",
    )
    args = parser.parse_args(argv)

    sections = discover()
    if args.list:
        for section in sections:
            print(f"{section.name:<12} {section.title}")
        return 0
    known = {s.name for s in sections}
    unknown = [name for name in args.section if name not in known]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if args.section:
        sections = [s for s in sections if s.name in args.section]
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    report = run_benchmarks(
        sections, repeats=repeats, warmup=args.warmup, quick=args.quick, out_dir=args.output
    )
    measured = {s.name for s in sections}
    print(
        render_markdown(
            {**report, "sections": [r for r in report["sections"] if r["name"] in measured]}
        )
    )
    print(f"wrote {args.output / 'results.json'}, results.md and charts", file=sys.stderr)
    failed = [
        r["name"] for r in report["sections"] if r["name"] in measured and r["status"] == "error"
    ]
    if failed:
        print(f"failed sections: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from asyncify_kit.cli import quiet_when_stdout_closes

    # (`asyncify-kit bench --list | head -1`: no traceback when the reader leaves)
    sys.exit(quiet_when_stdout_closes(main))
