"""The store tests run against every ledger backend through one fixture: SQLite (a file here) and
PostgreSQL (a database of its own in the tests' cluster, tests/pg_cluster.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgroute.store.interface import Ledger


class Clock:
    """The store's clock, moved by hand: no test waits for time to pass."""

    def __init__(self, now: float = 1_790_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sqlite_store(path: Path, clock: Clock) -> Ledger:
    from imgroute.store.sqlite import SQLiteLedger

    return SQLiteLedger(path / "ledger.sqlite", clock=clock)


def postgres_store(path: Path, clock: Clock) -> Ledger:
    from imgroute.store.postgres import PostgresLedger
    from tests.pg_cluster import cluster

    return PostgresLedger(cluster().new_database(), clock=clock, heartbeat=False)


BACKENDS: dict[str, Callable[[Path, Clock], Ledger]] = {"sqlite": sqlite_store, "postgres": postgres_store}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=sorted(BACKENDS))
def store(request, tmp_path: Path, clock: Clock) -> Iterator[Ledger]:
    opened = BACKENDS[request.param](tmp_path, clock)
    try:
        yield opened
    finally:
        opened.close()
