"""Route labels of the routes an app includes from routers (``app.include_router``)."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, WebSocket

from asyncify_kit.detect import BlockingMiddleware
from asyncify_kit.fastapi import install_detection

from .test_middleware import asgi_get

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {})


def versioned_router(blocking: bool) -> APIRouter:
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def item(item_id: int) -> int:
        if blocking:
            time.sleep(0.001)  # a blocking call, attributed to this route
        return item_id

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    return router


def routers_app() -> FastAPI:
    """/v1 and /v2 include the same routes (v1's blocks); /v3 includes a router that
    includes one under /inner; /tenants/{tenant} mounts a sub-app including one under /v4."""
    app = FastAPI()
    app.include_router(versioned_router(blocking=True), prefix="/v1")
    app.include_router(versioned_router(blocking=False), prefix="/v2")
    outer = APIRouter()
    outer.include_router(versioned_router(blocking=False), prefix="/inner")
    app.include_router(outer, prefix="/v3")
    sub = FastAPI()
    sub.include_router(versioned_router(blocking=False), prefix="/v4")
    app.mount("/tenants/{tenant}", sub)
    install_detection(app, detect="collect", monitor=False)
    return app


async def test_the_routes_of_an_included_router_are_labelled_with_its_prefix() -> None:
    # FastAPI 0.16x serves an included route as the router's own APIRoute, whose path lacks
    # the include prefix: /v1/items/{item_id} and /v2/items/{item_id} shared the label
    # "GET /items/{item_id}", and v1's blocking call was counted against both
    app = routers_app()
    try:
        for path in ("/v1/items/1", "/v2/items/1", "/v2/items/2", "/v3/inner/items/1"):
            assert (await asgi_get(app, path))[0] == 200
        assert (await asgi_get(app, "/api/tenants/acme/v4/items/1", "/api"))[0] == 200
        middleware = BlockingMiddleware.of(app)
        routes = middleware.metrics()["routes"]
        assert {route: values["requests"] for route, values in routes.items()} == {
            "GET /v1/items/{item_id}": 1,
            "GET /v2/items/{item_id}": 2,
            "GET /v3/inner/items/{item_id}": 1,
            "GET /api/tenants/{tenant}/v4/items/{item_id}": 1,
        }
        assert routes["GET /v1/items/{item_id}"]["blocking_calls"] == 1
        assert routes["GET /v2/items/{item_id}"]["blocking_calls"] == 0
        assert middleware.detector is not None
        assert [r.route for r in middleware.detector.reports] == ["GET /v1/items/{item_id}"]
    finally:
        BlockingMiddleware.of(app).stop()


async def test_a_method_an_included_route_does_not_take_is_unmatched() -> None:
    app = routers_app()
    try:
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "DELETE",
            "scheme": "http",
            "path": "/v1/items/1",
            "raw_path": b"/v1/items/1",
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
        }
        await app(scope, receive, send)
        assert sent[0]["status"] == 405
        assert list(BlockingMiddleware.of(app).metrics()["routes"]) == ["<unmatched>"]
    finally:
        BlockingMiddleware.of(app).stop()
