"""A call cancelled while its request or system call runs, which then ends in an ordinary
error (the key is missing), logs nothing, on every backend.

`s3+boto3://` logged a WARNING "... raised after its caller was cancelled", with the
``ClientError``'s traceback, for each such call (632 of 800 cancelled calls in an audit's
soak): a web service whose clients disconnect got one traceback per cancelled lookup. Its
threads now return the client's error instead of raising it, as the requests HTTP backend
does, and the caller raises it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from asyncify_kit.storage import NotFound, Storage

from .conftest import storage_url

pytestmark = pytest.mark.anyio

SCHEMES = ["file", "file+aiofiles", "memory", "s3", "s3+boto3"]
# from a timeout before the call starts to one after most calls have ended
DELAYS = (0.00001, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005)
ROUNDS = 40


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # wait_for cancels the task where it waits, as a server would


@pytest.fixture(params=SCHEMES)
def url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    return storage_url(request.param, request, tmp_path)


async def test_cancelled_lookups_of_a_missing_key_log_nothing(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncify_kit")
    cancelled = completed = 0
    async with Storage(url) as st:
        for i in range(ROUNDS):
            for call in (st.exists, st.read, st.stat):
                try:
                    await asyncio.wait_for(call("missing"), DELAYS[i % len(DELAYS)])
                except asyncio.TimeoutError:
                    cancelled += 1
                except NotFound:
                    completed += 1
                else:
                    completed += 1
        # the threads of the last cancelled calls end after their callers left
        await asyncio.sleep(0.2)
    assert cancelled + completed == 3 * ROUNDS
    if "memory" not in url:  # (memory:// has nothing to wait for: nothing to cancel)
        assert cancelled > 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [], [r.getMessage() for r in warnings]
