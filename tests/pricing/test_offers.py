"""Issue 14: more and truer offers: model identity, assumed quality, background and moderation,
cached rates, rows that rest on no source."""

from __future__ import annotations

import json
from decimal import Decimal

from imgroute.pricing.load import load_table
from tests.helpers import KIE_ASSUMED, only


def quotes(cli, *args):
    r = cli("quote", "a lighthouse", "--json", *args)
    return r, (r.json() if r.out else None)


def test_every_offer_says_what_model_it_runs_and_the_quote_shows_it(cli):
    table = load_table()
    assert all(o.identity.declared and o.identity.source for o in table.offers)
    _, data = quotes(cli, "--quality", "high")
    kinds = {q["offer"]: q["identity"]["kind"] for q in data["quotes"]}
    assert kinds["openai/gpt-image-2"] == "official" and kinds["fal/openai/gpt-image-2"] == "official"
    assert kinds["kie/gpt-image-2-text-to-image"] == "relay"
    assert "model is" in cli("quote", "x").out


def test_official_only_changes_the_winner(cli, isolated_home):
    _, data = quotes(cli, "--quality", "high")
    assert data["choice"]["provider"] == "kie"
    _, data = quotes(cli, "--quality", "high", "--official-only")
    assert data["choice"]["identity"]["kind"] == "official" and data["choice"]["provider"] != "kie"
    isolated_home.mkdir()
    (isolated_home / "config.yaml").write_text("official_only: true\n")
    _, data = quotes(cli, "--quality", "high")
    assert data["choice"]["identity"]["kind"] == "official"


def test_an_assumed_quality_is_marked_and_stated_quality_routes_without_it(cli, isolated_home):
    r, data = quotes(cli, "--quality", "high")
    kie = data["choice"]
    assert kie["provider"] == "kie" and kie["quality_stated"] is False
    assert any("by assumption" in note for note in kie["notes"])
    human = cli("quote", "x", "--quality", "high").out
    assert (
        "high (assumed)" in human
        and "caveat: kie/gpt-image-2-text-to-image delivers high quality by assumption" in human
    )
    _, data = quotes(cli, "--quality", "high", "--stated-quality")
    assert data["choice"]["provider"] != "kie"
    kie = next(q for q in data["quotes"] if q["provider"] == "kie")
    assert any("assumed, not stated" in reason for reason in kie["reasons"])
    isolated_home.mkdir()
    (isolated_home / "config.yaml").write_text("stated_quality: true\n")
    assert quotes(cli, "--quality", "high")[1]["choice"]["provider"] != "kie"


def test_background_and_moderation_route_by_what_each_offer_takes(cli, fakes):
    _, data = quotes(cli, "--quality", "low", "--background", "transparent")
    assert data["choice"] is None  # no offer here makes a transparent gpt-image-2 image
    openai = next(q for q in data["quotes"] if q["provider"] == "openai")
    assert "cannot make a transparent background" in openai["reasons"][0]
    _, data = quotes(cli, "--quality", "low", "--moderation", "low")
    assert {q["provider"] for q in data["quotes"] if q["eligible"]} == {"openai", "apiframe", "replicate"}
    r = cli("gen", "x", "--quality", "low", "--background", "opaque", "--moderation", "low", "--out", "o",
            *only(fakes, "openai"))  # fmt: skip
    assert r.code == 0, r.err
    body = fakes["openai"].calls("/v1/images/generations")[0].json()
    assert body["background"] == "opaque" and body["moderation"] == "low"
    assert cli("quote", "x", "--background", "clear").code == 2


def test_rows_the_audit_corrected(cli):
    table = load_table()
    offers = {o.id: o for o in table.offers}
    openai = offers["openai/gpt-image-2"].price.usd_per_million
    assert openai["cached_image_input"] == Decimal("2.00") and openai["cached_text_input"] == Decimal("1.25")
    assert offers["piapi/gpt-image-2"].price.usd_per_million["text_output"] == Decimal("10.00")
    kie = offers["kie/gpt-image-2-text-to-image"]
    assert kie.price.provenance.observed.isoformat() == "2026-08-17" and "edit.max_image_bytes" in kie.unsourced
    assert "prompt_max_chars" in offers["fal/openai/gpt-image-2"].unsourced
    assert {"images_per_request", "prompt_max_chars", "edit.mask", "sizes"} <= set(
        offers["piapi/gpt-image-2"].unsourced
    )
    assert "gpt-image-1.5" in " ".join(offers["piapi/gpt-image-2"].notes)
    notes = cli("pricing", "--json").json()["notes"]
    assert any("edit.max_image_bytes is unsourced (assumed)" in note for note in notes)


# -- caveats reach every door that pays ------------------------------------------------------------


def test_gen_shows_the_winners_caveats_before_paying_and_json_carries_them(cli, fakes):
    r = cli("gen", "a fox", "--quality", "high", "--out", "out", *only(fakes, "kie"))
    assert r.code == 0 and f"caveat: {KIE_ASSUMED}" in r.err
    data = cli("gen", "a fox", "--quality", "high", "--out", "out", "--json", *only(fakes, "kie")).json()
    assert any(KIE_ASSUMED in caveat for caveat in data["caveats"])
    dry = cli("gen", "a fox", "--quality", "high", "--dry-run", "--json", *only(fakes, "kie")).json()
    assert any(KIE_ASSUMED in caveat for caveat in dry["caveats"])
    assert cli("quote", "a fox", "--quality", "high", "--json").json()["caveats"] == dry["caveats"]


def test_the_batch_plan_lists_the_caveats_of_the_offers_its_rows_go_to_once(cli, fakes, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"fox {i}", "quality": "high"}) + "\n" for i in range(3)))
    plan = cli("batch", str(rows), "--dry-run", "--json", *only(fakes, "kie")).json()
    assert sum(KIE_ASSUMED in caveat for caveat in plan["caveats"]) == 1


def test_the_human_dry_run_and_the_batch_plan_show_the_caveats(cli, fakes, tmp_path):
    r = cli("gen", "a fox", "--quality", "high", "--dry-run", *only(fakes, "kie"))
    assert r.code == 0 and f"caveat: {KIE_ASSUMED}" in r.out
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "a fox", "quality": "high"}) + "\n")
    plan = cli("batch", str(rows), "--dry-run", *only(fakes, "kie"))
    assert plan.out.count(f"caveat: {KIE_ASSUMED}") == 1


def test_the_python_api_and_a_url_edit_say_their_caveats(fakes, tmp_path):
    import imgroute

    assert any(KIE_ASSUMED in c for c in imgroute.quote("a fox", quality="high").caveats)
    result = imgroute.generate("a fox", quality="high", out=str(tmp_path), exclude=[p for p in fakes if p != "kie"])
    assert any(KIE_ASSUMED in c for c in result.caveats)
    url_edit = imgroute.quote("make it dusk", images=["https://example.com/photo.png"])
    assert url_edit.request.target.aspect_label == "1:1"
    assert any("the first image is a URL" in c and "--aspect" in c for c in url_edit.caveats)
