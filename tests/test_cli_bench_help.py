"""`asyncify-kit bench -h` (and ``--help``) passes the flag on, as it does every argument
after ``bench``: the help shown is the benchmarks' (``--section``, ``--quick``...). bench's
own help showed none of them, while saying that arguments are passed on."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncify_kit.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "args", [["-h"], ["--help"], ["--section", "offload", "-h"]], ids=["-h", "--help", "after"]
)
def test_bench_help_is_the_benchmarks_help(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["bench", *args]) == 0
    out = capfd.readouterr().out
    assert out.startswith("usage: python -m benchmarks"), out
    for option in ("--section NAME", "--repeats", "--quick", "--list"):
        assert option in out, out


def test_help_before_bench_is_still_the_commands_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "bench" in capsys.readouterr().out
