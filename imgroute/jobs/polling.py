"""When to ask a provider whether a job is done: every status request costs CPU here and counts
against the provider's rate limits, and every moment a finished job waits to be asked is lost."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from typing import NamedTuple


class Look(NamedTuple):
    """A wait after which the job does not ask its provider, only looks again at what the jobs
    of its wave have learned (`PollTiming.waits`)."""

    seconds: float


def backoff(schedule: tuple[float, float, float]) -> Iterator[float]:
    """A provider's documented schedule: first wait, growth factor, longest wait."""
    first, factor, longest = schedule
    wait = first
    while True:
        yield wait
        wait = min(longest, wait * factor)


class PollTiming:
    """How long each provider's jobs take, learned while a batch runs, so the first poll lands
    just after a job finishes: about one status request per job instead of a fixed schedule's
    many. Shared by a batch's jobs (thread-safe).

    Kie and Apiframe say when each job was created and completed; from those the estimate is a
    percentile of the last jobs' real durations. Otherwise (fal, or an answer without the times)
    it is inferred from which polls found jobs done."""

    PROBE_FIRST = 0.25  # unknown provider: probe early, doubling, up to the adapter's longest wait
    WEIGHT = 0.25  # how far each finished job moves the estimate towards what it showed
    EARLIER_NEAR = 0.99  # done at the first poll: perhaps polled late, aim a little earlier
    EARLIER_FAR = 0.95  # done at the first poll for a long while: surely late; come down faster
    FAR_AFTER = 100  # first-poll successes in a row that count as "a long while" (two rounds of 50)
    WIDE = 0.25  # a miss this far (as a share) before the success left the end time wide open
    STEP = 0.1  # after a miss, poll again every tenth of the expected time (growing)
    RECENT = 32  # durations the provider reported, kept per provider
    # Which of them to aim at: the median misses half the jobs, each then waiting a step; higher
    # waits longer for most. 0.6 was the best trade in the simulations of tests/jobs/test_poll_timing.py.
    PERCENTILE = 0.6
    # With a prior (the offer's typical duration, or its history here) and nothing learned yet, a
    # wave of jobs does not all probe: SCOUTS of them ask from a quarter second, doubling up to
    # every SCOUT_EVERY of the prior, and the others wait, looking twice as often (a look asks the
    # provider nothing) at what the scouts found, then ask once at that time. Found nothing by the
    # prior (spread over SPREAD of it, so a wave does not ask in step), they ask once, then go on
    # looking; should every scout end without finding it (their jobs failed), one of them scouts on.
    SCOUTS = 2
    SCOUT_EVERY = 0.05
    SPREAD = 0.1

    def __init__(self, priors: Mapping[str, float] | None = None, rng: random.Random | None = None):
        """`priors`: each provider's typical job time in seconds, before any of its jobs here ended."""
        self._expected: dict[str, float] = {}
        self._hits: dict[str, int] = {}  # first-poll successes since the last miss
        self._durations: dict[str, deque[float]] = {}  # durations the provider reported
        self._priors = dict(priors or {})
        self._scouts: dict[str, int] = {}  # jobs sent scouting, per provider, while nothing is learned
        self._rng = rng or random.Random()
        self._lock = threading.Lock()

    def waits(self, provider: str, schedule: tuple[float, float, float]) -> Iterator[float | Look]:
        """Seconds to wait before each status request (a Look: before looking again, asking nothing)."""
        first, _, longest = schedule
        with self._lock:
            expected = self._expected.get(provider)
            prior = self._priors.get(provider)
        if expected is not None:
            yield from self._after(expected, longest)
        elif prior is None:
            yield from backoff((min(self.PROBE_FIRST, first), 2.0, longest))
        elif self._enlist(provider):
            yield from self._scout(provider, prior, longest)
        else:
            yield from self._with_the_wave(provider, prior, longest)

    def _after(self, expected: float, longest: float, waited: float = 0.0) -> Iterator[float]:
        """Ask at the expected time, then every tenth of it, growing."""
        yield max(0.0, expected - waited)
        step = max(expected * self.STEP, 0.01)
        while True:
            yield step
            step = min(longest, step * 1.5)

    def _asks(self, prior: float, longest: float, share: float = 1.0) -> Iterator[float]:
        """How often a scout asks (the others look at `share` of that): from a quarter second (a
        prior can be far too long: the jobs of a benchmark take 0.2 s), doubling up to SCOUT_EVERY
        of the prior."""
        every = min(max(prior * self.SCOUT_EVERY, 0.01), longest) * share
        return backoff((min(self.PROBE_FIRST * share, every), 2.0, every))

    def _enlist(self, provider: str) -> bool:
        """Whether this job scouts (fewer than SCOUTS do): counted until its schedule is dropped."""
        with self._lock:
            if self._expected.get(provider) is not None or self._scouts.get(provider, 0) >= self.SCOUTS:
                return False
            self._scouts[provider] = self._scouts.get(provider, 0) + 1
            return True

    def _scout(self, provider: str, prior: float, longest: float) -> Iterator[float]:
        try:
            yield from self._asks(prior, longest)
        finally:  # (its job ended, found or failed: the generator is dropped)
            with self._lock:
                self._scouts[provider] -= 1

    def _with_the_wave(self, provider: str, prior: float, longest: float) -> Iterator[float | Look]:
        """A job of a wave that does not scout: ask when the scouts have learned the time; ask once
        at the prior meanwhile; scout on should the scouts all end without learning it."""
        waited, asked = 0.0, False
        ask_at = prior * (1 - self.SPREAD * self._rng.random())
        looks = self._asks(prior, longest, share=0.5)
        while True:
            learned = self.expected(provider)
            if learned is not None:
                yield from self._after(learned, longest, waited)
                return
            if not asked and waited >= ask_at:
                yield 0.0  # (a miss: the job takes longer than the prior)
                asked = True
            elif asked and self._enlist(provider):
                yield from self._scout(provider, prior, longest)
                return
            wait = next(looks) if asked else min(next(looks), ask_at - waited)
            yield Look(wait)
            waited += wait

    def observe(
        self, provider: str, seconds: float, polls: int, missed_at: float | None, took: float | None = None
    ) -> None:
        """A job seen done at its `polls`-th status request, `seconds` into the schedule `waits`
        gave it, and last seen not done at `missed_at` (if it was); `took` is how long the
        provider says it ran, if it says.

        A reported duration is the job's real length, measured from the moment the provider took
        the job (a little before the schedule starts, so aiming at it is never early).

        Without one it is inferred from scheduled times, not measured ones: a loaded machine wakes
        late and answers late, and feeding that lateness back would push every later poll later
        still. Each job pulls the estimate towards what it showed rather than scaling it: fifty
        jobs finishing at once must not shrink it fifty times.

        A miss costs a request (and CPU, which a busy batch is short of); a late poll costs time.
        So: done after a miss, aim at the poll that saw it done, or at the middle of the two when
        they were far apart (a probe, or jobs suddenly slower). Done at the first poll, aim a
        little earlier; a long run of those means the estimate is well above the real time, so
        come down faster. Measured in tests/jobs/test_poll_timing.py."""
        with self._lock:
            if took is not None:
                recent = self._durations.setdefault(provider, deque(maxlen=self.RECENT))
                recent.append(took)
                ordered = sorted(recent)
                self._expected[provider] = ordered[int(self.PERCENTILE * (len(ordered) - 1) + 0.5)]
                return
            if polls > 1 and missed_at is not None:
                wide = seconds - missed_at > self.WIDE * seconds
                aim = (missed_at + seconds) / 2 if wide else seconds
                self._hits[provider] = 0
            else:
                hits = self._hits.get(provider, 0)
                # Each further run of FAR_AFTER without a miss comes down faster still (5%, 10%, ...).
                far = hits // self.FAR_AFTER
                aim = seconds * (self.EARLIER_FAR**far if far else self.EARLIER_NEAR)
                self._hits[provider] = hits + 1
            expected = self._expected.get(provider)
            self._expected[provider] = aim if expected is None else expected + self.WEIGHT * (aim - expected)

    def expected(self, provider: str) -> float | None:
        with self._lock:
            return self._expected.get(provider)


def priors(offers) -> dict[str, float]:
    """Each provider's typical job time before any of its jobs here has ended: the median of its
    offer's durations in this home's history, once there are enough of them, else the offer's
    `typical_duration` in pricing.yaml (where its documentation says one, or one is assumed)."""
    found: dict[str, float] = {}
    for offer in offers:
        history = offer.history
        seen = history.percentile(0.5) if history is not None and history.enough else None
        typical = seen if seen is not None else offer.typical_s
        if typical is not None and offer.window_s is None:  # (a batch API's window is no job time)
            found.setdefault(offer.provider, typical)
    return found
