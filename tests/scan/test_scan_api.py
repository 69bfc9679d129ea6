"""The public names of `asyncify_kit.scan`, and the examples in its docstrings."""

from __future__ import annotations

import doctest
import importlib
import tempfile
from pathlib import Path

import pytest

import asyncify_kit.scan


def test_exported_names_are_exact() -> None:
    assert set(asyncify_kit.scan.__all__) == {
        "RULES",
        "Finding",
        "Hop",
        "Rule",
        "ScanConfig",
        "ScanResult",
        "add_scan_subcommand",
        "find_pyproject",
        "load_config",
        "main",
        "render",
        "render_json",
        "render_sarif",
        "render_text",
        "run_scan",
        "scan_paths",
    }
    for name in asyncify_kit.scan.__all__:
        assert getattr(asyncify_kit.scan, name) is not None


@pytest.mark.parametrize(
    "module",
    [
        "asyncify_kit.scan",
        "asyncify_kit.scan._cli",
        "asyncify_kit.scan._config",
        "asyncify_kit.scan._findings",
        "asyncify_kit.scan._rules",
        "asyncify_kit.scan._scanner",
    ],
)
def test_docstring_examples(module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the examples' mkdtemp() directories go with tmp_path instead of staying in /tmp
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
