"""Every ```python block in docs/ and README.md runs, as a standalone script, and succeeds.

A block that needs a service starts with ``# requires: postgres`` (or ``mariadb``, ``s3``);
it then runs only where that service is up (and fails under CI=true when it is not). Blocks
in other languages (``text``, ``console``, ``toml``...) are not executed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SERVICE_VARS, service_url

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.S | re.M
)
REQUIRES = re.compile(r"^#\s*requires:\s*(?P<names>[\w ,-]+)$", re.M)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    files = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
    found: list[Block] = []
    for path in files:
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group("lang") not in ("python", "py"):
                continue
            indent = match.group("indent")
            body = "\n".join(
                line[len(indent) :] if line.startswith(indent) else line
                for line in match.group("body").splitlines()
            )
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(path, line, body))
    return found


BLOCKS = _blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_docs_example_runs(block: Block, tmp_path: Path) -> None:
    required = REQUIRES.search(block.code)
    if required:
        for name in re.split(r"[ ,]+", required.group("names").strip()):
            if name not in SERVICE_VARS:
                pytest.fail(f"{block.id}: unknown service {name!r} in '# requires:'")
            service_url(name)
    env = dict(os.environ)
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env["PYTHONWARNINGS"] = "error"
    env["TMPDIR"] = str(tmp_path)  # the examples' mkdtemp() directories go with tmp_path
    proc = subprocess.run(
        [sys.executable, "-c", block.code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{block.id} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )


def test_docs_have_examples() -> None:
    assert len(BLOCKS) >= 1


def test_configuration_reference_lists_every_backend() -> None:
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        from configuration_reference import render_backends_table
    finally:
        sys.path.pop(0)
    from asyncify_kit._registry import backends

    table = render_backends_table()
    for spec in backends():
        assert f"`{spec.scheme}`" in table
        for option in spec.options:
            assert f"`{option.name}`" in table


# An example followed by a paragraph "prints" and a ```text block shows its output there.
PRINTS = re.compile(
    r"^```python\n(?P<code>.*?)^```\n\nprints\n\n```text\n(?P<output>.*?)^```", re.S | re.M
)
# run-to-run noise: measured durations, and where the docs put the script (/app/main.py)
NOISE = (re.compile(r"\d+(?:\.\d+)? ms\b"), re.compile(r"(?<![\w/])/app/"))


def _normalized(text: str) -> str:
    text = NOISE[0].sub("<N> ms", text)
    return NOISE[1].sub("", text).strip()


PRINTED = [
    pytest.param(match["code"], match["output"], id=f"{path.relative_to(ROOT)}:{line}")
    for path in sorted((ROOT / "docs").rglob("*.md"))
    for match in PRINTS.finditer(path.read_text(encoding="utf-8"))
    for line in [path.read_text(encoding="utf-8").count("\n", 0, match.start()) + 1]
]


@pytest.mark.parametrize(("code", "output"), PRINTED)
def test_docs_printed_output_matches(code: str, output: str, tmp_path: Path) -> None:
    # run as main.py (not -c) so that reports quote the source line, as the docs show
    (tmp_path / "main.py").write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "main.py"],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert _normalized(proc.stdout) == _normalized(output)


def test_docs_printed_outputs_are_checked() -> None:
    assert PRINTED
