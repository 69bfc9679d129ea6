"""The HTTP test server: a plain ASGI app under uvicorn on 127.0.0.1, run as a subprocess.

``python tests/http/server.py`` binds free ports, prints one JSON line
``{"port": P, "drop_port": D}`` and serves until killed. ``drop_port`` is a raw TCP server that
reads a request and closes the connection without answering. The app counts the attempts it
sees per test id (``/retry/<id>``, ``/attempts/<id>``) so retry tests can check them.
``/storm/<rid>`` (and ``/storm-redirect/<rid>/<hops>``) answer with a body that names request
*rid* in every byte, for the cancellation storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import hashlib
import json
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ATTEMPTS: Counter[str] = Counter()
# the password /goto-userinfo puts in its Location: it appears in no request a test sends
REDIRECT_PASSWORD = "pw-from-the-server-4711"
PATTERN = bytes(range(256)) * 4096  # 1 MiB, every byte value


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> None:
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode("latin-1")) for k, v in headers or []]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def respond_in_pieces(send: Send, pieces: list[bytes], content_type: bytes) -> None:
    """A 200 whose body goes out as *pieces*, one chunk each, 5 ms apart."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type)],
        }
    )
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        await asyncio.sleep(0.005)
    await send({"type": "http.response.body", "body": b""})


async def respond_json(
    send: Send, value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> None:
    await respond(send, status, json.dumps(value).encode(), headers, "application/json")


def parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = bytes(part.get_payload(decode=True))
        filename = part.get_filename()
        if filename is None:
            fields[str(name)] = payload.decode()
        else:
            fields[str(name)] = {
                "filename": filename,
                "content_type": part.get_content_type(),
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
    return fields


def storm_pieces(rid: str, chunks: int, size: int) -> list[bytes]:
    """The body of ``/storm/<rid>``: *chunks* pieces of *size* bytes (at least the marker),
    each starting ``<rid#i>`` and padded with the id, so that every byte names its request."""
    pieces = []
    for i in range(chunks):
        marker = f"<{rid}#{i}>".encode()
        pad = rid.encode() * (size // max(len(rid), 1) + 1)
        pieces.append((marker + pad)[: max(size, len(marker))])
    return pieces


async def storm(
    scope: Scope, receive: Receive, send: Send, rid: str, query: dict[str, str]
) -> None:
    """``/storm/<rid>``: the request body (if any) read ``read_gap`` seconds per message, then
    ``delay`` seconds before the headers, then `storm_pieces` sent ``gap`` seconds apart, with
    a Content-Length unless ``chunked=1``. ``x-rid`` and ``x-body-sha256`` (of the request
    body) say which request this response answers."""
    read_gap = float(query.get("read_gap", "0"))
    digest = hashlib.sha256()
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        digest.update(body)
        received += len(body)
        if not message.get("more_body"):
            break
        if read_gap:
            await asyncio.sleep(read_gap)
    await asyncio.sleep(float(query.get("delay", "0")))
    pieces = storm_pieces(rid, int(query.get("chunks", "1")), int(query.get("size", "64")))
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"x-rid", rid.encode()),
        (b"x-body-length", str(received).encode()),
        (b"x-body-sha256", digest.hexdigest().encode()),
    ]
    if query.get("chunked") != "1":
        headers.append((b"content-length", str(sum(map(len, pieces))).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    gap = float(query.get("gap", "0"))
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        if gap:
            await asyncio.sleep(gap)
    await send({"type": "http.response.body", "body": b""})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path: str = scope["path"]
    query = dict(parse_qsl(scope["query_string"].decode(), keep_blank_values=True))
    parts = path.strip("/").split("/")
    head, args = parts[0], parts[1:]
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]

    if head == "ok":
        await respond(send, 200, b"ok")
    elif head == "nonascii-headers":
        # "café" in UTF-8 and in Latin-1 (respond() sends each character as one byte)
        await respond(send, 200, b"ok", [("x-utf8", "caf\xc3\xa9"), ("x-latin1", "caf\xe9")])
    elif head == "big-header":
        # /big-header/<size>: an X-Big header and a cookie, each with a value of <size> bytes
        size = int(args[0])
        await respond(
            send, 200, b"ok", [("x-big", "h" * size), ("set-cookie", "big=" + "c" * size)]
        )
    elif head == "status":
        code = int(args[0])
        await respond(send, code, b"" if code in (204, 304) else f"status {code}".encode())
    elif head == "echo":
        body = await read_body(receive)
        ctype = next((v for k, v in headers if k == "content-type"), "")
        value: dict[str, Any] = {
            "method": scope["method"],
            "path": path,
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "body": body.decode("utf-8", errors="replace"),
        }
        if ctype.startswith("multipart/form-data"):
            value["form"] = parse_multipart(ctype, body)
        elif ctype.startswith("application/x-www-form-urlencoded"):
            value["form"] = dict(parse_qsl(body.decode()))
        await respond_json(send, value)
    elif head == "redirect":
        hops = int(args[0])
        if hops > 0:
            await respond(send, 302, b"", [("location", f"/redirect/{hops - 1}")])
        else:
            await respond_json(send, {"redirected": True})
    elif head == "goto-userinfo":
        # 302 to /echo on 127.0.0.1:<port> with user info in the Location: "user" or the
        # default "user:password"
        userinfo = "bob" if query.get("userinfo") == "user" else f"bob:{REDIRECT_PASSWORD}"
        location = f"http://{userinfo}@127.0.0.1:{query['port']}/echo"
        await respond(send, 302, b"", [("location", location)])
    elif head == "redirect-status":
        # /redirect-status/<code>: a <code> redirect to /echo, after reading the body
        await read_body(receive)
        await respond(send, int(args[0]), b"", [("location", "/echo")])
    elif head == "redirect-loop":
        await respond(send, 302, b"", [("location", "/redirect-loop")])
    elif head == "goto":
        await respond(send, 302, b"", [("location", query["to"])])
    elif head == "bytes":
        size = int(args[0])
        body = (PATTERN * (size // len(PATTERN) + 1))[:size]
        await respond(send, 200, body, content_type="application/octet-stream")
    elif head == "stream":
        size, chunk = int(args[0]), int(query.get("chunk", 1 << 20))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        view = memoryview(PATTERN * (chunk // len(PATTERN) + 1))[:chunk]
        sent = 0
        while sent < size:
            n = min(chunk, size - sent)
            await send({"type": "http.response.body", "body": bytes(view[:n]), "more_body": True})
            sent += n
        await send({"type": "http.response.body", "body": b""})
    elif head == "lines":
        pieces = [
            b"alpha\r",
            b"\nbeta\n",
            b"gam",
            b"ma\r\ndel",
            "ta \u00e9\u00e8\n".encode(),
            b"\xe2\x82",
            b"\xac euro\n",
            b"last",
        ]
        await respond_in_pieces(send, pieces, b"text/plain; charset=utf-8")
    elif head == "ndjson":
        # records holding characters str.splitlines() breaks on (U+2028, \x85, \x0b ...), one
        # "\r\n" split across two chunks, and a "\r" ending the last chunk
        pieces = [
            '{"a":"x\u2028y"}\r'.encode(),
            '\n{"b":"\x85\u2029"}\n'.encode(),
            b"col1\x0bcol2\x0cx\x1cy\x1dz\x1e\r",
            b'{"d":1}\r',
        ]
        await respond_in_pieces(send, pieces, b"application/x-ndjson; charset=utf-8")
    elif head == "slow":
        await asyncio.sleep(float(query.get("delay", "1")))
        await respond(send, 200, b"slow")
    elif head == "peer":
        # /peer?delay=S: the client's port, which tells its connections apart, after S seconds
        await asyncio.sleep(float(query.get("delay", "0")))
        await respond(send, 200, str(scope["client"][1]).encode())
    elif head == "slow-body":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"8")]}
        )
        await send({"type": "http.response.body", "body": b"slow", "more_body": True})
        await asyncio.sleep(float(query.get("delay", "1")))
        await send({"type": "http.response.body", "body": b"body"})
    elif head == "truncated":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"100000")],
            }
        )
        await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
        raise RuntimeError("the test server drops this connection on purpose")
    elif head == "retry":
        test_id = args[0]
        ATTEMPTS[test_id] += 1
        count = ATTEMPTS[test_id]
        if count <= int(query.get("fail", "1")):
            extra = []
            if "retry_after" in query:
                extra.append(("retry-after", query["retry_after"]))
            elif "retry_after_date" in query:
                when = time.time() + float(query["retry_after_date"])
                extra.append(("retry-after", formatdate(when, usegmt=True)))
            if "delay" in query:
                await asyncio.sleep(float(query["delay"]))
            await respond(send, int(query.get("status", "503")), b"try again", extra)
        else:
            await read_body(receive)
            await respond_json(send, {"attempts": count})
    elif head == "attempts":
        await respond_json(send, {"attempts": ATTEMPTS[args[0]]})
    elif head == "cookies":
        if args and args[0] == "set":
            # /cookies/set?name=value...[&_domain=D]: each cookie with "Domain=D" when given
            domain = query.pop("_domain", None)
            attributes = "; Path=/" + (f"; Domain={domain}" if domain is not None else "")
            cookies = [("set-cookie", f"{k}={v}{attributes}") for k, v in query.items()]
            await respond(send, 200, b"set", cookies)
        elif args and args[0] == "clear":  # as Express's clearCookie: expired at the epoch
            epoch = "Thu, 01 Jan 1970 00:00:00 GMT"
            cleared = [("set-cookie", f"{k}=; Path=/; Expires={epoch}") for k in query]
            await respond(send, 200, b"cleared", cleared)
        else:
            raw = next((v for k, v in headers if k == "cookie"), "")
            jar = dict(p.strip().split("=", 1) for p in raw.split(";") if "=" in p)
            await respond_json(send, jar)
    elif head == "unicode":
        await respond(
            send,
            200,
            "h\u00e9llo w\u00f6rld \u2603 \U0001f600".encode(),
            content_type="text/plain; charset=utf-8",
        )
    elif head == "latin1":
        await respond(
            send, 200, "caf\u00e9".encode("latin-1"), content_type="text/plain; charset=iso-8859-1"
        )
    elif head == "binary":
        await respond(send, 200, bytes(range(256)), content_type="application/octet-stream")
    elif head == "multi-headers":
        await respond(
            send,
            200,
            b"",
            [
                ("x-multi", "a"),
                ("x-multi", "b"),
                ("set-cookie", "one=1; Path=/"),
                ("set-cookie", "two=2; Path=/"),
            ],
        )
    elif head == "storm":
        await storm(scope, receive, send, args[0], query)
    elif head == "storm-redirect":
        # /storm-redirect/<rid>/<hops>: <hops> 302s, each after ``hop_delay`` seconds, then
        # /storm/<rid> with the same query
        rid, hops = args[0], int(args[1])
        await asyncio.sleep(float(query.get("hop_delay", "0")))
        qs = scope["query_string"].decode()
        target = f"/storm-redirect/{rid}/{hops - 1}" if hops > 1 else f"/storm/{rid}"
        await respond(send, 302, b"", [("location", f"{target}?{qs}" if qs else target)])
    else:
        await respond(send, 404, b"not found")


async def drop_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(
        asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError
    ):
        await reader.readuntil(b"\r\n\r\n")
    writer.transport.abort()


async def main() -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # listening before the port is printed: a client may connect before uvicorn has started
    # (the connection waits in the backlog); uvicorn's own listen() only sets the backlog again
    sock.listen(2048)
    drop = await asyncio.start_server(drop_connection, "127.0.0.1", 0)
    port = sock.getsockname()[1]
    drop_port = drop.sockets[0].getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="critical",
        access_log=False,
        lifespan="on",
        loop="none",
        http="h11",
        timeout_keep_alive=30,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    print(json.dumps({"port": port, "drop_port": drop_port}), flush=True)
    await server.serve(sockets=[sock])


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        asyncio.run(main())
    else:
        uvloop.run(main())
