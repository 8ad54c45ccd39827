"""Every `--json` shape, exactly: the keys scripts rely on (design.md section 5) and no others."""

from __future__ import annotations

import json

from tests.test_gen_e2e import only

QUOTE_KEYS = {
    "provider", "model", "plan", "eligible", "cost_usd", "per_image_usd", "output", "requests", "reasons", "notes",
    "breakdown", "offer", "identity", "quality_stated", "history", "expected_per_image_usd", "marginal_cost_usd",
}  # fmt: skip
OUTPUT_KEYS = {"width", "height", "quality", "exact_size", "resolution", "aspect", "seen_before"}
REQUEST_KEYS = {
    "prompt", "quality", "size", "aspect", "resolution", "n", "images", "mask", "format", "aspect_from_image",
}  # fmt: skip
JOB_KEYS = {
    "job_id", "status", "provider", "model", "plan", "cost_usd", "actual_cost_usd", "actual_cost_source", "files",
    "images", "attempts", "skipped_without_key", "elapsed_s", "error", "caveats",
}  # fmt: skip
IMAGE_KEYS = {"path", "format", "width", "height", "bytes", "sha256", "verified"}
ATTEMPT_KEYS = {"provider", "model", "plan", "cost_usd", "state", "error", "images"}


def test_quote(cli):
    data = cli("quote", "a lighthouse", "--quality", "high", "--json").json()
    assert set(data) == {"request", "choice", "quotes", "caveats"}
    assert set(data["request"]) == REQUEST_KEYS
    assert set(data["choice"]) == QUOTE_KEYS and data["choice"] == data["quotes"][0]
    for quote in data["quotes"]:
        assert set(quote) == QUOTE_KEYS and set(quote["output"]) == OUTPUT_KEYS
        assert isinstance(quote["cost_usd"], float) and isinstance(quote["reasons"], list)
    eligible = [q["eligible"] for q in data["quotes"]]
    assert eligible == sorted(eligible, reverse=True)  # eligible first


def test_gen_and_resume(cli, fakes):
    data = cli("gen", "x", "--quality", "low", "--out", "out", "--json", *only(fakes, "kie")).json()
    assert set(data) == JOB_KEYS and data["status"] == "succeeded"
    assert set(data["images"][0]) == IMAGE_KEYS and set(data["attempts"][0]) == ATTEMPT_KEYS
    resumed = cli("jobs", "resume", data["job_id"], "--json").json()
    assert isinstance(resumed, list) and set(resumed[0]) == JOB_KEYS
    dry = cli("gen", "x", "--dry-run", "--json", *only(fakes, "kie")).json()
    assert set(dry) == {"dry_run", "provider", "model", "requests", "request", "cost_usd", "caveats"}
    assert set(dry["request"]) == {"method", "url", "headers", "body", "files"}


def test_batch_plan_and_rows(cli, fakes, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"prompt": "a", "provider": "kie"}) + "\n" + json.dumps({"prompt": "b", "aspect": "9:1"})
    )
    plan = cli("batch", str(rows), "--dry-run", "--json").json()
    assert set(plan) == {
        "rows", "images", "estimated_usd", "by_offer", "pacing", "unservable", "bad_rows", "done_before", "not_retried",
        "caveats",
    }  # fmt: skip
    assert set(plan["by_offer"][0]) == {"offer", "rows", "images", "submits", "estimated_usd"}
    assert set(plan["pacing"][0]) == {"provider", "submits", "concurrency", "per_minute", "min_minutes"}
    assert set(plan["unservable"][0]) == {"line", "id", "prompt", "reason"}
    lines = [json.loads(line) for line in cli("batch", str(rows), "--yes", "--json", "--out", "o").out.splitlines()]
    done = next(line for line in lines if line["outcome"] == "done")
    assert set(done) == JOB_KEYS | {"row", "id", "outcome", "note"}


def test_jobs_list_show_spend_budget(cli, fakes):
    job = cli("gen", "x", "--out", "out", "--json", *only(fakes, "kie")).json()["job_id"]
    listed = cli("jobs", "--json").json()
    assert set(listed[0]) == {
        "job_id", "created", "state", "offer", "prompt", "images", "estimate_usd", "actual_usd", "error"
    }  # fmt: skip
    shown = cli("jobs", "show", job, "--json").json()
    assert set(shown) == {
        "job_id", "created", "state", "prompt", "request", "estimate_usd", "actual_usd", "actual_source", "error",
        "out_dir", "quotes", "attempts", "tasks", "files", "history",
    }  # fmt: skip
    assert set(shown["request"]) == REQUEST_KEYS | {"constraints"}
    assert set(shown["tasks"][0]) == {
        "attempt", "provider", "client_ref", "provider_job_id", "state", "images", "detail", "sent"
    }  # fmt: skip
    assert set(shown["files"][0]) == IMAGE_KEYS
    spend = cli("spend", "--json").json()
    assert set(spend) == {"day", "month", "provider", "quality", "total"}
    assert set(spend["total"][0]) == {
        "key", "attempts", "images", "estimated_usd", "actual_usd", "in_flight_usd", "drift_pct"
    }  # fmt: skip
    budget = cli("budget", "show", "--json").json()
    assert [set(row) for row in budget] == [{"period", "cap_usd", "spent_usd", "left_usd", "resets"}] * 2


def test_providers_pricing_and_keys(cli):
    offers = cli("providers", "--json").json()
    assert set(offers[0]) == {
        "provider", "model", "qualities", "quality_selectable", "sizes", "images_per_request",
        "prompt_max_chars", "edit", "price", "identity", "quality_stated", "background", "moderation", "unsourced",
    }  # fmt: skip
    pricing = cli("pricing", "--json").json()
    assert set(pricing) == {"max_age_days", "rows", "notes"}
    assert set(pricing["rows"][0]) == {"provider", "what", "value", "source", "observed", "age_days", "stale", "file"}
    keys = cli("keys", "list", "--json").json()
    assert set(keys[0]) == {"provider", "env", "source"}


def test_the_journaled_route_text_is_the_quote_json_and_rankings_alike_share_it():
    from imgroute.models import Constraints
    from imgroute.pricing import load_table
    from imgroute.report import _quotes_text, route_json, route_text
    from imgroute.request import build_request
    from imgroute.router import RouteCache

    routes = RouteCache(load_table())
    first = routes.rank(build_request("a lighthouse", quality="high"), Constraints())
    second = routes.rank(build_request("a lighthousf", quality="high"), Constraints())  # alike but for a word
    assert second.quotes is first.quotes
    for route in (first, second):
        assert json.loads(route_text(route)) == route_json(route)
    assert _quotes_text(second.quotes)[1] is _quotes_text(first.quotes)[1]  # written out once
    assert json.loads(route_text(second))["request"]["prompt"] == "a lighthousf"
    impossible = routes.rank(build_request("a lighthouse", size="1000x1000", quality="high"), Constraints())
    assert impossible.choice is None and json.loads(route_text(impossible)) == route_json(impossible)
    assert json.loads(route_text(impossible))["choice"] is None
