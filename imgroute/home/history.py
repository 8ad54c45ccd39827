"""What each offer has done for you: how often its attempts delivered, failed or were refused by
moderation, what its failures were charged, and how long it took from submit to saved.

Kept per offer in `~/.imgroute/offer-history.json` (a cache of the ledger's outcomes, written when
an attempt settles, so that `quote` reads it without opening sqlite) and attached to the offers
when the table is loaded. With enough of it (policy.MIN_HISTORY_ATTEMPTS), `quote` shows it and `--rank expected`
ranks by the expected dollars per delivered image instead of the list price.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from imgroute.home.cache import Merger, read_json
from imgroute.policy import MIN_HISTORY_ATTEMPTS

FILE = "offer-history.json"
KEEP_TIMES = 200  # the latest durations kept per offer, for p50/p95


class OfferStats(NamedTuple):
    attempts: int
    succeeded: int
    failed: int  # failed at the provider (moderation included)
    moderated: int
    charged_usd: Decimal  # what failed attempts were charged, in total (where the provider says)
    times: tuple[float, ...]  # seconds from submit to saved, latest last
    charge_unknown: int = 0  # failed attempts whose charge the provider does not state (not in charged_usd)

    @property
    def enough(self) -> bool:
        return self.attempts >= MIN_HISTORY_ATTEMPTS

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.attempts if self.attempts else 0.0

    def percentile(self, share: float) -> float | None:
        if not self.times:
            return None
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]

    def expected_per_image(self, list_per_image: Decimal, images_per_attempt: float) -> Decimal | None:
        """List price over the success rate, plus what charged failures cost per delivered image."""
        if not self.succeeded:
            return None
        rate = Decimal(self.succeeded) / Decimal(self.attempts)
        delivered = Decimal(str(max(images_per_attempt, 1.0))) * self.succeeded
        return list_per_image / rate + self.charged_usd / delivered


def read(home: Path) -> dict[str, OfferStats]:
    out = {}
    for offer, entry in read_json(home / FILE).items():
        try:
            out[offer] = OfferStats(
                attempts=int(entry["attempts"]),
                succeeded=int(entry["succeeded"]),
                failed=int(entry["failed"]),
                moderated=int(entry["moderated"]),
                charged_usd=Decimal(str(entry["charged_usd"])),
                times=tuple(float(t) for t in entry["times"][-KEEP_TIMES:]),
                charge_unknown=int(entry.get("charge_unknown", 0)),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError):
            continue  # a damaged entry is no history
    return out


def apply(table, home: Path):
    """The table with each offer's history attached (`offer.history`), where there is any."""
    known = read(home)
    if not known:
        return table
    return table._replace(offers=tuple(o._replace(history=known.get(o.id)) for o in table.offers))


class Recorder(Merger):
    """Collects one run's settled attempts; merged into the file (see home_cache.Merger)."""

    def __init__(self, home: Path):
        super().__init__(home, FILE)
        self.pending: list[tuple[str, str, Decimal, float | None, bool]] = []

    def record(self, offer: str, outcome: str, charged: Decimal, took: float | None, charge_unknown=False) -> None:
        """`outcome`: succeeded, failed, moderated (trouble, where the provider never took the job, is
        not the offer's record). `charge_unknown`: a failure the provider did not say it charged for
        (counted as a failure; its charge is not in `charged`)."""
        self.add((offer, outcome, charged, took, charge_unknown))

    def collect(self, change) -> None:
        self.pending.append(change)

    def has_pending(self) -> bool:
        return bool(self.pending)

    def fold(self, raw: dict) -> None:
        for offer, outcome, charged, took, charge_unknown in self.pending:
            stored = raw.get(offer)
            entry = stored if isinstance(stored, dict) else {}
            counts = ("attempts", "succeeded", "failed", "moderated", "charge_unknown")
            entry = {k: entry.get(k, 0) for k in counts} | {
                "charged_usd": str(Decimal(str(entry.get("charged_usd", "0"))) + charged),
                "times": list(entry.get("times") or [])[-KEEP_TIMES:],
            }
            entry["attempts"] += 1
            entry["succeeded" if outcome == "succeeded" else "failed"] += 1
            if outcome == "moderated":
                entry["moderated"] += 1
            if charge_unknown:
                entry["charge_unknown"] += 1
            if took is not None and outcome == "succeeded":
                entry["times"] = (entry["times"] + [round(took, 3)])[-KEEP_TIMES:]
            raw[offer] = entry
        self.pending.clear()
