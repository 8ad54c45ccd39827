"""`imgroute serve` driven by the official `openai` SDK through loopback, against the provider fakes:
generate and edit, errors as the SDK's exception classes, retries that pay once, concurrent
clients, auth, and the README's curl examples."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest
from PIL import Image

from tests.fakes.server import make_image
from tests.helpers import KIE_ASSUMED, ROOT, nothing_sent, wait_for
from tests.serve.conftest import Served

README = (ROOT / "README.md").read_text()


def only(fakes, provider: str) -> dict:
    return {"imgroute": {"provider": provider}}


def png_size(b64: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        image.load()
        return image.size


def test_the_sdk_generates_through_imgroute_and_the_ledger_records_the_job(served, fakes, cli):
    client = served.client()
    response = client.images.generate(model="gpt-image-2", prompt="a lighthouse at dusk", quality="low")
    assert png_size(response.data[0].b64_json) == (1024, 1024)
    report = response.model_extra["imgroute"]
    assert report["provider"] in fakes and report["estimated_cost_usd"] > 0
    assert Path(report["files"][0]).is_file()  # also saved: a dropped client loses nothing paid for
    assert response.size == "1024x1024" and response.output_format == "png"
    (job,) = cli("jobs", "--json").json()
    assert job["job_id"] == report["job_id"] and job["state"] == "succeeded" and job["actual_usd"] > 0
    assert sum(fake.charges for fake in fakes.values()) == 1


def test_usage_is_the_tokens_the_provider_reported_and_absent_when_none_were(served, fakes):
    client = served.client()
    openai_job = client.images.generate(prompt="a fox", quality="low", extra_body=only(fakes, "openai"))
    billed = fakes["openai"].calls("/v1/images/generations", "POST")
    assert openai_job.usage is not None and openai_job.usage.output_tokens > 0
    assert openai_job.usage.total_tokens == openai_job.usage.input_tokens + openai_job.usage.output_tokens
    assert len(billed) == 1
    kie_job = client.images.generate(prompt="a fox", extra_body=only(fakes, "kie"))  # Kie reports no tokens
    assert kie_job.usage is None


def test_headers_carry_the_job_and_its_costs(served, fakes):
    raw = served.client().images.with_raw_response.generate(prompt="a fox", extra_body=only(fakes, "kie"))
    assert raw.headers["x-imgroute-provider"] == "kie/gpt-image-2-text-to-image"
    assert raw.headers["x-imgroute-estimated-cost"] == "0.03" and raw.headers["x-imgroute-job"]
    assert raw.headers["x-request-id"].startswith("req_")


def test_edit_with_one_image_several_images_and_a_mask(served, fakes, tmp_path):
    client = served.client()
    photo = make_image(1024, 1024)
    one = client.images.edit(image=("photo.png", photo, "image/png"), prompt="make it dusk", quality="low")
    assert png_size(one.data[0].b64_json) == (1024, 1024)
    several = client.images.edit(
        image=[("a.png", photo, "image/png"), ("b.png", make_image(1024, 1024, seed=3), "image/png")],
        prompt="blend them",
        extra_body=only(fakes, "openai"),
    )
    assert several.model_extra["imgroute"]["provider"] == "openai"
    assert len(fakes["openai"].edits[-1]["images"]) == 2
    mask = Image.new("RGBA", (1024, 1024), (0, 0, 0, 0))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    masked = client.images.edit(
        image=("photo.png", photo, "image/png"),
        mask=("mask.png", buffer.getvalue(), "image/png"),
        prompt="a window here",
        extra_body=only(fakes, "openai"),
    )
    assert masked.data and fakes["openai"].edits[-1]["mask"] == buffer.getvalue()


def test_an_edits_uploads_are_kept_only_while_its_job_may_be_resumed(served, fakes, isolated_home):
    import httpx

    inputs = isolated_home / "serve-inputs"
    kept = lambda: sorted(p.name for p in inputs.iterdir()) if inputs.exists() else []  # noqa: E731
    photo = make_image(1024, 1024)
    form = {"prompt": "make it dusk", "quality": "low", "imgroute[provider]": "openai"}

    def edit(retry: int = 0, extra: dict | None = None) -> httpx.Response:
        files = [("image", ("photo.png", photo, "image/png")), *(extra or {}).items()]
        headers = {"x-stainless-retry-count": str(retry)}
        return httpx.post(f"{served.url}/images/edits", data=form, files=files, headers=headers, timeout=30)

    done = edit()
    assert done.status_code == 200 and kept() == []  # succeeded: nothing left to resume
    again = edit(retry=1)  # the client's retry of it: answered from the ended job, its upload dropped
    assert again.json()["imgroute"]["joined"] is True and kept() == []
    refused = edit(extra={"picture": ("p.png", photo, "image/png")})
    assert refused.status_code == 400 and kept() == []
    fakes["openai"].inject("submit", drop=True)  # the submit's fate is unknown: `jobs resume` needs the image
    unknown = httpx.post(
        f"{served.url}/images/edits",
        data={**form, "prompt": "make it night"},
        files=[("image", ("photo.png", photo, "image/png"))],
        timeout=30,
    )
    assert unknown.status_code == 502 and unknown.json()["error"]["code"] == "submit_unknown"
    (folder,) = kept()
    assert (inputs / folder / "0-photo.png").read_bytes() == photo


def test_a_form_field_given_plain_and_as_a_list_is_refused_naming_it(served, fakes):
    import httpx

    photo = make_image(1024, 1024)
    form = {"prompt": "make it dusk", "imgroute[exclude]": "kie", "imgroute[exclude][]": "fal"}  # (in this order)
    answer = httpx.post(
        f"{served.url}/images/edits", data=form, files=[("image", ("photo.png", photo, "image/png"))], timeout=30
    )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "imgroute[exclude]"
    assert "given twice" in answer.json()["error"]["message"] and all(not f.requests for f in fakes.values())


def test_moderation_arrives_as_bad_request_with_its_code_and_is_not_retried(served, fakes):
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().images.generate(prompt="FORBIDDEN thing", extra_body=only(fakes, "openai"))
    assert caught.value.code == "moderation_blocked"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(fakes["openai"].calls("/v1/images/generations")) == 1


def test_a_budget_refusal_is_a_rate_limit_error_that_the_sdk_does_not_retry(served, fakes, cli):
    assert cli("budget", "set", "--daily", "0.01").code == 0
    with pytest.raises(openai.RateLimitError) as caught:
        served.client().images.generate(prompt="a fox", quality="high", extra_body=only(fakes, "openai"))
    assert caught.value.code == "budget_exceeded" and "budget" in caught.value.message
    assert fakes["openai"].requests == []  # nothing sent, and no retry came back for more


def test_bad_requests_name_the_parameter(served):
    client = served.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a fox", quality="ultra")
    assert "quality" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a fox", stream=True)
    assert caught.value.param == "stream"
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a fox", model="dall-e-3")
    assert caught.value.param == "model"
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a fox", extra_body={"imgroute": {"cheapest": True}})
    assert caught.value.param == "imgroute.cheapest"
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a fox", size="1000x1000", extra_body={"imgroute": {"provider": "openai"}})
    assert caught.value.code == "no_offer" and "multiples of 16" in caught.value.message


@pytest.mark.parametrize(
    ("asked", "param", "says"),
    [
        ({"n": 0}, "n", "n 0 is out of range"),
        ({"quality": "hihg"}, "quality", "quality 'hihg' is not a tier"),
        ({"output_format": "gif"}, "output_format", "output_format 'gif' is not an image format"),
        ({"extra_body": {"imgroute": {"max_cost": -1}}}, "imgroute.max_cost", "to imgroute.max_cost"),
        ({"extra_body": {"imgroute": {"aspect": "wide"}}}, "imgroute.aspect", "like imgroute.aspect 16:9"),
        ({"extra_body": {"imgroute": {"exclude": ["nope"]}}}, "imgroute.exclude", "in imgroute.exclude"),
    ],
)
def test_a_refused_value_is_named_as_the_api_parameter_not_a_cli_flag(served, fakes, asked, param, says):
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().images.generate(prompt="a fox", **asked)
    assert caught.value.param == param
    assert says in caught.value.message and "--" not in caught.value.message
    assert all(fake.requests == [] for fake in fakes.values())


def test_a_retry_after_a_dropped_connection_joins_the_job_and_pays_once(served, fakes):
    fakes["openai"].inject("submit", delay=1.2)  # a slow generation: the client gives up first
    client = served.client(timeout=0.5, max_retries=3)
    response = client.images.generate(prompt="a slow fox", quality="low", extra_body=only(fakes, "openai"))
    assert response.model_extra["imgroute"]["joined"] is True
    assert fakes["openai"].charges == 1 and len(fakes["openai"].calls("/v1/images/generations")) == 1


def test_a_retry_of_an_ended_request_gets_its_answer_while_it_is_among_the_newest(served, fakes, monkeypatch):
    import httpx

    from imgroute.serve import gateway

    monkeypatch.setattr(gateway, "RECENT_MAX", 2)

    def generate(prompt: str, retry: int = 0) -> dict:
        body = {"prompt": prompt, "quality": "low", **only(fakes, "openai")}
        retried = {"x-stainless-retry-count": str(retry)}
        answer = httpx.post(f"{served.url}/images/generations", json=body, headers=retried)
        assert answer.status_code == 200, answer.text
        return answer.json()["imgroute"]

    first = generate("fox one")
    assert generate("fox one", retry=1) == {**first, "joined": True}  # the ended job's answer, not a new job
    generate("fox two")
    generate("fox three")  # now the two newest: the first's answer is forgotten
    assert generate("fox three", retry=1)["joined"] is True
    again = generate("fox one", retry=1)
    assert again["joined"] is False and again["job_id"] != first["job_id"]
    assert fakes["openai"].charges == 4


def test_first_tries_of_one_request_at_once_are_jobs_of_their_own_unless_the_client_does_not_count(served, fakes):
    import httpx

    fakes["openai"].job_seconds = 1.0  # long enough for the requests to overlap
    body = {"prompt": "the same fox", "quality": "low", **only(fakes, "openai")}
    answers: dict[str, list] = {"counted": [], "uncounted": []}

    def post(kind: str) -> None:
        headers = {"x-stainless-retry-count": "0"} if kind == "counted" else {}  # as the SDK, or as curl
        answer = httpx.post(f"{served.url}/images/generations", json=body, headers=headers, timeout=30)
        answers[kind].append(answer.json()["imgroute"])

    for kind in ("counted", "uncounted"):
        threads = [threading.Thread(target=post, args=(kind,)) for _ in range(3)]
        for thread in threads:
            thread.start()
            wait_for(lambda: served.gateway._running)  # a job is under way before the next request asks
        for thread in threads:
            thread.join(30)
    assert len({a["job_id"] for a in answers["counted"]}) == 3  # three images asked for, three made
    assert len({a["job_id"] for a in answers["uncounted"]}) == 1  # a retry or not: it must not pay twice
    assert sorted(a["joined"] for a in answers["uncounted"]) == [False, True, True]
    assert fakes["openai"].charges == 3 + 1


def ten_clients_at_once(served, fakes, provider: str) -> tuple[list, list]:
    """Ten SDK clients, each generating one image at the same time: (their results, their errors)."""
    results, errors = [], []

    def one(i: int) -> None:
        try:
            results.append(served.client().images.generate(prompt=f"fox number {i}", extra_body=only(fakes, provider)))
        except Exception as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, errors


def test_ten_clients_at_once_are_ten_jobs_within_the_limits(served, fakes):
    results, errors = ten_clients_at_once(served, fakes, "kie")
    assert errors == [] and len(results) == 10
    assert len({r.model_extra["imgroute"]["job_id"] for r in results}) == 10
    assert fakes["kie"].charges == 10


def test_ten_clients_of_a_synchronous_provider_generate_at_once(served, fakes):
    fakes["openai"].job_seconds = 1.5  # OpenAI answers when the image is made (slow enough to overlap)
    _, errors = ten_clients_at_once(served, fakes, "openai")
    assert errors == [] and fakes["openai"].charges == 10
    assert fakes["openai"].peak_in_flight == 10  # not capped by the server's few workers


def test_models_lists_the_model_and_every_offer(served):
    ids = [model.id for model in served.client().models.list()]
    assert ids[0] == "gpt-image-2" and "kie/gpt-image-2-text-to-image" in ids


def test_a_pinned_offer_as_the_model_and_a_dry_run(served, fakes):
    client = served.client()
    pinned = client.images.generate(prompt="a fox", model="piapi/gpt-image-2-preview", quality="high")
    assert pinned.model_extra["imgroute"]["model"] == "gpt-image-2-preview"
    dry = client.images.generate(prompt="a fox", extra_body={"imgroute": {"dry_run": True}})
    assert dry.data == [] and dry.model_extra["imgroute"]["choice"]["offer"]
    assert sum(f.charges for f in fakes.values()) == 1


def test_a_token_is_required_when_set(fakes, isolated_home):
    server = Served(fakes, isolated_home, token="s3cret-token")
    try:
        with pytest.raises(openai.AuthenticationError):
            server.client(api_key="wrong").images.generate(prompt="a fox")
        ok = server.client(api_key="s3cret-token").images.generate(prompt="a fox", extra_body=only(fakes, "kie"))
        assert ok.data
    finally:
        server.stop()


def test_a_non_loopback_bind_needs_a_token(cli):
    r = cli("serve", "--host", "0.0.0.0", "--port", "8799")
    assert r.code == 2 and "spend your keys" in r.err and "--token" in r.err


def test_serve_without_its_extra_says_how_to_install_it(cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    r = cli("serve")
    assert r.code == 2 and "pip install 'imgroute[serve]'" in r.err


def test_keys_never_appear_in_answers(served, fakes):
    fakes["openai"].key = "sk-rotated-0000000000000000"  # the server's key is now refused, and echoed
    with pytest.raises(openai.APIStatusError) as caught:
        served.client(max_retries=0).images.generate(prompt="a fox", extra_body=only(fakes, "openai"))
    assert served.gateway.keys.available["openai"] not in caught.value.response.text


def test_the_readme_curl_examples_work(served, fakes, tmp_path):
    block = README.split("<!-- serve-curl -->", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [c for c in re.split(r"\n(?=curl )", block.strip()) if c.startswith("curl")]
    assert len(commands) >= 2
    (tmp_path / "photo.png").write_bytes(make_image(1024, 1024))
    for command in commands:
        command = command.replace("127.0.0.1:8787", f"127.0.0.1:{served.port}")
        out = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        answer = json.loads(out.stdout)
        assert answer["data"][0]["b64_json"] and answer["imgroute"]["job_id"], answer


def test_an_oversized_body_is_refused_before_anything_runs(served, fakes):
    import httpx

    answer = httpx.post(f"{served.url}/images/generations", content=b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert answer.status_code == 413 and "over 1 MB" in answer.json()["error"]["message"]
    assert sum(f.charges for f in fakes.values()) == 0


def test_ctrl_c_stops_the_server_with_exit_130(fakes, isolated_home, tmp_path):
    import os
    import signal
    import sys

    import httpx

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "IMGROUTE_HOME": str(isolated_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgroute", "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )

    def answering() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).raise_for_status()
        except httpx.HTTPError:
            return False
        return True

    wait_for(answering)
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/images/generations",
        json={"prompt": "a fox", "imgroute": {"provider": "kie"}},
        timeout=30,
    )
    assert answer.status_code == 200
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "POST /v1/images/generations 200 job" in err and "stopped" in err
    assert fakes["kie"].key not in err


def test_a_jobs_usage_sums_its_requests():
    from imgroute.jobs.state import JobRun
    from imgroute.providers.base import Usage

    job = JobRun("j", None, 0.0, None)
    job.count_usage([Usage(10, 0, 4000, 0), Usage(5, 2, 400, 1)])
    assert job.usage == Usage(15, 2, 4400, 1, None)
    job.count_usage([Usage(credits=6)])
    assert job.usage.credits == 6 and job.usage.image_output == 4400


# -- max_cost, caveats, a private home and an honest log -------------------------------------------


def test_serve_refuses_over_max_cost_with_a_400_naming_the_parameter_and_says_the_caveats(fakes, isolated_home):
    import openai

    server = Served(fakes, isolated_home)
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            server.client(max_retries=0).images.generate(
                prompt="a fox", quality="high", extra_body={"imgroute": {"max_cost": 0.001}}
            )
        error = caught.value.body
        assert error["param"] == "imgroute.max_cost" and "--max-cost" not in error["message"]
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert nothing_sent(fakes)
        image = server.client().images.generate(
            prompt="a fox", quality="high", extra_body={"imgroute": {"provider": "kie"}}
        )
        assert any(KIE_ASSUMED in caveat for caveat in image.model_extra["imgroute"]["caveats"])  # (2)
    finally:
        server.stop()


def test_serve_as_the_first_command_keeps_the_home_and_its_images_owner_only(fakes, isolated_home, tmp_path):
    import socket
    import stat

    import openai

    assert not isolated_home.exists()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgroute", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    try:
        wait_for(lambda: _listening(port))
        image = client.images.generate(prompt="a fox", extra_body={"imgroute": {"provider": "kie"}})
        saved = image.model_extra["imgroute"]["files"][0]
        not_an_image = tmp_path / "notimage.png"
        not_an_image.write_bytes(b"this is not an image at all")
        with pytest.raises(openai.BadRequestError) as caught, open(not_an_image, "rb") as upload:
            client.images.edit(image=upload, prompt="make it dusk")
    finally:
        proc.terminate()  # SIGTERM: the same clean stop as Ctrl-C
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    message = caught.value.body["message"]
    assert "'notimage.png'" in message and "serve-inputs" not in message and str(isolated_home) not in message
    for folder in (isolated_home, isolated_home / "served", isolated_home / "serve-inputs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(saved + ".json").st_mode) == 0o600
    assert "nothing charged" not in err and "$0.03" in err  # the log: what the job cost


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_serve_log_never_shows_an_estimate_as_money_spent():
    from types import SimpleNamespace

    from imgroute.serve.app import _charged

    failed = SimpleNamespace(actual=None, status="failed", estimate=None)
    assert _charged(failed) == "nothing charged"
    unknown = SimpleNamespace(actual=None, status="unknown", estimate=__import__("decimal").Decimal("0.2108"))
    assert _charged(unknown) == "charge not known yet (estimated $0.2108)"
    paid = SimpleNamespace(actual=__import__("decimal").Decimal("0.03"), status="succeeded", estimate=None)
    assert _charged(paid) == "$0.03"
