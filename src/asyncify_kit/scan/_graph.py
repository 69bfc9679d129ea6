"""The project model: modules, scopes, name bindings, value inference and the call graph.

Each file is parsed once and walked once (`build_module`): the walk records, per scope,
every name binding (imports, ``def``/``class``, assignments, parameters with their
annotations, ``self.x = ...`` in methods) and, per function, the call expressions it makes.
Nothing is resolved during the walk, so files can be read in any order.

`Project` then resolves lazily and memoizes everything: the value of a binding, a dotted
name, a function's return value. A value is a reference to something named (`Ref`, a
project object or an external dotted name such as ``requests.get``), an instance of a
class (`Inst`, project or external such as ``requests.Session``), or a `functools.partial`
over another value (`Partial`). A call site resolves to an edge to a project function
(`Edge`) or to a blocking call of the rule table (`Blocking`).

Reachability (`Project.reach`) runs Tarjan's algorithm over the sync functions, so every
function is visited once, cycles included, and each keeps the shortest chain to every
blocking call it reaches.
"""

from __future__ import annotations

import ast
import contextlib
import heapq
import io
import tokenize
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ._rules import (
    ANY_METHOD_TYPES,
    ATTRIBUTE_TYPES,
    BLOCKING_CALLS,
    CUSTOM_RULE,
    FACTORIES,
    NAMESPACE_TYPES,
    OFFLOAD_DECORATORS,
    RULES,
    TYPE_ALIASES,
)

__all__ = [
    "Blocking",
    "Chain",
    "ClassInfo",
    "Edge",
    "FunctionInfo",
    "ModuleInfo",
    "Project",
    "build_module",
    "silenced",
]


# -- values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """A named thing: a project key (``app.svc.UserService``) or an external name."""

    name: str


@dataclass(frozen=True, slots=True)
class Inst:
    """An instance of the class or external type `type`."""

    type: str


@dataclass(frozen=True, slots=True)
class Partial:
    """``functools.partial(inner, ...)``: calling it calls `inner`."""

    inner: Value


Value = Ref | Inst | Partial | None


# -- scopes and bindings ----------------------------------------------------------------

_UNKNOWN = 0
_EXPR = 1  # node is the assigned expression
_ANNOT = 2  # node is an annotation; value is an instance of it (extra: optional value expr)
_IMPORT = 3  # target is a dotted name
_DEF = 4  # target is a project key
_SELF = 5  # first parameter of a method: target is the class key
_CLS = 6  # first parameter of a classmethod
_FROM = 7  # ``from pkg import name``: target is ``pkg.name``
_ENTER = 8  # ``with node as name``: what entering node gives; target "async" for ``async with``

_PENDING = 1
_DONE = 2


class Binding:
    """One binding of a name in a scope, at a line; its value is computed once, lazily."""

    __slots__ = ("extra", "kind", "line", "node", "scope", "state", "target", "value")

    def __init__(
        self,
        scope: Scope,
        line: int,
        kind: int,
        node: ast.expr | None = None,
        target: str = "",
        extra: ast.expr | None = None,
    ) -> None:
        self.scope = scope
        self.line = line
        self.kind = kind
        self.node = node
        self.target = target
        self.extra = extra
        self.state = 0
        self.value: Value = None


class Scope:
    """A module, class or function body: its bindings and its enclosing scope."""

    __slots__ = ("bindings", "key", "module", "parent")

    module: ModuleInfo

    def __init__(self, key: str, module: ModuleInfo | None, parent: Scope | None) -> None:
        self.key = key
        if module is not None:
            self.module = module
        self.parent = parent
        self.bindings: dict[str, list[Binding]] = {}

    def bind(self, name: str, binding: Binding) -> None:
        self.bindings.setdefault(name, []).append(binding)


class ModuleInfo(Scope):
    """One parsed file."""

    __slots__ = (
        "_encoding",
        "_lines",
        "classes",
        "display",
        "functions",
        "is_package",
        "lambdas",
        "path",
        "root",
        "source",
        "stars",
    )

    def __init__(
        self, name: str, path: Path, display: str, is_package: bool, source: bytes
    ) -> None:
        super().__init__(name, None, None)
        self.module = self
        self._lines: list[bytes] | None = None
        self._encoding = "utf-8"
        self.path = path
        self.root: Path | None = None  # the import root (`Project.imported`)
        self.display = display
        self.is_package = is_package
        self.source = source
        self.functions: list[FunctionInfo] = []
        self.classes: list[ClassInfo] = []
        self.lambdas: dict[ast.Lambda, FunctionInfo] = {}
        self.stars: list[str] = []

    def line_column(self, line: int, col_offset: int) -> int:
        """The 1-based character column of a UTF-8 byte offset on `line`.

        `ast` offsets count the UTF-8 bytes of the decoded line, whatever the file's encoding
        (a PEP 263 ``coding:`` line): other encodings are converted first.
        """
        if self._lines is None:
            self._lines = self.source.splitlines()
            with contextlib.suppress(SyntaxError):  # parsed already: the declaration is valid
                self._encoding = tokenize.detect_encoding(io.BytesIO(self.source).readline)[0]
        lines = self._lines
        if not 0 < line <= len(lines):
            return col_offset + 1
        text = lines[line - 1]
        if self._encoding != "utf-8":
            text = text.decode(self._encoding, "replace").encode("utf-8", "surrogatepass")
        return len(text[:col_offset].decode("utf-8", "replace")) + 1


class ClassInfo(Scope):
    """A class body; `attrs` holds the ``self.name = ...`` bindings of its methods.

    `class_attrs` holds those made through ``cls`` in a classmethod (``cls.name = ...``),
    which set the class's own attribute (they are in `attrs` too: instances see them).
    """

    __slots__ = ("attrs", "base_nodes", "bases", "class_attrs", "line", "name")

    def __init__(
        self, key: str, name: str, module: ModuleInfo, parent: Scope, node: ast.ClassDef
    ) -> None:
        super().__init__(key, module, parent)
        self.name = name
        self.line = node.lineno
        self.base_nodes = node.bases
        self.bases: list[Value] | None = None
        self.attrs: dict[str, list[Binding]] = {}
        self.class_attrs: dict[str, list[Binding]] = {}


class FunctionInfo(Scope):
    """A ``def`` or ``async def``: its calls, returns and how it is decorated."""

    __slots__ = (
        "attr_loads",
        "calls",
        "cls",
        "decorators",
        "display",
        "elsewhere",
        "is_async",
        "is_property",
        "line",
        "node",
        "nonblocking",
        "offloaded",
        "ret_state",
        "ret_value",
        "returns",
        "sites",
        "withs",
        "yields",
    )

    def __init__(
        self,
        key: str,
        display: str,
        module: ModuleInfo,
        parent: Scope,
        node: ast.FunctionDef | ast.AsyncFunctionDef,
        cls: ClassInfo | None,
    ) -> None:
        super().__init__(key, module, parent)
        self.display = display
        self.node = node
        self.line = node.lineno
        self.is_async = isinstance(node, ast.AsyncFunctionDef)
        self.cls = cls
        self.decorators = node.decorator_list
        self.is_property = False
        self.calls: list[ast.Call] = []
        self.nonblocking: set[int] = set()
        self.attr_loads: list[ast.Attribute] = []
        # context managers of ``with`` (not ``async with``), each with its statement
        self.withs: list[tuple[ast.expr, ast.With]] = []
        self.yields: list[ast.expr] = []  # values of ``yield x`` statements
        self.returns: list[ast.expr] = []
        self.offloaded: bool | None = None
        self.ret_state = 0
        self.ret_value: Value = None
        self.sites: list[Site] | None = None
        # names declared ``global`` or ``nonlocal``: the scope their bindings belong to
        self.elsewhere: dict[str, Scope] | None = None

    def bind(self, name: str, binding: Binding) -> None:
        elsewhere = self.elsewhere
        if elsewhere is not None and name in elsewhere:
            elsewhere[name].bind(name, binding)  # evaluated here (`binding.scope`), bound there
        else:
            self.bindings.setdefault(name, []).append(binding)


# -- call sites and chains --------------------------------------------------------------


class Blocking:
    """A blocking call: the rule it breaks and where it is."""

    __slots__ = ("call", "col", "end_line", "fix", "keys", "line", "name", "rule_id")

    def __init__(
        self, rule_id: str, name: str, fix: str, call: str, line: int, end_line: int, col: int
    ) -> None:
        self.rule_id = rule_id
        self.keys = (rule_id, RULES[rule_id].name)
        self.name = name
        self.fix = fix
        self.call = call
        self.line = line
        self.end_line = end_line
        self.col = col


class Edge:
    """A call to a sync project function.

    `ignored` holds the rule ids and names silenced on this call by a
    ``# asyncify: ignore[...]`` comment: what is reached through it under those rules is not
    reported (other paths to the same blocking call still are).
    """

    __slots__ = ("call", "col", "end_line", "ignored", "line", "target")

    def __init__(self, target: FunctionInfo, call: str, line: int, end_line: int, col: int) -> None:
        self.target = target
        self.ignored: frozenset[str] = frozenset()
        self.call = call
        self.line = line
        self.end_line = end_line
        self.col = col


Site = Blocking | Edge


class Chain:
    """A path from a function to a blocking call: one site here, then the rest."""

    __slots__ = ("func", "length", "rest", "site")

    def __init__(self, func: FunctionInfo, site: Site, rest: Chain | None) -> None:
        self.func = func
        self.site = site
        self.rest = rest
        self.length: int = 1 if rest is None else rest.length + 1

    def __iter__(self) -> Iterator[tuple[FunctionInfo, Site]]:
        chain: Chain | None = self
        while chain is not None:
            yield chain.func, chain.site
            chain = chain.rest


# -- the one walk over a file -----------------------------------------------------------


def build_module(
    name: str, path: Path, display: str, is_package: bool, source: bytes, tree: ast.Module
) -> ModuleInfo:
    """Walk `tree` once, recording bindings, classes, functions and their calls."""
    module = ModuleInfo(name, path, display, is_package, source)
    _Walker(module).statements(tree.body, module, None)
    return module


class _Walker:
    __slots__ = ("module", "package")

    def __init__(self, module: ModuleInfo) -> None:
        self.module = module
        name = module.key
        self.package = name if module.is_package else name.rpartition(".")[0]

    def _absolute(self, level: int, target: str | None) -> str:
        if level == 0:
            return target or ""
        parts = self.package.split(".") if self.package else []
        base = ".".join(parts[: len(parts) - (level - 1)]) if level > 1 else self.package
        if target:
            return f"{base}.{target}" if base else target
        return base

    def statements(self, body: list[ast.stmt], scope: Scope, func: FunctionInfo | None) -> None:
        for stmt in body:
            self.statement(stmt, scope, func)

    def statement(self, stmt: ast.stmt, scope: Scope, func: FunctionInfo | None) -> None:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            self.function(stmt, scope, func)
        elif isinstance(stmt, ast.ClassDef):
            self.klass(stmt, scope, func)
        elif isinstance(stmt, ast.Assign):
            self.expression(stmt.value, scope, func)
            for target in stmt.targets:
                self.assign(target, stmt.value, None, scope, func, stmt.lineno)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self.expression(stmt.value, scope, func)
            self.assign(stmt.target, stmt.value, stmt.annotation, scope, func, stmt.lineno)
        elif isinstance(stmt, ast.AugAssign):
            self.expression(stmt.value, scope, func)
            if isinstance(stmt.target, ast.Name):
                scope.bind(stmt.target.id, Binding(scope, stmt.lineno, _UNKNOWN))
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    scope.bind(
                        alias.asname, Binding(scope, stmt.lineno, _IMPORT, target=alias.name)
                    )
                else:
                    top = alias.name.partition(".")[0]
                    scope.bind(top, Binding(scope, stmt.lineno, _IMPORT, target=top))
        elif isinstance(stmt, ast.ImportFrom):
            base = self._absolute(stmt.level, stmt.module)
            for alias in stmt.names:
                if alias.name == "*":
                    if scope is self.module:
                        self.module.stars.append(base)
                    continue
                full = f"{base}.{alias.name}" if base else alias.name
                scope.bind(
                    alias.asname or alias.name, Binding(scope, stmt.lineno, _FROM, target=full)
                )
        elif isinstance(stmt, ast.Return):
            if stmt.value is not None:
                self.expression(stmt.value, scope, func)
                if func is not None:
                    func.returns.append(stmt.value)
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            for item in stmt.items:
                self.expression(item.context_expr, scope, func)
                if func is not None and isinstance(stmt, ast.With):
                    func.withs.append((item.context_expr, stmt))
                bound = item.optional_vars
                if isinstance(bound, ast.Name):
                    kind = "async" if isinstance(stmt, ast.AsyncWith) else ""
                    scope.bind(
                        bound.id,
                        Binding(scope, stmt.lineno, _ENTER, item.context_expr, target=kind),
                    )
                elif bound is not None:
                    self.assign(bound, item.context_expr, None, scope, func, stmt.lineno)
            start = len(func.calls) if func is not None else 0
            self.statements(stmt.body, scope, func)
            if func is not None and any(
                _suppresses_blocking_io(item.context_expr) for item in stmt.items
            ):
                # ``with suppress(BlockingIOError): sock.send(...)``, the ``try`` below
                func.nonblocking.update(id(call) for call in func.calls[start:])
        elif isinstance(stmt, ast.For | ast.AsyncFor):
            self.expression(stmt.iter, scope, func)
            self.assign(stmt.target, None, None, scope, func, stmt.lineno)
            self.statements(stmt.body, scope, func)
            self.statements(stmt.orelse, scope, func)
        elif isinstance(stmt, ast.Expr):
            self.expression(stmt.value, scope, func)
            if func is not None and isinstance(stmt.value, ast.Yield) and stmt.value.value:
                func.yields.append(stmt.value.value)
        elif isinstance(stmt, ast.If):
            branch = stmt
            while True:  # a long elif chain is a deep tree: walk it without recursion
                self.expression(branch.test, scope, func)
                self.statements(branch.body, scope, func)
                orelse = branch.orelse
                if len(orelse) == 1 and isinstance(orelse[0], ast.If):
                    branch = orelse[0]
                    continue
                self.statements(orelse, scope, func)
                break
        elif isinstance(stmt, ast.Try):
            start = len(func.calls) if func is not None else 0
            self.statements(stmt.body, scope, func)
            if func is not None and _catches_blocking_io(stmt.handlers):
                # `try: sock.recv(...) except BlockingIOError:` is a non-blocking socket
                func.nonblocking.update(id(call) for call in func.calls[start:])
            for handler in stmt.handlers:
                self.handler(handler, scope, func)
            self.statements(stmt.orelse, scope, func)
            self.statements(stmt.finalbody, scope, func)
        elif isinstance(stmt, ast.Global | ast.Nonlocal):
            if func is not None:
                self.declare(stmt, func)
        elif isinstance(stmt, ast.Pass | ast.Break | ast.Continue):
            return
        else:
            self.generic(stmt, scope, func)

    def declare(self, stmt: ast.Global | ast.Nonlocal, func: FunctionInfo) -> None:
        """``global x`` / ``nonlocal x``: assignments to ``x`` in `func` bind it out there."""
        for name in stmt.names:
            owner: Scope | None = self.module
            if isinstance(stmt, ast.Nonlocal):
                owner = func.parent
                while owner is not None and not (
                    isinstance(owner, FunctionInfo) and name in owner.bindings
                ):
                    owner = owner.parent
            if owner is not None:
                if func.elsewhere is None:
                    func.elsewhere = {}
                func.elsewhere[name] = owner

    def handler(self, item: ast.ExceptHandler, scope: Scope, func: FunctionInfo | None) -> None:
        if item.type is not None:
            self.expression(item.type, scope, func)
        if item.name:
            scope.bind(item.name, Binding(scope, item.lineno, _UNKNOWN))
        self.statements(item.body, scope, func)

    def generic(self, stmt: ast.stmt, scope: Scope, func: FunctionInfo | None) -> None:
        """If/While/Try/Match/Expr/Raise/Assert/Delete: expressions, then nested bodies."""
        for name, value in ast.iter_fields(stmt):
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.stmt):
                        self.statement(item, scope, func)
                    elif isinstance(item, ast.expr):
                        self.expression(item, scope, func)
                    elif isinstance(item, ast.ExceptHandler):
                        self.handler(item, scope, func)
                    elif isinstance(item, ast.match_case):
                        self.pattern(item.pattern, scope, func)
                        if item.guard is not None:
                            self.expression(item.guard, scope, func)
                        self.statements(item.body, scope, func)
            elif isinstance(value, ast.expr) and name != "annotation":
                self.expression(value, scope, func)

    def pattern(self, node: ast.pattern, scope: Scope, func: FunctionInfo | None) -> None:
        """A ``case`` pattern: bind the names it captures, walk the expressions it reads.

        Captures (``case x``, ``[*rest]``, ``{**rest}``, ``_ as x``, at any depth) bind in
        the enclosing scope like an assignment; a dotted name (``case mod.OK``) is a value
        pattern, a use, as is the class of a class pattern and a mapping pattern's keys.
        """
        stack: list[ast.pattern] = [node]
        while stack:
            sub = stack.pop()
            if isinstance(sub, ast.MatchAs | ast.MatchStar):
                captured = sub.name
            elif isinstance(sub, ast.MatchMapping):
                captured = sub.rest
            else:
                captured = None
            if captured is not None:
                scope.bind(captured, Binding(scope, sub.lineno, _UNKNOWN))
            for child in ast.iter_child_nodes(sub):
                if isinstance(child, ast.pattern):
                    stack.append(child)
                elif isinstance(child, ast.expr):
                    self.expression(child, scope, func)

    def assign(
        self,
        target: ast.expr,
        value: ast.expr | None,
        annotation: ast.expr | None,
        scope: Scope,
        func: FunctionInfo | None,
        line: int,
    ) -> None:
        if isinstance(target, ast.Name):
            if annotation is not None:
                binding = Binding(scope, line, _ANNOT, annotation, extra=value)
            elif value is not None:
                if func is None and isinstance(value, ast.Lambda):
                    self.lambda_(value, scope, None)  # ``fetch = lambda: ...`` at module level
                binding = Binding(scope, line, _EXPR, value)
            else:
                binding = Binding(scope, line, _UNKNOWN)
            scope.bind(target.id, binding)
        elif isinstance(target, ast.Tuple | ast.List):
            values: list[ast.expr | None] = [None] * len(target.elts)
            if (  # ``a, b = x, y``: pairwise
                isinstance(value, ast.Tuple | ast.List)
                and len(value.elts) == len(target.elts)
                and not any(isinstance(node, ast.Starred) for node in (*target.elts, *value.elts))
            ):
                values = [*value.elts]
            for element, element_value in zip(target.elts, values, strict=True):
                self.assign(element, element_value, None, scope, func, line)
        elif isinstance(target, ast.Starred):
            self.assign(target.value, None, None, scope, func, line)
        elif isinstance(target, ast.Attribute):
            self.expression(target.value, scope, func)
            cls = func.cls if func is not None else None
            if (
                cls is not None
                and func is not None
                and isinstance(target.value, ast.Name)
                and target.value.id == _first_param(func.node)
                and (value is not None or annotation is not None)
            ):
                kind = _ANNOT if annotation is not None else _EXPR
                node = annotation if annotation is not None else value
                binding = Binding(func, line, kind, node, extra=value)
                cls.attrs.setdefault(target.attr, []).append(binding)
                if func.bindings[target.value.id][0].kind == _CLS:
                    cls.class_attrs.setdefault(target.attr, []).append(binding)
        elif isinstance(target, ast.Subscript):
            self.expression(target, scope, func)

    def expression(self, node: ast.expr, scope: Scope, func: FunctionInfo | None) -> None:
        """Record the calls (and attribute loads) of `node`; a lambda is a function of its own.

        Module and class level code runs at import time, never inside async code, so only
        function bodies are walked. This loop is the scanner's hot path: leaves are skipped
        by exact type, and children are read from ``_fields`` directly.
        """
        if func is None:
            return
        calls = func.calls
        loads = func.attr_loads
        stack: list[ast.AST] = [node]
        pop = stack.pop
        push = stack.append
        while stack:
            sub = pop()
            kind = type(sub)
            if kind is ast.Name or kind is ast.Constant:
                continue
            if kind is ast.Lambda:
                assert isinstance(sub, ast.Lambda)
                self.lambda_(sub, scope, func)
                continue
            if type(sub) is ast.Call:
                calls.append(sub)
                callee = sub.func
                push(callee.value if type(callee) is ast.Attribute else callee)
                stack.extend(sub.args)
                for keyword in sub.keywords:
                    push(keyword.value)
                continue
            if type(sub) is ast.Attribute:
                loads.append(sub)
                push(sub.value)
                continue
            if type(sub) is ast.NamedExpr:
                scope.bind(sub.target.id, Binding(scope, sub.lineno, _EXPR, sub.value))
            elif type(sub) is ast.comprehension:
                for name in ast.walk(sub.target):
                    if type(name) is ast.Name:
                        scope.bind(name.id, Binding(scope, name.lineno, _UNKNOWN))
            for field in sub._fields:
                value = getattr(sub, field, None)
                if type(value) is list:
                    for item in value:
                        if isinstance(item, ast.AST):
                            push(item)
                elif isinstance(value, ast.AST) and not isinstance(value, ast.expr_context):
                    push(value)

    def function(
        self,
        node: ast.FunctionDef | ast.AsyncFunctionDef,
        scope: Scope,
        outer: FunctionInfo | None,
    ) -> None:
        cls = scope if isinstance(scope, ClassInfo) else None
        key, display = self._qualified(node.name, scope, outer)
        func = FunctionInfo(key, display, self.module, _lexical(scope), node, cls)
        self.module.functions.append(func)
        if not any(
            isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter")
            for d in node.decorator_list
        ):  # a property's setter is not a new attribute: the name stays the getter's
            scope.bind(node.name, Binding(scope, node.lineno, _DEF, target=key))
        kind = _SELF
        for decorator in node.decorator_list:
            if outer is not None:
                self.expression(decorator, scope, outer)
            name = _decorator_name(decorator)
            if name == "staticmethod":
                kind = _UNKNOWN
            elif name == "classmethod":
                kind = _CLS
            elif name in ("property", "cached_property"):
                func.is_property = True
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        # a parameter without annotation is known by its default, evaluated where the ``def``
        # is (``session=requests.Session()``, FastAPI's ``db=Depends(get_db)``)
        defaults: list[ast.expr | None] = [
            *[None] * (len(positional) - len(args.defaults)),
            *args.defaults,
            *args.kw_defaults,
        ]
        for index, arg in enumerate([*positional, *args.kwonlyargs]):
            default = defaults[index]
            if index == 0 and cls is not None and kind != _UNKNOWN and positional:
                func.bind(arg.arg, Binding(func, node.lineno, kind, target=cls.key))
            elif arg.annotation is not None:
                func.bind(arg.arg, Binding(func, node.lineno, _ANNOT, arg.annotation))
            elif default is not None:
                func.bind(arg.arg, Binding(scope, node.lineno, _EXPR, default))
            else:
                func.bind(arg.arg, Binding(func, node.lineno, _UNKNOWN))
        for star in (args.vararg, args.kwarg):
            if star is not None:
                func.bind(star.arg, Binding(func, node.lineno, _UNKNOWN))
        self.statements(node.body, func, func)

    def _qualified(self, name: str, scope: Scope, outer: FunctionInfo | None) -> tuple[str, str]:
        """The project key and the display name of function `name` defined in `scope`."""
        if outer is not None:
            return f"{outer.key}.<locals>.{name}", f"{outer.display}.<locals>.{name}"
        key = f"{scope.key}.{name}"
        if not isinstance(scope, ClassInfo):
            return key, name
        if scope.parent is not self.module:
            return key, key[len(self.module.key) + 1 :]
        return key, f"{scope.name}.{name}"

    def lambda_(self, node: ast.Lambda, scope: Scope, outer: FunctionInfo | None) -> None:
        """A lambda, as the function it is: called, it is followed like a nested ``def``."""
        if node in self.module.lambdas:
            return
        key, display = self._qualified("<lambda>", scope, outer)
        body: list[ast.stmt] = [ast.copy_location(ast.Return(value=node.body), node)]
        definition = ast.copy_location(
            ast.FunctionDef(
                name="<lambda>", args=node.args, body=body, decorator_list=[], returns=None
            ),
            node,
        )
        key = f"{key}@{node.lineno}:{node.col_offset}"  # a scope may hold several
        func = FunctionInfo(key, display, self.module, _lexical(scope), definition, None)
        self.module.functions.append(func)
        self.module.lambdas[node] = func
        args = node.args
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                func.bind(arg.arg, Binding(func, node.lineno, _UNKNOWN))
        self.statements(definition.body, func, func)

    def klass(self, node: ast.ClassDef, scope: Scope, outer: FunctionInfo | None) -> None:
        if outer is not None:
            key = f"{outer.key}.<locals>.{node.name}"
        else:
            key = f"{scope.key}.{node.name}"
        display = key[len(self.module.key) + 1 :]
        cls = ClassInfo(key, display, self.module, _lexical(scope), node)
        self.module.classes.append(cls)
        scope.bind(node.name, Binding(scope, node.lineno, _DEF, target=key))
        for base in node.bases:
            if outer is not None:
                self.expression(base, scope, outer)
        self.statements(node.body, cls, None)


_NONBLOCKING_ERRORS = frozenset({"BlockingIOError", "SSLWantReadError", "SSLWantWriteError"})
# calls that raise BlockingIOError on a non-blocking socket or file descriptor (a pipe's)
_SOCKET_METHODS = ("socket.socket.", "ssl.SSLSocket.")
_FD_CALLS = frozenset({"os.read", "os.write"})


def _catches_blocking_io(handlers: list[ast.ExceptHandler]) -> bool:
    for handler in handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(_decorator_name(kind) in _NONBLOCKING_ERRORS for kind in kinds if kind):
            return True
    return False


def _suppresses_blocking_io(node: ast.expr) -> bool:
    """``contextlib.suppress(BlockingIOError, ...)``: what ``except BlockingIOError`` does."""
    return (
        isinstance(node, ast.Call)
        and _decorator_name(node.func) == "suppress"
        and any(_decorator_name(arg) in _NONBLOCKING_ERRORS for arg in node.args)
    )


_ASYNC_NODES = (ast.Await, ast.AsyncFor, ast.AsyncWith)
_NESTED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _awaits(body: list[ast.stmt]) -> bool:
    """True if `body` suspends the coroutine it runs in: an ``await``, ``async for``,
    ``async with`` or async comprehension (not in the functions or classes it defines)."""
    stack: list[ast.AST] = [*body]
    while stack:
        node = stack.pop()
        if isinstance(node, _ASYNC_NODES):
            return True
        if isinstance(node, ast.comprehension) and node.is_async:
            return True
        if not isinstance(node, _NESTED_SCOPES):
            stack.extend(ast.iter_child_nodes(node))
    return False


def _lexical(scope: Scope) -> Scope:
    """The scope whose names a nested body sees: class bodies are skipped, as in Python."""
    while isinstance(scope, ClassInfo):
        assert scope.parent is not None  # a class is always nested in a module or function
        scope = scope.parent
    return scope


def _first_param(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    args = [*node.args.posonlyargs, *node.args.args]
    return args[0].arg if args else None


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _call_text(node: ast.expr) -> str:
    """The callee as written: ``self.repo.get``, ``make(...).run``, ``(lambda)``."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(f".{node.attr}")
            node = node.value
        elif isinstance(node, ast.Call):
            parts.append("(...)")
            node = node.func
        else:
            if isinstance(node, ast.Name):
                parts.append(node.id)
            else:
                parts.append("(lambda)" if isinstance(node, ast.Lambda) else "<expr>")
            return "".join(reversed(parts))


# -- resolution -------------------------------------------------------------------------


class Project:
    """All modules of a scan, with lazy, memoized name resolution and reachability."""

    def __init__(
        self,
        modules: list[ModuleInfo],
        aliases: Mapping[str, ModuleInfo],
        extra_rules: Mapping[str, str],
        offload_decorators: frozenset[str],
        ignores: Mapping[ModuleInfo, Mapping[int, frozenset[str] | None]] | None = None,
        local_names: Mapping[tuple[Path, str], ModuleInfo] | None = None,
    ) -> None:
        self.modules = modules
        self.ignores = ignores or {}
        self.local_names = local_names or {}
        self.registry: dict[str, Scope] = {}
        for module in modules:
            self.registry.setdefault(module.key, module)
            for cls in module.classes:
                self.registry.setdefault(cls.key, cls)
            for func in module.functions:
                self.registry.setdefault(func.key, func)
        for alias, module in aliases.items():
            self.registry.setdefault(alias, module)
        self.extra_exact = {k: v for k, v in extra_rules.items() if not k.endswith(".*")}
        self.extra_prefixes = tuple((k[:-1], v) for k, v in extra_rules.items() if k.endswith(".*"))
        # external classes with a rule on a method: calling one makes an instance
        self.rule_types = frozenset(
            name.rpartition(".")[0] for name in (*BLOCKING_CALLS, *self.extra_exact)
        ) | frozenset(prefix[:-1] for prefix, _ in self.extra_prefixes)
        self.offload_decorators = OFFLOAD_DECORATORS | offload_decorators
        # the types the rules know: an instance of any other says nothing (`vague`)
        self.known_types = self.rule_types | frozenset(
            (
                *FACTORIES.values(),
                *ANY_METHOD_TYPES,
                *NAMESPACE_TYPES,
                *ATTRIBUTE_TYPES.values(),
                *TYPE_ALIASES.values(),
            )
        )
        self._abstracts: dict[ClassInfo, bool] = {}
        self.property_names = frozenset(
            func.node.name for module in modules for func in module.functions if func.is_property
        )
        self._ref_cache: dict[str, Value] = {}
        self._from_cache: dict[str, Value] = {}
        self._from_pending: set[str] = set()
        self._ref_pending: set[str] = set()
        self._reach: dict[FunctionInfo, dict[Blocking, Chain]] = {}
        self._mro: dict[ClassInfo, tuple[list[ClassInfo], list[str]]] = {}
        # inherited methods analysed for the class of their receiver (`_dispatched`)
        self._descendants: dict[ClassInfo, list[ClassInfo]] | None = None
        self._indexing = False
        self._overridden: dict[ClassInfo, frozenset[str]] = {}
        self._receiver_needed: dict[FunctionInfo, bool] = {}
        self._specialized: dict[tuple[FunctionInfo, ClassInfo], FunctionInfo] = {}
        self._generators: dict[FunctionInfo, bool] = {}
        self._iterated: dict[FunctionInfo, set[int]] = {}
        # per async def: the names of futures it awaits through ``asyncio.wrap_future``
        self._awaited_futures: dict[FunctionInfo, dict[str, tuple[int, int]]] = {}
        # functions whose calls could not be resolved (RecursionError): reported as ASY001
        self.too_deep: list[FunctionInfo] = []

    # values

    def ref(self, dotted: str) -> Value:
        """The value of a fully qualified dotted name (project objects resolved)."""
        cached = self._ref_cache.get(dotted, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        if dotted in self.registry:
            value: Value = Ref(dotted)
        else:
            if dotted in self._ref_pending:
                return None
            self._ref_pending.add(dotted)
            try:
                value = self._ref_walk(dotted)
            finally:
                self._ref_pending.discard(dotted)
        self._ref_cache[dotted] = value
        return value

    def imported(self, module: ModuleInfo, dotted: str) -> str:
        """The project name of the absolute import `dotted` in `module`.

        A module importable only from its own import root (a script next to `module`) is
        found here; every other name is resolved by `ref` alone.
        """
        if not self.local_names or module.root is None:
            return dotted
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            found = self.local_names.get((module.root, ".".join(parts[:i])))
            if found is not None:
                return ".".join([found.key, *parts[i:]])
        return dotted

    def from_import(self, module: ModuleInfo, dotted: str) -> Value:
        """The value ``from pkg import name`` (`dotted` is ``pkg.name``) binds in `module`.

        Python reads the package's attribute first and imports the submodule only when there
        is none, so a package re-exporting an object named like its own submodule
        (``from .s3 import s3`` in ``clients/__init__.py``) gives the object. The package's
        own ``from . import s3`` finds nothing bound yet, and gives the submodule.
        """
        absolute = self.imported(module, dotted)
        cached = self._from_cache.get(absolute, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        package, _, name = absolute.rpartition(".")
        owner = self.ref(package) if package else None
        if not isinstance(owner, Ref) or not isinstance(self.registry.get(owner.name), ModuleInfo):
            return self.ref(absolute)
        if absolute in self._from_pending:  # the package's own import of it, or a star cycle
            return self.ref(absolute)
        self._from_pending.add(absolute)
        try:
            value = self.attr(owner, name)
        finally:
            self._from_pending.discard(absolute)
        if value is None:
            value = self.ref(absolute)
        self._from_cache[absolute] = value
        return value

    def _ref_walk(self, dotted: str) -> Value:
        parts = dotted.split(".")
        for i in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:i])
            if prefix in self.registry:
                value: Value = Ref(prefix)
                for attr in parts[i:]:
                    value = self.attr(value, attr)
                    if value is None:
                        return None
                return value
        return Ref(dotted)

    def lookup(self, scope: Scope, name: str, line: int) -> Value:
        """The value of `name` as seen from `scope` at `line`."""
        current: Scope | None = scope
        here = True
        while current is not None:
            bindings = current.bindings.get(name)
            if bindings:
                return self.binding_value(_pick(bindings, line if here else 0))
            current = current.parent
            here = False
        module = scope.module
        for star in module.stars:
            value = self.from_import(module, f"{star}.{name}")
            if isinstance(value, Ref) and value.name not in self.registry:
                if _known_external(value.name):
                    return value
            elif value is not None:
                return value
        return Ref(f"builtins.{name}")

    def binding_value(self, binding: Binding) -> Value:
        if binding.state == _DONE:
            return binding.value
        if binding.state == _PENDING:
            return None
        binding.state = _PENDING
        value: Value = None
        try:
            kind = binding.kind
            if kind == _EXPR:
                assert binding.node is not None
                value = self.eval(binding.node, binding.scope, binding.line)
            elif kind == _ANNOT:
                if binding.extra is not None:
                    value = self.eval(binding.extra, binding.scope, binding.line)
                if value is None and binding.node is not None:
                    value = self.annotation(binding.node, binding.scope, binding.line)
            elif kind == _IMPORT:
                value = self.ref(self.imported(binding.scope.module, binding.target))
            elif kind == _FROM:
                value = self.from_import(binding.scope.module, binding.target)
            elif kind == _DEF:
                value = Ref(binding.target)
            elif kind == _SELF:
                value = Inst(binding.target)
            elif kind == _CLS:
                value = Ref(binding.target)
            elif kind == _ENTER:
                assert binding.node is not None
                value = self.entered(
                    binding.node, binding.scope, binding.line, is_async=binding.target == "async"
                )
        finally:
            binding.value = value
            binding.state = _DONE
        return value

    def annotation(self, node: ast.expr, scope: Scope, line: int) -> Value:
        """The instance an annotation describes (``Optional[Session]`` -> a Session)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.annotation(node.left, scope, line) or self.annotation(
                node.right, scope, line
            )
        if isinstance(node, ast.Subscript):
            outer = self.eval(node.value, scope, line)
            if isinstance(outer, Ref) and outer.name.rpartition(".")[2] in (
                "Optional",
                "Union",
                "Annotated",
            ):
                inner = node.slice
                elements = inner.elts if isinstance(inner, ast.Tuple) else [inner]
                for element in elements:
                    value = self.annotation(element, scope, line)
                    if value is not None:
                        return value
            return None
        if not isinstance(node, ast.Name | ast.Attribute):
            return None
        value = self.eval(node, scope, line)
        if isinstance(value, Ref):
            target = self.registry.get(value.name)
            if isinstance(target, ClassInfo):
                return Inst(value.name)
            if target is None:
                return Inst(_type_alias(value.name))
        return None

    def eval(self, node: ast.expr, scope: Scope, line: int) -> Value:
        """The value of expression `node` in `scope` (None when it cannot be known)."""
        if isinstance(node, ast.Name):
            return self.lookup(scope, node.id, line)
        if isinstance(node, ast.Attribute | ast.Call):
            # a chain ``a.b(...).c(...)``, however long, from its start and without recursion
            links: list[ast.Attribute | ast.Call] = []
            start: ast.expr = node
            while isinstance(start, ast.Attribute | ast.Call):
                links.append(start)
                start = start.value if isinstance(start, ast.Attribute) else start.func
            value = self.eval(start, scope, line)
            for link in reversed(links):
                if value is None:
                    return None
                if isinstance(link, ast.Attribute):
                    value = self.attr(value, link.attr)
                else:
                    value = self.call_value(value, link, scope, line)
            return value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            left = self.eval(node.left, scope, line)
            return left if left == _PATH else None
        if isinstance(node, ast.IfExp | ast.BoolOp):
            # ``session or requests.Session()``: the first value known, a concrete one first
            first: Value = None
            for value_node in (
                (node.body, node.orelse) if isinstance(node, ast.IfExp) else node.values
            ):
                value = self.eval(value_node, scope, line)
                if value is not None:
                    if not self.vague(value):
                        return value
                    first = first or value
            return first
        if isinstance(node, ast.NamedExpr):
            return self.eval(node.value, scope, line)
        if isinstance(node, ast.Subscript):
            # ``client["shop"]["users"]``: an item of a namespace (a MongoClient's database)
            outer = self.eval(node.value, scope, line)
            if isinstance(outer, Ref) and outer.name in _TYPING_WRAPPERS:
                # a type alias, ``SessionDep = Annotated[Session, Depends(get_session)]``:
                # the type it names
                inner = node.slice
                for element in inner.elts if isinstance(inner, ast.Tuple) else [inner]:
                    value = self.eval(element, scope, line)
                    if value is not None:
                        return value
                    if outer.name.endswith("Annotated"):
                        break
                return None
            if isinstance(outer, Inst) and outer.type in NAMESPACE_TYPES:
                return outer
            if isinstance(outer, Ref) and outer.name not in self.registry:
                namespace = _namespace_of(outer.name)
                if namespace is not None:
                    return Inst(namespace)
            return None
        if isinstance(node, ast.Lambda):
            func = scope.module.lambdas.get(node)
            return Ref(func.key) if func is not None else None
        return None

    def attr(self, value: Value, name: str) -> Value:
        """The value of ``value.name``."""
        if isinstance(value, Ref):
            target = self.registry.get(value.name)
            if target is None:
                owner = value.name
                namespace = _namespace_of(owner)
                if namespace is not None:
                    return Ref(f"{namespace}.{name}")
                return Ref(f"{owner}.{name}")
            if isinstance(target, ModuleInfo):
                bindings = target.bindings.get(name)
                if bindings:
                    return self.binding_value(_pick(bindings, 0))
                submodule = f"{target.key}.{name}"
                if submodule in self.registry:
                    return Ref(submodule)
                for star in target.stars:
                    found = self.from_import(target, f"{star}.{name}")
                    if found is not None and not (
                        isinstance(found, Ref)
                        and found.name not in self.registry
                        and not _known_external(found.name)
                    ):
                        return found
                return None
            if isinstance(target, ClassInfo):
                return self.member(target, name, instance=False)
            return None
        if isinstance(value, Inst):
            target = self.registry.get(value.type)
            if isinstance(target, ClassInfo):
                return self.member(target, name, instance=True)
            if target is not None:
                return None
            full = f"{value.type}.{name}"
            attribute_type = ATTRIBUTE_TYPES.get(full)
            if attribute_type is not None:
                return Inst(attribute_type)
            return Ref(full)
        return None

    def bases(self, cls: ClassInfo) -> list[Value]:
        if cls.bases is None:
            cls.bases = []  # a class inheriting from itself through a cycle stops here
            assert cls.parent is not None
            cls.bases = [self.eval(base, cls.parent, cls.line) for base in cls.base_nodes]
        return cls.bases

    def mro(self, cls: ClassInfo) -> tuple[list[ClassInfo], list[str]]:
        """Project classes in lookup order, then the external base names."""
        cached = self._mro.get(cls)
        if cached is None:
            cached = self._mro[cls] = self._compute_mro(cls)
        return cached

    def _compute_mro(self, cls: ClassInfo) -> tuple[list[ClassInfo], list[str]]:
        project: list[ClassInfo] = []
        external: list[str] = []
        seen: set[str] = set()
        stack = [cls]
        while stack:
            current = stack.pop(0)
            if current.key in seen:
                continue
            seen.add(current.key)
            project.append(current)
            for base in self.bases(current):
                if isinstance(base, Ref):
                    target = self.registry.get(base.name)
                    if isinstance(target, ClassInfo):
                        stack.append(target)
                    elif target is None and base.name not in ("builtins.object",):
                        external.append(_type_alias(base.name))
        return project, external

    def member(self, cls: ClassInfo, name: str, *, instance: bool) -> Value:
        """``cls.name``, or ``instance.name``: the first known value along the MRO.

        Every binding counts, the class body's (``conn = None``) and, for an instance, the
        ``self.name = ...`` of the methods, for the class the ``cls.name = ...`` of its
        classmethods, so a ``None`` default does not hide the rest. Nor does a value of a
        type no rule knows, such as an annotation ``session: Any`` or one naming a protocol
        or an abstract class: a value assigned elsewhere (``self.session =
        requests.Session()``) is preferred, and the vague one used only when there is none.
        """
        project, external = self.mro(cls)
        found = False
        vague: Value = None
        for current in project:
            bindings = current.bindings.get(name)
            if bindings:
                found = True
                binding = _pick(bindings, 0)
                value = self.binding_value(binding)
                if binding.kind == _DEF and isinstance(value, Ref) and current is not cls:
                    func = self.registry.get(value.name)
                    if isinstance(func, FunctionInfo):
                        value = Ref(self._dispatched(func, cls).key)
                if instance and binding.kind == _DEF and isinstance(value, Ref):
                    func = self.registry.get(value.name)
                    if isinstance(func, FunctionInfo) and func.is_property:
                        return self.returns(func)
                if value is not None:
                    if not self.vague(value):
                        return value
                    vague = vague or value
            attrs = (current.attrs if instance else current.class_attrs).get(name)
            if attrs:
                found = True
                for binding in reversed(attrs):
                    value = self.binding_value(binding)
                    if value is not None:
                        if not self.vague(value):
                            return value
                        vague = vague or value
        if found:
            return vague
        for base in external:
            if instance:
                return self.attr(Inst(base), name)
            return Ref(f"{base}.{name}")
        return None

    def vague(self, value: Value) -> bool:
        """True for an instance of a type that says nothing to the rules: a library type no
        rule knows (``typing.Any``, ``object``), or a protocol or abstract class of the
        project, which the object is an instance of a subclass of."""
        if not isinstance(value, Inst):
            return False
        target = self.registry.get(value.type)
        if isinstance(target, ClassInfo):
            return self._abstract(target)
        if target is not None:
            return False
        return value.type not in self.known_types and self._extra_rule(f"{value.type}.") is None

    def _abstract(self, cls: ClassInfo) -> bool:
        """A protocol, or an abstract base class (``ABC``, ``@abstractmethod`` methods)."""
        known = self._abstracts.get(cls)
        if known is None:
            known = any(
                _decorator_name(base.value if isinstance(base, ast.Subscript) else base)
                in ("Protocol", "ABC")
                for base in cls.base_nodes
            )
            for bindings in cls.bindings.values():
                method = self.registry.get(bindings[-1].target)
                if isinstance(method, FunctionInfo) and any(
                    _decorator_name(decorator) == "abstractmethod"
                    for decorator in method.decorators
                ):
                    known = True
                    break
            self._abstracts[cls] = known
        return known

    def _dispatched(self, func: FunctionInfo, receiver: ClassInfo) -> FunctionInfo:
        """Method `func`, inherited by `receiver`, as it runs on an instance of `receiver`.

        ``self.x`` in a method is looked up on the object's class, which may be a subclass of
        the one defining it: a template method calling an abstract ``self._fetch()``, a base
        repository or mixin using ``self.session`` that the subclass's ``__init__`` sets.
        Such a method is analysed once per receiving class, as a copy whose ``self`` is an
        instance of that class; a method whose ``self.*`` names no subclass redefines (nor
        those of the methods it calls on ``self``) is the same for all, and is not copied.
        """
        if func.cls is None or func.cls is receiver or not self._receiver_needed_for(func):
            return func
        copy = self._specialized.get((func, receiver))
        if copy is None:
            assert func.parent is not None  # a method is nested in its module or function
            copy = FunctionInfo(
                f"{func.key}<{receiver.key}>",
                func.display,
                func.module,
                func.parent,
                func.node,
                func.cls,
            )
            for slot in _SHARED_FUNCTION_SLOTS:
                setattr(copy, slot, getattr(func, slot))
            for name, bindings in func.bindings.items():
                copy.bindings[name] = [
                    _rebind(binding, func, copy, receiver) for binding in bindings
                ]
            self.registry[copy.key] = copy
            self._specialized[(func, receiver)] = copy
        return copy

    def _receiver_needed_for(self, func: FunctionInfo) -> bool:
        """True when what `func` reads on ``self`` may differ in a subclass of its class."""
        known = self._receiver_needed.get(func)
        if known is not None:
            return known
        self._receiver_needed[func] = False  # a cycle of methods calling each other on self
        cls = func.cls
        first = _first_param(func.node)
        names = {
            node.attr
            for node in (*func.attr_loads, *(call.func for call in func.calls))
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == first
        }
        needed = False
        binding = func.bindings.get(first) if first is not None else None
        if cls is not None and names and binding and binding[0].kind == _SELF:
            if names & self._names_below(cls):
                needed = True
            else:
                project = self.mro(cls)[0]
                for name in names:
                    method = self._method_of(project, name)
                    if method is not None and self._receiver_needed_for(method):
                        needed = True
                        break
        self._receiver_needed[func] = needed
        return needed

    def _method_of(self, project: list[ClassInfo], name: str) -> FunctionInfo | None:
        """The project method `name` first found along the classes `project`."""
        for current in project:
            bindings = current.bindings.get(name)
            if bindings:
                binding = _pick(bindings, 0)
                if binding.kind != _DEF:
                    return None
                target = self.registry.get(binding.target)
                return target if isinstance(target, FunctionInfo) else None
        return None

    def _names_below(self, cls: ClassInfo) -> frozenset[str]:
        """The names bound, in their bodies or on ``self``, by the project classes that the
        subclasses of `cls` inherit from and `cls` does not (the subclasses themselves too)."""
        known = self._overridden.get(cls)
        if known is not None:
            return known
        if self._descendants is None:
            if self._indexing:  # a base class computed by a call that asks again: not known yet
                return frozenset()
            self._indexing = True
            descendants: dict[ClassInfo, list[ClassInfo]] = {}
            try:
                for module in self.modules:
                    for sub in module.classes:
                        for base in self.mro(sub)[0][1:]:
                            descendants.setdefault(base, []).append(sub)
            finally:
                self._indexing = False
            self._descendants = descendants
        names: set[str] = set()
        own = set(self.mro(cls)[0])
        seen: set[ClassInfo] = set()
        for sub in self._descendants.get(cls, ()):
            for current in self.mro(sub)[0]:  # a sibling base too: ``class Repo(Mixin, Holder)``
                if current not in own and current not in seen:
                    seen.add(current)
                    names.update(current.bindings)
                    names.update(current.attrs)
        known = self._overridden[cls] = frozenset(names)
        return known

    def call_value(self, callee: Value, node: ast.Call, scope: Scope, line: int) -> Value:
        """The value a call returns."""
        if isinstance(callee, Partial):
            return self.call_value(callee.inner, node, scope, line)
        if isinstance(callee, Inst):  # an instance called: ``SessionLocal()`` of a sessionmaker
            produced = FACTORIES.get(f"{callee.type}.__call__")
            return Inst(produced) if produced is not None else None
        if not isinstance(callee, Ref):
            return None
        name = callee.name
        target = self.registry.get(name)
        if target is None:
            if name == "functools.partial":
                if node.args:
                    return Partial(self.eval(node.args[0], scope, line))
                return None
            if name == "builtins.super":
                return self._super(scope)
            if name in _FIELD_CALLS:
                # a class attribute ``s3: object = field(default_factory=make_s3)``: what the
                # factory makes, or the default
                for keyword in node.keywords:
                    if keyword.arg in ("default_factory", "factory"):
                        if isinstance(keyword.value, ast.Lambda):  # in a class body: not walked
                            return self.eval(keyword.value.body, _lexical(scope), line)
                        factory = ast.copy_location(
                            ast.Call(func=keyword.value, args=[], keywords=[]), node
                        )
                        return self.eval(factory, scope, line)
                    if keyword.arg == "default":
                        return self.eval(keyword.value, scope, line)
                return None
            if name in _DEPENDS:
                # FastAPI's ``Depends(get_db)``: what the dependency returns (or yields)
                if not node.args:
                    return None
                return self.dependency(self.eval(node.args[0], scope, line))
            if name in self.offload_decorators:
                # ``asyncify(pool="db")``, or ``asyncify(fn)``: still an offloading decorator
                return callee
            produced = FACTORIES.get(name)
            if produced is not None:
                return Inst(produced)
            if name.startswith("boto3.resource."):
                return Inst("boto3.resource")
            if name in self.rule_types:
                return Inst(name)
            return None
        if isinstance(target, ClassInfo):
            return Inst(name)
        if isinstance(target, FunctionInfo):
            if target.is_async or self.is_offloaded(target):
                return None
            return self.returns(target)
        return None

    def _super(self, scope: Scope) -> Value:
        """``super()`` in a method: an instance of the first base class (single inheritance)."""
        if not isinstance(scope, FunctionInfo) or scope.cls is None:
            return None
        for base in self.bases(scope.cls):
            if isinstance(base, Ref):
                if isinstance(self.registry.get(base.name), ClassInfo):
                    return Inst(base.name)
                if base.name != "builtins.object":
                    return Inst(_type_alias(base.name))
        return None

    def returns(self, func: FunctionInfo) -> Value:
        """What a project function returns: its annotation, else its first known return."""
        if func.ret_state == _DONE:
            return func.ret_value
        if func.ret_state == _PENDING:
            return None
        func.ret_state = _PENDING
        value: Value = None
        try:
            annotation = func.node.returns
            if annotation is not None:
                value = self.annotation(annotation, func, func.line)
                if value in _SELF_TYPES:  # ``def __enter__(self) -> Self``
                    value = Inst(func.cls.key) if func.cls is not None else None
            if value is None:
                for expr in func.returns:
                    value = self.eval(expr, func, expr.lineno)
                    if value is not None:
                        break
        finally:
            func.ret_value = value
            func.ret_state = _DONE
        return value

    def entered(self, node: ast.expr, scope: Scope, line: int, *, is_async: bool) -> Value:
        """What ``with node as x`` (``async with``) binds to ``x``.

        A ``@contextmanager`` (``@asynccontextmanager``) function of the project gives what it
        yields, ``contextlib.closing(x)`` and ``nullcontext(x)`` give ``x``, and an instance of
        a project class what its ``__enter__`` (``__aenter__``) returns. A library type is
        taken as itself: the usual ``__enter__`` (a session, a connection, a file) returns
        self, and the others are listed as the factories they are
        (``with pool.connection() as conn``).
        """
        if isinstance(node, ast.Call):
            callee = self.eval(node.func, scope, line)
            while isinstance(callee, Partial):
                callee = callee.inner
            if isinstance(callee, Ref):
                if callee.name in _PASSTHROUGH_CONTEXTS:
                    return self.eval(node.args[0], scope, line) if node.args else None
                target = self.registry.get(callee.name)
                if isinstance(target, FunctionInfo) and any(
                    _decorator_name(d) in _CONTEXT_DECORATORS for d in target.decorators
                ):
                    return self.yielded(target)
        value = self.eval(node, scope, line)
        if isinstance(value, Inst):
            cls = self.registry.get(value.type)
            if isinstance(cls, ClassInfo):
                method = self.member(cls, "__aenter__" if is_async else "__enter__", instance=False)
                target = self.registry.get(method.name) if isinstance(method, Ref) else None
                if isinstance(target, FunctionInfo):
                    return self.returns(target)
        return value

    def yielded(self, func: FunctionInfo) -> Value:
        """The first known value generator function `func` yields."""
        for expr in func.yields:
            found = self.eval(expr, func, expr.lineno)
            if found is not None:
                return found
        return None

    def dependency(self, value: Value) -> Value:
        """The value FastAPI injects for ``Depends(value)``: an instance of a class, what a
        function returns, or the first known value a generator dependency yields."""
        if not isinstance(value, Ref):
            return None
        target = self.registry.get(value.name)
        if isinstance(target, ClassInfo):
            return Inst(value.name)
        if not isinstance(target, FunctionInfo):
            return None
        if target.yields:
            return self.yielded(target)
        return self.returns(target)

    def is_offloaded(self, func: FunctionInfo) -> bool:
        """True when a decorator (``@asyncify``...) runs `func` in a worker thread."""
        if func.offloaded is None:
            func.offloaded = False
            assert func.parent is not None
            scope = func.cls if func.cls is not None else func.parent
            for decorator in func.decorators:
                node = decorator.func if isinstance(decorator, ast.Call) else decorator
                if self._offloads(self.eval(node, scope, func.line)) or (
                    node is not decorator and self._offloads(self.eval(decorator, scope, func.line))
                ):
                    func.offloaded = True
                    break
        return func.offloaded

    def _offloads(self, decorator: Value) -> bool:
        """An offloading decorator (``asyncify``, ``db_thread = asyncify(pool="db")``), or a
        project function that returns one applied (``def threaded(fn): return asyncify(fn)``).
        """
        if not isinstance(decorator, Ref):
            return False
        if decorator.name in self.offload_decorators:
            return True
        target = self.registry.get(decorator.name)
        if isinstance(target, FunctionInfo) and not target.is_async:
            applied = self.returns(target)
            return isinstance(applied, Ref) and applied.name in self.offload_decorators
        return False

    # call sites

    def sites(self, func: FunctionInfo) -> list[Site]:
        """Every blocking call and every call to a sync project function `func` makes."""
        if func.sites is not None:
            return func.sites
        sites: list[Site] = []
        try:
            self._call_sites(func, sites)
            self._with_sites(func, sites)
            self._property_sites(func, sites)
        except RecursionError:  # names defined through thousands of others: give up on `func`
            self.too_deep.append(func)
            sites = []
        comments = self.ignores.get(func.module)
        if comments:
            sites = [site for site in sites if not self._silence(site, comments)]
        sites.sort(key=lambda site: (site.line, site.col))
        func.sites = sites
        return sites

    def _call_sites(self, func: FunctionInfo, sites: list[Site]) -> None:
        """The calls `func` makes that block or enter sync project code."""
        for node in func.calls:
            callee = self.eval(node.func, func, node.lineno)
            while isinstance(callee, Partial):
                callee = callee.inner
            site = self._site(callee, node.func, node)
            if site is None:
                continue
            if (
                isinstance(site, Blocking)
                and (site.name.startswith(_SOCKET_METHODS) or site.name in _FD_CALLS)
                and id(node) in func.nonblocking
            ):
                continue
            if (
                isinstance(site, Blocking)
                and site.name in _LAZY_CALLS
                and id(node) not in self._iterated_calls(func)
            ):
                continue  # a lazy iterator made: it reads the disk where it is iterated
            if (
                isinstance(site, Blocking)
                and site.name in _FUTURE_WAITS
                and func.is_async
                and self._done_future(func, node)
            ):
                continue
            if (
                isinstance(site, Edge)
                and self._generator(site.target)
                and id(node) not in self._iterated_calls(func)
            ):
                continue  # a generator object made, not run: whoever iterates it runs the body
            sites.append(site)

    def _done_future(self, func: FunctionInfo, node: ast.Call) -> bool:
        """True for ``future.result()`` after ``await asyncio.wrap_future(future)`` in `func`:
        the future is done, and the call returns at once."""
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        if not isinstance(receiver, ast.Name):
            return False
        awaited = self._awaited_futures.get(func)
        if awaited is None:
            awaited = {}
            stack: list[ast.AST] = [*func.node.body]
            while stack:
                sub = stack.pop()
                if isinstance(sub, _NESTED_SCOPES):
                    continue
                if isinstance(sub, ast.Await):
                    for inner in ast.walk(sub.value):
                        if (
                            isinstance(inner, ast.Call)
                            and _decorator_name(inner.func) == "wrap_future"
                            and inner.args
                            and isinstance(inner.args[0], ast.Name)
                        ):
                            end = (sub.end_lineno or sub.lineno, sub.end_col_offset or 0)
                            name = inner.args[0].id
                            awaited[name] = min(awaited.get(name, end), end)
                stack.extend(ast.iter_child_nodes(sub))
            self._awaited_futures[func] = awaited
        done = awaited.get(receiver.id)
        return done is not None and done <= (node.lineno, node.col_offset)

    def _generator(self, func: FunctionInfo) -> bool:
        """True for an undecorated generator function: calling it runs none of its body.

        A decorated one (``@contextmanager``) is called like any function: the decorator
        decides what the call runs.
        """
        known = self._generators.get(func)
        if known is None:
            known = False
            if b"yield" in func.module.source and not any(
                _decorator_name(d) not in ("staticmethod", "classmethod") for d in func.decorators
            ):
                stack: list[ast.AST] = [*func.node.body]
                while stack and not known:
                    node = stack.pop()
                    if isinstance(node, ast.Yield | ast.YieldFrom):
                        known = True
                    elif not isinstance(node, _NESTED_SCOPES):
                        stack.extend(ast.iter_child_nodes(node))
            self._generators[func] = known
        return known

    def _iterated_calls(self, func: FunctionInfo) -> set[int]:
        """The calls in `func` whose result is iterated there, or returned to the caller.

        A generator's body runs where its generator object is iterated: as the iterable of a
        ``for`` or a comprehension, under ``yield from`` or ``*``, as an argument of a call
        that iterates (``list``, ``sorted``, ``next``, ``str.join``, ``writer.writerows``...)
        or of a function or class of the project (which may iterate it), itself or through a
        local name it is assigned to. Handed to a library's call (``StreamingResponse(gen())``,
        ``asyncio.to_thread(list, gen())``) it is iterated by that callee, in a thread for
        those; returned, it may be iterated by the caller, and counts as iterated.
        """
        known = self._iterated.get(func)
        if known is not None:
            return known
        calls: set[int] = set()
        names: set[str] = set()
        assigned: list[tuple[str, ast.expr]] = []

        def iterated(node: ast.expr | None) -> None:
            if isinstance(node, ast.Call):
                calls.add(id(node))
            elif isinstance(node, ast.Name):
                names.add(node.id)

        stack: list[ast.AST] = [*func.node.body]
        while stack:
            node = stack.pop()
            if isinstance(node, _NESTED_SCOPES):
                continue
            if isinstance(node, ast.For | ast.comprehension):
                iterated(node.iter)
            elif isinstance(node, ast.YieldFrom | ast.Starred | ast.Return):
                iterated(node.value)
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if len(targets) == 1 and isinstance(targets[0], ast.Name) and node.value:
                    assigned.append((targets[0].id, node.value))
            elif isinstance(node, ast.Call) and self._iterates(node, func):
                for arg in (*node.args, *(keyword.value for keyword in node.keywords)):
                    iterated(arg)
            stack.extend(ast.iter_child_nodes(node))
        calls.update(id(value) for name, value in assigned if name in names)
        self._iterated[func] = calls
        return calls

    def _iterates(self, node: ast.Call, func: FunctionInfo) -> bool:
        """True when the call iterates its arguments (``list(it)``, ``sep.join(it)``), or may:
        a function or class of the project, which the scanner cannot tell runs the generator
        in a thread, so it counts as iterating it on the loop (``write_csv(rows())``)."""
        callee = node.func
        if isinstance(callee, ast.Attribute) and callee.attr in _ITERATING_METHODS:
            return True
        value = self.eval(callee, func, node.lineno)
        if isinstance(value, Ref):
            return (
                value.name in _ITERATING_CALLS
                or value.name.startswith("itertools.")
                or value.name in self.registry
            )
        return False

    def _with_sites(self, func: FunctionInfo, sites: list[Site]) -> None:
        """``with obj:`` calls ``__enter__`` and ``__exit__`` of a project class, and blocks
        where a library type's ``__enter__`` or ``__exit__`` does.

        A library ``__enter__`` (``with lock:`` on a ``threading.Lock`` acquires it, as
        ``lock.acquire()`` does) counts in an ``async def`` itself only. Not in the sync
        functions async code calls: there a ``with lock:`` is mostly a short critical section
        over shared state, which threads and the loop take in turn (the library's own code has
        some 110 of them, none a wait that lasts). A library ``__exit__`` (an executor's:
        ``shutdown(wait=True)`` waits for all the work submitted) counts everywhere except in
        an ``async def`` whose block awaits: the work it hands the loop (``run_in_executor(ex,
        ...)``, ``wrap_future(ex.submit(...))``) is done by the end of the block.
        """
        for node, statement in func.withs:
            owner = self.eval(node, func, node.lineno)
            if not isinstance(owner, Inst):
                continue
            cls = self.registry.get(owner.type)
            text = f"with {_call_text(node)}"
            if not isinstance(cls, ClassInfo):
                if cls is not None:
                    continue
                for name in ("__enter__", "__exit__"):
                    rule_id = BLOCKING_CALLS.get(f"{owner.type}.{name}")
                    if rule_id is None:
                        continue
                    if name == "__enter__" and not func.is_async:
                        continue
                    if name == "__exit__" and func.is_async and _awaits(statement.body):
                        continue
                    sites.append(
                        Blocking(
                            rule_id,
                            f"{owner.type}.{name}",
                            "",
                            text,
                            node.lineno,
                            node.end_lineno or node.lineno,
                            node.col_offset,
                        )
                    )
                continue
            for name in ("__enter__", "__exit__"):
                method = self.member(cls, name, instance=False)
                target = self.registry.get(method.name) if isinstance(method, Ref) else None
                if (
                    isinstance(target, FunctionInfo)
                    and not target.is_async
                    and not self.is_offloaded(target)
                ):
                    sites.append(self._edge(target, node, node, text))

    def _property_sites(self, func: FunctionInfo, sites: list[Site]) -> None:
        """Reading a property of a project class calls it."""
        if not self.property_names:
            return
        for attr_node in func.attr_loads:
            if attr_node.attr not in self.property_names or not isinstance(attr_node.ctx, ast.Load):
                continue
            owner = self.eval(attr_node.value, func, attr_node.lineno)
            if not isinstance(owner, Inst):
                continue
            cls = self.registry.get(owner.type)
            if not isinstance(cls, ClassInfo):
                continue
            for current in self.mro(cls)[0]:
                bindings = current.bindings.get(attr_node.attr)
                if bindings:
                    target = self.registry.get(_pick(bindings, 0).target)
                    if isinstance(target, FunctionInfo) and target.is_property:
                        target = self._dispatched(target, cls)
                        sites.append(self._edge(target, attr_node, attr_node))
                    break

    @staticmethod
    def _silence(site: Site, comments: Mapping[int, frozenset[str] | None]) -> bool:
        """Apply the ignore comments on the lines of `site`; True when it is dropped."""
        keys: set[str] = set()
        for line in range(site.line, site.end_line + 1):
            if line in comments:
                found = comments[line]
                if found is None:
                    return True
                keys |= found
        if not keys:
            return False
        if isinstance(site, Blocking):
            return any(key in keys for key in site.keys)
        site.ignored = frozenset(keys)
        return False

    def _edge(
        self, target: FunctionInfo, func_node: ast.expr, node: ast.expr, text: str = ""
    ) -> Edge:
        if not text:
            text = _call_text(func_node)
            if isinstance(node, ast.Call):
                text = f"{text}(...)"
        return Edge(
            target,
            text,
            node.lineno,
            node.end_lineno or node.lineno,
            node.col_offset,
        )

    def _site(self, callee: Value, func_node: ast.expr, node: ast.Call) -> Site | None:
        if isinstance(callee, Inst):
            cls = self.registry.get(callee.type)
            if isinstance(cls, ClassInfo):
                method = self.member(cls, "__call__", instance=False)
                return self._site(method, func_node, node)
            return None
        if not isinstance(callee, Ref):
            return None
        name = callee.name
        fix = self._extra_rule(name)
        if fix is not None:
            return Blocking(
                CUSTOM_RULE.id,
                name,
                fix,
                f"{_call_text(func_node)}(...)",
                node.lineno,
                node.end_lineno or node.lineno,
                node.col_offset,
            )
        target = self.registry.get(name)
        if target is None:
            rule_id = _blocking_rule(name)
            if rule_id is None or _does_not_wait(name, node):
                return None
            return Blocking(
                rule_id,
                name,
                "",
                f"{_call_text(func_node)}(...)",
                node.lineno,
                node.end_lineno or node.lineno,
                node.col_offset,
            )
        if isinstance(target, ClassInfo):
            cls = target
            init = self.member(cls, "__init__", instance=False)
            target = self.registry.get(init.name) if isinstance(init, Ref) else None
            if not isinstance(target, FunctionInfo):
                # no ``__init__`` of the project: a dataclass's own calls ``__post_init__``
                post = self.member(cls, "__post_init__", instance=False)
                target = self.registry.get(post.name) if isinstance(post, Ref) else None
        if (
            isinstance(target, FunctionInfo)
            and not target.is_async
            and not self.is_offloaded(target)
        ):
            return self._edge(target, func_node, node)
        return None

    def _extra_rule(self, name: str) -> str | None:
        fix = self.extra_exact.get(name)
        if fix is None:
            for prefix, prefix_fix in self.extra_prefixes:
                if name.startswith(prefix):
                    return prefix_fix
        return fix

    # reachability

    def reach(self, root: FunctionInfo) -> dict[Blocking, Chain]:
        """Every blocking call reachable from the sync function `root`, with its shortest chain.

        Tarjan's algorithm over the sync call graph, iterative; strongly connected components
        are finished in reverse topological order, so each function is computed once.
        """
        done = self._reach
        if root in done:
            return done[root]
        index: dict[FunctionInfo, int] = {}
        low: dict[FunctionInfo, int] = {}
        on_stack: set[FunctionInfo] = set()
        stack: list[FunctionInfo] = []
        work: list[tuple[FunctionInfo, Iterator[Site]]] = []

        def push(func: FunctionInfo) -> None:
            index[func] = low[func] = len(index)
            stack.append(func)
            on_stack.add(func)
            work.append((func, iter(self.sites(func))))

        push(root)
        while work:
            func, pending = work[-1]
            advanced = False
            for site in pending:
                if not isinstance(site, Edge):
                    continue
                target = site.target
                if target in done:
                    continue
                if target not in index:
                    push(target)
                    advanced = True
                    break
                if target in on_stack:
                    low[func] = min(low[func], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[func])
            if low[func] == index[func]:
                component: list[FunctionInfo] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member is func:
                        break
                self._finish(component)
        return done[root]

    def _finish(self, component: list[FunctionInfo]) -> None:
        """Chains for one strongly connected component whose callees outside it are done.

        Each member first gets its own blocking calls and what its calls out of the
        component reach; then, per blocking call, a shortest-path search over the
        component's reversed call edges spreads the best chain to every member that reaches
        it: O(blocking calls x component edges), never quadratic in the component's size.
        """
        done = self._reach
        members = set(component)
        results: dict[FunctionInfo, dict[Blocking, Chain]] = {func: {} for func in component}
        callers: dict[FunctionInfo, list[tuple[FunctionInfo, Edge]]] = {}
        for func in component:
            result = results[func]
            for site in self.sites(func):
                if isinstance(site, Blocking):
                    if site not in result:
                        result[site] = Chain(func, site, None)
                    continue
                if site.target in members:
                    callers.setdefault(site.target, []).append((func, site))
                    continue
                for blocking, chain in done[site.target].items():
                    if site.ignored and silenced(blocking, site):
                        continue
                    known = result.get(blocking)
                    if known is None or known.length > chain.length + 1:
                        result[blocking] = Chain(func, site, chain)
        if callers:
            order = {func: index for index, func in enumerate(component)}
            blockings = {blocking for result in results.values() for blocking in result}
            for blocking in blockings:
                heap = [
                    (results[func][blocking].length, order[func], func)
                    for func in component
                    if blocking in results[func]
                ]
                heapq.heapify(heap)
                while heap:
                    length, _, callee = heapq.heappop(heap)
                    best = results[callee][blocking]
                    if best.length < length:
                        continue
                    for caller, site in callers.get(callee, ()):
                        if site.ignored and silenced(blocking, site):
                            continue
                        known = results[caller].get(blocking)
                        if known is None or known.length > length + 1:
                            results[caller][blocking] = Chain(caller, site, best)
                            heapq.heappush(heap, (length + 1, order[caller], caller))
        done.update(results)


_MISSING = object()
_PATH = Inst("pathlib.Path")
# calls that iterate their arguments, or wrap them in an iterator iterated where it is made
_ITERATING_CALLS = frozenset(
    {
        *(
            f"builtins.{name}"
            for name in (
                *("list", "tuple", "set", "frozenset", "dict", "bytes", "bytearray"),
                *("sorted", "reversed", "sum", "min", "max", "any", "all", "next", "iter"),
                *("enumerate", "zip", "map", "filter"),
            )
        ),
        "collections.deque",
        "collections.Counter",
        "functools.reduce",
    }
)
_ITERATING_METHODS = frozenset({"join", "extend", "update", "writelines", "writerows"})


# what a method's copy for another receiving class shares with the method (`_dispatched`)
_SHARED_FUNCTION_SLOTS = (
    "attr_loads",
    "calls",
    "decorators",
    "elsewhere",
    "is_property",
    "nonblocking",
    "returns",
    "withs",
    "yields",
)


def _rebind(
    binding: Binding, func: FunctionInfo, copy: FunctionInfo, receiver: ClassInfo
) -> Binding:
    """`binding` of `func`'s scope, made for `copy`: evaluated there, ``self`` of `receiver`."""
    scope = copy if binding.scope is func else binding.scope
    target = receiver.key if binding.kind == _SELF else binding.target
    return Binding(scope, binding.line, binding.kind, binding.node, target, binding.extra)


def _pick(bindings: list[Binding], line: int) -> Binding:
    """The binding in force at `line`: the last one before it, else the last one of all.

    ``x = None`` gives way to the binding before it, so the optional-import idiom
    (``try: import requests`` / ``except ImportError: requests = None``) keeps the module.
    """
    candidates = [b for b in bindings if b.line < line] if line else []
    if not candidates:
        candidates = bindings
    best = max(candidates, key=lambda binding: binding.line)
    if _is_none(best):
        earlier = [b for b in candidates if not _is_none(b)]
        if earlier:
            return max(earlier, key=lambda binding: binding.line)
    return best


def _is_none(binding: Binding) -> bool:
    node = binding.node
    return binding.kind == _EXPR and isinstance(node, ast.Constant) and node.value is None


def silenced(blocking: Blocking, edge: Edge) -> bool:
    return blocking.keys[0] in edge.ignored or blocking.keys[1] in edge.ignored


_TYPING_WRAPPERS = frozenset(
    f"{module}.{name}"
    for module in ("typing", "typing_extensions")
    for name in ("Annotated", "Optional", "Union")
)
# library calls that return a generator, and read the disk only as it is iterated: taken as
# the calls of a generator function of the project are (``Path.iterdir`` is not one: since
# Python 3.13 it lists the directory when called, as ``os.scandir`` opens it)
_LAZY_CALLS = frozenset(
    {
        "pathlib.Path.glob",
        "pathlib.Path.rglob",
        "pathlib.Path.walk",
        "os.walk",
        "os.fwalk",
        "glob.iglob",
    }
)
_FUTURE_WAITS = frozenset(
    {"concurrent.futures.Future.result", "concurrent.futures.Future.exception"}
)
_FIELD_CALLS = frozenset(
    {"dataclasses.field", "pydantic.Field", "pydantic.fields.Field", "attr.ib", "attrs.field"}
)
_SELF_TYPES = frozenset(Inst(f"{module}.Self") for module in ("typing", "typing_extensions"))
_PASSTHROUGH_CONTEXTS = frozenset({"contextlib.closing", "contextlib.nullcontext"})
_CONTEXT_DECORATORS = frozenset({"contextmanager", "asynccontextmanager"})
_DEPENDS = frozenset({"fastapi.Depends", "fastapi.params.Depends", "fastapi.Security"})
_NAMESPACE_NAMES = {name: ns for ns, names in NAMESPACE_TYPES.items() for name in names}


def _namespace_of(name: str) -> str | None:
    """The namespace type whose attribute *name* is (``openai.OpenAI`` for ``openai.chat``
    and for ``openai.OpenAI.chat``), or None."""
    namespace = _NAMESPACE_NAMES.get(name)
    if namespace is not None:
        return namespace
    owner = name.rpartition(".")[0]
    while owner:
        if owner in NAMESPACE_TYPES:
            return owner
        owner = owner.rpartition(".")[0]
    return None


_BOTO3_STUBS = ("mypy_boto3_", "types_boto3_")


def _type_alias(name: str) -> str:
    alias = TYPE_ALIASES.get(name)
    if alias is not None:
        return alias
    if name.startswith(_BOTO3_STUBS):
        # boto3-stubs' packages, ``mypy_boto3_s3.client.S3Client`` (``types_boto3_`` since
        # the rename); each resource class is in ``service_resource`` (``Table``, ``Bucket``)
        if name.endswith("ServiceResource") or ".service_resource." in name:
            return "boto3.resource"
        if name.endswith("Client"):
            return "boto3.client"
        if name.endswith("Paginator"):
            return "boto3.Paginator"
        if name.endswith("Waiter"):
            return "boto3.Waiter"
    return name


def _blocking_rule(name: str) -> str | None:
    rule_id = BLOCKING_CALLS.get(name)
    if rule_id is not None:
        return rule_id
    owner, _, method = name.rpartition(".")
    spec = ANY_METHOD_TYPES.get(owner)
    if (
        spec is not None
        and method
        and not method.startswith("_")
        and not method[0].isupper()
        and method not in spec[1]
    ):
        return spec[0]
    return None


# waits that return at once when an argument, by position or keyword, is the constant False
# or 0 (``blocking=False``, ``timeout=0``): name -> those arguments
_NO_WAIT_ARGUMENTS: dict[str, tuple[tuple[int, str], ...]] = {
    **{
        f"threading.{kind}.acquire": ((0, "blocking"), (1, "timeout"))
        for kind in ("Lock", "RLock", "Semaphore", "Condition")
    },
    "queue.Queue.get": ((0, "block"), (1, "timeout")),
    **{
        name: ((0, "timeout"),)
        for name in (
            "threading.Event.wait",
            "threading.Condition.wait",
            "threading.Thread.join",
            "concurrent.futures.Future.result",
            "concurrent.futures.Future.exception",
            "multiprocessing.pool.AsyncResult.get",
            "multiprocessing.pool.AsyncResult.wait",
        )
    },
    "threading.Condition.wait_for": ((1, "timeout"),),
    "concurrent.futures.wait": ((1, "timeout"),),
}


def _does_not_wait(name: str, node: ast.Call) -> bool:
    """True for the explicitly non-blocking form of a wait: ``lock.acquire(blocking=False)``,
    ``q.get(False)``, ``event.wait(0)``, ``future.result(timeout=0)``."""
    arguments = _NO_WAIT_ARGUMENTS.get(name)
    if arguments is None:
        return False
    for position, keyword in arguments:
        value: ast.expr | None = None
        if position < len(node.args) and not any(
            isinstance(arg, ast.Starred) for arg in node.args[: position + 1]
        ):
            value = node.args[position]
        for item in node.keywords:
            if item.arg == keyword:
                value = item.value
        if (
            isinstance(value, ast.Constant)
            and isinstance(value.value, int | float)
            and value.value == 0
        ):
            return True
    return False


def _known_external(name: str) -> bool:
    return name in BLOCKING_CALLS or name in FACTORIES or name == "functools.partial"
