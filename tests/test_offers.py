"""Issue 14: more and truer offers: model identity, assumed quality, background and moderation,
cached rates, rows that rest on no source."""

from __future__ import annotations

from decimal import Decimal

from imgroute.pricing.load import load_table
from tests.test_gen_e2e import only


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
