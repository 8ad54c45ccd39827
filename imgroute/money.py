"""Money helpers. All amounts are Decimal USD; floats appear only at the JSON boundary."""

from __future__ import annotations

import functools
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

MICRO = Decimal("0.000001")
MILLION = Decimal(1_000_000)


def ceil_to(amount: Decimal, step: Decimal) -> Decimal:
    """Round up to a multiple of step (fal bills each request rounded up to the cent)."""
    return (amount / step).to_integral_value(rounding=ROUND_CEILING) * step


def usd_json(amount: Decimal | None) -> float | None:
    """USD for JSON output: a number rounded to 6 places (design contract)."""
    if amount is None:
        return None
    return float(amount.quantize(MICRO, rounding=ROUND_HALF_EVEN))


_PLACES = {places: Decimal(1).scaleb(-places) for places in range(0, 13)}


def fmt_usd(amount: Decimal, places: int = 4) -> str:
    """Human USD: cents from a dollar up ($48.19, not $48.1936: a sum of sub-cent prices); below a
    dollar at least two decimals and more only where they matter, up to `places` ($0.0325)."""
    if abs(amount) >= 1:
        places = 2
    q = amount.quantize(_PLACES.get(places) or Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{q:f}"
    if "." in text:
        whole, frac = text.split(".")
        frac = frac.rstrip("0").ljust(2, "0")
        text = f"{whole}.{frac}"
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


@functools.lru_cache(maxsize=256)  # a table has few rates, and a batch prints them thousands of times
def fmt_rate(amount: Decimal) -> str:
    """A rate such as $/credit or $/1M tokens, with every significant digit kept."""
    text = f"{amount.normalize():f}"
    return f"${text}"
