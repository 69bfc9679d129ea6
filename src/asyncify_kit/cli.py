"""The ``asyncify-kit`` command line.

Each subcommand is one ``add_<name>(subparsers)`` function listed in ``COMMANDS``: it adds its
parser and sets ``handler`` (a function from the parsed arguments to an exit code). Heavy
imports happen inside the handler, so ``asyncify-kit --help`` stays fast and a missing extra
only affects its own subcommand.

Example::

    $ asyncify-kit demo --concurrency 10 --duration 0.2
    $ asyncify-kit demo --json > demo.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .scan import add_scan_subcommand

#: the exit code of a command stopped by Ctrl-C, as shells report it (128 + SIGINT)
EXIT_INTERRUPTED = 130
#: the exit code of a command whose reader closed its output (``| head``), as shells report
#: a tool that SIGPIPE ended (128 + SIGPIPE): Python's advice uses 1, which scan keeps for
#: "findings"
EXIT_BROKEN_PIPE = 141

SubParsers = Any  # argparse's _SubParsersAction is private; its type is not public API
Handler = Callable[[argparse.Namespace], int]


def _bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    """An argparse ``type`` that parses with *kind* and rejects values outside [low, high]."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside the range {low:g} to {high:g}")
        return value

    return parse


def stdout_closed() -> int:
    """End a command whose stdout pipe its reader closed (``asyncify-kit scan | head -1``)
    quietly, as well-behaved Unix tools end, the way Python's documentation advises (the
    ``signal`` module's "Note on SIGPIPE"): no traceback, and the rest of the output goes to
    /dev/null, so that the flush at exit does not fail once more ("Exception ignored ...
    BrokenPipeError", exit status 120). Returns `EXIT_BROKEN_PIPE`."""
    # (a stdout without a descriptor, as tests install, has nothing to redirect)
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    return EXIT_BROKEN_PIPE


def quiet_when_stdout_closes(command: Callable[[], int]) -> int:
    """*command*'s exit code, its output flushed before it counts as done (a closed pipe then
    shows here, not at exit); `stdout_closed()`'s if the reader of stdout went away. Covers
    the help and usage texts too (argparse prints them, then raises `SystemExit`)."""
    try:
        try:
            code = command()
        except SystemExit:
            sys.stdout.flush()
            raise
        sys.stdout.flush()
    except BrokenPipeError:
        return stdout_closed()
    return code


def _unwritable(path: str) -> str | None:
    """Why *path* cannot be written (the OS's message), or None; creates no file that stays."""
    existed = os.path.lexists(path)
    try:
        with open(path, "ab"):  # appending: an existing file keeps its bytes
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    if not existed:
        with contextlib.suppress(OSError):
            os.remove(path)
    return None


def _plot_problem(path: str) -> str | None:
    """Why ``--plot PATH`` would fail after the experiment, found before it runs."""
    if importlib.util.find_spec("matplotlib") is None:
        return "--plot needs matplotlib, which is not installed: pip install matplotlib"
    problem = _unwritable(path)
    return None if problem is None else f"asyncify-kit demo: error: cannot write {path}: {problem}"


def _run_demo(args: argparse.Namespace) -> int:
    """``asyncify-kit demo``; a Ctrl-C ends it with one line and the shell's code for SIGINT
    (the load thread and the server process are stopped by then), not with tracebacks."""
    try:
        return _demo_command(args)
    except KeyboardInterrupt:
        print("asyncify-kit demo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _demo_command(args: argparse.Namespace) -> int:
    try:
        import httpx

        from . import _demo
    except ImportError as exc:
        package = exc.name or "fastapi"
        print(
            f"asyncify-kit demo needs the {package!r} package, which is not installed; "
            "install it with: pip install 'asyncify-kit[demo]'",
            file=sys.stderr,
        )
        return 2
    if args.plot:
        problem = _plot_problem(args.plot)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2
    if not args.json:
        print(
            f"asyncify-kit demo: {args.concurrency} concurrent slow requests of "
            f"{args.duration * 1000:.0f} ms per variant, on a FastAPI app under uvicorn "
            "at 127.0.0.1 ...",
            file=sys.stderr,
            flush=True,
        )
    try:
        result = _demo.run_demo(args.concurrency, args.duration, args.window)
    except (OSError, RuntimeError, httpx.HTTPError) as exc:
        print(f"asyncify-kit demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(result.to_json())
    else:
        print(_demo.format_table(result))
        print(f"(finished in {result.elapsed:.1f} s)")
    if args.plot:
        try:
            _demo.save_plot(result, args.plot)
        except ImportError:
            print(
                "--plot needs matplotlib, which is not installed: pip install matplotlib",
                file=sys.stderr,
            )
            return 2
        except OSError as exc:  # the path changed during the run
            print(
                f"asyncify-kit demo: error: cannot write {args.plot}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 2
        print(f"chart written to {args.plot}", file=sys.stderr)
    return 0


def add_demo(subparsers: SubParsers) -> None:
    """``asyncify-kit demo``: the event-loop blocking experiment (see ``docs/demo.md``)."""
    parser = subparsers.add_parser(
        "demo",
        help="measure what a blocking call in async def does to a FastAPI app",
        description=(
            "Start a FastAPI app under uvicorn on 127.0.0.1 and measure the latency of a fast "
            "GET / while N concurrent slow handlers run, for four variants: a blocking call in "
            "async def, the same call under @asyncify, a plain def endpoint, and a native async "
            "call."
        ),
    )
    parser.add_argument(
        "-n",
        "--concurrency",
        type=_bounded(int, 1, 200),
        default=10,
        help="concurrent slow requests per burst (default: 10)",
    )
    parser.add_argument(
        "-d",
        "--duration",
        type=_bounded(float, 0.001, 5.0),
        default=0.2,
        help="seconds each slow call takes (default: 0.2)",
    )
    parser.add_argument(
        "--window",
        type=_bounded(float, 0.05, 30.0),
        default=1.0,
        help="minimum seconds each variant is measured; bursts repeat until it passes "
        "(default: 1.0)",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--plot", metavar="PATH", help="also write a PNG bar chart to PATH")
    parser.set_defaults(handler=_run_demo)


def _run_bench(args: argparse.Namespace) -> int:
    import os
    import subprocess

    if not os.path.isfile(os.path.join("benchmarks", "__main__.py")):
        print(
            "asyncify-kit bench runs the ratio benchmarks of a source checkout: run it from the "
            "repository root (where benchmarks/ is), or use `make bench` there",
            file=sys.stderr,
        )
        return 2
    command = [sys.executable, "-m", "benchmarks", *args.bench_args]
    return subprocess.call(command, env=dict(os.environ))


def add_bench(subparsers: SubParsers) -> None:
    """``asyncify-kit bench``: the ratio benchmarks against the peers (a source checkout's).

    Every argument after ``bench`` is the benchmarks', ``-h``/``--help`` too: they list the
    benchmark options (a help of bench's own would list none, having no option to list)."""
    parser = subparsers.add_parser(
        "bench",
        help="run the ratio benchmarks against the peers (from a source checkout)",
        description=(
            "Run `python -m benchmarks` of the source checkout in the current directory; "
            "arguments after `bench` are passed on (for example --section offload --quick). "
            "`make bench` also starts the services the SQL, storage and HTTP sections need."
        ),
        add_help=False,
    )
    parser.set_defaults(handler=_run_bench, bench_args=[], passes_unknown_args=True)


COMMANDS: list[Callable[[SubParsers], None]] = [add_demo, add_scan_subcommand, add_bench]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand of ``COMMANDS`` registered."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="asyncify-kit",
        description="Stop blocking the event loop: offload, async facades, detection.",
    )
    parser.add_argument("--version", action="version", version=f"asyncify-kit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asyncify-kit`` console script; returns the exit code (a closed
    stdout ends every subcommand quietly: `quiet_when_stdout_closes`)."""
    return quiet_when_stdout_closes(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if not getattr(args, "passes_unknown_args", False):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.bench_args = unknown
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
