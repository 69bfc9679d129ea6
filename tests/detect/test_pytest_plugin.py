"""The pytest plugin, run on small test files in a separate pytest process (pytester)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# the outer run's own --detect-blocking must not watch the inner pytest runs
pytestmark = pytest.mark.allow_blocking

TESTS = """
import time
import pytest

pytestmark = pytest.mark.anyio

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param

async def test_blocks():
    time.sleep(0.001)

async def test_swallows_the_error():
    try:
        time.sleep(0.001)
    except Exception:
        pass

@pytest.mark.allow_blocking
async def test_allowed():
    time.sleep(0.001)

@pytest.mark.allow_blocking("time.sleep")
async def test_allowed_by_pattern():
    time.sleep(0.001)

@pytest.mark.allow_blocking("os.*")
async def test_other_pattern_still_fails():
    time.sleep(0.001)

async def test_fixture_collects(blocking_detector):
    time.sleep(0.001)
    assert [r.function for r in blocking_detector.reports] == ["time.sleep"]

async def test_clean():
    import anyio
    await anyio.sleep(0)

def test_sync_test_is_not_on_a_loop():
    time.sleep(0.001)

@pytest.fixture
async def blocking_fixture():
    time.sleep(0.001)
    yield

async def test_blocking_async_fixture(blocking_fixture):
    pass
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_sample=TESTS)
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", *args)


def test_plugin_is_inert_without_the_option(pytester: pytest.Pytester) -> None:
    result = run(pytester)
    result.assert_outcomes(passed=17)


def test_plugin_fails_the_tests_that_blocked(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--detect-blocking", "-rfE")
    result.assert_outcomes(passed=9, failed=6, errors=2)
    text = result.stdout.str()
    for name in ("test_blocks", "test_swallows_the_error", "test_other_pattern_still_fails"):
        assert f"FAILED test_sample.py::{name}[asyncio]" in text
        assert f"FAILED test_sample.py::{name}[trio]" in text
    assert "ERROR test_sample.py::test_blocking_async_fixture[asyncio]" in text
    result.stdout.fnmatch_lines(
        [
            "*1 blocking call on the event loop during call:*",
            "*blocking call time.sleep on the * event-loop thread*",
            "*test_sample.py:*in test_swallows_the_error: time.sleep(0.001)*",
            "*fix: time.sleep -> await anyio.sleep()*",
        ]
    )


def test_ini_option_turns_it_on(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ndetect_blocking = true\n")
    result = run(pytester)
    result.assert_outcomes(passed=9, failed=6, errors=2)


def test_no_detect_blocking_overrides(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--detect-blocking", "--no-detect-blocking")
    result.assert_outcomes(passed=17)


def test_no_detect_blocking_in_addopts_overrides_the_ini_option(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only a --no-detect-blocking typed on the command line used to count: from addopts or
    # PYTEST_ADDOPTS it was ignored and the ini option kept detection on
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    pytester.makeini("[pytest]\ndetect_blocking = true\naddopts = --no-detect-blocking\n")
    run(pytester).assert_outcomes(passed=17)
    pytester.makeini("[pytest]\ndetect_blocking = true\n")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--no-detect-blocking")
    run(pytester).assert_outcomes(passed=17)
    # and the command line still wins over addopts, both ways
    run(pytester, "--detect-blocking").assert_outcomes(passed=9, failed=6, errors=2)
    monkeypatch.setenv("PYTEST_ADDOPTS", "--detect-blocking")
    pytester.makeini("[pytest]\n")
    run(pytester, "--no-detect-blocking").assert_outcomes(passed=17)
    run(pytester).assert_outcomes(passed=9, failed=6, errors=2)


APP_TESTS = """
import asyncio
import socket
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from asyncify_kit.fastapi import install_detection

app = FastAPI()
install_detection(app, monitor=False)  # the production setup: a log-mode detector


@app.get("/slow")
async def slow() -> dict:
    time.sleep(0.01)
    return {"ok": True}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_the_handler_blocks():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url) as client:
            await client.get("/slow")  # whatever the status: the plugin fails the test
    finally:
        server.should_exit = True
        await task
        sock.close()
"""


def test_an_apps_log_mode_detector_does_not_hide_a_call_from_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_app=APP_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "--detect-blocking")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*1 blocking call on the event loop during call:*", "*in slow: time.sleep(0.01)*"]
    )
