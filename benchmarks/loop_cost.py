"""What the event loop pays per ``file://`` operation, and how often it waits for events.

    python -m benchmarks.loop_cost [--dir DIR] [--ops 1000] [--in-flight 100] [--rounds 3]

Round after round, each way below runs ``--ops`` operations on 4 KiB files, ``--in-flight``
at a time, through ``Storage("file://DIR/...?fsync=false")`` on an asyncio loop of its own,
and prints per operation: the wall time, the CPU time of the loop's thread
(``time.thread_time()``) and how many times the loop waited for events (its selector's
``select`` calls, each one a wake-up when something arrives):

* ``read``: ``read(key)``;
* ``atomic write``: ``write(key, data)``, the default, atomic (small ones take turns on one
  worker per directory, which hands their outcomes over in batches);
* ``atomic, one by one``: the same with each outcome handed over as its write ends
  (``_HOLD_MAX`` of ``asyncify_kit._executor`` set to 1 for the run);
* ``in place``: ``write`` with ``?atomic=false`` (parallel on the pool's workers).

The first line names the file system (``--dir``, default ``TMPDIR``); on tmpfs
(``--dir /dev/shm``) the kernel's share is smallest and the loop's shows most.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import selectors
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

from asyncify_kit import _executor
from asyncify_kit.storage import Storage
from benchmarks.bench_storage import describe_file_system

SIZE = 4 * 1024
WAYS = ("read", "atomic write", "atomic, one by one", "in place")
COLUMNS = ("µs/op", "loop CPU µs/op", "loop waits/op")


class CountingSelector(selectors.DefaultSelector):
    """The platform's default selector, counting its waits."""

    waits = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.waits += 1
        return super().select(timeout)


@contextlib.contextmanager
def _outcomes_one_by_one(on: bool) -> Iterator[None]:
    saved = _executor._HOLD_MAX
    if on:
        _executor._HOLD_MAX = 1
    try:
        yield
    finally:
        _executor._HOLD_MAX = saved


async def _measure(
    selector: CountingSelector, root: str, way: str, ops: int, in_flight: int
) -> dict[str, float]:
    data = os.urandom(SIZE)
    names = [f"f{i:05d}" for i in range(ops)]
    query = "fsync=false&atomic=false" if way == "in place" else "fsync=false"
    async with Storage(f"file://{root}?{query}") as st:
        for name in names:
            await st.write(name, data)

        async def caller(share: list[str]) -> None:
            for name in share:
                if way == "read":
                    await st.read(name)
                else:
                    await st.write(name, data)

        selector.waits = 0
        cpu, start = time.thread_time(), time.perf_counter()
        await asyncio.gather(*(caller(names[i::in_flight]) for i in range(in_flight)))
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
        waits = selector.waits
    return {
        "µs/op": wall / ops * 1e6,
        "loop CPU µs/op": cpu / ops * 1e6,
        "loop waits/op": waits / ops,
    }


def measure(directory: str, way: str, ops: int, in_flight: int) -> dict[str, float]:
    """One way's figures (see the module's docstring), in a fresh directory and loop."""
    root = tempfile.mkdtemp(prefix="asyncify-loop-cost-", dir=directory)
    selector = CountingSelector()
    loop = asyncio.SelectorEventLoop(selector)
    try:
        with _outcomes_one_by_one(way == "atomic, one by one"):
            return loop.run_until_complete(_measure(selector, root, way, ops, in_flight))
    finally:
        loop.close()
        shutil.rmtree(root, ignore_errors=True)


def run(directory: str, ops: int, in_flight: int, rounds: int) -> list[dict[str, Any]]:
    """Per round and way, a row of figures (also printed)."""
    print(
        f"{ops} operations on {SIZE}-byte files, {in_flight} in flight, in {directory}: "
        f"{describe_file_system(directory)}"
    )
    print(f"round  {'way':<20}" + "".join(f"{column:>16}" for column in COLUMNS))
    table: list[dict[str, Any]] = []
    for number in range(1, rounds + 1):
        for way in WAYS:
            row: dict[str, Any] = {"round": number, "way": way}
            row.update(measure(directory, way, ops, in_flight))
            table.append(row)
            figures = "".join(f"{row[column]:>16.2f}" for column in COLUMNS)
            print(f"{number:>5}  {way:<20}{figures}", flush=True)
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where (default TMPDIR)")
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    run(args.dir, args.ops, args.in_flight, args.rounds)


if __name__ == "__main__":
    main()
