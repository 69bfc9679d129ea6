"""The TLS trust every backend verifies servers with: one `ssl.SSLContext` per client.

Left to themselves the libraries trust different certificate authorities: httpx and requests
certifi's bundle, aiohttp the system's store (through Python's default context, where
``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` apply): 144 authorities each, 169 together, on the
Debian machine of the tests; so choosing a backend could make a server's certificate fail or
pass. Here ``verify`` means the same on each: ``True`` is the system's store and, when
certifi is installed, its bundle too (what either default trusts); a path is that PEM bundle
alone; an `ssl.SSLContext` is used as given.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Union

from ..exceptions import ConfigError

__all__ = ["VerifyInput", "check_verify", "ssl_context"]

VerifyInput = Union[bool, str, "os.PathLike[str]", ssl.SSLContext]

_lock = threading.Lock()
# the context of verify=True, by the environment variables OpenSSL reads for its default store
_defaults: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def check_verify(verify: object) -> VerifyInput:
    """*verify* if it is one of the accepted kinds (a `ConfigError` otherwise; no I/O)."""
    if isinstance(verify, (bool, str, os.PathLike, ssl.SSLContext)):
        if isinstance(verify, os.PathLike) and not isinstance(os.fspath(verify), str):
            raise ConfigError("invalid verify: a path must be text, not bytes")
        return verify
    raise ConfigError(
        f"invalid verify {type(verify).__name__}; accepted: True, False, the path of a PEM "
        "file of CA certificates, or an ssl.SSLContext"
    )


def ssl_context(verify: VerifyInput) -> ssl.SSLContext | None:
    """The context that verifies servers as *verify* says (None: no verification).

    Reads certificate files: call it in a worker thread.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is True:
        key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        with _lock:
            context = _defaults.get(key)
            if context is None:
                context = _defaults[key] = _default_context()
        return context
    if verify is False:
        return None
    path = os.fspath(verify)
    if not os.path.isfile(path):
        raise ConfigError(f"invalid verify {path!r}: no such file (a PEM file of CA certificates)")
    try:
        # (given a file, the default context trusts that file alone, not the system's store)
        context = ssl.create_default_context(cafile=path)
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"invalid verify {path!r}: no CA certificate could be read from it ({exc})"
        ) from None
    return context


def _default_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    try:
        import certifi
    except ImportError:  # (aiohttp alone does not need it)
        return context
    context.load_verify_locations(cafile=certifi.where())
    return context
