"""The public namespace is exact, sorted, and imports nothing heavy (like httpx's test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncify_kit
from asyncify_kit import exceptions

SRC = Path(asyncify_kit.__file__).resolve().parent.parent


def test_all_is_sorted_and_unique() -> None:
    assert asyncify_kit.__all__ == sorted(set(asyncify_kit.__all__))


def test_every_name_in_all_exists() -> None:
    for name in asyncify_kit.__all__:
        assert hasattr(asyncify_kit, name), name


def test_all_is_exactly_the_public_names() -> None:
    """Every public name of the package is in __all__ and nothing else is (no submodules)."""
    public = {
        name
        for name, value in vars(asyncify_kit).items()
        if not name.startswith("_") and not isinstance(value, type(sys))
    }
    assert public | {"__version__"} == set(asyncify_kit.__all__)


def test_exported_objects_say_they_are_public() -> None:
    for name in asyncify_kit.__all__:
        if name == "__version__" or name == "CancelPolicy":
            continue
        value = getattr(asyncify_kit, name)
        module = value.__module__
        # defined in a private module (or exceptions.py), re-exported here
        assert module == "asyncify_kit.exceptions" or module.startswith("asyncify_kit._"), name


def test_core_errors_are_reexported() -> None:
    for name in ("AsyncifyError", "BackendNotInstalled", "ConfigError", "Unsupported"):
        assert getattr(asyncify_kit, name) is getattr(exceptions, name)


def test_exceptions_all_is_sorted_and_complete() -> None:
    assert exceptions.__all__ == sorted(exceptions.__all__)
    defined = {
        name
        for name, value in vars(exceptions).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == exceptions.__name__
    }
    assert defined == set(exceptions.__all__)


def test_version_is_a_string() -> None:
    assert isinstance(asyncify_kit.__version__, str)
    assert asyncify_kit.__version__.count(".") >= 2


_HEAVY = [
    "asyncpg",
    "asyncmy",
    "aiomysql",
    "pymysql",
    "psycopg",
    "psycopg2",
    "psycopg_pool",
    "httpx",
    "aiohttp",
    "requests",
    "aiofiles",
    "boto3",
    "botocore",
    "aioboto3",
    "sqlite3",
    "trio",
    "fastapi",
    "starlette",
    "uvicorn",
    "asyncify_kit.sql",
    "asyncify_kit.storage",
    "asyncify_kit.http",
    "asyncify_kit.aws",
    "asyncify_kit.detect",
    "asyncify_kit.scan",
    "asyncify_kit.cli",
]


def test_import_loads_no_facade_and_no_driver() -> None:
    code = "import sys, json, asyncify_kit; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    loaded = set(json.loads(out.stdout))
    assert "asyncify_kit" in loaded
    heavy = sorted(name for name in _HEAVY if name in loaded)
    assert heavy == []
