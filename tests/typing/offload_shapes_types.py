# pyright: strict, reportUnnecessaryTypeIgnoreComment=true
"""Type tests of `asyncify` on sync functions whose return type says little, and with options.

Checked by mypy --strict and pyright, never run (see ``api_types.py``). pyright checks this
file under its strict rules, which report the use of a deprecated overload (the async refusal
is one, for its message): ordinary sync functions must not reach it. pyright also reports an
ignore comment it does not need, as mypy does.

A function annotated ``-> Any`` or ``-> NoReturn``, or (to mypy) one returning a bare TypeVar
or ``Self``, matched the async refusal (and, without it, the generator overload: ``NoReturn``
and ``Any`` fit ``Iterator[T]`` too) and was uncallable, though each works at run time. What
they are typed differs between the checkers where one is more precise; what both must accept
is the awaited result used as the function's own return type.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

from typing_extensions import Self, assert_type

from asyncify_kit import OffloadedContextManager, OffloadedIterator, asyncify
from asyncify_kit._offload import AsyncDefRefused  # not exported: only in type errors

T = TypeVar("T")
S = TypeVar("S", bound=str)


# -- return types that say little ------------------------------------------------------------


@asyncify
def load(text: str) -> Any:  # json.loads, an untyped library: Any
    return text


@asyncify
def build(kind: type[T], raw: str) -> T:  # a factory: a bare TypeVar
    return kind()


@asyncify
def first(xs: list[T]) -> T:
    return xs[0]


@asyncify
def strip(s: S) -> S:  # a TypeVar with a bound
    return s


@asyncify
def fail(message: str) -> NoReturn:
    raise SystemExit(message)


@asyncify(timeout=1.0)
def fail_later(message: str) -> NoReturn:
    raise SystemExit(message)


class Model:
    @asyncify
    def refresh(self) -> Self:
        return self

    @asyncify(pool="default")
    def reload(self) -> Self:
        return self


class Helpers:
    @asyncify
    @staticmethod
    def parse(text: str) -> Any:
        return text

    @asyncify(pool="default")
    @staticmethod
    def last(xs: list[T]) -> T:
        return xs[-1]

    @asyncify
    @staticmethod
    def halve(x: float) -> float:
        return x / 2


class Dict(dict[str, int]):
    pass


async def check_vague_returns() -> None:
    assert_type(await load("{}"), Any)
    made: Dict = await build(Dict, "{}")  # Dict to pyright, Any to mypy
    number: int = await first([1, 2])  # int to pyright, Any to mypy
    assert_type(await strip("x"), str)
    assert_type(await Model().refresh(), Model)
    assert_type(await Model().reload(), Model)
    assert_type(fail, Callable[..., Coroutine[Any, Any, Any]])
    await fail("bye")
    await fail_later("bye")  # reachable: the await is not typed NoReturn (see _Unspecific)
    print(made, number)
    await strip(1)  # type: ignore[type-var]  # a bound TypeVar keeps its parameters checked
    assert_type(await Helpers.parse("x"), Any)
    last: int = await Helpers.last([1])  # int to pyright, Any to mypy
    assert_type(await Helpers().halve(1.0), float)
    print(last)


# -- generators and context managers keep their types ----------------------------------------


@asyncify
def numbers(n: int) -> Iterator[int]:
    yield n


@asyncify
def pairs(n: int) -> Generator[tuple[int, int], None, None]:
    yield n, n


@asyncify
@contextmanager
def session(name: str) -> Generator[str, None, None]:
    yield name


# the advice of docs/offload.md for items whose type holds Any: ``-> Iterator[...]`` keeps
# the type on both checkers (mypy types ``-> Generator[dict[str, Any], None, None]`` Any,
# mypy#21768; pyright keeps that one too)
@asyncify
def records(n: int) -> Iterator[dict[str, Any]]:
    yield {"n": n}


@asyncify
@contextmanager
def record_session(n: int) -> Generator[dict[str, Any], None, None]:
    yield {"n": n}


async def check_generators_and_context_managers() -> None:
    assert_type(numbers(1), OffloadedIterator[int])
    assert_type(pairs(1), OffloadedIterator[tuple[int, int]])
    async with session("s") as name:
        assert_type(name, str)
    assert_type(session("s"), OffloadedContextManager[str])
    assert_type(records(1), OffloadedIterator[dict[str, Any]])
    async for record in records(1):
        assert_type(record, dict[str, Any])
    assert_type(record_session(1), OffloadedContextManager[dict[str, Any]])


# -- a function with options: asyncify(fn, pool=..., cancel=..., timeout=...) ----------------


def double(x: int) -> int:
    return x * 2


def pick(xs: list[T]) -> T:
    return xs[-1]


def lines(path: str) -> Iterator[str]:
    yield path


@contextmanager
def opened(path: str) -> Generator[str, None, None]:
    yield path


async def check_function_with_options() -> None:
    slow = asyncify(time.sleep, timeout=0.05)
    assert_type(await slow(0.2), None)
    assert_type(await asyncify(double, pool="default", cancel="abandon")(2), int)
    assert_type(asyncify(lines, cancel="wait")("a"), OffloadedIterator[str])
    assert_type(asyncify(opened, timeout=None)("a"), OffloadedContextManager[str])
    head: int = await asyncify(pick, timeout=2)([1])  # int to pyright, Any to mypy
    print(head)
    asyncify(double, cancel="later")  # type: ignore[call-overload]
    asyncify(double, timeout="5")  # type: ignore[call-overload]
    asyncify(double, pool=None)  # type: ignore[call-overload]


# -- async functions are still refused, with the reason (the deprecation message) -------------


async def _fetch_async() -> int:
    return 1


async def _rows_async() -> AsyncIterator[int]:
    yield 1


class AsyncStatics:
    @asyncify  # pyright: ignore[reportDeprecated]
    @staticmethod
    async def fetch() -> int:
        return 1


assert_type(AsyncStatics.fetch, AsyncDefRefused)
assert_type(asyncify(_fetch_async), AsyncDefRefused)  # pyright: ignore[reportDeprecated]
assert_type(asyncify(_rows_async, timeout=1.0), AsyncDefRefused)  # pyright: ignore[reportDeprecated]
assert_type(asyncify(pool="default")(_fetch_async), AsyncDefRefused)
