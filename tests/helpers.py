"""What the test modules share, other than fixtures (those are in conftest.py): running imgroute,
looking at what came of it, and the inputs several modules give it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from imgroute.home import history
from imgroute.providers.registry import KEY_ENV

ROOT = Path(__file__).resolve().parent.parent  # the checkout: README.md, pricing.yaml, scripts/
KEY_VARS = tuple(KEY_ENV.values())  # every provider's key variable (no test sees the shell's own)

KIE = "kie/gpt-image-2-text-to-image"
PREVIEW = "piapi/gpt-image-2-preview"
KIE_ASSUMED = "kie/gpt-image-2-text-to-image delivers high quality by assumption"  # its caveat


# -- running imgroute ------------------------------------------------------------------------------


@dataclass
class Result:
    """A command's end: its exit code, stdout and stderr (what conftest's `cli` returns)."""

    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def gen(cli, *args, stdin=None):
    return cli("gen", "a lighthouse at dusk", "--out", "out", "--json", *args, stdin=stdin)


def only(fakes, provider):
    """Keys for one provider only, so routing cannot go elsewhere."""
    return [arg for other in fakes if other != provider for arg in ("--exclude", other)]


def run_imgroute(
    *args: str, stdin: bytes | str | None = None, env: dict | None = None, text: bool = True
) -> subprocess.CompletedProcess:
    """`python -m imgroute ARGS` in a process of its own, with `env` added to this one's."""
    return subprocess.run(
        [sys.executable, "-m", "imgroute", *args],
        input=stdin,
        capture_output=True,
        text=text,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def killed_at(patch: str, *args: str) -> None:
    """Run imgroute with `patch` (code that calls os._exit(137) where the kill should land)."""
    run = "from imgroute.cli.app import main\nsys.argv = ['imgroute', *sys.argv[1:]]\nmain()\n"
    script = f"import os, sys\n{patch}{run}"
    killed = subprocess.run([sys.executable, "-c", script, *args], env=dict(os.environ), capture_output=True)
    assert killed.returncode == 137, killed.stderr


def interrupt_before_the_first_send(monkeypatch, adapter_class) -> None:
    """Ctrl-C after the budget reservation, before the first request is journaled (once only)."""
    original, calls = adapter_class.upload_inputs, []

    def interrupted_once(self, http, spec):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return original(self, http, spec)

    monkeypatch.setattr(adapter_class, "upload_inputs", interrupted_once)


# -- what came of it -------------------------------------------------------------------------------


def assert_image(path: str, size: tuple[int, int], fmt: str = "PNG"):
    with Image.open(path) as image:
        image.load()  # decodes every byte: a truncated file fails here
        assert image.size == size and image.format == fmt


def nothing_sent(fakes) -> bool:
    return all(f.requests == [] for f in fakes.values())


def states(home: Path, table: str = "tasks") -> list[str]:
    """The state of every task (or job) in the home's ledger, oldest first; none while there is no
    ledger (or no tables yet). Read-only: the process under test may be writing it. (The team
    ledger's, where IMGROUTE_LEDGER_URL points at one.)"""
    url = os.environ.get("IMGROUTE_LEDGER_URL")
    if url:
        return [state for (state,) in ledger_rows(f"SELECT state FROM {table} ORDER BY created")]
    try:
        db = sqlite3.connect(f"file:{home / 'ledger.sqlite'}?mode=ro", uri=True)
        try:
            return [state for (state,) in db.execute(f"SELECT state FROM {table} ORDER BY created")]
        finally:
            db.close()
    except sqlite3.OperationalError:  # not there yet, or not yet migrated
        return []


def ledger_rows(sql: str, args: tuple = ()) -> list[tuple]:
    """Rows of the team ledger IMGROUTE_LEDGER_URL points at (none before its tables exist)."""
    import psycopg

    with psycopg.connect(os.environ["IMGROUTE_LEDGER_URL"], autocommit=True) as db:
        try:
            return db.execute(sql.replace("?", "%s"), args or None).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def ledger_query(home: Path, sql: str, args: tuple = ()) -> list[tuple] | None:
    """Rows of the ledger a test's imgroute writes: the team ledger where IMGROUTE_LEDGER_URL names
    one, else the home's SQLite file (None while there is no such file)."""
    if os.environ.get("IMGROUTE_LEDGER_URL"):
        return ledger_rows(sql, args)
    path = home / "ledger.sqlite"
    if not path.exists():
        return None
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def task_states(home: Path) -> list[str]:
    return states(home, "tasks")


def submitted(home) -> bool:
    """Whether a request's answer is journaled (a kill from now on leaves a job to resume)."""
    return any(state in ("submitted", "running") for state in task_states(home))


def wait_for(condition, limit: float = 20.0) -> None:
    """Until `condition()` holds, looked at every 20 ms; fails after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.02)


# -- inputs ----------------------------------------------------------------------------------------


def photo(tmp_path, width: int, height: int, name: str = "photo.png") -> str:
    path = tmp_path / name
    Image.new("RGB", (width, height), (40, 80, 120)).save(path)
    return str(path)


def write_history(home, **offers):
    home.mkdir(parents=True, exist_ok=True)
    (home / history.FILE).write_text(json.dumps(offers))


def entry(attempts, succeeded, moderated=0, charged="0", times=(30.0,)):
    return {
        "attempts": attempts,
        "succeeded": succeeded,
        "failed": attempts - succeeded,
        "moderated": moderated,
        "charged_usd": charged,
        "times": list(times),
    }


# The README's example: an OpenAI-compatible relay at OpenAI's price minus 10%.
RELAY_YAML = """\
providers:
  myrelay:
    api: openai-images
    name: My relay
    base_url: {base_url}
    key_env: MYRELAY_KEY
    source: https://relay.example.com/pricing
    observed: 2026-11-20
offers:
  - provider: myrelay
    model: gpt-image-2
    like: openai/gpt-image-2
    source: https://relay.example.com/docs
    observed: 2026-11-20
{identity}    price:
      usd_per_million_tokens:
        text_input: "4.50"
        cached_text_input: "1.125"
        image_input: "7.20"
        cached_image_input: "1.80"
        image_output: "27.00"
        text_output: "9.00"
      source: https://relay.example.com/pricing
      observed: 2026-11-20
"""
IDENTITY = "    identity: {kind: relay, source: https://relay.example.com/docs}\n"


def relay_file(tmp_path: Path, base_url="https://relay.example.com/v1", identity=IDENTITY, **swap) -> Path:
    text = RELAY_YAML.format(base_url=base_url, identity=identity)
    for old, new in swap.items():
        text = text.replace(old.replace("__", " "), new)
    path = tmp_path / "relay.yaml"
    path.write_text(text)
    return path
