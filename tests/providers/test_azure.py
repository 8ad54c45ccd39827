"""Azure OpenAI (Microsoft Foundry) through its fake (tests/fakes/azure.py): the customer's
endpoint and deployment, the `api-key` header, quality always sent, no WebP, its content filter as
moderation, `retry-after-ms` honoured; and its offer quoted beside OpenAI's, its price marked
assumed, not set up until an endpoint is."""

from __future__ import annotations

from tests.helpers import gen, only


def azure_only(fakes) -> list[str]:
    return [*only(fakes, "azure"), "--exclude", "openai"]


def test_a_generation_goes_to_the_deployment_with_its_key_and_the_quality_asked(cli, fakes, azure):
    r = gen(cli, "--quality", "medium", "--provider", "azure")
    assert r.code == 0, r.err
    data = r.json()
    assert (data["provider"], data["model"]) == ("azure", "gpt-image-2") and len(data["files"]) == 1
    (sent,) = azure.calls("/openai/v1/images/generations", "POST")
    assert sent.query["api-version"] == ["preview"] or sent.query["api-version"] == "preview"
    assert sent.header("api-key") == azure.key and sent.header("Authorization") is None
    body = sent.json()
    assert body["model"] == "image-east" and body["quality"] == "medium"  # never left to Azure's default (high)
    assert azure.charges == 1


def test_an_edit_goes_to_the_edits_path_as_multipart(cli, fakes, azure, tmp_path):
    from PIL import Image

    Image.new("RGB", (1024, 1024), (10, 20, 30)).save(tmp_path / "photo.png")
    r = cli("edit", "at dusk", "--image", str(tmp_path / "photo.png"), "--provider", "azure", "--out", "out", "--json")
    assert r.code == 0, r.err
    assert azure.calls("/openai/v1/images/edits", "POST") and azure.charges == 1


def test_the_content_filter_is_moderation_and_nothing_moves_on(cli, fakes, azure):
    azure.outcome = "moderate"
    r = gen(cli, "--provider", "azure")
    assert r.code == 6 and "content management policy" in r.err
    assert all(fake.charges == 0 for fake in fakes.values())


def test_a_429_is_waited_out_by_its_retry_after_ms(cli, fakes, azure, monkeypatch):
    azure.inject("submit", status=429, retry_after=0.2, times=1)
    r = gen(cli, "--provider", "azure")
    assert r.code == 0, r.err
    assert len(azure.calls("/openai/v1/images/generations", "POST")) == 2 and azure.charges == 1


def test_webp_is_not_an_azure_format(cli, fakes, azure):
    data = cli("quote", "a fox", "--format", "webp", "--provider", "azure", "--json").json()
    (quote,) = [q for q in data["quotes"] if q["offer"] == "azure/gpt-image-2"]
    assert not quote["eligible"] and any("webp" in reason for reason in quote["reasons"])


def test_quoted_beside_openai_its_price_marked_assumed_and_not_set_up_without_an_endpoint(cli, fakes, azure):
    data = cli("quote", "a fox", "--provider", "azure,openai", "--quality", "low", "--json").json()
    costs = {q["offer"]: q["cost_usd"] for q in data["quotes"] if q["eligible"]}
    assert costs["azure/gpt-image-2"] == costs["openai/gpt-image-2"]
    assert data["choice"]["offer"] == "openai/gpt-image-2"  # at one price, the one a source states wins
    forced = cli("quote", "a fox", "--provider", "azure", "--json").json()
    assert any("price is assumed" in caveat for caveat in forced["caveats"])


def test_not_set_up_says_how(cli, isolated_home, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "some-key")
    data = cli("quote", "a fox", "--provider", "azure", "--json").json()
    (quote,) = [q for q in data["quotes"] if q["offer"] == "azure/gpt-image-2"]
    assert not quote["eligible"] and "AZURE_OPENAI_ENDPOINT" in quote["reasons"][0]
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://myres.openai.azure.com")
    planned = cli("gen", "a fox", "--provider", "azure", "--dry-run", "--json").json()
    assert planned["request"]["url"].startswith("https://myres.openai.azure.com/openai/v1/images/generations")
    assert planned["request"]["body"]["model"] == "gpt-image-2"  # the usual deployment name, unless set
    assert planned["request"]["headers"]["api-key"] == "[redacted]" and "some-key" not in str(planned)


def test_config_yaml_sets_the_deployment_and_config_shows_where_each_value_comes_from(cli, isolated_home, monkeypatch):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.yaml").write_text(
        "azure: {endpoint: 'https://team.openai.azure.com', deployment: img-west, api_version: 2026-04-01}\n"
    )
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    settings = cli("config", "--json").json()["settings"]
    assert settings["azure.endpoint"] == {"value": "https://team.openai.azure.com", "source": "config.yaml"}
    assert settings["azure.deployment"]["value"] == "img-west"
    planned = cli("gen", "a fox", "--provider", "azure", "--dry-run", "--json").json()["request"]
    assert planned["url"] == "https://team.openai.azure.com/openai/v1/images/generations?api-version=2026-04-01"
    assert planned["body"]["model"] == "img-west"
    (isolated_home / "config.yaml").write_text("azure: {region: westus}\n")
    assert cli("quote", "x").code == 3


def test_each_declared_deployment_is_an_offer_of_its_own_with_its_own_limits(cli, fakes, azure, isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.yaml").write_text(
        "azure:\n  deployments:\n    east: {deployment: image-east, limits: {concurrency: 1}}\n"
        "    west: {deployment: image-west, api_version: 2026-04-01}\n"
    )
    data = cli("quote", "a fox", "--provider", "azure", "--json").json()
    offers = {q["offer"] for q in data["quotes"] if q["provider"] == "azure"}
    assert {"azure/gpt-image-2", "azure/gpt-image-2@east", "azure/gpt-image-2@west"} <= offers
    made = gen(cli, "--provider", "azure/gpt-image-2@east")
    assert made.code == 0, made.err
    (sent,) = azure.calls("/openai/v1/images/generations", "POST")
    assert sent.json()["model"] == "image-east"
    planned = cli("gen", "a fox", "--provider", "azure/gpt-image-2@west", "--dry-run", "--json").json()["request"]
    assert planned["body"]["model"] == "image-west" and planned["url"].endswith("?api-version=2026-04-01")

    from imgroute.jobs.spec import lane_of
    from imgroute.session import Keys, load_pricing

    table = load_pricing(None)
    keys = Keys(table.registry)
    east = table.offer("azure", "gpt-image-2@east")
    lane = lane_of(east, keys.available["azure"])
    assert lane.startswith("azure#east@") and lane != lane_of(table.offer("azure", "gpt-image-2"), "k")
    assert keys.lane_limits(table.registry.limits())["azure#east"][0] == 1
    (isolated_home / "config.yaml").write_text("azure:\n  deployments:\n    East Coast: {deployment: x}\n")
    assert cli("quote", "x").code == 3


def test_an_endpoint_as_azures_docs_show_it_is_trimmed_and_plain_http_refused(cli, isolated_home, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com/openai/v1/")
    planned = cli("gen", "a fox", "--provider", "azure", "--dry-run", "--json").json()["request"]
    assert planned["url"] == "https://res.openai.azure.com/openai/v1/images/generations?api-version=preview"
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://res.openai.azure.com")
    refused = cli("quote", "x")
    assert refused.code == 3 and "not an https URL" in refused.err


def test_with_only_declared_deployments_the_unnamed_default_is_not_set_up(cli, isolated_home, monkeypatch):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.yaml").write_text(
        "azure:\n  endpoint: https://res.openai.azure.com\n  deployments:\n    east: {deployment: image-east}\n"
    )
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    data = cli("quote", "a fox", "--provider", "azure", "--json").json()
    quotes = {q["offer"]: q for q in data["quotes"] if q["provider"] == "azure"}
    assert not quotes["azure/gpt-image-2"]["eligible"] and "use east" in quotes["azure/gpt-image-2"]["reasons"][0]
    assert quotes["azure/gpt-image-2@east"]["eligible"]
