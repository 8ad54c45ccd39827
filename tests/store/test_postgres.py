"""What only the team ledger (PostgreSQL) has: leases that expire and are checked before a send,
caps that hold for many writers at once, one clock and one time zone for every machine, migrations
two machines can start together, and a URL whose password is never shown."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import pytest

from imgroute.errors import BudgetRefused, ConfigError, LeaseLost
from imgroute.models import JobState, OfferRef
from imgroute.store.interface import LEASE_SECONDS, PROCESS_OWNER, job_key
from tests.pg_cluster import cluster
from tests.store.conftest import Clock
from tests.store.test_store import new_job

KIE = OfferRef("kie", "gpt-image-2-text-to-image", "standard")


def team(url: str, clock: Clock | None = None):
    from imgroute.store.postgres import PostgresLedger

    return PostgresLedger(url, clock=clock, heartbeat=False)


@pytest.fixture
def url() -> str:
    return cluster().new_database()


def test_a_lease_runs_out_and_is_taken_over_after_its_expiry(url):
    clock = Clock()
    ledger = team(url, clock)
    with ledger.transaction() as tx:
        assert tx.claim(["row:1"], "machine-a", 30) == {}
    clock.advance(29)
    with ledger.transaction() as tx:
        held = tx.claim(["row:1"], "machine-b", 30)
    assert held["row:1"].owner == "machine-a"
    clock.advance(2)  # machine-a stopped renewing: its lease ran out
    with ledger.transaction() as tx:
        assert tx.claim(["row:1"], "machine-b", 30) == {}
    assert ledger.lease_expiries(["row:1", "row:2"]) == {"row:1": clock.now + 30}


def test_a_renewed_lease_holds_past_its_first_expiry(url):
    clock = Clock()
    ledger = team(url, clock)
    with ledger.transaction() as tx:
        tx.claim(["job:a"], "machine-a", 30)
    clock.advance(20)
    with ledger.transaction() as tx:
        tx.renew(["job:a"], "machine-a", 30)
    clock.advance(20)
    with ledger.transaction() as tx:
        assert list(tx.claim(["job:a"], "machine-b", 30)) == ["job:a"]


def test_a_machine_whose_lease_was_taken_over_sends_nothing(url):
    """The intent before a send checks the job's lease: a stalled machine finds the job taken."""
    clock = Clock()
    ledger = team(url, clock)
    with ledger.transaction() as tx:
        tx.new_job(new_job("j1"))
        tx.claim([job_key("j1")], PROCESS_OWNER, 30)
        attempt = tx.reserve_attempt("j1", 1, KIE, Decimal("0.03"), [])
        tx.task_submitting(attempt, 1, "ref-1", 1, {})  # still ours: journaled
    clock.advance(LEASE_SECONDS + 1)  # stalled past the lease (renewed by that intent); another machine takes over
    with ledger.transaction() as tx:
        assert tx.claim([job_key("j1")], "machine-b", 30) == {}
    with pytest.raises(LeaseLost, match=r"job j1 was taken over by another imgroute \(machine-b on "), \
            ledger.transaction() as tx:  # fmt: skip
        tx.task_submitting(attempt, 2, "ref-2", 1, {})
    with ledger.transaction() as tx:  # the taker finished and gave the lease up: still not ours
        tx.release([job_key("j1")], "machine-b")
    with pytest.raises(LeaseLost, match="a machine that has since finished it"), ledger.transaction() as tx:
        tx.task_submitting(attempt, 3, "ref-3", 1, {})
    assert len(ledger.tasks("j1")) == 1  # no later intent was journaled


def test_a_batch_rows_new_job_sends_nothing_once_another_machine_holds_its_row(url):
    clock = Clock()
    ledger = team(url, clock)
    with ledger.transaction() as tx:
        tx.new_job(new_job("j2", row_key="abc:row1"))
        tx.claim([job_key("j2")], PROCESS_OWNER, 600)
        tx.claim(["abc:row1"], "machine-b", 600)  # (B took the row while this machine stalled)
        attempt = tx.reserve_attempt("j2", 1, KIE, Decimal("0.03"), [])
    with pytest.raises(LeaseLost, match=r"\(machine-b, which holds its batch row\)"), ledger.transaction() as tx:
        tx.task_submitting(attempt, 1, "ref-1", 1, {})


def test_writers_racing_for_the_last_dollars_never_pass_the_cap(url):
    """Eight connections (as eight machines) reserve $0.03 each at once against a $0.10 cap: three
    get through, whatever the interleaving."""
    with team(url).transaction() as tx:
        tx.set_budget("daily", Decimal("0.10"))
    ledgers = [team(url) for _ in range(8)]
    start, results = threading.Barrier(8), []

    def reserve(i: int) -> None:
        start.wait()
        try:
            with ledgers[i].transaction() as tx:
                tx.new_job(new_job(f"j{i}"))
                tx.reserve_attempt(f"j{i}", 1, KIE, Decimal("0.03"), [], job_state=JobState.SUBMITTING)
            results.append("reserved")
        except BudgetRefused:
            results.append("refused")

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["refused"] * 5 + ["reserved"] * 3
    assert ledgers[0].spent_since(time.time()) == Decimal("0.09")


def test_concurrent_changes_to_a_days_total_are_never_lost(url):
    """Many machines settle attempts of the same day at once: the day's total is their sum."""
    ledgers = [team(url) for _ in range(6)]
    attempts = []
    for i, ledger in enumerate(ledgers):
        with ledger.transaction() as tx:
            tx.new_job(new_job(f"j{i}"))
            attempts.append(tx.reserve_attempt(f"j{i}", 1, KIE, Decimal("0.03"), []))
    start = threading.Barrier(6)

    def settle(i: int) -> None:
        start.wait()
        with ledgers[i].transaction() as tx:
            tx.attempt_state(attempts[i], "succeeded", actual="0.02", source="usage")

    threads = [threading.Thread(target=settle, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledgers[0].spent_since(time.time()) == Decimal("0.12")


def test_budget_days_are_counted_in_the_ledgers_one_time_zone(url):
    # 2026-12-06 23:30 UTC is already the 7th in Auckland (UTC+13 in December)
    moment = dt.datetime(2026, 12, 6, 23, 30, tzinfo=dt.UTC).timestamp()
    clock = Clock(moment)
    ledger = team(url, clock)
    with ledger.transaction() as tx:
        tx.new_job(new_job("utc"))
        tx.reserve_attempt("utc", 1, KIE, Decimal("0.03"), [])
    assert [day for (day,) in ledger._read("SELECT day FROM spend_days")] == ["2026-12-06"]
    ledger.set_zone("Pacific/Auckland")
    with ledger.transaction() as tx:
        tx.new_job(new_job("nz"))
        tx.reserve_attempt("nz", 1, KIE, Decimal("0.03"), [])
    assert "2026-12-07" in [day for (day,) in ledger._read("SELECT day FROM spend_days")]
    assert team(url, clock).zone == ledger.zone  # every machine reads the one setting
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        ledger.set_zone("Mars/Olympus")


def test_the_clock_is_the_databases(url):
    ledger = team(url)
    (server,) = ledger._read("SELECT extract(epoch from clock_timestamp())::float8")[0]
    assert abs(ledger.clock() - server) < 1.0


def test_a_machine_whose_clock_is_set_while_it_runs_agrees_again_at_the_next_beat(url, monkeypatch):
    import imgroute.store.postgres as postgres

    ledger = team(url)
    real = time.time
    monkeypatch.setattr(postgres.time, "time", lambda: real() + 3600)  # (NTP set it an hour ahead)
    (server,) = ledger._read("SELECT extract(epoch from clock_timestamp())::float8")[0]
    assert ledger.clock() - server > 3500  # its leases would run out an hour early
    ledger._beat()
    (server,) = ledger._read("SELECT extract(epoch from clock_timestamp())::float8")[0]
    assert abs(ledger.clock() - server) < 1.0


def test_two_machines_starting_together_on_a_new_database_migrate_it_once(url):
    from imgroute.store.postgres_schema import MIGRATIONS

    opened, errors = [], []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(team(url))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(opened) == 4
    assert opened[0]._read("SELECT version FROM schema_version")[0][0] == len(MIGRATIONS)


def test_a_url_password_never_appears(cli, isolated_home, monkeypatch):
    from imgroute.ledger_url import redacted

    assert redacted("postgresql://team:s3cret@db.example.com:5433/imgroute") == (
        "postgresql://team:***@db.example.com:5433/imgroute"
    )
    socket_dir = cluster().socket
    monkeypatch.setenv("IMGROUTE_LEDGER_URL", f"postgresql://nobody:s3cret@/missing?host={socket_dir}&port=1")
    shown = cli("jobs")
    assert shown.code == 3 and "s3cret" not in shown.err + shown.out and "***" in shown.err
    assert shown.err.count("\n") == 1 and "cannot be reached" in shown.err  # (one line: the error and its fix)
    monkeypatch.setenv("IMGROUTE_LEDGER_URL", "mysql://team:s3cret@db/imgroute")
    refused = cli("jobs")
    assert refused.code == 3 and "not a PostgreSQL URL" in refused.err and "s3cret" not in refused.err


def test_config_yaml_selects_the_team_ledger_and_config_shows_it_redacted(cli, isolated_home, url):
    from imgroute.session import open_ledger
    from imgroute.store.postgres import PostgresLedger

    isolated_home.mkdir(parents=True)
    with_password = url.replace("postgres@", "postgres:hunter2@")  # (trust auth: any password works)
    (isolated_home / "config.yaml").write_text(f"ledger: '{with_password}'\n")
    ledger = open_ledger()
    assert isinstance(ledger, PostgresLedger)
    ledger.close()
    shown = cli("config", "--json").json()
    setting = shown["settings"]["ledger"]
    assert setting["source"] == "config.yaml" and "***" in setting["value"] and "hunter2" not in str(shown)
    assert cli("jobs").code == 0


def test_a_dead_process_of_this_machine_loses_its_lease_at_once(url):
    import subprocess
    import sys

    from imgroute.store.interface import PROCESS_SPACE

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ledger = team(url)
    with ledger.transaction() as tx:
        tx.claim(["job:a", "job:b"], "me", 600)
    ledger.db.execute(
        "UPDATE claims SET pid = ?, owner = ?", (int(gone.stdout), f"{gone.stdout.strip()}-x@here#{PROCESS_SPACE}")
    )
    with ledger.transaction() as tx:
        assert tx.claim(["job:a"], "next", 600) == {}  # its process is gone from this machine
    ledger.db.execute("UPDATE claims SET owner = 'elsewhere' WHERE key = 'job:b'")  # (another machine's)
    with ledger.transaction() as tx:
        assert list(tx.claim(["job:b"], "next", 600)) == ["job:b"]  # waits out its lease


def test_a_provider_accounts_slots_and_pace_are_shared_by_every_machine_and_no_other(url):
    clock = Clock()
    one, two = team(url, clock), team(url, clock)
    assert one.take_lane("kie@aaa", "job-1", 2, 1.0) == 0.0
    assert two.take_lane("kie@aaa", "job-2", 2, 1.0) == 1.0  # its submit is booked a second later
    assert two.take_lane("kie@aaa", "job-3", 2, 1.0) is None  # both slots held: wait
    assert two.take_lane("kie@bbb", "job-3", 2, 1.0) == 0.0  # another account: its own slots and pace
    one.release_lane("kie@aaa", "job-1")
    clock.advance(5)
    assert two.take_lane("kie@aaa", "job-3", 2, 1.0) == 0.0


def test_a_password_anywhere_in_the_url_is_never_shown():
    from imgroute.ledger_url import redacted, scrubbed

    assert (
        redacted("postgresql://u@h/db?password=s3cret&sslmode=require")
        == "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert "s3cret" not in redacted("host=h password=s3cret dbname=x")  # (libpq's key=value form: nothing shown)
    assert scrubbed("auth failed for p@ss (p%40ss)", "postgresql://u:p%40ss@h/db") == "auth failed for *** (***)"


def test_grouped_commits_undo_only_the_failing_jobs_writes(url):
    """On PostgreSQL too a group commit gives each job its own savepoint: one job's failure (a
    duplicate id) leaves the others committed."""
    import psycopg

    from imgroute.store.postgres import SharedPostgresLedger
    from tests.helpers import wait_for
    from tests.store.test_grouped import a_new_job

    ledger = SharedPostgresLedger(url, heartbeat=False)
    with ledger.transaction() as tx:
        tx.new_job(new_job("taken"))
    errors: dict[str, BaseException] = {}

    def commit(job_id: str) -> None:
        try:
            ledger.commit(a_new_job(job_id))
        except Exception as exc:
            errors[job_id] = exc

    ids = ["j0", "j1", "taken", "j2", "j3"]
    before = ledger.commits
    with ledger._lock:  # one commit under way: the others queue behind it
        threads = [threading.Thread(target=commit, args=(job_id,)) for job_id in ids]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(ledger._waiting) == len(ids))
    for thread in threads:
        thread.join(10)
    assert ledger.commits - before == 1
    assert list(errors) == ["taken"] and isinstance(errors["taken"], psycopg.errors.UniqueViolation)
    assert all(ledger.job(job_id).state == JobState.SUBMITTING for job_id in ids if job_id != "taken")
    assert ledger.job("taken").state == JobState.PLANNED
    ledger.close()
