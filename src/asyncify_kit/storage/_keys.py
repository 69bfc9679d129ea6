"""Key validation: every key is checked here before any backend touches storage.

A key is a relative POSIX path such as ``"reports/2024/q1.csv"``. It is refused with
`InvalidPath` (before any I/O) when it could name something outside the store or mean
different things on different backends: empty, absolute, ``.`` or ``..`` segments, empty
segments (``a//b``, a trailing ``/``), backslashes, NUL and other control characters, a
Windows drive (``C:``), a segment longer than 255 bytes, a key longer than 1,024 bytes
(the S3 limit), text that is not encodable as UTF-8, or the reserved temp-file prefix.

Symbolic links are the one escape that can only be seen on disk: the ``file://`` backend
refuses them while it opens the path (``O_NOFOLLOW`` on every component).
"""

from __future__ import annotations

import mimetypes
import re

from ..exceptions import InvalidPath

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_SEGMENT_BYTES",
    "TEMP_PREFIX",
    "is_key_segment",
    "split_key",
    "type_from_key",
    "validate_key",
    "validate_prefix",
]

MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255
TEMP_PREFIX = ".~asyncify-"
"""Names the file backend gives its temporary files; keys may not use them."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _refuse(key: object, why: str) -> InvalidPath:
    shown = repr(key)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidPath(f"invalid storage key {shown}: {why}")


def _check_text(key: object, *, what: str, first: bool = True) -> str:
    """*key* if it is text a key can hold; *first*: it starts a key (no Windows drive)."""
    if not isinstance(key, str):
        raise _refuse(key, f"a {what} must be a str, not {type(key).__name__}")
    if "\x00" in key:
        raise _refuse(key, "NUL bytes are not allowed")
    if _CONTROL.search(key):
        raise _refuse(key, "control characters are not allowed")
    if "\\" in key:
        raise _refuse(key, "backslashes are not allowed; use '/' between segments")
    if key.startswith("/"):
        raise _refuse(key, f"a {what} is relative; remove the leading '/'")
    if first and _DRIVE.match(key):
        raise _refuse(key, "a Windows drive is not allowed")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(key, "the key is not valid Unicode text") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise _refuse(key, f"longer than {MAX_KEY_BYTES} bytes in UTF-8")
    return key


def _check_segments(key: str, segments: list[str]) -> None:
    for segment in segments:
        if segment == "":
            raise _refuse(key, "empty segments ('//' or a trailing '/') are not allowed")
        if segment in (".", ".."):
            raise _refuse(key, f"{segment!r} segments are not allowed")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise _refuse(key, f"a segment is longer than {MAX_SEGMENT_BYTES} bytes")
        if segment.startswith(TEMP_PREFIX):
            raise _refuse(key, f"names starting with {TEMP_PREFIX!r} are reserved")


def validate_key(key: object) -> str:
    """Return *key* unchanged if it is a safe relative POSIX path, else raise `InvalidPath`.

    >>> validate_key("a/b.txt")
    'a/b.txt'
    """
    text = _check_text(key, what="key")
    if text == "":
        raise _refuse(key, "the key is empty")
    _check_segments(text, text.split("/"))
    return text


def validate_prefix(prefix: object) -> str:
    """Like `validate_key`, but ``""`` (everything) and a trailing ``/`` are allowed, and
    an unfinished last segment may be ``.`` or ``..``: a prefix is a string prefix
    (``"."`` lists ``.env``), and that segment only filters the names listed."""
    text = _check_text(prefix, what="prefix")
    if text == "":
        return text
    body = text[:-1] if text.endswith("/") else text
    if body == "":
        raise _refuse(prefix, "a prefix is relative; remove the leading '/'")
    segments = body.split("/")
    if not text.endswith("/") and segments[-1] in (".", ".."):
        segments[-1] = "x"  # (checked as any name: it is not empty, nor too long)
    _check_segments(text, segments)
    return text


def is_key_segment(name: str, *, first: bool) -> bool:
    """Whether *name* (a directory entry) can be one segment of a key: its first one if
    *first*, which may not look like a Windows drive (``C:x``), else a later one, which may
    (``a/C:x`` is a key)."""
    if "/" in name:
        return False
    try:
        _check_segments(name, [_check_text(name, what="key", first=first)])
    except InvalidPath:
        return False
    return True


def split_key(key: str) -> list[str]:
    """The segments of an already validated key."""
    return key.split("/")


# the type of a compressed file: `mimetypes` gives the type of what was compressed and the
# compression apart (``x.csv.gz``: text/csv, gzip), and a store keeps one type, no encoding
_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def type_from_key(key: str) -> str:
    """The content type the key's extension suggests, else ``application/octet-stream``.

    A compressed file is of its compression's type (``x.csv.gz``: ``application/gzip``), not
    of what it holds: S3 would serve gzip bytes as ``text/csv`` with no ``Content-Encoding``.
    """
    guessed, encoding = mimetypes.guess_type(key, strict=False)
    if encoding is not None:
        return _COMPRESSED_TYPES.get(encoding, "application/octet-stream")
    return guessed or "application/octet-stream"
