"""Keep secrets out of reprs, log lines and error messages.

Credentials reach the HTTP facade three ways: an ``Authorization`` or ``Proxy-Authorization``
header, cookies (``Cookie`` / ``Set-Cookie``), and a password in a URL
(``https://user:pw@host/``). Everything the facade prints goes through these functions; the
URL password is also taken out of the URL before a backend sees it (it becomes a Basic
``Authorization`` header), so a backend's own exception text cannot carry it either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "SENSITIVE_HEADERS", "redact_header", "redact_text", "redact_url"]

REDACTED = "[redacted]"

SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)

_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*):(?P<pw>[^/@\s]*)@"
)
_AUTH_VALUE = re.compile(
    r"(?P<name>(?:proxy-)?authorization|cookie|set-cookie)(?P<sep>['\"]?\s*[:=,]\s*['\"]?)"
    r"(?P<value>[^'\"\r\n]+)",
    re.IGNORECASE,
)
_SCHEME_CREDENTIALS = re.compile(r"\b(?P<scheme>Basic|Bearer|Digest|Token)\s+[A-Za-z0-9._~+/=-]+")


def redact_url(url: str) -> str:
    """*url* with the password of its user info replaced.

    >>> redact_url("https://ann:s3cret@example.org/x")
    'https://ann:[redacted]@example.org/x'
    """
    if "@" not in url:
        return url
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", url)


def redact_header(name: str, value: str) -> str:
    """*value*, or the redaction marker when the header *name* carries credentials."""
    return REDACTED if name.lower() in SENSITIVE_HEADERS else value


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """*text* (a foreign error message, say) with URL passwords, credential headers and any of
    the known *secrets* replaced."""
    text = redact_url(text)
    text = _AUTH_VALUE.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    text = _SCHEME_CREDENTIALS.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, REDACTED)
    return text
