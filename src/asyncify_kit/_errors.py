"""Reading foreign exceptions: what the facades look for down a library error's causes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

__all__ = ["causes"]


def _next_cause(exc: BaseException) -> BaseException | None:
    return exc.__cause__ or exc.__context__


def causes(
    exc: BaseException, inner: Callable[[BaseException], BaseException | None] = _next_cause
) -> Iterator[BaseException]:
    """*exc*, then each exception it came of (``__cause__``, else ``__context__``; or what
    *inner* says), once each: a cycle of causes ends the walk."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = inner(current)
