"""`scan_paths`: find the files, parse each once, build the project, report the findings."""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import gc
import io
import os
import posixpath
import re
import stat
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
from ._rules import RULES, SYNTAX_ERROR_RULE, rule_for

__all__ = ["scan_paths"]

# tool and build output: skipped unless the directory is a package (``app/build/``)
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
# ``ignore``, then a bracketed list of rules (and any text), or the rest of the comment
_IGNORE_COMMENT = re.compile(r"#\s*asyncify:\s*ignore\b(?:\s*\[([^\]]*)\]|(.*))")


def scan_paths(
    paths: Sequence[str | os.PathLike[str]],
    config: ScanConfig | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
) -> ScanResult:
    """Scan files and directories for blocking calls reachable from ``async def`` functions.

    Directories are searched recursively for ``*.py`` files (hidden directories, virtual
    environments, ``__pycache__``, ``node_modules``, ``site-packages``, ``build`` and ``dist``
    are skipped, unless they are packages, as are a FIFO, socket or
    device named ``*.py``, and every path matched by ``config.exclude``, relative to
    ``config.project_root`` (default: `root`); files named explicitly are always scanned; a
    linked file is scanned once). Paths in the findings
    are relative to `root` (default: the current directory). A file that does not parse, or
    code nested too deeply to analyse, is reported as an ``ASY001`` finding and the scan goes
    on. A path that does not exist
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
    anchor = config.project_root.resolve() if config.project_root is not None else base
    files = list(_discover([Path(p) for p in paths], anchor, config.exclude))

    names = _ImportNames(base, {scan_base for _, scan_base in files})
    modules: list[ModuleInfo] = []
    aliases: dict[str, ModuleInfo] = {}
    local_names: dict[tuple[Path, str], ModuleInfo] = {}
    ignores: dict[ModuleInfo, dict[int, frozenset[str] | None]] = {}
    findings: list[Finding] = []
    lines = 0
    for file, _ in files:
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
            line, column = _error_position(source, exc)
            findings.append(_unparsable(display, line, column, f"syntax error: {exc.msg}"))
            continue
        except ValueError as exc:  # null bytes, undecodable source
            findings.append(_unparsable(display, 1, 1, f"cannot parse the file: {exc}"))
            continue
        except (RecursionError, MemoryError):
            findings.append(_unparsable(display, 1, 1, "too deeply nested to parse"))
            continue
        root, name, is_package = names.own(file)
        importable = names.importable(root, name)
        key = importable[0] if importable else name
        try:
            module = build_module(key, file, display, is_package, source, tree)
        except RecursionError:
            findings.append(_unparsable(display, 1, 1, "too deeply nested to scan"))
            continue
        module.root = root
        modules.append(module)
        local_names.setdefault((root, name), module)
        for alias in importable[1:]:
            aliases.setdefault(alias, module)
        if b"asyncify:" in source:
            ignores[module] = _ignore_comments(source, display)

    project = Project(
        modules, aliases, config.extra_rules, config.offload_decorators, ignores, local_names
    )
    for module in modules:
        for func in module.functions:
            if func.is_async:
                findings.extend(_findings_of(project, func, ignores))
    for func in project.too_deep:
        findings.append(
            _unparsable(
                func.module.display,
                func.line,
                func.module.line_column(func.line, func.node.col_offset),
                f"{func.display}: names too deeply nested to resolve",
                "its calls were not scanned",
            )
        )

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
    ignored = _function_ignores(func, ignores) if best else frozenset()
    for blocking, hops in best.items():
        rule = RULES[blocking.rule_id]
        if ignored is None or rule.id in ignored or rule.name in ignored:
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


def _function_ignores(
    func: FunctionInfo, ignores: dict[ModuleInfo, dict[int, frozenset[str] | None]]
) -> frozenset[str] | None:
    """The rules silenced in the whole of `func` (None: every rule) by a comment on its
    header, any line from ``def`` to the colon ending the signature (black puts that colon on
    a line of its own, ``):``).

    Comments on call lines were applied to the call graph already (`Project.sites`).
    """
    comments = ignores.get(func.module)
    if not comments or not any(
        line in comments for line in range(func.line, func.node.body[0].lineno + 1)
    ):
        return frozenset()
    keys: set[str] = set()
    for line in _header_lines(func):
        if line in comments:
            found = comments[line]
            if found is None:
                return None
            keys |= found
    return frozenset(keys)


def _header_lines(func: FunctionInfo) -> range:
    """The lines of the ``def`` header of `func`, from ``def`` to the colon of its signature."""
    first = func.line
    body = func.node.body[0].lineno
    if body <= first:
        return range(first, first + 1)
    module = func.module
    encoding = "utf-8"
    with contextlib.suppress(SyntaxError):  # parsed already: the declaration is valid
        encoding = tokenize.detect_encoding(io.BytesIO(module.source).readline)[0]
    lines = [
        line.decode(encoding, "replace")
        for line in module.source.splitlines(True)[first - 1 : body]
    ]
    depth = 0
    try:
        for token in tokenize.generate_tokens(iter(lines).__next__):
            if token.type != tokenize.OP:
                continue
            if token.string in "([{":
                depth += 1
            elif token.string in ")]}":
                depth -= 1
            elif token.string == ":" and depth == 0:
                return range(first, first + token.start[0])
    except (tokenize.TokenError, SyntaxError, StopIteration):
        pass
    return range(first, first + 1)


def _ignore_comments(source: bytes, display: str) -> dict[int, frozenset[str] | None]:
    """``# asyncify: ignore`` (every rule) or ``# asyncify: ignore[ASY101, file-open]``.

    Anything after the bracket is free text (a reason); after a bare ``ignore``, only another
    comment may follow (``# asyncify: ignore  # why``). Other text (``ignore ASY105``,
    ``ignore-file``) or an unknown rule is a `ConfigError`, not a comment silencing every rule,
    or none.
    """
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
                if match.group(2).strip() and not match.group(2).lstrip().startswith("#"):
                    raise ConfigError(
                        f"{display}:{line}: malformed ignore comment {match.group(0).strip()!r}: "
                        "write `# asyncify: ignore` (every rule) or "
                        "`# asyncify: ignore[rule, ...]`"
                    )
                found[line] = None
            else:
                keys: set[str] = set()
                listed = [
                    key for key in (part.strip() for part in match.group(1).split(",")) if key
                ]
                for key in listed or [""]:
                    rule = rule_for(key)
                    if rule is None:
                        raise ConfigError(
                            f"{display}:{line}: unknown rule {key!r} in an ignore comment; "
                            "known rules: "
                            + ", ".join(f"{r.id} ({r.name})" for r in RULES.values())
                        )
                    keys.add(rule.id)
                    keys.add(rule.name)
                previous = found.get(line, frozenset())
                found[line] = None if previous is None else previous | keys
    except (tokenize.TokenError, SyntaxError):
        pass
    return found


def _unparsable(
    display: str, line: int, column: int, message: str, outcome: str = "the file was not scanned"
) -> Finding:
    return Finding(
        rule_id=SYNTAX_ERROR_RULE.id,
        rule_name=SYNTAX_ERROR_RULE.name,
        path=display,
        line=line,
        column=column,
        message=f"{message}; {outcome}",
        fix=SYNTAX_ERROR_RULE.fix,
        blocking_call="",
        function="",
        chain=(),
    )


def _error_position(source: bytes, exc: SyntaxError) -> tuple[int, int]:
    """The line and 1-based character column of a syntax error in `source`.

    Parsing bytes, the offset counts UTF-8 bytes or characters depending on the encoding
    declaration; parsing the decoded text, it always counts characters.
    """
    try:
        encoding = tokenize.detect_encoding(io.BytesIO(source).readline)[0]
        ast.parse(source.decode(encoding))
    except SyntaxError as again:
        exc = again
    except (ValueError, LookupError, RecursionError, MemoryError):
        pass  # not decodable: keep the first error's position
    return exc.lineno or 1, exc.offset or 1


def _display(file: Path, base: Path) -> str:
    try:
        return file.relative_to(base).as_posix()
    except ValueError:
        return file.as_posix()


def _discover(
    paths: list[Path], anchor: Path, exclude: tuple[str, ...]
) -> Iterable[tuple[Path, Path]]:
    """``(file, directory it was found under)`` for every Python file to scan, once each.

    `exclude` patterns match paths relative to `anchor` (the project root), else, for a path
    outside it, relative to the directory being searched.
    """
    # ``./migrations/`` is ``migrations``
    exclude = tuple(posixpath.normpath(pattern.strip("/")) for pattern in exclude)
    seen: set[Path] = set()
    for given in paths:
        path = given.resolve()
        if path.is_file():
            if path not in seen:
                seen.add(path)
                yield path, path.parent
            continue
        if not path.is_dir():
            problem = (
                "not a regular file or directory" if path.exists() else "no such file or directory"
            )
            raise ConfigError(f"{problem}: {given}")
        for directory, dirnames, filenames in os.walk(path):
            current = Path(directory)
            dirnames[:] = sorted(
                name
                for name in dirnames
                if not name.startswith(".")
                and (name not in _SKIP_DIRS or (current / name / "__init__.py").is_file())
                and not name.endswith(".egg-info")
                and not _excluded(current / name, anchor, path, exclude)
            )
            for filename in sorted(filenames):
                if not filename.endswith(".py"):
                    continue
                file = current / filename
                if _special(file):
                    continue
                # the walk is below a resolved directory and does not enter linked ones:
                # only a linked file can be met again under another name
                real = file.resolve() if file.is_symlink() else file
                if real in seen or _excluded(file, anchor, path, exclude):
                    continue
                seen.add(real)
                yield file, path


def _special(file: Path) -> bool:
    """True for a FIFO, socket or device named ``*.py`` (or a link to one): reading a FIFO
    waits for a writer, for ever. A file that cannot be looked at is kept: reading it
    reports why (ASY001)."""
    try:
        return not stat.S_ISREG(file.stat().st_mode)
    except OSError:
        return False


def _excluded(path: Path, base: Path, scanned: Path, patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return False
    try:
        relative = path.relative_to(base).as_posix()
    except ValueError:
        relative = path.relative_to(scanned).as_posix()
    parts = relative.split("/")
    for pattern in patterns:
        if "/" in pattern:
            if any(
                fnmatch.fnmatchcase("/".join(parts[: i + 1]), pattern) for i in range(len(parts))
            ):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
    return False


class _ImportNames:
    """The names a scanned file is imported by, found the way Python finds them.

    A module's own import root is the nearest directory above its package without an
    ``__init__.py`` (a script's own directory); from that root it has its own name
    (``app.api`` for ``src/app/api.py``, ``requests`` for ``examples/requests.py``). That name
    is importable from everywhere only when the root is a source root (on ``sys.path`` when the
    project runs): the scan's root (``--root``, default the current directory) and a directory
    scanned outside it, a directory holding ``pyproject.toml``, ``setup.py`` or ``setup.cfg``,
    and any ``src`` directory. Otherwise it is importable only by the modules of the same
    import root (the scripts of ``examples/``), and from everywhere by its path below a source
    root (``examples.requests``, a namespace package). So a project file named like a library
    does not hide the library from the rest of the project, and an absolute ``import time``
    in a package never means the package's own ``time.py``.
    """

    _MARKERS = ("pyproject.toml", "setup.py", "setup.cfg")

    def __init__(self, base: Path, scanned: set[Path]) -> None:
        self._init: dict[Path, bool] = {}
        self._source: dict[Path, bool] = {}
        self._prefixes: dict[Path, list[str]] = {}
        self._explicit = {base, base / "src"}
        for directory in scanned:
            if not directory.is_relative_to(base):
                root = self._import_root(directory)
                self._explicit.update((root, root / "src"))

    def own(self, file: Path) -> tuple[Path, str, bool]:
        """The file's import root, its name from there, and whether it is a package."""
        is_package = file.name == "__init__.py"
        parts: list[str] = [] if is_package else [file.stem]
        directory = file.parent
        while self._has_init(directory) and directory.parent != directory:
            parts.append(directory.name)
            directory = directory.parent
        return directory, ".".join(reversed(parts)) or file.parent.name, is_package

    def importable(self, root: Path, name: str) -> list[str]:
        """The names a module of import root `root` is importable by from everywhere."""
        prefixes = self._prefixes.get(root)
        if prefixes is None:
            prefixes = self._prefixes[root] = self._source_prefixes(root)
        return [f"{prefix}.{name}" if prefix else name for prefix in prefixes]

    def _source_prefixes(self, root: Path) -> list[str]:
        """The path of `root` below each source root holding it, innermost first."""
        prefixes: list[str] = []
        parts: list[str] = []
        directory = root
        while True:
            if self._is_source_root(directory):
                prefixes.append(".".join(reversed(parts)))
            if directory.parent == directory:
                return prefixes
            parts.append(directory.name)
            directory = directory.parent

    def _is_source_root(self, directory: Path) -> bool:
        known = self._source.get(directory)
        if known is None:
            known = self._source[directory] = (
                directory in self._explicit
                or directory.name == "src"
                or any((directory / marker).is_file() for marker in self._MARKERS)
            )
        return known

    def _import_root(self, directory: Path) -> Path:
        while self._has_init(directory) and directory.parent != directory:
            directory = directory.parent
        return directory

    def _has_init(self, directory: Path) -> bool:
        known = self._init.get(directory)
        if known is None:
            known = self._init[directory] = (directory / "__init__.py").is_file()
        return known
