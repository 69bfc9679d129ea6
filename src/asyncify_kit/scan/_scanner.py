"""`scan_paths`: find the files, parse each once, build the project, report the findings."""

from __future__ import annotations

import ast
import fnmatch
import gc
import io
import os
import re
import time
import tokenize
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..exceptions import ConfigError
from ._config import ScanConfig
from ._findings import Finding, Hop, ScanResult
from ._graph import (
    Blocking,
    Edge,
    FunctionInfo,
    ModuleInfo,
    Project,
    Site,
    build_module,
    silenced,
)
from ._rules import RULES, SYNTAX_ERROR_RULE

__all__ = ["scan_paths"]

_SKIP_DIRS = frozenset(
    {
        "__pycache__",
        "node_modules",
        "venv",
        "build",
        "dist",
        "site-packages",
    }
)
_IGNORE_COMMENT = re.compile(r"#\s*asyncify:\s*ignore\b(?:\[([^\]]*)\])?")
_RULE_ID = re.compile(r"ASY\d+", re.IGNORECASE)


def scan_paths(
    paths: Sequence[str | os.PathLike[str]],
    config: ScanConfig | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
) -> ScanResult:
    """Scan files and directories for blocking calls reachable from ``async def`` functions.

    Directories are searched recursively for ``*.py`` files (hidden directories, virtual
    environments, ``__pycache__``, ``build`` and ``dist`` are skipped, and so is every path
    matched by ``config.exclude``; files named explicitly are always scanned). Paths in the
    findings are relative to `root` (default: the current directory). A file that does not
    parse is reported as an ``ASY001`` finding and the scan goes on. A path that does not exist
    raises `ConfigError`. The cyclic garbage collector is paused while the scan runs: the
    syntax trees of a large project are millions of objects, and collecting them over and
    over would triple the time.

    Example:
        >>> import pathlib, tempfile
        >>> project = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (project / "app.py").write_text(
        ...     "import time\\n"
        ...     "def pause():\\n"
        ...     "    time.sleep(1)\\n"
        ...     "async def handler():\\n"
        ...     "    pause()\\n"
        ... )
        >>> [f.chain_text() for f in scan_paths([project], root=project).findings]
        ['app.py:5 handler -> app.py:3 pause -> time.sleep']
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _scan(paths, config if config is not None else ScanConfig(), root)
    finally:
        if collecting:
            gc.enable()


def _scan(
    paths: Sequence[str | os.PathLike[str]],
    config: ScanConfig,
    root: str | os.PathLike[str] | None,
) -> ScanResult:
    started = time.perf_counter()
    base = Path(root) if root is not None else Path.cwd()
    base = base.resolve()
    files = list(_discover([Path(p) for p in paths], base, config.exclude))

    modules: list[ModuleInfo] = []
    aliases: dict[str, ModuleInfo] = {}
    ignores: dict[ModuleInfo, dict[int, frozenset[str] | None]] = {}
    findings: list[Finding] = []
    lines = 0
    init_cache: dict[Path, bool] = {}
    for file, scan_base in files:
        display = _display(file, base)
        try:
            source = file.read_bytes()
        except OSError as exc:
            findings.append(_unparsable(display, 1, 1, f"cannot read the file: {exc.strerror}"))
            continue
        lines += source.count(b"\n") + (0 if source.endswith(b"\n") or not source else 1)
        try:
            tree = ast.parse(source, filename=str(file))
        except SyntaxError as exc:
            findings.append(
                _unparsable(display, exc.lineno or 1, exc.offset or 1, f"syntax error: {exc.msg}")
            )
            continue
        except ValueError as exc:  # null bytes, undecodable source
            findings.append(_unparsable(display, 1, 1, f"cannot parse the file: {exc}"))
            continue
        except (RecursionError, MemoryError):
            findings.append(_unparsable(display, 1, 1, "too deeply nested to parse"))
            continue
        name, alias, is_package = _module_names(file, scan_base, init_cache)
        module = build_module(name, file, display, is_package, source, tree)
        modules.append(module)
        if alias and alias != name:
            aliases.setdefault(alias, module)
        if b"asyncify:" in source:
            ignores[module] = _ignore_comments(source)

    project = Project(modules, aliases, config.extra_rules, config.offload_decorators, ignores)
    for module in modules:
        for func in module.functions:
            if func.is_async:
                findings.extend(_findings_of(project, func, ignores))

    findings = [f for f in findings if f.rule_id not in config.ignore]
    findings.sort(key=lambda f: (f.path, f.line, f.column, f.rule_id, f.chain_text()))
    return ScanResult(
        findings=tuple(findings),
        files=len(files),
        lines=lines,
        seconds=time.perf_counter() - started,
        root=str(base),
    )


def _findings_of(
    project: Project,
    func: FunctionInfo,
    ignores: dict[ModuleInfo, dict[int, frozenset[str] | None]],
) -> Iterable[Finding]:
    best: dict[Blocking, list[tuple[FunctionInfo, Site]]] = {}
    for site in project.sites(func):
        if isinstance(site, Blocking):
            if site not in best:
                best[site] = [(func, site)]
            continue
        assert isinstance(site, Edge)
        for blocking, chain in project.reach(site.target).items():
            if site.ignored and silenced(blocking, site):
                continue
            known = best.get(blocking)
            if known is None or len(known) > chain.length + 1:
                best[blocking] = [(func, site), *chain]
    for blocking, hops in best.items():
        rule = RULES[blocking.rule_id]
        if _ignored(rule.id, rule.name, func, ignores):
            continue
        trail = tuple(
            Hop(
                path=owner.module.display,
                line=site.line,
                column=owner.module.line_column(site.line, site.col),
                function=owner.display,
                call=site.call,
            )
            for owner, site in hops
        )
        if len(hops) == 1:
            message = f"blocking call {blocking.name}() in async def {func.display}"
        else:
            through = " -> ".join(owner.display for owner, _ in hops[1:])
            message = (
                f"blocking call {blocking.name}() reached from async def {func.display} "
                f"through {through}"
            )
        yield Finding(
            rule_id=rule.id,
            rule_name=rule.name,
            path=trail[0].path,
            line=trail[0].line,
            column=trail[0].column,
            message=message,
            fix=blocking.fix or rule.fix,
            blocking_call=blocking.name,
            function=func.display,
            chain=trail,
        )


def _ignored(
    rule_id: str,
    rule_name: str,
    func: FunctionInfo,
    ignores: dict[ModuleInfo, dict[int, frozenset[str] | None]],
) -> bool:
    """A comment on the ``async def`` line silences the whole function.

    Comments on call lines were applied to the call graph already (`Project.sites`).
    """
    comments = ignores.get(func.module)
    if not comments or func.line not in comments:
        return False
    keys = comments[func.line]
    return keys is None or rule_id in keys or rule_name in keys


def _ignore_comments(source: bytes) -> dict[int, frozenset[str] | None]:
    """``# asyncify: ignore`` (every rule) or ``# asyncify: ignore[ASY101, file-open]``."""
    found: dict[int, frozenset[str] | None] = {}
    try:
        for token in tokenize.tokenize(io.BytesIO(source).readline):
            if token.type != tokenize.COMMENT:
                continue
            match = _IGNORE_COMMENT.search(token.string)
            if match is None:
                continue
            line = token.start[0]
            if match.group(1) is None:
                found[line] = None
            else:
                keys = {
                    key.upper() if _RULE_ID.fullmatch(key) else key.lower()
                    for key in (part.strip() for part in match.group(1).split(","))
                    if key
                }
                previous = found.get(line, frozenset())
                found[line] = None if previous is None else previous | keys
    except (tokenize.TokenError, SyntaxError):
        pass
    return found


def _unparsable(display: str, line: int, column: int, message: str) -> Finding:
    return Finding(
        rule_id=SYNTAX_ERROR_RULE.id,
        rule_name=SYNTAX_ERROR_RULE.name,
        path=display,
        line=line,
        column=column,
        message=f"{message}; the file was not scanned",
        fix=SYNTAX_ERROR_RULE.fix,
        blocking_call="",
        function="",
        chain=(),
    )


def _display(file: Path, base: Path) -> str:
    try:
        return file.relative_to(base).as_posix()
    except ValueError:
        return file.as_posix()


def _discover(
    paths: list[Path], base: Path, exclude: tuple[str, ...]
) -> Iterable[tuple[Path, Path]]:
    """``(file, directory it was found under)`` for every Python file to scan, once each."""
    seen: set[Path] = set()
    for given in paths:
        path = given.resolve()
        if path.is_file():
            if path not in seen:
                seen.add(path)
                yield path, path.parent
            continue
        if not path.is_dir():
            raise ConfigError(f"no such file or directory: {given}")
        for directory, dirnames, filenames in os.walk(path):
            current = Path(directory)
            dirnames[:] = sorted(
                name
                for name in dirnames
                if not name.startswith(".")
                and name not in _SKIP_DIRS
                and not name.endswith(".egg-info")
                and not _excluded(current / name, base, path, exclude)
            )
            for filename in sorted(filenames):
                if not filename.endswith(".py"):
                    continue
                file = current / filename
                if file in seen or _excluded(file, base, path, exclude):
                    continue
                seen.add(file)
                yield file, path


def _excluded(path: Path, base: Path, scanned: Path, patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return False
    try:
        relative = path.relative_to(base).as_posix()
    except ValueError:
        relative = path.relative_to(scanned).as_posix()
    parts = relative.split("/")
    for pattern in patterns:
        pattern = pattern.strip("/")
        if "/" in pattern:
            if any(
                fnmatch.fnmatchcase("/".join(parts[: i + 1]), pattern) for i in range(len(parts))
            ):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
    return False


def _module_names(file: Path, scanned: Path, cache: dict[Path, bool]) -> tuple[str, str, bool]:
    """The module's import name, another name it may be imported by, and whether a package.

    The import name follows ``__init__.py`` files upwards; the other name is the path below
    the scanned directory (``src.`` dropped), which covers namespace packages.
    """
    is_package = file.name == "__init__.py"
    parts: list[str] = [] if is_package else [file.stem]
    directory = file.parent
    while True:
        has_init = cache.get(directory)
        if has_init is None:
            has_init = cache[directory] = (directory / "__init__.py").is_file()
        if not has_init or directory.parent == directory:
            break
        parts.append(directory.name)
        directory = directory.parent
    name = ".".join(reversed(parts)) or file.parent.name
    try:
        relative = file.relative_to(scanned).with_suffix("").parts
    except ValueError:
        relative = ()
    if relative and relative[-1] == "__init__":
        relative = relative[:-1]
    if relative and relative[0] == "src":
        relative = relative[1:]
    alias = ".".join(relative)
    if alias and alias.endswith(f".{name}"):
        name, alias = alias, name
    return name, alias, is_package
