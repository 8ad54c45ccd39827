"""A task Kie reports failed (`state: fail`, or recordInfo's code 422 or 501) made no image and Kie
does not say whether it charged for it (kie.md, Pricing; docs.kie.ai get-task-detail, Error codes):
the job moves on to the next offer, and the failed task counts as possibly charged (against the caps
and --max-cost, shown by `spend`) until `imgroute jobs settle` says charged or not. A moderated task
stays final. Through the real CLI against the fakes (the Kie fake bills every task at creation)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from imgroute.home import history
from tests.helpers import KIE, killed_at

REPLICATE = "replicate/openai/gpt-image-2"  # the next offer for 1:1 at 1K, medium: $0.047 an image
KIE_CREATE = "/api/v1/jobs/createTask"
REPLICATE_CREATE = "/v1/models/"

# (outcome, recordInfo's code: None is `code: 200` with `state: fail`, failMsg)
FAILURES = [
    ("fail", None, "Generation failed, please try again later."),
    ("fail", 422, "Validation error: aspect_ratio 1:1 is not available at 4K"),
    ("fail", 501, "Generation failed, please try again later."),
]


def kie_then_replicate(fakes) -> list[str]:
    """Keys for Kie and Replicate only: Kie ($0.03) first, Replicate ($0.047) next."""
    return [arg for other in fakes if other not in ("kie", "replicate") for arg in ("--exclude", other)]


def gen(cli, fakes, *args):
    return cli("gen", "a lighthouse at dusk", "--out", "out", "--json", *kie_then_replicate(fakes), *args)


def fail_kie(fakes, outcome="fail", record_code=None) -> None:
    kie = fakes["kie"]
    kie.outcome, kie.record_code = outcome, record_code


def failed_over(cli, fakes) -> dict:
    """A job whose Kie task failed and which Replicate delivered."""
    fail_kie(fakes)
    r = gen(cli, fakes)
    assert r.code == 0, r.err
    return r.json()


def spend_total(cli) -> dict:
    return cli("spend", "--json").json()["total"][0]


def budget_spent(cli) -> dict:
    return {row["period"]: row["spent_usd"] for row in cli("budget", "show", "--json").json()}


# -- the job moves on --------------------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "record_code", "message"), FAILURES)
def test_a_failed_kie_task_falls_back_and_counts_as_possibly_charged(cli, fakes, outcome, record_code, message):
    fail_kie(fakes, outcome, record_code)
    r = gen(cli, fakes)
    assert r.code == 0, r.err
    data = r.json()
    job = data["job_id"]
    assert (data["status"], data["provider"], len(data["files"])) == ("succeeded", "replicate", 1)
    assert data["actual_cost_usd"] == 0.047
    kie_attempt, replicate_attempt = data["attempts"]
    assert (kie_attempt["provider"], kie_attempt["state"], kie_attempt["images"]) == (
        "kie",
        "failed_at_risk",
        0,
    )
    assert kie_attempt["error"] == (
        f"kie: {message}; whether kie charged for it is unknown, so it counts as possibly charged: check the kie "
        f"dashboard, then settle it: imgroute jobs settle {job} --charged or --not-charged"
    )
    assert (replicate_attempt["provider"], replicate_attempt["state"]) == ("replicate", "succeeded")
    assert len(fakes["kie"].calls(KIE_CREATE)) == 1 and len(fakes["replicate"].calls(REPLICATE_CREATE, "POST")) == 1

    shown = cli("jobs", "show", job, "--json").json()
    assert shown["state"] == "succeeded" and shown["actual_usd"] == 0.047
    assert [a["state"] for a in shown["attempts"]] == ["failed_at_risk", "succeeded"]
    assert shown["attempts"][0]["actual_usd"] is None
    assert shown["tasks"][0]["state"] == "failed_at_risk"
    human = cli("jobs", "show", job).out
    assert f"attempt 1: {KIE} (standard) failed_at_risk, est $0.03" in human
    assert "attempt 1: $0.03 possibly charged by kie for failed requests" in human
    assert f"imgroute jobs settle {job} --charged or --not-charged" in human

    total = spend_total(cli)  # Kie's $0.03 is possibly charged: in flight, never spent
    assert (total["actual_usd"], total["in_flight_usd"]) == (0.047, 0.03)
    assert budget_spent(cli) == {"daily": 0.077, "monthly": 0.077}
    assert "possibly charged" in cli("spend").out
    assert "$0.077 spent ($0.03 of it possibly charged)" in cli("budget", "show").out


def test_the_gen_summary_says_the_kie_attempt_may_be_charged(cli, fakes):
    fail_kie(fakes)
    r = cli("gen", "a lighthouse", "--out", "out", *kie_then_replicate(fakes))
    assert r.code == 0, r.err
    assert f"{KIE}: failed_at_risk: kie: Generation failed" in r.out
    assert "imgroute jobs settle" in r.out


def test_a_possibly_charged_failure_counts_against_the_daily_cap(cli, fakes):
    assert cli("budget", "set", "--daily", "0.06").code == 0
    fail_kie(fakes)
    r = gen(cli, fakes)  # Replicate's $0.047 would fit $0.06, but not with Kie's $0.03 possibly charged
    assert r.code == 8
    assert "daily budget: this needs $0.047, $0.03 is left of $0.06" in r.err
    assert fakes["replicate"].requests == []


# -- --max-cost counts Kie's share -------------------------------------------------------------------


def test_max_cost_just_above_the_fallbacks_price_is_refused_because_kies_share_counts(cli, fakes):
    fail_kie(fakes)
    r = gen(cli, fakes, "--max-cost", "0.05")
    assert r.code == 8
    assert (
        f"{REPLICATE} would take this job to $0.077, over --max-cost $0.05 ($0.03 possibly charged for failed "
        "requests)" in r.err
    )
    assert fakes["replicate"].requests == []
    assert [a["state"] for a in r.json()["attempts"]] == ["failed_at_risk"]


def test_max_cost_that_covers_kies_share_and_the_fallback_delivers(cli, fakes):
    fail_kie(fakes)
    r = gen(cli, fakes, "--max-cost", "0.077")
    assert r.code == 0, r.err
    assert r.json()["provider"] == "replicate"


# -- settling ----------------------------------------------------------------------------------------


def test_settled_as_charged_kies_share_becomes_spent_and_the_job_stays_succeeded(cli, fakes):
    job = failed_over(cli, fakes)["job_id"]
    r = cli("jobs", "settle", job, "--charged")
    assert r.code == 0, r.err
    assert r.out == f"job {job}: 1 failed request settled as charged; $0.03 counted as spent\n"
    total = spend_total(cli)
    assert (total["actual_usd"], total["in_flight_usd"]) == (0.077, 0.0)
    assert budget_spent(cli) == {"daily": 0.077, "monthly": 0.077}
    shown = cli("jobs", "show", job, "--json").json()
    assert (shown["state"], shown["actual_usd"], shown["error"]) == ("succeeded", 0.077, None)
    assert shown["actual_source"] == "list price, settled by hand"
    kie = shown["attempts"][0]
    assert (kie["state"], kie["actual_usd"], kie["actual_source"]) == ("failed", 0.03, "settled by hand")
    assert kie["error"] == "kie: Generation failed, please try again later.; settled by hand: charged"
    assert "possibly charged" not in cli("jobs", "show", job).out
    assert cli("jobs", "settle", job, "--charged").code == 2  # nothing left to settle
    assert cli("jobs", "resume", job).code == 0  # nothing to do: nothing sent again
    assert len(fakes["kie"].calls(KIE_CREATE)) == 1 and len(fakes["replicate"].calls(REPLICATE_CREATE, "POST")) == 1


def test_settled_as_never_charged_kies_share_counts_as_nothing(cli, fakes):
    job = failed_over(cli, fakes)["job_id"]
    r = cli("jobs", "settle", job, "--not-charged")
    assert r.code == 0, r.err
    assert r.out == f"job {job}: 1 failed request settled as never charged; nothing counted\n"
    total = spend_total(cli)
    assert (total["actual_usd"], total["in_flight_usd"]) == (0.047, 0.0)
    assert budget_spent(cli) == {"daily": 0.047, "monthly": 0.047}
    shown = cli("jobs", "show", job, "--json").json()
    assert (shown["state"], shown["actual_usd"]) == ("succeeded", 0.047)
    assert [(a["state"], a["actual_usd"]) for a in shown["attempts"]] == [("failed", None), ("succeeded", 0.047)]


def test_a_partly_failed_kie_attempt_counts_only_the_failed_share(cli, fakes, monkeypatch):
    # Kie makes one image a task: of three, the second fails. Two are delivered at $0.03 each; the
    # third goes to Replicate ($0.047); Kie's third ($0.03) is possibly charged.
    kie = fakes["kie"]
    created = kie.create

    def second_fails(request):
        kie.outcome = "fail" if len(kie.calls(KIE_CREATE)) == 2 else "succeed"
        return created(request)

    monkeypatch.setattr(kie, "create", second_fails)
    r = gen(cli, fakes, "--n", "3")
    assert r.code == 0, r.err
    data = r.json()
    assert [(a["provider"], a["state"], a["images"]) for a in data["attempts"]] == [
        ("kie", "failed_at_risk", 2),
        ("replicate", "succeeded", 1),
    ]
    assert len(data["files"]) == 3 and data["actual_cost_usd"] == 0.107
    shown = cli("jobs", "show", data["job_id"], "--json").json()
    assert [a["actual_usd"] for a in shown["attempts"]] == [0.06, 0.047]
    total = spend_total(cli)
    assert (total["actual_usd"], total["in_flight_usd"]) == (0.107, 0.03)
    assert budget_spent(cli) == {"daily": 0.137, "monthly": 0.137}
    assert cli("jobs", "settle", data["job_id"], "--charged").code == 0
    shown = cli("jobs", "show", data["job_id"], "--json").json()
    assert (shown["state"], shown["actual_usd"], shown["attempts"][0]["actual_usd"]) == ("succeeded", 0.137, 0.09)
    assert spend_total(cli)["in_flight_usd"] == 0.0


def test_with_no_other_offer_the_job_fails_at_kie_and_can_still_be_settled(cli, fakes):
    fail_kie(fakes)
    r = cli("gen", "a lighthouse", "--out", "out", "--json", "--provider", "kie")
    assert r.code == 6
    job = r.json()["job_id"]
    assert "Generation failed" in r.err and f"imgroute jobs settle {job}" in r.err
    assert r.json()["status"] == "failed" and spend_total(cli)["in_flight_usd"] == 0.03
    assert cli("jobs", "settle", job, "--charged").code == 0
    shown = cli("jobs", "show", job, "--json").json()
    assert (shown["state"], shown["actual_usd"]) == ("failed", 0.03)
    assert spend_total(cli)["actual_usd"] == 0.03


# -- moderation stays final --------------------------------------------------------------------------


@pytest.mark.parametrize("record_code", [None, 501])
def test_a_moderated_kie_task_stays_final_and_goes_nowhere_else(cli, fakes, record_code):
    fail_kie(fakes, "moderate", record_code)
    r = gen(cli, fakes)
    assert r.code == 6
    assert "flagged by the content policy" in r.err and "change the prompt" in r.err
    assert [a["state"] for a in r.json()["attempts"]] == ["failed"]
    assert fakes["replicate"].requests == []
    assert spend_total(cli)["in_flight_usd"] == 0.0
    assert cli("jobs", "settle", r.json()["job_id"], "--charged").code == 2  # nothing of unknown charge


# -- resume ------------------------------------------------------------------------------------------


def test_resume_of_a_job_killed_while_its_fallback_ran_sends_nothing_twice(cli, fakes, tmp_path):
    fail_kie(fakes)
    patch = (
        "from imgroute.providers.replicate import ReplicateAdapter\n"
        "ReplicateAdapter.poll = lambda self, http, handle: os._exit(137)\n"
    )
    args = kie_then_replicate(fakes)
    killed_at(patch, "gen", "a lighthouse", "--out", str(tmp_path / "out"), *args)
    kie_polls = len(fakes["kie"].calls("/api/v1/jobs/recordInfo"))
    done = cli("jobs", "resume", "--all", "--json")
    assert done.code == 0, done.err
    (result,) = done.json()
    assert (result["status"], result["provider"], len(result["files"])) == ("succeeded", "replicate", 1)
    assert [a["state"] for a in result["attempts"]] == ["failed_at_risk", "succeeded"]
    assert len(fakes["kie"].calls(KIE_CREATE)) == 1 and len(fakes["replicate"].calls(REPLICATE_CREATE, "POST")) == 1
    assert len(fakes["kie"].calls("/api/v1/jobs/recordInfo")) == kie_polls  # the failed task is not asked again
    assert (spend_total(cli)["actual_usd"], spend_total(cli)["in_flight_usd"]) == (0.047, 0.03)


def test_resume_of_a_job_killed_before_its_fallback_sends_the_rest_elsewhere_not_to_kie(cli, fakes, tmp_path):
    fail_kie(fakes)
    fakes["kie"].outcome = "fail"
    patch = (
        "from imgroute.providers.replicate import ReplicateAdapter\n"
        "ReplicateAdapter.upload_inputs = lambda self, http, spec: os._exit(137)\n"
    )
    killed_at(patch, "gen", "a lighthouse", "--out", str(tmp_path / "out"), *kie_then_replicate(fakes))
    assert fakes["replicate"].requests == []
    fakes["kie"].outcome = "succeed"  # Kie would deliver now: it is still not asked again
    done = cli("jobs", "resume", "--all", "--json")
    assert done.code == 0, done.err
    (result,) = done.json()
    assert (result["status"], result["provider"]) == ("succeeded", "replicate")
    assert len(fakes["kie"].calls(KIE_CREATE)) == 1 and len(fakes["replicate"].calls(REPLICATE_CREATE, "POST")) == 1
    assert spend_total(cli)["in_flight_usd"] == 0.03


# -- the offer's record ------------------------------------------------------------------------------


def test_the_offers_record_counts_a_failure_whose_charge_is_unknown(cli, fakes, isolated_home):
    failed_over(cli, fakes)
    kie, replicate = history.read(isolated_home)[KIE], history.read(isolated_home)[REPLICATE]
    assert (kie.attempts, kie.succeeded, kie.failed, kie.charge_unknown) == (1, 0, 1, 1)
    assert kie.charged_usd == Decimal(0)  # not known: never counted as charged
    assert (replicate.attempts, replicate.succeeded, replicate.charge_unknown) == (1, 1, 0)
