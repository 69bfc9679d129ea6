"""What one thread hop costs around calls of different lengths.

    python -m benchmarks.hop_cost [--lengths 0,50,100,200,400] [--calls 500] [--rounds 5]

For each length L (µs), a call that releases the GIL and computes for about L µs (SHA-256 of
a zeroed buffer, its size calibrated on this machine first) runs ``--calls`` times, one at a
time, through ``asyncify_kit.run_sync`` and through ``asyncio.to_thread``, each on an asyncio
loop of its own. Per round, way and length it prints the call's own time (measured in the
worker), the time per call seen by the caller, and the difference: what the hop cost.

While the worker computes, the event loop's thread sleeps. On a machine whose idle CPUs take
longer to wake the longer they slept (a virtual machine, deep idle states), the hop grows with
the call's length; ``docs/storage.md`` uses this to read the ``file://`` write figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from asyncify_kit import run_sync

WAYS: dict[str, Callable[..., Awaitable[Any]]] = {
    "asyncify-kit run_sync": run_sync,
    "asyncio.to_thread": asyncio.to_thread,
}
COLUMNS = ("call µs", "µs/call", "hop µs")
_CALIBRATION = 1 << 22  # bytes hashed to measure the speed of SHA-256 here


def buffer_for(length_us: float) -> bytes:
    """A zeroed buffer whose SHA-256 takes about *length_us* microseconds here."""
    if length_us <= 0:
        return b""
    sample = bytes(_CALIBRATION)
    start = time.perf_counter()
    hashlib.sha256(sample).digest()
    per_us = _CALIBRATION / ((time.perf_counter() - start) * 1e6)
    return bytes(max(1, round(length_us * per_us)))


def measure(way: str, buf: bytes, calls: int) -> dict[str, float]:
    """One timed run of *calls* hops around ``sha256(buf)``: the call's own mean time, the
    mean time per call seen by the caller, and their difference (µs)."""
    inner: list[float] = []

    def call() -> None:
        start = time.perf_counter()
        hashlib.sha256(buf).digest()
        inner.append(time.perf_counter() - start)

    hop = WAYS[way]

    async def main() -> float:
        await hop(call)  # start the worker thread before timing
        inner.clear()
        start = time.perf_counter()
        for _ in range(calls):
            await hop(call)
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    own = sum(inner) / len(inner) * 1e6
    per_call = elapsed / calls * 1e6
    return {"call µs": own, "µs/call": per_call, "hop µs": per_call - own}


def run(lengths: Sequence[float], calls: int, rounds: int) -> list[dict[str, Any]]:
    """Per round, way and length, a row of figures (also printed)."""
    buffers = {length: buffer_for(length) for length in lengths}
    print(f"{calls} calls one at a time, each hashing a zeroed buffer sized to take about L µs")
    print(f"round  {'way':<22}{'L':>6}" + "".join(f"{column:>12}" for column in COLUMNS))
    table: list[dict[str, Any]] = []
    for number in range(1, rounds + 1):
        for way in WAYS:
            for length in lengths:
                row: dict[str, Any] = {"round": number, "way": way, "length": length}
                row.update(measure(way, buffers[length], calls))
                table.append(row)
                figures = "".join(f"{row[column]:>12.1f}" for column in COLUMNS)
                print(f"{number:>5}  {way:<22}{length:>6g}{figures}", flush=True)
    return table


def _lengths(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lengths", type=_lengths, default=[0, 50, 100, 200, 400])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    run(args.lengths, args.calls, args.rounds)


if __name__ == "__main__":
    main()
