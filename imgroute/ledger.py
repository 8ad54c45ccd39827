"""The ledger: a SQLite journal of every job, so that no paid request is ever forgotten.

Order of writes is the point: a task row is committed as `submitting` before its request is sent,
and the provider's id is committed as soon as it comes back. A crash at any moment leaves a row
that says exactly what is known. The schema migrates itself through numbered steps.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from imgroute.errors import ConfigError
from imgroute.files import private_dir, private_file, process_alive
from imgroute.models import OPEN_ATTEMPT_STATES, UNFINISHED_JOB_STATES, AttemptState, JobSpec, JobState, TaskState
from imgroute.words import count

LEDGER_FILE = "ledger.sqlite"

PERIODS = ("daily", "monthly")


def _statements(db: sqlite3.Connection, script: str) -> None:
    """Run DDL statement by statement: executescript would commit the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _migration_1(db: sqlite3.Connection) -> None:
    _statements(
        db,
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            prompt TEXT NOT NULL,
            request TEXT NOT NULL,          -- JSON: the normalised request
            route TEXT NOT NULL,            -- JSON: every quote as it was, with reasons
            estimate_usd TEXT,              -- Decimal as text
            state TEXT NOT NULL,
            actual_usd TEXT,
            actual_source TEXT,
            error TEXT
        );
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            seq INTEGER NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            plan TEXT NOT NULL,
            estimate_usd TEXT,
            breakdown TEXT,                 -- JSON list of lines
            state TEXT NOT NULL,
            actual_usd TEXT,
            actual_source TEXT,
            error TEXT,
            created REAL NOT NULL,
            updated REAL NOT NULL
        );
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY,
            attempt_id INTEGER NOT NULL REFERENCES attempts(id),
            seq INTEGER NOT NULL,
            client_ref TEXT NOT NULL UNIQUE,
            images INTEGER NOT NULL,
            provider_job_id TEXT,
            handle TEXT,                    -- JSON: what polling needs
            state TEXT NOT NULL,
            detail TEXT,
            created REAL NOT NULL,
            updated REAL NOT NULL
        );
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            task_id INTEGER REFERENCES tasks(id),
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            format TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            verified INTEGER NOT NULL,
            created REAL NOT NULL
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            at REAL NOT NULL,
            state TEXT NOT NULL,
            detail TEXT
        );
        CREATE INDEX attempts_job ON attempts(job_id);
        CREATE INDEX tasks_attempt ON tasks(attempt_id);
        CREATE INDEX files_job ON files(job_id);
        CREATE INDEX events_job ON events(job_id);
        """,
    )


def _migration_2(db: sqlite3.Connection) -> None:
    """What resume needs: where images go, the exact spec sent, the outputs seen; and budget caps."""
    _statements(
        db,
        """
        ALTER TABLE jobs ADD COLUMN out_dir TEXT;
        ALTER TABLE jobs ADD COLUMN name_template TEXT;
        ALTER TABLE jobs ADD COLUMN max_cost_usd TEXT;
        ALTER TABLE tasks ADD COLUMN spec TEXT;       -- JSON: the JobSpec sent (replayed by resume)
        ALTER TABLE tasks ADD COLUMN outputs TEXT;    -- JSON: result URLs / spooled bytes, before saving
        CREATE TABLE budgets (
            period TEXT PRIMARY KEY,                  -- daily | monthly
            cap_usd TEXT NOT NULL
        );
        CREATE INDEX jobs_created ON jobs(created);
        CREATE INDEX attempts_created ON attempts(created)
        """,
    )


def _migration_3(db: sqlite3.Connection) -> None:
    """Batch rows: a stable key per row, and how each job ended (its exit code)."""
    _statements(
        db,
        """
        ALTER TABLE jobs ADD COLUMN row_key TEXT;
        ALTER TABLE jobs ADD COLUMN exit_code INTEGER;
        CREATE INDEX jobs_row_key ON jobs(row_key)
        """,
    )


def _migration_4(db: sqlite3.Connection) -> None:
    """What each local day has committed against the budgets, kept with every attempt's change:
    checking a cap reads a month of days, not every attempt of the month (which made each of a
    long batch's reservations slower than the last)."""
    db.execute("CREATE TABLE spend_days (day TEXT PRIMARY KEY, committed_usd TEXT NOT NULL)")
    for created, actual, estimate, state in db.execute(
        "SELECT created, actual_usd, estimate_usd, state FROM attempts"
    ).fetchall():
        _add_committed(db, created, committed_cost(actual, estimate, state))


def _migration_5(db: sqlite3.Connection) -> None:
    """A job's history written by SQLite itself with every state change: one statement fewer in
    each of a job's commits (a batch spends most of its journaling time between statements)."""
    db.execute(
        "CREATE TRIGGER job_created_event AFTER INSERT ON jobs BEGIN "
        "INSERT INTO events (job_id, at, state, detail) VALUES (NEW.id, NEW.created, NEW.state, NULL); END"
    )
    db.execute(
        "CREATE TRIGGER job_state_event AFTER UPDATE OF state ON jobs BEGIN "
        "INSERT INTO events (job_id, at, state, detail) VALUES (NEW.id, NEW.updated, NEW.state, NEW.error); END"
    )


def _migration_6(db: sqlite3.Connection) -> None:
    """Claims: which process runs a job or a batch row, so that two never run the same one."""
    db.execute(
        "CREATE TABLE claims (key TEXT PRIMARY KEY, pid INTEGER NOT NULL, token TEXT NOT NULL, at REAL NOT NULL)"
    )


def _migration_7_possibly_charged(db: sqlite3.Connection) -> None:
    """What a failed attempt may have been charged: the share of its estimate for requests the
    provider ran and failed without saying whether it charged (AttemptState.FAILED_AT_RISK).
    It counts against the caps until `jobs settle` makes it spent or nothing. (No attempt before this
    had such a share: the day totals of migration 4 need nothing added.)"""
    db.execute("ALTER TABLE attempts ADD COLUMN at_risk_usd TEXT")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7_possibly_charged,
]

# This process's claims are told apart from an earlier process's with the same pid by this token.
CLAIM_TOKEN = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _day(timestamp: float) -> str:
    """The local calendar day a moment falls on: budgets reset at local midnight."""
    return dt.date.fromtimestamp(timestamp).isoformat()


def _with_source(source: str | None, added: str = "settled by hand") -> str:
    """An actual cost's sources with one more: "list price, settled by hand"."""
    return ", ".join(sorted({*(source.split(", ") if source else ()), added}))


def _add_committed(db: sqlite3.Connection, created: float, delta: Decimal) -> None:
    if not delta:
        return
    day = _day(created)
    row = db.execute("SELECT committed_usd FROM spend_days WHERE day = ?", (day,)).fetchone()
    total = (Decimal(row[0]) if row else Decimal(0)) + delta
    db.execute(
        "INSERT INTO spend_days (day, committed_usd) VALUES (?, ?) "
        "ON CONFLICT(day) DO UPDATE SET committed_usd = excluded.committed_usd",
        (day, str(total)),
    )


# -- typed records: what the ledger hands back ---------------------------------------------------


def _money(text: str | None) -> Decimal | None:
    return Decimal(text) if text is not None else None


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


class JobRecord(NamedTuple):
    id: str
    created: float
    updated: float
    prompt: str
    request: dict  # Request.to_json(), with "constraints"
    route: dict  # the quotes as they were when the job was made
    estimate: Decimal | None
    state: JobState
    actual: Decimal | None
    actual_source: str | None
    error: str | None
    out_dir: str | None
    name_template: str | None
    max_cost: Decimal | None
    row_key: str | None
    exit_code: int | None
    offer: str | None = None  # listings only: "provider/model" of its last attempt
    images: int | None = None  # listings only: files saved

    @classmethod
    def of(cls, row: sqlite3.Row) -> JobRecord:
        keys = row.keys()
        return cls(
            id=row["id"],
            created=row["created"],
            updated=row["updated"],
            prompt=row["prompt"],
            request=_json(row["request"]) or {},
            route=_json(row["route"]) or {},
            estimate=_money(row["estimate_usd"]),
            state=JobState(row["state"]),
            actual=_money(row["actual_usd"]),
            actual_source=row["actual_source"],
            error=row["error"],
            out_dir=row["out_dir"],
            name_template=row["name_template"],
            max_cost=_money(row["max_cost_usd"]),
            row_key=row["row_key"],
            exit_code=row["exit_code"],
            offer=row["offer"] if "offer" in keys else None,
            images=row["images"] if "images" in keys else None,
        )


class RowJob(NamedTuple):
    """What a batch rerun needs of a row's latest job."""

    id: str
    state: JobState
    exit_code: int | None
    error: str | None
    images: int = 0  # files saved for it
    out_dir: str | None = None


class AttemptRecord(NamedTuple):
    id: int
    job_id: str
    seq: int
    provider: str
    model: str
    plan: str
    estimate: Decimal | None
    breakdown: list[str]
    state: AttemptState
    actual: Decimal | None
    actual_source: str | None
    error: str | None
    created: float
    updated: float
    at_risk: Decimal | None = None  # possibly charged for failed requests, until settled (migration 7)

    @classmethod
    def of(cls, row: sqlite3.Row) -> AttemptRecord:
        return cls(
            row["id"],
            row["job_id"],
            row["seq"],
            row["provider"],
            row["model"],
            row["plan"],
            _money(row["estimate_usd"]),
            _json(row["breakdown"]) or [],
            AttemptState(row["state"]),
            _money(row["actual_usd"]),
            row["actual_source"],
            row["error"],
            row["created"],
            row["updated"],
            _money(row["at_risk_usd"]),
        )


class TaskRecord(NamedTuple):
    """One request sent (or about to be) for an attempt."""

    id: int
    attempt_id: int
    attempt_seq: int
    seq: int
    provider: str
    client_ref: str
    images: int
    provider_job_id: str | None
    handle: dict | None
    state: TaskState
    detail: str | None
    spec: JobSpec | None
    outputs: list[dict] | None  # recorded results: {"url": ...} or {"spool": path}
    usage: dict | None
    created: float

    @classmethod
    def of(cls, row: sqlite3.Row) -> TaskRecord:
        recorded = _json(row["outputs"]) or {}
        spec = _json(row["spec"])
        return cls(
            id=row["id"],
            attempt_id=row["attempt_id"],
            attempt_seq=row["attempt_seq"],
            seq=row["seq"],
            provider=row["provider"],
            client_ref=row["client_ref"],
            images=row["images"],
            provider_job_id=row["provider_job_id"],
            handle=_json(row["handle"]),
            state=TaskState(row["state"]),
            detail=row["detail"],
            spec=JobSpec.from_json(spec) if spec else None,
            outputs=recorded.get("outputs") if row["outputs"] else None,
            usage=recorded.get("usage"),
            created=row["created"],
        )


class FileRecord(NamedTuple):
    id: int
    job_id: str
    task_id: int | None
    path: str
    sha256: str
    bytes: int
    format: str
    width: int
    height: int
    verified: bool
    created: float

    @classmethod
    def of(cls, row: sqlite3.Row) -> FileRecord:
        return cls(*(row[field] for field in cls._fields[:-2]), bool(row["verified"]), row["created"])


class EventRecord(NamedTuple):
    at: float
    state: str
    detail: str | None


class BudgetRefused(Exception):
    def __init__(self, period: str, cap: Decimal, spent: Decimal, asked: Decimal, resets: dt.datetime):
        super().__init__(period)
        self.period, self.cap, self.spent, self.asked, self.resets = period, cap, spent, asked, resets

    @property
    def left(self) -> Decimal:
        return max(Decimal(0), self.cap - self.spent)


class SpendRow(NamedTuple):
    created: float
    provider: str
    model: str
    quality: str | None
    state: str
    estimate: Decimal | None
    actual: Decimal | None
    images: int
    at_risk: Decimal | None = None  # possibly charged (failed, charge unknown): never spent until settled


class Settled(NamedTuple):
    """What `settle` did: requests of unknown fate settled, failed requests of unknown charge
    settled, and what those counted as spent (nothing when settled as never charged)."""

    unknown: int
    failed: int
    failed_usd: Decimal


def period_start(period: str, now: dt.datetime) -> dt.datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "daily" else day.replace(day=1)


def period_reset(period: str, now: dt.datetime) -> dt.datetime:
    start = period_start(period, now)
    if period == "daily":
        return start + dt.timedelta(days=1)
    return (start + dt.timedelta(days=32)).replace(day=1)


def committed_cost(actual: str | None, estimate: str | None, state: str, at_risk: str | None = None) -> Decimal:
    """What an attempt counts against a budget: its actual cost once known, else its estimate while
    it may still be charged (in flight or unknown), else nothing (refused, never charged); plus what
    it may have been charged for requests that failed without saying (`at_risk`, until settled)."""
    if actual is None and state in OPEN_ATTEMPT_STATES and estimate is not None:
        return Decimal(estimate)  # (the whole estimate: any share at risk is inside it)
    return (Decimal(actual) if actual is not None else Decimal(0)) + (Decimal(at_risk) if at_risk else Decimal(0))


def run_in_transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], Any]) -> Any:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


BUSY_SECONDS = 60  # how long to wait for another imgroute holding the ledger


def connect(path: Path, durable: bool = True) -> sqlite3.Connection:
    private_file(private_dir(path.parent) / path.name)  # the journal of every job: 0700 home, 0600 file
    # One thread at a time uses a connection; batch closes its workers' connections afterwards.
    db = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    _use_wal(db)
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch a new ledger to WAL (the mode is kept in the file: later opens find it set).

    Switching needs the file to itself, and SQLite answers "database is locked" at once rather than
    waiting its busy timeout: two imgroutes started together on a fresh home would have one fail.
    So the switch is retried, briefly, for as long as any other lock is waited for."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> ConfigError:
    if "locked" in str(exc):
        return ConfigError(
            f"the ledger {path} stayed locked for {BUSY_SECONDS} s",
            "another imgroute is writing to it: let it finish, or point IMGROUTE_HOME elsewhere",
        )
    return ConfigError(
        f"the ledger {path} cannot be opened ({exc})",
        "restore it from a backup, or move it aside and imgroute starts a new one "
        "(whose budget caps no longer count what the old one recorded)",
    )


class Ledger:
    # Writers in one process queue here rather than in SQLite's busy handler, which sleeps in coarse
    # steps: with a batch's worker threads each holding a connection, that alone cost seconds.
    # (A SharedLedger's readers take it too: they share the writers' connection.)
    _lock = threading.RLock()

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        durable: bool = True,
    ):
        """`durable`: every commit survives power loss (FULL). Batch runs pass False (NORMAL): in WAL
        mode a commit still survives the process being killed; only an OS crash can lose the last
        ones, and commits are ten times cheaper."""
        self.path = path
        self.clock = clock
        try:
            self.db = connect(path, durable)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise _unusable(path, exc) from None

    def _migrate(self) -> None:
        def migrate(db: sqlite3.Connection) -> None:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
                step(db)
                db.execute(f"PRAGMA user_version = {number}")

        run_in_transaction(self.db, migrate)

    def close(self) -> None:
        self.db.close()

    def _commit(self, work: Callable[[sqlite3.Connection], Any], into: list | None = None) -> Any:
        """Run `work` in one write transaction; return once it is durable. With `into`, the work is
        only added to that list, to be committed together with what follows it (`flush`)."""
        if into is not None:
            into.append(work)
            return None
        with self._lock:
            return run_in_transaction(self.db, work)

    def flush(self, pending: list) -> None:
        """Commit the writes put off into `pending`, in one transaction."""
        if pending:
            work = list(pending)
            pending.clear()
            self._commit(lambda db: [each(db) for each in work])

    def _read(self, sql: str, args: tuple = (), db: sqlite3.Connection | None = None) -> list[sqlite3.Row]:
        """Rows of a query; with `db`, inside that connection's open write transaction."""
        return (db or self.db).execute(sql, args).fetchall()

    def _read_one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        return self.db.execute(sql, args).fetchone()

    def _write(self, sql: str, args: tuple, into: list | None = None) -> int:
        """One statement, its own transaction (or put off `into` a later commit); its row id."""
        if into is not None:
            return self._commit(lambda db: db.execute(sql, args).lastrowid, into)
        with self._lock:
            return self.db.execute(sql, args).lastrowid

    # -- jobs -------------------------------------------------------------------------------

    def new_job(
        self,
        job_id: str,
        prompt: str,
        request: dict,
        route: dict | str,  # (or its JSON text already written: report.route_text)
        estimate: str | None,
        out_dir: str,
        name_template: str,
        max_cost: str | None,
        row_key: str | None = None,
        into: list | None = None,
    ) -> None:
        now = self.clock()
        self._write(  # its "planned" event is written by a trigger (migration 5)
            "INSERT INTO jobs (id, created, updated, prompt, request, route, estimate_usd, state, out_dir, "
            "name_template, max_cost_usd, row_key) VALUES (?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?, ?)",
            (
                job_id,
                now,
                now,
                prompt,
                json.dumps(request),
                route if isinstance(route, str) else json.dumps(route),
                estimate,
                out_dir,
                name_template,
                max_cost,
                row_key,
            ),
            into,
        )

    def jobs_for_rows(self, label: str) -> dict[str, RowJob]:
        """The latest job of every row of one batch file (keys `label:row-id`; a label is hex)."""
        assert label.isalnum(), label  # nothing GLOB would read as a pattern
        rows = self._read(
            "SELECT row_key, id, state, exit_code, error, (SELECT COUNT(*) FROM files WHERE job_id = jobs.id), "
            "out_dir FROM jobs WHERE row_key GLOB ? ORDER BY created",
            (f"{label}:*",),
        )
        # later jobs of a row replace earlier ones
        return {key: RowJob(i, JobState(s), code, error, n, out) for key, i, s, code, error, n, out in rows}

    def job_state(
        self,
        job_id: str,
        state: str,
        error: str | None = None,
        actual: str | None = None,
        source: str | None = None,
        exit_code: int | None = None,
        into: list | None = None,
    ) -> None:
        """The job's state (and, when it ends, its cost and exit code); its history gets an event."""
        self._write(*self._job_state(job_id, state, error, actual, source, exit_code), into=into)

    def _job_state(self, job_id, state, error=None, actual=None, source=None, exit_code=None) -> tuple[str, tuple]:
        """The update (its event is written by a trigger, migration 5)."""
        state = JobState(state)
        return (
            "UPDATE jobs SET state = ?, updated = ?, error = ?, actual_usd = COALESCE(?, actual_usd), "
            "actual_source = COALESCE(?, actual_source), exit_code = COALESCE(?, exit_code) WHERE id = ?",
            (state, self.clock(), error, actual, source, exit_code, job_id),
        )

    # -- attempts: the budget reservation ---------------------------------------------------

    def reserve_attempt(
        self,
        job_id: str,
        seq: int,
        provider: str,
        model: str,
        plan: str,
        estimate: Decimal | None,
        breakdown: list[str],
        now: dt.datetime | None = None,
        job_state: str | None = None,
    ) -> int:
        """Check the daily and monthly caps and record the attempt, in one write transaction (with
        the job's new `job_state`, if given).

        The attempt row is the reservation: its estimate counts against every cap until its actual
        cost is recorded, so two processes cannot together pass a cap.
        """
        now = now or dt.datetime.fromtimestamp(self.clock())

        def reserve(db: sqlite3.Connection) -> int:
            return self._reserve(db, job_id, seq, provider, model, plan, estimate, breakdown, now, job_state)

        return self._commit(reserve)

    def _reserve(self, db, job_id, seq, provider, model, plan, estimate, breakdown, now, job_state) -> int:
        """Inside a write transaction: check every cap, then insert the attempt (its reservation)."""
        asked = estimate or Decimal(0)
        for period, cap in self.budgets(db).items():
            spent = self.spent_since(period_start(period, now).timestamp(), db)
            if spent + asked > cap:
                raise BudgetRefused(period, cap, spent, asked, period_reset(period, now))
        stamp = self.clock()
        _add_committed(db, stamp, asked)  # in flight: counts at its estimate until settled
        if job_state:
            db.execute(*self._job_state(job_id, job_state))
        return db.execute(
            "INSERT INTO attempts (job_id, seq, provider, model, plan, estimate_usd, breakdown, state, created, "
            "updated) VALUES (?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?)",
            (
                job_id,
                seq,
                provider,
                model,
                plan,
                str(estimate) if estimate is not None else None,
                json.dumps(breakdown),
                stamp,
                stamp,
            ),
        ).lastrowid

    def open_attempt(self, job_id: str, seq: int, offer: tuple, estimate, breakdown, task: tuple, before: list):
        """The attempt's reservation (as `reserve_attempt`, the job becoming `submitting`) and its first
        request's intent (as `task_submitting`), with the writes put off in `before` (the new job's
        row), all in one commit: the one a job must make before its first request is sent.
        (attempt id, task id); BudgetRefused leaves nothing written, `before` included."""
        provider, model, plan = offer
        task_seq, client_ref, images, spec = task
        now = dt.datetime.fromtimestamp(self.clock())

        def open_(db: sqlite3.Connection) -> tuple[int, int]:
            for work in before:
                work(db)
            attempt_id = self._reserve(db, job_id, seq, provider, model, plan, estimate, breakdown, now, "submitting")
            stamp = self.clock()
            task_id = db.execute(
                "INSERT INTO tasks (attempt_id, seq, client_ref, images, state, spec, created, updated) "
                "VALUES (?, ?, ?, ?, 'submitting', ?, ?, ?)",
                (attempt_id, task_seq, client_ref, images, json.dumps(spec), stamp, stamp),
            ).lastrowid
            return attempt_id, task_id

        opened = self._commit(open_)
        before.clear()
        return opened

    def attempt_state(
        self,
        attempt_id: int,
        state: str,
        error: str | None = None,
        actual: str | None = None,
        source: str | None = None,
        into: list | None = None,
        at_risk: str | None = None,
    ) -> None:
        """`at_risk`: what the attempt may have been charged for requests that failed without saying
        (counted against the caps until settled); every state change sets it anew."""
        self._commit(lambda db: self._attempt_update(db, attempt_id, state, error, actual, source, at_risk), into)

    def _attempt_update(self, db, attempt_id, state, error, actual, source, at_risk=None) -> None:
        """Inside a write transaction: the attempt's new state, and the day's committed total with it."""
        before = db.execute(
            "SELECT created, actual_usd, estimate_usd, state, at_risk_usd FROM attempts WHERE id = ?", (attempt_id,)
        ).fetchone()
        db.execute(
            "UPDATE attempts SET state = ?, updated = ?, error = ?, at_risk_usd = ?, "
            "actual_usd = COALESCE(?, actual_usd), actual_source = COALESCE(?, actual_source) WHERE id = ?",
            (state, self.clock(), error, at_risk, actual, source, attempt_id),
        )
        if before is not None:
            created, old_actual, estimate, old_state, old_at_risk = before
            was = committed_cost(old_actual, estimate, old_state, old_at_risk)
            _add_committed(db, created, committed_cost(actual or old_actual, estimate, state, at_risk) - was)

    def settle(self, job_id: str, charged: bool) -> Settled:
        """A person checked the provider's dashboard for the job's requests whose fate or charge is
        unknown, and found them charged or not.

        Requests of unknown fate: charged with their images lost, or never charged; the money counts
        as spent (its share of the attempt's estimate) or not at all, and the job ends (failed).
        Failed requests whose charge was unknown (their images moved on to another offer): their
        share at risk becomes spent or nothing, and the job keeps its own state (a job that delivered
        through a fallback stays succeeded; only its total spent grows when charged)."""

        def settle(db: sqlite3.Connection) -> Settled:
            unknown = db.execute(
                "SELECT tasks.id, tasks.images, attempts.id, attempts.estimate_usd, "
                "(SELECT SUM(images) FROM tasks AS t WHERE t.attempt_id = attempts.id) FROM tasks "
                "JOIN attempts ON attempts.id = tasks.attempt_id WHERE attempts.job_id = ? AND tasks.state = 'unknown'",
                (job_id,),
            ).fetchall()
            risky = db.execute(
                "SELECT tasks.id, tasks.attempt_id, tasks.detail FROM tasks JOIN attempts ON attempts.id = "
                "tasks.attempt_id WHERE attempts.job_id = ? AND attempts.at_risk_usd IS NOT NULL AND tasks.state = ?",
                (job_id, TaskState.FAILED_AT_RISK),
            ).fetchall()
            detail = "settled by hand: charged, its images lost" if charged else "settled by hand: never charged"
            verdict = "settled by hand: charged" if charged else "settled by hand: never charged"
            lost: dict[int, Decimal] = {}  # attempt id -> the share of its requests of unknown fate
            for task_id, images, attempt_id, estimate, total in unknown:
                db.execute("UPDATE tasks SET state = 'failed', detail = ?, updated = ? WHERE id = ?",
                           (detail, self.clock(), task_id))  # fmt: skip
                share = Decimal(estimate or 0) * images / (total or images)
                lost[attempt_id] = lost.get(attempt_id, Decimal(0)) + share
            failures: dict[int, list[str]] = {}  # attempt id -> what its failed requests said
            for task_id, attempt_id, said in risky:
                db.execute("UPDATE tasks SET detail = ?, updated = ? WHERE id = ?",
                           (f"{said}; {verdict}" if said else verdict, self.clock(), task_id))  # fmt: skip
                failures.setdefault(attempt_id, []).append(said or "failed")
            at_risk = Decimal(0)
            for attempt_id in dict.fromkeys([*lost, *failures]):
                at_risk += self._settle_attempt(db, attempt_id, lost.get(attempt_id), failures.get(attempt_id), charged)
            charge = sum(lost.values(), Decimal(0)) + at_risk if charged else Decimal(0)
            if unknown:
                error = (
                    f"{detail}: {count(sum(row[1] for row in unknown), 'image')} lost"
                    if charged
                    else f"{detail}; `imgroute jobs resume {job_id}` sends those images again"
                )
                spent = self._job_spent(db, job_id, charge) if charged else None
                db.execute(*self._job_state(job_id, "failed", error, spent, "settled by hand" if charged else None,
                                            exit_code=6 if charged else 5))  # fmt: skip
            elif charge:  # the job keeps its state; its total spent takes the charge
                (source,) = db.execute("SELECT actual_source FROM jobs WHERE id = ?", (job_id,)).fetchone()
                db.execute(
                    "UPDATE jobs SET actual_usd = ?, actual_source = ?, updated = ? WHERE id = ?",
                    (self._job_spent(db, job_id, charge), _with_source(source), self.clock(), job_id),
                )
            return Settled(len(unknown), len(risky), at_risk if charged else Decimal(0))

        return self._commit(settle)

    def _settle_attempt(self, db, attempt_id: int, lost: Decimal | None, failures: list[str] | None, charged: bool):
        """One attempt's verdict: its share of unknown fate (`lost`) and its share at risk become spent
        (charged) or nothing. Its state: failed or trouble (requests of unknown fate, as ever), failed
        (a failure of unknown charge), else as it was. What was at risk."""
        state, error, actual, source, at_risk = db.execute(
            "SELECT state, error, actual_usd, actual_source, at_risk_usd FROM attempts WHERE id = ?", (attempt_id,)
        ).fetchone()
        risk = Decimal(at_risk) if at_risk is not None else Decimal(0)
        said = []
        if lost is not None:
            state = AttemptState.FAILED if charged else AttemptState.TROUBLE
            said.append("settled by hand: charged, its images lost" if charged else "settled by hand: never charged")
        elif state == AttemptState.FAILED_AT_RISK:
            state = AttemptState.FAILED
        if failures:
            verdict = "charged" if charged else "never charged"
            said.insert(0, f"{'; '.join(failures)}; settled by hand: {verdict}")
        cost = None
        if charged and (lost or risk):
            cost = str((Decimal(actual) if actual is not None else Decimal(0)) + (lost or Decimal(0)) + risk)
        source = _with_source(source) if cost else None
        self._attempt_update(db, attempt_id, state, "; ".join(said) or error, cost, source)
        return risk

    def _job_spent(self, db, job_id: str, charge: Decimal) -> str:
        (before,) = db.execute("SELECT actual_usd FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return str(Decimal(before or 0) + charge)

    # -- tasks ------------------------------------------------------------------------------

    def task_submitting(self, attempt_id: int, seq: int, client_ref: str, images: int, spec: dict) -> int:
        """Journal the intent to submit. Must return before the request is sent."""
        now = self.clock()
        return self._write(
            "INSERT INTO tasks (attempt_id, seq, client_ref, images, state, spec, created, updated) "
            "VALUES (?, ?, ?, ?, 'submitting', ?, ?, ?)",
            (attempt_id, seq, client_ref, images, json.dumps(spec), now, now),
        )

    def task_submitted(self, task_id: int, provider_job_id: str | None, handle: dict, into: list | None = None) -> None:
        self._write(
            "UPDATE tasks SET provider_job_id = ?, handle = ?, state = 'submitted', updated = ? WHERE id = ?",
            (provider_job_id, json.dumps(handle), self.clock(), task_id),
            into,
        )

    def task_state(self, task_id: int, state: str, detail: str | None = None, into: list | None = None) -> None:
        self._write(
            "UPDATE tasks SET state = ?, detail = COALESCE(?, detail), updated = ? WHERE id = ?",
            (state, detail, self.clock(), task_id),
            into=into,
        )

    def task_outputs(
        self,
        task_id: int,
        outputs: list[dict],
        usage: dict | None,
        provider_job_id: str | None = None,
        handle: dict | None = None,
        into: list | None = None,
    ) -> None:
        """The finished results, recorded before any is downloaded, so resume can fetch them again.

        Synchronous providers answer with the images: their id and results land in this one write,
        so no moment exists where the request is known to be done but its images are not recorded.
        """
        self._write(
            "UPDATE tasks SET outputs = ?, state = 'succeeded', updated = ?, "
            "provider_job_id = COALESCE(?, provider_job_id), handle = COALESCE(?, handle) WHERE id = ?",
            (
                json.dumps({"outputs": outputs, "usage": usage}),
                self.clock(),
                provider_job_id,
                json.dumps(handle) if handle is not None else None,
                task_id,
            ),
            into,
        )

    def add_file(
        self,
        job_id: str,
        task_id: int | None,
        path: str,
        sha256: str,
        size: int,
        fmt: str,
        width: int,
        height: int,
        verified: bool,
        into: list | None = None,
    ) -> None:
        self._write(
            "INSERT INTO files (job_id, task_id, path, sha256, bytes, format, width, height, verified, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, task_id, path, sha256, size, fmt, width, height, int(verified), self.clock()),
            into,
        )

    # -- claims: one process per job, one per batch row -------------------------------------------

    def claim(self, keys: list[str], before: list | None = None) -> dict[str, int]:
        """Claim these keys for this process, in one write transaction (with the writes put off in
        `before`, if given). Keys another live process holds are left to it: {key: its pid}."""
        pid, now = os.getpid(), self.clock()

        def take(db: sqlite3.Connection) -> dict[str, int]:
            for work in before or []:
                work(db)
            held = {}
            for key in keys:
                row = db.execute("SELECT pid, token FROM claims WHERE key = ?", (key,)).fetchone()
                if row is not None and row[1] != CLAIM_TOKEN and process_alive(row[0]):
                    held[key] = row[0]
                    continue
                db.execute(
                    "INSERT INTO claims (key, pid, token, at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET pid = excluded.pid, token = excluded.token, at = excluded.at",
                    (key, pid, CLAIM_TOKEN, now),
                )
            return held

        held = self._commit(take)
        if before:
            before.clear()
        return held

    def claim_new(self, key: str, into: list) -> None:
        """Claim a key nobody can hold yet (a new job's), in a commit that comes anyway (`into`)."""
        self._commit(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO claims (key, pid, token, at) VALUES (?, ?, ?, ?)",
                (key, os.getpid(), CLAIM_TOKEN, self.clock()),
            ),
            into,
        )

    def release(self, keys: list[str], into: list | None = None) -> None:
        """Give up this process's claims on these keys (or put it off `into` a later commit)."""

        def drop(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM claims WHERE key = ? AND token = ?", [(k, CLAIM_TOKEN) for k in keys])

        self._commit(drop, into)

    # -- reading ----------------------------------------------------------------------------

    def job(self, job_id: str) -> JobRecord | None:
        row = self._read_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return JobRecord.of(row) if row is not None else None

    def find_job(self, prefix: str) -> list[JobRecord]:
        return [
            JobRecord.of(r) for r in self._read("SELECT * FROM jobs WHERE id LIKE ? ORDER BY created", (prefix + "%",))
        ]

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
        args: list = []
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
        return [JobRecord.of(r) for r in self._read(" ".join(sql), args)]

    def attempts(self, job_id: str) -> list[AttemptRecord]:
        rows = self._read("SELECT * FROM attempts WHERE job_id = ? ORDER BY seq", (job_id,))
        return [AttemptRecord.of(r) for r in rows]

    def tasks(self, job_id: str) -> list[TaskRecord]:
        rows = self._read(
            "SELECT tasks.*, attempts.provider, attempts.seq AS attempt_seq "
            "FROM tasks JOIN attempts ON attempts.id = attempt_id "
            "WHERE attempts.job_id = ? ORDER BY attempts.seq, tasks.seq",
            (job_id,),
        )
        return [TaskRecord.of(r) for r in rows]

    def files(self, job_id: str) -> list[FileRecord]:
        return [FileRecord.of(r) for r in self._read("SELECT * FROM files WHERE job_id = ? ORDER BY id", (job_id,))]

    def events(self, job_id: str) -> list[EventRecord]:
        rows = self._read("SELECT at, state, detail FROM events WHERE job_id = ? ORDER BY id", (job_id,))
        return [EventRecord(*row) for row in rows]

    def unfinished(self) -> list[JobRecord]:
        marks = ",".join("?" * len(UNFINISHED_JOB_STATES))
        rows = self._read(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created", UNFINISHED_JOB_STATES)
        return [JobRecord.of(r) for r in rows]

    # -- money ------------------------------------------------------------------------------

    def spent_since(self, since: float, db: sqlite3.Connection | None = None) -> Decimal:
        """What attempts made on or after the local day of `since` have committed (spent, or in
        flight at their estimate). Whole days: the budget periods start at local midnight."""
        rows = self._read("SELECT committed_usd FROM spend_days WHERE day >= ?", (_day(since),), db)
        return sum((Decimal(committed) for (committed,) in rows), Decimal(0))

    def spend_rows(self, since: float | None = None) -> list[SpendRow]:
        rows = self._read(
            "SELECT attempts.created, provider, model, attempts.state, attempts.estimate_usd, attempts.actual_usd, "
            "attempts.at_risk_usd, "
            "json_extract(jobs.request, '$.quality') AS quality, "
            "(SELECT COUNT(*) FROM files JOIN tasks ON tasks.id = files.task_id WHERE tasks.attempt_id = attempts.id)"
            " AS images FROM attempts JOIN jobs ON jobs.id = attempts.job_id WHERE attempts.created >= ?",
            (since or 0,),
        )
        return [
            SpendRow(
                r["created"],
                r["provider"],
                r["model"],
                r["quality"],
                r["state"],
                Decimal(r["estimate_usd"]) if r["estimate_usd"] is not None else None,
                Decimal(r["actual_usd"]) if r["actual_usd"] is not None else None,
                r["images"],
                _money(r["at_risk_usd"]),
            )
            for r in rows
        ]

    def at_risk_since(self, since: float) -> Decimal:
        """What attempts made on or after the local day of `since` may have been charged for requests
        that failed without saying (counted in `spent_since` until settled)."""
        rows = self._read(
            "SELECT at_risk_usd FROM attempts WHERE at_risk_usd IS NOT NULL AND created >= ?",
            (dt.datetime.combine(dt.date.fromtimestamp(since), dt.time()).timestamp(),),
        )
        return sum((Decimal(amount) for (amount,) in rows), Decimal(0))

    def budgets(self, db: sqlite3.Connection | None = None) -> dict[str, Decimal]:
        rows = self._read("SELECT * FROM budgets", (), db)
        return {r["period"]: Decimal(r["cap_usd"]) for r in rows}

    def set_budget(self, period: str, cap: Decimal | None) -> None:
        assert period in PERIODS
        if cap is None:
            self._write("DELETE FROM budgets WHERE period = ?", (period,))
        else:
            self._write(
                "INSERT INTO budgets (period, cap_usd) VALUES (?, ?) "
                "ON CONFLICT(period) DO UPDATE SET cap_usd = excluded.cap_usd",
                (period, str(cap)),
            )


class SharedLedger(Ledger):
    """One ledger for the threads of a batch's scheduler, which take turns advancing many jobs.

    One connection, taken by one thread at a time: a job's transaction never takes in another's
    statements, and one page cache serves every job (a connection per thread re-read the pages
    each other connection had written)."""

    def _read(self, sql: str, args: tuple = (), db: sqlite3.Connection | None = None) -> list[sqlite3.Row]:
        with self._lock:
            return super()._read(sql, args, db)

    def _read_one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        with self._lock:
            return super()._read_one(sql, args)
