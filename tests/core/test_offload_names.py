"""Errors, logs and `stats()` name the user's generator or context manager function, never
the library's methods that run its steps.

Before, a step's timeout said ``OffloadedIterator._next_in_thread did not finish within its
timeout`` (or ``OffloadedContextManager._enter_in_thread``), the late error of an abandoned
step was logged under that name, and ``stats().running_calls`` listed it, or
``<generator/context lane>`` for the thread an open generator holds.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import anyio
import pytest

from asyncify_kit import CallCancelled, asyncify, check_cancelled, configure, stats, wrap

pytestmark = pytest.mark.anyio


def new_pool() -> str:
    name = f"names-{uuid.uuid4().hex[:8]}"
    configure(pools={name: 2})
    return name


@asyncify(timeout=0.05)
def read_rows() -> Iterator[int]:
    time.sleep(0.2)
    yield 1


@asyncify(timeout=0.05)
@contextlib.contextmanager
def session() -> Iterator[int]:
    time.sleep(0.2)
    yield 1


async def test_a_step_timeout_names_the_function() -> None:
    with pytest.raises(TimeoutError) as raised:
        await read_rows().__anext__()
    assert str(raised.value) == "read_rows did not finish within its timeout"
    with pytest.raises(TimeoutError) as raised:
        async with session():
            pass
    assert str(raised.value) == "session did not finish within its timeout"


async def test_the_late_error_of_an_abandoned_step_names_the_function(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows: list[int] = []

    @asyncify(cancel="abandon", timeout=0.05)
    def export_rows() -> Iterator[int]:
        time.sleep(0.2)
        if not rows:
            raise ValueError("disk full")
        yield from rows

    with pytest.raises(TimeoutError, match=r"^test_the_late_error.*export_rows did not"):
        await export_rows().__anext__()
    with anyio.fail_after(2):
        while "disk full" not in caplog.text:
            await anyio.sleep(0.01)
    (record,) = [r for r in caplog.records if "raised after" in r.getMessage()]
    assert record.getMessage().startswith(
        "test_the_late_error_of_an_abandoned_step_names_the_function.<locals>.export_rows "
        "raised after its caller had left"
    )


class Store:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.inside = threading.Event()

    def scan(self) -> Iterator[int]:
        self.inside.set()
        self.gate.wait(5)
        yield 1

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield


async def test_running_calls_name_the_generators_and_context_managers_open() -> None:
    pool = new_pool()
    store = Store()
    items = asyncify(pool=pool)(store.scan)()
    managed = asyncify(pool=pool)(store.transaction)()
    async with anyio.create_task_group() as tg:
        tg.start_soon(items.__anext__)
        await managed.__aenter__()
        with anyio.fail_after(2):
            while not store.inside.is_set():
                await anyio.sleep(0.01)
        # each holds a thread of the pool: listed by its function's name
        assert sorted(stats(pool).running_calls) == ["Store.scan", "Store.transaction"]
        store.gate.set()
    await items.aclose()
    await managed.__aexit__(None, None, None)


async def test_running_calls_name_the_steps_on_a_sticky_proxys_thread() -> None:
    pool = new_pool()
    store = Store()
    async with wrap(store, pool=pool, sticky=True) as proxy:
        items = proxy.scan()
        async with anyio.create_task_group() as tg:
            tg.start_soon(items.__anext__)
            with anyio.fail_after(2):
                while not store.inside.is_set():
                    await anyio.sleep(0.01)
            running = stats(pool).running_calls
            store.gate.set()
        await items.aclose()
    assert running == ("Store.scan",)


async def test_check_cancelled_in_a_step_names_the_function() -> None:
    seen: list[str] = []
    started = threading.Event()

    @asyncify(timeout=0.05)
    def rows() -> Iterator[int]:
        started.set()
        try:
            for _ in range(200):
                check_cancelled()
                time.sleep(0.01)
        except CallCancelled as exc:
            seen.append(str(exc))
            raise
        yield 1

    with pytest.raises(TimeoutError):
        await rows().__anext__()
    assert seen == [
        "the caller of test_check_cancelled_in_a_step_names_the_function.<locals>.rows "
        "was cancelled or timed out"
    ]
