"""VAT rules from the old (sync) billing code, reused unchanged under ``@asyncify``.

The function body is the legacy code as it was: it re-reads the rate table from disk with
``open()`` on every call, which would block the event loop inside an ``async def`` handler.
The ``@asyncify`` line is the whole migration: callers ``await`` it and it runs in a worker
thread. (The blocking-call tests call ``tax_for.__wrapped__`` on the loop to prove that the
detector would catch the unwrapped version.)
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from asyncify_kit import asyncify

RATES_FILE = Path(__file__).with_name("tax_rates.csv")


class UnknownCountry(LookupError):
    """No VAT rate is known for this country code."""


@dataclass(frozen=True)
class TaxLine:
    country: str
    rate: Decimal
    tax_cents: int


@asyncify
def tax_for(net_cents: int, country: str) -> TaxLine:
    """The VAT due on *net_cents* in *country* (ISO 3166 alpha-2), rounded half-even."""
    country = country.upper()
    with open(RATES_FILE, newline="", encoding="utf-8") as table:
        for row in csv.DictReader(table):
            if row["country"] == country:
                rate = Decimal(row["vat_rate"])
                tax = (Decimal(net_cents) * rate).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
                return TaxLine(country, rate, int(tax))
    raise UnknownCountry(f"no VAT rate for country {country!r}")
