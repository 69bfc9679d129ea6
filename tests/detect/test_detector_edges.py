"""The detector at its edges: shared allow scopes, pickling, fork, logging, loop callbacks.

Each test here reproduces a report of the detector misbehaving: an `allow_blocking` instance
shared by concurrent tasks, patched functions sent to a process pool, a process forked from
inside ``trio.run``, an app's own logging handler, a blocking function scheduled as a loop
callback, a wrapper put back by a monkeypatch after its detector ended, PyMySQL's ``close``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import pathlib
import pickle
import time
import warnings
from typing import Any
from urllib.parse import urlparse

import anyio
import pymysql
import pytest
import trio

from asyncify_kit import BlockingCallError, run_sync
from asyncify_kit.detect import _detector, allow_blocking, current_loop_kind, detect_blocking

SHARED = allow_blocking("time.sleep")  # module level, as an app keeps one


# -- allow_blocking ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_one_allow_blocking_instance_is_shared_by_concurrent_tasks() -> None:
    # each task's exit reset a contextvars token made in the other task's context: both
    # tasks failed with "ValueError: <Token ...> was created in a different Context"
    done: list[str] = []

    async def handler(name: str, delay: float) -> None:
        with SHARED:
            time.sleep(0.001)
            await anyio.sleep(delay)
            time.sleep(0.001)
        done.append(name)

    with detect_blocking(mode="raise"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handler, "a", 0.01)
            tg.start_soon(handler, "b", 0.03)
        with pytest.raises(BlockingCallError):  # and it ends with the block, in each task
            time.sleep(0.001)
    assert done == ["a", "b"]


@pytest.mark.anyio
async def test_a_task_started_in_an_allow_block_is_allowed_only_while_it_is_open() -> None:
    inside, outside = anyio.Event(), anyio.Event()

    async def child() -> None:
        await inside.wait()
        time.sleep(0.001)  # the block is still open: allowed
        await outside.wait()
        time.sleep(0.001)  # the block has ended: reported

    with detect_blocking(mode="collect") as detector:
        async with anyio.create_task_group() as tg:
            with allow_blocking("time.sleep"):
                tg.start_soon(child)
                inside.set()
                await anyio.sleep(0.01)
            outside.set()
    assert [(r.function, r.site.function) for r in detector.reports] == [("time.sleep", "child")]


# -- pickling ------------------------------------------------------------------------------


def test_every_patched_function_pickles_as_itself() -> None:
    # update_wrapper copied the originals' names: "posix.stat", "io.open" were not the
    # wrappers, and pickle refused os.stat, os.listdir, open...
    with detect_blocking():
        assert _detector._patches
        for patch in _detector._patches:
            value = getattr(patch.owner, patch.attr)  # (a classmethod: bound, pickled by name)
            assert pickle.loads(pickle.dumps(value)) == value, (patch.owner, patch.attr)
        assert pickle.loads(pickle.dumps(os.stat)) is os.stat
        assert pickle.loads(pickle.dumps(open)) is open
        assert getattr(os.stat, "__wrapped__", None) is not None  # still the detector's


def test_a_process_pool_runs_patched_functions_while_a_detector_is_active() -> None:
    with detect_blocking(), concurrent.futures.ProcessPoolExecutor(1) as pool:
        assert pool.submit(os.stat, ".").result(timeout=60).st_mode > 0
        assert pool.submit(os.listdir, ".").result(timeout=60) == os.listdir(".")


# -- fork ----------------------------------------------------------------------------------


def test_a_process_forked_inside_trio_run_runs_no_loop() -> None:
    # sniffio's thread-local ("trio") survived the fork: the child's blocking calls raised
    def in_child() -> int:
        if current_loop_kind() is not None:
            return 2
        try:
            time.sleep(0.001)
        except BlockingCallError:
            return 3
        return 0

    async def main() -> int:
        with warnings.catch_warnings():  # 3.12+: forking a process with threads may deadlock
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                code = in_child()
            finally:
                os._exit(code)
        _, status = await trio.to_thread.run_sync(os.waitpid, pid, 0)
        return os.waitstatus_to_exitcode(status)

    with detect_blocking(mode="raise"):
        assert trio.run(main) == 0


# -- logging -------------------------------------------------------------------------------


class AppendHandler(logging.Handler):
    """An app's own handler: appends each record to a file, through a helper of its own."""

    def __init__(self, path: pathlib.Path) -> None:
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "via helper":
            append_line(self.path, self.format(record))
        else:
            with open(self.path, "a") as f:
                f.write(self.format(record) + "\n")


def append_line(path: pathlib.Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


@pytest.mark.anyio
async def test_an_apps_own_logging_handler_is_not_reported(tmp_path: pathlib.Path) -> None:
    # the handler's own frame was taken for the user's code: log.info() raised in raise mode
    path = tmp_path / "app.log"
    log = logging.getLogger("asyncify_kit_tests.detect.handler")
    handler = AppendHandler(path)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    propagate, log.propagate = log.propagate, False
    try:
        with detect_blocking(mode="raise"):
            log.info("direct")
            log.info("via helper")
        with detect_blocking(mode="collect") as detector:
            log.info("direct")
            append_line(path, "not through logging")  # the same helper is reported
    finally:
        log.removeHandler(handler)
        log.propagate = propagate
    assert [(r.function, r.site.function) for r in detector.reports] == [("open", "append_line")]
    assert (await run_sync(path.read_text)).count("\n") == 4


# -- loop callbacks ------------------------------------------------------------------------


def test_a_blocking_function_scheduled_as_an_asyncio_callback_is_reported() -> None:
    # the asyncio frame that called it (Handle._run) was taken for the loop's own machinery
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(time.sleep, 0.001)
        loop.call_later(0.001, os.stat, ".")
        await asyncio.sleep(0.05)
        await anyio.to_thread.run_sync(anyio.from_thread.run_sync, time.sleep, 0.001)

    for debug in (False, True):
        with detect_blocking(mode="collect") as detector:
            asyncio.run(main(), debug=debug)
        reports = detector.reports
        assert [r.function for r in reports] == ["time.sleep", "os.stat", "time.sleep"]
        for report in reports:
            assert "run by the event loop as a callback" in (report.detail or "")
            assert report.user_frame is None or debug
        if debug:  # asyncio recorded where the callbacks were scheduled: that is the site
            assert [r.site.line for r in reports[:2]] == [
                "loop.call_soon(time.sleep, 0.001)",
                'loop.call_later(0.001, os.stat, ".")',
            ]
        else:
            assert "asyncio debug mode" in (reports[0].detail or "")


def test_a_blocking_function_scheduled_as_a_trio_callback_is_reported() -> None:
    async def main() -> None:
        trio.lowlevel.current_trio_token().run_sync_soon(time.sleep, 0.001)
        await trio.sleep(0.05)
        await trio.to_thread.run_sync(trio.from_thread.run_sync, time.sleep, 0.001)

    with detect_blocking(mode="collect") as detector:
        trio.run(main)
    assert [r.function for r in detector.reports] == ["time.sleep", "time.sleep"]
    assert all(r.detail == "run by the event loop as a callback" for r in detector.reports)


def test_the_loops_own_callbacks_are_still_not_reported() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(1))
        await writer.drain()
        writer.close()

    async def main() -> bytes:
        async with await asyncio.start_server(echo, "127.0.0.1", 0) as server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            writer.write(b"x")
            await writer.drain()
            data = await reader.read(1)
            writer.close()
            await writer.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.001)
        return data

    with detect_blocking(mode="collect") as detector:
        assert asyncio.run(main()) == b"x"
    assert detector.reports == []


# -- stale wrappers ------------------------------------------------------------------------


# checks the global patch state: the plugin's own detector would keep the patches in
@pytest.mark.allow_blocking
def test_a_wrapper_put_back_after_its_detector_ended_is_undone() -> None:
    # a monkeypatch saves the wrapper in place and restores it at its own end: after the
    # detector had ended, it stayed in time.sleep for good
    original_sleep, original_stat = time.sleep, os.stat
    assert not _detector.is_active()
    with detect_blocking():
        saved_sleep, saved_stat = time.sleep, os.stat
    time.sleep, os.stat = saved_sleep, saved_stat  # (the monkeypatch's undo, late)
    try:
        with detect_blocking():
            assert getattr(time.sleep, "__wrapped__", None) is original_sleep
            time.sleep = saved_sleep  # and one put back while another detector is active
        assert (time.sleep, os.stat) == (original_sleep, original_stat)
        assert saved_stat not in os.supports_fd
        assert os.stat in os.supports_fd
        # someone else's patch over a wrapper is still left alone
        with detect_blocking():
            time.sleep = mine = lambda seconds: None
        assert time.sleep is mine
    finally:
        time.sleep, os.stat = original_sleep, original_stat


# -- PyMySQL close ---------------------------------------------------------------------------


@pytest.fixture
def mysql_connection(mysql_url: str) -> Any:
    url = urlparse(mysql_url)
    conn = pymysql.connect(
        host=url.hostname,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.path.lstrip("/"),
    )
    yield conn
    if conn.open:
        conn.close()


@pytest.mark.anyio
async def test_pymysql_close_is_reported_as_itself(mysql_connection: Any) -> None:
    # it was reported as the socket write of its quit message, with the socket's fix
    with detect_blocking(mode="collect") as detector:
        mysql_connection.close()
        with pytest.raises(pymysql.err.Error):
            mysql_connection.close()  # already closed: sends nothing, not reported
    assert [(r.function, r.kind) for r in detector.reports] == [
        ("pymysql.Connection.close", "mysql")
    ]
