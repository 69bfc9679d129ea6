"""The named-parameter compiler: ``:name`` in, the driver's placeholder style out.

Every query is written with ``:name`` placeholders and a mapping of values. The compiler
scans the SQL once per (text, dialect, style), skipping everything that is not code:

* string literals (``'...'`` with ``''`` escapes; ``E'...'`` and MySQL strings with
  backslash escapes), quoted identifiers (``"..."``, MySQL/SQLite backticks, SQLite
  ``[...]``), comments (``-- ...``, where MySQL wants a space or control character after
  the dashes; ``# ...`` on MySQL; nested ``/* ... */`` on PostgreSQL),
  PostgreSQL dollar-quoted bodies (``$tag$ ... $tag$``) and ``::`` casts (a PostgreSQL
  ``$1`` or a SQLite ``?`` in the code is a `ProgrammingError`: only ``:name`` placeholders
  are bound);

and replaces each remaining ``:name`` by ``$1`` (``numeric``), ``%s`` (``format``) or ``?``
(``qmark``). In the ``format`` style every literal ``%`` is doubled, because those drivers
run ``query % args`` and turn ``%%`` back into ``%``: the server sees the text unchanged.

Values are never formatted into the SQL: `bind` returns them separately, in placeholder
order, and a missing or extra parameter is a `ProgrammingError` before anything is sent.

>>> q = compile_query("select * from t where a = :a and b = :b::int", "postgresql", "numeric")
>>> q.text, q.names
('select * from t where a = $1 and b = $2::int', ('a', 'b'))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from ..exceptions import ProgrammingError

__all__ = ["CompiledQuery", "ParamStyle", "compile_query", "split_query"]

ParamStyle = Literal["numeric", "format", "qmark"]

_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789")


@dataclass(frozen=True)
class CompiledQuery:
    """A query in one driver's placeholder style.

    *names* lists the parameter each positional placeholder takes, in order (a name used
    twice appears twice in the ``format``/``qmark`` styles, once in ``numeric``).
    """

    text: str
    names: tuple[str, ...]
    unique: frozenset[str]
    source: str

    def driver_args(self, args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...] | None]:
        """The text and arguments to hand a ``format``-style driver.

        A query without parameters goes as written with no arguments, so the driver does no
        ``%`` processing at all (and spends no time on it).
        """
        if self.names:
            return self.text, args
        return self.source, None

    def bind(self, params: Mapping[str, Any] | None) -> tuple[Any, ...]:
        """The values of *params* in placeholder order; `ProgrammingError` if any mismatch."""
        if params is None:
            params = {}
        elif not isinstance(params, Mapping):
            raise ProgrammingError(
                f"query parameters must be a mapping of names to values (for :name "
                f"placeholders), not {type(params).__name__}"
            )
        if len(params) != len(self.unique) or not self.unique.issuperset(params):
            self._mismatch(params)
        try:
            return tuple([params[name] for name in self.names])
        except KeyError:
            self._mismatch(params)
            raise  # pragma: no cover - _mismatch always raises

    def _mismatch(self, params: Mapping[str, Any]) -> None:
        given = set(params)
        missing = sorted(self.unique - given)
        extra = sorted(given - self.unique)
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f":{n}" for n in missing))
        if extra:
            parts.append(
                "unexpected " + ", ".join(repr(n) for n in extra) + " (not used in the query)"
            )
        used = ", ".join(f":{n}" for n in sorted(self.unique)) or "no parameters"
        raise ProgrammingError(
            f"query parameters do not match the query: {'; '.join(parts)}; the query uses {used}"
        )


def split_query(sql: str, dialect: str) -> list[str | tuple[str]]:
    """Split *sql* into code/literal text and ``(name,)`` placeholders.

    The text pieces, joined with the placeholders written back as ``:name``, give *sql*
    again exactly.
    """
    if not isinstance(sql, str):
        raise ProgrammingError(f"a query must be a string, not {type(sql).__name__}")
    mysql = dialect == "mysql"
    postgres = dialect == "postgresql"
    sqlite = dialect == "sqlite"
    out: list[str | tuple[str]] = []
    n = len(sql)
    start = 0  # beginning of the current text piece
    i = 0
    while i < n:
        c = sql[i]
        if c == "'" or (c == '"' and mysql):
            backslash = mysql or (
                postgres and i > 0 and sql[i - 1] in "eE" and not _ident_before(sql, i - 1)
            )
            i = _skip_quoted(sql, i, c, backslash)
        elif c == '"' or (c == "`" and (mysql or sqlite)):
            i = _skip_quoted(sql, i, c, False)
        elif c == "[" and sqlite:
            end = sql.find("]", i + 1)
            i = n if end == -1 else end + 1
        elif (c == "-" and _dash_comment(sql, i, mysql)) or (c == "#" and mysql):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i, nested=postgres)
        elif c == "$" and postgres:
            if i + 1 < n and sql[i + 1].isdigit() and not (i > 0 and sql[i - 1] in _IDENT_CHARS):
                # the numbering of ``:name`` placeholders would collide with it (asyncpg and
                # psycopg would bind ``$1`` to the first named value)
                _positional(sql[i : i + 2])
            i = _skip_dollar(sql, i)
        elif c == "?" and sqlite:
            # the ``?`` the compiler writes would share a number with it: ``?1`` took the
            # value of the first ``:name``
            _positional(sql[i : i + 2] if sql[i + 1 : i + 2].isdigit() else "?")
        elif c == ":":
            if i + 1 < n and sql[i + 1] == ":":
                i += 2
                while i < n and sql[i] == ":":
                    i += 1
            elif (
                i + 1 < n
                and sql[i + 1] in _IDENT_START
                and not (i > 0 and (sql[i - 1] in _IDENT_CHARS or sql[i - 1] == ":"))
            ):
                j = i + 2
                while j < n and sql[j] in _IDENT_CHARS:
                    j += 1
                if j < n and sql[j] == ":" and not sql.startswith("::", j):
                    # ``:a:b`` is not a placeholder (slice-like syntax); leave it alone
                    i = j
                    continue
                if start < i:
                    out.append(sql[start:i])
                out.append((sql[i + 1 : j],))
                i = start = j
            else:
                i += 1
        else:
            i += 1
    if start < n:
        out.append(sql[start:])
    return out


def _positional(placeholder: str) -> None:
    raise ProgrammingError(
        f"positional placeholders like {placeholder} are not supported; write :name "
        "placeholders and pass a mapping"
    )


def _dash_comment(sql: str, i: int, mysql: bool) -> bool:
    """Whether a ``--`` comment starts at *i*. On MySQL/MariaDB only when a space or a
    control character (or the end of the text) follows the dashes: ``5--1`` is five minus
    minus one there."""
    if not sql.startswith("--", i):
        return False
    j = i + 2
    return not mysql or j >= len(sql) or sql[j] <= " " or sql[j] == "\x7f"


def _ident_before(sql: str, i: int) -> bool:
    """Whether ``sql[i]`` continues an identifier (so ``e'..'`` is not an E-string)."""
    return i > 0 and (sql[i - 1] in _IDENT_CHARS or sql[i - 1] in '"`$')


def _skip_quoted(sql: str, i: int, quote: str, backslash: bool) -> int:
    n = len(sql)
    j = i + 1
    while j < n:
        c = sql[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _skip_block_comment(sql: str, i: int, *, nested: bool) -> int:
    n = len(sql)
    depth = 1
    j = i + 2
    while j < n:
        if nested and sql.startswith("/*", j):
            depth += 1
            j += 2
        elif sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return n


def _skip_dollar(sql: str, i: int) -> int:
    """Skip a ``$tag$ ... $tag$`` body starting at *i*; ``$1`` and ``a$b`` are code."""
    if i > 0 and sql[i - 1] in _IDENT_CHARS:
        return i + 1
    n = len(sql)
    j = i + 1
    while j < n and sql[j] in _IDENT_CHARS:
        j += 1
    if j >= n or sql[j] != "$":
        return i + 1
    tag = sql[i : j + 1]
    if len(tag) > 2 and tag[1].isdigit():
        return i + 1
    end = sql.find(tag, j + 1)
    return n if end == -1 else end + len(tag)


@lru_cache(maxsize=1024)
def compile_query(sql: str, dialect: str, style: ParamStyle) -> CompiledQuery:
    """Compile *sql* once for *dialect* and *style* (cached)."""
    pieces = split_query(sql, dialect)
    text: list[str] = []
    names: list[str] = []
    numbers: dict[str, int] = {}
    for piece in pieces:
        if isinstance(piece, str):
            text.append(piece.replace("%", "%%") if style == "format" else piece)
            continue
        name = piece[0]
        if style == "numeric":
            number = numbers.get(name)
            if number is None:
                number = numbers[name] = len(numbers) + 1
                names.append(name)
            text.append(f"${number}")
        else:
            names.append(name)
            text.append("%s" if style == "format" else "?")
    return CompiledQuery("".join(text), tuple(names), frozenset(names), sql)
