"""Each fault against each provider: the outcome must be the same whoever the provider is."""

from __future__ import annotations

import pytest

from tests.helpers import assert_image, gen, only

# provider -> (args that route there, the size it delivers)
ROUTES = {
    "openai": (["--quality", "low"], (1024, 1024)),
    "fal": (["--quality", "low"], (1024, 1024)),
    "piapi": (["--quality", "low"], (1024, 1024)),
    "kie": ([], (1024, 1024)),
    "apiframe": (["--quality", "low"], (1024, 1024)),
    "replicate": (["--quality", "low"], (1024, 1024)),
    "azure": (["--quality", "low"], (1024, 1024)),
    "openrouter": (["--quality", "low"], (1024, 1024)),
}
PROVIDERS = list(ROUTES)
# Synchronous providers answer with the images, so they have no status polls and some no downloads.
POLLED = ["fal", "kie", "apiframe", "replicate"]
DOWNLOADED = ["fal", "piapi", "kie", "apiframe", "replicate"]


@pytest.fixture(autouse=True)
def set_up(request, fake_servers, monkeypatch):
    """The providers whose fakes are opt-in (conftest.OPT_IN) set up for the tests that are theirs."""
    from tests.conftest import OPT_IN, point_at

    provider = getattr(request.node, "callspec", None) and request.node.callspec.params.get("provider")
    if provider in OPT_IN:
        point_at(fake_servers[provider], monkeypatch)


def run(cli, fakes, provider, *extra):
    args, _ = ROUTES[provider]
    return gen(cli, *args, *extra, *only(fakes, provider))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_on_submit_then_success(cli, fakes, provider):
    fakes[provider].inject("submit", status=429, retry_after=1)
    r = run(cli, fakes, provider)
    assert r.code == 0, r.err
    assert fakes[provider].charges == 1


@pytest.mark.parametrize("provider", POLLED)
def test_5xx_and_429_on_status_then_success(cli, fakes, provider):
    fakes[provider].inject("poll", status=500)
    fakes[provider].inject("poll", status=429, retry_after=1)
    r = run(cli, fakes, provider)
    assert r.code == 0, r.err
    assert fakes[provider].charges == 1


@pytest.mark.parametrize("provider", DOWNLOADED)
def test_truncated_download_once_then_success(cli, fakes, provider):
    fakes[provider].inject("download", truncate=True)
    r = run(cli, fakes, provider)
    assert r.code == 0, r.err
    assert_image(r.json()["files"][0], ROUTES[provider][1])


@pytest.mark.parametrize("provider", DOWNLOADED)
def test_expired_download_exits_7(cli, fakes, provider):
    fakes[provider].inject("download", status=404, times=99)
    r = run(cli, fakes, provider)
    assert r.code == 7, r.err
    assert fakes[provider].charges == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_wrong_key_is_trouble_not_a_charge(cli, fakes, provider):
    fakes[provider].key = "a-completely-different-key-000"
    r = run(cli, fakes, provider)
    assert r.code == 5, r.err  # the only provider allowed is in trouble
    assert "no provider could take the job" in r.err
    assert fakes[provider].charges == 0
    assert fakes[provider].initial[0] not in r.out + r.err


@pytest.mark.parametrize("provider", PROVIDERS)
def test_insufficient_credits_is_trouble_not_a_charge(cli, fakes, provider):
    fakes[provider].credits = 0
    r = run(cli, fakes, provider)
    assert r.code == 5, r.err
    assert fakes[provider].charges == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_moderated_job_exits_6(cli, fakes, provider):
    fakes[provider].outcome = "moderate"
    r = run(cli, fakes, provider)
    assert r.code == 6, r.err
    assert "change the prompt" in r.err


@pytest.mark.parametrize("provider", PROVIDERS)
def test_lost_submit_answer_is_never_resent_blindly(cli, fakes, provider):
    fakes[provider].inject("submit", drop=True)
    r = run(cli, fakes, provider)
    submits = [q for q in fakes[provider].requests if q.method == "POST"]
    if provider == "apiframe":  # replayed under the same Idempotency-Key: one job, delivered
        assert r.code == 0, r.err
        assert len(submits) == 2 and fakes[provider].charges == 1
    else:
        assert r.code == 5 and len(submits) == 1
        # exactly one job exists at the provider (fal bills it when it runs; the others already did)
        assert max(fakes[provider].charges, len(fakes[provider].jobs)) == 1
        assert r.json()["status"] == "unknown"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_submit_answer(cli, fakes, provider):
    fakes[provider].inject("submit", status=200, body=b"{not json")
    r = run(cli, fakes, provider)
    submits = [q for q in fakes[provider].requests if q.method == "POST"]
    if provider == "apiframe":
        assert r.code == 0, r.err
    else:
        assert r.code == 5 and len(submits) == 1
