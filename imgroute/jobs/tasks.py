"""One request at a provider, as a job knows it: sent under the submit rule, polled on the
provider's learned schedule, its results made durable before anything is downloaded.

A Task is the run's view of one journaled request (Kie: one per image). `TaskRunner` does what can
happen to tasks; `jobs.JobRunner` decides what happens to the job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from imgroute import policy
from imgroute.errors import (
    JobFailed,
    MalformedAnswer,
    ProviderError,
    ProviderTrouble,
    Stuck,
    SubmitUnknown,
    TransportFailure,
)
from imgroute.jobs.outputs import Outputs, SavedImage
from imgroute.jobs.polling import Look, PollTiming, backoff
from imgroute.jobs.steps import Exchange, Pause, Steps
from imgroute.models import JobSpec, TaskState
from imgroute.net.http import Http
from imgroute.providers.base import Adapter, Usage
from imgroute.store.interface import Ledger, Transaction, Unsaved

if TYPE_CHECKING:
    from imgroute.jobs.state import JobRun


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
        self.never_ran = False  # failed without running (an expired batch's request): not billed
        self.saved: list[SavedImage] = []
        self.sent_at: float | None = None  # when this run's submit was answered (None: found in flight by a resume)
        self.missed_at: float | None = None  # when (in the poll schedule) it was last seen not done
        self.polls = 0


class Unsent(NamedTuple):
    """A job journaled up to its requests' intents, waiting to go out in a provider batch."""

    job_id: str
    attempt_id: int
    tasks: tuple[Task, ...]
    adapter: Adapter


class TaskRunner:
    """What can happen to one job's tasks: submitting, polling, recording their results."""

    def __init__(
        self,
        http: Http,
        ledger: Ledger,
        outputs: Outputs,
        clock: Callable[[], float],
        timeout: float,
        timing: PollTiming | None,
        emit: Callable[[str, str], None],
        stopping: Callable[[], bool] = lambda: False,
    ):
        self.http, self.ledger, self.outputs, self.clock = http, ledger, outputs, clock
        self.timeout, self.timing, self.emit, self.stopping = timeout, timing, emit, stopping

    def submit(self, adapter: Adapter, task: Task, unsaved: Unsaved) -> Steps:
        """Submit a journaled task; repeat only when the HTTP layer's submit rule allows it. What it
        answered is kept in `unsaved`, for the caller to commit before anything else is sent."""
        self.emit("submitting", f"sending request {task.spec.client_ref}")
        attempt = 0
        while True:
            try:
                submission = yield from self._submit_once(adapter, task.spec)
            except KeyboardInterrupt:  # the request is out and its answer will never be read
                self.ended(task, TaskState.UNKNOWN, "interrupted while waiting for the answer")
                raise
            except ProviderTrouble as exc:
                delay = self.http.submit_retry_delay(exc.kind, exc.retry_after, attempt, adapter.idempotent_submit)
                if delay is None or self.stopping():  # a batch's stop: nothing is sent again
                    self.ended(task, TaskState.FAILED, str(exc))
                    raise
                self.emit("retrying", f"{exc}; retrying in {delay:.1f}s")
                failure: tuple[TaskState, Exception] = (TaskState.FAILED, exc)
            except JobFailed as exc:
                self.failed(task, exc)
                raise
            except SubmitUnknown as exc:
                delay = self.http.submit_retry_delay(None, None, attempt, adapter.idempotent_submit)
                if delay is None or self.stopping():  # (a replay under its idempotency key is left to a resume)
                    self.ended(task, TaskState.UNKNOWN, str(exc))
                    raise
                self.emit("retrying", f"{exc}; retrying with the same idempotency key in {delay:.1f}s")
                failure = (TaskState.UNKNOWN, exc)
            else:
                task.handle, task.sent_at = submission.handle, self.clock()
                if submission.outputs:  # synchronous: id and images (spooled: durable) recorded together
                    self.record(task, submission.outputs, submission.usage, unsaved, submission.job_id)
                else:
                    unsaved.add(Transaction.task_submitted, task.task_id, submission.job_id, submission.handle)
                    task.state = TaskState.SUBMITTED
                return
            yield Pause(delay, before_send=True)  # a stop ends this wait, and then nothing is sent again
            if self.stopping():
                state, error = failure
                self.ended(task, state, str(error))
                raise error
            attempt += 1

    def _submit_once(self, adapter: Adapter, spec: JobSpec) -> Steps:
        """One submit. A synchronous provider's, which holds the request open while it generates, is
        sent on the exchanges' event loop where the door has one (batch, serve): no thread waits
        for it. Otherwise it is sent from this thread (with a stand-in worker on a scheduler)."""
        if not adapter.synchronous:
            return adapter.submit(self.http, spec)
        if self.http.exchanges is None:
            with self.http.generating():
                return adapter.submit(self.http, spec)
        prepared = adapter.prepare(spec)
        headers, body = adapter.outgoing(prepared)
        send = self.http.post_awaited(prepared.url, headers=headers, timeout=policy.SYNC_READ_TIMEOUT_S, **body)
        try:
            response = yield Exchange(send)
        except TransportFailure as exc:
            raise adapter.unanswered(exc) from None
        return adapter.read_submission(spec, response)

    def ended(self, task: Task, state: TaskState, detail: str, moderated: bool = False) -> None:
        task.state, task.moderated = state, moderated
        task.error = detail if state in (TaskState.FAILED, TaskState.FAILED_AT_RISK) else None
        with self.ledger.transaction() as tx:
            tx.task_state(task.task_id, state, detail)

    def failed(self, task: Task, exc: JobFailed) -> None:
        """The provider failed the request: finally, or (as its adapter marks it) without saying
        whether it charged, its images free to move on (a moderated failure is always final)."""
        moved_on = exc.charge_unknown and not exc.moderated
        self.ended(task, TaskState.FAILED_AT_RISK if moved_on else TaskState.FAILED, str(exc), exc.moderated)
        task.never_ran = exc.never_ran

    def await_all(self, job: JobRun, adapter: Adapter, tasks: list[Task]) -> Steps:
        """Wait for submitted tasks to finish or fail; the error to report if time ran out first."""
        try:
            yield from self.wait(job, adapter, [t for t in tasks if t.state in (TaskState.SUBMITTED, "running")])
        except Stuck as exc:
            return ProviderError(
                f"{exc} (job {job.id}); it is still running at {adapter.provider} and recorded in the ledger",
                f"finish it later with: imgroute jobs resume {job.id}",
            )
        return None

    def wait(self, job: JobRun, adapter: Adapter, pending: list[Task]) -> Steps:
        """Poll until every task has finished or failed. Waits before each round: a job polled the
        moment it was submitted is never done, and every poll is a request."""
        timing = self.timing
        waits = timing.waits(adapter.provider, adapter.poll_schedule) if timing else backoff(adapter.poll_schedule)
        deadline = job.start + max(self.timeout, adapter.window_s * self.http.scale)
        planned = 0.0  # the schedule's time since the submits, not the clock's: see PollTiming.observe
        # The first wait counts from the last submit's answer, not from now: journaling it took
        # a moment, and the provider's clock started before that.
        sent = [t.sent_at for t in pending if t.sent_at is not None]
        already = (self.clock() - max(sent)) / self.http.scale if sent and self.http.scale > 0 else 0.0
        while pending:
            wait = next(waits)
            interval = wait.seconds if isinstance(wait, Look) else wait
            if self.clock() + interval * self.http.scale > deadline:
                raise Stuck(f"timed out after {self.timeout:g}s waiting for {adapter.provider}")
            yield Pause(max(0.0, interval - already))
            already = 0.0
            planned += interval
            if isinstance(wait, Look):  # (only a look at what the other jobs have learned)
                continue
            for task in list(pending):
                if self.poll_once(job, adapter, task, planned):
                    pending.remove(task)

    def poll_once(self, job: JobRun, adapter: Adapter, task: Task, planned: float) -> bool:
        """Ask once; True when the task has ended (succeeded, with its results recorded, or failed)."""
        task.polls += 1
        try:
            poll = adapter.poll(self.http, task.handle)
        except JobFailed as exc:
            self.failed(task, exc)
            return True
        except (ProviderTrouble, MalformedAnswer) as exc:
            # The job exists and may be paid for: keep asking until the deadline.
            self.emit("retrying", f"status check failed ({exc}); still waiting")
            return False
        if poll.state == "succeeded":  # journaled once the slot is given back (see JobRunner._collect)
            self.record(task, poll.outputs, poll.usage or task.usage, job.unsaved)
            if self.timing is not None and task.sent_at is not None:
                self.timing.observe(adapter.provider, planned, task.polls, task.missed_at, poll.took)
            return True
        task.missed_at = planned
        if poll.state != task.state:
            with self.ledger.transaction() as tx:
                tx.task_state(task.task_id, TaskState.RUNNING, poll.detail)
            task.state = poll.state
        progress = f" {poll.progress}%" if poll.progress is not None else ""
        self.emit(poll.state, f"{poll.detail}{progress}")
        return False

    def record(self, task: Task, outputs, usage: Usage | None, unsaved: Unsaved, provider_job_id=None) -> None:
        """Make results durable before saving: URLs as they are, bytes into the spool. (Their record
        waits in `unsaved` for the next commit: until then the provider still has them.)"""
        recorded = [
            self.outputs.spool(f"{task.spec.client_ref}-{position}", output.data)
            if output.data is not None
            else {"url": output.url}
            for position, output in enumerate(outputs)
        ]
        task.outputs, task.usage, task.state = recorded, usage, TaskState.SUCCEEDED
        unsaved.add(
            Transaction.task_outputs,
            task.task_id,
            recorded,
            usage._asdict() if usage else None,
            provider_job_id=provider_job_id,
            handle=task.handle,
        )
