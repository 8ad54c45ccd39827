"""`imgroute batch`: plan, refusals, concurrent runs within limits, JSON Lines, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from imgroute.batches.rows import parse_rows
from tests.helpers import nothing_sent, photo, wait_for

JSONL = "\n".join(
    [
        json.dumps({"prompt": "a lighthouse", "quality": "high"}),
        json.dumps({"prompt": "a harbour", "quality": "low", "aspect": "16:9", "resolution": "2K", "n": 2}),
        json.dumps({"prompt": "a red fox", "quality": "medium", "aspect": "3:2", "provider": "apiframe"}),
    ]
)


def write(tmp_path, text, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- input ----------------------------------------------------------------------------------------


def test_rows_from_jsonl_and_csv_with_stable_ids():
    rows, bad = parse_rows(JSONL, "x.jsonl")
    assert bad == [] and [r.line for r in rows] == [1, 2, 3]
    assert rows[1].request.n == 2 and str(rows[1].request.target) == "16:9 at 2K"
    assert rows[2].providers == frozenset({"apiframe"})
    again, _ = parse_rows(JSONL, "x.jsonl")
    assert [r.key for r in rows] == [r.key for r in again]  # same content, same ids
    csv_rows, bad = parse_rows("prompt,quality,n\na lighthouse,high,1\na lighthouse,high,1\n", "x.csv")
    assert bad == [] and csv_rows[0].key != csv_rows[1].key  # identical rows are both kept
    assert csv_rows[0].key.endswith("-0") and csv_rows[1].key.endswith("-1")


def test_bad_rows_are_reported_with_their_line_numbers():
    text = "\n".join(
        [
            json.dumps({"prompt": "fine"}),
            "{not json",
            json.dumps({"prompt": "x", "qualty": "high"}),
            json.dumps({"prompt": "x", "quality": "ultra"}),
            json.dumps({"prompt": "x", "provider": "midjourney"}),
            json.dumps({"quality": "low"}),
            json.dumps(["a list"]),
        ]
    )
    rows, bad = parse_rows(text, "rows.jsonl")
    assert len(rows) == 1
    assert [(b.line, b.problem.split(" (")[0]) for b in bad] == [
        (2, "not valid JSON"),
        (3, "unknown field 'qualty'"),
        (4, "--quality 'ultra' is not a tier"),
        (5, "unknown provider 'midjourney' in provider"),
        (6, "the prompt is empty"),
        (7, "a row must be a JSON object"),
    ]
    _, bad = parse_rows("title\nx\n", "x.csv")
    assert bad[0].problem.startswith("a CSV batch needs a header row with a `prompt` column")


def test_strict_refuses_the_whole_file(cli, fakes, tmp_path):
    path = write(tmp_path, JSONL + "\n{broken")
    r = cli("batch", path, "--strict", "--yes")
    assert r.code == 2 and "1 bad row in" in r.err and f"{path}:4: not valid JSON" in r.err
    assert all(f.requests == [] for f in fakes.values())


# -- plan -----------------------------------------------------------------------------------------


def test_dry_run_plan_adds_up_to_each_rows_quote(cli, fakes, tmp_path):
    path = write(tmp_path, JSONL + "\n" + json.dumps({"prompt": "too wide", "aspect": "5:1"}) + "\n{broken")
    r = cli("batch", path, "--dry-run", "--json")
    assert r.code == 0, r.err
    plan = r.json()
    quotes = [
        cli("quote", "a lighthouse", "--quality", "high", "--json").json()["choice"]["cost_usd"],
        cli(
            "quote", "a harbour", "--quality", "low", "--aspect", "16:9", "--resolution", "2K", "--n", "2", "--json"
        ).json()["choice"]["cost_usd"],
        cli("quote", "a red fox", "--quality", "medium", "--aspect", "3:2", "--provider", "apiframe", "--json").json()[
            "choice"
        ]["cost_usd"],
    ]
    assert plan["rows"] == 3 and plan["images"] == 4
    assert Decimal(str(plan["estimated_usd"])) == sum(Decimal(str(q)) for q in quotes)
    assert sum(o["rows"] for o in plan["by_offer"]) == 3
    assert plan["unservable"][0]["line"] == 4 and plan["bad_rows"][0]["line"] == 5
    assert all(f.requests == [] for f in fakes.values())
    human = cli("batch", path, "--dry-run")
    assert "Batch plan: 3 rows, 4 images" in human.out


def test_rows_no_offer_can_serve_are_listed_once_per_reason(cli, fakes, tmp_path):
    rows = "\n".join(json.dumps({"prompt": f"wide {i}", "aspect": "5:1"}) for i in range(12))
    human = cli("batch", write(tmp_path, rows), "--dry-run")
    assert human.code == 0
    assert "Batch plan: 0 rows, 0 images, about $0.00" in human.out
    unservable = [line for line in human.out.splitlines() if "no offer can serve" in line]
    assert len(unservable) == 1 and unservable[0].startswith("lines 1, 2, 3, 4, 5 and 7 more (12 rows)")


def test_rows_whose_provider_has_no_key_say_which_key_to_set(cli, fakes, tmp_path, monkeypatch):
    monkeypatch.delenv("KIE_API_KEY")
    rows = "\n".join(json.dumps({"prompt": f"owl {i}", "provider": "kie"}) for i in range(3))
    r = cli("batch", write(tmp_path, rows), "--yes")
    assert r.code == 4 and "no row of the batch can be served" in r.err
    unservable = [line for line in r.err.splitlines() if "no offer can serve" in line]
    assert len(unservable) == 1
    assert "(kie/gpt-image-2-text-to-image: no key: set KIE_API_KEY, or run: imgroute keys set kie;" in unservable[0]
    assert fakes["kie"].charges == 0


def test_plan_says_how_long_the_submit_rates_make_it(cli, fakes, tmp_path, isolated_home):
    rows = "\n".join(json.dumps({"prompt": f"kite {i}", "provider": "kie", "n": 2}) for i in range(30))
    path = write(tmp_path, rows)
    pacing = cli("batch", path, "--dry-run", "--json").json()["pacing"]
    assert pacing == [{"provider": "kie", "submits": 60, "concurrency": 50, "per_minute": 120.0, "min_minutes": 0.5}]
    isolated_home.mkdir(exist_ok=True)
    (isolated_home / "config.yaml").write_text("limits:\n  kie: {per_minute: 20}\n")
    human = cli("batch", path, "--dry-run")
    assert "kie: 60 submits at 20/min take at least 3 min (raise limits.kie.per_minute in config.yaml" in human.out


def test_refusals_before_anything_is_sent(cli, fakes, tmp_path):
    path = write(tmp_path, JSONL)
    r = cli("batch", path, "--yes", "--max-total", "0.05")
    assert r.code == 8 and "over --max-total $0.05" in r.err
    assert cli("budget", "set", "--daily", "0.10").code == 0
    r = cli("batch", path, "--yes")
    assert r.code == 8 and "the daily budget has $0.10 left" in r.err
    cli("budget", "set", "--daily", "none")
    r = cli("batch", path)  # no terminal to ask
    assert r.code == 2 and "pass --yes" in r.err
    assert all(f.requests == [] for f in fakes.values())


# -- run ------------------------------------------------------------------------------------------


def test_run_streams_one_json_line_per_row_and_a_rerun_pays_nothing(cli, fakes, tmp_path):
    path = write(tmp_path, JSONL)
    r = cli("batch", path, "--yes", "--json", "--out", "out")
    assert r.code == 0, r.err
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert sorted(line["row"] for line in lines) == [1, 2, 3]
    assert all(line["outcome"] == "done" and line["status"] == "succeeded" for line in lines)
    files = [f for line in lines for f in line["files"]]
    assert len(files) == 4 and all(Path(f).is_file() for f in files)
    billed = {name: f.charges for name, f in fakes.items()}
    again = cli("batch", path, "--yes", "--json", "--out", "out")
    assert again.code == 0
    assert all(json.loads(line)["outcome"] == "skipped" for line in again.out.splitlines())
    assert {name: f.charges for name, f in fakes.items()} == billed


def test_rows_with_any_id_are_found_again_by_a_rerun(cli, fakes, tmp_path):
    ids = ["café-🦊", "a*b?[c]", "%_like", "Z"]
    rows = "\n".join(json.dumps({"prompt": f"lynx {i}", "provider": "kie", "id": name}) for i, name in enumerate(ids))
    path = write(tmp_path, rows)
    assert cli("batch", path, "--yes", "--json", "--out", "out").code == 0
    again = cli("batch", path, "--yes", "--json", "--out", "out")
    assert [json.loads(line)["outcome"] for line in again.out.splitlines()] == ["skipped"] * len(ids)
    assert fakes["kie"].charges == len(ids)


def test_failed_rows_are_retried_only_when_worth_it(cli, fakes, tmp_path):
    rows = [
        json.dumps({"prompt": "moderated", "provider": "kie"}),
        json.dumps({"prompt": "unlucky", "quality": "low", "provider": "fal"}),
    ]
    path = write(tmp_path, "\n".join(rows))
    fakes["kie"].outcome = "moderate"
    fakes["fal"].inject("submit", status=503, times=99)
    r = cli("batch", path, "--yes", "--json", "--out", "out")
    assert r.code != 0
    fakes["kie"].outcome = "succeed"
    fakes["fal"].reset()
    again = [json.loads(line) for line in cli("batch", path, "--yes", "--json", "--out", "out").out.splitlines()]
    by_row = {line["row"]: line for line in again}
    assert by_row[1]["outcome"] == "failed" and "not retried" in by_row[1]["note"]
    assert by_row[2]["outcome"] == "done"


def test_faults_mid_batch_are_retried_in_place_and_an_expired_result_is_fetched_by_the_rerun(cli, fakes, tmp_path):
    rows = "\n".join(
        json.dumps({"prompt": f"otter {i}", "quality": "low", "provider": ["kie", "apiframe"][i % 2]}) for i in range(8)
    )
    path = write(tmp_path, rows)
    fakes["kie"].inject("poll", status=429, retry_after=0.2, times=3)  # a retry's sleep inside a step
    fakes["apiframe"].inject("submit", status=503, times=2)  # replayed under its idempotency key
    fakes["apiframe"].inject("download", status=404)  # one result URL has expired
    r = cli("batch", path, "--yes", "--json", "--out", "out")
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert r.code == 7, r.err
    assert sorted(line["outcome"] for line in lines) == ["done"] * 7 + ["failed"]
    assert fakes["kie"].charges == 4 and fakes["apiframe"].charges == 4  # no fault made anything paid twice
    again = [json.loads(line) for line in cli("batch", path, "--yes", "--json", "--out", "out").out.splitlines()]
    assert sorted(line["outcome"] for line in again) == ["done"] + ["skipped"] * 7
    assert fakes["apiframe"].charges == 4  # the rerun downloaded the result again; it did not resubmit
    assert len(list((tmp_path / "out").glob("*.png"))) == 8


def test_progress_on_a_terminal_and_the_summary(cli, fakes, tmp_path, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws the progress line as on a terminal
    monkeypatch.setenv("COLUMNS", "120")
    rows = "\n".join(json.dumps({"prompt": f"heron {i}", "provider": "kie"}) for i in range(5))
    r = cli("batch", write(tmp_path, rows), "--yes", "--out", "out")
    assert r.code == 0, r.err
    assert "5/5" in r.err and "5 done, 0 failed, 0 running" in r.err and "of ~$0.15" in r.err and "/min" in r.err
    assert "batch: 5 done; spent $0.15 this run (estimated $0.15) in" in r.out
    again = cli("batch", write(tmp_path, rows), "--yes", "--out", "out")
    assert "batch: 5 skipped; spent $0.00 this run (estimated $0.15 for the whole file)" in again.out


def test_submits_are_spaced_to_the_providers_rate(cli, fakes, tmp_path, isolated_home):
    isolated_home.mkdir(exist_ok=True)
    (isolated_home / "config.yaml").write_text("limits:\n  kie: {concurrency: 20, per_minute: 600}\n")
    path = write(tmp_path, "\n".join(json.dumps({"prompt": f"fox {i}", "provider": "kie"}) for i in range(12)))
    r = cli("batch", path, "--yes", "--json", "--out", "out", "--concurrency", "12")
    assert r.code == 0, r.err
    arrivals = sorted(q.at for q in fakes["kie"].calls("/api/v1/jobs/createTask"))
    assert len(arrivals) == 12
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 0.08  # 600 per minute: one every 0.1 s (less the fake's own arrival jitter)
    assert fakes["kie"].charges == 12


def test_polls_per_job_stay_low(cli, fakes, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGROUTE_TIME_SCALE", "1")
    fakes["kie"].job_seconds = 0.2  # jobs take a fixed time, however often they are polled
    path = write(tmp_path, "\n".join(json.dumps({"prompt": f"fox {i}", "provider": "kie"}) for i in range(40)))
    isolated = Path(os.environ["IMGROUTE_HOME"])
    isolated.mkdir(exist_ok=True)
    (isolated / "config.yaml").write_text("limits:\n  kie: {concurrency: 20, per_minute: 60000}\n")
    r = cli("batch", path, "--yes", "--json", "--out", "out", "--concurrency", "20")
    assert r.code == 0, r.err
    polls = len(fakes["kie"].calls("/api/v1/jobs/recordInfo"))
    assert polls / 40 <= 3


def test_synchronous_generations_run_as_many_at_once_as_the_slots_allow(cli, fakes, tmp_path):
    # OpenAI holds each request open while it generates: a few workers must not cap how many run.
    fakes["openai"].job_seconds = 1.0  # long enough for every submit to be out before the first answer
    rows = 12
    path = write(tmp_path, "\n".join(json.dumps({"prompt": f"fox {i}", "provider": "openai"}) for i in range(rows)))
    isolated = Path(os.environ["IMGROUTE_HOME"])
    isolated.mkdir(exist_ok=True)
    (isolated / "config.yaml").write_text("limits:\n  openai: {concurrency: 12, per_minute: 60000}\n")
    r = cli("batch", path, "--yes", "--json", "--out", "out", "--concurrency", "12")
    assert r.code == 0, r.err
    assert fakes["openai"].charges == rows
    assert fakes["openai"].peak_in_flight == rows  # all twelve at the provider at once, not four


def test_sigkill_mid_batch_then_rerun_delivers_every_row_once(fakes, tmp_path, isolated_home, cli):
    # Apiframe's idempotency key makes even a submit cut off mid-flight reconcilable, so every row
    # must end delivered exactly once wherever the kill lands.
    fakes["apiframe"].steps = 6
    rows = 16
    path = write(
        tmp_path,
        "\n".join(json.dumps({"prompt": f"fox {i}", "provider": "apiframe", "quality": "low"}) for i in range(rows)),
    )
    env = {**os.environ, "IMGROUTE_TIME_SCALE": "0.05"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgroute",
            "batch",
            path,
            "--yes",
            "--json",
            "--out",
            str(tmp_path / "out"),
            "--concurrency",
            "4",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _finished_jobs(isolated_home / "ledger.sqlite") >= 2, limit=30)  # then kill it mid-batch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    fakes["apiframe"].settle()
    r = cli("batch", path, "--yes", "--json", "--out", str(tmp_path / "out"))
    assert r.code == 0, r.err
    outcomes = [json.loads(line)["outcome"] for line in r.out.splitlines()]
    assert len(outcomes) == rows and set(outcomes) <= {"done", "skipped"}
    assert "skipped" in outcomes  # some rows had finished before the kill
    assert fakes["apiframe"].charges == rows and len(fakes["apiframe"].jobs) == rows  # each paid once
    assert len(list((tmp_path / "out").glob("*.png"))) == rows


def test_ctrl_c_stops_starting_rows_finishes_running_ones_and_says_how_to_resume(fakes, tmp_path, isolated_home, cli):
    import sqlite3

    fakes["kie"].job_seconds = 0.3
    isolated_home.mkdir(exist_ok=True)
    (isolated_home / "config.yaml").write_text("limits:\n  kie: {concurrency: 3, per_minute: 6000}\n")
    rows = 24
    path = write(tmp_path, "\n".join(json.dumps({"prompt": f"owl {i}", "provider": "kie"}) for i in range(rows)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgroute", "batch", path, "--yes", "--json", "--out", str(tmp_path / "out")]
        + ["--concurrency", "3"],
        env={**os.environ, "IMGROUTE_TIME_SCALE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: _finished_jobs(isolated_home / "ledger.sqlite") >= 2, limit=30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"imgroute batch {path} --out {tmp_path / 'out'} --concurrency 3 --json --yes" in err
    assert "Traceback" not in err
    outcomes = [json.loads(line)["outcome"] for line in out.splitlines()]
    assert set(outcomes) <= {"done", "not_started"}  # every row that had started finished
    ledger = sqlite3.connect(isolated_home / "ledger.sqlite")
    states = [state for (state,) in ledger.execute("SELECT state FROM jobs")]
    # Nothing left in flight or unknown: a job is done, or was stopped while waiting for its turn
    # at the provider (journaled, nothing sent, its budget reservation released).
    assert set(states) <= {"succeeded", "cancelled"}
    assert outcomes.count("done") == states.count("succeeded") < rows
    assert fakes["kie"].charges == states.count("succeeded")
    assert not ledger.execute("SELECT 1 FROM attempts WHERE state NOT IN ('succeeded', 'abandoned')").fetchall()

    fakes["kie"].job_seconds = None  # the rerun runs at test speed
    r = cli("batch", path, "--yes", "--json", "--out", str(tmp_path / "out"))
    assert r.code == 0, r.err
    assert fakes["kie"].charges == rows  # the rerun paid only for the rest
    assert len(list((tmp_path / "out").glob("*.png"))) == rows


def _finished_jobs(ledger: Path) -> int:
    """Jobs the ledger records as succeeded (none while it has no tables yet)."""
    import sqlite3

    if not ledger.exists():
        return 0
    db = sqlite3.connect(ledger)
    try:
        return db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        db.close()


def test_rows_in_memory_stay_bounded_when_saving_falls_behind(tmp_path):
    """Rows that only wait to be saved let more rows start (so slots stay busy), but only one per
    slot: with the workers far behind, a long file must not all be started and held in memory."""
    import threading

    from imgroute.batches.run import BatchRun

    class BehindScheduler:  # every started row at once reaches "only saving"; rows end slowly
        def __init__(self):
            self.live: list = []
            self.most = 0
            self.lock = threading.Lock()
            threading.Thread(target=self._finish_slowly, daemon=True).start()

        def start(self, steps, on_done):
            with self.lock:
                self.live.append(on_done)
                self.most = max(self.most, len(self.live))

        def unhurried(self) -> int:
            return len(self.live)

        def _finish_slowly(self):
            while True:
                time.sleep(0.001)
                with self.lock:
                    on_done = self.live.pop(0) if self.live else None
                if on_done is not None:
                    on_done(None, RuntimeError("stub"))

        def stop(self):
            pass

    rows = parse_rows("\n".join(json.dumps({"prompt": f"p{i}"}) for i in range(600)), "rows.jsonl")[0]
    reported = []
    run = BatchRun(
        None, routes={}, base_constraints=None, out_dir=tmp_path, timeout=60, concurrency=10,
        batch_label="rows.jsonl", on_result=reported.append, reroute=None,
    )  # fmt: skip
    scheduler = BehindScheduler()
    run.pool_for(scheduler).run(rows, lambda row, sent: None, BatchRun._ended, reported.append)
    assert len(reported) == 600
    assert scheduler.most <= 10 + 8 + 10  # the rows ahead of slots, plus one saving per slot


def test_the_progress_line_fits_an_80_column_terminal(cli, fakes, tmp_path, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "80")
    rows = "\n".join(json.dumps({"prompt": f"egret {i}", "provider": "kie"}) for i in range(5))
    r = cli("batch", write(tmp_path, rows), "--yes", "--out", "out")
    assert r.code == 0, r.err
    assert "5/5" in r.err and "5 done 0 failed 0 running $0.15/~$0.15" in r.err and "…" not in r.err


# -- rows, lines and exit codes --------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [["a", "list"], {"an": "object"}, 7, True, None])
def test_a_jsonl_prompt_that_is_not_text_is_a_bad_row(cli, fakes, tmp_path, prompt):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": prompt, "provider": "kie"}) + "\n")
    r = cli("batch", str(rows), "--yes", "--strict")
    assert r.code == 2 and "rows.jsonl:1:" in r.err and nothing_sent(fakes)


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


def test_batch_json_has_a_line_for_every_row(cli, fakes, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"prompt": "a", "provider": "kie"}) + "\n" + json.dumps({"prompt": "b", "aspect": "9:1"})
    )
    lines = [json.loads(line) for line in cli("batch", str(rows), "--yes", "--json", "--out", "o").out.splitlines()]
    assert sorted((line["row"], line["outcome"]) for line in lines) == [(1, "done"), (2, "unservable")]


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


# -- reruns, and two runs at once ------------------------------------------------------------------


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


def test_two_runs_of_one_batch_at_once_pay_once(fakes, tmp_path, isolated_home, ledger_backend):
    """On SQLite the first run claims every row and the second skips them; on a team ledger the two
    share the rows (each claimed as it starts). Either way each row is paid once."""
    import os
    import subprocess
    import sys

    isolated_home.mkdir(exist_ok=True)
    (isolated_home / "config.yaml").write_text("limits:\n  kie: {concurrency: 4, per_minute: 6000}\n")
    fakes["kie"].job_seconds = 0.3
    rows = tmp_path / "same.jsonl"
    rows.write_text("\n".join(json.dumps({"prompt": f"heron {i}", "provider": "kie"}) for i in range(10)))
    command = [sys.executable, "-m", "imgroute", "batch", str(rows), "--yes", "--json", "--out", str(tmp_path / "o")]
    env = {**os.environ, "IMGROUTE_TIME_SCALE": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: fakes["kie"].charges >= 1)  # the first run has claimed every row and is under way
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, (err, second.stderr)
    assert fakes["kie"].charges == 10  # not 18
    notes = [json.loads(line)["note"] or "" for line in second.stdout.splitlines()]
    assert len(notes) == 10
    if ledger_backend == "sqlite":
        assert all("another imgroute" in n or "done before" in n for n in notes)
    assert len(list((tmp_path / "o").glob("*.png"))) == 10


def test_a_stop_that_comes_while_an_intent_waits_for_the_ledger_sends_nothing(cli, fakes, tmp_path, monkeypatch):
    """A job decides to send, and hands its intent to the ledger's committer; the user stops the
    batch before the committer gets to it. The intent is not journaled and nothing is sent: the
    row is not started, and a rerun sends it once."""
    from imgroute.batches.pool import JobPool
    from imgroute.store.sql_ledger import GroupedCommits

    pools: list[JobPool] = []
    init = JobPool.__init__

    def kept(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        pools.append(self)

    transact_later = GroupedCommits.transact_later

    def stopped_meanwhile(self, work, done, lock_order=None) -> None:
        if "reserve_and_intent" in work.__qualname__ and not pools[0].stopping.is_set():
            pools[0].request_stop()  # (as a closed stdout or a signal does)
            wait_for(pools[0].stopping.is_set)  # the stop acted on: the batch sends nothing more
        transact_later(self, work, done, lock_order)

    monkeypatch.setattr(JobPool, "__init__", kept)
    monkeypatch.setattr(GroupedCommits, "transact_later", stopped_meanwhile)
    path = write(tmp_path, json.dumps({"prompt": "owl", "provider": "kie"}))
    r = cli("batch", path, "--yes", "--json", "--out", str(tmp_path / "out"))
    assert r.code != 0 and "Traceback" not in r.err
    assert [json.loads(line)["outcome"] for line in r.out.splitlines()] == ["not_started"]
    assert fakes["kie"].charges == 0
    monkeypatch.setattr(GroupedCommits, "transact_later", transact_later)
    again = cli("batch", path, "--yes", "--json", "--out", str(tmp_path / "out"))
    assert again.code == 0, again.err
    assert fakes["kie"].charges == 1
