"""The example service (examples/fastapi_app) end to end, in both configurations.

Each test runs twice with the same code: on the embedded defaults (SQLite and ``file://`` in
a temporary directory) and on PostgreSQL + S3 (moto), chosen by ``ASYNCIFY_SQL_URL`` and
``ASYNCIFY_STORAGE_URL`` only. The service and its upstream exchange-rate API are real uvicorn
servers on 127.0.0.1, each in a thread with its own event loop; the test talks to them over
HTTP. Blocking detection is on throughout: the app runs with ``CATALOGUE_DETECT_BLOCKING=raise``
(its middleware's detector) inside an outer ``detect_blocking(mode="raise")``, and a fixture
checks after each test that neither reported anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from examples.fastapi_app import fx_service
from examples.fastapi_app.catalogue import legacy_tax
from examples.fastapi_app.catalogue.main import create_app
from examples.fastapi_app.catalogue.settings import Settings
from fastapi import FastAPI

from asyncify_kit.detect import BlockingMiddleware, detect_blocking
from asyncify_kit.exceptions import BlockingCallError

from .conftest import scratch_bucket, scratch_postgres_database, serve_in_thread

CONFIG_VARS = ("ASYNCIFY_SQL_URL", "DATABASE_URL", "ASYNCIFY_STORAGE_URL")


@pytest.fixture(scope="module")
def fx_url() -> Iterator[str]:
    """The upstream exchange-rate API, served once for the module."""
    with serve_in_thread(fx_service.app, "fx") as url:
        yield url


@pytest.fixture(params=["embedded", "postgres+s3"])
def configuration(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The environment of one configuration; the app's code is the same for both."""
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # the embedded defaults are relative to the working directory
    if request.param == "embedded":
        yield request.param
        return
    postgres_url: str = request.getfixturevalue("postgres_url")
    s3_endpoint: str = request.getfixturevalue("s3_endpoint")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with scratch_postgres_database(postgres_url) as database_url, scratch_bucket(s3_endpoint) as b:
        monkeypatch.setenv("ASYNCIFY_SQL_URL", database_url)
        monkeypatch.setenv(
            "ASYNCIFY_STORAGE_URL",
            f"s3://{b}/catalogue?endpoint_url={s3_endpoint}&region=us-east-1",
        )
        yield request.param


@pytest.fixture
def environment(configuration: str, fx_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The configuration's environment plus the app's own settings (upstream URL, detection)."""
    monkeypatch.setenv("CATALOGUE_FX_URL", fx_url)
    monkeypatch.setenv("CATALOGUE_DETECT_BLOCKING", "raise")
    return configuration


def assert_nothing_blocked(app: FastAPI) -> None:
    middleware = BlockingMiddleware.of(app)
    assert middleware.detector is not None and middleware.detector.mode == "raise"
    assert [report.format() for report in middleware.detector.reports] == []


@contextmanager
def running(app: FastAPI) -> Iterator[httpx.Client]:
    """Serve *app* under an outer raise-mode detector; check that nothing blocked afterwards."""
    with (
        detect_blocking(mode="raise") as outer,
        serve_in_thread(app, "catalogue") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client
    assert [report.format() for report in outer.reports] == []
    assert_nothing_blocked(app)
    assert getattr(app.state, "asyncify", None) is None  # the lifespan shut down


@dataclass
class Service:
    app: FastAPI
    client: httpx.Client
    configuration: str


@pytest.fixture
def service(environment: str) -> Iterator[Service]:
    app = create_app()
    with running(app) as client:
        yield Service(app, client, environment)


def new_item(client: httpx.Client, sku: str, price_cents: int = 10_000, **extra: str) -> int:
    response = client.post(
        "/items", json={"sku": sku, "name": f"item {sku}", "price_cents": price_cents, **extra}
    )
    assert response.status_code == 201, response.text
    item_id: int = response.json()["id"]
    return item_id


# -- the tests ---------------------------------------------------------------------------------


def test_the_environment_alone_chooses_the_backends(service: Service) -> None:
    health = service.client.get("/health").json()
    expected = {"embedded": ("sqlite", "file"), "postgres+s3": ("postgresql", "s3")}
    assert (health["database"], health["storage"]) == expected[service.configuration]
    if service.configuration == "embedded":
        assert Path("asyncify.db").is_file()  # sqlite:///./asyncify.db in the working directory


def test_items_crud(service: Service) -> None:
    client = service.client
    first = new_item(client, "LAMP-1", 4_999)
    second = new_item(client, "DESK-2", 25_000, currency="EUR")
    assert second > first

    duplicate = client.post("/items", json={"sku": "LAMP-1", "name": "again", "price_cents": 1})
    assert duplicate.status_code == 409
    for invalid in ({"price_cents": -1}, {"sku": "a b"}, {"currency": "usd"}):
        body = {"sku": "OK-1", "name": "n", "price_cents": 1, **invalid}
        assert client.post("/items", json=body).status_code == 422

    listed = client.get("/items").json()
    assert [(i["sku"], i["price_cents"], i["currency"]) for i in listed] == [
        ("LAMP-1", 4_999, "USD"),
        ("DESK-2", 25_000, "EUR"),
    ]
    assert [i["sku"] for i in client.get("/items", params={"offset": 1}).json()] == ["DESK-2"]

    patched = client.patch(f"/items/{first}", json={"name": "desk lamp", "price_cents": 5_499})
    assert patched.status_code == 200
    assert patched.json() == {
        "id": first,
        "sku": "LAMP-1",
        "name": "desk lamp",
        "price_cents": 5_499,
        "currency": "USD",
    }
    assert client.patch(f"/items/{first}", json={}).json()["name"] == "desk lamp"
    assert client.get(f"/items/{first}").json()["price_cents"] == 5_499
    assert client.patch("/items/999999", json={"name": "x"}).status_code == 404

    assert client.delete(f"/items/{first}").status_code == 204
    assert client.get(f"/items/{first}").status_code == 404
    assert client.delete(f"/items/{first}").status_code == 404
    assert [i["id"] for i in client.get("/items").json()] == [second]

    metrics = client.get("/metrics").text
    assert 'asyncify_route_requests_total{route="GET /items/{item_id}"} 2.0' in metrics
    assert 'asyncify_route_blocking_calls_total{route="POST /items"} 0.0' in metrics


def test_attachments_stream_through_the_storage(service: Service) -> None:
    client = service.client
    item = new_item(client, "MANUAL-1")
    blob = os.urandom(1_500_000)
    chunks = (blob[i : i + 64 * 1024] for i in range(0, len(blob), 64 * 1024))
    uploaded = client.put(
        f"/items/{item}/attachments/manual.pdf",
        content=chunks,  # chunked transfer: the app streams it into the storage
        headers={"content-type": "application/pdf"},
    )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["size"] == len(blob)
    assert uploaded.json()["content_type"] == "application/pdf"
    notes = client.put(f"/items/{item}/attachments/notes.txt", content=b"fragile")
    assert notes.json()["content_type"] == "text/plain"  # guessed from the name

    listed = client.get(f"/items/{item}/attachments").json()
    assert [(a["filename"], a["size"]) for a in listed] == [
        ("manual.pdf", len(blob)),
        ("notes.txt", 7),
    ]
    download = client.get(f"/items/{item}/attachments/manual.pdf")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/pdf"
    assert int(download.headers["content-length"]) == len(blob)
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(blob).digest()

    assert client.get(f"/items/{item}/attachments/missing.pdf").status_code == 404
    bad = client.put(f"/items/{item}/attachments/a%5Cb.txt", content=b"x")  # a backslash
    assert bad.status_code == 400 and "backslash" in bad.json()["detail"]
    assert client.put("/items/999999/attachments/x.txt", content=b"x").status_code == 404

    assert client.delete(f"/items/{item}/attachments/notes.txt").status_code == 204
    assert client.delete(f"/items/{item}/attachments/notes.txt").status_code == 404
    assert client.delete(f"/items/{item}").status_code == 204  # takes its attachments along
    assert client.get(f"/items/{item}/attachments").json() == []


def test_quotes_use_the_legacy_tax_code_and_the_upstream_api(service: Service) -> None:
    client = service.client
    item = new_item(client, "CHAIR-9", 10_000)
    quote = client.get(f"/items/{item}/quote", params={"country": "de", "currency": "EUR"})
    assert quote.status_code == 200, quote.text
    assert quote.json() == {
        "item_id": item,
        "country": "DE",
        "vat_rate": "0.19",
        "net_cents": 10_000,
        "tax_cents": 1_900,
        "gross_cents": 11_900,
        "currency": "USD",
        "quote_currency": "EUR",
        "fx_rate": "0.920000",
        "quote_gross_cents": 10_948,
    }
    same = client.get(f"/items/{item}/quote", params={"country": "US"}).json()
    assert (same["tax_cents"], same["fx_rate"], same["quote_gross_cents"]) == (0, "1", 10_000)
    unknown_country = client.get(f"/items/{item}/quote", params={"country": "ZZ"})
    assert unknown_country.status_code == 422 and "ZZ" in unknown_country.json()["detail"]
    params = {"country": "FR", "currency": "XXX"}
    unknown_currency = client.get(f"/items/{item}/quote", params=params)
    assert unknown_currency.status_code == 422
    assert client.get("/items/999999/quote", params={"country": "FR"}).status_code == 404


def test_concurrent_traffic(service: Service) -> None:
    """Many requests at once over several connections: all served, nothing blocks the loop."""
    base = str(service.client.base_url)

    def customer(n: int) -> list[int]:
        with httpx.Client(base_url=base, timeout=30) as client:
            item = new_item(client, f"SKU-{n}", 1_000 + n)
            statuses = [
                client.get(f"/items/{item}").status_code,
                client.put(f"/items/{item}/attachments/photo.jpg", content=b"\xff" * n).status_code,
                client.get(
                    f"/items/{item}/quote", params={"country": "NL", "currency": "GBP"}
                ).status_code,
                client.get(f"/items/{item}/attachments/photo.jpg").status_code,
            ]
            return statuses

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(customer, range(24)))
    assert results == [[200, 201, 200, 200]] * 24
    assert len(service.client.get("/items", params={"limit": 100}).json()) == 24


def test_data_survives_a_restart(environment: str) -> None:
    with running(create_app()) as client:
        item = new_item(client, "KEEP-1")
        client.put(f"/items/{item}/attachments/a.txt", content=b"kept")
    with running(create_app()) as client:  # a new app object, new facades, the same backends
        assert client.get(f"/items/{item}").json()["sku"] == "KEEP-1"
        assert client.get(f"/items/{item}/attachments/a.txt").content == b"kept"


# -- the checks above can fail: the detector is live, errors are mapped ----------------------


def test_a_blocking_call_in_the_app_is_caught(
    fx_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The legacy function without its @asyncify, called on the loop: the detector objects."""
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    app = create_app(Settings(fx_url=fx_url, detect_blocking="collect"))

    @app.get("/legacy-blocking")
    async def legacy_blocking() -> dict[str, int]:
        return {"tax": legacy_tax.tax_for.__wrapped__(100, "DE").tax_cents}  # type: ignore[attr-defined]

    with serve_in_thread(app, "catalogue") as url:
        assert httpx.get(f"{url}/legacy-blocking", timeout=30).json() == {"tax": 19}
    detector = BlockingMiddleware.of(app).detector
    assert detector is not None
    [report] = detector.reports
    assert (report.function, report.route) == ("open", "GET /legacy-blocking")
    assert report.site.filename.endswith("legacy_tax.py")

    async def call_on_the_loop() -> None:
        legacy_tax.tax_for.__wrapped__(100, "DE")  # type: ignore[attr-defined]

    with detect_blocking(mode="raise"), pytest.raises(BlockingCallError, match="open"):
        asyncio.run(call_on_the_loop())


def test_an_unreachable_upstream_is_a_502(
    fx_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(Settings(fx_url=dead, detect_blocking="raise"))
    with running(app) as client:
        item = new_item(client, "FAR-1")
        response = client.get(f"/items/{item}/quote", params={"country": "DE", "currency": "EUR"})
        assert response.status_code == 502
        assert response.json() == {"detail": "the exchange-rate API failed"}
        assert client.get(f"/items/{item}/quote", params={"country": "DE"}).status_code == 200


def test_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "CATALOGUE_FX_URL": "http://fx.internal:8001",
            "CATALOGUE_DETECT_BLOCKING": "OFF",
            "CATALOGUE_DETECT_ALLOW": "time.sleep, module:legacy.*,",
        }
    )
    assert settings == Settings("http://fx.internal:8001", None, ("time.sleep", "module:legacy.*"))
    assert Settings.from_env({}) == Settings()
    with pytest.raises(ValueError, match="accepted: off, raise"):
        Settings.from_env({"CATALOGUE_DETECT_BLOCKING": "loud"})
