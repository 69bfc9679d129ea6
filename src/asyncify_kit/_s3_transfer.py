"""boto3's S3 transfer methods for ``aws.client("s3", backend="aioboto3")``: ``upload_file``,
``upload_fileobj``, ``download_file``, ``download_fileobj`` and ``copy``, with boto3's call
shapes and what boto3 promises about failures, in place of aioboto3's own.

aioboto3's versions (15.5) lose data or leave work behind where boto3's do not:

- ``download_file`` opens the target for writing before it asks for the object: a missing
  key, a failed part or a cancellation empties an existing file or leaves half of the new
  one. boto3 writes a temp file next to the target and renames it over the target at the end.
- a failed or cancelled multipart upload is never aborted (its parts stay on S3, billed), and
  its uploader tasks are left waiting for good ("Task was destroyed but it is pending"); nor
  is a cancelled multipart copy.
- a failed part of a download leaves the other parts' tasks running, and a ``ClientError``
  from them comes back as a bare ``Exception``.
- a sync file object is read or written on the event loop; ``Callback`` gets running totals
  where boto3 gives each call the bytes just transferred (and nothing for a small copy).

Here, as in boto3 (s3transfer): ``ExtraArgs`` are checked against the same lists, a
multipart upload gets the default checksum when the client computes checksums, parts of a
download are fetched with ``IfMatch`` set to the object's ETag (an object replaced while it
is read fails the download instead of mixing two versions), at most
``Config.max_request_concurrency`` requests run at once, and errors are botocore's own.
A sync file object is read or written in a worker thread, an async one (``aiofiles``) is
awaited. Memory: up to ``max_request_concurrency`` parts of ``multipart_chunksize`` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import io
import os
import secrets
import types
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any

from ._cleanup import finish
from ._executor import DEFAULT_POOL, asyncio_loop, ensure_pool
from ._offload import asyncify, run_owned, run_sync

__all__ = ["install", "thread_side"]


def _config(config: Any) -> Any:
    if config is not None:
        return config
    from boto3.s3.transfer import TransferConfig

    return TransferConfig()


def _check_extra_args(extra: dict[str, Any], allowed: list[str]) -> None:
    """boto3's check (s3transfer's ``_validate_all_known_args``), with its message."""
    for name in extra:
        if name not in allowed:
            raise ValueError(
                f"Invalid extra_args key '{name}', must be one of: {', '.join(allowed)}"
            )


def _only(extra: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k in keys}


def _without(extra: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k not in keys}


def _progress(callback: Callable[[int], object] | None, amount: int) -> None:
    if callback is not None and amount:
        callback(amount)


def _is_async(method: Any) -> bool:
    return inspect.iscoroutinefunction(method)


class _LoopSideFile:
    """An async file object (aiofiles') as the sync one boto3 reads or writes from its
    threads: each ``read``/``write`` runs on the event loop the transfer was called from,
    the thread waiting for it. Without it, boto3 took the coroutine of ``write`` for done
    (a download wrote nothing, and said nothing but a ``RuntimeWarning``) and failed on the
    coroutine of ``read`` (``TypeError: object of type 'coroutine' has no len()``)."""

    def __init__(self, fileobj: Any) -> None:
        self._fileobj = fileobj
        loop = asyncio_loop()
        if loop is not None:

            def on_loop(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
                return asyncio.run_coroutine_threadsafe(fn(*args), loop).result()

        else:  # trio
            import trio

            token = trio.lowlevel.current_trio_token()

            def on_loop(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
                return trio.from_thread.run(fn, *args, trio_token=token)

        self._on_loop = on_loop

    def read(self, size: int = -1) -> Any:
        return self._on_loop(self._fileobj.read, size)

    def write(self, data: bytes) -> Any:
        return self._on_loop(self._fileobj.write, data)


def thread_side(fileobj: Any) -> Any:
    """*fileobj* for boto3's threads: an async file object (a coroutine ``read`` or
    ``write``) as `_LoopSideFile`, any other as it is. Call it on the event loop."""
    read, write = getattr(fileobj, "read", None), getattr(fileobj, "write", None)
    return _LoopSideFile(fileobj) if _is_async(read) or _is_async(write) else fileobj


async def _gather_or_cancel(tasks: deque[asyncio.Task[Any]]) -> None:
    """Cancel *tasks* and wait for each to end, even while the caller is being cancelled
    (their errors follow from the caller's own: retrieved here, not raised)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await finish(_ended(tasks))


async def _ended(tasks: deque[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


# --- uploads ----------------------------------------------------------------------------------


#: the pool of the threads that read an upload's parts from a sync file object, apart from
#: the default pool: read by whichever of its threads was free, the parts left freed memory in
#: more of glibc's per-thread arenas (one per thread), a little more each time under load
READ_POOL = "asyncify_kit.transfer-reads"
READ_THREADS = 1


class _Reader:
    """Reads a file object: an async ``read`` is awaited, a sync one runs in the thread of
    `READ_POOL`, never on the event loop."""

    def __init__(self, fileobj: Any) -> None:
        read = getattr(fileobj, "read", None)
        if not callable(read):
            raise TypeError(f"Fileobj must have a read() method, got {type(fileobj).__name__}")
        self._read: Callable[[int], Any] = read
        self._async = _is_async(read)
        if not self._async:
            ensure_pool(READ_POOL, READ_THREADS)
            self._read = asyncify(read, pool=READ_POOL)
        self.at_end = False  # read() met the end of the file

    async def _chunk(self, size: int) -> bytes:
        data = await self._read(size)
        if isinstance(data, str):
            raise TypeError("Fileobj must be opened in binary mode: read() returned str")
        return bytes(data)

    async def read(self, size: int) -> bytes:
        """Up to *size* bytes, fewer only at the end of the file."""
        pieces: list[bytes] = []
        left = size
        while left > 0 and not self.at_end:
            data = await self._chunk(left)
            if not data:
                self.at_end = True
                break
            pieces.append(data)
            left -= len(data)
        return b"".join(pieces)


async def _create_upload(client: Any, **kwargs: Any) -> str:
    """``create_multipart_upload`` as a task of its own: if the caller is cancelled while it
    runs, it is waited for and the upload it made is aborted (otherwise an upload nobody
    knows of would be left on S3)."""
    call = asyncio.ensure_future(client.create_multipart_upload(**kwargs))
    try:
        created = await asyncio.shield(call)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            made = await finish(_settled(call))
            if made is not None:
                await finish(
                    client.abort_multipart_upload(
                        Bucket=kwargs["Bucket"], Key=kwargs["Key"], UploadId=made["UploadId"]
                    )
                )
        raise
    upload_id: str = created["UploadId"]
    return upload_id


async def _get_object(client: Any, **kwargs: Any) -> Any:
    """``get_object`` as a task of its own: if the caller is cancelled while it runs, it is
    waited for and the body of the response it got is closed. Cancelled itself, aiobotocore
    could drop a response it had already received, its connection left open (an "Unclosed
    connection" warning once collected)."""
    call = asyncio.ensure_future(client.get_object(**kwargs))
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            response = await finish(_settled(call))
            if response is not None:
                response["Body"].close()
        raise


async def _settled(call: asyncio.Future[Any]) -> Any:
    """The result of *call* once it ends, or None if it failed."""
    await asyncio.wait([call])
    return None if call.cancelled() or call.exception() is not None else call.result()


async def upload_fileobj(
    self: Any,
    Fileobj: Any,
    Bucket: str,
    Key: str,
    ExtraArgs: dict[str, Any] | None = None,
    Callback: Callable[[int], object] | None = None,
    Config: Any = None,
) -> None:
    """Upload a binary file object (sync or async ``read``) to ``Bucket``/``Key``, as boto3's
    ``upload_fileobj``: one ``put_object`` below ``Config.multipart_threshold``, else a
    multipart upload that is aborted if anything fails or the caller is cancelled."""
    await _upload(self, _Reader(Fileobj), Bucket, Key, ExtraArgs, Callback, Config, None)


async def upload_file(
    self: Any,
    Filename: str | os.PathLike[str],
    Bucket: str,
    Key: str,
    ExtraArgs: dict[str, Any] | None = None,
    Callback: Callable[[int], object] | None = None,
    Config: Any = None,
) -> None:
    """Upload the file at ``Filename`` to ``Bucket``/``Key``, as boto3's ``upload_file``
    (opened, read and closed in worker threads). As boto3's, a failed request is a
    ``boto3.exceptions.S3UploadFailedError`` (the ``ClientError`` was raised as it was)."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError

    path = _filename(Filename)
    fileobj = await run_owned(DEFAULT_POOL, _close, open, path, "rb")
    try:
        size = (await run_sync(os.fstat, fileobj.fileno())).st_size
        await _upload(self, _Reader(fileobj), Bucket, Key, ExtraArgs, Callback, Config, size)
    except ClientError as exc:
        raise S3UploadFailedError(f"Failed to upload {path} to {Bucket}/{Key}: {exc}") from exc
    finally:
        await finish(run_sync(fileobj.close))


def _filename(filename: object) -> str:
    """*filename* as a ``str``, or boto3's ``ValueError`` (a ``TypeError`` came from ``open``)."""
    if isinstance(filename, os.PathLike):
        filename = os.fspath(filename)
    if not isinstance(filename, str):
        raise ValueError("Filename must be a string or a path-like object")
    return filename


def _close(fileobj: Any) -> None:
    fileobj.close()


async def _upload(
    client: Any,
    reader: _Reader,
    bucket: str,
    key: str,
    extra_args: dict[str, Any] | None,
    callback: Callable[[int], object] | None,
    config: Any,
    size: int | None,
) -> None:
    from s3transfer.manager import TransferManager
    from s3transfer.upload import UploadSubmissionTask as Upload
    from s3transfer.utils import ChunksizeAdjuster, set_default_checksum_algorithm

    config = _config(config)
    extra = dict(extra_args or {})
    _check_extra_args(extra, TransferManager.ALLOWED_UPLOAD_ARGS)
    if client.meta.config.request_checksum_calculation == "when_supported":
        set_default_checksum_algorithm(extra)
    threshold = config.multipart_threshold
    first = await reader.read(threshold)
    if len(first) < threshold:  # the whole file: boto3 goes multipart from the threshold on
        size = len(first)
        body = _sole_owner(first)
        del first
        await client.put_object(
            Bucket=bucket, Key=key, Body=body, **_without(extra, Upload.PUT_OBJECT_BLOCKLIST)
        )
        _progress(callback, size)
        return
    with contextlib.suppress(ImportError):  # (older s3transfer: no full-object checksums)
        from s3transfer.constants import FULL_OBJECT_CHECKSUM_ARGS

        for checksum in FULL_OBJECT_CHECKSUM_ARGS:
            if checksum in extra:
                extra["ChecksumType"] = "FULL_OBJECT"
                extra["ChecksumAlgorithm"] = checksum.replace("Checksum", "")
    chunksize = ChunksizeAdjuster().adjust_chunksize(config.multipart_chunksize, size)
    part_args = _only(extra, Upload.UPLOAD_PART_ARGS)
    algorithm = part_args.get("ChecksumAlgorithm")

    async def send(body: io.BytesIO, size: int, upload_id: str, number: int) -> dict[str, Any]:
        response = await client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, **part_args
        )
        _progress(callback, size)
        return _part(number, response["ETag"], response, algorithm)

    async def parts(buffered: bytes) -> AsyncGenerator[_SendPart, None]:
        number = 0
        while True:
            if len(buffered) < chunksize:
                buffered += await reader.read(chunksize - len(buffered))
            size = min(len(buffered), chunksize)
            if not size and number:
                return  # (the file ended with the last full part)
            number += 1
            body = _sole_owner(buffered[:size])
            buffered = buffered[size:]  # (a slice of all of it was the same object)
            yield functools.partial(send, body, size)
            if size < chunksize:
                return

    stream = parts(first)  # (at least the threshold's bytes)
    del first  # held by the parts alone (see `_sole_owner`)
    await _multipart(
        client,
        bucket,
        key,
        _without(extra, Upload.CREATE_MULTIPART_BLOCKLIST),
        _only(extra, Upload.COMPLETE_MULTIPART_ARGS),
        config.max_request_concurrency,
        stream,
    )


def _sole_owner(data: bytes) -> io.BytesIO:
    """A body for *data*: an ``io.BytesIO`` (raw bytes of more than 1 MiB get a
    ``ResourceWarning`` from aiohttp, which sends them in one write).

    aiohttp's payload for it takes a buffer of it (``getbuffer``) to learn its size, and
    ``io.BytesIO`` then copies bytes that are still held elsewhere: every part of an upload
    was held twice while it was sent. The caller drops its own references to *data* once
    this returns, so the ``io.BytesIO`` holds the only one and nothing is copied.
    """
    return io.BytesIO(data)


#: sends one part of a multipart upload: ``send(upload_id, part_number)`` gives the part's
#: entry for ``complete_multipart_upload``
_SendPart = Callable[[str, int], Awaitable[dict[str, Any]]]


def _part(number: int, etag: str, result: dict[str, Any], algorithm: str | None) -> dict[str, Any]:
    """A part's entry for ``complete_multipart_upload``, with its checksum when the upload
    has one (as s3transfer's ``UploadPartTask`` and ``CopyPartTask`` make it)."""
    part: dict[str, Any] = {"ETag": etag, "PartNumber": number}
    member = f"Checksum{algorithm.upper()}" if algorithm else None
    if member is not None and member in result:
        part[member] = result[member]
    return part


async def _multipart(
    client: Any,
    bucket: str,
    key: str,
    create_args: dict[str, Any],
    complete_args: dict[str, Any],
    concurrency: int,
    parts: AsyncGenerator[_SendPart, None],
) -> None:
    """One multipart upload of *parts*, at most *concurrency* of them sent at once, completed
    in order; aborted if anything fails or the caller is cancelled (its parts sent or being
    sent cancelled first, and waited for)."""
    upload_id = await _create_upload(client, Bucket=bucket, Key=key, **create_args)
    running: deque[asyncio.Task[dict[str, Any]]] = deque()
    done: list[dict[str, Any]] = []
    try:
        number = 0
        async with contextlib.aclosing(parts):
            async for send in parts:
                number += 1
                running.append(asyncio.ensure_future(send(upload_id, number)))
                if len(running) >= max(1, concurrency):
                    done.append(await running.popleft())  # the oldest: the parts stay in order
        while running:
            done.append(await running.popleft())
        await client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": done},
            **complete_args,
        )
    except BaseException:
        await _gather_or_cancel(running)
        with contextlib.suppress(Exception):  # the caller's error is the one to see
            await finish(client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id))
        raise


# --- copies -----------------------------------------------------------------------------------


async def copy(
    self: Any,
    CopySource: dict[str, Any],
    Bucket: str,
    Key: str,
    ExtraArgs: dict[str, Any] | None = None,
    Callback: Callable[[int], object] | None = None,
    SourceClient: Any = None,
    Config: Any = None,
) -> None:
    """Copy the object ``CopySource`` (``{"Bucket": ..., "Key": ..., "VersionId": ...}``) to
    ``Bucket``/``Key``, as boto3's ``copy``: one ``copy_object`` below
    ``Config.multipart_threshold``, else a multipart copy (``upload_part_copy``) that is
    aborted if anything fails or the caller is cancelled. ``SourceClient`` (default: this
    client) asks for the source's size."""
    from s3transfer.copies import CopySubmissionTask as Copy
    from s3transfer.manager import TransferManager
    from s3transfer.utils import ChunksizeAdjuster, calculate_range_parameter

    config = _config(Config)
    extra = dict(ExtraArgs or {})
    _check_extra_args(extra, TransferManager.ALLOWED_COPY_ARGS)
    if not isinstance(CopySource, dict):
        raise TypeError(  # (s3transfer's check and words)
            'Expecting dictionary formatted: {"Bucket": bucket_name, "Key": key} '
            f"but got {CopySource} or type {type(CopySource)}."
        )
    head = dict(CopySource)
    for name, value in extra.items():
        if name in Copy.EXTRA_ARGS_TO_HEAD_ARGS_MAPPING:
            head[Copy.EXTRA_ARGS_TO_HEAD_ARGS_MAPPING[name]] = value
    size: int = (await (SourceClient or self).head_object(**head))["ContentLength"]
    if size < config.multipart_threshold:
        await self.copy_object(CopySource=CopySource, Bucket=Bucket, Key=Key, **extra)
        _progress(Callback, size)
        return
    part_size = ChunksizeAdjuster().adjust_chunksize(config.multipart_chunksize, size)
    count = -(-size // part_size)
    part_args = _only(extra, Copy.UPLOAD_PART_COPY_ARGS)
    algorithm = extra.get("ChecksumAlgorithm")

    async def send(index: int, upload_id: str, number: int) -> dict[str, Any]:
        response = await self.upload_part_copy(
            CopySource=CopySource,
            Bucket=Bucket,
            Key=Key,
            UploadId=upload_id,
            PartNumber=number,
            CopySourceRange=calculate_range_parameter(part_size, index, count, size),
            **part_args,
        )
        _progress(Callback, min(part_size, size - index * part_size))
        result = response["CopyPartResult"]
        return _part(number, result["ETag"], result, algorithm)

    async def parts() -> AsyncGenerator[_SendPart, None]:
        for index in range(count):
            yield functools.partial(send, index)

    await _multipart(
        self,
        Bucket,
        Key,
        _without(extra, Copy.CREATE_MULTIPART_ARGS_BLACKLIST),
        _only(extra, Copy.COMPLETE_MULTIPART_ARGS),
        config.max_request_concurrency,
        parts(),
    )


# --- downloads --------------------------------------------------------------------------------


class _Writer:
    """Writes to a file object in order: an async ``write`` is awaited, a sync one runs in a
    worker thread."""

    def __init__(self, fileobj: Any) -> None:
        write = getattr(fileobj, "write", None)
        if not callable(write):
            raise TypeError(f"Fileobj must have a write() method, got {type(fileobj).__name__}")
        self._write: Callable[[bytes], Any] = write
        self._async = _is_async(write)

    async def write(self, data: bytes) -> None:
        if self._async:
            await self._write(data)
        else:
            await run_sync(self._write, data)


async def _download(
    client: Any,
    bucket: str,
    key: str,
    extra_args: dict[str, Any] | None,
    callback: Callable[[int], object] | None,
    config: Any,
    open_sink: Callable[[], Awaitable[_Writer]],
) -> None:
    """Fetch the object (ranged parts at once above the threshold, each pinned to the ETag
    its ``head_object`` gave) and write it in order to the sink *open_sink* makes once the
    object is known to exist."""
    from botocore.exceptions import ClientError
    from s3transfer.exceptions import S3DownloadFailedError
    from s3transfer.manager import TransferManager

    config = _config(config)
    extra = dict(extra_args or {})
    _check_extra_args(extra, TransferManager.ALLOWED_DOWNLOAD_ARGS)
    head = await client.head_object(Bucket=bucket, Key=key, **extra)
    size: int = head["ContentLength"]
    etag = head.get("ETag")
    if etag is not None:
        extra["IfMatch"] = etag
    sink = await open_sink()
    chunk = max(1, config.multipart_chunksize)
    if size < config.multipart_threshold:
        ranges: list[str | None] = [None]
    else:
        ranges = [
            f"bytes={start}-{min(start + chunk, size) - 1}" for start in range(0, size, chunk)
        ]
    concurrency = max(1, config.max_request_concurrency)

    async def fetch(byte_range: str | None) -> bytes:
        kwargs = extra if byte_range is None else {**extra, "Range": byte_range}
        try:
            response = await _get_object(client, Bucket=bucket, Key=key, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "PreconditionFailed":
                raise
            # replaced since head_object: s3transfer's error and message
            raise S3DownloadFailedError(
                f'Contents of stored object "{key}" in bucket "{bucket}" did not match '
                "expected ETag."
            ) from exc
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    running: deque[asyncio.Task[bytes]] = deque()
    following = iter(ranges)
    try:
        for byte_range in following:
            running.append(asyncio.ensure_future(fetch(byte_range)))
            if len(running) < concurrency:
                continue
            data = await running.popleft()
            await sink.write(data)
            _progress(callback, len(data))
        while running:
            data = await running.popleft()
            await sink.write(data)
            _progress(callback, len(data))
    except BaseException:
        await _gather_or_cancel(running)
        raise


async def download_fileobj(
    self: Any,
    Bucket: str,
    Key: str,
    Fileobj: Any,
    ExtraArgs: dict[str, Any] | None = None,
    Callback: Callable[[int], object] | None = None,
    Config: Any = None,
) -> None:
    """Download ``Bucket``/``Key`` into a binary file object (sync or async ``write``), in
    order, as boto3's ``download_fileobj``."""
    writer = _Writer(Fileobj)

    async def open_sink() -> _Writer:
        return writer

    await _download(self, Bucket, Key, ExtraArgs, Callback, Config, open_sink)


def _temp_path(path: str) -> str:
    """boto3's temp name for a download: the target's name, a dot and 8 random characters."""
    return f"{path}{os.extsep}{secrets.token_hex(4)}"


def _discard(fileobj: Any, temp: str) -> None:
    fileobj.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)


def _install_file(fileobj: Any, temp: str, path: str) -> None:
    try:
        fileobj.close()
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


async def download_file(
    self: Any,
    Bucket: str,
    Key: str,
    Filename: str | os.PathLike[str],
    ExtraArgs: dict[str, Any] | None = None,
    Callback: Callable[[int], object] | None = None,
    Config: Any = None,
) -> None:
    """Download ``Bucket``/``Key`` to ``Filename``, as boto3's ``download_file``: into a temp
    file next to it (``Filename`` + ``.`` + 8 random characters), renamed over ``Filename``
    once complete. A missing key, a failure or a cancellation leaves ``Filename`` as it was
    and removes the temp file; all file work runs in worker threads."""
    path = _filename(Filename)
    temp = _temp_path(path)
    opened: list[Any] = []

    async def open_sink() -> _Writer:
        fileobj = await run_owned(
            DEFAULT_POOL, functools.partial(_discard, temp=temp), open, temp, "xb"
        )
        opened.append(fileobj)
        return _Writer(fileobj)

    try:
        await _download(self, Bucket, Key, ExtraArgs, Callback, Config, open_sink)
    except BaseException:
        if opened:
            await finish(run_sync(_discard, opened[0], temp))
        raise
    await finish(run_sync(_install_file, opened[0], temp, path))


_METHODS: dict[str, Callable[..., Any]] = {
    "copy": copy,
    "upload_file": upload_file,
    "upload_fileobj": upload_fileobj,
    "download_file": download_file,
    "download_fileobj": download_fileobj,
}


def install(client: Any) -> None:
    """Give the aiobotocore S3 *client* these five methods in place of aioboto3's."""
    for name, method in _METHODS.items():
        setattr(client, name, types.MethodType(method, client))
