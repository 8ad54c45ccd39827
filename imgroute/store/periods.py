"""Budget periods and what an attempt counts against them: the arithmetic every ledger backend
shares. Periods start at midnight (and on the first of the month): local midnight for a ledger of
one machine, midnight in the team ledger's one time zone for a shared one (`zone`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from imgroute.models import OPEN_ATTEMPT_STATES

PERIODS = ("daily", "monthly")


def period_start(period: str, now: dt.datetime) -> dt.datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "daily" else day.replace(day=1)


def period_reset(period: str, now: dt.datetime) -> dt.datetime:
    start = period_start(period, now)
    if period == "daily":
        return start + dt.timedelta(days=1)
    return (start + dt.timedelta(days=32)).replace(day=1)


def local_day(timestamp: float, zone: dt.tzinfo | None = None) -> str:
    """The calendar day a moment falls on, locally or in `zone`: budgets reset at its midnight."""
    return dt.datetime.fromtimestamp(timestamp, zone).date().isoformat()


def day_start(timestamp: float, zone: dt.tzinfo | None = None) -> float:
    """The midnight (local, or in `zone`) that begins the day of `timestamp`."""
    return period_start("daily", dt.datetime.fromtimestamp(timestamp, zone)).timestamp()


def committed_cost(actual: str | None, estimate: str | None, state: str, at_risk: str | None = None) -> Decimal:
    """What an attempt counts against a budget: its actual cost once known, else its estimate while
    it may still be charged (in flight or unknown), else nothing (refused, never charged); plus what
    it may have been charged for requests that failed without saying (`at_risk`, until settled)."""
    if actual is None and state in OPEN_ATTEMPT_STATES and estimate is not None:
        return Decimal(estimate)  # (the whole estimate: any share at risk is inside it)
    return (Decimal(actual) if actual is not None else Decimal(0)) + (Decimal(at_risk) if at_risk else Decimal(0))
