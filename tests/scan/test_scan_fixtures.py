"""The scanner over small fixture projects, with the exact findings each must produce.

Each fixture under ``tests/scan/fixtures/`` is a little project; the expected list is every
finding as ``(rule id, location, chain)``, so a missing, extra or misplaced finding fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncify_kit.scan import ScanResult, find_pyproject, load_config, scan_paths

FIXTURES = Path(__file__).parent / "fixtures"


def scan_fixture(name: str) -> ScanResult:
    project = FIXTURES / name
    config = load_config(find_pyproject(project) if (project / "pyproject.toml").exists() else None)
    return scan_paths([project], config, root=project)


def summary(result: ScanResult) -> list[tuple[str, str, str]]:
    return [(f.rule_id, f.location, f.chain_text()) for f in result.findings]


EXPECTED: dict[str, list[tuple[str, str, str]]] = {
    "direct": [
        ("ASY101", "app.py:8:12", "app.py:8 fetch -> requests.get"),
        ("ASY111", "app.py:12:5", "app.py:12 pause -> time.sleep"),
        ("ASY105", "app.py:16:10", "app.py:16 read -> builtins.open"),
        ("ASY112", "app.py:21:12", "app.py:21 run -> subprocess.run"),
    ],
    "one_hop": [
        ("ASY101", "app.py:15:12", "app.py:15 handler -> app.py:7 load_user -> requests.get"),
    ],
    "three_hops": [
        (
            "ASY110",
            "app/api.py:5:12",
            "app/api.py:5 get_user -> app/service.py:5 load_user -> app/repository.py:5 "
            "fetch_row -> app/db.py:5 query -> sqlite3.connect",
        ),
        (
            "ASY110",
            "app/api.py:5:12",
            "app/api.py:5 get_user -> app/service.py:5 load_user -> app/repository.py:5 "
            "fetch_row -> app/db.py:6 query -> sqlite3.Connection.execute",
        ),
        (
            "ASY110",
            "app/api.py:5:12",
            "app/api.py:5 get_user -> app/service.py:5 load_user -> app/repository.py:5 "
            "fetch_row -> app/db.py:6 query -> sqlite3.Cursor.fetchone",
        ),
    ],
    "methods": [
        (
            "ASY101",
            "shop/handlers.py:5:12",
            "shop/handlers.py:5 show_user -> shop/services.py:26 UserService.get_user -> "
            "shop/services.py:29 UserService._fetch -> requests.Session.get",
        ),
        (
            "ASY106",
            "shop/handlers.py:9:12",
            "shop/handlers.py:9 avatar -> shop/services.py:33 UserService.default_avatar -> "
            "shop/services.py:37 UserService._read_avatar -> pathlib.Path.read_bytes",
        ),
        (
            "ASY101",
            "shop/handlers.py:14:12",
            "shop/handlers.py:14 ban -> shop/services.py:47 AdminService.ban -> "
            "shop/services.py:26 UserService.get_user -> shop/services.py:29 UserService._fetch "
            "-> requests.Session.get",
        ),
        (
            "ASY104",
            "shop/handlers.py:14:12",
            "shop/handlers.py:14 ban -> shop/services.py:46 AdminService.ban -> "
            "shop/services.py:15 Storage.save -> boto3.client.put_object",
        ),
        (
            "ASY106",
            "shop/handlers.py:18:12",
            "shop/handlers.py:18 settings -> shop/services.py:41 UserService.settings -> "
            "pathlib.Path.read_text",
        ),
    ],
    "aliases": [
        (
            "ASY103",
            "proj/api.py:10:12",
            "proj/api.py:10 download -> proj/net.py:7 download -> urllib.request.urlopen",
        ),
        (
            "ASY102",
            "proj/api.py:14:12",
            "proj/api.py:14 upload -> proj/net.py:12 post -> httpx.post",
        ),
        (
            "ASY107",
            "proj/api.py:18:12",
            "proj/api.py:18 save -> proj/store.py:7 save -> os.listdir",
        ),
        (
            "ASY111",
            "proj/api.py:18:12",
            "proj/api.py:18 save -> proj/store.py:6 save -> time.sleep",
        ),
        (
            "ASY107",
            "proj/api.py:22:12",
            "proj/api.py:22 save_again -> proj/store.py:7 save -> os.listdir",
        ),
        (
            "ASY111",
            "proj/api.py:22:12",
            "proj/api.py:22 save_again -> proj/store.py:6 save -> time.sleep",
        ),
        ("ASY111", "proj/api.py:26:5", "proj/api.py:26 wait -> time.sleep"),
        ("ASY112", "proj/api.py:30:12", "proj/api.py:30 version -> subprocess.check_output"),
    ],
    "partials": [
        ("ASY101", "app.py:17:12", "app.py:17 users -> app.py:9 fetch -> requests.get"),
        ("ASY111", "app.py:21:5", "app.py:21 rest -> time.sleep"),
        ("ASY101", "app.py:25:12", "app.py:25 inline -> requests.post"),
    ],
    # every offloading form is safe; the one mistake (the call runs before run_sync) is not
    "offloaded": [
        ("ASY101", "app.py:62:27", "app.py:62 mistake -> app.py:13 fetch -> requests.get"),
    ],
    # inline comments, [tool.asyncify-kit.scan] ignore/exclude/extra-rules
    "ignores": [
        ("ASY111", "app.py:33:5", "app.py:33 wrong_rule -> time.sleep"),
        ("ASY100", "app.py:47:5", "app.py:47 custom -> legacy.client.call"),
        ("ASY100", "app.py:48:12", "app.py:48 custom -> app.slow_helper"),
    ],
    "syntax_error": [
        ("ASY001", "broken.py:4:19", ""),
        ("ASY111", "good.py:5:5", "good.py:5 handler -> time.sleep"),
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_findings_are_exact(name: str) -> None:
    assert summary(scan_fixture(name)) == EXPECTED[name]


def test_fixture_directories_are_all_covered() -> None:
    on_disk = {path.name for path in FIXTURES.iterdir() if path.is_dir()}
    assert on_disk == set(EXPECTED)


def test_chain_hops_carry_function_and_call_text() -> None:
    (finding,) = [f for f in scan_fixture("methods").findings if f.function == "avatar"]
    assert [(hop.path, hop.line, hop.column, hop.function, hop.call) for hop in finding.chain] == [
        ("shop/handlers.py", 9, 12, "avatar", "UserService.default_avatar(...)"),
        ("shop/services.py", 33, 16, "UserService.default_avatar", "cls._read_avatar(...)"),
        (
            "shop/services.py",
            37,
            16,
            "UserService._read_avatar",
            "pathlib.Path(...).read_bytes(...)",
        ),
    ]
    assert finding.blocking_call == "pathlib.Path.read_bytes"
    assert finding.rule_name == "file-pathlib"
    assert "anyio.Path" in finding.fix
    assert finding.message == (
        "blocking call pathlib.Path.read_bytes() reached from async def avatar through "
        "UserService.default_avatar -> UserService._read_avatar"
    )


def test_property_access_is_a_hop_without_call_parentheses() -> None:
    (finding,) = [f for f in scan_fixture("methods").findings if f.function == "settings"]
    assert finding.chain[0].call == "service.settings"


def test_extra_rule_fix_comes_from_the_configuration() -> None:
    fixes = {f.blocking_call: f.fix for f in scan_fixture("ignores").findings}
    assert fixes["legacy.client.call"] == "use legacy.client.acall"
    assert fixes["app.slow_helper"] == "use app.fast_helper"


def test_without_the_configuration_ignored_rules_and_excluded_files_come_back() -> None:
    project = FIXTURES / "ignores"
    found = summary(scan_paths([project], root=project))
    assert ("ASY104", "app.py:43:12", "app.py:43 aws -> boto3.client.list_buckets") in found
    assert (
        "ASY111",
        "generated/models.py:5:5",
        "generated/models.py:5 generated -> time.sleep",
    ) in found
    # inline comments still apply; the custom rules are gone
    assert {rule for rule, _, _ in found} == {"ASY104", "ASY111"}


def test_a_file_named_explicitly_is_scanned_even_when_excluded() -> None:
    project = FIXTURES / "ignores"
    config = load_config(project / "pyproject.toml")
    result = scan_paths([project / "generated" / "models.py"], config, root=project)
    assert summary(result) == [
        ("ASY111", "generated/models.py:5:5", "generated/models.py:5 generated -> time.sleep")
    ]


def test_result_counts_files_and_lines() -> None:
    result = scan_fixture("three_hops")
    assert result.files == 5
    assert result.lines == sum(
        len(p.read_text().splitlines()) for p in (FIXTURES / "three_hops").rglob("*.py")
    )
    assert result.exit_code == 1
