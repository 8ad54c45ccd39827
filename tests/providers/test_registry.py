"""The provider registry: every registered provider is complete, and a new one is five touches."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from imgroute.pricing.load import bundled_path, load_table
from imgroute.providers.openai import OpenAIAdapter
from imgroute.providers.registry import REGISTRY, ProviderSpec, adapter_class, lane, provider_limits
from tests.fakes import FAKES
from tests.fakes.openai import FakeOpenAI
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def test_every_registered_provider_has_an_adapter_a_fake_offers_limits_and_readme_lines():
    table = load_table()
    for spec in REGISTRY.values():
        assert adapter_class(spec.id).provider == spec.id, spec.id
        assert spec.id in FAKES and FAKES[spec.id].name == spec.id, f"{spec.id}: no fake in tests/fakes"
        assert spec.id in table.providers, f"{spec.id}: no providers.{spec.id} in pricing.yaml"
        assert any(offer.provider == spec.id for offer in table.offers), f"{spec.id}: no offer in pricing.yaml"
        assert spec.concurrency >= 1 and (spec.per_minute is None or spec.per_minute > 0), spec.id
        assert spec.docs.startswith("https://") and spec.limits_source, spec.id
        assert spec.key_env in README and f"`{spec.id}`" in README, f"{spec.id}: not in the README"
        windowed = [o for o in table.offers if o.provider == spec.id and o.window_s is not None]
        if windowed:  # offers that take a while need the provider's batch adapter, and its limits lane
            assert adapter_class(spec.id, windowed=True).window_s >= max(o.window_s for o in windowed), spec.id
            assert lane(spec.id, True) in provider_limits(), spec.id
    assert set(FAKES) == set(REGISTRY)


# -- a sixth provider, added the way the README says: nothing else in the package changes --------


class AcmeAdapter(OpenAIAdapter):  # 1. its adapter module (here: an OpenAI-compatible API)
    provider = "acme"
    documented_origin = "https://api.acme.example"


class FakeAcme(FakeOpenAI):  # 4. its fake
    name = "acme"
    key = "acme-test-key-0123456789abcdef"


ACME = ProviderSpec(  # 2. one registry row
    "acme", "ACME_API_KEY", f"{__name__}:AcmeAdapter", 3, 30.0, "https://acme.example/docs", "test"
)


def acme_pricing(path: Path) -> Path:
    """3. its pricing.yaml rows: a provider with a plan, and an offer (OpenAI's, 10% cheaper)."""
    bundled = yaml.safe_load(bundled_path().read_text())
    offer = copy.deepcopy(next(o for o in bundled["offers"] if o["provider"] == "openai"))
    offer["provider"] = "acme"
    offer["price"]["usd_per_million_tokens"] = {
        kind: str(float(rate) * 0.9) for kind, rate in offer["price"]["usd_per_million_tokens"].items()
    }
    provider = {
        "name": "Acme relay",
        "source": "https://acme.example/pricing",
        "observed": "2026-11-30",
        "plans": {"payg": {"default": True, "source": "https://acme.example/pricing", "observed": "2026-11-30"}},
    }
    path.write_text(yaml.safe_dump({"version": 1, "providers": {"acme": provider}, "offers": [offer]}))
    return path


def test_a_stand_in_provider_needs_only_its_adapter_row_pricing_and_fake(cli, fakes, monkeypatch, tmp_path):
    monkeypatch.setitem(REGISTRY, "acme", ACME)
    fake = FakeAcme().start()
    try:
        monkeypatch.setenv(ACME.key_env, fake.key)
        monkeypatch.setenv(ACME.base_url_env, fake.url)
        pricing = str(acme_pricing(tmp_path / "acme.yaml"))
        quoted = cli("quote", "a lighthouse", "--quality", "high", "--provider", "acme,openai", "--pricing", pricing)
        assert quoted.code == 0 and "acme" in quoted.out
        r = cli(
            "gen", "a lighthouse", "--quality", "low", "--provider", "acme", "--pricing", pricing, "--out", "out",
            "--json",
        )  # fmt: skip
        assert r.code == 0, r.err
        assert r.json()["provider"] == "acme" and fake.charges == 1
        assert "acme      ACME_API_KEY      from $ACME_API_KEY" in cli("keys", "list").out
        row = '{"prompt": "x", "provider": "acme"}'
        plan = cli("batch", "-", "--dry-run", "--json", "--pricing", pricing, stdin=row)
        assert plan.json()["pacing"][0] == {
            "provider": "acme", "submits": 1, "concurrency": 3, "per_minute": 30.0, "min_minutes": 0.0
        }  # fmt: skip
    finally:
        fake.stop()
