"""The API's request and response bodies."""

from __future__ import annotations

from pydantic import BaseModel, Field

Currency = str


class ItemIn(BaseModel):
    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=200)
    price_cents: int = Field(ge=0, description="net price, in cents of *currency*")
    currency: Currency = Field(default="USD", pattern=r"^[A-Z]{3}$")


class ItemPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    price_cents: int | None = Field(default=None, ge=0)
    currency: Currency | None = Field(default=None, pattern=r"^[A-Z]{3}$")


class Item(ItemIn):
    id: int


class Attachment(BaseModel):
    filename: str
    size: int
    content_type: str | None
    etag: str | None


class Quote(BaseModel):
    item_id: int
    country: str
    vat_rate: str
    net_cents: int
    tax_cents: int
    gross_cents: int
    currency: Currency
    quote_currency: Currency
    fx_rate: str
    quote_gross_cents: int
