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

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from scripts.tls_files import make_ca

from asyncify_kit import BackendURL, asyncify
from asyncify_kit.exceptions import ConfigError, OperationalError
from asyncify_kit.sql import Database
from tests.conftest import service_setting
from tests.http.proxy_server import ThreadedServer, relay
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


class _HoldingRelay(ThreadedServer):
    """A TCP relay to the database server that can hold back what the server sends
    (`hold`): a server slow to answer a client's TLS shutdown."""

    def __init__(self, origin: tuple[str, int]) -> None:
        self._origin = origin
        self.hold = threading.Event()
        self.client_ports: list[int] = []
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        self.client_ports.append(conn.getpeername()[1])
        with conn, socket.create_connection(self._origin) as origin:
            back = threading.Thread(target=self._back, args=(origin, conn), daemon=True)
            back.start()
            relay(conn, origin)
            back.join(10)

    def _back(self, origin: socket.socket, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := origin.recv(65536):
                if self.hold.is_set():
                    return  # (the server's answer is never sent on)
                conn.sendall(chunk)


@asyncify
def _open_ports() -> set[int]:
    """The local ports of this process's TCP sockets."""
    import psutil  # type: ignore[import-untyped]  # no stubs installed

    return {c.laddr.port for c in psutil.Process().net_connections(kind="tcp") if c.laddr}


@pytest.fixture
def holding_relay(url: BackendURL) -> Iterator[_HoldingRelay]:
    made = _HoldingRelay((url.host or "127.0.0.1", url.port or 0))
    yield made
    made.close()


async def test_disconnect_closes_a_tls_connection_whose_server_does_not_answer(
    url: BackendURL, holding_relay: _HoldingRelay
) -> None:
    """`disconnect()` returns with the pool's TLS sockets closed, even when the server does
    not answer the TLS shutdown. (aiomysql only started closing its TLS transport, whose
    shutdown waits for the server's answer: a test whose loop ended before it came left the
    socket open, for the garbage collector to find in whatever test ran next.) The async
    drivers wait for that answer up to 2 s, not until the pool's 5 s bound on closing runs out
    (asyncpg and asyncmy did)."""
    tls = {"ssl": "require"} if url.dialect == "postgresql" else {"ssl": "true"}
    db = Database(url.replace(port=holding_relay.port), min_size=0, max_size=1, **tls)
    await db.connect()
    try:
        assert await db.fetch_val("select 1") == 1
        (port,) = holding_relay.client_ports
        assert port in await _open_ports()
        holding_relay.hold.set()
    finally:
        started = anyio.current_time()
        with anyio.fail_after(15):
            await db.disconnect()
        took = anyio.current_time() - started
    assert port not in await _open_ports()
    assert took < 4.5
