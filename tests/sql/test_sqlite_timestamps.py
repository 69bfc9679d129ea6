"""SQLite timestamps: stored as SQLite's own text, so they compare right as text.

SQLite has no timestamp type and compares the values of a ``TIMESTAMP`` column as text. The
facade sent a `datetime` as ISO text (``2024-05-01T12:00:00+00:00``) while SQLite itself
(``CURRENT_TIMESTAMP``, ``datetime('now')``) and sqlite3 write ``2024-05-01 12:00:00``: as
``' ' < 'T'``, a range query against rows of the other form silently dropped (or added) the
rows of the same day, even in an application whose rows all came through the facade, by a
column default.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from asyncify_kit.sql import Database

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
#: what earlier versions of the facade stored, and the statement docs/sql.md gives to convert
OLD_FORM = "2024-05-01T12:00:00.123456+00:00"
CONVERT_OLD_ROWS = (
    "update events set at = replace(substr(at, 1, length(at) - 6), 'T', ' ')"
    " where at like '%T%+00:00'"
)


@pytest.fixture
def legacy_db(tmp_path: Path) -> Path:
    """A file written by plain sqlite3: its datetime adapter, and a CURRENT_TIMESTAMP default."""
    path = tmp_path / "legacy.db"
    con = sqlite3.connect(path)
    try:
        con.execute(
            "create table events (id integer primary key, name text,"
            " at timestamp not null default current_timestamp)"
        )
        con.execute(
            "insert into events (name, at) values (?, ?)",
            ("adapter", str(dt.datetime(2024, 5, 1, 12, 0))),  # sqlite3's adapter's text
        )
        con.execute("insert into events (name) values ('defaulted')")
        con.commit()
    finally:
        con.close()
    return path


async def test_a_datetime_parameter_compares_with_sqlite_s_own_timestamps(
    legacy_db: Path,
) -> None:
    async with Database(f"sqlite:///{legacy_db}") as db:
        await db.execute("insert into events (name) values ('facade-defaulted')")
        query = "select name from events where at >= :since order by id"
        since = dt.datetime(2024, 5, 1, 8, 0)
        everything = ["adapter", "defaulted", "facade-defaulted"]
        for value in (since, since.replace(tzinfo=UTC), since.replace(hour=10, tzinfo=PLUS_TWO)):
            assert [r.name for r in await db.fetch_all(query, {"since": value})] == everything
        hour_ago = dt.datetime.now(UTC) - dt.timedelta(hours=1)
        for value in (hour_ago, hour_ago.replace(tzinfo=None), hour_ago.astimezone(PLUS_TWO)):
            rows = await db.fetch_all(query, {"since": value})
            assert [r.name for r in rows] == ["defaulted", "facade-defaulted"]
        hour_ahead = hour_ago + dt.timedelta(hours=2)
        assert (
            await db.fetch_val(
                "select count(*) from events where at between :a and :b",
                {"a": hour_ago, "b": hour_ahead},
            )
            == 2
        )
        noon = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        assert await db.fetch_val("select name from events where at = :t", {"t": noon}) == "adapter"
        # the parameter is SQLite's own text, as datetime() makes it
        assert (
            await db.fetch_val(
                "select :t = datetime('2024-05-01 14:00:00', '-2 hours')",
                {"t": noon.astimezone(PLUS_TWO)},
            )
            == 1
        )


async def test_stored_text_order_and_round_trip(tmp_path: Path) -> None:
    async with Database(f"sqlite:///{tmp_path / 'a.db'}") as db:
        await db.execute(
            "create table events (id integer primary key, at timestamp not null"
            " default current_timestamp)"
        )
        base = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        values = [
            base + dt.timedelta(seconds=1),  # whole seconds
            base + dt.timedelta(microseconds=250_000),
            base.replace(tzinfo=None),  # naive: UTC
            (base + dt.timedelta(microseconds=1)).astimezone(PLUS_TWO),
            base - dt.timedelta(microseconds=1),
            base + dt.timedelta(microseconds=999_999),
        ]
        for value in values:
            await db.execute("insert into events (at) values (:at)", {"at": value})
        await db.execute("insert into events (at) values (datetime('2024-05-01 12:00:00.5'))")
        await db.execute(
            "insert into events (at)"
            " values (strftime('%Y-%m-%d %H:%M:%f', '2024-05-01 12:00:00.5'))"
        )
        stored = [
            r[0] for r in await db.fetch_all("select cast(at as text) from events order by id")
        ]
        assert stored[:6] == [
            "2024-05-01 12:00:01",
            "2024-05-01 12:00:00.250000",
            "2024-05-01 12:00:00",
            "2024-05-01 12:00:00.000001",
            "2024-05-01 11:59:59.999999",
            "2024-05-01 12:00:00.999999",
        ]
        assert stored[6:] == ["2024-05-01 12:00:00", "2024-05-01 12:00:00.500"]
        # round trip: every value comes back, aware and in UTC
        read = [r.at for r in await db.fetch_all("select at from events order by id")]
        assert read[:6] == [v if v.tzinfo else v.replace(tzinfo=UTC) for v in values]
        assert all(v.tzinfo is UTC for v in read)
        assert read[6:] == [base, base + dt.timedelta(microseconds=500_000)]
        # ordered as text, which is time order, whoever wrote the value
        ordered = [r.at for r in await db.fetch_all("select at from events order by at, id")]
        assert ordered == sorted(read)
        # sub-second comparisons
        count = "select count(*) from events where at > :t"
        assert await db.fetch_val(count, {"t": base}) == 5
        assert await db.fetch_val(count, {"t": base + dt.timedelta(microseconds=250_000)}) == 3
        assert await db.fetch_val(count, {"t": base + dt.timedelta(seconds=1)}) == 0
        assert await db.fetch_val(count, {"t": base - dt.timedelta(microseconds=2)}) == 8


async def test_rows_in_the_old_iso_form_are_read_and_the_documented_update_converts_them(
    tmp_path: Path,
) -> None:
    async with Database(f"sqlite:///{tmp_path / 'a.db'}") as db:
        await db.execute("create table events (id integer primary key, at timestamp)")
        for text in (OLD_FORM, "2024-05-01T12:00:00+00:00", "2024-05-01 12:00:00"):
            await db.execute("insert into events (at) values (:text)", {"text": text})
        expected = [
            dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
            dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        ]
        assert [r.at for r in await db.fetch_all("select at from events order by id")] == expected
        assert await db.execute(CONVERT_OLD_ROWS) == 2
        texts = [
            r[0] for r in await db.fetch_all("select cast(at as text) from events order by id")
        ]
        assert texts == ["2024-05-01 12:00:00.123456", "2024-05-01 12:00:00", "2024-05-01 12:00:00"]
        assert [r.at for r in await db.fetch_all("select at from events order by id")] == expected
        noon = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        assert await db.fetch_val("select count(*) from events where at = :t", {"t": noon}) == 2


async def test_a_datetime_in_a_date_column_still_reads_as_its_utc_date(tmp_path: Path) -> None:
    async with Database(f"sqlite:///{tmp_path / 'a.db'}") as db:
        await db.execute("create table days (d date)")
        late = dt.datetime(2024, 5, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
        await db.execute("insert into days values (:d)", {"d": late})
        assert await db.fetch_val("select d from days") == dt.date(2024, 5, 2)
        assert await db.fetch_val("select date(d) from days") == "2024-05-02"
