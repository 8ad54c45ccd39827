"""A job is a generator of steps: it yields where it must wait and returns its result.

One thread can drive one job (`drive`: `gen`, `jobs resume`), or a scheduler can interleave many on
a few threads (`scheduler.py`: `batch`). The job itself never knows which: it asks for a slot at
its provider with `NeedSlot` and gives it back through its `Slots`, and the driver decides.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any, NamedTuple, Protocol


class Pause(NamedTuple):
    """Wait `seconds` of the provider's time (scaled by IMGROUTE_TIME_SCALE) or, not scaled, of a
    rate limit's. `before_send`: the wait comes before a request is sent (its turn at a provider's
    rate, a 429's retry); a stop ends it at once, since what follows will not be sent."""

    seconds: float
    scaled: bool = True
    before_send: bool = False


class NeedSlot(NamedTuple):
    """A slot at `provider`, held from the first submit until the provider has finished. `fresh`:
    nothing sent yet, so a stopped batch may cancel the job instead (Cancelled is raised here)."""

    provider: str
    fresh: bool


class Later(NamedTuple):
    """Nothing to wait for, but nothing urgent either (only saving is left): a scheduler first runs
    the jobs that hold a provider's slot, so none holds it longer than it must."""


class Exchange(NamedTuple):
    """A wait that holds no thread: a request that waits long (a synchronous provider's
    generation: net/exchanges.py), or a commit the ledger makes with other jobs' (its
    `commit_later` and `transact_later`). `start(done)` begins it, and `done(answer, None)` or `done(None, error)` is
    called when it ends, on any thread; the job resumes with the answer (or the error raised where
    it yielded)."""

    start: Callable[[Callable[[Any, BaseException | None], None]], None]


Steps = Generator["Pause | NeedSlot | Later | Exchange", Any, Any]


class Slots(Protocol):
    """What a job gives back its slots to, and asks when its next submit may go."""

    def release(self, provider: str) -> None: ...

    def submit_delay(self, provider: str) -> float: ...

    def gap_left(self, provider: str) -> float: ...

    def stopping(self) -> bool:
        """True once no new request may be sent (a batch's Ctrl-C)."""
        ...


class Unlimited:
    """The slots of a single job: always free, submits never spaced."""

    def release(self, provider: str) -> None:
        pass

    def submit_delay(self, provider: str) -> float:
        return 0.0

    def gap_left(self, provider: str) -> float:
        return 0.0

    def stopping(self) -> bool:
        return False


def _waited(exchange: Exchange) -> tuple[Any, BaseException | None]:
    """An Exchange waited for on this thread: (its answer, its error)."""
    ended = threading.Event()
    outcome: list[Any] = []

    def done(answer: Any, error: BaseException | None) -> None:
        outcome[:] = [answer, error]
        ended.set()

    exchange.start(done)
    ended.wait()
    return outcome[0], outcome[1]


def drive(steps: Steps, wait_scaled: Callable[[float], None], sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run one job's steps on this thread: pauses are slept (Ctrl-C lands in the job, where it was
    waiting, as it would in a plain call), a slot is granted at once, `Later` goes on."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            need = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as done:
            return done.value
        value = error = None
        if isinstance(need, Pause):
            try:
                (wait_scaled if need.scaled else sleep)(need.seconds)
            except KeyboardInterrupt as exc:
                error = exc
        elif isinstance(need, Exchange):
            value, error = _waited(need)
        elif not isinstance(need, NeedSlot | Later):
            error = AssertionError(f"a job asked for {need!r}")
