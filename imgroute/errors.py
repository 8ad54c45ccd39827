"""Every exception imgroute raises, in one tree. An ImgrouteError is what a user sees: one
`error: ...` line, a hint naming the fix, and the exit code fixed by the design contract (section
5). The signals inside a job are caught where the job decides what they mean, and become one of
those, or an attempt's end; anything else is a bug and keeps its traceback.

    Exception
    ├── ImgrouteError                 shown to the user (exit 1: unexpected)
    │   ├── UsageError                2  a flag, argument, input file or request field
    │   ├── Busy                      2  another imgroute runs the job
    │   │   ├── LeaseLost                    a team ledger's job taken over from a stalled machine
    │   │   └── InputsElsewhere              an edit whose inputs are on another machine: it waits there
    │   ├── ConfigError               3  pricing.yaml, config.yaml, the keys, the ledger
    │   │   └── NoKeyError                   only offers without a key could deliver (serve: a 400)
    │   ├── NoOfferError              4  no offer can deliver the request
    │   ├── ProviderError             5  provider trouble after retries and fallbacks
    │   ├── JobFailedError            6  the provider failed the job (moderation included)
    │   ├── OutputError               7  a result could not be downloaded, verified or saved
    │   ├── BudgetError               8  --max-cost, --max-total or a cap
    │   │   └── BudgetRefused            a cap refused an attempt's reservation (in the ledger)
    │   ├── Interrupted               130 (143 on SIGTERM)
    │   └── StdoutClosed              141
    ├── signals inside a job
    │   ├── ProviderTrouble           not the job's fault: its images may move on (TroubleKind)
    │   ├── JobFailed                 the provider failed it
    │   ├── SubmitUnknown             a submit's fate is unknown: never sent again blindly
    │   ├── MalformedAnswer           an answer that cannot be read
    │   ├── TransportFailure          no HTTP answer (`reached`: whether the request may have arrived)
    │   ├── Stuck                     not done before the timeout: still at the provider
    │   └── Cancelled                 a stop before the job sent anything
    ├── NotAnImage (ValueError)       bytes that are not an image imgroute reads
    └── at the doors
        ├── ParamError                serve: a request refused with a 400 naming its parameter
        ├── HttpError                 serve: the status, type and code a client is answered with
        └── ReaderGone                the CLI: stdout's reader went away (`| head -1`)
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


class NoKeyError(ConfigError):
    """Only offers whose provider has no key could deliver the request. The CLI's user adds a key
    (exit 3); a client of `imgroute serve` cannot, so there it is a refusal of the request (400)."""


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


class LeaseLost(Busy):
    """A team ledger's lease on a job ran out while this process stalled, and another machine took
    the job over: this one sends nothing more for it (checked in the transaction of each intent)."""

    def __init__(self, job_id: str, holder: str):
        super().__init__(
            f"job {job_id} was taken over by another imgroute ({holder}) while this one stalled past its lease; "
            "nothing more was sent from here",
            f"see where it stands: imgroute jobs show {job_id}",
        )

    def about(self, context: str) -> ImgrouteError:
        return Busy(f"{context}: {self._message}", self._hint, self.field)


class InputsElsewhere(Busy):
    """A team ledger's edit whose input files are on the machine that began it (not in a folder the
    machines share): it waits for that machine, and is not taken over."""


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


# -- signals inside a job: caught where the job decides what they mean -------------------------


class ProviderTrouble(Exception):
    """The provider could not take or run the job, not the job's fault (its `kind`): the images may
    move to another offer; the HTTP layer's submit rule reads `kind` and `retry_after`."""

    def __init__(self, message: str, kind: TroubleKind, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class JobFailed(Exception):
    """The provider ran the job and failed it (moderation among the reasons)."""

    def __init__(self, message: str, moderated: bool = False, never_ran: bool = False, charge_unknown: bool = False):
        super().__init__(message)
        self.moderated = moderated
        self.never_ran = never_ran  # dropped unrun and not billed (an expired batch): the job may move on
        # Ran and failed without an image, and the provider does not say whether it charged (Kie): the
        # job may move on, and counts the request's estimate as possibly charged until it is settled.
        # A moderated failure stays final whatever this says (another provider would refuse it too).
        self.charge_unknown = charge_unknown


class SubmitUnknown(Exception):
    """A submit that may have reached the provider and whose answer was lost: never sent again blindly."""


class MalformedAnswer(Exception):
    """A provider answer that could not be read (not JSON, missing fields)."""


class TransportFailure(Exception):
    """No HTTP response. `reached` says whether the request may have reached the server."""

    def __init__(self, message: str, reached: bool):
        super().__init__(message)
        self.reached = reached


class Stuck(Exception):
    """Submitted, but not finished before the timeout: the job is still at the provider."""


class Cancelled(Exception):
    """Raised into a job waiting for its first slot when the batch stops (Ctrl-C)."""


class NotAnImage(ValueError):
    """Bytes that are not a PNG, JPEG or WebP image imgroute can read (a header cut short among them)."""


# -- at the doors ---------------------------------------------------------------------------------


class ParamError(Exception):
    """A request imgroute refuses: OpenAI's 400 `invalid_request_error`, naming the parameter."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class HttpError(Exception):
    """What serve answers a client: OpenAI's status, error type, code and param, and whether to retry."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None, param=None, retry=None):
        super().__init__(message)
        self.status, self.type, self.code, self.param, self.retry = status, type_, code, param, retry


class ReaderGone(Exception):
    """A command's stdout was closed by its reader. (Not an OSError: typer turns a broken pipe into
    exit 1, and `| head -1` is no failure.)"""
