"""The fal fake, held to fal's official Python client (`fal-client`, pinned in pyproject's dev extra),
used as its users use it: submit, status with and without logs, subscribe, result, cancel, on
both the generation and the edit endpoint.

The client builds queue URLs as `https://{FAL_QUEUE_RUN_HOST}/` (https only). The redirect here is
as narrow as it gets: the one module global it reads at call time for queue URLs,
`fal_client.client.QUEUE_URL_FORMAT` (read by `SyncClient.submit` and
`SyncRequestHandle.from_request_id`), set with monkeypatch for one test and restored after it.
The synchronous `fal.run` URL and fal's REST and CDN hosts are left alone: nothing here uses them.
"""

from __future__ import annotations

import base64

import fal_client
import pytest
from fal_client import Completed, InProgress, Queued

from tests.fakes.server import image_info, make_image

GENERATE, EDIT = "openai/gpt-image-2", "openai/gpt-image-2/edit"
PHOTO = make_image(1536, 1024, "png", seed=9)
PHOTO_URI = "data:image/png;base64," + base64.b64encode(PHOTO).decode()
ARGS = {GENERATE: {"prompt": "a lighthouse"}, EDIT: {"prompt": "make it blue", "image_urls": [PHOTO_URI]}}


@pytest.fixture
def fake(fake_servers, monkeypatch):
    server = fake_servers["fal"]
    server.reset()
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{server.url}/")
    return server


@pytest.fixture
def client(fake):
    return fal_client.SyncClient(key=fake.key)


def image_of(fake, result: dict) -> tuple:
    url = result["images"][0]["url"]
    return image_info(fake.image_bytes(url))


@pytest.mark.parametrize("endpoint", [GENERATE, EDIT])
def test_submit_then_status_with_and_without_logs(client, fake, endpoint):
    fake.steps = 3  # queued, then in progress, then completed
    handle = client.submit(endpoint, ARGS[endpoint])
    assert handle.status_url.endswith(f"/openai/gpt-image-2/requests/{handle.request_id}/status")  # owner/app only
    assert handle.status(with_logs=True) == Queued(position=0)
    in_progress = handle.status(with_logs=True)
    assert isinstance(in_progress, InProgress) and in_progress.logs[0]["message"] == "Generating image"
    completed = handle.status()
    assert completed == Completed(logs=None, metrics={"inference_time": 1.5})
    assert [r.query.get("logs") for r in fake.calls("/openai/gpt-image-2/requests")] == [["true"], ["true"], ["false"]]
    assert handle.get()["images"][0]["content_type"] == "image/png"


@pytest.mark.parametrize(
    ("endpoint", "size"),
    [(GENERATE, (1024, 768)), (EDIT, (1536, 1024))],  # fal's defaults: landscape_4_3; on /edit, auto
)
def test_subscribe_with_only_a_prompt_takes_fals_defaults(client, fake, endpoint, size):
    fake.steps = 3
    updates, enqueued = [], []
    result = client.subscribe(
        endpoint, ARGS[endpoint], with_logs=True, on_queue_update=updates.append, on_enqueue=enqueued.append
    )
    assert [type(update).__name__ for update in updates] == ["Queued", "InProgress", "Completed"]
    assert len(enqueued) == 1 and fake.jobs[enqueued[0]]["quality"] == "high"
    image = result["images"][0]
    assert (image["width"], image["height"], image["content_type"]) == (*size, "image/png")
    assert image_of(fake, result) == ("png", *size, False)
    assert fake.charges == 1


@pytest.mark.parametrize(
    ("arguments", "size", "fmt"),
    [
        ({"image_size": "square_hd"}, (1024, 1024), "png"),
        ({"image_size": "portrait_4_3", "output_format": "jpeg"}, (768, 1024), "jpeg"),
        ({"image_size": "auto", "quality": "auto"}, (1024, 1024), "png"),
        (
            {"image_size": {"width": 1536, "height": 864}, "quality": "low", "output_format": "webp"},
            (1536, 864),
            "webp",
        ),
        ({"image_size": {"width": 3840, "height": 2160}, "quality": "medium"}, (3840, 2160), "png"),
    ],
)
def test_result_of_each_documented_input(client, fake, arguments, size, fmt):
    handle = client.submit(GENERATE, {"prompt": "a lighthouse", **arguments})
    result = client.result(GENERATE, handle.request_id)
    image = result["images"][0]
    assert (image["width"], image["height"], image["content_type"]) == (*size, f"image/{fmt}")
    assert image_of(fake, result)[:3] == (fmt, *size)


def test_several_images_and_sync_mode_data_uris(client, fake):
    result = client.subscribe(
        GENERATE, {"prompt": "a lighthouse", "num_images": 2, "image_size": "square_hd", "sync_mode": True}
    )
    assert len(result["images"]) == 2 and all(i["url"].startswith("data:image/png;base64,") for i in result["images"])
    assert fake.images_billed == 2


@pytest.mark.parametrize("endpoint", [GENERATE, EDIT])
def test_cancel(client, fake, endpoint):
    handle = client.submit(endpoint, ARGS[endpoint])
    handle.cancel()
    status = handle.status(with_logs=True)
    assert isinstance(status, Completed) and status.error == "Request cancelled"
    with pytest.raises(fal_client.FalClientHTTPError) as cancelled:
        handle.get()
    assert cancelled.value.status_code == 400
    with pytest.raises(fal_client.FalClientHTTPError) as again:
        client.cancel(GENERATE, handle.request_id)
    assert again.value.status_code == 400 and "ALREADY_COMPLETED" in str(again.value)
    assert fake.charges == 0


@pytest.mark.parametrize(
    ("endpoint", "arguments", "status", "field"),
    [
        (GENERATE, {"prompt": "x", "image_size": {"width": 1920, "height": 1080}}, 422, "image_size"),
        (GENERATE, {"prompt": "x", "num_images": 5}, 422, "num_images"),
        (GENERATE, {"image_size": "square_hd"}, 422, "prompt"),
        (EDIT, {"prompt": "x"}, 422, "image_urls"),
        (EDIT, {"prompt": "x", "image_urls": ["data:image/png;base64,AAAA"]}, 422, "image_urls"),
    ],
)
def test_refused_input_is_a_422_with_fals_detail_list(client, endpoint, arguments, status, field):
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        client.submit(endpoint, arguments)
    error = caught.value
    assert error.status_code == status and error.response_headers["x-fal-request-id"]
    assert field in [problem["loc"][1] for problem in error.response.json()["detail"]]


def test_errors_carry_the_request_id(client, fake):
    with pytest.raises(fal_client.FalClientHTTPError) as wrong_key:
        fal_client.SyncClient(key="fal-wrong:0000").submit(GENERATE, ARGS[GENERATE])
    assert wrong_key.value.status_code == 401 and wrong_key.value.response_headers["x-fal-request-id"]
    with pytest.raises(fal_client.FalClientHTTPError) as unknown:
        client.status(GENERATE, "no-such-request")
    assert unknown.value.status_code == 404 and unknown.value.response_headers["x-fal-request-id"]
    fake.credits = 0
    with pytest.raises(fal_client.FalClientHTTPError) as locked:
        client.submit(GENERATE, ARGS[GENERATE])
    assert locked.value.status_code == 403 and "User is locked" in str(locked.value)
