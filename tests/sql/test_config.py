"""Choosing a backend: URL precedence, option validation, trio support, and no secret leaks."""

from __future__ import annotations

import logging
import secrets
import string
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncify_kit import BackendURL, ConfigError, Unsupported
from asyncify_kit.sql import Database, DatabaseError, OperationalError

SERVER_SCHEMES = (
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "mysql+asyncmy",
    "mysql+aiomysql",
    "mysql+pymysql",
)


def test_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASYNCIFY_SQL_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert str(Database().url) == "sqlite:///./asyncify.db"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///from_database_url.db")
    assert Database().url.database == "from_database_url.db"
    monkeypatch.setenv("ASYNCIFY_SQL_URL", "sqlite:///from_asyncify.db")
    assert Database().url.database == "from_asyncify.db"
    assert Database("sqlite:///explicit.db").url.database == "explicit.db"


def test_a_trailing_newline_in_the_env_url_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``ASYNCIFY_SQL_URL="sqlite:///./app.db\\n"`` (as ``$(cat ...)`` or a secret file leaves
    it) opened a file named ``app.db\\n``; now it is a `ConfigError` naming the variable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("ASYNCIFY_SQL_URL", "sqlite:///./app.db\n")
    with pytest.raises(ConfigError) as info:
        Database()
    assert str(info.value).startswith("environment variable ASYNCIFY_SQL_URL: ")
    assert "a newline at its end" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_option_errors_of_database_url_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown option of ``DATABASE_URL`` was refused without the variable's name or the
    option to use instead. (PostgreSQL takes libpq's ``sslmode`` now, MySQL does not: see
    ``test_sslmode.py``.)"""
    monkeypatch.delenv("ASYNCIFY_SQL_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "mysql://app:hunter2@db:3306/shop?sslmode=require")
    with pytest.raises(ConfigError) as info:
        Database()
    message = str(info.value)
    assert message.startswith("environment variable DATABASE_URL: unknown option 'sslmode' ")
    assert message.endswith("did you mean 'ssl'?")
    assert "hunter2" not in message
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@db/shop?connect_timeout=0")
    with pytest.raises(ConfigError, match=r"^environment variable DATABASE_URL: invalid value"):
        Database()
    monkeypatch.setenv("DATABASE_URL", "host=db user=app password=hunter2 dbname=shop")
    with pytest.raises(ConfigError, match=r"^environment variable DATABASE_URL: a key=value") as kv:
        Database()
    assert "hunter2" not in str(kv.value)
    assert Database("postgresql://app:hunter2@db/shop").url.source is None  # from code


def test_default_drivers() -> None:
    assert Database("postgresql://u@h/db").backend == "postgresql+asyncpg"
    assert Database("postgres://u@h/db").backend == "postgresql+asyncpg"
    assert Database("mysql://u@h/db").backend == "mysql+asyncmy"
    assert Database("mariadb://u@h/db").backend == "mysql+asyncmy"
    assert Database("postgresql+psycopg2://u@h/db").dialect == "postgresql"


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"postgresql\+asyncpg.*sqlite"):
        Database("postgresql+nodriver://u@h/db")
    with pytest.raises(ConfigError, match="oracle"):
        Database("oracle://u@h/db")


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("sqlite:///a.db?max_sise=3", {}, "unknown option 'max_sise'.*known options: "),
        ("sqlite:///a.db?max_size=0", {}, "'max_size'.*a whole number >= 1"),
        ("postgresql://u@h/db?ssl=maybe", {}, "'ssl'.*one of disable, allow"),
        ("mysql://u@h/db?statement_timeout=-1", {}, "'statement_timeout'"),
        ("sqlite:///a.db", {"journal_mode": "fast"}, "'journal_mode'.*one of wal"),
        ("postgresql://u@h/db", {"min_size": 5, "max_size": 2}, "'min_size' .5. is larger"),
        ("mysql+pymysql://u@h/db", {"statement_cache_size": 3}, "unknown option"),
        # a charset no driver knows failed at connect, with a bare AttributeError
        ("mysql+pymysql://u@h/db?charset=nope", {}, "'charset'.*one of utf8mb4, utf8,"),
        ("mysql+aiomysql://u@h/db", {"charset": "utf-8"}, "'charset'.*one of utf8mb4"),
        ("mysql+asyncmy://u@h/db?charset=utf8mb3", {}, "'charset'.*one of utf8mb4"),
    ],
)
def test_options_are_validated(url: str, options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Database(url, **options)


def test_keyword_options_override_the_url() -> None:
    db = Database("postgresql://u@h/db?max_size=3", max_size=7, ssl="disable")
    assert db.url.options["max_size"] == "7"
    assert db.url.options["ssl"] == "disable"
    sqlite_db = Database("sqlite:///a.db", foreign_keys=False, statement_timeout=None)
    assert sqlite_db.url.options == {"foreign_keys": "false", "statement_timeout": "none"}


@pytest.mark.parametrize("scheme", ["postgresql+asyncpg", "mysql+asyncmy", "mysql+aiomysql"])
def test_asyncio_only_backends_refuse_trio_clearly(scheme: str) -> None:
    async def main() -> None:
        db = Database(f"{scheme}://user:pw@127.0.0.1:1/db")
        with pytest.raises(Unsupported) as caught:
            async with db:
                pass
        message = str(caught.value)
        assert f"the {scheme!r} backend runs on asyncio only" in message
        assert "postgresql+psycopg" in message
        assert "mysql+pymysql" in message
        assert "sqlite" in message

    anyio.run(main, backend="trio")


def test_not_connected_is_a_clear_error() -> None:
    async def main() -> None:
        db = Database("sqlite:///:memory:")
        with pytest.raises(OperationalError, match="not connected"):
            await db.fetch_all("select 1")

    anyio.run(main)


# Hypothesis also draws text from the string constants of the code under test, and a
# password such as "Operatio" is inside "OperationalError": each password ends with a
# marker made at run time, so finding it in a message can only mean a leak.
_MARK = secrets.token_hex(4)
PASSWORDS = (
    st.text(
        alphabet=string.ascii_letters + string.digits + "!$&()*+,;=-._~%@:/?#[] ",
        min_size=8,
        max_size=24,
    )
    .filter(lambda p: p.strip() == p and len(set(p)) > 3)
    .map(lambda p: p + _MARK)
)


@settings(max_examples=12, deadline=None)
@given(password=PASSWORDS, scheme=st.sampled_from(SERVER_SCHEMES))
def test_no_password_in_repr_log_or_error(password: str, scheme: str) -> None:
    """A failing connection (port 1 refuses) never shows the password anywhere."""
    url = BackendURL(
        dialect=scheme.partition("+")[0],
        driver=scheme.partition("+")[2],
        username="app",
        password=password,
        host="127.0.0.1",
        port=1,
        path="/db",
        options={"connect_timeout": "2", "min_size": "1"},
    )
    db = Database(url)
    texts = [repr(db), str(db.url), repr(db.url), repr(db._backend)]
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:

        async def main() -> None:
            with pytest.raises(DatabaseError) as caught:
                async with db:
                    pass
            err: BaseException | None = caught.value
            while err is not None:  # the whole chain, our error and the driver's
                texts.extend([str(err), repr(err)])
                err = err.__cause__ or err.__context__

        anyio.run(main)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    texts.extend(r.getMessage() for r in records)
    for text in texts:
        assert password not in text
    assert "***" in repr(db)
