"""The generate workflow, and the only place that knows the order of its steps.

For each eligible offer, cheapest first: journal the intent, submit, record the provider's id,
wait, download, verify, save, record. Provider trouble that is not the user's fault moves the
remaining images to the next offer; a job the provider failed, or a submit whose fate is unknown,
stops the run (sending it anywhere else could pay twice). Nothing here prints: progress goes to a
callback and the result comes back as a value.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from imgroute import images, policy
from imgroute.costs import Assessment, Delivered, actual_cost, assess
from imgroute.errors import ImgrouteError, JobFailedError, OutputError, ProviderError
from imgroute.http import Http, TransportFailure
from imgroute.ledger import Ledger
from imgroute.money import usd_json
from imgroute.pricing import PricingTable
from imgroute.providers import adapter_class
from imgroute.providers.base import (
    Adapter,
    JobFailed,
    JobSpec,
    MalformedAnswer,
    Output,
    ProviderTrouble,
    SubmitUnknown,
    Usage,
)
from imgroute.request import Request
from imgroute.router import Quote, Route, route_to_json

# A nominal size (Kie publishes none) is accepted when the aspect ratio is within this share.
NOMINAL_RATIO_TOLERANCE = 0.02


class Event(NamedTuple):
    provider: str
    model: str
    state: str  # submitting | queued | running | downloading | retrying | fallback | ...
    message: str
    estimate: Decimal | None
    elapsed: float


class SavedImage(NamedTuple):
    path: Path
    sha256: str
    format: str
    width: int
    height: int
    bytes: int
    verified: bool


class AttemptReport(NamedTuple):
    provider: str
    model: str
    plan: str
    estimate: Decimal | None
    state: str  # succeeded | failed | trouble | unknown | timed_out
    error: str | None
    images: int


class JobResult(NamedTuple):
    job_id: str
    status: str  # succeeded | failed | unknown | running
    quote: Quote | None  # the offer that delivered (or was last tried)
    estimate: Decimal | None
    actual: Decimal | None
    actual_source: str | None
    images: tuple[SavedImage, ...]
    attempts: tuple[AttemptReport, ...]
    elapsed: float
    error: ImgrouteError | None


class OutputOptions(NamedTuple):
    out_dir: Path
    name_template: str = images.DEFAULT_NAME


class _Task:
    """One submitted request inside an attempt (Kie: one per image)."""

    def __init__(self, task_id: int, spec: JobSpec, handle: dict, outputs: tuple[Output, ...], usage: Usage | None):
        self.task_id = task_id
        self.spec = spec
        self.handle = handle
        self.outputs = outputs
        self.usage = usage
        self.state = "succeeded" if outputs else "submitted"
        self.error: str | None = None
        self.moderated = False
        self.saved: list[SavedImage] = []


class _Stuck(Exception):
    """Submitted, but not finished before the timeout: the job is still at the provider."""


class JobRunner:
    def __init__(
        self,
        *,
        table: PricingTable,
        http: Http,
        ledger: Ledger,
        keys: dict[str, str],
        base_urls: dict[str, str | None],
        output: OutputOptions,
        timeout: float = policy.DEFAULT_JOB_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[Event], None] | None = None,
    ):
        self.table = table
        self.http = http
        self.ledger = ledger
        self.keys = keys
        self.base_urls = base_urls
        self.output = output
        self.timeout = timeout
        self.clock = clock
        self.on_event = on_event or (lambda event: None)
        self._start = 0.0
        self._current: tuple[str, str, Decimal | None] = ("", "", None)

    # -- the job ----------------------------------------------------------------------------

    def run(self, request: Request, route: Route) -> JobResult:
        self._start = self.clock()
        job_id = uuid.uuid4().hex[:12]
        first = route.choice
        self.ledger.new_job(
            job_id, request.prompt, request.to_json(), route_to_json(route), str(first.cost) if first else None
        )
        self.http.on_event = lambda message: self._emit("retrying", message)
        remaining = request.n
        saved: list[SavedImage] = []
        attempts: list[AttemptReport] = []
        spent = Decimal(0)
        sources: set[str] = set()
        last_quote = first
        for seq, quote in enumerate(route.eligible, start=1):
            assessment = quote.assessment
            if remaining != assessment.n:  # an earlier offer delivered part of the job
                assessment = assess(request._replace(n=remaining), quote.offer, assessment.plan)
            last_quote = quote
            outcome = self._attempt(job_id, seq, request, quote, assessment, len(saved))
            attempts.append(outcome.report)
            saved.extend(outcome.images)
            remaining -= len(outcome.images)
            if outcome.actual is not None:
                spent += outcome.actual
                sources.add(outcome.source)
            if outcome.error is not None:  # final: failed job, unknown submit, stuck, bad output
                return self._finish(
                    job_id, outcome.status, quote, first, spent, sources, saved, attempts, outcome.error
                )
            if remaining == 0:
                return self._finish(job_id, "succeeded", quote, first, spent, sources, saved, attempts, None)
            nxt = _next_after(route, quote)
            if nxt is not None:
                self._emit("fallback", f"{outcome.report.error}; moving {remaining} image(s) to {nxt.offer.id}")
        tried = "; ".join(f"{a.provider}: {a.error}" for a in attempts if a.error)
        error = ProviderError(
            f"no provider could take the job ({tried})",
            "check the keys and balances of these providers, or try again later",
        )
        return self._finish(job_id, "failed", last_quote, first, spent, sources, saved, attempts, error)

    def _finish(self, job_id, status, quote, first, spent, sources, saved, attempts, error) -> JobResult:
        actual = spent if sources else None
        source = ", ".join(sorted(sources)) if sources else None
        ledger_state = status if status in ("succeeded", "failed", "unknown") else "running"
        self.ledger.job_state(
            job_id, ledger_state, error.message if error else None, str(actual) if actual is not None else None, source
        )
        return JobResult(
            job_id=job_id,
            status=status,
            quote=quote,
            estimate=first.cost if first else None,
            actual=actual,
            actual_source=source,
            images=tuple(saved),
            attempts=tuple(attempts),
            elapsed=self.clock() - self._start,
            error=error,
        )

    # -- one offer --------------------------------------------------------------------------

    def _attempt(
        self, job_id: str, seq: int, request: Request, quote: Quote, assessment: Assessment, index_base: int
    ) -> _AttemptOutcome:
        offer, plan = quote.offer, assessment.plan
        self._current = (offer.provider, offer.model, assessment.cost)
        adapter = adapter_class(offer.provider)(self.keys[offer.provider], self.base_urls.get(offer.provider))
        attempt_id = self.ledger.new_attempt(
            job_id,
            seq,
            offer.provider,
            offer.model,
            plan.name,
            str(assessment.cost) if assessment.cost is not None else None,
            [line.text for line in assessment.breakdown],
        )
        tasks: list[_Task] = []
        trouble: ProviderTrouble | None = None
        final: ImgrouteError | None = None
        status = "failed"
        try:
            for index, count in enumerate(assessment.requests):
                spec = job_spec(request, offer.model, assessment, count, f"{job_id}-{seq}-{index}")
                tasks.append(self._submit(adapter, attempt_id, index, spec))
            self.ledger.job_state(job_id, "submitted")
        except ProviderTrouble as exc:
            trouble = exc
        except JobFailed as exc:  # synchronous providers refuse (moderation) in the submit itself
            final = JobFailedError(str(exc), _failure_hint(exc.moderated))
        except SubmitUnknown as exc:
            final = ProviderError(
                f"{exc}; the job may have been created and charged, so it was not sent again (job {job_id})",
                f"check the {offer.provider} dashboard before retrying; the ledger keeps what is known",
            )
            status = "unknown"
        if tasks and final is None:
            try:
                self._wait(adapter, tasks)
            except _Stuck as exc:
                final = ProviderError(
                    f"{exc} (job {job_id}); it is still running at {offer.provider} and recorded in the ledger",
                    "raise --timeout next time; the images may still be fetched from the provider",
                )
                status = "running"
        failures = [t.error for t in tasks if t.state == "failed"]
        saved, problems = self._save_all(job_id, request, offer.provider, offer.model, assessment, tasks, index_base)
        delivered = [
            Delivered(len(t.outputs), *_delivered_size(t, assessment), t.usage) for t in tasks if t.state == "succeeded"
        ]
        actual, source = (None, None)
        if delivered:
            tier = assessment.delivery.resolution if assessment.delivery else None
            actual, source = actual_cost(offer, plan, assessment.quality, tier, request.prompt, delivered)
        if final is None and failures:
            moderated = any(t.moderated for t in tasks if t.state == "failed")
            final = JobFailedError("; ".join(failures), _failure_hint(moderated))
        if final is None and problems:
            final = OutputError("; ".join(problems), "the images were saved as delivered; check them")
        if final is None and trouble is None:
            status = "succeeded"
        elif final is None:
            status = "trouble"
        report_error = str(trouble) if trouble else (final.message if final else None)
        self.ledger.attempt_state(attempt_id, status, report_error, str(actual) if actual is not None else None, source)
        report = AttemptReport(
            offer.provider, offer.model, plan.name, assessment.cost, status, report_error, len(saved)
        )
        return _AttemptOutcome(
            report, tuple(saved), actual, source, final, "failed" if status in ("failed", "trouble") else status
        )

    def _submit(self, adapter: Adapter, attempt_id: int, index: int, spec: JobSpec) -> _Task:
        """Journal, then submit; repeat only when that cannot create a second job."""
        task_id = self.ledger.task_submitting(attempt_id, index, spec.client_ref, spec.n)
        self._emit("submitting", f"sending request {index + 1}")
        for attempt in range(policy.SUBMIT_ATTEMPTS):
            last = attempt == policy.SUBMIT_ATTEMPTS - 1
            try:
                submission = adapter.submit(self.http, spec)
            except ProviderTrouble as exc:
                delay = self._submit_retry_delay(adapter, exc, attempt)
                if last or delay is None:
                    self.ledger.task_state(task_id, "failed", str(exc))
                    raise
                self._emit("retrying", f"{exc}; retrying in {delay:.1f}s")
                self.http.wait(delay)
                continue
            except JobFailed as exc:
                self.ledger.task_state(task_id, "failed", str(exc))
                raise
            except SubmitUnknown as exc:
                if adapter.idempotent_submit and not last:  # same Idempotency-Key: replayed, never doubled
                    delay = self.http.backoff(attempt)
                    self._emit("retrying", f"{exc}; retrying with the same idempotency key in {delay:.1f}s")
                    self.http.wait(delay)
                    continue
                self.ledger.task_state(task_id, "unknown", str(exc))
                raise
            self.ledger.task_submitted(task_id, submission.job_id, submission.handle)
            task = _Task(task_id, spec, submission.handle, submission.outputs, submission.usage)
            if task.state == "succeeded":
                self.ledger.task_state(task_id, "succeeded")
            return task
        raise AssertionError("unreachable")

    def _submit_retry_delay(self, adapter: Adapter, exc: ProviderTrouble, attempt: int) -> float | None:
        """A delay before repeating a refused submit, or None when it must not be repeated.

        Repeating is safe when nothing was sent (connection refused), when the provider refused
        with 429 (it did not take the job), or when the provider dedupes by idempotency key.
        """
        if exc.kind == "unreachable":
            return self.http.backoff(attempt)
        if exc.kind == "rate_limited":
            wait = exc.retry_after if exc.retry_after is not None else self.http.backoff(attempt)
            return wait if wait <= policy.RETRY_AFTER_MAX_S else None
        if exc.kind == "server" and adapter.idempotent_submit:
            return exc.retry_after if exc.retry_after is not None else self.http.backoff(attempt)
        return None

    def _wait(self, adapter: Adapter, tasks: list[_Task]) -> None:
        pending = [t for t in tasks if t.state != "succeeded"]
        first, factor, longest = adapter.poll_schedule
        interval = first
        deadline = self._start + self.timeout
        while pending:
            for task in list(pending):
                try:
                    poll = adapter.poll(self.http, task.handle)
                except JobFailed as exc:
                    task.state, task.error, task.moderated = "failed", str(exc), exc.moderated
                    self.ledger.task_state(task.task_id, "failed", str(exc))
                    pending.remove(task)
                    continue
                except (ProviderTrouble, MalformedAnswer) as exc:
                    # The job exists and may be paid for: keep asking until the deadline.
                    self._emit("retrying", f"status check failed ({exc}); still waiting")
                    continue
                if poll.state == "succeeded":
                    task.state, task.outputs, task.usage = "succeeded", poll.outputs, poll.usage or task.usage
                    self.ledger.task_state(task.task_id, "succeeded")
                    pending.remove(task)
                else:
                    if poll.state != task.state:
                        self.ledger.task_state(task.task_id, "running", poll.detail)
                        task.state = poll.state
                    progress = f" {poll.progress}%" if poll.progress is not None else ""
                    self._emit(poll.state, f"{poll.detail}{progress}")
            if not pending:
                return
            if self.clock() + interval * self.http.scale > deadline:
                raise _Stuck(f"timed out after {self.timeout:g}s waiting for {adapter.provider}")
            self.http.wait(interval)
            interval = min(longest, interval * factor)

    # -- results ----------------------------------------------------------------------------

    def _save_all(self, job_id, request, provider, model, assessment, tasks, index_base):
        saved: list[SavedImage] = []
        problems: list[str] = []
        expect = _Expectation.of(assessment, request.output_format)
        for task in tasks:
            if task.state != "succeeded":
                continue
            for output in task.outputs:
                index = index_base + len(saved) + 1
                self._emit("downloading", f"image {index}")
                try:
                    image = self._save_one(job_id, request, provider, model, assessment, task, output, index, expect)
                except OutputError as exc:
                    problems.append(exc.message)
                    continue
                saved.append(image)
                task.saved.append(image)
                if not image.verified:
                    problems.append(f"{image.path}: {expect.problem(image)}")
        return saved, problems

    def _save_one(self, job_id, request, provider, model, assessment, task, output, index, expect) -> SavedImage:
        out_dir = self.output.out_dir

        def stage(chunks):
            return images.stage(out_dir, chunks, lambda info: None)

        try:
            if output.data is not None:
                staged = stage([output.data])
            else:
                status, staged = self.http.download(output.url, stage)
                if staged is None:
                    raise OutputError(f"{provider}: result {output.url} answered HTTP {status} (expired or missing)")
        except images.NotAnImage as exc:
            raise OutputError(f"{provider}: image {index} is not a usable image: {exc}") from None
        except TransportFailure as exc:
            raise OutputError(f"{provider}: image {index} could not be downloaded: {exc}") from None
        values = {
            "slug": images.slug(request.prompt),
            "provider": provider,
            "model": model.replace("/", "-"),
            "index": str(index),
            "job": job_id,
            "quality": assessment.quality or "",
            "date": dt.date.today().isoformat(),
        }
        path = images.place(staged, out_dir, images.render_name(self.output.name_template, values))
        info = staged.info
        verified = expect.problem(info) is None
        images.write_sidecar(
            path,
            {
                "prompt": request.prompt,
                "provider": provider,
                "model": model,
                "job_id": job_id,
                "provider_job_id": task.handle.get("request_id")
                or task.handle.get("task_id")
                or task.handle.get("job_id"),
                "quality": assessment.quality,
                "requested": request.target.to_json(),
                "width": info.width,
                "height": info.height,
                "format": info.format,
                "sha256": staged.sha256,
                "estimated_cost_usd": usd_json(assessment.per_image),
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
        )
        self.ledger.add_file(
            job_id, task.task_id, str(path), staged.sha256, staged.size, info.format, info.width, info.height, verified
        )
        return SavedImage(path, staged.sha256, info.format, info.width, info.height, staged.size, verified)

    def _emit(self, state: str, message: str) -> None:
        provider, model, estimate = self._current
        self.on_event(Event(provider, model, state, message, estimate, self.clock() - self._start))


class _AttemptOutcome(NamedTuple):
    report: AttemptReport
    images: tuple[SavedImage, ...]
    actual: Decimal | None
    source: str | None
    error: ImgrouteError | None
    status: str


class _Expectation(NamedTuple):
    format: str
    width: int
    height: int
    exact: bool

    @classmethod
    def of(cls, assessment: Assessment, output_format: str) -> _Expectation:
        d = assessment.delivery
        return cls(output_format, d.width, d.height, d.exact)

    def problem(self, info) -> str | None:
        if info.format != self.format:
            return f"is {info.format}, not the {self.format} requested"
        if self.exact and (info.width, info.height) != (self.width, self.height):
            return f"is {info.width}x{info.height}, not the {self.width}x{self.height} requested"
        if not self.exact:
            wanted, got = self.width / self.height, info.width / info.height
            if abs(got - wanted) / wanted > NOMINAL_RATIO_TOLERANCE:
                return f"is {info.width}x{info.height}, not the aspect ratio requested"
        return None


def job_spec(request: Request, model: str, assessment: Assessment, count: int, client_ref: str) -> JobSpec:
    d = assessment.delivery
    return JobSpec(
        prompt=request.prompt,
        model=model,
        quality=assessment.quality if assessment.offer.quality_selectable else None,
        width=d.width,
        height=d.height,
        aspect=d.aspect,
        resolution=d.resolution,
        n=count,
        output_format=request.output_format,
        client_ref=client_ref,
    )


def _failure_hint(moderated: bool) -> str:
    if moderated:
        return "change the prompt; a moderated job is not sent to another provider"
    return "the provider failed the job; run it again, or pick another provider with --provider"


def _next_after(route: Route, quote: Quote) -> Quote | None:
    eligible = list(route.eligible)
    index = eligible.index(quote)
    return eligible[index + 1] if index + 1 < len(eligible) else None


def _delivered_size(task: _Task, assessment: Assessment) -> tuple[int, int]:
    """The real size read from the first saved image, else the size that was asked for."""
    if task.saved:
        return task.saved[0].width, task.saved[0].height
    return assessment.delivery.width, assessment.delivery.height


def result_to_json(result: JobResult, skipped: list[dict]) -> dict:
    """`imgroute gen --json`: one object per job (design.md section 5)."""
    quote = result.quote
    return {
        "job_id": result.job_id,
        "status": result.status,
        "provider": quote.offer.provider if quote else None,
        "model": quote.offer.model if quote else None,
        "plan": quote.assessment.plan.name if quote else None,
        "cost_usd": usd_json(result.estimate),
        "actual_cost_usd": usd_json(result.actual),
        "actual_cost_source": result.actual_source,
        "files": [str(image.path) for image in result.images],
        "images": [
            {
                "path": str(i.path),
                "format": i.format,
                "width": i.width,
                "height": i.height,
                "bytes": i.bytes,
                "sha256": i.sha256,
                "verified": i.verified,
            }
            for i in result.images
        ],
        "attempts": [
            {
                "provider": a.provider,
                "model": a.model,
                "plan": a.plan,
                "cost_usd": usd_json(a.estimate),
                "state": a.state,
                "error": a.error,
                "images": a.images,
            }
            for a in result.attempts
        ],
        "skipped_without_key": skipped,
        "elapsed_s": round(result.elapsed, 3),
        "error": result.error.message if result.error else None,
    }
