"""A ledger's history moved into another: `imgroute ledger copy --to postgresql://...`, so that a
team that moves to a shared ledger keeps its jobs, attempts, requests, files, history, spend and
caps. One transaction: a copy that stops half-way has copied nothing. Run again, it copies only
the jobs the target does not have yet (jobs keep their ids; the rows under them get the target's
own, so that ledgers of several machines can be copied into one).
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import NamedTuple

from imgroute.errors import Busy
from imgroute.files import process_alive
from imgroute.store.interface import MACHINE
from imgroute.store.periods import committed_cost
from imgroute.store.sql_ledger import SQLLedger


class Copied(NamedTuple):
    jobs: int  # copied now
    already: int  # there before (a rerun, or a job the team ledger had)
    attempts: int
    tasks: int
    files: int
    events: int
    budgets: tuple[str, ...]  # periods whose cap the target took from the source (it had none)


def copy_ledger(source: SQLLedger, target: SQLLedger) -> Copied:
    """Every job of `source` that `target` lacks, with everything under it; the source's caps
    where the target has none. Spend is counted again in the target's own budget days.

    Not while another imgroute runs jobs on `source` (Busy): they would be copied half-way, and
    finished where the team does not see them. The source is held for writing meanwhile, so that
    none starts one during the copy (it waits for the copy to end)."""
    with source.transaction():
        return _copy(source, target)


def _copy(source: SQLLedger, target: SQLLedger) -> Copied:
    running = [(key, pid) for key, pid in source._read("SELECT key, pid FROM claims")
               if pid != os.getpid() and process_alive(pid)]  # fmt: skip
    if running:
        key, pid = running[0]
        raise Busy(
            f"another imgroute (pid {pid}) is running jobs on this ledger ({key})",
            "copy it once that one has ended (`imgroute jobs` shows what runs)",
        )
    have = {job_id for (job_id,) in target._read("SELECT id FROM jobs")}
    jobs = [row for row in source._read("SELECT * FROM jobs ORDER BY created") if row["id"] not in have]
    counts = {"attempts": 0, "tasks": 0, "files": 0, "events": 0}
    taken: list[str] = []
    with target.transaction() as tx:
        for job in jobs:
            _insert(tx.db, "jobs", {**dict(zip(job.keys(), job, strict=True)), "host": job["host"] or MACHINE})
            tx.db.execute("DELETE FROM events WHERE job_id = ?", (job["id"],))  # (its trigger's: copied below)
            attempts: dict[int, int] = {}
            for row in source._read("SELECT * FROM attempts WHERE job_id = ? ORDER BY id", (job["id"],)):
                attempts[row["id"]] = tx._insert(*_statement("attempts", _fields(row)))
                tx.add_committed(
                    row["created"],
                    committed_cost(row["actual_usd"], row["estimate_usd"], row["state"], row["at_risk_usd"]),
                )
            tasks: dict[int, int] = {}
            for row in _under(source, "tasks", "attempt_id", list(attempts)):
                tasks[row["id"]] = tx._insert(
                    *_statement("tasks", {**_fields(row), "attempt_id": attempts[row["attempt_id"]]})
                )
            for row in source._read("SELECT * FROM files WHERE job_id = ? ORDER BY id", (job["id"],)):
                moved = {**_fields(row), "task_id": tasks.get(row["task_id"]), "host": row["host"] or MACHINE}
                _insert(tx.db, "files", moved)
                counts["files"] += 1
            for row in source._read("SELECT * FROM events WHERE job_id = ? ORDER BY id", (job["id"],)):
                _insert(tx.db, "events", _fields(row))
                counts["events"] += 1
            counts["attempts"] += len(attempts)
            counts["tasks"] += len(tasks)
        caps = target.budgets()
        for period, cap in source.budgets().items():
            if period not in caps:
                tx.set_budget(period, Decimal(cap))
                taken.append(period)
    return Copied(jobs=len(jobs), already=len(have & {r["id"] for r in source._read("SELECT id FROM jobs")}),
                  budgets=tuple(taken), **counts)  # fmt: skip


def _fields(row) -> dict:
    """A row's columns but its own id (the target gives it one)."""
    return {name: row[name] for name in row.keys() if name != "id"}  # noqa: SIM118 (sqlite3.Row: `in` reads values)


def _under(source: SQLLedger, table: str, column: str, ids: list[int]) -> list:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    return source._read(f"SELECT * FROM {table} WHERE {column} IN ({marks}) ORDER BY id", ids)


def _statement(table: str, values: dict) -> tuple[str, tuple]:
    names = list(values)
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", tuple(values.values())


def _insert(db, table: str, values: dict) -> None:
    db.execute(*_statement(table, values))
