"""`imgroute pricing refresh openrouter`: OpenRouter publishes what each upstream of a model charges
(`GET /api/v1/images/models/openai/gpt-image-2/endpoints`, providers/openrouter.md); each upstream
becomes an offer of the user's pricing file (`openrouter/gpt-image-2@UPSTREAM`), pinned to
it, priced from its rows, with the endpoints URL as source and today as the date. Never at quote
time: the bundled rows stay the default until this is run, and what it writes is checked (the
table loads with it) before the file is replaced.
"""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from imgroute.errors import ConfigError, ProviderError

MODEL = "openai/gpt-image-2"
ENDPOINTS_PATH = f"/api/v1/images/models/{MODEL}/endpoints"
OFFICIAL_UPSTREAMS = {"openai", "azure"}  # OpenAI's own model, run by OpenAI or Microsoft
TOKEN_KINDS = ("text_input", "cached_text_input", "image_input", "cached_image_input", "image_output", "text_output")


class Refreshed(NamedTuple):
    written: tuple[str, ...]  # offer ids now priced in the user's file
    skipped: tuple[str, ...]  # "upstream: why", for upstreams imgroute cannot price


def offers_from(endpoints: dict, base_offer: dict, source: str, today: dt.date) -> tuple[list[dict], list[str]]:
    """One offer per upstream it can price, from the endpoints answer; and why the others cannot be."""
    offers, skipped = [], []
    for endpoint in endpoints.get("endpoints") or []:
        slug = endpoint.get("provider_slug") or ""
        price = _price(endpoint.get("pricing") or [], base_offer.get("qualities") or [])
        if not slug or isinstance(price, str):
            skipped.append(f"{slug or '?'}: {price if isinstance(price, str) else 'no provider_slug'}")
            continue
        offer = copy.deepcopy(base_offer)
        offer["model"] = f"{MODEL.split('/')[1]}@{slug}"
        offer.setdefault("edit", {})["model"] = offer["model"]
        offer["observed"] = today
        offer["price"] = {**price, "source": source, "observed": today}
        name = endpoint.get("provider_name") or slug
        offer["identity"] = (
            {"kind": "official", "source": source, "note": f"pinned to OpenRouter's {slug} upstream ({name})"}
            if slug in OFFICIAL_UPSTREAMS
            else {"kind": "relay", "source": source, "note": f"run by {name} for OpenRouter, which names it {MODEL}"}
        )
        unsourced = {k: v for k, v in (offer.get("unsourced") or {}).items() if not k.startswith("usd_per")}
        offer["unsourced"] = unsourced or None
        if offer["unsourced"] is None:
            del offer["unsourced"]
        offers.append(offer)
    return offers, skipped


def _price(rows: list[dict], qualities: list[str]) -> dict | str:
    """A `price:` block from an upstream's pricing rows, or why it cannot be one."""
    units = {row.get("unit") for row in rows}
    if not rows:
        return "no pricing rows"
    if any(not isinstance(row.get("cost_usd"), int | float) or isinstance(row.get("cost_usd"), bool) for row in rows):
        return "a pricing row without a cost_usd number"
    if units == {"token"}:
        rates = {row.get("billable"): Decimal(str(row["cost_usd"])) * 1_000_000 for row in rows}
        if not {"text_input", "image_output"} <= set(rates):
            return "token prices without text_input and image_output"
        return {"model": "tokens", "usd_per_million_tokens": {k: _plain(v) for k, v in rates.items()
                                                                if k in TOKEN_KINDS}}  # fmt: skip
    if units == {"image"}:
        by_variant = {row.get("variant"): _plain(Decimal(str(row["cost_usd"]))) for row in rows}
        if set(qualities) <= set(by_variant):
            return {"model": "usd_per_quality", "usd_per_image": {q: by_variant[q] for q in qualities}}
        if len(by_variant) == 1:
            return {"model": "flat_per_image", "usd_per_image": next(iter(by_variant.values()))}
        return "per-image prices that are not one per quality"
    return f"priced per {', '.join(sorted(str(u) for u in units))}: imgroute has no price model for that"


def _plain(amount: Decimal) -> str:
    """An amount as written by hand: 30, 0.004 (never 3E+1)."""
    return format(amount.normalize(), "f")


def write(path: Path, offers: list[dict], source: str) -> None:
    """Put `offers` in the user's pricing file, checked first: they replace the rows an earlier
    refresh wrote from the same source (an upstream no longer listed goes with them); the file's
    other rows are kept (its comments are not: the file is written anew)."""
    import yaml

    from imgroute.files import atomic_write
    from imgroute.pricing.load import load_table

    current: dict[str, Any] = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}
    current.setdefault("version", 1)
    ids = {(o["provider"], o["model"]) for o in offers}
    kept = [
        o for o in current.get("offers") or []
        if (o.get("provider"), o.get("model")) not in ids and (o.get("price") or {}).get("source") != source
    ]  # fmt: skip
    current["offers"] = kept + offers

    class Plain(yaml.SafeDumper):  # (no &id001 anchors where two offers share a value)
        def ignore_aliases(self, data):
            return True

    text = yaml.dump(current, Dumper=Plain, sort_keys=False, allow_unicode=True)
    from imgroute.files import private_dir

    private_dir(path.parent)  # (the home may not exist yet: it is made owner-only)
    trial = path.with_name(f".{path.name}.refresh")
    trial.write_text(text, encoding="utf-8")
    try:
        load_table(trial)  # (a row that would not load is never written)
    except ConfigError as exc:
        raise ProviderError(f"OpenRouter's prices would not make a valid pricing file: {exc.message}",
                            "report it; the file was left as it was") from None  # fmt: skip
    finally:
        trial.unlink(missing_ok=True)
    atomic_write(path, text)
