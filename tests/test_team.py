"""Many machines on one team ledger (PostgreSQL), as separate processes with homes of their own:
one batch file shared between them (each row paid once), a machine killed mid-batch (its rows
finished by the other once its leases run out, nothing sent twice), a cap they race for (never
passed), and `jobs` and `spend` saying which machine ran what.

The long multi-process runs of the team ledger live here, on this process's one cluster
(tests/pg_cluster.py); each test has a database of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.helpers import ledger_rows, wait_for
from tests.helpers import photo as an_image
from tests.pg_cluster import cluster

LEASE = "3"  # seconds: a killed machine's rows are taken over this soon


@pytest.fixture
def team_url(monkeypatch) -> str:
    url = cluster().new_database()
    monkeypatch.setenv("IMGROUTE_LEDGER_URL", url)
    return url


def machine(name: str, home: Path, **env: str) -> dict[str, str]:
    """The environment of one machine: its own home and name, the team's ledger (and the fakes,
    inherited)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("limits:\n  kie: {concurrency: 4, per_minute: 60000}\n"
                                      "  apiframe: {concurrency: 4, per_minute: 60000}\n")  # fmt: skip
    return {**os.environ, "IMGROUTE_HOME": str(home), "IMGROUTE_MACHINE": name, "IMGROUTE_LEASE_SECONDS": LEASE,
            **env}  # fmt: skip


def batch_file(tmp_path: Path, rows: int, provider: str = "kie") -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"heron {i}", "provider": provider}) for i in range(rows)))
    return path


def batch(path: Path, out: Path, env: dict[str, str], **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "imgroute", "batch", str(path), "--yes", "--json", "--out", str(out),
               "--concurrency", "4"]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def outcomes(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_two_machines_share_one_batch_and_pay_each_row_once(fakes, tmp_path, team_url):
    fakes["kie"].job_seconds = 0.2
    rows = batch_file(tmp_path, 24)
    laptop = batch(rows, tmp_path / "laptop-out", machine("laptop", tmp_path / "laptop", IMGROUTE_TIME_SCALE="1"))
    runner = batch(rows, tmp_path / "ci-out", machine("ci-runner", tmp_path / "ci", IMGROUTE_TIME_SCALE="1"))
    ran = {}
    for name, proc in (("laptop", laptop), ("ci-runner", runner)):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines = outcomes(out)
        assert len(lines) == 24 and {line["outcome"] for line in lines} <= {"done", "skipped"}  # every row, once
        ran[name] = sum(line["outcome"] == "done" for line in lines)
    assert fakes["kie"].charges == 24 and ran["laptop"] + ran["ci-runner"] == 24
    assert ran["laptop"] > 0 and ran["ci-runner"] > 0  # the rows were shared, not run by the first alone
    pngs = [*(tmp_path / "laptop-out").glob("*.png"), *(tmp_path / "ci-out").glob("*.png")]
    assert len(pngs) == 24
    by_machine = dict(ledger_rows("SELECT host, COUNT(*) FROM jobs GROUP BY host"))
    assert by_machine == ran

    env = machine("laptop", tmp_path / "laptop")
    listed = subprocess.run([sys.executable, "-m", "imgroute", "jobs", "--json", "--limit", "50"], env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert {job["host"] for job in json.loads(listed.stdout)} == {"laptop", "ci-runner"}
    spent = subprocess.run([sys.executable, "-m", "imgroute", "spend", "--json"], env=env, capture_output=True,
                           text=True)  # fmt: skip
    assert {group["key"]: group["attempts"] for group in json.loads(spent.stdout)["machine"]} == ran


def test_a_killed_machines_rows_are_finished_by_another_once_its_leases_run_out(fakes, tmp_path, team_url):
    # Apiframe's idempotency key makes even a submit cut off mid-flight reconcilable: every row must
    # end delivered exactly once, wherever the kill lands.
    fakes["apiframe"].steps = 6
    rows = batch_file(tmp_path, 12, provider="apiframe")
    doomed = batch(rows, tmp_path / "a-out", machine("doomed", tmp_path / "a", IMGROUTE_TIME_SCALE="0.05"))
    wait_for(lambda: len(ledger_rows("SELECT id FROM jobs WHERE state = 'succeeded'")) >= 2, limit=60)
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    fakes["apiframe"].settle()
    # As if it had run on another machine (no process of this one to find gone): its rows and jobs
    # wait out their leases.
    held = ledger_rows("UPDATE claims SET owner = split_part(owner, '#', 1) WHERE host = 'doomed' RETURNING key")
    assert held

    survivor = batch(rows, tmp_path / "b-out", machine("survivor", tmp_path / "b", IMGROUTE_TIME_SCALE="0.05"))
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    lines = outcomes(out)
    assert len(lines) == 12 and {line["outcome"] for line in lines} <= {"done", "skipped"}
    assert fakes["apiframe"].charges == 12 and len(fakes["apiframe"].jobs) == 12  # each paid once
    files = ledger_rows("SELECT path, host FROM files")
    assert len(files) == 12 and len({path for path, _ in files}) == 12
    taken_over = [path for path, host in files if host == "survivor"]
    assert taken_over and all(path.startswith(str(tmp_path / "b-out")) for path in taken_over)  # saved where it ran
    assert all(Path(path).is_file() for path, _ in files)


def test_machines_racing_for_the_last_dollars_never_pass_the_cap(fakes, tmp_path, team_url):
    from imgroute.store.postgres import PostgresLedger

    ledger = PostgresLedger(team_url, heartbeat=False)
    with ledger.transaction() as tx:
        tx.set_budget("daily", Decimal("0.10"))  # three of Kie's $0.03 images, not four
    fakes["kie"].job_seconds = 0.3
    procs = []
    for name in ("one", "two", "three"):
        path = tmp_path / f"{name}.jsonl"  # three different batches: nothing shared but the money
        path.write_text("\n".join(json.dumps({"prompt": f"{name} {i}", "provider": "kie"}) for i in range(3)))
        procs.append(batch(path, tmp_path / name, machine(name, tmp_path / name, IMGROUTE_TIME_SCALE="1")))
    for proc in procs:
        proc.communicate(timeout=120)
    assert fakes["kie"].charges == 3
    assert ledger.spent_since(ledger.clock()) == Decimal("0.09") <= Decimal("0.10")


def test_a_providers_limits_hold_for_every_machine_on_its_account(fakes, tmp_path, team_url):
    """OpenAI allows this account 2 generations at once: two machines, each allowed 2 by its own
    limits, never have more than 2 at the provider together."""
    fakes["openai"].job_seconds = 0.4
    procs = []
    for name in ("one", "two"):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps({"prompt": f"{name} {i}", "provider": "openai", "quality": "low"})
                                  for i in range(4)))  # fmt: skip
        env = machine(name, tmp_path / name, IMGROUTE_TIME_SCALE="1")
        (tmp_path / name / "config.yaml").write_text("limits:\n  openai: {concurrency: 2, per_minute: 60000}\n")
        procs.append(batch(path, tmp_path / f"{name}-out", env))
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert fakes["openai"].charges == 8
    assert fakes["openai"].peak_in_flight == 2  # not 4


def test_an_edit_whose_inputs_are_on_another_machine_waits_for_it_and_jobs_says_why(cli, fakes, tmp_path, team_url):
    photo = Path(an_image(tmp_path, 1024, 1024))
    fakes["kie"].steps = 10**9  # still running when gen gives up waiting
    started = cli("edit", "at dusk", "--image", str(photo), "--provider", "kie", "--timeout", "0.2", "--json")
    job = started.json()["job_id"]
    ledger_rows("UPDATE jobs SET host = 'laptop' WHERE id = ? RETURNING id", (job,))  # (it began elsewhere)
    photo.unlink()  # (its input is on that machine's disk, not here)
    waited = cli("jobs", "resume", job)
    assert waited.code == 2 and "waits for laptop" in waited.err and str(photo) in waited.err
    (listed,) = cli("jobs", "--json").json()
    assert "waits for laptop" in listed["error"]
    assert fakes["kie"].charges == 1  # nothing sent again
