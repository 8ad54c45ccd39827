"""Price every offer, apply the user's constraints, and rank: eligible and cheapest first.

`quote` renders the whole list; `gen` walks the eligible part in order (fallback). Ties are broken
by provider id and model so the same input always gives the same order.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Collection
from decimal import Decimal
from typing import NamedTuple, cast

from imgroute.errors import BudgetError, ImgrouteError, NoKeyError, NoOfferError, named
from imgroute.models import FROM_URL, Constraints, Request
from imgroute.money import fmt_usd
from imgroute.policy import MIN_HISTORY_ATTEMPTS
from imgroute.pricing import price_models
from imgroute.pricing.costs import Assessment, assess, fit
from imgroute.pricing.table import Offer, PricingTable
from imgroute.pricing.tokens import prompt_tokens


class Quote(NamedTuple):
    assessment: Assessment
    reasons: tuple[str, ...]  # everything that rules the offer out: capability and constraints
    priced_out: bool = False  # ruled out by --max-cost alone
    needs_key: bool = False  # its provider has no key here (gen, batch, resume)
    expected: Decimal | None = None  # expected USD per delivered image, from enough history
    # What the job costs you beyond what you pay anyway, when that is less than its list price:
    # credits already bought that would expire unused cost nothing (see `marginal_cost`).
    marginal: Decimal | None = None

    @property
    def eligible(self) -> bool:
        return not self.reasons

    @property
    def offer(self) -> Offer:
        return self.assessment.offer

    @property
    def cost(self) -> Decimal | None:
        """The list price: what --max-cost, budgets and the ledger count."""
        return self.assessment.cost

    @property
    def rank_cost(self) -> Decimal | None:
        """What routing ranks by: the marginal cost where prepaid credits make it lower."""
        return self.marginal if self.marginal is not None else self.cost


class Route(NamedTuple):
    request: Request
    quotes: tuple[Quote, ...]
    caveats: tuple[str, ...] = ()  # about the winner, worth knowing before paying (see `caveats`)

    @property
    def eligible(self) -> tuple[Quote, ...]:
        return tuple(q for q in self.quotes if q.eligible)

    @property
    def choice(self) -> Quote | None:
        return next(iter(self.eligible), None)

    def skipped_for_keys(self) -> list[Quote]:
        """Offers ruled out only for want of a key that would have won, or been cheaper than the choice."""
        choice = self.choice
        return [
            q
            for q in self.quotes
            if q.needs_key
            and len(q.reasons) == 1
            # (an eligible quote, as the choice is, always has a price)
            and (choice is None or (q.rank_cost is not None and q.rank_cost < cast(Decimal, choice.rank_cost)))
        ]

    @property
    def only_priced_out(self) -> bool:
        """Nothing is eligible, but something could deliver within the other constraints."""
        return not self.eligible and any(q.priced_out for q in self.quotes)


def rank(
    request: Request,
    table: PricingTable,
    constraints: Constraints,
    keys: Collection[str] | None = None,
    memo: dict | None = None,
) -> Route:
    """Every offer priced and ranked. With `keys` (the providers a key is present for), offers of
    other providers are ruled out too, saying how to add the key. `memo` (RouteCache's) keeps the
    assessments of offers whose price does not read the prompt, for requests alike but for it."""
    quotes = []
    plans = _plans(table, constraints, memo)
    # (a memo key, never sent: the prompt stands in as how many limits it is over, hence the ignore)
    shape = None if memo is None else request._replace(prompt=_over_limits(request.prompt, table))  # type: ignore[arg-type]
    for offer in table.offers:
        plan = plans[offer.provider]
        # (a prompt over a limit is said with its own length)
        if memo is not None and shape is not None and shape.prompt == 0:
            assessment = _remembered(memo, request, offer, plan, shape)
        else:
            assessment = assess(request, offer, plan)
        balance = table.balances.get(offer.provider) if offer.price.uses_credits else None
        marginal = None
        if balance is not None and balance.left > 0:
            marginal = marginal_cost(assessment, balance, dt.date.today())
            assessment = assessment._replace(notes=(*assessment.notes, prepaid_note(balance, assessment, marginal)))
        if offer.price_assumed:  # (said on its row, winner or not; why: its caveat if it wins, and pricing.yaml)
            assessment = assessment._replace(
                notes=(*assessment.notes, "price assumed: no source states it (pricing.yaml says why)")
            )
        reasons = list(assessment.reasons)
        if offer.unset:
            reasons.append(f"not set up: it needs {offer.unset}")
        reasons.extend(_constraint_reasons(offer, constraints))
        needs_key = keys is not None and offer.provider not in keys
        if needs_key:
            spec = table.registry.spec(offer.provider)
            also = f"; it also needs {spec.setup}" if spec.setup else ""
            reasons.append(f"no key: set {spec.key_env}, or run: imgroute keys set {offer.provider}{also}")
        priced_out = False
        limit = constraints.max_cost
        if limit is not None and assessment.cost is not None and assessment.cost > limit:
            priced_out = not reasons
            reasons.append(f"costs {fmt_usd(assessment.cost)}, over --max-cost {fmt_usd(limit)}")
        quotes.append(
            Quote(
                assessment=assessment,
                reasons=tuple(reasons),
                priced_out=priced_out,
                needs_key=needs_key,
                expected=_expected(assessment),
                marginal=marginal,
            )
        )
    quotes.sort(key=_order if constraints.rank == "price" else _expected_order)
    return Route(request=request, quotes=tuple(quotes))


MEMO_SIZE = 20_000  # assessments kept for prices that ignore the prompt (a few KB each)


class RouteCache:
    """`rank` for the many rows of a batch. Pricing reads of a prompt only its token count and
    whether it is over an offer's length limit, never its words, so rows alike but for their
    wording share one ranking (a bounded number are kept)."""

    def __init__(self, table: PricingTable, keys: Collection[str] | None = None, size: int = 2048):
        self.table = table
        self.keys = keys
        self.size = size
        self._assessed: dict = {}  # (offer, plan, shape) -> assessment: prices that ignore the prompt
        self._quotes: dict[tuple, tuple[Quote, ...]] = {}
        self._lock = threading.Lock()  # a batch's workers share one cache

    def rank(self, request: Request, constraints: Constraints) -> Route:
        # (a key, never sent: the prompt stands in as its tokens and limits, the plans as a hashable tuple)
        key = (
            request._replace(prompt=(prompt_tokens(request.prompt), _over_limits(request.prompt, self.table))),  # type: ignore[arg-type]
            constraints._replace(plans=tuple(sorted(constraints.plans.items()))),  # type: ignore[arg-type]
        )
        with self._lock:
            quotes = self._quotes.get(key)
        if quotes is None:
            quotes = rank(request, self.table, constraints, self.keys, self._assessed).quotes
            with self._lock:
                if len(self._quotes) >= self.size:
                    del self._quotes[next(iter(self._quotes))]  # the oldest
                self._quotes[key] = quotes
        return Route(request=request, quotes=quotes)


def _plans(table: PricingTable, constraints: Constraints, memo: dict | None) -> dict:
    """The plan in use at each provider (from `memo` when this cache has worked them out)."""
    key = ("plans", tuple(sorted(constraints.plans.items())))
    found = memo.get(key) if memo is not None else None
    if found is None:
        found = {provider: table.plan(provider, constraints.plans.get(provider)) for provider in table.providers}
        if memo is not None:
            memo[key] = found
    return found


def _remembered(memo: dict, request: Request, offer: Offer, plan, shape: Request) -> Assessment:
    """From `memo`: the whole assessment where the price ignores the prompt, else the offer's fit
    (priced again for this prompt's tokens)."""
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    if not price_models.of(offer).reads_prompt:
        key: tuple = (offer.id, plan.name, shape)
        found = memo.get(key)
        if found is None:
            found = memo[key] = assess(request, offer, plan)
        return found
    key = (offer.id, shape)
    fitted = memo.get(key)
    if fitted is None:
        fitted = memo[key] = fit(request, offer)
    return assess(request, offer, plan, fitted)


def _over_limits(prompt: str, table: PricingTable) -> int:
    """How many of the table's prompt-length limits the prompt is over: all that pricing reads of a
    prompt's length, besides its tokens."""
    return sum(len(prompt) > cap for cap in {offer.prompt_max_chars for offer in table.offers})


def _constraint_reasons(offer: Offer, constraints: Constraints) -> list[str]:
    """--provider and --exclude name providers (kie) or single offers (piapi/gpt-image-2-preview)."""
    reasons = []
    if constraints.providers and not {offer.provider, offer.id} & constraints.providers:
        reasons.append(f"not among --provider {', '.join(sorted(constraints.providers))}")
    if {offer.provider, offer.id} & constraints.exclude:
        reasons.append("excluded by --exclude")
    if constraints.official_only and offer.identity.kind != "official":
        reasons.append(f"not OpenAI's own model ({offer.identity.kind}; --official-only)")
    if offer.window_s is not None and (constraints.deadline_s or 0) < offer.window_s:
        window = _hours(offer.window_s)
        reasons.append(f"results within {window}: needs --deadline {window} or more")
    if constraints.stated_quality and not offer.quality_stated:
        reasons.append(f"its quality tier is assumed, not stated: {offer.quality_note} (--stated-quality)")
    stats = offer.history
    if constraints.deadline_s is not None and stats is not None and stats.enough:
        p95 = stats.percentile(0.95)
        if p95 is not None and p95 > constraints.deadline_s:
            reasons.append(f"took {p95:.0f}s or more on 5% of its jobs here (p95), over --deadline")
    return reasons


def _expected(assessment: Assessment) -> Decimal | None:
    """Expected USD per delivered image, where the offer's history here is long enough to say."""
    stats = assessment.offer.history
    if stats is None or not stats.enough or assessment.per_image is None:
        return None
    return stats.expected_per_image(assessment.per_image, 1.0)


def _expected_order(quote: Quote) -> tuple:
    """--rank expected: by expected cost per image where history says it, else by list price."""
    per_image = quote.expected if quote.expected is not None else quote.assessment.per_image
    return (not quote.eligible, per_image is None, per_image or Decimal(0), quote.offer.provider, quote.offer.model)


def marginal_cost(assessment: Assessment, balance, today: dt.date) -> Decimal | None:
    """What a job paid from a prepaid balance costs beyond what is paid anyway: nothing for the
    credits that would otherwise expire unused at the pace since the balance was set, the plan's
    price for the rest. None where that is the list price (or the job cannot be priced)."""
    per_credit = assessment.plan.usd_per_credit
    if assessment.cost is None or not per_credit:
        return None
    free = min(balance.expiring(today), balance.left)
    if free <= 0:
        return None
    needed = assessment.cost / per_credit
    return max(Decimal(0), needed - free) * per_credit


def prepaid_note(balance, assessment: Assessment | None = None, marginal: Decimal | None = None) -> str:
    """An offer paid from prepaid credits, how many of them would expire unused at this pace, and
    the routing rule when that makes the job cheaper than its list price."""
    today = dt.date.today()
    expiring = balance.expiring(today)
    note = f"paid from your prepaid {balance.provider} credits ({balance.left:,.0f} left, expiring {balance.expires})"
    if expiring > 0:
        note += f"; at your pace {expiring:,.0f} of them expire unused, so using them costs nothing extra"
    if assessment is not None and marginal is not None and assessment.cost is not None:
        note += (
            f"; ranked at {fmt_usd(marginal)}, what it costs beyond credits that would expire anyway "
            f"(--max-cost and budgets count its list price, {fmt_usd(assessment.cost)})"
        )
    return note


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds / 60:g}m"


def _order(quote: Quote) -> tuple:
    cost = quote.rank_cost
    return (
        not quote.eligible,
        cost is None,
        cost if cost is not None else Decimal(0),
        bool(quote.offer.price_assumed),  # (at the same price, the one a source states first)
        quote.offer.provider,
        quote.offer.model,
    )


def with_caveats(route: Route, max_age_days: int, rank: str = "price", today: dt.date | None = None) -> Route:
    """The route with its caveats: every door that pays (gen, edit, batch, serve, the Python API)
    shows them before paying, as `quote` does."""
    return route._replace(caveats=tuple(caveats(route, today or dt.date.today(), max_age_days, rank)))


def caveats(route: Route, today: dt.date, max_age_days: int, rank: str = "price") -> list[str]:
    """What is worth knowing about the winner before paying: a size its provider does not publish,
    and the figures its price rests on that are older than the staleness age."""
    choice = route.choice
    if choice is None:
        return []
    offer, plan, delivery = choice.offer, choice.assessment.plan, choice.assessment.delivery
    notes = []
    if route.request.target.from_image == FROM_URL:
        notes.append(
            "the first image is a URL, whose shape imgroute does not know: the edit is made "
            f"{route.request.target.aspect_label}; give --aspect W:H to keep the image's shape"
        )
    if rank == "expected":
        thin = [q.offer.id for q in route.eligible if q.expected is None]
        if thin:
            notes.append(
                f"too little history to rank by expected cost at {', '.join(thin)} (fewer than "
                f"{MIN_HISTORY_ATTEMPTS} jobs here): ranked by list price"
            )
    if not offer.quality_stated and choice.assessment.quality:
        notes.append(f"{offer.id} delivers {choice.assessment.quality} quality by assumption: {offer.quality_note}")
    if not offer.identity.declared:
        notes.append(f"{offer.id} says nothing of the model it runs: counted as a relay")
    if offer.price_assumed:
        notes.append(f"{offer.id}'s price is assumed, not stated by a source: {offer.price_assumed}")
    if delivery is not None and delivery.seen:
        notes.append(
            f"{offer.provider} does not publish its pixel sizes: {delivery.width}x{delivery.height} is what "
            f"{delivery.aspect} {delivery.resolution} delivered "
            f"{'the one time' if delivery.seen == 1 else f'all {delivery.seen:,} times'} before (learned here), "
            "and the image is checked by its aspect ratio only"
        )
    elif delivery is not None and not delivery.exact:
        notes.append(
            f"{offer.provider} does not publish its pixel sizes: {delivery.width}x{delivery.height} is nominal, "
            "and the image is checked by its aspect ratio only"
        )
    stale: dict[tuple, list[str]] = {}  # (observed, source) -> what rests on it
    sources = (
        ("price", offer.price.provenance),
        ("sizes", offer.sizes.provenance),
        (f"plan {plan.name}", plan.provenance),
    )
    for what, provenance in sources:
        if (today - provenance.observed).days > max_age_days:
            stale.setdefault((provenance.observed, provenance.source), []).append(what)
    for (observed, source), whats in stale.items():
        age = (today - observed).days
        listed = whats[0] if len(whats) == 1 else f"{', '.join(whats[:-1])} and {whats[-1]}"
        notes.append(
            f"{offer.id} {listed} observed {observed}, {age} days ago (over {max_age_days}): re-check {source}"
        )
    return notes


def no_offer_error(route: Route, reasons_at: str = "in the table above") -> ImgrouteError:
    """Why nothing can run: no key for any offer that could (exit 3), --max-cost alone (exit 8), or
    no offer can deliver (exit 4). `reasons_at` says where the caller shows each offer's reasons."""
    skipped = route.skipped_for_keys()
    if skipped:
        cheapest = skipped[0]  # (ruled out for its key alone, so it has a price)
        provider = cheapest.offer.provider
        return NoKeyError(
            f"no API key for any provider that can deliver this (cheapest: {provider} "
            f"{cheapest.offer.model} at {fmt_usd(cast(Decimal, cheapest.cost))})",
            cheapest.reasons[0].removeprefix("no key: "),  # (its only reason: how to add the key)
        )
    if route.only_priced_out:
        lowest = min(q.cost for q in route.quotes if q.priced_out and q.cost is not None)
        return BudgetError(
            f"every offer that can deliver this costs more than {named('max_cost')} (cheapest: {fmt_usd(lowest)})",
            f"raise {named('max_cost')}, or ask for less (lower quality, smaller size, fewer images)",
        )
    return NoOfferError(
        f"no offer can deliver this request (reasons {reasons_at})",
        "relax the size, aspect, quality or provider constraints",
    )
