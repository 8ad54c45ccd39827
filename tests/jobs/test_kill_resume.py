"""SIGKILL `imgroute gen` at random moments, then `imgroute jobs resume --all`.

Each trial's moment is counted from when its process opens the ledger (not from its start, which a
loaded machine makes slower), so the trials land across its job's life: the request journaled, in
flight, answered, the job running at its provider, its images fetched and saved. Once every trial
has run, enough of them must have landed after a request was submitted (charged at the fake, or
its answer in the ledger): a kill before anything was sent proves little.

For every trial: never two paid jobs for one request; every image the ledger lists is on disk with
its checksum; every job the provider accepted with a recorded id ends delivered; and a request whose
answer was lost is reported as unknown (never resent). Synchronous providers (OpenAI, PiAPI) hold
the images only in their answer, so a kill while that answer is in flight loses them: the ledger
says so, and the charge is counted once.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ledger_query, task_states, wait_for

ROUTES = {
    "openai": ["--quality", "low"],
    "piapi": ["--quality", "low"],
    "fal": ["--quality", "low"],
    "kie": [],
    "apiframe": ["--quality", "low"],
}
TRIALS_PER_PROVIDER = 4
SYNC = {"openai", "piapi"}
# Of the 20 trials, how many must land after a submit (19 or 20 do; the one killed 3 ms after its
# ledger opened may land before its request goes): 16 in all, and 3 of each provider's 4.
REACHED_IN_ALL = 16
REACHED_PER_PROVIDER = 3


def trial_plan():
    rng = random.Random(20261124)  # reproducible "random" kill points
    # seconds after gen opens its ledger; its job then runs ~0.3-0.6 s against the fakes
    return [(provider, rng.uniform(0.0, 0.75)) for provider in ROUTES for _ in range(TRIALS_PER_PROVIDER)]


TRIALS = trial_plan()
# On a team ledger (PostgreSQL) one trial of each provider: the same checks, a fifth of the time.
TEAM_TRIALS = TRIALS[::TRIALS_PER_PROVIDER]


@pytest.fixture(scope="module")
def reached():
    """Each trial's (provider, kill moment) -> whether its kill landed after a request was submitted.
    Checked once all the trials have run (not when only some were chosen)."""
    landed: dict[tuple[str, float], bool] = {}
    yield landed
    if len(landed) < len(TRIALS):
        return
    in_all = sum(landed.values())
    assert in_all >= REACHED_IN_ALL, f"only {in_all} of {len(TRIALS)} kills landed after a submit: {landed}"
    for provider in ROUTES:
        count = sum(after for (name, _), after in landed.items() if name == provider)
        assert count >= REACHED_PER_PROVIDER, f"only {count} of {provider}'s kills landed after a submit"


@pytest.mark.parametrize(("provider", "kill_after"), TRIALS)
def test_kill_then_resume(cli, fakes, isolated_home, tmp_path, provider, kill_after, reached):
    kill_and_resume(cli, fakes, isolated_home, tmp_path, provider, kill_after, reached)


@pytest.mark.parametrize(("provider", "kill_after"), TEAM_TRIALS)
def test_kill_then_resume_on_a_team_ledger(cli, fakes, isolated_home, tmp_path, provider, kill_after, monkeypatch):
    from tests.pg_cluster import cluster

    monkeypatch.setenv("IMGROUTE_LEDGER_URL", cluster().new_database())
    kill_and_resume(cli, fakes, isolated_home, tmp_path, provider, kill_after, {})


def kill_and_resume(cli, fakes, isolated_home, tmp_path, provider, kill_after, reached):
    fake = fakes[provider]
    fake.steps = 6
    if provider in SYNC:
        fake.inject("submit", delay=0.3)  # a generation that takes a while, as real ones do
    out = tmp_path / "out"
    others = [arg for name in fakes if name != provider for arg in ("--exclude", name)]
    env = {**os.environ, "IMGROUTE_TIME_SCALE": "0.03"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgroute",
            "gen",
            "a lighthouse",
            *ROUTES[provider],
            *others,
            "--out",
            str(out),
            "--json",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    team = bool(os.environ.get("IMGROUTE_LEDGER_URL"))
    try:  # (a team ledger's moment is counted from the job's first row: it has no file to watch)
        opened = (lambda: bool(ledger_query(isolated_home, "SELECT id FROM jobs"))) if team else (
            lambda: (isolated_home / "ledger.sqlite").exists())  # fmt: skip
        wait_for(lambda: opened() or proc.poll() is not None)
        time.sleep(kill_after)  # the random moment itself
    finally:
        proc.send_signal(signal.SIGKILL)  # (also when the wait fails: no process is left behind)
        proc.wait()
    fake.settle()  # let a delayed fake answer finish (and bill) before counting
    reached[provider, kill_after] = fake.charges > 0 or any(s != "submitting" for s in task_states(isolated_home))

    before = _state(isolated_home)
    resumed = cli("jobs", "resume", "--all", "--json")
    assert "Traceback" not in resumed.err

    jobs = ledger_query(isolated_home, "SELECT id, state FROM jobs")
    if jobs is None:  # killed before the ledger was even opened: nothing was sent
        assert fake.requests == []
        return
    assert len(jobs) <= 1
    submits = [r for r in fake.requests if r.method == "POST"]
    # Never two paid jobs for one request (Apiframe may replay a submit under the same key).
    assert fake.charges <= 1
    if provider == "apiframe":
        assert len({r.header("Idempotency-Key") for r in submits}) <= 1
    else:
        assert len(submits) <= 1
    # Every file the ledger lists is on disk, complete, with its checksum.
    for path, sha in ledger_query(isolated_home, "SELECT path, sha256 FROM files") or []:
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha
    assert not list(out.glob(".imgroute-*.part")) if out.exists() else True
    if not jobs:
        assert fake.charges == 0
        return
    state = jobs[0][1]
    if before in ("submitted", "running"):  # the provider's id was recorded: resume must deliver
        assert state == "succeeded", (before, resumed.err)
    files = len(ledger_query(isolated_home, "SELECT id FROM files") or [])
    if state == "succeeded":
        assert files == 1 and fake.charges == 1
    else:
        # Only a lost answer may stay open, and only when the provider gives no way to find the job.
        assert state == "unknown", (state, resumed.err)
        assert provider != "apiframe"
        tasks = [row[0] for row in ledger_query(isolated_home, "SELECT state FROM tasks") or []]
        assert "unknown" in tasks


def _state(home: Path) -> str:
    try:
        rows = ledger_query(home, "SELECT state FROM jobs")
    except sqlite3.OperationalError:  # killed before its first migration committed: nothing sent
        return "no tables"
    if rows is None:
        return "no ledger"
    return rows[0][0] if rows else "no job"
