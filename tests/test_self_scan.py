"""Our own scanner finds no blocking call reachable from async code in the library or examples."""

from __future__ import annotations

from pathlib import Path

from asyncify_kit.scan import render_text, scan_paths

ROOT = Path(__file__).resolve().parent.parent


def test_library_and_examples_scan_clean() -> None:
    result = scan_paths([ROOT / "src" / "asyncify_kit", ROOT / "examples"], root=ROOT)
    assert not result.findings, render_text(result)
