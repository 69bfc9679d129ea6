"""Text, JSON and SARIF output; SARIF is validated against the committed 2.1.0 schema."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from asyncify_kit.scan import (
    RULES,
    ScanResult,
    find_pyproject,
    load_config,
    render,
    render_json,
    render_sarif,
    render_text,
    scan_paths,
)

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA_PATH = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def scan_fixture(name: str) -> ScanResult:
    project = FIXTURES / name
    pyproject = find_pyproject(project) if (project / "pyproject.toml").exists() else None
    return scan_paths([project], load_config(pyproject), root=project)


def validate(document: dict[str, Any], schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_committed_schema_is_the_sarif_2_1_0_schema(schema: dict[str, Any]) -> None:
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    assert schema["properties"]["version"]["enum"] == ["2.1.0"]
    jsonschema.Draft4Validator.check_schema(schema)


@pytest.mark.parametrize("name", ["methods", "three_hops", "ignores", "syntax_error", "offloaded"])
def test_sarif_validates_against_the_schema(name: str, schema: dict[str, Any]) -> None:
    result = scan_fixture(name)
    document = json.loads(render_sarif(result))
    validate(document, schema)
    run = document["runs"][0]
    assert len(run["results"]) == len(result.findings)


def test_sarif_of_a_clean_scan_validates(tmp_path: Path, schema: dict[str, Any]) -> None:
    (tmp_path / "ok.py").write_text("async def f():\n    return 1\n")
    document = json.loads(render_sarif(scan_paths([tmp_path], root=tmp_path)))
    validate(document, schema)
    assert document["runs"][0]["results"] == []


def test_schema_validation_can_fail(schema: dict[str, Any]) -> None:
    document = json.loads(render_sarif(scan_fixture("one_hop")))
    document["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(AssertionError, match="level"):
        validate(document, schema)


def test_sarif_content() -> None:
    document = json.loads(render_sarif(scan_fixture("one_hop")))
    run = document["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "asyncify-kit"
    assert [rule["id"] for rule in driver["rules"]] == list(RULES)
    (result,) = run["results"]
    assert result["ruleId"] == "ASY101"
    assert driver["rules"][result["ruleIndex"]]["id"] == "ASY101"
    assert result["level"] == "warning"
    location = result["locations"][0]["physicalLocation"]
    assert location == {
        "artifactLocation": {"uri": "app.py", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 15, "startColumn": 12},
    }
    flow = result["codeFlows"][0]["threadFlows"][0]["locations"]
    assert [
        (
            step["location"]["physicalLocation"]["region"]["startLine"],
            step["location"]["message"]["text"],
        )
        for step in flow
    ] == [(15, "handler: load_user(...)"), (7, "load_user: requests.get(...)")]
    base = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert base == (FIXTURES / "one_hop").resolve().as_uri() + "/"


def test_sarif_reports_syntax_errors_as_errors() -> None:
    document = json.loads(render_sarif(scan_fixture("syntax_error")))
    levels = {r["ruleId"]: r["level"] for r in document["runs"][0]["results"]}
    assert levels == {"ASY001": "error", "ASY111": "warning"}


def test_json_report() -> None:
    result = scan_fixture("one_hop")
    document = json.loads(render_json(result))
    assert document["files"] == 1
    assert document["lines"] == 15
    (finding,) = document["findings"]
    assert finding == {
        "rule_id": "ASY101",
        "rule": "http-requests",
        "path": "app.py",
        "line": 15,
        "column": 12,
        "function": "handler",
        "blocking_call": "requests.get",
        "message": "blocking call requests.get() reached from async def handler through load_user",
        "fix": RULES["ASY101"].fix,
        "chain": [
            {
                "path": "app.py",
                "line": 15,
                "column": 12,
                "function": "handler",
                "call": "load_user(...)",
            },
            {
                "path": "app.py",
                "line": 7,
                "column": 12,
                "function": "load_user",
                "call": "requests.get(...)",
            },
        ],
    }


def test_text_report() -> None:
    text = render_text(scan_fixture("one_hop"))
    lines = text.splitlines()
    assert lines[0] == (
        "app.py:15:12: ASY101 [http-requests] blocking call requests.get() reached from "
        "async def handler through load_user"
    )
    assert lines[1] == "    app.py:15:12  handler: load_user(...)"
    assert lines[2] == "    app.py:7:12   load_user: requests.get(...)"
    assert lines[3] == f"    fix: {RULES['ASY101'].fix}"
    assert lines[-1].startswith("Found 1 blocking call (1 file, 15 lines in ")


def test_text_report_without_findings(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("async def f():\n    return 1\n")
    text = render(scan_paths([tmp_path], root=tmp_path), "text")
    assert text.startswith("No blocking calls found (1 file, 2 lines in ")


def test_text_summary_counts_unscanned_files_apart(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def (\n")
    text = render_text(scan_paths([tmp_path], root=tmp_path))
    assert text.splitlines()[-1].startswith(
        "No blocking calls found, 1 place not scanned (ASY001) (1 file, 1 line in "
    )
    (tmp_path / "app.py").write_text("import time\nasync def f():\n    time.sleep(1)\n")
    text = render_text(scan_paths([tmp_path], root=tmp_path))
    assert text.splitlines()[-1].startswith(
        "Found 1 blocking call, 1 place not scanned (ASY001) (2 files, 4 lines in "
    )


def test_columns_count_characters_not_bytes(tmp_path: Path) -> None:
    (tmp_path / "u.py").write_text(
        "import time\nasync def f():\n    é = 'ü'; time.sleep(1)\n", encoding="utf-8"
    )
    (finding,) = scan_paths([tmp_path], root=tmp_path).findings
    assert (finding.line, finding.column) == (3, 14)  # 16 if bytes were counted


def test_columns_count_characters_in_any_source_encoding(tmp_path: Path) -> None:
    (tmp_path / "latin1.py").write_bytes(
        b"# -*- coding: latin-1 -*-\n"
        b"import time\nasync def f():\n    x = '\xe9\xe9'; time.sleep(1)\n"
    )
    (tmp_path / "bom.py").write_bytes(
        "\ufeffimport time\nasync def g(): time.sleep(1)\n".encode("utf-8")
    )
    found = [(f.path, f.line, f.column) for f in scan_paths([tmp_path], root=tmp_path).findings]
    assert found == [("bom.py", 2, 16), ("latin1.py", 4, 15)]


@pytest.mark.parametrize(
    "source",
    [
        'x = "éé"; y = (\n'.encode(),
        '# -*- coding: utf-8 -*-\nx = "éé"; y = (\n'.encode(),
        '# -*- coding: latin-1 -*-\nx = "éé"; y = (\n'.encode("latin-1"),
        '# -*- coding: euc-jp -*-\nx = "日本"; y = (\n'.encode("euc-jp"),
    ],
)
def test_syntax_error_columns_count_characters(source: bytes, tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_bytes(source)
    (finding,) = scan_paths([tmp_path], root=tmp_path).findings
    assert finding.rule_id == "ASY001"
    assert finding.column == 15  # the "(" that is never closed


def test_sarif_of_a_file_name_that_is_not_utf8(tmp_path: Path, schema: dict[str, Any]) -> None:
    name = os.path.join(os.fsencode(tmp_path), b"legacy\xff.py")
    with open(name, "wb") as fh:
        fh.write(b"import time\nasync def f():\n    time.sleep(1)\n")
    result = scan_paths([tmp_path], root=tmp_path)
    document = json.loads(render_sarif(result))
    validate(document, schema)
    location = document["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "legacy%FF.py"
