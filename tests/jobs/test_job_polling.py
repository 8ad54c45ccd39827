"""A batch job's first poll: aimed at the provider's learned job time, counted from the moment the
submit was answered (journaling and the scheduler's turn come out of the wait, not on top of it).
White-box: TaskRunner.wait driven by hand with a fake clock, adapter and ledger."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

from imgroute.jobs.polling import PollTiming
from imgroute.jobs.state import JobRun
from imgroute.jobs.steps import Pause
from imgroute.jobs.tasks import Task, TaskRunner
from imgroute.providers.base import Output, Poll


class Adapter:
    provider = "kie"
    poll_schedule = (2.0, 1.5, 15.0)
    window_s = 0.0

    def __init__(self, clock, done_at: float):
        self.clock, self.done_at, self.polled_at = clock, done_at, []

    def poll(self, http, handle) -> Poll:
        self.polled_at.append(self.clock.now)
        if self.clock.now < self.done_at:
            return Poll("running", detail="generating")
        return Poll("succeeded", outputs=(Output(url="https://x/1.png"),), took=0.2)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class NoLedger:
    """Writes go nowhere: these tests look at the waits only."""

    @contextmanager
    def transaction(self):
        yield SimpleNamespace(task_state=lambda *args: None)

    def commit(self, unsaved) -> None:
        unsaved.clear()


def runner(clock: Clock, timing: PollTiming) -> TaskRunner:
    return TaskRunner(SimpleNamespace(scale=1.0), NoLedger(), None, clock, 600.0, timing, lambda state, message: None)


def drive(steps, clock: Clock) -> list[float]:
    """Run the steps, moving the clock through every pause; returns the pauses."""
    pauses = []
    for need in steps:
        assert isinstance(need, Pause)
        pauses.append(need.seconds)
        clock.now += need.seconds
    return pauses


def sent_task(at: float) -> Task:
    task = Task(1, SimpleNamespace(client_ref="r1"), "submitted", {"task_id": "t1"})
    task.sent_at = at
    return task


def test_the_first_poll_is_due_the_learned_time_after_the_submit_was_answered():
    clock, timing = Clock(), PollTiming()
    timing.observe("kie", 0.2, 1, None, took=0.2)
    task = sent_task(clock.now)
    clock.now += 0.05  # journaling the answer and waiting for a worker
    adapter = Adapter(clock, done_at=task.sent_at + 0.2)
    pauses = drive(runner(clock, timing).wait(JobRun("j1", None, clock.now, None), adapter, [task]), clock)
    assert len(pauses) == 1 and abs(pauses[0] - 0.15) < 1e-9
    assert adapter.polled_at == [task.sent_at + 0.2]  # one poll, at the job's end


def test_a_late_start_never_makes_a_negative_pause_and_later_waits_are_whole():
    clock, timing = Clock(), PollTiming()
    timing.observe("kie", 0.2, 1, None, took=0.2)
    task = sent_task(clock.now)
    clock.now += 0.5  # the machine was busy: the expected time has already passed
    adapter = Adapter(clock, done_at=task.sent_at + 0.6)
    pauses = drive(runner(clock, timing).wait(JobRun("j1", None, clock.now, None), adapter, [task]), clock)
    assert pauses[0] == 0.0 and all(p > 0 for p in pauses[1:]) and task.state == "succeeded"
