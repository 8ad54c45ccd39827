"""Running a planned batch: many jobs at once within each provider's limits, resumable by row.

Every row runs through the same JobRunner as `gen` (fallback, budgets, journal, verified saves),
on worker threads sharing one HTTP client. Each row's job carries the row's stable key in the
ledger: running the same file again skips rows that are done, resumes rows that are in flight
without submitting again, and retries only rows that failed for reasons worth retrying.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from imgroute import policy
from imgroute.batch import Row, row_constraints
from imgroute.errors import ImgrouteError
from imgroute.jobs import JobResult, JobRunner, OutputOptions, PollTiming
from imgroute.ledger import LEDGER_FILE, Ledger

# Exit codes of a job worth trying again on the next run: provider trouble, a budget refusal, a
# result that could not be fetched. A failed or moderated job (6) or an unservable row (4) is final.
RETRYABLE_EXIT_CODES = (5, 7, 8)
UNFINISHED = ("planned", "submitting", "submitted", "running", "unknown")


class Limits:
    """How many jobs may be at the providers at once (in all, and per provider), and how fast
    submits may go to each. A job holds its slots from its first submit until the provider has
    finished it; journaling before and downloading after take none."""

    def __init__(
        self,
        limits: dict[str, tuple[int, float | None]],
        total: int | None = None,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        self._slots = {p: threading.BoundedSemaphore(c) for p, (c, _) in limits.items()}
        self._total = threading.BoundedSemaphore(total) if total else None
        self._spacing = {p: 60.0 / rate for p, (_, rate) in limits.items() if rate}
        self._next = dict.fromkeys(self._spacing, 0.0)
        self._lock = threading.Lock()
        self.clock, self.sleep = clock, sleep

    @classmethod
    def from_settings(cls, overrides, total: int | None = None) -> Limits:
        return cls(policy.provider_limits(overrides), total)

    @contextmanager
    def slot(self, provider: str):
        # The provider's own slot first: a job queued for a busy provider holds no overall slot
        # that a job for another provider could use.
        held = [s for s in (self._slots.get(provider), self._total) if s is not None]
        for semaphore in held:
            semaphore.acquire()
        try:
            yield
        finally:
            for semaphore in reversed(held):
                semaphore.release()

    def before_submit(self, provider: str) -> None:
        """Space submits evenly at the provider's rate (no bursts that earn 429s)."""
        spacing = self._spacing.get(provider)
        if spacing is None:
            return
        with self._lock:
            now = self.clock()
            at = max(now, self._next[provider])
            self._next[provider] = at + spacing
        if at > now:
            self.sleep(at - now)


class RowResult(NamedTuple):
    row: Row
    outcome: str  # done | skipped | failed | unservable | not_started
    result: JobResult | None
    note: str = ""


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
        self.stop = threading.Event()
        self._local = threading.local()
        self._ledgers: list[Ledger] = []
        self._ledgers_lock = threading.Lock()
        self._running = 0
        self._running_lock = threading.Lock()

    def _ledger(self) -> Ledger:
        ledger = getattr(self._local, "ledger", None)
        if ledger is None:  # one connection per worker thread
            ledger = Ledger(self.home / LEDGER_FILE, durable=False)
            self._local.ledger = ledger
            with self._ledgers_lock:
                self._ledgers.append(ledger)
        return ledger

    @staticmethod
    def workers_for(concurrency: int) -> int:
        """More workers than slots at the providers: while `concurrency` jobs are being generated,
        the others journal the next rows or download and save finished ones."""
        return concurrency + max(2, concurrency // 4)

    @property
    def running(self) -> int:
        """Rows being worked on right now (for the progress line)."""
        return self._running

    @contextmanager
    def _counted(self):
        with self._running_lock:
            self._running += 1
        try:
            yield
        finally:
            with self._running_lock:
                self._running -= 1

    def row_key(self, row: Row) -> str:
        return f"{self.label}:{row.key}"

    def run(self, rows: list[Row]) -> None:
        """Run every row; stop starting new ones when `stop` is set (Ctrl-C), finishing the rest."""
        workers = self.workers_for(self.concurrency)
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgroute-batch") as pool:
                self._feed(pool, iter(rows), workers)
        finally:  # every worker has returned: no connection is in use any more
            for ledger in self._ledgers:
                ledger.close()

    def _feed(self, pool: ThreadPoolExecutor, pending, workers: int) -> None:
        finished: queue.SimpleQueue[Future] = queue.SimpleQueue()  # workers' rows, as they end
        outstanding: set[Future] = set()
        try:
            for row in pending:
                if self.stop.is_set():
                    break
                future = pool.submit(self._run_row, row)
                outstanding.add(future)
                future.add_done_callback(finished.put)
                if len(outstanding) >= workers * 2:  # keep memory flat however long the file is
                    self._report_next(finished, outstanding)
            while outstanding:
                self._report_next(finished, outstanding)
        except KeyboardInterrupt:
            self.stop.set()  # rows not yet started stay unstarted; running ones finish and record
            while outstanding:
                self._report_next(finished, outstanding)
            raise
        except BaseException:
            self.stop.set()  # queued rows return at once, so the pool can shut down
            raise

    def _report_next(self, finished: queue.SimpleQueue, outstanding: set[Future]) -> None:
        try:
            future = finished.get(timeout=1.0)
        except queue.Empty:  # a Ctrl-C can land between taking a row's end and reporting it
            future = next((f for f in outstanding if f.done()), None)
        if future is not None and future in outstanding:
            outstanding.discard(future)
            self.on_result(future.result())

    def _run_row(self, row: Row) -> RowResult:
        if self.stop.is_set():
            return RowResult(row, "not_started", None)
        from imgroute.http import Http

        ledger = self._ledger()
        http = Http(self.client)
        runner = JobRunner(
            table=self.routes.table,
            http=http,
            ledger=ledger,
            keys=self.keys,
            base_urls=self.base_urls,
            output=OutputOptions(self.out_dir, row.name or "{slug}-{provider}-{index}"),
            spool_dir=self.home / "spool",
            timeout=self.timeout,
            max_cost=self.base.max_cost,
            limits=self.limits,
            timing=self.timing,
        )
        try:
            prior = ledger.job_for_row(self.row_key(row))
            if prior is not None and prior["state"] == "succeeded":
                return RowResult(row, "skipped", None, f"done before (job {prior['id']})")
            if prior is not None and (prior["state"] in UNFINISHED or prior["exit_code"] == 7):
                with self._counted():
                    result = runner.resume(prior["id"], self.reroute)
            elif prior is not None and prior["exit_code"] not in RETRYABLE_EXIT_CODES:
                return RowResult(row, "failed", None, f"failed before, not retried: {prior['error']}")
            else:
                route = self.routes.rank(row.request, row_constraints(row, self.base))
                if route.choice is None:
                    return RowResult(row, "unservable", None, "no offer can deliver this row")
                with self._counted():
                    result = runner.run(
                        row.request, route, row_key=self.row_key(row), constraints=row_constraints(row, self.base)
                    )
        except ImgrouteError as exc:
            return RowResult(row, "failed", None, exc.message)
        return RowResult(row, "done" if result.error is None else "failed", result)
