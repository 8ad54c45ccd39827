"""Kie, PiAPI and Apiframe have no official Python client: their fakes are held to the providers'
documentation (each fake cites the notes' section for every route, field and code), and where no
source says, the fake serves each plausible shape behind a switch. These tests put imgroute's
adapters in front of every one of those shapes, and of the documented cases no fake used to
return: Kie's task result codes at recordInfo, Kie's HTTP-200-with-`code: 401` answers (and the
HTTP 401 some client code sees), Apiframe's documented error bodies, PiAPI's three error shapes and
the OpenAI fields it does not document.
"""

from __future__ import annotations

import httpx
import pytest

from imgroute.errors import JobFailed, ProviderTrouble, TroubleKind
from imgroute.models import JobSpec
from imgroute.net.http import Http
from imgroute.providers.apiframe import ApiframeAdapter
from imgroute.providers.kie import KieAdapter
from imgroute.providers.piapi import PiAPIAdapter
from tests.fakes.server import make_image
from tests.helpers import assert_image, gen, only


@pytest.fixture
def http():
    with httpx.Client() as client:
        yield Http(client, sleep=lambda seconds: None, scale=0.0)


def spec(model: str, **changes) -> JobSpec:
    base = JobSpec("a lighthouse", model, "low", 1024, 1024, "1:1", "1K", 1, "png", "ref-1")
    return base._replace(**changes)


# -- Kie ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "record_code", "record_data", "needle", "moderated"),
    [
        ("fail", None, True, "Generation failed, please try again later.", False),  # code 200, state fail
        ("fail", 501, True, "Generation failed, please try again later.", False),
        ("fail", 501, False, "Generation failed, please try again later.", False),  # data: null, msg only
        ("moderate", 501, True, "flagged by the content policy", True),
        ("fail", 422, True, "Validation error: aspect_ratio 1:1 is not available at 4K", False),
        ("fail", 422, False, "Validation error: aspect_ratio 1:1 is not available at 4K", False),
    ],
)
def test_kie_task_result_codes_end_the_job_as_failed(cli, fakes, outcome, record_code, record_data, needle, moderated):
    kie = fakes["kie"]
    kie.outcome, kie.record_code, kie.record_data = outcome, record_code, record_data
    r = gen(cli, *only(fakes, "kie"))
    assert r.code == 6, r.err  # JobFailedError: what a `state: fail` task has always raised
    assert needle in r.err and ("change the prompt" in r.err) == moderated
    assert r.json()["status"] == "failed" and kie.charges == 1  # (the fake bills at creation)
    assert len(kie.calls("/api/v1/jobs/recordInfo")) == 3  # polled until it failed, not until the timeout


@pytest.mark.parametrize("message_key", ["msg", "message"])
def test_kie_failures_are_read_from_msg_or_message(http, fakes, message_key):
    kie = fakes["kie"]
    kie.outcome, kie.record_code, kie.record_data, kie.message_key, kie.steps = "fail", 501, False, message_key, 0
    adapter = KieAdapter(kie.key, kie.url)
    handle = adapter.submit(http, spec("gpt-image-2-text-to-image")).handle
    with pytest.raises(JobFailed, match="Generation failed, please try again later"):
        adapter.poll(http, handle)


@pytest.mark.parametrize("auth_http_status", [200, 401])
def test_kie_refuses_a_bad_key_with_code_401_with_either_http_status(http, fakes, auth_http_status):
    kie = fakes["kie"]
    kie.auth_http_status = auth_http_status
    with pytest.raises(ProviderTrouble) as refused:
        KieAdapter("kie-wrong-key-000000000000", kie.url).submit(http, spec("gpt-image-2-text-to-image"))
    assert refused.value.kind is TroubleKind.AUTH and "code 401" in str(refused.value)
    assert kie.charges == 0


@pytest.mark.parametrize(
    ("code", "kind"),
    [(402, TroubleKind.CREDITS), (433, TroubleKind.CREDITS), (455, TroubleKind.SERVER), (505, TroubleKind.REJECTED)],
)
def test_kie_documented_create_codes(http, fakes, code, kind):
    kie = fakes["kie"]
    kie.inject("submit", body={"code": code, "msg": f"documented code {code}", "data": None})
    with pytest.raises(ProviderTrouble) as trouble:
        KieAdapter(kie.key, kie.url).submit(http, spec("gpt-image-2-text-to-image"))
    assert trouble.value.kind is kind and f"code {code}" in str(trouble.value)


# -- PiAPI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("undocumented", ["pass", "ignore", "reject"])
def test_piapi_undocumented_background_in_each_plausible_behaviour(http, fakes, undocumented):
    piapi = fakes["piapi"]
    piapi.undocumented = undocumented
    adapter = PiAPIAdapter(piapi.key, piapi.url)
    job = spec("gpt-image-2", background="transparent")
    body = adapter.prepare(job).body
    assert body["background"] == "transparent" and "user" not in body and "safety_identifier" not in body
    if undocumented == "reject":
        with pytest.raises(ProviderTrouble) as refused:
            adapter.submit(http, job)
        assert refused.value.kind is TroubleKind.REJECTED and "'background'" in str(refused.value)
        assert piapi.charges == 0  # a refusal is not billed: the job may go elsewhere
        return
    # honoured or silently dropped: the images come back either way (and are paid for); which of
    # the two happened is PiAPI's word only, hence "unverified" in the adapter
    assert len(adapter.submit(http, job).outputs) == 1 and piapi.charges == 1


@pytest.mark.parametrize("undocumented", ["pass", "ignore", "reject"])
def test_piapi_undocumented_mask_in_each_plausible_behaviour(http, fakes, tmp_path, undocumented):
    from PIL import Image

    piapi = fakes["piapi"]
    piapi.undocumented = undocumented
    (tmp_path / "photo.png").write_bytes(make_image(1024, 1024))
    Image.new("RGBA", (1024, 1024), (0, 0, 0, 0)).save(tmp_path / "mask.png")
    job = spec("gpt-image-2", images=(str(tmp_path / "photo.png"),), mask=str(tmp_path / "mask.png"))
    adapter = PiAPIAdapter(piapi.key, piapi.url)
    if undocumented == "reject":
        with pytest.raises(ProviderTrouble, match="'mask'"):
            adapter.submit(http, job)
        return
    assert len(adapter.submit(http, job).outputs) == 1
    assert piapi.edits[-1]["image_fields"] == ["image"]  # the documented field, repeated


@pytest.mark.parametrize("error_shape", ["openai", "message", "envelope"])
def test_piapi_errors_in_each_documented_shape(http, fakes, error_shape):
    piapi = fakes["piapi"]
    piapi.error_shape = error_shape
    adapter = PiAPIAdapter(piapi.key, piapi.url)
    with pytest.raises(JobFailed) as moderated:
        adapter.submit(http, spec("gpt-image-2", prompt="FORBIDDEN thing"))
    assert moderated.value.moderated and "safety system" in str(moderated.value)
    with pytest.raises(ProviderTrouble) as refused:
        adapter.submit(http, spec("gpt-image-2", width=1920, height=1080))
    assert refused.value.kind is TroubleKind.REJECTED and "divisible by 16" in str(refused.value)


# -- Apiframe -------------------------------------------------------------------------------------


@pytest.mark.parametrize("result_shape", ["images", "list", "string"])
def test_apiframe_result_in_each_documented_shape(cli, fakes, result_shape):
    fakes["apiframe"].result_shape = result_shape
    r = gen(cli, "--quality", "low", *only(fakes, "apiframe"))
    assert r.code == 0, r.err
    assert_image(r.json()["files"][0], (1024, 1024), "PNG")


@pytest.mark.parametrize(
    ("setup", "kind", "needle"),
    [
        (lambda f: setattr(f, "key", "afk_rotated"), TroubleKind.AUTH, "HTTP 401: Invalid API key"),
        (lambda f: setattr(f, "inactive", True), TroubleKind.AUTH, "HTTP 403: API key is inactive"),
        (lambda f: setattr(f, "credits", 3), TroubleKind.CREDITS, "HTTP 402: Insufficient credits"),
        (lambda f: f.inject("submit", status=429, retry_after=2), TroubleKind.RATE_LIMITED, "Too many requests"),
        (lambda f: f.inject("submit", status=503), TroubleKind.SERVER, "HTTP 503: Service unavailable"),
    ],
)
def test_apiframe_documented_error_bodies(http, fakes, setup, kind, needle):
    apiframe = fakes["apiframe"]
    key = apiframe.key
    setup(apiframe)
    with pytest.raises(ProviderTrouble) as trouble:
        ApiframeAdapter(key, apiframe.url).submit(http, spec("gpt-image-2"))
    assert trouble.value.kind is kind and needle in str(trouble.value)


def test_apiframe_validation_errors_name_the_field(http, fakes):
    apiframe = fakes["apiframe"]
    with pytest.raises(ProviderTrouble) as refused:
        ApiframeAdapter(apiframe.key, apiframe.url).submit(http, spec("gpt-image-2", aspect="16:9"))
    assert refused.value.kind is TroubleKind.REJECTED and "gptImage2Params.aspect_ratio" in str(refused.value)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/v2/me", {}, 401),
        ("GET", "/v2/jobs/not-a-uuid", {"X-API-Key": "KEY"}, 400),
        ("GET", "/v2/jobs/6a1d2f3e-0000-0000-0000-000000000099", {"X-API-Key": "KEY"}, 404),
        ("POST", "/v2/uploads", {"X-API-Key": "KEY"}, 400),
        ("GET", "/v2/me", {"X-API-Key": "KEY"}, 200),
    ],
)
def test_apiframe_every_answer_carries_a_request_id(fakes, method, path, headers, status):
    apiframe = fakes["apiframe"]
    headers = {name: value.replace("KEY", apiframe.key) for name, value in headers.items()}
    answer = httpx.request(method, apiframe.url + path, headers=headers)
    assert answer.status_code == status and answer.headers["x-request-id"]
    assert "error" in answer.json() if status >= 400 else "team" in answer.json()
