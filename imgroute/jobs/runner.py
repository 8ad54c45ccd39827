"""The generate workflow, and the only place that knows the order of its steps.

For each eligible offer, cheapest first: reserve the attempt against the budgets, journal the
intent, submit, record the provider's id, wait, record the results, download, verify, save, record.
Provider trouble that is not the user's fault moves the remaining images to the next offer, and so
does a request the provider ran and failed without an image when its adapter marks the charge unknown
(its share of the estimate counts as possibly charged, against the caps and --max-cost, until `jobs
settle`); a job the provider failed otherwise (moderation included), or a submit whose fate is
unknown, stops the run (sending it anywhere else could pay twice). `resume` finishes a journaled job
from the ledger alone, never submitting again what may have been sent, through the same collect and
settle steps as a run. Nothing here prints: progress goes to a callback and results come back as
values.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from imgroute import words
from imgroute.errors import (
    BudgetRefused,
    Cancelled,
    ConfigError,
    ImgrouteError,
    Interrupted,
    JobFailed,
    JobFailedError,
    ProviderError,
    ProviderTrouble,
    SubmitUnknown,
    named,
)
from imgroute.jobs.fallback import (
    fallback_candidates,
    next_after,
    over_max_cost,
    stopped_partway,
    trouble_hint,
    unknown_error,
)
from imgroute.jobs.outputs import Outputs
from imgroute.jobs.resume import Resume
from imgroute.jobs.settle import Settler
from imgroute.jobs.spec import attempt_shape, job_spec, lane_of
from imgroute.jobs.state import (
    Attempt,
    AttemptEnd,
    AttemptReport,
    Event,
    JobOptions,
    JobResult,
    JobRun,
    Outcome,
    failure_hint,
)
from imgroute.jobs.steps import Exchange, Later, NeedSlot, Pause, Steps, drive
from imgroute.jobs.tasks import Task, TaskRunner, Unsent
from imgroute.models import UNSENT, AttemptState, JobSpec, JobState, OfferRef, Request, TaskState
from imgroute.output.report import route_text
from imgroute.pricing.costs import Assessment, assess
from imgroute.pricing.router import Quote, Route
from imgroute.providers.base import Adapter
from imgroute.providers.registry import limit_for
from imgroute.store.interface import LEASE_SECONDS, PROCESS_OWNER, Answer, Transaction, job_key, slot_order
from imgroute.store.records import NewJob

if TYPE_CHECKING:
    from imgroute.session import Services

TEAM_SLOT_LOOK_S = 0.5  # how often a job waiting for a slot another machine holds looks again


class JobRunner(Resume):
    """One job, run (or resumed) on a door's services (session.Services: the table, ledger, keys,
    HTTP client, observations and slots every job of the door shares), as `options` say."""

    def __init__(self, services: Services, options: JobOptions, clock: Callable[[], float] = time.monotonic):
        self.table = services.table
        self.registry = services.registry
        self.http = services.http()  # (its own: a job's progress goes to its own callback)
        self.ledger = services.ledger
        self.keys = services.keys.available
        self.base_urls = services.keys.base_urls
        self.door_keys = services.keys  # (its adapters: key, base URL and a provider's own settings)
        self.spool_dir = services.home / "spool"
        self.outputs = Outputs(options.output.out_dir, options.output.name_template, self.spool_dir, self.http)
        self.timeout = options.timeout
        self.max_cost = options.max_cost
        self.detach = options.detach  # gen --detach: leave a sent job at a batch provider, do not wait
        self.clock = clock
        self.on_event = options.on_event or (lambda event: None)
        self.slots = services.slots  # batch, serve: per-provider slots and submit spacing
        self.settings = services.settings  # (a team ledger: the limits every machine shares)
        self._lane_limits: dict | None = None
        self.timing = services.timing  # poll schedules learned from the jobs already finished
        self.observations = services.observations  # sizes delivered, each offer's record, prepaid credits used
        self.job: JobRun | None = None
        self._on_sent = options.on_sent
        self._idempotency_key = options.idempotency_key
        self.cancelled = False  # this job alone was stopped before it sent (serve: its client went away)
        self._sending = False  # it has begun to send: too late to cancel it alone
        self._send_lock = threading.Lock()

    def stopping(self) -> bool:
        """Whether this job may send nothing more: its door was stopped, or it was cancelled alone."""
        return self.cancelled or self.slots.stopping()

    @property
    def sent(self) -> bool:
        """Whether it has begun to send (a request may have reached its provider)."""
        return self._sending

    def cancel(self) -> bool:
        """Cancel this job if it has sent nothing yet (True); once it has begun to send, it runs to
        its end (False). The scheduler must be told too, to wake it where it waits (Scheduler.cancel)."""
        with self._send_lock:
            if not self._sending:
                self.cancelled = True
            return self.cancelled

    def _may_send(self) -> bool:
        """Just before a request is journaled and sent: whether it may go. From then on `cancel`
        cannot stop the job (the decision and the cancel are one under the lock, so a client that
        hangs up at that moment can never leave a job sent that it believed cancelled)."""
        with self._send_lock:
            if self.stopping():
                return False
            self._sending = True
            return True

    def _still_sending(self) -> None:
        """In a request's intent, as the ledger commits it (a shared ledger's committer may do so a
        few milliseconds after `_may_send`): a stop that came meanwhile is seen here, and nothing of
        the intent is journaled, so nothing is sent after the user said stop."""
        if self.stopping():
            raise Cancelled("stopped before this job was sent")

    def _begin(self, job: JobRun, outputs: Outputs) -> JobRun:
        self.job, self.outputs = job, outputs
        self.tasks = TaskRunner(
            self.http, self.ledger, outputs, self.clock, self.timeout, self.timing, self._emit, self.stopping
        )
        self.settler = Settler(self.table, self.observations, outputs, self.clock, self._emit)
        return job

    @property
    def job_id(self) -> str | None:
        return self.job.id if self.job is not None else None

    def mark_sent(self) -> None:
        """The job has a request out at its provider (see `on_sent`)."""
        if self._on_sent is not None:
            self._on_sent()
            self._on_sent = None

    # -- a new job --------------------------------------------------------------------------

    def run(self, request: Request, route: Route, row_key: str | None = None, constraints=None) -> JobResult:
        """`constraints` (provider choices, plans) are journaled so a resume routes within them."""
        return drive(self.steps_run(request, route, row_key, constraints), self.http.wait)

    def steps_run(self, request: Request, route: Route, row_key: str | None = None, constraints=None) -> Steps:
        """`run`, as steps a scheduler can interleave with other jobs' (see steps.py)."""
        job = self._new_job(request, route, row_key, constraints)
        try:
            return (yield from self._route_through(job, route, first_seq=1))
        finally:
            self._commit(job)

    def journal_unsent(self, request: Request, route: Route, row_key: str | None, constraints) -> Unsent:
        """A new job's first attempt journaled (job, reservation, every request's intent) and not
        sent: its requests go out in one provider batch with other jobs' (batch_window.py), and
        `resume` collects it. Raises BudgetRefused as a send would."""
        job = self._new_job(request, route, row_key, constraints)
        quote = route.choice
        assert quote is not None, "only a routed job is journaled"
        job.point_at(quote)
        adapter = self._adapter(quote.offer.provider, quote.offer.model)
        attempt: Attempt | None = None
        tasks: list[Task] = []
        for index, count in enumerate(quote.assessment.requests):
            spec = job_spec(request, quote.assessment, count, f"{job.id}-1-{index}")
            attempt, task = drive(
                self._journal_request(job, 1, quote, quote.assessment, adapter, attempt, index, spec), self.http.wait
            )
            job.unsaved.add(Transaction.task_state, task.task_id, TaskState.SUBMITTING, UNSENT)
            tasks.append(task)
        self._commit(job)
        assert attempt is not None, "an assessment has at least one request"
        return Unsent(job_id=job.id, attempt_id=attempt.id, tasks=tuple(tasks), adapter=adapter)

    def _new_job(self, request: Request, route: Route, row_key: str | None, constraints) -> JobRun:
        job = self._begin(JobRun(uuid.uuid4().hex[:12], request, self.clock(), self.max_cost), self.outputs)
        first = route.choice
        row = NewJob(
            id=job.id,
            prompt=request.prompt,
            request={**request.to_json(), "constraints": constraints.to_json() if constraints else None},
            route=route_text(route),
            estimate=str(first.cost) if first else None,
            out_dir=str(self.outputs.out_dir.absolute()),  # a resume may run from another directory
            name_template=self.outputs.name_template,
            max_cost=str(self.max_cost) if self.max_cost is not None else None,
            row_key=row_key,
        )
        # committed with the first request's intent (or the job's end), with the job's lease: no
        # `jobs resume` takes it meanwhile
        job.unsaved.add(Transaction.new_job, row)
        job.unsaved.add(Transaction.claim_new, job_key(job.id), PROCESS_OWNER, LEASE_SECONDS)
        if self._idempotency_key is not None:
            job.unsaved.add(Transaction.idempotency_job, self._idempotency_key, job.id)
        return job

    def _route_through(self, job: JobRun, route: Route, first_seq: int, skip: frozenset[str] = frozenset()) -> Steps:
        """Walk the eligible offers in order until every image is delivered. `skip`: offers a resumed
        job has already seen fail it (a run never comes back to an offer it left)."""
        self.http.on_event = lambda message: self._emit("retrying", message)
        candidates = [q for q in fallback_candidates(route) if q.offer.id not in skip]
        choice = route.choice if route.choice and route.choice.offer.id not in skip else None
        choice = choice or next((q for q in candidates if q.eligible), None)
        job.estimate = choice.cost if choice else None
        if choice:
            job.point_at(choice)
        for seq, quote in enumerate(candidates, start=first_seq):
            if seq > first_seq:  # the last attempt's end, before this one waits for anything
                yield from self._committed(job)
            assessment = quote.assessment
            if job.remaining != assessment.n:  # an earlier offer delivered part of the job
                assessment = assess(job.request._replace(n=job.remaining), quote.offer, assessment.plan)
            if assessment.cost is None:  # it cannot deliver what is left of the job: the next may
                continue
            job.point_at(quote)
            if job.max_cost is not None and job.committed + assessment.cost > job.max_cost:
                return (yield from self._finish(job, JobState.FAILED, over_max_cost(job, quote, assessment)))
            end = yield from self._attempt(job, seq, quote, assessment)
            if end.detached:
                return (yield from self._detached(job))
            job.add(end)
            if end.error is not None:  # final: failed job, unknown submit, stuck, bad output, budget
                return (yield from self._finish(job, end.status, end.error))
            if job.remaining <= 0:
                return (yield from self._finish(job, JobState.SUCCEEDED, None))
            nxt = next_after(candidates, quote)
            if nxt is not None:
                self._emit(
                    "fallback", f"{end.report.error}; moving {words.count(job.remaining, 'image')} to {nxt.offer.id}"
                )
        tried = "; ".join(a.error if a.error.startswith(a.provider) else f"{a.provider}: {a.error}"
                          for a in job.attempts if a.error)  # fmt: skip
        errored = [a for a in job.attempts if a.error]
        if errored and all(a.state == AttemptState.FAILED_AT_RISK for a in errored):
            # every offer tried failed the job itself (and may have charged): that is how it ended
            failed = JobFailedError(f"{tried}; no other offer was left to try (job {job.id})", failure_hint(False))
            return (yield from self._finish(job, JobState.FAILED, failed))
        error = ProviderError(
            f"no provider could take the job ({tried or 'no offer left to try'})",
            trouble_hint(job.troubles, self.registry),
        )
        return (yield from self._finish(job, JobState.FAILED, error))

    def _detached(self, job: JobRun) -> Steps:
        """Sent and journaled as submitted; `jobs resume` collects it (the claim is given up)."""
        job.unsaved.add(Transaction.release, [job_key(job.id)], PROCESS_OWNER)
        yield from self._committed(job)
        provider, model, plan = job.last
        elapsed = self.clock() - job.start
        return JobResult(
            job_id=job.id,
            status=JobState.SUBMITTED,
            provider=provider,
            model=model,
            plan=plan,
            estimate=job.estimate,
            actual=None,
            actual_source=None,
            images=(),
            attempts=(),
            elapsed=elapsed,
            error=None,
        )

    def _finish(self, job: JobRun, status: str, error: ImgrouteError | None) -> Steps:
        actual = job.spent if job.sources else None
        source = ", ".join(sorted(job.sources)) if job.sources else None
        job.unsaved.add(
            Transaction.job_state,
            job.id,
            status,
            error=error.worded("cli")[0] if error else None,  # (the journal is read by `imgroute jobs`)
            actual=str(actual) if actual is not None else None,
            source=source,
            exit_code=error.exit_code if error else 0,
        )
        job.unsaved.add(Transaction.release, [job_key(job.id)], PROCESS_OWNER)
        yield from self._committed(job)
        provider, model, plan = job.last
        return JobResult(
            job_id=job.id,
            status=status,
            provider=provider,
            model=model,
            plan=plan,
            estimate=job.delivered_estimate,
            actual=actual,
            actual_source=source,
            images=tuple(job.saved),
            attempts=tuple(job.attempts),
            elapsed=self.clock() - job.start,
            error=error,
            usage=job.usage,
            at_risk=job.at_risk or None,
        )

    # -- one offer --------------------------------------------------------------------------

    def _attempt(self, job: JobRun, seq: int, quote: Quote, assessment: Assessment) -> Steps:
        """Try one offer: its slot, its requests journaled and sent, waited for, saved, settled."""
        offer, plan = quote.offer, assessment.plan
        model = assessment.model  # an edit may use the offer's edit endpoint (fal's .../edit)
        job.current = (offer.provider, model, assessment.cost)
        report = AttemptReport(
            provider=offer.provider,
            model=model,
            plan=plan.name,
            estimate=assessment.cost,
            state=AttemptState.REFUSED,
            error=None,
            images=0,
        )
        tasks: list[Task] = []
        account = lane_of(offer, self.keys.get(offer.provider))
        try:
            yield NeedSlot(account, fresh=True)
        except Cancelled as stopped:  # the batch stopped before this attempt sent anything
            return self._abandoned(report, stopped)
        try:
            attempt, outcome = yield from self._send_all(job, seq, quote, assessment, tasks, account)
            if self.detach and attempt and tasks and all(t.state == TaskState.SUBMITTED for t in tasks):
                return AttemptEnd(
                    report=report._replace(state=AttemptState.RUNNING),
                    images=(),
                    actual=None,
                    source=None,
                    error=None,
                    status="",
                    detached=True,
                )
            stuck = (yield from self.tasks.await_all(job, attempt.adapter, tasks)) if attempt else None
        except BudgetRefused as refused:
            return AttemptEnd(
                report=report._replace(error="budget"),
                images=(),
                actual=None,
                source=None,
                error=refused,
                status=JobState.FAILED,
            )
        except Cancelled as stopped:
            return self._abandoned(report, stopped)
        finally:
            self.slots.release(account)
            if self.ledger.shared_by_machines:
                self.ledger.release_lane(account, job.id)
        if attempt is None:  # trouble before anything was journaled (an upload): nothing to settle
            trouble = report._replace(state=AttemptState.TROUBLE, error=str(outcome.trouble))
            return AttemptEnd(report=trouble, images=(), actual=None, source=None, error=None, status=JobState.FAILED)
        return (yield from self._collect(job, attempt, tasks, stuck, outcome))

    def _team_lane(self, job: JobRun, account: str) -> Steps:
        """(A team ledger) the provider account's limits are every machine's together: wait for one
        of its slots (held until the attempt ends) and for this submit's booked moment. A stop ends
        the wait (the send is then refused by `_may_send`)."""
        if not self.ledger.shared_by_machines:
            return
        if self._lane_limits is None:  # (once per job: the same for each of its requests)
            self._lane_limits = self.door_keys.lane_limits(self.registry.limits(self.settings.limits))
        concurrency, per_minute = limit_for(self._lane_limits, account) or (None, None)
        spacing = 60.0 / per_minute if per_minute else None

        def take(tx: Transaction) -> Answer[float | None]:
            return tx.ask_lane(account, job.id, concurrency, spacing)

        order = slot_order(account)
        while (wait := (yield Exchange(lambda done: self.ledger.transact_later(take, done, order)))) is None:
            if self.stopping():
                return
            yield Pause(TEAM_SLOT_LOOK_S, scaled=True, before_send=True)
        if wait > 0:
            yield Pause(wait, scaled=False, before_send=True)

    @staticmethod
    def _abandoned(report: AttemptReport, stopped: Cancelled) -> AttemptEnd:
        error = Interrupted(str(stopped), "run the batch again to send it")
        return AttemptEnd(
            report=report._replace(state=AttemptState.ABANDONED),
            images=(),
            actual=None,
            source=None,
            error=error,
            status=JobState.CANCELLED,
        )

    def _send_all(self, job: JobRun, seq: int, quote: Quote, assessment, tasks: list[Task], account: str) -> Steps:
        """Journal and send each request of the attempt: (the attempt, how the sending went).

        The first request's intent is journaled with the attempt's budget reservation and the job's
        own row, in the one commit that must precede any send. Raises BudgetRefused, or Cancelled
        when the batch stops before anything was sent."""
        offer = quote.offer
        adapter = self._adapter(offer.provider, offer.model)
        attempt = None
        try:
            for index, count in enumerate(assessment.requests):
                spec = job_spec(job.request, assessment, count, f"{job.id}-{seq}-{index}")
                spec = adapter.upload_inputs(self.http, spec)  # free; before the journal, so it records them
                # Wait for the provider's rate before the intent is journaled: a kill while waiting
                # leaves nothing unknown.
                delay = self.slots.submit_delay(account)
                if delay > 0:
                    yield Pause(delay, scaled=False, before_send=True)  # a stop ends this wait at once
                yield from self._team_lane(job, account)
                if not self._may_send():
                    if attempt is None:
                        raise Cancelled("stopped before this job was sent")
                    return attempt, Outcome(final=stopped_partway(job, attempt), status=JobState.CANCELLED)
                try:
                    attempt, task = yield from self._journal_request(
                        job, seq, quote, assessment, adapter, attempt, index, spec
                    )
                except Cancelled:  # (the stop came while the intent waited for the ledger)
                    if attempt is None:
                        raise
                    return attempt, Outcome(final=stopped_partway(job, attempt), status=JobState.CANCELLED)
                tasks.append(task)
                gap = self.slots.gap_left(account)  # a few ms at most: the journaling's jitter
                if gap > 0:
                    yield Pause(gap, scaled=False)
                self.mark_sent()
                yield from self.tasks.submit(adapter, task, job.unsaved)  # committed just below
                if index + 1 < len(assessment.requests):
                    yield from self._committed(job)  # what it answered is durable before the next request goes
            assert attempt is not None, "an assessment has at least one request"
            job.unsaved.add(Transaction.job_state, job.id, JobState.SUBMITTED)
            job.unsaved.add(Transaction.attempt_state, attempt.id, AttemptState.RUNNING)
            yield from self._committed(job)
        except ProviderTrouble as exc:
            tasks[:] = [t for t in tasks if t.state != TaskState.FAILED]
            return attempt, Outcome(trouble=exc)
        except JobFailed as exc:  # synchronous providers refuse (moderation) in the submit itself
            if tasks and tasks[-1].state == TaskState.FAILED_AT_RISK:  # the images may move on
                return attempt, Outcome()
            if exc.never_ran and not exc.moderated:  # failed unbilled (OpenRouter's 502): they may move on too
                return attempt, Outcome()
            return attempt, Outcome(final=JobFailedError(str(exc), failure_hint(exc.moderated)))
        except SubmitUnknown as exc:
            return attempt, Outcome(final=unknown_error(exc, offer.provider, job.id), status=JobState.UNKNOWN)
        return attempt, Outcome()

    def _journal_request(self, job, seq, quote, assessment, adapter, attempt, index: int, spec) -> Steps:
        """A request's intent, committed (the job waits without holding a thread): the first opens
        the attempt (one commit with its reservation). (Attempt, Task)."""
        if attempt is None:
            attempt, task_id = yield from self._open(job, seq, quote, assessment, adapter, spec)
        else:
            attempt_id = attempt.id

            def intent(tx: Transaction) -> int:
                self._still_sending()
                return tx.task_submitting(attempt_id, index, spec.client_ref, spec.n, spec.to_json())

            task_id = yield Exchange(lambda done: self.ledger.transact_later(intent, done))
        return attempt, Task(task_id, spec, TaskState.SUBMITTING)

    def _open(self, job: JobRun, seq: int, quote: Quote, assessment, adapter: Adapter, spec: JobSpec) -> Steps:
        """The attempt's reservation (the job becoming `submitting`) and its first request's intent,
        with the job's writes kept until now (its own row, if new), in one commit: the one a job must
        make before its first request is sent. BudgetRefused leaves nothing written.
        (Attempt, task id)."""
        offer, plan = quote.offer, assessment.plan.name
        billed = OfferRef(provider=offer.provider, model=assessment.model, plan=plan)
        breakdown = [line.text for line in assessment.breakdown]

        def reserve_and_intent(tx: Transaction) -> tuple[int, int]:
            self._still_sending()
            job.unsaved.replay_into(tx)
            attempt_id = tx.reserve_attempt(
                job.id, seq, billed, assessment.cost, breakdown, job_state=JobState.SUBMITTING
            )
            return attempt_id, tx.task_submitting(attempt_id, 0, spec.client_ref, spec.n, spec.to_json())

        attempt_id, task_id = yield Exchange(lambda done: self.ledger.transact_later(reserve_and_intent, done))
        job.unsaved.clear()
        shape = attempt_shape(job.request, quote, assessment)
        attempt = Attempt(
            id=attempt_id,
            provider=offer.provider,
            model=assessment.model,
            plan=plan,
            estimate=assessment.cost,
            shape=shape,
            adapter=adapter,
        )
        return attempt._replace(images=assessment.n), task_id

    # -- waiting, saving and settling (shared by run and resume) -----------------------------

    def _collect(self, job: JobRun, attempt: Attempt, tasks: list[Task], stuck, outcome: Outcome) -> Steps:
        yield from self._committed(job)  # the results the polls saw, durable before any is downloaded
        yield Later()  # downloading and saving hold no slot: jobs that do go first
        saved, problems = self.settler.save_results(job, attempt.shape, tasks)
        return self.settler.settle(job, attempt, tasks, saved, problems, stuck, outcome)

    def _commit(self, job: JobRun) -> None:
        """Commit the journal writes waiting in `job.unsaved`; then the spooled answers whose saved
        files they record have served their purpose. (A kill before the commit leaves the spool
        file: resume saves from it again and finds the file already there by its content.)"""
        self.ledger.commit(job.unsaved)
        self._spool_served(job)

    def _committed(self, job: JobRun) -> Steps:
        """`_commit` as a step: the job waits for it without holding a thread (a scheduler's
        thread runs other jobs while the ledger commits this one's writes with theirs)."""
        if job.unsaved:
            yield Exchange(lambda done: self.ledger.commit_later(job.unsaved, done))
        self._spool_served(job)

    def _spool_served(self, job: JobRun) -> None:
        for output in job.spooled:
            self.outputs.discard(output)
        job.spooled.clear()

    # -- plumbing -----------------------------------------------------------------------------

    def _adapter(self, provider: str, model: str | None = None) -> Adapter:
        if provider not in self.registry.known():  # a relay declared in a pricing file this run did not load
            raise ConfigError(
                f"{provider} is not a provider this run knows: no loaded pricing file declares it",
                f"give the file that declares it: {named('pricing')} FILE (or put it in ~/.imgroute/pricing.yaml)",
            )
        if provider not in self.keys:
            env = self.registry.spec(provider).key_env
            raise ConfigError(f"no {provider} key", f"set {env}, or run: imgroute keys set {provider}")
        offer = self.table.offer(provider, model) if model else None
        return self.door_keys.adapter(provider, offer is not None and offer.window_s is not None)

    def _emit(self, state: str, message: str) -> None:
        job = self.job
        provider, model, estimate = job.current if job else ("", "", None)
        self.on_event(
            Event(
                provider=provider,
                model=model,
                state=state,
                message=message,
                estimate=estimate,
                elapsed=self.clock() - (job.start if job else 0),
            )
        )
