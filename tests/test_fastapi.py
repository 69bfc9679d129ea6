"""asyncify_kit.fastapi: the lifespan, the dependencies and install_detection, on real servers.

Apps are served by uvicorn on 127.0.0.1 in the test's own event loop (uvicorn is asyncio-only),
so that the lifespan protocol runs for real; the lifespan context itself is also exercised
directly on asyncio and trio.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI, WebSocket
from starlette.requests import HTTPConnection

from asyncify_kit import asyncify
from asyncify_kit.detect import BlockingMiddleware, LoopMonitor, detect_blocking
from asyncify_kit.exceptions import ConfigError, OperationalError
from asyncify_kit.fastapi import (
    DatabaseDep,
    Facades,
    HttpDep,
    StorageDep,
    asyncify_lifespan,
    get_database,
    get_facades,
    install_detection,
)
from asyncify_kit.http import HttpClient
from asyncify_kit.sql import Database
from asyncify_kit.storage import Storage


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Serve *app* with uvicorn on a free loopback port in this loop; yield a client for it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False)
    server = uvicorn.Server(config)

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn's way of saying the lifespan startup failed
            raise RuntimeError(f"the server stopped during startup (exit {exc.code})") from None

    task = asyncio.create_task(serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped during startup (see the log)")
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        try:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
        finally:
            sock.close()


def echo_app() -> FastAPI:
    """An upstream for the HttpClient: answers every GET with its path."""
    app = FastAPI()

    @app.get("/{path:path}")
    async def echo(path: str) -> dict[str, str]:
        return {"path": path}

    return app


def facades_app(**lifespan: Any) -> FastAPI:
    app = FastAPI(lifespan=asyncify_lifespan(**lifespan))

    @app.get("/db")
    async def use_db(db: DatabaseDep) -> dict[str, object]:
        await db.execute("create table if not exists t (x integer)")
        await db.execute("insert into t (x) values (:x)", {"x": 1})
        return {"rows": await db.fetch_val("select count(*) from t"), "backend": db.backend}

    @app.get("/storage")
    async def use_storage(storage: StorageDep) -> dict[str, str]:
        await storage.write("a.txt", b"hello")
        return {"text": await storage.read_text("a.txt"), "scheme": storage.url.scheme}

    @app.get("/http")
    async def use_http(http: HttpDep) -> dict[str, str]:
        response = await http.get("/ping")
        return {"upstream": response.json()["path"]}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, db: DatabaseDep) -> None:
        await websocket.accept()
        await websocket.send_json({"backend": db.backend})
        await websocket.close()

    return app


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {})


# -- the lifespan ------------------------------------------------------------------------------


async def test_the_lifespan_opens_the_facades_and_the_dependencies_inject_them(
    tmp_path: Path,
) -> None:
    async with served(echo_app()) as upstream:
        database = Database(f"sqlite:///{tmp_path / 'app.db'}")
        app = facades_app(database=database, storage="memory://", http=str(upstream.base_url))
        with detect_blocking(mode="raise") as detector:
            async with served(app) as client:
                facades = get_facades(app)
                assert facades.database is database  # a facade given is used as is
                assert isinstance(facades.storage, Storage)
                assert isinstance(facades.http, HttpClient)
                assert "open" in repr(database)
                assert (await client.get("/db")).json() == {"rows": 1, "backend": "sqlite"}
                assert (await client.get("/db")).json()["rows"] == 2  # one database, kept open
                assert (await client.get("/storage")).json() == {
                    "text": "hello",
                    "scheme": "memory",
                }
                assert (await client.get("/http")).json() == {"upstream": "ping"}
                opened = facades
        assert detector.reports == []
    # shut down: every facade closed, the state gone
    assert "closed" in repr(database)
    assert opened.storage is not None and "closed" in repr(opened.storage)
    assert opened.http is not None and "closed" in repr(opened.http)
    with pytest.raises(ConfigError, match="no asyncify facades open"):
        get_facades(app)


async def test_true_reads_the_environment_at_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = facades_app(database=True, storage=True)
    monkeypatch.setenv("ASYNCIFY_SQL_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("ASYNCIFY_STORAGE_URL", f"file://{tmp_path / 'files'}")
    async with served(app) as client:
        assert (await client.get("/db")).json()["rows"] == 1
        assert (await client.get("/storage")).json()["scheme"] == "file"
        facades = get_facades(app)
        assert facades.http is None
        missing = await client.get("/http")
    assert missing.status_code == 500  # ConfigError: no HttpClient was configured
    assert await anyio.Path(tmp_path / "env.db").is_file()
    assert await anyio.Path(tmp_path / "files" / "a.txt").read_bytes() == b"hello"


async def test_true_falls_back_to_the_embedded_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ASYNCIFY_SQL_URL", "DATABASE_URL", "ASYNCIFY_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    async with served(facades_app(database=True, storage=True)) as client:
        assert (await client.get("/db")).status_code == 200
        assert (await client.get("/storage")).status_code == 200
    assert await anyio.Path(tmp_path / "asyncify.db").is_file()
    assert await anyio.Path(tmp_path / "data" / "a.txt").is_file()


async def test_websocket_routes_get_the_facades_too(tmp_path: Path) -> None:
    """A raw ASGI websocket session (no websocket library here), inside the app's lifespan."""
    app = facades_app(database=f"sqlite:///{tmp_path / 'ws.db'}")
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "subprotocols": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert json.loads(sent[1]["text"]) == {"backend": "sqlite"}


async def test_the_user_lifespan_runs_inside_with_the_facades_open(tmp_path: Path) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
        db = get_facades(app).database
        assert db is not None
        await db.execute("create table greetings (text varchar(20))")
        await db.execute("insert into greetings values ('hello')")
        events.append("user startup")
        yield {"greeting": await db.fetch_val("select text from greetings")}
        await db.execute("insert into greetings values ('bye')")  # still open
        events.append("user shutdown")

    database = Database(f"sqlite:///{tmp_path / 'app.db'}")
    app = FastAPI(lifespan=asyncify_lifespan(database=database, lifespan=lifespan))

    @app.get("/")
    async def index(connection: HTTPConnection) -> dict[str, str]:
        return {"greeting": connection.state.greeting}  # the user lifespan's state

    async with served(app) as client:
        assert (await client.get("/")).json() == {"greeting": "hello"}
    assert events == ["user startup", "user shutdown"]
    async with database:
        assert await database.fetch_val("select count(*) from greetings") == 2


async def test_a_facade_that_fails_to_open_closes_the_others_and_fails_startup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'app.db'}")
    lifespan = asyncify_lifespan(
        database=database, storage="memory://", http="ftp://nowhere.invalid"
    )
    app = FastAPI(lifespan=lifespan)
    with pytest.raises(ConfigError, match="ftp"):
        async with lifespan(app):
            pass
    assert "closed" in repr(database)
    with pytest.raises(ConfigError):
        get_facades(app)
    # served: uvicorn reports the failed startup and does not serve
    caplog.set_level(logging.ERROR, logger="uvicorn.error")
    with pytest.raises(RuntimeError, match="during startup"):
        async with served(app):
            pass
    assert "ftp" in caplog.text


async def test_a_failed_connection_does_not_show_the_password() -> None:
    lifespan = asyncify_lifespan(
        database="postgresql://app:hunter2-secret@127.0.0.1:9/shop?connect_timeout=2&min_size=1"
    )
    with pytest.raises(OperationalError) as caught:
        async with lifespan(FastAPI()):
            pass
    assert "hunter2-secret" not in str(caught.value)
    assert "hunter2-secret" not in repr(caught.value)
    facades = Facades(
        database=Database("postgresql://app:hunter2-secret@127.0.0.1:9/shop"),
        http=HttpClient("http://app:hunter2-secret@127.0.0.1:9/api"),
    )
    assert "hunter2-secret" not in repr(facades)


async def test_the_lifespan_cannot_run_twice_at_once(tmp_path: Path) -> None:
    app = FastAPI()
    lifespan = asyncify_lifespan(storage="memory://")
    async with lifespan(app):
        with pytest.raises(RuntimeError, match="already running"):
            async with lifespan(app):
                pass
    async with lifespan(app):  # and runs again once stopped
        assert get_facades(app).storage is not None


def test_arguments_are_checked_at_once() -> None:
    with pytest.raises(TypeError, match=r"database=.*not int"):
        asyncify_lifespan(database=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="a Storage, not Database"):
        asyncify_lifespan(storage=Database("sqlite:///:memory:"))  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("trio", {}), id="trio")],
)
async def test_the_lifespan_runs_on_asyncio_and_trio(tmp_path: Path) -> None:
    app = FastAPI()
    lifespan = asyncify_lifespan(
        database=f"sqlite:///{tmp_path / 'x.db'}", storage=f"file://{tmp_path / 'files'}"
    )
    async with lifespan(app) as state:
        assert state is None
        facades = get_facades(app)
        assert facades.database is not None and facades.storage is not None
        assert await facades.database.fetch_val("select 40 + 2") == 42
        await facades.storage.write("k", b"v")
        await anyio.sleep(0)
    assert await anyio.Path(tmp_path / "files" / "k").read_bytes() == b"v"


# -- the dependencies without a lifespan -------------------------------------------------------


async def test_a_dependency_without_the_lifespan_says_what_to_do() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(db: DatabaseDep) -> dict[str, str]:
        return {"backend": db.backend}

    transport = httpx.ASGITransport(app=app)  # sends no lifespan events
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(ConfigError, match=r"lifespan=asyncify_lifespan\(") as caught:
            await client.get("/")
    assert "ASGITransport" in str(caught.value)


async def test_get_database_names_the_missing_argument() -> None:
    app = FastAPI()
    app.state.asyncify = Facades()
    scope = {"type": "http", "app": app, "headers": []}
    with pytest.raises(ConfigError, match=r"opened no database; pass database=True"):
        await get_database(HTTPConnection(scope))


# -- detection ---------------------------------------------------------------------------------


def is_running(monitor: LoopMonitor) -> bool:
    return monitor.running  # a call: mypy would narrow the property across awaits


async def test_install_detection_watches_the_app_with_its_lifespan(tmp_path: Path) -> None:
    app = FastAPI(lifespan=asyncify_lifespan(database=f"sqlite:///{tmp_path / 'a.db'}"))
    monitor = install_detection(
        app, detect="collect", stall_threshold=0.05, metrics_path="/metrics"
    )
    assert isinstance(monitor, LoopMonitor)
    assert not is_running(monitor)
    offloaded_sleep = asyncify(time.sleep)

    @app.get("/blocking")
    async def blocking() -> dict[str, bool]:
        time.sleep(0.12)  # the bug the middleware attributes to this route
        return {"ok": True}

    @app.get("/fine")
    async def fine(db: DatabaseDep) -> dict[str, int]:
        await offloaded_sleep(0.01)
        return {"x": await db.fetch_val("select 1")}

    async with served(app) as client:
        assert is_running(monitor)  # started by the lifespan
        assert (await client.get("/fine")).json() == {"x": 1}
        assert (await client.get("/blocking")).status_code == 200
        with anyio.move_on_after(10):  # until the monitor has seen the loop again
            while not monitor.metrics()["stalls"]:
                await asyncio.sleep(0.01)
        metrics = (await client.get("/metrics")).text
    assert not is_running(monitor)  # stopped by the lifespan
    middleware = BlockingMiddleware.of(app)
    assert middleware.monitor is monitor
    assert middleware.detector is not None
    assert [(r.function, r.route) for r in middleware.detector.reports] == [
        ("time.sleep", "GET /blocking")
    ]
    assert 'asyncify_route_blocking_calls_total{route="GET /blocking"} 1.0' in metrics
    assert 'asyncify_route_blocking_calls_total{route="GET /fine"} 0.0' in metrics
    assert monitor.metrics()["stalls"] >= 1


@pytest.mark.allow_blocking("time.sleep")  # the quiet app leaves it to the pytest plugin
async def test_install_detection_can_raise_and_be_turned_off() -> None:
    app = FastAPI()
    assert install_detection(app, detect="raise", monitor=False) is None

    @app.get("/blocking")
    async def blocking() -> dict[str, bool]:
        time.sleep(0.01)
        return {"ok": True}

    async with served(app) as client:
        assert (await client.get("/blocking")).status_code == 500  # BlockingCallError
    assert BlockingMiddleware.of(app).monitor is None

    quiet = FastAPI()
    install_detection(quiet, detect=None, monitor=False)
    quiet.get("/blocking")(blocking)
    async with served(quiet) as client:
        assert (await client.get("/blocking")).status_code == 200
    assert BlockingMiddleware.of(quiet).detector is None


async def test_the_apps_log_mode_detector_does_not_hide_a_call_from_a_raise_mode_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    install_detection(app, monitor=False)  # detect="log", the production setup

    @app.get("/blocking")
    async def blocking() -> dict[str, bool]:
        time.sleep(0.01)
        return {"ok": True}

    caplog.set_level(logging.WARNING, logger="asyncify_kit.detect")
    with detect_blocking(mode="raise") as test_level:  # what pytest --detect-blocking runs
        async with served(app) as client:
            assert (await client.get("/blocking")).status_code == 500  # BlockingCallError
            middleware = BlockingMiddleware.of(app)
    assert middleware.detector is not None
    assert [r.route for r in middleware.detector.reports] == ["GET /blocking"]  # and logged
    assert test_level.reports == middleware.detector.reports
    assert any("blocking call time.sleep" in r.getMessage() for r in caplog.records)


def test_install_detection_checks_its_options_at_once() -> None:
    app = FastAPI()
    with pytest.raises(ConfigError, match="invalid mode"):
        install_detection(app, detect="loud")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        install_detection(app, stall_threshold=-1)
    for allow in ("kind:DNS", "kind:network"):
        with pytest.raises(ConfigError, match="accepted: kind:aws, kind:dns"):
            install_detection(app, allow=[allow])
        with pytest.raises(ConfigError, match="accepted: kind:aws"):
            install_detection(app, detect=None, allow=[allow])
    with pytest.raises(ConfigError, match="invalid monitor 'yes'"):
        install_detection(app, monitor="yes")  # type: ignore[arg-type]
    assert app.user_middleware == []
    install_detection(app, allow="time.sleep")
    with pytest.raises(ConfigError, match="already installed"):
        install_detection(app)


# -- packaging ---------------------------------------------------------------------------------


def test_importing_the_integration_imports_no_driver() -> None:
    code = (
        "import sys, asyncify_kit.fastapi\n"
        "drivers = ['asyncpg', 'psycopg', 'psycopg2', 'asyncmy', 'aiomysql', 'pymysql',\n"
        "           'aioboto3', 'boto3', 'aiofiles', 'aiohttp', 'httpx', 'requests']\n"
        "print(sorted(d for d in drivers if d in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_without_fastapi_the_import_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None  # as if the extra were not installed\n"
        "try:\n"
        "    import asyncify_kit.fastapi\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.startswith("BackendNotInstalled ")
    assert "pip install 'asyncify-kit[fastapi]'" in out.stdout


def test_typing_of_the_lifespan_overloads() -> None:
    """Checked by mypy (this file is type-checked): both lifespan kinds fit FastAPI()."""

    @asynccontextmanager
    async def stateless(app: FastAPI) -> AsyncIterator[None]:
        yield

    @asynccontextmanager
    async def stateful(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"k": 1}

    FastAPI(lifespan=asyncify_lifespan(database=True))
    FastAPI(lifespan=asyncify_lifespan(storage="memory://", lifespan=stateless))
    FastAPI(lifespan=asyncify_lifespan(http=True, lifespan=stateful))


# -- @asyncify functions as endpoints and dependencies ----------------------------------------


@asyncify
def _current_user(token: str = "ada") -> dict[str, object]:
    return {"name": token, "thread": threading.get_ident()}


async def test_asyncify_functions_serve_as_endpoints_and_dependencies() -> None:
    """FastAPI awaits an ``@asyncify`` function as an ``async def``: both the endpoint and its
    dependency run in worker threads, off the loop. Taken for a sync function, it would run in
    FastAPI's own thread pool, outside any loop, and hand back an unawaited coroutine."""
    app = FastAPI()

    @app.get("/me")
    @asyncify
    def me(
        user: Annotated[dict[str, object], Depends(_current_user)], n: int = 1
    ) -> dict[str, object]:
        return {
            "user": user["name"],
            "n": n,
            "thread": threading.get_ident(),
            "dep": user["thread"],
        }

    loop_thread = threading.get_ident()
    async with served(app) as client:
        response = await client.get("/me", params={"n": 3, "token": "bob"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["user"], body["n"]) == ("bob", 3)
    assert body["thread"] != loop_thread
    assert body["dep"] != loop_thread
