"""Every table readable on a terminal of 80, 100 or 132 columns: costs, ids and dates whole on one
line, nothing cut (`…`) or folded, no line wider than the terminal; piped output unchanged."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from decimal import Decimal

import pytest
from rich.cells import cell_len
from rich.console import Console

from imgroute.cli.app import main
from imgroute.models import OfferRef
from imgroute.output.text.batches import print_batch_summary
from imgroute.output.text.console import PIPE_WIDTH
from imgroute.providers.registry import BASE_URL_ENV, KEY_ENV
from imgroute.store.records import NewJob
from imgroute.store.sqlite import SQLiteLedger
from tests.helpers import KIE, PREVIEW, entry, only, relay_file, write_history

WIDTHS = [80, 100, 132]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")

# The bundled offers and their cost for one high 1K image (pricing.yaml).
HIGH = [
    ("kie/gpt-image-2-text-to-image", "$0.03"),
    ("piapi/gpt-image-2-preview", "$0.10"),
    ("replicate/openai/gpt-image-2", "$0.128"),
    ("openai/gpt-image-2", "$0.2108"),
    ("piapi/gpt-image-2", "$0.2108"),
    ("fal/openai/gpt-image-2", "$0.22"),
    ("apiframe/gpt-image-2", "$0.23"),
    ("openai/gpt-image-2-batch", "$0.1054"),
]
OFFERS = [offer for offer, _ in HIGH]


@pytest.fixture
def terminal(monkeypatch):
    """`terminal(80)`: stdout and stderr render as a terminal that wide (what rich reads: a
    terminal forced by TTY_COMPATIBLE, its width from COLUMNS), through render's own consoles."""

    def at(width: int) -> None:
        monkeypatch.setenv("TTY_COMPATIBLE", "1")
        monkeypatch.setenv("COLUMNS", str(width))
        monkeypatch.setenv("NO_COLOR", "1")

    return at


def plain(text: str) -> list[str]:
    return ANSI.sub("", text).replace("\r", "").splitlines()


def whole(thing: str) -> re.Pattern:
    """`thing` not inside a longer id or amount ($0.03 is not $0.0315, openai/gpt-image-2 is not
    fal/openai/gpt-image-2)."""
    return re.compile(rf"(?<![\w/.$-]){re.escape(thing)}(?![\w/-]|\.\d)")


def readable(text: str, width: int, *together: tuple[str, ...], long_ok=lambda line: False) -> list[str]:
    """No line over `width` (but those `long_ok` allows), nothing cut, and each tuple of `together`
    (an id, its cost, its date) whole on one line."""
    lines = plain(text)
    assert "…" not in text
    too_wide = [line for line in lines if cell_len(line) > width and not long_ok(line)]
    assert too_wide == [], f"wider than {width}:\n" + "\n".join(too_wide)
    for things in together:
        patterns = [whole(thing) for thing in things]
        assert any(all(p.search(line) for p in patterns) for line in lines), f"{things} not on one line at {width}"
    return lines


def winner_line(lines: list[str]) -> str:
    """The winner's row (a table's `│ * │ id`, a block's `*  id`); only one."""
    (line,) = [line for line in lines if re.match(r"^[│ ]*\*[│ ]+\S+/", line)]
    return line


# -- quote ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "layout"),
    [(80, "blocks"), (100, "blocks"), (132, "not shown at this width: per image")],
)
def test_quote_at_each_width(cli, terminal, width, layout):
    terminal(width)
    r = cli("quote", "a lighthouse", "--quality", "high")
    assert r.code == 0, r.err
    lines = readable(r.out, width, *HIGH)
    assert "kie/gpt-image-2-text-to-image" in winner_line(lines) and "$0.03" in winner_line(lines)
    shown = "\n".join(lines)
    assert ("┃" in shown) == (layout != "blocks") and (layout == "blocks" or layout in lines)
    assert any("results within 24h: needs" in line for line in lines)  # why not: at word boundaries
    assert "* cheapest: kie/gpt-image-2-text-to-image at $0.03" in lines


@pytest.mark.parametrize(
    ("width", "record"),
    [
        (80, ("95% of 21",)),  # blocks: every column, history under each offer
        (100, ("95% of 21",)),
        (132, ("not shown at this width: plan, per image, delivered, p50 / p95",)),  # a table, with `expected`
    ],
)
def test_quote_with_twenty_jobs_of_history(cli, terminal, isolated_home, width, record):
    write_history(isolated_home, **{KIE: entry(21, 20, times=[30.0, 45.0, 120.0]), PREVIEW: entry(25, 24)})
    terminal(width)
    r = cli("quote", "a lighthouse", "--quality", "high")
    assert r.code == 0, r.err
    lines = readable(r.out, width, *HIGH, (KIE, "$0.0315"), (PREVIEW, "$0.1042"), record)
    assert KIE in winner_line(lines)


@pytest.mark.parametrize("width", [80, 132])
def test_a_relay_with_a_long_id(cli, terminal, tmp_path, width):
    longer = {
        "myrelay": "enterprise_relay_eu_west",
        "model: gpt-image-2\n": "model: gpt-image-2-hd-2026-04-15-preview\n",
    }
    path = relay_file(tmp_path, **longer)
    relay = "enterprise_relay_eu_west/gpt-image-2-hd-2026-04-15-preview"  # 57 characters
    terminal(width)
    r = cli("quote", "a lighthouse", "--quality", "high", "--pricing", str(path))
    assert r.code == 0, r.err
    readable(r.out, width, *HIGH, (relay, "$0.1897"))


def test_piped_the_quote_is_the_whole_table_on_one_line_a_row(cli):
    r = cli("quote", "a lighthouse", "--quality", "high")
    header = next(line for line in r.out.splitlines() if "offer" in line)
    for column in ("plan", "model is", "delivers", "cost", "per image", "why not"):
        assert column in header
    row = next(line for line in r.out.splitlines() if "openai/gpt-image-2-batch" in line)
    assert "results within 24h: needs --deadline 24h or more" in row and len(row) > 132
    assert "not shown at this width" not in r.out


def test_a_real_terminal_of_80_columns(tmp_path):
    """The real path: `imgroute quote` on a pseudo-terminal of 80 columns (no seam)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TTY_COMPATIBLE", "NO_COLOR")}
    env.update(IMGROUTE_HOME=str(tmp_path / "home"), TERM="xterm")
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    command = [sys.executable, "-m", "imgroute", "quote", "a lighthouse", "--quality", "high"]
    process = subprocess.Popen(command, stdin=child, stdout=child, stderr=child, env=env, cwd=tmp_path)
    os.close(child)
    output = b""
    with contextlib.suppress(OSError):  # EIO: the other end closed
        while chunk := os.read(parent, 65536):
            output += chunk
    os.close(parent)
    assert process.wait() == 0
    text = output.decode()
    lines = readable(text, 80, *HIGH)
    assert KIE in winner_line(lines)


# -- providers, pricing -----------------------------------------------------------------------


def a_long_url(line: str) -> bool:
    """A source URL wider than the terminal stands alone on its line, whole (the terminal wraps it)."""
    return re.fullmatch(r"\s*https://\S+", line) is not None


@pytest.mark.parametrize("width", WIDTHS)
def test_providers_and_pricing(cli, terminal, width):
    terminal(width)
    providers = cli("providers")
    readable(providers.out, width, *((offer,) for offer in OFFERS), ("$0.128",), ("32,000",))
    pricing = cli("pricing")
    lines = readable(
        pricing.out,
        width,
        ("kie", "plan standard (default)", "2026-08-17"),
        ("$0.00382692/credit",),
        ("https://developers.openai.com/api/docs/pricing",),
        ("https://github.com/openai/openai-python/blob/main/src/openai/types/image_generate_params.py",),
        long_ok=a_long_url,
    )
    assert all(re.search(r"\d{4}-\d\d-\d\d \(\d+d\)", line) for line in lines if "2026-08-17" in line)


# -- the ledger: jobs, jobs show, spend, spend --savings --------------------------------------

GENS = [  # prompt, options: four jobs at four providers, and one that fails
    ("a lighthouse at dusk over a stormy sea", ["--provider", "kie"]),
    ("a fox [bold]in the snow[/bold]", ["--provider", "openai", "--quality", "low"]),
    ("a heron", ["--provider", "replicate"]),
    ("a kite", ["--provider", "piapi", "--quality", "high"]),
    ("a failing fox", ["--provider", "kie"]),
]


@pytest.fixture(scope="module")
def ledger_home(tmp_path_factory, fake_servers):
    """A home whose ledger holds GENS, made once against the fakes."""
    home = tmp_path_factory.mktemp("narrow") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGROUTE_HOME", str(home))
        patch.setenv("IMGROUTE_TIME_SCALE", "0")
        patch.chdir(home.parent)
        for name, server in fake_servers.items():
            server.reset()
            patch.setenv(KEY_ENV[name], server.key)
            patch.setenv(BASE_URL_ENV[name], server.url)
        for prompt, options in GENS:
            fake_servers["kie"].outcome = "fail" if "failing" in prompt else "succeed"
            quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
            with quiet[0], quiet[1], contextlib.suppress(SystemExit):
                main(["gen", prompt, "--out", "out", *options])
        fake_servers["kie"].reset()
    return home


@pytest.fixture
def jobs_home(ledger_home, isolated_home):
    shutil.copytree(ledger_home, isolated_home)
    return isolated_home


@pytest.mark.parametrize("width", WIDTHS)
def test_jobs_and_jobs_show(cli, terminal, jobs_home, width):
    jobs = cli("jobs", "--json").json()
    terminal(width)
    r = cli("jobs")
    lines = readable(r.out, width, *((job["job_id"], job["created"]) for job in jobs))
    ids = {job["prompt"]: job["job_id"] for job in jobs}
    for prompt, cost in (("a lighthouse at dusk over a stormy sea", "$0.03"), ("a heron", "$0.047")):
        assert any(ids[prompt] in line and whole(cost).search(line) for line in lines)
    failed = jobs[0]
    show = cli("jobs", "show", failed["job_id"])
    readable(show.out, width, (failed["job_id"], failed["created"]), ("kie/gpt-image-2-text-to-image", "$0.03"))


@pytest.mark.parametrize("width", WIDTHS)
def test_spend_and_savings(cli, terminal, jobs_home, width):
    days = cli("spend", "--json").json()["day"]
    terminal(width)
    spend = cli("spend")
    readable(spend.out, width, (days[0]["key"], "$0.1829"), ("replicate", "$0.047"), ("all", "$0.1829", "$0.1829"))
    savings = cli("spend", "--savings")
    readable(
        savings.out,
        width,
        ("openai/gpt-image-2", "$0.32"),  # the default offer
        ("kie/gpt-image-2-text-to-image", "$0.12"),  # the cheapest single offer
        (days[0]["key"][:7], "$0.18"),
    )


def test_a_drift_that_rounds_to_nothing_has_no_sign(cli, isolated_home):
    isolated_home.mkdir()
    journal = SQLiteLedger(isolated_home / "ledger.sqlite")
    job = NewJob(id="j1", prompt="p", request={"quality": "high"}, route={}, estimate="0.03", out_dir=".",
                 name_template="{slug}", max_cost=None)  # fmt: skip
    offer = OfferRef(provider="kie", model="gpt-image-2-text-to-image", plan="standard")
    with journal.transaction() as tx:
        tx.new_job(job)
        attempt = tx.reserve_attempt("j1", 1, offer, Decimal("0.03"), [])
        tx.attempt_state(attempt, "running")
        tx.attempt_state(attempt, "succeeded", actual="0.029999", source="usage")  # -0.003%
    journal.close()
    r = cli("spend")
    assert "-0.0%" not in r.out and "│  0.0% │" in r.out


# -- advise, batch ----------------------------------------------------------------------------

MIX = "- {quality: high, count: 300}\n- {quality: high, size: 1536x1024, count: 10}\n"


@pytest.mark.parametrize("width", WIDTHS)
def test_advise(cli, terminal, tmp_path, width):
    (tmp_path / "month.yaml").write_text(MIX)
    terminal(width)
    r = cli("advise", "--mix", str(tmp_path / "month.yaml"))
    assert r.code == 0, r.err
    readable(
        r.out,
        width,
        ("imgroute routing", "$10.00"),
        ("replicate/openai/gpt-image-2", "payg", "$39.68"),
        ("openai/gpt-image-2", "payg", "$64.95"),
        ("apiframe/gpt-image-2", "growth", "$199.00"),
        ("kie/gpt-image-2-text-to-image", "standard"),
        ("openai/gpt-image-2-batch", "payg"),
    )


ROWS = [
    {"prompt": "a fox"},
    {"prompt": "a cat", "quality": "high"},
    {"prompt": "a wide one", "size": "1536x1024", "quality": "high"},
    {"prompt": "too wide", "aspect": "5:1"},
]


@pytest.mark.parametrize("width", WIDTHS)
def test_the_batch_plan(cli, terminal, tmp_path, monkeypatch, width):
    for provider in ("openai", "kie"):
        monkeypatch.setenv(KEY_ENV[provider], "sk-test")
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(row) for row in ROWS))
    terminal(width)
    together = [("openai/gpt-image-2", "$0.1647"), ("kie/gpt-image-2-text-to-image", "$0.06"), ("$0.2247",)]
    dry = cli("batch", str(tmp_path / "rows.jsonl"), "--dry-run")
    readable(dry.out, width, *together)
    asked = cli("batch", str(tmp_path / "rows.jsonl"))  # the plan on stderr; then no terminal to confirm
    assert asked.code == 2
    readable(asked.err, width, *together)


def test_piped_stderr_is_not_wrapped(cli, tmp_path):
    (tmp_path / "rows.jsonl").write_text(json.dumps({"prompt": "too wide", "aspect": "5:1"}))
    r = cli("batch", str(tmp_path / "rows.jsonl"))  # no key: no row can be served
    line = next(line for line in r.err.splitlines() if line.startswith("line 1: no offer can serve it ("))
    assert line.endswith(")") and len(line) > 100


# -- the lines around the tables --------------------------------------------------------------


def test_a_skipped_offer_is_priced_like_everything_else(cli, fakes, monkeypatch):
    for provider in KEY_ENV:
        if provider != "fal":
            monkeypatch.delenv(KEY_ENV[provider], raising=False)
    r = cli("gen", "a lighthouse", "--quality", "high", "--out", "out")
    assert r.code == 0, r.err
    assert "note: skipped openai/gpt-image-2 ($0.2108): " in r.out
    assert "note: skipped kie/gpt-image-2-text-to-image ($0.03): " in r.out


@pytest.mark.parametrize(
    ("counts", "said"),
    [
        ({"skipped": 3}, "batch: 3 skipped; spent $0.00 this run (estimated $0.09 for the whole file) in 1.0s"),
        (
            {"skipped": 1, "done": 2},
            "batch: 2 done, 1 skipped; spent $0.06 this run ($0.06 left to do; estimated $0.09 for the whole file)"
            " in 1.0s",
        ),
    ],
)
def test_the_batch_summary_says_what_was_left_only_when_something_was(counts, said):
    counts = {"done": 0, "skipped": 0, "failed": 0, "unservable": 0, "not_started": 0} | counts
    out = io.StringIO()
    console = Console(file=out, width=PIPE_WIDTH, highlight=False)
    spent = Decimal("0.03") * counts["done"]
    print_batch_summary(console, counts, spent, Decimal("0.06"), Decimal("0.09"), 1.0)
    assert out.getvalue() == said + "\n"


def test_cells_are_printed_as_written_in_every_layout(cli, terminal, jobs_home):
    for width in (80, 100_000):
        terminal(width)
        assert "a fox [bold]in the snow[/bold]" in "\n".join(plain(cli("jobs").out))


# -- piped output, and names kept whole ------------------------------------------------------------


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
