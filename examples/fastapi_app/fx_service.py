"""A tiny exchange-rate API: the upstream service the catalogue calls through `HttpClient`.

``uvicorn fx_service:app --port 8001`` (from ``examples/fastapi_app``). Rates are fixed, so
the catalogue's tests can check its arithmetic.
"""

from __future__ import annotations

from decimal import Decimal

from fastapi import FastAPI, HTTPException

PER_USD = {
    "USD": Decimal("1"),
    "EUR": Decimal("0.92"),
    "GBP": Decimal("0.79"),
    "CHF": Decimal("0.88"),
    "JPY": Decimal("151.30"),
}

app = FastAPI(title="fx")


@app.get("/rates")
async def rates(base: str = "USD", symbols: str = "") -> dict[str, object]:
    """``{"base": "USD", "rates": {"EUR": "0.920000"}}``; 404 for an unknown currency."""
    wanted = [s for s in symbols.split(",") if s] or sorted(PER_USD)
    for code in (base, *wanted):
        if code not in PER_USD:
            raise HTTPException(404, f"unknown currency {code!r}")
    six_places = Decimal("0.000001")
    return {
        "base": base,
        "rates": {c: str((PER_USD[c] / PER_USD[base]).quantize(six_places)) for c in wanted},
    }
