"""OpenRouter's Image API through its fake (tests/fakes/openrouter.py): one upstream pinned (no
fallbacks at OpenRouter), the dollars it states it charged recorded as the actual cost beside the
estimate, a 502 known unbilled (the images move on), edits as input_references."""

from __future__ import annotations

from decimal import Decimal

from tests.helpers import gen, photo

OFFER = ["--provider", "openrouter"]


def test_a_generation_pins_its_upstream_and_records_the_charge_openrouter_states(cli, fakes, openrouter):
    r = gen(cli, "--quality", "low", *OFFER)
    assert r.code == 0, r.err
    data = r.json()
    assert (data["provider"], data["model"]) == ("openrouter", "gpt-image-2@openai")
    (sent,) = openrouter.calls("/api/v1/images", "POST")
    body = sent.json()
    assert body["model"] == "openai/gpt-image-2" and body["provider"] == {"order": ["openai"], "allow_fallbacks": False}
    assert (
        body["size"] == "1024x1024" and body["quality"] == "low" and sent.header("Authorization").startswith("Bearer ")
    )
    assert data["actual_cost_source"] == "charge stated by the provider"
    assert Decimal(str(data["actual_cost_usd"])) > 0 and data["cost_usd"] is not None
    spent = cli("spend", "--json").json()["provider"]
    (row,) = [g for g in spent if g["key"] == "openrouter"]
    assert (
        row["actual_usd"] == data["actual_cost_usd"] and row["drift_pct"] is not None
    )  # estimate and actual side by side


def test_an_edit_sends_its_images_as_input_references(cli, fakes, openrouter, tmp_path):
    from PIL import Image

    Image.new("RGB", (1024, 1024), (1, 2, 3)).save(tmp_path / "photo.png")
    r = cli("edit", "at dusk", "--image", str(tmp_path / "photo.png"), *OFFER, "--out", "out", "--json")
    assert r.code == 0, r.err
    (sent,) = openrouter.calls("/api/v1/images", "POST")
    (ref,) = sent.json()["input_references"]
    assert ref["type"] == "image_url" and ref["image_url"]["url"].startswith("data:image/png;base64,")


def test_a_502_is_unbilled_so_the_images_move_on_and_are_paid_once(cli, fakes, openrouter):
    openrouter.outcome = "fail"
    r = gen(cli, "--quality", "low", "--provider", "openrouter,kie")
    assert r.code == 0, r.err
    assert r.json()["provider"] == "kie" and openrouter.charges == 0 and fakes["kie"].charges == 1


def test_no_credits_moves_on(cli, fakes, openrouter):
    openrouter.credits = 0
    r = gen(cli, "--quality", "low", "--provider", "openrouter,kie")
    assert r.code == 0 and r.json()["provider"] == "kie"


def test_quoted_beside_openai_at_its_assumed_price(cli, fakes, openrouter):
    data = cli("quote", "a fox", "--quality", "low", "--provider", "openrouter,openai", "--json").json()
    assert data["choice"]["offer"] == "openai/gpt-image-2"
    (quote,) = [q for q in data["quotes"] if q["provider"] == "openrouter"]
    assert quote["eligible"] and quote["identity"]["kind"] == "official"


def test_pricing_refresh_writes_each_upstream_as_a_dated_offer_of_the_users_file(cli, fakes, openrouter, isolated_home):
    import datetime as dt

    refreshed = cli("pricing", "refresh", "openrouter")
    assert refreshed.code == 0, refreshed.err
    assert "openrouter/gpt-image-2@openai: tokens" in refreshed.out
    assert "openrouter/gpt-image-2@imagerouter: usd_per_quality" in refreshed.out
    assert openrouter.calls("/api/v1/images/models/openai/gpt-image-2/endpoints", "GET")
    data = cli("quote", "a fox", "--quality", "high", "--provider", "openrouter", "--json").json()
    quotes = {q["offer"]: q for q in data["quotes"] if q["provider"] == "openrouter"}
    relay = quotes["openrouter/gpt-image-2@imagerouter"]
    assert relay["cost_usd"] == 0.16 and relay["identity"]["kind"] == "relay"
    assert quotes["openrouter/gpt-image-2@openai"]["identity"]["kind"] == "official"
    rows = cli("pricing", "--json").json()
    assert any(str(dt.date.today()) in str(row) for row in rows["rows"] if "imagerouter" in str(row))
    assert cli("pricing", "refresh", "openrouter").code == 0  # again: the same rows, replaced, not doubled
    import yaml

    written = yaml.safe_load((isolated_home / "pricing.yaml").read_text())["offers"]
    assert [o["model"] for o in written].count("gpt-image-2@imagerouter") == 1
    made = gen(cli, "--quality", "high", "--provider", "openrouter/gpt-image-2@imagerouter")
    assert made.code == 0, made.err
    assert made.json()["actual_cost_usd"] == 0.16  # what the fake charged, as its endpoints row says


def test_pricing_refresh_says_what_it_needs(cli, isolated_home):
    assert cli("pricing", "refresh", "kie").code == 2
    assert cli("pricing", "refresh", "openrouter").code == 3


def test_spend_flags_an_offer_whose_stated_charges_drifted_from_the_table(cli, fakes, openrouter):
    openrouter.overcharge = Decimal("1.10")  # OpenRouter now bills 10% over what pricing.yaml says
    for _ in range(2):
        assert gen(cli, "--quality", "low", *OFFER).code == 0
    assert gen(cli, "--quality", "low", "--provider", "kie").code == 0  # (no statement: nothing to compare)
    offers = {g["key"]: g for g in cli("spend", "--json").json()["offer"]}
    drifted = offers["openrouter/gpt-image-2@openai"]
    assert drifted["flagged"] and 9.5 < drifted["stated_drift_pct"] < 10.5 and drifted["stated_usd"] > 0
    kie = offers["kie/gpt-image-2-text-to-image"]
    assert not kie["flagged"] and kie["stated_drift_pct"] in (None, 0.0)
    shown = cli("spend")
    assert "warning: openrouter/gpt-image-2@openai: what it says it charged differs from pricing.yaml by +" in shown.out


def test_an_edit_is_kept_out_of_the_drift_when_its_image_tokens_are_not_reported_apart(
    cli, fakes, openrouter, tmp_path
):
    photo(tmp_path, 1024, 1024)
    assert gen(cli, "--quality", "low", *OFFER).code == 0
    assert cli("edit", "dusk", "--image", str(tmp_path / "photo.png"), *OFFER, "--out", "o", "--json").code == 0
    (offer,) = [g for g in cli("spend", "--json").json()["offer"] if g["key"].startswith("openrouter/")]
    assert not offer["flagged"] and offer["stated_drift_pct"] == 0.0  # (the generation alone compared)


def test_a_refresh_drops_an_upstream_no_longer_listed_and_writes_plain_numbers(cli, fakes, openrouter, isolated_home):
    import yaml

    from tests.fakes import openrouter as fake

    assert cli("pricing", "refresh", "openrouter").code == 0
    text = (isolated_home / "pricing.yaml").read_text()
    assert "E+" not in text and "&id" not in text and "image_output: '30'" in text
    gone = fake.UPSTREAMS.pop("imagerouter")
    try:
        assert cli("pricing", "refresh", "openrouter").code == 0
    finally:
        fake.UPSTREAMS["imagerouter"] = gone
    models = [o["model"] for o in yaml.safe_load((isolated_home / "pricing.yaml").read_text())["offers"]]
    assert models == ["gpt-image-2@openai"]


def test_an_assumed_price_is_said_on_its_row_even_when_it_loses(cli, fakes, openrouter):
    data = cli("quote", "a fox", "--quality", "high", "--json").json()
    (row,) = [q for q in data["quotes"] if q["offer"] == "openrouter/gpt-image-2@openai"]
    assert data["choice"]["offer"] != row["offer"] and any(n.startswith("price assumed:") for n in row["notes"])


def test_every_pinned_upstream_counts_against_the_one_accounts_limits():
    from imgroute.jobs.spec import lane_of
    from imgroute.pricing.load import load_table

    offer = load_table().offer("openrouter", "gpt-image-2@openai")
    assert lane_of(offer, "k").startswith("openrouter@")  # (not a lane of its own per upstream)
