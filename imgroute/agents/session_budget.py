"""What an agent may spend, set by the person who started `imgroute mcp`: a ceiling per call and a
budget for the whole session. A tool's own `max_cost` may lower the ceiling for one call, never
raise it. Calls reserve their ceiling before they run (so calls at once cannot together pass the
session's budget) and keep only what the job cost (or may yet cost) once it ends.
"""

from __future__ import annotations

import threading
from decimal import Decimal

from imgroute.errors import BudgetError
from imgroute.money import fmt_usd


class SessionBudget:
    def __init__(self, per_call: Decimal | None, session: Decimal | None):
        self.per_call, self.session = per_call, session
        self.spent = Decimal(0)  # what the session's ended calls cost (or may yet cost)
        self._reserved = Decimal(0)  # the ceilings of the calls running now
        self._lock = threading.Lock()

    def ceiling(self, asked: Decimal | None) -> Decimal | None:
        """This call's --max-cost: the lowest of what the tool asked, the per-call ceiling and what
        is left of the session's budget (None: no limit at all). Reserved until `settle`."""
        with self._lock:
            limits = [limit for limit in (asked, self.per_call) if limit is not None]
            if self.session is not None:
                left = self.session - self.spent - self._reserved
                if left <= 0:
                    running = f", {fmt_usd(self._reserved)} reserved by calls still running" if self._reserved else ""
                    used = f"{fmt_usd(self.spent)} spent{running}"
                    raise BudgetError(
                        f"the session's budget of {fmt_usd(self.session)} is used ({used})",
                        "wait for the running calls, or ask the person running imgroute mcp for a new session",
                    )
                limits.append(left)
            chosen = min(limits) if limits else None
            self._reserved += chosen or Decimal(0)
            return chosen

    def said(self, ceiling: Decimal | None, asked: Decimal | None) -> str:
        """Where this call's ceiling comes from, when it is not the tool's own max_cost."""
        if ceiling is None or ceiling == asked:
            return ""
        parts = [f"this call may spend at most {fmt_usd(ceiling)}, a limit of the server's that a tool cannot raise"]
        if self.per_call is not None:
            parts.append(f"{fmt_usd(self.per_call)} a call")
        if self.session is not None:
            parts.append(f"{fmt_usd(self.session - self.spent)} left of the session's {fmt_usd(self.session)}")
        return "; ".join(parts)

    def settle(self, reserved: Decimal | None, cost: Decimal | None) -> None:
        """A call ended: its reservation becomes what it cost (its estimate while that is unknown)."""
        with self._lock:
            self._reserved -= reserved or Decimal(0)
            self.spent += cost or Decimal(0)

    def left(self) -> Decimal | None:
        with self._lock:
            return None if self.session is None else self.session - self.spent - self._reserved
