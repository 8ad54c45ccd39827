"""`imgroute schema NAME`: the JSON Schema (draft 2020-12) of every `--json` output, and real
output of every one validated against the schema the command prints.

The outputs come from one run of the real commands against the provider fakes, in one home with
one ledger (`outputs`, made once for the module): quotes (plain, an edit, none can serve), gens
(done, no offer, failed at the provider, provider trouble, detached), dry runs, a batch (a bad row,
an unservable one, a failed one) and its rerun (skipped rows), the ledger's listings, money, the
table, prepaid plans, advice and the keys. Every object imgroute owns is closed, so a key a builder
emits without its schema fails here; the key sets scripts rely on (design.md section 5) are pinned
in `test_the_documented_keys`.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import io
import json
import sys

import pytest
from jsonschema import Draft202012Validator

from imgroute.cli.app import main
from imgroute.providers.registry import BASE_URL_ENV, KEY_ENV
from tests.helpers import KEY_VARS, Result, only

NAMES = (
    "quote", "gen", "gen-dry-run", "batch-plan", "batch-row", "jobs", "job", "resume", "spend", "savings", "budget",
    "pricing", "providers", "advise", "plans", "keys", "keys-check", "config", "ledger", "ledger-copy",
)  # fmt: skip

MIX = '- {quality: high, size: 1536x1024, count: 2000}\n- {quality: high, aspect: "16:9", resolution: 2K, count: 10}\n'


def run(*args: str) -> Result:
    """The real CLI in-process, as conftest's `cli` (which a module-scoped fixture cannot use)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    stdin, sys.stdin = sys.stdin, io.StringIO("")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin = stdin
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def outputs(fake_servers, tmp_path_factory):
    """name -> [(what was run, its output)], from one home and one ledger."""
    from PIL import Image

    fakes = fake_servers
    found: dict[str, list[tuple[str, object]]] = {name: [] for name in NAMES}

    def record(name: str, code: int, *args: str, lines: bool = False):
        r = run(*args)
        assert r.code == code, f"{args}: {r.code} {r.err}"
        data = [json.loads(line) for line in r.out.splitlines()] if lines else r.json()
        for item in data if lines else [data]:
            found[name].append((" ".join(args), item))
        return data

    where = tmp_path_factory.mktemp("schemas")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGROUTE_HOME", str(where / "home"))
        for var in KEY_VARS:
            mp.delenv(var, raising=False)
        for name, server in fakes.items():
            server.reset()
            mp.setenv(KEY_ENV[name], server.key)
            mp.setenv(BASE_URL_ENV[name], server.url)
        mp.setenv("IMGROUTE_TIME_SCALE", "0")
        mp.chdir(where)
        Image.new("RGB", (1536, 1024), (40, 90, 160)).save(where / "photo.png")
        kie = only(fakes, "kie")
        try:
            record("quote", 0, "quote", "a lighthouse", "--quality", "high", "--json")
            record("quote", 0, "quote", "make it dusk", "--image", "photo.png", "--json")
            record("quote", 4, "quote", "a lighthouse", "--size", "1000x1000", "--json")

            done = record("gen", 0, "gen", "a lighthouse", "--quality", "low", "--out", "out", "--json", *kie)
            record("gen", 4, "gen", "a lighthouse", "--size", "1000x1000", "--json")
            fakes["kie"].outcome = "fail"
            failed = record("gen", 6, "gen", "a storm", "--out", "out", "--json", *kie)
            fakes["kie"].outcome = "succeed"
            fakes["kie"].credits = 0
            record("gen", 0, "gen", "a gull", "--quality", "high", "--out", "out", "--json")  # moves on
            fakes["kie"].reset()
            detached = record(
                "gen", 0, "gen", "a fox", "--deadline", "24h", "--detach", "--out", "out", "--json",
                *only(fakes, "openai"),
            )  # fmt: skip
            record("gen-dry-run", 0, "gen", "a lighthouse", "--dry-run", "--json", *kie)
            record("gen-dry-run", 0, "gen", "make it dusk", "--image", "photo.png", "--provider", "openai",
                   "--dry-run", "--json")  # fmt: skip
            record("resume", 0, "jobs", "resume", detached["job_id"], "--json")
            record("resume", 0, "jobs", "resume", "--all", "--json")

            rows = where / "rows.jsonl"
            rows.write_text(
                "\n".join(
                    [
                        json.dumps({"prompt": "a kite", "provider": "kie"}),
                        json.dumps({"prompt": "too wide", "aspect": "9:1"}),
                        "{broken",
                        json.dumps({"prompt": "a moth", "provider": "apiframe", "quality": "low"}),
                    ]
                )
            )
            record("batch-plan", 0, "batch", str(rows), "--dry-run", "--json")
            fakes["apiframe"].outcome = "moderate"
            record("batch-row", 6, "batch", str(rows), "--yes", "--json", "--out", "o", lines=True)
            fakes["apiframe"].reset()
            record("batch-row", 6, "batch", str(rows), "--yes", "--json", "--out", "o", lines=True)  # a rerun
            record("batch-plan", 0, "batch", str(rows), "--dry-run", "--json")

            record("jobs", 0, "jobs", "--json")
            record("job", 0, "jobs", "show", done["job_id"], "--json")
            record("job", 0, "jobs", "show", failed["job_id"], "--json")
            assert run("budget", "set", "--daily", "5").code == 0
            record("budget", 0, "budget", "show", "--json")
            record("spend", 0, "spend", "--json")
            record("savings", 0, "spend", "--savings", "--json")
            record("pricing", 0, "pricing", "--json")
            record("providers", 0, "providers", "--json")
            assert run("plans", "set", "kie", "--credits", "12000", "--expires", "2099-12-31").code == 0
            record("plans", 0, "plans", "show", "--json")
            (where / "month.yaml").write_text(MIX)
            record("advise", 0, "advise", "--mix", "month.yaml", "--json")
            record("advise", 0, "advise", "--json")  # the ledger's month: rows are job ids
            record("config", 0, "config", "--json")
            record("config", 0, "config", "--plan", "apiframe=growth", "--official-only", "--json")
            record("keys", 0, "keys", "list", "--json")
            record("keys-check", 0, "keys", "check", "--json")
            mp.setenv(KEY_ENV["kie"], "kie-wrong-key-000000000000")
            record("keys-check", 3, "keys", "check", "kie", "--json")
            record("ledger", 0, "ledger", "show", "--json")
            from tests.pg_cluster import cluster

            team = cluster().new_database()
            record("ledger-copy", 0, "ledger", "copy", "--to", team, "--json")
            record("ledger-copy", 0, "ledger", "copy", "--to", team, "--json")  # a rerun: nothing twice
            mp.setenv("IMGROUTE_LEDGER_URL", team)
            record("ledger", 0, "ledger", "show", "--json")
        finally:
            for server in fakes.values():
                server.reset()
    return found


@pytest.fixture(scope="module")
def schemas():
    from imgroute.output.catalog import document

    return {name: document(name) for name in NAMES}


def validator(cli, name: str) -> Draft202012Validator:
    r = cli("schema", name)
    assert r.code == 0, r.err
    return Draft202012Validator(r.json())


# -- the command ----------------------------------------------------------------------------------


def test_schema_lists_the_names_each_with_what_prints_it(cli):
    r = cli("schema")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert [line.split()[0] for line in lines] == list(NAMES)
    assert all("(imgroute " in line and "--json)" in line for line in lines)


def test_an_unknown_name_is_a_usage_error_that_lists_the_names(cli):
    r = cli("schema", "qoute")
    assert r.code == 2 and r.out == ""
    assert len(r.err.splitlines()) == 1 and "no schema named 'qoute'" in r.err and "did you mean quote?" in r.err
    assert ", ".join(NAMES) in r.err


@pytest.mark.parametrize("name", NAMES)
def test_each_schema_is_a_valid_draft_2020_12_document(cli, name):
    data = cli("schema", name).json()
    Draft202012Validator.check_schema(data)
    assert data["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert data["$id"] == f"https://imgroute.dev/schema/{name}.json"
    assert data["title"].startswith("imgroute ") and data["title"].endswith("--json") and data["description"]


# -- real output --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_real_output_matches_the_printed_schema(cli, outputs, name):
    check = validator(cli, name)
    assert outputs[name], f"no output of {name} was made"
    for ran, data in outputs[name]:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in check.iter_errors(data)]
        assert not errors, f"{ran}: {errors[:3]}"


# Objects whose keys are not imgroute's: the dry run's request as the provider's API takes it,
# an offer's unsourced fields, a job's plans by provider, and a setting's value (a profile's hints).
OPEN = {
    "gen-dry-run": ("request/headers", "request/body"),
    "providers": ("*/unsourced",),
    "job": ("request/constraints/plans",),
    "config": ("settings/*/value",),
}


def objects(data, path=()):
    """The path (keys and list indices) to every object in a JSON value."""
    if isinstance(data, dict):
        yield path
        for key, value in data.items():
            yield from objects(value, (*path, key))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from objects(item, (*path, index))


@pytest.mark.parametrize("name", NAMES)
def test_a_key_the_schema_does_not_know_fails(outputs, schemas, name):
    """Every object of every real output is closed: a builder that adds a key without its schema
    fails validation (but in the few objects whose keys are not imgroute's)."""
    check = Draft202012Validator(schemas[name])
    tried = set()
    for _, data in outputs[name]:
        for path in objects(data):
            where = "/".join("*" if isinstance(step, int) else step for step in path)
            if where in tried or any(fnmatch.fnmatch(where, f"{prefix}*") for prefix in OPEN.get(name, ())):
                continue
            tried.add(where)
            changed = copy.deepcopy(data)
            target = changed
            for step in path:
                target = target[step]
            target["surprise"] = 1
            assert not check.is_valid(changed), f"{name}: a new key at {where or 'the top'} passes"
    assert tried


def test_the_outputs_say_what_they_should(outputs):
    (plain, edit, none) = (data for _, data in outputs["quote"])
    assert plain["choice"] == plain["quotes"][0] and plain["choice"]["eligible"]
    assert plain["caveats"] and set(plain["caveats"]) <= set(plain["choice"]["notes"])
    eligible = [q["eligible"] for q in plain["quotes"]]
    assert eligible == sorted(eligible, reverse=True)  # eligible first
    assert all(isinstance(q["cost_usd"], float) for q in plain["quotes"])
    (image,) = edit["request"]["images"]
    assert image.endswith("photo.png") and edit["request"]["aspect_from_image"] == "1536x1024"
    assert none["choice"] is None and all(q["reasons"] for q in none["quotes"])

    done, no_offer, failed, trouble, detached = (data for _, data in outputs["gen"])
    assert (done["status"], done["error"], len(done["files"])) == ("succeeded", None, 1)
    assert no_offer["job_id"] is None and no_offer["reasons"] and no_offer["elapsed_s"] is None
    assert failed["status"] == "failed" and failed["attempts"][0]["state"].startswith("failed")
    assert [a["state"] for a in trouble["attempts"]] == ["trouble", "succeeded"] and trouble["error"] is None
    assert detached["status"] == "submitted" and detached["files"] == []
    plain_dry, edit_dry = (data for _, data in outputs["gen-dry-run"])
    assert plain_dry["dry_run"] is True and "[redacted]" in json.dumps(plain_dry["request"]["headers"])
    assert edit_dry["provider"] == "openai" and edit_dry["request"]["files"]
    resumed, nothing_left = (data for _, data in outputs["resume"])
    assert resumed[0]["job_id"] == detached["job_id"] and resumed[0]["status"] == "succeeded"
    assert nothing_left == []

    first, again = (data for _, data in outputs["batch-plan"])
    assert (first["rows"], first["unservable"][0]["line"], first["bad_rows"][0]["line"]) == (2, 2, 3)
    assert {p["provider"] for p in first["pacing"]} == {"kie", "apiframe"}
    assert again["rows"] == 0 and again["done_before"][0]["line"] == 1 and again["not_retried"][0]["line"] == 4
    lines = [data for _, data in outputs["batch-row"]]
    first_run, rerun = ({line["row"]: line for line in lines[:4]}, {line["row"]: line for line in lines[4:]})
    assert [lines[0]["outcome"], lines[1]["outcome"]] == ["bad_row", "unservable"]  # before the rows that run
    assert {row: line["outcome"] for row, line in first_run.items()} == {
        1: "done", 2: "unservable", 3: "bad_row", 4: "failed"
    }  # fmt: skip
    assert {row: line["outcome"] for row, line in rerun.items()} == {
        1: "skipped", 2: "unservable", 3: "bad_row", 4: "failed"
    }  # fmt: skip
    assert rerun[1]["files"] == first_run[1]["files"] and rerun[1]["job_id"] == first_run[1]["job_id"]
    assert first_run[4]["status"] == "failed" and first_run[4]["error"]
    assert "not retried" in rerun[4]["note"] and "job_id" not in rerun[4]  # a row that got no job here

    (shown, failed_shown) = (data for _, data in outputs["job"])
    assert shown["tasks"][0]["provider"] == "kie" and shown["files"][0]["sha256"] == done["images"][0]["sha256"]
    assert shown["request"]["constraints"]["exclude"] and failed_shown["state"] == "failed"
    (budget,) = (data for _, data in outputs["budget"])
    assert [(b["period"], b["cap_usd"]) for b in budget] == [("daily", 5.0), ("monthly", None)]
    (plans,) = (data for _, data in outputs["plans"])
    assert plans[0]["provider"] == "kie" and plans[0]["bought"] == 12000
    mix, history = (data for _, data in outputs["advise"])
    assert mix["break_even"] and mix["prepaid"] == plans
    assert all(isinstance(row, str) for m in history["by_offer"] for row in m["unservable_rows"])
    checked, refused = (data for _, data in outputs["keys-check"])
    kie = next(row for row in checked if row["provider"] == "kie")
    assert kie["tracked"]["left"] == 12000 and kie["plan"] == "offered"
    assert [(row["provider"], row["state"]) for row in refused] == [("kie", "refused")]


# -- the contract -------------------------------------------------------------------------------

QUOTE_KEYS = {
    "provider", "model", "plan", "eligible", "cost_usd", "per_image_usd", "output", "requests", "reasons", "notes",
    "breakdown", "offer", "identity", "quality_stated", "history", "expected_per_image_usd", "marginal_cost_usd",
}  # fmt: skip
REQUEST_KEYS = {
    "prompt", "quality", "size", "aspect", "resolution", "n", "images", "mask", "format", "aspect_from_image",
}  # fmt: skip
JOB_KEYS = {
    "job_id", "status", "provider", "model", "plan", "cost_usd", "actual_cost_usd", "actual_cost_source", "files",
    "images", "attempts", "skipped_without_key", "elapsed_s", "error", "caveats",
}  # fmt: skip
IMAGE_KEYS = {"path", "format", "width", "height", "bytes", "sha256", "verified"}
ROW_KEYS = {"row", "id", "outcome", "note"}

DOCUMENTED = {  # (name, path to an object: `*` an array's items, `0`/`1` a oneOf's choice) -> its keys
    ("quote", ""): {"request", "choice", "quotes", "caveats"},
    ("quote", "request"): REQUEST_KEYS,
    ("quote", "choice"): QUOTE_KEYS,
    ("quote", "quotes/*"): QUOTE_KEYS,
    ("quote", "quotes/*/output"): {"width", "height", "quality", "exact_size", "resolution", "aspect", "seen_before"},
    ("gen", ""): JOB_KEYS | {"reasons"},
    ("gen", "images/*"): IMAGE_KEYS,
    ("gen", "attempts/*"): {"provider", "model", "plan", "cost_usd", "state", "error", "images"},
    ("gen-dry-run", ""): {"dry_run", "provider", "model", "requests", "request", "cost_usd", "caveats"},
    ("gen-dry-run", "request"): {"method", "url", "headers", "body", "files"},
    ("resume", "*"): JOB_KEYS,
    ("batch-plan", ""): {
        "rows",
        "images",
        "estimated_usd",
        "by_offer",
        "pacing",
        "unservable",
        "bad_rows",
        "done_before",
        "not_retried",
        "caveats",
    },  # fmt: skip
    ("batch-plan", "by_offer/*"): {"offer", "rows", "images", "submits", "estimated_usd"},
    ("batch-plan", "pacing/*"): {"provider", "submits", "concurrency", "per_minute", "min_minutes"},
    ("batch-plan", "unservable/*"): {"line", "id", "prompt", "reason"},
    ("batch-plan", "done_before/*"): {"line", "id", "out_dir"},
    ("batch-plan", "not_retried/*"): {"line", "id", "error"},
    ("batch-row", "0"): JOB_KEYS | ROW_KEYS,
    ("batch-row", "1"): {"status"} | ROW_KEYS,
    ("jobs", "*"): {
        "job_id",
        "created",
        "state",
        "offer",
        "prompt",
        "images",
        "estimate_usd",
        "actual_usd",
        "error",
        "host",
    },
    ("job", ""): {
        "job_id",
        "created",
        "state",
        "prompt",
        "request",
        "estimate_usd",
        "actual_usd",
        "actual_source",
        "error",
        "out_dir",
        "quotes",
        "attempts",
        "tasks",
        "files",
        "history",
    },  # fmt: skip
    ("job", "request"): REQUEST_KEYS | {"constraints"},
    ("job", "tasks/*"): {"attempt", "provider", "client_ref", "provider_job_id", "state", "images", "detail", "sent"},
    ("job", "files/*"): IMAGE_KEYS,
    ("spend", ""): {"day", "month", "provider", "offer", "quality", "machine", "total"},
    ("spend", "total/*"): {
        "key",
        "attempts",
        "images",
        "estimated_usd",
        "actual_usd",
        "in_flight_usd",
        "drift_pct",
        "stated_usd",
        "stated_drift_pct",
        "flagged",
    },
    ("savings", "savings/*"): {
        "period",
        "jobs",
        "spent_usd",
        "default_offer",
        "at_default_usd",
        "saved_vs_default_usd",
        "cheapest_offer",
        "at_cheapest_usd",
        "saved_vs_cheapest_usd",
    },  # fmt: skip
    ("budget", "*"): {"period", "cap_usd", "spent_usd", "left_usd", "resets"},
    ("providers", "*"): {
        "provider",
        "model",
        "qualities",
        "quality_selectable",
        "sizes",
        "images_per_request",
        "prompt_max_chars",
        "edit",
        "price",
        "identity",
        "quality_stated",
        "background",
        "moderation",
        "unsourced",
    },  # fmt: skip
    ("pricing", ""): {"max_age_days", "rows", "notes"},
    ("pricing", "rows/*"): {"provider", "what", "value", "source", "observed", "age_days", "stale", "file"},
    ("advise", ""): {
        "source",
        "images_per_month",
        "routed_usd",
        "floor_usd",
        "unservable_rows",
        "cheapest_single",
        "by_offer",
        "break_even",
        "prepaid",
    },  # fmt: skip
    ("advise", "cheapest_single"): {"offer", "plan", "usd", "saving_usd", "saving_pct"},
    ("advise", "by_offer/*"): {
        "offer",
        "plan",
        "usd",
        "saving_usd",
        "saving_pct",
        "unservable_rows",
        "credits",
        "unused_credits",
        "excluded",
    },  # fmt: skip
    ("advise", "break_even/*"): {
        "offer",
        "plan",
        "monthly_usd",
        "images_per_month",
        "this_month_images",
        "past_it",
        "unused_credits",
        "why",
    },  # fmt: skip
    ("plans", "*"): {"provider", "bought", "left", "expires", "per_day", "expiring"},
    ("keys", "*"): {"provider", "env", "source"},
    ("keys-check", "*"): {
        "provider",
        "env",
        "source",
        "state",
        "detail",
        "route",
        "reached",
        "balance",
        "unit",
        "tracked",
        "plan",
    },  # fmt: skip
}


def schema_at(schema: dict, path: str) -> dict:
    for step in filter(None, path.split("/")):
        if step == "*":
            schema = schema["items"]
        elif step.isdigit():
            schema = schema["oneOf"][int(step)]
        else:
            schema = schema["properties"][step]
    return schema


@pytest.mark.parametrize(("name", "path"), list(DOCUMENTED))
def test_the_documented_keys(schemas, name, path):
    """The keys scripts rely on, written out here: a schema changed with its builder still has to
    change this list (its README examples and design.md section 5 with it)."""
    assert set(schema_at(schemas[name], path)["properties"]) == DOCUMENTED[name, path]


def test_the_values_written_out_are_the_ones_imgroute_uses():
    """States are written out beside their schema, each with its meaning (a new state changes the
    contract: it is described there), as are values whose modules `quote` does not import."""
    from imgroute.batches.run import Outcome
    from imgroute.jobs import budget
    from imgroute.models import AttemptState, JobState, TaskState
    from imgroute.output import batches, jobs, money, quotes
    from imgroute.pricing import table as pricing
    from imgroute.store import periods

    assert list(jobs.JOB_STATES) == list(JobState)
    assert list(jobs.ATTEMPT_STATES) == list(AttemptState)
    assert list(jobs.TASK_STATES) == list(TaskState)
    assert tuple(Outcome) == batches.OUTCOMES
    with_job = batches.ROW_WITH_JOB["properties"]["outcome"]["enum"]
    assert set(with_job) | set(batches.WITHOUT_JOB) == {*Outcome, batches.BAD_ROW}
    assert quotes.IDENTITY_KINDS == pricing.IDENTITIES
    assert tuple(budget.GROUPINGS) == money.GROUPINGS and money.PERIODS == periods.PERIODS


def test_every_name_of_the_report_module_is_still_importable():
    import imgroute.output.report as report

    for name in (
        "quote_json", "history_json", "identity_json", "route_json", "route_text", "_quotes_text", "request_json",
        "job_result", "job_failure", "JOB_KEYS", "skipped_json", "dry_run", "abbreviate", "offer_json",
        "price_summary", "pricing_rows", "when", "job_listing", "job_details", "spend", "budget", "batch_plan",
        "batch_row", "bad_row", "advice", "savings", "balances",
    ):  # fmt: skip
        assert callable(getattr(report, name)) or name == "JOB_KEYS", name
    assert set(report.JOB_KEYS) == JOB_KEYS
