"""No AWS secret in any repr, str, log line or error message of the storage facade."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from asyncify_kit.storage import NotFound, Storage, StorageError
from tests.conftest import service_url

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRETKEY"
KEY_ID = "AKIAEXAMPLESECRETID"

CASES = [("s3", "asyncio"), ("s3+boto3", "asyncio"), ("s3+boto3", "trio")]


def _all_text(exc: BaseException) -> str:
    """Everything an exception chain would show: messages, reprs, args, causes."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.mark.parametrize(("scheme", "anyio_backend"), CASES, ids=[f"{s}-{b}" for s, b in CASES])
@pytest.mark.anyio
async def test_no_secret_anywhere(
    scheme: str,
    anyio_backend: str,
    aws_env: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    endpoint = service_url("s3")
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []

    # 1. the secret in the standard environment: moto accepts any credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    url = f"{scheme}://no-such-bucket-{uuid.uuid4().hex[:8]}/p?endpoint_url={endpoint}"
    async with Storage(url) as st:
        shown += [repr(st), str(st), repr(st.backend.__dict__.get("url")), st.backend.describe()]
        with pytest.raises(NotFound) as info:
            await st.read("k")
        shown.append(_all_text(info.value))
        with pytest.raises(StorageError) as info2:
            await st.write("k", b"x")
        shown.append(_all_text(info2.value))

    # 2. the secret in the URL itself
    url = f"{scheme}://{KEY_ID}:{SECRET}@missing-{uuid.uuid4().hex[:8]}/p?endpoint_url={endpoint}"
    storage = Storage(url)
    shown += [repr(storage), str(storage.url), repr(storage.url)]
    async with storage as st:
        shown.append(repr(st))
        with pytest.raises(NotFound) as info3:
            await st.stat("k")
        shown.append(_all_text(info3.value))

    # 3. a server that is not there (connection errors carry the endpoint)
    url = f"{scheme}://{KEY_ID}:{SECRET}@b/p?endpoint_url=http://127.0.0.1:9&max_attempts=1"
    async with Storage(url) as st:
        with pytest.raises(StorageError) as info4:
            await st.read("k")
        shown.append(_all_text(info4.value))

    text = (
        "\n".join(shown)
        + "\n"
        + "\n".join(record.getMessage() + repr(record.args) for record in caplog.records)
    )
    assert SECRET not in text
    assert "***" in text  # the URL's password was shown redacted, so it was looked at
