"""The scheme -> backend registry: defaults, unknown schemes, missing packages, entry points."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import asyncify_kit
from asyncify_kit import BackendNotInstalled, BackendURL, ConfigError
from asyncify_kit import _registry as registry
from asyncify_kit._backends_table import BUILTIN_BACKENDS
from asyncify_kit._registry import BackendSpec, backends, load_backend, lookup, register

SRC = Path(asyncify_kit.__file__).resolve().parent.parent


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    """Let a test register backends; the table is put back as it was afterwards."""
    registry._ensure_builtins()
    table, defaults, loaded = (
        dict(registry._table),
        dict(registry._defaults),
        dict(registry._loaded),
    )
    try:
        yield
    finally:
        registry._table.clear()
        registry._table.update(table)
        registry._defaults.clear()
        registry._defaults.update(defaults)
        registry._loaded.clear()
        registry._loaded.update(loaded)


def url(text: str) -> BackendURL:
    return BackendURL.parse(text)


@pytest.mark.parametrize(
    ("family", "text", "scheme"),
    [
        ("sql", "postgresql://h/db", "postgresql+asyncpg"),
        ("sql", "postgres://h/db", "postgresql+asyncpg"),
        ("sql", "mysql://h/db", "mysql+asyncmy"),
        ("sql", "mariadb://h/db", "mysql+asyncmy"),
        ("sql", "sqlite:///./app.db", "sqlite"),
        ("sql", "postgresql+psycopg://h/db", "postgresql+psycopg"),
        ("sql", "postgresql+psycopg2://h/db", "postgresql+psycopg2"),
        ("sql", "mysql+pymysql://h/db", "mysql+pymysql"),
        ("storage", "file://./data", "file"),
        ("storage", "s3://bucket/prefix", "s3"),
        ("storage", "s3+boto3://bucket/prefix", "s3+boto3"),
    ],
)
def test_lookup_picks_the_backend(family: str, text: str, scheme: str) -> None:
    assert lookup(family, url(text)).scheme == scheme


@pytest.mark.parametrize(
    ("text", "scheme"),
    [
        ("mariadb+pymysql://h/db", "mysql+pymysql"),
        ("mariadb+aiomysql://h/db", "mysql+aiomysql"),
        ("postgres+psycopg://h/db", "postgresql+psycopg"),
    ],
)
def test_dialect_alias_keeps_the_named_driver(text: str, scheme: str) -> None:
    assert lookup("sql", url(text)).scheme == scheme


def test_builtin_table_is_consistent() -> None:
    seen: set[tuple[str, str]] = set()
    for spec, default_for in BUILTIN_BACKENDS:
        key = (spec.family, spec.scheme)
        assert key not in seen, f"{key} registered twice"
        seen.add(key)
        module, colon, attr = spec.target.partition(":")
        assert colon and module.startswith(f"asyncify_kit.{spec.family}.") and attr
        assert spec.scheme == spec.scheme.lower()
        if spec.requires:
            assert spec.extra, f"{spec.scheme} needs a pip extra for its error message"
        for dialect in default_for:
            assert lookup(spec.family, url(f"{dialect}://h/x")) == spec


def test_backends_lists_every_builtin_sorted() -> None:
    listed = [(s.family, s.scheme) for s in backends()]
    assert listed == sorted(listed)
    builtin = {(s.family, s.scheme) for s, _ in BUILTIN_BACKENDS}
    assert builtin <= set(listed)
    assert {s.scheme for s in backends("sql")} >= {"postgresql+asyncpg", "sqlite"}
    assert all(s.family == "http" for s in backends("http"))


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        lookup("sql", url("postgresql+nosuchdriver://u:hunter2@h/db"))
    message = str(info.value)
    assert "'postgresql+nosuchdriver'" in message
    for spec, default_for in BUILTIN_BACKENDS:
        if spec.family == "sql":
            assert spec.scheme in message
            for dialect in default_for:
                assert dialect in message
    assert "s3" not in message  # only the family's schemes
    assert "hunter2" not in message


def test_unknown_dialect_is_never_a_silent_fallback() -> None:
    with pytest.raises(ConfigError, match=r"unknown storage backend 'ftp'.*known: .*file"):
        lookup("storage", url("ftp://h/x"))


def test_unknown_backend_named_alone_shows_no_made_up_url() -> None:
    from asyncify_kit.http import HttpClient

    with pytest.raises(ConfigError) as info:
        HttpClient(backend="nope")
    assert str(info.value) == "unknown http backend 'nope'; known: aiohttp, httpx, requests"
    with pytest.raises(ConfigError, match=r"unknown storage backend 'ftp' in ftp://h/x; known"):
        lookup("storage", url("ftp://h/x"))  # a real URL is still shown


def test_unknown_scheme_of_an_env_url_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncify_kit._config import resolve_url

    monkeypatch.setenv("ASYNCIFY_STORAGE_URL", "ftp://h/x")
    with pytest.raises(ConfigError) as info:
        lookup("storage", resolve_url(None, ("ASYNCIFY_STORAGE_URL",), "memory://"))
    assert str(info.value).startswith(
        "environment variable ASYNCIFY_STORAGE_URL: unknown storage backend 'ftp' in ftp://h/x"
    )


def test_unknown_family_lists_the_families() -> None:
    with pytest.raises(ConfigError, match=r"unknown backend family 'sqll'; known: .*sql"):
        lookup("sqll", url("sqlite://"))


@pytest.mark.usefixtures("scratch_registry")
def test_missing_package_names_the_pip_line() -> None:
    register(
        BackendSpec(
            "sql",
            "postgresql+ghost",
            "asyncify_kit_ghost_backend:GhostBackend",
            requires=("asyncify_kit_ghost_driver",),
            extra="postgres",
        )
    )
    with pytest.raises(BackendNotInstalled) as info:
        load_backend("sql", url("postgresql+ghost://u:hunter2@h/db"))
    err = info.value
    assert err.pip_command == "pip install 'asyncify-kit[postgres]'"
    assert "pip install 'asyncify-kit[postgres]'" in str(err)
    assert "'asyncify_kit_ghost_driver'" in str(err)
    assert err.backend == "postgresql+ghost"
    assert err.package == "asyncify_kit_ghost_driver"
    assert err.extra == "postgres"
    assert isinstance(err, ImportError)
    assert "hunter2" not in str(err)


@pytest.mark.usefixtures("scratch_registry")
def test_missing_dotted_package_is_not_a_crash() -> None:
    register(
        BackendSpec(
            "storage",
            "ghost",
            "asyncify_kit_ghost:Backend",
            requires=("asyncify_kit_ghost_pkg.sub",),
            extra="s3",
        )
    )
    with pytest.raises(BackendNotInstalled, match=re.escape("pip install 'asyncify-kit[s3]'")):
        load_backend("storage", url("ghost://x"))


@pytest.mark.usefixtures("scratch_registry")
def test_load_backend_imports_lazily_and_caches() -> None:
    register(
        BackendSpec("storage", "ordered", "collections:OrderedDict", requires=("collections",)),
        default_for="ordered-alias",
    )
    spec, cls = load_backend("storage", url("ordered://x"))
    assert spec.scheme == "ordered"
    from collections import OrderedDict

    assert cls is OrderedDict
    assert load_backend("storage", url("ordered-alias://x"))[1] is cls
    assert registry._loaded[("storage", "ordered")] is cls


@pytest.mark.usefixtures("scratch_registry")
def test_target_without_the_class_is_a_config_error() -> None:
    register(BackendSpec("storage", "typo", "collections:OrderdDict"))
    with pytest.raises(ConfigError, match=r"'collections' has no attribute 'OrderdDict'"):
        load_backend("storage", url("typo://x"))


def test_importing_the_registry_imports_no_driver() -> None:
    code = (
        "import sys, json\n"
        "from asyncify_kit._registry import lookup, backends\n"
        "from asyncify_kit._config import BackendURL\n"
        "list(backends()); lookup('sql', BackendURL.parse('postgresql://h/db'))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    modules = set(json.loads(out.stdout))
    for driver in ("asyncpg", "asyncmy", "psycopg", "aioboto3", "boto3", "httpx", "aiohttp"):
        assert driver not in modules


# -- entry points ---------------------------------------------------------------------------

_PLUGIN = '''
class ToyBackend:
    """A third-party SQL backend installed as a real distribution."""

    def __init__(self, url):
        self.url = url
'''

_ENTRY_POINTS = """
[asyncify_kit.backends]
sql:postgresql+toy = toy_asyncify_plugin:ToyBackend
storage:toyfs = toy_asyncify_plugin:ToyBackend
no-colon-here = toy_asyncify_plugin:ToyBackend
sql:postgresql+asyncpg = toy_asyncify_plugin:ToyBackend
"""

_PROBE = """
import json, logging
from asyncify_kit._config import BackendURL
from asyncify_kit._registry import backends, load_backend, lookup

logging.basicConfig(level=logging.WARNING, format="LOG %(message)s")
spec, cls = load_backend("sql", BackendURL.parse("postgresql+toy://u:pw@h/db"))
print(json.dumps({
    "scheme": spec.scheme,
    "cls": f"{cls.__module__}.{cls.__qualname__}",
    "storage": lookup("storage", BackendURL.parse("toyfs://x")).target,
    "builtin_kept": lookup("sql", BackendURL.parse("postgresql+asyncpg://h/db")).target,
    "listed": "postgresql+toy" in [s.scheme for s in backends("sql")],
}))
"""


def test_entry_point_group_registers_third_party_backends(tmp_path: Path) -> None:
    (tmp_path / "toy_asyncify_plugin.py").write_text(_PLUGIN)
    dist = tmp_path / "toy_asyncify_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toy-asyncify-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(textwrap.dedent(_ENTRY_POINTS))
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(SRC)])},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result == {
        "scheme": "postgresql+toy",
        "cls": "toy_asyncify_plugin.ToyBackend",
        "storage": "toy_asyncify_plugin:ToyBackend",
        # a plugin cannot silently take over a built-in scheme
        "builtin_kept": "asyncify_kit.sql._backends._asyncpg:AsyncpgBackend",
        "listed": True,
    }
    # the malformed entry point is reported, not fatal
    assert "no-colon-here" in out.stderr
    assert "family:scheme" in out.stderr


_SQL_PLUGIN = '''
from asyncify_kit.sql._backends._sqlite import SqliteBackend


class LiteBackend(SqliteBackend):
    """A third-party SQL backend: SQLite under a scheme of its own, its own options fixed."""

    def __init__(self, url, options):
        own = {"busy_timeout": 5.0, "journal_mode": "wal", "foreign_keys": True,
               "mode": "rwc", "cache": "private"}
        super().__init__(url, {**own, **options})
'''

_SQL_PLUGIN_PROBE = """
import asyncio, json, sys
from asyncify_kit import ConfigError
from asyncify_kit.sql import Database

async def main():
    out = {}
    db = Database(sys.argv[1] + "?max_size=2&acquire_timeout=5")
    out["closed"] = db.pool_stats().max_size
    async with db:
        out["value"] = await db.fetch_val("select 41 + 1")
        out["open"] = db.pool_stats().max_size
    out["keyword"] = Database(sys.argv[1], min_size=0, max_size=3).pool_stats().max_size
    out["default"] = Database(sys.argv[1]).pool_stats().max_size
    try:
        Database(sys.argv[1] + "?busy_timeout=1")
    except ConfigError as exc:
        out["unknown"] = str(exc)
    print(json.dumps(out))

asyncio.run(main())
"""


def test_a_third_party_sql_backend_takes_the_common_pool_options(tmp_path: Path) -> None:
    """A backend from the entry-point group took no option at all: ``?max_size=2`` was
    "unknown option ... known options: none", and without options its connect failed with a
    KeyError from `Backend.pool_limits`."""
    (tmp_path / "lite_asyncify_plugin.py").write_text(_SQL_PLUGIN)
    dist = tmp_path / "lite_asyncify_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lite-asyncify-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[asyncify_kit.backends]\nsql:sqlite+lite = lite_asyncify_plugin:LiteBackend\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", _SQL_PLUGIN_PROBE, f"sqlite+lite:///{tmp_path / 'lite.db'}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(SRC)])},
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result.pop("unknown").startswith(
        "unknown option 'busy_timeout' for the 'sqlite+lite' backend in sqlite+lite://"
    )
    assert result == {"closed": 2, "value": 42, "open": 2, "keyword": 3, "default": 10}


def test_pool_limits_fill_in_what_the_options_lack() -> None:
    from asyncify_kit.sql._backends.base import Backend

    class Bare(Backend):
        dialect = "postgresql"
        style = "format"

        async def connect(self) -> Any:
            raise NotImplementedError

        def translate(self, exc: BaseException) -> None:
            return None

    def limits(options: dict[str, Any]) -> tuple[int, int]:
        return Bare(url("postgresql+bare://h/db"), options).pool_limits()

    assert limits({}) == (1, 10)
    assert limits({"max_size": 4}) == (1, 4)
    assert limits({"min_size": 0}) == (0, 10)
    assert limits({"min_size": 12}) == (10, 10)
    assert limits({"min_size": 2, "max_size": 3}) == (2, 3)
