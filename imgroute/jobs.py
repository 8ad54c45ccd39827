"""The generate workflow, and the only place that knows the order of its steps.

For each eligible offer, cheapest first: reserve the attempt against the budgets, journal the
intent, submit, record the provider's id, wait, record the results, download, verify, save, record.
Provider trouble that is not the user's fault moves the remaining images to the next offer; a job
the provider failed, or a submit whose fate is unknown, stops the run (sending it anywhere else could
pay twice). `resume` finishes a journaled job from the ledger alone, never submitting again what may
have been sent, through the same collect and settle steps as a run. Nothing here prints: progress
goes to a callback and results come back as values.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from imgroute import images, policy, price_models
from imgroute.budget import refusal_error
from imgroute.costs import Assessment, assess
from imgroute.errors import ConfigError, ImgrouteError, Interrupted, JobFailedError, OutputError, ProviderError
from imgroute.http import Http
from imgroute.ledger import AttemptRecord, BudgetRefused, Ledger, TaskRecord
from imgroute.models import AttemptState, Constraints, JobSpec, JobState, Request, TaskState
from imgroute.money import fmt_usd
from imgroute.outputs import ImageShape, Outputs, SavedImage
from imgroute.poll_timing import PollTiming, backoff
from imgroute.price_models import Delivered
from imgroute.pricing import PricingTable
from imgroute.providers import REGISTRY, adapter_class
from imgroute.providers.base import Adapter, JobFailed, MalformedAnswer, ProviderTrouble, SubmitUnknown, Usage
from imgroute.report import route_json
from imgroute.router import Quote, Route
from imgroute.steps import Cancelled, Later, NeedSlot, Pause, Slots, Steps, Unlimited, drive


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


class OutputOptions(NamedTuple):
    out_dir: Path
    name_template: str = images.DEFAULT_NAME


class AttemptEnd(NamedTuple):
    report: AttemptReport
    images: tuple[SavedImage, ...]
    actual: Decimal | None
    source: str | None
    error: ImgrouteError | None  # set when the job must stop here
    status: str  # what the job's status becomes if it stops here


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


class Task:
    """One request inside an attempt (Kie: one per image), as the run knows it."""

    def __init__(self, task_id: int, spec: JobSpec, state: str, handle: dict | None = None):
        self.task_id = task_id
        self.spec = spec
        self.state = state  # a TaskState
        self.handle = handle or {}
        self.outputs: list[dict] = []  # recorded results: {"url": ...} or {"spool": path}
        self.usage: Usage | None = None
        self.error: str | None = None
        self.moderated = False
        self.saved: list[SavedImage] = []
        self.sent_at: float | None = None  # when this run's submit was answered (None: found in flight by a resume)
        self.missed_at: float | None = None  # when (in the poll schedule) it was last seen not done
        self.polls = 0


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
        self.sources: set[str] = set()
        self.last: tuple[str | None, str | None, str | None] = (None, None, None)  # provider, model, plan
        self.current: tuple[str, str, Decimal | None] = ("", "", None)  # for progress events
        # Journal writes that may wait for the next commit (a saved file's record, an attempt's end):
        # committed together, at the latest when the job ends. A kill before that loses nothing:
        # resume finds the files by their content and settles the attempt again.
        self.pending: list = []

    @property
    def remaining(self) -> int:
        return self.request.n - len(self.saved)

    def point_at(self, quote: Quote) -> None:
        self.last = (quote.offer.provider, quote.assessment.model, quote.assessment.plan.name)

    def add(self, end: AttemptEnd) -> None:
        self.attempts.append(end.report)
        self.saved.extend(end.images)
        if end.actual is not None:
            self.spent += end.actual
            self.sources.add(end.source)


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
        spool_dir: Path,
        timeout: float = policy.DEFAULT_JOB_TIMEOUT_S,
        max_cost: Decimal | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[Event], None] | None = None,
        slots: Slots | None = None,
        timing: PollTiming | None = None,
    ):
        self.table = table
        self.http = http
        self.ledger = ledger
        self.keys = keys
        self.base_urls = base_urls
        self.outputs = Outputs(output.out_dir, output.name_template, spool_dir, http)
        self.spool_dir = spool_dir
        self.timeout = timeout
        self.max_cost = max_cost
        self.clock = clock
        self.on_event = on_event or (lambda event: None)
        self.slots = slots or Unlimited()  # batch: per-provider slots and submit spacing
        self.timing = timing  # batch: poll schedules learned from the jobs already finished
        self.job: JobRun | None = None

    @property
    def job_id(self) -> str | None:
        return self.job.id if self.job is not None else None

    # -- a new job --------------------------------------------------------------------------

    def run(self, request: Request, route: Route, row_key: str | None = None, constraints=None) -> JobResult:
        """`constraints` (provider choices, plans) are journaled so a resume routes within them."""
        return drive(self.steps_run(request, route, row_key, constraints), self.http.wait)

    def steps_run(self, request: Request, route: Route, row_key: str | None = None, constraints=None) -> Steps:
        """`run`, as steps a scheduler can interleave with other jobs' (see steps.py)."""
        job = self.job = JobRun(uuid.uuid4().hex[:12], request, self.clock(), self.max_cost)
        first = route.choice
        self.ledger.new_job(
            job.id,
            request.prompt,
            {**request.to_json(), "constraints": constraints.to_json() if constraints else None},
            route_json(route),
            str(first.cost) if first else None,
            str(self.outputs.out_dir),
            self.outputs.name_template,
            str(self.max_cost) if self.max_cost is not None else None,
            row_key,
        )
        try:
            return (yield from self._route_through(job, route, first_seq=1))
        finally:
            self.ledger.flush(job.pending)

    def _route_through(self, job: JobRun, route: Route, first_seq: int) -> Steps:
        """Walk the eligible offers in order until every image is delivered."""
        self.http.on_event = lambda message: self._emit("retrying", message)
        job.estimate = route.choice.cost if route.choice else None
        if route.choice:
            job.point_at(route.choice)
        candidates = fallback_candidates(route)
        for seq, quote in enumerate(candidates, start=first_seq):
            self.ledger.flush(job.pending)  # the last attempt's end, before this one waits for anything
            assessment = quote.assessment
            if job.remaining != assessment.n:  # an earlier offer delivered part of the job
                assessment = assess(job.request._replace(n=job.remaining), quote.offer, assessment.plan)
            job.point_at(quote)
            if job.max_cost is not None and job.spent + assessment.cost > job.max_cost:
                return self._finish(job, JobState.FAILED, _over_max_cost(job, quote, assessment))
            end = yield from self._attempt(job, seq, quote, assessment)
            job.add(end)
            if end.error is not None:  # final: failed job, unknown submit, stuck, bad output, budget
                return self._finish(job, end.status, end.error)
            if job.remaining <= 0:
                return self._finish(job, JobState.SUCCEEDED, None)
            nxt = _next_after(candidates, quote)
            if nxt is not None:
                self._emit("fallback", f"{end.report.error}; moving {job.remaining} image(s) to {nxt.offer.id}")
        tried = "; ".join(f"{a.provider}: {a.error}" for a in job.attempts if a.error)
        error = ProviderError(
            f"no provider could take the job ({tried or 'no offer left to try'})",
            "check the keys and balances of these providers, or try again later",
        )
        return self._finish(job, JobState.FAILED, error)

    def _finish(self, job: JobRun, status: str, error: ImgrouteError | None) -> JobResult:
        actual = job.spent if job.sources else None
        source = ", ".join(sorted(job.sources)) if job.sources else None
        self.ledger.job_state(
            job.id,
            status,
            error.message if error else None,
            str(actual) if actual is not None else None,
            source,
            exit_code=error.exit_code if error else 0,
            into=job.pending,
        )
        self.ledger.flush(job.pending)
        provider, model, plan = job.last
        return JobResult(
            job.id,
            status,
            provider,
            model,
            plan,
            job.estimate,
            actual,
            source,
            tuple(job.saved),
            tuple(job.attempts),
            self.clock() - job.start,
            error,
        )

    # -- one offer --------------------------------------------------------------------------

    def _attempt(self, job: JobRun, seq: int, quote: Quote, assessment: Assessment) -> Steps:
        offer, plan = quote.offer, assessment.plan
        job.current = (offer.provider, offer.model, assessment.cost)
        report = AttemptReport(offer.provider, offer.model, plan.name, assessment.cost, AttemptState.REFUSED, None, 0)
        try:
            attempt_id = self.ledger.reserve_attempt(
                job.id,
                seq,
                offer.provider,
                offer.model,
                plan.name,
                assessment.cost,
                [line.text for line in assessment.breakdown],
                job_state=JobState.SUBMITTING,
            )
        except BudgetRefused as refused:
            return AttemptEnd(report._replace(error="budget"), (), None, None, refusal_error(refused), "failed")
        try:
            return (yield from self._send_and_collect(job, attempt_id, seq, quote, assessment))
        except Cancelled as stopped:  # the batch stopped before this attempt sent anything
            self.ledger.attempt_state(attempt_id, AttemptState.ABANDONED, str(stopped))
            error = Interrupted(str(stopped), "run the batch again to send it")
            return AttemptEnd(report._replace(state=AttemptState.ABANDONED), (), None, None, error, JobState.CANCELLED)

    def _send_and_collect(self, job: JobRun, attempt_id: int, seq: int, quote: Quote, assessment) -> Steps:
        offer = quote.offer
        adapter = self._adapter(offer.provider)
        d, request = assessment.delivery, job.request
        shape = ImageShape(
            request.prompt,
            offer.provider,
            offer.model,
            assessment.quality,
            request.output_format,
            d.width,
            d.height,
            d.exact,
            assessment.per_image,
        )
        attempt = Attempt(
            attempt_id, offer.provider, offer.model, assessment.plan.name, assessment.cost, shape, adapter
        )
        tasks: list[Task] = []
        yield NeedSlot(offer.provider, fresh=True)
        try:
            outcome = yield from self._send_all(job, attempt, assessment, seq, tasks)
            stuck = yield from self._await_tasks(job, adapter, tasks)
        finally:
            self.slots.release(offer.provider)
        return (yield from self._collect(job, attempt, tasks, stuck, outcome))

    def _send_all(self, job: JobRun, attempt: Attempt, assessment, seq: int, tasks: list[Task]) -> Steps:
        """Journal and send each request of the attempt; how that went, as an Outcome."""
        adapter = attempt.adapter
        try:
            for index, count in enumerate(assessment.requests):
                spec = job_spec(job.request, assessment, count, f"{job.id}-{seq}-{index}")
                spec = adapter.upload_inputs(self.http, spec)  # free; before the journal, so it records them
                # Wait for the provider's rate before the intent is journaled: a kill while waiting
                # leaves nothing unknown.
                delay = self.slots.submit_delay(attempt.provider)
                if delay > 0:
                    yield Pause(delay, scaled=False)
                task_id = self.ledger.task_submitting(attempt.id, index, spec.client_ref, spec.n, spec.to_json())
                task = Task(task_id, spec, TaskState.SUBMITTING)
                tasks.append(task)
                yield from self._submit(job, adapter, task, into=job.pending)  # committed just below
            self.ledger.job_state(job.id, JobState.SUBMITTED, into=job.pending)
            self.ledger.flush(job.pending)
        except ProviderTrouble as exc:
            tasks[:] = [t for t in tasks if t.state != TaskState.FAILED]
            return Outcome(trouble=exc)
        except JobFailed as exc:  # synchronous providers refuse (moderation) in the submit itself
            return Outcome(final=JobFailedError(str(exc), _failure_hint(exc.moderated)))
        except SubmitUnknown as exc:
            return Outcome(final=unknown_error(exc, attempt.provider, job.id), status=JobState.UNKNOWN)
        return Outcome()

    def _submit(self, job: JobRun, adapter: Adapter, task: Task, into: list | None = None) -> Steps:
        """Submit a journaled task; repeat only when the HTTP layer's submit rule allows it."""
        self._emit("submitting", f"sending request {task.spec.client_ref}")
        attempt = 0
        while True:
            try:
                submission = adapter.submit(self.http, task.spec)
            except ProviderTrouble as exc:
                delay = self.http.submit_retry_delay(exc.kind, exc.retry_after, attempt, adapter.idempotent_submit)
                if delay is None:
                    self._task_ended(task, TaskState.FAILED, str(exc))
                    raise
                self._emit("retrying", f"{exc}; retrying in {delay:.1f}s")
            except JobFailed as exc:
                self._task_ended(task, TaskState.FAILED, str(exc), exc.moderated)
                raise
            except SubmitUnknown as exc:
                delay = self.http.submit_retry_delay(None, None, attempt, adapter.idempotent_submit)
                if delay is None:
                    self._task_ended(task, TaskState.UNKNOWN, str(exc))
                    raise
                self._emit("retrying", f"{exc}; retrying with the same idempotency key in {delay:.1f}s")
            else:
                task.handle, task.sent_at = submission.handle, self.clock()
                if submission.outputs:  # synchronous: id and images recorded together
                    self._record_outputs(task, submission.outputs, submission.usage, submission.job_id)
                else:
                    self.ledger.task_submitted(task.task_id, submission.job_id, submission.handle, into)
                    task.state = TaskState.SUBMITTED
                return
            yield Pause(delay)
            attempt += 1

    def _task_ended(self, task: Task, state: TaskState, detail: str, moderated: bool = False) -> None:
        task.state, task.moderated = state, moderated
        task.error = detail if state == TaskState.FAILED else None
        self.ledger.task_state(task.task_id, state, detail)

    # -- waiting, saving and settling (shared by run and resume) -----------------------------

    def _await_tasks(self, job: JobRun, adapter: Adapter, tasks: list[Task]) -> Steps:
        """Wait for submitted tasks to finish or fail; the error to report if time ran out first."""
        try:
            yield from self._wait(job, adapter, [t for t in tasks if t.state in (TaskState.SUBMITTED, "running")])
        except _Stuck as exc:
            return ProviderError(
                f"{exc} (job {job.id}); it is still running at {adapter.provider} and recorded in the ledger",
                f"finish it later with: imgroute jobs resume {job.id}",
            )
        return None

    def _wait(self, job: JobRun, adapter: Adapter, pending: list[Task]) -> Steps:
        """Poll until every task has finished or failed. Waits before each round: a job polled the
        moment it was submitted is never done, and every poll is a request."""
        timing = self.timing
        waits = timing.waits(adapter.provider, adapter.poll_schedule) if timing else backoff(adapter.poll_schedule)
        deadline = job.start + self.timeout
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
                if self._poll_once(job, adapter, task, planned):
                    pending.remove(task)

    def _poll_once(self, job: JobRun, adapter: Adapter, task: Task, planned: float) -> bool:
        """Ask once; True when the task has ended (succeeded, with its results recorded, or failed)."""
        task.polls += 1
        try:
            poll = adapter.poll(self.http, task.handle)
        except JobFailed as exc:
            self._task_ended(task, TaskState.FAILED, str(exc), exc.moderated)
            return True
        except (ProviderTrouble, MalformedAnswer) as exc:
            # The job exists and may be paid for: keep asking until the deadline.
            self._emit("retrying", f"status check failed ({exc}); still waiting")
            return False
        if poll.state == "succeeded":  # journaled once the slot is given back (see _collect)
            self._record_outputs(task, poll.outputs, poll.usage or task.usage, into=job.pending)
            if self.timing is not None and task.sent_at is not None:
                self.timing.observe(adapter.provider, planned, task.polls, task.missed_at, poll.took)
            return True
        task.missed_at = planned
        if poll.state != task.state:
            self.ledger.task_state(task.task_id, TaskState.RUNNING, poll.detail)
            task.state = poll.state
        progress = f" {poll.progress}%" if poll.progress is not None else ""
        self._emit(poll.state, f"{poll.detail}{progress}")
        return False

    def _record_outputs(self, task: Task, outputs, usage: Usage | None, provider_job_id=None, into=None) -> None:
        """Make results durable before saving: URLs as they are, bytes into the spool. (URLs may
        wait in `into` until the next flush: until then the provider still has them.)"""
        recorded = [
            self.outputs.spool(f"{task.spec.client_ref}-{position}", output.data)
            if output.data is not None
            else {"url": output.url}
            for position, output in enumerate(outputs)
        ]
        task.outputs, task.usage, task.state = recorded, usage, TaskState.SUCCEEDED
        self.ledger.task_outputs(
            task.task_id, recorded, usage._asdict() if usage else None, provider_job_id, task.handle, into
        )

    def _collect(self, job: JobRun, attempt: Attempt, tasks: list[Task], stuck, outcome: Outcome) -> Steps:
        self.ledger.flush(job.pending)  # the results the polls saw, durable before any is downloaded
        yield Later()  # downloading and saving hold no slot: jobs that do go first
        saved, problems = self._save_results(job, attempt.shape, tasks)
        return self._settle(job, attempt, tasks, saved, problems, stuck, outcome)

    def _save_results(self, job: JobRun, shape: ImageShape, tasks: list[Task]) -> tuple[list[SavedImage], list[str]]:
        """Download (or take from the spool), verify and save every recorded result."""
        saved: list[SavedImage] = []
        problems: list[str] = []
        for task in tasks:
            if task.state != TaskState.SUCCEEDED:
                continue
            for output in task.outputs[len(task.saved) :]:  # those saved before (resume) are skipped
                index = len(job.saved) + len(saved) + 1
                self._emit("downloading", f"image {index}")
                try:
                    image = self._save_one(job, shape, task, output, index)
                except OutputError as exc:
                    problems.append(exc.message)
                    continue
                saved.append(image)
                task.saved.append(image)
                if not image.verified:
                    problems.append(f"{image.path}: {shape.problem(image)}")
        return saved, problems

    def _save_one(self, job: JobRun, shape: ImageShape, task: Task, output: dict, index: int) -> SavedImage:
        image = self.outputs.save(shape, output, index, job.id, _provider_job_id(task.handle))
        self.ledger.add_file(
            job.id,
            task.task_id,
            str(image.path),
            image.sha256,
            image.bytes,
            image.format,
            image.width,
            image.height,
            image.verified,
            into=job.pending,
        )
        if "spool" in output:  # the spool is the only other copy: record the file before removing it
            self.ledger.flush(job.pending)
            self.outputs.discard(output)
        return image

    def _settle(self, job, attempt: Attempt, tasks, saved, problems, stuck, outcome: Outcome) -> AttemptEnd:
        """Price what was delivered and decide how the attempt ended."""
        actual, source = self._actual_cost(job, attempt, tasks)
        final, status, trouble = outcome.final, outcome.status, outcome.trouble
        failures = [t for t in tasks if t.state == TaskState.FAILED]
        if final is None and stuck is not None:
            final, status = stuck, JobState.RUNNING
        if final is None and failures:
            moderated = any(t.moderated for t in failures)
            final = JobFailedError("; ".join(t.error for t in failures), _failure_hint(moderated))
        if final is None and any(t.state == TaskState.UNKNOWN for t in tasks):
            final, status = unknown_error(None, attempt.provider, job.id), JobState.UNKNOWN
        if final is None and problems:
            final = OutputError("; ".join(problems), "the images were saved as delivered; check them")
        if final is None:
            status = AttemptState.SUCCEEDED if trouble is None else AttemptState.TROUBLE
        error = str(trouble) if trouble else (final.message if final else None)
        cost = str(actual) if actual is not None else None
        self.ledger.attempt_state(attempt.id, status, error, cost, source, job.pending)
        report = AttemptReport(
            attempt.provider, attempt.model, attempt.plan, attempt.estimate, status, error, len(saved)
        )
        job_status = JobState.FAILED if status in (AttemptState.FAILED, AttemptState.TROUBLE) else status
        return AttemptEnd(report, tuple(saved), actual, source, final, job_status)

    def _actual_cost(self, job: JobRun, attempt: Attempt, tasks: list[Task]) -> tuple[Decimal | None, str | None]:
        offer = self.table.offer(attempt.provider, attempt.model)
        delivered = [
            Delivered(len(t.outputs), *_delivered_size(t), t.usage) for t in tasks if t.state == TaskState.SUCCEEDED
        ]
        if not delivered or offer is None:
            return None, None
        plan = self.table.providers[attempt.provider].plans.get(attempt.plan) or self.table.plan(attempt.provider, None)
        spec = tasks[0].spec
        quality = spec.quality or "high"
        return price_models.of(offer).actual(offer, plan, quality, spec.resolution, job.request, delivered)

    # -- plumbing -----------------------------------------------------------------------------

    def _adapter(self, provider: str) -> Adapter:
        if provider not in self.keys:
            env = REGISTRY[provider].key_env
            raise ConfigError(f"no {provider} key", f"set {env}, or run: imgroute keys set {provider}")
        return adapter_class(provider)(self.keys[provider], self.base_urls.get(provider))

    def _emit(self, state: str, message: str) -> None:
        job = self.job
        provider, model, estimate = job.current if job else ("", "", None)
        self.on_event(Event(provider, model, state, message, estimate, self.clock() - (job.start if job else 0)))

    # -- resume -----------------------------------------------------------------------------

    def resume(self, job_id: str, reroute: Callable[[Request, Constraints], Route]) -> JobResult:
        """Finish a journaled job: poll and download what was submitted, never resubmit what may
        have been sent (except under an idempotency key), and route images never sent at all."""
        return drive(self.steps_resume(job_id, reroute), self.http.wait)

    def steps_resume(self, job_id: str, reroute: Callable[[Request, Constraints], Route]) -> Steps:
        record = self.ledger.job(job_id)
        request = Request.from_json(record.request)
        max_cost = self.max_cost if self.max_cost is not None else record.max_cost
        job = self.job = JobRun(job_id, request, self.clock(), max_cost)
        job.estimate = record.estimate
        out_dir = Path(record.out_dir or ".")
        self.outputs = Outputs(out_dir, record.name_template or images.DEFAULT_NAME, self.spool_dir, self.http, True)
        files: dict[int | None, list[SavedImage]] = {}
        for row in self.ledger.files(job_id):
            self.outputs.claimed.add(Path(row.path))
            image = SavedImage(Path(row.path), row.sha256, row.format, row.width, row.height, row.bytes, row.verified)
            files.setdefault(row.task_id, []).append(image)
        job.saved = [image for group in files.values() for image in group]
        by_attempt: dict[int, list[TaskRecord]] = {}
        for task in self.ledger.tasks(job_id):
            by_attempt.setdefault(task.attempt_seq, []).append(task)
        final_error: ImgrouteError | None = None
        final_status, last_seq = JobState.SUCCEEDED, 0
        for attempt in self.ledger.attempts(job_id):
            last_seq = attempt.seq
            job.last = (attempt.provider, attempt.model, attempt.plan)
            end = yield from self._resume_attempt(job, attempt, by_attempt.get(attempt.seq, []), files)
            self.ledger.flush(job.pending)
            job.add(end)
            if end.error is not None and final_error is None:
                final_error, final_status = end.error, end.status
        if final_error is None and job.remaining > 0:  # images never sent: routed as `gen` would
            stored = Constraints.from_json(record.request.get("constraints"))
            route = reroute(request._replace(n=job.remaining), stored)
            return (yield from self._route_through(job, route, first_seq=last_seq + 1))
        return self._finish(job, final_status, final_error)

    def _resume_attempt(self, job: JobRun, attempt: AttemptRecord, rows: list[TaskRecord], files) -> Steps:
        report = AttemptReport(
            attempt.provider, attempt.model, attempt.plan, attempt.estimate, attempt.state, attempt.error, 0
        )
        if _settled(attempt, rows, files):  # settled before the interruption: count it as it stands
            error = None
            if attempt.state == AttemptState.FAILED and attempt.error:
                error = JobFailedError(attempt.error, _failure_hint("moderat" in attempt.error.lower()))
            saved = sum(len(files.get(r.id, [])) for r in rows)
            return AttemptEnd(
                report._replace(images=saved), (), attempt.actual, attempt.actual_source, error, attempt.state
            )
        if not rows:  # interrupted after the budget reservation, before anything was journaled to send
            self.ledger.attempt_state(attempt.id, AttemptState.ABANDONED, "interrupted before sending")
            return AttemptEnd(
                report._replace(state=AttemptState.ABANDONED, error=None), (), None, None, None, "abandoned"
            )
        job.current = (attempt.provider, attempt.model, attempt.estimate)
        adapter = self._adapter(attempt.provider)
        tasks, unknown_notes = [], []
        for row in rows:
            task = yield from self._resumed_task(job, adapter, row, files, unknown_notes)
            tasks.append(task)
        shape = ImageShape.of(tasks[0].spec, attempt.provider, attempt.estimate)
        resumed = Attempt(attempt.id, attempt.provider, attempt.model, attempt.plan, attempt.estimate, shape, adapter)
        stuck = None
        if any(t.state in (TaskState.SUBMITTED, TaskState.RUNNING) for t in tasks):
            yield NeedSlot(attempt.provider, fresh=False)  # at the provider: counts against its limit
            try:
                stuck = yield from self._await_tasks(job, adapter, tasks)
            finally:
                self.slots.release(attempt.provider)
        outcome = Outcome()
        if unknown_notes:
            hint = f"`imgroute jobs show {job.id}` has what is known"
            outcome = Outcome(final=ProviderError("; ".join(unknown_notes), hint), status=JobState.UNKNOWN)
        return (yield from self._collect(job, resumed, tasks, stuck, outcome))

    def _resumed_task(self, job: JobRun, adapter: Adapter, row: TaskRecord, files, unknown_notes: list) -> Steps:
        """A journaled request as a Task again: its results, or what can be done about it."""
        task = Task(row.id, row.spec, row.state, row.handle)
        task.saved = list(files.get(row.id, []))
        if row.outputs is not None:
            task.outputs, task.state = row.outputs, TaskState.SUCCEEDED
            task.usage = Usage(**row.usage) if row.usage else None
        elif adapter.synchronous and task.state in (TaskState.SUBMITTED, TaskState.RUNNING):
            # An answer with images is recorded together with them; without them it was lost.
            self._task_ended(task, TaskState.UNKNOWN, "the answer was not recorded")
            unknown_notes.append(_unknown_advice(adapter.provider, row))
        elif task.state in (TaskState.SUBMITTING, TaskState.UNKNOWN):
            if adapter.idempotent_submit:
                self._emit("submitting", "replaying the submit under its idempotency key")
                try:
                    yield from self._submit(job, adapter, task)
                except (ProviderTrouble, SubmitUnknown, JobFailed) as exc:
                    unknown_notes.append(str(exc))
            else:
                self._task_ended(task, TaskState.UNKNOWN, "interrupted while submitting")
                unknown_notes.append(_unknown_advice(adapter.provider, row))
        elif task.state == TaskState.FAILED:
            task.error = row.detail
        return task


# -- pieces of the workflow ----------------------------------------------------------------------


def job_spec(request: Request, assessment: Assessment, count: int, client_ref: str) -> JobSpec:
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
        exact_size=d.exact,
    )


def rerouter(table: PricingTable, base: Constraints, keys) -> Callable[[Request, Constraints], Route]:
    """How `resume` routes images a job never sent: as now configured, but only among the provider
    choices the job was made with (journaled with it)."""
    from imgroute.router import rank

    def reroute(request: Request, stored: Constraints) -> Route:
        within = base._replace(providers=stored.providers, exclude=stored.exclude, plans={**base.plans, **stored.plans})
        return rank(request, table, within, keys)

    return reroute


def fallback_candidates(route: Route) -> list[Quote]:
    """Offers to try in order: the eligible ones, then those ruled out only by --max-cost at the full
    job size (they may fit for the images left after a partial delivery; the cumulative cost is
    checked before each is tried)."""
    usable = [q for q in route.quotes if q.eligible or q.priced_out]
    return sorted(usable, key=lambda q: (not q.eligible, q.cost, q.offer.provider, q.offer.model))


def unknown_error(exc: Exception | None, provider: str, job_id: str) -> ProviderError:
    what = str(exc) if exc else f"{provider}: what became of a request is unknown"
    return ProviderError(
        f"{what}; the job may have been created and charged, so it was not sent again (job {job_id})",
        f"check the {provider} dashboard before retrying; `imgroute jobs show {job_id}` has what is known",
    )


def _over_max_cost(job: JobRun, quote: Quote, assessment: Assessment):
    from imgroute.errors import BudgetError

    return BudgetError(
        f"{quote.offer.id} would take this job to {fmt_usd(job.spent + assessment.cost)}, over --max-cost "
        f"{fmt_usd(job.max_cost)} ({fmt_usd(job.spent)} already spent on it)",
        "raise --max-cost to let the job fall back further",
    )


def _failure_hint(moderated: bool) -> str:
    if moderated:
        return "change the prompt; a moderated job is not sent to another provider"
    return "the provider failed the job; run it again, or pick another provider with --provider"


def _next_after(candidates: list[Quote], quote: Quote) -> Quote | None:
    index = candidates.index(quote)
    return candidates[index + 1] if index + 1 < len(candidates) else None


def _settled(attempt: AttemptRecord, rows: list[TaskRecord], files) -> bool:
    """An attempt that had ended, every result of it saved, before the job was interrupted."""
    ended = (AttemptState.SUCCEEDED, AttemptState.TROUBLE, AttemptState.FAILED, AttemptState.REFUSED)
    return attempt.state in ended and all(
        r.state in (TaskState.SUCCEEDED, TaskState.FAILED) and len(files.get(r.id, [])) >= _output_count(r)
        for r in rows
    )


def _output_count(row: TaskRecord) -> int:
    if row.outputs is not None:
        return len(row.outputs)
    return row.images if row.state == TaskState.SUCCEEDED else 0


def _unknown_advice(provider: str, row: TaskRecord) -> str:
    when = dt.datetime.fromtimestamp(row.created).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{provider}: request {row.client_ref} was about to be sent at {when} when imgroute stopped; whether "
        f"it reached {provider} is unknown and {provider} offers no way to look it up, so it is not sent again. "
        f"Check the {provider} dashboard for a job at that time"
    )


def _delivered_size(task: Task) -> tuple[int, int]:
    """The real size read from the first saved image, else the size that was asked for."""
    if task.saved:
        return task.saved[0].width, task.saved[0].height
    return task.spec.width, task.spec.height


def _provider_job_id(handle: dict) -> str | None:
    return handle.get("request_id") or handle.get("task_id") or handle.get("job_id")


def preview(quote: Quote, request: Request, keys: dict[str, str], base_urls: dict[str, str | None]):
    """The exact first request `gen` would send for this quote, key redacted (`--dry-run`)."""
    a = quote.assessment
    provider = quote.offer.provider
    adapter = adapter_class(provider)(keys[provider], base_urls.get(provider))
    prepared = adapter.prepare(job_spec(request, a, a.requests[0], "dry-run"))
    return prepared._replace(headers={**prepared.headers, **adapter.redacted_headers()})
