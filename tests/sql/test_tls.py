"""TLS to the database servers, on every server driver, against PostgreSQL and MariaDB
speaking TLS with certificates of a CA made for them (``scripts/services.py``, whose CA
files are in ``ASYNCIFY_TEST_POSTGRES_CA`` and ``ASYNCIFY_TEST_MYSQL_CA``).

Before, the ``ssl`` options had never met a server that speaks TLS; PostgreSQL's
``verify-ca`` and ``verify-full`` could not be given the CA to verify with (``sslrootcert``),
and MySQL's ``ssl=true`` was the only mode: encryption without any certificate check, its
context made on the event loop for every connection (reading the system's CA store, for
nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scripts.tls_files import make_ca

from asyncify_kit import BackendURL
from asyncify_kit.exceptions import ConfigError, OperationalError
from asyncify_kit.sql import Database
from tests.conftest import service_setting
from tests.sql.conftest import SERVER_CASES, backend_url

pytestmark = pytest.mark.anyio

CA_VARS = {"postgresql": "ASYNCIFY_TEST_POSTGRES_CA", "mysql": "ASYNCIFY_TEST_MYSQL_CA"}
PG_CASES = [p for p in SERVER_CASES if str(p.values[0][0]).startswith("postgresql")]  # type: ignore[index]


@pytest.fixture(params=SERVER_CASES)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    value: tuple[str, str] = request.param
    return value


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> str:
    return case[1]


@pytest.fixture
def url(case: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path) -> BackendURL:
    return backend_url(case[0], request, tmp_path)


@pytest.fixture
def server_ca(url: BackendURL) -> str:
    """The CA file the server's certificate comes from (fails under CI when unset)."""
    var = CA_VARS[url.dialect]
    return service_setting(var, f"{var} is unset: start the services with `make services`")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA the servers' certificates do not come from."""
    ca_file, _, _ = make_ca(tmp_path_factory.mktemp("other-ca"), "other", "127.0.0.1")
    return str(ca_file)


async def _encrypted(url: BackendURL, **options: Any) -> bool:
    """Whether a connection made with *options* speaks TLS, as the server sees it."""
    async with Database(url, min_size=0, max_size=1, **options) as db:
        if url.dialect == "postgresql":
            return bool(
                await db.fetch_val("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            )
        row = await db.fetch_one("show session status like 'Ssl_cipher'")
        assert row is not None
        return bool(row[1])


async def test_tls_as_asked(url: BackendURL, server_ca: str) -> None:
    if url.dialect == "postgresql":
        assert not await _encrypted(url, ssl="disable")
        assert await _encrypted(url, ssl="prefer")
        assert await _encrypted(url, ssl="require")
        for mode in ("verify-ca", "verify-full"):
            assert await _encrypted(url, ssl=mode, sslrootcert=server_ca)
    else:
        assert not await _encrypted(url)
        assert await _encrypted(url, ssl="true")
        assert await _encrypted(url, ssl_ca=server_ca)  # (verified: certificate and host)


async def test_a_certificate_of_another_ca_is_refused(url: BackendURL, other_ca: str) -> None:
    options = (
        {"ssl": "verify-full", "sslrootcert": other_ca}
        if url.dialect == "postgresql"
        else {"ssl_ca": other_ca}
    )
    with pytest.raises(OperationalError, match="certificate verify failed"):
        await _encrypted(url, **options)


async def test_a_missing_ca_file_is_a_config_error(url: BackendURL, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    if url.dialect == "postgresql":
        with pytest.raises(ConfigError, match=r"invalid sslrootcert .*missing\.pem.*no such file"):
            await _encrypted(url, ssl="verify-full", sslrootcert=missing)
    else:
        with pytest.raises(ConfigError, match=r"invalid ssl_ca .*missing\.pem.*no such file"):
            await _encrypted(url, ssl_ca=missing)


@pytest.mark.parametrize("case", PG_CASES, indirect=True)
async def test_verifying_without_a_root_certificate_is_a_config_error(
    url: BackendURL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt
    for mode in ("verify-ca", "verify-full"):
        with pytest.raises(ConfigError, match=rf"ssl={mode} needs the CA certificates"):
            await _encrypted(url, ssl=mode)


@pytest.mark.parametrize("case", PG_CASES, indirect=True)
async def test_the_system_store_is_sslrootcert_system(url: BackendURL) -> None:
    """libpq 16's ``sslrootcert=system``, on asyncpg too: the servers' CA is not in it."""
    with pytest.raises(OperationalError, match="certificate verify failed"):
        await _encrypted(url, ssl="verify-full", sslrootcert="system")
