"""When to ask a provider whether a job is done: every status request costs CPU here and counts
against the provider's rate limits, and every moment a finished job waits to be asked is lost."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator


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

    def __init__(self):
        self._expected: dict[str, float] = {}
        self._hits: dict[str, int] = {}  # first-poll successes since the last miss
        self._durations: dict[str, deque[float]] = {}  # durations the provider reported
        self._lock = threading.Lock()

    def waits(self, provider: str, schedule: tuple[float, float, float]) -> Iterator[float]:
        first, _, longest = schedule
        with self._lock:
            expected = self._expected.get(provider)
        if expected is None:
            yield from backoff((min(self.PROBE_FIRST, first), 2.0, longest))
            return
        yield expected
        step = max(expected * self.STEP, 0.01)
        while True:
            yield step
            step = min(longest, step * 1.5)

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
