"""Backend URLs and environment settings.

A backend is chosen by a URL such as ``postgresql+asyncpg://user:pw@host:5432/db?max_size=10``:
the scheme names the dialect, the optional ``+driver`` the backend, the query string holds
backend options. Passwords are never shown: ``str()``, ``repr()`` and every error render
them as ``***`` (so are options named like secrets, ``?aws_secret_access_key=...``, and the
password of an option that is a URL, ``?endpoint_url=http://key:***@minio:9000``); only
`BackendURL.render(hide_password=False)` gives the real URL back. Text that is not a URL
(a libpq ``host=... password=...`` string) is never quoted in an error.

A URL holds no raw white space or control character: percent-encode them. A URL read from
the environment with a trailing newline (``$(cat secret)``, a secret file) is refused, not
stripped, and every error about such a URL starts with the variable's name.

Precedence everywhere: explicit argument > environment variable > embedded default.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus

from .exceptions import ConfigError

__all__ = [
    "MAX_SECONDS",
    "BackendURL",
    "Option",
    "bool_option",
    "choice_option",
    "env_setting",
    "float_option",
    "int_option",
    "invalid_option",
    "is_secret_option",
    "option_value_text",
    "redact_url_text",
    "resolve_url",
    "str_option",
    "url_errors",
    "validate_options",
    "whole_number",
]

T = TypeVar("T")

_REDACTED = "***"


@dataclass(frozen=True, eq=True)
class BackendURL:
    """A parsed backend URL: ``scheme[+driver]://[user[:password]@][host][:port][/path][?options]``.

    >>> url = BackendURL.parse("postgresql+asyncpg://app:secret@db:5432/shop?max_size=5")
    >>> url.dialect, url.driver, url.host, url.port, url.database
    ('postgresql', 'asyncpg', 'db', 5432, 'shop')
    >>> str(url)
    'postgresql+asyncpg://app:***@db:5432/shop?max_size=5'

    *source* says where the URL was read, when not from code (``environment variable
    DATABASE_URL``, set by `resolve_url`); errors about the URL start with it.
    """

    dialect: str
    driver: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str = ""
    port: int | None = None
    path: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, url: str | BackendURL) -> BackendURL:
        """Parse *url*; raise `ConfigError` (without echoing any password) when malformed."""
        if isinstance(url, BackendURL):
            return url
        if not isinstance(url, str):
            raise ConfigError(f"a backend URL must be a string, not {type(url).__name__}")
        scheme, sep, rest = url.partition("://")
        if not sep or not scheme:
            raise ConfigError(_not_a_url(url))
        scheme = scheme.lower()
        dialect, plus, driver = scheme.partition("+")
        if (
            not dialect
            or (plus and not driver)
            or not _is_token(dialect)
            or (driver and not _is_token(driver))
        ):
            shown = _REDACTED if _UNSAFE_SCHEME.search(scheme) else repr(scheme)
            raise ConfigError(
                f"invalid scheme {shown} in backend URL {_redact_raw(url)!r}; expected "
                "'dialect' or 'dialect+driver', for example 'postgresql+asyncpg'"
            )
        _check_characters(url, scheme)
        whole = rest
        userinfo, rest = _split_userinfo(rest)
        if "@" in rest and _may_hold_password(whole):
            # An '@' left after the userinfo, in a URL that may hold a password: either an
            # option value or a path holds a raw '@', or the password holds '@', then '/',
            # then '?' or '#' (``app:p@ss/w?rd@db``). Both read alike, and guessing wrong
            # would show pieces of the password in str(): ask for the '@' to be encoded.
            raise ConfigError(
                f"ambiguous backend URL {_redact_raw(url)!r}: it has a user and password and "
                "another raw '@' after them; percent-encode '@' as %40 in the password and in "
                "option values"
            )
        rest, _, query = rest.partition("?")
        if "#" in query or "#" in rest:
            raise ConfigError(f"a backend URL takes no fragment: {_redact_raw(url)!r}")
        authority, slash, path = rest.partition("/")
        path = slash + path
        username = password = None
        if userinfo is not None:
            user, colon, pw = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(pw) if colon else None
        # an '@' left after the userinfo: what follows it may be a piece of a raw password
        doubtful = "@" in rest or "@" in query
        host, port = _split_host_port(
            authority, url, doubtful=doubtful, after_userinfo=userinfo is not None
        )
        options: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key in options:
                shown = _REDACTED if doubtful else repr(key)
                raise ConfigError(f"option {shown} is given twice in {_redact_raw(url)!r}")
            options[key] = value
        return cls(
            dialect=dialect,
            driver=driver or None,
            username=username,
            password=password,
            host=unquote(host),
            port=port,
            path=unquote(path),
            options=options,
        )

    @property
    def scheme(self) -> str:
        """``dialect+driver``, or just the dialect when no driver is named."""
        return f"{self.dialect}+{self.driver}" if self.driver else self.dialect

    @property
    def database(self) -> str:
        """The path without its leading slash (the database name for SQL servers)."""
        return self.path[1:] if self.path.startswith("/") else self.path

    @property
    def hostname(self) -> str:
        """The host as drivers and sockets take it: an IPv6 address without its brackets
        (``[::1]`` -> ``::1``), which `host` keeps as the URL writes them. A driver given
        ``[::1]`` looks it up as a host name, and fails."""
        if self.host.startswith("[") and self.host.endswith("]"):
            return self.host[1:-1]
        return self.host

    @property
    def location(self) -> str:
        """Host and path joined, as file-like schemes read them: ``file://./data`` -> ``./data``."""
        return self.host + self.path

    def render(self, *, hide_password: bool = True) -> str:
        """The URL as a string; the password is ``***`` unless *hide_password* is false."""
        out = [self.scheme, "://"]
        if self.username is not None or self.password is not None:
            out.append(quote(self.username or "", safe=""))
            if self.password is not None:
                out.append(":")
                out.append(_REDACTED if hide_password else quote(self.password, safe=""))
            out.append("@")
        host = quote(self.host, safe=".-_~!$&'()*+,;=:[]")
        out.append(host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(quote(self.path, safe="/.-_~!$&'()*+,;=:"))  # '@' encoded: see _split_userinfo
        if self.options:
            # as urlencode() writes them, but a hidden value stays a readable ``***``
            out.append(
                "?"
                + "&".join(
                    quote_plus(key, safe="")
                    + "="
                    + (
                        _REDACTED
                        if hide_password and is_secret_option(key)
                        else _render_option_value(str(value), hide_password=hide_password)
                    )
                    for key, value in self.options.items()
                )
            )
        return "".join(out)

    def replace(self, **changes: Any) -> BackendURL:
        """A copy with some fields changed (``url.replace(driver="psycopg")``)."""
        values: dict[str, Any] = {
            "dialect": self.dialect,
            "driver": self.driver,
            "username": self.username,
            "password": self.password,
            "host": self.host,
            "port": self.port,
            "path": self.path,
            "options": self.options,
            "source": self.source,
        }
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"unknown BackendURL fields: {sorted(unknown)}")
        values.update(changes)
        return BackendURL(**values)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"BackendURL({self.render()!r})"

    def __hash__(self) -> int:
        return hash(
            (
                self.scheme,
                self.username,
                self.password,
                self.host,
                self.port,
                self.path,
                tuple(sorted(self.options.items())),
            )
        )


_SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "api_key", "apikey")
# whole names only: the signature of an S3 presigned URL and of an Azure SAS URL (a word rule
# would also hide ``signature_version``, which is no secret)
_SECRET_NAMES = frozenset({"x-amz-signature", "sig", "signature"})


def is_secret_option(name: str) -> bool:
    """Whether a query option's value is a secret (``?aws_secret_access_key=...``).

    Such values are redacted like the password: ``***`` in ``str()``, ``repr()`` and errors.
    """
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(word in lowered for word in _SECRET_WORDS)


def _redact_option_value(value: str) -> str:
    """An option value as ``str()`` and errors show it: one that is a URL with its password
    hidden as a backend URL's is (``http://key:***@minio:9000``), any other as it is."""
    return _redact_raw(value) if "://" in value else value


def option_value_text(name: str, raw: str) -> str:
    """The value *raw* of option *name* as an error quotes it: ``***`` for an option named
    like a secret, else its repr, the password hidden when it is a URL
    (``'http://key:***@minio:9000'``), and where a space may come from when it has one
    (``?max_size=+10`` reads as ``' 10'``)."""
    if is_secret_option(name):
        return _REDACTED
    shown = repr(_redact_option_value(raw))
    return f"{shown} (a '+' in a URL's query string is a space)" if " " in raw else shown


def invalid_option(name: str, raw: str, backend: str, accepted: str) -> ConfigError:
    """The error for the value *raw* of option *name* that *backend* refuses, quoted as
    `option_value_text` quotes it; *accepted* says what the option takes."""
    return ConfigError(
        f"invalid value {option_value_text(name, raw)} for option {name!r} of the {backend!r} "
        f"backend; accepted: {accepted}"
    )


def redact_url_text(text: str) -> str:
    """*text*, which should be a URL but may not even parse, as `BackendURL` errors show it:
    what lies between ``://`` and the last ``@`` (the password) is ``***``, as are secret
    options; text without ``://`` is ``***`` whole."""
    return _redact_raw(text)


def _render_option_value(value: str, *, hide_password: bool) -> str:
    """*value* encoded for the query string, as ``urlencode`` writes it; a hidden password
    stays a readable ``***``."""
    if hide_password:
        shown = _redact_option_value(value)
        if shown != value:
            return quote_plus(shown, safe="*")
    return quote_plus(value, safe="")


_BACKEND_URL_HINT = (
    "expected 'scheme://...', for example 'sqlite:///./asyncify.db' or 's3://bucket/prefix'"
)
# ``host=db dbname=shop`` (libpq), ``Server=db;Password=...;`` (ODBC, ADO.NET)
_KEY_VALUE = re.compile(r"\s*[A-Za-z][A-Za-z0-9 _-]*=")


def _not_a_url(text: str) -> str:
    """The error for *text*, which has no ``scheme://``. The text is never quoted: it may be
    a connection string in another form that holds a password, or a bare password."""
    if not text.strip():
        return f"an empty or blank value is not a backend URL; {_BACKEND_URL_HINT}"
    if _KEY_VALUE.match(text):
        return (
            "a key=value connection string (libpq's 'host=... dbname=...' or ODBC's "
            "'Server=...;...') is not a backend URL, and is not shown here: it may hold a "
            "password; write it as a URL, for example "
            "'postgresql://user:password@host:5432/database'"
        )
    if text.startswith("://"):
        return (
            "the value is not a backend URL: it has no scheme before '://' (the rest is not "
            f"shown: it may hold a password); {_BACKEND_URL_HINT}"
        )
    head, colon, rest = text.partition(":")
    if colon and head and _is_token(head) and rest[:1] in ("/", "\\"):  # 'postgresql:\\'
        return (
            f"the value is not a backend URL: it starts with {head + ':'!r}, not {head + '://'!r} "
            f"(the rest is not shown: it may hold a password); {_BACKEND_URL_HINT}"
        )
    return (
        "the value is not a backend URL (it has no '://'; it is not shown, as it may hold a "
        f"password); {_BACKEND_URL_HINT}"
    )


# a "scheme" holding these is some other text (a key=value string, user:password@...): it
# is never quoted
_UNSAFE_SCHEME = re.compile(r"[@=;]")

_CHARACTER_NAMES = {
    "\n": "a newline",
    "\r": "a carriage return",
    "\t": "a tab",
    " ": "a space",
    "\u00a0": "a no-break space",
}


def _is_invisible(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf")


def _check_characters(url: str, scheme: str) -> None:
    """`ConfigError` if *url* holds white space or a control or format character (a raw one:
    percent-encoded, it is taken). Such a character is invisible in a log or an error, and
    was taken into a file, host or database name: a trailing newline from ``$(cat ...)``
    made a SQLite file ``app.db\\n``. The URL is not quoted (the character may sit in the
    password); where it sits is."""
    index = next((i for i, char in enumerate(url) if _is_invisible(char)), None)
    if index is None:
        return
    char = url[index]
    what = _CHARACTER_NAMES.get(char, f"the character U+{ord(char):04X}")
    if all(_is_invisible(c) for c in url[index:]):
        where = "at its end"
        fix = "remove it (a value read from a file or with $(...) often ends with a newline)"
    else:
        where = f"at character {index + 1} of {len(url)}"
        fix = f"remove it, or percent-encode it as {quote(char, safe='')}"
    raise ConfigError(
        f"the {scheme!r} backend URL holds {what} {where}; a URL takes no raw white space "
        f"or control characters: {fix}"
    )


def _is_token(text: str) -> bool:
    return (
        text.isascii()
        and text[0].isalpha()
        and text.replace("-", "").replace("_", "").replace(".", "").isalnum()
    )


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """Split ``user:password@`` off the part of a URL after ``://``.

    Passwords often hold a raw ``/``, ``?``, ``#``, ``[`` or ``@`` that should have been
    percent-encoded. Reading ``user:pass/word@host`` as host ``user`` and port ``pass`` would
    expose part of the password, so when a password is present (``user:...@``, the user
    without ``:/?#@`` and not starting with ``[``) the userinfo ends at the *last* ``@``
    before the query string:

    * when the text after the last ``@`` has a path (``...@db/shop``), at that ``@``:
      ``app:p@ss?word@db/shop`` is user ``app`` and password ``p@ss?word``;
    * otherwise at the last ``@`` before the first ``?`` or ``#`` that follows a ``/`` after
      the first ``@``: ``app:pw@db/shop?to=a@b`` keeps ``to=a@b`` as its option.

    Without a password, the userinfo ends at the last ``@`` of the authority. The price: a raw
    ``@`` in the path of a URL with a password, in a query string that follows the host
    directly (``app:pw@db?to=a@b``) or followed by a ``/`` (``?to=a@b/c``) is read as part of
    the password. When the second rule leaves an ``@`` after the userinfo (``app:pw@db/shop?
    to=a@b``, or a password holding ``@``, then ``/``, then ``?`` in a URL with no path:
    ``app:p@ss/w?rd@db``), the two readings cannot be told apart and `BackendURL.parse`
    raises `ConfigError` rather than guess (a wrong guess would show pieces of the password
    as host, path or options). Encode such characters (``%40``; `BackendURL.render` does).
    Errors never show what comes before the last ``@`` (see `_redact_raw`).
    """
    match = _RAW_USERINFO.match(rest)
    if match is not None:
        last_at = rest.rfind("@")
        if not rest.startswith("/", _authority_end(rest, last_at + 1)):
            query_start = len(rest)
            path_start = rest.find("/", match.end())
            if path_start != -1:
                for stop in "?#":
                    found = rest.find(stop, path_start)
                    if found != -1:
                        query_start = min(query_start, found)
            last_at = rest.rfind("@", 0, query_start)
        return rest[:last_at], rest[last_at + 1 :]
    userinfo, at, _ = rest[: _authority_end(rest, 0)].rpartition("@")
    if at:
        return userinfo, rest[len(userinfo) + 1 :]
    return None, rest


def _may_hold_password(rest: str) -> bool:
    """Whether the part of a URL after ``://`` may start with ``user:password@``: a ``:``
    before its first ``/``, ``?`` or ``#`` (a user name holds none of those)."""
    return ":" in rest[: _authority_end(rest, 0)]


def _authority_end(rest: str, start: int) -> int:
    """Where the authority that begins at *start* ends: its first ``/``, ``?`` or ``#``."""
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop, start)
        if found != -1:
            end = min(end, found)
    return end


_RAW_USERINFO = re.compile(r"((?!\[)[^:/?#@]*):[^@]*@")


def _split_host_port(
    authority: str, url: str, *, doubtful: bool, after_userinfo: bool
) -> tuple[str, int | None]:
    """*doubtful*: the authority may be a piece of a raw password; errors do not quote it.

    Without a userinfo (*after_userinfo* false) a bad port is not quoted either: a URL that
    lacks its ``@host`` (``postgresql://app:hunter2/shop``) reads the password as the port.
    """
    if authority.startswith("["):
        end = authority.find("]")
        if end == -1:
            raise ConfigError(f"unclosed IPv6 address in {_redact_raw(url)!r}")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"invalid host in {_redact_raw(url)!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = authority.partition(":")
    if not port_text:
        return host, None
    port = whole_number(port_text)
    if port is None or not 0 < port < 65536:
        digits = port_text.isascii() and port_text.isdigit()
        shown = f" {port_text!r}" if digits and after_userinfo and not doubtful else ""
        hint = ""
        if not after_userinfo and not digits:
            hint = (
                " (a URL without '@' reads 'user:password' as host and port: is its "
                "'@host' missing?)"
            )
        raise ConfigError(f"invalid port{shown} in {_redact_raw(url)!r}; expected 1-65535{hint}")
    return host, port


def _redact_raw(url: str) -> str:
    """Hide the password of a URL that may not even parse.

    Whatever lies between ``://`` and the *last* ``@`` is shown as ``***`` (after the user
    name, when the text starts with a plain ``user:``), however the URL was meant to be split:
    a raw password may hold ``@``, ``/``, ``?`` or ``[``. Without an ``@``, what follows a
    ``:`` of the authority is ``***`` unless it is a port: ``app:hunter2/shop`` lacks its
    ``@host``, and its password would read as a port. Secret options are hidden as well, and
    the password of an option that is a URL. Text that is not a URL is ``***`` whole.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or _UNSAFE_SCHEME.search(scheme):
        return _REDACTED
    _, at, tail = rest.rpartition("@")
    if at:
        match = _RAW_USERINFO.match(rest)
        user = f"{match.group(1)}:" if match is not None else ""
        tail = f"{user}{_REDACTED}@{tail}"
    else:
        authority = rest[: _authority_end(rest, 0)]
        host, colon, port = authority.partition(":")
        if colon and not authority.startswith("[") and not _is_port(port):
            # the rest too: a raw password may hold '/', '?' or '#'
            return f"{scheme}{sep}{host}:{_REDACTED}"
    head, question, query = tail.partition("?")
    if question:
        pairs = []
        for pair in query.split("&"):
            key, equals, value = pair.partition("=")
            if equals and is_secret_option(unquote_plus(key)):
                pairs.append(f"{key}={_REDACTED}")
                continue
            decoded = unquote_plus(value)
            shown = _redact_option_value(decoded)
            pairs.append(pair if shown == decoded else f"{key}={shown}")
        tail = head + "?" + "&".join(pairs)
    return f"{scheme}{sep}{tail}"


def _is_port(text: str) -> bool:
    port = whole_number(text)
    return port is not None and 0 < port < 65536


@dataclass(frozen=True)
class Option(Generic[T]):
    """One query-string option a backend accepts, with its parser and documentation.

    *accepted* is the human sentence an error shows ("a whole number >= 1", "one of a, b").
    """

    name: str
    parse: Callable[[str], T]
    default: T
    accepted: str
    doc: str = ""

    def convert(self, raw: str, *, backend: str) -> T:
        try:
            return self.parse(raw)
        except (ValueError, TypeError):
            raise invalid_option(self.name, raw, backend, self.accepted) from None


# below 2**63: a value every driver and C API takes
MAX_DIGITS = 18


def whole_number(raw: str) -> int | None:
    """*raw* as a whole number if it is one written plainly, else None.

    Plainly: ASCII digits only (no sign, space, ``_`` or digits of other scripts, which
    ``int()`` would take), at most `MAX_DIGITS` of them. The rule of ``ASYNCIFY_THREADS``, URL
    ports and integer URL options.
    """
    if raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS:
        return int(raw)
    return None


def int_option(name: str, default: int, *, minimum: int = 0, doc: str = "") -> Option[int]:
    """An integer option with a lower bound, in ASCII digits (see `whole_number`)."""

    def parse(raw: str) -> int:
        value = whole_number(raw)
        if value is None or value < minimum:
            raise ValueError(raw)
        return value

    return Option(
        name, parse, default, f"a whole number >= {minimum}, up to {MAX_DIGITS} digits", doc
    )


# INT_MAX milliseconds, about 24.8 days: the longest timeout every driver takes (SQLite's
# busy timeout and PostgreSQL's statement_timeout are C ints of milliseconds; a longer one
# overflows, and SQLite then does not wait at all)
MAX_SECONDS = 2_147_483

_PLAIN_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")


def float_option(
    name: str,
    default: float | None,
    *,
    positive: bool = False,
    no_limit: bool = False,
    doc: str = "",
) -> Option[float | None]:
    """A number of seconds: from 0 (above 0 if *positive*) to `MAX_SECONDS`.

    Written as a plain ASCII decimal (``2``, ``0.5``, ``1e3``; not ``nan``, ``-1``, ``1_0``
    or other scripts' digits). With *no_limit*, ``none`` and ``inf`` are accepted and parse
    to None, which the backend reads as "no limit"; without it they are errors, as is any
    value past `MAX_SECONDS` (``1e309`` included).
    """

    def parse(raw: str) -> float | None:
        if no_limit and raw.lower() in ("none", "inf", "infinity"):
            return None
        if not raw.isascii() or _PLAIN_NUMBER.fullmatch(raw) is None:
            raise ValueError(raw)
        value = float(raw)
        if not (value > 0 if positive else value >= 0) or not value <= MAX_SECONDS:
            raise ValueError(raw)
        return value

    low = "above 0, up" if positive else "from 0"
    accepted = f"a number of seconds {low} to {MAX_SECONDS} (about 24.8 days)"
    if no_limit:
        accepted += ", or 'none' or 'inf' for no limit"
    return Option(name, parse, default, accepted, doc)


def bool_option(name: str, default: bool, *, doc: str = "") -> Option[bool]:
    """A boolean option spelled true/false, 1/0, yes/no or on/off."""

    def parse(raw: str) -> bool:
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(raw)

    return Option(name, parse, default, "true or false", doc)


def choice_option(name: str, default: str, choices: Iterable[str], *, doc: str = "") -> Option[str]:
    """An option that takes one of a fixed set of strings."""
    allowed = tuple(choices)

    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(raw)
        return raw

    return Option(name, parse, default, "one of " + ", ".join(allowed), doc)


def str_option(name: str, default: str | None, *, doc: str = "") -> Option[str | None]:
    """A free-form string option."""
    return Option(name, str, default, "any string", doc)


def validate_options(
    url: BackendURL, options: Iterable[Option[Any]], *, backend: str
) -> dict[str, Any]:
    """Convert *url*'s query options with *options*; unknown or bad ones are a `ConfigError`.

    Returns every declared option, defaults filled in.
    An error about a URL read from the environment starts with the variable's name.
    """
    declared = {opt.name: opt for opt in options}
    origin = f"{url.source}: " if url.source else ""
    unknown = sorted(set(url.options) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        close = difflib.get_close_matches(unknown[0], declared, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{origin}unknown option {unknown[0]!r} for the {backend!r} backend in {url}; "
            f"known options: {known}{hint}"
        )
    values = {name: opt.default for name, opt in declared.items()}
    for name, raw in url.options.items():
        try:
            values[name] = declared[name].convert(raw, backend=backend)
        except ConfigError as exc:
            if not origin:
                raise
            raise ConfigError(f"{origin}{exc}") from None
    return values


def env_setting(*names: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The first non-empty environment variable among *names*, or None."""
    env = os.environ if environ is None else environ
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def resolve_url(
    explicit: str | BackendURL | None, env_names: tuple[str, ...], default: str
) -> BackendURL:
    """Apply the precedence explicit argument > environment > embedded default.

    A URL from the environment keeps the variable's name as its `BackendURL.source`, and an
    error about it starts with that name (``environment variable DATABASE_URL: ...``).
    """
    if explicit is not None:
        return BackendURL.parse(explicit)
    for name in env_names:
        value = os.environ.get(name)
        if value:
            source = f"environment variable {name}"
            try:
                parsed = BackendURL.parse(value)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
            return parsed.replace(source=source)
    return BackendURL.parse(default)


@contextlib.contextmanager
def url_errors(url: BackendURL) -> Iterator[None]:
    """Around the code that checks and uses *url*: a `ConfigError` raised in it, when *url*
    was read from the environment (`BackendURL.source`), becomes one whose message starts
    with the variable's name (``environment variable DATABASE_URL: ...``), caused by the
    first. A URL given in code keeps its errors, as does one that names its source
    already. The facades wrap their whole construction and opening in it, so every check,
    present or future, names the variable without knowing where the URL came from."""
    try:
        yield
    except ConfigError as exc:
        source = url.source
        if not source or str(exc).startswith(f"{source}: "):
            raise
        raise ConfigError(f"{source}: {exc}", orig=exc.orig) from exc
