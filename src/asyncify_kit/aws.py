"""An async client for any AWS service: aioboto3 natively, or boto3 run in worker threads.

```python
async with aws.client("sqs", region_name="eu-west-1") as sqs:              # aioboto3
    queue = await sqs.create_queue(QueueName="jobs")

async with aws.client("dynamodb", backend="boto3") as ddb:                  # boto3 in threads
    tables = await ddb.list_tables()
```

Both backends take the keyword arguments of ``session.client(service, ...)`` and give a
client with the same call shapes: every operation is awaited, ``get_paginator(name)``
returns a paginator whose ``paginate(...)`` is an async iterator of pages,
``get_waiter(name).wait(...)`` is awaited, and a streaming response body (S3's
``get_object``) has aiobotocore's members on both: ``await body.read(amt)``,
``readinto(buffer)``, ``readlines()`` and ``anext()``; ``async for`` over ``body``,
``body.iter_chunks(chunk_size)`` or ``body.iter_lines(chunk_size, keepends)`` (lines without
their endings, as botocore gives them); ``body.tell()``, ``body.readable()`` and
``body.content_length``, not awaited; ``async with response["Body"] as body:`` (which gives
the body itself on both backends) or ``await body.close()``, after which every read raises
botocore's ``ResponseStreamingError``. aioboto3 runs on asyncio only; the boto3 backend
also runs on trio. ``paginate(...)`` also has aiobotocore's ``build_full_result()`` and
``search()``, and an event stream (S3 Select's ``Payload``) is read with ``async for event in
payload``, on both. An S3 client's ``upload_file``, ``upload_fileobj``, ``download_file``,
``download_fileobj`` and ``copy`` behave as boto3's on both (with aioboto3, they are
`_s3_transfer`'s, not aioboto3's own). A call made after the ``async with`` block raises
``RuntimeError``. Errors are botocore's own (``ClientError``), unchanged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import functools
import importlib
import inspect
import socket
import ssl
import threading
import traceback
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

from . import _aio_payloads, _s3_transfer
from ._cleanup import finish
from ._executor import DEFAULT_POOL, Work, asyncio_loop, current_job, quiet_late_errors
from ._offload import OffloadedIterator, asyncify, run_owned, run_sync
from .exceptions import BackendNotInstalled, CallCancelled, ConfigError, Unsupported

__all__ = ["AsyncBody", "Boto3Client", "botocore_session", "bounded_config", "client"]

Backend = Literal["aioboto3", "boto3"]


class PaginatorLike(Protocol):
    def paginate(self, **kwargs: object) -> Any: ...  # a botocore PageIterator


_DEFAULT_CHUNK_SIZE = 1024  # botocore's and aiobotocore's StreamingBody._DEFAULT_CHUNK_SIZE


def _sync_events(stream: Iterable[Any]) -> Generator[Any, None, None]:
    yield from stream


# an event is Any, which makes the overloads of asyncify ambiguous: name the type
_iter_events: Callable[[Iterable[Any]], OffloadedIterator[Any]] = asyncify(_sync_events)


class _AsyncEventStream:
    """A boto3 ``EventStream`` (S3's ``select_object_content`` payload...) made async:
    ``async for event in stream``, one thread hop per event, as aiobotocore's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __aiter__(self) -> OffloadedIterator[Any]:
        return _iter_events(self._stream)

    async def get_initial_response(self) -> Any:
        return await run_sync(self._stream.get_initial_response)

    def _close_now(self) -> None:
        self._stream.close()

    async def close(self) -> None:
        # to its end: a stream left in a cancelled task still closes its connection now
        await finish(run_sync(self._close_now))

    def __repr__(self) -> str:
        return f"<AsyncEventStream of {type(self._stream).__name__}>"


def _closed_error() -> Exception:
    """What reading a closed body raises: botocore's error, as aiobotocore's body raises it."""
    from botocore.exceptions import ResponseStreamingError

    error: Exception = ResponseStreamingError(error=ConnectionError("Connection closed"))
    return error


@asyncify
def _iter_chunks(body: AsyncBody, chunk_size: int) -> Generator[bytes, None, None]:
    while chunk := body._read_now(chunk_size):
        yield chunk


class _BodyLines(AsyncIterator[bytes]):
    """The lines of a body, as botocore's ``iter_lines`` cuts them, from chunks read one per
    thread hop and cut on the loop: no hop per line.

    A class rather than an async generator: one left early (``break``) needs no finalizer. A
    line that runs over many chunks is joined once, when it ends, not once per chunk.
    """

    def __init__(self, chunks: OffloadedIterator[bytes], keepends: bool) -> None:
        self._chunks = chunks
        self._keepends = keepends
        self._pending: list[bytes] = []  # the line not known to be complete yet, in parts
        self._ready: deque[bytes] = deque()
        self._done = False

    def _cut(self, chunk: bytes) -> None:
        pending = self._pending
        if (
            pending
            and not pending[-1].endswith((b"\n", b"\r"))
            and b"\n" not in chunk
            and b"\r" not in chunk
        ):
            pending.append(chunk)  # the line goes on
            return
        lines = b"".join((*pending, chunk)).splitlines(True)
        self._pending = [lines.pop()]  # its ending may go on in the next chunk (\r, \n)
        self._ready.extend(line.splitlines(self._keepends)[0] for line in lines)

    async def __anext__(self) -> bytes:
        while not self._ready:
            if self._done:
                raise StopAsyncIteration
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._done = True
                if self._pending:
                    self._ready.append(b"".join(self._pending).splitlines(self._keepends)[0])
                    self._pending = []
            except BaseException:
                self._done = True
                raise
            else:
                self._cut(chunk)
        return self._ready.popleft()

    async def aclose(self) -> None:
        self._done = True
        self._ready.clear()
        await self._chunks.aclose()


class AsyncBody:
    """A boto3 ``StreamingBody`` with the call shapes of aiobotocore's: each read is one
    thread hop.

    ``await read(amt)``, ``await readinto(buffer)``, ``await readlines()``, ``await anext()``;
    ``iter_chunks(chunk_size)``, ``iter_lines(chunk_size, keepends)`` and ``async for chunk in
    body`` are async iterators; ``tell()``, ``readable()`` and ``content_length`` are plain
    (no I/O); ``async with body`` gives the body and closes it. At its end every read gives
    nothing; once closed (``close()``, ``async with`` left, or its client's block ended) every
    read raises botocore's ``ResponseStreamingError``, as aiobotocore's.
    """

    def __init__(self, body: Any, *, content_length: int | None = None) -> None:
        self._body = body
        self._content_length = content_length
        self._amount_read = 0
        self._at_end = False
        self._closed = False

    # -- in a worker thread: each is the whole of one hop

    def _read_now(self, amt: int | None) -> bytes:
        if self._closed:
            raise _closed_error()
        data: bytes = self._body.read(amt)
        self._amount_read += len(data)
        if amt is None or (not data and amt > 0):
            self._at_end = True
        return data

    def _readinto_now(self, buffer: bytearray | memoryview) -> int:
        if self._closed:
            raise _closed_error()
        count: int = self._body.readinto(buffer)
        self._amount_read += count
        if not count and len(buffer) > 0:
            self._at_end = True
        return count

    def _readlines_now(self) -> list[bytes]:
        return self._read_now(None).splitlines()

    def _close_now(self) -> None:
        self._closed = True
        self._body.close()

    # -- the API

    @property
    def content_length(self) -> int | None:
        """The response's ``Content-Length`` (``None`` without one), as aiobotocore's body."""
        return self._content_length

    def tell(self) -> int:
        """The bytes read from the body so far."""
        return self._amount_read

    def readable(self) -> bool:
        """Whether there may be bytes left to read: False at the end and once closed."""
        if self._closed or self._at_end:
            return False
        return self._content_length is None or self._amount_read < self._content_length

    async def read(self, amt: int | None = None) -> bytes:
        """At most *amt* bytes (all the rest without *amt*); ``b""`` at the end."""
        return await run_sync(self._read_now, amt)

    async def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read into *buffer* (as many bytes as it holds at most); 0 at the end."""
        return await run_sync(self._readinto_now, buffer)

    async def readlines(self) -> list[bytes]:
        """The lines left, without their line endings (as aiobotocore's, unlike botocore's
        sync ``readlines``), read in one thread hop."""
        return await run_sync(self._readlines_now)

    async def __anext__(self) -> bytes:
        """The next chunk of at most 1 KiB; `StopAsyncIteration` at the end."""
        chunk = await self.read(_DEFAULT_CHUNK_SIZE)
        if chunk:
            return chunk
        raise StopAsyncIteration

    anext = __anext__

    def iter_chunks(self, chunk_size: int = 1024 * 1024) -> OffloadedIterator[bytes]:
        """The remaining content in chunks of at most *chunk_size* bytes, one thread hop per
        chunk (1 MiB by default, where aiobotocore's reads 1 KiB: a hop costs more than a read
        of aiohttp's buffer)."""
        return _iter_chunks(self, chunk_size)

    def iter_lines(
        self, chunk_size: int = 1024 * 1024, keepends: bool = False
    ) -> AsyncIterator[bytes]:
        """The remaining content line by line, without their line endings unless *keepends*
        (as botocore's and aiobotocore's ``iter_lines``): one thread hop per *chunk_size*
        bytes read, none per line."""
        return _BodyLines(_iter_chunks(self, chunk_size), keepends)

    def __aiter__(self) -> OffloadedIterator[bytes]:
        """``async for chunk in body``: botocore's default chunks (1 KiB), as aiobotocore's."""
        return _iter_chunks(self, _DEFAULT_CHUNK_SIZE)

    async def close(self) -> None:
        # to its end: a body left in a cancelled task still closes its connection now
        await finish(run_sync(self._close_now))

    async def __aenter__(self) -> AsyncBody:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncBody of {type(self._body).__name__}>"


_HandedOut = AsyncBody | _AsyncEventStream  # what the boto3 backend hands out, closed with it


class _Closed:
    """What `_AioBody.close` returns: the body is closed already; awaiting this is optional."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator function: awaiting it finishes at once


_CLOSED = _Closed()


class _AioBody:
    """An aiobotocore ``StreamingBody`` whose ``async with ... as body`` gives the body.

    aiobotocore's ``__aenter__`` gives the raw aiohttp response instead (whose ``read`` takes
    no size, with no ``iter_chunks`` nor ``iter_lines``), and its ``close()`` cannot be
    awaited: with this wrapper both are as on the boto3 backend's `AsyncBody`, and so are
    ``readable()`` (aiobotocore's raises AttributeError), ``readinto()`` (aiobotocore's S3 body
    leaves it out of ``tell()``, and a later ``read()`` fails) and ``anext(body)``. Every other
    attribute (``read``, ``readlines``, ``tell``, ``iter_chunks``, ``iter_lines``,
    ``content_length``...) is the body's own, and ``close()`` still closes at once, so code
    that does not await it works as before.
    """

    def __init__(self, body: Any) -> None:
        self._body = body

    def close(self) -> _Closed:
        """Close the body (its connection) now; ``await body.close()`` works too."""
        self._body.close()
        return _CLOSED

    async def read(self, amt: int | None = None) -> bytes:
        """Read *amt* bytes, or all that is left (its CRC32 checked at the end, as always).

        A whole body of 16 MiB or more is read in slices joined in a worker thread:
        aiohttp's ``read()`` joins what it received on the event loop (100 MB: 63-86 ms of
        it; as the ``s3://`` backend does; `_aio_payloads.read_large_body`)."""
        if amt is None:
            whole = await _aio_payloads.read_large_body(self._body)
            if whole is not None:
                return whole
        data: bytes = await self._body.read(amt)
        return data

    def readable(self) -> bool:
        """Whether there may be bytes left to read: False at the end and once closed."""
        content = self._body.content  # aiohttp's StreamReader: its error is set by a close
        return content.exception() is None and not content.at_eof()

    async def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read into *buffer* (as many bytes as it holds at most); 0 at the end."""
        chunk: bytes = await self._body.read(len(buffer))  # counted, checked and mapped
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)

    def __aiter__(self) -> AsyncIterator[bytes]:
        chunks: AsyncIterator[bytes] = self._body.__aiter__()
        return chunks

    async def __anext__(self) -> bytes:
        chunk: bytes = await self._body.__anext__()
        return chunk

    async def __aenter__(self) -> _AioBody:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # aiobotocore's own exit: the connection goes back to the pool if the body was read
        await self._body.__aexit__(*exc_info)

    def __repr__(self) -> str:
        return f"<aws body of {type(self._body).__name__}>"


class _AioEventStream:
    """An aiobotocore ``AioEventStream`` whose ``close()`` can be awaited, as on the boto3
    backend's `_AsyncEventStream` (it still closes at once without ``await``)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def close(self) -> _Closed:
        self._stream.close()
        return _CLOSED

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __aiter__(self) -> AsyncIterator[Any]:
        events: AsyncIterator[Any] = self._stream.__aiter__()
        return events

    def __repr__(self) -> str:
        return f"<aws event stream of {type(self._stream).__name__}>"


def _aio_bodies(handed_out: weakref.WeakSet[Any]) -> Callable[..., None]:
    """An ``after-call`` handler (it runs before the response reaches the caller) replacing
    every aiobotocore ``StreamingBody`` (``AioEventStream``) at the top of a response by an
    `_AioBody` (`_AioEventStream`), remembered in *handed_out* (closed with the client)."""

    def wrap_bodies(parsed: Any = None, **kwargs: Any) -> None:
        if isinstance(parsed, dict):
            from aiobotocore.eventstream import AioEventStream
            from aiobotocore.response import StreamingBody

            for name, value in parsed.items():
                if isinstance(value, StreamingBody):
                    parsed[name] = _AioBody(value)
                    handed_out.add(value)
                elif isinstance(value, AioEventStream):
                    parsed[name] = _AioEventStream(value)
                    handed_out.add(value)

    return wrap_bodies


def _close_bodies(response: Any) -> None:
    """Close every ``StreamingBody`` at the top of a response nobody will get (its caller
    was cancelled while the call ran in its thread): each holds an open connection."""
    if isinstance(response, dict):
        from botocore.eventstream import EventStream
        from botocore.response import StreamingBody

        for value in response.values():
            if isinstance(value, (StreamingBody, EventStream)):
                value.close()


def _close_client(client: Any) -> None:
    client.close()


def _refuse_closed(model: Any = None, **kwargs: Any) -> None:
    """A ``before-call`` handler registered when the ``async with aws.client(...)`` block
    ends: a call made later would open a connection (aiohttp session) nobody closes."""
    service = model.service_model.service_name if model is not None else "AWS"
    operation = model.name if model is not None else "this operation"
    raise RuntimeError(
        f"this {service} client is closed (its `async with aws.client(...)` block has ended); "
        f"call {operation} inside the block"
    )


def _content_length(response: dict[str, Any]) -> int | None:
    """The ``Content-Length`` of a response, as aiohttp gives it to aiobotocore's body."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    try:
        return int(headers["content-length"])
    except (KeyError, TypeError, ValueError):
        return None


def _async_bodies(response: Any, handed_out: weakref.WeakSet[_HandedOut]) -> Any:
    """Replace every ``StreamingBody`` (``EventStream``) at the top of a response dict by an
    `AsyncBody` (`_AsyncEventStream`), remembered in *handed_out* (closed with the client)."""
    if isinstance(response, dict):
        from botocore.eventstream import EventStream
        from botocore.response import StreamingBody

        for name, value in response.items():
            wrapper: _HandedOut
            if isinstance(value, StreamingBody):
                wrapper = AsyncBody(value, content_length=_content_length(response))
            elif isinstance(value, EventStream):
                wrapper = _AsyncEventStream(value)
            else:
                continue
            response[name] = wrapper
            handed_out.add(wrapper)
    return response


def _sync_pages(paginator: PaginatorLike, kwargs: dict[str, object]) -> Generator[Any, None, None]:
    yield from paginator.paginate(**kwargs)


def _sync_search(
    paginator: PaginatorLike, kwargs: dict[str, object], expression: str
) -> Generator[Any, None, None]:
    yield from paginator.paginate(**kwargs).search(expression)


def _full_result(paginator: PaginatorLike, kwargs: dict[str, object]) -> dict[str, Any]:
    result: dict[str, Any] = paginator.paginate(**kwargs).build_full_result()
    return result


# a page is a dict of Any, which makes the overloads of asyncify ambiguous: name the type
_pages: Callable[[PaginatorLike, dict[str, object]], OffloadedIterator[dict[str, Any]]]
_pages = asyncify(_sync_pages)
_search: Callable[[PaginatorLike, dict[str, object], str], OffloadedIterator[Any]]
_search = asyncify(_sync_search)


class _PageIterator:
    """What ``paginate()`` gives on the boto3 backend, with aiobotocore's call shapes:
    ``async for page in ...``, ``await ....build_full_result()``, ``async for x in
    ....search(expression)``; one thread hop per page."""

    def __init__(self, paginator: PaginatorLike, kwargs: dict[str, object]) -> None:
        self._paginator = paginator
        self._kwargs = kwargs
        self._pages = _pages(paginator, kwargs)

    def __aiter__(self) -> _PageIterator:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self._pages.__anext__()

    async def aclose(self) -> None:
        await self._pages.aclose()

    async def build_full_result(self) -> dict[str, Any]:
        """Every page merged into one response (botocore's ``build_full_result``)."""
        return await run_sync(_full_result, self._paginator, self._kwargs)

    def search(self, expression: str) -> OffloadedIterator[Any]:
        """The JMESPath *expression* applied to each page, its results one by one."""
        return _search(self._paginator, self._kwargs, expression)


class _Paginator:
    def __init__(self, paginator: Any) -> None:
        self._paginator = paginator

    def paginate(self, **kwargs: Any) -> _PageIterator:
        """The pages, fetched one per thread hop."""
        return _PageIterator(self._paginator, kwargs)


class _Waiter:
    """boto3's waiter, whose `wait` returns the last response, as aiobotocore's does
    (botocore's returns None)."""

    def __init__(self, waiter: Any) -> None:
        self._waiter = waiter
        self._last: dict[int, Any] = {}  # by thread: the response of its wait's last poll
        poll = getattr(waiter, "_operation_method", None)  # (botocore's, private)
        if callable(poll):

            def recorded(**kwargs: Any) -> Any:
                response = self._last[threading.get_ident()] = poll(**kwargs)
                return response

            waiter._operation_method = recorded

    def _wait(self, **kwargs: Any) -> Any:
        try:
            self._waiter.wait(**kwargs)
            return self._last.get(threading.get_ident())
        finally:
            self._last.pop(threading.get_ident(), None)

    async def wait(self, **kwargs: Any) -> Any:
        return await run_sync(self._wait, **kwargs)


#: boto3's managed S3 transfers (s3transfer's): each one call, run in one worker thread
_TRANSFERS = frozenset(
    {"copy", "download_file", "download_fileobj", "upload_file", "upload_fileobj"}
)


class _TransferCancelled(CallCancelled, concurrent.futures.CancelledError):
    """What stops a boto3 transfer whose caller was cancelled, raised in s3transfer's threads.

    s3transfer fails the transfer on it and runs its own clean-ups, as for any error: the
    multipart upload aborted, the temp file of a download removed, the parts not yet started
    skipped. A ``concurrent.futures.CancelledError``, which botocore lets through as it is
    (any other error raised while a request body is sent becomes an ``HTTPClientError``,
    which botocore retries); a `CallCancelled`, which the worker's caller drops unlogged.
    """


class _TransferStop:
    """Tells one boto3 transfer, in s3transfer's threads, that its caller was cancelled.

    boto3 runs the whole transfer as one call in a worker thread, which the caller, once
    cancelled, waits for (the "wait" policy): nothing told s3transfer to stop, so a cancelled
    ``download_file`` still replaced its file and a cancelled upload still made its object.
    The worker thread records its job (`current_job`), whose ``cancel_requested`` the
    caller's cancellation sets; boto3's progress `callback` and the thread side of an async
    file object (`file`) raise `_TransferCancelled` once it is set.

    An upload's callback raises only while a request is being sent (`_sending`): s3transfer
    also reports a part's last bytes as it closes the part's body, and an error there skips
    the close of the file it reads (``ReadFileChunk.close``), left to the garbage collector.
    """

    __slots__ = ("job", "upload")

    def __init__(self, *, upload: bool = False) -> None:
        self.job: Work | None = None
        self.upload = upload

    def check(self) -> None:
        job = self.job
        if job is not None and job.cancel_requested:
            raise _TransferCancelled(f"the caller of {job.describe()} was cancelled")

    def callback(self, user: Callable[[int], object] | None) -> Callable[[int], None]:
        """boto3's ``Callback``: the user's (*user*, if any, as boto3 takes it), then the
        check. s3transfer calls it for every 256 KiB sent or received, and per part copied."""

        def progress(amount: int) -> None:
            if user:
                user(amount)
            if not self.upload or getattr(_sending, "active", False):
                self.check()

        return progress

    def file(self, fileobj: Any) -> Any:
        """*fileobj* for boto3's threads (`_s3_transfer.thread_side`); an async one's reads
        and writes also check first. A download's parts are fetched well before a slow sink
        has written them (s3transfer queues up to 1,000 chunks for it), with no progress
        left to report: a cancelled ``download_fileobj`` wrote on to the end."""
        side = _s3_transfer.thread_side(fileobj)
        return side if side is fileobj else _StoppableFile(side, self)


#: whether this thread is sending a request of a boto3 S3 client (`_track_sending`)
_sending = threading.local()


def _sending_starts(**kwargs: Any) -> None:
    _sending.active = True


def _sending_ends(**kwargs: Any) -> None:
    _sending.active = False


def _track_sending(client: Any) -> None:
    """Mark, in `_sending`, the threads sending a request of the boto3 S3 *client*: botocore
    emits ``before-send`` before each attempt and ``response-received`` after it, whether
    it failed or not."""
    events = client.meta.events
    events.register("before-send.s3", _sending_starts, unique_id="asyncify-kit-sending")
    events.register("response-received.s3", _sending_ends, unique_id="asyncify-kit-sent")


class _StoppableFile:
    """An async file object's thread side whose ``read`` and ``write`` stop once the
    transfer's caller is cancelled (see `_TransferStop.file`)."""

    def __init__(self, side: Any, stop: _TransferStop) -> None:
        self._side = side
        self._stop = stop

    def read(self, size: int = -1) -> Any:
        self._stop.check()
        return self._side.read(size)

    def write(self, data: bytes) -> Any:
        self._stop.check()
        return self._side.write(data)


def _run_transfer(
    stop: _TransferStop, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run boto3's transfer *method* (in a worker thread), with *stop*'s ``Callback``."""
    stop.job = current_job()
    try:
        bound = inspect.signature(method).bind(*args, **kwargs)
    except (TypeError, ValueError):  # arguments boto3 refuses (its own error), or no signature
        return method(*args, **kwargs)
    if "Callback" not in bound.signature.parameters:
        return method(*args, **kwargs)
    bound.arguments["Callback"] = stop.callback(bound.arguments.get("Callback"))
    try:
        return method(*bound.args, **bound.kwargs)
    except _TransferCancelled as exc:
        # s3transfer keeps the error, and through its traceback the frames it was raised
        # in, among them a part's unread response: in a cycle, its socket was left to the
        # garbage collector (ResourceWarning). Nobody will see these frames: let them go
        traceback.clear_frames(exc.__traceback__)
        raise


class Boto3Client:
    """A boto3 client whose operations are awaitable and run in worker threads.

    Attributes that are not operations (``meta``, ``exceptions``) are the client's own;
    ``wrapped`` is the boto3 client itself.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        if client.meta.service_model.service_name == "s3":
            _track_sending(client)  # (see `_TransferStop`)
        # the bodies and event streams handed out: each may hold a connection out of the
        # pool, which closing the client does not close (aiobotocore's session close does)
        self._streams: weakref.WeakSet[_HandedOut] = weakref.WeakSet()

    def _close(self) -> None:
        """Close the bodies still open, then the client (blocking: run it in a thread)."""
        for stream in list(self._streams):
            stream._close_now()
        self._client.close()

    @property
    def wrapped(self) -> Any:
        return self._client

    def get_paginator(self, operation_name: str) -> _Paginator:
        return _Paginator(self._client.get_paginator(operation_name))

    def get_waiter(self, waiter_name: str) -> _Waiter:
        return _Waiter(self._client.get_waiter(waiter_name))

    def can_paginate(self, operation_name: str) -> bool:
        result: bool = self._client.can_paginate(operation_name)
        return result

    async def upload_fileobj(self, Fileobj: Any, *args: Any, **kwargs: Any) -> None:
        """boto3's, for a sync file object or an async one (aiofiles'), as on aioboto3."""
        stop = _TransferStop(upload=True)
        await self._transfer("upload_fileobj", stop, (stop.file(Fileobj), *args), kwargs)

    async def download_fileobj(
        self,
        Bucket: str,
        Key: str,
        Fileobj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """boto3's, for a sync file object or an async one (aiofiles'), as on aioboto3."""
        stop = _TransferStop()
        args = (Bucket, Key, stop.file(Fileobj), *args)
        await self._transfer("download_fileobj", stop, args, kwargs)

    async def _transfer(
        self, name: str, stop: _TransferStop, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """boto3's transfer *name*, in one worker thread; stopped by *stop* if the caller is
        cancelled (the caller still leaves once boto3 has cleaned up)."""
        return await run_sync(_run_transfer, stop, getattr(self._client, name), args, kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return self._operation(name)

    def _operation(self, name: str) -> Callable[..., Any]:
        attr = getattr(self._client, name)
        if name in _TRANSFERS:  # upload_file, download_file, copy

            async def transfer(*args: Any, **kwargs: Any) -> Any:
                stop = _TransferStop(upload=name == "upload_file")
                return await self._transfer(name, stop, args, kwargs)

            transfer.__name__ = name
            return transfer

        async def operation(*args: Any, **kwargs: Any) -> Any:
            # a response that arrives for a cancelled caller has its bodies closed for it
            # (a cancelled caller's error, a missing key say, is dropped, not logged)
            with quiet_late_errors():
                response = await run_owned(DEFAULT_POOL, _close_bodies, attr, *args, **kwargs)
            return _async_bodies(response, self._streams)

        operation.__name__ = name
        return operation

    def __repr__(self) -> str:
        return f"<Boto3Client {self._client.meta.service_model.service_name!r} in threads>"


def _stall_bound_socket(
    user_timeout_ms: int, socket_options: list[tuple[int, int, int]], addr_info: Any
) -> socket.socket:
    """A socket for an aiohttp connection of aiobotocore that gives up on data the server
    leaves unacknowledged for *user_timeout_ms* (``TCP_USER_TIMEOUT``, Linux): aiohttp has
    no write timeout, so a server that stopped reading in the middle of a body stalled the
    write for good once the socket buffers were full. The kernel then ends the connection
    with ``ETIMEDOUT``: a write fails as a read that times out does. It also gets botocore's
    *socket_options* (``Config(tcp_keepalive=True)``), which aiobotocore leaves unused."""
    family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family=family, type=type_, proto=proto)
    for level, name, value in socket_options:
        with contextlib.suppress(OSError):  # (an option this system does not have)
            sock.setsockopt(level, name, value)
    with contextlib.suppress(OSError):  # (a kernel without it)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms)
    return sock


#: how long a request sent with ``Expect: 100-continue`` waits for the server's ``100
#: Continue`` before it sends its body anyway: botocore's own wait (``AWSConnection``)
_CONTINUE_WAIT = 1.0


def _longest(timeout: Any) -> float:
    """The longer of aiobotocore's ``(connect, read)`` timeouts (or its one timeout); 0 for
    none."""
    bounds = timeout if isinstance(timeout, (list, tuple)) else (timeout,)
    return max((float(bound) for bound in bounds if bound), default=0.0)


def _send_the_body(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


@functools.cache
def _bounded_session_cls() -> type[Any]:
    """aiobotocore's aiohttp session class, with two waits bounded that aiohttp leaves
    unbounded:

    - a request sent with ``Expect: 100-continue`` (botocore's S3 ``PutObject``,
      ``UploadPart``... of a file-like body) waited for the server's ``100 Continue`` for
      good: aiohttp arms its read timeout only once the body is sent. It now sends the body
      after `_CONTINUE_WAIT` seconds without one, as botocore does (through a subclass of
      aiohttp's ``ClientRequest`` given to the session; where aiobotocore's session is not
      reachable so, the header is dropped instead: the body goes at once);
    - a write the server leaves unacknowledged is given up after the longer of the read and
      connect timeouts (`_stall_bound_socket`), on Linux with aiohttp 3.12 or later.

    And one blocking call moved off the event loop: aiobotocore makes a client's TLS context
    at its first request, on the loop, loading the CA bundle from disk (certifi's: 50 ms of
    the loop on this machine, for every client, http:// endpoints too). It is made in a
    worker thread (`_connector_tls`, which also verifies the endpoint's certificate through
    a proxy, where aiobotocore did not), where aiobotocore's names are reachable.
    """
    import aiohttp
    from aiobotocore.httpsession import AIOHTTPSession

    user_timeout = (
        hasattr(socket, "TCP_USER_TIMEOUT")
        and "socket_factory" in inspect.signature(aiohttp.TCPConnector).parameters
    )
    # what giving aiohttp's session our request class takes (private names of aiobotocore
    # and aiohttp, checked here: without them, the Expect header is dropped instead)
    reachable = (
        hasattr(AIOHTTPSession, "_get_session")
        and "_request_class" in getattr(aiohttp.ClientSession, "ATTRS", ())
        and hasattr(aiohttp.ClientRequest, "_continue")
    )

    # what making the TLS context in a thread takes (aiobotocore's private names, checked)
    tls_reachable = hasattr(AIOHTTPSession, "_create_connector") and all(
        hasattr(AIOHTTPSession, name) for name in ("_get_ssl_context", "_setup_proxy_ssl_context")
    )

    class BoundedContinueRequest(aiohttp.ClientRequest):
        def update_expect_continue(self, expect: bool = False) -> None:
            super().update_expect_continue(expect)
            waiter = getattr(self, "_continue", None)  # what the body's writer awaits
            if isinstance(waiter, asyncio.Future) and not waiter.done():
                timer = waiter.get_loop().call_later(_CONTINUE_WAIT, _send_the_body, waiter)
                waiter.add_done_callback(lambda _: timer.cancel())

    class BoundedSession(AIOHTTPSession):  # type: ignore[misc]
        def __init__(
            self,
            *args: Any,
            timeout: Any = None,
            socket_options: Any = None,
            connector_args: Any = None,
            **kwargs: Any,
        ) -> None:
            seconds = _longest(timeout)
            connector = dict(connector_args) if connector_args is not None else None
            if user_timeout and seconds and connector is not None:
                connector.setdefault(
                    "socket_factory",
                    functools.partial(
                        _stall_bound_socket,
                        max(1, round(seconds * 1000)),
                        list(socket_options or ()),
                    ),
                )
            super().__init__(
                *args,
                timeout=timeout,
                socket_options=socket_options,
                connector_args=connector,
                **kwargs,
            )
            # TLS contexts made in a thread, by proxy URL, for `_create_connector` to take
            self._tls_made: dict[Any, ssl.SSLContext | None] = {}
            self._tls_in_thread = tls_reachable and all(hasattr(self, n) for n in _TLS_NAMES)

        def _create_connector(self, proxy_url: Any) -> Any:
            if proxy_url not in self._tls_made:
                return super()._create_connector(proxy_url)
            args: dict[str, Any] = dict(self._connector_args or {})
            return aiohttp.TCPConnector(
                limit=self._max_pool_connections,
                ssl=self._tls_made.pop(proxy_url) or False,
                **args,
            )

        async def _get_session(self, proxy_url: Any) -> Any:
            if self._tls_in_thread and proxy_url not in self._sessions:
                tls = await run_sync(_connector_tls, self, proxy_url)
                if proxy_url not in self._sessions:  # (not made meanwhile by another call)
                    self._tls_made[proxy_url] = tls
            session = await super()._get_session(proxy_url)
            if reachable and getattr(session, "_request_class", None) is aiohttp.ClientRequest:
                session._request_class = BoundedContinueRequest
            return session

        async def send(self, request: Any) -> Any:
            if not reachable and request.headers.get("Expect") == "100-continue":
                del request.headers["Expect"]
            return await super().send(request)

    return BoundedSession


#: the attributes of aiobotocore's ``AIOHTTPSession`` that `_connector_tls` and the connector
#: made with its context read
_TLS_NAMES = (
    "_verify",
    "_cert_file",
    "_key_file",
    "_sessions",
    "_max_pool_connections",
    "_connector_args",
)


def _connector_tls(session: Any, proxy_url: Any) -> ssl.SSLContext | None:
    """The TLS context of a connector, as aiobotocore's ``AIOHTTPSession._create_connector``
    makes it (aiobotocore 2.25) but for one case; blocking (it reads the CA bundle and any
    client certificate): run in a worker thread.

    The case: requests through a proxy (``Config(proxies=...)``, or ``HTTPS_PROXY``) without
    a ``proxy_ca_bundle`` or ``proxy_client_cert`` got no context, and aiobotocore's
    connector then took ``ssl=False``: no certificate of the endpoint was verified (an
    untrusted one was accepted through the tunnel; boto3 refuses it). Such a connector
    gets the context a direct one gets. With proxy settings, their context (trusting the
    proxy's CA as well, as aiobotocore's does) is kept.
    """
    from botocore.httpsession import get_cert_path

    if not session._verify:
        return None
    proxied = session._setup_proxy_ssl_context(proxy_url) if proxy_url else None
    context: ssl.SSLContext = proxied or session._get_ssl_context()
    if session._cert_file:
        context.load_cert_chain(session._cert_file, session._key_file)
    ca_certs = get_cert_path(session._verify)
    if ca_certs:
        context.load_verify_locations(ca_certs, None, None)
    return context


def bounded_config(config: Any = None) -> Any:
    """*config* (a botocore ``Config``, an aiobotocore ``AioConfig``, or None) as an
    ``AioConfig`` whose aiohttp connections bound the two waits aiohttp leaves unbounded
    (see `_bounded_session_cls`): a request never waits more than a second for a ``100
    Continue``, and a write that makes no progress ends after the read timeout (or the
    connect timeout, if longer), as on botocore's own connections. A config naming its own
    HTTP session class is returned as it is."""
    from aiobotocore.config import AioConfig
    from aiobotocore.httpsession import AIOHTTPSession

    session_cls = _bounded_session_cls()
    if config is None:
        return AioConfig(http_session_cls=session_cls)
    if isinstance(config, AioConfig):
        if config.http_session_cls is not AIOHTTPSession:
            return config  # the caller's choice (aiobotocore's httpx session...)
        bound = copy.copy(config)
        bound.http_session_cls = session_cls
        return bound
    options = getattr(config, "_user_provided_options", None)  # as AioConfig.merge reads it
    if not isinstance(options, dict):
        return config
    return AioConfig(http_session_cls=session_cls, **options)


_loader_lock = threading.Lock()
_shared_loader: Any = None
_warm_services: set[str] = set()


_AIO_MODULES = (
    "aiobotocore.args",
    "aiobotocore.client",
    "aiobotocore.config",
    "aiobotocore.endpoint",
    "aiobotocore.httpsession",
    "aioboto3.s3.inject",
    "boto3.s3.inject",
)


def _import_aio() -> None:
    """Import the modules an aiobotocore client uses, and make `_bounded_session_cls`.

    Blocking: run in a worker thread (`botocore_session` does). Imported on the event loop
    at a first client's opening, they held it for 650 ms on this machine, 100 ms of it
    aiohttp's import loading the system's CA store twice. (``aioboto3.s3.inject`` and
    ``boto3.s3.inject``: what aioboto3 adds to an S3 client class as it is made, s3transfer
    and multiprocessing with them.)
    """
    for name in _AIO_MODULES:
        with contextlib.suppress(ImportError):  # (another layout: imported later, as before)
            importlib.import_module(name)
    _bounded_session_cls()


#: a response body at least this long is parsed in a worker thread (aioboto3 backends): a
#: ``ListObjectsV2`` page of 1,000 keys (244 KB) took 96-170 ms of the loop to parse
_PARSE_IN_THREAD = 16 * 1024


@functools.cache
def _thread_parsing_factory_cls() -> type[Any]:
    """aiobotocore's response parser factory, whose parsers parse a large response body in
    a worker thread: botocore's parsing (XML or JSON into the output shape, timestamps by
    dateutil) is pure Python, on the event loop in aiobotocore. A body of
    `_PARSE_IN_THREAD` bytes or more, not an event stream, goes to botocore's own parser
    for the protocol (aiobotocore's differs only for event streams) through `run_sync`;
    the rest to aiobotocore's. Parsers are made per response, so none is shared between
    threads."""
    from aiobotocore.parsers import AioResponseParserFactory
    from botocore import parsers

    class ThreadParser:
        def __init__(self, native: Any, threaded: Any) -> None:
            self._native = native
            self._threaded = threaded

        def __getattr__(self, name: str) -> Any:
            return getattr(self._native, name)

        async def parse(self, response: dict[str, Any], shape: Any) -> Any:
            body = response.get("body")
            large = isinstance(body, bytes) and len(body) >= _PARSE_IN_THREAD
            if large and not (shape is not None and shape.serialization.get("eventstream")):
                return await run_sync(self._threaded.parse, response, shape)
            return await self._native.parse(response, shape)

    class ThreadParsingFactory(AioResponseParserFactory):  # type: ignore[misc]
        def create_parser(self, protocol_name: str) -> Any:
            native = super().create_parser(protocol_name)
            sync_cls = parsers.PROTOCOL_PARSERS.get(protocol_name)
            defaults = getattr(self, "_defaults", None)  # (botocore's, checked)
            if sync_cls is None or not isinstance(defaults, dict):
                return native  # (parsed on the loop, as by aiobotocore)
            return ThreadParser(native, sync_cls(**defaults))

    return ThreadParsingFactory


def botocore_session(service: str, *, aio: bool, profile: str | None = None) -> Any:
    """A botocore (or aiobotocore) session whose data for *service* is already loaded.

    Blocking (botocore reads JSON files): call it in a worker thread. Every session made
    here shares one data loader, so the files are read once per process, not per client.
    """
    global _shared_loader
    if aio:
        _import_aio()
        from aiobotocore.session import AioSession

        core: Any = AioSession(profile=profile)
        core.register_component("response_parser_factory", _thread_parsing_factory_cls()())
        _aio_payloads.install(core)  # large bodies hashed in worker threads
    else:
        import botocore.session

        core = botocore.session.Session(profile=profile)
    with _loader_lock:
        if _shared_loader is None:
            _shared_loader = core.get_component("data_loader")
        loader = _shared_loader
        core.register_component("data_loader", loader)
        if service not in _warm_services:
            # a throwaway sync client reads every file a client of this service needs, with
            # the very calls (and cache keys) aiobotocore makes, into the shared loader
            import botocore.session
            from botocore.exceptions import DataNotFoundError

            probe = botocore.session.Session()
            probe.register_component("data_loader", loader)
            client = probe.create_client(
                service,
                region_name="us-east-1",
                aws_access_key_id="warm-up",
                aws_secret_access_key="warm-up",
            )
            model = client.meta.service_model
            for kind in ("paginators-1", "waiters-2"):  # read by get_paginator / get_waiter
                with contextlib.suppress(DataNotFoundError):
                    loader.load_service_model(model.service_name, kind, model.api_version)
            client.close()
            _warm_services.add(service)
    core.get_scoped_config()  # reads ~/.aws/config and credentials files, if any
    return core


def _boto3_client(service: str, kwargs: dict[str, Any]) -> Any:
    """A boto3 client; blocking (its imports too: 90-105 ms on the loop for a first one,
    before): run in a worker thread."""
    try:
        import boto3.session
    except ModuleNotFoundError as exc:
        raise BackendNotInstalled("boto3", "boto3", "s3") from exc

    core = botocore_session(service, aio=False)
    return boto3.session.Session(botocore_session=core).client(service, **kwargs)


def client(
    service: str, backend: Backend = "aioboto3", **kwargs: Any
) -> AbstractAsyncContextManager[Any]:
    """An async client for the AWS *service*, closed when the block ends.

    *kwargs* are those of ``boto3.client`` (``region_name``, ``endpoint_url``, ``config``,
    credentials...). ``backend="aioboto3"`` (default, asyncio only) uses aioboto3;
    ``backend="boto3"`` runs boto3 in worker threads (asyncio and trio).

    >>> async with client("s3", backend="boto3") as s3:
    ...     buckets = await s3.list_buckets()
    """
    if backend not in ("aioboto3", "boto3"):
        raise ConfigError(f"unknown AWS backend {backend!r}; accepted: 'aioboto3' or 'boto3'")
    return _client(service, backend, kwargs)


@contextlib.asynccontextmanager
async def _client(service: str, backend: str, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    if backend == "aioboto3":
        if asyncio_loop() is None:
            raise Unsupported(
                "the 'aioboto3' AWS backend runs on asyncio only, and this is not an asyncio "
                "event loop (trio?); use aws.client(..., backend='boto3') instead"
            )

        def make_session() -> Any:  # (imports included: blocking, see `_import_aio`)
            try:
                import aioboto3
            except ModuleNotFoundError as exc:
                raise BackendNotInstalled("aioboto3", "aioboto3", "s3") from exc
            return aioboto3.Session(botocore_session=botocore_session(service, aio=True))

        session = await run_sync(make_session)
        # the bodies handed out: one left open at the end would keep its aiohttp connection
        streams: weakref.WeakSet[Any] = weakref.WeakSet()
        # no wait without an end: for a "100 Continue", or on a server that stops reading
        kwargs = {**kwargs, "config": bounded_config(kwargs.get("config"))}
        async with session.client(service, **kwargs) as native:
            native.meta.events.register("after-call", _aio_bodies(streams))
            if native.meta.service_model.service_name == "s3":
                _s3_transfer.install(native)  # boto3's transfers, not aioboto3's (see there)
            try:
                yield native
            finally:
                native.meta.events.register("before-call", _refuse_closed)
                for stream in list(streams):
                    stream.close()  # aiobotocore's close: at once, not awaitable
    elif backend == "boto3":
        # a client that arrives for a cancelled caller is closed for it
        sync_client = await run_owned(DEFAULT_POOL, _close_client, _boto3_client, service, kwargs)
        wrapper = Boto3Client(sync_client)
        try:
            yield wrapper
        finally:
            sync_client.meta.events.register("before-call", _refuse_closed)
            # to its end: leaving the block in a cancelled task still closes the connections
            await finish(run_sync(wrapper._close))
    else:
        raise ConfigError(f"unknown AWS backend {backend!r}; accepted: 'aioboto3' or 'boto3'")
