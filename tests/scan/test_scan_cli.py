"""The command line: exit codes, formats, configuration, usage errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asyncify_kit.exceptions import ConfigError
from asyncify_kit.scan import ScanConfig, load_config, main
from tests.conftest import ON_CI

FIXTURES = Path(__file__).parent / "fixtures"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_exit_1_with_findings(capsys: pytest.CaptureFixture[str]) -> None:
    project = FIXTURES / "one_hop"
    assert main([str(project), "--root", str(project)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("app.py:15:12: ASY101 [http-requests]")


def test_exit_0_without_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "ok.py", "import asyncio\nasync def f():\n    await asyncio.sleep(0)\n")
    assert main([str(tmp_path), "--no-config"]) == 0
    assert "No blocking calls found" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["does/not/exist"], "no such file or directory: does/not/exist"),
        (["--config", "missing.toml", "."], "no such configuration file: missing.toml"),
        (["--ignore", "ASY999", "."], "unknown rule 'ASY999'"),
    ],
)
def test_exit_2_on_usage_errors(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("comment", "message"),
    [
        ("# asyncify: ignore ASY105", "malformed ignore comment"),
        ("# asyncify: ignore-file", "malformed ignore comment"),
        ("# asyncify: ignore [ASY105", "malformed ignore comment"),
        ("# asyncify: ignore[file_open]", "unknown rule 'file_open' in an ignore comment"),
        ("# asyncify: ignore[]", "unknown rule '' in an ignore comment"),
    ],
)
def test_exit_2_on_a_malformed_ignore_comment(
    comment: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A comment that would silence every rule, or none, by a slip of the pen is an error."""
    write(tmp_path / "app.py", f"async def f(path):\n    return open(path)  {comment}\n")
    assert main([str(tmp_path), "--no-config"]) == 2
    err = capsys.readouterr().err
    assert "app.py:2: " in err
    assert message in err


def test_exit_2_on_a_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["--format", "xml", "."])
    assert exc_info.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_exit_2_on_a_bad_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "pyproject.toml", '[tool.asyncify-kit.scan]\nignores = ["ASY101"]\n')
    write(tmp_path / "app.py", "async def f():\n    pass\n")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ignores in [tool.asyncify-kit.scan]" in err


@pytest.mark.parametrize(
    ("pyproject", "table"),
    [
        ("tool = 3\n", "[tool]"),
        ('[tool]\nasyncify-kit = "scan"\n', "[tool.asyncify-kit]"),
        ("[tool.asyncify-kit]\nscan = 3\n", "[tool.asyncify-kit.scan]"),
    ],
)
def test_exit_2_when_the_configuration_is_not_a_table(
    pyproject: str, table: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "pyproject.toml", pyproject)
    write(tmp_path / "app.py", "async def f():\n    pass\n")
    assert main([str(tmp_path)]) == 2
    assert f"pyproject.toml: {table} must be a table" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["project", "parent", "elsewhere"])
def test_exclude_patterns_are_relative_to_the_project_root(
    where: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same pyproject.toml excludes the same files from wherever the scan is run."""
    project = tmp_path / "repo" / "service"
    write(project / "pyproject.toml", '[tool.asyncify-kit.scan]\nexclude = ["tests/fixtures/*"]\n')
    write(project / "app.py", "async def f():\n    pass\n")
    write(
        project / "tests" / "fixtures" / "sample.py",
        "import time\nasync def g():\n    time.sleep(1)\n",
    )
    (tmp_path / "elsewhere").mkdir()
    cwd = {"project": project, "parent": project.parent, "elsewhere": tmp_path / "elsewhere"}[where]
    monkeypatch.chdir(cwd)
    assert main([str(project)]) == 0
    assert "No blocking calls found (1 file" in capsys.readouterr().out


def test_pyproject_is_found_above_the_scanned_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "pyproject.toml", '[tool.asyncify-kit.scan]\nignore = ["time-sleep"]\n')
    write(tmp_path / "src" / "app.py", "import time\nasync def f():\n    time.sleep(1)\n")
    assert main([str(tmp_path / "src")]) == 0
    assert main([str(tmp_path / "src"), "--no-config"]) == 1
    capsys.readouterr()


def test_ignore_and_exclude_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "a.py", "import time\nasync def f():\n    time.sleep(1)\n")
    write(tmp_path / "gen" / "b.py", "import os\nasync def g():\n    os.system('x')\n")
    assert main([str(tmp_path), "--no-config", "--ignore", "ASY111", "--exclude", "gen"]) == 0
    assert main([str(tmp_path), "--no-config", "--ignore", "time-sleep,subprocess"]) == 0
    assert main([str(tmp_path), "--no-config", "--exclude", "gen/*"]) == 1
    capsys.readouterr()


@pytest.mark.parametrize("pattern", ["./gen", "./gen/*", "gen/", "./gen/b.py", "./gen/../gen"])
@pytest.mark.parametrize("where", ["option", "pyproject"])
def test_exclude_patterns_spelled_with_dot_slash(
    pattern: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.py", "async def f():\n    pass\n")
    write(tmp_path / "gen" / "b.py", "import os\nasync def g():\n    os.system('x')\n")
    if where == "option":
        assert main([str(tmp_path), "--no-config", "--exclude", pattern]) == 0
    else:
        write(tmp_path / "pyproject.toml", f'[tool.asyncify-kit.scan]\nexclude = ["{pattern}"]\n')
        assert main([str(tmp_path)]) == 0
    assert "(1 file," in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_output_file(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = FIXTURES / "direct"
    out = tmp_path / f"report.{fmt}"
    assert main([str(project), "--format", fmt, "-o", str(out), "--root", str(project)]) == 1
    document = json.loads(out.read_text())
    if fmt == "sarif":
        assert document["version"] == "2.1.0"
        assert len(document["runs"][0]["results"]) == 4
    else:
        assert len(document["findings"]) == 4
    assert capsys.readouterr().out.startswith("Found 4 blocking calls")


@pytest.fixture
def non_utf8_file(tmp_path: Path) -> Path:
    """``caf\\xe9.py``, a Latin-1 file name (a lone surrogate in a str), that blocks."""
    path = tmp_path / os.fsdecode(b"caf\xe9.py")
    try:
        write(path, "import time\nasync def f():\n    time.sleep(1)\n")
    except (OSError, UnicodeEncodeError):
        if ON_CI:  # (CI's ext4 takes any bytes: the test must run there)
            raise
        pytest.skip("this file system takes UTF-8 file names only")
    return path


def test_a_file_name_that_is_not_utf8_is_escaped_in_the_text_report(
    non_utf8_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text report went to a strict UTF-8 stream (a file, or stdout with
    PYTHONIOENCODING=utf-8): UnicodeEncodeError, status 1 as for findings, an empty report."""
    out = tmp_path / "report.txt"
    argv = [str(non_utf8_file), "--root", str(tmp_path), "--no-config"]
    assert main([*argv, "-o", str(out)]) == 1
    expected = "caf\\udce9.py:3:5: ASY111 [time-sleep]"
    assert out.read_text(encoding="utf-8").startswith(expected)
    assert main(argv) == 1  # capsys' stdout is strict UTF-8
    assert capsys.readouterr().out.startswith(expected)


def test_a_failure_is_status_2_not_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "app.py", "import time\nasync def f():\n    time.sleep(1)\n")
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdout", closed)  # the report cannot be written
    assert main([str(tmp_path), "--no-config"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "asyncify-kit scan: error: the scan failed: ValueError(" in err


def test_list_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-rules"]) == 0
    out = capsys.readouterr().out
    for rule_id in ("ASY101", "ASY104", "ASY111", "ASY113"):
        assert rule_id in out


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "import time\nasync def f():\n    time.sleep(1)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "asyncify_kit.scan", ".", "--format", "json", "--no-config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    assert [(f["rule_id"], f["path"], f["line"]) for f in findings] == [("ASY111", "app.py", 3)]


def test_config_validation(tmp_path: Path) -> None:
    good = write(
        tmp_path / "good.toml",
        "[tool.asyncify-kit.scan]\n"
        'extra-rules = { "mylib.*" = "use mylib.aio" }\n'
        'ignore = ["ASY104", "file-os"]\n'
        'exclude = ["migrations"]\n'
        'offload-decorators = ["mylib.threaded"]\n',
    )
    assert load_config(good) == ScanConfig(
        extra_rules={"mylib.*": "use mylib.aio"},
        ignore=frozenset({"ASY104", "ASY107"}),
        exclude=("migrations",),
        offload_decorators=frozenset({"mylib.threaded"}),
        project_root=tmp_path.resolve(),
    )
    bad_toml = write(tmp_path / "bad.toml", "[tool.asyncify-kit.scan\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad_toml)
    bad_type = write(tmp_path / "type.toml", '[tool.asyncify-kit.scan]\nexclude = "x"\n')
    with pytest.raises(ConfigError, match="exclude must be a list of strings"):
        load_config(bad_type)
    bad_rules = write(tmp_path / "rules.toml", "[tool.asyncify-kit.scan]\nextra-rules = [1]\n")
    with pytest.raises(ConfigError, match="extra-rules must be a table"):
        load_config(bad_rules)


def test_extra_rule_prefix_and_offload_decorator(tmp_path: Path) -> None:
    from asyncify_kit.scan import scan_paths

    write(
        tmp_path / "app.py",
        "import mylib\n"
        "from mylib import threaded\n"
        "import time\n"
        "@threaded\n"
        "def work():\n"
        "    time.sleep(1)\n"
        "async def f():\n"
        "    mylib.db.query()\n"
        "    await work()\n",
    )
    config = ScanConfig(
        extra_rules={"mylib.db.*": "use mylib.adb"},
        offload_decorators=frozenset({"mylib.threaded"}),
    )
    found = [(f.rule_id, f.blocking_call, f.fix) for f in scan_paths([tmp_path], config).findings]
    assert found == [("ASY100", "mylib.db.query", "use mylib.adb")]
    found_default = [f.blocking_call for f in scan_paths([tmp_path]).findings]
    assert found_default == ["time.sleep"]


def test_registered_on_the_asyncify_kit_command(capsys: pytest.CaptureFixture[str]) -> None:
    from asyncify_kit.cli import main as asyncify_kit_main

    project = FIXTURES / "syntax_error"
    assert asyncify_kit_main(["scan", str(project), "--root", str(project)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("broken.py:4:19: ASY001 [syntax-error]")
