"""The SQLite connection a ledger writes through: the file private to its owner, WAL, and a busy
timeout long enough for another imgroute's transaction to finish."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from imgroute.errors import ConfigError
from imgroute.files import private_dir, private_file

BUSY_SECONDS = 60  # how long to wait for another imgroute holding the ledger


def connect(path: Path, durable: bool = True) -> sqlite3.Connection:
    private_file(private_dir(path.parent) / path.name)  # the journal of every job: 0700 home, 0600 file
    # One thread at a time uses a connection (the ledger's lock sees to it).
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


def unusable(path: Path, exc: sqlite3.DatabaseError) -> ConfigError:
    """What to tell the user when the ledger cannot be opened or stays locked."""
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
