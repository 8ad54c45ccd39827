"""Many jobs on a few threads: a batch's jobs are step generators (see steps.py), and only the
steps that work (HTTP, journal, files) need a thread; waiting for a provider or a slot needs none.

A thread per job spends its life asleep, and fifty of them cost more in handing Python's lock
around than the jobs' own work. Here a worker advances a job until it yields: a Pause goes on the
timer heap, a NeedSlot to the provider limits, which hand it back when a slot frees.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from imgroute import policy
from imgroute.errors import Cancelled
from imgroute.jobs.steps import Exchange, Later, NeedSlot, Pause, Steps
from imgroute.providers.registry import limit_for


class Limits:
    """How many jobs may be at the providers at once (in all, and per provider), and how fast
    submits may go to each. A job holds its slot from its first submit until the provider has
    finished it; journaling before and downloading after take none."""

    def __init__(self, limits: dict[str, tuple[int, float | None]], total: int | None = None, clock=time.monotonic):
        """`limits`: each provider lane's (concurrency, submits per minute); a job asks for an
        account's lane (`kie@<key fingerprint>`), which has its provider lane's limits."""
        self._limits = limits
        self._free: dict[str, int] = {}  # per lane in use: slots left
        self._total_free = total
        self._spacing: dict[str, float] = {}  # per lane with a rate: seconds between submits
        self._next: dict[str, float] = {}
        self._sent: dict[str, float] = {}  # when the last submit to each provider went
        self._waiting: deque[tuple[str, Callable[[], None]]] = deque()
        self._in_use = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.clock = clock

    def stop_sending(self) -> None:
        """From now on no job sends a new request (a batch's Ctrl-C): `stopping` says so to each."""
        self._stopping.set()

    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _known(self, lane: str) -> str:
        """Under the lock, or before any thread shares it: the lane, its limits set up on first use."""
        if lane not in self._free:
            limit = limit_for(self._limits, lane)
            if limit is not None:
                concurrency, rate = limit
                self._free[lane] = concurrency
                if rate:
                    self._spacing[lane], self._next[lane] = 60.0 / rate, 0.0
        return lane

    def take(self, provider: str, granted: Callable[[], None]) -> bool:
        """A slot now (True), or `granted` is called once one is free for this job (False).
        (Every release hands free slots to waiters first, so none that could go is left waiting.)"""
        with self._lock:
            self._known(provider)
            if self._can_take(provider):
                self._hold(provider)
                return True
            self._waiting.append((provider, granted))
            return False

    def in_use(self) -> int:
        return self._in_use

    def release(self, provider: str) -> None:
        """Give a slot back; the longest waiter that can use it gets it."""
        with self._lock:
            self._hold(provider, -1)
            ready = self._grant_waiters()
        for granted in ready:
            granted()

    def withdraw(self, which: Callable[[Callable[[], None]], bool]) -> list[Callable[[], None]]:
        """Take out the waiters `which` picks (a stopped batch's jobs that sent nothing yet)."""
        kept: deque[tuple[str, Callable[[], None]]] = deque()
        gone = []
        with self._lock:
            for provider, granted in self._waiting:
                if which(granted):
                    gone.append(granted)
                else:
                    kept.append((provider, granted))
            self._waiting = kept
        return gone

    def submit_delay(self, provider: str) -> float:
        """Seconds to wait before the next submit to `provider`, so submits are evenly spaced at
        its rate (no bursts that earn 429s). Each call books the next free moment."""
        with self._lock:
            spacing = self._spacing.get(self._known(provider))
            if spacing is None:
                return 0.0
            now = self.clock()
            at = max(now, self._next[provider])
            self._next[provider] = at + spacing
        return at - now

    def gap_left(self, provider: str) -> float:
        """Seconds still to wait, once a submit is journaled, so that no two sends to `provider`
        come closer than its spacing: journaling takes a varying moment after the booked time
        (`submit_delay`), and a slow commit must not let the next send crowd this one."""
        with self._lock:
            spacing = self._spacing.get(self._known(provider))
            if spacing is None:
                return 0.0
            now = self.clock()
            wait = max(0.0, self._sent.get(provider, -spacing) + spacing - now)
            self._sent[provider] = now + wait
        return wait

    def _can_take(self, provider: str) -> bool:
        return self._free.get(provider, 1) > 0 and (self._total_free is None or self._total_free > 0)

    def _hold(self, provider: str, count: int = 1) -> None:
        """Under the lock: take `count` slots (a negative count gives them back)."""
        if provider in self._free:
            self._free[provider] -= count
        if self._total_free is not None:
            self._total_free -= count
        self._in_use += count

    def _grant_waiters(self) -> list[Callable[[], None]]:
        """Under the lock: hand free slots to waiters in arrival order (skipping any whose
        provider is full, so one busy provider does not hold up the others)."""
        ready = []
        for waiter in list(self._waiting):
            provider, granted = waiter
            if self._can_take(provider):
                self._hold(provider)
                self._waiting.remove(waiter)
                ready.append(granted)
            if self._total_free is not None and self._total_free <= 0:
                break
        return ready


class _Job:
    """A job on the scheduler; `start` returns it, for `cancel`."""

    __slots__ = ("steps", "on_done", "before_send", "cancelled", "reply")

    def __init__(self, steps: Steps, on_done: Callable[[Any, BaseException | None], None]):
        self.steps = steps
        self.on_done = on_done
        self.before_send = False  # pausing before a send: a stop ends the pause at once
        self.cancelled = False  # stopped alone (see Scheduler.cancel)
        self.reply: Any = None  # what it is resumed with (an Exchange's answer)

    def stopped(self, scheduler: Scheduler) -> bool:
        return self.cancelled or scheduler.stopping


_Item = tuple[_Job, BaseException | None] | None  # a job to advance (and what to raise in it), or "stop"

# What a worker takes first: a job at its provider's slot (its pause is over, or it was just
# granted the slot: a slot is held or empty meanwhile), then a new row (it will queue for a
# slot), then a job that said `Later` (done with its provider: only saving left).
AT_SLOT, NEW, LATER = 0, 1, 2


class _RunQueue:
    """Jobs ready for a worker, in the order of their rank (AT_SLOT, NEW, LATER), and jobs pausing
    until a moment (a poll due, a submit's turn), AT_SLOT when it comes. No thread of its own
    keeps the time: one idle worker waits until the next pause ends (a thread handing each due
    job to a worker cost a handoff of Python's lock per poll)."""

    def __init__(self):
        self._ranks: tuple[deque[_Item], ...] = (deque(), deque(), deque())
        self._timers: list[tuple[float, int, _Item]] = []
        self._order = itertools.count()  # ties on the heap go by arrival, never by comparing jobs
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # idle workers wait here
        self._clock = threading.Condition(lock)  # the one idle worker that watches the next pause
        self._idle = 0
        self._watching = False

    def put(self, item: _Item, rank: int) -> None:
        with self._work:
            self._ranks[rank].append(item)
            self._wake()

    def put_at(self, due: float, item: _Item) -> None:
        """Ready at `due` (time.monotonic())."""
        with self._work:
            heapq.heappush(self._timers, (due, next(self._order), item))
            if self._timers[0][2] is item:  # the next pause to end: whoever watches must know
                if self._watching:
                    self._clock.notify()
                elif self._idle:
                    self._work.notify()

    def get(self) -> _Item:
        with self._work:
            while True:
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    self._ranks[AT_SLOT].append(heapq.heappop(self._timers)[2])
                ready = next((queue for queue in self._ranks if queue), None)
                if ready is not None:
                    item = ready.popleft()
                    if any(self._ranks) or (self._timers and not self._watching):
                        self._wake()  # more to do, or nobody left watching the time
                    return item
                if self._timers and not self._watching:
                    self._watching = True
                    self._clock.wait(self._timers[0][0] - now)
                    self._watching = False
                else:
                    self._idle += 1
                    self._work.wait()
                    self._idle -= 1

    def hurry(self, which: Callable[[_Item], bool]) -> None:
        """End at once the pauses of the jobs `which` picks (a stop: their sends will not go)."""
        with self._work:
            kept = [entry for entry in self._timers if not which(entry[2])]
            if len(kept) == len(self._timers):
                return
            for entry in self._timers:
                if which(entry[2]):
                    self._ranks[AT_SLOT].append(entry[2])
            self._timers = kept
            heapq.heapify(self._timers)
            self._wake()

    def waiting(self, rank: int) -> int:
        """Jobs of this rank waiting for a worker (a glance, without the lock)."""
        return len(self._ranks[rank])

    def _wake(self) -> None:
        """Under the lock: work is waiting; an idle worker takes it, else the one watching the time."""
        if self._idle:
            self._work.notify()
        elif self._watching:
            self._clock.notify()


class Scheduler:
    def __init__(self, workers: int, limits: Limits, scale: float, exchanges=None):
        """`workers` threads advance jobs; `scale` is IMGROUTE_TIME_SCALE for scaled pauses;
        `exchanges` (net/exchanges.py): where long requests wait without a thread, if given."""
        self.limits = limits
        self.exchanges = exchanges
        self.scale = scale
        self.stopping = False  # set by stop(): jobs that sent nothing yet are cancelled
        self._ready = _RunQueue()
        self._base = workers
        self._workers = 0  # threads taking work (parked spares are not)
        self._blocked = 0  # workers blocked in a retry's sleep or a generation (see `_stood_in`)
        self._count_lock = threading.Lock()
        # A stand-in no longer needed parks for a while instead of ending: a server or a batch of
        # synchronous generations needs one per request, and a new thread costs ~0.2 ms of CPU.
        self._spares = threading.Condition(self._count_lock)
        self._parked = 0  # spares parked (those called back included, until they take the call)
        self._calls = 0  # spares called back to work and not yet out of their wait
        self._closing = False
        for _ in range(workers):
            self._add_worker()

    def start(self, steps: Steps, on_done: Callable[[Any, BaseException | None], None]) -> _Job:
        """Run a job; `on_done(result, None)` or `on_done(None, error)` is called on a worker."""
        job = _Job(steps, on_done)
        self._ready.put((job, None), NEW)
        return job

    def cancel(self, job: _Job) -> None:
        """Stop one job as `stop` stops them all (serve: its client went away): waiting for its first
        slot, it is cancelled now; pausing before a send, it wakes now to find it may not send (its
        steps must also see it stopped: JobRunner.cancel). Once it has sent, it runs to its end."""
        job.cancelled = True
        for granted in self.limits.withdraw(
            lambda granted: isinstance(granted, _Grant) and granted.job is job and granted.fresh
        ):
            if isinstance(granted, _Grant):  # (the limits hold whatever waiter they were given)
                granted.cancel()
        self._ready.hurry(lambda item: item is not None and item[0] is job and job.before_send)

    def unhurried(self) -> int:
        """Jobs that are done with their provider and wait only for a worker to save their images."""
        return self._ready.waiting(LATER)

    def stop(self) -> None:
        """Ctrl-C: jobs waiting for their first slot are cancelled, and jobs pausing before a send
        (their turn at a provider's rate, a 429's retry) wake now to find they may not send; the
        others run to the end."""
        self.stopping = True
        self.limits.stop_sending()
        for granted in self.limits.withdraw(lambda granted: isinstance(granted, _Grant) and granted.fresh):
            if isinstance(granted, _Grant):  # (the limits hold whatever waiter they were given)
                granted.cancel()
        self._ready.hurry(lambda item: item is not None and item[0].before_send)

    def sleep(self, seconds: float) -> None:
        """A blocking sleep inside a step (an HTTP retry's backoff): another worker stands in for
        this one meanwhile, so one provider's 429s cannot stall every other job."""
        with self._stood_in(capped=True):
            time.sleep(seconds)

    def generating(self) -> AbstractContextManager:
        """For a request a synchronous provider holds open while it generates (OpenAI: up to
        minutes): another worker stands in meanwhile, so a batch or a server runs as many of those
        at once as the provider's slots allow, not as many as there are workers. No cap of its
        own: each such request holds one of those slots."""
        return self._stood_in(capped=False)

    def http(self, client):
        """An Http on `client` for this scheduler's jobs: its blocking waits (a retry's sleep, a
        synchronous generation) get a stand-in worker."""
        from imgroute.net.http import Http

        return Http(client, sleep=self.sleep, generating=self.generating, exchanges=self.exchanges)

    @contextmanager
    def _stood_in(self, capped: bool) -> Iterator[None]:
        with self._count_lock:
            self._blocked += 1
            short = self._workers - self._blocked < self._base and (
                not capped or self._workers < self._base + policy.MAX_STANDIN_WORKERS
            )
        if short:
            self._add_worker()
        try:
            yield
        finally:
            with self._count_lock:
                self._blocked -= 1

    def close(self) -> None:
        """After every job has ended: stop the threads (the exchanges' loop too)."""
        if self.exchanges is not None:
            self.exchanges.close()
        with self._count_lock:
            workers = self._workers
            self._closing = True
            self._spares.notify_all()
        for _ in range(workers):
            self._ready.put(None, LATER)  # after everything else

    # -- threads ------------------------------------------------------------------------------

    def _add_worker(self) -> None:
        """One more worker: a parked spare if there is one, else a new thread."""
        with self._count_lock:
            self._workers += 1
            if self._parked > self._calls:
                self._calls += 1
                self._spares.notify()
                return
        threading.Thread(target=self._work, name="imgroute-worker", daemon=True).start()

    def _work(self) -> None:
        while True:
            item = self._ready.get()
            if item is None:
                break
            job, error = item
            self._advance(job, error)
            with self._count_lock:  # a stand-in whose blocked worker woke up is no longer needed
                if self._workers - self._blocked > self._base:
                    self._workers -= 1
                    if not self._park():
                        return
        with self._count_lock:
            self._workers -= 1

    def _park(self) -> bool:
        """Under the count lock: wait as a spare until called back to work (True), or until
        SPARE_SECONDS pass or the scheduler closes (False: the thread ends)."""
        self._parked += 1
        deadline = time.monotonic() + policy.SPARE_SECONDS
        while not self._calls and not self._closing:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._spares.wait(left)
        self._parked -= 1
        if self._calls:  # (counted, not signalled: a call is never lost to a wait that timed out)
            self._calls -= 1
            return True
        return False

    def _advance(self, job: _Job, error: BaseException | None) -> None:
        try:
            reply, job.reply = job.reply, None
            need = job.steps.throw(error) if error is not None else job.steps.send(reply)
        except StopIteration as done:
            job.on_done(done.value, None)
            return
        except BaseException as exc:  # the job's own failure, reported as its result
            job.on_done(None, exc)
            return
        if isinstance(need, Pause):
            job.before_send = need.before_send
            if need.before_send and job.stopped(self):
                self._ready.put((job, None), AT_SLOT)  # stopped: no waiting for a send that will not go
            else:
                self._later(need.seconds * (self.scale if need.scaled else 1.0), job)
        elif isinstance(need, Later):
            self._ready.put((job, None), LATER)
        elif isinstance(need, NeedSlot):
            self._slot(job, need)
        elif isinstance(need, Exchange):
            need.start(lambda answer, error: self._answered(job, answer, error))
        else:
            job.on_done(None, AssertionError(f"a job asked for {need!r}"))

    def _slot(self, job: _Job, need: NeedSlot) -> None:
        if need.fresh and job.stopped(self):
            self._ready.put((job, _stopped()), NEW)
            return
        granted = _Grant(self, job, need.fresh)
        if self.limits.take(need.provider, granted):
            self._ready.put((job, None), AT_SLOT)

    def _answered(self, job: _Job, answer: Any, error: BaseException | None) -> None:
        """An Exchange ended (on the exchanges' loop): the job goes on with its answer, first in line
        (it holds its provider's slot)."""
        job.reply = answer
        self._ready.put((job, error), AT_SLOT)

    def _later(self, seconds: float, job: _Job) -> None:
        if seconds <= 0:
            self._ready.put((job, None), AT_SLOT)
        else:
            self._ready.put_at(time.monotonic() + seconds, (job, None))


class _Grant:
    """What the limits call when a waiting job gets its slot (or what stop() cancels)."""

    __slots__ = ("scheduler", "job", "fresh")

    def __init__(self, scheduler: Scheduler, job: _Job, fresh: bool):
        self.scheduler, self.job, self.fresh = scheduler, job, fresh

    def __call__(self) -> None:
        self.scheduler._ready.put((self.job, None), AT_SLOT)

    def cancel(self) -> None:
        self.scheduler._ready.put((self.job, _stopped()), NEW)


def _stopped() -> Cancelled:
    return Cancelled("stopped before this job was sent")
