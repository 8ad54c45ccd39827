"""What the ledger backends share, in SQL: the reads, a transaction's frame, and commits grouped
for a door's many threads. A backend (store/sqlite.py, store/postgres.py) brings its connection (one
that runs SQL with `?` placeholders and rows read by column name or position), its transaction
class, how it begins a write transaction, and the two expressions its SQL spells its own way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, ClassVar

from imgroute.models import UNFINISHED_JOB_STATES, JobState
from imgroute.store.interface import Unsaved, answered
from imgroute.store.periods import day_start
from imgroute.store.records import (
    AttemptRecord,
    EventRecord,
    FileRecord,
    JobRecord,
    RowJob,
    SpendRow,
    TaskRecord,
)
from imgroute.store.sql_writes import ROW_JOB, SQLTransaction, budgets, row_job_of, spent_since


class SQLLedger:
    """A ledger on one connection (`db`), written through `transaction()` under its lock."""

    BEGIN: ClassVar[str] = "BEGIN"  # how a write transaction starts
    shared_by_machines: ClassVar[bool] = False  # a team ledger: rows claimed one by one, leases expire
    QUALITY: ClassVar[str]  # a job's requested quality, from its JSON request
    ROWS_OF_BATCH: ClassVar[str]  # jobs whose row_key is `?` (a batch's label), ':', a row
    TRANSACTION: ClassVar[type[SQLTransaction]]

    db: Any
    clock: Callable[[], float]
    zone: dt.tzinfo | None = None  # where budget days are counted (None: local time)

    def __init__(self) -> None:
        # Writers (and a GroupedCommits ledger's readers) queue here: one thread at a time uses the
        # connection, so a transaction never takes in another thread's statements.
        self._lock = threading.RLock()

    def close(self) -> None:
        self.db.close()

    def _run_again(self, exc: BaseException) -> bool:
        """Whether the server gave a whole transaction up to let another through (`_retrying`
        runs it again)."""
        return False

    def _late_errors(self) -> tuple[type[Exception], ...]:
        """(A backend that holds writes and sends them together) what may be raised after the
        statement it is about: its server's refusal of one, a check whose answer is read late. In a
        group commit sent whole, whose job it was is not known: the group is sent again, job by job."""
        return ()

    @contextmanager
    def transaction(self) -> Iterator[SQLTransaction]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            tx = self.TRANSACTION(self.db, self.clock, self.zone)
            tx.write(self.BEGIN)
            try:
                yield tx
                tx.before_commit()
                tx.write("COMMIT")
                tx.flush()
            except BaseException:
                tx.unsent()
                self.db.execute("ROLLBACK")
                raise

    def release_lane(self, account: str, holder: str) -> None:
        """Give back `holder`'s slot of the account (its attempt is done with the provider)."""

    def commit(self, unsaved: Unsaved) -> None:
        if unsaved:
            with self.transaction() as tx:
                unsaved.replay_into(tx)
            unsaved.clear()

    def commit_later(self, unsaved: Unsaved, done: Told) -> None:
        def cleared(answer: Any, error: BaseException | None) -> None:
            if error is None:
                unsaved.clear()
            done(None, error)

        if not unsaved:
            done(None, None)
            return
        self.transact_later(unsaved.replay_into, cleared)

    def transact_later(self, work: Callable[[SQLTransaction], Any], done: Told, lock_order: str | None = None) -> None:
        """`work(tx)` in a transaction, then `done(what it returned, None)`, or `done(None, error)`
        with nothing of it committed: here, or (a ledger many jobs share) on its committer thread.
        `lock_order`: see interface.Ledger.transact_later."""
        try:
            with self.transaction() as tx:
                result = answered(work(tx))
        except Exception as exc:
            done(None, exc)
            return
        done(result, None)

    def _retrying(self, run: Callable[[], None]) -> None:
        """Run a whole transaction (again, where the backend gives one up to let another through)."""
        run()

    def _read(self, sql: str, args: tuple | list = ()) -> list[Any]:
        return self.db.execute(sql, args).fetchall()

    # -- jobs

    def job(self, job_id: str) -> JobRecord | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return JobRecord.of(rows[0]) if rows else None

    def find_job(self, prefix: str) -> list[JobRecord]:
        rows = self._read("SELECT * FROM jobs WHERE id LIKE ? ORDER BY created", (prefix + "%",))
        return [JobRecord.of(row) for row in rows]

    def jobs(
        self,
        states: tuple[str, ...] = (),
        provider: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
    ) -> list[JobRecord]:
        sql = [
            "SELECT jobs.*, (SELECT provider || '/' || model FROM attempts WHERE job_id = jobs.id "
            "ORDER BY seq DESC LIMIT 1) AS offer, (SELECT COUNT(*) FROM files WHERE job_id = jobs.id) AS images "
            "FROM jobs WHERE 1=1"
        ]
        args: list[Any] = []
        if states:
            sql.append(f"AND state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if provider:  # a provider (kie) or an offer (piapi/gpt-image-2-preview)
            name, _, model = provider.partition("/")
            sql.append("AND EXISTS (SELECT 1 FROM attempts WHERE job_id = jobs.id AND provider = ?")
            sql.append("AND model = ?)" if model else ")")
            args.extend([name, model] if model else [name])
        if since is not None:
            sql.append("AND created >= ?")
            args.append(since)
        if until is not None:
            sql.append("AND created < ?")
            args.append(until)
        sql.append("ORDER BY created DESC LIMIT ?")
        args.append(limit)
        return [JobRecord.of(row) for row in self._read(" ".join(sql), args)]

    def jobs_for_rows(self, label: str) -> dict[str, RowJob]:
        assert label.isalnum(), label  # nothing GLOB or LIKE would read as a pattern
        rows = self._read(
            "SELECT row_key, id, state, exit_code, error, (SELECT COUNT(*) FROM files WHERE job_id = jobs.id), "
            f"out_dir FROM jobs WHERE {self.ROWS_OF_BATCH} ORDER BY created",
            (label,),
        )
        return {  # later jobs of a row replace earlier ones
            key: RowJob(id=job_id, state=JobState(state), exit_code=code, error=error, images=n, out_dir=out)
            for key, job_id, state, code, error, n, out in rows
        }

    def machines(self) -> dict[str | None, int]:
        """Jobs by the machine that made them (None: before ledgers recorded it), most first."""
        return dict(self._read("SELECT host, COUNT(*) FROM jobs GROUP BY host ORDER BY COUNT(*) DESC, host"))

    def leases_by_machine(self) -> dict[str | None, int]:
        """Leases held now (not run out), by the machine holding them."""
        rows = self._read("SELECT host, COUNT(*) FROM claims WHERE expires IS NULL OR expires >= ? GROUP BY host",
                          (self.clock(),))  # fmt: skip
        return dict(rows)

    def row_job(self, key: str) -> RowJob | None:
        """The latest job of one batch row (`label:row`)."""
        return row_job_of(self._read(ROW_JOB, (key,)))

    def lease_expiries(self, keys: list[str]) -> dict[str, float | None]:
        """The leases held on these keys: when each runs out (keys nobody holds are absent)."""
        marks = ",".join("?" * len(keys))
        return {
            key: expires for key, expires in self._read(f"SELECT key, expires FROM claims WHERE key IN ({marks})", keys)
        }

    def attempts(self, job_id: str) -> list[AttemptRecord]:
        rows = self._read("SELECT * FROM attempts WHERE job_id = ? ORDER BY seq", (job_id,))
        return [AttemptRecord.of(row) for row in rows]

    def tasks(self, job_id: str) -> list[TaskRecord]:
        rows = self._read(
            "SELECT tasks.*, attempts.provider, attempts.seq AS attempt_seq "
            "FROM tasks JOIN attempts ON attempts.id = attempt_id "
            "WHERE attempts.job_id = ? ORDER BY attempts.seq, tasks.seq",
            (job_id,),
        )
        return [TaskRecord.of(row) for row in rows]

    def files(self, job_id: str) -> list[FileRecord]:
        return [FileRecord.of(row) for row in self._read("SELECT * FROM files WHERE job_id = ? ORDER BY id", (job_id,))]

    def events(self, job_id: str) -> list[EventRecord]:
        rows = self._read("SELECT at, state, detail FROM events WHERE job_id = ? ORDER BY id", (job_id,))
        return [EventRecord(at=at, state=state, detail=detail) for at, state, detail in rows]

    def unfinished(self) -> list[JobRecord]:
        marks = ",".join("?" * len(UNFINISHED_JOB_STATES))
        rows = self._read(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created", UNFINISHED_JOB_STATES)
        return [JobRecord.of(row) for row in rows]

    # -- money

    def spent_since(self, since: float) -> Decimal:
        return spent_since(self.db, since, self.zone)

    def budgets(self) -> dict[str, Decimal]:
        return budgets(self.db)

    def spend_rows(self, since: float | None = None) -> list[SpendRow]:
        rows = self._read(
            "SELECT attempts.created, provider, model, attempts.state, attempts.estimate_usd, attempts.actual_usd, "
            "attempts.at_risk_usd, jobs.host, attempts.priced_usd, attempts.stated_usd, "
            f"{self.QUALITY} AS quality, "
            "(SELECT COUNT(*) FROM files JOIN tasks ON tasks.id = files.task_id WHERE tasks.attempt_id = attempts.id)"
            " AS images FROM attempts JOIN jobs ON jobs.id = attempts.job_id WHERE attempts.created >= ?",
            (since or 0,),
        )
        return [SpendRow.of(row) for row in rows]

    def at_risk_since(self, since: float) -> Decimal:
        """What attempts made on or after the budget day of `since` may have been charged for requests
        that failed without saying (counted in `spent_since` until settled)."""
        rows = self._read(
            "SELECT at_risk_usd FROM attempts WHERE at_risk_usd IS NOT NULL AND created >= ?",
            (day_start(since, self.zone),),
        )
        return sum((Decimal(amount) for (amount,) in rows), Decimal(0))


Told = Callable[[Any, BaseException | None], None]  # (what the work returned, or why it failed)


class _Waiting:
    """A job's work (its writes, or a transaction's work) waiting to be committed with other
    jobs' (GroupedCommits); `then`: whom to tell once it is (transact_later); `lock_order`: see
    interface.Ledger.transact_later."""

    __slots__ = ("work", "done", "error", "result", "then", "lock_order")

    def __init__(self, work: Callable[[SQLTransaction], Any], then: Told | None = None, lock_order: str | None = None):
        self.work = work
        self.done = False
        self.error: BaseException | None = None
        self.result: Any = None
        self.then = then
        self.lock_order = lock_order


class GroupedCommits(SQLLedger):
    """One ledger for the threads of a batch's scheduler (or a server), which take turns advancing
    many jobs (mixed in before a backend's ledger: `class SharedLedger(GroupedCommits, SQLiteLedger)`).

    One connection, taken by one thread at a time: a job's transaction never takes in another's
    statements, and one page cache serves every job (a connection per thread re-read the pages
    each other connection had written).

    Commits are grouped: the jobs whose writes wait while one commit runs are committed together by
    the next, each in a savepoint of its own (one job's refusal, a budget cap, undoes its writes
    alone), with one BEGIN, one COMMIT and one sync for all. A caller returns only once its own
    writes are committed, so the journal-before-send rule is kept for each job: a burst of
    submits no longer waits in line for a commit each.

    A job that runs on a scheduler need not wait at all: it hands its writes (or a transaction's
    work: an intent, a reservation) to `commit_later` / `transact_later` and yields; the committer
    thread commits everything handed to it meanwhile in one group, and tells each job, which the
    scheduler then resumes. The scheduler's few threads run other jobs while the ledger writes
    (on a team ledger a commit is round trips to a server: they no longer hold up every job).
    Works that take a lock other machines contend for (a `lock_order`: a batch row's claim, an
    account's slot) are never held in a group's transaction: they follow it, in their lock order,
    each committed at once (a team ledger sends them together: `_run_ordered`)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._waiting: list[_Waiting] = []
        self._waiting_lock = threading.Lock()  # (held only to add to or take the list)
        self.commits = 0  # transactions committed (a group's, an ordered work's), for tests and benchmarks
        # commit_later's: writes waiting for the committer thread, which commits them together
        self._later: list[_Waiting] = []
        self._later_ready = threading.Condition(threading.Lock())
        self._committer: threading.Thread | None = None
        self._closing = False

    def transact_later(self, work: Callable[[SQLTransaction], Any], done: Told, lock_order: str | None = None) -> None:
        """The job's thread goes on to other jobs; the committer thread runs this work with whatever
        other jobs' waits, each in a savepoint of its own, commits them together, and tells each
        (on its own thread). `lock_order`: see interface.Ledger.transact_later."""
        with self._later_ready:
            if self._closing:  # (a thread left running when the process was told to end at once)
                done(None, RuntimeError("the ledger was closed before these writes were committed"))
                return
            self._later.append(_Waiting(work, done, lock_order))
            if self._committer is None:
                self._committer = threading.Thread(target=self._commit_later_ones, name="imgroute-commits",
                                                   daemon=True)  # fmt: skip
                self._committer.start()
            self._later_ready.notify()

    def _commit_later_ones(self) -> None:
        """The committer thread: everything waiting, committed together, until the ledger closes."""
        while True:
            with self._later_ready:
                while not self._later and not self._closing:
                    self._later_ready.wait()
                if not self._later:
                    return
                group, self._later = self._later, []
            self._commit_and_tell(group)

    def _commit_and_tell(self, waiting_ones: list[_Waiting]) -> None:
        group = [waiting for waiting in waiting_ones if waiting.lock_order is None]
        if group:
            try:
                with self._lock:
                    self._retrying(lambda: self._commit_group(group, group[0], requeue=False))
            except BaseException as exc:  # (the database is gone: every job of the group is told)
                for waiting in group:
                    waiting.error = waiting.error or exc
        ordered = [waiting for waiting in waiting_ones if waiting.lock_order is not None]
        if ordered:
            self._run_ordered(sorted(ordered, key=lambda waiting: waiting.lock_order or ""))
        for waiting in waiting_ones:
            assert waiting.then is not None, "transact_later's work says whom to tell"
            with contextlib.suppress(Exception):  # (a job's wake-up must never stop the committer:
                waiting.then(None if waiting.error else waiting.result, waiting.error)  # every later job would wait)

    def _run_ordered(self, ordered: list[_Waiting]) -> None:
        """Works that take locks other machines contend for, in their lock order: here each in a
        transaction of its own (a backend across a network sends them together)."""
        for waiting in ordered:
            waiting.error = self._run_alone(waiting)

    def _run_alone(self, waiting: _Waiting) -> BaseException | None:
        def run() -> None:
            with self.transaction() as tx:  # (under the ledger's lock)
                waiting.result = answered(waiting.work(tx))

        try:
            self._retrying(run)
        except Exception as exc:
            return exc
        self.commits += 1
        return None

    def close(self) -> None:
        with self._later_ready:  # (what waits is committed first)
            self._closing = True
            self._later_ready.notify()
            committer = self._committer
        if committer is not None:
            committer.join()
        super().close()

    def commit(self, unsaved: Unsaved) -> None:
        if not unsaved:
            return
        mine = _Waiting(unsaved.replay_into)
        with self._waiting_lock:
            self._waiting.append(mine)
        with self._lock:
            if not mine.done:  # (else the commit before this one took it in)
                with self._waiting_lock:
                    group, self._waiting = self._waiting, []
                self._commit_group(group, mine)
        if mine.error is not None:
            raise mine.error
        unsaved.clear()

    def _commit_group(self, group: list[_Waiting], mine: _Waiting, requeue: bool = True) -> None:
        """Under the lock: one transaction, a savepoint for each job's writes (none for a job alone:
        the transaction is its own). `mine`: the caller's.

        Where writes are held and sent together (a team ledger), the group's go in one message
        with the commit; should the server refuse one of them, which job's it was is not known, so
        the group is run again, each job's writes sent on their own."""
        for waiting in group:
            waiting.error = None
        late = self._late_errors() if len(group) > 1 else ()  # (`except ()` catches nothing)
        try:
            try:
                self._group_transaction(group, mine, each_sent=not late)
            except late:
                for waiting in group:
                    waiting.error = None
                self._group_transaction(group, mine, each_sent=True)
        except BaseException:  # (Ctrl-C, a failing disk) nothing of the group is committed: the
            others = [waiting for waiting in group if waiting is not mine]  # others' writes wait again
            for waiting in others:
                waiting.error = None
            if requeue:  # (the committer thread's are told instead)
                with self._waiting_lock:
                    self._waiting[:0] = others
            raise
        self.commits += 1
        for waiting in group:
            waiting.done = True  # (only once COMMIT has returned)

    def _group_transaction(self, group: list[_Waiting], mine: _Waiting, each_sent: bool) -> None:
        with self.transaction() as tx:
            if len(group) == 1:
                mine.result = answered(mine.work(tx))  # (its failure rolls the transaction back, and is raised)
            else:
                for waiting in group:
                    self._replay_alone(waiting, tx, each_sent)

    def _replay_alone(self, waiting: _Waiting, tx: SQLTransaction, each_sent: bool) -> None:
        """One job's writes in a savepoint: its own refusal (or failure) undoes them alone.
        `each_sent`: sent before the next job's (their errors are then known to be their own)."""
        savepoint = tx.savepoint()
        try:
            waiting.result = answered(waiting.work(tx))
            if each_sent:
                tx.flush()
        except Exception as exc:
            if self._run_again(exc) or (not each_sent and isinstance(exc, self._late_errors())):
                raise  # (the server gave the whole transaction up, or whose error it is is not known)
            tx.undo(savepoint)
            waiting.error = exc
        tx.write("RELEASE job")

    def _read(self, sql: str, args: tuple | list = ()) -> list[Any]:
        with self._lock:
            return super()._read(sql, args)

    def spent_since(self, since: float) -> Decimal:
        with self._lock:
            return super().spent_since(since)

    def budgets(self) -> dict[str, Decimal]:
        with self._lock:
            return super().budgets()
