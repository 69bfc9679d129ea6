"""Request bodies, encoded once by the facade so that every backend sends the same bytes:
``json=``, ``data=`` (form fields), ``files=`` (multipart/form-data) and ``content=``."""

from __future__ import annotations

import json as jsonlib
import mimetypes
import secrets
from collections.abc import Iterable, Mapping
from typing import IO, Any, cast
from urllib.parse import urlencode

from .._offload import run_sync
from ..exceptions import ConfigError

__all__ = [
    "FileContent",
    "FileField",
    "FilesInput",
    "FormInput",
    "encode_body",
    "without_none",
]

FileContent = bytes | str | IO[bytes]
FileField = FileContent | tuple[str, FileContent] | tuple[str, FileContent, str]
FilesInput = Mapping[str, FileField] | Iterable[tuple[str, FileField]]
FormInput = Mapping[str, Any]


async def _file_bytes(value: FileContent) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    read = getattr(value, "read", None)
    if read is None:
        raise ConfigError(
            f"invalid file content {type(value).__name__}; accepted: bytes, str or a binary file"
        )
    data = await run_sync(read)  # a file read blocks: do it in a thread
    if isinstance(data, str):
        return data.encode()
    return bytes(data)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def without_none(fields: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The ``(name, value)`` pairs of *fields* (``params`` or form ``data``) but those whose
    value is ``None``, and a list or tuple value without its ``None`` items: requests sends
    nothing for them, where the libraries sent the text ``None`` (httpx an empty value).

    >>> without_none({"page": 2, "cursor": None, "tag": ["a", None]})
    [('page', 2), ('tag', ['a'])]
    """
    pairs: Iterable[tuple[str, Any]] = (
        cast("Mapping[str, Any]", fields).items() if isinstance(fields, Mapping) else fields
    )
    kept: list[tuple[str, Any]] = []
    for name, value in pairs:
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = [item for item in value if item is not None]
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, (Mapping, set, frozenset, list, tuple)):
                # urlencode sent a mapping's keys ({"a": {"b": 1}} as a=b), a set in no order
                raise ConfigError(
                    f"invalid value for field {name!r}: a {type(item).__name__}; accepted: "
                    "str, bytes, a number, or a list or tuple of them"
                )
        kept.append((name, value))
    return kept


async def _multipart(data: FormInput | None, files: FilesInput) -> tuple[bytes, str]:
    if not mimetypes.inited:
        await run_sync(mimetypes.init)  # the first use reads the system's mime.types files
    boundary = secrets.token_hex(16)
    dash = f"--{boundary}\r\n".encode()
    parts: list[bytes] = []
    for name, value in without_none(data or {}):
        values = value if isinstance(value, list) else [value]
        for item in values:
            parts += [
                dash,
                f'Content-Disposition: form-data; name="{_quote(str(name))}"\r\n\r\n'.encode(),
                # bytes as they are, as in a plain form (str() gave the text "b'abc'")
                bytes(item) if isinstance(item, (bytes, bytearray)) else str(item).encode(),
                b"\r\n",
            ]
    pairs = cast(
        "list[tuple[str, FileField]]",
        list(files.items()) if isinstance(files, Mapping) else list(files),
    )
    for name, field in pairs:
        filename: str
        content: FileContent
        content_type: str | None = None
        if isinstance(field, tuple):
            if len(field) == 3:
                filename, content, content_type = field
            else:
                filename, content = field
        else:
            content = field
            attr = getattr(field, "name", None)
            filename = attr if isinstance(attr, str) and attr else name
            filename = filename.replace("\\", "/").rsplit("/", 1)[-1]
        body = await _file_bytes(content)
        if content_type is None:
            content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        disposition = f'form-data; name="{_quote(name)}"; filename="{_quote(filename)}"'
        parts += [
            dash,
            f"Content-Disposition: {disposition}\r\n".encode(),
            f"Content-Type: {content_type}\r\n\r\n".encode(),
            body,
            b"\r\n",
        ]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def encode_body(
    *,
    content: bytes | str | None,
    data: FormInput | None,
    files: FilesInput | None,
    json: Any,
) -> tuple[bytes | None, str | None]:
    """The encoded body and its ``Content-Type`` (``None`` when the caller sets it)."""
    given = [
        name
        for name, value in (("content", content), ("data", data), ("json", json))
        if value is not None
    ]
    if files is not None and "data" in given:
        given.remove("data")
    if files is not None:
        given.append("files")
    if len(given) > 1:
        raise ConfigError(
            f"give one request body, not {' and '.join(given)} (data= may go with files=)"
        )
    if content is not None:
        if isinstance(content, str):
            return content.encode(), "text/plain; charset=utf-8"
        if isinstance(content, (bytes, bytearray, memoryview)):
            return bytes(content), None
        raise ConfigError(f"invalid content {type(content).__name__}; accepted: bytes or str")
    if json is not None:
        try:
            # allow_nan=False: NaN and Infinity are no JSON (RFC 8259); they went out as is
            text = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"invalid json body: {exc}; accepted: what json.dumps takes (dict, list, str, "
                "int, float but NaN and infinities, bool, None), or content= with your own "
                "encoding"
            ) from exc
        return text.encode(), "application/json"
    if files is not None:
        return await _multipart(data, files)
    if data is not None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"invalid data {type(data).__name__}; accepted: a mapping of fields")
        return (
            urlencode(without_none(data), doseq=True).encode(),
            "application/x-www-form-urlencoded",
        )
    return None, None
