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
from typing import TYPE_CHECKING, Any, NamedTuple

from imgroute import api, policy
from imgroute.errors import ImgrouteError
from imgroute.models import UNFINISHED_JOB_STATES, JobState
from imgroute.serve.params import ImageCall
from imgroute.store.records import Idempotent
from imgroute.vocab import DEFAULT_NAME

if TYPE_CHECKING:
    from imgroute.jobs.runner import JobRunner
    from imgroute.jobs.state import JobResult

RECENT_S = 600.0  # how long an ended job's answer is kept for a retry of its request
RECENT_MAX = 4096  # and at most this many (the newest): a retry comes seconds after its request


class Served(NamedTuple):
    """A job's end, as the HTTP layer answers it."""

    result: JobResult | None  # None when routing refused it
    error: ImgrouteError | None
    planned: api.Planned | None
    sent: bool = False  # whether any of its requests went out (a job stopped part-way has some)


def resumable(served: Served) -> bool:
    """Whether `imgroute jobs resume` may take the job up again (and read its inputs)."""
    return served.result is not None and served.result.status in UNFINISHED_JOB_STATES


def cancelled(served: Served) -> bool:
    """Whether the job was stopped before it sent anything (nothing was charged). A job stopped
    part-way is cancelled too, with requests sent: not this."""
    return served.result is not None and served.result.status == JobState.CANCELLED and not served.sent


def discard_inputs(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class _Running:
    """A job under way, and how many clients wait for it (a retry joins its request's job)."""

    __slots__ = ("future", "runner", "handle", "clients")

    def __init__(self, future: asyncio.Future):
        self.future = future  # its Served, once it ends
        self.runner: JobRunner | None = None  # set once it is on the scheduler
        self.handle: Any = None  # the scheduler's own handle on it
        self.clients = 0


class Gateway:
    def __init__(self, out_dir: Path, workers: int = policy.SERVE_WORKERS):
        from imgroute.pricing.router import RouteCache
        from imgroute.serve import capacity
        from imgroute.session import Keys, load_table_and_settings, open_many

        table, self.settings = load_table_and_settings(None)
        self.keys = Keys(table.registry)
        self.out_dir = out_dir
        self.limits = table.registry.limits(self.settings.limits)
        keyed = self.keys.available.keys()
        # A connection for every job the limits let be at a provider at once (capacity.py).
        self.connections = capacity.upstream_connections(self.limits, keyed, workers)
        self.at_once = capacity.held_open(self.limits, keyed)
        self.services = open_many(table, self.settings, self.keys, workers=workers, connections=self.connections)
        self.routes = RouteCache(table, self.keys.available)  # requests alike share one ranking
        self._running: dict[str, _Running] = {}
        self._recent: OrderedDict[str, tuple[float, Served]] = OrderedDict()  # oldest first

    @property
    def table(self):
        return self.services.table

    @property
    def offers(self) -> set[str]:
        return {offer.id for offer in self.table.offers}

    def plan(self, call: ImageCall):
        return api.plan(**call.options, loaded=(self.table, self.settings, self.keys), routes=self.routes)

    async def run(
        self, call: ImageCall, tries: int | None, gone: asyncio.Future | None = None, key: str | None = None
    ) -> tuple[Served, bool]:
        """The job for this call, and whether it was joined (a retry) rather than started.

        `tries` is the client's count of earlier tries of this request (`x-stainless-retry-count`),
        None when it sends none. A retry, or a request from a client that does not say, joins the
        same request's job still running; a retry also gets the answer of one that ended a moment
        ago. A first try (0) always starts its own job: several clients asking at once for the
        same image each want one of their own.

        `gone` ends when the client hangs up. A job whose every client has gone before it sent
        anything sends nothing (it ends cancelled); one that has sent runs to its end, and is saved.

        An edit's uploaded files are removed once its job has ended in a way no `jobs resume` can
        take up again, and at once when it joins a job (which reads its own copy)."""
        running = self._running.get(call.identity) if tries != 0 else None
        if running is not None:
            discard_inputs(call.inputs)
            return await self._answer(call, running, gone), True
        recent = self._recent.get(call.identity)
        if tries and recent is not None and time.monotonic() - recent[0] < RECENT_S:
            discard_inputs(call.inputs)
            return recent[1], True
        running = _Running(asyncio.get_running_loop().create_future())
        self._running[call.identity] = running  # (the latest such job, when first tries overlap)

        def ended(done: asyncio.Future) -> None:  # whether or not its client is still there
            served = done.result()
            if self._running.get(call.identity) is running:
                del self._running[call.identity]
            if not resumable(served):
                discard_inputs(call.inputs)
            if not cancelled(served):  # (a retry of a job that sent nothing sends it now)
                self._recent[call.identity] = (time.monotonic(), served)
                self._recent.move_to_end(call.identity)
            self._forget_old()

        running.future.add_done_callback(ended)
        self._start(call, running, key)
        return await self._answer(call, running, gone), False

    # -- Idempotency-Key: one key, one job, for a day, on every replica sharing the ledger

    def idempotency(self, key: str, call: ImageCall) -> Idempotent:
        """(Blocking: the ledger.) What the key names; taken for this request when it is new."""
        from imgroute.store.interface import LEASE_SECONDS, PROCESS_OWNER

        with self.services.ledger.transaction() as tx:
            return tx.idempotency(key, call.identity, PROCESS_OWNER, LEASE_SECONDS)

    def idempotency_end(self, key: str, served: Served) -> None:
        """(Blocking: the ledger.) The key's request has its answer: the key now names its job, or,
        when nothing was sent (refused, or stopped first), nothing: the request may be sent again."""
        from imgroute.store.interface import PROCESS_OWNER

        # (a key that names a job already, its first intent committed, keeps it whatever this says)
        paid = served.result is not None and (not cancelled(served) or served.sent)
        with self.services.ledger.transaction() as tx:
            tx.idempotency_end(key, served.result.job_id if paid and served.result else None, PROCESS_OWNER)

    def recorded(self, job_id: str) -> Served:
        """(Blocking: the ledger.) An ended job as the ledger has it, for a repeated key."""
        from imgroute.jobs.resume import recorded_result

        record = self.services.ledger.job(job_id)
        error = None
        if record is not None and record.state != JobState.SUCCEEDED:
            error = ImgrouteError(f"job {job_id} ended {record.state}: {record.error or 'no images'}")
        return Served(result=recorded_result(self.services.ledger, job_id), error=error, planned=None)

    def found_here(self, image):
        """An image of a job another replica ran, where this one can read it: at its recorded path,
        or under this server's output folder by its name when the replicas mount one shared folder
        at different paths (its checksum is checked then). None: not here."""
        import hashlib

        if Path(image.path).is_file():
            return image
        mine = self.out_dir / Path(image.path).name
        if mine.is_file() and hashlib.sha256(mine.read_bytes()).hexdigest() == image.sha256:
            return image._replace(path=mine)
        return None

    def stop(self) -> None:
        """The server was told to stop (Ctrl-C, SIGTERM): no job sends anything it has not sent
        already; those waiting for their turn end cancelled, those sent run to their end."""
        scheduler = self.services.scheduler
        assert scheduler is not None, "open_many's services have a scheduler"
        scheduler.stop()

    async def _answer(self, call: ImageCall, running: _Running, gone: asyncio.Future | None) -> Served:
        """The job's end for one of its clients; the job is cancelled when its last client has gone."""
        running.clients += 1
        try:
            if gone is not None:
                await asyncio.wait((running.future, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            running.clients -= 1
        if gone is not None and gone.done() and not running.future.done() and running.clients == 0:  # the last left
            self._cancel(call.identity, running)
        return await asyncio.shield(running.future)  # (its end, for the log, even with no one to answer)

    def _cancel(self, identity: str, running: _Running) -> None:
        """No client waits for this job: if it has sent nothing, it never will, and a retry of its
        request that comes later starts a job of its own; if it has, it runs to its end (and a
        retry joins it: it is paid for)."""
        if running.runner is None or not running.runner.cancel():  # (none: refused before it started)
            return
        scheduler = self.services.scheduler
        assert scheduler is not None, "open_many's services have a scheduler"
        scheduler.cancel(running.handle)
        if self._running.get(identity) is running:
            del self._running[identity]

    def _start(self, call: ImageCall, running: _Running, key: str | None = None) -> None:
        future = running.future
        try:
            planned = self.plan(call)
            if planned.route.choice is None:
                from imgroute.pricing.router import no_offer_error

                refused = no_offer_error(planned.route, "follow, offer by offer")
                future.set_result(Served(result=None, error=refused, planned=planned))
                return
            runner = self._runner(planned.constraints.max_cost, key)
            steps = runner.steps_run(planned.request, planned.route, constraints=planned.constraints)
        except ImgrouteError as exc:
            future.set_result(Served(result=None, error=exc, planned=None))
            return
        loop = asyncio.get_running_loop()

        def done(result, error) -> None:  # on a scheduler worker
            if error is not None and not isinstance(error, ImgrouteError):
                error = ImgrouteError(f"internal error: {type(error).__name__}: {error}", "see the server's log")
            error = result.error if result is not None else error
            served = Served(result=result, error=error, planned=planned, sent=runner.sent)

            def answer() -> None:  # (on the event loop)
                if not future.done():
                    future.set_result(served)

            loop.call_soon_threadsafe(answer)

        scheduler = self.services.scheduler
        assert scheduler is not None, "open_many's services have a scheduler"
        running.runner, running.handle = runner, scheduler.start(steps, done)

    def _runner(self, max_cost, key: str | None = None):
        from imgroute.jobs.runner import JobRunner
        from imgroute.jobs.state import JobOptions, OutputOptions

        output = OutputOptions(self.out_dir, DEFAULT_NAME)
        options = JobOptions(
            output=output, timeout=policy.DEFAULT_JOB_TIMEOUT_S, max_cost=max_cost, idempotency_key=key
        )
        return JobRunner(self.services, options)

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
