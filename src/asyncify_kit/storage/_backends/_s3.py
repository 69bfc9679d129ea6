"""``s3://bucket/prefix``: S3 (or any S3-compatible server) through aioboto3.

One aioboto3 session and one client per `Storage`, opened in ``__aenter__`` and closed in
``__aexit__``. The endpoint and region come from the URL (``?endpoint_url=...&region=...``)
or from the standard AWS environment and profile; credentials from the standard chain (or
``s3://KEY_ID:SECRET@bucket``, never shown in any repr or error). Retries use botocore's
"standard" mode. Objects above ``multipart_threshold`` are sent as multipart uploads of
``multipart_chunksize`` parts; a streamed write holds at most one part in memory and aborts
its multipart upload on any error or cancellation.

asyncio only (aiobotocore is built on aiohttp); ``s3+boto3://`` works on trio too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

import anyio

from ..._aio_payloads import read_large_body
from ..._cleanup import finish
from ..._config import BackendURL, invalid_option, option_value_text
from ..._errors import causes
from ..._offload import run_sync
from ...exceptions import (
    AlreadyExists,
    ConfigError,
    InvalidPath,
    NotFound,
    PermissionDenied,
    StorageError,
)
from .._keys import validate_key, validate_prefix
from .base import ByteReader, ByteWriter, ObjectInfo, StorageBackend, broken_write, on_asyncio

__all__ = ["S3Backend", "translate_botocore"]

MIN_PART = 5 * 1024 * 1024
_LIST_PAGE = 1000
#: the largest object one ``CopyObject`` copies (5 GiB): S3 refuses a larger one with
#: ``InvalidRequest``, and `S3Backend.copy` then copies it in parts (``UploadPartCopy``) of
#: `_COPY_PART` bytes, or more where 10,000 parts (S3's most) would not hold it
_COPY_LIMIT = 5 * 1024**3
_COPY_PART = 512 * 1024**2
#: parts of such a copy under way at once (boto3's ``copy``: ``max_concurrency``, 10)
_COPY_CONCURRENCY = 10
_MOST_PARTS = 10_000
#: how long closing a Storage waits for its calls under way to end (see `before_close`)
_CALLS_DRAIN = 5.0
_CLOSED_BODY = (
    ": it was closed, and the connections of its open files and streams with it; "
    "close them before their Storage"
)

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_DENIED = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "AccountProblem",
}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


def _timed_out(exc: BaseException) -> bool:
    """Whether *exc* came of a timeout: a `TimeoutError`, or ``ETIMEDOUT`` (the kernel's
    verdict on a server that left our data unacknowledged: see `asyncify_kit.aws.bounded_config`),
    itself or down its causes (botocore keeps the HTTP client's error in ``kwargs``).
    ``asyncio.TimeoutError`` too: up to Python 3.10 it is not the builtin one, and aiohttp's
    read timeout (under aioboto3) is one."""
    return any(
        isinstance(cause, (TimeoutError, asyncio.TimeoutError))
        or getattr(cause, "errno", None) == errno.ETIMEDOUT
        for cause in causes(exc, _botocore_inner)
    )


def _botocore_inner(exc: BaseException) -> BaseException | None:
    kwargs = getattr(exc, "kwargs", None)
    inner = kwargs.get("error") if isinstance(kwargs, dict) else None
    if isinstance(inner, BaseException):
        return inner
    return exc.__cause__ or exc.__context__


def _error_code(exc: BaseException | None) -> str | None:
    """The error code of a botocore ``ClientError`` (None for any other exception)."""
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    return str(error.get("Code", "")) if isinstance(error, dict) else None


def translate_botocore(exc: Exception, key: str | None, backend: S3Backend) -> StorageError:
    """The StorageError for a botocore (or HTTP client) exception met while working on *key*."""
    from botocore.exceptions import ClientError

    where = f"{key!r} in {backend.describe()}" if key else backend.describe()
    if not isinstance(exc, ClientError):
        # botocore names a connection error by where it happened ("Could not connect",
        # "Connection was closed"), even when the cause was a timeout while sending
        what = "timed out" if _timed_out(exc) else "failed"
        return StorageError(f"S3 request for {where} {what}: {type(exc).__name__}: {exc}", orig=exc)
    code = _error_code(exc) or ""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = str(exc.response.get("Error", {}).get("Message", "")).strip()
    if code == "NoSuchBucket":
        return NotFound(
            f"bucket {backend.bucket!r} does not exist ({backend.describe()})", orig=exc
        )
    if code in _NOT_FOUND or status == 404:
        return NotFound(f"no object {where}", orig=exc)
    if code in _DENIED or status == 403:
        return PermissionDenied(f"S3 denied access to {where} ({code})", orig=exc)
    if code in _CONFLICT or status == 412:
        return AlreadyExists(f"object {where} already exists", orig=exc)
    if code == "KeyTooLongError":
        return InvalidPath(f"{where}: key too long for S3", orig=exc)
    return StorageError(f"S3 refused the request for {where}: {code} {message}".rstrip(), orig=exc)


class _S3Reader(ByteReader):
    def __init__(self, backend: S3Backend, body: Any, key: str) -> None:
        self._backend = backend
        self._body: Any = body
        self._key = key

    async def read(self, size: int) -> bytes:
        """*size* bytes, fewer only at the end: aiohttp's body gives what it has buffered
        (a stream's chunks came out 144 or 536 bytes long mid-object), the other backends'
        readers fill the request, so a chunk is the same on every backend."""
        if self._body is None:
            raise ValueError("read from a closed reader")
        data = await self._backend.read_body(self._body, size, self._key)
        if not data or len(data) >= size:
            return data
        parts = [data]
        missing = size - len(data)
        while missing > 0 and self._body is not None:
            more = await self._backend.read_body(self._body, missing, self._key)
            if not more:
                break
            parts.append(more)
            missing -= len(more)
        return b"".join(parts)

    async def aclose(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            await self._backend.body_close(body)


class _S3Writer(ByteWriter):
    """A streamed upload: put_object when it ends small, else a multipart upload."""

    def __init__(
        self, backend: S3Backend, key: str, if_not_exists: bool, content_type: str | None
    ) -> None:
        self._backend = backend
        self._key = key
        self._if_not_exists = if_not_exists
        self._content_type = content_type
        self._buf = bytearray()
        self._upload_id: str | None = None
        # on asyncio, the create_multipart_upload call runs as a task of its own until its id
        # is ours: a native cancellation of the writer does not cancel it, and abort() waits
        # for it to learn the id of the upload it made (see _create_upload)
        self._creating: asyncio.Future[Any] | None = None
        # set once a create_multipart_upload call has ended (see `abandon`)
        self._created: anyio.Event | None = None
        self._parts: list[dict[str, Any]] = []
        self._closed = False
        # a write raised or was cancelled: a part it took from the buffer may be lost
        self._failed = False
        self._part_size = backend.part_size

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError(f"writer of {self._key!r} is closed")
        try:
            await self._write(data)
        except BaseException:
            self._failed = True
            raise

    async def _write(self, data: bytes) -> None:
        size = self._part_size
        if not self._buf and len(data) >= size:
            view = memoryview(data)
            while len(view) >= size:
                await self._send_part(bytes(view[:size]))
                view = view[size:]
            self._buf += view
            return
        self._buf += data
        while len(self._buf) >= size:
            block = bytes(memoryview(self._buf)[:size])
            del self._buf[:size]
            await self._send_part(block)

    async def _send_part(self, block: bytes) -> None:
        upload_id = await self._upload()
        number = len(self._parts) + 1
        resp = await self._backend.call(
            "upload_part", self._key, UploadId=upload_id, PartNumber=number, Body=block
        )
        self._parts.append({"ETag": resp["ETag"], "PartNumber": number})

    async def _upload(self) -> str:
        """The id of this writer's multipart upload, created at its first part."""
        if self._upload_id is None:
            await self._create_upload()
        upload_id = self._upload_id
        if upload_id is None:  # aborted meanwhile, by the Storage closing (`abandon`)
            raise self._backend.not_open()
        return upload_id

    async def copy_parts(self, source: dict[str, Any], info: ObjectInfo) -> None:
        """Make this writer's parts ranges of the object *source* that *info* describes,
        copied on S3's side (``UploadPartCopy``), `_COPY_CONCURRENCY` at a time (as boto3's
        ``copy``); `commit` then completes the upload. Each part is pinned to the source's
        ETag (``CopySourceIfMatch``): an object replaced meanwhile fails the copy instead of
        mixing two versions. The first part to fail stops the others (cancelled, waited
        for) and is the error raised."""
        size = info.size
        part = max(_COPY_PART, -(-size // _MOST_PARTS))
        pin = {"CopySourceIfMatch": f'"{info.etag}"'} if info.etag else {}
        upload_id = await self._upload()
        todo = enumerate(range(0, size, part), start=len(self._parts) + 1)
        etags: dict[int, str] = {}
        failed: list[Exception] = []

        async def copy_some(scope: anyio.CancelScope) -> None:
            for number, start in todo:  # (shared: each part is taken once)
                try:
                    resp = await self._backend.call(
                        "upload_part_copy",
                        self._key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource=source,
                        CopySourceRange=f"bytes={start}-{min(start + part, size) - 1}",
                        **pin,
                    )
                except Exception as exc:
                    # (412, AlreadyExists as translated for writes: the pin did not hold)
                    changed = isinstance(exc, AlreadyExists)
                    failed.append(self._source_changed(source, exc) if changed else exc)
                    scope.cancel()
                    return
                etags[number] = resp["CopyPartResult"]["ETag"]

        async with anyio.create_task_group() as tg:
            for _ in range(min(_COPY_CONCURRENCY, -(-size // part))):
                tg.start_soon(copy_some, tg.cancel_scope)
        if failed:
            raise failed[0]
        self._parts.extend({"ETag": etags[n], "PartNumber": n} for n in sorted(etags))

    def _source_changed(self, source: dict[str, Any], exc: Exception) -> StorageError:
        backend = self._backend
        src = source["Key"][len(backend.prefix) :]
        return StorageError(
            f"object {src!r} in {backend.describe()} changed while it was copied to "
            f"{self._key!r} in parts; nothing was copied",
            orig=getattr(exc, "orig", exc),
        )

    async def commit(self) -> None:
        if self._closed:
            raise ValueError(f"writer of {self._key!r} is closed")
        if self._failed:
            raise broken_write(self._key, self._backend.describe())
        if self._upload_id is None:
            data = bytes(self._buf)
            self._buf = bytearray()
            self._closed = True
            await self._backend.put(self._key, data, self._if_not_exists, self._content_type)
            return
        if self._buf:
            block = bytes(self._buf)
            self._buf = bytearray()
            await self._send_part(block)
        extra = {"IfNoneMatch": "*"} if self._if_not_exists else {}
        await self._backend.call(
            "complete_multipart_upload",
            self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
            **extra,
        )
        self._upload_id = None
        self._closed = True
        self._backend.uploads.discard(self)

    async def _create_upload(self) -> None:
        """Create this writer's multipart upload, its id in ``_upload_id``; only `abort` (or
        `abandon`, as the Storage closes) ever aborts it.

        Shielded from anyio/trio cancellation, so the id reaches the writer. A native asyncio
        cancellation (``task.cancel()``, ``asyncio.timeout``, ``wait_for``) gets through such a
        shield, so on asyncio the call runs as a task of its own, which that cancellation does
        not reach: `abort` then waits for it and aborts the upload it made, by its id. If the
        call itself fails (the response is lost after S3 made the upload), the id is unknown
        and that upload is left to the bucket's lifecycle rule: listing the key's uploads
        and aborting them would also abort those of other writers of the same key.
        """
        extra = {"ContentType": self._content_type} if self._content_type else {}
        call = self._backend.call("create_multipart_upload", self._key, **extra)
        self._backend.uploads.add(self)
        self._created = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                if not on_asyncio():
                    resp = await call
                else:
                    self._creating = asyncio.ensure_future(call)
                    resp = await asyncio.shield(self._creating)
                    self._creating = None
            self._upload_id = resp["UploadId"]
        finally:
            self._created.set()

    async def abort(self) -> None:
        self._closed = True
        self._buf = bytearray()
        self._backend.uploads.discard(self)
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            upload_id = await self._created_meanwhile()
        if upload_id is not None:
            with contextlib.suppress(NotFound):
                await self._backend.call("abort_multipart_upload", self._key, UploadId=upload_id)

    async def abandon(self) -> None:
        """Abort the multipart upload as the Storage closes under this writer (still open, or
        still writing in another task): after it, the client is gone and so is any way to
        abort it. The writer's next call then fails as any call after the close does."""
        if self._created is not None:
            await self._created.wait()  # a create under way (shielded) gives its id first
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            upload_id = await self._created_meanwhile()
        if upload_id is not None:
            self._backend.stop_parts(upload_id)
            with contextlib.suppress(StorageError, RuntimeError):
                await self._backend.call("abort_multipart_upload", self._key, UploadId=upload_id)

    async def _created_meanwhile(self) -> str | None:
        """The id of the upload that the create call, cancelled natively on asyncio while
        it ran, made meanwhile (it goes on as a task of its own: waited for here); None if
        there was no such call, or it failed."""
        creating, self._creating = self._creating, None
        if creating is None:
            return None
        await asyncio.wait([creating])  # a cancellation of abort itself still propagates
        if creating.cancelled() or creating.exception() is not None:
            return None  # (retrieved: no "exception was never retrieved" warning)
        upload_id: str = creating.result()["UploadId"]
        return upload_id


def _add_expect_header() -> Any:
    """botocore's handler that sends each PUT with ``Expect: 100-continue``. aiohttp waits
    for the ``100 Continue`` with no timeout, so a PUT to a server that never answered hung
    for good (a GET ended with the read timeout). `asyncify_kit.aws.bounded_config` now
    sends the body after a second, as botocore's own connections do (the boto3 backend
    keeps the header); without the header, the body goes at once: no round trip before
    each PUT, and no second lost on a store that never sends a ``100 Continue``."""
    from botocore.handlers import add_expect_header

    return add_expect_header


class S3Backend(StorageBackend):
    """Objects in an S3 bucket under an optional prefix, through aioboto3."""

    name = "s3"

    def __init__(self, url: BackendURL, options: dict[str, Any]) -> None:
        super().__init__(url, options)
        self.bucket = url.host
        if not self.bucket:
            raise ConfigError(f"{self.describe()} names no bucket; use 's3://bucket/prefix'")
        prefix = url.path.strip("/")
        try:
            self.prefix = validate_prefix(prefix + "/") if prefix else ""
        except InvalidPath as exc:
            raise ConfigError(f"invalid prefix in {self.describe()}: {exc}") from exc
        self.threshold: int = max(int(options.get("multipart_threshold", 8 << 20)), MIN_PART)
        self.part_size: int = max(int(options.get("multipart_chunksize", 8 << 20)), MIN_PART)
        self._client: Any = None
        self._client_cm: Any = None
        # the response bodies being read now, by id: closed by `aclose` (see `body_read`)
        self._reading: dict[int, Any] = {}
        #: the writers whose multipart upload is made (or being made) and not yet complete:
        #: `aclose` aborts those uploads first (`abandon_uploads`). Held: a writer dropped
        #: open (a "wb" file never closed) is still aborted then, not forgotten with its id
        self.uploads: set[_S3Writer] = set()
        #: the calls under way, which `aclose` lets end first (for `_CALLS_DRAIN` seconds),
        #: by their cancel scope, each with the id of the upload its part is for (or None)
        self._under_way: dict[anyio.CancelScope, str | None] = {}
        self._idle: anyio.Event | None = None
        self._closing = False

    def describe(self) -> str:
        """The URL without any credential, for reprs and messages."""
        return self.url.replace(username=None, password=None).render()

    def client_kwargs(self, config_cls: Callable[..., Any] | None = None) -> dict[str, Any]:
        """Keyword arguments of ``session.client("s3", ...)`` built from the URL options
        (the ``config`` made by *config_cls*, botocore's ``Config`` by default)."""
        from botocore.config import Config

        opts = self.options
        s3_config: dict[str, Any] = {}
        if opts.get("addressing_style") not in (None, "auto"):
            s3_config["addressing_style"] = opts["addressing_style"]
        config = (config_cls or Config)(
            # requests are signed with SigV4 anyway; without this botocore *presigns* with the
            # legacy SigV2, which S3 refuses for buckets made since June 2020 (and in regions
            # opened since 2014)
            signature_version="s3v4",
            # total_max_attempts: the tries in all, as documented (and as AWS_MAX_ATTEMPTS and
            # the config file's max_attempts count); botocore's max_attempts here counts the
            # retries, one more try than asked
            retries={"mode": "standard", "total_max_attempts": int(opts.get("max_attempts", 3))},
            max_pool_connections=int(opts.get("max_pool_connections", 10)),
            connect_timeout=opts.get("connect_timeout") or 60,
            read_timeout=opts.get("read_timeout") or 60,
            s3=s3_config or None,
            request_checksum_calculation=opts.get("checksums") or "when_supported",
            response_checksum_validation=opts.get("checksums") or "when_supported",
        )
        kwargs: dict[str, Any] = {"config": config}
        if opts.get("endpoint_url"):
            kwargs["endpoint_url"] = opts["endpoint_url"]
        if opts.get("region"):
            kwargs["region_name"] = opts["region"]
        if opts.get("ca_bundle"):
            kwargs["verify"] = opts["ca_bundle"]
        if self.url.username:
            kwargs["aws_access_key_id"] = self.url.username
            kwargs["aws_secret_access_key"] = self.url.password or ""
        return kwargs

    def check_client_options(self) -> None:
        """Refuse an ``endpoint_url`` or a ``region`` that botocore would refuse, as the
        `ConfigError` naming the option that a bad option value is (botocore raises a bare
        ``ValueError`` for an endpoint, and an endpoint with another scheme fails only at the
        first request). Blocking (imports botocore): call it in a worker thread."""
        from botocore.exceptions import InvalidRegionError
        from botocore.utils import (
            is_valid_endpoint_url,
            is_valid_ipv6_endpoint_url,
            validate_region_name,
        )

        endpoint = self.options.get("endpoint_url")
        if endpoint:
            try:
                valid = endpoint.split("://", 1)[0].lower() in ("http", "https") and bool(
                    is_valid_endpoint_url(endpoint) or is_valid_ipv6_endpoint_url(endpoint)
                )
            except ValueError:  # urlsplit's "Invalid IPv6 URL"
                valid = False
            if not valid:
                # (its password hidden, as in the URL: ftp://key:secret@minio is refused too)
                raise invalid_option(
                    "endpoint_url", endpoint, self.name, "an http:// or https:// URL"
                )
        ca_bundle = self.options.get("ca_bundle")
        if ca_bundle and not os.path.isfile(ca_bundle):
            raise ConfigError(
                f"invalid value {option_value_text('ca_bundle', ca_bundle)} for option "
                f"'ca_bundle' of the {self.name!r} backend: no such file (a PEM file of CA "
                "certificates)"
            )
        region = self.options.get("region")
        if region:
            try:
                validate_region_name(region)
            except InvalidRegionError:
                raise invalid_option(
                    "region", region, self.name, "a region name such as 'us-east-1'"
                ) from None

    def client_error(self, exc: Exception) -> Exception | None:
        """The error for *exc*, raised while the client was made (see `aopen`); None for one
        raised as it is (not botocore's, nor a ``ValueError``; or our own `ConfigError`, which
        `Storage` names after the environment variable the URL came from, if it did).
        botocore's exceptions are imported here, once the client's thread has imported them."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            InvalidRegionError,
            ProfileNotFound,
        )

        if isinstance(exc, ConfigError) or not isinstance(
            exc, (ClientError, BotoCoreError, ValueError)
        ):
            return None
        if isinstance(exc, (InvalidRegionError, ProfileNotFound)) or not isinstance(
            exc, (ClientError, BotoCoreError)
        ):
            # a bad endpoint or region from the environment or the profile: botocore raises
            # a bare ValueError (or InvalidRegionError) when the client is made; a profile
            # no config file has (?profile=, AWS_PROFILE): ProfileNotFound
            return ConfigError(f"invalid S3 client configuration for {self.describe()}: {exc}")
        return translate_botocore(exc, None, self)

    def _make_session(self) -> Any:
        """Create the session and load the S3 service data in a worker thread (botocore reads
        JSON files from disk, which would otherwise block the event loop)."""
        import aioboto3

        from ...aws import botocore_session

        self.check_client_options()

        core = botocore_session("s3", aio=True, profile=self.options.get("profile") or None)
        return aioboto3.Session(botocore_session=core)

    async def aopen(self) -> None:
        try:
            # an unknown profile is botocore's ProfileNotFound, raised here; the client's
            # modules are imported by then, in that thread (`aws._import_aio`), not on the loop
            session = await run_sync(self._make_session)
            from aiobotocore.config import AioConfig

            from ...aws import bounded_config

            kwargs = self.client_kwargs(AioConfig)
            # a write to a server that stops reading ends with the read timeout
            kwargs["config"] = bounded_config(kwargs["config"])
            self._client_cm = session.client("s3", **kwargs)
            self._client = await self._client_cm.__aenter__()
            self._client.meta.events.unregister("before-call.s3", _add_expect_header())
        except Exception as exc:
            error = self.client_error(exc)
            if error is None:
                raise
            self._client_cm = None
            raise error from exc

    #: whether a call can be stopped by cancelling its task (a thread's cannot: boto3)
    cancels_calls = True

    async def before_close(self) -> None:
        """Abort the multipart uploads of the writers still open (or still writing), while
        the client can, then let the calls under way end (at most `_CALLS_DRAIN` seconds),
        and cancel those still running: a call cut by the client's close was retried by
        botocore, and aiobotocore made a connection pool for it that nobody closed. To its
        end, whatever cancels the caller."""
        if self._client is not None and not self._closing:
            self._closing = True
            await finish(self._settle())

    async def _settle(self) -> None:
        writers = list(self.uploads)
        self.uploads = set()
        for writer in writers:
            await writer.abandon()
        if await self._drained(_CALLS_DRAIN) or not self.cancels_calls:
            return
        for scope in self._under_way:
            scope.cancel()  # (each then raises `not_open`: see `call`)
        await self._drained(_CALLS_DRAIN)

    async def _drained(self, seconds: float) -> bool:
        """Whether no call is under way, waited for up to *seconds*."""
        if self._under_way:
            self._idle = anyio.Event()
            with anyio.move_on_after(seconds):
                await self._idle.wait()
        return not self._under_way

    def stop_parts(self, upload_id: str) -> None:
        """Cancel the parts being sent for the upload *upload_id*, about to be aborted:
        they can only fail, and S3 may keep a part that lands after the abort."""
        if self.cancels_calls:
            for scope, upload in self._under_way.items():
                if upload == upload_id:
                    scope.cancel()

    async def aclose(self) -> None:
        await self.before_close()
        cm, self._client_cm, self._client = self._client_cm, None, None
        # closing the client closes the connections of the bodies still open, but does not
        # wake a read waiting for one of them (aiohttp drops its reference to the body's
        # stream first), which then waited for good: closing the body wakes it
        reading, self._reading = self._reading, {}
        for body in reading.values():
            body.close()
        if cm is not None:
            await cm.__aexit__(None, None, None)

    def not_open(self, why: str = "") -> RuntimeError:
        """What a call or a read raises once this backend is closed."""
        return RuntimeError(f"{self.describe()} is not open{why}")

    # -- hooks the boto3 backend overrides ---------------------------------------------------

    async def body_read(self, body: Any, size: int | None) -> bytes:
        """Read from a response body (*size* None: all of it).

        Once the client is closed (the `Storage` left while a file or a stream was open),
        `RuntimeError` ("not open"): the client closed its connections, and a read failed
        with aiohttp's own ``RuntimeError('Connection closed.')``, or returned the bytes that
        had arrived before, depending on the object's size; one waiting for data waited for
        good (see `aclose`).
        """
        if self._client is None:
            raise self.not_open(_CLOSED_BODY)
        self._reading[id(body)] = body
        try:
            if size is None:
                # 16 MiB or more in slices, joined in a thread: aiohttp's read(-1) joins them
                # on the loop
                whole = await read_large_body(body)
                if whole is not None:
                    return whole
            data: bytes = await body.read(size)
            return data
        except Exception as exc:
            if self._client is None:  # closed (with this body) while it was read
                raise self.not_open(_CLOSED_BODY) from exc
            raise
        finally:
            self._reading.pop(id(body), None)

    async def body_close(self, body: Any) -> None:
        body.close()

    def body_errors(self) -> tuple[type[Exception], ...]:
        """What `body_read` raises when the connection breaks (or times out) mid-body."""
        import aiohttp
        from botocore.exceptions import BotoCoreError

        # aiobotocore turns some of aiohttp's errors into botocore's, not all of them
        # (ClientPayloadError: the body ended before its Content-Length)
        return (BotoCoreError, aiohttp.ClientError, OSError)

    async def read_body(self, body: Any, size: int | None, key: str) -> bytes:
        """`body_read`, its driver errors translated (to `StorageError`) and chained."""
        try:
            return await self.body_read(body, size)
        except self.body_errors() as exc:
            raise translate_botocore(exc, key, self) from exc

    # -- calls --------------------------------------------------------------------------------

    async def call(self, operation: str, key: str | None, **kwargs: Any) -> Any:
        """Call a client operation on this bucket (and this key), translating errors."""
        from botocore.exceptions import BotoCoreError, ClientError

        if self._client is None or (self._closing and operation != "abort_multipart_upload"):
            # (closing: only the aborts of `before_close` still go; a writer still running
            # would otherwise make a new upload, its last one aborted, for nobody to abort)
            raise self.not_open()
        if key is not None:
            kwargs["Key"] = self.prefix + key
        scope = anyio.CancelScope()
        parts = operation in ("upload_part", "upload_part_copy")
        self._under_way[scope] = kwargs.get("UploadId") if parts else None
        try:
            with scope:
                return await self.send(operation, kwargs)
            raise self.not_open()  # cancelled by the close (`_settle`, `stop_parts`)
        except (ClientError, BotoCoreError) as exc:
            if self._closing:  # failed as the Storage closed (its upload aborted, say)
                raise self.not_open() from exc
            raise translate_botocore(exc, key, self) from exc
        finally:
            del self._under_way[scope]
            if not self._under_way and self._idle is not None:
                self._idle.set()

    async def send(self, operation: str, kwargs: dict[str, Any]) -> Any:
        """The client's *operation* on this bucket, errors untranslated (see `call`).

        A ``get_object`` response holds an open connection (its body) that the caller must
        close. Once aiobotocore returns it, nothing awaits before `read`, `open_reader` and
        their callers hold it, so a cancellation cannot strand it on the way (on asyncio it
        is delivered only where a task waits); the boto3 backend's thread needs `run_owned`.
        """
        return await getattr(self._client, operation)(Bucket=self.bucket, **kwargs)

    async def put(
        self, key: str, data: bytes, if_not_exists: bool, content_type: str | None
    ) -> None:
        extra: dict[str, Any] = {}
        if if_not_exists:
            extra["IfNoneMatch"] = "*"
        if content_type:
            extra["ContentType"] = content_type
        await self.call("put_object", key, Body=data, **extra)

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        extra: dict[str, Any] = {}
        if length is not None:
            extra["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            extra["Range"] = f"bytes={offset}-"
        try:
            resp = await self.call("get_object", key, **extra)
        except StorageError as exc:
            # (botocore's transport errors have a `response` of None)
            response = getattr(exc.orig, "response", None) or {}
            code = response.get("Error", {}).get("Code")
            if code == "InvalidRange":
                return b""
            raise
        body = resp["Body"]
        try:
            return await self.read_body(body, None, key)
        finally:
            await self.body_close(body)

    async def write(
        self, key: str, data: bytes, *, if_not_exists: bool, content_type: str | None
    ) -> None:
        if len(data) <= self.threshold:
            await self.put(key, data, if_not_exists, content_type)
            return
        writer = _S3Writer(self, key, if_not_exists, content_type)
        try:
            await writer.write(data)
            await writer.commit()
        except BaseException:
            from .base import shielded

            await shielded(writer)
            raise

    async def open_reader(self, key: str) -> ByteReader:
        resp = await self.call("get_object", key)
        return _S3Reader(self, resp["Body"], key)

    async def open_writer(
        self, key: str, *, if_not_exists: bool, content_type: str | None
    ) -> ByteWriter:
        if self._client is None:  # refused now, as on every backend, not at the first part
            raise self.not_open()
        if if_not_exists and await self.exists(key):
            raise AlreadyExists(f"object {key!r} already exists in {self.describe()}")
        return _S3Writer(self, key, if_not_exists, content_type)

    async def stat(self, key: str) -> ObjectInfo:
        resp = await self.call("head_object", key)
        return ObjectInfo(
            key=key,
            size=int(resp["ContentLength"]),
            modified=_utc(resp.get("LastModified")),
            etag=str(resp.get("ETag", "")).strip('"') or None,
            content_type=resp.get("ContentType"),
        )

    async def delete(self, key: str, *, missing_ok: bool) -> None:
        if not missing_ok:
            await self.stat(key)
        await self.call("delete_object", key)

    async def copy(self, src: str, dst: str) -> None:
        source = {"Bucket": self.bucket, "Key": self.prefix + src}
        try:
            await self.call("copy_object", dst, CopySource=source)
        except NotFound as exc:
            raise NotFound(f"no object {src!r} in {self.describe()}", orig=exc.orig) from exc
        except StorageError as exc:
            if _error_code(exc.orig) != "InvalidRequest":
                raise
            info = await self.stat(src)  # (one more request, only for what S3 refused)
            if info.size <= _COPY_LIMIT:
                raise
            await self._copy_in_parts(source, dst, info)

    async def _copy_in_parts(self, source: dict[str, Any], dst: str, info: ObjectInfo) -> None:
        """Copy an object larger than one ``CopyObject`` copies, as a multipart upload of
        copied ranges: all or nothing, as a write (its upload aborted on failure or
        cancellation), with the source's content type."""
        from .base import shielded

        writer = _S3Writer(self, dst, False, info.content_type)
        try:
            await writer.copy_parts(source, info)
            await writer.commit()
        except BaseException:
            await shielded(writer)
            raise

    async def list(self, prefix: str, *, recursive: bool) -> AsyncIterator[ObjectInfo]:
        strip = len(self.prefix)
        kwargs: dict[str, Any] = {"Prefix": self.prefix + prefix, "MaxKeys": _LIST_PAGE}
        if not recursive:
            kwargs["Delimiter"] = "/"
        while True:
            resp = await self.call("list_objects_v2", None, **kwargs)
            page = [
                ObjectInfo(
                    key=item["Key"][strip:],
                    size=int(item.get("Size", 0)),
                    modified=_utc(item.get("LastModified")),
                    etag=str(item.get("ETag", "")).strip('"') or None,
                )
                for item in resp.get("Contents", ())
            ]
            page += [
                ObjectInfo(p["Prefix"][strip:], 0, is_dir=True)
                for p in resp.get("CommonPrefixes", ())
            ]
            page.sort(key=lambda info: info.key.encode("utf-8"))
            for info in page:
                if _listable(info):
                    yield info
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    async def presign(self, key: str, *, method: str, expires: int) -> str:
        operation = "get_object" if method == "GET" else "put_object"
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            url: str = await self._client.generate_presigned_url(
                operation,
                Params={"Bucket": self.bucket, "Key": self.prefix + key},
                ExpiresIn=expires,
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate_botocore(exc, key, self) from exc
        return url


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(timezone.utc) if value is not None else None


def _listable(info: ObjectInfo) -> bool:
    """Keys written by other tools that Storage could not address are skipped."""
    try:
        if info.is_dir:
            validate_prefix(info.key)
        else:
            validate_key(info.key)
    except InvalidPath:
        return False
    return True
