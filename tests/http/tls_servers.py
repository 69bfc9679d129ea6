"""Two real servers on the default ports of one loopback address, for the redirect from
``http://HOST`` to ``https://HOST``: plain HTTP on port 80 and TLS on port 443 (a
self-signed certificate made at start-up; clients connect with ``verify=False``).

Run as ``python tls_servers.py HOST``; prints ``ready`` once both listen, and serves until
stdin closes. Both answer:

* ``/echo``: 200, the request's headers as JSON ``{"scheme": ..., "headers": {...}}``;
* ``/to-https``: 302 to ``https://HOST/echo`` (the other origin, default ports);
* ``/to-echo``: 302 to ``/echo`` (the same origin).

Binding ports 80 and 443 takes root (or ``CAP_NET_BIND_SERVICE``).
"""

from __future__ import annotations

import json
import ssl
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_certificate(host: str, directory: Path) -> tuple[Path, Path]:
    """A certificate for the IP address *host* (of a CA made for it), and its key, as PEM
    files."""
    from scripts.tls_files import make_ca

    _, cert_file, key_file = make_ca(directory, "server", host)
    return cert_file, key_file


def handler(host: str, scheme: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/echo":
                seen = {k.lower(): v for k, v in self.headers.items()}
                self.answer(200, json.dumps({"scheme": scheme, "headers": seen}).encode())
            elif self.path == "/to-https":
                self.answer(302, b"", location=f"https://{host}/echo")
            elif self.path == "/to-echo":
                self.answer(302, b"", location="/echo")
            else:
                self.answer(404, b"not found")

        def answer(self, status: int, body: bytes, location: str | None = None) -> None:
            self.send_response(status)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    host = sys.argv[1]
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # (for `scripts`)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = make_certificate(host, Path(tmp))
        plain = ThreadingHTTPServer((host, 80), handler(host, "http"))
        secure = ThreadingHTTPServer((host, 443), handler(host, "https"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        secure.socket = context.wrap_socket(secure.socket, server_side=True)
        for server in (plain, secure):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes our stdin
        for server in (plain, secure):
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    main()
