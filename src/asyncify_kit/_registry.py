"""Which backend class serves which URL scheme.

The table maps ``family`` (``sql``, ``storage``, ``http``) and a scheme (``postgresql+asyncpg``)
to a ``"module:Class"`` target that is imported only when first used, then cached. A bare
dialect (``postgresql``) picks its default driver. An unknown scheme is a `ConfigError`
listing the known ones; a known backend whose driver package is missing is a
`BackendNotInstalled` carrying the exact pip line.

Third-party backends register through the entry-point group ``asyncify_kit.backends``; the
entry point's name is ``family:scheme`` and its value ``module:Class``::

    [project.entry-points."asyncify_kit.backends"]
    "sql:postgresql+mydriver" = "my_pkg.backend:MyDatabaseBackend"
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from ._config import BackendURL, Option
from .exceptions import BackendNotInstalled, ConfigError

__all__ = ["BackendSpec", "backends", "load_backend", "lookup", "register"]

ENTRY_POINT_GROUP = "asyncify_kit.backends"


@dataclass(frozen=True)
class BackendSpec:
    """One backend: where its class lives, what it needs installed, the options it takes."""

    family: str
    scheme: str
    target: str
    requires: tuple[str, ...] = ()
    extra: str = ""
    description: str = ""
    options: tuple[Option[Any], ...] = field(default=(), compare=False)
    trio: bool = True


_lock = threading.Lock()
_table: dict[tuple[str, str], BackendSpec] = {}
_defaults: dict[tuple[str, str], str] = {}
_loaded: dict[tuple[str, str], type[Any]] = {}
_entry_points_read = False


def register(spec: BackendSpec, *, default_for: str | None = None) -> None:
    """Add (or replace) a backend; *default_for* makes it the driver a bare dialect picks."""
    with _lock:
        _table[(spec.family, spec.scheme)] = spec
        _loaded.pop((spec.family, spec.scheme), None)
        if default_for is not None:
            _defaults[(spec.family, default_for)] = spec.scheme


def _read_entry_points() -> None:
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        family, sep, scheme = ep.name.partition(":")
        if not sep or not scheme:
            raise ConfigError(
                f"entry point {ep.name!r} in group {ENTRY_POINT_GROUP!r} must be named "
                "'family:scheme', for example 'sql:postgresql+mydriver'"
            )
        key = (family, scheme.lower())
        if key not in _table:
            _table[key] = BackendSpec(family, scheme.lower(), ep.value,
                                      description=f"third-party backend from {ep.value}")


def backends(family: str | None = None) -> Iterator[BackendSpec]:
    """Every known backend (built-in and registered), sorted by family and scheme."""
    _ensure_builtins()
    with _lock:
        _read_entry_points()
        specs = sorted(_table.values(), key=lambda s: (s.family, s.scheme))
    return iter([s for s in specs if family is None or s.family == family])


def default_scheme(family: str, dialect: str) -> str | None:
    """The scheme a bare *dialect* resolves to in *family*, if any."""
    _ensure_builtins()
    return _defaults.get((family, dialect))


def lookup(family: str, url: BackendURL) -> BackendSpec:
    """The spec serving *url* in *family*; `ConfigError` listing the known schemes if none."""
    _ensure_builtins()
    with _lock:
        _read_entry_points()
        scheme = url.scheme
        if url.driver is None:
            scheme = _defaults.get((family, url.dialect), scheme)
        spec = _table.get((family, scheme))
        if spec is None:
            known = sorted(s for f, s in _table if f == family)
            raise ConfigError(
                f"unknown {family} backend {url.scheme!r} in {url}; known: {', '.join(known)}"
            )
        return spec


def load_backend(family: str, url: BackendURL) -> tuple[BackendSpec, type[Any]]:
    """Import (once) and return the backend class for *url*."""
    spec = lookup(family, url)
    key = (spec.family, spec.scheme)
    cls = _loaded.get(key)
    if cls is not None:
        return spec, cls
    for module_name in spec.requires:
        if importlib.util.find_spec(module_name) is None:
            raise BackendNotInstalled(spec.scheme, module_name, spec.extra or "all")
    module_name, _, attr = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {r.split(".")[0] for r in spec.requires}:
            raise BackendNotInstalled(spec.scheme, exc.name, spec.extra or "all") from exc
        raise
    cls = getattr(module, attr)
    with _lock:
        _loaded[key] = cls
    return spec, cls


_builtins_done = False


def _ensure_builtins() -> None:
    """Register the built-in table once (facade packages add their option lists here)."""
    global _builtins_done
    if _builtins_done:
        return
    with _lock:
        if _builtins_done:
            return
        _builtins_done = True
    from ._backends_table import BUILTIN_BACKENDS

    for spec, default_for in BUILTIN_BACKENDS:
        for dialect in default_for:
            register(spec, default_for=dialect)
        if not default_for:
            register(spec)
