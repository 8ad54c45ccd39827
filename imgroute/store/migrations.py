"""The SQLite ledger's schema, as named steps: each runs once, in order, and a ledger records how
many it has had in `PRAGMA user_version`. Every step is written for the ledger as the steps before
it left it (never edit one that has shipped: add the next). `migrate` runs the missing steps and
their version bumps in one transaction, so a ledger is never left half migrated.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal

from imgroute.store.periods import committed_cost, local_day


def _statements(db: sqlite3.Connection, script: str) -> None:
    """Run DDL statement by statement: executescript would commit the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def m001_jobs(db: sqlite3.Connection) -> None:
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


def m002_resume_and_budgets(db: sqlite3.Connection) -> None:
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


def m003_batch_rows(db: sqlite3.Connection) -> None:
    """Batch rows: a stable key per row, and how each job ended (its exit code)."""
    _statements(
        db,
        """
        ALTER TABLE jobs ADD COLUMN row_key TEXT;
        ALTER TABLE jobs ADD COLUMN exit_code INTEGER;
        CREATE INDEX jobs_row_key ON jobs(row_key)
        """,
    )


def m004_spend_days(db: sqlite3.Connection) -> None:
    """What each local day has committed against the budgets, kept with every attempt's change:
    checking a cap reads a month of days, not every attempt of the month (which made each of a
    long batch's reservations slower than the last)."""
    db.execute("CREATE TABLE spend_days (day TEXT PRIMARY KEY, committed_usd TEXT NOT NULL)")
    for created, actual, estimate, state in db.execute(
        "SELECT created, actual_usd, estimate_usd, state FROM attempts"
    ).fetchall():
        add_committed(db, created, committed_cost(actual, estimate, state))


def m005_history_triggers(db: sqlite3.Connection) -> None:
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


def m006_claims(db: sqlite3.Connection) -> None:
    """Claims: which process runs a job or a batch row, so that two never run the same one."""
    db.execute(
        "CREATE TABLE claims (key TEXT PRIMARY KEY, pid INTEGER NOT NULL, token TEXT NOT NULL, at REAL NOT NULL)"
    )


def m007_possibly_charged(db: sqlite3.Connection) -> None:
    """What a failed attempt may have been charged: the share of its estimate for requests the
    provider ran and failed without saying whether it charged (AttemptState.FAILED_AT_RISK).
    It counts against the caps until `jobs settle` makes it spent or nothing. (No attempt before this
    had such a share: the day totals of migration 4 need nothing added.)"""
    db.execute("ALTER TABLE attempts ADD COLUMN at_risk_usd TEXT")


def m008_leases(db: sqlite3.Connection) -> None:
    """Claims become leases: an owner token (what was the process's token) and when the lease runs
    out unless renewed. (SQLite also keeps the holder's pid: on one machine a dead holder is known at
    once, and a live one keeps its lease however long a provider takes.)"""
    db.execute("ALTER TABLE claims RENAME COLUMN token TO owner")
    db.execute("ALTER TABLE claims ADD COLUMN expires REAL")


def m009_machines(db: sqlite3.Connection) -> None:
    """Which machine ran a job, saved a file and holds a lease (a team ledger's many machines; one here)."""
    db.execute("ALTER TABLE jobs ADD COLUMN host TEXT")
    db.execute("ALTER TABLE claims ADD COLUMN host TEXT")
    db.execute("ALTER TABLE files ADD COLUMN host TEXT")


def m010_idempotency(db: sqlite3.Connection) -> None:
    """serve's Idempotency-Key: one key, one job, for a day (on a team ledger, for every replica);
    and when each provider account's next submit may go (a team ledger's machines share it)."""
    db.execute(
        "CREATE TABLE idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, job_id TEXT, host TEXT NOT NULL, "
        "created REAL NOT NULL)"
    )
    db.execute("CREATE TABLE lanes (account TEXT PRIMARY KEY, next_at REAL NOT NULL)")
    db.execute("ALTER TABLE claims ADD COLUMN lane TEXT")  # (which account a slot is of: a team ledger's)


def m011_stated_charges(db: sqlite3.Connection) -> None:
    """Beside an attempt's actual cost: imgroute's own pricing of what it delivered (`priced`) and
    what the provider said it charged, where its answer says (`stated`: OpenRouter's dollars,
    credits at the plan's price), so `spend` shows where pricing.yaml has drifted from the bills."""
    db.execute("ALTER TABLE attempts ADD COLUMN priced_usd TEXT")
    db.execute("ALTER TABLE attempts ADD COLUMN stated_usd TEXT")


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: tuple[Migration, ...] = (
    m001_jobs,
    m002_resume_and_budgets,
    m003_batch_rows,
    m004_spend_days,
    m005_history_triggers,
    m006_claims,
    m007_possibly_charged,
    m008_leases,
    m009_machines,
    m010_idempotency,
    m011_stated_charges,
)


def migrate(db: sqlite3.Connection) -> None:
    """Inside a write transaction: run the steps this ledger has not had, bumping its version with each."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        step(db)
        db.execute(f"PRAGMA user_version = {number}")


def add_committed(db: sqlite3.Connection, created: float, delta: Decimal) -> None:
    """Add to the committed total of the local day an attempt was made on (the spend_days of m004)."""
    if not delta:
        return
    day = local_day(created)
    row = db.execute("SELECT committed_usd FROM spend_days WHERE day = ?", (day,)).fetchone()
    total = (Decimal(row[0]) if row else Decimal(0)) + delta
    db.execute(
        "INSERT INTO spend_days (day, committed_usd) VALUES (?, ?) "
        "ON CONFLICT(day) DO UPDATE SET committed_usd = excluded.committed_usd",
        (day, str(total)),
    )
