"""Money's shapes: `imgroute spend --json` (and `--savings`), `budget show --json`, `advise --json`
and `plans show --json`. Each builder with its schema above it."""

from __future__ import annotations

from decimal import Decimal

from imgroute.money import usd_json
from imgroute.output.vocabulary import (
    DAY,
    OFFER_ID,
    PLAN,
    PROVIDER,
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

GROUPINGS = (
    "day",
    "month",
    "provider",
    "offer",
    "quality",
    "machine",
    "total",
)  # budget.GROUPINGS (not imported: it brings sqlite)
PERIODS = ("daily", "monthly")  # ledger.PERIODS

SPEND_GROUP = obj(
    {
        "key": text(
            "The group: YYYY-MM-DD, YYYY-MM, a provider, an offer, a quality, a machine (its host name), or `all`"
        ),
        "attempts": integer("Attempts settled with an actual cost", minimum=0),
        "images": integer(minimum=0),
        "estimated_usd": usd("Their estimates", known=True),
        "actual_usd": usd("What they cost", known=True),
        "in_flight_usd": usd("Attempts not settled yet, at their estimates", known=True),
        "drift_pct": nullable(
            number("Actual against estimate, in percent (2 decimals), over the attempts that have both")
        ),
        "stated_usd": nullable(usd("What the providers' answers said they charged, where they said", known=True)),
        "stated_drift_pct": nullable(
            number("Stated charges against imgroute's pricing of the same attempts, in percent (2 decimals)")
        ),
        "flagged": boolean("The stated charges differ from pricing.yaml's by more than 5%: re-check its price"),
    }
)

SPEND = obj(
    {grouping: array_of(SPEND_GROUP, f"By {grouping}") for grouping in GROUPINGS},
    description="What was spent, per grouping: estimated against actual, money in flight, and the drift.",
)


def spend(summary: dict[str, list[dict]]) -> dict:
    """`imgroute spend --json`: per grouping, each group's figures in USD."""
    return {
        name: [
            {
                "key": g["key"],
                "attempts": g["attempts"],
                "images": g["images"],
                "estimated_usd": usd_json(g["estimated"]),
                "actual_usd": usd_json(g["actual"]),
                "in_flight_usd": usd_json(g["in_flight"]),
                "drift_pct": g["drift_pct"],
                "stated_usd": usd_json(g["stated"]),
                "stated_drift_pct": g["stated_drift_pct"],
                "flagged": g["flagged"],
            }
            for g in groups
        ]
        for name, groups in summary.items()
    }


BUDGET = array_of(
    obj(
        {
            "period": enum(PERIODS),
            "cap_usd": usd("The cap; null when none is set"),
            "spent_usd": usd("Spent this period, jobs in flight included", known=True),
            "left_usd": usd("What the cap leaves; null when none is set"),
            "resets": text("When it resets (local time, YYYY-MM-DD HH:MM)", pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"),
        }
    ),
    "Each period's cap, what is spent and left, and when it resets.",
)


def budget(states: list[dict]) -> list[dict]:
    """`imgroute budget show --json`: each period's cap, what is spent and left, when it resets."""
    return [
        {
            "period": s["period"],
            "cap_usd": usd_json(s["cap"]),
            "spent_usd": usd_json(s["spent"]),
            "left_usd": usd_json(s["left"]),
            "resets": s["resets"].strftime("%Y-%m-%d %H:%M"),
        }
        for s in states
    ]


PLANS = array_of(
    obj(
        {
            "provider": PROVIDER,
            "bought": number("Credits bought (6 places)"),
            "left": number("Credits left (6 places)"),
            "expires": DAY,
            "per_day": number("Credits used a day since the balance was set (6 places)"),
            "expiring": number("Credits that would expire unused at that pace (6 places)"),
        }
    ),
    "Each prepaid credit balance (in credits, not USD) and its outlook.",
)


def balances(balances, today) -> list[dict]:
    """`imgroute plans show --json` (and advise's `prepaid`): each prepaid balance and its outlook."""
    return [
        {
            "provider": b.provider,
            "bought": usd_json(b.bought),
            "left": usd_json(b.left),
            "expires": b.expires.isoformat(),
            "per_day": usd_json(b.pace_per_day(today)),
            "expiring": usd_json(b.expiring(today)),
        }
        for b in balances
    ]


ROW_REF = {"type": ["integer", "string"], "description": "A row of the mix file (its number), or a job id (--since)"}
SAVING_PCT = nullable(number("The saving in percent of the offer's cost (one decimal)"))
COUNT = "(one decimal: a month scaled from history may be fractional)"

ADVICE = obj(
    {
        "source": text("The mix file, or `N jobs since DATE`"),
        "images_per_month": number(f"Images in the month {COUNT}"),
        "routed_usd": usd("The month with imgroute's routing", known=True),
        "floor_usd": usd("The per-job minimum", known=True),
        "unservable_rows": array_of(ROW_REF, "Rows no offer can serve (left out of every figure)"),
        "cheapest_single": nullable(
            obj(
                {
                    "offer": OFFER_ID,
                    "plan": PLAN,
                    "usd": usd("The month at this offer alone", known=True),
                    "saving_usd": usd("What routing saves against it", known=True),
                    "saving_pct": SAVING_PCT,
                },
                description="The cheapest single offer that serves every row (null when none does).",
            )
        ),
        "by_offer": array_of(
            obj(
                {
                    "offer": OFFER_ID,
                    "plan": PLAN,
                    "usd": usd("The month at this offer and plan alone; null when it cannot serve every row"),
                    "saving_usd": usd("What routing saves against it"),
                    "saving_pct": SAVING_PCT,
                    "unservable_rows": array_of(ROW_REF, "Rows this offer cannot serve"),
                    "credits": nullable(number(f"Credits the month uses (credit-priced plans) {COUNT}")),
                    "unused_credits": nullable(number(f"Monthly plans: credits the month leaves unused {COUNT}")),
                    "excluded": nullable(text("Why the constraints rule it out (a batch offer without --deadline)")),
                }
            )
        ),
        "break_even": array_of(
            obj(
                {
                    "offer": OFFER_ID,
                    "plan": PLAN,
                    "monthly_usd": usd("The plan's monthly fee", known=True),
                    "images_per_month": nullable(
                        integer("Images a month from which the plan pays off; null when its credits run out first")
                    ),
                    "this_month_images": number(f"Images of this month its offer can serve {COUNT}"),
                    "past_it": boolean("This month is past the break-even"),
                    "unused_credits": number(f"Credits this month would leave unused {COUNT}"),
                    "why": text(),
                }
            ),
            "Each plan with a monthly fee: from how many images a month it pays off",
        ),
        "prepaid": {**PLANS, "description": "The prepaid balances, as `imgroute plans show --json`"},
    },
    description="A month of work priced every way: routed, at every single offer and plan, and each plan's break-even.",
)


def advice(result, source: str) -> dict:
    """`imgroute advise --json`: every figure of the month (the command adds `prepaid`: `balances`)."""
    routed, floor = result.routed_usd, result.floor_usd
    singles = [m for m in result.by_offer if m.usd is not None]
    cheapest = min(singles, key=lambda m: m.usd) if singles else None
    return {
        "source": source,
        "images_per_month": _amount(result.images),
        "routed_usd": usd_json(routed),
        "floor_usd": usd_json(floor),
        "unservable_rows": list(result.unservable_rows),
        "cheapest_single": (
            {
                "offer": cheapest.offer,
                "plan": cheapest.plan,
                "usd": usd_json(cheapest.usd),
                "saving_usd": usd_json(cheapest.usd - routed),
                "saving_pct": round(float((cheapest.usd - routed) / cheapest.usd * 100), 1) if cheapest.usd else None,
            }
            if cheapest
            else None
        ),
        "by_offer": [
            {
                "offer": m.offer,
                "plan": m.plan,
                "usd": usd_json(m.usd),
                "saving_usd": usd_json(m.usd - routed) if m.usd is not None else None,
                "saving_pct": round(float((m.usd - routed) / m.usd * 100), 1) if m.usd else None,
                "unservable_rows": list(m.unservable_rows),
                "credits": _amount(m.credits),
                "unused_credits": _amount(m.unused_credits),
                "excluded": m.excluded or None,
            }
            for m in result.by_offer
        ],
        "break_even": [
            {
                "offer": b.offer,
                "plan": b.plan,
                "monthly_usd": usd_json(b.monthly_usd),
                "images_per_month": b.images_per_month,
                "this_month_images": _amount(b.this_month_images),
                "past_it": b.past,
                "unused_credits": _amount(b.unused_credits),
                "why": b.why,
            }
            for b in result.break_even
        ],
    }


def _amount(value: Decimal | None) -> float | None:
    """A count that may be fractional (images or credits in a month scaled from history): one
    decimal, not money's six places (125.0, not 124.999998)."""
    return None if value is None else round(float(value), 1)


SAVINGS = obj(
    {
        "savings": array_of(
            obj(
                {
                    "period": text("A month, YYYY-MM, or `total` (after several)", pattern=r"^(\d{4}-\d{2}|total)$"),
                    "jobs": integer("Succeeded jobs", minimum=0),
                    "spent_usd": usd("What they cost (actual where known, else the estimate)", known=True),
                    "default_offer": text("The offer used without imgroute (`default_offer` in config.yaml)"),
                    "at_default_usd": usd("The same jobs at the default offer; null when it could not serve them all"),
                    "saved_vs_default_usd": usd("At the default offer, less what was spent (negative: it cost more)"),
                    "cheapest_offer": nullable(text("The cheapest single offer that could have served them all")),
                    "at_cheapest_usd": usd("The same jobs at that offer"),
                    "saved_vs_cheapest_usd": usd("At that offer, less what was spent"),
                }
            )
        )
    },
    description="What routing saved, per month: the jobs' cost against the default offer and the cheapest one.",
)


def savings(rows) -> dict:
    """`imgroute spend --savings --json`."""

    def saved(other):
        return usd_json(other - row.spent) if other is not None else None

    out = []
    for row in rows:
        out.append(
            {
                "period": row.period,
                "jobs": row.jobs,
                "spent_usd": usd_json(row.spent),
                "default_offer": row.default_offer,
                "at_default_usd": usd_json(row.at_default),
                "saved_vs_default_usd": saved(row.at_default),
                "cheapest_offer": row.cheapest_offer,
                "at_cheapest_usd": usd_json(row.at_cheapest),
                "saved_vs_cheapest_usd": saved(row.at_cheapest),
            }
        )
    return {"savings": out}
