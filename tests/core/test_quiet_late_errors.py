"""A facade's own offloaded calls (`quiet_late_errors`) drop, not log, an error they end in
after their caller was cancelled; a user's calls still log it at WARNING.

`file://` and `file+aiofiles://` logged "... raised after its caller was cancelled", with a
traceback, for a lookup of a missing key whose caller was cancelled while its thread ran
(a fresh-clone CI run caught `_stat_file` doing it); the storage test
`test_cancelled_quiet.py` hits it only when the timing falls so. Here the call raises only
once its caller was cancelled, every time: on asyncio and trio, under the "wait" and the
"abandon" policies (three places that log such errors).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import pytest

from asyncify_kit import asyncify
from asyncify_kit._executor import quiet_late_errors
from tests.storage.local_helpers import cancel_when, raises_late

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def _missing() -> None:
    raise FileNotFoundError(2, "No such file or directory", "missing")


async def _cancelled_call(cancel: str, quiet: bool) -> None:
    arrived = threading.Event()
    call = asyncify(cancel=cancel)(raises_late(_missing, arrived))  # type: ignore[call-overload]
    if quiet:
        with quiet_late_errors():
            assert await cancel_when(arrived, call)
    else:
        assert await cancel_when(arrived, call)
    await anyio.sleep(0.2)  # (under "abandon", the thread ends after the caller left)


@pytest.mark.parametrize("cancel", ["wait", "abandon"])
@pytest.mark.parametrize("quiet", [True, False], ids=["facade", "user"])
async def test_late_errors_of_a_facades_calls_are_dropped(
    cancel: str, quiet: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncify_kit")
    await _cancelled_call(cancel, quiet)
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if quiet:
        assert logged == []
    else:
        assert len(logged) == 1 and "raised after its caller" in logged[0], logged
