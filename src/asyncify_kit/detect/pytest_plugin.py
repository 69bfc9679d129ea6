"""pytest plugin: fail the test that blocked its event loop.

Installed with asyncify-kit (entry point ``pytest11``) and inert until enabled with
``pytest --detect-blocking`` or ``detect_blocking = true`` in the ini file. Then every test's
setup, call and teardown run under one ``detect_blocking(mode="raise")``: a blocking call on the
loop thread raises `BlockingCallError` where it is made, and a test whose code swallowed that
error (a server answering 500, a bare ``except``) still fails with the report.

- ``@pytest.mark.allow_blocking`` turns detection off for one test;
  ``@pytest.mark.allow_blocking("time.sleep", "module:legacy.*")`` allows only what it names
  (the patterns of ``detect_blocking(allow=...)``); ini ``detect_blocking_allow`` allows for
  every test.
- The ``blocking_detector`` fixture gives the test its own collect-mode detector (enabled or
  not), to assert on reports instead of failing.
- An app's own log- or warn-mode detector (``install_detection``, `BlockingMiddleware`) passes
  the calls it reports on to the test's: the test still fails.

```text
$ pytest --detect-blocking
E   Failed: 1 blocking call on the event loop during call:
E   blocking call time.sleep on the asyncio event-loop thread
E     at tests/test_app.py:12 in test_handler: time.sleep(0.2)
E     fix: time.sleep -> await anyio.sleep() (or asyncio.sleep / trio.sleep)
```
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from ._detector import BlockingDetector, BlockingReport, detect_blocking

__all__ = ["blocking_detector"]

_MARKER = "allow_blocking"
_FIXTURE = "blocking_detector"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asyncify-kit", "blocking-call detection (asyncify-kit)")
    group.addoption(
        "--detect-blocking",
        action="store_true",
        default=None,  # None: not given, the ini option decides
        dest="detect_blocking",
        help="fail tests that make a blocking call on the event-loop thread (asyncio or trio)",
    )
    group.addoption(
        "--no-detect-blocking",
        action="store_false",
        dest="detect_blocking",
        help="turn blocking-call detection off (overrides --detect-blocking in addopts)",
    )
    parser.addini(
        "detect_blocking",
        "fail tests that make a blocking call on the event-loop thread",
        type="bool",
        default=False,
    )
    parser.addini(
        "detect_blocking_allow",
        "patterns allowed in every test (function globs, module:<glob>, kind:<kind>, file:line)",
        type="linelist",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*patterns): allow blocking calls in this test (all of them, or only those "
        "matching the patterns of detect_blocking(allow=...)) under --detect-blocking",
    )


def _enabled(config: pytest.Config) -> bool:
    # the last of --detect-blocking / --no-detect-blocking wins, wherever it was given (the
    # command line, ini addopts, PYTEST_ADDOPTS); without either, the ini option decides
    option = config.getoption("detect_blocking", default=None)
    if option is not None:
        return bool(option)
    return bool(config.getini("detect_blocking"))


def _detector_for(item: pytest.Item) -> BlockingDetector | None:
    if not _enabled(item.config) or _FIXTURE in getattr(item, "fixturenames", ()):
        return None
    allow: list[str] = list(item.config.getini("detect_blocking_allow"))
    for marker in item.iter_markers(_MARKER):
        if not marker.args:
            return None
        allow.extend(str(pattern) for pattern in marker.args)
    return detect_blocking(mode="raise", allow=allow)


def _failure(reports: list[BlockingReport], phase: str) -> str:
    count = f"{len(reports)} blocking call{'s' if len(reports) != 1 else ''}"
    body = "\n\n".join(report.format() for report in reports)
    hint = (
        "(allow on purpose with @pytest.mark.allow_blocking or "
        "@pytest.mark.allow_blocking('<function>'))"
    )
    return f"{count} on the event loop during {phase}:\n{body}\n{hint}"


#: the detector of the test being run, active from its setup to the end of its teardown
_ACTIVE = pytest.StashKey[BlockingDetector | None]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, Any, Any]:
    # One activation for setup, call and teardown, not one per phase: a fixture that
    # monkeypatches a patched function (time.sleep) saves the wrapper in place at setup and
    # puts it back at teardown; with a detector of its own per phase, that wrapper was no
    # longer the detector's to remove, and stayed in time.sleep after the session.
    try:
        detector = _detector_for(item)
    except Exception:  # an invalid allow pattern: raised again by the setup, the test's error
        return (yield)
    item.stash[_ACTIVE] = detector
    try:
        if detector is None:
            return (yield)
        with detector:
            return (yield)
    finally:
        del item.stash[_ACTIVE]


def _watch(item: pytest.Item, phase: str) -> Generator[None, Any, Any]:
    if _ACTIVE in item.stash:
        detector = item.stash[_ACTIVE]
        if detector is None:
            return (yield)
        detector.clear()  # this phase's reports only
        return (yield from _fail_on_reports(item, phase, detector))
    # run outside pytest_runtest_protocol (a plugin calling the phases itself): one per phase
    detector = _detector_for(item)
    if detector is None:
        return (yield)
    with detector:
        return (yield from _fail_on_reports(item, phase, detector))


def _fail_on_reports(
    item: pytest.Item, phase: str, detector: BlockingDetector
) -> Generator[None, Any, Any]:
    try:
        result = yield
    except BaseException:
        if detector.reports:
            item.add_report_section(phase, "blocking calls", _failure(detector.reports, phase))
        raise
    if detector.reports:
        pytest.fail(_failure(detector.reports, phase), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _watch(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _watch(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _watch(item, "teardown"))


@pytest.fixture
def blocking_detector() -> Iterator[BlockingDetector]:
    """A collect-mode detector active for the whole test: assert on ``.reports``.

    Works with or without ``--detect-blocking``; a test using it is not failed by the plugin.
    """
    with detect_blocking(mode="collect") as detector:
        yield detector
