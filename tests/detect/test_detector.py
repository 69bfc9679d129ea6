"""The blocking detector: every blocking kind is reported on the loop thread, never off it.

The coverage matrix runs each blocking call on the event-loop thread (asyncio and trio, through
the ``anyio_backend`` fixture) in raise mode, where it must raise `BlockingCallError` naming the
function and this file's line, and then the same call through ``run_sync`` (a worker thread),
where nothing may be reported. Everything is real: loopback sockets and an HTTP server, files
in tmp_path, a child process, sqlite3, and the real drivers pointed at closed local ports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import io
import logging
import os
import pathlib
import queue
import select
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import boto3
import botocore.config
import httpx
import psycopg
import psycopg2
import pymysql
import pytest
import requests
import urllib3

from asyncify_kit import BlockingCallError, ConfigError, asyncify, run_sync
from asyncify_kit.detect import (
    BlockingCallWarning,
    allow_blocking,
    current_loop_kind,
    detect_blocking,
)
from asyncify_kit.detect._detector import is_active

pytestmark = pytest.mark.anyio

CLOSED = "127.0.0.1"  # port 9 (discard) is closed on loopback: drivers fail at once


@dataclass
class Env:
    """What the blocking calls act on, made before the loop starts (sync fixture)."""

    path: pathlib.Path
    fd: int
    url: str
    port: int
    pair: tuple[socket.socket, socket.socket]
    http: httpx.Client
    pool: urllib3.PoolManager
    s3: Any
    tls: ssl.SSLSocket
    child: subprocess.Popen[bytes]
    sqlite: sqlite3.Connection | None = None
    closers: list[Callable[[], object]] = field(default_factory=list)

    def connect(self) -> None:
        sock = socket.socket()
        try:
            sock.connect(("127.0.0.1", self.port))
        finally:
            sock.close()

    def tls_handshake(self) -> None:
        self.tls.do_handshake()  # the plain-HTTP server answers with 400: SSLError, at once

    def future(self) -> concurrent.futures.Future[None]:
        """A future another thread finishes in a moment: late enough that it is still pending
        when the test waits on it, even on a loaded machine (a result already there does not
        block, so it is not reported; at 1 ms CI once saw it finished first)."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        threading.Timer(0.1, future.set_result, (None,)).start()
        return future

    def running_thread(self) -> threading.Thread:
        """A thread that runs for a moment (raise mode does not wait for it)."""
        thread = threading.Thread(target=time.sleep, args=(0.05,), daemon=True)
        thread.start()
        return thread

    def filled_queue(self) -> queue.Queue[int]:
        """A queue with one item."""
        items: queue.Queue[int] = queue.Queue()
        items.put(1)
        return items


@pytest.fixture(scope="module")
def s3(http_url: str) -> Any:
    """A boto3 client (slow to build: once per module) whose endpoint is the loopback server."""
    return boto3.client(
        "s3",
        endpoint_url=http_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test-secret-key",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def env(tmp_path: pathlib.Path, http_url: str, s3: Any) -> Iterator[Env]:
    path = tmp_path / "data.txt"
    path.write_text("hello")
    fd = os.open(path, os.O_RDWR)
    a, b = socket.socketpair()
    a.sendall(b"x" * 64)
    raw = socket.create_connection(("127.0.0.1", int(http_url.rsplit(":", 1)[1])), timeout=5)
    tls = ssl.create_default_context().wrap_socket(
        raw, server_hostname="localhost", do_handshake_on_connect=False
    )
    environment = Env(
        path=path,
        fd=fd,
        url=http_url,
        port=int(http_url.rsplit(":", 1)[1]),
        pair=(a, b),
        http=httpx.Client(),
        pool=urllib3.PoolManager(),
        s3=s3,
        tls=tls,
        child=subprocess.Popen([sys.executable, "-c", "pass"]),
    )
    yield environment
    os.close(fd)
    tls.close()
    environment.child.wait()
    a.close()
    b.close()
    environment.http.close()
    environment.pool.clear()
    if environment.sqlite is not None:
        environment.sqlite.close()


Case = Callable[[Env], object]

# (expected function, blocking call); each lambda's line is the report's user frame
MATRIX: list[tuple[str, str, Case]] = [
    ("sleep", "time.sleep", lambda e: time.sleep(0.001)),
    ("socket-connect", "socket.socket.connect", lambda e: e.connect()),
    ("socket-send", "socket.socket.send", lambda e: e.pair[0].send(b"x")),
    ("socket-recv", "socket.socket.recv", lambda e: e.pair[1].recv(1)),
    ("getaddrinfo", "socket.getaddrinfo", lambda e: socket.getaddrinfo("localhost", 80)),
    ("gethostbyname", "socket.gethostbyname", lambda e: socket.gethostbyname("localhost")),
    ("ssl", "ssl.SSLSocket.do_handshake", lambda e: e.tls_handshake()),
    ("open", "open", lambda e: open(e.path).close()),
    ("path-read", "pathlib.Path.read_text", lambda e: e.path.read_text()),
    ("path-write", "pathlib.Path.write_text", lambda e: e.path.write_text("x")),
    ("file-read", "os.read", lambda e: os.read(e.fd, 1)),
    ("file-write", "os.write", lambda e: os.write(e.fd, b"x")),
    ("os-stat", "os.stat", lambda e: os.stat(e.path)),
    ("os-listdir", "os.listdir", lambda e: os.listdir(e.path.parent)),
    # the os.listdir / os.scandir they make while consumed are part of the one report
    ("path-iterdir", "pathlib.Path.iterdir", lambda e: list(e.path.parent.iterdir())),
    ("path-glob", "pathlib.Path.glob", lambda e: list(e.path.parent.glob("*"))),
    ("path-rglob", "pathlib.Path.rglob", lambda e: list(e.path.parent.rglob("*"))),
    ("os-exists", "os.stat", lambda e: os.path.exists(e.path)),
    ("subprocess-run", "subprocess.run", lambda e: subprocess.run(["true"], check=True)),
    ("popen", "subprocess.Popen", lambda e: subprocess.Popen(["true"]).wait()),
    ("popen-wait", "subprocess.Popen.wait", lambda e: e.child.wait()),
    ("select", "select.select", lambda e: select.select([e.pair[1]], [], [], 0.001)),
    ("sqlite-connect", "sqlite3.connect", lambda e: sqlite3.connect(":memory:").close()),
    ("path-open", "pathlib.Path.open", lambda e: e.path.open().close()),
    ("future-result", "concurrent.futures.Future.result", lambda e: e.future().result(5)),
    ("queue-get", "queue.Queue.get", lambda e: e.filled_queue().get()),
    ("queue-put", "queue.Queue.put", lambda e: queue.Queue[int](1).put(1)),
    ("thread-join", "threading.Thread.join", lambda e: e.running_thread().join()),
    ("thread-join-timeout", "threading.Thread.join", lambda e: e.running_thread().join(5)),
    (
        "sqlite-execute",
        "sqlite3.Connection.execute",
        lambda e: e.sqlite and e.sqlite.execute("select 1"),
    ),
    ("requests", "requests.get", lambda e: requests.get(e.url, timeout=5)),
    ("urllib3", "urllib3.PoolManager.urlopen", lambda e: e.pool.request("GET", e.url)),
    ("httpx-sync", "httpx.Client.send", lambda e: e.http.get(e.url)),
    ("psycopg2", "psycopg2.connect", lambda e: psycopg2.connect(host=CLOSED, port=9)),
    ("psycopg", "psycopg.connect", lambda e: psycopg.connect(host=CLOSED, port=9)),
    ("psycopg-cls", "psycopg.Connection.connect", lambda e: psycopg.Connection.connect(port=9)),
    ("pymysql", "pymysql.Connection.connect", lambda e: pymysql.connect(host=CLOSED, port=9)),
    ("botocore", "botocore.client.BaseClient._make_api_call", lambda e: e.s3.list_buckets()),
]

DRIVER_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ssl.SSLError,
    psycopg2.OperationalError,
    psycopg.OperationalError,
    pymysql.err.OperationalError,
)


def _params() -> list[Any]:
    return [pytest.param(name, call, id=case) for case, name, call in MATRIX]


@pytest.mark.parametrize(("function", "call"), _params())
async def test_blocking_call_on_the_loop_is_reported(function: str, call: Case, env: Env) -> None:
    with detect_blocking(mode="raise") as detector:
        env.sqlite = await run_sync(sqlite3.connect, ":memory:", check_same_thread=False)
        with pytest.raises(BlockingCallError) as raised:
            call(env)
    assert [r.function for r in detector.reports] == [function]
    report = detector.reports[0]
    assert report.loop == current_loop_kind() or report.loop in {"asyncio", "trio"}
    assert report.user_frame is not None
    assert report.user_frame.filename == __file__
    assert report.user_frame.line  # the line of this file that made the call
    assert report.fix.startswith(f"{function} -> ")
    assert function in str(raised.value)
    assert f"{os.path.basename(__file__)}:{report.user_frame.lineno}" in str(raised.value)


@pytest.mark.parametrize(("function", "call"), _params())
async def test_same_call_through_asyncify_is_not_reported(
    function: str, call: Case, env: Env
) -> None:
    def off_loop() -> None:
        # closed ports and a non-TLS server: the call runs, and fails
        with contextlib.suppress(*DRIVER_ERRORS):
            call(env)

    with detect_blocking(mode="raise") as detector:
        env.sqlite = await run_sync(sqlite3.connect, ":memory:", check_same_thread=False)
        await asyncify(off_loop)()
    assert detector.reports == []


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """Two directories of one file each, made off the loop (a sync fixture)."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "f").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize("method", ["iterdir", "glob", "rglob"])
async def test_a_lazy_path_listing_is_one_report_and_allowing_it_covers_its_steps(
    method: str, tree: pathlib.Path
) -> None:
    tmp_path = tree
    pattern = () if method == "iterdir" else ("*",)
    with detect_blocking(mode="collect") as detector:
        for _ in getattr(tmp_path, method)(*pattern):
            time.sleep(0)  # non-blocking; the steps' guard must not cover the loop's body
            os.stat(tmp_path)  # user code between steps is still reported
    assert [r.function for r in detector.reports][:2] == [f"pathlib.Path.{method}", "os.stat"]
    assert {r.function for r in detector.reports} == {f"pathlib.Path.{method}", "os.stat"}
    assert [r.function for r in detector.reports].count(f"pathlib.Path.{method}") == 1

    with detect_blocking(mode="raise", allow=[f"pathlib.Path.{method}"]) as detector:
        assert len(list(getattr(tmp_path, method)(*pattern))) >= 2
        listing = getattr(tmp_path, method)(*pattern)
        next(listing)
        listing.close()  # left early: closing it runs no unguarded blocking call
    assert detector.reports == []


async def test_a_path_listing_made_off_the_loop_and_consumed_on_it_is_reported(
    tree: pathlib.Path,
) -> None:
    with detect_blocking(mode="collect") as detector:
        listing = await run_sync(tree.rglob, "*")
        assert len(list(listing)) == 4
    functions = {r.function for r in detector.reports}
    # the calls that blocked ran on the loop: reported (os.scandir; on 3.10, whose pathlib
    # calls the os.scandir it bound at import, Path.is_dir only)
    assert functions & {"os.scandir", "pathlib.Path.is_dir"}
    assert "pathlib.Path.rglob" not in functions  # made off the loop


async def test_non_blocking_socket_calls_are_not_reported() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        with detect_blocking(mode="raise") as detector:
            a.send(b"ping")
            await anyio.sleep(0.01)
            assert b.recv(4) == b"ping"
            socket.getaddrinfo("127.0.0.1", 80, flags=socket.AI_NUMERICHOST)
            select.select([b], [], [], 0)
            time.sleep(0)
    finally:
        a.close()
        b.close()
    assert detector.reports == []


async def test_waits_for_threads_that_cannot_block_are_not_reported() -> None:
    done: concurrent.futures.Future[int] = concurrent.futures.Future()
    done.set_result(1)
    unbounded: queue.Queue[int] = queue.Queue()
    bounded: queue.Queue[int] = queue.Queue(1)
    with detect_blocking(mode="raise") as detector:
        assert done.result() == 1
        assert done.exception() is None
        unbounded.put(1)
        assert unbounded.get_nowait() == 1
        bounded.put_nowait(2)
        with pytest.raises(queue.Full):
            bounded.put(3, timeout=0)
        assert bounded.get(block=False) == 2
        with pytest.raises(queue.Empty):
            bounded.get(timeout=0)
        pending: concurrent.futures.Future[int] = concurrent.futures.Future()
        with pytest.raises(concurrent.futures.TimeoutError):
            pending.result(timeout=0)
        starting = threading.Thread(target=int)
        starting.start()  # waits for the thread to begin: not reported
        await anyio.to_thread.run_sync(starting.join)
    assert detector.reports == []


async def test_thread_join_is_reported_only_when_it_can_block() -> None:
    release = threading.Event()
    finished = threading.Thread(target=int)
    finished.start()
    await run_sync(finished.join)
    waiting = threading.Thread(target=release.wait, args=(5,), daemon=True)
    waiting.start()
    with detect_blocking(mode="collect") as detector:
        finished.join()  # not alive: returns at once
        finished.join(5)
        waiting.join(timeout=0)  # only polls
        waiting.join(0)
        waiting.join(-1)  # a negative timeout is a zero one
        assert waiting.is_alive()
        with pytest.raises(RuntimeError, match="before it is started"):
            threading.Thread(target=int).join()  # raises at once, as without the detector
        with pytest.raises(RuntimeError, match="current thread"):
            threading.current_thread().join()
        sleeper = threading.Thread(target=time.sleep, args=(0.05,))
        sleeper.start()
        await run_sync(sleeper.join)  # from a worker thread
        assert detector.reports == []
        threading.Timer(0.02, release.set).start()
        waiting.join(5)  # on the loop thread, of a running thread: blocks until it ends
    assert not waiting.is_alive()
    [report] = detector.reports
    assert (report.function, report.kind) == ("threading.Thread.join", "thread")
    assert report.user_frame is not None
    assert report.user_frame.line.startswith("waiting.join(5)")
    assert report.duration is not None and report.duration > 0


async def test_the_loops_own_networking_is_not_reported(http_url: str) -> None:
    port = int(http_url.rsplit(":", 1)[1])
    with detect_blocking(mode="raise") as detector:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            with anyio.fail_after(5):
                async for chunk in stream:
                    data += chunk
        assert await anyio.getaddrinfo("localhost", port)
    assert data.startswith(b"HTTP/1.1 200")
    assert detector.reports == []


async def test_plain_threads_are_never_reported() -> None:
    with detect_blocking(mode="raise") as detector:
        thread = threading.Thread(target=time.sleep, args=(0.001,))
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        await anyio.to_thread.run_sync(time.sleep, 0.001)
    assert detector.reports == []


def _library_call(url: str) -> None:
    requests.get(url, timeout=5)  # the user frame of test_user_frame_skips_library_frames


async def test_user_frame_skips_library_frames_and_nested_calls_report_once(
    http_url: str,
) -> None:
    with detect_blocking(mode="collect") as detector:
        _library_call(http_url)
    assert [r.function for r in detector.reports] == ["requests.get"]
    report = detector.reports[0]
    assert report.user_frame is not None
    assert report.user_frame.function == "_library_call"
    assert (
        report.user_frame.line
        == "requests.get(url, timeout=5)  # the user frame of test_user_frame_skips_library_frames"
    )
    assert report.duration is not None and report.duration > 0
    assert (
        "fix: requests.get -> asyncify_kit.http.HttpClient, or decorate the caller with @asyncify"
        in str(report)
    )


async def test_no_secret_in_reports(http_url: str) -> None:
    password, token, bearer = "s3cr3t-pw", "t0ken", "b3arer"
    url = http_url.replace("http://", f"http://alice:{password}@") + f"/?token={token}"
    headers = {"Authorization": f"Bearer {bearer}"}
    with detect_blocking(mode="collect") as detector:
        requests.Session().get(url, timeout=5, headers=headers)
    text = "\n".join(str(r) + repr(r) for r in detector.reports)
    assert detector.reports
    for secret in ("s3cr3t-pw", "t0ken", "b3arer"):
        assert secret not in text


# -- modes -------------------------------------------------------------------------------------


async def test_raise_mode_does_not_run_the_call() -> None:
    started = time.perf_counter()
    with detect_blocking(mode="raise"), pytest.raises(BlockingCallError):
        time.sleep(2)
    assert time.perf_counter() - started < 1


@pytest.mark.allow_blocking("time.sleep")  # a warn/log detector passes calls on to the plugin
async def test_warn_mode_warns_at_the_user_line() -> None:
    with detect_blocking(mode="warn") as detector, pytest.warns(BlockingCallWarning) as record:
        time.sleep(0.001)
    assert len(detector.reports) == 1
    assert record[0].filename == __file__
    assert record[0].lineno == detector.reports[0].site.lineno
    assert issubclass(BlockingCallWarning, RuntimeWarning)


@pytest.mark.allow_blocking("time.sleep")  # a warn/log detector passes calls on to the plugin
async def test_log_mode_logs_once_per_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="asyncify_kit.detect")
    with detect_blocking(mode="log") as detector:
        for _ in range(3):
            time.sleep(0)  # zero: not blocking, not reported
            time.sleep(0.001)
    assert len(detector.reports) == 3
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncify_kit.detect"]
    assert len(messages) == 1
    assert "blocking call time.sleep" in messages[0]


async def test_collect_mode_measures_duration() -> None:
    with detect_blocking(mode="collect") as detector:
        time.sleep(0.02)
    (report,) = detector.reports
    assert report.duration is not None and report.duration >= 0.015
    assert "blocked the loop for" in report.format()
    assert detector.clear() == [report]
    assert detector.reports == []


def test_invalid_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="accepted: raise, warn, log, collect"):
        detect_blocking(mode="loud")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="invalid allow pattern"):
        detect_blocking(allow=[""])
    for kind in ("DNS", "network", ""):  # a kind that does not exist would allow nothing
        with pytest.raises(ConfigError, match=f"no kind '{kind}'; accepted: kind:aws, kind:dns"):
            detect_blocking(allow=[f"kind:{kind}"])
    with pytest.raises(ConfigError, match="kind:subprocess"):
        allow_blocking("kind:sleeping")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("log_interval", float("nan")),  # every call was logged: no rate limit at all
        ("log_interval", -1.0),
        ("log_interval", True),
        ("log_interval", "60"),
        ("max_reports", -5),  # every report was dropped
        ("max_reports", 2.5),
        ("max_reports", True),
    ],
)
def test_bad_report_limits_are_config_errors(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"invalid {option} .* for detect_blocking; accepted"):
        detect_blocking(**{option: value})  # type: ignore[arg-type]


def test_report_limits_take_zero_and_inf() -> None:
    assert detect_blocking(log_interval=0).log_interval == 0
    assert detect_blocking(log_interval=float("inf")).log_interval == float("inf")
    assert detect_blocking(max_reports=0).max_reports == 0


# -- allow-lists -------------------------------------------------------------------------------


def _sleep_here() -> None:
    time.sleep(0.001)


async def test_allow_by_function_module_kind_and_site() -> None:
    site = f"{os.path.basename(__file__)}:{_sleep_here.__code__.co_firstlineno + 1}"
    for allow in (["time.*"], [f"module:{__name__}"], ["kind:sleep"], [site], ["*"]):
        with detect_blocking(mode="raise", allow=allow) as detector:
            _sleep_here()
        assert detector.reports == [], allow
    others = ["os.*", "module:other.*", "elsewhere.py:1"]
    with detect_blocking(mode="raise", allow=others), pytest.raises(BlockingCallError):
        _sleep_here()


async def test_allow_blocking_context_manager_and_decorator() -> None:
    @allow_blocking("time.sleep")
    async def tolerated() -> None:
        time.sleep(0.001)

    with detect_blocking(mode="raise") as detector:
        with allow_blocking():
            time.sleep(0.001)
        await tolerated()
        with allow_blocking("os.*"), pytest.raises(BlockingCallError):
            time.sleep(0.001)
    assert [r.function for r in detector.reports] == ["time.sleep"]


# -- activation ----------------------------------------------------------------------------


# checks the global patch state: the plugin's own detector would keep the patches in
@pytest.mark.allow_blocking
def test_patches_are_restored_exactly() -> None:
    originals = (time.sleep, socket.getaddrinfo, open, os.stat, sqlite3.connect)
    had_send = "send" in socket.socket.__dict__
    join = threading.Thread.__dict__["join"]
    with detect_blocking():
        assert time.sleep is not originals[0]
        assert "send" in socket.socket.__dict__
        assert threading.Thread.__dict__["join"] is not join
        with detect_blocking(mode="collect"):
            pass
        assert time.sleep is not originals[0]
        assert is_active()
    assert (time.sleep, socket.getaddrinfo, open, os.stat, sqlite3.connect) == originals
    assert ("send" in socket.socket.__dict__) == had_send
    assert threading.Thread.__dict__["join"] is join
    assert not is_active()


EXIT_SCRIPT = """
import asyncio, concurrent.futures, threading, time
from asyncify_kit import asyncify
from asyncify_kit.detect import detect_blocking

detect_blocking(mode="raise").__enter__()  # never left: still active at exit
assert hasattr(threading.Thread.join, "__asyncify_detect_rule__")
executor = concurrent.futures.ThreadPoolExecutor(2)


async def main() -> None:
    await asyncify(time.sleep)(0.01)  # an asyncify pool, joined by its atexit hook
    await asyncio.wrap_future(executor.submit(time.sleep, 0.01))  # joined by threading's
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.01)


asyncio.run(main())  # joins the default executor's shutdown thread on the loop thread
print("done")
"""


def test_threads_are_joined_at_exit_while_a_detector_is_active() -> None:
    """asyncio's own joins, and those of the thread pools at interpreter exit, still work."""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    proc = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, env=env, timeout=60
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "done\n", "")


async def test_innermost_detector_gets_the_report() -> None:
    with detect_blocking(mode="raise") as outer:
        with detect_blocking(mode="collect") as inner:
            time.sleep(0.001)
        with pytest.raises(BlockingCallError):
            time.sleep(0.001)
    assert len(inner.reports) == 1
    assert len(outer.reports) == 1


async def test_log_and_warn_detectors_pass_the_call_on_to_the_detectors_around_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncify_kit.detect")
    with detect_blocking(mode="collect") as outermost:
        with detect_blocking(mode="raise") as test_level:
            with detect_blocking(mode="log") as app, pytest.raises(BlockingCallError):
                time.sleep(0.001)  # logged by the app's detector, raised by the test's
            with (
                detect_blocking(mode="warn", allow=["time.sleep"]) as quiet,
                pytest.raises(BlockingCallError),
            ):
                time.sleep(0.001)  # the warn detector allows it; the raise one does not
        with detect_blocking(mode="raise", allow=["time.sleep"]) as deciding:
            time.sleep(0.001)  # allowed by a detector that decides: nobody further out sees it
    assert [r.function for r in app.reports] == ["time.sleep"]
    assert quiet.reports == [] and deciding.reports == []
    assert len(test_level.reports) == 2 and test_level.reports[0] is app.reports[0]
    assert outermost.reports == []  # the raise detector inside decided every call
    assert [r.name for r in caplog.records] == ["asyncify_kit.detect"]


# sync: each thread's loop is watched by the detector activated on it, not by this test's
def test_a_detector_on_a_loop_watches_that_loop_only() -> None:
    a_active, b_active, a_blocked = threading.Event(), threading.Event(), threading.Event()
    detectors: dict[str, list[str]] = {}

    async def loop_a() -> None:
        with detect_blocking(mode="collect") as detector:
            a_active.set()
            assert b_active.wait(10)
            time.sleep(0.001)  # blocks loop A while B's detector is the latest activated
            a_blocked.set()
        detectors["a"] = [r.function for r in detector.reports]

    async def loop_b() -> None:
        assert a_active.wait(10)
        with detect_blocking(mode="collect") as detector:
            b_active.set()
            while not a_blocked.is_set():
                await asyncio.sleep(0.001)
        detectors["b"] = [r.function for r in detector.reports]

    threads = [threading.Thread(target=asyncio.run, args=(main(),)) for main in (loop_a, loop_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert detectors == {"a": ["time.sleep"], "b": []}


# checks the global patch state: the plugin's own detector would keep the patches in
@pytest.mark.allow_blocking
async def test_decorator_on_sync_and_async_functions() -> None:
    detector = detect_blocking(mode="collect")

    @detector
    async def handler() -> None:
        time.sleep(0.001)

    @detector
    def in_loop_callback() -> None:
        time.sleep(0.001)

    await handler()
    in_loop_callback()
    time.sleep(0.001)  # not active any more
    assert len(detector.reports) == 2
    assert not is_active()


# checks the global patch state: the plugin's own detector would keep the patches in
@pytest.mark.allow_blocking
async def test_decorator_watches_each_step_of_a_generator_and_nothing_between() -> None:
    # the decorator used to return the generator at once and stop watching: nothing reported
    detector = detect_blocking(mode="collect")

    @detector
    async def watched_items() -> AsyncIterator[int]:
        time.sleep(0.001)
        yield 1
        time.sleep(0.001)
        yield 2

    @detector
    def watched_sync_items() -> Iterator[int]:
        time.sleep(0.001)
        yield 3

    items = []
    async for item in watched_items():
        time.sleep(0.001)  # the consumer, between the steps: not watched
        items.append(item)
    for item in watched_sync_items():
        time.sleep(0.001)
        items.append(item)
    assert items == [1, 2, 3]
    assert [r.site.function for r in detector.reports] == [
        "watched_items",
        "watched_items",
        "watched_sync_items",
    ]
    assert not is_active()


async def test_allow_blocking_decorator_on_generators() -> None:
    # the scope used to end when the generator was created, before its body ran
    @allow_blocking("time.sleep")
    async def tolerated_items() -> AsyncGenerator[int, None]:
        time.sleep(0.001)
        yield 1
        time.sleep(0.001)
        yield 2

    @allow_blocking("time.sleep")
    def tolerated_sync_items() -> Iterator[int]:
        time.sleep(0.001)
        yield 3

    with detect_blocking(mode="raise") as detector:
        assert [item async for item in tolerated_items()] == [1, 2]
        assert list(tolerated_sync_items()) == [3]
        items = tolerated_items()
        assert await items.__anext__() == 1
        with pytest.raises(BlockingCallError):
            time.sleep(0.001)  # between two steps: not allowed
        await items.aclose()
    assert [r.function for r in detector.reports] == ["time.sleep"]


def test_decorated_generators_keep_send_throw_close_and_return() -> None:
    closed: list[str] = []

    @allow_blocking()
    def echo() -> Generator[int, int, str]:
        try:
            received = yield 1
            try:
                yield received * 10
            except KeyError:
                yield -1
            return "done"
        finally:
            closed.append("echo")

    gen = echo()
    assert next(gen) == 1
    assert gen.send(4) == 40
    assert gen.throw(KeyError("k")) == -1
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done"
    assert closed == ["echo"]
    gen = echo()
    next(gen)
    gen.close()
    assert closed == ["echo", "echo"]

    @allow_blocking()
    async def numbers() -> AsyncGenerator[int, int]:
        try:
            got = yield 1
            yield got + 1
        finally:
            closed.append("numbers")

    async def drive() -> list[int]:
        agen = numbers()
        out = [await agen.__anext__(), await agen.asend(5)]
        await agen.aclose()
        return out

    assert anyio.run(drive) == [1, 6]
    assert closed[-1] == "numbers"


# checks the global patch state: the plugin's own detector would keep the patches in
@pytest.mark.allow_blocking
def test_concurrent_activations_from_many_threads() -> None:
    errors: list[BaseException] = []
    reports: list[int] = []

    def loop_thread() -> None:
        async def main() -> None:
            with detect_blocking(mode="collect") as detector:
                for _ in range(50):
                    time.sleep(0)
                    await asyncio.sleep(0)
                time.sleep(0.001)
            reports.append(len(detector.reports))

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    def churn() -> None:
        try:
            for _ in range(200):
                with detect_blocking(mode="collect"):
                    time.sleep(0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    threads += [threading.Thread(target=loop_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(reports) == 2
    assert not is_active()
    assert time.sleep.__module__ == "time"


@pytest.mark.allow_blocking("time.sleep")  # a warn/log detector passes calls on to the plugin
async def test_warning_filter_error_turns_warn_mode_into_exceptions() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", BlockingCallWarning)
        with detect_blocking(mode="warn"), pytest.raises(BlockingCallWarning):
            time.sleep(0.001)


# checks the global patch state: the plugin's own detector would keep the patches in
@pytest.mark.allow_blocking
def test_os_capability_sets_know_the_wrappers() -> None:
    assert os.stat in os.supports_follow_symlinks
    with detect_blocking():
        assert {os.open, os.stat, os.unlink} <= os.supports_dir_fd
        assert os.stat in os.supports_fd
        patched = os.stat
    assert patched not in os.supports_follow_symlinks
    assert os.stat in os.supports_follow_symlinks


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_known_library_calls_are_allowed_by_default(postgres_url: str) -> None:
    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

    with detect_blocking(mode="raise"):
        connection = await asyncpg.connect(postgres_url)
        await connection.close()
    with detect_blocking(mode="collect", allow_known=False) as detector:
        connection = await asyncpg.connect(postgres_url)
        await connection.close()
    assert detector.reports
    assert {r.caller.module for r in detector.reports} == {"asyncpg.connect_utils"}


@pytest.fixture
def fake_modules(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """An "installed" module and a user module, each calling os.path.exists at import time."""
    suffix = tmp_path.name.replace("-", "_")
    library, app = f"detect_fake_lib_{suffix}", f"detect_fake_app_{suffix}"
    installed = tmp_path / "site-packages"
    installed.mkdir()
    (installed / f"{library}.py").write_text("import os\nFOUND = os.path.exists('/')\n")
    (tmp_path / f"{app}.py").write_text("import os\nFOUND = os.path.exists('/')\n")
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield library, app
    sys.modules.pop(library, None)
    sys.modules.pop(app, None)


async def test_installed_library_module_code_run_by_an_import_is_not_reported(
    fake_modules: tuple[str, str],
) -> None:
    library, app = fake_modules
    with detect_blocking(mode="collect") as detector:
        assert importlib.import_module(library).FOUND
        assert importlib.import_module(app).FOUND
    # the user's own module-level code blocks when imported on the loop: reported
    assert [r.site.module for r in detector.reports] == [app]


async def test_allow_blocking_decorator_in_concurrent_tasks() -> None:
    @allow_blocking("time.sleep")
    async def tolerated(delay: float) -> None:
        await anyio.sleep(delay)
        time.sleep(0.001)

    with detect_blocking(mode="raise") as detector:
        async with anyio.create_task_group() as tg:
            tg.start_soon(tolerated, 0.02)
            tg.start_soon(tolerated, 0.01)
    assert detector.reports == []


# -- file objects (track_files=True) -------------------------------------------------------

FILE_CALLS: list[tuple[str, str, str, Callable[[Any], object]]] = [
    ("text-read", "r", "io.TextIOWrapper.read", lambda f: f.read()),
    ("text-readline", "r", "io.TextIOWrapper.readline", lambda f: f.readline()),
    ("text-iterate", "r", "io.TextIOWrapper.__next__", lambda f: next(iter(f))),
    ("text-write", "a", "io.TextIOWrapper.write", lambda f: f.write("more")),
    ("binary-read", "rb", "io.BufferedReader.read", lambda f: f.read(3)),
    ("binary-readinto", "rb", "io.BufferedReader.readinto", lambda f: f.readinto(bytearray(3))),
    ("binary-write", "ab", "io.BufferedWriter.write", lambda f: f.write(b"more")),
    ("binary-flush", "ab", "io.BufferedWriter.flush", lambda f: f.flush()),
    ("random-read", "r+b", "io.BufferedRandom.read", lambda f: f.read(1)),
]


@pytest.mark.parametrize(
    ("mode", "function", "call"),
    [pytest.param(mode, name, call, id=case) for case, mode, name, call in FILE_CALLS],
)
async def test_file_object_calls_on_the_loop_are_reported_wherever_opened(
    mode: str, function: str, call: Callable[[Any], object], env: Env
) -> None:
    with detect_blocking(mode="raise", track_files=True) as detector:
        handle = await run_sync(open, env.path, mode)  # opened in a worker thread
        try:
            await run_sync(call, handle)  # off the loop: fine
            with pytest.raises(BlockingCallError):
                call(handle)
        finally:
            await run_sync(handle.close)
    assert [r.function for r in detector.reports] == [function]
    assert detector.reports[0].user_frame is not None
    assert detector.reports[0].user_frame.filename == __file__


async def test_close_is_checked_under_its_own_name_on_files_open_for_writing_only(
    env: Env,
) -> None:
    with detect_blocking(mode="raise", track_files=True) as detector:
        for mode in ("r", "rb"):
            handle = await run_sync(open, env.path, mode)
            await run_sync(handle.read)
            with handle:  # reading only: flush() and close() write nothing
                handle.flush()
            assert handle.closed
        handle = await run_sync(open, env.path, "a")
        await run_sync(handle.write, " world")
        try:
            with pytest.raises(BlockingCallError, match=r"io\.TextIOWrapper\.close "):
                handle.close()  # writes out " world": reported once, as close
        finally:
            await run_sync(handle.close)
    assert [r.function for r in detector.reports] == ["io.TextIOWrapper.close"]
    with detect_blocking(mode="collect", track_files=True) as detector:
        binary = await run_sync(open, env.path, "ab")
        await run_sync(binary.write, b"!")
        binary.close()
    assert [r.function for r in detector.reports] == ["io.BufferedWriter.close"]
    assert await run_sync(env.path.read_text) == "hello world!"


@pytest.mark.allow_blocking  # compares file contents with plain open() on purpose
async def test_tracked_files_behave_like_plain_ones(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_bytes(b"one\r\ntwo\nthree")

    def read_all(newline: str | None) -> tuple[object, ...]:
        with open(path, newline=newline) as text, open(path, "rb") as binary:
            lines = list(text)
            binary.seek(2)
            return (lines, binary.read(), binary.tell(), text.mode, text.encoding, binary.mode)

    expected = [read_all(newline) for newline in (None, "", "\n")]
    with detect_blocking(mode="collect", track_files=True):
        tracked = [await run_sync(read_all, newline) for newline in (None, "", "\n")]
        handle = await run_sync(open, path)
        assert isinstance(handle, io.TextIOWrapper) and type(handle) is not io.TextIOWrapper
        await run_sync(handle.close)
    assert tracked == expected
    with detect_blocking(mode="collect"):
        handle = await run_sync(open, path)
        assert type(handle) is io.TextIOWrapper  # not tracking: the plain object
        await run_sync(handle.close)
