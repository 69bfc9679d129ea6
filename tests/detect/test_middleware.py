"""BlockingMiddleware and the false-positive check, with FastAPI served by a real uvicorn.

uvicorn serves on 127.0.0.1 in the test's own event loop (asyncio: uvicorn is asyncio-only) and
httpx.AsyncClient talks to it over the loopback socket, so the server, the client and the
detector all run on the loop thread being watched.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from asyncify_kit import ConfigError, asyncify
from asyncify_kit.detect import (
    BlockingMiddleware,
    LoopMonitor,
    _middleware,
    detect_blocking,
    route_label,
)
from asyncify_kit.detect._detector import is_active
from asyncify_kit.fastapi import install_detection

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {})


@asynccontextmanager
async def served(app: Callable[..., object]) -> AsyncIterator[httpx.AsyncClient]:
    """Serve *app* with uvicorn on a free loopback port in this loop; yield a client for it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def build_app(**middleware: object) -> FastAPI:
    app = FastAPI()
    app.add_middleware(BlockingMiddleware, **middleware)  # type: ignore[arg-type]
    offloaded_sleep = asyncify(time.sleep)

    @app.get("/")
    async def fast() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        time.sleep(0.15)  # the blocking handler
        return {"id": item_id}

    @app.get("/offloaded")
    async def offloaded() -> dict[str, bool]:
        await offloaded_sleep(0.01)
        return {"ok": True}

    @app.get("/sync")
    def sync_endpoint() -> dict[str, bool]:
        time.sleep(0.01)  # a def endpoint: FastAPI runs it in a thread
        return {"ok": True}

    return app


async def stalls_seen(app: FastAPI, route: str) -> None:
    """Wait until the monitor has counted a stall of *route* (it sees the loop again after
    the blocking handler; on a loaded machine its thread may take a while): 10 s at most."""
    middleware = BlockingMiddleware.of(app)
    with anyio.move_on_after(10):
        while not middleware.metrics()["routes"].get(route, {}).get("stalls"):
            await anyio.sleep(0.01)


async def test_blocking_calls_and_stalls_are_attributed_to_the_route() -> None:
    app = build_app(detect="collect", stall_threshold=0.08, metrics_path="/metrics")
    async with served(app) as client:
        for item_id in (1, 2):
            assert (await client.get(f"/items/{item_id}")).json() == {"id": item_id}
        assert (await client.get("/offloaded")).status_code == 200
        assert (await client.get("/sync")).status_code == 200
        await stalls_seen(app, "GET /items/{item_id}")
        middleware = BlockingMiddleware.of(app)
        metrics = middleware.metrics()
        text = (await client.get("/metrics")).text
    assert middleware.detector is not None
    reports = middleware.detector.reports
    assert [r.route for r in reports] == ["GET /items/{item_id}"] * 2
    assert all(r.user_frame and r.user_frame.line.startswith("time.sleep(0.15)") for r in reports)
    routes = metrics["routes"]
    assert routes["GET /items/{item_id}"]["requests"] == 2
    assert routes["GET /items/{item_id}"]["blocking_calls"] == 2
    assert routes["GET /items/{item_id}"]["stalls"] >= 1
    assert routes["GET /items/{item_id}"]["stall_seconds"] >= 0.08
    assert routes["GET /offloaded"]["requests"] == 1
    assert routes["GET /offloaded"]["blocking_calls"] == 0
    assert routes["GET /sync"]["blocking_calls"] == 0
    assert 'asyncify_route_blocking_calls_total{route="GET /items/{item_id}"} 2.0' in text
    assert "asyncify_loop_lag_seconds" in text
    assert middleware.monitor is not None and not middleware.monitor.running  # lifespan stop


async def test_a_streaming_body_blocking_call_is_attributed_its_stall_only_counted() -> None:
    """As docs/detection.md says: a blocking call in a `StreamingResponse` body (a task of its
    own) is attributed to the route, through the task's context; its stall is counted by the
    monitor, but against no route (no frame of the middleware is on that task's stack)."""
    from fastapi.responses import StreamingResponse

    app = build_app(detect="collect", stall_threshold=0.08)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            time.sleep(0.15)  # the blocking body
            yield b"x"

        return StreamingResponse(body())

    async with served(app) as client:
        assert (await client.get("/stream")).content == b"x"
        middleware = BlockingMiddleware.of(app)
        assert middleware.monitor is not None
        with anyio.move_on_after(10):
            while not middleware.monitor.metrics()["stalls"]:
                await anyio.sleep(0.01)
        stalls = middleware.monitor.metrics()["stalls"]
        routes = middleware.metrics()["routes"]
    assert stalls >= 1
    assert middleware.detector is not None
    assert [r.route for r in middleware.detector.reports] == ["GET /stream"]
    assert routes["GET /stream"]["blocking_calls"] == 1
    assert routes["GET /stream"]["stalls"] == 0


async def test_a_normal_fastapi_request_cycle_reports_nothing() -> None:
    app = build_app(detect="raise", stall_threshold=0.5)
    with detect_blocking(mode="collect") as outer:
        async with served(app) as client:
            for _ in range(3):
                responses = await asyncio.gather(
                    client.get("/"), client.get("/offloaded"), client.get("/sync")
                )
                assert [r.status_code for r in responses] == [200, 200, 200]
            middleware = BlockingMiddleware.of(app)
    assert middleware.detector is not None
    assert middleware.detector.reports == []
    assert outer.reports == []
    assert middleware.metrics()["routes"]["GET /"]["requests"] == 3


async def test_the_facades_in_a_request_cycle_report_nothing(tmp_path: pathlib.Path) -> None:
    from asyncify_kit.http import HttpClient
    from asyncify_kit.sql import Database
    from asyncify_kit.storage import Storage

    app = FastAPI()
    app.add_middleware(BlockingMiddleware, detect="collect")
    database = Database(f"sqlite:///{tmp_path / 'app.db'}")
    storage = Storage(f"file://{tmp_path / 'files'}")

    @app.get("/work")
    async def work() -> dict[str, int]:
        await database.execute("create table if not exists t (x integer)")
        await database.execute("insert into t (x) values (:x)", {"x": 1})
        rows = await database.fetch_all("select x from t")
        await storage.write("a/b.txt", b"data")
        data = await storage.read("a/b.txt")
        return {"rows": len(rows), "bytes": len(data)}

    with detect_blocking(mode="collect") as detector:
        async with (
            database,
            storage,
            served(app) as client,
            HttpClient(str(client.base_url)) as http,
        ):
            for _ in range(2):
                response = await http.get("/work")
                assert response.status_code == 200
    assert [str(r) for r in detector.reports] == []


def test_route_label() -> None:
    route = build_app().routes[-1]  # GET /sync
    assert route_label({"type": "http", "method": "GET", "route": route}) == "GET /sync"
    assert route_label({"type": "http", "method": "POST", "route": route}) == "<unmatched>"  # 405
    assert route_label({"type": "http", "method": "GET", "path": "/x/1"}) == "<unmatched>"
    assert route_label({"type": "websocket", "path": "/ws"}) == "<unmatched>"


async def test_requests_no_route_serves_share_one_label(monkeypatch: pytest.MonkeyPatch) -> None:
    app = build_app(detect=None, monitor=False, metrics_path="/metrics")
    async with served(app) as client:
        for n in range(50):  # a scanner: every URL a new one
            assert (await client.get(f"/wp-admin/{n}.php")).status_code == 404
        assert (await client.request("BREW", "/items/1")).status_code == 405
        assert (await client.get("/")).status_code == 200
        text = (await client.get("/metrics")).text
    middleware = BlockingMiddleware.of(app)
    routes = middleware.metrics()["routes"]
    assert sorted(routes) == ["<unmatched>", "GET /"]
    assert routes["<unmatched>"]["requests"] == 51
    assert 'asyncify_route_requests_total{route="<unmatched>"} 51.0' in text
    monkeypatch.setattr(_middleware, "MAX_ROUTES", 3)  # a backstop, whatever the labels
    for label in ("GET /a", "GET /b", "GET /c"):
        middleware._count(label, "requests", 1)
    assert sorted(middleware.metrics()["routes"]) == ["<other>", "<unmatched>", "GET /", "GET /a"]


async def asgi_get(app: Any, path: str, root_path: str = "") -> tuple[int, bytes]:
    """GET *path* from *app* as a server gives it: uvicorn ``--root-path /api`` puts the root
    path in front of ``scope["path"]`` (httpx's ASGITransport does not)."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_metrics_answer_where_the_routes_do_under_a_root_path() -> None:
    # the path was compared with scope["path"] as it was: under `--root-path /api` the
    # metrics were a 404 at every URL, while the app's routes answered
    app = build_app(detect=None, monitor=False, metrics_path="/metrics")
    try:
        assert (await asgi_get(app, "/api/", "/api"))[0] == 200
        status, body = await asgi_get(app, "/api/metrics", "/api")
        assert status == 200 and b"asyncify_route_requests_total" in body
        assert (await asgi_get(app, "/api/metricsx", "/api"))[0] == 404
        assert (await asgi_get(app, "/metrics"))[0] == 200
    finally:
        BlockingMiddleware.of(app).stop()


def mounted_app(**options: Any) -> tuple[FastAPI, FastAPI]:
    """/tenants/{tenant} mounts a sub-app, in which /v2 mounts another (a blocking route)."""
    inner = FastAPI()

    @inner.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        time.sleep(0.001)  # a blocking call, attributed to this route
        return {"id": item_id}

    sub = FastAPI()
    sub.mount("/v2", inner)
    sub.add_middleware(BlockingMiddleware, detect="collect", monitor=False)
    app = FastAPI()
    app.mount("/tenants/{tenant}", sub)
    app.add_middleware(BlockingMiddleware, detect="collect", monitor=False, **options)
    return app, sub


async def test_a_mount_with_a_parameter_is_labelled_by_its_template() -> None:
    # Starlette's Mount puts the raw matched prefix in scope["root_path"]: the label held the
    # tenant the client sent, one label (and Prometheus series) per tenant, and a %0A in it
    # wrote lines of the client's choosing into /metrics
    app, sub = mounted_app(metrics_path="/metrics")
    try:
        for tenant in ("acme", "globex", "x%0Aforged_total 9999%0A%23"):
            assert (await asgi_get(app, f"/api/tenants/{tenant}/v2/items/1", "/api"))[0] == 200
        label = "GET /api/tenants/{tenant}/v2/items/{item_id}"
        for middleware in (BlockingMiddleware.of(app), BlockingMiddleware.of(sub)):
            assert middleware.metrics()["routes"] == {
                label: {"requests": 3, "blocking_calls": 3, "stalls": 0, "stall_seconds": 0.0}
            }
        reports = [  # (the innermost detector collects them)
            report
            for middleware in (BlockingMiddleware.of(app), BlockingMiddleware.of(sub))
            for report in middleware.detector.reports  # type: ignore[union-attr]
        ]
        assert [r.route for r in reports] == [label] * 3
        status, body = await asgi_get(app, "/api/metrics", "/api")
        assert status == 200 and b"forged" not in body
    finally:
        for middleware in (BlockingMiddleware.of(app), BlockingMiddleware.of(sub)):
            middleware.stop()


async def test_a_label_never_holds_text_a_client_chose() -> None:
    middleware = BlockingMiddleware(FastAPI(), detect=None, monitor=False)
    middleware._count('GET /a"b\\c\nforged_total 1', "requests", 1)
    text = middleware.prometheus()
    assert not any(line.startswith("forged_total") for line in text.splitlines())
    assert r'route="GET /a\"b\\c\nforged_total 1"' in text


def test_a_method_no_route_lists_is_labelled_only_when_it_is_a_standard_one() -> None:
    # a route without a method list (an HTTPEndpoint) answers 405 to a method it lacks: the
    # label was the method the client sent (`BREW /items`), one more label per method
    from starlette.endpoints import HTTPEndpoint
    from starlette.routing import Route

    class Items(HTTPEndpoint):
        async def get(self, request: object) -> None: ...

    route = Route("/items", Items)
    assert route.methods is None
    for method, label in (("GET", "GET /items"), ("DELETE", "DELETE /items"), ("BREW", None)):
        scope = {"type": "http", "method": method, "route": route}
        assert route_label(scope) == (label or "<unmatched>")


# checks the global patch state: the plugin's own detector would keep the patches in
@pytest.mark.allow_blocking
@pytest.mark.parametrize("raises", [True, False], ids=["app-raises", "app-reports-failure"])
async def test_a_failed_startup_stops_the_detector_and_the_monitor(raises: bool) -> None:
    """No shutdown follows a failed startup: the detector's patches and the monitor's thread
    used to stay on for good (a test's TestClient, a server that retries)."""

    async def failing_lifespan(scope: object, receive: Callable[..., Any], send: Any) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        if raises:
            raise RuntimeError("no database")

    middleware = BlockingMiddleware(failing_lifespan, detect="log", stall_threshold=0.1)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    if raises:
        with pytest.raises(RuntimeError, match="no database"):
            await middleware({"type": "lifespan"}, receive, send)
    else:
        await middleware({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    monitor = middleware.monitor
    assert monitor is not None
    assert not is_active()
    assert not _running(monitor)
    # a later start (the next lifespan, or the first request) starts them again
    middleware.start()
    assert is_active()
    assert _running(monitor)
    middleware.stop()
    assert not is_active()


def _running(monitor: LoopMonitor) -> bool:
    return monitor.running


# checks the global patch state: the plugin's own detector would keep the patches in
@pytest.mark.allow_blocking
async def test_a_fastapi_app_whose_lifespan_fails_leaves_nothing_running() -> None:
    failing = True

    @asynccontextmanager
    async def broken(app: FastAPI) -> AsyncIterator[None]:
        if failing:
            raise RuntimeError("startup failed")
        yield

    app = FastAPI(lifespan=broken)
    monitor = install_detection(app)
    sent: list[str] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(str(message["type"]))

    with pytest.raises(RuntimeError, match="startup failed"):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert sent == ["lifespan.startup.failed"]
    assert not is_active()
    assert monitor is not None and not monitor.running


def test_a_monitor_of_the_wrong_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid monitor 'yes'; accepted: True"):
        BlockingMiddleware(build_app(), monitor="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["metrics", "", 5])
def test_a_metrics_path_that_no_request_can_have_is_a_config_error(path: object) -> None:
    # it was taken, and the metrics then answered at no URL
    with pytest.raises(ConfigError, match=r"invalid metrics_path .*; accepted: a path"):
        BlockingMiddleware(build_app(), metrics_path=path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="invalid metrics_path"):
        install_detection(FastAPI(), metrics_path=path)  # type: ignore[arg-type]


async def test_monitor_can_be_shared_and_is_not_stopped_by_the_middleware() -> None:
    async with LoopMonitor(interval=0.01) as monitor:
        app = build_app(monitor=monitor, detect=None)
        async with served(app) as client:
            assert (await client.get("/")).status_code == 200
        assert monitor.running
    assert BlockingMiddleware.of(app).detector is None


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_attribution_in_process_on_asyncio_and_trio(anyio_backend: str) -> None:
    app = build_app(detect="collect", stall_threshold=0.08)
    middleware = BlockingMiddleware.of(app) if app.middleware_stack else None
    assert middleware is None  # built on the first request
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/items/7")).json() == {"id": 7}
        assert (await client.get("/")).status_code == 200
        await stalls_seen(app, "GET /items/{item_id}")
        middleware = BlockingMiddleware.of(app)
        middleware.stop()  # no lifespan through ASGITransport: stop by hand
    assert middleware.detector is not None
    assert [r.route for r in middleware.detector.reports] == ["GET /items/{item_id}"]
    routes = middleware.metrics()["routes"]
    assert routes["GET /items/{item_id}"]["stalls"] >= 1
    assert routes["GET /"]["blocking_calls"] == 0


async def test_a_blocking_call_is_counted_by_the_app_that_made_it_only() -> None:
    # every middleware listens to every report of the process: another app's metrics counted
    # the blocking calls of this one (with requests 0) before
    first = build_app(monitor=False, detect="collect")
    second = build_app(monitor=False, detect="collect")
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        for app in (first, second)
    ]
    async with clients[0] as client, clients[1] as other:
        assert (await other.get("/")).status_code == 200  # the second app is started too
        assert (await client.get("/items/3")).json() == {"id": 3}
    for app in (first, second):
        BlockingMiddleware.of(app).stop()  # no lifespan through ASGITransport
    first_routes = BlockingMiddleware.of(first).metrics()["routes"]
    second_routes = BlockingMiddleware.of(second).metrics()["routes"]
    assert first_routes["GET /items/{item_id}"]["blocking_calls"] == 1
    assert "GET /items/{item_id}" not in second_routes
    assert second_routes["GET /"] == {
        "requests": 1,
        "blocking_calls": 0,
        "stalls": 0,
        "stall_seconds": 0.0,
    }


def test_served_without_lifespan_from_a_new_loop_the_monitor_watches_the_new_loop() -> None:
    # started by the first request (no lifespan), the monitor kept watching that request's
    # loop, gone with it: a later loop serving the app (the next test's, a test client's) was
    # not watched for stalls
    app = build_app(detect="collect", stall_threshold=0.05)

    async def get(path: str) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get(path)).status_code == 200
            if path != "/":
                await stalls_seen(app, "GET /items/{item_id}")

    asyncio.run(get("/"))
    asyncio.run(get("/items/5"))
    middleware = BlockingMiddleware.of(app)
    middleware.stop()
    routes = middleware.metrics()["routes"]
    assert routes["GET /items/{item_id}"]["blocking_calls"] == 1
    assert routes["GET /items/{item_id}"]["stalls"] >= 1
