"""The generate workflow, and the only place that knows the order of its steps.

For each eligible offer, cheapest first: reserve the attempt against the budgets, journal the
intent, submit, record the provider's id, wait, record the results, download, verify, save, record.
Provider trouble that is not the user's fault moves the remaining images to the next offer; a job
the provider failed, or a submit whose fate is unknown, stops the run (sending it anywhere else could
pay twice). `resume` finishes a journaled job from the ledger alone, never submitting again what may
have been sent. Nothing here prints: progress goes to a callback and results come back as values.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Generator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from imgroute import images, policy, price_models
from imgroute.costs import assess
from imgroute.errors import (
    BudgetError,
    ConfigError,
    ImgrouteError,
    Interrupted,
    JobFailedError,
    OutputError,
    ProviderError,
)
from imgroute.files import atomic_write, private_dir
from imgroute.http import Http, TransportFailure
from imgroute.ledger import BudgetRefused, Ledger
from imgroute.models import Constraints, JobSpec, Request
from imgroute.money import fmt_usd, usd_json
from imgroute.poll_timing import PollTiming, backoff
from imgroute.price_models import Delivered
from imgroute.pricing import PricingTable
from imgroute.providers import REGISTRY, adapter_class
from imgroute.providers.base import (
    Adapter,
    JobFailed,
    MalformedAnswer,
    ProviderTrouble,
    SubmitUnknown,
    Usage,
)
from imgroute.router import Quote, Route, route_to_json

# A nominal size (Kie publishes none) is accepted when the aspect ratio is within this share.
NOMINAL_RATIO_TOLERANCE = 0.02


class Pause(NamedTuple):
    """A job step waits: `seconds` of the provider's time (scaled by IMGROUTE_TIME_SCALE) or, not
    scaled, of a rate limit's."""

    seconds: float
    scaled: bool = True


class NeedSlot(NamedTuple):
    """A job step needs a slot at `provider` (batch only). `fresh`: nothing sent yet, so a stopped
    batch may cancel it instead (the scheduler raises Cancelled at the wait)."""

    provider: str
    fresh: bool


class Later(NamedTuple):
    """A job step has nothing to wait for, but nothing urgent to do either (batch only): the
    scheduler first runs the jobs that hold a provider's slot, so none holds it longer than it must."""


class Cancelled(Exception):
    """Raised into a job waiting for its first slot when the batch stops (Ctrl-C)."""


# A job as a generator: it yields Pause / NeedSlot / Later where it must wait and returns its result. One
# thread can drive it (`_drive`), or a scheduler can interleave many on a few threads (batch).
Steps = Generator["Pause | NeedSlot | Later", None, Any]


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
    state: str  # succeeded | failed | trouble | unknown | running
    error: str | None
    images: int


class JobResult(NamedTuple):
    job_id: str
    status: str  # succeeded | failed | unknown | running
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


class OutputOptions(NamedTuple):
    out_dir: Path
    name_template: str = images.DEFAULT_NAME


class _Shape(NamedTuple):
    """How the images of one attempt are named and checked."""

    prompt: str
    provider: str
    model: str
    quality: str | None
    format: str
    width: int
    height: int
    exact: bool
    per_image: Decimal | None

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


class _Task:
    """One request inside an attempt (Kie: one per image), as the run knows it."""

    def __init__(self, task_id: int, spec: JobSpec, state: str, handle: dict | None = None):
        self.task_id = task_id
        self.spec = spec
        self.state = state  # submitting | submitted | running | succeeded | failed | unknown
        self.handle = handle or {}
        self.outputs: list[dict] = []  # recorded results: {"url": ...} or {"spool": path}
        self.usage: Usage | None = None
        self.error: str | None = None
        self.moderated = False
        self.saved: list[SavedImage] = []
        self.sent_at: float | None = None  # when this run's submit was answered (None: found in flight by a resume)
        self.missed_at: float | None = None  # when (in the poll schedule) it was last seen not done
        self.polls = 0


class _AttemptEnd(NamedTuple):
    report: AttemptReport
    images: tuple[SavedImage, ...]
    actual: Decimal | None
    source: str | None
    error: ImgrouteError | None  # set when the job must stop here
    status: str


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
        spool_dir: Path,
        timeout: float = policy.DEFAULT_JOB_TIMEOUT_S,
        max_cost: Decimal | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[Event], None] | None = None,
        limits=None,
        timing: PollTiming | None = None,
    ):
        self.table = table
        self.http = http
        self.ledger = ledger
        self.keys = keys
        self.base_urls = base_urls
        self.output = output
        self.spool_dir = spool_dir
        self.timeout = timeout
        self.max_cost = max_cost
        self.clock = clock
        self.on_event = on_event or (lambda event: None)
        self.limits = limits  # batch: per-provider concurrency slots and submit spacing
        self.timing = timing  # batch: poll schedules learned from the jobs already finished
        self.job_id: str | None = None
        self._start = 0.0
        self._current: tuple[str, str, Decimal | None] = ("", "", None)
        self._adopt = False  # resume: an identical file already at the intended name is ours
        self._claimed: set[Path] = set()  # files recorded for this job's images: never adopted by another
        # Journal writes that may wait for the next one (a saved file's record, an attempt's end):
        # committed together, at the latest when the job ends. A kill before that loses nothing:
        # resume finds the files by their content and settles the attempt again.
        self._pending: list = []

    # -- a new job --------------------------------------------------------------------------

    def run(
        self, request: Request, route: Route, row_key: str | None = None, constraints: Constraints | None = None
    ) -> JobResult:
        """`constraints` (provider choices, plans) are journaled so a resume routes within them."""
        return self._drive(self.steps_run(request, route, row_key, constraints))

    def steps_run(
        self, request: Request, route: Route, row_key: str | None = None, constraints: Constraints | None = None
    ) -> Steps:
        """`run`, as steps a scheduler can interleave with other jobs' (see Steps)."""
        self._start = self.clock()
        self.job_id = uuid.uuid4().hex[:12]
        first = route.choice
        self.ledger.new_job(
            self.job_id,
            request.prompt,
            {**request.to_json(), "constraints": constraints.to_json() if constraints else None},
            route_to_json(route),
            str(first.cost) if first else None,
            str(self.output.out_dir),
            self.output.name_template,
            str(self.max_cost) if self.max_cost is not None else None,
            row_key,
        )
        try:
            return (yield from self._route_through(request, route, request.n, [], [], Decimal(0), set(), first_seq=1))
        finally:
            self._flush()

    def _flush(self) -> None:
        self.ledger.flush(self._pending)

    def _drive(self, steps: Steps) -> JobResult:
        """Run a job's steps on this thread, waiting where they say (`gen`, `jobs resume`)."""
        value = error = None
        while True:
            try:
                need = steps.throw(error) if error is not None else steps.send(value)
            except StopIteration as done:
                return done.value
            value = error = None
            try:
                if not isinstance(need, Pause):
                    raise AssertionError(f"{need!r} needs a scheduler")  # slots exist only in a batch
                if need.scaled:
                    self.http.wait(need.seconds)
                else:
                    time.sleep(need.seconds)
            except KeyboardInterrupt as exc:  # raised where the job was waiting, as a plain call would
                error = exc

    def _route_through(self, request, route, remaining, saved, attempts, spent, sources, first_seq) -> Steps:
        """Walk the eligible offers in order until `remaining` images are delivered."""
        self.http.on_event = lambda message: self._emit("retrying", message)
        estimate = route.choice.cost if route.choice else None
        last = route.choice
        candidates = fallback_candidates(route)
        for seq, quote in enumerate(candidates, start=first_seq):
            self._flush()  # the last attempt's end, before this one waits for anything
            assessment = quote.assessment
            if remaining != assessment.n:  # an earlier offer delivered part of the job
                assessment = assess(request._replace(n=remaining), quote.offer, assessment.plan)
            if self.max_cost is not None and spent + assessment.cost > self.max_cost:
                error = BudgetError(
                    f"{quote.offer.id} would take this job to {fmt_usd(spent + assessment.cost)}, over --max-cost "
                    f"{fmt_usd(self.max_cost)} ({fmt_usd(spent)} already spent on it)",
                    "raise --max-cost to let the job fall back further",
                )
                return self._finish("failed", quote, estimate, spent, sources, saved, attempts, error)
            last = quote
            end = yield from self._attempt(seq, request, quote, assessment, len(saved))
            attempts.append(end.report)
            saved.extend(end.images)
            remaining -= len(end.images)
            if end.actual is not None:
                spent += end.actual
                sources.add(end.source)
            if end.error is not None:  # final: failed job, unknown submit, stuck, bad output, budget
                return self._finish(end.status, quote, estimate, spent, sources, saved, attempts, end.error)
            if remaining <= 0:
                return self._finish("succeeded", quote, estimate, spent, sources, saved, attempts, None)
            nxt = _next_after(candidates, quote)
            if nxt is not None:
                self._emit("fallback", f"{end.report.error}; moving {remaining} image(s) to {nxt.offer.id}")
        tried = "; ".join(f"{a.provider}: {a.error}" for a in attempts if a.error)
        error = ProviderError(
            f"no provider could take the job ({tried or 'no offer left to try'})",
            "check the keys and balances of these providers, or try again later",
        )
        return self._finish("failed", last, estimate, spent, sources, saved, attempts, error)

    def _finish(self, status, quote, estimate, spent, sources, saved, attempts, error) -> JobResult:
        actual = spent if sources else None
        source = ", ".join(sorted(sources)) if sources else None
        self.ledger.job_state(
            self.job_id,
            status,
            error.message if error else None,
            str(actual) if actual is not None else None,
            source,
            exit_code=error.exit_code if error else 0,
            into=self._pending,
        )
        self._flush()
        return JobResult(
            job_id=self.job_id,
            status=status,
            provider=quote.offer.provider if quote else None,
            model=quote.assessment.model if quote else None,
            plan=quote.assessment.plan.name if quote else None,
            estimate=estimate,
            actual=actual,
            actual_source=source,
            images=tuple(saved),
            attempts=tuple(attempts),
            elapsed=self.clock() - self._start,
            error=error,
        )

    # -- one offer --------------------------------------------------------------------------

    def _attempt(self, seq: int, request: Request, quote: Quote, assessment, index_base: int) -> Steps:
        offer, plan = quote.offer, assessment.plan
        self._current = (offer.provider, offer.model, assessment.cost)
        try:
            attempt_id = self.ledger.reserve_attempt(
                self.job_id,
                seq,
                offer.provider,
                offer.model,
                plan.name,
                assessment.cost,
                [line.text for line in assessment.breakdown],
                job_state="submitting",
            )
        except BudgetRefused as refused:
            report = AttemptReport(offer.provider, offer.model, plan.name, assessment.cost, "refused", "budget", 0)
            return _AttemptEnd(report, (), None, None, budget_error(refused), "failed")
        try:
            return (yield from self._submit_and_collect(attempt_id, seq, request, quote, assessment, index_base))
        except Cancelled as stopped:  # the batch stopped before this attempt sent anything
            self.ledger.attempt_state(attempt_id, "abandoned", str(stopped))
            report = AttemptReport(offer.provider, offer.model, plan.name, assessment.cost, "abandoned", None, 0)
            error = Interrupted(str(stopped), "run the batch again to send it")
            return _AttemptEnd(report, (), None, None, error, "cancelled")

    def _take_slot(self, provider: str, fresh: bool) -> Steps:
        """A batch's slot at a provider, held from the first submit until the provider has finished
        (downloading and saving need none); release with `_give_slot`. None in a single `gen`."""
        if self.limits is not None:
            yield NeedSlot(provider, fresh)

    def _give_slot(self, provider: str) -> None:
        if self.limits is not None:
            self.limits.release(provider)

    def _before_saving(self) -> Steps:
        self._flush()  # the results the polls saw, durable before any is downloaded
        if self.limits is not None:
            yield Later()  # downloading and saving hold no slot: jobs that do go first

    def _submit_and_collect(self, attempt_id, seq, request, quote, assessment, index_base) -> Steps:
        offer, plan = quote.offer, assessment.plan
        adapter = self._adapter(offer.provider)
        shape = _Shape(
            request.prompt,
            offer.provider,
            offer.model,
            assessment.quality,
            request.output_format,
            assessment.delivery.width,
            assessment.delivery.height,
            assessment.delivery.exact,
            assessment.per_image,
        )
        tasks: list[_Task] = []
        trouble: ProviderTrouble | None = None
        final: ImgrouteError | None = None
        status = "failed"
        yield from self._take_slot(offer.provider, fresh=True)
        try:
            try:
                for index, count in enumerate(assessment.requests):
                    spec = job_spec(request, assessment, count, f"{self.job_id}-{seq}-{index}")
                    spec = adapter.upload_inputs(self.http, spec)  # free; before the journal, so it records them
                    if self.limits is not None:  # wait for the provider's rate before the intent is journaled:
                        delay = self.limits.submit_delay(offer.provider)  # a kill while waiting leaves nothing
                        if delay > 0:  # unknown
                            yield Pause(delay, scaled=False)
                    task_id = self.ledger.task_submitting(
                        attempt_id, index, spec.client_ref, spec.n, {**spec._asdict(), "exact_size": shape.exact}
                    )
                    task = _Task(task_id, spec, "submitting")
                    tasks.append(task)
                    yield from self._submit(adapter, task, into=self._pending)  # committed just below
                self.ledger.job_state(self.job_id, "submitted", into=self._pending)
                self._flush()
            except ProviderTrouble as exc:
                trouble = exc
                tasks = [t for t in tasks if t.state != "failed"]
            except JobFailed as exc:  # synchronous providers refuse (moderation) in the submit itself
                final = JobFailedError(str(exc), _failure_hint(exc.moderated))
            except SubmitUnknown as exc:
                final = unknown_error(exc, offer.provider, self.job_id)
                status = "unknown"
            stuck = yield from self._await_tasks(adapter, tasks)
        finally:
            self._give_slot(offer.provider)
        yield from self._before_saving()
        saved, problems = self._save_results(shape, tasks, index_base)
        end = self._settle(
            attempt_id,
            offer.provider,
            offer.model,
            plan.name,
            assessment.cost,
            tasks,
            saved,
            problems,
            stuck,
            trouble,
            final,
            status,
        )
        return end

    def _settle(
        self, attempt_id, provider, model, plan_name, estimate, tasks, saved, problems, stuck, trouble, final, status
    ) -> _AttemptEnd:
        """Price what was delivered and decide how the attempt ended."""
        offer = next((o for o in self.table.offers if (o.provider, o.model) == (provider, model)), None)
        delivered = [Delivered(len(t.outputs), *_delivered_size(t), t.usage) for t in tasks if t.state == "succeeded"]
        actual, source = None, None
        if delivered and offer is not None:
            plan = self.table.providers[provider].plans.get(plan_name) or self.table.plan(provider, None)
            spec = tasks[0].spec
            actual, source = price_models.of(offer).actual(
                offer, plan, spec.quality or "high", spec.resolution, Request(spec.prompt), delivered
            )
        failures = [t for t in tasks if t.state == "failed"]
        if final is None and stuck is not None:
            final, status = stuck, "running"
        if final is None and failures:
            final = JobFailedError(
                "; ".join(t.error for t in failures), _failure_hint(any(t.moderated for t in failures))
            )
        if final is None and any(t.state == "unknown" for t in tasks):
            final, status = (
                ProviderError(
                    f"{provider}: what became of a request is unknown; it was not sent again (job {self.job_id})",
                    f"check the {provider} dashboard; `imgroute jobs show {self.job_id}` has what is known",
                ),
                "unknown",
            )
        if final is None and problems:
            final = OutputError("; ".join(problems), "the images were saved as delivered; check them")
        if final is None:
            status = "succeeded" if trouble is None else "trouble"
        report_error = str(trouble) if trouble else (final.message if final else None)
        self.ledger.attempt_state(
            attempt_id, status, report_error, str(actual) if actual is not None else None, source, self._pending
        )
        report = AttemptReport(provider, model, plan_name, estimate, status, report_error, len(saved))
        return _AttemptEnd(
            report, tuple(saved), actual, source, final, "failed" if status in ("failed", "trouble") else status
        )

    def _submit(self, adapter: Adapter, task: _Task, into: list | None = None) -> Steps:
        """Submit a journaled task; repeat only when the HTTP layer's submit rule allows it."""
        self._emit("submitting", f"sending request {task.spec.client_ref}")
        attempt = 0
        while True:
            try:
                submission = adapter.submit(self.http, task.spec)
            except ProviderTrouble as exc:
                delay = self.http.submit_retry_delay(exc.kind, exc.retry_after, attempt, adapter.idempotent_submit)
                if delay is None:
                    task.state = "failed"
                    self.ledger.task_state(task.task_id, "failed", str(exc))
                    raise
                self._emit("retrying", f"{exc}; retrying in {delay:.1f}s")
            except JobFailed as exc:
                task.state, task.error, task.moderated = "failed", str(exc), exc.moderated
                self.ledger.task_state(task.task_id, "failed", str(exc))
                raise
            except SubmitUnknown as exc:
                delay = self.http.submit_retry_delay(None, None, attempt, adapter.idempotent_submit)
                if delay is None:
                    task.state = "unknown"
                    self.ledger.task_state(task.task_id, "unknown", str(exc))
                    raise
                self._emit("retrying", f"{exc}; retrying with the same idempotency key in {delay:.1f}s")
            else:
                task.handle = submission.handle
                task.sent_at = self.clock()
                if submission.outputs:  # synchronous: id and images recorded together
                    self._record_outputs(task, submission.outputs, submission.usage, submission.job_id)
                else:
                    self.ledger.task_submitted(task.task_id, submission.job_id, submission.handle, into)
                    task.state = "submitted"
                return
            yield Pause(delay)
            attempt += 1

    # -- waiting and saving (shared by run and resume) --------------------------------------

    def _await_tasks(self, adapter, tasks) -> Steps:
        """Wait for submitted tasks to finish or fail; the error to report if time ran out first."""
        try:
            yield from self._wait(adapter, [t for t in tasks if t.state in ("submitted", "running")])
        except _Stuck as exc:
            return ProviderError(
                f"{exc} (job {self.job_id}); it is still running at {adapter.provider} and recorded in the ledger",
                f"finish it later with: imgroute jobs resume {self.job_id}",
            )
        return None

    def _save_results(self, shape, tasks, index_base) -> tuple[list[SavedImage], list[str]]:
        """Download (or take from the spool), verify and save every recorded result."""
        saved: list[SavedImage] = []
        problems: list[str] = []
        for task in tasks:
            if task.state != "succeeded":
                continue
            for position, output in enumerate(task.outputs):
                if position < len(task.saved):
                    continue  # saved before (resume)
                index = index_base + len(saved) + 1
                self._emit("downloading", f"image {index}")
                try:
                    image = self._save_one(shape, task, output, index)
                except OutputError as exc:
                    problems.append(exc.message)
                    continue
                saved.append(image)
                task.saved.append(image)
                if not image.verified:
                    problems.append(f"{image.path}: {shape.problem(image)}")
        return saved, problems

    def _wait(self, adapter: Adapter, pending: list[_Task]) -> Steps:
        """Poll until every task has finished or failed. Waits before each round: a job polled the
        moment it was submitted is never done, and every poll is a request."""
        waits = (
            self.timing.waits(adapter.provider, adapter.poll_schedule)
            if self.timing
            else backoff(adapter.poll_schedule)
        )
        deadline = self._start + self.timeout
        planned = 0.0  # the schedule's time since the submits, not the clock's: see PollTiming.observe
        # The first wait counts from the last submit's answer, not from now: journaling it took
        # a moment, and the provider's clock started before that.
        sent = [t.sent_at for t in pending if t.sent_at is not None]
        already = (self.clock() - max(sent)) / self.http.scale if sent and self.http.scale > 0 else 0.0
        while pending:
            interval = next(waits)
            if self.clock() + interval * self.http.scale > deadline:
                raise _Stuck(f"timed out after {self.timeout:g}s waiting for {adapter.provider}")
            yield Pause(max(0.0, interval - already))
            already = 0.0
            planned += interval
            for task in list(pending):
                task.polls += 1
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
                if poll.state == "succeeded":  # journaled once the slot is given back (see _submit_and_collect)
                    self._record_outputs(task, poll.outputs, poll.usage or task.usage, into=self._pending)
                    pending.remove(task)
                    if self.timing is not None and task.sent_at is not None:
                        self.timing.observe(adapter.provider, planned, task.polls, task.missed_at, poll.took)
                else:
                    task.missed_at = planned
                    if poll.state != task.state:
                        self.ledger.task_state(task.task_id, "running", poll.detail)
                        task.state = poll.state
                    progress = f" {poll.progress}%" if poll.progress is not None else ""
                    self._emit(poll.state, f"{poll.detail}{progress}")

    def _record_outputs(
        self, task: _Task, outputs, usage: Usage | None, provider_job_id: str | None = None, into: list | None = None
    ) -> None:
        """Make results durable before saving: URLs as they are, bytes into the spool. (URLs may
        wait in `into` until the next flush: until then the provider still has them.)"""
        recorded = []
        for position, output in enumerate(outputs):
            if output.data is not None:
                recorded.append({"spool": str(self._spool(f"{task.spec.client_ref}-{position}", output.data))})
            else:
                recorded.append({"url": output.url})
        task.outputs, task.usage, task.state = recorded, usage, "succeeded"
        self.ledger.task_outputs(
            task.task_id, recorded, usage._asdict() if usage else None, provider_job_id, task.handle, into
        )

    def _spool(self, name: str, data: bytes) -> Path:
        return atomic_write(private_dir(self.spool_dir) / name, data)

    def _save_one(self, shape: _Shape, task: _Task, output: dict, index: int) -> SavedImage:
        out_dir = self.output.out_dir

        def stage(chunks):
            return images.stage(out_dir, chunks, lambda info: None)

        try:
            if "spool" in output:
                spooled = Path(output["spool"])
                if not spooled.is_file():
                    raise OutputError(f"{shape.provider}: image {index} was received but its spool file is gone")
                staged = stage([spooled.read_bytes()])
            else:
                status, staged = self.http.download(output["url"], stage)
                if staged is None:
                    raise OutputError(
                        f"{shape.provider}: result {output['url']} answered HTTP {status} (expired or missing)"
                    )
        except images.NotAnImage as exc:
            raise OutputError(f"{shape.provider}: image {index} is not a usable image: {exc}") from None
        except TransportFailure as exc:
            raise OutputError(f"{shape.provider}: image {index} could not be downloaded: {exc}") from None
        values = {
            "slug": images.slug(shape.prompt),
            "provider": shape.provider,
            "model": shape.model.replace("/", "-"),
            "index": str(index),
            "job": self.job_id,
            "quality": shape.quality or "",
            "date": dt.date.today().isoformat(),
        }
        stem = images.render_name(self.output.name_template, values)
        path = images.place(staged, out_dir, stem, adopt_identical=self._adopt, taken=self._claimed)
        self._claimed.add(path)
        info = staged.info
        verified = shape.problem(info) is None
        images.write_sidecar(
            path,
            {
                "prompt": shape.prompt,
                "provider": shape.provider,
                "model": shape.model,
                "job_id": self.job_id,
                "provider_job_id": _provider_job_id(task.handle),
                "quality": shape.quality,
                "width": info.width,
                "height": info.height,
                "format": info.format,
                "sha256": staged.sha256,
                "estimated_cost_usd": usd_json(shape.per_image),
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
        )
        self.ledger.add_file(
            self.job_id,
            task.task_id,
            str(path),
            staged.sha256,
            staged.size,
            info.format,
            info.width,
            info.height,
            verified,
            into=self._pending,
        )
        if "spool" in output:  # the spool is the only other copy: record the file before removing it
            self._flush()
            Path(output["spool"]).unlink(missing_ok=True)
        return SavedImage(path, staged.sha256, info.format, info.width, info.height, staged.size, verified)

    def _adapter(self, provider: str) -> Adapter:
        if provider not in self.keys:
            env = REGISTRY[provider].key_env
            raise ConfigError(f"no {provider} key", f"set {env}, or run: imgroute keys set {provider}")
        return adapter_class(provider)(self.keys[provider], self.base_urls.get(provider))

    def _emit(self, state: str, message: str) -> None:
        provider, model, estimate = self._current
        self.on_event(Event(provider, model, state, message, estimate, self.clock() - self._start))

    # -- resume -----------------------------------------------------------------------------

    def resume(self, job_id: str, reroute: Callable[[Request, int], Route]) -> JobResult:
        """Finish a journaled job: poll and download what was submitted, never resubmit what may
        have been sent (except under an idempotency key), and route images never sent at all."""
        return self._drive(self.steps_resume(job_id, reroute))

    def steps_resume(self, job_id: str, reroute: Callable[[Request, int], Route]) -> Steps:
        self._start = self.clock()
        self.job_id = job_id
        self._adopt = True
        job = self.ledger.job(job_id)
        request = Request.from_json(json.loads(job["request"]))
        self.output = OutputOptions(Path(job["out_dir"] or "."), job["name_template"] or images.DEFAULT_NAME)
        if self.output.out_dir.is_dir():
            images.clean_stale_parts(self.output.out_dir)
        files = {}
        for row in self.ledger.files(job_id):
            self._claimed.add(Path(row["path"]))
            files.setdefault(row["task_id"], []).append(
                SavedImage(
                    Path(row["path"]),
                    row["sha256"],
                    row["format"],
                    row["width"],
                    row["height"],
                    row["bytes"],
                    bool(row["verified"]),
                )
            )
        saved: list[SavedImage] = [image for group in files.values() for image in group]
        attempts: list[AttemptReport] = []
        spent, sources = Decimal(0), set()
        last_seq = 0
        final_error: ImgrouteError | None = None
        final_status = "succeeded"
        for attempt in self.ledger.attempts(job_id):
            last_seq = attempt["seq"]
            rows = [t for t in self.ledger.tasks(job_id) if t["attempt_seq"] == attempt["seq"]]
            end = yield from self._resume_attempt(attempt, rows, files, request, len(saved))
            self._flush()
            attempts.append(end.report)
            saved.extend(end.images)
            if end.actual is not None:
                spent += end.actual
                sources.add(end.source)
            if end.error is not None and final_error is None:
                final_error, final_status = end.error, end.status
        delivered = len(saved)
        if final_error is None and delivered < request.n:
            if self.max_cost is None and job["max_cost_usd"] is not None:
                self.max_cost = Decimal(job["max_cost_usd"])
            stored = Constraints.from_json(json.loads(job["request"]).get("constraints"))
            route = reroute(request._replace(n=request.n - delivered), stored)
            return (
                yield from self._route_through(
                    request, route, request.n - delivered, saved, attempts, spent, sources, first_seq=last_seq + 1
                )
            )
        if final_error is None:
            final_status = "succeeded"
        last = attempts[-1] if attempts else None
        result = self._finish(final_status, None, None, spent, sources, saved, attempts, final_error)
        return result._replace(
            provider=last.provider if last else None,
            model=last.model if last else None,
            plan=last.plan if last else None,
            estimate=Decimal(job["estimate_usd"]) if job["estimate_usd"] else None,
        )

    def _resume_attempt(self, attempt, rows, files, request, index_base) -> Steps:
        provider, model = attempt["provider"], attempt["model"]
        estimate = Decimal(attempt["estimate_usd"]) if attempt["estimate_usd"] else None
        if attempt["state"] in ("succeeded", "trouble", "failed", "refused") and all(
            r["state"] in ("succeeded", "failed") and len(files.get(r["id"], [])) >= _output_count(r) for r in rows
        ):  # settled before the interruption: count it as it stands
            actual = Decimal(attempt["actual_usd"]) if attempt["actual_usd"] else None
            state = attempt["state"]
            report = AttemptReport(
                provider,
                model,
                attempt["plan"],
                estimate,
                state,
                attempt["error"],
                sum(len(files.get(r["id"], [])) for r in rows),
            )
            error = None
            if state == "failed" and attempt["error"]:
                error = JobFailedError(attempt["error"], _failure_hint("moderat" in attempt["error"].lower()))
            return _AttemptEnd(report, (), actual, attempt["actual_source"], error, state)
        if not rows:  # interrupted after the budget reservation, before anything was journaled to send
            self.ledger.attempt_state(attempt["id"], "abandoned", "interrupted before sending")
            report = AttemptReport(provider, model, attempt["plan"], estimate, "abandoned", None, 0)
            return _AttemptEnd(report, (), None, None, None, "abandoned")
        self._current = (provider, model, estimate)
        adapter = self._adapter(provider)
        tasks: list[_Task] = []
        unknown_notes = []
        for row in rows:
            stored = json.loads(row["spec"])
            spec = JobSpec.from_json(stored)
            task = _Task(row["id"], spec, row["state"], json.loads(row["handle"]) if row["handle"] else None)
            task.saved = list(files.get(row["id"], []))
            if row["outputs"]:
                recorded = json.loads(row["outputs"])
                task.outputs = recorded["outputs"]
                task.usage = Usage(**recorded["usage"]) if recorded["usage"] else None
                task.state = "succeeded"
            elif adapter.synchronous and task.state in ("submitted", "running"):
                # An answer with images is recorded together with them; without them it was lost.
                task.state = "unknown"
                self.ledger.task_state(task.task_id, "unknown", "the answer was not recorded")
                unknown_notes.append(_unknown_advice(provider, row))
            elif task.state in ("submitting", "unknown"):
                if adapter.idempotent_submit:
                    self._emit("submitting", "replaying the submit under its idempotency key")
                    try:
                        yield from self._submit(adapter, task)
                    except (ProviderTrouble, SubmitUnknown, JobFailed) as exc:
                        unknown_notes.append(str(exc))
                else:
                    task.state = "unknown"
                    self.ledger.task_state(task.task_id, "unknown", "interrupted while submitting")
                    unknown_notes.append(_unknown_advice(provider, row))
            elif task.state == "failed":
                task.error = row["detail"]
            tasks.append(task)
        exact = json.loads(rows[0]["spec"]).get("exact_size", True)
        shape = _shape_from_spec(tasks[0].spec, provider, exact, estimate)
        stuck = None
        if any(t.state in ("submitted", "running") for t in tasks):
            yield from self._take_slot(provider, fresh=False)  # at the provider: counts against its limit
            try:
                stuck = yield from self._await_tasks(adapter, tasks)
            finally:
                self._give_slot(provider)
        yield from self._before_saving()
        saved, problems = self._save_results(shape, tasks, index_base)
        final = None
        if unknown_notes:
            final = ProviderError("; ".join(unknown_notes), f"`imgroute jobs show {self.job_id}` has what is known")
        return self._settle(
            attempt["id"],
            provider,
            model,
            attempt["plan"],
            estimate,
            tasks,
            saved,
            problems,
            stuck,
            None,
            final,
            "unknown" if unknown_notes else "failed",
        )


class _Stuck(Exception):
    """Submitted, but not finished before the timeout: the job is still at the provider."""


def job_spec(request: Request, assessment, count: int, client_ref: str) -> JobSpec:
    d = assessment.delivery
    return JobSpec(
        prompt=request.prompt,
        model=assessment.model,
        quality=assessment.quality if assessment.offer.quality_selectable else None,
        width=d.width,
        height=d.height,
        aspect=d.aspect,
        resolution=d.resolution,
        n=count,
        output_format=request.output_format,
        client_ref=client_ref,
        images=tuple(image.source for image in request.images),
        mask=request.mask.source if request.mask else None,
    )


def rerouter(table: PricingTable, base: Constraints, extra_reasons) -> Callable[[Request, Constraints], Route]:
    """How `resume` routes images a job never sent: as now configured, but only among the provider
    choices the job was made with (journaled with it)."""
    from imgroute.router import rank

    def reroute(request: Request, stored: Constraints) -> Route:
        within = base._replace(providers=stored.providers, exclude=stored.exclude, plans={**base.plans, **stored.plans})
        return rank(request, table, within, extra_reasons)

    return reroute


def _shape_from_spec(spec: JobSpec, provider: str, exact: bool, estimate: Decimal | None) -> _Shape:
    per_image = estimate / spec.n if estimate is not None and spec.n else None
    return _Shape(
        spec.prompt, provider, spec.model, spec.quality, spec.output_format, spec.width, spec.height, exact, per_image
    )


def _output_count(row) -> int:
    if row["outputs"]:
        return len(json.loads(row["outputs"])["outputs"])
    return row["images"] if row["state"] == "succeeded" else 0


def _unknown_advice(provider: str, row) -> str:
    when = dt.datetime.fromtimestamp(row["created"]).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{provider}: request {row['client_ref']} was about to be sent at {when} when imgroute stopped; whether "
        f"it reached {provider} is unknown and {provider} offers no way to look it up, so it is not sent again. "
        f"Check the {provider} dashboard for a job at that time"
    )


def unknown_error(exc: Exception, provider: str, job_id: str) -> ProviderError:
    return ProviderError(
        f"{exc}; the job may have been created and charged, so it was not sent again (job {job_id})",
        f"check the {provider} dashboard before retrying; `imgroute jobs show {job_id}` has what is known",
    )


def budget_error(refused: BudgetRefused) -> BudgetError:
    resets = refused.resets.strftime("%Y-%m-%d %H:%M")
    return BudgetError(
        f"{refused.period} budget: this needs {fmt_usd(refused.asked)}, {fmt_usd(refused.left)} is left of "
        f"{fmt_usd(refused.cap)} (resets {resets})",
        "raise it with `imgroute budget set`, or wait for the reset",
    )


def _failure_hint(moderated: bool) -> str:
    if moderated:
        return "change the prompt; a moderated job is not sent to another provider"
    return "the provider failed the job; run it again, or pick another provider with --provider"


def fallback_candidates(route: Route) -> list[Quote]:
    """Offers to try in order: the eligible ones, then those ruled out only by --max-cost at the full
    job size (they may fit for the images left after a partial delivery; the cumulative cost is
    checked before each is tried)."""
    usable = [q for q in route.quotes if q.eligible or q.priced_out]
    return sorted(usable, key=lambda q: (not q.eligible, q.cost, q.offer.provider, q.offer.model))


def _next_after(candidates: list[Quote], quote: Quote) -> Quote | None:
    index = candidates.index(quote)
    return candidates[index + 1] if index + 1 < len(candidates) else None


def _delivered_size(task: _Task) -> tuple[int, int]:
    """The real size read from the first saved image, else the size that was asked for."""
    if task.saved:
        return task.saved[0].width, task.saved[0].height
    return task.spec.width, task.spec.height


def _provider_job_id(handle: dict) -> str | None:
    return handle.get("request_id") or handle.get("task_id") or handle.get("job_id")


def result_to_json(result: JobResult, skipped: list[dict]) -> dict:
    """`imgroute gen --json`: one object per job (design.md section 5)."""
    return {
        "job_id": result.job_id,
        "status": result.status,
        "provider": result.provider,
        "model": result.model,
        "plan": result.plan,
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
