"""The named-parameter compiler: property tests over generated SQL, plus the edge cases."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncify_kit.sql import ProgrammingError
from asyncify_kit.sql._compiler import compile_query, split_query

DIALECTS = ("postgresql", "mysql", "sqlite")
NAMES = st.sampled_from(["a", "b", "id", "user_id", "x1", "_p", "Name"])
# text inside literals/comments: everything that could confuse a naive regex
NOISE = st.text(alphabet="ab :x$1%?-/*#\n\\'\"`[]", max_size=20)


def _code() -> st.SearchStrategy[str]:
    return st.sampled_from(
        ["select ", "1", " + ", "col", " = ", ", ", "(", ")", " from t where ", "a.b", " "]
    )


def _string_literal(dialect: str) -> st.SearchStrategy[str]:
    def build(body: str) -> str:
        if dialect == "mysql":
            body = body.replace("\\", "\\\\")
        return "'" + body.replace("'", "''") + "'"

    return NOISE.map(build)


def _quoted_identifier(dialect: str) -> st.SearchStrategy[str]:
    quotes = ['"'] if dialect == "postgresql" else (["`"] if dialect == "mysql" else ['"', "`"])

    def build(args: tuple[str, str]) -> str:
        quote, body = args
        return quote + body.replace(quote, quote * 2) + quote

    return st.tuples(st.sampled_from(quotes), NOISE).map(build)


def _comment(dialect: str) -> st.SearchStrategy[str]:
    line = NOISE.map(lambda body: "-- " + body.replace("\n", " ") + "\n")
    block = NOISE.map(lambda body: "/* " + body.replace("*/", "").replace("/*", "") + " */")
    options = [line, block]
    if dialect == "mysql":
        options.append(NOISE.map(lambda body: "# " + body.replace("\n", " ") + "\n"))
    if dialect == "postgresql":
        options.append(
            st.tuples(NOISE, NOISE).map(
                lambda p: "/* " + _no_block(p[0]) + " /* " + _no_block(p[1]) + " */ :x */"
            )
        )
    return st.one_of(*options)


def _no_block(text: str) -> str:
    return text.replace("*/", "").replace("/*", "").replace("*", "").replace("/", "")


def _dollar() -> st.SearchStrategy[str]:
    tags = st.sampled_from(["", "fn", "body_1"])
    return st.tuples(tags, NOISE).map(
        lambda p: f"${p[0]}$" + p[1].replace(f"${p[0]}$", "").replace("$", "") + f"${p[0]}$"
    )


Piece = tuple[str, str]  # ("text", sql) or ("param", name)


def _pieces(dialect: str) -> st.SearchStrategy[list[Piece]]:
    opaque = [_string_literal(dialect), _quoted_identifier(dialect), _comment(dialect)]
    if dialect == "postgresql":
        opaque.append(_dollar())
        opaque.append(st.sampled_from(["::int", "::text[]", "x::jsonb"]))
    if dialect == "sqlite":
        opaque.append(NOISE.map(lambda b: "[" + b.replace("]", "") + "]"))
    text = st.one_of(_code(), *opaque).map(lambda s: ("text", s))
    param = NAMES.map(lambda n: ("param", n))
    return st.lists(st.one_of(text, text, param), max_size=12)


def _render(pieces: list[Piece]) -> tuple[str, list[str | tuple[str]]]:
    """The SQL of *pieces* and what `split_query` must return for it."""
    sql: list[str] = []
    expected: list[str | tuple[str]] = []
    for kind, value in pieces:
        if kind == "param":
            # a placeholder never follows an identifier character
            if sql and sql[-1] and (sql[-1][-1].isalnum() or sql[-1][-1] in "_:$"):
                sql.append(" ")
                _add_text(expected, " ")
            sql.append(":" + value)
            expected.append((value,))
        else:
            previous = sql[-1][-1:] if sql else ""
            after_param = expected and isinstance(expected[-1], tuple)
            if (after_param and (value[:1].isalnum() or value[:1] in "_:$")) or (
                value[:1] == "$" and (previous.isalnum() or previous in "_$")
            ):
                value = " " + value  # keep the next text from extending a name
            sql.append(value)
            _add_text(expected, value)
    return "".join(sql), expected


def _add_text(expected: list[str | tuple[str]], text: str) -> None:
    if expected and isinstance(expected[-1], str):
        expected[-1] += text
    elif text:
        expected.append(text)


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, str, list[str | tuple[str]]]:
    dialect = draw(st.sampled_from(DIALECTS))
    sql, expected = _render(draw(_pieces(dialect)))
    return dialect, sql, expected


@settings(max_examples=120, deadline=None)
@given(queries())
def test_only_real_placeholders_are_found(query: tuple[str, str, list[str | tuple[str]]]) -> None:
    dialect, sql, expected = query
    assert split_query(sql, dialect) == expected


@settings(max_examples=100, deadline=None)
@given(queries())
def test_every_style_leaves_the_rest_of_the_text_unchanged(
    query: tuple[str, str, list[str | tuple[str]]],
) -> None:
    dialect, sql, expected = query
    names = [p[0] for p in expected if isinstance(p, tuple)]
    # format (%s): the drivers run ``text % args``, which must give the SQL back exactly
    fmt = compile_query(sql, dialect, "format")
    assert list(fmt.names) == names
    assert fmt.text % tuple(f":{n}" for n in fmt.names) == sql
    # qmark (?): replacing the placeholders in order gives the SQL back
    qmark = compile_query(sql, dialect, "qmark")
    assert qmark.names == fmt.names
    rebuilt = "".join(p if isinstance(p, str) else "?" for p in expected)
    assert qmark.text == rebuilt
    # numeric ($n): one number per distinct name, in order of first use
    numeric = compile_query(sql, dialect, "numeric")
    assert list(numeric.names) == list(dict.fromkeys(names))
    numbers = {name: i + 1 for i, name in enumerate(numeric.names)}
    assert numeric.text == "".join(
        p if isinstance(p, str) else f"${numbers[p[0]]}" for p in expected
    )


@settings(max_examples=60, deadline=None)
@given(queries(), st.data())
def test_bind_checks_names_and_never_touches_the_text(
    query: tuple[str, str, list[str | tuple[str]]], data: st.DataObject
) -> None:
    dialect, sql, _ = query
    compiled = compile_query(sql, dialect, "format")
    values: dict[str, Any] = {
        name: data.draw(st.one_of(st.integers(), st.text(max_size=5), st.none()))
        for name in compiled.unique
    }
    assert compiled.bind(values) == tuple(values[n] for n in compiled.names)
    assert compile_query(sql, dialect, "format").text == compiled.text
    if compiled.unique:
        missing = sorted(compiled.unique)[0]
        with pytest.raises(ProgrammingError, match=f"missing :{missing}"):
            compiled.bind({k: v for k, v in values.items() if k != missing})
    with pytest.raises(ProgrammingError, match="unexpected 'zz_extra'"):
        compiled.bind({**values, "zz_extra": 1})


@pytest.mark.parametrize(
    ("dialect", "sql", "names"),
    [
        ("postgresql", "select :a::int, :b", ["a", "b"]),
        ("postgresql", "select x::text, '::y', $$ :z $$, $f$ :z $f$ from t where id = :id", ["id"]),
        ("postgresql", "select E'it\\'s :no', 'a''b :no', \"col :no\" where :yes", ["yes"]),
        ("postgresql", "select a$b, a$1, '$1', $$ $1 $$, :c", ["c"]),
        ("postgresql", "/* a /* nested :no */ still comment :no */ select :ok", ["ok"]),
        ("postgresql", "select arr[1:2], x:y from t where a = :a", ["a"]),
        ("mysql", "select 'it\\'s :no', \"dq :no\", `bt :no` # :no\n where :ok", ["ok"]),
        ("mysql", "select '\\\\', :after", ["after"]),
        ("sqlite", 'select [br :no], `bt :no`, "dq :no" where :ok -- :no', ["ok"]),
        ("sqlite", "select 'unterminated :no", []),
        ("postgresql", "select :a, :a, :b", ["a", "a", "b"]),
    ],
)
def test_examples(dialect: str, sql: str, names: list[str]) -> None:
    assert list(compile_query(sql, dialect, "format").names) == names


def test_styles() -> None:
    sql = "select * from t where a = :a and b = :b and c = :a and d like '10%'"
    assert compile_query(sql, "postgresql", "numeric").text == (
        "select * from t where a = $1 and b = $2 and c = $1 and d like '10%'"
    )
    assert compile_query(sql, "mysql", "format").text == (
        "select * from t where a = %s and b = %s and c = %s and d like '10%%'"
    )
    assert compile_query(sql, "sqlite", "qmark").text == (
        "select * from t where a = ? and b = ? and c = ? and d like '10%'"
    )


def test_bind_errors_name_everything() -> None:
    q = compile_query("select :a, :b", "postgresql", "numeric")
    with pytest.raises(ProgrammingError) as caught:
        q.bind({"a": 1, "c": 3})
    message = str(caught.value)
    assert "missing :b" in message
    assert "unexpected 'c'" in message
    assert "the query uses :a, :b" in message
    with pytest.raises(ProgrammingError, match="mapping"):
        q.bind((1, 2))  # type: ignore[arg-type]
    assert compile_query("select 1", "sqlite", "qmark").bind(None) == ()
    with pytest.raises(ProgrammingError, match="must be a string"):
        compile_query(b"select 1", "sqlite", "qmark")


def test_driver_args_send_parameterless_queries_as_written() -> None:
    plain = compile_query("select '10%'", "mysql", "format")
    assert plain.driver_args(()) == ("select '10%'", None)
    with_params = compile_query("select '10%', :a", "mysql", "format")
    assert with_params.driver_args((1,)) == ("select '10%%', %s", (1,))


@pytest.mark.parametrize(
    ("dialect", "sql", "names"),
    [
        # MySQL/MariaDB: "--" starts a comment only before a space or a control character
        ("mysql", "select 5--:a", ["a"]),
        ("mysql", "select 5 --:a, :b", ["a", "b"]),
        ("mysql", "select 5---:a", ["a"]),
        ("mysql", "select 5-- :no\n, :ok", ["ok"]),
        ("mysql", "select 5--\t:no\n, :ok", ["ok"]),
        ("mysql", "select 5--\n:ok", ["ok"]),
        ("mysql", "select :ok--", ["ok"]),
        ("mysql", "select 5---- :no", []),
        # PostgreSQL and SQLite: any "--"
        ("postgresql", "select 5--:no\n, :ok", ["ok"]),
        ("sqlite", "select 5--:no\n, :ok", ["ok"]),
    ],
)
def test_double_dash_comments(dialect: str, sql: str, names: list[str]) -> None:
    assert list(compile_query(sql, dialect, "format").names) == names
    pieces = split_query(sql, dialect)  # which give the query back
    assert "".join(p if isinstance(p, str) else f":{p[0]}" for p in pieces) == sql
