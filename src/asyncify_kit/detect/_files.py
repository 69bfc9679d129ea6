"""Reads and writes on file objects: ``detect_blocking(track_files=True)``.

A file object's ``read``/``write`` are methods of C types that cannot be patched, so a file
opened in a worker thread and then read on the loop escapes the ``open()`` check. With
*track_files*, ``open()`` (while a tracking detector is active) returns the same object it
always would, rebuilt as a subclass of its own type (`io.TextIOWrapper`, `io.BufferedReader`,
`io.BufferedWriter`, `io.BufferedRandom`) whose reads, writes, flushes and closes are checked:
still an instance of the class callers expect, over the same descriptor and buffer sizes.
Unbuffered ``FileIO`` (``buffering=0``) is returned as is.

``flush()`` and ``close()`` are checked on a file open for writing only: they write out what is
buffered. On a file open for reading they do no I/O (``close()`` is the descriptor's
``close(2)``, as for a socket), and the close that finalizes a forgotten file is the garbage
collector's, not a call of yours. ``close()`` is reported under its own name: the ``flush()`` it
makes is part of it.

Off the loop a checked call costs one Python-level method call more; the objects keep their
checks after the detector stops, and then only test a flag.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Callable
from typing import Any, Final

from . import _detector

__all__ = ["tracked_open"]

_TEXT_METHODS: Final = (
    "read",
    "readline",
    "readlines",
    "write",
    "writelines",
    "flush",
    "close",
    "__next__",
)
_READ_METHODS: Final = ("read", "read1", "readinto", "readinto1", "readline", "readlines", "peek")
_WRITE_METHODS: Final = ("write", "writelines", "flush", "close")
#: methods that do I/O only on a file open for writing (and not being finalized)
_WRITING_ONLY: Final = frozenset({"flush", "close"})


def _writing(file: Any) -> bool:
    """True if *file* is open for writing, and not being closed by its finalizer."""
    try:
        return not file.closed and file.writable() and not getattr(file, "_finalizing", False)
    except ValueError:  # detached
        return False


def _checked(base: type[Any], name: str) -> Callable[..., Any]:
    method = getattr(base, name)
    qualified = f"io.{base.__name__}.{name}"
    writing_only = name in _WRITING_ONLY

    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if not _detector._active or _detector.current_loop_kind() is None:
            return method(self, *args, **kwargs)
        if writing_only and not _writing(self):
            with _detector.suspended():  # nor what it calls: a finalizer's flush and close
                return method(self, *args, **kwargs)
        return _detector.guarded(
            qualified, "file", functools.partial(method, self, *args, **kwargs)
        )

    checked.__name__ = name
    checked.__qualname__ = f"{base.__name__}.{name}"
    return checked


def _subclass(base: type[Any], methods: tuple[str, ...]) -> type[Any]:
    namespace: dict[str, Any] = {name: _checked(base, name) for name in methods}
    namespace["__module__"] = "io"
    return type(base.__name__, (base,), namespace)


_TRACKED: Final[dict[type[Any], type[Any]]] = {
    io.TextIOWrapper: _subclass(io.TextIOWrapper, _TEXT_METHODS),
    io.BufferedReader: _subclass(io.BufferedReader, (*_READ_METHODS, "__next__")),
    io.BufferedWriter: _subclass(io.BufferedWriter, _WRITE_METHODS),
    io.BufferedRandom: _subclass(io.BufferedRandom, (*_READ_METHODS, *_WRITE_METHODS, "__next__")),
}


def _buffer_size(raw: Any, buffering: int) -> int:
    if buffering > 1:
        return buffering
    try:  # what io.open does: the file system's block size
        size = os.fstat(raw.fileno()).st_blksize
    except (OSError, AttributeError, ValueError):
        return io.DEFAULT_BUFFER_SIZE
    return size if size > 1 else io.DEFAULT_BUFFER_SIZE


def _rebuild_buffer(buffer: Any, buffering: int) -> Any:
    tracked = _TRACKED.get(type(buffer))
    if tracked is None:
        return buffer
    raw = buffer.detach()
    return tracked(raw, _buffer_size(raw, buffering))


def tracked_open(open_: Callable[..., Any]) -> Callable[..., Any]:
    """*open_* (``io.open``), returning checked file objects while a detector tracks files."""

    @functools.wraps(open_)
    def open_tracked(
        file: Any,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
        closefd: bool = True,
        opener: Callable[[str, int], int] | None = None,
    ) -> Any:
        __tracebackhide__ = True
        result = open_(file, mode, buffering, encoding, errors, newline, closefd, opener)
        if not _detector.tracking_files() or type(result) not in _TRACKED:
            return result
        try:
            if type(result) is io.TextIOWrapper:
                settings = (result.encoding, result.errors, newline, result.line_buffering)
                write_through = result.write_through
                buffer = _rebuild_buffer(result.detach(), buffering)
                text = _TRACKED[io.TextIOWrapper](buffer, *settings, write_through)
                text.mode = mode
                return text
            return _rebuild_buffer(result, buffering)
        except Exception:
            with contextlib.suppress(Exception):
                result.close()
            raise

    return open_tracked
