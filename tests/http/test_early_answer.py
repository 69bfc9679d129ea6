"""A server that answers before it has read the request body (a ``413`` to an upload it
refuses), then closes the connection: the caller gets that answer, not a `ReadError`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from asyncify_kit.http import HttpClient

from .conftest import COMBOS

pytestmark = pytest.mark.anyio

ANSWER = (
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"
)
BODY = b"x" * (8 << 20)  # far more than the socket buffers hold: the upload blocks


def _serve(listener: socket.socket, stop: threading.Event, linger: bool) -> None:
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                head += chunk
            conn.sendall(ANSWER)
            if linger:
                # as Go's net/http does for a body it left unread: no more to send, a
                # pause for the answer to arrive, then a close (a reset: data is unread)
                conn.shutdown(socket.SHUT_WR)
                time.sleep(0.2)
            # else closed at once, with the body unread: the client's next write is reset


@pytest.fixture
def refusing_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server that answers ``413`` as soon as it has a request's head, then closes the
    connection as *request.param* says: ``linger`` or ``close``."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()
    thread = threading.Thread(
        target=_serve, args=(listener, stop, request.param == "linger"), daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/upload"
    finally:
        stop.set()
        thread.join()
        listener.close()


CASES = [
    pytest.param((backend, loop), mode, id=f"{backend}-{loop}-{mode}")
    for backend, loop in COMBOS
    for mode in ("linger", "close")
]

# on trio, httpx's ByteStream of a request body whose sending failed warns when collected
# unfinished (an httpx limitation: see test_cancellation_storm)
UNFINISHED_BODY = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object ByteStream\.__aiter__"
    ":pytest.PytestUnraisableExceptionWarning"
)


@UNFINISHED_BODY
@pytest.mark.parametrize(("combo", "refusing_server"), CASES, indirect=True)
async def test_an_answer_sent_before_the_body_was_read_reaches_the_caller(
    refusing_server: str, backend: str
) -> None:
    """httpx on asyncio raised `ReadError` every time (asyncio closed the socket, the
    answer unread, when the write failed), aiohttp now and then when the server closed at
    once; requests and httpx on trio returned the answer. The connection the answer came
    on is not kept: aiohttp left it open (its transport waiting to send the rest of the
    body) past the client's close, which the suite's check of unclosed sockets reports."""
    async with HttpClient(backend=backend, timeout=10) as http:
        for _ in range(3):  # each on a new connection (the server closed the last one)
            response = await http.post(refusing_server, content=BODY)
            assert (response.status_code, response.content) == (413, b"too large")
