"""Hash large request bodies in worker threads for aiobotocore (the aioboto3 backends), and
join large response bodies there (`read_large_body`).

botocore hashes what it sends in the calling thread, which in aiobotocore is the event loop's:

* the SHA-256 of the payload that Signature Version 4 signs. Every service signs it over
  plain http, and every service but S3 over https as well (the SHA-256 of 8 MiB alone
  takes 6 ms on the test machine);
* the checksum (CRC32 by default) of a flexible-checksum operation (S3's ``PutObject``,
  ``UploadPart``...) when it goes in a header, that is over plain http (over https it goes
  in a trailer, computed as the body is sent, a chunk at a time).

Together, with botocore's reading of the body, an 8 MiB ``put_object`` to an ``http://``
endpoint (MinIO, LocalStack, moto) held the loop 14-37 ms (moto, on the test machine).

For a body of `HASH_IN_THREAD` bytes or more (bytes, or a seekable file object), both are
computed in a worker thread first, by botocore's own code, through two event handlers:
``before-call`` sets the checksum header (botocore computes none when the header is there,
as when the caller gives it), and ``before-sign`` keeps the payload's SHA-256 for the
signer, whose ``payload`` uses it for that very body at that very position. Anything else
(a smaller body, an object that is not a file, an unfamiliar signer, a botocore without
these hooks) is hashed by botocore on the loop, as before.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from hashlib import sha256
from typing import Any

from ._executor import ensure_pool
from ._offload import asyncify, run_sync

__all__ = ["HASH_IN_THREAD", "JOIN_IN_THREAD", "install", "read_large_body"]

#: request bodies this long or longer are hashed in a worker thread (256 KiB: under a
#: millisecond of the loop below it, less than a thread hop for the smallest ones)
HASH_IN_THREAD = 256 * 1024

# where `_payload_in_thread` leaves the payload's SHA-256 in the request's context: the body
# it is of, the body's position then (None for bytes), and the hex digest
_PAYLOAD_SHA256 = "asyncify_kit.payload_sha256"
# the marker of a request signer whose auth objects use the digest (see `_use_digests`)
_SIGNER_MARK = "_asyncify_kit_payload_digests"
_READ = 1024 * 1024

#: the pool of the threads that hash, apart from the default pool. In the default pool the
#: hashes took the thread that would read an upload's next part from its file: the parts,
#: read by more threads, left freed memory in more of glibc's per-thread arenas. A 200 MB
#: ``upload_file`` in parts of 8 MiB, four at once, grew the process by 96-120 MB, against
#: 25-37 MB with hashing threads of their own (32-35 MB hashing on the loop, before).
HASH_POOL = "asyncify_kit.hashing"
#: two threads: hashing releases the GIL, so an upload's parts are hashed on two cores
HASH_THREADS = 2


#: a whole response body this long or longer is read in `READ_SLICE` slices, joined in a
#: worker thread: aiohttp's ``read()`` joins what it received on the event loop (100 MB held
#: it for 63-86 ms)
JOIN_IN_THREAD = 16 * 1024 * 1024
READ_SLICE = 1024 * 1024


async def read_large_body(body: Any) -> bytes | None:
    """All that is left of aiobotocore's response *body* if it is `JOIN_IN_THREAD` bytes or
    more long, read in slices joined in a worker thread (the copy releases the GIL); None for
    a shorter body or one of unknown length, for the caller to read in one read (its
    checksum updated once: reading 8 MiB in 1 MiB slices took 1.06x-1.11x its time)."""
    length = getattr(body, "content_length", None)  # (aiohttp's, through the proxy)
    if not (isinstance(length, int) and length >= JOIN_IN_THREAD):
        return None
    parts = []
    while chunk := await body.read(READ_SLICE):
        parts.append(chunk)
    return await run_sync(_joined, parts)


def _joined(parts: list[bytes]) -> bytes:
    return b"".join(parts)


def install(session: Any) -> None:
    """Register the handlers on an aiobotocore *session* (every client made from it)."""
    ensure_pool(HASH_POOL, HASH_THREADS)
    session.register("before-call", _checksum_in_thread)
    session.register("before-sign", _payload_in_thread)


def _body_size(body: object) -> int | None:
    """How many bytes botocore will read from *body*: bytes, or a seekable file object
    (from its position on); None for anything else."""
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if isinstance(body, io.IOBase):
        try:
            if not body.seekable():
                return None
            position = body.tell()
            end = body.seek(0, io.SEEK_END)
            body.seek(position)
        except (OSError, ValueError):  # closed, or not seekable after all: botocore's to say
            return None
        return end - position
    return None


def _large(body: object) -> bool:
    size = _body_size(body)
    return size is not None and size >= HASH_IN_THREAD


async def _checksum_in_thread(params: Any = None, **kwargs: Any) -> None:
    """``before-call``: the flexible checksum botocore would put in a header, computed in a
    worker thread by botocore's own checksum class."""
    if not isinstance(params, dict):
        return
    try:
        algorithm = params["context"]["checksum"]["request_algorithm"]
        headers = params["headers"]
        body = params["body"]
    except (KeyError, TypeError):
        return
    if not isinstance(algorithm, dict) or algorithm.get("in") != "header":
        return  # none, a trailer (computed as the body is sent), or a conditional MD5
    name = algorithm.get("name")
    if not name or name in headers or not _large(body):
        return
    from botocore import httpchecksum

    checksum_cls = getattr(httpchecksum, "_CHECKSUM_CLS", {}).get(algorithm.get("algorithm"))
    if checksum_cls is None:
        return
    headers[name] = await _checksum(checksum_cls, body)
    # what botocore records when it computes the checksum (for its User-Agent header)
    register = getattr(httpchecksum, "_register_checksum_algorithm_feature_id", None)
    if register is not None:
        register(algorithm)


@asyncify(pool=HASH_POOL)
def _checksum(checksum_cls: Any, body: Any) -> str:
    """``checksum_cls().handle(body)``, botocore's (which `_feed` mirrors)."""
    checksum = checksum_cls()
    _feed(checksum.update, body)
    return str(checksum.b64digest())


def _signs_payload(request: Any, signature_version: object) -> bool:
    """Whether the SigV4 signer of *signature_version* would hash *request*'s payload: its
    class's own checks, asked of a bare instance (they read only the request)."""
    from botocore import auth

    if not isinstance(signature_version, str):
        return False
    cls: Any = auth.AUTH_TYPE_MAPS.get(signature_version)
    if not (isinstance(cls, type) and issubclass(cls, auth.SigV4Auth)):
        return False  # not SigV4
    if getattr(cls, "payload", None) is not auth.SigV4Auth.payload:
        return False  # a signer whose payload is its own (presigned URLs...)
    probe: Any = object.__new__(cls)
    try:
        return not probe._is_streaming_checksum_payload(request) and bool(
            probe._should_sha256_sign_payload(request)
        )
    except Exception:  # a check that needs more than the request: botocore's to do
        return False


def _feed(update: Callable[[Any], object], body: Any) -> None:
    """Give *update* the bytes botocore would read from *body*: bytes whole, a file object
    from its position on (left there), read as botocore reads it, a megabyte at a time.

    Reading as botocore does matters beyond the result. Without the copies (a buffer of an
    ``io.BytesIO``, ``readinto`` a reused buffer), glibc's heap behaved otherwise: an 8 MiB
    S3 get just after an 8 MiB put took 4,000 page faults instead of 1,950 (511 ``brk``
    calls against 197 over 12 rounds), 22-24 ms instead of 17-21, 1.34x-1.39x raw aioboto3's
    time in the benchmark instead of 1.02x."""
    if isinstance(body, (bytes, bytearray)):
        update(body)
        return
    position = body.tell()
    for chunk in iter(functools.partial(body.read, _READ), b""):
        update(chunk)
    body.seek(position)


@asyncify(pool=HASH_POOL)
def _sha256(body: Any) -> str:
    digest = sha256()
    _feed(digest.update, body)
    return digest.hexdigest()


async def _payload_in_thread(
    request: Any = None, signature_version: object = None, request_signer: Any = None, **kwargs: Any
) -> None:
    """``before-sign``: the SHA-256 the signer would compute of the payload, computed in a
    worker thread and left in the request's context for it."""
    context = getattr(request, "context", None)
    if not isinstance(context, dict):
        return
    context.pop(_PAYLOAD_SHA256, None)  # (a retry's request: hashed anew)
    body: Any = getattr(request, "body", None)
    if not _large(body) or not _signs_payload(request, signature_version):
        return
    if not _use_digests(request_signer):
        return
    position = None if isinstance(body, (bytes, bytearray)) else body.tell()
    context[_PAYLOAD_SHA256] = (body, position, await _sha256(body))


def _use_digests(signer: Any) -> bool:
    """Make the auth objects of *signer* (an aiobotocore ``AioRequestSigner``) take the
    payload's SHA-256 from the request's context when it is there (once per signer);
    False when this signer cannot be taught (then botocore hashes on the loop)."""
    if getattr(signer, _SIGNER_MARK, False):
        return True
    get_auth_instance = getattr(signer, "get_auth_instance", None)
    if get_auth_instance is None:
        return False
    from botocore import auth as botocore_auth

    async def auth_using_digests(*args: Any, **kwargs: Any) -> Any:
        auth = await get_auth_instance(*args, **kwargs)
        if isinstance(auth, botocore_auth.SigV4Auth):
            # (this auth object's only; its class's own payload for anything else)
            auth.payload = functools.partial(_payload, auth, auth.payload)
        return auth

    signer.get_auth_instance = auth_using_digests
    setattr(signer, _SIGNER_MARK, True)
    return True


def _payload(auth: Any, payload: Callable[[Any], str], request: Any) -> str:
    """*auth*'s *payload* (its class's method), the SHA-256 taken from the request's context
    when it was computed there for this body at this position, and the signer would hash
    it."""
    found = request.context.pop(_PAYLOAD_SHA256, None)
    if found is not None:
        body, position, digest = found
        if (
            request.body is body
            and (position is None or body.tell() == position)
            and not auth._is_streaming_checksum_payload(request)
            and auth._should_sha256_sign_payload(request)
        ):
            return str(digest)
    return payload(request)
