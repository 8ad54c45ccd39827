"""A ledger many jobs share (a batch's, a server's): writes committed later, on its committer
thread, together with every other job's that waits, each job told when its own are committed (or
why not), and nothing that waits lost when the ledger closes. On both backends."""

from __future__ import annotations

import contextlib
import threading

import pytest

from imgroute.models import JobState
from imgroute.store.interface import Transaction, Unsaved
from tests.helpers import wait_for
from tests.store.test_store import new_job


def shared_sqlite(tmp_path):
    from imgroute.store.sqlite import SharedLedger

    return SharedLedger(tmp_path / "ledger.sqlite")


def shared_postgres(tmp_path):
    from imgroute.store.postgres import SharedPostgresLedger
    from tests.pg_cluster import cluster

    return SharedPostgresLedger(cluster().new_database(), heartbeat=False)


SHARED = {"sqlite": shared_sqlite, "postgres": shared_postgres}


def a_new_job(job_id: str) -> Unsaved:
    unsaved = Unsaved()
    unsaved.add(Transaction.new_job, new_job(job_id))
    unsaved.add(Transaction.job_state, job_id, JobState.SUBMITTING)
    return unsaved


@pytest.mark.parametrize("backend", SHARED)
def test_writes_committed_later_go_together_and_each_job_is_told_of_its_own(tmp_path, backend):
    ledger = SHARED[backend](tmp_path)
    with ledger.transaction() as tx:
        tx.new_job(new_job("taken"))
    told: dict[str, BaseException | None] = {}
    threads: set[str] = set()

    def tell(job_id: str):
        def done(answer, error) -> None:
            told[job_id] = error
            threads.add(threading.current_thread().name)

        return done

    ids = [f"j{i}" for i in range(8)] + ["taken"]
    kept = {job_id: a_new_job(job_id) for job_id in ids}
    before = ledger.commits
    with ledger._lock:  # a commit under way: what comes meanwhile waits for it, and goes together
        for job_id in ids:
            ledger.commit_later(kept[job_id], tell(job_id))
        assert told == {}  # (nobody waited on this thread)
    wait_for(lambda: len(told) == len(ids))
    assert 1 <= ledger.commits - before <= 2  # (the committer may have taken the first alone)
    assert [job_id for job_id, error in told.items() if error is not None] == ["taken"]
    assert all(ledger.job(job_id).state == JobState.SUBMITTING for job_id in ids[:-1])
    assert ledger.job("taken").state == JobState.PLANNED  # its writes undone, its old row kept
    assert not kept["j0"] and kept["taken"]  # committed writes cleared; refused ones kept
    assert threads == {"imgroute-commits"}
    ledger.close()


@pytest.mark.parametrize("backend", SHARED)
def test_a_closing_ledger_commits_what_waits_first_and_refuses_what_comes_after(tmp_path, backend):
    ledger = SHARED[backend](tmp_path)
    told: dict[str, BaseException | None] = {}
    with ledger._lock:
        for job_id in ("a", "b", "c"):
            ledger.commit_later(a_new_job(job_id), lambda answer, error, job_id=job_id: told.update({job_id: error}))
    ledger.close()
    assert told == {"a": None, "b": None, "c": None}
    ledger.commit_later(a_new_job("late"), lambda answer, error: told.update({"late": error}))
    assert "closed before these writes were committed" in str(told["late"])
    again = SHARED[backend](tmp_path) if backend == "sqlite" else reopened(ledger)
    assert [again.job(job_id).state for job_id in "abc"] == [JobState.SUBMITTING] * 3
    again.close()


def reopened(ledger):
    from imgroute.store.postgres import PostgresLedger

    return PostgresLedger(ledger.url, heartbeat=False)


def test_one_job_driven_on_its_thread_waits_for_a_commit_it_yields():
    from imgroute.jobs.steps import Exchange, drive

    def later(done) -> None:
        threading.Timer(0.01, done, args=("committed", None)).start()

    def failing(done) -> None:
        done(None, RuntimeError("the disk is full"))

    def steps():
        answer = yield Exchange(later)
        try:
            yield Exchange(failing)
        except RuntimeError as exc:
            return answer, str(exc)

    assert drive(steps(), lambda s: None) == ("committed", "the disk is full")


def test_a_team_ledgers_slot_is_given_back_with_the_next_group_commit(tmp_path):
    from imgroute.store.interface import PROCESS_OWNER

    ledger = shared_postgres(tmp_path)
    assert ledger.take_lane("kie@abc", "j1", 1, None) == 0  # the account's one slot
    assert ledger.take_lane("kie@abc", "j2", 1, None) is None  # held
    ledger.release_lane("kie@abc", "j1")  # (no thread waits for it)
    wait_for(lambda: not ledger._read("SELECT 1 FROM claims WHERE key = ? AND owner = ?",
                                      ("slot:kie@abc:j1", PROCESS_OWNER)))  # fmt: skip
    assert ledger.take_lane("kie@abc", "j2", 1, None) == 0
    ledger.close()


@contextlib.contextmanager
def one_group(ledger):
    """What is handed to the committer in this block is committed in one group: it is busy with
    a first job's writes (waiting for the ledger's lock, held here) until the block ends."""
    with ledger._lock:
        ledger.commit_later(a_new_job("first"), lambda answer, error: None)
        wait_for(lambda: not ledger._later)
        yield


def test_a_group_whose_transaction_the_server_gave_up_is_run_again_whole(tmp_path):
    """(PostgreSQL gives a transaction up in a deadlock or a serialization failure: 40P01, 40001.)"""

    class GaveUp(Exception):
        sqlstate = "40P01"

    ledger = shared_postgres(tmp_path)
    runs: list[int] = []
    told: dict[str, tuple] = {}

    def gives_up_once(tx):
        runs.append(1)
        tx.new_job(new_job("j1"))
        if len(runs) == 1:
            raise GaveUp("deadlock detected")
        return "ok"

    with one_group(ledger):
        ledger.transact_later(gives_up_once, lambda answer, error: told.update(j1=(answer, error)))
        ledger.commit_later(a_new_job("j2"), lambda answer, error: told.update(j2=(answer, error)))
    wait_for(lambda: len(told) == 2)
    assert told == {"j1": ("ok", None), "j2": (None, None)} and len(runs) == 2
    assert ledger.job("j1") is not None and ledger.job("j2").state == JobState.SUBMITTING
    ledger.close()


def test_a_refused_write_sent_with_a_later_jobs_read_is_its_own_jobs_error(tmp_path):
    """A group's writes go in one message with the next read: the server's refusal of one job's
    write must not be taken for the reading job's (the group is run again, job by job)."""
    import psycopg

    ledger = shared_postgres(tmp_path)
    with ledger.transaction() as tx:
        tx.new_job(new_job("taken"))
    told: dict[str, tuple] = {}

    def reads(tx):
        return tx.claim(["row:1"], "me", 600)

    with one_group(ledger):
        ledger.commit_later(a_new_job("taken"), lambda answer, error: told.update(taken=(answer, error)))
        ledger.transact_later(reads, lambda answer, error: told.update(reader=(answer, error)))
        ledger.commit_later(a_new_job("j3"), lambda answer, error: told.update(j3=(answer, error)))
    wait_for(lambda: len(told) == 3)
    assert isinstance(told["taken"][1], psycopg.errors.UniqueViolation)
    assert told["reader"] == ({}, None) and told["j3"] == (None, None)
    ledger.close()


def test_a_wake_up_that_fails_never_stops_the_committer(tmp_path):
    ledger = shared_sqlite(tmp_path)
    told: dict[str, BaseException | None] = {}

    def broken(answer, error) -> None:
        raise RuntimeError("a bug in one job's wake-up")

    ledger.commit_later(a_new_job("a"), broken)
    ledger.commit_later(a_new_job("b"), lambda answer, error: told.update(b=error))
    wait_for(lambda: "b" in told)
    assert told == {"b": None} and ledger.job("a").state == JobState.SUBMITTING
    ledger.close()


@pytest.mark.parametrize("backend", SHARED)
def test_reservations_committed_together_never_pass_a_cap(tmp_path, backend):
    """A group's reservations read the caps and what the day has committed once (a team ledger),
    under the lock they take: each still counts the ones before it, a refused one undone alone."""
    from decimal import Decimal

    from imgroute.errors import BudgetRefused
    from tests.store.test_postgres import KIE

    ledger = SHARED[backend](tmp_path)
    with ledger.transaction() as tx:
        tx.set_budget("daily", Decimal("0.10"))
        for i in range(5):
            tx.new_job(new_job(f"j{i}"))
    told: dict[str, tuple] = {}

    def reserve(job_id: str):
        return lambda tx: tx.reserve_attempt(job_id, 1, KIE, Decimal("0.03"), [])

    with one_group(ledger):
        for i in range(5):
            ledger.transact_later(reserve(f"j{i}"), lambda answer, error, i=i: told.update({i: (answer, error)}))
    wait_for(lambda: len(told) == 5)
    refused = [i for i, (_, error) in told.items() if isinstance(error, BudgetRefused)]
    assert len(refused) == 2 and all(told[i][1] is None for i in told if i not in refused)
    assert ledger.spent_since(ledger.clock() - 60) == Decimal("0.09")
    ledger.close()


def test_a_lost_lease_found_by_a_group_commit_is_its_jobs_alone(tmp_path):
    """An intent's lease check is read with the group's last statements: the job whose lease was
    taken over is told LeaseLost, and the group's other intents are committed."""
    from decimal import Decimal

    from imgroute.errors import LeaseLost
    from imgroute.store.interface import PROCESS_OWNER, job_key
    from tests.store.test_postgres import KIE

    ledger = shared_postgres(tmp_path)
    attempts = {}
    with ledger.transaction() as tx:
        for job_id, owner in (("lost", "machine-b"), ("kept", PROCESS_OWNER)):
            tx.new_job(new_job(job_id))
            tx.claim([job_key(job_id)], owner, 600)
            attempts[job_id] = tx.reserve_attempt(job_id, 1, KIE, Decimal("0.03"), [])
    told: dict[str, tuple] = {}

    def intent(job_id: str):
        return lambda tx: tx.task_submitting(attempts[job_id], 1, f"{job_id}-1", 1, {})

    with one_group(ledger):
        for job_id in ("lost", "kept"):
            ledger.transact_later(intent(job_id), lambda answer, error, j=job_id: told.update({j: (answer, error)}))
    wait_for(lambda: len(told) == 2)
    assert isinstance(told["lost"][1], LeaseLost) and "machine-b" in str(told["lost"][1])
    assert told["kept"][1] is None and [task.id for task in ledger.tasks("kept")] == [told["kept"][0]]
    assert ledger.tasks("lost") == []
    ledger.close()


def test_claims_and_slots_waiting_together_go_in_one_message_in_lock_order(tmp_path):
    """The committer sends the batch rows' claims and the accounts' slots of the moment together,
    one message on the side connection, their locks taken in one order on every machine: the
    rows' claims by key, then the slots by account."""
    from imgroute.store.interface import PROCESS_OWNER, Answer, claim_order, slot_order

    ledger = shared_postgres(tmp_path)
    with ledger.transaction() as tx:
        tx.claim(["ab:row-3"], "machine-b", 600)  # (another machine's)
    told: dict[str, tuple] = {}
    messages: list[list[str]] = []
    flush = ledger.side.flush

    def recorded() -> None:
        messages.append([text for text, _ in ledger.side._held])
        flush()

    ledger.side.flush = recorded

    def claim(key: str):
        def work(tx):
            held, latest = tx.ask_claim([key], PROCESS_OWNER, 600), tx.ask_row_job(key)
            return Answer(lambda: (held().get(key), latest()))

        return work

    def lane(job_id: str):
        return lambda tx: tx.ask_lane("kie@abc", job_id, 1, None)

    slot = slot_order("kie@abc")
    works = {"lane j1": (lane("j1"), slot), "row 3": (claim("ab:row-3"), claim_order("ab:row-3")),
             "lane j2": (lane("j2"), slot), "row 1": (claim("ab:row-1"), claim_order("ab:row-1"))}  # fmt: skip
    with one_group(ledger):
        for name, (work, order) in works.items():
            ledger.transact_later(work, lambda answer, error, n=name: told.update({n: (answer, error)}), order)
    wait_for(lambda: len(told) == 4)
    assert len(messages) == 1  # (one message for the four)
    asked = [("row-1" if "ab:row-1" in text else "row-3" if "ab:row-3" in text else "j1" if "kie@abc:j1" in text
              else "j2" if "kie@abc:j2" in text else "?") for text in messages[0]]  # fmt: skip
    assert asked == ["row-1", "row-1", "row-1", "row-3", "row-3", "row-3", "j1", "j2"]  # (claim, holders, latest job)
    assert told["row 1"] == ((None, None), None)
    assert told["row 3"][0][0].owner == "machine-b"
    assert told["lane j1"] == (0.0, None) and told["lane j2"] == (None, None)  # (the account's one slot: first come)
    ledger.close()


def test_a_claim_the_server_refuses_in_a_shared_message_is_its_own_error(tmp_path):
    """Should the server refuse one of the works sent together, each is run again on its own: the
    error is that work's alone, and the others are answered."""
    import psycopg

    from imgroute.store.interface import PROCESS_OWNER, claim_order, slot_order

    ledger = shared_postgres(tmp_path)
    told: dict[str, tuple] = {}

    def refused(tx):
        tx.write("SELECT 1 / 0")

    works = {"row 1": (lambda tx: tx.ask_claim(["ab:row-1"], PROCESS_OWNER, 600), claim_order("ab:row-1")),
             "broken": (refused, claim_order("ab:row-2")),
             "lane": (lambda tx: tx.ask_lane("kie@abc", "j1", 1, None), slot_order("kie@abc"))}  # fmt: skip
    with one_group(ledger):
        for name, (work, order) in works.items():
            ledger.transact_later(work, lambda answer, error, n=name: told.update({n: (answer, error)}), order)
    wait_for(lambda: len(told) == 3)
    assert isinstance(told["broken"][1], psycopg.errors.DivisionByZero)
    assert told["row 1"] == ({}, None) and told["lane"] == (0.0, None)
    holders = ledger._read("SELECT key, owner FROM claims ORDER BY key")
    assert holders == [("ab:row-1", PROCESS_OWNER), ("slot:kie@abc:j1", PROCESS_OWNER)]  # (the others' stand)
    ledger.close()


def test_a_slot_given_back_and_taken_again_in_one_message_is_still_held(tmp_path):
    """A job that gives its account's slot back and asks for it again (its next offer, on the same
    account) in one committer round keeps it: the release goes first, and the slot still counts
    against the account's limit for every other job."""
    from imgroute.store.interface import slot_order

    ledger = shared_postgres(tmp_path)
    assert ledger.take_lane("kie@abc", "j1", 1, None) == 0.0
    told: dict[str, tuple] = {}
    with one_group(ledger):
        ledger.release_lane("kie@abc", "j1")
        ledger.transact_later(lambda tx: tx.ask_lane("kie@abc", "j1", 1, None),
                              lambda answer, error: told.update(take=(answer, error)),
                              slot_order("kie@abc"))  # fmt: skip
    wait_for(lambda: "take" in told)
    assert told["take"] == (0.0, None)
    assert ledger.take_lane("kie@abc", "j2", 1, None) is None  # (j1 holds the one slot)
    ledger.close()


@pytest.mark.parametrize("backend", SHARED)
def test_a_settlement_in_a_group_counts_though_the_next_jobs_reservation_is_refused(tmp_path, backend):
    """An attempt settled above its estimate, then another job's reservation refused by the cap, in
    one group: taking back the refused job's writes leaves the settlement's in the day's total."""
    from decimal import Decimal

    from imgroute.errors import BudgetRefused
    from tests.store.test_postgres import KIE

    ledger = SHARED[backend](tmp_path)
    with ledger.transaction() as tx:
        tx.set_budget("daily", Decimal("0.10"))
        tx.new_job(new_job("settled"))
        tx.new_job(new_job("refused"))
        attempt = tx.reserve_attempt("settled", 1, KIE, Decimal("0.03"), [])
    settled = Unsaved()
    settled.add(Transaction.attempt_state, attempt, "succeeded", actual="0.06")
    told: dict[str, BaseException | None] = {}
    with one_group(ledger):
        ledger.commit_later(settled, lambda answer, error: told.update(settled=error))
        ledger.transact_later(lambda tx: tx.reserve_attempt("refused", 1, KIE, Decimal("0.05"), []),
                              lambda answer, error: told.update(refused=error))  # fmt: skip
    wait_for(lambda: len(told) == 2)
    assert told["settled"] is None and isinstance(told["refused"], BudgetRefused)
    assert ledger.spent_since(ledger.clock() - 60) == Decimal("0.06")
    ledger.close()


def test_a_reservation_after_one_undone_in_its_group_reads_the_caps_totals_again(tmp_path):
    """A refused reservation's savepoint gives back the reservation lock it took, and another
    machine may reserve in between: the next reservation of the group reads the totals again
    instead of trusting what it read before."""
    from decimal import Decimal

    from imgroute.errors import BudgetRefused
    from imgroute.store.postgres import PostgresLedger
    from tests.store.test_postgres import KIE

    ledger = shared_postgres(tmp_path)
    other = PostgresLedger(ledger.url, heartbeat=False)  # (another machine)
    with ledger.transaction() as tx:
        tx.set_budget("daily", Decimal("0.10"))
        for job_id in ("big", "small", "elsewhere"):
            tx.new_job(new_job(job_id))
    told: dict[str, tuple] = {}

    def small_after_another_machine(tx):
        with other.transaction() as elsewhere:  # (the lock is free again: it gets through)
            elsewhere.reserve_attempt("elsewhere", 1, KIE, Decimal("0.08"), [])
        return tx.reserve_attempt("small", 1, KIE, Decimal("0.03"), [])

    with one_group(ledger):
        ledger.transact_later(lambda tx: tx.reserve_attempt("big", 1, KIE, Decimal("0.20"), []),
                              lambda answer, error: told.update(big=(answer, error)))  # fmt: skip
        ledger.transact_later(small_after_another_machine, lambda answer, error: told.update(small=(answer, error)))
    wait_for(lambda: len(told) == 2)
    assert isinstance(told["big"][1], BudgetRefused) and isinstance(told["small"][1], BudgetRefused)
    assert ledger.spent_since(ledger.clock() - 60) == Decimal("0.08")  # (never past the cap)
    other.close()
    ledger.close()
