"""Running a planned batch: many jobs at once within each provider's limits, resumable by row.

Every row runs through the same JobRunner as `gen` (fallback, budgets, journal, verified saves),
as steps a scheduler interleaves on a few threads sharing one HTTP client (scheduler.py). Each
row's job carries the row's stable key in the ledger: running the same file again skips rows that
are done, resumes rows that are in flight without submitting again, and retries only rows that
failed for reasons worth retrying.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from imgroute import batch_window, policy
from imgroute.batch import RETRYABLE_EXIT_CODES, Row, row_constraints
from imgroute.errors import ImgrouteError
from imgroute.http import Http
from imgroute.images import DEFAULT_NAME
from imgroute.jobs import JobResult, JobRunner, OutputOptions
from imgroute.ledger import LEDGER_FILE, RowJob, SharedLedger
from imgroute.models import UNFINISHED_JOB_STATES, JobState
from imgroute.observations import Observations
from imgroute.poll_timing import PollTiming
from imgroute.scheduler import Limits, Scheduler
from imgroute.steps import Steps

WORKERS_MAX = 4  # measured: more threads than this only add contention (scripts/bench_batch.py)


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
    def __init__(
        self,
        *,
        routes,
        base_constraints,
        keys,
        base_urls,
        out_dir: Path,
        home: Path,
        timeout: float,
        concurrency: int,
        limits: Limits,
        client,
        batch_label: str,
        on_result: Callable[[RowResult], None],
        reroute,
        on_stop: Callable[[int], None] | None = None,
    ):
        self.routes = routes
        self.base = base_constraints
        self.keys = keys
        self.base_urls = base_urls
        self.out_dir = out_dir
        self.home = home
        self.timeout = timeout
        self.concurrency = concurrency
        self.limits = limits
        self.client = client
        self.label = batch_label
        self.on_result = on_result
        self.reroute = reroute
        self.timing = PollTiming()
        self.observations = Observations(home)  # shared by the rows
        self.stop = threading.Event()
        self.on_stop = on_stop or (lambda active: None)  # the first Ctrl-C is being acted on
        self.left_running = 0  # jobs still at their providers when a second Ctrl-C stopped waiting
        self._held: dict[str, int] = {}  # rows another live imgroute has claimed: their pid
        self._priors: dict = {}  # row key -> what earlier runs of this file did (read in `run`)
        self._active = 0  # rows started and not yet reported back
        self._active_lock = threading.Lock()

    @staticmethod
    def workers_for(concurrency: int) -> int:
        """Threads for the steps that work (HTTP, journal, files): a job waiting for its provider
        needs none, so a few serve many jobs, and fewer threads contend less for Python's lock."""
        return max(2, min(WORKERS_MAX, concurrency))

    @property
    def running(self) -> int:
        """Jobs at the providers right now (for the progress line)."""
        return self.limits.in_use()

    def row_key(self, row: Row) -> str:
        return f"{self.label}:{row.key}"

    def run(self, rows: list[Row]) -> None:
        """Run every row; on Ctrl-C stop starting new ones, let the jobs already sent finish and
        be recorded, then raise KeyboardInterrupt."""
        ledger = SharedLedger(self.home / LEDGER_FILE, durable=False)
        # Claim the rows first (one commit), then read what earlier runs did: a row another live
        # imgroute runs is left to it, and one it has just finished is seen as done.
        keys = [self.row_key(row) for row in rows]
        self._held = ledger.claim(keys)
        self._priors = ledger.jobs_for_rows(self.label)
        self._send_waiting_rows(rows, ledger)
        scheduler = Scheduler(self.workers_for(self.concurrency), self.limits, policy.time_scale())
        try:
            with _ctrl_c_as_a_request() as asked:
                self._feed(scheduler, ledger, iter(rows), asked)
        finally:
            scheduler.close()
            self.observations.flush(force=True)
            if not self.left_running:  # every row has been reported: no job uses the connection
                ledger.release([k for k in keys if k not in self._held])
                ledger.close()
        if asked.is_set():
            raise KeyboardInterrupt

    def _feed(self, scheduler: Scheduler, ledger: SharedLedger, pending, asked: threading.Event) -> None:
        """Start rows and report them as they end. A Ctrl-C (`asked`) is acted on here, between
        two steps of this loop, so a row's result is never half reported."""
        finished: queue.SimpleQueue[RowResult] = queue.SimpleQueue()
        # Rows started ahead of free slots, so a slot never waits for a row to be journaled; the
        # cap keeps memory flat however long the file is. Rows done at their provider and only
        # waiting to be saved (which goes after everything else) do not count against it, up to
        # one per slot: past that the workers are behind, and more rows would only wait in memory.
        ahead = self.concurrency + max(8, self.concurrency // 2)
        try:
            for row in pending:
                if asked.is_set():
                    break
                with self._active_lock:
                    self._active += 1
                scheduler.start(self._row_steps(row, ledger, scheduler), self._when_done(row, finished))
                while self._active - min(scheduler.unhurried(), self.concurrency) >= ahead and not asked.is_set():
                    self._report_one(finished)
            while self._active or not finished.empty():
                if asked.is_set() and not self.stop.is_set():
                    self._stop(scheduler)
                    self.on_stop(self._active)
                self._report_one(finished)
        except KeyboardInterrupt:
            # A second Ctrl-C: stop waiting. Jobs already sent are journaled with their provider's
            # id (or as unknown), so the next run of the file picks them up; the journal is left
            # open for the threads still finishing a step (the process ends now).
            self._stop(scheduler)
            self.left_running = self._active
            raise
        except BaseException:
            # A bug here: jobs already sent still run to the end and are recorded before the
            # journal closes; there is no reporting them any more.
            self._stop(scheduler)
            while self._active or not finished.empty():
                self._report_one(finished, report=False)
            raise

    def _stop(self, scheduler: Scheduler) -> None:
        """Rows not yet started stay unstarted; jobs waiting for their first slot are cancelled."""
        self.stop.set()
        scheduler.stop()

    def _when_done(self, row: Row, finished: queue.SimpleQueue):
        def done(result: RowResult | None, error: BaseException | None) -> None:
            if error is not None:  # a bug in a step: report the row, keep the batch going
                result = RowResult(row, Outcome.FAILED, None, f"internal error: {error!r}", 1)
            finished.put(result)
            with self._active_lock:  # after the put: "none active, queue empty" means all reported
                self._active -= 1

        return done

    def _report_one(self, finished: queue.SimpleQueue, report: bool = True) -> None:
        try:
            result = finished.get(timeout=0.5)  # a timeout, so a Ctrl-C is never stuck here
        except queue.Empty:
            return
        if report:
            self.on_result(result)

    def _send_waiting_rows(self, rows: list[Row], ledger: SharedLedger) -> None:
        """New rows whose winner has a completion window (OpenAI Batch) go out together, one
        provider batch per offer and endpoint; each is then collected like a row left running."""
        waiting, by_key = [], {}
        for row in rows:
            key = self.row_key(row)
            if key in self._held or key in self._priors:
                continue
            constraints = row_constraints(row, self.base)
            route = self.routes.rank(row.request, constraints)
            if route.choice is not None and route.choice.offer.window_s is not None:
                waiting.append((key, row.request, route, constraints))
                by_key[key] = row
        if not waiting:
            return
        http = Http(self.client)
        sent = batch_window.send(waiting, lambda key: self._runner(by_key[key], ledger, http), http, ledger)
        for key, job_id in sent.items():
            self._priors[key] = RowJob(job_id, JobState.SUBMITTED, None, None)

    def _runner(self, row: Row, ledger: SharedLedger, http: Http) -> JobRunner:
        return JobRunner(
            table=self.routes.table,
            http=http,
            ledger=ledger,
            keys=self.keys,
            base_urls=self.base_urls,
            output=OutputOptions(self.out_dir, row.name or DEFAULT_NAME),
            spool_dir=self.home / "spool",
            timeout=self.timeout,
            max_cost=self.base.max_cost,
            slots=self.limits,
            timing=self.timing,
            observations=self.observations,
        )

    def _row_steps(self, row: Row, ledger: SharedLedger, scheduler: Scheduler) -> Steps:
        if self.stop.is_set():
            return RowResult(row, Outcome.NOT_STARTED, None)
        runner = self._runner(row, ledger, scheduler.http(self.client))
        holder = self._held.get(self.row_key(row))
        if holder is not None:
            return RowResult(row, Outcome.SKIPPED, None, f"being run by another imgroute (pid {holder})")
        try:
            prior = self._priors.get(self.row_key(row))
            if prior is not None and prior.state == JobState.SUCCEEDED:
                return RowResult(row, Outcome.SKIPPED, None, f"done before (job {prior.id})")
            if prior is not None and (prior.state in UNFINISHED_JOB_STATES or prior.exit_code in RETRYABLE_EXIT_CODES):
                # Finished from the ledger: what was delivered is kept, only the rest is sent
                result = yield from runner.steps_resume(prior.id, self.reroute)
            elif prior is not None:
                return RowResult(
                    row, Outcome.FAILED, None, f"failed before, not retried: {prior.error}", prior.exit_code
                )
            else:
                route = self.routes.rank(row.request, row_constraints(row, self.base))
                if route.choice is None:
                    return RowResult(row, Outcome.UNSERVABLE, None, "no offer can deliver this row")
                result = yield from runner.steps_run(
                    row.request, route, row_key=self.row_key(row), constraints=row_constraints(row, self.base)
                )
        except ImgrouteError as exc:
            return RowResult(row, Outcome.FAILED, None, exc.message, exc.exit_code)
        if result.status == JobState.CANCELLED:
            return RowResult(row, Outcome.NOT_STARTED, result, "stopped before it was sent")
        return RowResult(row, Outcome.DONE if result.error is None else Outcome.FAILED, result)


@contextmanager
def _ctrl_c_as_a_request():
    """The first Ctrl-C sets the event instead of raising wherever the main thread happens to be
    (a result half written to stdout). The next raises KeyboardInterrupt as usual: the batch stops
    reporting but still waits for the jobs already sent; one more leaves them to the next run."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def request(signum, frame) -> None:
        asked.set()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, request)
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, previous)
