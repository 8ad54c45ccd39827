"""The table's shapes: `imgroute providers --json` (what each offer can do) and `imgroute pricing
--json` (every figure with its source and date). Each builder with its schema above it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from imgroute.money import fmt_rate
from imgroute.output.quotes import IDENTITY, identity_json
from imgroute.output.vocabulary import (
    DAY,
    MODEL,
    PROVIDER,
    STRINGS,
    array_of,
    boolean,
    enum,
    integer,
    map_of,
    obj,
    text,
)
from imgroute.pricing import price_models
from imgroute.vocab import BACKGROUNDS, MODERATIONS, QUALITIES

OFFER = obj(
    {
        "provider": PROVIDER,
        "model": MODEL,
        "qualities": array_of(enum(QUALITIES)),
        "quality_selectable": boolean("False: the provider has no quality setting"),
        "sizes": text("What sizes it takes, in words"),
        "images_per_request": integer(minimum=1),
        "prompt_max_chars": integer(minimum=1),
        "edit": text("Whether it edits, and with what, in words (`no` when it does not)"),
        "price": text("Its price, in words"),
        "identity": IDENTITY,
        "quality_stated": boolean("False: its quality tier is assumed, not stated by the provider"),
        "background": array_of(enum(BACKGROUNDS), "The --background values it takes"),
        "moderation": array_of(enum(MODERATIONS), "The --moderation values it takes"),
        "unsourced": map_of(text(), "Field -> why its value is assumed (no source found)"),
    },
    description="One offer: what it can do.",
)

PROVIDERS = array_of(OFFER, "The capability matrix: every offer in the pricing table.")


def offer_json(offer) -> dict:
    """One offer of `imgroute providers --json`: what it can do."""
    sizes = offer.sizes
    if sizes.mode == "pixels":
        r = sizes.rules
        size_text = (
            f"any WxH, edges x{r.multiple_of}, <= {r.max_edge} px, "
            f"{r.min_pixels / 1e6:.2f}-{r.max_pixels / 1e6:.2f} MP, <= {r.max_ratio.normalize():f}:1"
        )
    else:
        size_text = "; ".join(f"{p.label} {'/'.join(p.tiers)}" for p in sizes.presets.values())
    edit = offer.edit
    if edit.supported:
        edit_text = (
            f"yes, up to {edit.max_images or '?'} images, {'mask' if edit.mask else 'no mask'}, {'/'.join(edit.inputs)}"
        )
    else:
        edit_text = "no"
    return {
        "provider": offer.provider,
        "model": offer.model,
        "qualities": list(offer.qualities),
        "quality_selectable": offer.quality_selectable,
        "sizes": size_text,
        "images_per_request": offer.images_per_request,
        "prompt_max_chars": offer.prompt_max_chars,
        "edit": edit_text,
        "price": price_summary(offer),
        "identity": identity_json(offer),
        "quality_stated": offer.quality_stated,
        "background": list(offer.backgrounds),
        "moderation": list(offer.moderations),
        "unsourced": dict(offer.unsourced),
    }


def price_summary(offer) -> str:
    return price_models.of(offer).summary(offer.price)


PRICING = obj(
    {
        "max_age_days": integer("Rows observed longer ago than this are stale", minimum=1),
        "rows": array_of(
            obj(
                {
                    "provider": PROVIDER,
                    "what": text("The figure: `plan NAME`, `MODEL price` or `MODEL sizes`"),
                    "value": text("The figure, in words"),
                    "source": text("Where it was read (a URL)"),
                    "observed": DAY,
                    "age_days": integer("Days since it was observed"),
                    "stale": boolean("Older than `max_age_days`"),
                    "file": text("The pricing file that defined or last changed the offer (empty for plans)"),
                }
            ),
            "Every figure of the table with its source, date and age",
        ),
        "notes": STRINGS,
    },
    description="Every price and plan of the pricing table, with its source and the date it was observed.",
)


def pricing_rows(table, today: dt.date, max_age_days: int) -> list[dict]:
    """`imgroute pricing --json` rows: every figure with its source, date and age."""
    rows = []

    def add(provider: str, what: str, value: str, prov, origin: str) -> None:
        age = (today - prov.observed).days
        rows.append(
            {
                "provider": provider,
                "what": what,
                "value": value,
                "source": prov.source,
                "observed": prov.observed.isoformat(),
                "age_days": age,
                "stale": age > max_age_days,
                "file": origin,
            }
        )

    for info in table.providers.values():
        for plan in info.plans.values():
            if plan.usd_per_credit is not None:
                value = f"{fmt_rate(plan.usd_per_credit.quantize(Decimal('0.00000001')).normalize())}/credit"
                if plan.monthly_usd is not None:
                    value += f" ({fmt_rate(plan.monthly_usd)}/month for {plan.credits_per_month:,} credits)"
            else:
                value = plan.description
            label = f"plan {plan.name}" + (" (default)" if plan.default else "")
            add(info.id, label, value, plan.provenance, "")
    for offer in table.offers:
        add(offer.provider, f"{offer.model} price", price_summary(offer), offer.price.provenance, offer.origin)
        add(
            offer.provider,
            f"{offer.model} sizes",
            offer_json(offer)["sizes"],
            offer.sizes.provenance,
            offer.origin,
        )
    return rows
