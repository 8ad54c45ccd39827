"""`imgroute -v` / `--debug` and IMGROUTE_DEBUG=1: each HTTP exchange traced on stderr, through the real CLI
against the fakes; never a key, never an image's bytes, and stdout as without it."""

from __future__ import annotations

import base64
import json
import re
import socket
from pathlib import Path

import httpx

from imgroute.net.http import build_client
from tests.fakes.server import make_image
from tests.helpers import only

BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}")  # longer than any string the trace shows


def gen(cli, *args):
    return cli("-v", "gen", "a fox at dawn", "--out", "out", "--json", *args)


def named(fake, monkeypatch):
    """The fake's job and request ids fixed, so that what the trace shows can be written out."""
    monkeypatch.setattr(fake, "new_id", lambda prefix: f"{prefix}trace")
    monkeypatch.setattr(fake, "new_request_id", lambda: "rid-trace")


def traced(err: str) -> list[list[str]]:
    """The trace's entries, each its lines: the first, then the indented ones."""
    entries = []
    for line in err.splitlines():
        if line.startswith("debug: "):
            entries.append([line])
        elif line.startswith("  ") and entries:
            entries[-1].append(line)
    return entries


def summary(entry: list[str]) -> str:
    """An entry's first line without the fake's origin, its timing and its sizes (which vary)."""
    line = re.sub(r"^debug: (\w+) http://127\.0\.0\.1:\d+", r"\1 ", entry[0])
    return re.sub(r"\b\d[\d,]* (ms|bytes)\b", r"N \1", line)


def sent(entry: list[str]) -> dict:
    (line,) = [line for line in entry if line.startswith("  request (")]
    return json.loads(line.split("): ", 1)[1])


def never_leaked(fakes, *texts):
    for text in texts:
        assert BASE64_RUN.search(text) is None
        for fake in fakes.values():
            assert fake.key not in text


def test_an_openai_gen_is_traced_with_its_images_cut_and_stdout_unchanged(cli, fakes, monkeypatch):
    named(fakes["openai"], monkeypatch)
    r = gen(cli, "--quality", "low", *only(fakes, "openai"))
    assert r.code == 0, r.err
    (entry,) = traced(r.err)
    assert summary(entry) == (
        "POST /v1/images/generations -> 200 OK, N ms, N bytes application/json, x-request-id req_img_trace"
    )
    assert entry[1] == "  headers: Authorization: ***"
    assert sent(entry) | {"safety_identifier": "x"} == {
        "model": "gpt-image-2",
        "prompt": "a fox at dawn",
        "size": "1024x1024",
        "quality": "low",
        "n": 1,
        "output_format": "png",
        "safety_identifier": "x",
    }
    image = Path(r.json()["files"][0]).read_bytes()
    assert entry[3].startswith('  answer: {"created": ')
    characters = len(base64.b64encode(image))
    assert f'"data": [{{"b64_json": "... ({characters:,} characters of base64)"}}]' in entry[3]
    never_leaked(fakes, r.err, r.out)

    plain = cli("gen", "a fox at dawn", "--out", "out", "--json", "--quality", "low", *only(fakes, "openai"))
    assert plain.code == 0 and "debug:" not in plain.err and traced(plain.err) == []
    assert plain.json().keys() == r.json().keys() and "debug:" not in r.out


def test_a_kie_gen_traces_submit_polls_and_download(cli, fakes, monkeypatch):
    named(fakes["kie"], monkeypatch)
    r = gen(cli, *only(fakes, "kie"))
    assert r.code == 0, r.err
    entries = traced(r.err)
    poll = "GET /api/v1/jobs/recordInfo?taskId=task_gptimg2_trace -> 200 OK, N ms, N bytes application/json"
    assert [summary(entry) for entry in entries] == [
        "POST /api/v1/jobs/createTask -> 200 OK, N ms, N bytes application/json",
        poll,
        poll,
        poll,
        "GET /files/task_gptimg2_trace-0.png -> 200 OK, N ms, N bytes image/png",
    ]
    submit = entries[0]
    assert sent(submit) == {
        "model": "gpt-image-2-text-to-image",
        "input": {"prompt": "a fox at dawn", "aspect_ratio": "1:1", "resolution": "1K"},
    }
    assert submit[-1] == '  answer: {"code": 200, "msg": "success", "data": {"taskId": "task_gptimg2_trace"}}'
    assert entries[3][-1].endswith('"state": "success"}}')
    assert len(entries[-1]) == 1  # a download (of a public URL, no headers): its line, never its bytes
    never_leaked(fakes, r.err)


def test_a_fal_edit_shows_its_data_uris_as_their_size(cli, fakes, monkeypatch, tmp_path):
    named(fakes["fal"], monkeypatch)
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(1024, 1024, "png", seed=3))
    r = cli(
        "-v", "edit", "make it dusk", "--image", str(photo), "--out", "out", "--json", "--quality", "low",
        *only(fakes, "fal"),
    )  # fmt: skip
    assert r.code == 0, r.err
    entries = traced(r.err)
    requests = "/openai/gpt-image-2/requests/3f1c9a52-trace"
    assert [summary(entry) for entry in entries] == [
        "POST /openai/gpt-image-2/edit -> 200 OK, N ms, N bytes application/json, x-fal-request-id 3f1c9a52-trace",
        f"GET {requests}/status -> 202 Accepted, N ms, N bytes application/json, x-fal-request-id rid-trace",
        f"GET {requests}/status -> 200 OK, N ms, N bytes application/json, x-fal-request-id rid-trace",
        f"GET {requests} -> 200 OK, N ms, N bytes application/json, x-fal-request-id rid-trace",
        "GET /files/3f1c9a52-trace-0.png -> 200 OK, N ms, N bytes image/png, x-fal-request-id rid-trace",
    ]
    uri = f"data:image/png;base64,{base64.b64encode(photo.read_bytes()).decode()}"
    assert sent(entries[0])["image_urls"] == [f"data:image/png;base64,... ({len(uri):,} characters)"]
    assert entries[0][1] == "  headers: Authorization: ***"
    never_leaked(fakes, r.err)


def test_an_openai_edit_shows_its_multipart_files_by_name_and_size(cli, fakes, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(1024, 1024, "png", seed=3))
    r = cli("-v", "edit", "make it dusk", "--image", str(photo), "--quality", "low", "--json", *only(fakes, "openai"))
    assert r.code == 0, r.err
    (entry,) = traced(r.err)
    assert summary(entry).startswith("POST /v1/images/edits -> 200 OK, N ms, N bytes application/json, x-request-id ")
    assert sent(entry)["image[]"] == f"@photo.png (image/png, {photo.stat().st_size:,} bytes)"
    assert entry[2].startswith("  request (multipart, ")
    never_leaked(fakes, r.err)


def test_a_429_on_submit_and_the_retry_are_both_traced(cli, fakes, monkeypatch):
    named(fakes["openai"], monkeypatch)
    fakes["openai"].inject("submit", status=429, retry_after=0)
    r = gen(cli, "--quality", "low", *only(fakes, "openai"))
    assert r.code == 0, r.err
    entries = traced(r.err)
    assert [summary(entry) for entry in entries] == [
        "POST /v1/images/generations -> 429 Too Many Requests, N ms, N bytes application/json, "
        "x-request-id rid-trace, retry-after 0",
        "POST /v1/images/generations -> 200 OK, N ms, N bytes application/json, x-request-id req_img_trace",
    ]
    assert entries[0][-1] == (
        '  answer: {"error": {"message": "injected 429", "type": "invalid_request_error", "param": null, "code": null}}'
    )
    assert sent(entries[0]) == sent(entries[1])
    never_leaked(fakes, r.err)


def test_a_key_the_provider_echoes_back_is_hidden(cli, fakes, monkeypatch):
    named(fakes["openai"], monkeypatch)
    fakes["openai"].key = "sk-another-key-entirely-000000"  # ours is wrong now, and OpenAI echoes it
    r = gen(cli, "--quality", "low", *only(fakes, "openai"))
    assert r.code != 0
    (entry,) = traced(r.err)
    assert summary(entry).startswith("POST /v1/images/generations -> 401 Unauthorized, ")
    assert '"message": "Incorrect API key provided: [redacted]. You can find your API key at ..."' in entry[-1]
    assert "sk-test-openai-0123456789abcdef" not in r.err


def test_failures_are_traced_as_what_happened(cli, fakes, monkeypatch):
    named(fakes["kie"], monkeypatch)
    fakes["kie"].inject("download", truncate=True)
    r = gen(cli, *only(fakes, "kie"))
    assert r.code == 0, r.err
    downloads = [summary(entry) for entry in traced(r.err) if "/files/" in entry[0]]
    first = "GET /files/task_gptimg2_trace-0.png -> 200 OK, N ms, N bytes image/png"
    assert downloads[0].startswith(f"{first}, then dropped (") and downloads[1:] == [first]

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("IMGROUTE_KIE_BASE_URL", f"http://127.0.0.1:{port}")
    r = gen(cli, *only(fakes, "kie"))
    assert r.code != 0
    summaries = {summary(entry) for entry in traced(r.err)}
    assert summaries == {"POST /api/v1/jobs/createTask -> connection refused, N ms"}


def test_imgroute_debug_turns_it_on_without_the_flag(cli, fakes, monkeypatch):
    monkeypatch.setenv("IMGROUTE_DEBUG", "1")
    r = cli("gen", "a fox at dawn", "--out", "out", "--json", *only(fakes, "kie"))
    assert r.code == 0, r.err
    assert len(traced(r.err)) == 5
    monkeypatch.setenv("IMGROUTE_DEBUG", "0")
    r = cli("gen", "a fox at dawn", "--out", "out", "--json", *only(fakes, "kie"))
    assert r.code == 0 and traced(r.err) == []


def test_keys_in_urls_headers_and_text_bodies_are_hidden(monkeypatch, capsys):
    monkeypatch.setenv("IMGROUTE_DEBUG", "1")
    monkeypatch.setenv("KIE_API_KEY", "kie-known-key-0123456789abcdef")
    uri = f"data:image/png;base64,{base64.b64encode(make_image(64, 64)).decode()}"
    page = f"<html>\n<p>bad key kie-known-key-0123456789abcdef</p> <img src='{uri}'>\n</html>"

    def answer(request):
        return httpx.Response(502, text=page, headers={"content-type": "text/html", "cf-ray": "8f00-AMS"})

    with build_client(transport=httpx.MockTransport(answer)) as client:
        client.post(
            "http://relay.test/v1/x?api_key=abc123&page=2&sig=zz&t=sk-live-0001",
            headers={"x-goog-api-key": "goog-secret-value", "Cookie": "s=1", "Idempotency-Key": "job-1"},
            json={"prompt": "a fox", "echo": "goog-secret-value"},
        )
    (entry,) = traced(capsys.readouterr().err)
    assert [re.sub(r"\b\d+ ms", "N ms", entry[0]), *entry[1:]] == [
        "debug: POST http://relay.test/v1/x?api_key=***&page=2&sig=***&t=*** -> 502 Bad Gateway, N ms, "
        f"{len(page)} bytes text/html, cf-ray 8f00-AMS",
        "  headers: x-goog-api-key: ***, Cookie: ***, Idempotency-Key: job-1",
        '  request (45 bytes): {"prompt": "a fox", "echo": "[redacted]"}',
        f"  answer: <html> <p>bad key [redacted]</p> <img src='data:image/png;base64,... ({len(uri)} characters)'>"
        " </html>",
    ]
