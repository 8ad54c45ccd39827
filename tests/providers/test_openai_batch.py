"""OpenAI's Batch API as an offer for jobs that can wait: routed only with --deadline, one batch
for many rows, polled rarely, results decoded by custom_id, per-line failures, expiry billing, and
kills and reruns that never pay twice; against the OpenAI fake's Batch side on loopback."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from tests.helpers import wait_for

BATCH = "openai/gpt-image-2-batch"


def only_openai(fakes):
    return [arg for other in fakes if other != "openai" for arg in ("--exclude", other)]


def test_the_batch_offer_is_half_the_token_price_and_needs_a_deadline(cli):
    plain = cli("quote", "a fox", "--quality", "high", "--provider", "openai", "--json").json()
    quotes = {q["offer"]: q for q in plain["quotes"]}
    assert not quotes[BATCH]["eligible"] and "--deadline 24h" in quotes[BATCH]["reasons"][0]
    assert Decimal(str(quotes[BATCH]["cost_usd"])) * 2 == Decimal(str(quotes["openai/gpt-image-2"]["cost_usd"]))
    waiting = cli("quote", "a fox", "--quality", "high", "--provider", "openai", "--deadline", "24h", "--json").json()
    assert waiting["choice"]["offer"] == BATCH
    short = cli("quote", "a fox", "--provider", "openai", "--deadline", "2h", "--json").json()
    assert short["choice"]["offer"] == "openai/gpt-image-2"


def test_gen_with_a_deadline_goes_through_one_batch_and_saves_the_image(cli, fakes):
    r = cli("gen", "a fox", "--quality", "medium", "--deadline", "24h", *only_openai(fakes), "--out", "out", "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert (data["provider"], data["model"]) == ("openai", "gpt-image-2-batch")
    assert Path(data["files"][0]).is_file() and data["images"][0]["verified"]
    fake = fakes["openai"]
    (batch,) = fake.batches.values()
    line = json.loads(fake.stored[batch["input_file_id"]]["bytes"])
    assert line["body"]["model"] == "gpt-image-2" and line["url"] == "/v1/images/generations"
    assert batch["metadata"] == {"imgroute": "1"} and fake.charges == 1
    assert fake.calls("/v1/images/generations") == []  # nothing went to the synchronous API
    assert all(r.header("Authorization") == f"Bearer {fake.key}" for r in fake.requests)
    half = Decimal(str(data["actual_cost_usd"]))
    assert half > 0


def test_gen_detach_returns_the_job_at_once_and_resume_finishes_it(cli, fakes):
    r = cli("gen", "a fox", "--deadline", "24h", "--detach", *only_openai(fakes), "--out", "out", "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert data["status"] == "submitted" and data["files"] == []
    assert len(fakes["openai"].batches) == 1
    done = cli("jobs", "resume", data["job_id"], "--json")
    assert done.code == 0, done.err
    assert done.json()[0]["status"] == "succeeded" and Path(done.json()[0]["files"][0]).is_file()
    assert len(fakes["openai"].batches) == 1 and fakes["openai"].charges == 1


def rows_file(tmp_path, n=20, **extra):
    rows = [json.dumps({"prompt": f"catalogue item {i}", "quality": "low", **extra}) for i in range(n)]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_a_20_row_batch_with_a_deadline_goes_through_one_openai_batch(cli, fakes, tmp_path):
    path = rows_file(tmp_path)
    r = cli("batch", path, "--deadline", "24h", "--provider", "openai", "--yes", "--json", "--out", "out")
    assert r.code == 0, r.err
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert len(lines) == 20 and all(line["status"] == "succeeded" for line in lines)
    assert {line["model"] for line in lines} == {"gpt-image-2-batch"}
    fake = fakes["openai"]
    assert len(fake.batches) == 1 and fake.charges == 20
    (batch,) = fake.batches.values()
    assert batch["request_counts"] == {"total": 20, "completed": 20, "failed": 0}
    assert len(list((tmp_path / "out").glob("*.png"))) == 20
    assert len(fake.calls("/v1/files", "POST")) == 1 and len(fake.calls("/v1/batches", "POST")) == 1
    # the output file (its lines in another order) was downloaded once for all twenty rows
    assert len([q for q in fake.calls("/v1/files/") if q.path.endswith("/content")]) == 1
    again = cli("batch", path, "--deadline", "24h", "--provider", "openai", "--yes", "--json", "--out", "out")
    assert again.code == 0 and len(fake.batches) == 1 and fake.charges == 20  # done before: nothing sent


def test_a_row_deadline_field_admits_the_batch_offer_for_that_row_only(cli, fakes, tmp_path):
    rows = [
        json.dumps({"id": "slow", "prompt": "a slow fox", "quality": "low", "deadline": "24h"}),
        json.dumps({"id": "fast", "prompt": "a fast fox", "quality": "low"}),
    ]
    (tmp_path / "rows.jsonl").write_text("\n".join(rows))
    r = cli("batch", str(tmp_path / "rows.jsonl"), "--provider", "openai", "--yes", "--json", "--out", "out")
    assert r.code == 0, r.err
    by_id = {line["id"]: line for line in map(json.loads, r.out.splitlines())}
    assert by_id["slow"]["model"] == "gpt-image-2-batch" and by_id["fast"]["model"] == "gpt-image-2"


def test_failed_lines_are_reported_per_row_and_an_expired_batch_bills_what_completed(
    cli, fakes, tmp_path, isolated_home
):
    isolated_home.mkdir(exist_ok=True)  # (the synchronous fallbacks are not spaced at tier 1's 5 a minute)
    (isolated_home / "config.yaml").write_text("limits:\n  openai: {concurrency: 5, per_minute: 6000}\n")
    fake = fakes["openai"]
    fake.batch_outcome = "expire"  # half the lines run; the rest come back batch_expired
    path = rows_file(tmp_path, n=6)
    text = Path(path).read_text().replace("catalogue item 0", "FORBIDDEN item 0")
    Path(path).write_text(text)
    r = cli("batch", path, "--deadline", "24h", "--provider", "openai", "--yes", "--json", "--out", "out")
    lines = {line["row"]: line for line in map(json.loads, r.out.splitlines())}
    assert r.code == 6, r.err  # the refused row fails the batch (exit 6)
    assert lines[1]["status"] == "failed" and "safety system" in lines[1]["error"]
    in_batch = [
        n for n, line in lines.items() if line["model"] == "gpt-image-2-batch" and line["status"] == "succeeded"
    ]
    assert sorted(in_batch) == [2, 3]
    # the three that never ran were not billed, and moved on to the next offer at once
    moved = [line for line in lines.values() if line["model"] == "gpt-image-2"]
    assert len(moved) == 3 and all(line["status"] == "succeeded" for line in moved)
    assert all("expired before this request ran" in line["attempts"][0]["error"] for line in moved)
    assert fake.charges == 2 + 3  # two batch lines, three synchronous requests
    assert len(fake.calls("/v1/images/generations")) == 3
    assert len(list((tmp_path / "out").glob("*.png"))) == 5


def test_a_batch_killed_while_openai_runs_it_is_finished_by_a_rerun_with_every_image_saved_once(cli, fakes, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    fake = fakes["openai"]
    fake.steps = 10**6  # the batch runs until the test says otherwise
    path = rows_file(tmp_path)
    env = {**os.environ, "IMGROUTE_TIME_SCALE": "0.001"}
    command = [sys.executable, "-m", "imgroute", "batch", path, "--deadline", "24h", "--provider", "openai"]
    proc = subprocess.Popen([*command, "--yes", "--out", "out"], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    wait_for(lambda: any(b["_polls"] >= 2 for b in fake.batches.values()), limit=30)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(fake.batches) == 1 and fake.charges == 0  # sent, polled, nothing back yet
    fake.steps = 1
    r = cli("batch", path, "--deadline", "24h", "--provider", "openai", "--yes", "--json", "--out", "out")
    assert r.code == 0, r.err
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert len(lines) == 20 and all(line["status"] == "succeeded" for line in lines)
    assert len(fake.batches) == 1 and fake.charges == 20  # picked up again, never sent twice
    saved = sorted((tmp_path / "out").glob("*.png"))
    assert len(saved) == 20  # once each: one file per row, each from its own job
    assert len({json.loads(Path(f"{p}.json").read_text())["job_id"] for p in saved}) == 20


def test_a_lost_create_is_found_by_its_metadata_and_adopted_never_sent_again(cli, fakes, tmp_path):
    fake = fakes["openai"]
    fake.inject("submit", drop=True)  # the batch is created, its answer never arrives
    path = rows_file(tmp_path, n=4)
    r = cli("batch", path, "--deadline", "24h", "--provider", "openai", "--yes", "--json", "--out", "out")
    assert "looked up at OpenAI" in r.err
    assert r.code == 0, r.err  # collecting the rows found the batch, and adopted it
    assert len(fake.batches) == 1 and fake.charges == 4
    assert len(list((tmp_path / "out").glob("*.png"))) == 4
    assert fake.calls("/v1/batches", "GET")  # the list that found it


def test_a_refused_batch_sends_nothing_and_its_rows_fall_back(cli, fakes, tmp_path, isolated_home):
    isolated_home.mkdir(exist_ok=True)
    (isolated_home / "config.yaml").write_text("limits:\n  openai: {concurrency: 5, per_minute: 6000}\n")
    fake = fakes["openai"]
    fake.inject("submit", status=429, times=50)  # "Enqueued token limit reached" for every create
    path = rows_file(tmp_path, n=3)
    r = cli("batch", path, "--deadline", "24h", "--exclude", "fal,piapi,kie,apiframe,replicate", "--yes", "--json")
    assert "the batch was refused" in r.err
    assert fake.batches == {} and fake.charges == 0  # nothing was created, nothing billed


def test_a_batch_that_fails_validation_fails_its_rows_and_bills_nothing(cli, fakes, tmp_path):
    fakes["openai"].batch_outcome = "invalid"
    r = cli("batch", rows_file(tmp_path, n=2), "--deadline", "24h", "--provider", "openai", "--yes", "--json")
    assert r.code == 6
    assert all("failed validation" in json.loads(line)["error"] for line in r.out.splitlines())
    assert fakes["openai"].charges == 0


def test_batches_are_polled_rarely_and_one_poll_serves_every_job_in_the_batch():
    from imgroute.providers.openai_batch import OpenAIBatchAdapter

    assert OpenAIBatchAdapter.poll_schedule[0] >= 60 and OpenAIBatchAdapter.poll_schedule[2] >= 300
    assert OpenAIBatchAdapter.window_s == 24 * 3600


def test_rows_whose_batch_file_was_refused_were_never_sent_and_are_routed_again(cli, fakes, tmp_path):
    fake = fakes["openai"]
    fake.inject("upload", status=400)  # the input file is refused once: nothing reached a batch
    r = cli("batch", rows_file(tmp_path, n=3), "--deadline", "24h", "--provider", "openai", "--yes", "--json")
    assert r.code == 0, r.err
    assert "could not be uploaded" in r.err
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert all(line["status"] == "succeeded" and line["model"] == "gpt-image-2-batch" for line in lines)
    assert all(line["attempts"][0]["state"] == "abandoned" for line in lines)  # journaled unsent, then sent
    assert len(fake.batches) == 3 and fake.charges == 3  # each row in a batch of its own, once


def test_an_edit_with_a_deadline_is_a_json_edit_line_with_its_image_as_a_data_url(cli, fakes, tmp_path):
    from tests.fakes.server import make_image

    (tmp_path / "in.png").write_bytes(make_image(1024, 1024))
    r = cli("edit", "make it blue", "--image", "in.png", "--deadline", "24h", *only_openai(fakes), "--json")
    assert r.code == 0, r.err
    assert r.json()["model"] == "gpt-image-2-batch"
    (batch,) = fakes["openai"].batches.values()
    line = json.loads(fakes["openai"].stored[batch["input_file_id"]]["bytes"])
    assert batch["endpoint"] == line["url"] == "/v1/images/edits"
    assert line["body"]["images"][0]["image_url"].startswith("data:image/png;base64,")


def test_gen_detach_prints_the_job_id_on_stdout(cli, fakes):
    r = cli("gen", "a fox", "--deadline", "24h", "--detach", "--provider", "openai", "--out", "out")
    assert r.code == 0, r.err
    job = r.out.strip()
    assert len(job) == 12 and f"collect it with: imgroute jobs resume {job}" in r.err
    assert cli("jobs", "show", job, "--json").json()["state"] == "submitted"
