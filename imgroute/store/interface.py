"""The ledger as the rest of imgroute sees it: a Protocol every backend implements (SQLite now,
PostgreSQL for teams), and the unit of work its writes go through.

Writes happen inside `with ledger.transaction() as tx:`: all of them are committed when the block
ends, or none (a BudgetRefused, or any error, rolls back). A job whose writes span several steps
keeps them in an `Unsaved` and commits it with the next write that must be durable (the intent
before a send, the job's end): `ledger.commit(unsaved)`, or `unsaved.replay_into(tx)` inside a
transaction that adds its own writes (and `unsaved.clear()` once it has committed).

Claims are leases on keys (`job:ID`, a batch row's `LABEL:ROW`): `claim(keys, owner, ttl)` takes
the keys nobody else holds, `renew` extends them, `release` gives them up. Times come from the
ledger's own clock (`ledger.clock`), never the caller's.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Protocol, TypeVar

from imgroute import policy
from imgroute.models import OfferRef
from imgroute.store.records import (
    AttemptRecord,
    EventRecord,
    FileRecord,
    Holder,
    Idempotent,
    JobRecord,
    NewJob,
    RowJob,
    Settled,
    SpendRow,
    TaskRecord,
)

# The name this machine goes by in a team ledger (recorded with each job, file and lease): its host
# name, or IMGROUTE_MACHINE (containers whose host names change with every start want a stable one).
MACHINE = os.environ.get("IMGROUTE_MACHINE") or socket.gethostname()


def _process_space() -> str:
    """Which set of processes this one's pid belongs to: this boot of this kernel and this pid
    namespace (a container has its own). A lease whose holder shares it, and whose pid is gone, died
    here: it need not wait for its expiry. ('' where /proc cannot tell: never assumed.)"""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot_id:
            boot = boot_id.read().strip()
        return f"{boot[:8]}.{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


PROCESS_SPACE = _process_space()
# This process's leases are told apart from an earlier process's (with the same pid, or another
# machine's) by this owner: pid-nonce@machine#space.
PROCESS_OWNER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}@{MACHINE}#{PROCESS_SPACE}"


def died_here(owner: str, pid: int | None) -> bool:
    """Whether a lease's holder was a process of this machine's process space that is gone."""
    from imgroute.files import process_alive

    return bool(PROCESS_SPACE) and pid is not None and owner.endswith(f"#{PROCESS_SPACE}") and not process_alive(pid)


# How long a lease holds unless renewed: a team ledger's machines renew theirs (a heartbeat), and a
# dead machine's jobs and rows are taken over once it runs out. (SQLite: held while its process lives.)
LEASE_SECONDS = policy.lease_seconds()


def job_key(job_id: str) -> str:
    """A job's lease: held by the process running it, so that two never run the same job."""
    return f"job:{job_id}"


def row_key(label: str, row: str) -> str:
    """A batch row's lease (`label` is the batch file's hex label)."""
    return f"{label}:{row}"


T = TypeVar("T")


class Answer(Generic[T]):
    """What the ledger will answer to statements a transaction has asked and not read yet: a team
    ledger holds them and sends many at once (its committer's claims and slots go in one message),
    so that reading the answer, `answer()`, costs no round trip of its own. (SQLite answers at once.)"""

    __slots__ = ("_read",)

    def __init__(self, read: Callable[[], T]):
        self._read = read

    def __call__(self) -> T:
        return self._read()

    @staticmethod
    def given(value: T) -> Answer[T]:
        return Answer(lambda: value)


def answered(result: Any) -> Any:
    """A unit of work's result, its Answer read if it gave one."""
    return result() if isinstance(result, Answer) else result


def slot_key(account: str, holder: str) -> str:
    """(A team ledger) a slot of a provider account's, held by one job: a lease like the others."""
    return f"slot:{account}:{holder}"


def claim_order(key: str) -> str:
    """A batch row's claim's place in the lock order (Ledger.transact_later): before the slots."""
    return f"claim:{key}"


def slot_order(account: str, release: bool = False) -> str:
    """An account's slot's place in the lock order: by account, and its slots given back before
    any is taken (a job that gives its slot back and takes it again in one message keeps one)."""
    return f"slot:{account}:{'0 release' if release else '1 take'}"


def held_by(held: dict[str, Holder]) -> str:
    """Who holds the first of the keys a claim found held: "pid 4242"."""
    return str(next(iter(held.values())))


class Transaction(Protocol):
    """The writes of one unit of work; see the module's docstring."""

    def new_job(self, job: NewJob) -> None: ...

    def job_state(
        self,
        job_id: str,
        state: str,
        *,
        error: str | None = None,
        actual: str | None = None,
        source: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        """The job's state (and, when it ends, its cost and exit code); its history gets an event."""

    def reserve_attempt(
        self,
        job_id: str,
        seq: int,
        offer: OfferRef,
        estimate: Decimal | None,
        breakdown: list[str],
        *,
        job_state: str | None = None,
    ) -> int:
        """Check the daily and monthly caps and record the attempt (raising BudgetRefused): the
        attempt row is the reservation, counted at its estimate until its actual cost is known, so
        two processes cannot together pass a cap. With `job_state`, the job moves to it too."""

    def attempt_state(
        self,
        attempt_id: int,
        state: str,
        *,
        error: str | None = None,
        actual: str | None = None,
        source: str | None = None,
        at_risk: str | None = None,
        priced: str | None = None,
        stated: str | None = None,
    ) -> None:
        """`priced` and `stated`: imgroute's pricing of what it delivered, and the provider's own
        statement of its charge where its answer has one. `at_risk`: what the attempt may have been
        charged for requests that failed without saying (counted against the caps until settled);
        every state change sets it anew."""

    def task_submitting(self, attempt_id: int, seq: int, client_ref: str, images: int, spec: dict) -> int:
        """Journal the intent to submit (committed before the request is sent): the task's id."""

    def task_submitted(self, task_id: int, provider_job_id: str | None, handle: dict) -> None: ...

    def task_state(self, task_id: int, state: str, detail: str | None = None) -> None: ...

    def task_outputs(
        self,
        task_id: int,
        outputs: list[dict],
        usage: dict | None,
        *,
        provider_job_id: str | None = None,
        handle: dict | None = None,
    ) -> None:
        """The finished results, recorded before any is downloaded, so resume can fetch them again
        (a synchronous provider's id and results land together)."""

    def add_file(
        self,
        job_id: str,
        task_id: int | None,
        *,
        path: str,
        sha256: str,
        size: int,
        fmt: str,
        width: int,
        height: int,
        verified: bool,
    ) -> None: ...

    def claim(self, keys: list[str], owner: str, ttl: float) -> dict[str, Holder]:
        """Lease these keys to `owner` for `ttl` seconds; keys another owner holds are left to it:
        {key: its holder}. (An owner's own keys are renewed.)"""

    def claim_new(self, key: str, owner: str, ttl: float) -> None:
        """Lease a key nobody can hold yet (a new job's) to `owner` for `ttl` seconds."""

    def renew(self, keys: list[str], owner: str, ttl: float) -> None: ...

    def ask_claim(self, keys: list[str], owner: str, ttl: float) -> Answer[dict[str, Holder]]:
        """`claim`, its answer read later (see Answer)."""

    def ask_lane(
        self, account: str, holder: str, concurrency: int | None, spacing: float | None
    ) -> Answer[float | None]:
        """(A team ledger) a slot of a provider account shared by every machine, held from this
        transaction's commit, and the booked moment of its next submit: None (none free: ask
        again) or seconds to wait before sending. Its answer is read later."""

    def ask_row_job(self, key: str) -> Answer[RowJob | None]:
        """Ledger.row_job, as this transaction sees it, read later."""

    def release(self, keys: list[str], owner: str) -> None:
        """Give up the owner's leases on these keys (others' are untouched)."""

    def settle(self, job_id: str, charged: bool) -> Settled:
        """A person checked the provider's dashboard for the job's requests whose fate or charge is
        unknown, and found them charged or not (see `imgroute jobs settle`)."""

    def set_budget(self, period: str, cap: Decimal | None) -> None: ...

    def idempotency(self, key: str, fingerprint: str, owner: str, ttl: float) -> Idempotent:
        """serve's Idempotency-Key: what it names (records.Idempotent), taken when new."""

    def idempotency_job(self, key: str, job_id: str) -> None:
        """The key names this job (with its first intent, before any send)."""

    def idempotency_end(self, key: str, job_id: str | None, owner: str) -> None: ...


P = ParamSpec("P")


class Unsaved:
    """Writes a job keeps for its next commit, each named as the Transaction method that will make
    it: `unsaved.add(Transaction.task_state, task_id, state)`. A kill before that commit loses
    nothing a resume cannot find again (files by their content, an attempt settled again)."""

    def __init__(self) -> None:
        self._writes: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def add(self, write: Callable[Concatenate[Transaction, P], object], *args: P.args, **kwargs: P.kwargs) -> None:
        self._writes.append((write.__name__, args, kwargs))

    def __bool__(self) -> bool:
        return bool(self._writes)

    def __len__(self) -> int:
        return len(self._writes)

    def replay_into(self, tx: Transaction) -> None:
        for name, args, kwargs in self._writes:
            getattr(tx, name)(*args, **kwargs)

    def clear(self) -> None:
        self._writes.clear()


class Ledger(Protocol):
    """The journal of every job, its budgets and its leases; see the module's docstring."""

    clock: Callable[[], float]
    shared_by_machines: ClassVar[bool]  # a team ledger (PostgreSQL): its leases expire, a batch's rows are shared
    zone: Any  # the tzinfo budget days are counted in (None: this machine's local time)

    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def commit(self, unsaved: Unsaved) -> None:
        """Commit the writes kept in `unsaved` in one transaction, then clear it."""

    def commit_later(self, unsaved: Unsaved, done: Callable[[Any, BaseException | None], None]) -> None:
        """`commit`, with `done(None, None)` called once it is committed (or `done(None, error)`),
        here or on another thread: a ledger many jobs share commits theirs together meanwhile,
        so that no thread of theirs waits for it."""

    def transact_later(
        self,
        work: Callable[[Transaction], Any],
        done: Callable[[Any, BaseException | None], None],
        lock_order: str | None = None,
    ) -> None:
        """`work(tx)` in a transaction, then `done(what it returned, None)` (an Answer it returned
        is read first), or `done(None, error)` with nothing of it committed, as `commit_later` does.
        `lock_order`: the work takes a lock other machines contend for (a batch row's claim, an
        account's slot); it is not kept with other jobs' writes until their commit, but committed
        at once with the other such works of the moment, their locks taken in the order of this
        key, so that two machines never wait for each other."""

    def release_lane(self, account: str, holder: str) -> None: ...

    def close(self) -> None: ...

    # -- reading

    def job(self, job_id: str) -> JobRecord | None: ...

    def find_job(self, prefix: str) -> list[JobRecord]: ...

    def jobs(
        self,
        states: tuple[str, ...] = (),
        provider: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
    ) -> list[JobRecord]:
        """Newest first; `provider` is a provider (kie) or an offer (piapi/gpt-image-2-preview)."""

    def jobs_for_rows(self, label: str) -> dict[str, RowJob]:
        """The latest job of every row of one batch file, by row key."""

    def row_job(self, key: str) -> RowJob | None:
        """The latest job of one batch row."""

    def lease_expiries(self, keys: list[str]) -> dict[str, float | None]:
        """When each of these keys' leases runs out (keys nobody holds are absent)."""

    def attempts(self, job_id: str) -> list[AttemptRecord]: ...

    def tasks(self, job_id: str) -> list[TaskRecord]: ...

    def files(self, job_id: str) -> list[FileRecord]: ...

    def events(self, job_id: str) -> list[EventRecord]: ...

    def unfinished(self) -> list[JobRecord]: ...

    # -- money

    def spent_since(self, since: float) -> Decimal:
        """What attempts made on or after the local day of `since` have committed (spent, or in
        flight at their estimate)."""

    def spend_rows(self, since: float | None = None) -> list[SpendRow]: ...

    def at_risk_since(self, since: float) -> Decimal: ...

    def budgets(self) -> dict[str, Decimal]: ...
