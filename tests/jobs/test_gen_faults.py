"""Every fault ends as described: no double submit, no lost image, no traceback, the right exit code."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from imgroute import policy
from imgroute.providers.registry import BASE_URL_ENV
from tests.helpers import assert_image, gen, only


def no_partial_files():
    return [p for p in Path(".").rglob("*") if p.name.startswith(".imgroute-")]


def keys_never_leak(fakes, *texts):
    for fake in fakes.values():
        for text in texts:
            assert fake.key not in text


# -- retried, same provider -------------------------------------------------------------------


def test_429_with_retry_after_on_submit_is_waited_out(cli, fakes):
    fakes["openai"].inject("submit", status=429, retry_after=1, times=2)
    r = gen(cli, "--quality", "low", *only(fakes, "openai"))
    assert r.code == 0, r.err
    assert len(fakes["openai"].calls("/v1/images/generations")) == 3
    assert fakes["openai"].charges == 1


def test_5xx_on_status_polls_is_retried(cli, fakes):
    fakes["kie"].inject("poll", status=503, times=2)
    fakes["kie"].inject("poll", status=500, times=1)
    r = gen(cli, *only(fakes, "kie"))
    assert r.code == 0, r.err
    assert fakes["kie"].charges == 1


def test_malformed_status_answer_keeps_waiting(cli, fakes):
    fakes["fal"].inject("poll", body=b"{not json", times=2)
    r = gen(cli, "--quality", "low", *only(fakes, "fal"))
    assert r.code == 0, r.err
    assert fakes["fal"].charges == 1


def test_truncated_download_is_fetched_again(cli, fakes):
    fakes["kie"].inject("download", truncate=True)
    r = gen(cli, *only(fakes, "kie"))
    assert r.code == 0, r.err
    assert_image(r.json()["files"][0], (1024, 1024))
    assert len(fakes["kie"].calls("/files/")) == 2


def test_connection_refused_is_retried_then_moves_on(cli, fakes, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    monkeypatch.setenv(BASE_URL_ENV["openai"], f"http://127.0.0.1:{dead}")
    r = gen(cli, "--quality", "low")
    assert r.code == 0, r.err
    data = r.json()
    assert data["provider"] == "piapi"  # next cheapest at low quality
    assert data["attempts"][0]["provider"] == "openai" and "could not connect" in data["attempts"][0]["error"]


# -- moved to the next offer ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "setup", "needle"),
    [
        ("openai", lambda f: f.inject("submit", status=500, times=99), "HTTP 500"),
        ("openai", lambda f: f.inject("submit", status=429, retry_after=500, times=99), "HTTP 429"),
        ("openai", lambda f: setattr(f, "credits", 0), "quota"),
        ("openai", lambda f: setattr(f, "key", "sk-another-key-entirely-000000"), "HTTP 401"),
    ],
)
def test_provider_trouble_moves_the_job_to_the_next_offer(cli, fakes, provider, setup, needle):
    setup(fakes[provider])
    r = gen(cli, "--quality", "low")
    assert r.code == 0, r.err
    data = r.json()
    assert data["provider"] == "piapi"
    assert data["attempts"][0]["state"] == "trouble" and needle in data["attempts"][0]["error"]
    assert fakes["openai"].charges == 0 and fakes["piapi"].charges == 1
    keys_never_leak(fakes, r.out, r.err)


def test_fallback_is_said_in_the_human_summary(cli, fakes):
    fakes["kie"].credits = 0
    r = cli("gen", "a lighthouse", "--out", "out", "--quality", "high")
    assert r.code == 0, r.err
    assert "kie/gpt-image-2-text-to-image: trouble: kie: code 402: Credits insufficient" in r.out
    assert "piapi/gpt-image-2-preview (after 1 fallback)" in r.out


@pytest.mark.parametrize(
    ("provider", "args"),
    [
        (
            "apiframe",
            [
                "--quality",
                "low",
                "--plan",
                "apiframe=growth",
                "--exclude",
                "openai",
                "--exclude",
                "piapi",
                "--exclude",
                "fal",
                "--exclude",
                "replicate",  # (added later: cheaper than Apiframe at low)
            ],
        ),
        ("fal", ["--quality", "low", "--exclude", "openai", "--exclude", "piapi"]),
        ("kie", ["--quality", "high"]),
    ],
)
def test_insufficient_credits_moves_on(cli, fakes, provider, args):
    fakes[provider].credits = 0
    r = gen(cli, *args)
    assert r.code == 0, r.err
    data = r.json()
    assert data["provider"] != provider
    assert data["attempts"][0]["provider"] == provider and fakes[provider].charges == 0


def test_every_offer_in_trouble_exits_5(cli, fakes):
    for fake in fakes.values():
        fake.inject("submit", status=503, times=99)
    r = gen(cli, "--quality", "low")
    assert r.code == 5
    assert r.err.startswith("error: no provider could take the job")
    assert sum(f.charges for f in fakes.values()) == 0
    assert r.json()["status"] == "failed"


def test_wrong_key_echoed_by_the_provider_never_reaches_output_or_ledger(cli, fakes, isolated_home, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-0123456789abcdefghijkl")
    r = gen(cli, "--quality", "low")
    assert r.code == 0
    everything = r.out + r.err + (isolated_home / "ledger.sqlite").read_bytes().decode("latin-1")
    for path in Path("out").glob("*.json"):
        everything += path.read_text()
    assert "sk-wrong-0123456789abcdefghijkl" not in everything
    assert "0123456789abcdef" not in everything  # not even the fragment OpenAI echoes
    assert "[redacted]" in r.json()["attempts"][0]["error"]


# -- unknown submit: never sent twice ---------------------------------------------------------


def test_sync_submit_answer_lost_is_unknown_and_not_resent(cli, fakes):
    fakes["openai"].inject("submit", drop=True)
    r = gen(cli, "--quality", "low")
    assert r.code == 5
    assert "may have been created and charged" in r.err
    assert fakes["openai"].charges == 1  # billed once, by the lost answer
    assert len(fakes["openai"].calls("/v1/images/generations")) == 1
    assert fakes["piapi"].requests == []  # not sent anywhere else either
    assert r.json()["status"] == "unknown"


def test_async_submit_that_times_out_is_unknown_with_one_job_at_the_fake(cli, fakes, monkeypatch):
    monkeypatch.setattr(policy, "READ_TIMEOUT_S", 0.3)
    fakes["kie"].inject("submit", delay=1.0)  # Kie creates the task, the answer comes too late
    r = gen(cli, "--quality", "high")
    assert r.code == 5 and "ReadTimeout" in r.err
    fakes["kie"].settle()  # let the fake finish its slow answer
    assert fakes["kie"].charges == 1
    assert len(fakes["kie"].calls("/api/v1/jobs/createTask")) == 1
    assert fakes["piapi"].requests == []


def test_malformed_submit_answer_is_unknown(cli, fakes):
    fakes["fal"].inject("submit", status=200, body=b"<html>gateway</html>")
    r = gen(cli, "--quality", "low", *only(fakes, "fal"))
    assert r.code == 5 and "could not be read" in r.err
    assert len(fakes["fal"].calls("/openai/gpt-image-2", "POST")) == 1


def test_apiframe_lost_answer_is_replayed_by_idempotency_key(cli, fakes):
    fakes["apiframe"].inject("submit", drop=True)
    r = gen(cli, "--quality", "low", *only(fakes, "apiframe"))
    assert r.code == 0, r.err
    posts = fakes["apiframe"].calls("/v2/images/generate")
    assert len(posts) == 2
    assert posts[0].header("Idempotency-Key") == posts[1].header("Idempotency-Key")
    assert fakes["apiframe"].charges == 1


def test_apiframe_5xx_submit_is_retried_with_the_same_key(cli, fakes):
    fakes["apiframe"].inject("submit", status=503, times=1)
    r = gen(cli, "--quality", "low", *only(fakes, "apiframe"))
    assert r.code == 0, r.err
    assert fakes["apiframe"].charges == 1


# -- failed at the provider: not retried elsewhere --------------------------------------------


@pytest.mark.parametrize(
    ("provider", "args", "outcome", "needle"),
    [
        ("kie", [], "fail", "Generation failed"),
        ("kie", [], "moderate", "flagged by the content policy"),
        ("fal", ["--quality", "low"], "moderate", "flagged by the content checker"),
        ("apiframe", ["--quality", "low"], "moderate", "credits refunded"),
        ("openai", ["--quality", "low"], "moderate", "rejected by the safety system"),
    ],
)
def test_failed_or_moderated_job_exits_6_and_goes_nowhere_else(cli, fakes, provider, args, outcome, needle):
    fakes[provider].outcome = outcome
    r = gen(cli, *args, *only(fakes, provider))
    assert r.code == 6, r.err
    assert needle in r.err and len(r.err.splitlines()) == 1
    assert r.json()["status"] == "failed"
    for other, fake in fakes.items():
        if other != provider:
            assert fake.requests == []


def test_moderation_hint_says_change_the_prompt(cli, fakes):
    fakes["kie"].outcome = "moderate"
    r = cli("gen", "x", "--out", "out", *only(fakes, "kie"))
    assert r.code == 6 and "change the prompt" in r.err


# -- results that cannot be delivered ---------------------------------------------------------


def test_expired_result_url_exits_7(cli, fakes):
    fakes["piapi"].inject("download", status=404, times=99)
    r = gen(cli, "--quality", "low", *only(fakes, "piapi"))
    assert r.code == 7 and "expired or missing" in r.err
    assert no_partial_files() == []


def test_always_truncated_download_exits_7_and_leaves_nothing_half_written(cli, fakes):
    fakes["kie"].inject("download", truncate=True, times=99)
    r = gen(cli, *only(fakes, "kie"))
    assert r.code == 7
    assert no_partial_files() == [] and list(Path("out").glob("*.png")) == []


def test_wrong_size_is_saved_but_reported(cli, fakes):
    fakes["openai"].image_size = (1024, 1536)
    r = gen(cli, "--quality", "low", *only(fakes, "openai"))
    assert r.code == 7
    assert "is 1024x1536, not the 1024x1024 requested" in r.err
    data = r.json()
    assert data["images"][0]["verified"] is False and Path(data["files"][0]).is_file()  # paid for: kept


def test_wrong_format_is_reported(cli, fakes):
    fakes["kie"].image_format = "jpeg"
    r = gen(cli, *only(fakes, "kie"))
    assert r.code == 7 and "is jpeg, not the png requested" in r.err


def test_job_that_never_finishes_times_out_with_exit_5(cli, fakes):
    fakes["kie"].steps = 10**9
    r = gen(cli, "--timeout", "0.5", *only(fakes, "kie"))
    assert r.code == 5 and "timed out after 0.5s" in r.err
    assert r.json()["status"] == "running"
    assert fakes["kie"].charges == 1 and len(fakes["kie"].calls("/api/v1/jobs/createTask")) == 1


def test_kie_partial_failure_keeps_the_images_it_made(cli, fakes):
    # Task 2 of 3 is refused for credits after task 1 was created: task 1's image is delivered,
    # the remaining two images move to the next offer.
    kie = fakes["kie"]
    kie.credits = 1
    r = gen(cli, "--n", "3", "--quality", "high")
    assert r.code == 0, r.err
    data = r.json()
    assert len(data["files"]) == 3
    assert [a["images"] for a in data["attempts"]] == [1, 2]
    assert kie.charges == 1 and fakes["piapi"].images_billed == 2


# -- what a fallback and a failed download say -----------------------------------------------------


def test_the_fallback_summary_shows_the_estimate_of_the_offer_that_delivered(cli, fakes):
    fakes["kie"].credits = 0  # kie ($0.03) refuses; piapi's preview ($0.10) delivers
    r = cli("gen", "x", "--quality", "high", "--out", "o", "--provider", "kie,piapi")
    assert r.code == 0, r.err
    assert "piapi/gpt-image-2-preview (after 1 fallback): estimated $0.10" in r.out


def test_a_failed_download_names_the_job_and_the_command_that_recovers_it(cli, fakes):
    fakes["kie"].inject("download", status=404, times=99)
    r = cli("gen", "x", "--out", "o", "--json", *only(fakes, "kie"))
    job = r.json()["job_id"]
    assert r.code == 7 and "saved as delivered" not in r.err
    assert job in r.err and f"imgroute jobs resume {job}" in r.err
