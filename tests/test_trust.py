"""Issue 13: every path a new user tried ends right, and no money is spent by mistake. Each test
here failed before its fix, and each goes through the real CLI."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from tests.fakes.server import make_image
from tests.test_gen_e2e import only


def nothing_sent(fakes) -> bool:
    return all(f.requests == [] for f in fakes.values())


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size (and nothing else is right)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


# -- 6: bad input that reached a provider and cost money ------------------------------------------


@pytest.mark.parametrize("timeout", ["nan", "inf", "-1"])
def test_a_timeout_that_is_not_a_number_of_seconds_is_refused(cli, fakes, timeout):
    r = cli("gen", "x", "--timeout", timeout, "--out", "out", *only(fakes, "kie"))
    assert r.code == 2 and len(r.err.splitlines()) == 1 and "--timeout" in r.err and nothing_sent(fakes)


def test_a_prompt_with_a_nul_byte_is_refused_wherever_it_comes_from(cli, fakes, tmp_path):
    assert cli("gen", "a\x00b", "--out", "out").code == 2
    assert cli("gen", "--out", "out", stdin="a\x00b").code == 2
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "a\u0000b"}) + "\n")
    r = cli("batch", str(rows), "--yes", "--strict")
    assert r.code == 2 and "NUL byte" in r.err
    (tmp_path / "rows.csv").write_text('prompt\n"a\x00b"\n')
    assert cli("batch", str(tmp_path / "rows.csv"), "--yes", "--strict").code == 2
    assert nothing_sent(fakes)


@pytest.mark.parametrize("prompt", [["a", "list"], {"an": "object"}, 7, True, None])
def test_a_jsonl_prompt_that_is_not_text_is_a_bad_row(cli, fakes, tmp_path, prompt):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": prompt, "provider": "kie"}) + "\n")
    r = cli("batch", str(rows), "--yes", "--strict")
    assert r.code == 2 and "rows.jsonl:1:" in r.err and nothing_sent(fakes)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (make_image(1024, 1024, "png", seed=2)[:-40], "truncated"),  # cut off mid-data
        (png_claiming(0, 0), "0x0"),
        (png_claiming(100_000, 100_000), "100000x100000"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "cut short"),  # a header cut short
        (b"RIFF\x10\x00\x00\x00WEBPVP8X", "cut short"),
    ],
)
def test_an_input_image_that_is_not_whole_is_refused_before_anything_is_sent(cli, fakes, tmp_path, data, says):
    image = tmp_path / "in.png"
    image.write_bytes(data)
    r = cli("edit", "x", "--image", str(image), "--out", "out", *only(fakes, "openai"))
    assert r.code == 2 and says in r.err and len(r.err.splitlines()) == 1, r.err
    assert "Traceback" not in r.err and nothing_sent(fakes)


# -- 8: tracebacks where one line belongs --------------------------------------------------------


def test_an_impossible_date_in_a_pricing_file_or_config_is_one_line(cli, tmp_path, isolated_home):
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\nproviders:\n  kie:\n    observed: 2026-02-30\n")
    r = cli("quote", "x", "--pricing", str(bad))
    assert r.code == 3 and "Traceback" not in r.err and len(r.err.splitlines()) == 1 and str(bad) in r.err
    isolated_home.mkdir()
    (isolated_home / "config.yaml").write_text("pricing_max_age_days: 2026-02-30\n")
    r = cli("pricing")
    assert r.code == 3 and "Traceback" not in r.err and "config.yaml" in r.err


def test_errors_never_echo_a_huge_value(cli, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(levels) + "\nversion: 1\nproviders:\n  kie:\n    observed: *a8\n")
    r = cli("pricing", "validate", str(bomb))
    assert r.code == 3 and len(r.err) < 2100, r.err[:300]
    r = cli("quote", "x", "--size", "9" * 5_000_000)
    assert r.code == 2 and len(r.err) < 300


def test_a_config_yaml_that_is_a_directory_or_not_utf8_is_an_error(cli, isolated_home):
    (isolated_home / "config.yaml").mkdir(parents=True)
    r = cli("quote", "x")
    assert r.code == 3 and "config.yaml" in r.err and "directory" in r.err
    (isolated_home / "config.yaml").rmdir()
    (isolated_home / "config.yaml").write_bytes(b"plans: \xff\n")
    r = cli("quote", "x")
    assert r.code == 3 and "UTF-8" in r.err and "permission" not in r.err


def test_invalid_utf8_on_stdin_and_a_huge_csv_cell_are_one_line(cli, tmp_path, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a \xff lighthouse"), encoding="utf-8"))
    from imgroute.cli.app import main

    with pytest.raises(SystemExit) as exit_:
        main(["quote"])
    assert exit_.value.code == 2
    big = tmp_path / "rows.csv"
    big.write_text("prompt\n" + '"' + "x" * 200_000 + '"\n')
    r = cli("batch", str(big), "--dry-run")
    assert r.code == 2 and "Traceback" not in r.err and "128 KB" in r.err


# -- 9, 10, 11, 13: what a person (or a script) sees ---------------------------------------------


def test_gen_that_finds_no_offer_says_why_and_json_gets_the_object(cli, fakes):
    r = cli("gen", "x", "--aspect", "9:1", "--out", "out")
    assert r.code == 4 and "table above" not in r.err
    assert "kie/gpt-image-2-text-to-image: aspect 9:1 not offered" in r.err
    data = cli("gen", "x", "--aspect", "9:1", "--out", "out", "--json").json()
    assert data["status"] == "failed" and data["error"].startswith("no offer can deliver")
    assert {q["offer"] for q in data["reasons"]} >= {"kie/gpt-image-2-text-to-image", "openai/gpt-image-2"}
    assert "table above" not in cli("quote", "x", "--aspect", "9:1", "--json").err


def test_gen_json_prints_its_object_on_every_failure(cli, fakes, monkeypatch):
    from imgroute.providers.registry import KEY_ENV

    for env in KEY_ENV.values():
        monkeypatch.delenv(env)
    r = cli("gen", "x", "--out", "out", "--json")
    assert r.code == 3 and r.json()["error"].startswith("no API key") and r.json()["job_id"] is None


def test_batch_json_has_a_line_for_every_row(cli, fakes, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"prompt": "a", "provider": "kie"}) + "\n" + json.dumps({"prompt": "b", "aspect": "9:1"})
    )
    lines = [json.loads(line) for line in cli("batch", str(rows), "--yes", "--json", "--out", "o").out.splitlines()]
    assert sorted((line["row"], line["outcome"]) for line in lines) == [(1, "done"), (2, "unservable")]


@pytest.mark.parametrize(
    "args",
    [["gen", "x", "--n", "abc"], ["quote", "x", "--bogus"], ["bach"], ["batch", "f", "--concurency", "3"]],
)
def test_usage_errors_are_one_line_not_a_panel(cli, args):
    r = cli(*args)
    assert r.code == 2 and r.err.startswith("error: ") and len(r.err.splitlines()) == 1
    assert "╭" not in r.err and "--help" in r.err


def test_ctrl_c_at_the_confirmation_prompt_exits_130(tmp_path, isolated_home):
    import os
    import pty
    import signal
    import subprocess
    import sys
    import time

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "a"}) + "\n")
    env = {**os.environ, "KIE_API_KEY": "k"}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgroute", "batch", str(rows)],
        stdin=slave,
        stderr=subprocess.PIPE,
        env=env,
        # as at a terminal: a test run started in the background inherits Ctrl-C ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 20
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        seen += os.read(proc.stderr.fileno(), 1024)
    # The prompt is written before input() starts reading; a Ctrl-C in between can be swallowed by
    # readline's own signal set-up, so give it a moment to be reading, as a person would.
    time.sleep(0.3)
    for _ in range(20):  # a loaded machine can still lose the first one: press Ctrl-C again, as a person would
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        proc.kill()  # never answered Ctrl-C: fail below rather than hang
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=20) == 130 and "Traceback" not in err and "interrupted" in err
    os.close(master)


# -- 12: piped output, narrow terminals ----------------------------------------------------------


def test_piped_output_is_never_wrapped(cli, fakes):
    job = cli("gen", "x" * 300, "--out", "out", "--quiet", *only(fakes, "kie"))
    assert job.code == 0
    listed = cli("jobs")
    assert all(len(line) < 100_000 for line in listed.out.splitlines())
    row = next(line for line in listed.out.splitlines() if "kie/gpt-image-2-text-to-image" in line)
    assert "succeeded" in row  # one row, one line: nothing folded onto the next
    quote = cli("quote", "y" * 200, "--quality", "high")
    assert any("kie/gpt-image-2-text-to-image" in line and "$0.03" in line for line in quote.out.splitlines())


def test_ids_and_model_names_stay_whole_at_80_columns(cli, fakes, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "80")
    job = cli("gen", "x", "--out", "out", "--json", *only(fakes, "kie")).json()["job_id"]
    assert job in cli("jobs").out
    quote = cli("quote", "x", "--quality", "high").out
    assert "piapi/gpt-image-2-preview" in quote and "piapi/gpt-image-2 " in quote
    providers = cli("providers").out
    assert "piapi/gpt-image-2-preview" in providers


# -- 16: an offer id wherever a provider is accepted ---------------------------------------------


def test_an_offer_id_pins_one_of_a_providers_models(cli, fakes, tmp_path):
    data = cli("quote", "x", "--quality", "low", "--provider", "piapi/gpt-image-2-preview", "--json").json()
    assert (data["choice"]["provider"], data["choice"]["model"]) == ("piapi", "gpt-image-2-preview")
    data = cli("quote", "x", "--quality", "high", "--exclude", "kie/gpt-image-2-text-to-image", "--json").json()
    assert data["choice"]["provider"] != "kie"
    r = cli("quote", "x", "--provider", "piapi/gpt-image-2-prev")
    assert r.code == 2 and "piapi/gpt-image-2-preview" in r.err
    done = cli("gen", "x", "--quality", "low", "--provider", "piapi/gpt-image-2-preview", "--out", "o", "--json")
    assert done.code == 0 and done.json()["model"] == "gpt-image-2-preview"
    assert cli("jobs", "--provider", "piapi/gpt-image-2-preview", "--json").json()[0]["job_id"] == done.json()["job_id"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "x", "quality": "low", "provider": "piapi/gpt-image-2-preview"}) + "\n")
    plan = cli("batch", str(rows), "--provider", "piapi", "--dry-run", "--json").json()
    assert plan["by_offer"][0]["offer"] == "piapi/gpt-image-2-preview"


# -- 17: jobs larger than one request ------------------------------------------------------------


def test_a_job_larger_than_one_request_is_sent_as_several(cli, fakes):
    r = cli("gen", "x", "--quality", "low", "--n", "5", "--out", "out", "--json", *only(fakes, "fal"))
    assert r.code == 0, r.err
    assert len(r.json()["files"]) == 5 and len(fakes["fal"].calls("/openai/gpt-image-2", "POST")) == 2
    shown = cli("jobs", "show", r.json()["job_id"], "--json").json()
    assert [t["images"] for t in shown["tasks"]] == [4, 1]  # journaled per request
    r = cli("gen", "x", "--quality", "low", "--n", "11", "--out", "out", "--json", *only(fakes, "openai"))
    assert r.code == 0, r.err
    assert len(r.json()["files"]) == 11 and fakes["openai"].charges == 2


def test_kies_size_hint_names_the_tier_that_matches_the_pixels(cli):
    quotes = cli("quote", "x", "--size", "3840x2160", "--json").json()["quotes"]
    kie = next(q for q in quotes if q["provider"] == "kie")
    assert "--aspect 16:9 --resolution 4K" in kie["reasons"][0]
    quotes = cli("quote", "x", "--size", "1280x720", "--json").json()["quotes"]
    assert "--resolution 1K" in next(q for q in quotes if q["provider"] == "kie")["reasons"][0]


def test_fal_edits_count_their_reference_images_in_the_actual_cost(cli, fakes, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(1024, 1024, "png", seed=5))
    r = cli("edit", "x", "--image", str(photo), "--quality", "high", "--out", "o", "--json", *only(fakes, "fal"))
    assert r.code == 0, r.err
    assert r.json()["actual_cost_usd"] == r.json()["cost_usd"]  # no false drift in `spend`
    shown = cli("jobs", "show", r.json()["job_id"], "--json").json()
    assert shown["attempts"][0]["model"] == "openai/gpt-image-2/edit"  # recorded as the endpoint it used
    assert cli("spend", "--json").json()["total"][0]["drift_pct"] == 0.0


# -- 14: messages about keys and money; private files; the key only to its provider --------------


def test_the_fallback_summary_shows_the_estimate_of_the_offer_that_delivered(cli, fakes):
    fakes["kie"].credits = 0  # kie ($0.03) refuses; piapi's preview ($0.10) delivers
    r = cli("gen", "x", "--quality", "high", "--out", "o", "--provider", "kie,piapi")
    assert r.code == 0, r.err
    assert "piapi/gpt-image-2-preview (after 1 fallback): estimated $0.10" in r.out


def test_a_refused_key_says_so_and_how_to_set_it(cli, fakes):
    fakes["kie"].key = "another-key-entirely-0000"
    r = cli("gen", "x", "--out", "o", *only(fakes, "kie"))
    assert r.code == 5 and "kie: kie:" not in r.err
    assert "kie refused its key: check KIE_API_KEY, or run: imgroute keys set kie" in r.err


def test_keys_set_warns_when_the_variable_wins(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-shell")
    r = cli("keys", "set", "openai", "--value", "sk-stored")
    assert r.code == 0 and "$OPENAI_API_KEY is set here and wins" in r.err


def test_a_keys_file_others_can_read_is_refused(cli, isolated_home):
    assert cli("keys", "set", "kie", "--value", "kie-secret-123").code == 0
    (isolated_home / "keys.json").chmod(0o644)
    r = cli("keys", "list")
    assert r.code == 3 and "chmod 600" in r.err and "kie-secret-123" not in r.err


def test_the_home_and_the_ledger_are_private_whoever_makes_them(cli, fakes, isolated_home):
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert cli("gen", "x", "--out", "o", *only(fakes, "kie")).code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(isolated_home.stat().st_mode) == 0o700
    for name in ("ledger.sqlite", "ledger.sqlite-wal"):
        path = isolated_home / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_fal_never_sends_the_key_to_another_host(cli, fakes, monkeypatch):
    fal = fakes["fal"]
    stranger = fakes["kie"]  # another host:port that would see the key
    real_route = fal.route

    def route(request):
        reply = real_route(request)
        if request.method == "POST" and reply.status < 300:
            body = json.loads(reply.body)
            body["status_url"] = stranger.url + "/steal/status"
            body["response_url"] = stranger.url + "/steal"
            reply.body = json.dumps(body).encode()
        return reply

    monkeypatch.setattr(fal, "route", route)
    r = cli("gen", "x", "--quality", "low", "--out", "o", "--json", *only(fakes, "fal"))
    assert r.code == 0, r.err  # polled at fal's own documented URLs instead
    assert not [q for q in stranger.requests if fal.key in str(q.headers)]


# -- 3, 5, 7: where resume saves, what a failed download says, batch exit codes ------------------


def test_resume_saves_where_gen_ran_not_where_it_is_run(cli, fakes, tmp_path, monkeypatch):
    from imgroute.providers.kie import KieAdapter
    from tests.test_ledger import interrupt_before_the_first_send

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


def test_a_failed_download_names_the_job_and_the_command_that_recovers_it(cli, fakes):
    fakes["kie"].inject("download", status=404, times=99)
    r = cli("gen", "x", "--out", "o", "--json", *only(fakes, "kie"))
    job = r.json()["job_id"]
    assert r.code == 7 and "saved as delivered" not in r.err
    assert job in r.err and f"imgroute jobs resume {job}" in r.err


def test_a_batch_with_a_failed_row_exits_with_that_rows_code(cli, fakes, tmp_path, monkeypatch):
    from imgroute.batches import run as batch_run

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "x", "provider": "kie"}) + "\n")

    def broken(self, *args):  # an internal error inside a row's steps
        raise RuntimeError("a bug")
        yield

    working = batch_run.BatchRun._row_steps
    monkeypatch.setattr(batch_run.BatchRun, "_row_steps", broken)
    r = cli("batch", str(rows), "--yes", "--json", "--out", "o")
    assert r.code == 1 and json.loads(r.out)["outcome"] == "failed"
    monkeypatch.setattr(batch_run.BatchRun, "_row_steps", working)
    fakes["kie"].outcome = "moderate"
    rows.write_text(json.dumps({"prompt": "y", "provider": "kie"}) + "\n")
    assert cli("batch", str(rows), "--yes", "--json", "--out", "o").code == 6


# -- 4: jobs whose submit's fate is unknown can be settled ---------------------------------------


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


def test_ctrl_c_during_a_synchronous_request_does_not_promise_a_resume(cli, fakes, monkeypatch):
    from imgroute.providers.openai import OpenAIAdapter

    def interrupted(self, http, spec):
        raise KeyboardInterrupt

    monkeypatch.setattr(OpenAIAdapter, "submit", interrupted)
    r = cli("gen", "x", "--quality", "low", "--out", "o", *only(fakes, "openai"))
    assert r.code == 130 and "whether it was charged is unknown" in r.err
    assert "imgroute jobs settle" in r.err and "jobs resume" not in r.err


# -- 1: Ctrl-C during a batch stops every new submit at once; a second stops waiting -------------


def test_ctrl_c_stops_new_submits_at_once_and_a_second_leaves_the_jobs_for_the_next_run(fakes, tmp_path, cli):
    import os
    import signal
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("limits:\n  kie: {concurrency: 4, per_minute: 600}\n")
    fakes["kie"].job_seconds = 6
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps({"prompt": f"owl {i}", "provider": "kie"}) for i in range(30)))
    env = {**os.environ, "IMGROUTE_HOME": str(home), "IMGROUTE_TIME_SCALE": "1"}
    command = [sys.executable, "-m", "imgroute", "batch", str(rows), "--yes", "--json", "--out", str(tmp_path / "o")]
    proc = subprocess.Popen(
        command + ["--concurrency", "4"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 20
    while fakes["kie"].charges < 2 and time.monotonic() < deadline:  # jobs are under way
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)  # within a second, nothing new goes out
    sent = fakes["kie"].charges
    time.sleep(1.0)
    assert fakes["kie"].charges == sent
    proc.send_signal(signal.SIGINT)  # and a second Ctrl-C does not wait for the jobs under way
    started = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - started < 3, err
    assert "interrupted: no new request is sent" in err and "left at their providers" in err
    assert "Traceback" not in err
    fakes["kie"].job_seconds = None
    env_home = {"IMGROUTE_HOME": str(home)}
    done = subprocess.run(command, env={**os.environ, **env_home, "IMGROUTE_TIME_SCALE": "0"}, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert fakes["kie"].charges == 30  # the rerun finished what was left, and paid for nothing twice
    assert len(list((tmp_path / "o").glob("*.png"))) == 30


# -- 2: the same batch (or job) run by two processes at once is paid for once ---------------------


def test_two_runs_of_one_batch_at_once_pay_once(fakes, tmp_path, isolated_home):
    import os
    import subprocess
    import sys
    import time

    isolated_home.mkdir(exist_ok=True)
    (isolated_home / "config.yaml").write_text("limits:\n  kie: {concurrency: 4, per_minute: 6000}\n")
    fakes["kie"].job_seconds = 0.3
    rows = tmp_path / "same.jsonl"
    rows.write_text("\n".join(json.dumps({"prompt": f"heron {i}", "provider": "kie"}) for i in range(10)))
    command = [sys.executable, "-m", "imgroute", "batch", str(rows), "--yes", "--json", "--out", str(tmp_path / "o")]
    env = {**os.environ, "IMGROUTE_TIME_SCALE": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, (err, second.stderr)
    assert fakes["kie"].charges == 10  # not 18
    notes = [json.loads(line)["note"] or "" for line in second.stdout.splitlines()]
    assert len(notes) == 10 and all("another imgroute" in n or "done before" in n for n in notes)
    assert len(list((tmp_path / "o").glob("*.png"))) == 10


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


# -- 20: reruns plan and confirm what is left; the ETA knows the pacing --------------------------


def test_a_rerun_of_a_finished_batch_is_planned_against_what_is_left(cli, fakes, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps({"prompt": f"kite {i}", "provider": "kie"}) for i in range(3)))
    assert cli("batch", str(rows), "--yes", "--out", "o").code == 0
    plan = cli("batch", str(rows), "--dry-run", "--json").json()
    assert plan["rows"] == 0 and plan["estimated_usd"] == 0 and len(plan["done_before"]) == 3
    human = cli("batch", str(rows), "--dry-run")
    assert "3 rows done before, not run again; their images are in" in human.out and "/o" in human.out
    again = cli("batch", str(rows), "--max-total", "0.01")  # no terminal, no --yes: nothing to ask
    assert again.code == 0, again.err
    assert fakes["kie"].charges == 3
    rows.write_text(rows.read_text() + "\n" + json.dumps({"prompt": "kite 3", "provider": "kie"}))
    plan = cli("batch", str(rows), "--dry-run", "--json").json()
    assert plan["rows"] == 1 and plan["estimated_usd"] == 0.03  # only the new row costs money


def test_the_eta_is_never_shorter_than_the_pacing_allows(monkeypatch):
    from types import SimpleNamespace

    from imgroute.output.render import BatchProgress

    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    progress = BatchProgress(30, __import__("decimal").Decimal("0.9"), paced_seconds=300)
    with progress:
        progress.update(SimpleNamespace(outcome="done", result=None), running=1)
        eta = progress._progress.tasks[0].fields["eta"]
        assert eta.startswith("0:04:") or eta.startswith("0:05:")
        progress.update(SimpleNamespace(outcome="not_started", result=None))
        assert "1 not started" in progress._detail(0, 1.0)


# -- the smaller ones ----------------------------------------------------------------------------


def test_pricing_validate_names_the_file_and_reports_duplicates_and_typos(cli, tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("version: 1\nproviders:\n  kie:\n    plans:\n      standard:\n        usd_per_credit: '-1'\n")
    r = cli("pricing", "validate", str(bad))
    assert r.code == 3 and r.err.startswith(f"error: {bad}: providers.kie")
    offer = {"provider": "kie", "model": "gpt-image-2-text-to-image", "prompt_max_chars": 100}
    bad.write_text(json.dumps({"version": 1, "offers": [offer, offer]}))
    r = cli("pricing", "validate", str(bad))
    assert r.code == 3 and "listed twice" in r.err
    bad.write_text(json.dumps({"version": 1, "offers": [{**offer, "model": "gpt-image-2-txt"}]}))
    r = cli("pricing", "validate", str(bad))
    assert r.code == 3 and "no offer kie/gpt-image-2-txt to change" in r.err and "missing field" not in r.err


def test_a_second_run_takes_the_next_free_index(cli, fakes):
    first = cli("gen", "x", "--out", "o", "--json", *only(fakes, "kie")).json()["files"]
    second = cli("gen", "x", "--n", "2", "--out", "o", "--json", *only(fakes, "kie")).json()["files"]
    assert [f.rsplit("/", 1)[1] for f in first + second] == ["x-kie-1.png", "x-kie-2.png", "x-kie-3.png"]


def test_the_summary_does_not_claim_a_choice_that_provider_forced(cli, fakes):
    r = cli("gen", "x", "--quality", "high", "--out", "o", "--provider", "openai")
    assert "cheapest among --provider openai" in r.out and "you have a key for" not in r.out


def test_an_attempt_shows_as_running_while_its_requests_run(cli, fakes):
    fakes["kie"].steps = 10**9
    job = cli("gen", "x", "--timeout", "0.2", "--out", "o", "--json", *only(fakes, "kie")).json()["job_id"]
    assert cli("jobs", "show", job, "--json").json()["attempts"][0]["state"] == "running"


def test_an_empty_stdin_does_not_suggest_another_command(cli):
    r = cli("gen", "--out", "o", stdin="")
    assert r.code == 2 and "imgroute quote" not in r.err
