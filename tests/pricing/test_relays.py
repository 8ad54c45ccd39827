"""Relays declared in a pricing file, with no code: quoted, validated, and used for gen, edit and
resume through the generic OpenAI Images adapter, against a fake relay on loopback."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import make_image
from tests.helpers import relay_file

RELAY_KEY = "rk-test-relay-abcdef0123456789"


class FakeRelay(FakeOpenAI):
    """An OpenAI-compatible relay: OpenAI's API under a path prefix, its own key."""

    name = "myrelay"
    key = RELAY_KEY
    path = "/openai/v1/images/generations"
    edit_path = "/openai/v1/images/edits"

    def answer(self, body, job_id, n, w, h, fmt) -> dict:
        """As many relays do: image URLs on the relay's own host instead of base64."""
        answer = super().answer(body, job_id, n, w, h, fmt)
        answer["data"] = [{"url": url} for url in self.store_images(f"{job_id}-url", n, w, h, fmt)]
        return answer


@pytest.fixture
def relay(monkeypatch, tmp_path):
    server = FakeRelay().start()
    monkeypatch.setenv("MYRELAY_KEY", RELAY_KEY)
    monkeypatch.setenv("IMGROUTE_TIME_SCALE", "0")
    monkeypatch.chdir(tmp_path)
    yield server, relay_file(tmp_path, base_url=f"{server.url}/openai/v1")
    server.stop()


def test_a_declared_relay_is_quoted_at_its_own_price_and_marked_relay(cli, tmp_path):
    file = relay_file(tmp_path)
    r = cli("quote", "a cat", "--quality", "high", "--pricing", str(file), "--json")
    assert r.code == 0, r.err
    quotes = {q["offer"]: q for q in r.json()["quotes"]}
    relay, openai = quotes["myrelay/gpt-image-2"], quotes["openai/gpt-image-2"]
    assert relay["identity"]["kind"] == "relay" and relay["identity"]["declared"]
    assert Decimal(relay["cost_usd"]) < Decimal(openai["cost_usd"])
    assert abs(Decimal(relay["cost_usd"]) / Decimal(openai["cost_usd"]) - Decimal("0.9")) < Decimal("0.001")
    assert relay["eligible"], relay["reasons"]
    ok = cli("pricing", "validate", str(file))
    assert ok.code == 0 and "myrelay/gpt-image-2" in ok.out


def test_a_relay_offer_with_no_identity_counts_as_a_relay_and_says_so(cli, tmp_path):
    file = relay_file(tmp_path, identity="")
    r = cli("quote", "a cat", "--pricing", str(file), "--json")
    relay = next(q for q in r.json()["quotes"] if q["offer"] == "myrelay/gpt-image-2")
    assert relay["identity"]["kind"] == "relay" and relay["identity"]["declared"] is False
    assert "no identity given" in relay["identity"]["note"]
    table = cli("quote", "a cat", "--pricing", str(file))
    assert "relay?" in table.out
    official = cli("quote", "a cat", "--pricing", str(file), "--official-only", "--json")
    relay = next(q for q in official.json()["quotes"] if q["offer"] == "myrelay/gpt-image-2")
    assert not relay["eligible"]


BAD_DECLARATIONS = [
    ({"api:__openai-images": "api: anthropic"}, "providers.myrelay.api", "is not one of openai-images"),
    ({"https://relay.example.com/v1": "http://relay.example.com"}, "providers.myrelay.base_url", "unencrypted"),
    ({"https://relay.example.com/v1": "ftp://relay.example.com"}, "providers.myrelay.base_url", "http(s)"),
    ({"MYRELAY_KEY": "OPENAI_API_KEY"}, "providers.myrelay.key_env", "is openai's key"),
    ({"MYRELAY_KEY": "my relay key"}, "providers.myrelay.key_env", "not an environment variable"),
    ({"    key_env: MYRELAY_KEY\n": ""}, "providers.myrelay", "missing field 'key_env'"),
    ({"  myrelay:": "  My-Relay:", "provider: myrelay": "provider: My-Relay"}, "providers.My-Relay", "provider id"),
    ({"    api: openai-images\n": ""}, "providers.myrelay", "unknown provider 'myrelay'"),
    ({"  myrelay:": "  fal:", "provider: myrelay": "provider: fal"}, "providers.fal.api", "fal is built in"),
    ({"like: openai/gpt-image-2": "like: openai/gpt-image-9"}, "like", "no offer 'openai/gpt-image-9'"),
    ({"      source: https://relay.example.com/pricing\n      observed: 2026-11-20\n": ""}, "price", "own price"),
    ({"provider: myrelay": "provider: myrelays"}, "provider", "is not one of"),
]


@pytest.mark.parametrize(("swap", "path", "problem"), BAD_DECLARATIONS)
def test_a_bad_declaration_fails_validate_with_the_field_path(cli, tmp_path, swap, path, problem):
    file = relay_file(tmp_path)
    text = file.read_text()
    for old, new in swap.items():
        assert old.replace("__", " ") in text, old
        text = text.replace(old.replace("__", " "), new, 1 if "source" in old else -1)
    file.write_text(text)
    r = cli("pricing", "validate", str(file))
    assert r.code == 3, r.out
    line = r.err.strip()
    assert "\n" not in line.split("\nhint")[0] and "Traceback" not in r.err
    assert str(file) in line and path in line and problem in line, line


def test_gen_at_a_relay_sends_its_own_key_to_its_own_base_url_and_saves_the_image(cli, relay, monkeypatch):
    server, file = relay
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-must-not-travel-0123")
    monkeypatch.delenv("IMGROUTE_TIME_SCALE")  # (refused while the OpenAI key would reach OpenAI itself)
    r = cli("gen", "a lighthouse", "--provider", "myrelay", "--pricing", str(file), "--out", "out", "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert (data["status"], data["provider"], data["model"]) == ("succeeded", "myrelay", "gpt-image-2")
    assert Path(data["files"][0]).is_file() and data["images"][0]["verified"]
    (sent,) = server.calls("/openai/v1/images/generations")
    assert sent.header("Authorization") == f"Bearer {RELAY_KEY}"
    assert sent.json()["model"] == "gpt-image-2" and sent.json()["prompt"] == "a lighthouse"
    assert server.charges == 1
    assert Decimal(data["actual_cost_usd"]) > 0  # from the relay's usage, at the relay's rates
    listed = cli("jobs", "--provider", "myrelay", "--json")
    assert listed.code == 0 and [j["job_id"] for j in listed.json()] == [data["job_id"]]


def test_edit_at_a_relay_uploads_the_image_to_its_edits_endpoint(cli, relay, tmp_path):
    server, file = relay
    (tmp_path / "in.png").write_bytes(make_image(1024, 1024))
    r = cli("edit", "make it blue", "--image", "in.png", "--provider", "myrelay", "--pricing", str(file), "--json")
    assert r.code == 0, r.err
    assert r.json()["provider"] == "myrelay"
    assert len(server.edits) == 1 and server.edits[0]["fields"]["model"] == "gpt-image-2"


def test_a_relay_key_can_be_stored_and_listed_when_the_home_file_declares_it(cli, relay, isolated_home, monkeypatch):
    _, file = relay
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "pricing.yaml").write_text(file.read_text())
    monkeypatch.delenv("MYRELAY_KEY")
    assert cli("keys", "set", "myrelay", "--value", RELAY_KEY).code == 0
    listed = {row["provider"]: row for row in cli("keys", "list", "--json").json()}
    assert listed["myrelay"]["env"] == "MYRELAY_KEY" and listed["myrelay"]["source"] == "file"
    r = cli("gen", "a lighthouse", "--provider", "myrelay", "--out", "out", "--json")
    assert r.code == 0, r.err


def test_resume_of_a_relay_job_needs_the_file_that_declares_it(cli, relay):
    server, file = relay
    server.inject("download", status=404, times=50)  # the image URLs fail for now
    r = cli("gen", "a lighthouse", "--provider", "myrelay", "--pricing", str(file), "--out", "out", "--json")
    job = r.json()["job_id"]
    assert r.code != 0
    without = cli("jobs", "resume", job)
    assert without.code == 3 and "no loaded pricing file declares it" in without.err and "--pricing" in without.err
    server.faults.clear()
    again = cli("jobs", "resume", job, "--pricing", str(file), "--json")
    assert again.code == 0, again.err
    assert again.json()[0]["status"] == "succeeded" and Path(again.json()[0]["files"][0]).is_file()
    assert server.charges == 1 and len(server.calls(server.path)) == 1  # never sent twice
