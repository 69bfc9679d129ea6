"""The HTTP API: items on the database, attachments on the storage, quotes through the FX API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from asyncify_kit.exceptions import HTTPError, IntegrityError, InvalidPath, NotFound
from asyncify_kit.fastapi import DatabaseDep, HttpDep, StorageDep
from asyncify_kit.http import HttpClient
from asyncify_kit.sql import Database
from asyncify_kit.storage import ObjectInfo

from .legacy_tax import UnknownCountry, tax_for
from .models import Attachment, Item, ItemIn, ItemPatch, Quote

router = APIRouter()

COLUMNS = "id, sku, name, price_cents, currency"
ExceptionHandler = Callable[[Request, Exception], Awaitable[JSONResponse]]
CurrencyCode = Annotated[str, Query(pattern=r"^[A-Z]{3}$")]
CountryCode = Annotated[str, Query(pattern=r"^[A-Za-z]{2}$")]


async def item_or_404(db: Database, item_id: int) -> Item:
    item = await db.fetch_one(
        f"select {COLUMNS} from items where id = :id", {"id": item_id}, as_=Item
    )
    if item is None:
        raise HTTPException(404, f"item {item_id} not found")
    return item


def attachment_key(item_id: int, filename: str) -> str:
    return f"items/{item_id}/{filename}"


def attachment(info: ObjectInfo) -> Attachment:
    return Attachment(
        filename=info.key.rsplit("/", 1)[-1],
        size=info.size,
        content_type=info.content_type,
        etag=info.etag,
    )


# -- service -------------------------------------------------------------------------------


@router.get("/health")
async def health(db: DatabaseDep, storage: StorageDep) -> dict[str, str]:
    await db.fetch_val("select 1")
    return {"status": "ok", "database": db.dialect, "storage": storage.url.scheme}


# -- items: the database -------------------------------------------------------------------


@router.post("/items", status_code=201)
async def create_item(body: ItemIn, db: DatabaseDep) -> Item:
    rows = await db.fetch_all(
        "insert into items (sku, name, price_cents, currency) "
        f"values (:sku, :name, :price_cents, :currency) returning {COLUMNS}",
        body.model_dump(),
        as_=Item,
    )
    return rows[0]


@router.get("/items")
async def list_items(
    db: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[Item]:
    return await db.fetch_all(
        f"select {COLUMNS} from items order by id limit :limit offset :offset",
        {"limit": limit, "offset": offset},
        as_=Item,
    )


@router.get("/items/{item_id}")
async def read_item(item_id: int, db: DatabaseDep) -> Item:
    return await item_or_404(db, item_id)


@router.patch("/items/{item_id}")
async def update_item(item_id: int, body: ItemPatch, db: DatabaseDep) -> Item:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    async with db.transaction():
        await item_or_404(db, item_id)
        if changes:
            # column names come from the model's fields, never from the request
            assignments = ", ".join(f"{column} = :{column}" for column in changes)
            await db.execute(
                f"update items set {assignments} where id = :id", {**changes, "id": item_id}
            )
        return await item_or_404(db, item_id)


@router.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: int, db: DatabaseDep, storage: StorageDep) -> Response:
    if await db.execute("delete from items where id = :id", {"id": item_id}) == 0:
        raise HTTPException(404, f"item {item_id} not found")
    async for info in storage.list(f"items/{item_id}/"):
        await storage.delete(info.key, missing_ok=True)
    return Response(status_code=204)


# -- attachments: the storage --------------------------------------------------------------


@router.put("/items/{item_id}/attachments/{filename}", status_code=201)
async def put_attachment(
    item_id: int, filename: str, request: Request, db: DatabaseDep, storage: StorageDep
) -> Attachment:
    """Store the request body as the attachment, streamed (never held whole in memory)."""
    await item_or_404(db, item_id)
    key = attachment_key(item_id, filename)
    await storage.write(key, request.stream(), content_type=request.headers.get("content-type"))
    return attachment(await storage.stat(key))


@router.get("/items/{item_id}/attachments")
async def list_attachments(item_id: int, storage: StorageDep) -> list[Attachment]:
    return [
        attachment(info)
        async for info in storage.list(f"items/{item_id}/", recursive=False)
        if not info.is_dir
    ]


@router.get("/items/{item_id}/attachments/{filename}")
async def get_attachment(item_id: int, filename: str, storage: StorageDep) -> StreamingResponse:
    key = attachment_key(item_id, filename)
    info = await storage.stat(key)  # NotFound -> 404 before the response starts

    async def chunks() -> AsyncIterator[bytes]:
        async with storage.stream(key, chunk_size=256 * 1024) as stream:
            async for chunk in stream:
                yield chunk

    headers = {"content-length": str(info.size)}
    if info.etag:
        headers["etag"] = f'"{info.etag.strip(chr(34))}"'
    return StreamingResponse(
        chunks(), media_type=info.content_type or "application/octet-stream", headers=headers
    )


@router.delete("/items/{item_id}/attachments/{filename}", status_code=204)
async def delete_attachment(item_id: int, filename: str, storage: StorageDep) -> Response:
    await storage.delete(attachment_key(item_id, filename))
    return Response(status_code=204)


# -- quotes: the legacy tax code and the upstream FX API ---------------------------------------


async def fx_rate(http: HttpClient, base: str, target: str) -> Decimal:
    """How many *target* one *base* buys, from the upstream exchange-rate API."""
    if base == target:
        return Decimal(1)
    response = await http.get("/rates", params={"base": base, "symbols": target})
    if response.status_code == 404:
        raise HTTPException(422, f"no exchange rate from {base} to {target}")
    response.raise_for_status()
    return Decimal(response.json()["rates"][target])


@router.get("/items/{item_id}/quote")
async def quote(
    item_id: int,
    country: CountryCode,
    db: DatabaseDep,
    http: HttpDep,
    currency: CurrencyCode | None = None,
) -> Quote:
    item = await item_or_404(db, item_id)
    tax = await tax_for(item.price_cents, country)  # legacy sync code, in a worker thread
    target = currency or item.currency
    rate = await fx_rate(http, item.currency, target)
    gross = item.price_cents + tax.tax_cents
    converted = (Decimal(gross) * rate).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return Quote(
        item_id=item.id,
        country=tax.country,
        vat_rate=str(tax.rate),
        net_cents=item.price_cents,
        tax_cents=tax.tax_cents,
        gross_cents=gross,
        currency=item.currency,
        quote_currency=target,
        fx_rate=str(rate),
        quote_gross_cents=int(converted),
    )


# -- errors: the facades' error tree, mapped to HTTP once ------------------------------------


def add_error_handlers(app: FastAPI) -> None:
    def handler(status: int, detail: str | None = None) -> ExceptionHandler:
        async def handle(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": detail or str(exc)}, status_code=status)

        return handle

    app.add_exception_handler(NotFound, handler(404, "not found"))
    app.add_exception_handler(InvalidPath, handler(400))
    app.add_exception_handler(UnknownCountry, handler(422))
    app.add_exception_handler(IntegrityError, handler(409, "conflicts with an existing item"))
    app.add_exception_handler(HTTPError, handler(502, "the exchange-rate API failed"))
