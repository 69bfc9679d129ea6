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

A third-party SQL backend takes the pool options every built-in server backend takes
(``min_size``, ``max_size``, ``acquire_timeout``, ``connect_timeout``, ``statement_timeout``,
``close_timeout``), defaults filled in; its class is imported only when first used, so it
declares no options of its own.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from ._config import BackendURL, Option
from .exceptions import BackendNotInstalled, ConfigError

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendSpec",
    "backends",
    "default_scheme",
    "load_backend",
    "lookup",
    "register",
]

ENTRY_POINT_GROUP = "asyncify_kit.backends"

logger = logging.getLogger("asyncify_kit")


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


def _plugin_options(family: str) -> tuple[Option[Any], ...]:
    """The options a third-party backend of *family* takes: for SQL, the common pool options
    of the built-in server backends (without them ``?max_size=2`` was an unknown option, and
    the pool found no ``min_size``); none for the other families."""
    if family != "sql":
        return ()
    from ._backends_table import _SQL_POOL  # the built-in table's own list, not a copy

    return _SQL_POOL


def _read_entry_points() -> None:
    """Add the third-party backends of the entry-point group, once (call with `_lock` held).

    A malformed entry point is logged and skipped: one broken plugin must not take every
    facade down with it.
    """
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        family, sep, scheme = ep.name.partition(":")
        module_name, colon, attr = ep.value.partition(":")
        if not sep or not family or not scheme or not colon or not module_name or not attr:
            logger.warning(
                "ignoring entry point %r = %r in group %r: its name must be 'family:scheme' "
                "and its value 'module:Class', for example "
                "'sql:postgresql+mydriver' = 'my_pkg.backend:MyDatabaseBackend'",
                ep.name,
                ep.value,
                ENTRY_POINT_GROUP,
            )
            continue
        key = (family, scheme.lower())
        if key not in _table:
            _table[key] = BackendSpec(
                family,
                scheme.lower(),
                ep.value,
                description=f"third-party backend from {ep.value}",
                options=_plugin_options(family),
            )


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
    """The spec serving *url* in *family*; `ConfigError` listing the known schemes if none.

    A bare dialect picks its default driver (``postgresql`` -> ``postgresql+asyncpg``); a
    dialect alias keeps the driver it names (``mariadb+pymysql`` -> ``mysql+pymysql``).
    """
    _ensure_builtins()
    with _lock:
        _read_entry_points()
        scheme = url.scheme
        default = _defaults.get((family, url.dialect))
        if url.driver is None:
            scheme = default or scheme
        elif (family, scheme) not in _table and default is not None:
            canonical = default.partition("+")[0]
            scheme = f"{canonical}+{url.driver}"
        spec = _table.get((family, scheme))
        if spec is None:
            origin = f"{url.source}: " if url.source else ""
            families = sorted({f for f, _ in _table})
            if family not in families:
                raise ConfigError(
                    f"{origin}unknown backend family {family!r}; known: {', '.join(families)}"
                )
            known = sorted(
                {s for f, s in _table if f == family} | {d for f, d in _defaults if f == family}
            )
            # a backend named alone (HttpClient(backend="nope")) has no URL worth showing
            where = "" if str(url) == f"{url.scheme}://" else f" in {url}"
            raise ConfigError(
                f"{origin}unknown {family} backend {url.scheme!r}{where}; known: {', '.join(known)}"
            )
        return spec


def _is_installed(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def check_installed(spec: BackendSpec) -> None:
    """`BackendNotInstalled` if a module *spec* requires cannot be found (nothing imported)."""
    for module_name in spec.requires:
        if not _is_installed(module_name):
            raise BackendNotInstalled(spec.scheme, module_name, spec.extra or "all")


def loaded_backend(spec: BackendSpec) -> type[Any] | None:
    """The backend class of *spec* if `load_backend` imported it already, else None."""
    return _loaded.get((spec.family, spec.scheme))


def load_backend(family: str, url: BackendURL) -> tuple[BackendSpec, type[Any]]:
    """Import (once) and return the backend class for *url*.

    >>> spec, cls = load_backend("sql", BackendURL.parse("sqlite:///./app.db"))
    """
    spec = lookup(family, url)
    key = (spec.family, spec.scheme)
    cls = _loaded.get(key)
    if cls is not None:
        return spec, cls
    check_installed(spec)
    module_name, _, attr = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {r.split(".")[0] for r in spec.requires}:
            raise BackendNotInstalled(spec.scheme, exc.name, spec.extra or "all") from exc
        raise
    try:
        cls = getattr(module, attr)
    except AttributeError as exc:
        raise ConfigError(
            f"the {spec.scheme!r} backend points at {spec.target!r}, but module "
            f"{module_name!r} has no attribute {attr!r}",
            orig=exc,
        ) from exc
    with _lock:
        _loaded[key] = cls
    return spec, cls


_builtins_ready = threading.Event()
_builtins_lock = threading.Lock()


def _ensure_builtins() -> None:
    """Register the built-in table once (facade packages add their option lists here).

    The flag is set only after every row is in, so a concurrent first lookup never sees a
    half-filled table.
    """
    if _builtins_ready.is_set():
        return
    with _builtins_lock:
        if _builtins_ready.is_set():
            return
        from ._backends_table import BUILTIN_BACKENDS

        for spec, default_for in BUILTIN_BACKENDS:
            for dialect in default_for:
                register(spec, default_for=dialect)
            if not default_for:
                register(spec)
        _builtins_ready.set()
