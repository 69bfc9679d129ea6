"""The C base of `Row` (``_rowcore``) and its pure-Python twin.

`tests/sql/test_row.py` runs in this process on whichever base is in use (the C one wherever
the package was built with a compiler, as ``make test`` does) and once more below in a child
process with ``ASYNCIFY_KIT_NO_EXTENSIONS=1``, so both bases pass the same tests.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest

from asyncify_kit.sql import SPEEDUPS, Row, _row
from asyncify_kit.sql._row import _speedups_wanted, make_keys, rows_of

ROOT = Path(__file__).resolve().parents[2]


def test_the_c_base_is_built_and_used_unless_turned_off() -> None:
    # a build that silently lost its compiler would lose the fetch_all speed without a word
    assert SPEEDUPS is _speedups_wanted()
    assert _row.SPEEDUPS is SPEEDUPS  # the public name is the flag the row code set
    if SPEEDUPS:
        from asyncify_kit.sql import _rowcore

        assert issubclass(Row, _rowcore.RowBase)


def test_the_row_tests_pass_on_the_pure_python_base() -> None:
    env = {**os.environ, "ASYNCIFY_KIT_NO_EXTENSIONS": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", "from asyncify_kit.sql import SPEEDUPS; print(SPEEDUPS)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stdout.strip() == "False"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sql/test_row.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_rows_share_the_table_and_keep_the_records() -> None:
    keys = make_keys(["id", "name"])
    records = ((1, "a"), (2, "b"))
    rows = rows_of(keys, records)
    assert [type(r) for r in rows] == [Row, Row]
    assert rows[0]._keys is rows[1]._keys is keys
    assert rows[0]._values is records[0] and rows[1]._values is records[1]
    assert rows_of(keys, []) == []
    assert rows_of(keys, [(3, "c")]) == [{"id": 3, "name": "c"}]


def test_building_and_dropping_rows_leaks_no_reference() -> None:
    keys = make_keys(["id"])
    records = [(i,) for i in range(100)]
    before = sys.getrefcount(keys), sys.getrefcount(records[7])
    for _ in range(50):
        rows = rows_of(keys, records)
        rows += [Row(keys, records[7])]
        del rows
    assert (sys.getrefcount(keys), sys.getrefcount(records[7])) == before


def test_a_cycle_through_a_row_is_collected() -> None:
    class Box:
        row: Row

    box = Box()
    box.row = rows_of(make_keys(["box"]), [(box,)])[0]
    alive = weakref.ref(box)
    del box
    gc.collect()
    assert alive() is None


@pytest.mark.skipif(not SPEEDUPS, reason="the C base is turned off (ASYNCIFY_KIT_NO_EXTENSIONS)")
def test_the_c_base_checks_its_arguments() -> None:
    from asyncify_kit.sql import _rowcore

    core: Any = _rowcore  # wrong arguments on purpose
    keys = make_keys(["id"])
    with pytest.raises(TypeError, match="RowBase subclass"):
        core.rows_of(dict, keys, [(1,)])
    with pytest.raises(TypeError, match="sequence of records"):
        core.rows_of(Row, keys, 5)
    with pytest.raises(TypeError, match="3 arguments"):
        core.rows_of(Row, keys)
    with pytest.raises(TypeError):
        Row(keys)  # type: ignore[call-arg]
    row = Row(keys=keys, values=(1,))
    with pytest.raises(AttributeError):  # read-only, where the pure-Python base allows it
        row._values = (2,)
    assert row == {"id": 1}
