"""Scan: how fast ``asyncify-kit scan`` reads a 100,000-line project.

The project is generated (`generate_project`): a package of modules that import each other
(absolute, relative and aliased imports), each with a repository class holding a sqlite
connection in ``self``, a module-level ``requests.Session``, sync helpers that call helpers of
the previous module, ``functools.partial`` objects, ``@asyncify`` functions, and ``async def``
handlers, some of which reach a blocking call through two or three sync hops while others
offload it with ``run_sync``. One operation is one full scan (parse, call graph, reachability,
findings). The floor is ``ast.parse`` of the same files and nothing else.

Target: under 10 s per scan of 100,000 lines on this machine (more than 10,000 lines/s).
"""

from __future__ import annotations

import ast
import asyncio
import gc
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from benchmarks._harness import Case, Runner, Scenario, Section

LINES = 100_000
BLOCKS_PER_MODULE = 10

_HEADER = '''"""Generated module {i} of the scan benchmark."""

from __future__ import annotations

import functools
import json
import sqlite3
from pathlib import Path

import requests

from asyncify_kit import asyncify, run_sync

from . import mod_{prev} as previous
from .mod_{prev} import Repository{prev} as PreviousRepository

DATA_DIR = Path("/srv/data/{i}")
session = requests.Session()


class Repository{i}:
    """Rows of table t{i}."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def connect(self) -> sqlite3.Connection:
        if self.conn is None:
            self.conn = sqlite3.connect(self.path)
        return self.conn

    def fetch(self, key: int) -> list[tuple[int, str]]:
        rows = self.connect().execute("select id, name from t{i} where id = ?", (key,))
        return list(rows)

    def previous(self, key: int) -> list[tuple[int, str]]:
        return PreviousRepository(self.path).fetch(key)


repository = Repository{i}("/srv/db/{i}.sqlite")
'''

_BLOCK = """

def compute_{j}(value: int) -> int:
    data = {{"value": value, "block": {j}, "items": [value * n for n in range(4)]}}
    text = json.dumps(data, sort_keys=True)
    return len(text) + value * {j}


def helper_{j}(count: int) -> int:
    total = 0
    for k in range(count):
        total += compute_{j}(k)
    if total % 7 == 0:
        total += previous.helper_{j}(count - 1) if count > 1 else 0
    return total


def load_{j}(name: str) -> str:
    if name.startswith("remote:"):
        return session.get("https://example.invalid/" + name).text
    return (DATA_DIR / name).read_text()


lookup_{j} = functools.partial(repository.fetch, {j})


@asyncify
def export_{j}(name: str) -> int:
    return len(load_{j}(name))


async def handler_{j}(request: dict[str, str]) -> dict[str, object]:
    value = helper_{j}(len(request))
{body}
    size = await export_{j}(request["name"])
    return {{"value": value, "text": text, "rows": rows, "size": size}}
"""

_ON_THE_LOOP = """\
    text = load_{j}(request["name"])
    rows = lookup_{j}()"""

_OFFLOADED = """\
    text = await run_sync(load_{j}, request["name"])
    rows = await run_sync(lookup_{j})"""


def generate_project(root: Path, lines: int = LINES) -> int:
    """Write a package ``genapp`` of about `lines` lines under `root`; return its line count."""
    package = root / "genapp"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""Generated package of the scan benchmark."""\n')
    header_lines = _HEADER.count("\n")
    block_lines = _BLOCK.count("\n")
    per_module = header_lines + BLOCKS_PER_MODULE * block_lines
    modules = max(2, round(lines / per_module))
    written = 1
    for i in range(modules):
        parts = [_HEADER.format(i=i, prev=(i - 1) % modules)]
        for j in range(BLOCKS_PER_MODULE):
            # one handler in three blocks the loop (through one or two sync hops); the
            # others offload the same calls with run_sync
            body = (_ON_THE_LOOP if j % 3 == 0 else _OFFLOADED).format(j=j)
            parts.append(_BLOCK.format(j=j, body=body))
        source = "".join(parts)
        (package / f"mod_{i}.py").write_text(source)
        written += source.count("\n")
    return written


def parse_only(root: Path) -> int:
    """The floor: read and `ast.parse` every file, nothing else; returns the file count.

    The garbage collector is paused, as `scan_paths` does, so the floor is not inflated by
    collections over the growing syntax trees.
    """
    trees = []
    gc.disable()
    try:
        for path in sorted(root.rglob("*.py")):
            trees.append(ast.parse(path.read_bytes(), filename=str(path)))
    finally:
        gc.enable()
    return len(trees)


def _timed_scan(root: Path) -> float:
    from asyncify_kit.scan import scan_paths

    started = time.perf_counter()
    result = scan_paths([root], root=root)
    elapsed = time.perf_counter() - started
    if not result.findings:
        raise RuntimeError("the generated project must produce findings")
    return elapsed


@asynccontextmanager
async def _project(measure: str) -> AsyncIterator[Runner]:
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="asyncify-scan-bench-"))
    try:
        await asyncio.to_thread(generate_project, root)

        def run(ops: int) -> float:
            total = 0.0
            for _ in range(ops):
                if measure == "scan":
                    total += _timed_scan(root)
                else:
                    started = time.perf_counter()
                    parse_only(root)
                    total += time.perf_counter() - started
            return total

        yield run
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)


def _cases() -> list[Case]:
    return [
        Case("scan100k", FLOOR, setup=lambda: _project("parse"), reference=True),
        Case("scan100k", SUBJECT, setup=lambda: _project("scan"), peer=False),
    ]


FLOOR = "ast.parse only (floor)"
SUBJECT = "asyncify-kit scan"

SECTION = Section(
    name="scan",
    title="Scan: static finder of blocking calls, 100,000 generated lines",
    baseline=FLOOR,
    scenarios=(
        Scenario(
            "scan100k",
            "one scan of a 100,000-line generated project",
            ops=1,
            quick_ops=1,
            description="time per operation = time per 100,000 lines; lines/s = 100,000 / it",
        ),
    ),
    cases=_cases,
    notes=(
        "One operation scans the whole project once (about 100,000 lines in 250 modules): "
        "parse, call graph, reachability and findings; the target is under 10 s, i.e. more "
        "than 10,000 lines/s. Runs take seconds, not the usual 0.05-0.5 s, because the "
        "figure of interest is the whole-project scan.",
        "The ratio to the floor (reading and ast.parse of the same files) is the cost of the "
        "analysis on top of parsing.",
    ),
)
