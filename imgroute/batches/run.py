"""Running a planned batch: many jobs at once within each provider's limits, resumable by row.

Every row runs through the same JobRunner as `gen` (fallback, budgets, journal, verified saves),
as steps a scheduler interleaves on a few threads sharing one HTTP client (scheduler.py). Each
row's job carries the row's stable key in the ledger: running the same file again skips rows that
are done, resumes rows that are in flight without submitting again, and retries only rows that
failed for reasons worth retrying.

On a team ledger (PostgreSQL: many machines) the same file run on several machines splits its rows:
each row is claimed as it starts, a row another machine holds is put aside, and once this machine's
own rows are done the rows put aside are looked at again until each has ended there or its lease
ran out (its machine died) and it is taken over here, resumed as `jobs resume` would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from imgroute import signals
from imgroute.batches import window as batch_window
from imgroute.batches.pool import JobPool
from imgroute.batches.rows import RETRYABLE_EXIT_CODES, Row, row_constraints
from imgroute.errors import Busy, ImgrouteError, InputsElsewhere
from imgroute.jobs.resume import recorded_result
from imgroute.jobs.runner import JobRunner
from imgroute.jobs.state import JobOptions, JobResult, OutputOptions
from imgroute.jobs.steps import Exchange, Steps
from imgroute.models import UNFINISHED_JOB_STATES, JobState
from imgroute.store.interface import (
    LEASE_SECONDS,
    PROCESS_OWNER,
    Answer,
    Transaction,
    claim_order,
    job_key,
    row_key,
)
from imgroute.store.records import Holder, RowJob
from imgroute.vocab import DEFAULT_NAME

if TYPE_CHECKING:
    from imgroute.models import Constraints, Request
    from imgroute.pricing.router import Route
    from imgroute.session import Services

WORKERS_MAX = 4  # measured: more threads than this only add contention (scripts/bench_batch.py)
PUT_ASIDE = "held by another machine: looked at again once this machine's rows are done"


class Outcome(StrEnum):
    """How a row of the batch ended, in this run."""

    DONE = "done"
    SKIPPED = "skipped"  # done by an earlier run
    FAILED = "failed"
    UNSERVABLE = "unservable"  # no offer can deliver it
    NOT_STARTED = "not_started"  # the batch stopped first


class RowResult(NamedTuple):
    row: Row
    outcome: Outcome
    result: JobResult | None
    note: str = ""
    exit_code: int | None = None  # a failed row's: its job's, or 1 for a failure inside imgroute

    @property
    def code(self) -> int | None:
        if self.outcome != Outcome.FAILED:
            return None
        if self.result is not None and self.result.error is not None:
            return self.result.error.exit_code
        return self.exit_code or 1


class BatchRun:
    """A planned batch's rows run on a door's services (session.open_many: its ledger, scheduler,
    limits and HTTP client), each reported to `on_result` as it ends."""

    def __init__(
        self,
        services: Services,
        *,
        routes,
        base_constraints,
        out_dir: Path,
        timeout: float,
        concurrency: int,
        batch_label: str,
        on_result: Callable[[RowResult], None],
        reroute,
        on_stop: Callable[[int], None] | None = None,
    ):
        self.services = services
        self.routes = routes
        self.base = base_constraints
        self.out_dir = out_dir
        self.timeout = timeout
        self.concurrency = concurrency
        self.label = batch_label
        self.on_result = on_result
        self.reroute = reroute
        self.on_stop = on_stop or (lambda sent: None)  # a stop is being acted on: `sent` jobs are awaited
        self.pool: JobPool | None = None  # while `run` runs
        self._held: dict[str, Holder] = {}  # rows another live imgroute has claimed: who
        # (a team ledger) rows another machine held when they came up: the lease (the row's, or its
        # job's) that stood in the way
        self._aside: dict[Row, str] = {}
        self._priors: dict = {}  # row key -> what earlier runs of this file did (read in `run`)
        self._stop_asked = False

    @staticmethod
    def workers_for(concurrency: int) -> int:
        """Threads for the steps that work (HTTP, journal, files): a job waiting for its provider
        needs none, so a few serve many jobs, and fewer threads contend less for Python's lock."""
        return max(2, min(WORKERS_MAX, concurrency))

    @property
    def running(self) -> int:
        """Jobs at the providers right now: sent, not yet ended (for the progress line)."""
        return self.pool.sent if self.pool is not None else 0

    def row_key(self, row: Row) -> str:
        return row_key(self.label, row.key)

    def run(self, rows: list[Row], on_stop=None, idle=None) -> None:
        """Run every row; on a stop request (the first Ctrl-C or SIGTERM, or `request_stop`) send
        nothing new, let the jobs already sent finish and be recorded, then raise
        KeyboardInterrupt. `on_stop(sent)` is told how many jobs a stop waits for; `idle` is
        called between results (a closed stdout is looked for there)."""
        ledger = self.services.ledger
        # Claim the rows first (one commit), then read what earlier runs did: a row another live
        # imgroute runs is left to it, and one it has just finished is seen as done. (A team
        # ledger's machines claim each row as it starts instead: they share the file's rows.)
        keys = [self.row_key(row) for row in rows]
        if not ledger.shared_by_machines:
            with ledger.transaction() as tx:
                self._held = tx.claim(keys, PROCESS_OWNER, LEASE_SECONDS)
        self._priors = ledger.jobs_for_rows(self.label)
        self._send_waiting_rows(rows)
        try:
            self._run_rows(rows, on_stop or self.on_stop, idle or (lambda: None))
            while self._aside:
                self._run_rows(self._rows_put_aside(), on_stop or self.on_stop, idle or (lambda: None))
        finally:
            if self.left_running:  # threads may still be inside a step: the process ends now
                self.services.abandoned = True
            else:  # every row has been reported: no job uses the connection
                with ledger.transaction() as tx:
                    tx.release([k for k in keys if k not in self._held], PROCESS_OWNER)

    def _run_rows(self, rows: list[Row], on_stop, idle) -> None:
        self._aside = {}
        self.pool = self.pool_for(self.services.scheduler)
        if self._stop_asked:
            self.pool.request_stop()
        self.pool.run(rows, self._row_steps, self._ended, self._report, on_stop, idle)

    def _report(self, result: RowResult) -> None:
        if result.note is not PUT_ASIDE:  # (reported once it is looked at again)
            self.on_result(result)

    def _put_aside(self, row: Row, lease: str) -> RowResult:
        self._aside[row] = lease
        return RowResult(row=row, outcome=Outcome.SKIPPED, result=None, note=PUT_ASIDE)

    def _rows_put_aside(self) -> list[Row]:
        """The rows other machines held, once there is a reason to look at them again: one of them
        has ended there, or its lease may have run out (a quarter of a lease later). A stop asked
        for meanwhile stops the batch as it would between two results."""
        aside, ledger = self._aside, self.services.ledger
        asked = threading.Event()
        with signals.stop_requests(asked):
            while not asked.wait(min(1.0, LEASE_SECONDS / 4)):
                if any(self._ended_elsewhere(row) for row in aside) or self._leases_out(aside, ledger):
                    return list(aside)
        raise KeyboardInterrupt

    def _ended_elsewhere(self, row: Row) -> bool:
        latest = self.services.ledger.row_job(self.row_key(row))
        return latest is not None and latest.state not in UNFINISHED_JOB_STATES

    @staticmethod
    def _leases_out(aside: dict[Row, str], ledger) -> bool:
        """Whether any of the leases in the way ran out or was given up."""
        keys = list(aside.values())
        expiries, now = ledger.lease_expiries(keys), ledger.clock()
        return any(expiries.get(key) is None or expiries[key] < now for key in keys)

    def pool_for(self, scheduler) -> JobPool:
        """Rows started ahead of free slots, so a slot never waits for a row to be journaled; the
        cap keeps memory flat however long the file is. Rows done at their provider and only
        waiting to be saved (which goes after everything else) do not count against it, up to one
        per slot: past that the workers are behind, and more rows would only wait in memory."""
        ahead = self.concurrency + max(8, self.concurrency // 2)
        return JobPool(scheduler, ahead, slack=lambda: min(scheduler.unhurried(), self.concurrency))

    def request_stop(self) -> None:
        """Stop as a Ctrl-C does (stdout was closed): nothing new is sent, what was sent finishes."""
        self._stop_asked = True
        if self.pool is not None:
            self.pool.request_stop()

    @property
    def left_running(self) -> int:
        """Jobs still at their providers when a second signal stopped the wait."""
        return self.pool.left if self.pool is not None else 0

    def _claimed_here(self, row: Row) -> Steps:
        """(A team ledger) claim the row as it starts, and read anew what the ledger says of it
        (another machine may have just ended it), without holding a thread: (claimed, its latest job)."""
        key = self.row_key(row)

        def claim(tx: Transaction) -> Answer[tuple[Holder | None, RowJob | None]]:
            held, latest = tx.ask_claim([key], PROCESS_OWNER, LEASE_SECONDS), tx.ask_row_job(key)
            return Answer(lambda: (held().get(key), latest()))

        held, latest = yield Exchange(lambda done: self.services.ledger.transact_later(claim, done, claim_order(key)))
        return held is None, latest

    @staticmethod
    def _ended(row: Row, result: RowResult | None, error: BaseException | None) -> RowResult:
        if error is not None:  # a bug in a step: report the row, keep the batch going
            return RowResult(
                row=row, outcome=Outcome.FAILED, result=None, note=f"internal error: {error!r}", exit_code=1
            )
        assert result is not None, "a row's steps end with its result"
        return result

    def _send_waiting_rows(self, rows: list[Row]) -> None:
        """New rows whose winner has a completion window (OpenAI Batch) go out together, one
        provider batch per offer and endpoint; each is then collected like a row left running."""
        waiting: list[tuple[str, Request, Route, Constraints]] = []
        by_key: dict[str, Row] = {}
        for row in rows:
            key = self.row_key(row)
            if key in self._held or key in self._priors:
                continue
            constraints = row_constraints(row, self.base)
            route = self.routes.rank(row.request, constraints)
            if route.choice is not None and route.choice.offer.window_s is not None:
                waiting.append((key, row.request, route, constraints))
                by_key[key] = row
        if waiting and self.services.ledger.shared_by_machines:  # (each row claimed before it is sent)
            with self.services.ledger.transaction() as tx:
                elsewhere = tx.claim([key for key, *_ in waiting], PROCESS_OWNER, LEASE_SECONDS)
            waiting = [entry for entry in waiting if entry[0] not in elsewhere]
        if not waiting:
            return
        http = self.services.http()
        sent = batch_window.send(waiting, lambda key: self._runner(by_key[key]), http, self.services.ledger)
        for key, job_id in sent.items():
            self._priors[key] = RowJob(id=job_id, state=JobState.SUBMITTED, exit_code=None, error=None)

    def _runner(self, row: Row, sent=None) -> JobRunner:
        output = OutputOptions(self.out_dir, row.name or DEFAULT_NAME)
        return JobRunner(
            self.services, JobOptions(output=output, timeout=self.timeout, max_cost=self.base.max_cost, on_sent=sent)
        )

    def _row_steps(self, row: Row, sent) -> Steps:
        assert self.pool is not None, "rows run inside `run`"
        if self.pool.stopping.is_set():
            return RowResult(row=row, outcome=Outcome.NOT_STARTED, result=None)
        runner = self._runner(row, sent)
        ledger = self.services.ledger
        if ledger.shared_by_machines:
            claimed, latest = yield from self._claimed_here(row)
            if not claimed and (latest is None or latest.state in UNFINISHED_JOB_STATES):
                return self._put_aside(row, self.row_key(row))
            if latest is not None:  # (or ended on the machine that held it)
                self._priors[self.row_key(row)] = latest
        holder = self._held.get(self.row_key(row))
        if holder is not None:
            return RowResult(
                row=row, outcome=Outcome.SKIPPED, result=None, note=f"being run by another imgroute ({holder})"
            )
        try:
            prior = self._priors.get(self.row_key(row))
            if prior is not None and prior.state == JobState.SUCCEEDED:  # with its files, as recorded
                return RowResult(
                    row=row,
                    outcome=Outcome.SKIPPED,
                    result=recorded_result(ledger, prior.id),
                    note=f"done before (job {prior.id})",
                )
            if prior is not None and (prior.state in UNFINISHED_JOB_STATES or prior.exit_code in RETRYABLE_EXIT_CODES):
                # Finished from the ledger: what was delivered is kept, only the rest is sent
                try:
                    result = yield from runner.steps_resume(prior.id, self.reroute)
                except InputsElsewhere:
                    raise
                except Busy:  # (a team ledger) its job's lease outlives the row's a moment
                    if not ledger.shared_by_machines:
                        raise
                    return self._put_aside(row, job_key(prior.id))
            elif prior is not None:
                return RowResult(
                    row=row,
                    outcome=Outcome.FAILED,
                    result=None,
                    note=f"failed before, not retried: {prior.error}",
                    exit_code=prior.exit_code,
                )
            else:
                route = self.routes.rank(row.request, row_constraints(row, self.base))
                if route.choice is None:
                    return RowResult(
                        row=row, outcome=Outcome.UNSERVABLE, result=None, note="no offer can deliver this row"
                    )
                result = yield from runner.steps_run(
                    row.request, route, row_key=self.row_key(row), constraints=row_constraints(row, self.base)
                )
        except ImgrouteError as exc:
            return RowResult(
                row=row, outcome=Outcome.FAILED, result=None, note=exc.worded("cli")[0], exit_code=exc.exit_code
            )  # (read by `batch`)
        if result.status == JobState.CANCELLED:
            return RowResult(row=row, outcome=Outcome.NOT_STARTED, result=result, note="stopped before it was sent")
        return RowResult(row=row, outcome=Outcome.DONE if result.error is None else Outcome.FAILED, result=result)
