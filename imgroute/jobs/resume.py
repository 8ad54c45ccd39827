"""Resume: finish a journaled job from the ledger alone, through the same steps as a run.

What was submitted is polled and downloaded, results recorded but not saved are fetched again, a
submit whose fate is unknown is never sent again (except under an idempotency key, which replays
it), a request the provider failed without saying whether it charged is over (its images moved on;
its offer is not tried again), and images never sent at all are routed as `gen` would, within the
job's own choices.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, cast

from imgroute.errors import (
    Busy,
    ImgrouteError,
    InputsElsewhere,
    JobFailed,
    JobFailedError,
    MalformedAnswer,
    ProviderError,
    ProviderTrouble,
    SubmitUnknown,
    UsageError,
)
from imgroute.jobs.fallback import settle_hint
from imgroute.jobs.outputs import ImageShape, Outputs, SavedImage
from imgroute.jobs.state import Attempt, AttemptEnd, AttemptReport, JobResult, JobRun, Outcome, failure_hint
from imgroute.jobs.steps import NeedSlot, Steps, drive
from imgroute.jobs.tasks import Task
from imgroute.models import UNSENT, AttemptState, Constraints, JobState, Request, TaskState
from imgroute.pricing.router import Route
from imgroute.providers.base import Adapter, Usage
from imgroute.providers.registry import lane
from imgroute.store.interface import LEASE_SECONDS, MACHINE, PROCESS_OWNER, Transaction, held_by, job_key
from imgroute.store.records import AttemptRecord, TaskRecord
from imgroute.vocab import DEFAULT_NAME

if TYPE_CHECKING:
    from imgroute.jobs.runner import JobRunner
    from imgroute.store.records import JobRecord


class Resume:
    """The resume half of jobs.JobRunner (a mixin: it uses the runner's ledger, tasks and steps,
    which each method names as `runner`, typed as the JobRunner it is part of)."""

    def resume(self, job_id: str, reroute: Callable[[Request, Constraints], Route]) -> JobResult:
        """Finish a journaled job: poll and download what was submitted, never resubmit what may
        have been sent (except under an idempotency key), and route images never sent at all."""
        runner = cast("JobRunner", self)  # (the runner this half belongs to, as its type)
        return drive(runner.steps_resume(job_id, reroute), runner.http.wait)

    def steps_resume(self, job_id: str, reroute: Callable[[Request, Constraints], Route]) -> Steps:
        runner = cast("JobRunner", self)  # (the runner this half belongs to, as its type)
        with runner.ledger.transaction() as tx:
            held = tx.claim([job_key(job_id)], PROCESS_OWNER, LEASE_SECONDS)
        if held:
            raise Busy(f"job {job_id} is being run by another imgroute ({held_by(held)})", "let that one finish it")
        record = runner.ledger.job(job_id)
        if record is None:
            raise UsageError(f"no job {job_id!r} in the ledger", "see the jobs it has: imgroute jobs")
        request = Request.from_json(record.request)
        max_cost = runner.max_cost if runner.max_cost is not None else record.max_cost
        template = record.name_template or DEFAULT_NAME
        out_dir = Path(record.out_dir or ".")
        if runner.ledger.shared_by_machines and record.host not in (None, MACHINE):  # taken over from another machine
            _inputs_here_or_wait(runner, record, request)
            out_dir = runner.outputs.out_dir  # its images are saved where the taker runs
        outputs = Outputs(out_dir, template, runner.spool_dir, runner.http, resuming=True)
        job = runner._begin(JobRun(job_id, request, runner.clock(), max_cost), outputs)
        job.estimate = record.estimate
        files: dict[int | None, list[SavedImage]] = {}
        for row in runner.ledger.files(job_id):
            runner.outputs.claimed.add(Path(row.path))
            image = SavedImage(
                path=Path(row.path),
                sha256=row.sha256,
                format=row.format,
                width=row.width,
                height=row.height,
                bytes=row.bytes,
                verified=row.verified,
            )
            files.setdefault(row.task_id, []).append(image)
        job.saved = [image for group in files.values() for image in group]
        by_attempt: dict[int, list[TaskRecord]] = {}
        for task in runner.ledger.tasks(job_id):
            by_attempt.setdefault(task.attempt_seq, []).append(task)
        final_error: ImgrouteError | None = None
        final_status, last_seq = JobState.SUCCEEDED, 0
        left: set[str] = set()  # offers that failed the job without saying whether they charged
        for attempt in runner.ledger.attempts(job_id):
            last_seq = attempt.seq
            if any(r.state == TaskState.FAILED_AT_RISK for r in by_attempt.get(attempt.seq, [])):
                offer = runner.table.offer(attempt.provider, attempt.model)
                left.add(offer.id if offer is not None else f"{attempt.provider}/{attempt.model}")
            job.last = (attempt.provider, attempt.model, attempt.plan)
            end = yield from runner._resume_attempt(job, attempt, by_attempt.get(attempt.seq, []), files)
            yield from runner._committed(job)
            job.add(end)
            if end.error is not None and final_error is None:
                final_error, final_status = end.error, end.status
        if final_error is None and job.remaining > 0:  # images never sent: routed as `gen` would
            stored = Constraints.from_json(record.request.get("constraints"))
            route = reroute(request._replace(n=job.remaining), stored)
            return (yield from runner._route_through(job, route, first_seq=last_seq + 1, skip=frozenset(left)))
        return (yield from runner._finish(job, final_status, final_error))

    def _resume_attempt(self, job: JobRun, attempt: AttemptRecord, rows: list[TaskRecord], files) -> Steps:
        runner = cast("JobRunner", self)  # (the runner this half belongs to, as its type)
        report = AttemptReport(
            provider=attempt.provider,
            model=attempt.model,
            plan=attempt.plan,
            estimate=attempt.estimate,
            state=attempt.state,
            error=attempt.error,
            images=0,
        )._replace(at_risk=attempt.at_risk)
        if _settled(attempt, rows, files):  # settled before the interruption: count it as it stands
            error = None
            if attempt.state == AttemptState.FAILED and attempt.error and not _moved_on(rows):
                error = JobFailedError(attempt.error, failure_hint("moderat" in attempt.error.lower()))
            saved = sum(len(files.get(r.id, [])) for r in rows)
            report = report._replace(images=saved)
            end = AttemptEnd(
                report=report,
                images=(),
                actual=attempt.actual,
                source=attempt.actual_source,
                error=error,
                status=attempt.state,
            )
            return end._replace(at_risk=attempt.at_risk or Decimal(0))  # (a failure of unknown charge: over)
        if rows and all(r.state == TaskState.SUBMITTING and r.detail == UNSENT for r in rows):
            # waited for a provider batch that was never sent: nothing reached the provider
            with runner.ledger.transaction() as tx:
                for row in rows:
                    tx.task_state(row.id, TaskState.FAILED, "never sent: its batch was not sent")
                tx.attempt_state(attempt.id, AttemptState.ABANDONED, error="its batch was never sent")
            return _abandoned(report)
        if not rows:  # interrupted after the budget reservation, before anything was journaled to send
            with runner.ledger.transaction() as tx:
                tx.attempt_state(attempt.id, AttemptState.ABANDONED, error="interrupted before sending")
            return _abandoned(report)
        job.current = (attempt.provider, attempt.model, attempt.estimate)
        adapter = runner._adapter(attempt.provider, attempt.model)
        tasks: list[Task] = []
        unknown_notes: list[str] = []
        for row in rows:
            task = yield from runner._resumed_task(job, adapter, row, files, unknown_notes)
            tasks.append(task)
        shape = ImageShape.of(tasks[0].spec, attempt.provider, attempt.estimate)
        resumed = Attempt(
            id=attempt.id,
            provider=attempt.provider,
            model=attempt.model,
            plan=attempt.plan,
            estimate=attempt.estimate,
            shape=shape,
            adapter=adapter,
        )
        stuck = None
        if any(t.state in (TaskState.SUBMITTED, TaskState.RUNNING) for t in tasks):
            runner.mark_sent()  # under way at its provider: a stop waits for it
            where = lane(attempt.provider, adapter.window_s > 0, runner.keys.get(attempt.provider))
            yield NeedSlot(where, fresh=False)  # at the provider: counts against its limit
            try:
                stuck = yield from runner.tasks.await_all(job, adapter, tasks)
            finally:
                runner.slots.release(where)
        outcome = Outcome()
        if unknown_notes:
            hint = settle_hint(attempt.provider, job.id)
            outcome = Outcome(final=ProviderError("; ".join(unknown_notes), hint), status=JobState.UNKNOWN)
        return (yield from runner._collect(job, resumed, tasks, stuck, outcome))

    def _find_lost(self, job: JobRun, adapter: Adapter, task: Task, row: TaskRecord, unknown_notes: list) -> Steps:
        """A lost submit at a provider that can be asked: adopt the job it made, never send it again."""
        runner = cast("JobRunner", self)  # (the runner this half belongs to, as its type)
        runner._emit("submitting", "looking the lost request up at the provider")
        try:
            found = adapter.find(runner.http, task.spec, row.created)
        except (ProviderTrouble, MalformedAnswer) as exc:
            unknown_notes.append(f"{exc}; it is not sent again")
            return
        if found is None:
            runner.tasks.ended(task, TaskState.UNKNOWN, "not found among the provider's recent jobs")
            unknown_notes.append(_unknown_advice(adapter.provider, row, looked=True))
            return
        task.handle = found.handle
        if found.outputs:
            runner.tasks.record(task, found.outputs, found.usage, job.unsaved, found.job_id)
        else:
            job.unsaved.add(Transaction.task_submitted, task.task_id, found.job_id, found.handle)
            task.state = TaskState.SUBMITTED
        runner.ledger.commit(job.unsaved)  # adopted: durable before anything else happens
        yield from ()

    def _resumed_task(self, job: JobRun, adapter: Adapter, row: TaskRecord, files, unknown_notes: list) -> Steps:
        """A journaled request as a Task again: its results, or what can be done about it."""
        runner = cast("JobRunner", self)  # (the runner this half belongs to, as its type)
        if row.spec is None:  # (every request has been journaled with its spec since the ledger's m002)
            raise ProviderError(f"request {row.client_ref} was journaled without what it sent", "it cannot be resumed")
        task = Task(row.id, row.spec, row.state, row.handle)
        task.saved = list(files.get(row.id, []))
        if row.outputs is not None:
            task.outputs, task.state = row.outputs, TaskState.SUCCEEDED
            task.usage = Usage(**row.usage) if row.usage else None
        elif adapter.synchronous and task.state in (TaskState.SUBMITTED, TaskState.RUNNING):
            # An answer with images is recorded together with them; without them it was lost.
            runner.tasks.ended(task, TaskState.UNKNOWN, "the answer was not recorded")
            unknown_notes.append(_unknown_advice(adapter.provider, row))
        elif task.state in (TaskState.SUBMITTING, TaskState.UNKNOWN) and adapter.findable:
            yield from runner._find_lost(job, adapter, task, row, unknown_notes)
        elif task.state in (TaskState.SUBMITTING, TaskState.UNKNOWN):
            if adapter.idempotent_submit:
                runner.mark_sent()
                runner._emit("submitting", "replaying the submit under its idempotency key")
                try:
                    yield from runner.tasks.submit(adapter, task, job.unsaved)
                except (ProviderTrouble, SubmitUnknown, JobFailed) as exc:
                    unknown_notes.append(str(exc))
                runner.ledger.commit(job.unsaved)  # what it answered, durable before the next request
            else:
                detail = row.detail if row.state == TaskState.UNKNOWN and row.detail else "interrupted while submitting"
                runner.tasks.ended(task, TaskState.UNKNOWN, detail)
                unknown_notes.append(_unknown_advice(adapter.provider, row))
        elif task.state in (TaskState.FAILED, TaskState.FAILED_AT_RISK):
            task.error = row.detail  # over: never polled or sent again
        return task


def _abandoned(report: AttemptReport) -> AttemptEnd:
    """An attempt that sent nothing, over: its images are routed again."""
    return AttemptEnd(
        report=report._replace(state=AttemptState.ABANDONED, error=None),
        images=(),
        actual=None,
        source=None,
        error=None,
        status="abandoned",
    )


def recorded_result(ledger, job_id: str) -> JobResult:
    """A finished job as the ledger has it (a batch's row done by an earlier run): its files,
    costs and attempts, nothing sent."""
    record = ledger.job(job_id)
    attempts = ledger.attempts(job_id)
    images = tuple(
        SavedImage(
            path=Path(f.path),
            sha256=f.sha256,
            format=f.format,
            width=f.width,
            height=f.height,
            bytes=f.bytes,
            verified=f.verified,
        )
        for f in ledger.files(job_id)
    )
    last = next(
        (a for a in reversed(attempts) if a.state == AttemptState.SUCCEEDED), attempts[-1] if attempts else None
    )
    reports = tuple(
        AttemptReport(
            provider=a.provider,
            model=a.model,
            plan=a.plan,
            estimate=a.estimate,
            state=a.state,
            error=a.error,
            images=0,
            at_risk=a.at_risk,
        )
        for a in attempts
    )
    return JobResult(
        job_id=job_id,
        status=record.state,
        provider=last.provider if last else None,
        model=last.model if last else None,
        plan=last.plan if last else None,
        estimate=record.estimate,
        actual=record.actual,
        actual_source=record.actual_source,
        images=images,
        attempts=reports,
        elapsed=0.0,
        error=None,
        at_risk=sum((a.at_risk for a in attempts if a.at_risk is not None), Decimal(0)) or None,
    )


def _settled(attempt: AttemptRecord, rows: list[TaskRecord], files) -> bool:
    """An attempt that had ended, every result of it saved, before the job was interrupted."""
    ended = (
        AttemptState.SUCCEEDED,
        AttemptState.TROUBLE,
        AttemptState.FAILED,
        AttemptState.FAILED_AT_RISK,
        AttemptState.REFUSED,
    )
    over = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.FAILED_AT_RISK)
    return attempt.state in ended and all(
        r.state in over and len(files.get(r.id, [])) >= _output_count(r) for r in rows
    )


def _moved_on(rows: list[TaskRecord]) -> bool:
    """Whether what the attempt did not deliver moved on: every request that failed, failed without
    the provider saying whether it charged (so stays true once `jobs settle` has said)."""
    failed = [r for r in rows if r.state != TaskState.SUCCEEDED]
    return bool(failed) and all(r.state == TaskState.FAILED_AT_RISK for r in failed)


def _output_count(row: TaskRecord) -> int:
    if row.outputs is not None:
        return len(row.outputs)
    return row.images if row.state == TaskState.SUCCEEDED else 0


def _unknown_advice(provider: str, row: TaskRecord, looked: bool = False) -> str:
    """What is known of a request whose fate is not: when it went, and what cut it off."""
    when = dt.datetime.fromtimestamp(row.created).strftime("%Y-%m-%d %H:%M:%S")
    cannot = "it is not among its recent jobs" if looked else f"{provider} offers no way to look it up"
    if row.state == TaskState.SUBMITTING:  # journaled, and the process ended before any answer
        happened = f"was being sent at {when} when imgroute stopped"
    else:  # sent, and its answer was lost: a dropped connection, a timeout, an unreadable body
        happened = f"was sent at {when} and its answer was lost ({row.detail or 'no usable answer'})"
    return (
        f"{provider}: request {row.client_ref} {happened}; whether it reached {provider} is unknown and "
        f"{cannot}, so it is not sent again"
    )


def _inputs_here_or_wait(runner: JobRunner, record: JobRecord, request: Request) -> None:
    """A job taken over from another machine needs its input images here: URLs, or files in a
    folder both machines share. Else it waits for its own machine (the claim is given up)."""
    inputs = [*request.images, *([request.mask] if request.mask else [])]
    missing = [image.source for image in inputs if not image.is_url and not Path(image.source).is_file()]
    if not missing:
        return
    job_id, host = record.id, record.host
    waits = InputsElsewhere(
        f"job {job_id} is an edit from {host} whose input {missing[0]} is not on this machine: it waits for {host}",
        f"run `imgroute jobs resume {job_id}` on {host}, or keep edit inputs in a folder both machines share",
    )
    with runner.ledger.transaction() as tx:  # (`imgroute jobs` shows why it waits, in its error)
        tx.job_state(job_id, record.state, error=waits.worded("cli")[0])
        tx.release([job_key(job_id)], PROCESS_OWNER)
    raise waits
