"""Where a job goes when an offer does not deliver, and what it says when it stops: the offers
in the order they are tried, the reroute of a resumed job, and the errors and hints of its end."""

from __future__ import annotations

from collections.abc import Callable

from imgroute.errors import Interrupted, ProviderError, TroubleKind
from imgroute.jobs.state import Attempt, JobRun
from imgroute.models import Constraints, Request
from imgroute.money import fmt_usd
from imgroute.pricing.costs import Assessment
from imgroute.pricing.router import Quote, Route
from imgroute.pricing.table import PricingTable
from imgroute.providers.registry import Registry


def fallback_candidates(route: Route) -> list[Quote]:
    """Offers to try in order: the eligible ones, then those ruled out only by --max-cost at the full
    job size (they may fit for the images left after a partial delivery; the cumulative cost is
    checked before each is tried)."""
    usable = [q for q in route.quotes if q.eligible or q.priced_out]
    return sorted(usable, key=lambda q: (not q.eligible, q.rank_cost, q.offer.provider, q.offer.model))


def next_after(candidates: list[Quote], quote: Quote) -> Quote | None:
    index = candidates.index(quote)
    return candidates[index + 1] if index + 1 < len(candidates) else None


def over_max_cost(job: JobRun, quote: Quote, assessment: Assessment):
    from imgroute.errors import BudgetError, named

    assert job.max_cost is not None and assessment.cost is not None, "only a priced job has a limit to pass"

    so_far = [f"{fmt_usd(job.spent)} already spent on it"] if job.spent or not job.at_risk else []
    if job.at_risk:  # failed requests whose charge is unknown count as if charged, until settled
        so_far.append(f"{fmt_usd(job.at_risk)} possibly charged for failed requests")
    return BudgetError(
        f"{quote.offer.id} would take this job to {fmt_usd(job.committed + assessment.cost)}, over "
        f"{named('max_cost')} {fmt_usd(job.max_cost)} ({', '.join(so_far)})",
        f"raise {named('max_cost')} to let the job fall back further",
    )


def rerouter(table: PricingTable, base: Constraints, keys) -> Callable[[Request, Constraints], Route]:
    """How `resume` routes images a job never sent: as now configured, but only among the provider
    choices the job was made with (journaled with it)."""
    from imgroute.pricing.router import rank

    def reroute(request: Request, stored: Constraints) -> Route:
        within = base._replace(providers=stored.providers, exclude=stored.exclude, plans={**base.plans, **stored.plans})
        return rank(request, table, within, keys)

    return reroute


def trouble_hint(troubles: list[tuple[str, TroubleKind]], registry: Registry) -> str:
    """What to do about the providers' troubles: a key refused, a balance too low, or wait."""
    hints = []
    for provider in dict.fromkeys(p for p, kind in troubles if kind == TroubleKind.AUTH):
        env = registry.spec(provider).key_env if provider in registry.known() else "its key"
        hints.append(f"{provider} refused its key: check {env}, or run: imgroute keys set {provider}")
    for provider in dict.fromkeys(p for p, kind in troubles if kind == TroubleKind.CREDITS):
        hints.append(f"{provider} says the balance is too low: top it up")
    return "; ".join(hints) or "check the keys and balances of these providers, or try again later"


def unknown_error(exc: Exception | None, provider: str, job_id: str) -> ProviderError:
    what = str(exc) if exc else f"{provider}: what became of a request is unknown"
    return ProviderError(
        f"{what}; the job may have been created and charged, so it was not sent again (job {job_id})",
        settle_hint(provider, job_id),
    )


def settle_hint(provider: str, job_id: str) -> str:
    """The way forward from a request whose fate is unknown: the dashboard, then `jobs settle`."""
    return (
        f"look for it on the {provider} dashboard (`imgroute jobs show {job_id}` has when it was sent), then "
        f"settle it: imgroute jobs settle {job_id} --charged (its images are lost) or --not-charged "
        f"(then imgroute jobs resume {job_id} sends it again)"
    )


def charge_unknown_note(provider: str, job_id: str) -> str:
    """What follows a failure whose charge the provider does not state: the way to settle it."""
    return (
        f"whether {provider} charged for it is unknown, so it counts as possibly charged: check the {provider} "
        f"dashboard, then settle it: imgroute jobs settle {job_id} --charged or --not-charged"
    )


def stopped_partway(job: JobRun, attempt: Attempt) -> Interrupted:
    return Interrupted(
        f"the batch was stopped after part of job {job.id} was sent to {attempt.provider}; the rest was not sent",
        "run the batch again: it finishes what was sent and sends the rest",
    )
