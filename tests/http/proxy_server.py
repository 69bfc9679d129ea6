"""A real HTTP forward proxy on 127.0.0.1, in threads, for the tests of ``HttpClient(proxy=)``
(and `TlsFront`, an https endpoint in front of a plain one).

An absolute-form request (``GET http://host:port/path HTTP/1.1``) is sent on to its origin,
one per connection; ``CONNECT host:port`` opens a tunnel that relays bytes both ways. With
*credentials*, a request without the matching ``Proxy-Authorization`` gets ``407``. What the
proxy saw (request lines and their ``Proxy-Authorization``) is kept in `seen`.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
from urllib.parse import urlsplit

_HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}


def _read_head(conn: socket.socket, data: bytes = b"") -> tuple[bytes, bytes]:
    """The head of a message (up to the empty line) and the bytes read past it; *data* is
    what was read of it already."""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class ThreadedServer:
    """A listening socket on 127.0.0.1 whose connections are served each on a thread."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._accepting.join(5)
        for thread in list(self._threads):
            thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class ForwardProxy(ThreadedServer):
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.expected = None
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            self.expected = f"Basic {token}"
        self.seen: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                head, rest = _read_head(conn)
            except (ConnectionError, OSError):
                return
            line, *lines = head.decode("latin-1").split("\r\n")
            headers = [tuple(h.split(":", 1)) for h in lines if ":" in h]
            auth = next((v.strip() for k, v in headers if k.lower() == "proxy-authorization"), None)
            with self._lock:
                self.seen.append((line, auth))
            if self.expected is not None and auth != self.expected:
                conn.sendall(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return
            method, target, _ = line.split(" ", 2)
            if method == "CONNECT":
                self._tunnel(conn, target, rest)
            else:
                self._forward(conn, method, target, headers, rest)

    def _tunnel(self, conn: socket.socket, target: str, rest: bytes) -> None:
        host, _, port = target.rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port))) as origin:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                origin.sendall(rest)
            back = threading.Thread(target=relay, args=(origin, conn), daemon=True)
            back.start()
            relay(conn, origin)
            back.join(10)

    def _forward(
        self,
        conn: socket.socket,
        method: str,
        target: str,
        headers: list[tuple[str, ...]],
        rest: bytes,
    ) -> None:
        url = urlsplit(target)
        path = url.path or "/"
        if url.query:
            path += f"?{url.query}"
        kept = [f"{k}:{v}" for k, v in headers if k.strip().lower() not in _HOP_BY_HOP]
        request = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""])
        length = next((int(v) for k, v in headers if k.strip().lower() == "content-length"), 0)
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return
            rest += chunk
        with socket.create_connection((url.hostname or "", url.port or 80)) as origin:
            origin.sendall(request.encode("latin-1") + rest)
            body = b""
            while True:  # informational responses (1xx) as they are, then the final one's head
                head, body = _read_head(origin, body)
                status, *lines = head.decode("latin-1").split("\r\n")
                if not status.split(" ")[1].startswith("1"):
                    break
                conn.sendall(head + b"\r\n\r\n")
            lines = [h for h in lines if h.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP]
            answer = "\r\n".join([status, *lines, "Connection: close", "", ""])
            conn.sendall(answer.encode("latin-1") + body)
            relay(origin, conn)


class TlsFront(ThreadedServer):
    """A TLS server on 127.0.0.1 that relays each connection, decrypted, to *origin*
    (``host:port``): an https endpoint in front of a plain one (moto), with the certificate
    *cert_file* (and its key)."""

    def __init__(self, origin: tuple[str, int], cert_file: str, key_file: str) -> None:
        self._origin = origin
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert_file, key_file)
        super().__init__()
        self.url = f"https://127.0.0.1:{self.port}"

    def _serve(self, raw: socket.socket) -> None:
        try:
            conn = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):  # a client that refused our certificate
            raw.close()
            return
        with conn, socket.create_connection(self._origin) as origin:
            back = threading.Thread(target=relay, args=(origin, conn), daemon=True)
            back.start()
            relay(conn, origin)
            back.join(10)
