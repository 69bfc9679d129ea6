"""Generator functions `asyncify` and `wrap` did not see as such.

A generator function under a sync decorator that records it with `functools.wraps`, and a
callable object whose ``__call__`` is a generator function, were typed async iterators but
made a plain call at run time: ``async for`` failed (``'async for' requires an object with
__aiter__ method, got Call``), and awaiting the call gave the sync generator, whose body then
ran on the event loop. Likewise for a proxy's methods and callable attributes.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Generator, Iterator

import pytest

from asyncify_kit import OffloadedContextManager, OffloadedIterator, asyncify, wrap

from .test_offload_callables import logged

pytestmark = pytest.mark.anyio


def idents(n: int) -> Iterator[int]:
    """The thread of each step: one worker's, not the loop's."""
    for _ in range(n):
        yield threading.get_ident()


class Reader:
    """A callable object whose ``__call__`` is a generator function."""

    def __call__(self, n: int) -> Iterator[int]:
        yield from idents(n)


class Opener:
    """A callable object whose ``__call__`` is an ``@contextmanager`` function."""

    @contextlib.contextmanager
    def __call__(self, name: str) -> Generator[tuple[str, int], None, None]:
        yield name, threading.get_ident()


class Stream:
    """A class whose instances iterate: calling the class makes one, a plain call."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self) -> Iterator[int]:
        yield from range(self.n)


def assert_on_one_worker(seen: list[int]) -> None:
    assert len(set(seen)) == 1
    assert seen[0] != threading.get_ident()


async def test_a_generator_function_under_a_wraps_decorator_is_an_async_iterator() -> None:
    made = asyncify(logged(idents))(3)
    assert isinstance(made, OffloadedIterator)
    seen = [ident async for ident in made]
    assert len(seen) == 3
    assert_on_one_worker(seen)
    for made in (
        asyncify(logged(logged(idents)), timeout=5.0)(2),  # two layers
        asyncify(functools.partial(logged(idents), 2))(),  # a partial of one
        asyncify(logged(functools.partial(idents, 2)))(),  # one of a partial
    ):
        assert isinstance(made, OffloadedIterator)
        async with made:
            assert_on_one_worker([ident async for ident in made])


async def test_a_callable_object_whose_call_is_a_generator_is_an_async_iterator() -> None:
    made = asyncify(Reader())(2)
    assert isinstance(made, OffloadedIterator)
    assert_on_one_worker([ident async for ident in made])
    made = asyncify(logged(Reader()))(2)  # under a decorator too
    assert isinstance(made, OffloadedIterator)
    assert_on_one_worker([ident async for ident in made])


async def test_a_callable_object_whose_call_is_a_contextmanager_is_an_async_one() -> None:
    made = asyncify(Opener())("s")
    assert isinstance(made, OffloadedContextManager)
    async with made as (name, ident):
        assert name == "s"
        assert ident != threading.get_ident()


async def test_what_is_not_a_generator_stays_a_plain_call() -> None:
    stream = await asyncify(Stream)(2)  # a class: calling it constructs, whatever __call__ is
    assert isinstance(stream, Stream)
    assert list(stream()) == [0, 1]
    session = asyncify(logged(contextlib.contextmanager(idents)))(1)  # not the generator inside
    assert isinstance(session, OffloadedContextManager)
    async with session as ident:
        assert ident != threading.get_ident()


class Store:
    def __init__(self) -> None:
        self.reader = Reader()  # a callable attribute

    def home(self) -> int:
        return threading.get_ident()

    @logged
    def rows(self, n: int) -> Iterator[int]:
        yield from idents(n)


async def test_a_proxy_offloads_wrapped_generator_methods_and_callable_objects() -> None:
    async with wrap(Store(), sticky=True) as store:
        home = await store.home()
        made = store.rows(2)
        assert isinstance(made, OffloadedIterator)
        assert [ident async for ident in made] == [home, home]  # on the proxy's thread
        made = store.reader(2)
        assert isinstance(made, OffloadedIterator)
        assert [ident async for ident in made] == [home, home]
    proxy = wrap(Store())
    assert_on_one_worker([ident async for ident in proxy.rows(3)])
    assert_on_one_worker([ident async for ident in proxy.reader(3)])
