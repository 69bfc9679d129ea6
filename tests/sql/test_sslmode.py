"""PostgreSQL URLs take libpq's ``sslmode`` as well as ``ssl``, with the same values.

A URL copied from libpq (a platform's ``DATABASE_URL=postgres://...?sslmode=require``) was
refused: "unknown option 'sslmode' ...; did you mean 'ssl'?". ``ssl`` already took libpq's
``sslmode`` values, so ``sslmode`` is its other name; given both, they must agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asyncify_kit import BackendURL
from asyncify_kit.exceptions import ConfigError
from asyncify_kit.sql import Database
from tests.conftest import service_setting
from tests.sql.conftest import backend_url
from tests.sql.test_tls import PG_CASES, _encrypted

PG_SCHEMES = (
    "postgresql",
    "postgres",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
)
MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _ssl(db: Database) -> Any:
    """The TLS mode the backend of *db* connects with."""
    return db._backend.options["ssl"]


@pytest.mark.parametrize("scheme", PG_SCHEMES)
@pytest.mark.parametrize("mode", MODES)
def test_sslmode_is_the_ssl_option(scheme: str, mode: str) -> None:
    db = Database(f"{scheme}://app:pw@db/shop?sslmode={mode}")
    assert _ssl(db) == mode
    assert "sslmode" not in db._backend.options  # (folded into ssl: backends see one name)
    assert _ssl(Database(f"{scheme}://app:pw@db/shop", sslmode=mode)) == mode


def test_a_platform_database_url_with_sslmode_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASYNCIFY_SQL_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgres://app:hunter2@db:5432/shop?sslmode=require")
    assert _ssl(Database()) == "require"


def test_ssl_and_sslmode_may_both_be_given_if_they_agree() -> None:
    db = Database("postgresql://app:pw@db/shop?ssl=verify-full&sslmode=verify-full")
    assert _ssl(db) == "verify-full"


def test_ssl_and_sslmode_that_disagree_are_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError) as info:
        Database("postgresql://app:hunter2@db/shop?ssl=disable&sslmode=verify-full")
    message = str(info.value)
    assert message.startswith("options 'ssl' (disable) and 'sslmode' (verify-full) disagree ")
    assert "hunter2" not in message
    with pytest.raises(ConfigError, match=r"'ssl' \(require\) and 'sslmode' \(allow\) disagree"):
        Database("postgresql://app:pw@db/shop", ssl="require", sslmode="allow")
    monkeypatch.delenv("ASYNCIFY_SQL_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgres://app:pw@db/shop?sslmode=require&ssl=prefer")
    with pytest.raises(ConfigError, match=r"^environment variable DATABASE_URL: options 'ssl'"):
        Database()


def test_a_keyword_tls_mode_overrides_the_urls_under_either_name() -> None:
    # (`Database(os.environ["DATABASE_URL"], ssl="verify-full", ...)` where the platform's
    # URL says sslmode=require: the keyword wins, as any keyword option does)
    assert _ssl(Database("postgresql://app:pw@db/shop?sslmode=require", ssl="disable")) == (
        "disable"
    )
    assert _ssl(Database("postgresql://app:pw@db/shop?ssl=require", sslmode="disable")) == (
        "disable"
    )


def test_a_bad_sslmode_value_names_sslmode() -> None:
    with pytest.raises(ConfigError, match=r"'sslmode'.*one of disable, allow, prefer, require"):
        Database("postgresql://app:pw@db/shop?sslmode=on")


@pytest.mark.parametrize("scheme", ["mysql", "mysql+asyncmy", "mysql+aiomysql", "mysql+pymysql"])
def test_mysql_urls_still_refuse_sslmode(scheme: str) -> None:
    # (MySQL's ssl is true/false plus ssl_ca: libpq's modes do not map onto it one to one)
    with pytest.raises(ConfigError, match=r"unknown option 'sslmode'.*did you mean 'ssl'\?"):
        Database(f"{scheme}://app:pw@db/shop?sslmode=require")


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> str:
    return case[1]


@pytest.fixture(params=PG_CASES)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    value: tuple[str, str] = request.param
    return value


@pytest.mark.anyio
async def test_sslmode_reaches_the_server(
    case: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url: BackendURL = backend_url(case[0], request, tmp_path)
    ca = service_setting("ASYNCIFY_TEST_POSTGRES_CA", "start the services with `make services`")
    assert not await _encrypted(url.replace(options={"sslmode": "disable"}))
    assert await _encrypted(url.replace(options={"sslmode": "require"}))
    verified = url.replace(options={"sslmode": "verify-full", "sslrootcert": ca})
    assert await _encrypted(verified)
