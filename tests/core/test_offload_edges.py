"""Less-trodden corners of the offload engine: `wrap` proxies made and dropped in one
expression, copied or pickled; queue-wait percentiles; lanes inherited by a forked child;
generators and context managers whose first step is still queued when the caller leaves."""

from __future__ import annotations

import asyncio
import copy
import gc
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
import pytest

from asyncify_kit import CancelPolicy, asyncify, configure, stats, wrap
from tests.conftest import exit_code_in_a_forked_child

pytestmark = pytest.mark.anyio


class Counter:
    """Module level, so pickle finds it."""

    def __init__(self) -> None:
        self.count = 0

    def bump(self) -> tuple[int, int]:
        self.count += 1
        return self.count, threading.get_ident()


# -- a sticky proxy used in the expression that made it --------------------------------------


async def test_a_method_of_a_sticky_proxy_keeps_the_proxy_open() -> None:
    # the proxy is dropped once `.bump` is read: its thread must stay until the call is made
    assert (await wrap(Counter(), sticky=True).bump())[0] == 1

    bump = wrap(Counter(), sticky=True).bump
    gc.collect()
    first, home = await bump()
    second, again = await bump()
    assert (first, second) == (1, 2)
    assert again == home

    # once the method is dropped too, the thread leaves
    (thread,) = [t for t in threading.enumerate() if t.ident == home]
    del bump
    gc.collect()
    with anyio.fail_after(2):
        while thread.is_alive():
            await anyio.sleep(0.01)


async def test_a_method_of_a_closed_sticky_proxy_is_refused() -> None:
    proxy = wrap(Counter(), sticky=True)
    bump = proxy.bump
    await proxy.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await bump()


# -- copy and pickle ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "duplicate",
    [copy.copy, copy.deepcopy, lambda proxy: pickle.loads(pickle.dumps(proxy))],
    ids=["copy", "deepcopy", "pickle"],
)
async def test_a_proxy_can_be_copied_and_pickled(duplicate: Callable[[object], object]) -> None:
    proxy = wrap(Counter(), cancel="abandon", timeout=5)
    twin = duplicate(proxy)
    assert repr(twin) == repr(proxy)
    assert await twin.bump() is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "duplicate",
    [copy.copy, copy.deepcopy, pickle.dumps],
    ids=["copy", "deepcopy", "pickle"],
)
async def test_a_sticky_proxy_cannot_be_copied_or_pickled(
    duplicate: Callable[[object], object],
) -> None:
    async with wrap(Counter(), sticky=True) as proxy:
        with pytest.raises(TypeError, match="sticky"):
            duplicate(proxy)


# -- queue-wait percentiles --------------------------------------------------------------------


async def test_queue_wait_p50_of_two_calls_is_the_shorter_wait() -> None:
    name = f"edges-{uuid.uuid4().hex[:8]}"
    configure(pools={name: 1})
    nap = asyncify(pool=name)(time.sleep)
    async with anyio.create_task_group() as tg:  # one thread: the second waits ~0.2 s
        tg.start_soon(nap, 0.2)
        await anyio.sleep(0.02)
        tg.start_soon(nap, 0)
    with anyio.fail_after(2):
        while stats(name).completed < 2:
            await anyio.sleep(0.01)
    s = stats(name)
    # nearest rank: half the calls waited no longer than p50 (the quick one)
    assert s.queue_wait_p50 < 0.05
    assert s.queue_wait_p90 == s.queue_wait_p99 >= 0.1


# -- fork ---------------------------------------------------------------------------------------


@asyncify
def _two_items() -> Iterator[int]:
    yield 1
    yield 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_lanes_opened_before_fork_are_refused_in_the_child_not_hung() -> None:
    async def open_in_parent() -> tuple[object, object]:
        proxy = wrap(Counter(), sticky=True)
        await proxy.bump()
        items = _two_items()
        assert await items.__anext__() == 1
        return proxy, items

    proxy, items = asyncio.run(open_in_parent())

    def child() -> bool:
        async def use() -> bool:
            refused = 0
            for step in (proxy.bump, items.__anext__):  # type: ignore[attr-defined]
                try:
                    await asyncio.wait_for(step(), 5)
                except RuntimeError as exc:
                    refused += "os.fork()" in str(exc)
            await items.aclose()  # type: ignore[attr-defined]  # nothing to close here: quiet
            # and what the child opens itself works
            async with wrap(Counter(), sticky=True) as fresh:
                assert (await fresh.bump())[0] == 1
            return refused == 2

        return asyncio.run(use())

    try:
        assert exit_code_in_a_forked_child(child) == 0
    finally:
        asyncio.run(items.aclose())  # type: ignore[attr-defined]
        asyncio.run(proxy.aclose())  # type: ignore[attr-defined]


# -- a first step still queued when the caller leaves ---------------------------------------


@pytest.mark.parametrize("policy", ["wait", "abandon"])
@pytest.mark.parametrize(
    ("kind", "leave"),
    [
        ("generator", "cancel"),
        ("generator", "timeout"),
        ("context manager", "cancel"),
        ("context manager", "timeout"),
        # (a sticky proxy's timeout would end the call holding its thread too)
        ("sticky generator", "cancel"),
    ],
)
async def test_a_first_step_still_queued_is_withdrawn_at_once(
    kind: str, leave: str, policy: CancelPolicy
) -> None:
    """Its pool's one thread is busy: the step never ran, so the caller leaves at once, as
    a plain call does, instead of waiting for a thread to close or exit nothing."""
    pool = f"queued-{uuid.uuid4().hex[:8]}"
    configure(pools={pool: 1})
    release = threading.Event()
    ran: list[str] = []
    timeout = 0.1 if leave == "timeout" else None

    @asyncify(pool=pool)
    def hog() -> None:
        release.wait(10)

    @asyncify(pool=pool, cancel=policy, timeout=timeout)
    def numbers() -> Iterator[int]:
        ran.append("generator")
        yield 1

    @asyncify(pool=pool, cancel=policy, timeout=timeout)
    @contextmanager
    def held() -> Iterator[int]:
        ran.append("context manager")
        yield 1

    class Source:
        def numbers(self) -> Iterator[int]:
            ran.append("sticky generator")
            yield 1

        def block(self) -> None:
            release.wait(10)

    async def use() -> None:
        if kind == "generator":
            async for _ in numbers():
                pass
        elif kind == "context manager":
            async with held():
                pass
        else:
            async for _ in source.numbers():
                pass

    source = wrap(Source(), sticky=True, cancel=policy, timeout=timeout)
    async with anyio.create_task_group() as tg:
        # the pool's one thread (or the sticky proxy's own) is taken for as long as the test
        tg.start_soon(source.block if kind == "sticky generator" else hog)
        await anyio.sleep(0.05)
        started = time.monotonic()
        try:
            if leave == "cancel":
                with anyio.move_on_after(0.1):
                    await use()
            else:
                with pytest.raises(TimeoutError):
                    await use()
            took = time.monotonic() - started
        finally:
            release.set()
    await source.aclose()
    assert took < 2  # it waited for the thread (10 s) before the fix
    assert ran == []
