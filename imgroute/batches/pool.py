"""Many jobs at once on one scheduler, each reported as it ends, and one way to stop them all.

`batch` runs its rows here and `jobs resume --all` its unfinished jobs. A request to stop (the
first Ctrl-C or SIGTERM, or the caller's `request_stop`, as when stdout closes) is acted on between
two reports, so a result is never half written: no new request is sent from then on (jobs waiting
for a slot, or for their turn to send, are cancelled at once), and the jobs that have sent
something are waited for and reported. A second signal stops waiting: those jobs stay journaled
at their providers for the next run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

from imgroute import signals
from imgroute.batches.scheduler import Scheduler
from imgroute.jobs.steps import Steps

REPORT_WAIT_S = 0.5  # the longest a report waits for a job, so a stop or `idle` is never stuck

# (the item, a callable the job calls once it has sent something) -> the job's steps
Start = Callable[[Any, Callable[[], None]], Steps]
# (the item, the job's result or None, the error its steps raised or None) -> the item's report
Ended = Callable[[Any, Any, BaseException | None], Any]


class JobPool:
    def __init__(self, scheduler: Scheduler, ahead: int, slack: Callable[[], int] = lambda: 0):
        """`ahead`: jobs started and not yet reported, at most (memory stays flat however many
        items there are); `slack`: how many of those not to count (batch: jobs only saving)."""
        self.scheduler = scheduler
        self.ahead = ahead
        self.slack = slack
        self.stopping = threading.Event()  # set once a stop is acted on: start nothing more
        self.left = 0  # jobs with something sent, still running when a second signal stopped the wait
        self._asked = threading.Event()
        self._active = 0  # started and not yet reported
        self._sent: set[int] = set()  # started jobs that have sent a request: what a stop waits for
        self._lock = threading.Lock()

    @property
    def sent(self) -> int:
        """Jobs under way at their providers (sent, not yet reported)."""
        return len(self._sent)

    def request_stop(self) -> None:
        self._asked.set()

    def run(
        self,
        items: Iterable,
        start: Start,
        ended: Ended,
        report: Callable[[Any], None],
        on_stop: Callable[[int], None] = lambda sent: None,
        idle: Callable[[], None] = lambda: None,
    ) -> None:
        """Start every item's job and `report` each as it ends (on this thread). `on_stop(sent)`
        is called once a stop is acted on; `idle` between reports. Raises KeyboardInterrupt after
        a stop was asked for, once every job that had sent something has been reported (or at
        once, on a second signal)."""
        with signals.stop_requests(self._asked):
            self._feed(iter(items), start, ended, report, on_stop, idle)
        if self._asked.is_set():
            raise KeyboardInterrupt

    def _feed(self, pending, start: Start, ended: Ended, report, on_stop, idle) -> None:
        finished: queue.SimpleQueue = queue.SimpleQueue()
        try:
            for number, item in enumerate(pending):
                if self._asked.is_set():
                    break
                with self._lock:
                    self._active += 1
                steps = start(item, self._marker(number))
                self.scheduler.start(steps, self._when_done(number, item, ended, finished))
                while self._active - self.slack() >= self.ahead and not self._asked.is_set():
                    self._report_one(finished, report, idle)
            while self._active or not finished.empty():
                if self._asked.is_set() and not self.stopping.is_set():
                    self._stop()
                    on_stop(self.sent)
                self._report_one(finished, report, idle)
        except KeyboardInterrupt:
            # A second signal: stop waiting. Jobs already sent are journaled with their provider's
            # id (or as unknown), so the next run picks them up; the journal is left open for the
            # threads still finishing a step (the process ends now).
            self._stop()
            self.left = self.sent
            raise
        except BaseException:
            # A bug here: jobs already sent still run to the end and are recorded before the
            # journal closes; there is no reporting them any more.
            self._stop()
            while self._active or not finished.empty():
                self._report_one(finished, None, idle)
            raise

    def _stop(self) -> None:
        """Items not yet started stay unstarted; jobs that sent nothing yet are cancelled."""
        self.stopping.set()
        self.scheduler.stop()

    def _marker(self, number: int) -> Callable[[], None]:
        def sent() -> None:
            with self._lock:
                self._sent.add(number)

        return sent

    def _when_done(self, number: int, item, ended: Ended, finished: queue.SimpleQueue):
        def done(result, error: BaseException | None) -> None:
            outcome = ended(item, result, error)
            finished.put(outcome)
            with self._lock:  # after the put: "none active, queue empty" means all reported
                self._active -= 1
                self._sent.discard(number)

        return done

    def _report_one(self, finished: queue.SimpleQueue, report, idle) -> None:
        idle()
        try:
            outcome = finished.get(timeout=REPORT_WAIT_S)
        except queue.Empty:
            return
        if report is not None:
            report(outcome)
