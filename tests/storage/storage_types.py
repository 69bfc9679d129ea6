"""Type tests of the storage and aws APIs: checked by mypy --strict, never run.

Each ``assert_type`` fails the type check when a public signature drifts; each
``# type: ignore[...]`` must be needed (warn_unused_ignores), so the negative cases fail too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from typing_extensions import assert_type

from asyncify_kit import aws
from asyncify_kit.storage import AsyncFile, FileOpener, ObjectInfo, ObjectStream, Storage


async def storage_api(st: Storage) -> None:
    assert_type(await st.read("k"), bytes)
    assert_type(await st.read("k", offset=1, length=2), bytes)
    assert_type(await st.read_text("k"), str)
    assert_type(await st.write("k", b"x"), None)
    assert_type(await st.write_text("k", "x"), None)
    assert_type(await st.stat("k"), ObjectInfo)
    assert_type(await st.exists("k"), bool)
    assert_type(st.stream("k"), ObjectStream)
    assert_type(st.list("a/"), AsyncIterator[ObjectInfo])
    assert_type(st.open("k", "rb"), FileOpener)
    assert_type(await st.presign("k", method="PUT"), str)
    async with st.open("k", "wb") as f:
        assert_type(f, AsyncFile)
        assert_type(await f.write(b"x"), int)
    async with st.stream("k") as chunks:
        async for chunk in chunks:
            assert_type(chunk, bytes)
    async for info in st.list():
        assert_type(info.size, int)
    await st.write("k", "text")  # type: ignore[arg-type]
    st.open("k", "ab")  # type: ignore[arg-type]
    await st.presign("k", method="DELETE")  # type: ignore[arg-type]


def aws_api() -> None:
    assert_type(aws.client("sqs"), AbstractAsyncContextManager[Any])
    aws.client("s3", backend="aiohttp")  # type: ignore[arg-type]
