"""The pytest plugin leaves no patch behind, whatever the tests' fixtures patched meanwhile."""

from __future__ import annotations

import os
import time

import pytest

pytest_plugins = ["pytester"]

# the outer run's own --detect-blocking must not watch the inner pytest run (it would also
# keep the patches in, which this checks are gone)
pytestmark = pytest.mark.allow_blocking

TESTS = """
import os
import time

import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def no_sleep(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda seconds: None)


@pytest.fixture(scope="session")
def quiet_stat():
    # set up in the first test that asks, undone in the last test's teardown
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "stat", os.stat)
        yield


async def test_uses_a_monkeypatch(no_sleep):
    time.sleep(10)


async def test_uses_a_session_patch(quiet_stat):
    pass


async def test_still_detects():
    time.sleep(0.001)


async def test_after(quiet_stat):
    pass
"""


def test_a_fixtures_monkeypatch_leaves_no_wrapper_after_the_session(
    pytester: pytest.Pytester,
) -> None:
    # the plugin ran setup, call and teardown each under a detector of its own: the
    # monkeypatch put back, at teardown, the wrapper of the setup's detector, already gone
    sleep, stat = time.sleep, os.stat
    pytester.makepyfile(test_sample=TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "--detect-blocking")
    try:
        result.assert_outcomes(passed=3, failed=1)
        result.stdout.fnmatch_lines(["*FAILED test_sample.py::test_still_detects*"])
        assert time.sleep is sleep
        assert os.stat is stat
        assert os.stat in os.supports_fd
        assert [f for f in os.supports_fd if hasattr(f, "__asyncify_detect_rule__")] == []
    finally:
        time.sleep, os.stat = sleep, stat
