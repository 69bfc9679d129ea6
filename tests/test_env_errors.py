"""Every error about a setting read from the environment starts with the variable's name.

docs/configuration.md promises it (``environment variable DATABASE_URL: ...``), and the
option checks kept it, but other checks of the same URLs did not: ``min_size`` larger than
``max_size``, S3's ``endpoint_url`` and ``ca_bundle``, PostgreSQL's ``sslrootcert`` (the
last three made as the storage or the pool opens). ``ASYNCIFY_HTTP_BACKEND`` was not named
either, its malformed values listed no accepted backend, and a proxy URL set there by mistake
was echoed with its password. The facades now name the variable in one place (`url_errors`),
for every check; a URL or a backend given in code keeps its messages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncify_kit.exceptions import ConfigError
from asyncify_kit.http import HttpClient
from asyncify_kit.sql import Database
from asyncify_kit.storage import Storage

SECRET = "hunter2"
HTTP_KNOWN = "known: aiohttp, httpx, requests"
SQL_VARS = ("DATABASE_URL", "ASYNCIFY_SQL_URL")
PG_DRIVERS = ("postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2")
S3_SCHEMES = ("s3", "s3+boto3")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # (asyncpg and aioboto3 run on asyncio only; each check is shared)


@pytest.fixture(autouse=True)
def _no_env_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variable a test sets: the services' environment may set the others."""
    for name in ("ASYNCIFY_HTTP_BACKEND", "ASYNCIFY_STORAGE_URL", *SQL_VARS):
        monkeypatch.delenv(name, raising=False)


def _message(info: pytest.ExceptionInfo[ConfigError]) -> str:
    message = str(info.value)
    assert SECRET not in message and SECRET not in repr(info.value)
    return message


def _from_env(info: pytest.ExceptionInfo[ConfigError], var: str) -> str:
    """The message of an error about *var*'s value: it starts with the variable's name
    (once), shows no secret, and the check's own error is chained."""
    message = _message(info)
    prefix = f"environment variable {var}: "
    assert message.startswith(prefix), message
    assert message.count("environment variable") == 1, message
    return message[len(prefix) :]


# -- ASYNCIFY_HTTP_BACKEND --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nope", "unknown http backend 'nope'"),
        ("httpx ", "invalid HTTP backend name 'httpx '"),  # (the stray space shown, to point at it)
    ],
)
def test_a_bad_http_backend_from_the_environment_names_the_variable_and_the_known_ones(
    value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCIFY_HTTP_BACKEND", value)
    with pytest.raises(ConfigError) as info:
        HttpClient()
    assert _from_env(info, "ASYNCIFY_HTTP_BACKEND") == f"{message}; {HTTP_KNOWN}"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (f"https://user:{SECRET}@proxy", "'https://user:***@proxy'"),
        (f"http://user:{SECRET}@proxy:3128/", "'http://user:***@proxy:3128/'"),
        (f"user:{SECRET}@proxy", "(not shown: it may hold a password)"),
        (f"{SECRET}!", "(not shown: it may hold a password)"),
    ],
)
def test_an_http_backend_holding_a_secret_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch, value: str, shown: str
) -> None:
    monkeypatch.setenv("ASYNCIFY_HTTP_BACKEND", value)
    with pytest.raises(ConfigError) as info:
        HttpClient()
    assert _from_env(info, "ASYNCIFY_HTTP_BACKEND") == (
        f"invalid HTTP backend name {shown}; {HTTP_KNOWN}"
    )
    monkeypatch.delenv("ASYNCIFY_HTTP_BACKEND")
    with pytest.raises(ConfigError) as info:
        HttpClient(backend=value)  # the same, given in code: no prefix
    assert _message(info) == f"invalid HTTP backend name {shown}; {HTTP_KNOWN}"


def test_an_http_backend_given_in_code_is_not_said_to_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASYNCIFY_HTTP_BACKEND", "httpx")  # (the argument wins)
    with pytest.raises(ConfigError) as info:
        HttpClient(backend="nope")
    assert _message(info) == f"unknown http backend 'nope'; {HTTP_KNOWN}"
    with pytest.raises(ConfigError) as info:
        HttpClient(backend="httpx ")
    assert _message(info) == f"invalid HTTP backend name 'httpx '; {HTTP_KNOWN}"
    with pytest.raises(ConfigError) as info:
        HttpClient(backend=7)  # type: ignore[arg-type]
    assert _message(info) == f"an HTTP backend name must be a string, not int; {HTTP_KNOWN}"
    assert HttpClient(backend="HTTPX").backend == "httpx"


# -- DATABASE_URL / ASYNCIFY_SQL_URL ----------------------------------------------------------


@pytest.mark.parametrize("var", SQL_VARS)
def test_min_size_above_max_size_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    url = f"postgresql://app:{SECRET}@127.0.0.1/shop?min_size=5&max_size=2"
    expected = (
        "option 'min_size' (5) is larger than 'max_size' (2) for the 'postgresql+asyncpg' "
        "backend in postgresql://app:***@127.0.0.1/shop?min_size=5&max_size=2"
    )
    monkeypatch.setenv(var, url)
    with pytest.raises(ConfigError) as info:
        Database()
    assert _from_env(info, var) == expected
    cause = info.value.__cause__
    assert isinstance(cause, ConfigError) and str(cause) == expected  # (chained)
    with pytest.raises(ConfigError) as info:
        Database(url)
    assert _message(info) == expected


@pytest.mark.parametrize("var", SQL_VARS)
def test_checks_that_named_the_variable_still_name_it_once(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    monkeypatch.setenv(var, f"postgresql://app:{SECRET}@127.0.0.1/shop?max_sise=5")
    with pytest.raises(ConfigError) as info:
        Database()
    assert _from_env(info, var).startswith("unknown option 'max_sise' ")
    monkeypatch.setenv(var, f"postgresql://app:{SECRET}@127.0.0.1/shop?ssl=disable&sslmode=require")
    with pytest.raises(ConfigError) as info:
        Database()
    assert _from_env(info, var).startswith("options 'ssl' (disable) and 'sslmode' (require) ")
    with pytest.raises(ConfigError) as info:
        Database(f"postgresql://app:{SECRET}@127.0.0.1/shop?ssl=disable&sslmode=require")
    assert _message(info).startswith("options 'ssl' (disable) and 'sslmode' (require) ")


def test_a_check_of_the_sqlite_backend_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"sqlite://app:{SECRET}@somehost/x.db"
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigError) as info:
        Database()._backend  # noqa: B018 - made here, or in the constructor once imported
    assert _from_env(info, "DATABASE_URL").startswith("a sqlite URL names a file, not a host")
    with pytest.raises(ConfigError) as info:
        Database(url)._backend  # noqa: B018
    assert _message(info).startswith("a sqlite URL names a file, not a host")


@pytest.mark.anyio
@pytest.mark.parametrize("driver", PG_DRIVERS)
@pytest.mark.parametrize("var", SQL_VARS)
async def test_a_missing_sslrootcert_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, driver: str, var: str
) -> None:
    # checked as the pool opens, before any connection: the port is never dialled
    missing = f"{tmp_path}/missing.pem"
    url = f"{driver}://app:{SECRET}@127.0.0.1:9/shop?sslrootcert={missing}"
    expected = f"invalid sslrootcert {missing!r}: no such file (a PEM file of CA certificates)"
    monkeypatch.setenv(var, url)
    db = Database()
    with pytest.raises(ConfigError) as info:
        await db.connect()
    assert _from_env(info, var) == expected
    cause = info.value.__cause__
    assert isinstance(cause, ConfigError) and str(cause) == expected
    assert not db.is_open
    with pytest.raises(ConfigError) as info:
        await Database(url).connect()
    assert _message(info) == expected


# -- ASYNCIFY_STORAGE_URL ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", S3_SCHEMES)
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "endpoint_url=notaurl",
            "invalid value 'notaurl' for option 'endpoint_url' of the {scheme!r} backend; "
            "accepted: an http:// or https:// URL",
        ),
        (
            f"endpoint_url=ftp://key:{SECRET}@127.0.0.1:9",
            "invalid value 'ftp://key:***@127.0.0.1:9' for option 'endpoint_url' of the "
            "{scheme!r} backend; accepted: an http:// or https:// URL",
        ),
        (
            "ca_bundle=/nonexistent/missing.pem",
            "invalid value '/nonexistent/missing.pem' for option 'ca_bundle' of the {scheme!r} "
            "backend: no such file (a PEM file of CA certificates)",
        ),
    ],
)
async def test_s3_client_options_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, scheme: str, query: str, expected: str
) -> None:
    # checked as the storage opens, before any request: no S3 service is needed
    url = f"{scheme}://bucket?{query}"
    expected = expected.format(scheme=scheme)
    monkeypatch.setenv("ASYNCIFY_STORAGE_URL", url)
    storage = Storage()  # (the construction checks the options' forms only)
    with pytest.raises(ConfigError) as info:
        async with storage:
            pass
    assert _from_env(info, "ASYNCIFY_STORAGE_URL") == expected
    cause = info.value.__cause__
    assert isinstance(cause, ConfigError) and str(cause) == expected
    assert not storage.is_open
    with pytest.raises(ConfigError) as info:
        async with Storage(url):
            pass
    assert _message(info) == expected


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", S3_SCHEMES)
async def test_an_s3_url_without_a_bucket_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    url = f"{scheme}://key:{SECRET}@/prefix"
    expected = f"{scheme}:///prefix names no bucket; use 's3://bucket/prefix'"
    monkeypatch.setenv("ASYNCIFY_STORAGE_URL", url)
    with pytest.raises(ConfigError) as info:
        async with Storage():
            pass
    assert _from_env(info, "ASYNCIFY_STORAGE_URL") == expected
    with pytest.raises(ConfigError) as info:
        async with Storage(url):
            pass
    assert _message(info) == expected


@pytest.mark.anyio
async def test_a_file_url_without_a_directory_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the file backend's own check, made as the storage opens: `Storage` names the variable
    # for every backend, not only S3
    monkeypatch.setenv("ASYNCIFY_STORAGE_URL", "file://")
    with pytest.raises(ConfigError) as info:
        async with Storage():
            pass
    expected = _from_env(info, "ASYNCIFY_STORAGE_URL")
    assert "names no directory" in expected
    with pytest.raises(ConfigError) as info:
        async with Storage("file://"):
            pass
    assert _message(info) == expected
