"""A request whose fate is unknown (its answer lost, or Ctrl-C while it ran) is said to be so, with
the `imgroute jobs settle` command that ends it; it is never sent again, and once settled as
charged it counts as spent, as not charged it is sent again by resume."""

from __future__ import annotations

from tests.helpers import only


def unknown_job(cli, fakes) -> str:
    fakes["openai"].inject("submit", drop=True)  # generated and billed; the answer is lost
    r = cli("gen", "x", "--quality", "low", "--out", "o", "--json", *only(fakes, "openai"))
    assert r.code == 5 and r.json()["status"] == "unknown"
    return r.json()["job_id"]


def test_an_unknown_job_settled_as_charged_counts_as_spent_and_is_no_longer_in_flight(cli, fakes):
    job = unknown_job(cli, fakes)
    assert cli("spend", "--json").json()["total"][0]["in_flight_usd"] > 0
    assert cli("jobs", "resume", "--all").code == 5
    r = cli("jobs", "settle", job, "--charged")
    assert r.code == 0 and "settled as charged" in r.out
    total = cli("spend", "--json").json()["total"][0]
    assert total["in_flight_usd"] == 0 and total["actual_usd"] > 0
    assert cli("jobs", "resume", "--all").code == 0  # nothing left that never ends
    assert cli("jobs", "show", job, "--json").json()["state"] == "failed"
    assert cli("jobs", "settle", job, "--charged").code == 2  # nothing of unknown fate left
    assert len(fakes["openai"].calls("/v1/images/generations")) == 1


def test_an_unknown_job_settled_as_never_charged_is_sent_again_by_resume(cli, fakes):
    job = unknown_job(cli, fakes)
    assert cli("jobs", "settle", job, "--not-charged").code == 0
    assert cli("spend", "--json").json()["total"][0]["in_flight_usd"] == 0
    done = cli("jobs", "resume", job, "--json")
    assert done.code == 0 and done.json()[0]["status"] == "succeeded", done.err
    assert cli("jobs", "settle", job).code == 2  # one of the two flags is needed


def test_a_dropped_submit_names_jobs_settle_and_resume_says_what_happened(cli, fakes):
    fakes["openai"].inject("submit", drop=True)
    r = cli("gen", "a fox", "--out", "out", "--json", *only(fakes, "openai"))
    assert r.code == 5
    job = r.json()["job_id"]
    assert f"imgroute jobs settle {job} --charged" in r.err and "--not-charged" in r.err
    resumed = cli("jobs", "resume", job)
    assert resumed.code == 5
    assert "its answer was lost" in resumed.err and "when imgroute stopped" not in resumed.err
    assert f"imgroute jobs settle {job} --charged" in resumed.err
    assert fakes["openai"].charges == 1  # the dropped one only: nothing was sent again


def test_ctrl_c_during_a_synchronous_request_does_not_promise_a_resume(cli, fakes, monkeypatch):
    from imgroute.providers.openai import OpenAIAdapter

    def interrupted(self, http, spec):
        raise KeyboardInterrupt

    monkeypatch.setattr(OpenAIAdapter, "submit", interrupted)
    r = cli("gen", "x", "--quality", "low", "--out", "o", *only(fakes, "openai"))
    assert r.code == 130 and "whether it was charged is unknown" in r.err
    assert "imgroute jobs settle" in r.err and "jobs resume" not in r.err
