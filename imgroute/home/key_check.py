"""`imgroute keys check`: each key present is shown to a route its provider documents as free
(each adapter's `check_key`), and the balance an answer carries is set beside the prepaid credits
imgroute tracks (`imgroute plans`). Nothing is generated, nothing is paid.

Exit codes (design contract): 0 when every checked key is valid, 3 (configuration) when a key was
refused, else 5 (provider) when a provider could not be reached. A provider with no documented free
route, or whose route would not say (a fal key that may not read billing), is "unknown" and checked
no further: it does not change the exit code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple, cast

from imgroute.errors import ConfigError, ProviderError
from imgroute.home.credits import Balance


class Checked(NamedTuple):
    provider: str
    env: str
    source: str  # where the key comes from: "env" or "file"
    state: str  # valid | refused | unknown
    detail: str
    route: str
    reached: bool
    balance: Decimal | None
    unit: str | None  # "credits", or a currency code
    tracked: Balance | None  # the prepaid balance imgroute tracks for this provider, if one is set
    in_config: bool  # that balance is set in config.yaml (changed there, not here)

    @property
    def differs(self) -> bool:
        """A credit balance that is not what imgroute tracks: the plan may be updated to it."""
        return (
            self.unit == "credits"
            and self.balance is not None
            and self.tracked is not None
            and (self.balance != self.tracked.left)
        )


def check(rows, keys, registry, http, balances: dict, configured: Mapping[str, tuple]) -> list[Checked]:
    """Ask each provider of `rows` (key_store.KeyInfo, keys present) at once, in parallel. `keys`:
    session.Keys (the keys and base-URL overrides); `registry`: the providers the table knows."""

    def one(row) -> Checked:
        if row.provider not in keys.available:  # a key, but not the rest it needs (Azure's endpoint)
            setup = registry.spec(row.provider).setup
            return Checked(
                provider=row.provider, env=row.env, source=row.source, state="unknown",
                detail=f"not set up: it needs {setup}", route="", reached=True, balance=None, unit=None,
                tracked=balances.get(row.provider), in_config=row.provider in configured,
            )  # fmt: skip
        adapter = keys.adapter(row.provider)
        verdict = adapter.check_key(http)
        return Checked(
            provider=row.provider,
            env=row.env,
            source=row.source,
            state=verdict.state,
            detail=adapter.clean(verdict.detail),
            route=verdict.route,
            reached=verdict.reached,
            balance=verdict.balance,
            unit=verdict.unit,
            tracked=balances.get(row.provider),
            in_config=row.provider in configured,
        )

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(rows)))) as pool:
        return list(pool.map(one, rows))


def exit_code(results: list[Checked]) -> int:
    if any(r.state == "refused" for r in results):
        return ConfigError.exit_code
    if any(not r.reached for r in results):
        return ProviderError.exit_code
    return 0


def update_plan(home: Path, checked: Checked, today: dt.date | None = None) -> Balance:
    """The plan set to the provider's balance, keeping its expiry (as `plans set` would set it)."""
    from imgroute.home import credits

    # (asked only where the balance differs from the tracked one: both are known)
    balance, tracked = cast(Decimal, checked.balance), cast(Balance, checked.tracked)
    credits.set_balance(home, checked.provider, balance, tracked.expires, today)
    return credits.read(home)[checked.provider]


def number(value: Decimal | None):
    """A Decimal as a JSON number: an int when whole, else a float to 6 places."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else round(float(value), 6)


def as_json(checked: Checked, plan: str | None) -> dict:
    tracked = checked.tracked
    return {
        "provider": checked.provider,
        "env": checked.env,
        "source": checked.source,
        "state": checked.state,
        "detail": checked.detail,
        "route": checked.route,
        "reached": checked.reached,
        "balance": number(checked.balance),
        "unit": checked.unit,
        "tracked": None
        if tracked is None
        else {"left": number(tracked.left), "bought": number(tracked.bought), "expires": tracked.expires.isoformat()},
        "plan": plan,
    }
