"""`asyncify-kit bench` runs the checkout's benchmarks and says so clearly elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncify_kit.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_bench_lists_the_sections_from_a_checkout(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["bench", "--list"]) == 0
    assert "offload" in capfd.readouterr().out


def test_bench_outside_a_checkout_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick"]) == 2
    assert "source checkout" in capsys.readouterr().err


def test_other_commands_still_reject_unknown_options() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--no-such-option"])
    assert exc.value.code == 2
