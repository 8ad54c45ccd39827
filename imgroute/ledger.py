"""The ledger: a SQLite journal of every job, so that no paid request is ever forgotten.

Order of writes is the point: a task row is committed as `submitting` before its request is sent,
and the provider's id is committed as soon as it comes back. A crash at any moment leaves a row
that says exactly what is known. The schema migrates itself through numbered steps.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

LEDGER_FILE = "ledger.sqlite"

JOB_STATES = ("planned", "submitting", "submitted", "running", "succeeded", "failed", "unknown", "cancelled")


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


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migration_1]


class Ledger:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.clock = clock
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed journal row survives power loss
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
                step(self.db)
                self.db.execute(f"PRAGMA user_version = {number}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, args: tuple) -> int:
        cursor = self.db.execute(sql, args)  # autocommit: each write is durable on return
        return cursor.lastrowid

    # -- jobs -------------------------------------------------------------------------------

    def new_job(self, job_id: str, prompt: str, request: dict, route: dict, estimate: str | None) -> None:
        now = self.clock()
        self._write(
            "INSERT INTO jobs (id, created, updated, prompt, request, route, estimate_usd, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'planned')",
            (job_id, now, now, prompt, json.dumps(request), json.dumps(route), estimate),
        )
        self.event(job_id, "planned", None)

    def job_state(
        self, job_id: str, state: str, error: str | None = None, actual: str | None = None, source: str | None = None
    ) -> None:
        assert state in JOB_STATES, state
        self._write(
            "UPDATE jobs SET state = ?, updated = ?, error = COALESCE(?, error), "
            "actual_usd = COALESCE(?, actual_usd), actual_source = COALESCE(?, actual_source) WHERE id = ?",
            (state, self.clock(), error, actual, source, job_id),
        )
        self.event(job_id, state, error)

    def event(self, job_id: str, state: str, detail: str | None) -> None:
        self._write(
            "INSERT INTO events (job_id, at, state, detail) VALUES (?, ?, ?, ?)", (job_id, self.clock(), state, detail)
        )

    # -- attempts and tasks -----------------------------------------------------------------

    def new_attempt(
        self, job_id: str, seq: int, provider: str, model: str, plan: str, estimate: str | None, breakdown: list[str]
    ) -> int:
        now = self.clock()
        return self._write(
            "INSERT INTO attempts (job_id, seq, provider, model, plan, estimate_usd, breakdown, state, created, "
            "updated) VALUES (?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?)",
            (job_id, seq, provider, model, plan, estimate, json.dumps(breakdown), now, now),
        )

    def attempt_state(
        self,
        attempt_id: int,
        state: str,
        error: str | None = None,
        actual: str | None = None,
        source: str | None = None,
    ) -> None:
        self._write(
            "UPDATE attempts SET state = ?, updated = ?, error = COALESCE(?, error), "
            "actual_usd = COALESCE(?, actual_usd), actual_source = COALESCE(?, actual_source) WHERE id = ?",
            (state, self.clock(), error, actual, source, attempt_id),
        )

    def task_submitting(self, attempt_id: int, seq: int, client_ref: str, images: int) -> int:
        """Journal the intent to submit. Must return before the request is sent."""
        now = self.clock()
        return self._write(
            "INSERT INTO tasks (attempt_id, seq, client_ref, images, state, created, updated) "
            "VALUES (?, ?, ?, ?, 'submitting', ?, ?)",
            (attempt_id, seq, client_ref, images, now, now),
        )

    def task_submitted(self, task_id: int, provider_job_id: str | None, handle: dict) -> None:
        self._write(
            "UPDATE tasks SET provider_job_id = ?, handle = ?, state = 'submitted', updated = ? WHERE id = ?",
            (provider_job_id, json.dumps(handle), self.clock(), task_id),
        )

    def task_state(self, task_id: int, state: str, detail: str | None = None) -> None:
        self._write(
            "UPDATE tasks SET state = ?, detail = COALESCE(?, detail), updated = ? WHERE id = ?",
            (state, detail, self.clock(), task_id),
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
    ) -> None:
        self._write(
            "INSERT INTO files (job_id, task_id, path, sha256, bytes, format, width, height, verified, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, task_id, path, sha256, size, fmt, width, height, int(verified), self.clock()),
        )

    # -- reading ----------------------------------------------------------------------------

    def job(self, job_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def tasks(self, job_id: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT tasks.*, attempts.provider, attempts.model FROM tasks JOIN attempts ON attempts.id = attempt_id "
            "WHERE attempts.job_id = ? ORDER BY attempts.seq, tasks.seq",
            (job_id,),
        ).fetchall()

    def files(self, job_id: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM files WHERE job_id = ? ORDER BY id", (job_id,)).fetchall()
