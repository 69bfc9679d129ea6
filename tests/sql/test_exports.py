"""The public names of `asyncify_kit.sql`: exactly these, all importable, none private."""

from __future__ import annotations

import asyncify_kit.sql as sql
from asyncify_kit import exceptions


def test_exported_members() -> None:
    assert len(sql.__all__) == len(set(sql.__all__))  # ruff (RUF022) keeps the order
    public = {name for name in vars(sql) if name[:1].isalpha()}  # pytest adds @py_ names
    assert public == set(sql.__all__)
    for name in sql.__all__:
        assert getattr(sql, name) is not None


def test_errors_are_the_shared_ones() -> None:
    for name in (
        "DatabaseError",
        "IntegrityError",
        "ProgrammingError",
        "OperationalError",
        "ConnectionLost",
        "QueryTimeout",
    ):
        assert getattr(sql, name) is getattr(exceptions, name)
