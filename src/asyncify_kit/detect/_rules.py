"""The table of blocking functions the detector patches, and the fix it suggests for each.

Each `Rule` names one attribute to patch (``module`` + dotted ``target`` inside it), the name a
report shows, the kind of blocking it is, and the fix from DESIGN.md's table. Some calls only
block sometimes: a call on a non-blocking socket, ``select`` with a zero timeout, a numeric-only
``getaddrinfo``. Their ``nonblocking`` predicate sees the call's arguments and lets those pass.

Third-party rows are patched only when their package has already been imported when detection
starts (the detector never imports a driver by itself). The submodule a row names is imported
then: boto3 imports ``boto3.s3.inject`` only when it makes its first S3 client.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["FIXES", "RULES", "Rule", "fix_for", "socket_nonblocking"]

Args = tuple[Any, ...]
Kwargs = dict[str, Any]

ASYNCIFY_HINT: Final = "or decorate the caller with @asyncify"

FIXES: Final[dict[str, str]] = {
    "sleep": "await anyio.sleep() (or asyncio.sleep / trio.sleep)",
    "socket": (
        "the loop's own streams (anyio.connect_tcp, asyncio.open_connection, "
        f"trio.open_tcp_stream), {ASYNCIFY_HINT}"
    ),
    "ssl": f"anyio.connect_tcp(..., tls=True) or asyncio.open_connection(ssl=...), {ASYNCIFY_HINT}",
    "dns": "await anyio.getaddrinfo() (or loop.getaddrinfo / trio.socket.getaddrinfo)",
    "file": f"asyncify_kit.storage.Storage('file://...'), {ASYNCIFY_HINT}",
    "os": f"await asyncify_kit.run_sync(<the os function>, ...), {ASYNCIFY_HINT}",
    "subprocess": (
        "await anyio.run_process() (or asyncio.create_subprocess_exec / trio.run_process)"
    ),
    "select": f"anyio.wait_readable() / anyio.wait_writable(), {ASYNCIFY_HINT}",
    "thread": (
        "await the work instead (asyncio.wrap_future, anyio.Event, asyncio.Queue or an anyio "
        f"memory stream), {ASYNCIFY_HINT}"
    ),
    "sqlite3": f"asyncify_kit.sql.Database('sqlite:///...'), {ASYNCIFY_HINT}",
    "http": f"asyncify_kit.http.HttpClient, {ASYNCIFY_HINT}",
    "postgres": f"asyncify_kit.sql.Database('postgresql://...'), {ASYNCIFY_HINT}",
    "mysql": f"asyncify_kit.sql.Database('mysql://...'), {ASYNCIFY_HINT}",
    "aws": (
        "asyncify_kit.storage.Storage('s3://...') for S3, asyncify_kit.aws for other "
        f"services, {ASYNCIFY_HINT}"
    ),
}


def fix_for(kind: str) -> str:
    """The suggested fix for a kind of blocking call (see `FIXES`)."""
    return FIXES.get(kind, f"run it off the loop: {ASYNCIFY_HINT}")


@dataclass(frozen=True)
class Rule:
    """One patched function: where it lives, how it is reported, when it cannot block."""

    module: str
    target: str
    name: str
    kind: str
    nonblocking: Callable[[Args, Kwargs], bool] | None = None
    detail: Callable[[Args, Kwargs], str | None] | None = None
    stdlib: bool = True
    #: returns an iterator that does its blocking work as it is consumed (``Path.glob``): the
    #: calls it makes then, on the loop thread, are covered by the report (or allowance) of the
    #: call that made it, not reported again one by one
    lazy: bool = False
    #: ``(module, class)``: the function is copied into each class derived from that one when
    #: the class is made (boto3 puts its S3 transfer methods into every S3 client class, see
    #: boto3/s3/inject.py). Those copies are patched too: in the classes that exist when
    #: detection starts, and in those made while it is on (they get the patched function)
    injected_into: tuple[str, str] | None = None

    @property
    def fix(self) -> str:
        return f"{self.name} -> {fix_for(self.kind)}"


# -- predicates: calls that cannot block --------------------------------------------------


def socket_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """A method call on a socket whose timeout is 0 (setblocking(False)) returns at once."""
    sock = args[0] if args else None
    return getattr(sock, "timeout", None) == 0.0


def _arg(args: Args, kwargs: Kwargs, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _sleep_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """time.sleep(0) only yields the GIL."""
    seconds = _arg(args, kwargs, 0, "secs")
    return isinstance(seconds, (int, float)) and seconds <= 0


def _getaddrinfo_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """A numeric-only lookup (AI_NUMERICHOST, as trio does first) never touches DNS."""
    flags = _arg(args, kwargs, 5, "flags", 0)
    return isinstance(flags, int) and bool(flags & socket.AI_NUMERICHOST)


def _getnameinfo_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    flags = _arg(args, kwargs, 1, "flags", 0)
    numeric = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
    return isinstance(flags, int) and flags & numeric == numeric


def _fd_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """os.read/os.write on a descriptor in non-blocking mode (a pipe the loop watches)."""
    fd = args[0] if args else kwargs.get("fd")
    if not isinstance(fd, int):
        return False
    try:
        return not os.get_blocking(fd)
    except OSError:
        return False


def _open_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """open(fd) wraps an existing descriptor: no filesystem access."""
    return isinstance(_arg(args, kwargs, 0, "file"), int)


def _select_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    timeout = _arg(args, kwargs, 3, "timeout")
    return timeout is not None and timeout == 0


def _wait_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """Popen.wait(timeout=0) only polls."""
    timeout = _arg(args, kwargs, 1, "timeout")
    return timeout is not None and timeout == 0


def _waitpid_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    options = _arg(args, kwargs, 1, "options", 0)
    return isinstance(options, int) and bool(options & os.WNOHANG)


def _no_wait(timeout: Any) -> bool:
    """A *timeout* that makes a wait only poll."""
    return isinstance(timeout, (int, float)) and timeout <= 0


def _future_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """Future.result()/exception() of a finished future, or with a zero timeout, return at once."""
    done = getattr(args[0], "done", None) if args else None
    return _no_wait(_arg(args, kwargs, 1, "timeout")) or (callable(done) and bool(done()))


def _queue_get_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """Queue.get(block=False) (get_nowait) or with a zero timeout only polls."""
    return not _arg(args, kwargs, 1, "block", True) or _no_wait(_arg(args, kwargs, 2, "timeout"))


def _queue_put_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """Queue.put on an unbounded queue, with block=False (put_nowait) or a zero timeout."""
    queue = args[0] if args else None
    maxsize = getattr(queue, "maxsize", 1)
    return (
        (isinstance(maxsize, int) and maxsize <= 0)
        or not _arg(args, kwargs, 2, "block", True)
        or _no_wait(_arg(args, kwargs, 3, "timeout"))
    )


def _join_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """Thread.join() with a zero timeout, or of a thread that is not running (finished, or
    never started: join raises at once), or of the calling thread (raises too)."""
    if _no_wait(_arg(args, kwargs, 1, "timeout")):
        return True
    thread = args[0] if args else None
    if not isinstance(thread, threading.Thread) or thread is threading.current_thread():
        return True  # join raises at once
    try:
        return not thread.is_alive()
    except Exception:  # Thread.__init__ not called: join raises its own error, at once
        return True


# -- details: what the report says beyond the function name (never secrets) ------------------


def _http_method_detail(index: int) -> Callable[[Args, Kwargs], str | None]:
    def detail(args: Args, kwargs: Kwargs) -> str | None:
        method = _arg(args, kwargs, index, "method")
        return f"HTTP {method}" if isinstance(method, str) else None

    return detail


def _botocore_detail(args: Args, kwargs: Kwargs) -> str | None:
    client = args[0] if args else None
    operation = _arg(args, kwargs, 1, "operation_name")
    meta = getattr(client, "meta", None)
    service = getattr(getattr(meta, "service_model", None), "service_name", None)
    if isinstance(operation, str):
        return f"{service or 'aws'}.{operation}"
    return None


def _stdlib(
    module: str,
    targets: tuple[str, ...],
    kind: str,
    nonblocking: Callable[[Args, Kwargs], bool] | None = None,
    prefix: str | None = None,
) -> list[Rule]:
    shown = module if prefix is None else prefix
    return [
        Rule(module, target, f"{shown}.{target}" if shown else target, kind, nonblocking)
        for target in targets
    ]


_SOCKET_METHODS: Final = (
    "accept",
    "connect",
    "connect_ex",
    "recv",
    "recv_into",
    "recvfrom",
    "recvfrom_into",
    "send",
    "sendall",
    "sendfile",
    "sendto",
)
_SSL_METHODS: Final = (
    "accept",
    "connect",
    "connect_ex",
    "do_handshake",
    "read",
    "recv",
    "recv_into",
    "recvfrom",
    "recvfrom_into",
    "send",
    "sendall",
    "sendfile",
    "sendto",
    "unwrap",
    "write",
)
_OS_FILE: Final = (
    "access",
    "chmod",
    "fsync",
    "link",
    "listdir",
    "lstat",
    "mkdir",
    "open",
    "readlink",
    "remove",
    "rename",
    "replace",
    "rmdir",
    "scandir",
    "stat",
    "statvfs",
    "symlink",
    "truncate",
    "unlink",
    "utime",
)


def _pymysql_close_nonblocking(args: Args, kwargs: Kwargs) -> bool:
    """close() of a PyMySQL connection that has no socket (closed, or never connected) sends
    nothing."""
    conn = args[0] if args else None
    return getattr(conn, "_sock", None) is None or bool(getattr(conn, "_closed", False))


def _build() -> tuple[Rule, ...]:
    rules: list[Rule] = [Rule("time", "sleep", "time.sleep", "sleep", _sleep_nonblocking)]
    rules += [
        Rule("socket", f"socket.{m}", f"socket.socket.{m}", "socket", socket_nonblocking)
        for m in _SOCKET_METHODS
    ]
    rules += [
        Rule("socket", "getaddrinfo", "socket.getaddrinfo", "dns", _getaddrinfo_nonblocking),
        Rule("socket", "getnameinfo", "socket.getnameinfo", "dns", _getnameinfo_nonblocking),
        *_stdlib("socket", ("gethostbyname", "gethostbyname_ex", "gethostbyaddr"), "dns"),
    ]
    rules += [
        Rule("ssl", f"SSLSocket.{m}", f"ssl.SSLSocket.{m}", "ssl", socket_nonblocking)
        for m in _SSL_METHODS
    ]
    rules += [
        Rule("builtins", "open", "open", "file", _open_nonblocking),
        Rule("io", "open", "io.open", "file", _open_nonblocking),
        Rule("os", "read", "os.read", "file", _fd_nonblocking),
        Rule("os", "write", "os.write", "file", _fd_nonblocking),
        *[
            Rule("pathlib", f"Path.{m}", f"pathlib.Path.{m}", "file", lazy=m in _PATH_LAZY)
            for m in _PATH_METHODS
        ],
        *_stdlib("os", _OS_FILE, "os"),
    ]
    rules += [
        *_stdlib(
            "subprocess",
            ("run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"),
            "subprocess",
        ),
        # Popen() itself blocks until the child has exec'd (it reads the error pipe)
        Rule("subprocess", "Popen.__init__", "subprocess.Popen", "subprocess"),
        Rule("subprocess", "Popen.wait", "subprocess.Popen.wait", "subprocess", _wait_nonblocking),
        Rule("subprocess", "Popen.communicate", "subprocess.Popen.communicate", "subprocess"),
        Rule("os", "system", "os.system", "subprocess"),
        Rule("os", "waitpid", "os.waitpid", "subprocess", _waitpid_nonblocking),
        Rule("os", "wait", "os.wait", "subprocess"),
        Rule("select", "select", "select.select", "select", _select_nonblocking),
        Rule("sqlite3", "connect", "sqlite3.connect", "sqlite3"),
        # waits for another thread; not threading.Lock/RLock.acquire (C types: not patchable)
        # nor Event.wait (Thread.start() waits on one for the thread to begin)
        Rule(
            "concurrent.futures",
            "Future.result",
            "concurrent.futures.Future.result",
            "thread",
            _future_nonblocking,
        ),
        Rule(
            "concurrent.futures",
            "Future.exception",
            "concurrent.futures.Future.exception",
            "thread",
            _future_nonblocking,
        ),
        Rule("queue", "Queue.get", "queue.Queue.get", "thread", _queue_get_nonblocking),
        Rule("queue", "Queue.put", "queue.Queue.put", "thread", _queue_put_nonblocking),
        Rule("threading", "Thread.join", "threading.Thread.join", "thread", _join_nonblocking),
    ]
    rules += [
        *[
            Rule("requests", verb, f"requests.{verb}", "http", stdlib=False)
            for verb in ("request", "get", "head", "post", "put", "patch", "delete", "options")
        ],
        Rule(
            "requests",
            "Session.request",
            "requests.Session.request",
            "http",
            detail=_http_method_detail(1),
            stdlib=False,
        ),
        Rule(
            "urllib3",
            "connectionpool.HTTPConnectionPool.urlopen",
            "urllib3.HTTPConnectionPool.urlopen",
            "http",
            detail=_http_method_detail(1),
            stdlib=False,
        ),
        Rule(
            "urllib3",
            "poolmanager.PoolManager.urlopen",
            "urllib3.PoolManager.urlopen",
            "http",
            detail=_http_method_detail(1),
            stdlib=False,
        ),
        Rule("httpx", "Client.send", "httpx.Client.send", "http", stdlib=False),
        Rule("psycopg2", "connect", "psycopg2.connect", "postgres", stdlib=False),
        # psycopg.connect is Connection.connect bound at import: patch both
        Rule("psycopg", "connect", "psycopg.connect", "postgres", stdlib=False),
        *[
            Rule("psycopg", f"Connection.{m}", f"psycopg.Connection.{m}", "postgres", stdlib=False)
            for m in ("connect", "execute", "commit", "rollback")
        ],
        *[
            Rule("psycopg", f"Cursor.{m}", f"psycopg.Cursor.{m}", "postgres", stdlib=False)
            for m in ("execute", "executemany", "fetchone", "fetchmany", "fetchall", "copy")
        ],
        *[
            Rule(
                "pymysql",
                f"connections.Connection.{m}",
                f"pymysql.Connection.{m}",
                "mysql",
                stdlib=False,
            )
            for m in ("connect", "query", "commit", "rollback", "ping")
        ],
        # close() sends COM_QUIT first (it was reported as the raw socket/TLS write)
        Rule(
            "pymysql",
            "connections.Connection.close",
            "pymysql.Connection.close",
            "mysql",
            _pymysql_close_nonblocking,
            stdlib=False,
        ),
        *[
            Rule("pymysql", f"cursors.Cursor.{m}", f"pymysql.Cursor.{m}", "mysql", stdlib=False)
            for m in ("execute", "executemany", "callproc")
        ],
        Rule(
            "botocore",
            "client.BaseClient._make_api_call",
            "botocore.client.BaseClient._make_api_call",
            "aws",
            detail=_botocore_detail,
            stdlib=False,
        ),
        # managed transfers: s3transfer's threads do the requests while the call waits for them
        # (Event.wait, Thread.join). Reported as the call, the waits inside it are not reported
        # again; in raise mode nothing is transferred
        *[
            Rule(
                "boto3.s3.inject",
                method,
                f"boto3.S3.Client.{method}",
                "aws",
                stdlib=False,
                injected_into=("botocore.client", "BaseClient"),
            )
            for method in _S3_TRANSFERS
        ],
        *[
            Rule(
                "boto3.s3.transfer",
                f"S3Transfer.{method}",
                f"boto3.s3.transfer.S3Transfer.{method}",
                "aws",
                stdlib=False,
            )
            for method in ("upload_file", "download_file")
        ],
        # the end of ``with S3Transfer(...)`` (TransferManager.__exit__ and .shutdown): waits
        # for the transfers in flight and joins s3transfer's threads
        Rule(
            "s3transfer.manager",
            "TransferManager._shutdown",
            "s3transfer.TransferManager.shutdown",
            "aws",
            stdlib=False,
        ),
    ]
    return tuple(rules)


#: the managed-transfer methods boto3 adds to every S3 client class (boto3/s3/inject.py)
_S3_TRANSFERS: Final = (
    "upload_file",
    "download_file",
    "upload_fileobj",
    "download_fileobj",
    "copy",
)

_PATH_METHODS: Final = (
    "open",
    "read_bytes",
    "read_text",
    "write_bytes",
    "write_text",
    "iterdir",
    "glob",
    "rglob",
    "exists",
    "is_file",
    "is_dir",
    "touch",
    "unlink",
    "mkdir",
)

#: the methods above whose iterator does the blocking work (a generator on some versions)
_PATH_LAZY: Final = frozenset({"iterdir", "glob", "rglob"})

RULES: Final[tuple[Rule, ...]] = _build()
