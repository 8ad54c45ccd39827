"""Ledger, budgets, spend and resume, through the real CLI against the loopback fakes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.helpers import assert_image, gen, interrupt_before_the_first_send, killed_at, only


def db(home):
    return sqlite3.connect(home / "ledger.sqlite")


# -- storage ------------------------------------------------------------------------------------


def test_every_state_change_is_in_the_history(cli, fakes, isolated_home):
    data = gen(cli, *only(fakes, "kie")).json()
    states = [
        row[0] for row in db(isolated_home).execute("SELECT state FROM events WHERE job_id = ?", (data["job_id"],))
    ]
    assert states == ["planned", "submitting", "submitted", "succeeded"]


def test_jobs_list_show_and_filters(cli, fakes):
    ok = gen(cli, "--quality", "low", *only(fakes, "openai")).json()
    fakes["kie"].outcome = "fail"
    bad = gen(cli, *only(fakes, "kie")).json()
    rows = cli("jobs", "--json").json()
    assert [r["job_id"] for r in rows] == [bad["job_id"], ok["job_id"]]
    assert [r["job_id"] for r in cli("jobs", "--state", "failed", "--json").json()] == [bad["job_id"]]
    assert [r["job_id"] for r in cli("jobs", "--provider", "openai", "--json").json()] == [ok["job_id"]]
    assert cli("jobs", "--since", "2999-01-01", "--json").json() == []
    table = cli("jobs")
    assert ok["job_id"] in table.out and "succeeded" in table.out

    shown = cli("jobs", "show", ok["job_id"][:6], "--json").json()
    assert shown["state"] == "succeeded" and shown["attempts"][0]["provider"] == "openai"
    assert shown["attempts"][0]["actual_source"] == "usage tokens"
    assert shown["files"][0]["sha256"] == ok["images"][0]["sha256"]
    assert shown["quotes"][0]["provider"] == "openai"  # the route as it was, with reasons
    assert any(q["reasons"] for q in shown["quotes"])
    assert shown["tasks"][0]["provider_job_id"].startswith("req_")
    human = cli("jobs", "show", bad["job_id"])
    assert "attempt 1: kie/gpt-image-2-text-to-image (standard) failed" in human.out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["jobs", "show", "nope"], "no job 'nope' in the ledger"),
        (["jobs", "--state", "done"], "--state 'done' is not a job state"),
        (["jobs", "--since", "yesterday"], "--since 'yesterday' is not a date"),
        (["jobs", "resume"], "give one job id, or --all"),
        (["budget", "set"], "nothing to set"),
        (["budget", "set", "--daily", "-3"], "--daily '-3' is negative"),
    ],
)
def test_ledger_commands_bad_input(cli, args, needle):
    r = cli(*args)
    assert r.code == 2 and needle in r.err and len(r.err.splitlines()) == 1


# -- budgets --------------------------------------------------------------------------------------


def test_budget_set_show_and_refusal(cli, fakes):
    assert cli("budget", "set", "--daily", "0.05", "--monthly", "10").code == 0
    shown = {row["period"]: row for row in cli("budget", "show", "--json").json()}
    assert shown["daily"]["cap_usd"] == 0.05 and shown["monthly"]["left_usd"] == 10
    assert gen(cli, *only(fakes, "kie")).code == 0  # $0.03
    r = gen(cli, *only(fakes, "kie"))  # another $0.03 would pass the $0.05 daily cap
    assert r.code == 8
    assert "daily budget: this needs $0.03, $0.02 is left of $0.05 (resets " in r.err
    assert fakes["kie"].charges == 1
    assert "$0.03 spent, $0.02 left" in cli("budget", "show").out
    assert cli("budget", "set", "--daily", "none").code == 0
    assert gen(cli, *only(fakes, "kie")).code == 0


def test_two_processes_against_one_monthly_cap_never_overspend(fakes, isolated_home, tmp_path, ledger_backend):
    from imgroute.session import ledger

    with ledger() as journal, journal.transaction() as tx:
        tx.set_budget("monthly", Decimal("0.05"))
    fakes["kie"].steps = 6  # both jobs are in flight at the same time
    env = {**os.environ, "IMGROUTE_TIME_SCALE": "0.02"}
    cmd = [
        sys.executable,
        "-m",
        "imgroute",
        "gen",
        "a lighthouse",
        "--quality",
        "high",
        "--provider",
        "kie",
        "--out",
        str(tmp_path / "out"),
        "--json",
    ]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    codes = sorted(p.wait(timeout=60) for p in procs)
    assert codes == [0, 8]
    assert fakes["kie"].charges == 1
    with ledger() as journal:
        assert journal.spent_since(0) == Decimal("0.03")


def test_max_cost_covers_the_whole_fallback_path(cli, fakes):
    # Kie makes the first of three images ($0.03), then runs out of credits; the other two would
    # cost $0.20 on PiAPI preview: $0.23 in all, over --max-cost 0.15.
    fakes["kie"].credits = 1
    r = gen(cli, "--quality", "high", "--n", "3", "--max-cost", "0.15")
    assert r.code == 8
    assert "would take this job to $0.23, over --max-cost $0.15 ($0.03 already spent on it)" in r.err
    data = r.json()
    assert len(data["files"]) == 1 and fakes["piapi"].requests == []


# -- spend ----------------------------------------------------------------------------------------


def test_spend_adds_up_to_what_the_fakes_billed(cli, fakes):
    assert gen(cli, "--n", "2", *only(fakes, "kie")).code == 0
    assert gen(cli, "--quality", "low", *only(fakes, "apiframe")).code == 0
    assert gen(cli, "--quality", "high", *only(fakes, "piapi")).code == 0
    fakes["kie"].outcome = "fail"
    gen(cli, *only(fakes, "kie"))  # failed at the provider: no actual cost recorded
    data = cli("spend", "--json").json()
    billed = (fakes["kie"].images_billed - 1) * Decimal("0.03") + 4 * Decimal("0.01") + Decimal("0.10")
    assert Decimal(str(data["total"][0]["actual_usd"])) == billed
    by_provider = {row["key"]: row for row in data["provider"]}
    assert by_provider["kie"]["images"] == 2 and by_provider["kie"]["drift_pct"] == 0.0
    assert by_provider["apiframe"]["actual_usd"] == 0.04
    assert {row["key"] for row in data["quality"]} == {"medium", "low", "high"}
    human = cli("spend")
    assert "by provider" in human.out and "drift" in human.out


def test_spend_shows_drift_when_a_price_is_stale(cli, fakes, isolated_home):
    (isolated_home).mkdir(exist_ok=True)
    (isolated_home / "pricing.yaml").write_text(
        "version: 1\nproviders:\n  apiframe:\n    plans:\n      payg: {usd_per_credit: '0.008'}\n"
    )
    assert gen(cli, "--quality", "low", *only(fakes, "apiframe")).code == 0  # estimated 4 x 0.008
    (isolated_home / "pricing.yaml").write_text(
        "version: 1\nproviders:\n  apiframe:\n    plans:\n      payg: {usd_per_credit: '0.01'}\n"
    )
    row = {r["key"]: r for r in cli("spend", "--json").json()["provider"]}["apiframe"]
    # The estimate used the stale $0.008; the charge is settled at the table's price when it lands.
    assert row["estimated_usd"] == 0.032


# -- resume ---------------------------------------------------------------------------------------


def test_timed_out_job_is_finished_by_resume_without_a_second_submit(cli, fakes):
    fakes["kie"].steps = 10**9
    r = gen(cli, "--timeout", "0.3", *only(fakes, "kie"))
    assert r.code == 5 and "imgroute jobs resume" in r.err
    job = r.json()["job_id"]
    fakes["kie"].steps = 0
    resumed = cli("jobs", "resume", job, "--json")
    assert resumed.code == 0, resumed.err
    result = resumed.json()[0]
    assert result["status"] == "succeeded" and len(result["files"]) == 1
    assert_image(result["files"][0], (1024, 1024))
    assert len(fakes["kie"].calls("/api/v1/jobs/createTask")) == 1 and fakes["kie"].charges == 1
    assert cli("jobs", "show", job, "--json").json()["state"] == "succeeded"


def test_ctrl_c_exits_130_with_the_resume_command(cli, fakes, monkeypatch):
    from imgroute.providers.fal import FalAdapter

    original = FalAdapter.poll
    calls = {"n": 0}

    def interrupted(self, http, handle):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return original(self, http, handle)

    monkeypatch.setattr(FalAdapter, "poll", interrupted)
    r = cli("gen", "x", "--out", "out", "--quality", "low", *only(fakes, "fal"))
    assert r.code == 130
    assert "interrupted; job " in r.err and "finish it with: imgroute jobs resume " in r.err
    job = r.err.split("imgroute jobs resume ")[1].split()[0]
    assert cli("jobs", "--state", "submitted", "--json").json()[0]["job_id"] == job
    done = cli("jobs", "resume", "--all", "--json")
    assert done.code == 0 and done.json()[0]["status"] == "succeeded"
    assert fakes["fal"].charges == 1 and len(fakes["fal"].calls("/openai/gpt-image-2", "POST")) == 1


def test_lost_sync_answer_stays_unknown_and_is_never_resent(cli, fakes):
    fakes["openai"].inject("submit", drop=True)
    job = gen(cli, "--quality", "low", *only(fakes, "openai")).json()["job_id"]
    r = cli("jobs", "resume", job)
    assert r.code == 5
    assert "it was not sent again" in r.err or "is unknown" in r.err
    assert len(fakes["openai"].calls("/v1/images/generations")) == 1


def test_apiframe_unknown_submit_is_reconciled_by_idempotency_replay(cli, fakes):
    fakes["apiframe"].inject("submit", drop=True, times=3)  # every try in gen loses its answer
    r = gen(cli, "--quality", "low", *only(fakes, "apiframe"))
    assert r.code == 5 and r.json()["status"] == "unknown"
    assert len(fakes["apiframe"].jobs) == 1  # replays of one key: one job
    resumed = cli("jobs", "resume", r.json()["job_id"], "--json")
    assert resumed.code == 0, resumed.err
    assert resumed.json()[0]["status"] == "succeeded"
    assert len(fakes["apiframe"].jobs) == 1 and fakes["apiframe"].charges == 1


def test_failed_download_is_fetched_again_by_resume(cli, fakes):
    fakes["piapi"].inject("download", status=404)  # a 404 is final: gen gives up at once
    r = gen(cli, "--quality", "low", *only(fakes, "piapi"))
    assert r.code == 7
    resumed = cli("jobs", "resume", r.json()["job_id"], "--json")
    assert resumed.code == 0, resumed.err
    assert len(resumed.json()[0]["files"]) == 1 and fakes["piapi"].charges == 1


def test_sync_images_survive_a_crash_between_answer_and_save(cli, fakes, monkeypatch, isolated_home):
    # The answer (base64 images) is spooled and recorded before saving, so a crash there loses nothing.
    from imgroute.jobs.settle import Settler

    original = Settler._save_one
    crashes = []

    def crash_once(self, *args, **kwargs):
        if not crashes:
            crashes.append(1)
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Settler, "_save_one", crash_once)
    r = cli("gen", "x", "--out", "out", "--quality", "low", *only(fakes, "openai"))
    assert r.code == 130
    assert list((isolated_home / "spool").iterdir())
    done = cli("jobs", "resume", "--all", "--json")
    assert done.code == 0, done.err
    assert len(done.json()[0]["files"]) == 1
    assert list((isolated_home / "spool").iterdir()) == []
    assert fakes["openai"].charges == 1


def test_sync_images_survive_a_kill_after_saving_before_the_commit(cli, fakes, tmp_path, isolated_home):
    # The saved file's record and the spool's removal wait for the job's last commit: a kill just
    # before it leaves the spool, and resume finds the saved file by its content (no second copy).
    patch = (
        "from imgroute.jobs import runner as jobs\n"
        "original = jobs.JobRunner._committed\n"
        "def committed(self, job):\n"
        "    if job.spooled: os._exit(137)\n"
        "    return (yield from original(self, job))\n"
        "jobs.JobRunner._committed = committed\n"
    )
    killed_at(patch, "gen", "x", "--out", str(tmp_path / "out"), "--quality", "low", *only(fakes, "openai"))
    assert list((isolated_home / "spool").iterdir()) and len(list((tmp_path / "out").glob("*.png"))) == 1
    done = cli("jobs", "resume", "--all", "--json")
    assert done.code == 0, done.err
    assert len(done.json()[0]["files"]) == 1 and len(list((tmp_path / "out").glob("*.png"))) == 1
    assert list((isolated_home / "spool").iterdir()) == []
    assert fakes["openai"].charges == 1


def test_a_kill_before_a_jobs_second_request_keeps_what_the_first_answered(cli, fakes, tmp_path, isolated_home):
    # n=11 at OpenAI is two requests: the first one's ten images are committed before the second goes.
    patch = (
        "from imgroute.providers.openai import OpenAIAdapter\n"
        "sent = []\n"
        "original = OpenAIAdapter.submit\n"
        "def submit(self, http, spec):\n"
        "    if sent: os._exit(137)\n"
        "    sent.append(1)\n"
        "    return original(self, http, spec)\n"
        "OpenAIAdapter.submit = submit\n"
    )
    out = str(tmp_path / "out")
    killed_at(patch, "gen", "x", "--n", "11", "--out", out, "--quality", "low", *only(fakes, "openai"))
    assert fakes["openai"].charges == 1
    cli("jobs", "resume", "--all", "--json")
    assert len(list((tmp_path / "out").glob("*.png"))) == 10  # the paid ten are saved, none lost
    assert fakes["openai"].charges == 1  # and the second request, never sent, is not blindly sent now


def test_resume_all_with_nothing_to_do(cli):
    r = cli("jobs", "resume", "--all")
    assert r.code == 0 and "no unfinished jobs" in r.out


def test_sidecars_match_the_ledger(cli, fakes, isolated_home):
    data = gen(cli, "--n", "2", *only(fakes, "kie")).json()
    for image in data["images"]:
        sidecar = json.loads(Path(image["path"] + ".json").read_text())
        assert sidecar["sha256"] == image["sha256"] and sidecar["job_id"] == data["job_id"]


def test_resume_routes_unsent_images_within_the_jobs_own_provider_choices(cli, fakes, monkeypatch):
    # Interrupted after the budget reservation but before anything was journaled to send: resume
    # must route the job again, and only among the providers the job was made with.
    from imgroute.providers.apiframe import ApiframeAdapter

    interrupt_before_the_first_send(monkeypatch, ApiframeAdapter)
    r = cli("gen", "x", "--out", "out", "--quality", "low", "--provider", "apiframe")
    assert r.code == 130 and all(f.requests == [] for f in fakes.values())
    done = cli("jobs", "resume", "--all", "--json")
    assert done.code == 0, done.err
    assert done.json()[0]["provider"] == "apiframe"
    assert fakes["apiframe"].charges == 1 and fakes["openai"].requests == []


def test_images_alike_from_one_job_are_each_kept_when_it_is_resumed(cli, fakes, monkeypatch, isolated_home):
    # Found by killing a 500-row batch: a row resumed by the rerun got two byte-identical images,
    # and the second was "adopted" as the first's file: one file on disk, recorded twice.
    from imgroute.providers.openai import OpenAIAdapter

    fakes["openai"].alike = True
    interrupt_before_the_first_send(monkeypatch, OpenAIAdapter)
    gen_args = ("gen", "x", "--n", "2", "--name", "mug", "--out", "out", "--quality", "low", *only(fakes, "openai"))
    assert cli(*gen_args).code == 130  # one name for the row's images, as a batch row gives
    done = cli("jobs", "resume", "--all", "--json")
    assert done.code == 0, done.err
    paths = [image["path"] for image in done.json()[0]["images"]]
    assert len(paths) == 2 and len(set(paths)) == 2 and all(Path(p).is_file() for p in paths)


def test_a_ledger_that_is_not_a_database_is_a_one_line_configuration_error(cli, isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "ledger.sqlite").write_bytes(b"not a database, just bytes " * 100)
    r = cli("jobs")
    assert r.code == 3 and "Traceback" not in r.err
    assert "ledger" in r.err and "move it aside" in r.err


# -- resume: where it saves, jobs another imgroute runs, every job at once -------------------------


def test_an_attempt_shows_as_running_while_its_requests_run(cli, fakes):
    fakes["kie"].steps = 10**9
    job = cli("gen", "x", "--timeout", "0.2", "--out", "o", "--json", *only(fakes, "kie")).json()["job_id"]
    assert cli("jobs", "show", job, "--json").json()["attempts"][0]["state"] == "running"


def test_resume_saves_where_gen_ran_not_where_it_is_run(cli, fakes, tmp_path, monkeypatch):
    from imgroute.providers.kie import KieAdapter

    first, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    first.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(first)
    interrupt_before_the_first_send(monkeypatch, KieAdapter)
    assert cli("gen", "x", "--out", "shots", *only(fakes, "kie")).code == 130
    monkeypatch.chdir(elsewhere)
    done = cli("jobs", "resume", "--all", "--json")
    assert done.code == 0, done.err
    assert all(path.startswith(str(first / "shots")) for path in done.json()[0]["files"])
    assert not (elsewhere / "shots").exists()


def test_resuming_a_job_another_live_process_runs_is_refused(cli, fakes, isolated_home):
    import os
    import sqlite3

    fakes["kie"].steps = 10**9
    job = cli("gen", "x", "--timeout", "0.2", "--out", "o", "--json", *only(fakes, "kie")).json()["job_id"]
    db = sqlite3.connect(isolated_home / "ledger.sqlite")
    claim = "INSERT INTO claims (key, pid, owner, at) VALUES (?, ?, 'someone-else', 0)"
    db.execute(claim, (f"job:{job}", os.getppid()))
    db.commit()
    r = cli("jobs", "resume", job)
    assert r.code == 2 and "being run by another imgroute" in r.err
    r = cli("jobs", "resume", "--all")
    assert "skipped: job" in r.err and fakes["kie"].charges == 1


def test_resume_all_collects_the_jobs_together_each_with_its_own_time(cli, fakes):
    jobs = []
    for i in range(3):
        r = cli("gen", f"fox {i}", "--deadline", "24h", "--detach", "--provider", "openai", "--out", "out", "--json")
        assert r.code == 0, r.err
        jobs.append(r.json()["job_id"])
    openai = fakes["openai"]
    slow = next(iter(openai.batches.values()))  # the first job's batch takes 30 looks more than the others
    slow["_polls"] -= 30
    before = len(openai.requests)
    done = cli("jobs", "resume", "--all", "--json")
    assert done.code == 0, done.err
    results = done.json()
    assert sorted(r["job_id"] for r in results) == sorted(jobs)
    assert all(r["status"] == "succeeded" and len(r["files"]) == 1 for r in results)
    looks = [r.path.rsplit("/", 1)[-1] for r in openai.requests[before:] if r.path.startswith("/v1/batches/")]
    last = {batch: max(i for i, look in enumerate(looks) if look == batch) for batch in set(looks)}
    assert max(last.values()) == last[slow["id"]]
    assert all(at < last[slow["id"]] - 20 for batch, at in last.items() if batch != slow["id"])  # not behind it
    assert results[-1]["job_id"] == jobs[0]  # reported as it ended: the slow one last
