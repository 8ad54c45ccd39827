"""One error tree. Each class carries the exit code fixed by the design contract (section 5).

Every ImgrouteError is shown as one `error: ...` line plus a hint naming the fix; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from imgroute.money import fmt_usd

if TYPE_CHECKING:
    from imgroute.jobs.state import JobResult

QUOTE_LIMIT = 80  # the most of a user's value an error line repeats


def quoted(value) -> str:
    """A value as an error line shows it: its repr, cut short (a 50 MB prompt is not echoed)."""
    import reprlib

    shown = reprlib.Repr()  # (keyword arguments only from Python 3.12)
    shown.maxlevel, shown.maxstring, shown.maxother, shown.maxlist, shown.maxdict = 2, QUOTE_LIMIT, QUOTE_LIMIT, 4, 4
    return shown.repr(value)


def shown(value) -> str:
    """A value as an error line shows it when quotes would be noise (numbers): cut short too."""
    text = quoted(value) if isinstance(value, (list, dict, tuple)) else str(value)
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 3] + "..."


# An option named in a message is marked, for each door to spell it its own way: a unit separator
# on both sides, which no value in a message carries (values are shown by their repr).
_MARK = "\x1f"
_NAMED = re.compile(f"{_MARK}(\\w+){_MARK}")


def named(option: str) -> str:
    """An option named in an error, by its Python API name: `f"{named('max_cost')} is negative"`
    reads `--max-cost is negative` in the CLI, `max_cost= is negative` from the Python API,
    `imgroute.max_cost is negative` from serve (options.spelled)."""
    return f"{_MARK}{option}{_MARK}"


class ImgrouteError(Exception):
    """`message` and `hint` as the Python API words them; `worded(door)` as another door does.
    `field`: the option the error is about (the first one it names, unless given), so that serve
    can return it as the 400's `param`."""

    exit_code = 1
    result: JobResult | None = None  # a job that failed: what it did (the Python API's generate/edit set it)

    def __init__(self, message: str, hint: str | None = None, field: str | None = None):
        self._message, self._hint = message, hint
        first = _NAMED.search(message) or (_NAMED.search(hint) if hint else None)
        self.field = field or (first.group(1) if first else None)
        self.message, self.hint = self.worded("api")
        super().__init__(self.message)

    def worded(self, door: str) -> tuple[str, str | None]:
        """(message, hint) with each option named as `door` ("cli", "api", "serve", "row") spells it."""
        if _MARK not in self._message and (self._hint is None or _MARK not in self._hint):
            return self._message, self._hint
        from imgroute.options import spelled

        def spell(text: str) -> str:
            return _NAMED.sub(lambda found: spelled(found.group(1), door), text)  # type: ignore[arg-type]

        return spell(self._message), spell(self._hint) if self._hint is not None else None

    def about(self, context: str) -> ImgrouteError:
        """The same error, said of `context` (`row 3: ...`), still worded by each door."""
        return type(self)(f"{context}: {self._message}", self._hint, self.field)


class UsageError(ImgrouteError):
    """A flag, argument or input file the user gave is wrong."""

    exit_code = 2


class ConfigError(ImgrouteError):
    """pricing.yaml, config.yaml or the keys file is wrong, or a key is missing."""

    exit_code = 3


class NoOfferError(ImgrouteError):
    """No offer can deliver the request."""

    exit_code = 4


class ProviderError(ImgrouteError):
    """The provider kept failing after retries and fallbacks."""

    exit_code = 5


class JobFailedError(ImgrouteError):
    """The provider accepted the job and then failed it (including moderation)."""

    exit_code = 6


class OutputError(ImgrouteError):
    """A result could not be downloaded, verified or saved."""

    exit_code = 7


class BudgetError(ImgrouteError):
    """A budget cap or --max-cost refused the spend."""

    exit_code = 8


class BudgetRefused(BudgetError):
    """A cap refused an attempt's reservation, checked in the ledger's write transaction (so two
    processes cannot together pass it): nothing of that transaction was written."""

    def __init__(self, period: str, cap: Decimal, spent: Decimal, asked: Decimal, resets: dt.datetime):
        self.period, self.cap, self.spent, self.asked, self.resets = period, cap, spent, asked, resets
        super().__init__(
            f"{period} budget: this needs {fmt_usd(asked)}, {fmt_usd(self.left)} is left of {fmt_usd(cap)} "
            f"(resets {resets:%Y-%m-%d %H:%M})",
            "raise it with `imgroute budget set`, or wait for the reset",
        )

    @property
    def left(self) -> Decimal:
        return max(Decimal(0), self.cap - self.spent)


class Busy(ImgrouteError):
    """Another imgroute process is running this job (two never run the same one)."""

    exit_code = 2


class Interrupted(ImgrouteError):
    """Ctrl-C or SIGTERM (the CLI exits 130 or 143, signals.exit_code). What was already sent is in
    the ledger."""

    exit_code = 130


class StdoutClosed(ImgrouteError):
    """The reader of stdout went away (`| head -1`): what was sent was finished and saved."""

    exit_code = 141


EXIT_INTERRUPTED = Interrupted.exit_code


class TroubleKind(StrEnum):
    """Why a provider could not take or run a job that was not its fault to fail (the job may move
    to another offer). The HTTP layer's submit rule reads it: only some kinds are worth repeating."""

    AUTH = "auth"  # a missing, wrong or revoked key
    CREDITS = "credits"  # the account has no balance left
    RATE_LIMITED = "rate_limited"  # 429: the job was not taken; wait as asked
    SERVER = "server"  # 5xx or an answer that makes no sense
    REJECTED = "rejected"  # the provider refused the parameters
    UNREACHABLE = "unreachable"  # nothing reached the provider (connection refused, DNS)
