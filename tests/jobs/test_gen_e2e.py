"""`imgroute gen` end to end: the real CLI, real HTTP on 127.0.0.1, one fake per provider."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest

from imgroute.providers.registry import KEY_ENV
from tests.helpers import assert_image, gen, nothing_sent, only

HAPPY = [
    # (provider, extra args, expected model, expected size)
    ("openai", ["--quality", "low"], "gpt-image-2", (1024, 1024)),
    ("fal", ["--quality", "medium", "--size", "1536x1024"], "openai/gpt-image-2", (1536, 1024)),
    ("piapi", ["--quality", "low"], "gpt-image-2", (1024, 1024)),
    ("piapi", ["--quality", "high"], "gpt-image-2-preview", (1024, 1024)),
    ("kie", ["--aspect", "16:9", "--resolution", "2K"], "gpt-image-2-text-to-image", (2048, 1152)),
    ("apiframe", ["--quality", "medium", "--aspect", "3:2"], "gpt-image-2", (1536, 1024)),
]


@pytest.mark.parametrize(("provider", "args", "model", "size"), HAPPY)
def test_every_provider_and_model_delivers_a_verified_image(cli, fakes, provider, args, model, size):
    r = gen(cli, *args, *only(fakes, provider))
    assert r.code == 0, r.err
    data = r.json()
    assert (data["status"], data["provider"], data["model"]) == ("succeeded", provider, model)
    assert len(data["files"]) == 1
    assert_image(data["files"][0], size)
    assert data["images"][0]["verified"] is True
    sidecar = json.loads(Path(data["files"][0] + ".json").read_text())
    assert sidecar["prompt"] == "a lighthouse at dusk" and sidecar["provider"] == provider
    assert sidecar["job_id"] == data["job_id"]
    assert Path(data["files"][0]).name.startswith(f"a-lighthouse-at-dusk-{provider}-1")
    assert fakes[provider].charges == 1
    for other, fake in fakes.items():
        if other != provider:
            assert fake.requests == [], f"{other} was called"


@pytest.mark.parametrize(
    ("provider", "args", "n", "charges"),
    [
        ("openai", ["--quality", "low"], 3, 1),
        ("fal", ["--quality", "low"], 2, 1),
        ("kie", [], 3, 3),  # one image per task
        ("apiframe", ["--quality", "low"], 2, 1),
        ("piapi", ["--quality", "high"], 2, 1),
    ],
)
def test_n_images(cli, fakes, provider, args, n, charges):
    r = gen(cli, "--n", str(n), *args, *only(fakes, provider))
    assert r.code == 0, r.err
    files = r.json()["files"]
    assert len(files) == n and len(set(files)) == n
    for path in files:
        assert_image(path, (1024, 1024))
    assert fakes[provider].charges == charges
    assert fakes[provider].images_billed == n


def test_request_bodies_and_auth_headers_are_as_documented(cli, fakes):
    for provider, args in [
        ("openai", ["--quality", "low"]),
        ("fal", ["--quality", "low"]),
        ("kie", []),
        ("apiframe", ["--quality", "low"]),
    ]:
        assert gen(cli, *args, *only(fakes, provider)).code == 0
    openai_req = fakes["openai"].calls("/v1/images/generations")[0]
    assert openai_req.header("Authorization") == f"Bearer {fakes['openai'].key}"
    assert openai_req.json() | {"safety_identifier": "x"} == {  # `user` is deprecated for it
        "model": "gpt-image-2",
        "prompt": "a lighthouse at dusk",
        "size": "1024x1024",
        "quality": "low",
        "n": 1,
        "output_format": "png",
        "safety_identifier": "x",
    }
    fal_req = fakes["fal"].calls("/openai/gpt-image-2", "POST")[0]
    assert fal_req.header("Authorization") == f"Key {fakes['fal'].key}"
    assert fal_req.json()["image_size"] == {"width": 1024, "height": 1024}
    assert fal_req.json()["quality"] == "low"
    kie_req = fakes["kie"].calls("/api/v1/jobs/createTask")[0]
    assert kie_req.json() == {
        "model": "gpt-image-2-text-to-image",
        "input": {"prompt": "a lighthouse at dusk", "aspect_ratio": "1:1", "resolution": "1K"},
    }
    api_req = fakes["apiframe"].calls("/v2/images/generate")[0]
    assert api_req.header("X-API-Key") == fakes["apiframe"].key
    assert api_req.header("Idempotency-Key")
    assert api_req.json()["gptImage2Params"] == {
        "quality": "low",
        "aspect_ratio": "1:1",
        "output_format": "png",
        "number_of_images": 1,
    }


def test_actual_costs_come_from_what_each_provider_reports(cli, fakes):
    costs = {}
    for provider, args in [
        ("openai", ["--quality", "high"]),
        ("fal", ["--quality", "high"]),
        ("kie", []),
        ("apiframe", ["--quality", "high", "--plan", "apiframe=growth"]),
    ]:
        data = gen(cli, *args, *only(fakes, provider)).json()
        costs[provider] = (data["actual_cost_usd"], data["actual_cost_source"])
    assert costs["openai"] == (0.210775, "usage tokens")  # 7024 image + 11 text tokens reported by the fake
    assert costs["fal"] == (0.22, "token model at the delivered size")
    assert costs["kie"] == (0.03, "list price")
    assert costs["apiframe"] == (0.088019, "credits charged")


def test_quiet_prints_only_paths(cli, fakes):
    r = cli("gen", "a lighthouse", "--out", "out", "--quiet", "--n", "2", "--quality", "low", *only(fakes, "openai"))
    assert r.code == 0
    lines = r.out.splitlines()
    assert len(lines) == 2 and all(Path(line).is_file() for line in lines)


def test_human_summary(cli, fakes):
    r = cli("gen", "a lighthouse", "--out", "out", "--quality", "low", *only(fakes, "openai"))
    assert r.code == 0
    assert "openai/gpt-image-2 (cheapest offer you have a key for): estimated $0.0059, actual" in r.out
    assert "out/a-lighthouse-openai-1.png" in r.out


def test_never_overwrites_an_existing_file(cli, fakes):
    out = Path("out")
    out.mkdir()
    (out / "a-lighthouse-at-dusk-openai-1.png").write_bytes(b"mine")
    data = gen(cli, "--quality", "low", *only(fakes, "openai")).json()
    # the next free index (issue 13: a second run used to name it ...-openai-1-2.png)
    assert data["files"] == ["out/a-lighthouse-at-dusk-openai-2.png"]
    assert (out / "a-lighthouse-at-dusk-openai-1.png").read_bytes() == b"mine"


def test_name_template_and_ledger_record(cli, fakes, isolated_home):
    data = gen(cli, "--quality", "low", "--name", "{provider}_{job}_{index}", *only(fakes, "openai")).json()
    assert Path(data["files"][0]).name == f"openai_{data['job_id']}_1.png"
    db = sqlite3.connect(isolated_home / "ledger.sqlite")
    state, actual, source = db.execute("SELECT state, actual_usd, actual_source FROM jobs").fetchone()
    assert (state, source) == ("succeeded", "usage tokens")
    (task_state,) = db.execute("SELECT state FROM tasks").fetchone()
    assert task_state == "succeeded"
    (sha,) = db.execute("SELECT sha256 FROM files").fetchone()
    assert sha == data["images"][0]["sha256"]


# -- keys and routing --------------------------------------------------------------------------


def test_gen_routes_only_to_offers_with_a_key_and_says_what_it_skipped(cli, fakes, monkeypatch):
    monkeypatch.delenv(KEY_ENV["kie"])
    data = gen(cli, "--quality", "high").json()
    assert data["provider"] == "piapi" and data["model"] == "gpt-image-2-preview"
    assert data["skipped_without_key"][0]["provider"] == "kie"
    assert fakes["kie"].requests == []


def test_no_key_at_all_is_a_configuration_error(cli, fakes, monkeypatch):
    for env in KEY_ENV.values():
        monkeypatch.delenv(env, raising=False)
    r = gen(cli, "--quality", "high")
    assert r.code == 3
    assert r.err.startswith("error: no API key for any provider that can deliver this (cheapest: kie")
    assert "KIE_API_KEY" in r.err


def test_dry_run_sends_nothing_and_redacts_the_key(cli, fakes):
    r = cli("gen", "a lighthouse", "--dry-run", "--quality", "low", *only(fakes, "openai"))
    assert r.code == 0
    assert "POST " + fakes["openai"].url + "/v1/images/generations" in r.out
    assert "Authorization: Bearer [redacted]" in r.out
    assert fakes["openai"].key not in r.out
    assert all(f.requests == [] for f in fakes.values())
    data = cli("gen", "a lighthouse", "--dry-run", "--json", *only(fakes, "apiframe")).json()
    assert data["request"]["headers"]["X-API-Key"] == "[redacted]"
    assert data["request"]["body"]["gptImage2Params"]["aspect_ratio"] == "1:1"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--name", "{nope}"], "--name '{nope}'"),
        (["--format", "bmp"], "--format 'bmp' is not an image format"),
        (["--timeout", "0"], "--timeout 0 must be above zero"),
    ],
)
def test_gen_bad_input(cli, fakes, args, needle):
    r = cli("gen", "x", *args)
    assert r.code == 2 and needle in r.err and len(r.err.splitlines()) == 1
    assert all(f.requests == [] for f in fakes.values())


def test_unwritable_out_dir_is_refused_before_spending(cli, fakes):
    Path("blocker").write_text("a file, not a directory")
    r = cli("gen", "x", "--out", "blocker/sub")
    assert r.code == 2 and "cannot write images to blocker/sub" in r.err
    assert all(f.requests == [] for f in fakes.values())


def test_b64_results_from_piapi_are_decoded(cli, fakes, monkeypatch):
    # PiAPI may answer with base64 instead of URLs; the adapter reads both.
    fake = fakes["piapi"]
    original = fake.answer

    def b64_answer(body, job_id, n, w, h, fmt):
        answer = original(body, job_id, n, w, h, fmt)
        answer["data"] = [{"b64_json": base64.b64encode(fake.image_bytes(d["url"])).decode()} for d in answer["data"]]
        return answer

    monkeypatch.setattr(fake, "answer", b64_answer)
    data = gen(cli, "--quality", "low", *only(fakes, "piapi")).json()
    assert data["status"] == "succeeded"
    assert fake.calls("/files/") == []


# -- refusals, failures, and what the summary says -------------------------------------------------


@pytest.mark.parametrize("timeout", ["nan", "inf", "-1"])
def test_a_timeout_that_is_not_a_number_of_seconds_is_refused(cli, fakes, timeout):
    r = cli("gen", "x", "--timeout", timeout, "--out", "out", *only(fakes, "kie"))
    assert r.code == 2 and len(r.err.splitlines()) == 1 and "--timeout" in r.err and nothing_sent(fakes)


def test_gen_that_finds_no_offer_says_why_and_json_gets_the_object(cli, fakes):
    r = cli("gen", "x", "--aspect", "9:1", "--out", "out")
    assert r.code == 4 and "table above" not in r.err
    assert "kie/gpt-image-2-text-to-image: aspect 9:1 not offered" in r.err
    data = cli("gen", "x", "--aspect", "9:1", "--out", "out", "--json").json()
    assert data["status"] == "failed" and data["error"].startswith("no offer can deliver")
    assert {q["offer"] for q in data["reasons"]} >= {"kie/gpt-image-2-text-to-image", "openai/gpt-image-2"}
    assert "table above" not in cli("quote", "x", "--aspect", "9:1", "--json").err


def test_gen_json_prints_its_object_on_every_failure(cli, fakes, monkeypatch):
    from imgroute.providers.registry import KEY_ENV

    for env in KEY_ENV.values():
        monkeypatch.delenv(env, raising=False)
    r = cli("gen", "x", "--out", "out", "--json")
    assert r.code == 3 and r.json()["error"].startswith("no API key") and r.json()["job_id"] is None


def test_the_summary_does_not_claim_a_choice_that_provider_forced(cli, fakes):
    r = cli("gen", "x", "--quality", "high", "--out", "o", "--provider", "openai")
    assert "cheapest among --provider openai" in r.out and "you have a key for" not in r.out


# -- jobs larger than one request, and the files they leave ----------------------------------------


def test_a_job_larger_than_one_request_is_sent_as_several(cli, fakes):
    r = cli("gen", "x", "--quality", "low", "--n", "5", "--out", "out", "--json", *only(fakes, "fal"))
    assert r.code == 0, r.err
    assert len(r.json()["files"]) == 5 and len(fakes["fal"].calls("/openai/gpt-image-2", "POST")) == 2
    shown = cli("jobs", "show", r.json()["job_id"], "--json").json()
    assert [t["images"] for t in shown["tasks"]] == [4, 1]  # journaled per request
    r = cli("gen", "x", "--quality", "low", "--n", "11", "--out", "out", "--json", *only(fakes, "openai"))
    assert r.code == 0, r.err
    assert len(r.json()["files"]) == 11 and fakes["openai"].charges == 2


def test_a_second_run_takes_the_next_free_index(cli, fakes):
    first = cli("gen", "x", "--out", "o", "--json", *only(fakes, "kie")).json()["files"]
    second = cli("gen", "x", "--n", "2", "--out", "o", "--json", *only(fakes, "kie")).json()["files"]
    assert [f.rsplit("/", 1)[1] for f in first + second] == ["x-kie-1.png", "x-kie-2.png", "x-kie-3.png"]
