"""What only the SQLite ledger has: its migrations from every older file, WAL, its day totals
kept against a scan of every attempt, and a lease held while its process lives."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from decimal import Decimal

from imgroute.models import AttemptState, JobState, OfferRef
from imgroute.store import migrations
from imgroute.store.periods import committed_cost
from imgroute.store.sqlite import SQLiteLedger


def test_ledger_migrates_itself_from_version_1(tmp_path):
    path = tmp_path / "ledger.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    migrations.m001_jobs(old)
    old.execute("PRAGMA user_version = 1")
    old.execute(
        "INSERT INTO jobs (id, created, updated, prompt, request, route, state) "
        "VALUES ('j1', 1, 1, 'p', '{}', '{}', 'succeeded')"
    )
    old.close()
    ledger = SQLiteLedger(path)
    assert ledger.db.execute("PRAGMA user_version").fetchone()[0] == len(migrations.MIGRATIONS)
    assert ledger.job("j1").out_dir is None  # new column, old row kept
    assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with ledger.transaction() as tx:
        tx.job_state("j1", "failed", error="settled after the upgrade")  # its history is kept by a trigger now
    assert [(e.state, e.detail) for e in ledger.events("j1")] == [("failed", "settled after the upgrade")]


def test_claims_of_version_7_become_leases(tmp_path):
    path = tmp_path / "ledger.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    for step in migrations.MIGRATIONS[:7]:
        step(old)
    old.execute("PRAGMA user_version = 7")
    old.execute("INSERT INTO claims (key, pid, token, at) VALUES ('job:a', 1, '1-abc', 5)")
    old.close()
    ledger = SQLiteLedger(path)
    row = ledger.db.execute("SELECT key, pid, owner, at, expires FROM claims").fetchone()
    assert tuple(row) == ("job:a", 1, "1-abc", 5, None)


def scan_committed(ledger: SQLiteLedger) -> Decimal:
    """What the budgets count, recomputed from every attempt (the slow way the totals replace)."""
    rows = ledger.db.execute("SELECT actual_usd, estimate_usd, state FROM attempts").fetchall()
    return sum((committed_cost(*row) for row in rows), Decimal(0))


def test_budget_totals_follow_every_attempt_change(tmp_path):
    from tests.store.test_store import new_job

    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    outcomes = [("succeeded", "0.021"), ("failed", None), ("unknown", None), ("trouble", "0.004"), ("abandoned", None),
                (None, None)]  # fmt: skip
    for i, (state, actual) in enumerate(outcomes):
        with ledger.transaction() as tx:
            tx.new_job(new_job(f"j{i}"))
            attempt = tx.reserve_attempt(f"j{i}", 1, OfferRef("kie", "m", "standard"), Decimal("0.03"), [])
        assert ledger.spent_since(0) == scan_committed(ledger)
        if state is not None:
            with ledger.transaction() as tx:
                tx.attempt_state(attempt, AttemptState.RUNNING)
                tx.attempt_state(attempt, state, actual=actual, source="usage" if actual else None)
        assert ledger.spent_since(0) == scan_committed(ledger)
    assert ledger.spent_since(0) == Decimal("0.021") + Decimal("0.03") + Decimal("0.004") + Decimal("0.03")


def test_budget_totals_are_built_for_an_older_ledger(tmp_path):
    path = tmp_path / "ledger.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    for step in migrations.MIGRATIONS[:3]:
        step(old)
    old.execute("PRAGMA user_version = 3")
    old.execute(
        "INSERT INTO jobs (id, created, updated, prompt, request, route, state) "
        "VALUES ('j', 1, 1, 'p', '{}', '{}', 'succeeded')"
    )
    for estimate, actual, state in [("0.03", "0.02", "succeeded"), ("0.05", None, "unknown"), ("0.04", None, "failed")]:
        old.execute(
            "INSERT INTO attempts (job_id, seq, provider, model, plan, estimate_usd, state, actual_usd, created, "
            "updated) VALUES ('j', 1, 'kie', 'm', 'standard', ?, ?, ?, strftime('%s', 'now'), 0)",
            (estimate, state, actual),
        )
    old.close()
    ledger = SQLiteLedger(path)
    assert ledger.spent_since(0) == Decimal("0.07") == scan_committed(ledger)


def test_a_dead_processs_lease_is_free_at_once_whatever_its_expiry(tmp_path):
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    with ledger.transaction() as tx:
        tx.claim(["job:a"], "me", 600)
    ledger.db.execute("UPDATE claims SET pid = ?, owner = 'a dead imgroute'", (dead_pid,))
    with ledger.transaction() as tx:
        assert tx.claim(["job:a"], "me", 600) == {}
    assert ledger.db.execute("SELECT owner FROM claims").fetchone()[0] == "me"


def test_two_ledgers_on_one_file_take_turns(tmp_path):
    # the lock is each ledger's own: two in one process wait for each other in SQLite, not forever
    first, second = SQLiteLedger(tmp_path / "l.sqlite"), SQLiteLedger(tmp_path / "l.sqlite")
    done = []

    def write(ledger, job_id):
        from tests.store.test_store import new_job

        with ledger.transaction() as tx:
            tx.new_job(new_job(job_id))
            tx.job_state(job_id, JobState.CANCELLED)
        done.append(job_id)

    threads = [threading.Thread(target=write, args=(ledger, f"j{i}")) for i, ledger in enumerate([first, second] * 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(done) == 10 and len(first.jobs(limit=50)) == 10


def test_a_fresh_ledger_busy_in_another_process_is_waited_for_not_a_crash(tmp_path):
    # Switching a new file to WAL needs it alone, and SQLite refuses at once instead of waiting its
    # busy timeout: two imgroutes started together on a fresh home had one die "database is locked".
    path = tmp_path / "ledger.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # still in rollback mode
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE busy (x)")
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    ledger = SQLiteLedger(path)
    assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger.db.execute("PRAGMA user_version").fetchone()[0] == len(migrations.MIGRATIONS)


def test_commits_that_wait_together_are_one_transaction_and_a_refusal_undoes_only_its_own(tmp_path):
    """SharedLedger groups the commits that queue behind one: one BEGIN/COMMIT for all, each job's
    writes in a savepoint, so one job's failure (here a duplicate id) leaves the others committed."""
    from imgroute.store.sqlite import SharedLedger
    from tests.helpers import wait_for
    from tests.store.test_grouped import a_new_job
    from tests.store.test_store import new_job

    ledger = SharedLedger(tmp_path / "ledger.sqlite")
    with ledger.transaction() as tx:
        tx.new_job(new_job("taken"))
    errors: dict[str, BaseException] = {}

    def commit(job_id: str) -> None:
        try:
            ledger.commit(a_new_job(job_id))
        except Exception as exc:
            errors[job_id] = exc

    ids = [f"j{i}" for i in range(8)] + ["taken"]
    before = ledger.commits
    with ledger._lock:  # one commit under way: the others queue behind it
        threads = [threading.Thread(target=commit, args=(job_id,)) for job_id in ids]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(ledger._waiting) == len(ids))
    for thread in threads:
        thread.join(10)
    assert ledger.commits - before == 1  # nine jobs' writes, one transaction
    assert list(errors) == ["taken"] and isinstance(errors["taken"], sqlite3.IntegrityError)
    assert all(ledger.job(job_id).state == JobState.SUBMITTING for job_id in ids[:-1])
    assert ledger.job("taken").state == JobState.PLANNED  # the refused job's writes undone, its old row kept


def test_many_threads_committing_at_once_lose_nothing(tmp_path):
    from imgroute.store.interface import Transaction, Unsaved
    from imgroute.store.sqlite import SharedLedger
    from tests.store.test_store import new_job

    ledger = SharedLedger(tmp_path / "ledger.sqlite")

    def commits(thread: int) -> None:
        for i in range(40):
            unsaved = Unsaved()
            unsaved.add(Transaction.new_job, new_job(f"t{thread}-{i}"))
            ledger.commit(unsaved)
            assert not unsaved  # cleared: committed when commit returns
            assert ledger.job(f"t{thread}-{i}") is not None

    threads = [threading.Thread(target=commits, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert ledger.db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 480
    assert ledger.commits <= 480


def test_a_commit_alone_that_fails_raises_and_leaves_the_ledger_usable(tmp_path):
    import pytest

    from imgroute.store.interface import Transaction, Unsaved
    from imgroute.store.sqlite import SharedLedger
    from tests.store.test_store import new_job

    ledger = SharedLedger(tmp_path / "ledger.sqlite")
    for attempt in range(2):
        unsaved = Unsaved()
        unsaved.add(Transaction.new_job, new_job("once"))
        unsaved.add(Transaction.job_state, "once", JobState.SUBMITTING)
        if attempt == 0:
            ledger.commit(unsaved)
        else:
            with pytest.raises(sqlite3.IntegrityError):
                ledger.commit(unsaved)
            assert unsaved  # not cleared: nothing of it was committed
    with ledger.transaction() as tx:
        tx.job_state("once", JobState.SUCCEEDED)
    assert ledger.job("once").state == JobState.SUCCEEDED
