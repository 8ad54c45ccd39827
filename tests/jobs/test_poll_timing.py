"""Learned poll timing, in a simulated batch: C jobs at once, each polled on the schedule it was
given when it started, each reporting when it is seen done (as a batch's jobs do)."""

from __future__ import annotations

import heapq
import math
import random

import pytest

from imgroute.jobs.polling import Look, PollTiming, priors

KIE_SCHEDULE = (2.0, 1.5, 15.0)


def simulate(
    timing: PollTiming,
    seconds: float,
    jobs: int,
    concurrency: int,
    spread: float = 0.0,
    seed: int = 1,
    reported: bool = False,
):
    """Jobs lasting `seconds` (+- `spread` of it); returns (time over ceil(jobs/C) x seconds,
    status requests per job). `reported`: the provider says how long each job took (Kie and
    Apiframe do)."""
    rng = random.Random(seed)
    running: list = []
    started = requests = 0
    finished_at = 0.0

    def start(now: float) -> None:
        nonlocal started
        duration = seconds * (1 + rng.uniform(-spread, spread))
        planned, polls, missed = 0.0, 0, None
        for wait in timing.waits("kie", KIE_SCHEDULE):
            planned += wait
            polls += 1
            if planned >= duration:
                break
            missed = planned
        started += 1
        heapq.heappush(running, (now + planned, started, planned, polls, missed, duration))

    for _ in range(min(concurrency, jobs)):
        start(0.0)
    while running:
        finished_at, _, planned, polls, missed, duration = heapq.heappop(running)
        timing.observe("kie", planned, polls, missed, took=duration if reported else None)
        requests += polls
        if started < jobs:
            start(finished_at)
    return finished_at / (math.ceil(jobs / concurrency) * seconds), requests / jobs


@pytest.mark.parametrize(
    ("seconds", "jobs", "spread", "most_ratio", "most_polls"),
    [
        (0.2, 1000, 0.0, 1.12, 1.25),  # the benchmark's jobs
        (0.2, 5000, 0.0, 1.08, 1.25),
        (2.0, 500, 0.0, 1.32, 2.0),  # ten rounds, the first spent probing
        (2.0, 500, 0.2, 1.40, 2.0),
        (30.0, 300, 0.3, 1.35, 3.0),  # real jobs vary: the cost of not knowing each one's length
    ],
)
def test_fifty_jobs_at_once_are_polled_just_after_they_finish(seconds, jobs, spread, most_ratio, most_polls):
    ratio, polls = simulate(PollTiming(), seconds, jobs, 50, spread)
    assert ratio <= most_ratio and polls <= most_polls


@pytest.mark.parametrize(
    ("seconds", "jobs", "spread", "most_ratio", "most_polls"),
    [
        (0.2, 1000, 0.0, 1.02, 1.05),  # the benchmark's jobs: each polled once, at its end
        (0.2, 5000, 0.0, 1.01, 1.05),
        (2.0, 500, 0.2, 1.30, 2.0),
        (30.0, 300, 0.3, 1.30, 3.0),  # beats inference (1.35) with as few polls
    ],
)
def test_with_reported_durations_the_first_poll_lands_at_the_jobs_end(seconds, jobs, spread, most_ratio, most_polls):
    ratio, polls = simulate(PollTiming(), seconds, jobs, 50, spread, reported=True)
    assert ratio <= most_ratio and polls <= most_polls


def test_aiming_at_the_sixtieth_percentile_trades_polls_against_waiting(monkeypatch):
    """The median misses half the jobs (a request more each); a high percentile makes most wait."""

    def run(percentile):
        monkeypatch.setattr(PollTiming, "PERCENTILE", percentile)
        return simulate(PollTiming(), 30.0, 300, 50, 0.3, reported=True)

    median, chosen, high = run(0.5), run(0.6), run(0.9)  # each (time over ideal, polls per job)
    assert chosen[1] < median[1] and chosen[0] < high[0]


def test_reported_durations_replace_inference_and_only_the_recent_ones_count():
    timing = PollTiming()
    timing.observe("kie", 5.0, 1, None, took=1.0)  # polled at 5 s, but the job took 1 s
    assert timing.expected("kie") == 1.0
    for took in [9.0] * PollTiming.RECENT:  # the provider slowed down: older jobs drop out
        timing.observe("kie", 9.5, 1, None, took=took)
    assert timing.expected("kie") == 9.0
    timing.observe("apiframe", 3.0, 2, 1.5)  # no reported time: inferred, per provider
    assert timing.expected("apiframe") == 2.25 and timing.expected("kie") == 9.0


def test_the_estimate_settles_on_the_job_time_and_follows_it_when_it_changes():
    timing = PollTiming()
    simulate(timing, 0.2, 1000, 50)
    assert 0.19 <= timing.expected("kie") <= 0.23  # fifty reports at once did not collapse it
    simulate(timing, 2.0, 500, 50)  # the provider slows down: found within a few rounds
    assert 1.9 <= timing.expected("kie") <= 2.3
    simulate(timing, 0.5, 1000, 50)  # and speeds up again
    assert 0.45 <= timing.expected("kie") <= 0.6


def test_before_anything_is_known_the_provider_is_probed_from_a_quarter_second():
    waits = PollTiming().waits("kie", KIE_SCHEDULE)
    assert [next(waits) for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]


def wave(timing: PollTiming, seconds: float, jobs: int, spread: float = 0.0, seed: int = 2):
    """`jobs` started at once (a serve burst), each advanced only when its own wait ends, as the
    scheduler does, so a job asks for its next wait after the others' finds; Kie reports each job's
    duration. Returns (status requests per job, mean seconds between a job's end and its last poll)."""
    rng = random.Random(seed)
    durations = [seconds * (1 + rng.uniform(-spread, spread)) for _ in range(jobs)]
    schedules: list = [timing.waits("kie", KIE_SCHEDULE) for _ in range(jobs)]
    polls, missed, late = [0] * jobs, [None] * jobs, []
    pending: list = []

    def next_wait(job: int, now: float) -> None:
        wait = next(schedules[job])
        looking = isinstance(wait, Look)
        heapq.heappush(pending, (now + (wait.seconds if looking else wait), job, looking))

    for job in range(jobs):
        next_wait(job, 0.0)
    while pending:
        now, job, looking = heapq.heappop(pending)
        if not looking:
            polls[job] += 1
            if now >= durations[job]:
                timing.observe("kie", now, polls[job], missed[job], took=durations[job])
                late.append(now - durations[job])
                schedules[job] = None  # (dropped, as the job's own loop drops it)
                continue
            missed[job] = now
        next_wait(job, now)
    return sum(polls) / jobs, sum(late) / jobs


@pytest.mark.parametrize(
    ("prior", "seconds", "spread", "most_polls", "most_late"),
    [
        (30.0, 15.0, 0.0, 1.1, 1.0),  # the prior twice the real time: the scouts find it (6 polls with none)
        (10.0, 15.0, 0.0, 2.2, 1.5),  # the prior too short: one ask at it, then one when the scouts know
        (15.0, 15.0, 0.2, 2.6, 1.5),  # right, and real jobs vary
        (15.0, 60.0, 0.1, 2.5, 8.0),  # four times too short
        (30.0, 0.2, 0.0, 1.05, 0.2),  # 150 times too long (the benchmark's jobs): the scouts start early
    ],
)
def test_a_wave_of_500_first_jobs_is_polled_at_most_3_times_each_from_the_offers_prior(
    prior, seconds, spread, most_polls, most_late
):
    timing = PollTiming({"kie": prior}, rng=random.Random(3))
    polls, late = wave(timing, seconds, 500, spread)
    assert polls <= most_polls and late <= most_late, (polls, late)
    again, _ = wave(timing, seconds, 500, spread, seed=4)  # the next wave knows the time
    assert again <= 1.6  # (about one: the learned time, missed by the jobs longer than it)


def test_without_a_prior_a_wave_probes_as_before():
    polls, _ = wave(PollTiming(), 15.0, 500)
    assert polls > 5  # every job probes from a quarter second: what the prior saves


def test_the_prior_is_the_offers_history_once_it_has_enough_else_its_typical_duration():
    from imgroute.home.history import OfferStats
    from imgroute.pricing.load import load_table

    table = load_table()
    found = priors(table.offers)
    assert found["kie"] == 30.0 and found["apiframe"] == 15.0 and "openai" not in found  # (synchronous)
    stats = OfferStats(attempts=20, succeeded=20, failed=0, moderated=0, charged_usd=0, times=(8.0,) * 20)
    kie = next(o for o in table.offers if o.provider == "kie")
    assert priors([kie._replace(history=stats)])["kie"] == 8.0
    few = stats._replace(attempts=2, times=(8.0, 8.0))
    assert priors([kie._replace(history=few)])["kie"] == 30.0
