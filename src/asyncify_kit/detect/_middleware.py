"""`BlockingMiddleware`: blocking calls and loop stalls, attributed to the route that caused them.

Raw ASGI, so it wraps any ASGI app (Starlette, FastAPI, others) with no dependency. For each
HTTP/websocket request it publishes the route being served to the detector (reports get
``route="GET /items/{item_id}"``, the route template the framework recorded in
``scope["route"]``, or `UNMATCHED` for a request no route serves), and its frame is what a
`LoopMonitor` finds on the loop thread's stack during a stall. Counters per route are kept in
`metrics()` (at most `MAX_ROUTES` labels), and served as Prometheus text at *metrics_path* if
given.

The monitor and (by default log-mode) detector start with the app's lifespan, or with its first
request when the server runs no lifespan, and stop at lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import FrameType
from typing import Any, Final

from ..exceptions import ConfigError
from ._detector import (
    BlockingDetector,
    BlockingReport,
    Mode,
    add_listener,
    current_loop_kind,
    detect_blocking,
    remove_listener,
    route_provider,
)
from ._monitor import LoopMonitor, StallReport, _label, route_frames

__all__ = ["BlockingMiddleware", "route_label"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


#: the route label of a request no route serves: one label whatever the path (scanners and bots
#: send endless distinct 404 URLs), the method (405) or the framework (one that records no
#: ``scope["route"]``)
UNMATCHED: Final = "<unmatched>"
#: at most this many route labels are counted; the requests of any further one count under
#: ``"<other>"``
MAX_ROUTES: Final = 1000
_OTHER: Final = "<other>"
#: the middlewares serving the current request, outermost first: a report is counted by these
#: only, not by every BlockingMiddleware of the process (another app's)
_serving: contextvars.ContextVar[tuple[BlockingMiddleware, ...]] = contextvars.ContextVar(
    "asyncify_kit_serving", default=()
)


def route_label(scope: Scope) -> str:
    """``"GET /items/{item_id}"``: the method and the route template, else `UNMATCHED`.

    The template is the one the framework recorded in ``scope["route"]`` (Starlette and
    FastAPI do), after the templates of the mounts the request went through
    (``/tenants/{tenant}``), with the prefix of the routers that included it
    (``/v1/items/{item_id}``); a request that matched no route, or whose method the route
    does not take, is `UNMATCHED`: never the raw path, so the labels are as few as the app's
    routes.
    """
    method = scope.get("method") or ("WEBSOCKET" if scope.get("type") == "websocket" else "")
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    methods = getattr(route, "methods", None)
    included = _included_context(scope, route)
    if included is not None:
        template = getattr(included, "path_format", None) or template
        methods = getattr(included, "methods", None) or methods
    if not isinstance(template, str):
        return UNMATCHED
    if scope.get("method") and (method not in methods if methods else method not in _METHODS):
        return UNMATCHED  # a 405 (a route with no method list answers any, 405 to most)
    root: str = scope.get("root_path", "")
    top = scope.get("app_root_path")  # Starlette: root_path before the first Mount
    if isinstance(top, str) and top != root:
        mounts = _mount_templates(scope, top, root)
        if mounts is None:
            return UNMATCHED
        root = top + mounts
    return f"{method} {root}{template}".strip()


def _included_context(scope: Scope, route: object) -> object | None:
    """FastAPI's context of *route* in the router that included it (FastAPI >= 0.16x): a
    route of ``app.include_router(router, prefix="/v1")`` is served as the router's own
    `APIRoute`, whose path lacks the prefix, while the context holds the full template
    (``/v1/items/{item_id}``). None for a route not served through an inclusion, or a context
    left in the scope by another route."""
    fastapi_scope = scope.get("fastapi")
    context = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    if route is None or getattr(context, "original_route", None) is not route:
        return None
    return context


#: the methods a route without a method list is labelled with (any other is a 405 there)
_METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
)


def _mount_templates(scope: Scope, top: str, root: str) -> str | None:
    """The templates of the Starlette mounts that took *root* from *top* (``/tenants/acme``
    -> ``/tenants/{tenant}``): Starlette's Mount puts the raw prefix it matched in
    ``scope["root_path"]``, text the client chose. The router's matching is done again from
    the app's top router; None when it does not lead to *root* (never the raw text)."""
    routing = sys.modules.get("starlette.routing")
    raw = root[len(top) :] if root.startswith(top) else None
    path: str = scope.get("path", "")
    if routing is None or raw is None or not path.startswith(top):
        return None
    remaining = path[len(top) :]  # what the top router matched (Starlette's route path)
    routes = _routes(scope.get("router"))
    found: list[str] = []
    for _ in range(_MAX_MOUNTS):
        if not raw:
            return "".join(found)
        for mount in routes:
            match = mount.path_regex.match(remaining) if isinstance(mount, routing.Mount) else None
            if match is not None:
                break
        else:
            return None
        rest = "/" + match.group("path")
        matched = remaining[: -len(rest)]
        if not raw.startswith(matched):
            return None
        found.append(mount.path_format[: -len("/{path}")])
        raw, remaining, routes = raw[len(matched) :], rest, _routes(mount)
    return None


_MAX_MOUNTS: Final = 16


def _routes(app: object) -> list[Any]:
    """The routes of a router, a Starlette app or a Mount, through the middlewares around a
    mounted app (each keeps the next one as ``.app``)."""
    for _ in range(_MAX_MOUNTS):
        routes = getattr(app, "routes", None)
        if routes:
            return list(routes)
        app = getattr(app, "app", None)
        if app is None:
            break
    return []


def chosen_monitor(monitor: object, stall_threshold: float) -> LoopMonitor | None:
    """The monitor the *monitor* option asks for (True: a new one); `ConfigError` if invalid."""
    if monitor is True:
        return LoopMonitor(stall_threshold=stall_threshold)
    if monitor is False or monitor is None or isinstance(monitor, LoopMonitor):
        return monitor or None
    raise ConfigError(
        f"invalid monitor {monitor!r}; accepted: True (a new LoopMonitor), a LoopMonitor "
        "of your own, or False"
    )


def checked_metrics_path(path: object) -> str | None:
    """*path* if a request can have it (``"/metrics"``), or None; else `ConfigError` (a path
    without its leading ``/``, or not a str, answered at no URL)."""
    if path is None or (isinstance(path, str) and path.startswith("/")):
        return path
    raise ConfigError(
        f"invalid metrics_path {path!r}; accepted: a path starting with '/' (such as "
        "'/metrics'), or None"
    )


class BlockingMiddleware:
    """Attribute blocking calls and loop stalls to the route being served.

    ```python
    import asyncio

    from fastapi import FastAPI

    from asyncify_kit.detect import BlockingMiddleware

    app = FastAPI()
    app.add_middleware(BlockingMiddleware, stall_threshold=0.1, metrics_path="/metrics")


    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}


    async def main() -> None:
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await client.get("/items/1")
        print(BlockingMiddleware.of(app).metrics()["routes"])


    asyncio.run(main())
    ```

    *monitor*: True (a `LoopMonitor` with *stall_threshold*), a monitor of your own, or False.
    *detect*: the mode of a `detect_blocking` active while the app runs (``"log"`` by default;
    None for off). *allow*: its allow patterns.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        monitor: LoopMonitor | bool = True,
        detect: Mode | None = "log",
        allow: Iterable[str] = (),
        stall_threshold: float = 0.1,
        metrics_path: str | None = None,
    ) -> None:
        self.app = app
        self.monitor = chosen_monitor(monitor, stall_threshold)
        self.detector: BlockingDetector | None = (
            detect_blocking(mode=detect, allow=allow) if detect is not None else None
        )
        self.metrics_path = checked_metrics_path(metrics_path)
        self._lock = threading.Lock()
        self._routes: dict[str, dict[str, float]] = {}
        self._started = False
        self._loop: object = None  # the loop started on (an asyncio loop or a trio token)
        self._owns_monitor = False
        if self.monitor is not None:
            self.monitor.add_stall_listener(self._on_stall)

    @classmethod
    def of(cls, app: Any) -> BlockingMiddleware:
        """The middleware installed around *app* (a FastAPI/Starlette app builds it lazily)."""
        if isinstance(app, BlockingMiddleware):
            return app
        found = getattr(app, "middleware_stack", None)
        while found is not None and not isinstance(found, BlockingMiddleware):
            found = getattr(found, "app", None)
        if found is None:
            raise LookupError(
                f"no BlockingMiddleware around {app!r} (has it served a request yet?)"
            )
        return found

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the monitor and the detector (from code running on the app's loop).

        Idempotent on one loop: the ASGI lifespan, FastAPI's ``lifespan_context`` (see
        `install_detection`) and the first request may each call it. Started on another loop,
        one that is gone (a test client's, another test's), it restarts on this one: the
        monitor watched that loop, and the detector that loop's thread."""
        loop = _running_loop()
        with self._lock:
            if self._started and self._loop is loop:
                return
            restart = self._started
        if restart:
            self.stop()
        with self._lock:
            if self._started:
                return
            self._started = True
            self._loop = loop
        add_listener(self._on_report)
        if self.detector is not None:
            self.detector.__enter__()
        if self.monitor is not None and not self.monitor.running:
            self.monitor.start()
            self._owns_monitor = True

    def stop(self) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
        remove_listener(self._on_report)
        if self.detector is not None:
            self.detector.__exit__(None, None, None)
        if self.monitor is not None and self._owns_monitor:
            self.monitor.stop()
            self._owns_monitor = False

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            try:
                await self.app(scope, self._lifespan_receive(receive), self._lifespan_send(send))
            except BaseException:
                # a startup that failed (Starlette re-raises after "lifespan.startup.failed")
                # gets no shutdown: stop here, or the patches and the monitor thread stay on
                self.stop()
                raise
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not self._started or self._loop is not _running_loop():
            self.start()  # no lifespan, or one run on a loop that is gone
        if (
            self.metrics_path is not None
            and kind == "http"
            and _route_path(scope) == self.metrics_path
        ):
            await self._serve_metrics(send)
            return
        await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        # this frame is what LoopMonitor looks for on the loop thread's stack (route_frames)
        token = route_provider.set(functools.partial(route_label, scope))
        serving = _serving.set((*_serving.get(), self))
        try:
            await self.app(scope, receive, send)
        finally:
            _serving.reset(serving)
            route_provider.reset(token)
            self._count(route_label(scope), "requests", 1)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def lifespan_receive() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                self.start()
            elif message.get("type") == "lifespan.shutdown":
                self.stop()
            return message

        return lifespan_receive

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message.get("type") == "lifespan.startup.failed":
                self.stop()
            await send(message)

        return lifespan_send

    async def _serve_metrics(self, send: Send) -> None:
        body = self.prometheus().encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # -- attribution --------------------------------------------------------------------------

    def _count(self, route: str, field: str, amount: float) -> None:
        with self._lock:
            if route not in self._routes and len(self._routes) >= MAX_ROUTES:
                route = _OTHER  # a backstop: route_label() keeps to the app's routes
            counters = self._routes.setdefault(
                route, {"requests": 0, "blocking_calls": 0, "stalls": 0, "stall_seconds": 0.0}
            )
            counters[field] += amount

    def _on_report(self, report: BlockingReport) -> None:
        # listeners are process-wide: count only the calls made serving a request of this app
        if report.route is not None and self in _serving.get():
            self._count(report.route, "blocking_calls", 1)

    def _on_stall(self, report: StallReport) -> None:
        if report.route is not None and not report.ongoing:
            self._count(report.route, "stalls", 1)
            self._count(report.route, "stall_seconds", report.duration)

    def metrics(self) -> dict[str, Any]:
        """Counters per route (requests, blocking_calls, stalls, stall_seconds), the monitor's."""
        with self._lock:
            routes = {route: dict(values) for route, values in self._routes.items()}
        return {
            "routes": routes,
            "monitor": self.monitor.metrics() if self.monitor is not None else None,
            "blocking_calls": len(self.detector.reports) if self.detector is not None else None,
        }

    def prometheus(self, prefix: str = "asyncify") -> str:
        """Per-route counters and the monitor's metrics in Prometheus text format."""
        lines: list[str] = []
        routes = self.metrics()["routes"]
        for field, help_ in (
            ("requests", "Requests served, by route."),
            ("blocking_calls", "Blocking calls on the event loop, by route."),
            ("stalls", "Event-loop stalls, by the route being served."),
            ("stall_seconds", "Time the event loop was stalled, by route."),
        ):
            name = f"{prefix}_route_{field}_total"
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} counter")
            for route, values in sorted(routes.items()):
                label = _label(route)  # (an app's labels may hold any text)
                lines.append(f'{name}{{route="{label}"}} {float(values[field])!r}')
        text = "\n".join(lines) + "\n"
        if self.monitor is not None:
            text += self.monitor.prometheus(prefix)
        return text


def _route_path(scope: Scope) -> str:
    """The request's path inside the app, as Starlette's router matches it: without the
    ``root_path`` a server puts in front of it (``uvicorn --root-path /api`` serves
    ``/metrics`` with ``scope["path"] == "/api/metrics"``; the exact path never matched)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def _running_loop() -> object:
    """The running asyncio loop, or the trio run's token (None outside a loop)."""
    if current_loop_kind() == "trio":  # trio.run, or its guest mode on an asyncio host
        import trio

        return trio.lowlevel.current_trio_token()
    return asyncio._get_running_loop()


def _scope_route(frame: FrameType) -> str | None:
    scope = frame.f_locals.get("scope")
    return route_label(scope) if isinstance(scope, MutableMapping) else None


route_frames[BlockingMiddleware._serve.__code__] = _scope_route
