"""`imgroute quote --json`: the route (what was asked, every offer's quote, the choice), and the
route text every job journals. Each builder with its schema above it."""

from __future__ import annotations

import threading

from imgroute.models import Request
from imgroute.money import usd_json
from imgroute.output.vocabulary import (
    MODEL,
    OFFER_ID,
    PLAN,
    PROVIDER,
    STRINGS,
    array_of,
    boolean,
    enum,
    integer,
    nullable,
    number,
    obj,
    text,
    usd,
)
from imgroute.vocab import IMAGE_FORMATS, QUALITIES, RESOLUTIONS

IDENTITY_KINDS = ("official", "relay", "substitute")  # pricing.IDENTITIES (not imported: quote pays for imports)

IDENTITY = obj(
    {
        "kind": enum(
            IDENTITY_KINDS,
            "What the offer runs: `official` (OpenAI's model), `relay` (forwards to OpenAI), `substitute` "
            "(another model sold under the name)",
        ),
        "source": nullable(text("Where that is stated (a URL)")),
        "note": text(),
        "declared": boolean("False: an offer of yours that gave no identity (counted as a relay)"),
    },
    description="What the offer really runs, with its source.",
)


def identity_json(offer) -> dict:
    identity = offer.identity
    return {"kind": identity.kind, "source": identity.source, "note": identity.note, "declared": identity.declared}


HISTORY = nullable(
    obj(
        {
            "attempts": integer(minimum=0),
            "succeeded": integer(minimum=0),
            "failed": integer(minimum=0),
            "moderated": integer(minimum=0),
            "charged_failures_usd": usd("What failed attempts were charged", known=True),
            "p50_s": nullable(number("Median seconds from submit to saved")),
            "p95_s": nullable(number("95th percentile of seconds from submit to saved")),
            "enough": boolean("Enough attempts (20) for `expected_per_image_usd` and --rank expected"),
        },
        description="What the offer has done here (null when it has no record).",
    )
)


def history_json(stats) -> dict | None:
    """What an offer has done here (null when it has no record)."""
    if stats is None:
        return None
    return {
        "attempts": stats.attempts,
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "moderated": stats.moderated,
        "charged_failures_usd": usd_json(stats.charged_usd),
        "p50_s": stats.percentile(0.5),
        "p95_s": stats.percentile(0.95),
        "enough": stats.enough,
    }


QUOTE = obj(
    {
        "provider": PROVIDER,
        "model": MODEL,
        "plan": PLAN,
        "eligible": boolean("It can deliver the job within every constraint (then `reasons` is empty)"),
        "cost_usd": usd("The list price of the job at this offer and plan; null when it cannot be priced"),
        "per_image_usd": usd("`cost_usd` per image"),
        "marginal_cost_usd": usd(
            "What routing ranked it by: the list price, less what prepaid credits that would expire unused pay"
        ),
        "output": obj(
            {
                "width": nullable(integer("Pixels")),
                "height": nullable(integer("Pixels")),
                "quality": nullable(enum(QUALITIES, "The quality tier it would deliver")),
                "exact_size": nullable(boolean("False: the provider does not publish its pixels (nominal size)")),
                "resolution": nullable(text("The provider's tier, for offers priced or chosen by tier")),
                "aspect": nullable(text("The provider's aspect label, for preset offers")),
                "seen_before": nullable(integer("Unpublished sizes: delivered at this size N times before", minimum=0)),
            },
            description="What it would deliver (nulls when it cannot).",
        ),
        "requests": integer("Requests it would send for the job", minimum=0),
        "offer": OFFER_ID,
        "identity": IDENTITY,
        "quality_stated": boolean("False: its quality tier is assumed, not stated by the provider"),
        "history": HISTORY,
        "expected_per_image_usd": usd(
            "Expected dollars per delivered image from its history; null without enough history"
        ),
        "reasons": array_of(text(), "Why it cannot take the job (empty when eligible)"),
        "notes": STRINGS,
        "breakdown": array_of(text(), "The arithmetic behind `cost_usd`, a line each"),
    },
    description="One offer's quote.",
)


def quote_json(quote) -> dict:
    """One offer's line of `imgroute quote --json`."""
    a = quote.assessment
    delivery = a.delivery
    return {
        "provider": a.offer.provider,
        "model": a.model,
        "plan": a.plan.name,
        "eligible": quote.eligible,
        "cost_usd": usd_json(a.cost),
        "per_image_usd": usd_json(a.per_image),
        "marginal_cost_usd": usd_json(quote.rank_cost),  # what routing ranked it by (prepaid credits)
        "output": {
            "width": delivery.width if delivery else None,
            "height": delivery.height if delivery else None,
            "quality": a.quality,
            "exact_size": delivery.exact if delivery else None,
            "resolution": delivery.resolution if delivery else None,
            "aspect": delivery.aspect if delivery else None,
            "seen_before": delivery.seen if delivery else None,  # learned: delivered at this size N times
        },
        "requests": len(a.requests),
        "offer": a.offer.id,
        "identity": identity_json(a.offer),
        "quality_stated": a.offer.quality_stated,
        "history": history_json(a.offer.history),
        "expected_per_image_usd": usd_json(quote.expected),
        "reasons": list(quote.reasons),
        "notes": list(a.notes),
        "breakdown": [line.text for line in a.breakdown],
    }


REQUEST = obj(
    {
        "prompt": text(),
        "quality": enum(QUALITIES),
        "size": nullable(text("Exact pixels WxH, when asked by size", pattern=r"^\d+x\d+$")),
        "aspect": text("The aspect ratio W:H (as asked, or the exact size's)", pattern=r"^\d+:\d+$"),
        "resolution": nullable(enum(RESOLUTIONS, "The resolution tier; null when asked by exact size")),
        "aspect_from_image": nullable(
            text("An edit given no size or aspect: the first image's pixels (WxH) its shape came from, or `url`")
        ),
        "n": integer("Images asked for", minimum=1),
        "images": array_of(text(), "Reference images (edits), by path or URL"),
        "mask": nullable(text("The mask (edits), by path or URL")),
        "format": enum(IMAGE_FORMATS),
    },
    description="What was asked, as a user would write it.",
)


def request_json(request: Request) -> dict:
    """What was asked, as a user would write it: images and mask by their path or URL."""
    return {
        "prompt": request.prompt,
        "quality": request.quality,
        **request.target.to_json(),
        "n": request.n,
        "images": [image.source for image in request.images],
        "mask": request.mask.source if request.mask else None,
        "format": request.output_format,
    }


ROUTE = obj(
    {
        "request": REQUEST,
        "choice": nullable(
            {**QUOTE, "description": "The winner: the first of `quotes`, with the caveats among its notes"}
        ),
        "quotes": array_of(QUOTE, "Every offer, eligible first, then by `marginal_cost_usd`"),
        "caveats": array_of(text(), "What is worth knowing about the winner before paying"),
    },
    description=(
        "What a job costs at every offer, which one wins (`choice`, null when none can: exit 4) and why each "
        "other one lost."
    ),
)


def route_json(route) -> dict:
    """`imgroute quote --json`. The route's caveats about the winner join its notes, and are
    listed on their own too."""
    quotes = [quote_json(q) for q in route.quotes]
    if route.choice is not None:
        quotes[0]["notes"] = [*quotes[0]["notes"], *route.caveats]
    return {
        "request": request_json(route.request),
        "choice": quotes[0] if route.choice is not None else None,
        "quotes": quotes,
        "caveats": list(route.caveats),
    }


def route_text(route) -> str:
    """`route_json(route)` as JSON text, as every job journals its route (its caveats listed once,
    not also among the winner's notes). Requests alike but for their wording share one ranking
    (router.RouteCache), and its quotes are written out once for all of them (it was an eighth of
    the CPU a job of `serve` takes on its worker)."""
    import json  # (not at the top: `quote` does without it)

    choice, quotes = _quotes_text(route.quotes)
    request = json.dumps(request_json(route.request))
    chosen = choice if route.choice is not None else "null"
    caveats = json.dumps(list(route.caveats))
    return f'{{"request": {request}, "choice": {chosen}, "quotes": {quotes}, "caveats": {caveats}}}'


_QUOTES_TEXT: dict[int, tuple[tuple, str, str]] = {}  # id(quotes) -> (those quotes, first's text, all)
_QUOTES_TEXT_KEPT = 256
_quotes_text_lock = threading.Lock()


def _quotes_text(quotes: tuple) -> tuple[str, str]:
    """(the first quote's JSON text, the list's) for this tuple of quotes, made once per tuple.
    (The tuple is kept with its text, so its id cannot be reused while it is remembered.)"""
    import json

    found = _QUOTES_TEXT.get(id(quotes))
    if found is not None and found[0] is quotes:
        return found[1], found[2]
    items = [json.dumps(quote_json(quote)) for quote in quotes]
    texts = (quotes, items[0] if items else "null", f"[{', '.join(items)}]")
    with _quotes_text_lock:
        if len(_QUOTES_TEXT) >= _QUOTES_TEXT_KEPT:
            del _QUOTES_TEXT[next(iter(_QUOTES_TEXT))]  # the oldest
        _QUOTES_TEXT[id(quotes)] = texts
    return texts[1], texts[2]
