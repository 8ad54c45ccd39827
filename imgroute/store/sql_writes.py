"""The ledger's writes in SQL, inside one open write transaction (see interface.Transaction): what
SQLite and PostgreSQL share. Each backend's transaction class adds what differs (store/sqlite.py,
store/postgres.py): how an inserted row's id comes back, how a day's committed total grows, what
serialises two reservations, and how a lease is held.

Order of writes is the point: a task row is committed as `submitting` before its request is sent,
and the provider's id is committed as soon as it comes back. A crash at any moment leaves a row
that says exactly what is known.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from imgroute.errors import BudgetRefused
from imgroute.models import UNFINISHED_JOB_STATES, AttemptState, JobState, OfferRef, TaskState
from imgroute.store.interface import MACHINE, Answer
from imgroute.store.periods import PERIODS, committed_cost, local_day, period_reset, period_start
from imgroute.store.records import Holder, Idempotent, NewJob, RowJob, Settled
from imgroute.words import count

IDEMPOTENCY_SECONDS = 24 * 3600  # how long an Idempotency-Key names its one job
CHARGED_LOST = "settled by hand: charged, its images lost"
NEVER_CHARGED = "settled by hand: never charged"


NEW_TASK = (  # a request's intent: (attempt, seq, client_ref, images, spec, created, updated)
    "INSERT INTO tasks (attempt_id, seq, client_ref, images, state, spec, created, updated) "
    "VALUES (?, ?, ?, ?, 'submitting', ?, ?, ?)"
)


ROW_JOB = (  # a batch row's latest job (row_job_of reads it)
    "SELECT id, state, exit_code, error, (SELECT COUNT(*) FROM files WHERE job_id = jobs.id), out_dir "
    "FROM jobs WHERE row_key = ? ORDER BY created DESC LIMIT 1"
)


def row_job_of(rows: list[Any]) -> RowJob | None:
    if not rows:
        return None
    job_id, state, code, error, n, out = rows[0]
    return RowJob(id=job_id, state=JobState(state), exit_code=code, error=error, images=n, out_dir=out)


class SQLTransaction:
    """The writes of one unit of work on a connection inside an open transaction (the ledger commits
    or rolls back when its `transaction()` block ends). `db` runs SQL with `?` placeholders;
    `zone` is where budget days are counted (None: this machine's local time)."""

    def __init__(self, db: Any, clock: Callable[[], float], zone: dt.tzinfo | None = None):
        self.db, self.clock, self.zone = db, clock, zone

    # -- what each backend does its own way

    def _insert(self, sql: str, args: tuple) -> int:
        """Run an INSERT: the new row's id."""
        raise NotImplementedError

    def add_committed(self, created: float, delta: Decimal) -> None:
        """Add `delta` to the committed total of the budget day an attempt was made on."""
        raise NotImplementedError

    def _serialise_reservations(self) -> None:
        """Called before a cap is checked: no other reservation may check one until this commits."""

    def _row_before(self, sql: str, args: tuple) -> Any:
        """A row as it is before this transaction's next statements change it (None: no such row),
        for `_then`. (A backend that sends statements without waiting reads it only when needed.)"""
        return self.db.execute(sql, args).fetchone()

    def _then(self, row: Any, use: Callable[[Any], None]) -> None:
        """`use(row)`, for a row read by `_row_before` that exists."""
        if row is not None:
            use(row)

    def _spent_since(self, since: float) -> Decimal:
        """What the budget days from `since`'s have committed, as this transaction sees them."""
        return spent_since(self.db, since, self.zone)

    def _caps(self) -> dict[str, Decimal]:
        """The budget caps, as this transaction sees them."""
        return budgets(self.db)

    def before_commit(self) -> None:
        """The last writes of the transaction, kept until its end (none, unless a backend keeps some)."""

    # -- how statements reach the database: at once here; a backend across a network may hold the
    # writes whose answer nobody reads, and send them with the next statement that is read

    def write(self, sql: str, args: tuple = ()) -> None:
        """A statement whose answer is not read."""
        self.db.execute(sql, args)

    def flush(self) -> None:
        """Send the writes held back (their errors are raised here)."""

    def unsent(self) -> None:
        """Forget the writes held back (the transaction is being rolled back)."""

    def savepoint(self) -> Any:
        """Begin a part of the transaction that `undo` can take back alone: what `undo` needs."""
        self.db.execute("SAVEPOINT job")
        return None

    def undo(self, savepoint: Any) -> None:
        """Take back everything since `savepoint()` (its writes, and what it held back)."""
        self.db.execute("ROLLBACK TO job")

    def claim(self, keys: list[str], owner: str, ttl: float) -> dict[str, Holder]:
        raise NotImplementedError

    def claim_new(self, key: str, owner: str, ttl: float) -> None:
        now = self.clock()
        self.write(
            "INSERT INTO claims (key, pid, owner, host, at, expires) VALUES (?, ?, ?, ?, ?, ?)",
            (key, os.getpid(), owner, MACHINE, now, now + ttl),
        )

    def renew(self, keys: list[str], owner: str, ttl: float) -> None:
        raise NotImplementedError

    def ask_claim(self, keys: list[str], owner: str, ttl: float) -> Answer[dict[str, Holder]]:
        return Answer.given(self.claim(keys, owner, ttl))

    def ask_row_job(self, key: str) -> Answer[RowJob | None]:
        return Answer.given(row_job_of(self.db.execute(ROW_JOB, (key,)).fetchall()))

    def ask_lane(
        self, account: str, holder: str, concurrency: int | None, spacing: float | None
    ) -> Answer[float | None]:
        """(One machine's ledger leaves the limits to its process: batches.scheduler.Limits.)"""
        return Answer.given(0.0)

    # -- jobs

    def new_job(self, job: NewJob) -> None:
        now = self.clock()
        route = job.route if isinstance(job.route, str) else json.dumps(job.route)
        self.write(  # its "planned" event is written by a trigger (m005)
            "INSERT INTO jobs (id, created, updated, prompt, request, route, estimate_usd, state, out_dir, "
            "name_template, max_cost_usd, row_key, host) VALUES (?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?, ?, ?)",
            (job.id, now, now, job.prompt, json.dumps(job.request), route, job.estimate, job.out_dir,
             job.name_template, job.max_cost, job.row_key, MACHINE),
        )  # fmt: skip

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
        self.write(  # its event is written by a trigger (m005)
            "UPDATE jobs SET state = ?, updated = ?, error = ?, actual_usd = COALESCE(?, actual_usd), "
            "actual_source = COALESCE(?, actual_source), exit_code = COALESCE(?, exit_code) WHERE id = ?",
            (JobState(state), self.clock(), error, actual, source, exit_code, job_id),
        )

    # -- attempts: the budget reservation

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
        stamp = self.clock()
        now = dt.datetime.fromtimestamp(stamp, self.zone)
        asked = estimate or Decimal(0)
        caps = self._caps()
        if caps:
            self._serialise_reservations()
        for period, cap in caps.items():
            spent = self._spent_since(period_start(period, now).timestamp())
            if spent + asked > cap:
                raise BudgetRefused(period, cap, spent, asked, period_reset(period, now))
        self.add_committed(stamp, asked)  # in flight: counts at its estimate until settled
        if job_state:
            self.job_state(job_id, job_state)
        return self._insert(
            "INSERT INTO attempts (job_id, seq, provider, model, plan, estimate_usd, breakdown, state, created, "
            "updated) VALUES (?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?)",
            (job_id, seq, offer.provider, offer.model, offer.plan,
             str(estimate) if estimate is not None else None, json.dumps(breakdown), stamp, stamp),
        )  # fmt: skip

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
        """The attempt's new state, and the committed total of its day with it. `priced` and
        `stated`: imgroute's pricing of what it delivered, and what the provider said it charged."""
        before = self._row_before(
            "SELECT created, actual_usd, estimate_usd, state, at_risk_usd FROM attempts WHERE id = ?", (attempt_id,)
        )
        self.write(
            "UPDATE attempts SET state = ?, updated = ?, error = ?, at_risk_usd = ?, "
            "actual_usd = COALESCE(?, actual_usd), actual_source = COALESCE(?, actual_source), "
            "priced_usd = COALESCE(?, priced_usd), stated_usd = COALESCE(?, stated_usd) WHERE id = ?",
            (state, self.clock(), error, at_risk, actual, source, priced, stated, attempt_id),
        )

        def change(row: Any) -> None:
            created, old_actual, estimate, old_state, old_at_risk = row
            was = committed_cost(old_actual, estimate, old_state, old_at_risk)
            self.add_committed(created, committed_cost(actual or old_actual, estimate, state, at_risk) - was)

        self._then(before, change)

    # -- tasks

    def task_submitting(self, attempt_id: int, seq: int, client_ref: str, images: int, spec: dict) -> int:
        now = self.clock()
        return self._insert(NEW_TASK, (attempt_id, seq, client_ref, images, json.dumps(spec), now, now))

    def task_submitted(self, task_id: int, provider_job_id: str | None, handle: dict) -> None:
        self.write(
            "UPDATE tasks SET provider_job_id = ?, handle = ?, state = 'submitted', updated = ? WHERE id = ?",
            (provider_job_id, json.dumps(handle), self.clock(), task_id),
        )

    def task_state(self, task_id: int, state: str, detail: str | None = None) -> None:
        self.write(
            "UPDATE tasks SET state = ?, detail = COALESCE(?, detail), updated = ? WHERE id = ?",
            (state, detail, self.clock(), task_id),
        )

    def task_outputs(
        self,
        task_id: int,
        outputs: list[dict],
        usage: dict | None,
        *,
        provider_job_id: str | None = None,
        handle: dict | None = None,
    ) -> None:
        self.write(
            "UPDATE tasks SET outputs = ?, state = 'succeeded', updated = ?, "
            "provider_job_id = COALESCE(?, provider_job_id), handle = COALESCE(?, handle) WHERE id = ?",
            (json.dumps({"outputs": outputs, "usage": usage}), self.clock(), provider_job_id,
             json.dumps(handle) if handle is not None else None, task_id),
        )  # fmt: skip

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
    ) -> None:
        self.write(
            "INSERT INTO files (job_id, task_id, path, sha256, bytes, format, width, height, verified, created, host) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, task_id, path, sha256, size, fmt, width, height, int(verified), self.clock(), MACHINE),
        )

    # -- leases: one process per job, one per batch row (claim and renew: each backend its own)

    def release(self, keys: list[str], owner: str) -> None:
        for key in keys:
            self.write("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))

    # -- serve's idempotency keys

    def idempotency(self, key: str, fingerprint: str, owner: str, ttl: float) -> Idempotent:
        """Look a request's Idempotency-Key up, taking it when it is new (or its day is over, or the
        replica that took it died before its job began): see records.Idempotent. While its request
        runs, the key's lease (`idem:KEY`) is held by `owner`, renewed as its other leases are."""
        now, lease = self.clock(), f"idem:{key}"
        self.db.execute("DELETE FROM idempotency WHERE key = ? AND created < ?", (key, now - IDEMPOTENCY_SECONDS))
        taken = self.db.execute(
            "INSERT INTO idempotency (key, fingerprint, host, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (key, fingerprint, MACHINE, now),
        )
        if taken.rowcount == 1:
            self.claim([lease], owner, ttl)
            return Idempotent("new")
        theirs, job_id, host = self.db.execute(
            "SELECT fingerprint, job_id, host FROM idempotency WHERE key = ?", (key,)
        ).fetchone()
        if theirs != fingerprint:
            return Idempotent("reused", job_id, host)
        if job_id is None:  # its request is under way, unless the replica that took it is gone
            holder = self.db.execute("SELECT owner FROM claims WHERE key = ?", (lease,)).fetchone()
            if (holder is not None and holder[0] == owner) or self.claim([lease], owner, ttl):
                return Idempotent("running", None, host)
            self.db.execute("UPDATE idempotency SET host = ?, created = ? WHERE key = ?", (MACHINE, now, key))
            return Idempotent("new")
        (state,) = self.db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Idempotent("running" if state in UNFINISHED_JOB_STATES else "ended", job_id, host)

    def idempotency_job(self, key: str, job_id: str) -> None:
        """The key names this job: written with its first request's intent, before anything is sent."""
        self.db.execute("UPDATE idempotency SET job_id = ? WHERE key = ? AND job_id IS NULL", (job_id, key))

    def idempotency_end(self, key: str, job_id: str | None, owner: str) -> None:
        """The key's request has its answer: its job, or none (refused, or stopped before anything
        was journaled: the key is free for the request to be sent again; a key that names a job, its
        intent committed, is never freed)."""
        if job_id is None:
            self.db.execute("DELETE FROM idempotency WHERE key = ? AND job_id IS NULL", (key,))
        else:
            self.db.execute("UPDATE idempotency SET job_id = ? WHERE key = ? AND job_id IS NULL", (job_id, key))
        self.release([f"idem:{key}"], owner)

    # -- budgets

    def set_budget(self, period: str, cap: Decimal | None) -> None:
        assert period in PERIODS
        if cap is None:
            self.db.execute("DELETE FROM budgets WHERE period = ?", (period,))
        else:
            self.db.execute(
                "INSERT INTO budgets (period, cap_usd) VALUES (?, ?) "
                "ON CONFLICT(period) DO UPDATE SET cap_usd = excluded.cap_usd",
                (period, str(cap)),
            )

    # -- settling by hand

    def settle(self, job_id: str, charged: bool) -> Settled:
        """Requests of unknown fate: charged with their images lost, or never charged; the money
        counts as spent (its share of the attempt's estimate) or not at all, and the job ends
        (failed). Failed requests whose charge was unknown (their images moved on to another offer):
        their share at risk becomes spent or nothing, and the job keeps its own state (a job that
        delivered through a fallback stays succeeded; only its total spent grows when charged)."""
        lost, lost_images, unknown = self._settle_unknown(job_id, charged)
        failures, risky = self._settle_failures(job_id, charged)
        at_risk = Decimal(0)
        for attempt_id in dict.fromkeys([*lost, *failures]):
            at_risk += self._settle_attempt(attempt_id, lost.get(attempt_id), failures.get(attempt_id), charged)
        charge = sum(lost.values(), Decimal(0)) + at_risk if charged else Decimal(0)
        if unknown and charged:
            error = f"{CHARGED_LOST}: {count(lost_images, 'image')} lost"
            self.job_state(job_id, JobState.FAILED, error=error, actual=self._job_spent(job_id, charge),
                           source="settled by hand", exit_code=6)  # fmt: skip
        elif unknown:
            error = f"{NEVER_CHARGED}; `imgroute jobs resume {job_id}` sends those images again"
            self.job_state(job_id, JobState.FAILED, error=error, exit_code=5)
        elif charge:  # the job keeps its state; its total spent takes the charge
            (source,) = self.db.execute("SELECT actual_source FROM jobs WHERE id = ?", (job_id,)).fetchone()
            self.db.execute(
                "UPDATE jobs SET actual_usd = ?, actual_source = ?, updated = ? WHERE id = ?",
                (self._job_spent(job_id, charge), _with_source(source), self.clock(), job_id),
            )
        return Settled(unknown=unknown, failed=risky, failed_usd=at_risk if charged else Decimal(0))

    def _settle_unknown(self, job_id: str, charged: bool) -> tuple[dict[int, Decimal], int, int]:
        """The job's requests of unknown fate, failed with the verdict: (attempt id -> their share of
        its estimate, images they were for, how many)."""
        unknown = self.db.execute(
            "SELECT tasks.id, tasks.images, attempts.id, attempts.estimate_usd, "
            "(SELECT SUM(images) FROM tasks AS t WHERE t.attempt_id = attempts.id) FROM tasks "
            "JOIN attempts ON attempts.id = tasks.attempt_id WHERE attempts.job_id = ? AND tasks.state = 'unknown'",
            (job_id,),
        ).fetchall()
        lost: dict[int, Decimal] = {}
        for task_id, images, attempt_id, estimate, total in unknown:
            self.db.execute(
                "UPDATE tasks SET state = 'failed', detail = ?, updated = ? WHERE id = ?",
                (CHARGED_LOST if charged else NEVER_CHARGED, self.clock(), task_id),
            )
            share = Decimal(estimate or 0) * images / (total or images)
            lost[attempt_id] = lost.get(attempt_id, Decimal(0)) + share
        return lost, sum(row[1] for row in unknown), len(unknown)

    def _settle_failures(self, job_id: str, charged: bool) -> tuple[dict[int, list[str]], int]:
        """The job's failed requests of unknown charge, their detail given the verdict: (attempt id ->
        what its failed requests said, how many)."""
        risky = self.db.execute(
            "SELECT tasks.id, tasks.attempt_id, tasks.detail FROM tasks JOIN attempts ON attempts.id = "
            "tasks.attempt_id WHERE attempts.job_id = ? AND attempts.at_risk_usd IS NOT NULL AND tasks.state = ?",
            (job_id, TaskState.FAILED_AT_RISK),
        ).fetchall()
        verdict = "settled by hand: charged" if charged else NEVER_CHARGED
        failures: dict[int, list[str]] = {}
        for task_id, attempt_id, said in risky:
            self.db.execute(
                "UPDATE tasks SET detail = ?, updated = ? WHERE id = ?",
                (f"{said}; {verdict}" if said else verdict, self.clock(), task_id),
            )
            failures.setdefault(attempt_id, []).append(said or "failed")
        return failures, len(risky)

    def _settle_attempt(self, attempt_id: int, lost: Decimal | None, failures: list[str] | None, charged: bool):
        """One attempt's verdict: its share of unknown fate (`lost`) and its share at risk become spent
        (charged) or nothing. Its state: failed or trouble (requests of unknown fate, as ever), failed
        (a failure of unknown charge), else as it was. What was at risk."""
        state, error, actual, source, at_risk = self.db.execute(
            "SELECT state, error, actual_usd, actual_source, at_risk_usd FROM attempts WHERE id = ?", (attempt_id,)
        ).fetchone()
        risk = Decimal(at_risk) if at_risk is not None else Decimal(0)
        said = []
        if lost is not None:
            state = AttemptState.FAILED if charged else AttemptState.TROUBLE
            said.append(CHARGED_LOST if charged else NEVER_CHARGED)
        elif state == AttemptState.FAILED_AT_RISK:
            state = AttemptState.FAILED
        if failures:
            verdict = "charged" if charged else "never charged"
            said.insert(0, f"{'; '.join(failures)}; settled by hand: {verdict}")
        cost = None
        if charged and (lost or risk):
            cost = str((Decimal(actual) if actual is not None else Decimal(0)) + (lost or Decimal(0)) + risk)
        source = _with_source(source) if cost else None
        self.attempt_state(attempt_id, state, error="; ".join(said) or error, actual=cost, source=source)
        return risk

    def _job_spent(self, job_id: str, charge: Decimal) -> str:
        (before,) = self.db.execute("SELECT actual_usd FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return str(Decimal(before or 0) + charge)


def budgets(db: Any) -> dict[str, Decimal]:
    return {row["period"]: Decimal(row["cap_usd"]) for row in db.execute("SELECT * FROM budgets")}


def spent_since(db: Any, since: float, zone: dt.tzinfo | None = None) -> Decimal:
    """What attempts made on or after the budget day of `since` have committed (spent, or in flight
    at their estimate). Whole days: the budget periods start at midnight (local, or in `zone`)."""
    rows = db.execute("SELECT committed_usd FROM spend_days WHERE day >= ?", (local_day(since, zone),))
    return sum((Decimal(committed) for (committed,) in rows), Decimal(0))


def _with_source(source: str | None, added: str = "settled by hand") -> str:
    """An actual cost's sources with one more: "list price, settled by hand"."""
    return ", ".join(sorted({*(source.split(", ") if source else ()), added}))
