"""The store tests run against every ledger backend through one fixture: a second backend (the
team ledger on PostgreSQL) joins by adding itself to BACKENDS and passing the same tests."""

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


BACKENDS: dict[str, Callable[[Path, Clock], Ledger]] = {"sqlite": sqlite_store}


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
