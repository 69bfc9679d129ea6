"""Type tests of the FastAPI integration's documented code: checked by mypy and pyright, never
run (same rules as ``api_types.py``).

docs/fastapi.md's ``create_tables`` used ``get_facades(app).database`` unnarrowed: a
``Database | None`` field, an error under mypy --strict and pyright.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from typing_extensions import assert_type

from asyncify_kit.fastapi import Facades, asyncify_lifespan, get_facades
from asyncify_kit.http import HttpClient
from asyncify_kit.sql import Database
from asyncify_kit.storage import Storage


@asynccontextmanager
async def create_tables(app: FastAPI) -> AsyncIterator[None]:
    """The documented startup hook (docs/fastapi.md, asyncify_lifespan's docstring)."""
    facades = get_facades(app)
    assert_type(facades, Facades)
    assert_type(facades.database, Database | None)
    assert_type(facades.storage, Storage | None)
    assert_type(facades.http, HttpClient | None)
    db = facades.database
    assert db is not None  # (None for a facade the lifespan was not asked for)
    await db.execute("create table if not exists notes (id integer primary key, text text)")
    yield


app = FastAPI(lifespan=asyncify_lifespan(database=True, storage=True, lifespan=create_tables))
