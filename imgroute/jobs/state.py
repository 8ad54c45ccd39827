"""One job's state while it runs (JobRun), and the values a job reports (JobResult and its parts)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from imgroute import policy
from imgroute.errors import ImgrouteError, ProviderTrouble, TroubleKind, named
from imgroute.jobs.outputs import ImageShape, SavedImage
from imgroute.models import JobState, Request
from imgroute.providers.base import Adapter, Usage
from imgroute.store.interface import Unsaved
from imgroute.vocab import DEFAULT_NAME

if TYPE_CHECKING:
    from imgroute.pricing.router import Quote


class Event(NamedTuple):
    provider: str
    model: str
    state: str  # submitting | queued | running | downloading | retrying | fallback | ...
    message: str
    estimate: Decimal | None
    elapsed: float


class AttemptReport(NamedTuple):
    provider: str
    model: str
    plan: str
    estimate: Decimal | None
    state: str  # an AttemptState
    error: str | None
    images: int
    at_risk: Decimal | None = None  # possibly charged for requests that failed without saying (until settled)


class JobResult(NamedTuple):
    job_id: str
    status: str  # succeeded | failed | unknown | running | cancelled
    provider: str | None  # the offer that delivered (or was last tried)
    model: str | None
    plan: str | None
    estimate: Decimal | None
    actual: Decimal | None
    actual_source: str | None
    images: tuple[SavedImage, ...]
    attempts: tuple[AttemptReport, ...]
    elapsed: float
    error: ImgrouteError | None
    usage: Usage | None = None  # the tokens the providers reported for the delivered images, summed
    caveats: tuple[str, ...] = ()  # what was worth knowing about the route before paying (router.caveats)
    at_risk: Decimal | None = None  # possibly charged for failed requests, not yet settled (`jobs settle`)


class OutputOptions(NamedTuple):
    out_dir: Path
    name_template: str = DEFAULT_NAME


class JobOptions(NamedTuple):
    """How one job runs, as its door says (its services are the door's, shared by all its jobs)."""

    output: OutputOptions
    timeout: float = policy.DEFAULT_JOB_TIMEOUT_S
    max_cost: Decimal | None = None  # over the whole job, every fallback included
    detach: bool = False  # gen --detach: leave a sent job at a batch provider, do not wait
    on_event: Callable[[Event], None] | None = None  # progress (the CLI's status line)
    # Called once, when the job first sends a request (or, resumed, finds one under way at its
    # provider): from then on a stop waits for it rather than cancelling it (pool.JobPool).
    on_sent: Callable[[], None] | None = None
    # serve: the request's Idempotency-Key, which names the job in the same commit as its first
    # request's intent (so a key never names nothing while its job may have been sent)
    idempotency_key: str | None = None


class AttemptEnd(NamedTuple):
    report: AttemptReport
    images: tuple[SavedImage, ...]
    actual: Decimal | None
    source: str | None
    error: ImgrouteError | None  # set when the job must stop here
    status: str  # what the job's status becomes if it stops here
    detached: bool = False  # sent, and left at the provider for `jobs resume` (--detach)
    at_risk: Decimal = Decimal(0)  # possibly charged for requests that failed without saying


class Outcome(NamedTuple):
    """How the sending went: trouble moves the job on, `final` stops it with `status`."""

    trouble: ProviderTrouble | None = None
    final: ImgrouteError | None = None
    status: str = JobState.FAILED


class Attempt(NamedTuple):
    """One offer being tried (or resumed): what settling it needs to know."""

    id: int
    provider: str
    model: str  # the offer's model (the ledger finds the offer by it)
    plan: str
    estimate: Decimal | None
    shape: ImageShape
    adapter: Adapter
    images: int | None = None  # the images it was for (None, resumed: those of its journaled requests)


class JobRun:
    """Everything one job knows while it runs: the one place its state lives."""

    def __init__(self, job_id: str, request: Request, start: float, max_cost: Decimal | None):
        self.id = job_id
        self.request = request
        self.start = start
        self.max_cost = max_cost  # over the whole job, every fallback included
        self.estimate: Decimal | None = None
        self.saved: list[SavedImage] = []
        self.attempts: list[AttemptReport] = []
        self.spent = Decimal(0)
        # Possibly charged: requests a provider failed without saying whether it charged (their
        # images moved on). Counted with `spent` against --max-cost until settled by hand.
        self.at_risk = Decimal(0)
        self.sources: set[str] = set()
        self.last: tuple[str | None, str | None, str | None] = (None, None, None)  # provider, model, plan
        self.current: tuple[str, str, Decimal | None] = ("", "", None)  # for progress events
        # Journal writes that may wait for the next commit (a saved file's record, an attempt's end):
        # committed together, at the latest when the job ends. A kill before that loses nothing:
        # resume finds the files by their content and settles the attempt again.
        self.unsaved = Unsaved()
        self.usage: Usage | None = None  # what the providers reported for the images delivered so far
        self.spooled: list[dict] = []  # spooled answers whose saved files wait in `unsaved`: then removed
        self.unfetched = 0  # results that could not be downloaded or saved (resume fetches them again)
        self.troubles: list[tuple[str, TroubleKind]] = []  # (provider, kind) of the trouble that kept offers from it

    @property
    def delivered_estimate(self) -> Decimal | None:
        """The estimate of what delivered the images (after a fallback, not the offer that failed)."""
        delivered = [a.estimate for a in self.attempts if a.images and a.estimate is not None]
        return sum(delivered, Decimal(0)) if delivered else self.estimate

    @property
    def committed(self) -> Decimal:
        """What the job has cost, or may have: spent, plus what failed requests may have been charged."""
        return self.spent + self.at_risk

    @property
    def remaining(self) -> int:
        return self.request.n - len(self.saved)

    def count_usage(self, reported) -> None:
        """Add the usage some delivered requests reported (providers that report none add nothing)."""
        for usage in reported:
            if self.usage is None:
                self.usage = usage
            else:
                self.usage = _added(self.usage, usage)

    def point_at(self, quote: Quote) -> None:
        self.last = (quote.offer.provider, quote.assessment.model, quote.assessment.plan.name)

    def add(self, end: AttemptEnd) -> None:
        self.attempts.append(end.report)
        self.saved.extend(end.images)
        if end.actual is not None:
            self.spent += end.actual
            if end.source is not None:
                self.sources.add(end.source)
        self.at_risk += end.at_risk


def failure_hint(moderated: bool) -> str:
    if moderated:
        return "change the prompt; a moderated job is not sent to another provider"
    return f"the provider failed the job; run it again, or pick another provider with {named('providers')}"


def _added(a: Usage, b: Usage) -> Usage:
    """Two requests' usage together (credits stay None while neither provider said them)."""
    credits = b.credits if a.credits is None else a.credits if b.credits is None else a.credits + b.credits
    return Usage(
        text_input=a.text_input + b.text_input,
        image_input=a.image_input + b.image_input,
        image_output=a.image_output + b.image_output,
        text_output=a.text_output + b.text_output,
        credits=credits,
    )
