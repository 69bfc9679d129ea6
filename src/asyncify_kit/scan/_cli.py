"""The ``scan`` command line: ``asyncify-kit scan`` and ``python -m asyncify_kit.scan``.

Exit status: 1 when there are findings, 0 when there are none, 2 for a usage error (bad
option, missing path, invalid configuration) or a failure (a report that cannot be written, an
error of the scanner itself): never 1, which CI reads as findings. A stdout closed by its
reader (``| head``) ends the scan quietly, with 141 (128 + SIGPIPE, as shells report a tool
that SIGPIPE ended).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..exceptions import ConfigError
from ._config import find_pyproject, load_config
from ._report import FORMATS, render
from ._rules import RULES
from ._scanner import scan_paths

__all__ = ["add_scan_arguments", "add_scan_subcommand", "main", "run_scan"]

_DESCRIPTION = (
    "Find blocking calls (requests, boto3, open, sync DB drivers, time.sleep, subprocess, "
    "sockets...) reachable from async def functions, through sync helpers across modules."
)
_EPILOG = (
    "Settings are read from [tool.asyncify-kit.scan] in the nearest pyproject.toml. "
    "Exit status: 1 with findings, 0 without, 2 on a usage error or a failure."
)


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the scan options to `parser`."""
    parser.add_argument("paths", nargs="*", default=["."], help="files or directories (default: .)")
    parser.add_argument(
        "--format", choices=sorted(FORMATS), default="text", help="output format (default: text)"
    )
    parser.add_argument("-o", "--output", help="write the report to this file instead of stdout")
    parser.add_argument(
        "--config", help="pyproject.toml to read (default: the nearest one above the first path)"
    )
    parser.add_argument("--no-config", action="store_true", help="do not read any pyproject.toml")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="RULES",
        help="rule ids or names to ignore, comma separated (repeatable)",
    )
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="exclude paths (repeatable)"
    )
    parser.add_argument(
        "--root", help="directory that reported paths are relative to (default: current directory)"
    )
    parser.add_argument("--list-rules", action="store_true", help="list the rules and exit")


def add_scan_subcommand(subparsers: Any) -> None:
    """Register ``scan`` on an argparse subparsers object; its ``handler`` is `run_scan`.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="asyncify-kit")
        >>> add_scan_subcommand(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["scan", "app", "--format", "json"]).format
        'json'
    """
    parser = subparsers.add_parser(
        "scan", help="find blocking calls in async code", description=_DESCRIPTION, epilog=_EPILOG
    )
    add_scan_arguments(parser)
    parser.set_defaults(handler=run_scan)


def run_scan(args: argparse.Namespace) -> int:
    """Run a scan for parsed arguments; print the report; return the exit status.

    A failure is status 2, as a usage error is, never 1 (findings): an unexpected error is
    printed with its traceback. A stdout whose reader went away (``| head``) is no failure of
    the scan: its error goes on to the callers, which end quietly, as a Unix tool ended by
    SIGPIPE does (141: `cli.quiet_when_stdout_closes`).
    """
    try:
        return _run_scan(args)
    except BrokenPipeError:
        raise
    except Exception as exc:
        traceback.print_exc()
        print(f"asyncify-kit scan: error: the scan failed: {exc!r}", file=sys.stderr)
        return 2


def _write(stream: TextIO, text: str) -> None:
    """Write `text`, with a backslash escape for what the stream's encoding cannot hold.

    A file name that is not valid UTF-8 reaches the report as lone surrogates (``caf\\udce9.py``
    for the bytes ``caf\\xe9.py``), which a strict UTF-8 stream refuses: escaped, the report
    stays valid text in its encoding and shows the name as the JSON report does.
    """
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(text.encode(encoding, "backslashreplace").decode(encoding))


def _run_scan(args: argparse.Namespace) -> int:
    if args.list_rules:
        for rule in RULES.values():
            _write(
                sys.stdout, f"{rule.id}  {rule.name:<17} {rule.summary}\n        fix: {rule.fix}\n"
            )
        return 0
    try:
        if args.no_config:
            config = load_config(None)
        elif args.config:
            path = Path(args.config)
            if not path.is_file():
                raise ConfigError(f"no such configuration file: {args.config}")
            config = load_config(path)
        else:
            config = load_config(find_pyproject(Path(args.paths[0] if args.paths else ".")))
        ignored = [key.strip() for value in args.ignore for key in value.split(",") if key.strip()]
        config = config.with_ignored(ignored).with_excluded(args.exclude)
        if args.root is not None and not Path(args.root).is_dir():
            raise ConfigError(f"--root is not a directory: {args.root}")
        result = scan_paths(args.paths or ["."], config, root=args.root)
    except ConfigError as exc:
        print(f"asyncify-kit scan: error: {exc}", file=sys.stderr)
        return 2
    report = render(result, args.format)
    if args.output:
        try:
            Path(args.output).write_text(report, encoding="utf-8", errors="backslashreplace")
        except OSError as exc:
            print(
                f"asyncify-kit scan: error: cannot write {args.output}: {exc.strerror}",
                file=sys.stderr,
            )
            return 2
        if args.format != "text":
            _write(sys.stdout, render(result, "text").splitlines()[-1] + "\n")
    else:
        _write(sys.stdout, report)
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m asyncify_kit.scan PATHS... [--format text|json|sarif]``."""
    parser = argparse.ArgumentParser(
        prog="python -m asyncify_kit.scan", description=_DESCRIPTION, epilog=_EPILOG
    )
    add_scan_arguments(parser)
    from ..cli import quiet_when_stdout_closes  # (that module imports this one)

    return quiet_when_stdout_closes(lambda: run_scan(parser.parse_args(argv)))
