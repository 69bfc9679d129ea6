"""trio's guest mode (``trio.lowlevel.start_guest_run``) on an asyncio host.

trio's tasks then run inside the host loop's callbacks, where ``asyncio._get_running_loop()``
returns the host loop. Offloads made from them took the asyncio path and broke trio with
"trio.run received unrecognized yield message <Call pending>". Each test runs its own host
loop: these are sync tests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
import trio

from asyncify_kit import asyncify, run_sync, wrap
from asyncify_kit.detect import current_loop_kind, detect_blocking
from asyncify_kit.storage import Storage

T = TypeVar("T")


def run_as_guest(trio_main: Callable[[], Awaitable[T]]) -> T:
    """Run *trio_main* in trio's guest mode on a fresh asyncio loop; return its result."""

    async def host() -> T:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
        )
        outcome = await done
        return outcome.unwrap()  # type: ignore[no-any-return]

    return asyncio.run(host())


@asyncify
def double(x: int) -> int:
    time.sleep(0.001)
    return x * 2


@asyncify
def numbers() -> Iterator[int]:
    yield 1
    yield 2


@asyncify
@contextmanager
def held() -> Iterator[str]:
    yield threading.current_thread().name


class Box:
    def __init__(self) -> None:
        self.items: list[int] = []

    def add(self, item: int) -> int:
        self.items.append(item)
        return len(self.items)


def test_each_kind_of_offload_runs_from_a_guest_trio_task() -> None:
    async def main() -> list[object]:
        assert current_loop_kind() == "trio"
        box = wrap(Box())
        async with held() as thread:
            pass
        return [
            await double(21),
            await run_sync(sum, [1, 2, 3]),
            [n async for n in numbers()],
            thread != threading.current_thread().name,
            await box.add(7),
            await box.add(8),
        ]

    assert run_as_guest(main) == [42, 6, [1, 2], True, 1, 2]


def test_a_guest_trio_task_cancels_and_times_out_its_offloads() -> None:
    async def main() -> tuple[float, float]:
        start = trio.current_time()
        with trio.move_on_after(0.05):
            await asyncify(cancel="abandon")(time.sleep)(2)
        moved_on = trio.current_time() - start
        start = trio.current_time()
        with pytest.raises(TimeoutError):
            await asyncify(cancel="abandon", timeout=0.05)(time.sleep)(2)
        return moved_on, trio.current_time() - start

    moved_on, timed_out = run_as_guest(main)
    assert moved_on < 1.5
    assert timed_out < 1.5


def test_the_host_loop_offloads_alongside_a_guest_trio_run() -> None:
    async def guest() -> int:
        return sum([await double(i) for i in range(20)])

    async def host() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            guest, run_sync_soon_threadsafe=loop.call_soon_threadsafe, done_callback=done.set_result
        )
        mine = sum(await asyncio.gather(*(double(i) for i in range(20))))
        return mine, (await done).unwrap()

    assert asyncio.run(host()) == (380, 380)


def test_storage_and_the_detector_see_a_guest_trio_task_as_trio(tmp_path: Any) -> None:
    async def main() -> tuple[bytes, list[str]]:
        with detect_blocking(mode="collect") as detector:
            async with Storage(f"file://{tmp_path}") as storage:
                await storage.write("a/b.txt", b"guest")
                data = await storage.read("a/b.txt")
            time.sleep(0.001)  # the one blocking call here: reported, from trio
        return data, [f"{r.function}@{r.loop}" for r in detector.reports]

    assert run_as_guest(main) == (b"guest", ["time.sleep@trio"])
