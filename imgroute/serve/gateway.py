"""The core behind `imgroute serve`: each request an imgroute job, run on the same scheduler and
per-provider limits as `batch`, in the same ledger as the CLI's jobs, with its images saved.

What is read once (the pricing table, config, keys) is read at start-up. A client's retry of a
request (its parameters and files, `x-stainless-retry-count` above 0) joins that request's job
still running instead of paying again, or gets the answer of one that ended a moment ago; so does
a request from a client that does not count its tries. A first try always gets its own job.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from imgroute import api, policy
from imgroute.errors import ImgrouteError
from imgroute.models import UNFINISHED_JOB_STATES
from imgroute.serve.params import ImageCall
from imgroute.vocab import DEFAULT_NAME

if TYPE_CHECKING:
    from imgroute.jobs.state import JobResult

RECENT_S = 600.0  # how long an ended job's answer is kept for a retry of its request
RECENT_MAX = 4096  # and at most this many (the newest): a retry comes seconds after its request


class Served(NamedTuple):
    """A job's end, as the HTTP layer answers it."""

    result: JobResult | None  # None when routing refused it
    error: ImgrouteError | None
    planned: api.Planned | None


def resumable(served: Served) -> bool:
    """Whether `imgroute jobs resume` may take the job up again (and read its inputs)."""
    return served.result is not None and served.result.status in UNFINISHED_JOB_STATES


def discard_inputs(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class Gateway:
    def __init__(self, out_dir: Path, concurrency: int = 64):
        from imgroute.pricing.router import RouteCache
        from imgroute.session import Keys, load_table_and_settings, open_many

        table, self.settings = load_table_and_settings(None)
        self.keys = Keys(table.registry)
        self.out_dir = out_dir
        # A connection per generation a synchronous provider holds open (the stand-in workers).
        self.services = open_many(table, self.settings, self.keys, workers=4, connections=2 * concurrency)
        self.routes = RouteCache(table, self.keys.available)  # requests alike share one ranking
        self._running: dict[str, asyncio.Future] = {}
        self._recent: OrderedDict[str, tuple[float, Served]] = OrderedDict()  # oldest first

    @property
    def table(self):
        return self.services.table

    @property
    def offers(self) -> set[str]:
        return {offer.id for offer in self.table.offers}

    def plan(self, call: ImageCall):
        return api.plan(**call.options, loaded=(self.table, self.settings, self.keys), routes=self.routes)

    async def run(self, call: ImageCall, tries: int | None) -> tuple[Served, bool]:
        """The job for this call, and whether it was joined (a retry) rather than started.

        `tries` is the client's count of earlier tries of this request (`x-stainless-retry-count`),
        None when it sends none. A retry, or a request from a client that does not say, joins the
        same request's job still running; a retry also gets the answer of one that ended a moment
        ago. A first try (0) always starts its own job: several clients asking at once for the
        same image each want one of their own.

        An edit's uploaded files are removed once its job has ended in a way no `jobs resume` can
        take up again, and at once when it joins a job (which reads its own copy)."""
        running = self._running.get(call.identity) if tries != 0 else None
        if running is not None:
            discard_inputs(call.inputs)
            return await asyncio.shield(running), True
        recent = self._recent.get(call.identity)
        if tries and recent is not None and time.monotonic() - recent[0] < RECENT_S:
            discard_inputs(call.inputs)
            return recent[1], True
        future = asyncio.get_running_loop().create_future()
        self._running[call.identity] = future  # (the latest such job, when first tries overlap)

        def ended(done: asyncio.Future) -> None:  # whether or not its client is still there
            served = done.result()
            if self._running.get(call.identity) is future:
                del self._running[call.identity]
            if not resumable(served):
                discard_inputs(call.inputs)
            self._recent[call.identity] = (time.monotonic(), served)
            self._recent.move_to_end(call.identity)
            self._forget_old()

        future.add_done_callback(ended)
        return await self._start(call, future), False

    async def _start(self, call: ImageCall, future: asyncio.Future) -> Served:
        try:
            planned = self.plan(call)
            if planned.route.choice is None:
                from imgroute.pricing.router import no_offer_error

                served = Served(None, no_offer_error(planned.route, "follow, offer by offer"), planned)
                future.set_result(served)
                return served
            runner = self._runner(planned.constraints.max_cost)
            steps = runner.steps_run(planned.request, planned.route, constraints=planned.constraints)
        except ImgrouteError as exc:
            served = Served(None, exc, None)
            future.set_result(served)
            return served
        loop = asyncio.get_running_loop()

        def done(result, error) -> None:  # on a scheduler worker
            if error is not None and not isinstance(error, ImgrouteError):
                error = ImgrouteError(f"internal error: {type(error).__name__}: {error}", "see the server's log")
            served = Served(result, result.error if result is not None else error, planned)

            def answer() -> None:  # (on the event loop)
                if not future.done():
                    future.set_result(served)

            loop.call_soon_threadsafe(answer)

        scheduler = self.services.scheduler
        assert scheduler is not None, "open_many's services have a scheduler"
        scheduler.start(steps, done)
        return await asyncio.shield(future)

    def _runner(self, max_cost):
        from imgroute.jobs.runner import JobRunner
        from imgroute.jobs.state import JobOptions, OutputOptions

        output = OutputOptions(self.out_dir, DEFAULT_NAME)
        return JobRunner(
            self.services, JobOptions(output=output, timeout=policy.DEFAULT_JOB_TIMEOUT_S, max_cost=max_cost)
        )

    def _forget_old(self) -> None:
        """Drop the answers past RECENT_S or beyond RECENT_MAX. They are kept in the order their
        jobs ended, so only the oldest few are looked at (a scan of all, per request, grew with
        the traffic of the last ten minutes)."""
        cutoff = time.monotonic() - RECENT_S
        while self._recent and (len(self._recent) > RECENT_MAX or next(iter(self._recent.values()))[0] <= cutoff):
            self._recent.popitem(last=False)

    def close(self) -> None:
        """After the last request: no job is left on the scheduler's workers."""
        self.services.close()
