"""Keep secrets out of reprs, log lines and error messages.

Credentials reach the HTTP facade four ways: an ``Authorization`` or ``Proxy-Authorization``
header, cookies (``Cookie`` / ``Set-Cookie``), a password in a URL (``https://user:pw@host/``)
and a query parameter named like a secret (``?access_token=...``, by the rule of
`asyncify_kit._config.is_secret_option` that backend URLs use too). Everything the facade
prints goes through these functions; the URL password is also taken out of the URL before a
backend sees it (it becomes a Basic ``Authorization`` header), so a backend's own exception
text cannot carry it either. A query parameter stays in the URL sent: only what the facade
prints is redacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

from .._config import is_secret_option

__all__ = ["REDACTED", "SENSITIVE_HEADERS", "redact_header", "redact_text", "redact_url"]

REDACTED = "[redacted]"

SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)

# ``user:password@``: the password runs to the *last* "@" (urllib splits there, and a password
# may hold "@", "/", "?" or "#" that its writer did not percent-encode), so a path or query
# with an "@" after a ``host:port`` is redacted too: in doubt, redact. In a URL alone the
# password may hold anything; in free text it ends at a space.
_USERINFO_IN_URL = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/?#:]*):(?P<pw>.*)@", re.DOTALL
)
_USERINFO_IN_TEXT = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/?#:\s]*):(?P<pw>\S*)@"
)
_AUTH_VALUE = re.compile(
    r"(?P<name>(?:proxy-)?authorization|cookie|set-cookie)(?P<sep>['\"]?\s*[:=,]\s*['\"]?)"
    r"(?P<value>[^'\"\r\n]+)",
    re.IGNORECASE,
)
_SCHEME_CREDENTIALS = re.compile(r"\b(?P<scheme>Basic|Bearer|Digest|Token)\s+[A-Za-z0-9._~+/=-]+")
# ``?name=value`` / ``&name=value`` (``;`` separates too): in a URL the value runs to the next
# separator or the fragment; in free text (a foreign error message) also to a space or quote
_QUERY_PARAM_IN_URL = re.compile(r"(?P<head>[?&;](?P<name>[^=&;#?\s]+)=)(?P<value>[^&;#]+)")
_QUERY_PARAM_IN_TEXT = re.compile(
    r"(?P<head>[?&;](?P<name>[^=&;#?\s'\"<>]+)=)(?P<value>[^&;#\s'\"<>]+)"
)


def _redact_userinfo(pattern: re.Pattern[str], text: str) -> str:
    if "@" not in text:
        return text
    return pattern.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


def _redact_query(pattern: re.Pattern[str], text: str) -> str:
    if "=" not in text:
        return text
    return pattern.sub(_redact_param, text)


def _redact_param(match: re.Match[str]) -> str:
    if is_secret_option(unquote_plus(match["name"])):
        return f"{match['head']}{REDACTED}"
    return match[0]


def redact_url(url: str) -> str:
    """*url* with the password of its user info (everything from the first ":" after the
    user to the last "@") and the values of its secret-named query parameters replaced.

    >>> redact_url("https://ann:s3cret@example.org/x?page=2&access_token=abc")
    'https://ann:[redacted]@example.org/x?page=2&access_token=[redacted]'
    """
    return _redact_query(_QUERY_PARAM_IN_URL, _redact_userinfo(_USERINFO_IN_URL, url))


def redact_header(name: str, value: str) -> str:
    """*value*, or the redaction marker when the header *name* carries credentials."""
    return REDACTED if name.lower() in SENSITIVE_HEADERS else value


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """*text* (a foreign error message, say) with URL passwords, secret-named query
    parameters, credential headers and any of the known *secrets* replaced."""
    text = _redact_query(_QUERY_PARAM_IN_TEXT, _redact_userinfo(_USERINFO_IN_TEXT, text))
    text = _AUTH_VALUE.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    text = _SCHEME_CREDENTIALS.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, REDACTED)
    return text
