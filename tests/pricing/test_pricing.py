"""Loading, validating and merging pricing files."""

import datetime as dt
import json
from decimal import Decimal

import pytest
import yaml

from imgroute.errors import ConfigError
from imgroute.pricing.load import bundled_path, load_file, load_table
from tests.helpers import ROOT


def test_bundled_table_has_all_six_offers_with_provenance():
    table = load_table()
    assert [o.id for o in table.offers] == [
        "openai/gpt-image-2",
        "openai/gpt-image-2-batch",  # issue 14
        "azure/gpt-image-2",  # issue 29
        "openrouter/gpt-image-2@openai",  # issue 29
        "fal/openai/gpt-image-2",
        "piapi/gpt-image-2",
        "piapi/gpt-image-2-preview",
        "kie/gpt-image-2-text-to-image",
        "apiframe/gpt-image-2",
        "replicate/openai/gpt-image-2",  # issue 14
    ]
    for offer in table.offers:
        for prov in (offer.provenance, offer.price.provenance, offer.sizes.provenance):
            assert prov.source.startswith("https://")
            assert isinstance(prov.observed, dt.date)
    for info in table.providers.values():
        for plan in info.plans.values():
            assert plan.provenance.source.startswith("https://")


def test_plans_and_credit_prices():
    table = load_table()
    assert table.plan("apiframe", None).usd_per_credit == Decimal("0.01")
    assert table.plan("apiframe", "growth").usd_per_credit == Decimal(199) / Decimal(52000)
    assert table.plan("kie", None).usd_per_credit == Decimal("0.005")


def test_disagreements_are_recorded_as_notes():
    notes = " ".join(n for o in load_table().offers for n in o.notes)
    for needle in ("16", "own per-image estimates", "rounds each request's token cost up", "Third-party sites"):
        assert needle in notes


def write(tmp_path, data, name="pricing.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def bundled():
    return yaml.safe_load(bundled_path().read_text())


def offer(data, offer_id):
    return next(o for o in data["offers"] if f"{o['provider']}/{o['model']}" == offer_id)


def error_of(path):
    with pytest.raises(ConfigError) as exc:
        load_file(path)
    assert exc.value.exit_code == 3
    return exc.value.message


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "version: 1\noffers: [\n  - nope: {\n")
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert "not valid YAML" in message


def test_unknown_price_model(tmp_path):
    data = bundled()
    offer(data, "kie/gpt-image-2-text-to-image")["price"]["model"] = "per_vibe"
    message = error_of(write(tmp_path, data))
    assert "offers[kie/gpt-image-2-text-to-image].price.model: 'per_vibe' is not one of" in message


def test_missing_field(tmp_path):
    data = bundled()
    del offer(data, "openai/gpt-image-2")["prompt_max_chars"]
    assert "offers[openai/gpt-image-2]: missing field 'prompt_max_chars'" in error_of(write(tmp_path, data))


def test_negative_price(tmp_path):
    data = bundled()
    offer(data, "kie/gpt-image-2-text-to-image")["price"]["credits_per_image"]["4K"] = -16
    message = error_of(write(tmp_path, data))
    assert "offers[kie/gpt-image-2-text-to-image].price.credits_per_image.4K: -16 is below the minimum of 0" in message


def test_negative_money(tmp_path):
    data = bundled()
    data["providers"]["kie"]["plans"]["standard"]["usd_per_credit"] = "-0.005"
    assert "providers.kie.plans.standard.usd_per_credit: -0.005 is negative" in error_of(write(tmp_path, data))


def test_unknown_quality(tmp_path):
    data = bundled()
    offer(data, "apiframe/gpt-image-2")["qualities"] = ["low", "ultra"]
    assert "offers[apiframe/gpt-image-2].qualities[1]: 'ultra' is not one of" in error_of(write(tmp_path, data))


def test_ratio_that_does_not_parse(tmp_path):
    text = bundled_path().read_text().replace('"16:9": {1K: null, 2K: null, 4K: null}', "16:9: {1K: null}")
    message = error_of(write(tmp_path, text))
    # YAML 1.1 reads unquoted 16:9 as the base-60 number 969
    assert "sizes.presets.969: aspect ratio '969' does not parse as W:H" in message


def test_unknown_field_is_a_typo_not_silence(tmp_path):
    data = bundled()
    offer(data, "fal/openai/gpt-image-2")["qualitys"] = ["low"]
    assert "offers[fal/openai/gpt-image-2].qualitys: unknown field" in error_of(write(tmp_path, data))


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_table(tmp_path / "missing.yaml")
    assert "does not exist" in exc.value.message


def test_user_file_overrides_a_price_and_adds_a_plan(tmp_path):
    user = write(
        tmp_path,
        {
            "version": 1,
            "providers": {
                "kie": {
                    "plans": {
                        "pack": {
                            "usd_per_credit": "0.0045",
                            "source": "https://kie.ai/pricing",
                            "observed": "2026-11-01",
                        }
                    }
                }
            },
            "offers": [
                {"provider": "kie", "model": "gpt-image-2-text-to-image", "price": {"credits_per_image": {"1K": 5}}}
            ],
        },
    )
    table = load_table(user)
    kie = next(o for o in table.offers if o.provider == "kie")
    assert kie.price.credits_per_image == {"1K": 5, "2K": 10, "4K": 16}
    assert kie.origin == str(user)
    assert table.plan("kie", "pack").usd_per_credit == Decimal("0.0045")
    assert table.plan("kie", None).name == "standard"


def test_user_file_adds_an_offer(tmp_path):
    data = offer(bundled(), "piapi/gpt-image-2-preview")
    data = dict(data, model="gpt-image-1.5", price=dict(data["price"], usd_per_image="0.05"))
    table = load_table(write(tmp_path, {"version": 1, "offers": [data]}))
    assert table.offers[-1].id == "piapi/gpt-image-1.5"


def test_user_file_errors_name_the_user_file(tmp_path):
    user = write(
        tmp_path,
        {
            "version": 1,
            "offers": [
                {"provider": "kie", "model": "gpt-image-2-text-to-image", "price": {"credits_per_image": {"1K": "six"}}}
            ],
        },
    )
    with pytest.raises(ConfigError) as exc:
        load_table(user)
    assert exc.value.message.startswith(f"{user}: offers[kie/gpt-image-2-text-to-image].price.credits_per_image.1K")


def test_root_pricing_yaml_is_the_bundled_one():
    assert bundled_path() in (ROOT / "pricing.yaml", ROOT / "imgroute" / "pricing.yaml")


# -- errors in a pricing file ----------------------------------------------------------------------


def test_an_impossible_date_in_a_pricing_file_or_config_is_one_line(cli, tmp_path, isolated_home):
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\nproviders:\n  kie:\n    observed: 2026-02-30\n")
    r = cli("quote", "x", "--pricing", str(bad))
    assert r.code == 3 and "Traceback" not in r.err and len(r.err.splitlines()) == 1 and str(bad) in r.err
    isolated_home.mkdir()
    (isolated_home / "config.yaml").write_text("pricing_max_age_days: 2026-02-30\n")
    r = cli("pricing")
    assert r.code == 3 and "Traceback" not in r.err and "config.yaml" in r.err


def test_pricing_validate_names_the_file_and_reports_duplicates_and_typos(cli, tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("version: 1\nproviders:\n  kie:\n    plans:\n      standard:\n        usd_per_credit: '-1'\n")
    r = cli("pricing", "validate", str(bad))
    assert r.code == 3 and r.err.startswith(f"error: {bad}: providers.kie")
    offer = {"provider": "kie", "model": "gpt-image-2-text-to-image", "prompt_max_chars": 100}
    bad.write_text(json.dumps({"version": 1, "offers": [offer, offer]}))
    r = cli("pricing", "validate", str(bad))
    assert r.code == 3 and "listed twice" in r.err
    bad.write_text(json.dumps({"version": 1, "offers": [{**offer, "model": "gpt-image-2-txt"}]}))
    r = cli("pricing", "validate", str(bad))
    assert r.code == 3 and "no offer kie/gpt-image-2-txt to change" in r.err and "missing field" not in r.err
