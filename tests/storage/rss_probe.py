"""Measure how much a 200 MB streamed read or upload grows this process's memory.

Run as a script (the memory test starts it in a fresh interpreter)::

    python -m tests.storage.rss_probe URL SIZE_MB

It uploads SIZE_MB from an async generator (``Storage.write``), then reads it back with
``Storage.stream``, and prints one JSON line: ``{"write": {"growth_mb", "seconds"},
"read": {...}, "bytes": ...}``. A growth is the peak resident set size while the operation
runs (sampled every 2 ms on a thread) minus the resident set size just before it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from asyncify_kit.storage import Storage

CHUNK = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


def run_probe(module: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``python -m MODULE ARGS`` (a probe of this kind) in a fresh interpreter from the
    repository's root, and return the JSON of the last line it printed; its exit must be 0."""
    return run_json(["-m", module, *args], env=env)


def run_json(args: list[str], env: dict[str, str] | None = None) -> Any:
    """Run ``python ARGS`` in a fresh interpreter from the repository's root, and return the
    JSON of the last line it printed; its exit must be 0."""
    environ = dict(os.environ if env is None else env)
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def current_rss() -> int:
    """This process's resident set size in bytes (Linux /proc, no dependency)."""
    with open("/proc/self/statm", "rb") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """The highest RSS seen by a sampling thread between start and stop."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, current_rss())

    def __enter__(self) -> PeakRSS:
        self.base = current_rss()
        self.peak = self.base
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())

    @property
    def growth_mb(self) -> float:
        return round((self.peak - self.base) / CHUNK, 1)


async def pattern(total: int) -> AsyncIterator[bytes]:
    block = bytes(range(256)) * (CHUNK // 256)
    sent = 0
    while sent < total:
        piece = block[: min(CHUNK, total - sent)]
        sent += len(piece)
        yield piece


async def main(url: str, size_mb: int) -> None:
    total = size_mb * CHUNK
    report: dict[str, object] = {}
    async with Storage(url) as st:
        await st.write("warm-up.bin", pattern(6 * CHUNK))  # imports, pools and buffers first
        async for _ in st.stream("warm-up.bin"):
            pass
        start = time.perf_counter()
        with PeakRSS() as rss:
            await st.write("big.bin", pattern(total))
        report["write"] = {
            "growth_mb": rss.growth_mb,
            "seconds": round(time.perf_counter() - start, 2),
        }
        report["bytes"] = (await st.stat("big.bin")).size
        digest = hashlib.md5()
        start = time.perf_counter()
        with PeakRSS() as rss:
            async with st.stream("big.bin") as chunks:
                async for chunk in chunks:
                    digest.update(chunk)
        report["read"] = {
            "growth_mb": rss.growth_mb,
            "seconds": round(time.perf_counter() - start, 2),
        }
        expected = hashlib.md5()
        async for block in pattern(total):
            expected.update(block)
        report["intact"] = digest.digest() == expected.digest()
        await st.delete("big.bin")
        await st.delete("warm-up.bin")
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
