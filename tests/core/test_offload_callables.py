"""What `asyncify` and `wrap` make of callables that are not plain functions.

* A ``@contextmanager`` function under a decorator that records it with `functools.wraps` was
  typed as an async context manager, but made a plain call at run time (``'Call' object does
  not support the asynchronous context manager protocol``).
* A class whose instances have an ``async def __call__`` (an ASGI app class) was refused as
  async, though constructing one is sync.
* The methods of ``create_autospec(cls, instance=True)`` were refused as async (inspect calls
  them coroutine functions: their ``co_flags & flag`` is a truthy mock).
* A keyword argument named ``self`` clashed with the wrapper's own ``self``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar
from unittest import mock

import pytest

from asyncify_kit import (
    OffloadedContextManager,
    OffloadedIterator,
    asyncify,
    run_sync,
    wrap,
)

pytestmark = pytest.mark.anyio

P = ParamSpec("P")
R = TypeVar("R")


def logged(fn: Callable[P, R]) -> Callable[P, R]:
    """A sync decorator typed with ParamSpec, as most are."""

    @functools.wraps(fn)
    def inner(*args: P.args, **kwargs: P.kwargs) -> R:
        return fn(*args, **kwargs)

    return inner


# -- a context manager function under a decorator -------------------------------------------


log: list[tuple[str, int]] = []


@asyncify
@logged
@contextlib.contextmanager
def session(name: str) -> Iterator[str]:
    log.append(("enter", threading.get_ident()))
    try:
        yield name
    finally:
        log.append(("exit", threading.get_ident()))


@asyncify
@logged
@logged
@contextlib.contextmanager
def deeper() -> Iterator[int]:
    yield threading.get_ident()


async def test_a_wrapped_contextmanager_function_is_an_async_context_manager() -> None:
    log.clear()
    made = session("s")
    assert isinstance(made, OffloadedContextManager)
    async with made as value:
        assert value == "s"
    (_, entered), (_, exited) = log
    assert entered == exited != threading.get_ident()  # one worker thread, not the loop's
    async with deeper() as ident:
        assert ident != threading.get_ident()
    partial = asyncify(functools.partial(logged(contextlib.contextmanager(_numbered)), 7))
    async with partial() as number:
        assert number == 7


def _numbered(n: int) -> Iterator[int]:
    yield n


class Repository:
    @logged
    @contextlib.contextmanager
    def transaction(self) -> Iterator[int]:
        yield threading.get_ident()

    def ident(self) -> int:
        return threading.get_ident()


async def test_a_wrapped_contextmanager_method_of_a_proxy_is_an_async_context_manager() -> None:
    async with wrap(Repository(), sticky=True) as proxy:
        home = await proxy.ident()
        async with proxy.transaction() as ident:
            assert ident == home


# -- a class whose instances are async callables ---------------------------------------------


class Handler:
    """An ASGI app class: made by a sync call, called (as an app) with await."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.made_on = threading.get_ident()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


async def test_a_class_with_an_async_call_is_constructed_in_a_thread() -> None:
    for made in (await asyncify(Handler)("conf.yml"), await run_sync(Handler, "conf.yml")):
        assert isinstance(made, Handler)
        assert made.path == "conf.yml"
        assert made.made_on != threading.get_ident()


def test_an_instance_with_an_async_call_is_still_refused() -> None:
    with pytest.raises(TypeError, match="is async"):
        asyncify(Handler("conf.yml"))


# -- autospec mocks ----------------------------------------------------------------------------


class Service:
    def get(self, key: int) -> int:
        return key

    async def fetch(self, key: int) -> int:
        return key


async def test_the_sync_methods_of_an_autospec_mock_are_offloaded_as_calls() -> None:
    service = mock.create_autospec(Service, instance=True)
    service.get.return_value = 42
    assert await wrap(service).get(1) == 42
    async with wrap(service, sticky=True) as proxy:
        assert await proxy.get(2) == 42
    call = asyncify(service.get)(3)
    assert not isinstance(call, OffloadedIterator)  # a call, not a generator
    assert await call == 42
    assert await run_sync(service.get, 4) == 42
    assert [c.args for c in service.get.call_args_list] == [(1,), (2,), (3,), (4,)]


def test_the_async_methods_of_an_autospec_mock_are_still_refused() -> None:
    service = mock.create_autospec(Service, instance=True)
    with pytest.raises(TypeError, match="is async"):
        asyncify(service.fetch)
    with pytest.raises(TypeError, match="is async"):
        asyncify(mock.AsyncMock())


# -- a keyword argument named self -------------------------------------------------------------


def render(self: object = None, template: str = "t") -> tuple[object, str]:
    return self, template


async def test_a_keyword_argument_named_self_reaches_the_function() -> None:
    assert await asyncify(render)(self="ctx", template="x") == ("ctx", "x")
    assert await asyncify(timeout=5.0)(render)(self="ctx") == ("ctx", "t")
