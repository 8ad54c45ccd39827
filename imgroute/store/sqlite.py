"""The ledger on SQLite: one file in the home, so that no paid request is ever forgotten.

`SQLiteLedger` implements interface.Ledger (its reads and transactions are sql_ledger's): writes go
through `transaction()` (BEGIN IMMEDIATE on its connection, under its lock). `SharedLedger` is the
one a batch's or a server's threads share. A lease here is held while its holder's process lives.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import cast

from imgroute.files import process_alive
from imgroute.store.connection import connect, unusable
from imgroute.store.migrations import add_committed, migrate
from imgroute.store.records import Holder
from imgroute.store.sql_ledger import GroupedCommits, SQLLedger
from imgroute.store.sql_writes import SQLTransaction

LEDGER_FILE = "ledger.sqlite"


class SQLiteTransaction(SQLTransaction):
    """Writes inside BEGIN IMMEDIATE: SQLite lets one writer in at a time, so a reservation's cap
    check and a day's total need no lock of their own."""

    def _insert(self, sql: str, args: tuple) -> int:
        return cast(int, self.db.execute(sql, args).lastrowid)  # (an INSERT always sets it)

    def add_committed(self, created: float, delta: Decimal) -> None:
        add_committed(self.db, created, delta)

    def claim(self, keys: list[str], owner: str, ttl: float) -> dict[str, Holder]:
        """On one machine a lease is held for as long as its holder's process lives, whatever its
        expiry says: a dead holder's keys are free at once, a live one's never taken."""
        now, pid = self.clock(), os.getpid()
        held = {}
        for key in keys:
            row = self.db.execute("SELECT pid, owner FROM claims WHERE key = ?", (key,)).fetchone()
            if row is not None and row[1] != owner and process_alive(row[0]):
                held[key] = Holder(owner=row[1], pid=row[0])
                continue
            self.db.execute(
                "INSERT INTO claims (key, pid, owner, at, expires) VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO "
                "UPDATE SET pid = excluded.pid, owner = excluded.owner, at = excluded.at, expires = excluded.expires",
                (key, pid, owner, now, now + ttl),
            )
        return held

    def renew(self, keys: list[str], owner: str, ttl: float) -> None:
        expires = self.clock() + ttl
        self.db.executemany(
            "UPDATE claims SET expires = ? WHERE key = ? AND owner = ?", [(expires, key, owner) for key in keys]
        )


class SQLiteLedger(SQLLedger):
    BEGIN = "BEGIN IMMEDIATE"
    QUALITY = "json_extract(jobs.request, '$.quality')"
    ROWS_OF_BATCH = "row_key GLOB ? || ':*'"
    TRANSACTION = SQLiteTransaction

    def __init__(self, path: Path, clock: Callable[[], float] = time.time, durable: bool = True):
        """`durable`: every commit survives power loss (FULL). Batch runs pass False (NORMAL): in WAL
        mode a commit still survives the process being killed; only an OS crash can lose the last
        ones, and commits are ten times cheaper."""
        super().__init__()
        self.path = path
        self.clock = clock
        try:
            self.db = connect(path, durable)
            with self.transaction():  # (the steps and their version bumps: one transaction)
                migrate(self.db)
        except sqlite3.DatabaseError as exc:
            raise unusable(path, exc) from None

    def where(self) -> str:
        return str(self.path)

    def schema_version(self) -> int:
        return self._read("PRAGMA user_version")[0][0]


class SharedLedger(GroupedCommits, SQLiteLedger):
    """SQLiteLedger for many threads: commits grouped (sql_ledger.GroupedCommits)."""
