"""Scanner settings, read from ``[tool.asyncify-kit.scan]`` in pyproject.toml.

```toml
[tool.asyncify-kit.scan]
extra-rules = { "mylib.slow_call" = "use mylib.async_call" }
ignore = ["ASY104", "file-os"]       # rule ids or names
exclude = ["migrations", "tests/fixtures/*"]
offload-decorators = ["mylib.threaded"]
```
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError
from ._rules import RULES, rule_for

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    # tomli is a dependency on Python 3.10 only, so it may be absent where mypy runs
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["ScanConfig", "find_pyproject", "load_config"]

_KEYS = ("extra-rules", "ignore", "exclude", "offload-decorators")


@dataclass(frozen=True)
class ScanConfig:
    """What the scanner looks for and what it skips.

    `extra_rules` maps a fully qualified call name (``"mylib.slow_call"``, or a prefix ending
    in ``.*``) to the fix to suggest; `ignore` holds rule ids; `exclude` holds glob patterns
    matched against paths relative to the project root (a pattern without ``/`` matches any
    path component); `offload_decorators` names extra decorators that run a function in a
    thread; `project_root` is the directory `exclude` patterns are relative to (`load_config`
    sets the directory of the pyproject.toml; default: the scan's root).

    Example:
        >>> sorted(ScanConfig(ignore=frozenset({"ASY104"})).with_ignored(["time-sleep"]).ignore)
        ['ASY104', 'ASY111']
    """

    extra_rules: Mapping[str, str] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()
    exclude: tuple[str, ...] = ()
    offload_decorators: frozenset[str] = frozenset()
    project_root: Path | None = None

    def with_ignored(self, keys: Iterable[str]) -> ScanConfig:
        """A copy that also ignores `keys` (rule ids or names)."""
        return replace(self, ignore=self.ignore | _rule_ids(keys, "ignore"))

    def with_excluded(self, patterns: Iterable[str]) -> ScanConfig:
        """A copy that also excludes the glob `patterns`."""
        return replace(self, exclude=(*self.exclude, *patterns))

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], source: str = "config") -> ScanConfig:
        """Build a config from the ``[tool.asyncify-kit.scan]`` table; unknown keys fail."""
        unknown = sorted(set(table) - set(_KEYS))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)} in [tool.asyncify-kit.scan]; "
                f"accepted: {', '.join(_KEYS)}"
            )
        extra = table.get("extra-rules", {})
        if not isinstance(extra, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and k for k, v in extra.items()
        ):
            raise ConfigError(
                f"{source}: extra-rules must be a table of call name = suggested fix strings"
            )
        return cls(
            extra_rules=dict(extra),
            ignore=_rule_ids(_strings(table, "ignore", source), f"{source}: ignore"),
            exclude=tuple(_strings(table, "exclude", source)),
            offload_decorators=frozenset(_strings(table, "offload-decorators", source)),
        )


def _strings(table: Mapping[str, Any], key: str, source: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{source}: {key} must be a list of strings")
    return value


def _rule_ids(keys: Iterable[str], where: str) -> frozenset[str]:
    ids = set()
    for key in keys:
        rule = rule_for(key)
        if rule is None:
            raise ConfigError(
                f"{where}: unknown rule {key!r}; known rules: "
                + ", ".join(f"{r.id} ({r.name})" for r in RULES.values())
            )
        ids.add(rule.id)
    return frozenset(ids)


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml in `start` or one of its parents."""
    start = start.resolve()
    for directory in (start, *start.parents) if start.is_dir() else start.parents:
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(pyproject: Path | None) -> ScanConfig:
    """Read ``[tool.asyncify-kit.scan]`` from `pyproject` (a default config when absent)."""
    if pyproject is None:
        return ScanConfig()
    try:
        with pyproject.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {pyproject}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject}: invalid TOML: {exc}") from exc
    table: Any = data
    for depth, key in enumerate(("tool", "asyncify-kit", "scan"), 1):
        table = table.get(key, {})
        if not isinstance(table, dict):
            name = ".".join(("tool", "asyncify-kit", "scan")[:depth])
            raise ConfigError(f"{pyproject}: [{name}] must be a table")
    config = ScanConfig.from_mapping(table, source=str(pyproject))
    return replace(config, project_root=pyproject.resolve().parent)
