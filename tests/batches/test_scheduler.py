"""The batch scheduler: jobs as step generators on a few threads, slots handed over in order."""

from __future__ import annotations

import threading
import time

import pytest

from imgroute.batches.scheduler import AT_SLOT, LATER, NEW, Limits, Scheduler, _RunQueue
from imgroute.errors import Cancelled
from imgroute.jobs.steps import NeedSlot, Pause
from tests.helpers import wait_for


def run_all(scheduler: Scheduler, jobs: list, timeout: float = 10.0) -> list:
    """Start every job, wait for all; returns [(result, error)] in the jobs' order."""
    results: list = [None] * len(jobs)
    done = threading.Semaphore(0)

    def finish(index):
        def on_done(result, error):
            results[index] = (result, error)
            done.release()

        return on_done

    for index, steps in enumerate(jobs):
        scheduler.start(steps, finish(index))
    for _ in jobs:
        assert done.acquire(timeout=timeout), "a job never finished"
    return results


def test_limits_hand_slots_to_waiters_in_order_without_one_busy_provider_blocking_others():
    limits = Limits({"kie": (1, None), "fal": (1, None)}, total=2)
    granted: list[str] = []
    assert limits.take("kie", lambda: granted.append("kie-1"))
    assert not limits.take("kie", lambda: granted.append("kie-2"))  # kie is full: waits
    assert limits.take("fal", lambda: granted.append("fal-1"))  # not held up by the kie waiter
    assert limits.in_use() == 2
    assert not limits.take("fal", lambda: granted.append("fal-2"))
    limits.release("fal")
    assert granted == ["fal-2"]  # the freed fal slot goes to the fal waiter, not the kie one
    limits.release("kie")
    assert granted == ["fal-2", "kie-2"] and limits.in_use() == 2


def test_limits_total_caps_all_providers_together():
    limits = Limits({"kie": (5, None), "fal": (5, None)}, total=2)
    assert limits.take("kie", lambda: None) and limits.take("fal", lambda: None)
    woken: list[str] = []
    assert not limits.take("kie", lambda: woken.append("kie"))
    limits.release("fal")
    assert woken == ["kie"]


def test_limits_belong_to_an_account_the_provider_and_key_not_to_the_provider_alone():
    from imgroute.providers.registry import lane

    limits = Limits({"kie": (1, 60.0)}, clock=lambda: 0.0)
    mine, same, theirs = lane("kie", False, "key-one"), lane("kie", False, "key-one"), lane("kie", False, "key-two")
    assert mine == same != theirs and "key-one" not in mine  # a fingerprint of the key, never the key
    assert limits.take(mine, lambda: None)
    assert not limits.take(same, lambda: None)  # one account: one slot between them
    assert limits.take(theirs, lambda: None)  # another key: an account of its own, with kie's limits
    assert limits.submit_delay(mine) == 0.0 and limits.submit_delay(same) == 1.0 and limits.submit_delay(theirs) == 0.0


def test_submit_delay_spaces_submits_at_the_rate():
    now = [100.0]
    limits = Limits({"openai": (5, 60.0)}, clock=lambda: now[0])  # one a second
    assert [limits.submit_delay("openai") for _ in range(3)] == [0.0, 1.0, 2.0]
    now[0] = 110.0
    assert limits.submit_delay("openai") == 0.0
    assert limits.submit_delay("fal") == 0.0  # no rate known: no wait


def test_pauses_run_concurrently_on_few_threads_and_results_come_back():
    def job(name, seconds):
        yield Pause(seconds)
        return name

    scheduler = Scheduler(2, Limits({}), scale=1.0)
    start = time.monotonic()
    results = run_all(scheduler, [job(f"j{i}", 0.2) for i in range(20)])
    elapsed = time.monotonic() - start
    scheduler.close()
    assert [r for r, _ in results] == [f"j{i}" for i in range(20)]
    assert elapsed < 1.5  # twenty 0.2 s waits on two threads overlap (sequential would be 4 s)


def test_a_jobs_error_is_reported_as_its_result():
    def broken():
        yield Pause(0)
        raise ValueError("boom")

    scheduler = Scheduler(1, Limits({}), scale=1.0)
    [(result, error)] = run_all(scheduler, [broken()])
    scheduler.close()
    assert result is None and isinstance(error, ValueError)


def test_slots_are_held_until_released_and_stop_cancels_jobs_that_sent_nothing():
    limits = Limits({"kie": (1, None)})
    release = threading.Event()
    order: list[str] = []

    def job(name, fresh):
        try:
            yield NeedSlot("kie", fresh)
        except Cancelled:
            order.append(f"{name} cancelled")
            return "cancelled"
        try:
            order.append(f"{name} has the slot")
            while not release.is_set():
                yield Pause(0.01)
        finally:
            limits.release("kie")
        return "done"

    scheduler = Scheduler(2, limits, scale=1.0)
    results: dict = {}
    done = threading.Semaphore(0)
    for name, fresh in (("first", True), ("waiting", True), ("resumed", False)):
        scheduler.start(job(name, fresh), lambda r, e, name=name: (results.__setitem__(name, (r, e)), done.release()))
    wait_for(lambda: order)
    time.sleep(0.2)  # time in which a second slot, were there one, would have been taken
    assert order == ["first has the slot"]  # the others wait: one kie slot
    scheduler.stop()  # Ctrl-C: the fresh waiter is cancelled; a job already at the provider is not
    wait_for(lambda: "waiting cancelled" in order)  # (at once, while the resumed job still waits)
    assert "resumed has the slot" not in order
    release.set()
    for _ in range(3):
        assert done.acquire(timeout=5)
    scheduler.close()
    assert results["first"] == ("done", None) and results["resumed"] == ("done", None)
    assert results["waiting"] == ("cancelled", None)
    assert order.index("waiting cancelled") < order.index("resumed has the slot")


@pytest.mark.parametrize("blocked", [1, 3])
def test_a_blocking_sleep_gets_a_stand_in_worker(blocked):
    scheduler = Scheduler(1, Limits({}), scale=1.0)

    def sleeper():
        yield Pause(0)
        scheduler.sleep(0.5)  # an HTTP retry's backoff, inside a step
        return "slept"

    def quick():
        yield Pause(0.05)
        return "quick"

    start = time.monotonic()
    results = run_all(scheduler, [sleeper() for _ in range(blocked)] + [quick()])
    scheduler.close()
    assert [r for r, _ in results] == ["slept"] * blocked + ["quick"]
    assert time.monotonic() - start < 0.9  # the sleeps overlapped instead of queueing on the one worker


def test_the_run_queue_serves_jobs_at_their_slot_first_then_new_rows_then_saving():
    queue = _RunQueue()
    queue.put("saving", LATER)
    queue.put("new row", NEW)
    queue.put("slot granted", AT_SLOT)
    queue.put_at(time.monotonic() - 1, "poll due")  # a pause that has ended: back at its slot
    queue.put("another new row", NEW)
    order = [queue.get() for _ in range(5)]
    assert order == ["slot granted", "poll due", "new row", "another new row", "saving"]
    assert queue.waiting(LATER) == 0


def test_an_idle_worker_wakes_for_a_pause_that_ends_sooner_than_the_one_it_watches():
    queue = _RunQueue()
    queue.put_at(time.monotonic() + 30, "in thirty seconds")
    got: list = []
    worker = threading.Thread(target=lambda: got.append(queue.get()), daemon=True)
    worker.start()
    wait_for(lambda: queue._watching)  # the worker now watches the thirty-second pause
    queue.put_at(time.monotonic() + 0.05, "soon")
    worker.join(timeout=5)
    assert got == ["soon"]


def test_work_put_while_every_worker_waits_is_taken_at_once():
    queue = _RunQueue()
    queue.put_at(time.monotonic() + 30, "much later")
    got: list = []
    workers = [threading.Thread(target=lambda: got.append(queue.get()), daemon=True) for _ in range(2)]
    for worker in workers:
        worker.start()
    wait_for(lambda: queue._watching and queue._idle == 1)  # one watches the clock, one idles
    queue.put("a", NEW)
    queue.put("b", LATER)
    for worker in workers:
        worker.join(timeout=5)
    assert sorted(got) == ["a", "b"]


def test_stand_in_workers_are_bounded(monkeypatch):
    from imgroute import policy

    monkeypatch.setattr(policy, "MAX_STANDIN_WORKERS", 2)
    scheduler = Scheduler(1, Limits({}), scale=1.0)
    most = [0]

    def sleeper():
        yield Pause(0)
        most[0] = max(most[0], scheduler._workers)
        scheduler.sleep(0.2)
        return "slept"

    results = run_all(scheduler, [sleeper() for _ in range(6)])
    scheduler.close()
    assert [r for r, _ in results] == ["slept"] * 6
    assert most[0] <= 1 + 2  # the base worker and at most two stand-ins, however many sleep at once


class CountedThreads:
    """The scheduler's threads, counted as they are made."""

    def __init__(self, monkeypatch):
        self.made: list[threading.Thread] = []
        made, real = self.made, threading.Thread

        class Counted(real):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                made.append(self)

        monkeypatch.setattr("imgroute.batches.scheduler.threading.Thread", Counted)

    def alive(self) -> int:
        return sum(thread.is_alive() for thread in self.made)


def generation():
    """A synchronous provider's request, held open while it generates."""

    def steps(scheduler):
        yield Pause(0)
        with scheduler.generating():
            time.sleep(0.02)
        return "made"

    return steps


def test_a_stand_in_no_longer_needed_parks_and_stands_in_again(monkeypatch):
    threads = CountedThreads(monkeypatch)
    scheduler = Scheduler(2, Limits({}), scale=1.0)
    for _ in range(10):  # one generation after another, as a client of `serve` sends them
        assert run_all(scheduler, [generation()(scheduler)]) == [("made", None)]
    assert len(threads.made) == 2 + 1  # the two workers and one stand-in, not a thread per generation
    results = run_all(scheduler, [generation()(scheduler) for _ in range(6)])  # six at once: six stand-ins
    assert results == [("made", None)] * 6 and len(threads.made) == 2 + 6
    scheduler.close()
    wait_for(lambda: not threads.alive(), limit=5)
    assert threads.alive() == 0  # closing ends the parked spares too


def test_a_parked_spare_ends_after_its_time(monkeypatch):
    from imgroute import policy

    monkeypatch.setattr(policy, "SPARE_SECONDS", 0.1)
    threads = CountedThreads(monkeypatch)
    scheduler = Scheduler(1, Limits({}), scale=1.0)
    assert run_all(scheduler, [generation()(scheduler)]) == [("made", None)]
    wait_for(lambda: threads.alive() == 1)  # the spare's SPARE_SECONDS are over
    assert len(threads.made) == 2 and threads.alive() == 1  # the worker; the spare has ended
    assert run_all(scheduler, [generation()(scheduler)]) == [("made", None)]  # a new stand-in, as before
    assert len(threads.made) == 3
    scheduler.close()


def test_a_slow_journal_cannot_let_the_next_send_crowd_the_last():
    now = [100.0]
    limits = Limits({"kie": (5, 60.0)}, clock=lambda: now[0])  # one a second
    assert [limits.submit_delay("kie") for _ in range(2)] == [0.0, 1.0]  # booked for 100.0 and 101.0
    now[0] = 100.4  # the first job's commit was slow: it sends only now
    assert limits.gap_left("kie") == 0.0
    now[0] = 101.0  # the second, on time, still keeps a second's distance from the first send
    assert abs(limits.gap_left("kie") - 0.4) < 1e-9


def test_cancel_stops_one_job_that_sent_nothing_and_leaves_the_others():
    """serve: a client hung up. Its job waiting for a slot ends at once, its job pausing before a send
    wakes at once; a job at the provider, and every other job, run on."""
    limits = Limits({"kie": (1, None)})
    release = threading.Event()
    order: list[str] = []

    def holder():
        yield NeedSlot("kie", True)
        try:
            order.append("holder has the slot")
            while not release.is_set():
                yield Pause(0.01)
        finally:
            limits.release("kie")
        return "done"

    def waiter(name):
        try:
            yield NeedSlot("kie", True)
        except Cancelled:
            return "cancelled"
        limits.release("kie")
        return "sent"

    def pausing():
        yield Pause(60, before_send=True)  # its turn at a provider's rate, a minute away
        return "woke"

    scheduler = Scheduler(2, limits, scale=1.0)
    results: dict = {}
    done = threading.Semaphore(0)

    def start(name, steps):
        return scheduler.start(steps, lambda r, e: (results.__setitem__(name, (r, e)), done.release()))

    held = start("holder", holder())
    wait_for(lambda: order)
    gone, stays = start("gone", waiter("gone")), start("stays", waiter("stays"))
    paused = start("paused", pausing())
    time.sleep(0.1)  # all three wait: for the one kie slot, for the minute
    scheduler.cancel(gone)
    scheduler.cancel(paused)
    scheduler.cancel(held)  # already at its provider: nothing changes for it
    assert done.acquire(timeout=5) and done.acquire(timeout=5)
    assert results == {"gone": ("cancelled", None), "paused": ("woke", None)}
    release.set()
    assert done.acquire(timeout=5) and done.acquire(timeout=5)
    scheduler.close()
    assert results["holder"] == ("done", None) and results["stays"] == ("sent", None)
    assert stays is not gone
