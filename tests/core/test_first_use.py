"""A program's first use of the library imports nothing on the event loop's thread.

anyio (4.16) imports its modules lazily, at the first use of each name, and the library's
first operation (an offloaded call, a Storage read, a query) made that use on the event
loop: 20-47 ms of it, once per process. `asyncify_kit` resolves anyio's names at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[2] / "src"

_PROBE = """
import asyncio, importlib.abc, json, sys, threading
import asyncify_kit
from asyncify_kit import asyncify
from asyncify_kit.sql import Database
from asyncify_kit.storage import Storage

on_loop = []
guard = threading.local()

class Recorder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if not getattr(guard, "busy", False):
            guard.busy = True
            try:
                asyncio.get_running_loop()
                on_loop.append(fullname)
            except RuntimeError:
                pass
            finally:
                guard.busy = False
        return None

store = Storage("memory://")
sys.meta_path.insert(0, Recorder())

@asyncify
def add(a, b):
    return a + b

async def main():
    assert await add(1, 2) == 3
    async with store:
        await store.write("k", b"v")
        assert await store.read("k") == b"v"
    async with Database("sqlite:///:memory:") as db:  # (made in async code, as in the docs)
        assert await db.fetch_val("select 1") == 1

asyncio.run(main())
print(json.dumps(on_loop))
"""


def _run(code: str) -> Any:
    """What *code*, run in a fresh interpreter, printed last (JSON)."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_first_operation_imports_nothing_on_the_loop() -> None:
    """Nor does a `Database` made in async code: its constructor imported the backend's
    module and driver (16-79 ms once per process and backend, a helper's audit); `connect`
    imports them in a worker thread now."""
    assert _run(_PROBE) == []


def test_each_mysql_backend_imports_its_own_driver_alone() -> None:
    """``mysql+pymysql`` and ``mysql+aiomysql`` imported asyncmy (and, with it,
    cryptography) for two helpers of its module: 25 ms, at the Database's construction."""
    code = (
        "import json, sys\n"
        "from asyncify_kit.sql import Database\n"
        "seen = {}\n"
        "for scheme in ('mysql+pymysql', 'mysql+aiomysql'):\n"
        "    Database(scheme + '://app:pw@127.0.0.1/app')\n"
        "    seen[scheme] = 'asyncmy' in sys.modules\n"
        "print(json.dumps(seen))\n"
    )
    assert _run(code) == {"mysql+pymysql": False, "mysql+aiomysql": False}
