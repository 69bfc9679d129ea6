"""An offloaded context manager entered and then dropped without its exit (``__aenter__`` by
hand, an ``AsyncExitStack`` never closed) is exited on its own thread when it is collected,
as a block interrupted, and its thread is released: as a generator dropped unfinished is
closed on its thread.

Before, it kept its pool thread for good (two of them deadlocked a pool of two), its
``@contextmanager`` generator was finalized on whatever thread the garbage collector ran
(the event loop's), and interpreter exit waited ``shutdown_timeout`` (5 s) for its thread.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import asyncify_kit
from asyncify_kit import asyncify, configure, stats, wrap

pytestmark = pytest.mark.anyio

SRC = Path(asyncify_kit.__file__).resolve().parent.parent


class Session:
    """A ``@contextmanager`` method that logs its entry and exit, and their threads."""

    def __init__(self, *, failing_exit: bool = False) -> None:
        self.log: list[tuple[str, str, int]] = []
        self.failing_exit = failing_exit
        self.exited = threading.Event()

    @contextlib.contextmanager
    def session(self) -> Iterator[str]:
        self.log.append(("enter", "", threading.get_ident()))
        try:
            yield "s"
        except BaseException as exc:
            self.log.append(("exit", type(exc).__name__, threading.get_ident()))
            raise
        else:
            self.log.append(("exit", "", threading.get_ident()))
        finally:
            self.exited.set()
            if self.failing_exit:
                raise OSError("exit failed")

    def ident(self) -> int:
        return threading.get_ident()


def new_pool(size: int) -> str:
    name = f"dropped-{uuid.uuid4().hex[:8]}"
    configure(pools={name: size})
    return name


async def collected_and_exited(target: Session) -> None:
    gc.collect()
    with anyio.fail_after(2):
        while not target.exited.is_set():
            await anyio.sleep(0.01)


async def test_a_context_manager_dropped_entered_is_exited_on_its_thread() -> None:
    pool = new_pool(2)
    for how in ("by hand", "in an exit stack never closed"):
        target = Session()
        managed = asyncify(pool=pool)(target.session)
        if how == "by hand":
            assert await managed().__aenter__() == "s"
        else:
            stack = contextlib.AsyncExitStack()
            assert await stack.enter_async_context(managed()) == "s"
            del stack
        await collected_and_exited(target)
        (_, _, thread), exit_entry = target.log
        # as a block interrupted, on the thread that entered it (not the loop's)
        assert exit_entry == ("exit", "GeneratorExit", thread), how
        assert thread != threading.get_ident()
    # and the two threads of the pool are free: a call runs (it waited forever before)
    with anyio.fail_after(2):
        while stats(pool).running:
            await anyio.sleep(0.01)
        assert await asyncify(pool=pool)(threading.get_ident)() > 0


async def test_a_context_manager_of_a_sticky_proxy_dropped_entered_is_exited_there() -> None:
    target = Session()
    async with wrap(target, sticky=True) as proxy:
        home = await proxy.ident()
        await proxy.session().__aenter__()
        await collected_and_exited(target)
        assert [(what, how, thread) for what, how, thread in target.log] == [
            ("enter", "", home),
            ("exit", "GeneratorExit", home),
        ]
        assert await proxy.ident() == home  # the proxy and its thread are still there


async def test_an_exit_of_a_dropped_context_manager_that_raises_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = Session(failing_exit=True)
    await asyncify(pool=new_pool(1))(target.session)().__aenter__()
    await collected_and_exited(target)
    with anyio.fail_after(2):
        while "exit failed" not in caplog.text:
            await anyio.sleep(0.01)
    assert "Session.session, dropped while entered, raised" in caplog.text


def test_interpreter_exit_does_not_wait_for_a_context_manager_left_entered() -> None:
    code = textwrap.dedent(
        """
        import asyncio, threading
        from contextlib import contextmanager
        from asyncify_kit import asyncify

        @asyncify
        @contextmanager
        def session():
            try:
                yield
            finally:
                on_worker = threading.current_thread() is not threading.main_thread()
                print("exited on a worker:", on_worker)

        kept = []

        async def main():
            cm = session()
            await cm.__aenter__()
            kept.append(cm)

        asyncio.run(main())
        """
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=False,
        timeout=30,
    )
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert "still running at exit" not in out.stderr
    assert out.stdout.strip() == "exited on a worker: True"
    assert took < 3, took  # the shutdown timeout is 5 s


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_context_manager_exited_or_never_entered_is_not_exited_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    target = Session()
    managed = asyncify(pool=new_pool(1))(target.session)
    async with managed():
        pass
    cm = managed()  # never entered
    del cm
    gc.collect()
    await anyio.sleep(0.1)
    assert [what for what, _, _ in target.log] == ["enter", "exit"]
    assert not caplog.records
