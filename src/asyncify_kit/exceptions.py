"""The exceptions asyncify-kit raises.

Every error derives from `AsyncifyError`. Where a caller already expects a builtin
exception, ours subclasses it too (`NotFound` is a `FileNotFoundError`, `QueryTimeout` a
`TimeoutError`), so existing ``except`` clauses keep working. Driver exceptions are
translated at the backend boundary and chained: the original is ``__cause__`` and ``.orig``.

```
AsyncifyError
├── ConfigError(ValueError)
├── BackendNotInstalled(ImportError)
├── Unsupported(NotImplementedError)
├── BlockingCallError
├── CallCancelled
├── DatabaseError
│   ├── IntegrityError
│   ├── ProgrammingError
│   ├── OperationalError
│   │   └── ConnectionLost
│   └── QueryTimeout(TimeoutError)
├── StorageError
│   ├── NotFound(FileNotFoundError)
│   ├── AlreadyExists(FileExistsError)
│   ├── PermissionDenied(PermissionError)
│   └── InvalidPath(ValueError)
└── HTTPError
    ├── HTTPStatusError
    ├── TransportError
    │   ├── ConnectError
    │   └── ReadError
    └── TimeoutException(TimeoutError)
```
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = [
    "AlreadyExists",
    "AsyncifyError",
    "BackendNotInstalled",
    "BlockingCallError",
    "CallCancelled",
    "ConfigError",
    "ConnectError",
    "ConnectionLost",
    "DatabaseError",
    "HTTPError",
    "HTTPStatusError",
    "IntegrityError",
    "InvalidPath",
    "NotFound",
    "OperationalError",
    "PermissionDenied",
    "ProgrammingError",
    "QueryTimeout",
    "ReadError",
    "StorageError",
    "TimeoutException",
    "TransportError",
    "Unsupported",
]


class AsyncifyError(Exception):
    """Base class of every error raised by asyncify-kit.

    `orig` holds the foreign exception this one was translated from, if any.
    """

    orig: BaseException | None = None

    def __init__(self, *args: Any, orig: BaseException | None = None) -> None:
        super().__init__(*args)
        if orig is not None:
            self.orig = orig


class ConfigError(AsyncifyError, ValueError):
    """A URL, option or setting is invalid; the message names it and what is accepted."""


class BackendNotInstalled(AsyncifyError, ImportError):
    """A known backend's package is missing; the message carries the pip line to fix it."""

    def __init__(self, backend: str, package: str, extra: str) -> None:
        self.backend = backend
        self.package = package
        self.extra = extra
        self.pip_command = f"pip install 'asyncify-kit[{extra}]'"
        super().__init__(
            f"the {backend!r} backend needs the {package!r} package, which is not "
            f"installed; install it with: {self.pip_command}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # the default rebuilds from .args (the message), which this __init__ does not take
        return (type(self), (self.backend, self.package, self.extra), self.__dict__)


class Unsupported(AsyncifyError, NotImplementedError):
    """A backend cannot offer a feature; the message says which backend can."""


class BlockingCallError(AsyncifyError):
    """A blocking call was made on the event-loop thread while detection was on."""


class CallCancelled(AsyncifyError):
    """Raised by `check_cancelled()` inside a worker thread whose caller has gone away."""


class DatabaseError(AsyncifyError):
    """Base class of the SQL facade's errors."""


class IntegrityError(DatabaseError):
    """A constraint was violated (unique, foreign key, not null, check)."""


class ProgrammingError(DatabaseError):
    """The query is wrong: a syntax error, a missing table, a missing or extra parameter."""


class OperationalError(DatabaseError):
    """The database could not carry out the operation (connection, server, lock)."""


class ConnectionLost(OperationalError):
    """The connection to the database was lost; the operation may be retried."""


class QueryTimeout(DatabaseError, TimeoutError):
    """A query ran past its timeout and was cancelled."""


class StorageError(AsyncifyError):
    """Base class of the storage facade's errors."""


class NotFound(StorageError, FileNotFoundError):
    """The key does not exist."""


class AlreadyExists(StorageError, FileExistsError):
    """The key exists and the operation asked it not to."""


class PermissionDenied(StorageError, PermissionError):
    """The backend refused access to the key."""


class InvalidPath(StorageError, ValueError):
    """The key is not a safe relative POSIX path; raised before any I/O."""


class HTTPError(AsyncifyError):
    """Base class of the HTTP facade's errors."""


class HTTPStatusError(HTTPError):
    """`raise_for_status()` found a 4xx or 5xx response; `.response` holds it."""

    def __init__(self, message: str, *, response: Any = None) -> None:
        super().__init__(message)
        self.response = response

    def __reduce__(self) -> tuple[Any, ...]:
        # keep `response` (a keyword-only argument) across pickling; the default drops it
        return (type(self), (str(self),), self.__dict__)


class TransportError(HTTPError):
    """The request could not be sent or the response could not be read."""


class ConnectError(TransportError):
    """The connection could not be established."""


class ReadError(TransportError):
    """The connection failed while reading the response."""


class TimeoutException(HTTPError, TimeoutError):
    """A connect, read, write or pool timeout expired; `phase` says which."""

    #: the timeout that ran out: ``"connect"``, ``"read"``, ``"write"`` or ``"pool"`` (set by
    #: the HTTP client on each one it raises; ``"read"`` on one made by hand)
    phase: Literal["connect", "read", "write", "pool"] = "read"
