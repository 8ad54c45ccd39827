"""Issue 23: the second new-user trial. Each test goes through the real CLI (or serve) and failed
before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.test_gen_e2e import assert_image, only
from tests.test_trust import nothing_sent


def photo(tmp_path, width: int, height: int, name: str = "photo.png") -> str:
    path = tmp_path / name
    Image.new("RGB", (width, height), (40, 80, 120)).save(path)
    return str(path)


# -- 1: an edit keeps its photo's shape -------------------------------------------------------------


def test_an_edit_of_a_wide_photo_keeps_its_shape_at_1k(cli, tmp_path):
    data = cli("quote", "make it dusk", "--image", photo(tmp_path, 1536, 1024), "--json").json()
    assert data["request"]["aspect"] == "3:2" and data["request"]["resolution"] == "1K"
    assert data["request"]["aspect_from_image"] == "1536x1024"
    by_offer = {q["offer"]: q for q in data["quotes"]}
    assert (by_offer["openai/gpt-image-2"]["output"]["width"], by_offer["openai/gpt-image-2"]["output"]["height"]) == (
        1248,
        832,
    )
    kie = by_offer["kie/gpt-image-2-text-to-image"]
    assert not kie["eligible"] and "aspect 3:2 (the first image's shape) not offered" in kie["reasons"][0]
    choice = data["choice"]["output"]
    assert choice["width"] * 2 == choice["height"] * 3


def test_a_12_megapixel_photo_is_edited_at_1k_unless_resolution_says_otherwise(cli, tmp_path):
    big = photo(tmp_path, 4000, 3000)
    data = cli("quote", "x", "--image", big, "--provider", "openai/gpt-image-2", "--json").json()
    assert (data["request"]["aspect"], data["request"]["resolution"]) == ("4:3", "1K")
    assert (data["choice"]["output"]["width"], data["choice"]["output"]["height"]) == (1152, 864)
    data = cli("quote", "x", "--image", big, "--resolution", "2K", "--provider", "openai", "--json").json()
    assert (data["request"]["aspect"], data["request"]["resolution"]) == ("4:3", "2K")


@pytest.mark.parametrize(
    ("size", "aspect"),
    [((3000, 2001), "3:2"), ((1170, 2532), "6:13"), ((1080, 1350), "4:5"), ((1000, 1001), "1:1")],
)
def test_a_photo_whose_ratio_is_not_round_takes_the_simplest_within_one_percent(cli, tmp_path, size, aspect):
    data = cli("quote", "x", "--image", photo(tmp_path, *size), "--json").json()
    assert data["request"]["aspect"] == aspect


def test_an_explicit_size_or_aspect_still_wins_over_the_photo(cli, tmp_path):
    wide = photo(tmp_path, 1536, 1024)
    assert cli("quote", "x", "--image", wide, "--aspect", "1:1", "--json").json()["request"]["aspect"] == "1:1"
    request = cli("quote", "x", "--image", wide, "--size", "1024x1024", "--json").json()["request"]
    assert request["size"] == "1024x1024" and request["aspect_from_image"] is None


def test_an_edit_through_gen_saves_an_image_of_the_photos_shape(cli, fakes, tmp_path):
    wide = photo(tmp_path, 1536, 1024)
    r = cli("edit", "make it dusk", "--image", wide, "--out", "out", "--json", *only(fakes, "openai"))
    assert r.code == 0, r.err
    assert_image(r.json()["files"][0], (1248, 832))


# -- 5: a byte that is not UTF-8 ---------------------------------------------------------------------

LATIN1 = b"caf\xe9 au lait"


def run_cli(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imgroute", *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


@pytest.mark.parametrize("locale", [{"LANG": "C.UTF-8"}, {"LANG": "C", "LC_ALL": "C"}, {"LC_ALL": "POSIX"}])
def test_a_latin1_byte_is_one_clean_error_from_argv_and_stdin_in_every_container_locale(fakes, locale):
    argv = os.fsdecode(LATIN1)  # as Python hands a program its argv under these locales
    for args, stdin, where in [
        (("gen", argv, "--out", "out"), None, "the prompt argument"),
        (("gen", "--out", "out"), LATIN1, "the prompt on stdin"),
        (("gen", argv, "--dry-run"), None, "the prompt argument"),
        (("quote", argv), None, "the prompt argument"),
    ]:
        done = run_cli(*args, stdin=stdin, env=locale)
        err = done.stderr.decode()
        assert done.returncode == 2, err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"{where} has a byte 0xe9 that is not UTF-8, at character 4 (after 'caf')" in err
    assert nothing_sent(fakes)


def test_a_latin1_byte_in_a_batch_file_or_on_stdin_is_a_bad_row_with_its_line(cli, fakes, tmp_path):
    rows = b'{"prompt": "a lighthouse"}\n{"prompt": "' + LATIN1 + b'"}\n'
    (tmp_path / "rows.jsonl").write_bytes(rows)
    for source, stdin in [(str(tmp_path / "rows.jsonl"), None), ("-", rows)]:
        done = run_cli("batch", source, "--dry-run", "--json", stdin=stdin)
        plan = json.loads(done.stdout)
        assert done.returncode == 0, done.stderr
        assert plan["rows"] == 1 and plan["bad_rows"][0]["line"] == 2
        assert "the prompt has a byte 0xe9 that is not UTF-8" in plan["bad_rows"][0]["problem"]
    assert nothing_sent(fakes)


def test_a_json_body_with_a_lone_surrogate_is_refused_by_the_api_checks(tmp_path):
    from imgroute import api
    from imgroute.errors import UsageError

    with pytest.raises(UsageError, match="the prompt has a byte 0xe9"):
        api.quote("caf\udce9")
    with pytest.raises(UsageError, match="images= has a"):  # (the Python API names its own argument)
        api.quote("x", images=[str(tmp_path / "caf\udce9.png")])


# -- 2: the caveats reach every door that pays -------------------------------------------------------

KIE_ASSUMED = "kie/gpt-image-2-text-to-image delivers high quality by assumption"


def test_gen_shows_the_winners_caveats_before_paying_and_json_carries_them(cli, fakes):
    r = cli("gen", "a fox", "--quality", "high", "--out", "out", *only(fakes, "kie"))
    assert r.code == 0 and f"caveat: {KIE_ASSUMED}" in r.err
    data = cli("gen", "a fox", "--quality", "high", "--out", "out", "--json", *only(fakes, "kie")).json()
    assert any(KIE_ASSUMED in caveat for caveat in data["caveats"])
    dry = cli("gen", "a fox", "--quality", "high", "--dry-run", "--json", *only(fakes, "kie")).json()
    assert any(KIE_ASSUMED in caveat for caveat in dry["caveats"])
    assert cli("quote", "a fox", "--quality", "high", "--json").json()["caveats"] == dry["caveats"]


def test_the_batch_plan_lists_the_caveats_of_the_offers_its_rows_go_to_once(cli, fakes, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"fox {i}", "quality": "high"}) + "\n" for i in range(3)))
    plan = cli("batch", str(rows), "--dry-run", "--json", *only(fakes, "kie")).json()
    assert sum(KIE_ASSUMED in caveat for caveat in plan["caveats"]) == 1


def test_the_python_api_and_a_url_edit_say_their_caveats(fakes, tmp_path):
    import imgroute

    assert any(KIE_ASSUMED in c for c in imgroute.quote("a fox", quality="high").caveats)
    result = imgroute.generate("a fox", quality="high", out=str(tmp_path), exclude=[p for p in fakes if p != "kie"])
    assert any(KIE_ASSUMED in c for c in result.caveats)
    url_edit = imgroute.quote("make it dusk", images=["https://example.com/photo.png"])
    assert url_edit.request.target.aspect_label == "1:1"
    assert any("the first image is a URL" in c and "--aspect" in c for c in url_edit.caveats)


# -- 3: credits that would expire unused are drawn first -----------------------------------------------


def prepaid(cli, credits: int = 12000) -> None:
    import datetime as dt

    expires = (dt.date.today() + dt.timedelta(days=25)).isoformat()
    assert cli("plans", "set", "apiframe", "--credits", str(credits), "--expires", expires).code == 0


def test_credits_that_would_expire_unused_win_the_route_at_their_marginal_cost(cli, fakes, isolated_home):
    prepaid(cli)
    data = cli("quote", "a lighthouse", "--quality", "high", "--json").json()
    choice = data["choice"]
    assert choice["offer"] == "apiframe/gpt-image-2"
    assert (choice["cost_usd"], choice["marginal_cost_usd"]) == (0.23, 0.0)
    assert any("ranked at $0.00" in note and "list price, $0.23" in note for note in choice["notes"])
    kie = next(q for q in data["quotes"] if q["offer"] == "kie/gpt-image-2-text-to-image")
    assert kie["cost_usd"] == kie["marginal_cost_usd"] == 0.03  # cash offers: the same figure
    # --max-cost still counts the list value: $0.23 is over $0.10, so Kie's cash wins
    capped = cli("quote", "a lighthouse", "--quality", "high", "--max-cost", "0.10", "--json").json()
    assert capped["choice"]["offer"] == "kie/gpt-image-2-text-to-image"
    r = cli("gen", "a lighthouse", "--quality", "high", "--out", "out", "--json")
    assert r.code == 0 and r.json()["provider"] == "apiframe" and r.json()["cost_usd"] == 0.23
    from imgroute.home import credits

    assert credits.read(isolated_home)["apiframe"].left == 12000 - 23


def test_a_balance_too_small_to_expire_unused_is_not_free(cli, fakes):
    prepaid(cli, credits=10)  # 10 credits, less than one high image needs (23): 13 are paid at the plan's price
    data = cli("quote", "a lighthouse", "--quality", "high", "--json").json()
    apiframe = next(q for q in data["quotes"] if q["offer"] == "apiframe/gpt-image-2")
    assert apiframe["marginal_cost_usd"] == 0.13 and data["choice"]["offer"] == "kie/gpt-image-2-text-to-image"


# -- 15: serve's max_cost refusal is the client's to change ----------------------------------------------


def test_serve_refuses_over_max_cost_with_a_400_naming_the_parameter_and_says_the_caveats(fakes, isolated_home):
    import openai

    from tests.test_serve import Served

    server = Served(fakes, isolated_home)
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            server.client(max_retries=0).images.generate(
                prompt="a fox", quality="high", extra_body={"imgroute": {"max_cost": 0.001}}
            )
        error = caught.value.body
        assert error["param"] == "imgroute.max_cost" and "--max-cost" not in error["message"]
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert nothing_sent(fakes)
        image = server.client().images.generate(
            prompt="a fox", quality="high", extra_body={"imgroute": {"provider": "kie"}}
        )
        assert any(KIE_ASSUMED in caveat for caveat in image.model_extra["imgroute"]["caveats"])  # (2)
    finally:
        server.stop()


# -- 4: IMGROUTE_TIME_SCALE is for the fakes only --------------------------------------------------------


def test_a_time_scale_left_set_against_a_real_origin_is_refused(cli, fakes, monkeypatch):
    monkeypatch.setenv("IMGROUTE_TIME_SCALE", "0.1")
    assert cli("gen", "a fox", "--out", "out", *only(fakes, "kie")).code == 0  # every keyed provider is a fake
    monkeypatch.delenv("IMGROUTE_OPENAI_BASE_URL")  # the OpenAI key now reaches api.openai.com
    for args in (("gen", "a fox", "--out", "out", *only(fakes, "kie")), ("jobs", "resume", "--all")):
        r = cli(*args)
        assert r.code == 3 and len(r.err.splitlines()) == 1
        assert "IMGROUTE_TIME_SCALE=0.1" in r.err and "https://api.openai.com" in r.err
    assert fakes["openai"].requests == []
    monkeypatch.setenv("IMGROUTE_TIME_SCALE", "fast")
    r = cli("gen", "a fox", "--out", "out")
    assert r.code == 3 and "IMGROUTE_TIME_SCALE='fast' is not a number from 0 to 1" in r.err
    assert cli("quote", "a fox").code == 0  # quote sends nothing: no waits to shorten


def test_the_human_dry_run_and_the_batch_plan_show_the_caveats(cli, fakes, tmp_path):
    r = cli("gen", "a fox", "--quality", "high", "--dry-run", *only(fakes, "kie"))
    assert r.code == 0 and f"caveat: {KIE_ASSUMED}" in r.out
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "a fox", "quality": "high"}) + "\n")
    plan = cli("batch", str(rows), "--dry-run", *only(fakes, "kie"))
    assert plan.out.count(f"caveat: {KIE_ASSUMED}") == 1


def test_the_quote_says_why_expiring_credits_won(cli):
    prepaid(cli)
    r = cli("quote", "a lighthouse", "--quality", "high")
    assert "* cheapest: apiframe/gpt-image-2 at $0.00 beyond prepaid credits that would expire unused" in r.out
    assert "(list price $0.23, which --max-cost and budgets count)" in r.out
    assert "$0.03 more than apiframe (paid from credits that would expire)" in r.out


# -- 11: one form of an offer's name, everywhere ---------------------------------------------------------


def test_offer_names_are_printed_as_provider_slash_model_and_taken_back_as_input(cli, fakes, tmp_path):
    wide = photo(tmp_path, 1024, 768)  # 4:3, which Kie offers
    r = cli("edit", "make it dusk", "--image", wide, "--out", "out", *only(fakes, "kie"))
    assert r.code == 0, r.err
    assert "kie/gpt-image-2-image-to-image (cheapest" in r.out  # the edit model, as the job ran
    listed = cli("jobs").out
    assert "kie/gpt-image-2-image-to-image" in listed and "kie gpt-image" not in listed
    # what was printed is accepted back, where offers are named
    assert cli("jobs", "--provider", "kie/gpt-image-2-image-to-image", "--json").json()[0]["offer"] == (
        "kie/gpt-image-2-image-to-image"
    )
    quoted = cli("quote", "x", "--image", wide, "--provider", "kie/gpt-image-2-image-to-image", "--json").json()
    assert quoted["choice"]["offer"] == "kie/gpt-image-2-text-to-image"
    assert cli("quote", "x", "--provider", "kie/gpt-image-3").code == 2


# -- 7: a stop sends nothing new, waits only for what was sent, and SIGTERM is Ctrl-C -------------------


def start_batch(tmp_path, rows: list[dict], *args: str, **popen) -> subprocess.Popen:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    command = [sys.executable, "-m", "imgroute", "batch", str(path), "--yes", "--json", "--out", str(tmp_path / "o")]
    return subprocess.Popen(command + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for(condition, limit: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.02)


@pytest.mark.parametrize(("signum", "code", "word"), [(2, 130, "interrupted"), (15, 143, "terminated")])
def test_a_stop_ends_rows_waiting_for_their_turn_at_once(fakes, tmp_path, isolated_home, signum, code, word):
    import time

    # OpenAI's default pace: 5 submits a minute, so after the first row the next waits 12 s for its turn
    proc = start_batch(tmp_path, [{"prompt": f"fox {i}", "provider": "openai", "quality": "low"} for i in range(8)])
    wait_for(lambda: fakes["openai"].charges >= 1)
    proc.send_signal(signum)
    stopped = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert time.monotonic() - stopped < 5  # not the minute the paced rows would have waited
    assert f"{word}: no new request is sent" in err and "Traceback" not in err
    assert f"error: {word}: 1 row done, 7 rows not started (nothing was sent for them)" in err
    outcomes = [json.loads(line)["outcome"] for line in out.splitlines()]
    assert sorted(outcomes) == ["done"] + ["not_started"] * 7
    assert fakes["openai"].charges == 1


def test_a_second_stop_leaves_the_sent_jobs_even_when_sigint_came_in_ignored(fakes, tmp_path, isolated_home):
    import signal
    import time

    isolated_home.mkdir()
    (isolated_home / "config.yaml").write_text("limits:\n  kie: {concurrency: 3, per_minute: 6000}\n")
    fakes["kie"].job_seconds = 8
    ignored = signal.SIG_IGN  # as a shell starts a background job: SIGINT ignored from the start
    rows = [{"prompt": f"owl {i}", "provider": "kie"} for i in range(10)]
    proc = start_batch(tmp_path, rows, preexec_fn=lambda: signal.signal(signal.SIGINT, ignored))
    wait_for(lambda: fakes["kie"].charges >= 3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert "interrupted: no new request is sent; waiting for the 3 jobs already sent" in err
    assert "3 jobs already sent were left at their providers, journaled" in err
    assert fakes["kie"].charges == 3
    fakes["kie"].job_seconds = None


# -- 8: a closed stdout ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("pricing",), ("providers",), ("spend",), ("quote", "a fox", "--explain"), ("jobs", "--json")]
)
def test_a_read_only_command_whose_reader_went_away_ends_quietly_with_141(isolated_home, args):
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgroute", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and err == ""


def test_a_batch_whose_reader_went_away_stops_sending_finishes_what_was_sent_and_exits_141(
    fakes, tmp_path, isolated_home
):
    isolated_home.mkdir()
    (isolated_home / "config.yaml").write_text("limits:\n  kie: {concurrency: 2, per_minute: 6000}\n")
    fakes["kie"].job_seconds = 0.3
    rows = [{"prompt": f"heron {i}", "provider": "kie"} for i in range(20)]
    proc = start_batch(tmp_path, rows, "--concurrency", "2")
    first = json.loads(proc.stdout.readline())  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 141, err
    assert first["outcome"] == "done" and "Traceback" not in err
    assert "stdout was closed: no new request is sent" in err
    assert "error: stdout was closed: " in err and "what was sent was finished and saved" in err
    charged = fakes["kie"].charges
    assert charged < 20
    saved = len(list((tmp_path / "o").glob("*.png")))
    assert saved == charged  # every job sent was finished and its image saved
    fakes["kie"].job_seconds = None
    again = start_batch(tmp_path, rows, "--concurrency", "2")
    again.communicate(timeout=60)
    assert again.returncode == 0 and fakes["kie"].charges == 20  # the rest, and nothing twice


# -- 9: gen --detach prints the job id on stdout -----------------------------------------------------------


def test_gen_detach_prints_the_job_id_on_stdout(cli, fakes):
    r = cli("gen", "a fox", "--deadline", "24h", "--detach", "--provider", "openai", "--out", "out")
    assert r.code == 0, r.err
    job = r.out.strip()
    assert len(job) == 12 and f"collect it with: imgroute jobs resume {job}" in r.err
    assert cli("jobs", "show", job, "--json").json()["state"] == "submitted"


def submitted(home) -> bool:
    """Whether a request's answer is journaled (a kill from now on leaves a job to resume)."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{home / 'ledger.sqlite'}?mode=ro", uri=True)
        try:
            return bool(db.execute("SELECT 1 FROM tasks WHERE state IN ('submitted', 'running')").fetchall())
        finally:
            db.close()
    except sqlite3.OperationalError:  # not there yet, or not yet migrated
        return False


def test_sigterm_stops_gen_as_ctrl_c_does_and_exits_143(fakes, tmp_path, isolated_home):
    fakes["kie"].job_seconds = 8
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgroute", "gen", "an owl", "--out", str(tmp_path), *only(fakes, "kie")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: submitted(isolated_home))  # (a charge alone: its answer may not be read yet)
    finally:
        proc.terminate()  # (also when the wait fails: no process is left behind)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 143, err
    assert "error: terminated; job " in err and "finish it with: imgroute jobs resume" in err
    fakes["kie"].job_seconds = None


# -- 10: jobs resume --all resumes them together ----------------------------------------------------------


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


# -- 12: a dropped submit names the way forward --------------------------------------------------------------


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


# -- 13: a line for every row, files of rows done before, images beside the file --------------------------


def test_batch_json_has_a_line_for_every_row_and_a_rerun_names_the_files_done_before(cli, fakes, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"prompt": "a fox", "provider": "kie"})
        + "\n"
        + json.dumps({"prompt": "a fox", "quality": "ultra"})
        + "\n"
    )
    first = [json.loads(line) for line in cli("batch", str(rows), "--yes", "--json", "--out", "o").out.splitlines()]
    assert sorted((line["row"], line["outcome"]) for line in first) == [(1, "done"), (2, "bad_row")]
    bad = next(line for line in first if line["outcome"] == "bad_row")
    assert "ultra" in bad["error"] and bad["files"] == []
    done = next(line for line in first if line["outcome"] == "done")
    again = cli("batch", str(rows), "--yes", "--json", "--out", "o")
    skipped = next(json.loads(line) for line in again.out.splitlines() if json.loads(line)["row"] == 1)
    assert skipped["outcome"] == "skipped" and skipped["files"] == done["files"] and skipped["job_id"] == done["job_id"]
    assert fakes["kie"].charges == 1


def test_image_paths_in_a_batch_file_are_read_from_the_files_folder(cli, fakes, tmp_path, monkeypatch):
    folder = tmp_path / "shoot"
    folder.mkdir()
    photo(folder, 1024, 768, "wide.png")
    rows = folder / "rows.jsonl"
    rows.write_text(
        json.dumps({"prompt": "make it dusk", "image": "wide.png", "provider": "openai"})
        + "\n"
        + json.dumps({"prompt": "make it dawn", "image": "missing.png", "provider": "openai"})
        + "\n"
    )
    monkeypatch.chdir(tmp_path)  # not the file's folder
    plan = cli("batch", str(rows), "--dry-run", "--json")
    assert plan.code == 0, plan.err
    data = plan.json()
    assert data["rows"] == 1 and data["bad_rows"][0]["line"] == 2
    assert str(folder / "missing.png") in data["bad_rows"][0]["problem"]
    only_bad = folder / "bad.jsonl"
    only_bad.write_text(json.dumps({"prompt": "x", "image": "missing.png"}) + "\n")
    r = cli("batch", str(only_bad), "--yes")
    assert r.code == 2 and "at least a prompt" not in r.err and "1 row refused" in r.err


# -- 14: wording and numbers --------------------------------------------------------------------------------


def test_words_and_numbers_read_right(cli, fakes, isolated_home):
    assert cli("jobs").out.strip() == "no jobs in the ledger yet"
    assert cli("gen", "a fox", "--out", "out", *only(fakes, "kie")).code == 0
    assert cli("jobs", "--state", "planned").out.strip() == "no jobs match"
    advised = cli("advise", "--since", "2026-01-01", "--json").json()
    assert advised["images_per_month"] == round(advised["images_per_month"], 1)
    r = cli("nosuchcommand")
    assert r.err.startswith("error: No such command 'nosuchcommand'; see: imgroute --help")
    (isolated_home / "config.yaml").write_text("plan: {apiframe: growth}\n")
    assert "did you mean plans?" in cli("quote", "x").err


@pytest.mark.parametrize("command", [("gen",), ("batch",), ("jobs",), ("advise",), ("quote",)])
def test_help_names_what_to_write_not_python_types(cli, command):
    r = cli(*command, "--help")
    assert r.code == 0
    assert "<bool>" not in r.out and "<list[str]>" not in r.out and "<str>" not in r.out


# -- 16: serve keeps the home private, its paths to itself, and its log honest ----------------------------


def test_serve_as_the_first_command_keeps_the_home_and_its_images_owner_only(fakes, isolated_home, tmp_path):
    import socket
    import stat

    import openai

    assert not isolated_home.exists()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgroute", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    try:
        wait_for(lambda: _listening(port))
        image = client.images.generate(prompt="a fox", extra_body={"imgroute": {"provider": "kie"}})
        saved = image.model_extra["imgroute"]["files"][0]
        not_an_image = tmp_path / "notimage.png"
        not_an_image.write_bytes(b"this is not an image at all")
        with pytest.raises(openai.BadRequestError) as caught, open(not_an_image, "rb") as upload:
            client.images.edit(image=upload, prompt="make it dusk")
    finally:
        proc.terminate()  # SIGTERM: the same clean stop as Ctrl-C
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    message = caught.value.body["message"]
    assert "'notimage.png'" in message and "serve-inputs" not in message and str(isolated_home) not in message
    for folder in (isolated_home, isolated_home / "served", isolated_home / "serve-inputs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(saved + ".json").st_mode) == 0o600
    assert "nothing charged" not in err and "$0.03" in err  # the log: what the job cost


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_every_command_warns_when_the_home_is_open_to_others(cli, isolated_home):
    assert cli("keys", "list").err == ""
    isolated_home.mkdir(mode=0o755)
    isolated_home.chmod(0o755)
    r = cli("quote", "x")
    assert r.code == 0 and f"warning: {isolated_home} can be read by others (mode 755)" in r.err
    assert f"chmod 700 {isolated_home}" in r.err


def test_the_serve_log_never_shows_an_estimate_as_money_spent():
    from types import SimpleNamespace

    from imgroute.serve.app import _charged

    failed = SimpleNamespace(actual=None, status="failed", estimate=None)
    assert _charged(failed) == "nothing charged"
    unknown = SimpleNamespace(actual=None, status="unknown", estimate=__import__("decimal").Decimal("0.2108"))
    assert _charged(unknown) == "charge not known yet (estimated $0.2108)"
    paid = SimpleNamespace(actual=__import__("decimal").Decimal("0.03"), status="succeeded", estimate=None)
    assert _charged(paid) == "$0.03"


def test_the_fakes_script_says_in_one_line_what_to_do(tmp_path):
    import socket

    script = str(Path(__file__).resolve().parent.parent / "scripts" / "fake_providers.py")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, script, "--port", str(port)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"port {port} (for the openai fake) is taken" in done.stderr and "--port" in done.stderr
    no_pillow = f"import sys, runpy; sys.modules['PIL'] = None; runpy.run_path({script!r}, run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", no_pillow], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "the fakes need PIL (Pillow); install the test extras: pip install -e '.[dev]'" in done.stderr
