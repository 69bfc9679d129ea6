"""The error tree: every class where DESIGN.md draws it, builtin bases, `.orig`, pickling."""

from __future__ import annotations

import builtins
import pickle
import re

import pytest

from asyncify_kit import exceptions
from asyncify_kit.exceptions import (
    AlreadyExists,
    AsyncifyError,
    BackendNotInstalled,
    BlockingCallError,
    CallCancelled,
    ConfigError,
    ConnectError,
    ConnectionLost,
    DatabaseError,
    HTTPError,
    HTTPStatusError,
    IntegrityError,
    InvalidPath,
    NotFound,
    OperationalError,
    PermissionDenied,
    ProgrammingError,
    QueryTimeout,
    ReadError,
    StorageError,
    TimeoutException,
    TransportError,
    Unsupported,
)

EXPECTED_BASES: dict[type[BaseException], tuple[type[BaseException], ...]] = {
    AsyncifyError: (Exception,),
    ConfigError: (AsyncifyError, ValueError),
    BackendNotInstalled: (AsyncifyError, ImportError),
    Unsupported: (AsyncifyError, NotImplementedError),
    BlockingCallError: (AsyncifyError,),
    CallCancelled: (AsyncifyError,),
    DatabaseError: (AsyncifyError,),
    IntegrityError: (DatabaseError,),
    ProgrammingError: (DatabaseError,),
    OperationalError: (DatabaseError,),
    ConnectionLost: (OperationalError,),
    QueryTimeout: (DatabaseError, TimeoutError),
    StorageError: (AsyncifyError,),
    NotFound: (StorageError, FileNotFoundError),
    AlreadyExists: (StorageError, FileExistsError),
    PermissionDenied: (StorageError, PermissionError),
    InvalidPath: (StorageError, ValueError),
    HTTPError: (AsyncifyError,),
    HTTPStatusError: (HTTPError,),
    TransportError: (HTTPError,),
    ConnectError: (TransportError,),
    ReadError: (TransportError,),
    TimeoutException: (HTTPError, TimeoutError),
}


@pytest.mark.parametrize(
    ("cls", "bases"), list(EXPECTED_BASES.items()), ids=lambda v: getattr(v, "__name__", "")
)
def test_each_error_subclasses_what_callers_catch(
    cls: type[BaseException], bases: tuple[type[BaseException], ...]
) -> None:
    for base in bases:
        assert issubclass(cls, base)
    assert issubclass(cls, AsyncifyError) or cls is AsyncifyError


def test_existing_except_clauses_keep_working() -> None:
    with pytest.raises(FileNotFoundError):
        raise NotFound("a/b.txt")
    with pytest.raises(TimeoutError):
        raise QueryTimeout("select pg_sleep(10)")
    with pytest.raises(TimeoutError):
        raise TimeoutException("read timeout")
    with pytest.raises(ValueError):
        raise ConfigError("bad")
    with pytest.raises(ImportError):
        raise BackendNotInstalled("postgresql+asyncpg", "asyncpg", "postgres")
    with pytest.raises(NotImplementedError):
        raise Unsupported("no presign on memory://; use s3://")
    with pytest.raises(OSError):
        raise PermissionDenied("k")
    with pytest.raises(OperationalError):
        raise ConnectionLost("server closed the connection")


def test_every_exported_error_is_in_the_tree_and_drawn() -> None:
    exported = {getattr(exceptions, name) for name in exceptions.__all__}
    assert exported == set(EXPECTED_BASES)
    drawn = set(re.findall(r"[├└]── (\w+)", exceptions.__doc__ or ""))
    assert drawn | {"AsyncifyError"} == {cls.__name__ for cls in exported}


def test_the_drawn_tree_matches_the_classes() -> None:
    """Each class in the module docstring's tree sits under the class drawn above it."""
    doc = exceptions.__doc__ or ""
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^([│ ]*)[├└]── (\w+)(?:\((\w+)\))?$", line)
        if not match:
            continue
        depth = len(match.group(1)) // 4
        name, builtin = match.group(2), match.group(3)
        stack = stack[:depth]
        parent = stack[-1][1] if stack else "AsyncifyError"
        cls = getattr(exceptions, name)
        assert cls.__bases__[0] is getattr(exceptions, parent), name
        if builtin:
            assert issubclass(cls, getattr(builtins, builtin)), name
        stack.append((depth, name))
    assert len(stack) > 0


def test_orig_and_chaining() -> None:
    driver_error = KeyError("duplicate key")
    try:
        try:
            raise driver_error
        except KeyError as exc:
            raise IntegrityError("duplicate key value", orig=exc) from exc
    except IntegrityError as err:
        assert err.orig is driver_error
        assert err.__cause__ is driver_error
        assert str(err) == "duplicate key value"
    assert AsyncifyError("x").orig is None


def test_backend_not_installed_fields() -> None:
    err = BackendNotInstalled("mysql+asyncmy", "asyncmy", "mysql")
    assert err.pip_command == "pip install 'asyncify-kit[mysql]'"
    assert str(err) == (
        "the 'mysql+asyncmy' backend needs the 'asyncmy' package, which is not installed; "
        "install it with: pip install 'asyncify-kit[mysql]'"
    )


@pytest.mark.parametrize(
    "err",
    [
        BackendNotInstalled("mysql+asyncmy", "asyncmy", "mysql"),
        HTTPStatusError("404 Not Found", response="<response>"),
        ConfigError("bad", orig=KeyError("k")),
        NotFound("a/b.txt"),
        QueryTimeout("slow"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling(err: AsyncifyError) -> None:
    # errors cross process boundaries (multiprocessing, pytest-xdist): they must rebuild
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert str(copy) == str(err)
    assert {k: repr(v) for k, v in vars(copy).items()} == {k: repr(v) for k, v in vars(err).items()}
