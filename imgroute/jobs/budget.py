"""Money against caps: what a refusal says, the batch's pre-check, the state of each cap, and the
spend summaries. The atomic check itself is the ledger's (one write transaction per reservation).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from decimal import Decimal

from imgroute.errors import BudgetError, named
from imgroute.models import OPEN_ATTEMPT_STATES
from imgroute.money import fmt_usd
from imgroute.store.interface import Ledger
from imgroute.store.periods import PERIODS, committed_cost, period_reset, period_start
from imgroute.store.records import SpendRow


def check_batch(ledger: Ledger, total: Decimal, total_cap: Decimal | None, now: dt.datetime | None = None) -> None:
    """Refuse a batch whose estimate passes --max-total or what is left of a cap, before any row runs
    (each job's reservation is still checked on its own when it runs)."""
    if total_cap is not None and total > total_cap:
        raise BudgetError(
            f"the batch is estimated at {fmt_usd(total)}, over {named('max_total')} {fmt_usd(total_cap)}",
            f"raise {named('max_total')}, or run fewer rows",
        )
    now = now or dt.datetime.fromtimestamp(ledger.clock(), ledger.zone)  # (a team ledger: its clock, its zone)
    for period, cap in ledger.budgets().items():
        left = cap - ledger.spent_since(period_start(period, now).timestamp())
        if total > left:
            raise BudgetError(
                f"the batch is estimated at {fmt_usd(total)}; the {period} budget has {fmt_usd(max(left, Decimal(0)))} "
                f"left of {fmt_usd(cap)} (resets {period_reset(period, now):%Y-%m-%d %H:%M})",
                "raise it with `imgroute budget set`, or run fewer rows",
            )


def cap_states(ledger: Ledger, now: dt.datetime | None = None) -> list[dict]:
    """Per period: {period, cap, spent, possibly_charged, left, resets}, Decimal amounts (None: no
    cap). `spent` counts what is in flight and what failed requests may have been charged (until
    settled); `possibly_charged` is that last part."""
    now = now or dt.datetime.fromtimestamp(ledger.clock(), ledger.zone)  # (a team ledger: its clock, its zone)
    caps = ledger.budgets()
    states = []
    for period in PERIODS:
        start = period_start(period, now).timestamp()
        spent = ledger.spent_since(start)
        cap = caps.get(period)
        states.append(
            {
                "period": period,
                "cap": cap,
                "spent": spent,
                "possibly_charged": ledger.at_risk_since(start),
                "left": max(Decimal(0), cap - spent) if cap is not None else None,
                "resets": period_reset(period, now),
            }
        )
    return states


# -- spend --------------------------------------------------------------------------------------

# An offer whose stated charges differ from imgroute's pricing of the same jobs by more than this
# is flagged in `spend`: pricing.yaml has drifted from its bills (LiteLLM's issue history is a list
# of image prices logged wrong for months).
STATED_DRIFT_PCT = 5.0

GROUPINGS: dict[str, Callable[[SpendRow], str]] = {
    "day": lambda r: dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d"),
    "month": lambda r: dt.datetime.fromtimestamp(r.created).strftime("%Y-%m"),
    "provider": lambda r: r.provider,
    "offer": lambda r: f"{r.provider}/{r.model}",
    "quality": lambda r: r.quality or "-",
    "machine": lambda r: r.host or "-",
    "total": lambda r: "all",
}


def spend_summary(rows: list[SpendRow]) -> dict[str, list[dict]]:
    """Per grouping (day, month, provider, offer, quality, machine, total): each group's figures (see `summarize`)."""
    return {name: summarize(rows, key) for name, key in GROUPINGS.items()}


def summarize(rows: Iterable[SpendRow], key: Callable[[SpendRow], str]) -> list[dict]:
    """Per group: attempts charged, images, estimated and actual USD, money still in flight, and the
    drift between estimate and actual over the attempts that have both (Decimal amounts).

    In flight is what may yet be charged: open attempts at their estimate, and what failed requests
    may have been charged (`possibly_charged`, also given on its own), never counted as spent."""
    groups: dict[str, dict] = {}
    for row in rows:
        group = groups.setdefault(
            key(row),
            {
                "key": key(row),
                "attempts": 0,
                "images": 0,
                "estimated": Decimal(0),
                "actual": Decimal(0),
                "in_flight": Decimal(0),
                "possibly_charged": Decimal(0),
                "compared_est": Decimal(0),
                "compared_act": Decimal(0),
                "stated": Decimal(0),  # what the providers said they charged, where they said
                "stated_priced": Decimal(0),  # imgroute's pricing of those same attempts
                "stated_attempts": 0,
            },
        )
        if row.stated is not None and row.priced is not None:
            group["stated"] += row.stated
            group["stated_priced"] += row.priced
            group["stated_attempts"] += 1
        if row.actual is not None:
            group["attempts"] += 1
            group["images"] += row.images
            group["actual"] += row.actual
            group["estimated"] += row.estimate or Decimal(0)
            if row.estimate:
                group["compared_est"] += row.estimate
                group["compared_act"] += row.actual
        else:
            group["in_flight"] += committed_cost(None, str(row.estimate) if row.estimate else None, row.state)
        if row.at_risk:  # failed requests, charge unknown (as ledger.committed_cost counts them)
            group["possibly_charged"] += row.at_risk
            if row.actual is not None or row.state not in OPEN_ATTEMPT_STATES:  # (else inside its estimate)
                group["in_flight"] += row.at_risk
    result = []
    for group in sorted(groups.values(), key=lambda g: g["key"]):
        est, act = group.pop("compared_est"), group.pop("compared_act")
        group["drift_pct"] = round(float((act - est) / est * 100), 2) if est else None
        stated, priced = group["stated"], group.pop("stated_priced")
        group["stated_drift_pct"] = round(float((stated - priced) / priced * 100), 2) if priced else None
        group["flagged"] = group["stated_drift_pct"] is not None and abs(group["stated_drift_pct"]) > STATED_DRIFT_PCT
        if not group["stated_attempts"]:
            group["stated"] = None
        result.append(group)
    return result
