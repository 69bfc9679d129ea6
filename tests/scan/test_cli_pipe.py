"""A stdout pipe closed by its reader (``asyncify-kit scan --list-rules | head -1``) ends the
command quietly, as a Unix tool ended by SIGPIPE does: no traceback, exit status 141 (128 +
SIGPIPE; never 1, scan's "findings", nor 2, its "failure"), for every output of scan and for
the other subcommands (their help and usage texts too).

It printed a ``BrokenPipeError`` traceback and exited 2 when a write met the closed pipe (each
write does with ``PYTHONUNBUFFERED=1``, a large report does anyway), and "Exception ignored
... BrokenPipeError" with exit status 120 when only the flush at exit did.

Each command runs in a subprocess whose stdout is a real pipe, made 4 KiB deep (Linux's
``F_SETPIPE_SZ``) so that the output cannot all be written before the reader closes it: the
reader takes one line, then closes its end, or closes it before anything is written."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(fcntl, "F_SETPIPE_SZ"), reason="sizes the pipe with Linux's F_SETPIPE_SZ"
)

PIPE_SIZE = 4096
EXIT_BROKEN_PIPE = 141
BUFFERING = pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])


def run_into_closed_pipe(
    args: list[str], *, unbuffered: bool, cwd: Path | None = None, read_first_line: bool = True
) -> tuple[str, int, str]:
    """Run ``python *args*`` with stdout to a pipe that is closed after one line is read
    from it (or at once); its first line, its exit status and its stderr."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    line = b""
    if not read_first_line:
        os.close(read_end)
    try:
        proc = subprocess.Popen(
            [sys.executable, *args], stdout=write_end, stderr=subprocess.PIPE, env=env, cwd=cwd
        )
    finally:
        os.close(write_end)
    if read_first_line:
        try:
            while not line.endswith(b"\n"):
                byte = os.read(read_end, 1)  # byte by byte: what is not read stays in the pipe
                if not byte:
                    break
                line += byte
        finally:
            os.close(read_end)
    _, stderr = proc.communicate(timeout=120)
    return line.decode(), proc.returncode, stderr.decode()


def assert_ended_quietly(code: int, stderr: str) -> None:
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr
    assert code == EXIT_BROKEN_PIPE, (code, stderr)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with 200 findings: reports far larger than the pipe."""
    root = tmp_path_factory.mktemp("project")
    body = "import time\n\n" + "".join(
        f"async def handler_{i}():\n    time.sleep(1)\n\n" for i in range(200)
    )
    (root / "app.py").write_text(body, encoding="utf-8")
    return root


@BUFFERING
@pytest.mark.parametrize("entry", ["asyncify_kit.cli scan", "asyncify_kit.scan"])
def test_list_rules_into_head(entry: str, unbuffered: bool) -> None:
    module, *command = entry.split()
    line, code, stderr = run_into_closed_pipe(
        ["-m", module, *command, "--list-rules"], unbuffered=unbuffered
    )
    assert line.startswith("ASY001  syntax-error"), line
    assert_ended_quietly(code, stderr)


@pytest.mark.parametrize("report", ["text", "json", "sarif"])
def test_reports_into_head(report: str, project: Path) -> None:
    """A report is one write; buffered (stdout's default), it is written in turns, and the
    turn after the reader closed the pipe fails. (Unbuffered, it is one system call, whose
    short count when the reader goes away CPython's unbuffered stdout leaves unchecked.)"""
    args = ["-m", "asyncify_kit.cli", "scan", ".", "--no-config", "--format", report]
    line, code, stderr = run_into_closed_pipe(args, unbuffered=False, cwd=project)
    assert line.startswith({"text": "app.py:", "json": "{", "sarif": "{"}[report]), line
    assert_ended_quietly(code, stderr)


def test_summary_line_with_output_into_a_closed_pipe(project: Path, tmp_path: Path) -> None:
    """``-o FILE`` writes the report there and only the summary to stdout: a reader gone
    before it is written still ends the scan quietly, the report written."""
    args = ["-m", "asyncify_kit.cli", "scan", ".", "--no-config", "--format", "json"]
    args += ["-o", str(tmp_path / "report.json")]
    _, code, stderr = run_into_closed_pipe(
        args, unbuffered=False, cwd=project, read_first_line=False
    )
    assert_ended_quietly(code, stderr)
    assert (tmp_path / "report.json").read_text(encoding="utf-8").startswith("{")


@pytest.mark.parametrize("command", [["--help"], ["demo", "--help"], ["scan", "--help"]])
def test_help_into_a_closed_pipe(command: list[str]) -> None:
    """The help texts argparse prints, then raises SystemExit for."""
    _, code, stderr = run_into_closed_pipe(
        ["-m", "asyncify_kit.cli", *command], unbuffered=False, read_first_line=False
    )
    assert_ended_quietly(code, stderr)


def test_demo_json_into_a_closed_pipe() -> None:
    args = ["-m", "asyncify_kit.cli", "demo", "--json", "-n", "2", "-d", "0.01"]
    args += ["--window", "0.05"]
    _, code, stderr = run_into_closed_pipe(args, unbuffered=False, read_first_line=False)
    assert_ended_quietly(code, stderr)
