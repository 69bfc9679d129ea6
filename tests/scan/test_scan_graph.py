"""Call-graph internals: cycles, shortest chains, unparsable files, rule-table consistency."""

from __future__ import annotations

import gc
import os
import textwrap
import threading
from pathlib import Path

import pytest

from asyncify_kit import ConfigError
from asyncify_kit.scan import RULES, ScanConfig, scan_paths
from asyncify_kit.scan._rules import (
    ANY_METHOD_TYPES,
    BLOCKING_CALLS,
    FACTORIES,
    TYPE_ALIASES,
    rule_for,
)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_shortest_chain_inside_a_cycle(tmp_path: Path) -> None:
    write(
        tmp_path / "ring.py",
        """\
        import time
        def a(n):
            b(n)
            c(n)
        def b(n):
            c(n)
        def c(n):
            a(n - 1)
            time.sleep(0.1)
        async def handler():
            b(1)
        """,
    )
    (finding,) = scan_paths([tmp_path], root=tmp_path).findings
    assert finding.chain_text() == "ring.py:11 handler -> ring.py:6 b -> ring.py:9 c -> time.sleep"


def test_a_large_cycle_across_modules(tmp_path: Path) -> None:
    """300 functions in 30 modules calling each other in a ring, a sleep in every tenth."""
    size, per_module = 300, 10
    for m in range(size // per_module):
        lines = ["import time", f"from . import mod_{(m + 1) % (size // per_module)} as nxt", ""]
        for k in range(per_module):
            i = m * per_module + k
            following = f"f_{i + 1}" if k + 1 < per_module else f"nxt.f_{i + 1}"
            if i + 1 == size:
                following = "nxt.f_0"
            lines += [f"def f_{i}(n):", f"    {following}(n)"]
            if i % 10 == 5:
                lines.append("    time.sleep(0)")
            lines.append("")
        if m == 0:
            lines += ["async def handler():", "    f_0(1)", ""]
        write(tmp_path / "ring" / f"mod_{m}.py", "\n".join(lines))
    write(tmp_path / "ring" / "__init__.py", "")
    result = scan_paths([tmp_path], root=tmp_path)
    assert len(result.findings) == size // 10
    lengths = sorted(len(f.chain) for f in result.findings)
    # handler -> f_0 ... -> f_5 is 7 hops; every next sleep is ten hops further
    assert lengths == [7 + 10 * k for k in range(size // 10)]
    farthest = max(result.findings, key=lambda f: len(f.chain))
    assert farthest.chain[-1].function == "f_295"
    assert farthest.chain[-1].path == "ring/mod_29.py"


def test_unparsable_files_are_reported_and_the_scan_goes_on(tmp_path: Path) -> None:
    (tmp_path / "nul.py").write_bytes(b"x = 1\x00\n")
    (tmp_path / "latin.py").write_bytes(b"# -*- coding: ascii -*-\ns = '\xe9'\n")
    write(tmp_path / "ok.py", "import time\nasync def f():\n    time.sleep(1)\n")
    found = [(f.rule_id, f.path, f.message) for f in scan_paths([tmp_path], root=tmp_path).findings]
    assert [(rule, path) for rule, path, _ in found] == [
        ("ASY001", "latin.py"),
        ("ASY001", "nul.py"),
        ("ASY111", "ok.py"),
    ]
    assert all(message.endswith("the file was not scanned") for rule, _, message in found[:2])


def test_an_intermediate_hop_comment_silences_what_is_reached_through_it(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py",
        """\
        import time
        def inner():
            time.sleep(1)
        def middle():
            inner()  # asyncify: ignore[time-sleep]
        def other():
            inner()
        async def handler():
            middle()
            other()
        """,
    )
    (finding,) = scan_paths([tmp_path], root=tmp_path).findings
    assert finding.chain_text() == (
        "app.py:10 handler -> app.py:7 other -> app.py:3 inner -> time.sleep"
    )


def test_the_garbage_collector_state_is_restored(tmp_path: Path) -> None:
    write(tmp_path / "a.py", "async def f():\n    pass\n")
    assert gc.isenabled()
    scan_paths([tmp_path])
    assert gc.isenabled()
    gc.disable()
    try:
        scan_paths([tmp_path])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_file_is_scanned_once_even_when_named_twice(tmp_path: Path) -> None:
    write(tmp_path / "a.py", "import time\nasync def f():\n    time.sleep(1)\n")
    result = scan_paths([tmp_path, tmp_path / "a.py", tmp_path], root=tmp_path)
    assert result.files == 1
    assert len(result.findings) == 1


def test_paths_outside_the_root_are_shown_absolute(tmp_path: Path) -> None:
    write(tmp_path / "proj" / "a.py", "import time\nasync def f():\n    time.sleep(1)\n")
    (tmp_path / "elsewhere").mkdir()
    (finding,) = scan_paths([tmp_path / "proj"], root=tmp_path / "elsewhere").findings
    assert finding.path == (tmp_path / "proj" / "a.py").resolve().as_posix()


def test_rule_table_is_consistent() -> None:
    used = set(BLOCKING_CALLS.values()) | {rule for rule, _ in ANY_METHOD_TYPES.values()}
    assert used <= set(RULES)
    assert {f"ASY{n}" for n in range(101, 122)} == used
    for rule in RULES.values():
        assert rule_for(rule.id.lower()) is rule
        assert rule_for(rule.name) is rule
        assert rule.fix and rule.summary
    assert rule_for("nope") is None
    # every type a factory produces is known to match calls on it
    produced = set(FACTORIES.values()) | set(TYPE_ALIASES.values())
    owners = {name.rpartition(".")[0] for name in BLOCKING_CALLS} | set(ANY_METHOD_TYPES)
    harmless = {"boto3.Session", "botocore.Session", "ssl.SSLContext"}
    assert produced - owners <= harmless | {
        t for t in produced if any(f.startswith(t + ".") for f in FACTORIES)
    }


@pytest.mark.parametrize("bad", ["ASY1", "requests", "ignore"])
def test_unknown_rule_names(bad: str) -> None:
    assert rule_for(bad) is None


def test_the_benchmark_project_has_the_findings_it_is_built_for(tmp_path: Path) -> None:
    from benchmarks.bench_scan import generate_project

    lines = generate_project(tmp_path, lines=5_000)
    modules = len(list((tmp_path / "genapp").glob("mod_*.py")))
    result = scan_paths([tmp_path], root=tmp_path)
    assert result.lines == lines
    # per module: 4 handlers on the loop (blocks 0, 3, 6, 9), each reaching requests,
    # pathlib, sqlite3.connect and Connection.execute; the offloaded ones report nothing
    assert len(result.findings) == modules * 4 * 4
    assert {f.rule_id for f in result.findings} == {"ASY101", "ASY106", "ASY110"}
    assert {f.function for f in result.findings} == {f"handler_{j}" for j in (0, 3, 6, 9)}


def test_extra_rules_on_a_method_find_objects_made_by_calling_the_class(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py",
        """\
        import legacy
        from legacy import Client
        client = legacy.Client()
        async def local():
            c = legacy.Client()
            return c.fetch()
        async def inline():
            return Client().fetch()
        async def module_level():
            return client.fetch()
        async def annotated(c: legacy.Client):
            return c.fetch()
        """,
    )
    config = ScanConfig(extra_rules={"legacy.Client.fetch": "use legacy.AsyncClient.fetch"})
    found = [(f.line, f.blocking_call) for f in scan_paths([tmp_path], config).findings]
    assert found == [(line, "legacy.Client.fetch") for line in (6, 8, 10, 12)]


def test_long_chains_do_not_stop_the_scan(tmp_path: Path) -> None:
    """600 chained method calls, 1,000 chained attributes, a 1,000-branch elif."""
    write(tmp_path / "builder.py", "async def handler(query):\n")
    with (tmp_path / "builder.py").open("a") as fh:
        fh.write("    return query" + ".filter(x=1)" * 600 + ".all()\n")
        fh.write("async def settings(cfg):\n    return cfg" + ".sub" * 1000 + ".value\n")
        fh.write("async def dispatch(x):\n    if x == 0:\n        pass\n")
        fh.writelines(f"    elif x == {i}:\n        pass\n" for i in range(1, 1000))
    write(tmp_path / "ok.py", "import time\nasync def h():\n    time.sleep(1)\n")
    found = [(f.rule_id, f.path) for f in scan_paths([tmp_path], root=tmp_path).findings]
    assert found == [("ASY111", "ok.py")]


def test_names_too_deeply_nested_to_resolve_are_reported_and_the_scan_goes_on(
    tmp_path: Path,
) -> None:
    """Each name defined through the one before, thousands deep: an ASY001, not a crash."""
    lines = ["import requests", "x0 = requests.Session()"]
    lines += [f"x{i} = x{i - 1}" for i in range(1, 3000)]
    lines += ["async def handler():", "    return x2999.get('u')", ""]
    write(tmp_path / "deep.py", "\n".join(lines))
    write(tmp_path / "ok.py", "import time\nasync def h():\n    time.sleep(1)\n")
    found = [
        (f.rule_id, f.path, f.line, f.message)
        for f in scan_paths([tmp_path], root=tmp_path).findings
    ]
    assert found == [
        (
            "ASY001",
            "deep.py",
            3002,
            "handler: names too deeply nested to resolve; its calls were not scanned",
        ),
        ("ASY111", "ok.py", 3, "blocking call time.sleep() in async def h"),
    ]


def test_a_linked_file_is_scanned_once(tmp_path: Path) -> None:
    write(tmp_path / "app" / "api.py", "import time\nasync def h():\n    time.sleep(1)\n")
    (tmp_path / "compat").mkdir()
    (tmp_path / "compat" / "api.py").symlink_to("../app/api.py")
    (tmp_path / "a_link.py").symlink_to("z_real.py")
    write(tmp_path / "z_real.py", "import os\nasync def g():\n    os.system('x')\n")
    result = scan_paths([tmp_path], root=tmp_path)
    assert result.files == 2
    # the first path in the walk's sorted order is kept
    assert [f.path for f in result.findings] == ["a_link.py", "app/api.py"]


def _open_for_writing(fifo: Path) -> None:
    """Open and close *fifo* for writing, if something waits to read it (it then reads EOF)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader: nothing to release
        return
    os.close(fd)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_named_like_a_python_file_is_skipped_not_read(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "import time\nasync def h():\n    time.sleep(1)\n")
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    (tmp_path / "link.py").symlink_to("pipe.py")
    # reading the FIFO waited for a writer for ever; this one ends such a wait after 5 s
    release = threading.Timer(5, _open_for_writing, (fifo,))
    release.start()
    try:
        result = scan_paths([tmp_path], root=tmp_path)
    finally:
        release.cancel()
    assert result.files == 1
    assert [(f.rule_id, f.path) for f in result.findings] == [("ASY111", "app.py")]
    with pytest.raises(ConfigError, match=r"not a regular file or directory: .*pipe\.py"):
        scan_paths([fifo], root=tmp_path)
