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

from tests.helpers import task_states, wait_for

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
    try:
        wait_for(lambda: (isolated_home / "ledger.sqlite").exists() or proc.poll() is not None)
        time.sleep(kill_after)  # the random moment itself
    finally:
        proc.send_signal(signal.SIGKILL)  # (also when the wait fails: no process is left behind)
        proc.wait()
    fake.settle()  # let a delayed fake answer finish (and bill) before counting
    reached[provider, kill_after] = fake.charges > 0 or any(s != "submitting" for s in task_states(isolated_home))

    before = _state(isolated_home)
    resumed = cli("jobs", "resume", "--all", "--json")
    assert "Traceback" not in resumed.err

    ledger_path = isolated_home / "ledger.sqlite"
    if not ledger_path.exists():  # killed before the ledger was even opened: nothing was sent
        assert fake.requests == []
        return
    db = sqlite3.connect(ledger_path)
    jobs = db.execute("SELECT id, state FROM jobs").fetchall()
    assert len(jobs) <= 1
    submits = [r for r in fake.requests if r.method == "POST"]
    # Never two paid jobs for one request (Apiframe may replay a submit under the same key).
    assert fake.charges <= 1
    if provider == "apiframe":
        assert len({r.header("Idempotency-Key") for r in submits}) <= 1
    else:
        assert len(submits) <= 1
    # Every file the ledger lists is on disk, complete, with its checksum.
    for path, sha in db.execute("SELECT path, sha256 FROM files"):
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha
    assert not list(out.glob(".imgroute-*.part")) if out.exists() else True
    if not jobs:
        assert fake.charges == 0
        return
    state = jobs[0][1]
    if before in ("submitted", "running"):  # the provider's id was recorded: resume must deliver
        assert state == "succeeded", (before, resumed.err)
    files = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    if state == "succeeded":
        assert files == 1 and fake.charges == 1
    else:
        # Only a lost answer may stay open, and only when the provider gives no way to find the job.
        assert state == "unknown", (state, resumed.err)
        assert provider != "apiframe"
        tasks = [row[0] for row in db.execute("SELECT state FROM tasks")]
        assert "unknown" in tasks


def _state(home: Path) -> str:
    path = home / "ledger.sqlite"
    if not path.exists():
        return "no ledger"
    try:
        row = sqlite3.connect(path).execute("SELECT state FROM jobs").fetchone()
    except sqlite3.OperationalError:  # killed before its first migration committed: nothing sent
        return "no tables"
    return row[0] if row else "no job"
