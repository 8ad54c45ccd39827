"""The OpenAI fake, held to OpenAI's official Python SDK (`openai`, pinned in pyproject's dev extra):
the SDK pointed at the fake over loopback (`base_url`, as official-clients.md measured) and used as
its users use it. What the SDK's models require is checked by validating the raw answer with them
(`ImagesResponse`, `FileObject`, `Batch`): the SDK itself parses leniently, so a missing required
field would only fail when a user reads it.
"""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest
from openai import OpenAI
from openai.types import Batch, FileObject, ImagesResponse
from PIL import Image

from tests.fakes.server import image_info, make_image

PROMPT = "a lighthouse at dusk"


@pytest.fixture
def fake(fake_servers):
    server = fake_servers["openai"]
    server.reset()
    return server


@pytest.fixture
def client(fake):
    sdk = OpenAI(base_url=f"{fake.url}/v1", api_key=fake.key, max_retries=0)
    yield sdk
    sdk.close()


def strict(raw, model):
    """The parsed answer, after checking the raw JSON against the SDK's model (required fields)."""
    model.model_validate(raw.http_response.json())
    assert raw.headers["x-request-id"].startswith("req_")
    return raw.parse()


def decoded(item) -> tuple:
    return image_info(base64.b64decode(item.b64_json))


def png(width: int, height: int, alpha: bool = False) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA" if alpha else "RGB", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


# -- generations ----------------------------------------------------------------------------------


def test_generate_with_the_sdks_defaults(client, fake):
    raw = client.images.with_raw_response.generate(model="gpt-image-2", prompt=PROMPT)
    answer = strict(raw, ImagesResponse)
    assert fake.requests[-1].json() == {"model": "gpt-image-2", "prompt": PROMPT}  # nothing else sent
    assert (answer.size, answer.quality, answer.output_format, answer.background) == (
        "1024x1024",
        "high",
        "png",
        "opaque",
    )
    assert len(answer.data) == 1 and decoded(answer.data[0]) == ("png", 1024, 1024, False)
    assert answer.usage.output_tokens == 7024 and answer.usage.input_tokens_details.image_tokens == 0


@pytest.mark.parametrize(
    ("size", "reported"),
    [
        ("auto", "1024x1024"),
        ("1024x1024", "1024x1024"),
        ("1536x1024", "1536x1024"),
        ("1024x1536", "1024x1536"),
        ("1360x768", "1360x768"),
        ("1024x640", "1024x640"),
        ("2880x2880", "2880x2880"),
        ("3840x2160", "3840x2160"),
    ],
)
def test_generate_every_size_form(client, size, reported):
    answer = strict(
        client.images.with_raw_response.generate(model="gpt-image-2", prompt=PROMPT, size=size), ImagesResponse
    )
    width, height = (int(x) for x in reported.split("x"))
    assert answer.size == reported and decoded(answer.data[0]) == ("png", width, height, False)


@pytest.mark.parametrize(
    ("quality", "reported", "tokens"),
    [
        ("low", "low", 196),
        ("medium", "medium", 1756),
        ("high", "high", 7024),
        ("auto", "high", 7024),
        (None, "high", 7024),
    ],
)
def test_generate_every_quality(client, quality, reported, tokens):
    answer = client.images.generate(model="gpt-image-2", prompt=PROMPT, quality=quality, size="1024x1024")
    assert (answer.quality, answer.usage.output_tokens) == (reported, tokens)


def test_generate_with_every_field_the_sdk_offers_for_gpt_image_2(client, fake):
    answer = client.images.generate(
        model="gpt-image-2-2026-04-21",
        prompt=PROMPT,
        n=2,
        size="1536x1024",
        quality="low",
        background="transparent",
        moderation="low",
        output_format="webp",
        output_compression=80,
        safety_identifier="user-hash-42",
        user="legacy-user-42",
    )
    assert (answer.output_format, answer.background, len(answer.data)) == ("webp", "transparent", 2)
    assert [decoded(item)[:3] for item in answer.data] == [("webp", 1536, 1024)] * 2
    assert fake.requests[-1].json()["safety_identifier"] == "user-hash-42"


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "param", "needle"),
    [
        ({"size": "1920x1080"}, 400, "invalid_value", "size", "divisible by 16"),
        ({"size": "512x512"}, 400, "invalid_value", "size", "outside the supported range"),
        ({"size": "4096x1024"}, 400, "invalid_value", "size", "outside the supported range"),
        ({"quality": "ultra"}, 400, "invalid_value", "quality", "'quality'"),
        ({"n": 11}, 400, "invalid_value", "n", "between 1 and 10"),
        ({"background": "transparent", "output_format": "jpeg"}, 400, "invalid_value", "background", "png or webp"),
        ({"extra_body": {"colour": "red"}}, 400, "unknown_parameter", "colour", "Unknown parameter"),
        ({"response_format": "url"}, 400, "unknown_parameter", "response_format", "Unknown parameter"),
    ],
)
def test_refused_requests_come_back_as_openais_errors(client, kwargs, status, code, param, needle):
    with pytest.raises(openai.APIStatusError) as caught:
        client.images.generate(model="gpt-image-2", prompt=PROMPT, **kwargs)
    error = caught.value
    assert (error.status_code, error.code, error.param) == (status, code, param)
    assert needle in error.message and error.request_id.startswith("req_")


def test_generate_streams_partial_images_then_the_completed_one(client):
    events = list(client.images.generate(model="gpt-image-2", prompt=PROMPT, stream=True, partial_images=2))
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert events[-1].usage.output_tokens == 7024 and events[-1].size == "1024x1024"


# -- edits ----------------------------------------------------------------------------------------


def test_edit_with_one_image_sends_the_field_image(client, fake):
    photo = make_image(1536, 1024, "png", seed=5)
    raw = client.images.with_raw_response.edit(
        model="gpt-image-2", image=("photo.png", photo, "image/png"), prompt=PROMPT
    )
    answer = strict(raw, ImagesResponse)
    sent = fake.edits[-1]
    assert sent["image_fields"] == ["image"] and sent["images"] == [photo]
    assert answer.size == "1536x1024"  # size omitted: auto, which follows the photo's shape
    assert answer.usage.input_tokens_details.image_tokens == 1024


def test_edit_with_several_images_and_a_mask_sends_image_brackets(client, fake):
    first, second, mask = (
        make_image(1024, 1024, "png", seed=1),
        make_image(1536, 1024, "jpeg", seed=2),
        png(1024, 1024, True),
    )
    answer = client.images.edit(
        model="gpt-image-2",
        image=[("a.png", first, "image/png"), ("b.jpg", second, "image/jpeg")],
        mask=("mask.png", mask, "image/png"),
        prompt=PROMPT,
        quality="low",
        input_fidelity="high",
    )
    sent = fake.edits[-1]
    assert sent["image_fields"] == ["image[]", "image[]"] and sent["images"] == [first, second] and sent["mask"] == mask
    assert (answer.size, answer.quality, answer.usage.input_tokens_details.image_tokens) == ("1024x1024", "low", 2048)


@pytest.mark.parametrize(
    ("mask", "needle"),
    [(png(1024, 1024), "alpha channel"), (png(512, 512, True), "same dimensions")],
)
def test_a_bad_mask_is_refused(client, mask, needle):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(
            model="gpt-image-2", image=("a.png", make_image(1024, 1024), "image/png"), mask=mask, prompt=PROMPT
        )
    assert caught.value.param == "mask" and needle in caught.value.message


def test_edit_streams(client):
    events = client.images.edit(
        model="gpt-image-2", image=("a.png", make_image(1024, 1024), "image/png"), prompt=PROMPT, stream=True
    )
    assert [event.type for event in events] == ["image_edit.completed"]


# -- errors, models -------------------------------------------------------------------------------


def test_errors_carry_the_request_id(client, fake):
    with pytest.raises(openai.AuthenticationError) as wrong_key:
        OpenAI(base_url=f"{fake.url}/v1", api_key="sk-wrong-0000000000000000", max_retries=0).models.list()
    assert wrong_key.value.request_id.startswith("req_") and wrong_key.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as unknown:
        client.models.retrieve("dall-e-5")
    assert unknown.value.request_id.startswith("req_")
    with pytest.raises(openai.BadRequestError) as moderated:
        client.images.generate(model="gpt-image-2", prompt="FORBIDDEN thing")
    assert moderated.value.code == "moderation_blocked" and moderated.value.request_id.startswith("req_")
    fake.inject("submit", status=500)
    with pytest.raises(openai.InternalServerError) as failed:
        client.images.generate(model="gpt-image-2", prompt=PROMPT)
    assert failed.value.request_id.startswith("req_")


def test_models_list_and_retrieve(client):
    assert [model.id for model in client.models.list()] == ["gpt-image-2", "gpt-image-2-2026-04-21"]
    assert client.models.retrieve("gpt-image-2").owned_by == "system"


# -- the Batch API --------------------------------------------------------------------------------


def upload(client, lines: list[dict]) -> FileObject:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return strict(client.files.with_raw_response.create(file=("batch.jsonl", data), purpose="batch"), FileObject)


def run_to_the_end(client, batch: Batch) -> Batch:
    seen = [batch.status]
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        batch = strict(client.batches.with_raw_response.retrieve(batch.id), Batch)
        seen.append(batch.status)
    return batch, seen


def test_the_whole_batch_flow(client, fake):
    lines = [
        {
            "custom_id": "row-1",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"model": "gpt-image-2", "prompt": PROMPT},
        },
        {
            "custom_id": "row-2",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {
                "model": "gpt-image-2",
                "prompt": PROMPT,
                "quality": "low",
                "size": "auto",
                "safety_identifier": "u1",
            },
        },
    ]
    uploaded = upload(client, lines)
    assert (uploaded.purpose, uploaded.status, uploaded.filename) == ("batch", "processed", "batch.jsonl")
    created = strict(
        client.batches.with_raw_response.create(
            input_file_id=uploaded.id,
            endpoint="/v1/images/generations",
            completion_window="24h",
            metadata={"imgroute_job": "job-42"},
        ),
        Batch,
    )
    assert (created.status, created.metadata, created.model) == (
        "validating",
        {"imgroute_job": "job-42"},
        "gpt-image-2",
    )
    done, seen = run_to_the_end(client, created)
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert (done.request_counts.total, done.request_counts.completed, done.error_file_id) == (2, 2, None)
    assert done.completed_at is not None and done.in_progress_at is not None
    output = client.files.content(done.output_file_id).content.decode().splitlines()
    results = {json.loads(line)["custom_id"]: json.loads(line)["response"] for line in output}
    assert sorted(results) == ["row-1", "row-2"]
    for response in results.values():
        assert response["status_code"] == 200
        ImagesResponse.model_validate(response["body"])
    assert results["row-2"]["body"]["quality"] == "low"
    retrieved = strict(client.files.with_raw_response.retrieve(done.output_file_id), FileObject)
    assert (retrieved.purpose, retrieved.bytes) == ("batch_output", len("\n".join(output)) + 1)
    listed = client.batches.list(limit=10)
    assert [batch.id for batch in listed.data] == [done.id] and fake.charges == 2


def test_a_batch_of_json_edits_by_data_url_and_by_file_id(client):
    photo = make_image(1024, 1536, "png", seed=7)
    vision = strict(client.files.with_raw_response.create(file=("photo.png", photo), purpose="vision"), FileObject)
    data_url = "data:image/png;base64," + base64.b64encode(photo).decode()
    body = {"model": "gpt-image-2", "prompt": PROMPT, "quality": "low"}
    lines = [
        {
            "custom_id": "by-url",
            "method": "POST",
            "url": "/v1/images/edits",
            "body": {**body, "images": [{"image_url": data_url}]},
        },
        {
            "custom_id": "by-id",
            "method": "POST",
            "url": "/v1/images/edits",
            "body": {**body, "images": [{"file_id": vision.id}]},
        },
    ]
    created = client.batches.create(
        input_file_id=upload(client, lines).id, endpoint="/v1/images/edits", completion_window="24h"
    )
    done, _ = run_to_the_end(client, created)
    assert (done.status, done.request_counts.completed) == ("completed", 2)
    for line in client.files.content(done.output_file_id).content.decode().splitlines():
        answer = ImagesResponse.model_validate(json.loads(line)["response"]["body"])
        assert answer.size == "1024x1536"  # auto: the photo's shape


def test_batches_cancel(client, fake):
    line = {
        "custom_id": "row-1",
        "method": "POST",
        "url": "/v1/images/generations",
        "body": {"model": "gpt-image-2", "prompt": PROMPT},
    }
    created = client.batches.create(
        input_file_id=upload(client, [line]).id, endpoint="/v1/images/generations", completion_window="24h"
    )
    cancelling = strict(client.batches.with_raw_response.cancel(created.id), Batch)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    cancelled = strict(client.batches.with_raw_response.retrieve(created.id), Batch)
    assert (cancelled.status, cancelled.output_file_id, fake.charges) == ("cancelled", None, 0)
    with pytest.raises(openai.ConflictError) as again:
        client.batches.cancel(created.id)
    assert again.value.request_id.startswith("req_")
