"""Prepaid credits: a balance bought from a credit-priced provider (Apiframe, Kie), drawn down by
each job's credit cost, and what will expire unused at the current pace.

Kept in `~/.imgroute/credits.json` (set by `imgroute plans set PROVIDER --credits N --expires DATE`
or by `credits:` in config.yaml), so that `quote` reads it without opening the ledger. Each settled
attempt at the provider subtracts its credits (its actual cost over the plan's price per credit).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from imgroute.home.cache import Merger, read_json, write_json

FILE = "credits.json"
_lock = threading.Lock()  # setting a balance and syncing config.yaml's


class Balance(NamedTuple):
    provider: str
    bought: Decimal
    left: Decimal
    expires: dt.date
    since: dt.date  # when it was set: the pace is measured from here

    def pace_per_day(self, today: dt.date) -> Decimal:
        days = max(1, (today - self.since).days)
        return (self.bought - self.left) / days

    def expiring(self, today: dt.date) -> Decimal:
        """Credits left over at expiry if use goes on at the pace since the balance was set."""
        if today > self.expires:
            return self.left
        days_left = (self.expires - today).days + 1
        return max(Decimal(0), self.left - self.pace_per_day(today) * days_left)


def read(home: Path) -> dict[str, Balance]:
    out = {}
    for provider, entry in read_json(home / FILE).items():
        try:
            out[provider] = Balance(
                provider=provider,
                bought=Decimal(str(entry["bought"])),
                left=Decimal(str(entry["left"])),
                expires=dt.date.fromisoformat(entry["expires"]),
                since=dt.date.fromisoformat(entry["since"]),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError):
            continue
    return out


def set_balance(home: Path, provider: str, credits: Decimal, expires: dt.date, today: dt.date | None = None) -> None:
    with _lock:
        raw = _raw(home)
        raw[provider] = {
            "bought": str(credits),
            "left": str(credits),
            "expires": expires.isoformat(),
            "since": (today or dt.date.today()).isoformat(),
        }
        _write(home, raw)


def sync_config(home: Path, configured: Mapping[str, tuple]) -> None:
    """Balances set in config.yaml (`credits: {apiframe: {credits: N, expires: DATE}}`): a new or
    changed one starts again from its full amount; an unchanged one keeps its draw-down."""
    known = read(home)
    for provider, (credits, expires) in configured.items():
        balance = known.get(provider)
        if balance is None or balance.bought != credits or balance.expires != expires:
            set_balance(home, provider, credits, expires)


class Drawer(Merger):
    """One run's draws on the prepaid balances, merged into the file (see home_cache.Merger): a
    batch settles hundreds of attempts a minute, and the file need not be rewritten for each."""

    def __init__(self, home: Path):
        super().__init__(home, FILE)
        self.pending: dict[str, Decimal] = {}

    def draw(self, provider: str, credits: Decimal) -> None:
        """Subtract a settled attempt's credits from the provider's balance, if one is set."""
        if credits > 0:
            self.add((provider, credits))

    def collect(self, change) -> None:
        provider, credits = change
        self.pending[provider] = self.pending.get(provider, Decimal(0)) + credits

    def has_pending(self) -> bool:
        return bool(self.pending)

    def fold(self, raw: dict) -> None:
        for provider, credits in self.pending.items():
            entry = raw.get(provider)
            if isinstance(entry, dict) and "left" in entry:
                entry["left"] = str(max(Decimal(0), Decimal(str(entry["left"])) - credits))
        self.pending.clear()


def attach(table, home: Path, configured: Mapping[str, tuple]):
    """The table with the prepaid balances (config.yaml's brought up to date first)."""
    if configured:
        sync_config(home, configured)
    balances = read(home)
    return table._replace(balances=balances) if balances else table


def _raw(home: Path) -> dict:
    return read_json(home / FILE)


def _write(home: Path, raw: dict) -> None:
    write_json(home / FILE, raw, durable=True)  # a balance is the user's own figure, not a cache
