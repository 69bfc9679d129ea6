"""BackendURL parsing and rendering, option validation, environment precedence, redaction."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncify_kit import BackendURL, ConfigError
from asyncify_kit._config import (
    Option,
    bool_option,
    choice_option,
    env_setting,
    float_option,
    int_option,
    is_secret_option,
    resolve_url,
    str_option,
    validate_options,
)

# -- strategies -----------------------------------------------------------------------------

_token = st.from_regex(r"[a-z][a-z0-9_.-]{0,11}", fullmatch=True)
dialects = _token
drivers = st.none() | _token
# any printable text except surrogates; render() must percent-encode whatever needs it
_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=16)
usernames = st.none() | _text
hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True)
ipv6_hosts = st.sampled_from(["[::1]", "[fe80::1ff:fe23:4567:890a]", "[2001:db8::7]"])
ports = st.none() | st.integers(min_value=1, max_value=65535)
paths = st.just("") | st.lists(_text, max_size=4).map(lambda parts: "/" + "/".join(parts))
option_maps = st.dictionaries(_text, st.text(max_size=12), max_size=4)

# A password that cannot occur by chance in any other part of a URL or message: the
# markers are upper case, which no scheme, host or message text here contains.
_MARK_HEAD, _MARK_TAIL = "SEKRETHEAD", "SEKRETTAIL"
passwords = st.text(st.characters(exclude_categories=["Cs"]), max_size=12).map(
    lambda middle: f"{_MARK_HEAD}{middle}{_MARK_TAIL}"
)


def assert_no_password(text: str, password: str) -> None:
    """Neither the password, its encodings, nor a marker of it appears in *text*."""
    assert _MARK_HEAD not in text
    assert _MARK_TAIL not in text
    for form in {password, quote(password, safe=""), quote(password)}:
        assert form not in text


@st.composite
def backend_urls(draw: st.DrawFn) -> BackendURL:
    password = draw(st.none() | passwords)
    return BackendURL(
        dialect=draw(dialects),
        driver=draw(drivers),
        username=draw(usernames),
        password=password,
        host=draw(hosts | ipv6_hosts | st.just("")),
        port=draw(ports),
        path=draw(paths),
        options=draw(option_maps),
    )


# -- parsing --------------------------------------------------------------------------------


def test_parse_every_field() -> None:
    url = BackendURL.parse("postgresql+asyncpg://app:s%40cret@db.local:5433/shop?max_size=5")
    assert url.dialect == "postgresql"
    assert url.driver == "asyncpg"
    assert url.scheme == "postgresql+asyncpg"
    assert url.username == "app"
    assert url.password == "s@cret"
    assert url.host == "db.local"
    assert url.port == 5433
    assert url.path == "/shop"
    assert url.database == "shop"
    assert dict(url.options) == {"max_size": "5"}


@pytest.mark.parametrize(
    ("text", "location", "database"),
    [
        ("sqlite:///./asyncify.db", "/./asyncify.db", "./asyncify.db"),
        ("sqlite:///:memory:", "/:memory:", ":memory:"),
        ("file://./data", "./data", "data"),
        ("s3://bucket/some/prefix", "bucket/some/prefix", "some/prefix"),
        ("memory://", "", ""),
    ],
)
def test_parse_file_like_urls(text: str, location: str, database: str) -> None:
    url = BackendURL.parse(text)
    assert url.location == location
    assert url.database == database
    assert BackendURL.parse(url.render(hide_password=False)) == url


def test_parse_ipv6_host_and_scheme_case() -> None:
    url = BackendURL.parse("PostgreSQL+AsyncPG://u@[::1]:5432/db")
    assert url.scheme == "postgresql+asyncpg"
    assert url.host == "[::1]"
    assert url.port == 5432
    assert url.username == "u"
    assert url.password is None


@pytest.mark.parametrize(
    ("text", "host", "hostname"),
    [
        ("postgresql://u:p@[::1]:5432/db", "[::1]", "::1"),
        ("mysql://[2001:db8::7]/db", "[2001:db8::7]", "2001:db8::7"),
        ("postgresql://[fe80::1%25eth0]:5432/db", "[fe80::1%eth0]", "fe80::1%eth0"),
        ("postgresql://db.internal:5432/db", "db.internal", "db.internal"),
        ("sqlite:///./app.db", "", ""),
    ],
)
def test_hostname_is_the_host_without_ipv6_brackets(text: str, host: str, hostname: str) -> None:
    """Drivers and sockets take ``::1``; given ``[::1]`` they look it up as a name, and fail."""
    url = BackendURL.parse(text)
    assert (url.host, url.hostname) == (host, hostname)
    assert BackendURL.parse(url.render(hide_password=False)) == url


def test_parse_accepts_a_backend_url() -> None:
    url = BackendURL.parse("sqlite:///x.db")
    assert BackendURL.parse(url) is url


def test_empty_username_is_none() -> None:
    url = BackendURL.parse("redis://:pw@host")
    assert url.username is None
    assert url.password == "pw"


def test_password_with_raw_reserved_characters_stays_a_password() -> None:
    # Generated passwords often hold '/', '?', '#' or '@' that users forget to encode; the
    # URL must still read as user + password, never as host 'app' and port 'pa...'.
    url = BackendURL.parse("postgresql://app:pa/s?s#w@rd@db:5432/shop")
    assert url.username == "app"
    assert url.password == "pa/s?s#w@rd"
    assert url.host == "db"
    assert url.port == 5432
    assert url.database == "shop"
    assert "pa/s" not in str(url)


@pytest.mark.parametrize(
    ("text", "username", "password", "port"),
    [
        ("postgresql://app:p@ss?word@db/shop", "app", "p@ss?word", None),
        ("postgresql://app:p@ss/w?rd@db/shop", "app", "p@ss/w?rd", None),
        ("postgresql://app:p@ss?wo#rd@db:5433/shop", "app", "p@ss?wo#rd", 5433),
        ("postgresql://a[p:s3/cret@db/shop", "a[p", "s3/cret", None),
        ("postgresql://app:s3cr]t/x@db/shop", "app", "s3cr]t/x", None),
        ("postgresql://app:[s3]@db:5433/shop", "app", "[s3]", 5433),
    ],
)
def test_raw_at_then_query_or_bracket_stays_in_the_password(
    text: str, username: str, password: str, port: int | None
) -> None:
    url = BackendURL.parse(text)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        username,
        password,
        "db",
        port,
        "shop",
    )
    netloc = "db" if port is None else f"db:{port}"
    assert str(url) == f"postgresql://{quote(username, safe='')}:***@{netloc}/shop"
    assert repr(url) == f"BackendURL({str(url)!r})"


def test_an_encoded_at_in_the_query_after_a_path_stays_an_option() -> None:
    url = BackendURL.parse("postgresql://app:pw@db/shop?application_name=me%40laptop")
    assert (url.password, url.host, url.database) == ("pw", "db", "shop")
    assert dict(url.options) == {"application_name": "me@laptop"}
    assert BackendURL.parse(url.render(hide_password=False)) == url


@pytest.mark.parametrize(
    "text",
    [
        # a password holding '@', then '/', then '?' or '#', in a URL without a path ...
        "postgresql://app:p@ss/w?rd@db",
        "postgresql://app:p@ss/w#rd@db",
        "postgresql://app:p@ss/w?rd@db:5432?max_size=3",
        "mysql://u:a@b/c#d@host",
        # ... reads exactly like a raw '@' in an option value after a path
        "postgresql://app:pw@db/shop?application_name=me@laptop",
        "postgresql://me@corp.com:p/w@db",
    ],
)
def test_an_at_that_could_end_a_password_or_sit_in_an_option_is_an_error(text: str) -> None:
    # Reading 'app:p@ss/w?rd@db' as password 'p', host 'ss', path '/w' and option 'rd@db'
    # showed 'ss/w?rd' in str(); no reading is safe, so the URL is refused.
    with pytest.raises(ConfigError, match="percent-encode '@' as %40") as info:
        BackendURL.parse(text)
    message = str(info.value)
    assert "***@" in message
    for piece in ("ss/w", "w?rd", "w#rd", "a@b", "c#d", "me@", "shop", "p/w"):
        assert piece not in message


_PW_SPECIALS = st.sampled_from(["@", "/", "?", "#", ":"])
# every piece of the password between its reserved characters holds "ZQ", which nothing
# else in these URLs (lower case) or in the messages holds
_PW_TOKENS = st.integers(min_value=0, max_value=99).map(lambda n: f"ZQ{n}")
raw_passwords = (
    st.lists(_PW_SPECIALS | _PW_TOKENS, min_size=1, max_size=8)
    .map("".join)
    .filter(lambda pw: "ZQ" in pw)
)
_lower = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)


@given(
    scheme=st.sampled_from(["postgresql", "mysql+asyncmy", "sqlite", "s3"]),
    user=_lower,
    password=raw_passwords,
    host=_lower,
    port=st.none() | st.integers(min_value=1, max_value=65535),
    segments=st.lists(_lower, max_size=3),
    options=st.dictionaries(_lower, _lower, max_size=3),
)
@settings(max_examples=500)
def test_raw_password_never_shown_whatever_the_url(
    scheme: str,
    user: str,
    password: str,
    host: str,
    port: int | None,
    segments: list[str],
    options: dict[str, str],
) -> None:
    path = "".join(f"/{segment}" for segment in segments)
    netloc = host if port is None else f"{host}:{port}"
    query = "?" + "&".join(f"{k}={v}" for k, v in options.items()) if options else ""
    text = f"{scheme}://{user}:{password}@{netloc}{path}{query}"
    # ambiguous: '@', then '/', then '?' or '#' in the password, and no path to anchor it
    ambiguous = not path and re.search(r"@.*/.*[?#]", password) is not None
    try:
        url = BackendURL.parse(text)
    except ConfigError as exc:
        assert ambiguous, text
        assert "ZQ" not in str(exc)
        assert "ZQ" not in repr(exc)
        assert "percent-encode '@' as %40" in str(exc)
    else:
        assert not ambiguous, text
        for shown in (str(url), repr(url), url.render(), str([url])):
            assert "ZQ" not in shown
        assert (url.username, url.password, url.host, url.port, url.path) == (
            user,
            password,
            host,
            port,
            path,
        )
        assert dict(url.options) == options
        assert BackendURL.parse(url.render(hide_password=False)) == url
    # broken the ways users break URLs: still never shown
    for broken in (
        f"{scheme}://{user}:{password}@{host}:x9{path}{query}",
        f"{scheme}://{user}:{password}@{netloc}{path}{query}#frag",
        f"{scheme}://{user}:{password}@[{host}{path}{query}",
        f"bad scheme://{user}:{password}@{netloc}{path}{query}",
        f"{scheme}://{user}:{password}@{netloc}{path}?a=1&a=2",
    ):
        with pytest.raises(ConfigError) as info:
            BackendURL.parse(broken)
        assert "ZQ" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://app:SEKRETHEAD@x?ySEKRETTAIL@db:bad/shop",
        "postgresql://a[p:SEKRETHEAD/xSEKRETTAIL@db:bad/shop",
        "postgresql://app:SEKRETHEAD@x/y?zSEKRETTAIL@db/shop#frag",
        "postgresql://app:SEKRETHEAD@x/y:1?zSEKRETTAIL@db/shop?a=1&a=2",
        "postgresql://app:SEKRETHEAD@x:1/y?z=1&z=2SEKRETTAIL@db",
        "postgresql://app:SEKRETHEAD@xSEKRETTAIL@[::1/shop",
        "post gres://app:SEKRETHEAD@x?ySEKRETTAIL@db/shop",
        "postgresql://SEKRETHEAD@x:99999/ySEKRETTAIL@db/shop",
    ],
)
def test_parse_errors_never_show_what_comes_before_the_last_at(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        BackendURL.parse(text)
    message = str(info.value)
    assert "SEKRET" not in message
    assert "***@" in message


def test_replace() -> None:
    url = BackendURL.parse("postgresql://u:p@h/db")
    assert url.replace(driver="psycopg").scheme == "postgresql+psycopg"
    with pytest.raises(TypeError, match="nope"):
        url.replace(nope=1)


def test_equal_urls_hash_equal() -> None:
    a = BackendURL.parse("mysql://u:p@h/db?b=2&a=1")
    b = BackendURL.parse("mysql://u:p@h/db?a=1&b=2")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


@given(backend_urls())
@settings(max_examples=300)
def test_parse_render_round_trip(url: BackendURL) -> None:
    text = url.render(hide_password=False)
    assert BackendURL.parse(text) == url
    # and a rendered URL is stable: rendering the parsed URL again gives the same text
    assert BackendURL.parse(text).render(hide_password=False) == text


@given(backend_urls())
def test_str_and_repr_parse_back_apart_from_the_password(url: BackendURL) -> None:
    shown = BackendURL.parse(str(url))
    from asyncify_kit._config import _redact_option_value

    expected = url.replace(
        password="***" if url.password is not None else None,
        options={
            k: "***" if is_secret_option(k) else _redact_option_value(v)
            for k, v in url.options.items()
        },
    )
    assert shown == expected


# -- malformed URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a backend URL"),
        ("postgresql", "not a backend URL"),
        ("://host/db", "not a backend URL"),
        ("post gres://h/db", "invalid scheme"),
        ("postgresql+://h/db", "invalid scheme"),
        ("9sql://h/db", "invalid scheme"),
        ("pöstgres://h/db", "invalid scheme"),
        ("postgresql://u@h:0/db", "invalid port '0' in 'postgresql://***@h:0/db'"),
        ("postgresql://u@h:65536/db", "invalid port '65536'"),
        ("postgresql://u@h:abc/db", "invalid port in 'postgresql://***@h:abc/db'"),
        # without '@', 'h:...' may be 'user:password': the port is not quoted
        ("postgresql://h:0/db", "invalid port in 'postgresql://h:***'; expected 1-65535"),
        ("postgresql://h:abc/db", "is its '@host' missing?"),
        ("postgresql://h:²/db", "invalid port"),
        ("postgresql://h:٣/db", "invalid port"),
        ("postgresql://[::1/db", "unclosed IPv6"),
        ("postgresql://[::1]x/db", "invalid host"),
        ("postgresql://h/db#frag", "no fragment"),
        ("postgresql://h/db?a=1&a=2", "'a' is given twice"),
    ],
)
def test_malformed_urls(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        BackendURL.parse(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ConfigError, match="must be a string, not bytes"):
        BackendURL.parse(b"sqlite://")  # type: ignore[arg-type]


# -- the password is never shown -----------------------------------------------------------


@given(backend_urls().filter(lambda u: u.password is not None))
def test_password_never_in_str_repr_or_render(url: BackendURL) -> None:
    assert url.password is not None
    for text in (str(url), repr(url), url.render(), f"{url}", f"{url!r}", str([url])):
        assert_no_password(text, url.password)
    assert url.password in url.render(hide_password=False) or (
        quote(url.password, safe="") in url.render(hide_password=False)
    )


def _broken_variants(url: BackendURL) -> list[str]:
    """*url* rendered with its real password, then broken in the ways users break URLs."""
    good = url.render(hide_password=False)
    scheme, _, rest = good.partition("://")
    userinfo = rest.rpartition("@")[0] if "@" in rest else ""
    raw_pw = url.password or ""
    base = f"{scheme}://{userinfo}@" if userinfo else f"{scheme}://"
    return [
        f"{base}{url.host or 'h'}:notaport/db",  # bad port
        f"{base}{url.host or 'h'}:99999/db",  # port out of range
        f"{base}[::1/db",  # unclosed IPv6
        f"bad scheme://{rest}",  # bad scheme
        f"{scheme}+://{rest}",  # empty driver
        f"{good}#fragment",  # fragment
        f"{base}h/db?x=1&x=2",  # option twice
        # the password written raw, unencoded, as people paste it
        f"{scheme}://user:{raw_pw}@h:bad/db",
        f"{scheme}://user:{raw_pw}@h/db#frag",
        f"{scheme}://user:{raw_pw}@h/db",  # parses: the whole raw password stays one
        f"bad scheme://user:{raw_pw}@h/db",
        # '@host' forgotten: the password reads as a port (with an '@' in it, as a user and
        # a host, which no rule can tell from a real one)
        *(
            [f"{scheme}://user:{raw_pw}", f"{scheme}://user:{raw_pw}/db"]
            if "@" not in raw_pw
            else []
        ),
    ]


@given(backend_urls().filter(lambda u: u.password is not None))
@settings(max_examples=150)
def test_password_never_in_parse_errors(url: BackendURL) -> None:
    assert url.password is not None
    for text in _broken_variants(url):
        try:
            parsed = BackendURL.parse(text)
        except ConfigError as exc:
            assert_no_password(str(exc), url.password)
            assert_no_password(repr(exc), url.password)
        else:  # an odd but parseable URL: still never shown
            assert_no_password(str(parsed), url.password)
            assert_no_password(repr(parsed), url.password)


@given(passwords)
def test_password_never_in_option_errors(password: str) -> None:
    url = BackendURL(
        "postgresql",
        "asyncpg",
        "app",
        password,
        "db",
        5432,
        "/shop",
        {"max_size": "lots", "bogus": "1"},
    )
    options = [int_option("max_size", 10, minimum=1)]
    with pytest.raises(ConfigError) as unknown:
        validate_options(url, options, backend="postgresql+asyncpg")
    assert_no_password(str(unknown.value), password)
    bad = url.replace(options={"max_size": "lots"})
    with pytest.raises(ConfigError) as invalid:
        validate_options(bad, options, backend="postgresql+asyncpg")
    assert_no_password(str(invalid.value), password)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("aws_secret_access_key", True),
        ("API_TOKEN", True),
        ("X-Amz-Signature", True),  # an S3 presigned URL's
        ("X-Amz-Credential", True),
        ("sig", True),  # an Azure SAS URL's
        ("signature_version", False),  # botocore's option, no secret
        ("region", False),
        ("design", False),
    ],
)
def test_which_options_are_secret(name: str, secret: bool) -> None:
    assert is_secret_option(name) is secret


def test_secret_options_are_redacted() -> None:
    text = "s3://AKIAEXAMPLE:SEKRETHEADxSEKRETTAIL@bucket/p?aws_secret_access_key=SEKRETHEADoptSEKRETTAIL&region=eu"
    url = BackendURL.parse(text)
    assert url.options["aws_secret_access_key"] == "SEKRETHEADoptSEKRETTAIL"
    for shown in (str(url), repr(url)):
        assert "SEKRET" not in shown
        assert "region=eu" in shown
        assert "AKIAEXAMPLE" in shown
    assert BackendURL.parse(url.render(hide_password=False)) == url
    with pytest.raises(ConfigError) as twice:
        BackendURL.parse(text + "&aws_secret_access_key=SEKRETHEADagainSEKRETTAIL")
    assert "SEKRET" not in str(twice.value)
    secret = str_option("api_token", None)
    number = int_option("api_token", 1)
    with pytest.raises(ConfigError) as bad:
        validate_options(
            BackendURL.parse("x://h?api_token=SEKRETHEADtokSEKRETTAIL"), [number], backend="x"
        )
    assert "SEKRET" not in str(bad.value)
    assert validate_options(BackendURL.parse("x://h?api_token=abc"), [secret], backend="x") == {
        "api_token": "abc"
    }


# -- options --------------------------------------------------------------------------------

OPTIONS = (
    int_option("max_size", 10, minimum=1, doc="pool size"),
    float_option("timeout", 30.0, no_limit=True, doc="seconds"),
    bool_option("ssl", False),
    choice_option("isolation", "read_committed", ["read_committed", "serializable"]),
    str_option("application_name", None),
)


def test_validate_options_fills_defaults() -> None:
    url = BackendURL.parse("postgresql://h/db")
    assert validate_options(url, OPTIONS, backend="pg") == {
        "max_size": 10,
        "timeout": 30.0,
        "ssl": False,
        "isolation": "read_committed",
        "application_name": None,
    }


def test_validate_options_converts() -> None:
    url = BackendURL.parse(
        "postgresql://h/db?max_size=3&timeout=none&ssl=YES&isolation=serializable"
        "&application_name=shop%20api"
    )
    assert validate_options(url, OPTIONS, backend="pg") == {
        "max_size": 3,
        "timeout": None,
        "ssl": True,
        "isolation": "serializable",
        "application_name": "shop api",
    }


_SECONDS = (
    "a number of seconds from 0 to 2147483 (about 24.8 days), or 'none' or 'inf' for no limit"
)


@pytest.mark.parametrize(
    ("query", "accepted"),
    [
        ("max_size=0", "a whole number >= 1"),
        ("max_size=2.5", "a whole number >= 1"),
        ("max_size=", "a whole number >= 1"),
        ("timeout=-1", _SECONDS),
        ("timeout=nan", _SECONDS),
        ("timeout=soon", _SECONDS),
        ("ssl=maybe", "true or false"),
        ("isolation=dirty", "one of read_committed, serializable"),
    ],
)
def test_bad_option_value_names_option_and_accepted_values(query: str, accepted: str) -> None:
    name, _, raw = query.partition("=")
    url = BackendURL.parse(f"postgresql://u:hunter2@h/db?{query}")
    with pytest.raises(ConfigError) as info:
        validate_options(url, OPTIONS, backend="postgresql+asyncpg")
    message = str(info.value)
    assert f"option {name!r}" in message
    assert f"accepted: {accepted}" in message
    assert repr(raw) in message
    assert "'postgresql+asyncpg'" in message
    assert "hunter2" not in message
    assert info.value.__cause__ is None  # the parser's own ValueError is noise


def test_secret_option_values_render_as_three_stars() -> None:
    url = BackendURL.parse("s3://bucket/p?aws_secret_access_key=SEKRETHEADxSEKRETTAIL&region=eu")
    assert str(url) == "s3://bucket/p?aws_secret_access_key=***&region=eu"
    assert repr(url) == "BackendURL('s3://bucket/p?aws_secret_access_key=***&region=eu')"
    with pytest.raises(ConfigError) as info:
        validate_options(url, [str_option("region", None)], backend="s3")
    assert "in s3://bucket/p?aws_secret_access_key=***&region=eu;" in str(info.value)
    assert BackendURL.parse(url.render(hide_password=False)) == url


def test_options_given_as_numbers_render_as_urlencode_writes_them() -> None:
    """``replace(options=...)`` is untyped at run time: numbers render as their text, as
    ``urlencode`` wrote them (benchmarks/bench_sql.py passes pool sizes so)."""
    url = BackendURL.parse("postgresql://app:pw@db/shop").replace(
        options={"min_size": 4, "acquire_timeout": 2.5}
    )
    rendered = url.render(hide_password=False)
    assert rendered == "postgresql://app:pw@db/shop?min_size=4&acquire_timeout=2.5"
    assert BackendURL.parse(rendered).options == {"min_size": "4", "acquire_timeout": "2.5"}


@pytest.mark.parametrize(
    "raw",
    ["1_0", "%D9%A3", "%EF%BC%95", "%2B5", "%205", "5%20", "-0", "1e3", "1" * 19, "9" * 20],
)
def test_integer_options_take_plain_ascii_digits_only(raw: str) -> None:
    url = BackendURL.parse(f"postgresql://h/db?max_size={raw}")
    with pytest.raises(ConfigError, match="accepted: a whole number >= 1, up to 18 digits"):
        validate_options(url, OPTIONS, backend="pg")


@pytest.mark.parametrize(("query", "shown"), [("max_size=+10", "' 10'"), ("timeout=1+s", "'1 s'")])
def test_a_space_in_a_bad_value_says_that_a_plus_is_a_space(query: str, shown: str) -> None:
    """``?max_size=+10`` was refused as ``' 10'``, the space unexplained."""
    url = BackendURL.parse(f"postgresql://h/db?{query}")
    with pytest.raises(ConfigError) as info:
        validate_options(url, OPTIONS, backend="pg")
    assert f"invalid value {shown} (a '+' in a URL's query string is a space) for option" in str(
        info.value
    )


def test_integer_options_take_eighteen_digits() -> None:
    url = BackendURL.parse("postgresql://h/db?max_size=" + "9" * 18)
    assert validate_options(url, OPTIONS, backend="pg")["max_size"] == 10**18 - 1
    assert (
        validate_options(url.replace(options={"max_size": "007"}), OPTIONS, backend="pg")[
            "max_size"
        ]
        == 7
    )


def test_unknown_option_lists_the_known_ones() -> None:
    url = BackendURL.parse("postgresql://u:hunter2@h/db?max_sise=3")
    with pytest.raises(ConfigError) as info:
        validate_options(url, OPTIONS, backend="postgresql+asyncpg")
    message = str(info.value)
    assert "unknown option 'max_sise'" in message
    assert "application_name, isolation, max_size, ssl, timeout" in message
    assert "hunter2" not in message


def test_unknown_option_when_none_are_accepted() -> None:
    url = BackendURL.parse("sqlite:///x.db?journal=wal")
    with pytest.raises(ConfigError, match="known options: none"):
        validate_options(url, (), backend="sqlite")


# -- environment precedence ---------------------------------------------------------------

SQL_ENV = ("ASYNCIFY_SQL_URL", "DATABASE_URL")
DEFAULT_SQL = "sqlite:///./asyncify.db"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SQL_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_resolve_url_default(clean_env: pytest.MonkeyPatch) -> None:
    assert resolve_url(None, SQL_ENV, DEFAULT_SQL) == BackendURL.parse(DEFAULT_SQL)


def test_resolve_url_second_env_name(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://from-database-url/db")
    assert resolve_url(None, SQL_ENV, DEFAULT_SQL).host == "from-database-url"


def test_resolve_url_first_env_name_wins(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://from-database-url/db")
    clean_env.setenv("ASYNCIFY_SQL_URL", "postgresql://from-asyncify/db")
    assert resolve_url(None, SQL_ENV, DEFAULT_SQL).host == "from-asyncify"


def test_resolve_url_empty_env_is_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ASYNCIFY_SQL_URL", "")
    clean_env.setenv("DATABASE_URL", "postgresql://from-database-url/db")
    assert resolve_url(None, SQL_ENV, DEFAULT_SQL).host == "from-database-url"


def test_resolve_url_explicit_beats_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ASYNCIFY_SQL_URL", "postgresql://from-asyncify/db")
    assert resolve_url("mysql://explicit/db", SQL_ENV, DEFAULT_SQL).host == "explicit"
    explicit = BackendURL.parse("mysql://object/db")
    assert resolve_url(explicit, SQL_ENV, DEFAULT_SQL) is explicit


def test_resolve_url_bad_env_value_is_a_config_error_without_password(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://u:hunter2@h:port/db")
    with pytest.raises(ConfigError) as info:
        resolve_url(None, SQL_ENV, DEFAULT_SQL)
    assert "hunter2" not in str(info.value)


def test_env_setting_with_explicit_mapping() -> None:
    env = {"A": "", "B": "b", "C": "c"}
    assert env_setting("A", "B", "C", environ=env) == "b"
    assert env_setting("X", environ=env) is None


# -- text that is not a URL, a URL missing its host, characters a URL cannot hold ------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("host=db user=app password=hunter2 dbname=shop", "key=value connection string"),
        ("host=db user=app PASSWORD = hunter2", "key=value connection string"),
        ("Server=db;Database=shop;User Id=app;Password=hunter2;", "key=value connection string"),
        ("Server=db;Pwd=hunter2", "key=value connection string"),
        ("postgresql//app:hunter2@db/shop", "it has no '://'"),
        ("postgresql:\\\\app:hunter2@db/shop", "it starts with 'postgresql:', not 'postgresql://'"),
        ("postgresql:/app:hunter2/shop", "it starts with 'postgresql:', not 'postgresql://'"),
        ("hunter2", "it has no '://'"),
        ("://app:hunter2/shop", "no scheme before '://'"),
        ("host=db password=hunter2 ://x", "invalid scheme ***"),
    ],
)
def test_text_that_is_not_a_url_is_never_quoted(text: str, message: str) -> None:
    """A libpq or ODBC connection string in DATABASE_URL was echoed whole, password and all."""
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        BackendURL.parse(text)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://app:hunter2",
        "postgresql://app:hunter2/shop",
        "mysql://root:hunter2?charset=utf8mb4",
        "postgresql://app:hunter2#x/shop",
        "postgresql://app:hunter2/sh?op/db",
        "postgresql://app:hun/ter2/shop",
        "postgresql://app:1234567/shop",
        "postgresql://app:99999",
    ],
)
def test_a_url_missing_its_host_never_shows_the_password_as_a_port(text: str) -> None:
    """``postgresql://app:hunter2/shop`` (no ``@host``) said ``invalid port 'hunter2'``."""
    with pytest.raises(ConfigError) as info:
        BackendURL.parse(text)
    message = str(info.value)
    for piece in ("hunter2", "hun", "ter2", "1234567", "99999"):
        assert piece not in message
    assert "://app:***" in message or "://root:***" in message


def test_a_url_missing_its_host_says_what_may_be_wrong() -> None:
    with pytest.raises(ConfigError) as info:
        BackendURL.parse("postgresql://app:hunter2/shop")
    assert str(info.value) == (
        "invalid port in 'postgresql://app:***'; expected 1-65535 (a URL without '@' reads "
        "'user:password' as host and port: is its '@host' missing?)"
    )


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("sqlite:///./app.db\n", "a newline at its end"),
        ("sqlite:///./app.db\r\n", "a carriage return at its end"),
        ("file://./store\n", "a newline at its end"),
        ("postgresql://app:pw@db.internal\t/shop", "a tab at character 32 of 37"),
        ("postgresql://app:pw@db/shop ", "a space at its end"),
        (" postgresql://app:pw@db/shop", "invalid scheme"),
        ("postgresql://app:pw@db/my shop", "a space at character 26 of 30"),
        ("postgresql://app:pw@db/shop?application_name=a\x00b", "the character U+0000"),
        ("sqlite:///./a\u200bb.db", "the character U+200B at character 14 of 18"),
        ("sqlite:///./a\u00a0b.db", "a no-break space"),
        ("s3://bucket/p\x7f", "the character U+007F at its end"),
    ],
)
def test_white_space_and_control_characters_are_refused(text: str, what: str) -> None:
    """They were taken silently: ``sqlite:///./app.db\\n`` made a file ``app.db\\n``, a tab
    ended up in a PostgreSQL host name."""
    with pytest.raises(ConfigError, match=re.escape(what)):
        BackendURL.parse(text)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql://app:hun ter2@db/shop", "hun"),
        ("postgresql://app:hunter2\n@db/shop", "hunter2"),
        ("postgresql://app:hunter2@db/shop\n", "hunter2"),
        ("postgresql://app:hunter2/shop\n", "hunter2"),
    ],
)
def test_a_character_error_never_shows_the_password(text: str, secret: str) -> None:
    with pytest.raises(ConfigError, match="takes no raw white space") as info:
        BackendURL.parse(text)
    assert secret not in str(info.value)


def test_white_space_percent_encoded_is_taken() -> None:
    url = BackendURL.parse("postgresql://app:hun%20ter2@db/my%20shop?application_name=a+b%0A")
    assert (url.password, url.database, url.options["application_name"]) == (
        "hun ter2",
        "my shop",
        "a b\n",
    )
    assert BackendURL.parse(url.render(hide_password=False)) == url


# -- options whose values are URLs --------------------------------------------------------


def test_the_password_of_an_option_that_is_a_url_is_hidden() -> None:
    """``?endpoint_url=http://minio:hunter2@localhost:9000`` showed the password in repr()."""
    url = BackendURL.parse(
        "s3://bucket/p?endpoint_url=http%3A%2F%2Fminio%3Ahunter2%40localhost%3A9000&region=eu"
    )
    assert url.options["endpoint_url"] == "http://minio:hunter2@localhost:9000"
    for shown in (str(url), repr(url), url.render()):
        assert "hunter2" not in shown
        assert "minio%3A***%40localhost%3A9000" in shown
        assert "region=eu" in shown
    assert BackendURL.parse(str(url)).options["endpoint_url"] == "http://minio:***@localhost:9000"
    assert "hunter2" in url.render(hide_password=False)
    assert BackendURL.parse(url.render(hide_password=False)) == url


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("http://minio:hunter2@localhost:9000", "http://minio:***@localhost:9000"),
        ("https://hunter2@example.com/x", "https://***@example.com/x"),
        ("http://minio:hun@ter2@localhost", "http://minio:***@localhost"),
        ("http://minio:hunter2", "http://minio:***"),
        ("http://localhost:9000/p", "http://localhost:9000/p"),
        ("not a url", "not a url"),
    ],
)
def test_option_values_that_are_urls_hide_their_userinfo(value: str, shown: str) -> None:
    from asyncify_kit._config import _redact_option_value

    assert _redact_option_value(value) == shown


def test_the_password_of_an_option_that_is_a_url_is_hidden_in_errors() -> None:
    raw = "http://minio:hunter2@localhost:9000"
    url = BackendURL("s3", None, None, None, "bucket", None, "/p", {"endpoint": raw, "n": raw})
    with pytest.raises(ConfigError) as unknown:
        validate_options(url, [int_option("n", 1)], backend="s3")
    with pytest.raises(ConfigError) as invalid:
        validate_options(url.replace(options={"n": raw}), [int_option("n", 1)], backend="s3")
    assert "invalid value 'http://minio:***@localhost:9000'" in str(invalid.value)
    with pytest.raises(ConfigError) as parsed:
        BackendURL.parse("s3://b/p?endpoint=http%3A%2F%2Fminio%3Ahunter2%40localhost&a=1&a=2")
    for info in (unknown, invalid, parsed):
        assert "hunter2" not in str(info.value)


# -- which environment variable a URL came from --------------------------------------------


def test_an_env_url_that_does_not_parse_names_its_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "host=db password=hunter2")
    with pytest.raises(ConfigError) as info:
        resolve_url(None, SQL_ENV, DEFAULT_SQL)
    assert str(info.value).startswith("environment variable DATABASE_URL: a key=value")
    assert "hunter2" not in str(info.value)
    clean_env.setenv("ASYNCIFY_SQL_URL", "sqlite:///./app.db\n")
    with pytest.raises(ConfigError, match=r"^environment variable ASYNCIFY_SQL_URL: .* newline"):
        resolve_url(None, SQL_ENV, DEFAULT_SQL)


def test_option_errors_of_an_env_url_name_its_variable(clean_env: pytest.MonkeyPatch) -> None:
    """``DATABASE_URL=postgres://...?sslmode=require`` said "unknown option 'sslmode'" without
    saying where the URL came from."""
    clean_env.setenv("DATABASE_URL", "postgres://app:hunter2@db/shop?sslmode=require")
    url = resolve_url(None, SQL_ENV, DEFAULT_SQL)
    assert url.source == "environment variable DATABASE_URL"
    assert url == BackendURL.parse("postgres://app:hunter2@db/shop?sslmode=require")
    options: list[Option[Any]] = [
        choice_option("ssl", "prefer", ["disable", "require"]),
        int_option("n", 1),
    ]
    with pytest.raises(ConfigError) as unknown:
        validate_options(url, options, backend="postgresql+asyncpg")
    assert str(unknown.value).startswith(
        "environment variable DATABASE_URL: unknown option 'sslmode' for the "
        "'postgresql+asyncpg' backend in postgres://app:***@db/shop?sslmode=require;"
    )
    assert str(unknown.value).endswith("; did you mean 'ssl'?")
    bad = url.replace(options={"n": "x"})
    assert bad.source == url.source  # replace() keeps it (Database merges keyword options so)
    with pytest.raises(ConfigError, match=r"^environment variable DATABASE_URL: invalid value 'x'"):
        validate_options(bad, options, backend="postgresql+asyncpg")
    # a URL from code names no variable
    with pytest.raises(ConfigError, match=r"^unknown option 'sslmode'"):
        validate_options(BackendURL.parse("postgres://h/db?sslmode=x"), options, backend="pg")


def test_storage_urls_from_the_environment_alike(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``ASYNCIFY_STORAGE_URL=file://./store\\n`` made a directory ``store\\n``; an
    ``endpoint_url`` holding a password showed it in the facade's repr()."""
    from asyncify_kit.storage import Storage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASYNCIFY_STORAGE_URL", "file://./store\n")
    with pytest.raises(ConfigError, match=r"^environment variable ASYNCIFY_STORAGE_URL: "):
        Storage()
    assert list(tmp_path.iterdir()) == []
    store = Storage("s3://bucket/p?endpoint_url=http://minio:hunter2@localhost:9000")
    assert repr(store) == (
        "<Storage 's3://bucket/p?endpoint_url=http%3A%2F%2Fminio%3A***%40localhost%3A9000' closed>"
    )
