"""The Replicate fake, held to Replicate's official Python client (`replicate`, pinned in
pyproject's dev extra), pointed at the fake with `base_url` (official-clients.md) and used as its
users use it: create with and without `Prefer: wait`, get, wait, run and download, cancel,
`models.get`, the account. The client hides response headers, so an httpx event hook records them
(`Preference-Applied`); that is the only instrument.

`Prefer: wait` holds are kept short: the fake's jobs take a few hundred milliseconds
(`job_seconds`), and the one wait that runs out is a one-second wait.
"""

from __future__ import annotations

import httpx
import pytest
import replicate
from replicate.exceptions import ModelError, ReplicateError

from tests.fakes.server import image_info

MODEL = "openai/gpt-image-2"
INPUT = {"prompt": "a lighthouse", "quality": "low", "output_format": "png"}


@pytest.fixture
def fake(fake_servers):
    server = fake_servers["replicate"]
    server.reset()
    return server


@pytest.fixture
def answers():
    return []


@pytest.fixture
def client(fake, answers):
    sdk = replicate.Client(api_token=fake.key, base_url=fake.url, event_hooks={"response": [answers.append]})
    sdk.poll_interval = 0.01  # REPLICATE_POLL_INTERVAL, which users may set too
    return sdk


def downloaded(url: str) -> tuple:
    return image_info(httpx.get(url).content)


def test_create_without_wait_answers_starting_at_once(client, fake, answers):
    prediction = client.models.predictions.create(model=MODEL, input=INPUT)
    assert (prediction.status, prediction.output, prediction.model, prediction.version) == (
        "starting",
        None,
        MODEL,
        "hidden",
    )
    assert "preference-applied" not in answers[-1].headers
    assert prediction.urls["cancel"].endswith(f"/v1/predictions/{prediction.id}/cancel")
    prediction.wait()
    assert prediction.status == "succeeded" and downloaded(prediction.output[0]) == ("png", 1024, 1024, False)
    assert prediction.metrics["total_time"] >= 0 and prediction.completed_at


def test_create_with_prefer_wait_answers_the_finished_prediction(client, fake, answers):
    fake.job_seconds = 0.3  # the model takes 300 ms, well inside the wait
    prediction = client.models.predictions.create(model=MODEL, input=INPUT, wait=5)
    assert answers[-1].request.headers["Prefer"] == "wait=5"
    assert answers[-1].status_code == 201 and answers[-1].headers["Preference-Applied"] == "wait=5"
    assert prediction.status == "succeeded" and len(prediction.output) == 1
    assert fake.charges == 1 and len(fake.calls("/v1/predictions/")) == 0  # nothing polled


def test_a_wait_that_runs_out_answers_starting_then_the_client_polls(client, fake, answers):
    fake.job_seconds = 1.1  # just past the one-second wait
    prediction = client.models.predictions.create(model=MODEL, input=INPUT, wait=1)
    assert answers[-1].headers["Preference-Applied"] == "wait=1" and prediction.status == "starting"
    prediction.wait()
    assert prediction.status == "succeeded"


def test_run_waits_and_returns_the_output_urls(client, fake, answers):
    fake.job_seconds = 0.2
    output = client.run(MODEL, input={**INPUT, "number_of_images": 2, "aspect_ratio": "3:2"})
    assert answers[0].request.headers["Prefer"] == "wait" and answers[0].headers["Preference-Applied"] == "wait"
    # `run` wraps only https: and data: outputs in FileOutput; over loopback they stay URLs
    assert [downloaded(url) for url in output] == [("png", 1536, 1024, False)] * 2


def test_run_of_a_job_timed_in_polls_falls_back_to_polling(client, fake):
    fake.steps = 2
    output = client.run(MODEL, input=INPUT)
    assert len(output) == 1 and len(fake.calls("/v1/predictions/")) >= 1


def test_get_and_list(client, fake):
    created = client.models.predictions.create(model=MODEL, input=INPUT)
    fetched = client.predictions.get(created.id)
    assert (fetched.id, fetched.input, fetched.error) == (created.id, INPUT, None)
    assert created.id in [p.id for p in client.predictions.list().results]


def test_create_by_version_for_an_official_model(client):
    prediction = client.predictions.create(version=MODEL, input=INPUT)
    assert prediction.model == MODEL and prediction.status == "starting"


def test_cancel(client, fake):
    fake.job_seconds = 30  # still running when cancelled
    prediction = client.models.predictions.create(model=MODEL, input=INPUT)
    prediction.cancel()
    assert prediction.status == "canceled"
    assert client.predictions.get(prediction.id).status == "canceled" and fake.charges == 0


def test_a_failed_prediction_raises_the_model_error_from_run(client, fake):
    fake.outcome = "moderate"
    fake.job_seconds = 0.1
    with pytest.raises(ModelError) as failed:
        client.run(MODEL, input=INPUT)
    assert "(E005)" in str(failed.value)


def test_models_get_and_the_account(client):
    model = client.models.get(MODEL)
    assert (model.id, model.owner, model.name, model.visibility, model.latest_version) == (
        MODEL,
        "openai",
        "gpt-image-2",
        "public",
        None,
    )
    account = client.accounts.current()
    assert (account.type, account.username) == ("user", "imgroute-tests")


@pytest.mark.parametrize(
    ("call", "status", "title"),
    [
        (
            lambda c, f: replicate.Client(api_token="r8_wrong", base_url=f.url).accounts.current(),
            401,
            "Unauthenticated",
        ),
        (lambda c, f: c.predictions.get("no-such-prediction"), 404, "Not found"),
        (
            lambda c, f: c.models.predictions.create(model=MODEL, input={**INPUT, "aspect_ratio": "5:4"}),
            422,
            "Input validation failed",
        ),
        (
            lambda c, f: c.predictions.create(version="someone/else", input=INPUT),
            422,
            "Invalid version or not permitted",
        ),
    ],
)
def test_errors_are_problem_details(client, fake, call, status, title):
    with pytest.raises(ReplicateError) as caught:
        call(client, fake)
    assert (caught.value.status, caught.value.title) == (status, title)
