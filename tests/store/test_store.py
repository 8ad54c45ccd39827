"""The ledger's interface (store.interface.Ledger), held for every backend: the unit of work,
budgets and their reservations, settling by hand, leases and the reads."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from imgroute.errors import BudgetRefused
from imgroute.models import AttemptState, JobSpec, JobState, OfferRef, TaskState
from imgroute.store.interface import Transaction, Unsaved
from imgroute.store.records import Holder, NewJob

KIE = OfferRef(provider="kie", model="m", plan="standard")
SPEC = JobSpec(prompt="p", model="m", quality="high", width=1024, height=1024, aspect="1:1", resolution="1K", n=1,
               output_format="png", client_ref="j1-1-0")  # fmt: skip


def new_job(job_id: str, row_key: str | None = None) -> NewJob:
    return NewJob(id=job_id, prompt="p", request={"quality": "high"}, route={}, estimate="0.03", out_dir=".",
                  name_template="{slug}", max_cost=None, row_key=row_key)  # fmt: skip


def started(store, job_id: str, estimate: str = "0.03") -> int:
    """A job with one attempt reserved (and its lease, as a runner holds it): the attempt's id."""
    from imgroute.store.interface import LEASE_SECONDS, PROCESS_OWNER, job_key

    with store.transaction() as tx:
        tx.new_job(new_job(job_id))
        tx.claim([job_key(job_id)], PROCESS_OWNER, LEASE_SECONDS)
        return tx.reserve_attempt(job_id, 1, KIE, Decimal(estimate), ["a line"], job_state=JobState.SUBMITTING)


# -- the unit of work -----------------------------------------------------------------------------


def test_a_transaction_that_raises_writes_nothing(store):
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.new_job(new_job("j1"))
        raise RuntimeError("after the write")
    assert store.job("j1") is None


def test_unsaved_writes_are_replayed_in_order_and_cleared_only_once_committed(store):
    unsaved = Unsaved()
    unsaved.add(Transaction.new_job, new_job("j1"))
    unsaved.add(Transaction.job_state, "j1", JobState.SUBMITTING)
    assert store.job("j1") is None and len(unsaved) == 2  # nothing written until committed
    store.commit(unsaved)
    assert store.job("j1").state == JobState.SUBMITTING and not unsaved
    assert [e.state for e in store.events("j1")] == ["planned", "submitting"]


def test_a_refused_reservation_leaves_the_unsaved_writes_unwritten_and_kept(store):
    with store.transaction() as tx:
        tx.set_budget("daily", Decimal("0.01"))
    unsaved = Unsaved()
    unsaved.add(Transaction.new_job, new_job("j1"))
    with pytest.raises(BudgetRefused), store.transaction() as tx:
        unsaved.replay_into(tx)
        tx.reserve_attempt("j1", 1, KIE, Decimal("0.03"), [])
    assert store.job("j1") is None and len(unsaved) == 1  # to be committed with the job's end


# -- budgets --------------------------------------------------------------------------------------


def test_in_flight_jobs_count_against_the_cap(store):
    with store.transaction() as tx:
        tx.set_budget("monthly", Decimal("0.05"))
    started(store, "a")
    with store.transaction() as tx:
        tx.new_job(new_job("b"))
    with pytest.raises(BudgetRefused) as refused, store.transaction() as tx:
        tx.reserve_attempt("b", 1, KIE, Decimal("0.03"), [])
    assert refused.value.left == Decimal("0.02") and refused.value.exit_code == 8
    assert "monthly budget: this needs $0.03, $0.02 is left of $0.05" in refused.value.message
    assert store.attempts("b") == []


def test_what_an_attempt_commits_follows_its_state(store):
    outcomes = [
        ("succeeded", "0.021"),  # settled at its actual cost
        ("failed", None),  # never charged
        ("unknown", None),  # may be charged: counts at its estimate
        ("trouble", "0.004"),  # part delivered, part paid
        ("abandoned", None),
        (None, None),  # still in flight
    ]
    for i, (state, actual) in enumerate(outcomes):
        attempt = started(store, f"j{i}")
        if state is not None:
            with store.transaction() as tx:
                tx.attempt_state(attempt, AttemptState.RUNNING)
                tx.attempt_state(attempt, state, actual=actual, source="usage" if actual else None)
    assert store.spent_since(0) == Decimal("0.021") + Decimal("0.03") + Decimal("0.004") + Decimal("0.03")


def test_budgets_are_set_and_removed(store):
    with store.transaction() as tx:
        tx.set_budget("daily", Decimal("2"))
        tx.set_budget("monthly", Decimal("40"))
    with store.transaction() as tx:
        tx.set_budget("daily", None)
    assert store.budgets() == {"monthly": Decimal("40")}


def test_time_comes_from_the_stores_clock(store, clock):
    started(store, "j1")
    clock.advance(3600)
    with store.transaction() as tx:
        tx.job_state("j1", JobState.SUCCEEDED)
    job = store.job("j1")
    assert job.updated - job.created == 3600
    tomorrow = dt.datetime.fromtimestamp(clock.now) + dt.timedelta(days=1)
    assert store.spent_since(tomorrow.timestamp()) == 0  # whole local days, from the store's stamps


# -- a job's life and its reads -------------------------------------------------------------------


def test_a_jobs_journal_reads_back_as_typed_records(store):
    attempt = started(store, "j1")
    with store.transaction() as tx:
        task = tx.task_submitting(attempt, 0, "j1-1-0", 1, SPEC.to_json())
        tx.task_submitted(task, "kie-123", {"taskId": "kie-123"})
    with store.transaction() as tx:
        tx.task_outputs(task, [{"url": "https://x/1.png"}], {"input_tokens": 3})
        tx.add_file("j1", task, path="/out/a.png", sha256="ab", size=10, fmt="png", width=2, height=3, verified=True)
        tx.attempt_state(attempt, AttemptState.SUCCEEDED, actual="0.03", source="list price")
        tx.job_state("j1", JobState.SUCCEEDED, actual="0.03", source="list price", exit_code=0)
    job = store.job("j1")
    assert (job.state, job.actual, job.exit_code, job.request) == ("succeeded", Decimal("0.03"), 0, {"quality": "high"})
    (row,) = store.tasks("j1")
    assert (row.provider, row.provider_job_id, row.handle, row.state) == ("kie", "kie-123", {"taskId": "kie-123"},
                                                                          TaskState.SUCCEEDED)  # fmt: skip
    assert row.outputs == [{"url": "https://x/1.png"}] and row.usage == {"input_tokens": 3} and row.spec == SPEC
    (file,) = store.files("j1")
    assert (file.path, file.bytes, file.verified) == ("/out/a.png", 10, True)
    (kept,) = store.attempts("j1")
    assert (kept.state, kept.actual, kept.breakdown) == (AttemptState.SUCCEEDED, Decimal("0.03"), ["a line"])
    assert [e.state for e in store.events("j1")] == ["planned", "submitting", "succeeded"]
    assert [j.id for j in store.find_job("j")] == ["j1"] and store.unfinished() == []
    (listed,) = store.jobs(provider="kie/m")
    assert (listed.offer, listed.images) == ("kie/m", 1)
    (spend,) = store.spend_rows()
    assert (spend.quality, spend.images, spend.actual) == ("high", 1, Decimal("0.03"))


def test_a_batch_rows_latest_job_wins(store, clock):
    for job_id in ("first", "second"):
        with store.transaction() as tx:
            tx.new_job(new_job(job_id, row_key="ab12:row-1"))
        clock.advance(1)
    assert store.jobs_for_rows("ab12")["ab12:row-1"].id == "second"


def test_jobs_are_listed_newest_first_and_filtered(store, clock):
    for job_id in ("a", "b", "c"):
        started(store, job_id)
        clock.advance(10)
    with store.transaction() as tx:
        tx.job_state("b", JobState.FAILED)
    assert [j.id for j in store.jobs()] == ["c", "b", "a"]
    assert [j.id for j in store.jobs(states=("failed",))] == ["b"]
    assert [j.id for j in store.jobs(since=clock.now - 15)] == ["c"]
    assert [j.id for j in store.unfinished()] == ["a", "c"]


# -- settling by hand -----------------------------------------------------------------------------


def test_a_request_of_unknown_fate_settled_as_charged_is_spent_and_ends_the_job(store):
    attempt = started(store, "j1", estimate="0.06")
    with store.transaction() as tx:
        task = tx.task_submitting(attempt, 0, "j1-1-0", 2, {})
        tx.task_state(task, TaskState.UNKNOWN, "timed out")
        tx.attempt_state(attempt, AttemptState.UNKNOWN)
    with store.transaction() as tx:
        settled = tx.settle("j1", charged=True)
    assert (settled.unknown, settled.failed) == (1, 0)
    job = store.job("j1")
    assert (job.state, job.actual, job.exit_code) == (JobState.FAILED, Decimal("0.06"), 6)
    assert "2 images lost" in job.error
    assert store.spent_since(0) == Decimal("0.06")


def test_a_failure_of_unknown_charge_settled_as_never_charged_costs_nothing(store):
    attempt = started(store, "j1")
    with store.transaction() as tx:
        task = tx.task_submitting(attempt, 0, "j1-1-0", 1, {})
        tx.task_state(task, TaskState.FAILED_AT_RISK, "failed")
        tx.attempt_state(attempt, AttemptState.FAILED_AT_RISK, at_risk="0.03")
    assert store.at_risk_since(0) == Decimal("0.03") == store.spent_since(0)
    with store.transaction() as tx:
        settled = tx.settle("j1", charged=False)
    assert (settled.unknown, settled.failed, settled.failed_usd) == (0, 1, Decimal(0))
    assert store.attempts("j1")[0].state == AttemptState.FAILED and store.spent_since(0) == 0


# -- leases ---------------------------------------------------------------------------------------


def test_a_lease_is_the_owners_until_released(store):
    with store.transaction() as tx:
        assert tx.claim(["job:a", "job:b"], "me", 600) == {}
    with store.transaction() as tx:
        assert tx.claim(["job:a"], "me", 600) == {}  # its own: renewed, not refused
        tx.renew(["job:a"], "me", 600)
        tx.release(["job:a", "job:b"], "someone else")  # not theirs to give up
    with store.transaction() as tx:
        tx.release(["job:a"], "me")
        assert tx.claim(["job:a"], "other", 600) == {}


def test_a_live_holders_lease_is_refused_with_who_holds_it(store):
    import os

    with store.transaction() as tx:
        tx.claim(["row:1"], "me", 600)
    with store.transaction() as tx:
        held = tx.claim(["row:1", "row:2"], "other", 600)
    assert list(held) == ["row:1"] and isinstance(held["row:1"], Holder) and held["row:1"].owner == "me"
    assert held["row:1"].pid in (None, os.getpid())


def test_a_batch_row_claimed_as_it_starts_comes_with_its_latest_job(store, clock):
    def claim_row(owner: str):
        with store.transaction() as tx:
            held, latest = tx.ask_claim(["ab12:row-1"], owner, 600), tx.ask_row_job("ab12:row-1")
            return held().get("ab12:row-1"), latest()

    assert claim_row("me") == (None, None)
    for job_id in ("first", "second"):
        with store.transaction() as tx:
            tx.new_job(new_job(job_id, row_key="ab12:row-1"))
        clock.advance(1)
    held, latest = claim_row("me")  # (its own: renewed)
    assert held is None and latest.id == "second" and latest.state == JobState.PLANNED
    held, _ = claim_row("other")
    assert held is not None and held.owner == "me"


def test_a_new_jobs_lease_is_its_owners(store):
    from imgroute.store.interface import job_key

    with store.transaction() as tx:
        tx.new_job(new_job("j1"))
        tx.claim_new(job_key("j1"), "me", 600)
    with store.transaction() as tx:
        held = tx.claim([job_key("j1")], "other", 600)
    assert held[job_key("j1")].owner == "me"


# -- serve's idempotency keys ----------------------------------------------------------------------


def test_a_key_names_its_job_from_the_first_intent_so_a_replica_that_died_never_frees_it(store, clock):
    with store.transaction() as tx:
        assert tx.idempotency("k1", "body-a", "replica-a", 60).verdict == "new"
    with store.transaction() as tx:
        assert tx.idempotency("k1", "body-b", "replica-b", 60).verdict == "reused"
        assert tx.idempotency("k1", "body-a", "replica-b", 60).verdict == "running"  # its lease is held
    with store.transaction() as tx:  # replica A journals its job's first intent: the key names it
        tx.new_job(new_job("j1"))
        tx.idempotency_job("k1", "j1")
    with store.transaction() as tx:  # A dies: its lease on the key is gone, its end never written
        tx.release(["idem:k1"], "replica-a")
    with store.transaction() as tx:
        found = tx.idempotency("k1", "body-a", "replica-b", 60)
        assert (found.verdict, found.job_id) == ("running", "j1")  # never "new": the job may be paid
        tx.idempotency_end("k1", None, "replica-b")  # (an end that says "nothing" frees no key with a job)
    with store.transaction() as tx:
        tx.job_state("j1", "succeeded")
    with store.transaction() as tx:
        assert tx.idempotency("k1", "body-a", "replica-b", 60).verdict == "ended"
    clock.advance(24 * 3600 + 1)
    with store.transaction() as tx:
        assert tx.idempotency("k1", "body-b", "replica-b", 60).verdict == "new"  # a day later, a new key


def test_a_key_whose_request_was_refused_before_any_job_is_free_again(store):
    with store.transaction() as tx:
        tx.idempotency("k2", "body", "replica-a", 60)
        tx.idempotency_end("k2", None, "replica-a")
    with store.transaction() as tx:
        assert tx.idempotency("k2", "other body", "replica-b", 60).verdict == "new"
