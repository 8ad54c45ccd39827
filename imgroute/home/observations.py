"""What a run learns for the home's caches, in one object every door hands its job runners: the
pixel sizes unpublished presets delivered, each offer's record (outcome, charge, time), and the
prepaid credits each job used. A batch's workers share one; `flush(force=True)` when the run ends.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from imgroute.home import credits, history, learned_sizes


class Observations:
    def __init__(self, home: Path):
        self.sizes = learned_sizes.Recorder(home)
        self.outcomes = history.Recorder(home)
        self.draws = credits.Drawer(home)

    def delivered(self, offer, spec, width: int, height: int) -> None:
        """A verified image from a preset whose pixels are unpublished says what that preset makes."""
        if offer is not None and not spec.exact_size and spec.aspect and spec.resolution:
            self.sizes.record(offer.id, spec.aspect, spec.resolution, width, height)

    def settled(
        self, offer, plan, outcome: str, actual: Decimal | None, took: float | None, charge_unknown: bool = False
    ) -> None:
        """An attempt that ended at the provider: `outcome` succeeded, failed or moderated.
        `charge_unknown`: it failed without the provider saying what it charged (a failure whose
        charge is not known: nothing is counted as charged; `actual` is what it delivered)."""
        charged = actual if outcome != "succeeded" and actual and not charge_unknown else Decimal(0)
        self.outcomes.record(offer.id, outcome, charged, took, charge_unknown)
        if actual and offer.price.uses_credits and plan is not None and plan.usd_per_credit:
            self.draws.draw(offer.provider, actual / plan.usd_per_credit)  # a prepaid balance, if set

    def flush(self, force: bool = False) -> None:
        self.sizes.flush(force)
        self.outcomes.flush(force)
        self.draws.flush(force)
