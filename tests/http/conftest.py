"""Fixtures of the HTTP suite: the real uvicorn test server (one subprocess per session) and
the (backend, event loop) pairs every conformance test runs on."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SERVER_SCRIPT = Path(__file__).with_name("server.py")

# aiohttp runs on asyncio only; its trio behaviour has its own test
COMBOS = [
    ("httpx", "asyncio"),
    ("httpx", "trio"),
    ("aiohttp", "asyncio"),
    ("requests", "asyncio"),
    ("requests", "trio"),
]


@dataclass(frozen=True)
class ServerInfo:
    url: str
    drop_url: str
    process: subprocess.Popen[bytes]


def start_server() -> ServerInfo:
    """Start ``server.py`` in its own process and wait for its ports."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError("the HTTP test server did not start")
    ports = json.loads(line)
    return ServerInfo(
        f"http://127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['drop_port']}", process
    )


def stop_server(server: ServerInfo) -> None:
    server.process.kill()  # no graceful shutdown: it would wait for the slow handlers
    server.process.wait()
    if server.process.stdout is not None:
        server.process.stdout.close()


@pytest.fixture(scope="session")
def http_server() -> Iterator[ServerInfo]:
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def other_http_server() -> Iterator[ServerInfo]:
    """A second server: another origin (same scheme and host, another port) for the tests
    of what a cross-origin redirect carries."""
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(params=COMBOS, ids=[f"{b}-{loop}" for b, loop in COMBOS])
def combo(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(combo: tuple[str, str]) -> str:
    return combo[1]


@pytest.fixture
def backend(combo: tuple[str, str]) -> str:
    return combo[0]


@pytest.fixture
def test_id() -> str:
    """A fresh id for the server's per-test attempt counter."""
    return uuid.uuid4().hex


class QuietHandler(BaseHTTPRequestHandler):
    """A keep-alive HTTP/1.1 handler for `local_server` that logs nothing; `answer` sends a
    200 with a body."""

    protocol_version = "HTTP/1.1"

    def answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _EarlyHintsHandler(QuietHandler):
    """A 103 Early Hints and a 102 Processing before each final answer (its path)."""

    def do_GET(self) -> None:
        hints = 101 if self.path == "/endless" else 1
        self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" * hints)
        self.wfile.write(b"HTTP/1.1 102 Processing\r\n\r\n")
        self.answer(self.path.encode())


@contextlib.contextmanager
def local_server(
    handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """A threaded server of *handler* on 127.0.0.1 (over TLS with *tls*), for the block:
    its base URL (``http://`` or ``https://127.0.0.1:PORT``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"{'http' if tls is None else 'https'}://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def early_hints_server() -> Iterator[str]:
    with local_server(_EarlyHintsHandler) as url:
        yield url
