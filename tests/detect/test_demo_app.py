"""The demo app (``asyncify-kit demo``) under the detector.

Its blocking variant must produce exactly one report per request, pointing at the handler's
line; the ``@asyncify``, threadpool and native variants none. The demo app runs under uvicorn
on 127.0.0.1 in a thread of this process with its own event loop (the demo itself serves it
from a child process, which an in-process detector cannot watch).
"""

from __future__ import annotations

import inspect
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from asyncify_kit import _demo
from asyncify_kit.detect import detect_blocking


def _handler_line(app: FastAPI) -> int:
    """The line of the demo's blocking handler that calls the blocking stand-in."""
    (endpoint,) = [r.endpoint for r in app.routes if getattr(r, "path", "") == "/slow/blocking"]  # type: ignore[attr-defined]
    source, first = inspect.getsourcelines(endpoint)
    (offset,) = [i for i, line in enumerate(source) if "legacy_report(" in line]
    return first + offset


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="demo-uvicorn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_demo_blocking_variant_reports_once_per_request_at_the_handler_line() -> None:
    app = _demo.build_app()
    with (
        detect_blocking(mode="collect") as detector,
        serve_in_thread(app) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        for variant in ("asyncify", "threadpool", "native"):
            assert client.get(f"/slow/{variant}", params={"d": 0.01}).status_code == 200
        assert client.get("/").status_code == 200
        assert detector.reports == []
        for _ in range(3):
            assert client.get("/slow/blocking", params={"d": 0.01}).status_code == 200
    assert len(detector.reports) == 3
    for report in detector.reports:
        assert report.function == "time.sleep"
        assert report.loop == "asyncio"
        assert report.user_frame is not None
        assert report.user_frame.filename == _demo.__file__
        assert report.user_frame.function == "slow_blocking"
        assert report.user_frame.lineno == _handler_line(app)
        assert report.caller.function == "legacy_report"
        assert report.thread == "demo-uvicorn"
