"""FastAPI integration: facades opened by the app's lifespan, injected with ``Depends``.

Three pieces, each one line in an app:

- `asyncify_lifespan` opens the `Database`, `Storage` and `HttpClient` an app uses once, at
  startup, keeps them on ``app.state``, and closes them at shutdown (composing with the app's
  own lifespan, which runs while they are open);
- `DatabaseDep`, `StorageDep` and `HttpDep` are the typed ``Annotated`` dependencies that hand
  them to a path operation (`get_database`, `get_storage`, `get_http` for ``Depends``);
- `install_detection` adds the `BlockingMiddleware` and its `LoopMonitor`, which start and stop
  with the app's lifespan.

```python
from fastapi import FastAPI

from asyncify_kit.fastapi import DatabaseDep, asyncify_lifespan, install_detection

app = FastAPI(lifespan=asyncify_lifespan(database=True, storage=True))
install_detection(app)


@app.get("/items/{item_id}")
async def read_item(item_id: int, db: DatabaseDep) -> dict[str, object]:
    row = await db.fetch_one("select * from items where id = :id", {"id": item_id})
    return dict(row or {})
```

Needs the ``fastapi`` extra (``pip install 'asyncify-kit[fastapi]'``). The facades' drivers
are imported only when the lifespan opens them, so an app that uses no S3 needs no aioboto3.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, overload

from ._offload import run_sync
from .detect import BlockingMiddleware, LoopMonitor, Mode, detect_blocking
from .detect._middleware import checked_metrics_path, chosen_monitor
from .exceptions import BackendNotInstalled, ConfigError
from .http import HttpClient
from .sql import Database
from .storage import Storage

try:
    from fastapi import Depends, FastAPI
    from starlette.requests import HTTPConnection
except ImportError as exc:
    raise BackendNotInstalled("fastapi integration", "fastapi", "fastapi") from exc

__all__ = [
    "DatabaseDep",
    "Facades",
    "HttpDep",
    "StatefulLifespan",
    "StatelessLifespan",
    "StorageDep",
    "asyncify_lifespan",
    "get_database",
    "get_facades",
    "get_http",
    "get_storage",
    "install_detection",
]

STATE_ATTRIBUTE = "asyncify"
"""The attribute of ``app.state`` that holds the open `Facades`."""

# the open Facades by id of their app's router, which Starlette leaves in the scope of every
# request as scope["router"]: a sub-application mounted in the app finds them through it
_by_router: dict[int, tuple[object, Facades]] = {}

#: A lifespan that yields nothing (``@asynccontextmanager async def lifespan(app): yield``).
StatelessLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
#: A lifespan that yields a state mapping (copied into each ``request.state``).
StatefulLifespan = Callable[[FastAPI], AbstractAsyncContextManager[Mapping[str, Any]]]

F = TypeVar("F", Database, Storage, HttpClient)


@dataclass(frozen=True)
class Facades:
    """The facades an `asyncify_lifespan` opened, kept on ``app.state.asyncify`` while it runs.

    A field is None when the lifespan was not asked for that facade. Read it with
    `get_facades` (for code outside a path operation: background jobs, startup hooks).
    """

    database: Database | None = None
    storage: Storage | None = None
    http: HttpClient | None = None


def _check(value: object, cls: type[F], name: str) -> None:
    if value is None or isinstance(value, (bool, str, cls)):
        return
    raise TypeError(
        f"asyncify_lifespan({name}=...) takes True (the environment or the embedded default), "
        f"a URL string or a {cls.__name__}, not {type(value).__name__}"
    )


async def _facade(value: bool | str | F | None, build: Callable[[str | None], F]) -> F | None:
    """The facade *value* describes, built in a worker thread (building may import a driver)."""
    if value is None or value is False:
        return None
    if value is True or isinstance(value, str):
        built: F = await run_sync(build, None if value is True else value)
        return built
    return value


@overload
def asyncify_lifespan(
    *,
    database: bool | str | Database | None = None,
    storage: bool | str | Storage | None = None,
    http: bool | str | HttpClient | None = None,
    lifespan: StatelessLifespan | None = None,
) -> StatelessLifespan: ...
@overload
def asyncify_lifespan(
    *,
    database: bool | str | Database | None = None,
    storage: bool | str | Storage | None = None,
    http: bool | str | HttpClient | None = None,
    lifespan: StatefulLifespan,
) -> StatefulLifespan: ...
def asyncify_lifespan(
    *,
    database: bool | str | Database | None = None,
    storage: bool | str | Storage | None = None,
    http: bool | str | HttpClient | None = None,
    lifespan: StatelessLifespan | StatefulLifespan | None = None,
) -> StatelessLifespan | StatefulLifespan:
    """A FastAPI lifespan that opens the facades at startup and closes them at shutdown.

    Each of *database*, *storage* and *http* takes:

    - ``True``: the facade configured by the environment, else the embedded default
      (``ASYNCIFY_SQL_URL`` / ``DATABASE_URL`` else ``sqlite:///./asyncify.db``;
      ``ASYNCIFY_STORAGE_URL`` else ``file://./data``; ``ASYNCIFY_HTTP_BACKEND`` else httpx);
    - a string: the database URL, the storage URL, the HTTP client's base URL;
    - a facade you built (``Database(url, max_size=20)``, ``HttpClient(base, retries=3)``):
      opened and closed by the lifespan, and usable from your own code meanwhile; one you
      opened already (``async with``) is used as it is and left open at shutdown: the
      lifespan closes only what it opened;
    - ``None`` / ``False`` (default): not opened.

    Facades given as ``True`` or a string are built anew at each startup, so the environment
    is read when the app starts. They open in the order database, storage, HTTP and close in
    reverse; if one fails to open, those already open are closed and the startup fails with
    its error. *lifespan*, the app's own, runs inside: its startup code can use the facades,
    and whatever state it yields is passed on.

    ```python
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from asyncify_kit.fastapi import asyncify_lifespan, get_facades


    @asynccontextmanager
    async def create_tables(app: FastAPI) -> AsyncIterator[None]:
        db = get_facades(app).database
        assert db is not None  # (None for a facade the lifespan was not asked for)
        await db.execute("create table if not exists items (id integer primary key, name text)")
        yield


    app = FastAPI(lifespan=asyncify_lifespan(database=True, lifespan=create_tables))
    ```
    """
    _check(database, Database, "database")
    _check(storage, Storage, "storage")
    _check(http, HttpClient, "http")

    @asynccontextmanager
    async def asyncify_app_lifespan(app: FastAPI) -> AsyncIterator[Any]:
        if getattr(app.state, STATE_ATTRIBUTE, None) is not None:
            raise RuntimeError(f"the asyncify lifespan of {app!r} is already running")
        async with AsyncExitStack() as stack:
            # a facade already open is used as it is and left open: its opener closes it
            db = await _facade(database, Database)
            if db is not None and not db.is_open:
                await stack.enter_async_context(db)
            st = await _facade(storage, Storage)
            if st is not None and not st.is_open:
                await stack.enter_async_context(st)
            client = await _facade(http, HttpClient)
            if client is not None and not client.is_open:
                await stack.enter_async_context(client)
            facades = Facades(db, st, client)
            setattr(app.state, STATE_ATTRIBUTE, facades)
            stack.callback(delattr, app.state, STATE_ATTRIBUTE)
            _by_router[id(app.router)] = (app.router, facades)
            stack.callback(_by_router.pop, id(app.router), None)
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state

    return asyncify_app_lifespan


def get_facades(app_or_connection: FastAPI | HTTPConnection) -> Facades:
    """The facades the app's `asyncify_lifespan` opened (from the app or a request).

    A request served by a sub-application mounted in that app (``app.mount("/v2", sub)``)
    gets the app's facades: Starlette runs the lifespan of the outermost app only.

    Raises `ConfigError` when the app has none open: it was created without
    ``lifespan=asyncify_lifespan(...)``, or is being served without lifespan events (httpx's
    ``ASGITransport`` sends none: wrap it in ``async with app.router.lifespan_context(app):``),
    or has shut down.
    """
    app: Any = app_or_connection
    if isinstance(app_or_connection, HTTPConnection):
        app = app_or_connection.app
    facades = getattr(getattr(app, "state", None), STATE_ATTRIBUTE, None)
    if not isinstance(facades, Facades) and isinstance(app_or_connection, HTTPConnection):
        # a sub-application mounted in the app (app.mount("/v2", FastAPI())) serves this
        # request: Starlette runs only the outermost app's lifespan, whose router is here
        router = app_or_connection.scope.get("router")
        owner, facades = _by_router.get(id(router), (None, None))
        if owner is not router:
            facades = None
    if not isinstance(facades, Facades):
        raise ConfigError(
            "this app has no asyncify facades open: create it with "
            "FastAPI(lifespan=asyncify_lifespan(database=..., storage=..., http=...)) and serve "
            "it with lifespan events (uvicorn does; httpx.ASGITransport does not: wrap it in "
            "'async with app.router.lifespan_context(app):')"
        )
    return facades


def _missing(name: str) -> ConfigError:
    return ConfigError(
        f"the asyncify lifespan of this app opened no {name}; pass {name}=True (or a URL, or "
        f"a facade) to asyncify_lifespan()"
    )


async def get_database(connection: HTTPConnection) -> Database:
    """The app's open `Database`, for ``Depends(get_database)`` (or use `DatabaseDep`).

    A coroutine function, like `get_storage` and `get_http`: FastAPI resolves it on the event
    loop (it would run a plain function in its thread pool, one hop per request)."""
    database = get_facades(connection).database
    if database is None:
        raise _missing("database")
    return database


async def get_storage(connection: HTTPConnection) -> Storage:
    """The app's open `Storage`, for ``Depends(get_storage)`` (or use `StorageDep`)."""
    storage = get_facades(connection).storage
    if storage is None:
        raise _missing("storage")
    return storage


async def get_http(connection: HTTPConnection) -> HttpClient:
    """The app's open `HttpClient`, for ``Depends(get_http)`` (or use `HttpDep`)."""
    http = get_facades(connection).http
    if http is None:
        raise _missing("http")
    return http


DatabaseDep = Annotated[Database, Depends(get_database)]
"""A path-operation parameter typed ``db: DatabaseDep`` receives the app's open `Database`."""
StorageDep = Annotated[Storage, Depends(get_storage)]
"""A path-operation parameter typed ``storage: StorageDep`` receives the app's open `Storage`."""
HttpDep = Annotated[HttpClient, Depends(get_http)]
"""A path-operation parameter typed ``http: HttpDep`` receives the app's open `HttpClient`."""


def install_detection(
    app: FastAPI,
    *,
    detect: Mode | None = "log",
    allow: Iterable[str] = (),
    monitor: LoopMonitor | bool = True,
    stall_threshold: float = 0.1,
    metrics_path: str | None = None,
) -> LoopMonitor | None:
    """Watch *app* for blocking calls and loop stalls, attributed to the route being served.

    Adds `BlockingMiddleware` (outermost of the middleware added so far), which starts a
    `LoopMonitor` and a ``detect_blocking(mode=detect, allow=allow)`` at the app's lifespan
    startup and stops them at shutdown. *detect* ``"log"`` (default) logs each blocking call
    once per line and minute on the ``asyncify_kit.detect`` logger; ``"raise"`` turns it into
    a `BlockingCallError` (for tests), None turns detection off. *monitor*: True for a new
    monitor with *stall_threshold*, a monitor of your own (one already running is left
    running at shutdown), or False.
    *metrics_path* (e.g. ``"/metrics"``) serves the counters in Prometheus text format.

    Returns the monitor (None without one), for ``monitor.metrics()``; the per-route counters
    are ``BlockingMiddleware.of(app).metrics()``. Options are checked here: a bad mode,
    allow pattern (``kind:`` names one of the kinds detected), monitor or threshold raises
    `ConfigError` at once, not at startup.

    ```python
    from fastapi import FastAPI

    from asyncify_kit.fastapi import install_detection

    app = FastAPI()
    install_detection(app, stall_threshold=0.05, metrics_path="/metrics")
    ```
    """
    installed: list[object] = [m.cls for m in app.user_middleware]
    if BlockingMiddleware in installed:
        raise ConfigError(f"blocking detection is already installed on {app!r}")
    patterns = (allow,) if isinstance(allow, str) else tuple(allow)
    # validates the mode and patterns (even unused ones); the middleware builds its own
    detect_blocking(mode="log" if detect is None else detect, allow=patterns)
    checked_metrics_path(metrics_path)
    chosen = chosen_monitor(monitor, stall_threshold)
    app.add_middleware(
        BlockingMiddleware,
        monitor=chosen if chosen is not None else False,
        detect=detect,
        allow=patterns,
        stall_threshold=stall_threshold,
        metrics_path=metrics_path,
    )
    _start_with_lifespan_context(app)
    return chosen


def _start_with_lifespan_context(app: FastAPI) -> None:
    """Start and stop the app's `BlockingMiddleware` inside ``app.router.lifespan_context``.

    The middleware sees the ASGI lifespan messages a server sends, but a test running the
    lifespan itself (``async with app.router.lifespan_context(app):`` around an
    ``httpx.ASGITransport`` client, as documented) sends none: the first request started the
    detector and nothing stopped it, so a ``"raise"`` detector failed unrelated code after
    the app was done. Under a server both paths run; start and stop are idempotent.
    """
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan_context(lifespan_app: Any) -> AsyncIterator[Any]:
        if app.middleware_stack is None:  # built by the first ASGI call, there may be none
            app.middleware_stack = app.build_middleware_stack()
        middleware = BlockingMiddleware.of(app)
        middleware.start()
        try:
            async with inner(lifespan_app) as state:
                yield state
        finally:
            middleware.stop()

    app.router.lifespan_context = lifespan_context
