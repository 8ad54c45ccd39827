"""Price every offer, apply the user's constraints, and rank: eligible and cheapest first.

`quote` renders the whole list; `gen` walks the eligible part in order (fallback). Ties are broken
by provider id and model so the same input always gives the same order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import NamedTuple

from imgroute.costs import Assessment, assess
from imgroute.models import Constraints, Request
from imgroute.money import fmt_usd, usd_json
from imgroute.pricing import Offer, PricingTable
from imgroute.report import request_json


class Quote(NamedTuple):
    assessment: Assessment
    reasons: tuple[str, ...]  # everything that rules the offer out: capability and constraints
    priced_out: bool = False  # ruled out by --max-cost alone

    @property
    def eligible(self) -> bool:
        return not self.reasons

    @property
    def offer(self) -> Offer:
        return self.assessment.offer

    @property
    def cost(self) -> Decimal | None:
        return self.assessment.cost


class Route(NamedTuple):
    request: Request
    quotes: tuple[Quote, ...]

    @property
    def eligible(self) -> tuple[Quote, ...]:
        return tuple(q for q in self.quotes if q.eligible)

    @property
    def choice(self) -> Quote | None:
        return next(iter(self.eligible), None)

    @property
    def only_priced_out(self) -> bool:
        """Nothing is eligible, but something could deliver within the other constraints."""
        return not self.eligible and any(q.priced_out for q in self.quotes)


# Extra, caller-specific reasons to rule an offer out (gen: "no API key").
ExtraReasons = Callable[[Offer], list[str]]


def rank(
    request: Request,
    table: PricingTable,
    constraints: Constraints,
    extra_reasons: ExtraReasons | None = None,
) -> Route:
    quotes = []
    for offer in table.offers:
        plan = table.plan(offer.provider, constraints.plans.get(offer.provider))
        assessment = assess(request, offer, plan)
        reasons = list(assessment.reasons)
        reasons.extend(_constraint_reasons(offer, constraints))
        if extra_reasons is not None:
            reasons.extend(extra_reasons(offer))
        priced_out = False
        limit = constraints.max_cost
        if limit is not None and assessment.cost is not None and assessment.cost > limit:
            priced_out = not reasons
            reasons.append(f"costs {fmt_usd(assessment.cost)}, over --max-cost {fmt_usd(limit)}")
        quotes.append(Quote(assessment, tuple(reasons), priced_out))
    quotes.sort(key=_order)
    return Route(request=request, quotes=tuple(quotes))


class RouteCache:
    """`rank` for the many rows of a batch. Pricing reads a prompt's length, never its words, so
    rows alike but for their wording share one ranking (a bounded number are kept)."""

    def __init__(self, table: PricingTable, extra_reasons: ExtraReasons | None = None, size: int = 512):
        self.table = table
        self.extra_reasons = extra_reasons
        self.size = size
        self._quotes: dict[tuple, tuple[Quote, ...]] = {}
        self._lock = threading.Lock()  # a batch's workers share one cache

    def rank(self, request: Request, constraints: Constraints) -> Route:
        key = (
            request._replace(prompt=len(request.prompt)),
            constraints._replace(plans=tuple(sorted(constraints.plans.items()))),
        )
        with self._lock:
            quotes = self._quotes.get(key)
        if quotes is None:
            quotes = rank(request, self.table, constraints, self.extra_reasons).quotes
            with self._lock:
                if len(self._quotes) >= self.size:
                    del self._quotes[next(iter(self._quotes))]  # the oldest
                self._quotes[key] = quotes
        return Route(request=request, quotes=quotes)


def _constraint_reasons(offer: Offer, constraints: Constraints) -> list[str]:
    reasons = []
    if constraints.providers and offer.provider not in constraints.providers:
        reasons.append(f"not among --provider {', '.join(sorted(constraints.providers))}")
    if offer.provider in constraints.exclude:
        reasons.append("excluded by --exclude")
    return reasons


def _order(quote: Quote) -> tuple:
    cost = quote.cost
    return (
        not quote.eligible,
        cost is None,
        cost if cost is not None else Decimal(0),
        quote.offer.provider,
        quote.offer.model,
    )


# -- JSON (the contract in design.md section 5) -------------------------------------------------


def quote_to_json(quote: Quote) -> dict:
    a = quote.assessment
    delivery = a.delivery
    return {
        "provider": a.offer.provider,
        "model": a.model,
        "plan": a.plan.name,
        "eligible": quote.eligible,
        "cost_usd": usd_json(a.cost),
        "per_image_usd": usd_json(a.per_image),
        "output": {
            "width": delivery.width if delivery else None,
            "height": delivery.height if delivery else None,
            "quality": a.quality,
            "exact_size": delivery.exact if delivery else None,
            "resolution": delivery.resolution if delivery else None,
            "aspect": delivery.aspect if delivery else None,
        },
        "requests": len(a.requests),
        "reasons": list(quote.reasons),
        "notes": list(a.notes),
        "breakdown": [line.text for line in a.breakdown],
    }


def route_to_json(route: Route) -> dict:
    choice = route.choice
    return {
        "request": request_json(route.request),
        "choice": quote_to_json(choice) if choice else None,
        "quotes": [quote_to_json(q) for q in route.quotes],
    }
