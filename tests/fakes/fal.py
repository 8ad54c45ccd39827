"""Fake fal.ai queue for openai/gpt-image-2 and its /edit endpoint, held to fal-client 1.0.3
(`fal_client/client.py`) and the notes in providers/fal.md.

Routes (fal.md, Endpoints and job flow): submit `POST /openai/gpt-image-2[/edit]` (200, IN_QUEUE
with `queue_position` and the three URLs; `gateway_request_id` with `?fal_webhook=`); status
`GET .../requests/{id}/status[?logs=1]`, 202 while IN_QUEUE (with `queue_position`) or
IN_PROGRESS, 200 once COMPLETED; `.../status/stream` (the same objects as server-sent events);
result `GET .../requests/{id}`; cancel `PUT .../requests/{id}/cancel`. Status, result and cancel
URLs use owner/app only, even for edits. `logs` is in every IN_PROGRESS and COMPLETED answer (the
client reads `data["logs"]` unconditionally, `client.py` `_parse_status`): a list when `logs` was
asked, else null (fal.md: "`logs` is filled only when `?logs=1` is passed").

Input (fal.md, Parameters), defaults applied when a field is omitted: `image_size` a preset, a
`{width, height}` or `auto` (default `landscape_4_3`, on /edit `auto`), `quality` low|medium|high|auto
(default `high`), `num_images` 1-4 (default 1), `output_format` png|jpeg|webp (default png),
`sync_mode` (data URIs instead of CDN URLs); /edit: `image_urls` (1-16, required), `mask_url`.
Validation errors are 422 `{"detail": [{loc, msg, type}]}` (fal.md, Error shapes 1); auth 401;
a locked account 403 `{"detail": "User is locked. ..."}`; infrastructure errors
`{"detail", "error_type"}` with `X-Fal-Error-Type` (Error shapes 2). Every answer carries
`x-fal-request-id` (fal.md, Optional request headers: "Responses carry x-fal-request-id").

`GET /v1/account/billing?expand=credits` is fal's Platform API (https://api.fal.ai/v1, fal docs
platform-apis/v1/account/billing): `{username, credits: {current_balance, currency}}`; a key
without billing read permission gets 403. Served here on the same origin, for `keys check`.

undocumented, with a switch each: preset pixel sizes ("not published for this endpoint": the
conventional ones are served; `small_presets` "remap" or "reject" the three below OpenAI's minimum);
unknown input fields (`unknown_fields` "ignore" or "reject"); the HTTP code of each cancel result
(fal docs queue/cancel name OK, CANCELLATION_REQUESTED, ALREADY_COMPLETED, NOT_FOUND; 202 / 400 /
404 are served); what a cancelled request's status and result say.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import unquote

from tests.fakes.openai import nearest_standard, size_problem
from tests.fakes.server import CONTENT_TYPES, FakeProvider, Reply, Request, decode_data_uri, image_info

APP = "/openai/gpt-image-2"
PRESETS = {
    "square_hd": (1024, 1024),
    "landscape_4_3": (1024, 768),  # fal's price table has a 1024 x 768 row: the default preset
    "portrait_4_3": (768, 1024),
}
SMALL_PRESETS = {  # the conventional values are under 655,360 px: remapped (undocumented) to these
    "square": (1024, 1024),
    "landscape_16_9": (1360, 768),
    "portrait_16_9": (768, 1360),
}
LOG_TIME = "2026-05-10T12:00:03.120Z"
FIELDS = {"prompt", "image_size", "quality", "num_images", "output_format", "sync_mode"}
EDIT_FIELDS = FIELDS | {"image_urls", "mask_url"}


def missing(field: str) -> dict:
    return {"loc": ["body", field], "msg": "field required", "type": "missing"}


class FakeFal(FakeProvider):
    name = "fal"
    key = "fal-test-key:0123456789abcdef"
    request_id_header = "x-fal-request-id"
    settable = (*FakeProvider.settable, "small_presets", "unknown_fields", "billing_access")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.defaults()

    def defaults(self) -> None:
        self.small_presets = "remap"
        self.unknown_fields = "ignore"
        self.billing_access = True  # the key may read billing (fal's BILLING / READONLY / FULL presets)

    def reset(self) -> None:
        super().reset()
        self.defaults()

    def route(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return self.serve_file(request)  # the CDN needs no auth
        if request.header("Authorization") != f"Key {self.key}":
            return Reply(401, {"detail": "Invalid API key"})
        if request.path == "/v1/account/billing" and request.method == "GET":
            return self.billing(request)
        if request.method == "POST" and request.path in (APP, APP + "/edit"):
            return self.submit(request)
        if not request.path.startswith(APP + "/requests/"):
            return Reply(404, {"detail": "Not Found"})
        parts = request.path.removeprefix(APP + "/requests/").split("/")
        job = self.jobs.get(parts[0])
        if request.method == "PUT" and parts[1:] == ["cancel"]:
            return self.cancel(job)
        if job is None:
            return Reply(404, {"detail": f"Request {parts[0]} not found"})
        logs = (request.query.get("logs") or ["0"])[0].lower() in ("1", "true")
        if request.method == "GET" and parts[1:] == ["status"]:
            return self.status(job, logs)
        if request.method == "GET" and parts[1:] == ["status", "stream"]:
            return self.stream(job, logs)
        if request.method == "GET" and parts[1:] == []:
            return self.result(job)
        return Reply(405, {"detail": "Method Not Allowed"})

    def route_name(self, request: Request) -> str:
        if request.path.startswith("/files/"):
            return "download"
        if request.method == "POST":
            return "submit"
        return "poll" if "/status" in request.path else "result"

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        """fal's request errors: `{"detail", "error_type"}`, the type repeated in X-Fal-Error-Type."""
        kind = "runner_scheduling_failure" if status >= 500 else "rate_limited" if status == 429 else "request_error"
        headers = {"X-Fal-Error-Type": kind}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        return Reply(status, {"detail": f"injected {status}", "error_type": kind}, headers)

    def billing(self, request: Request) -> Reply:
        if not self.billing_access:
            return Reply(403, {"detail": "This key is not allowed to read billing (billing:usage:read)."})
        answer: dict = {"username": "imgroute-tests"}
        if "credits" in ",".join(request.query.get("expand") or []):
            balance = 12.5 if self.credits is None else self.credits / 100
            answer["credits"] = {"current_balance": balance, "currency": "USD"}
        return Reply(200, answer)

    # -- submit -----------------------------------------------------------------------------

    def submit(self, request: Request) -> Reply:
        if self.credits == 0:
            return Reply(
                403,
                {
                    "detail": "User is locked. Reason: Exhausted balance. Top up your balance at "
                    "fal.ai/dashboard/billing."
                },
            )
        try:
            body = request.json()
        except ValueError:
            return Reply(422, {"detail": [{"loc": ["body"], "msg": "invalid JSON", "type": "json_invalid"}]})
        if not isinstance(body, dict):
            return Reply(422, {"detail": [{"loc": ["body"], "msg": "expected an object", "type": "dict_type"}]})
        edit = request.path.endswith("/edit")
        problems, size = self.problems(body, edit)
        if problems:
            return Reply(422, {"detail": problems})
        request_id = self.new_id("3f1c9a52-")
        base = f"{self.url}{APP}/requests/{request_id}"
        self.jobs[request_id] = self.clock_job(
            {
                "id": request_id,
                "polls": 0,
                "body": body,
                "size": size,
                "quality": body.get("quality", "high"),
                "outcome": self.outcome,
                "urls": None,
                "cancelled": False,
            }
        )
        answer = {
            "status": "IN_QUEUE",
            "request_id": request_id,
            "response_url": base,
            "status_url": base + "/status",
            "cancel_url": base + "/cancel",
            "queue_position": 0,
        }
        if request.query.get("fal_webhook"):
            answer["gateway_request_id"] = request_id
        return Reply(200, answer, {"x-fal-request-id": request_id})

    def problems(self, body: dict, edit: bool) -> tuple[list[dict], tuple[int, int] | None]:
        problems = []
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            problems.append(missing("prompt"))
        unknown = sorted(set(body) - (EDIT_FIELDS if edit else FIELDS))
        if unknown and self.unknown_fields == "reject":
            extra = {"msg": "extra fields not permitted", "type": "extra_forbidden"}
            problems += [{"loc": ["body", field], **extra} for field in unknown]
        if body.get("quality", "high") not in ("low", "medium", "high", "auto"):
            problems.append({"loc": ["body", "quality"], "msg": "invalid quality", "type": "enum"})
        count = body.get("num_images", 1)
        if not isinstance(count, int) or not 1 <= count <= 4:
            problems.append({"loc": ["body", "num_images"], "msg": "must be between 1 and 4", "type": "value_error"})
        if body.get("output_format", "png") not in ("png", "jpeg", "webp"):
            problems.append({"loc": ["body", "output_format"], "msg": "invalid output_format", "type": "enum"})
        if edit:
            problems.extend(self.edit_problems(body))
        size, size_problems = self.size_of(body, edit)
        return problems + size_problems, size

    def size_of(self, body: dict, edit: bool) -> tuple[tuple[int, int] | None, list[dict]]:
        size = body.get("image_size", "auto" if edit else "landscape_4_3")
        where = ["body", "image_size"]
        if size == "auto":
            first = (body.get("image_urls") or [None])[0] if edit else None
            data = decode_data_uri(first) if isinstance(first, str) else None
            info = image_info(data) if data else None
            return (nearest_standard(*info[1:3]) if info else (1024, 1024)), []
        if isinstance(size, str):
            if size in PRESETS:
                return PRESETS[size], []
            if size in SMALL_PRESETS and self.small_presets == "remap":
                return SMALL_PRESETS[size], []
            return None, [{"loc": where, "msg": f"unsupported image_size {size!r}", "type": "value_error"}]
        if not (isinstance(size, dict) and isinstance(size.get("width"), int) and isinstance(size.get("height"), int)):
            return None, [{"loc": where, "msg": "expected a preset, auto or {width, height}", "type": "value_error"}]
        if size_problem(f"{size['width']}x{size['height']}"):
            problem = {"loc": where, "msg": "Width and height must be multiples of 16", "type": "value_error"}
            return None, [{**problem, "input": size}]
        return (size["width"], size["height"]), []

    def edit_problems(self, body: dict) -> list[dict]:
        urls = body.get("image_urls")
        if urls is None:
            return [missing("image_urls")]
        if not isinstance(urls, list) or not 1 <= len(urls) <= 16:
            return [{"loc": ["body", "image_urls"], "msg": "1 to 16 image URLs are required", "type": "value_error"}]
        problems = []
        for i, url in enumerate(urls + ([body["mask_url"]] if body.get("mask_url") else [])):
            if not isinstance(url, str):
                problems.append({"loc": ["body", "image_urls", i], "msg": "not a string", "type": "string_type"})
            elif url.startswith("data:"):
                data = decode_data_uri(url)
                if data is None or image_info(data) is None:
                    problems.append(
                        {"loc": ["body", "image_urls", i], "msg": "not a readable image", "type": "image_load_error"}
                    )
            elif not url.startswith(("http://", "https://")):
                problems.append({"loc": ["body", "image_urls", i], "msg": "not a URL", "type": "value_error"})
        return problems

    # -- status, result, cancel -------------------------------------------------------------

    def urls(self, job: dict) -> dict:
        base = f"{self.url}{APP}/requests/{job['id']}"
        return {
            "request_id": job["id"],
            "response_url": base,
            "status_url": base + "/status",
            "cancel_url": base + "/cancel",
        }

    def finished(self, job: dict) -> bool:
        """Whether the run is over: after `job_seconds`, or once a status poll has seen it end."""
        if self.job_seconds is not None:
            return time.monotonic() - job["created"] >= self.job_seconds
        return job.get("done", False)

    def running(self, job: dict) -> str | None:
        """IN_QUEUE / IN_PROGRESS while the job runs (by polls, or `job_seconds`), else None."""
        if job["cancelled"] or self.finished(job):
            return None
        if self.job_seconds is not None or job["polls"] < self.steps:
            return "IN_QUEUE" if job["polls"] <= 1 else "IN_PROGRESS"
        job["done"] = True
        return None

    def status_body(self, job: dict, logs: bool) -> tuple[int, dict]:
        job["polls"] += 1
        state = self.running(job)
        common = self.urls(job)
        entries = [{"message": "Generating image", "level": "INFO", "source": "USER", "timestamp": LOG_TIME}]
        if state == "IN_QUEUE":
            return 202, {"status": state, **common, "queue_position": 0}
        if state == "IN_PROGRESS":
            return 202, {"status": state, **common, "logs": entries if logs else None}
        if job["cancelled"]:
            # undocumented: a cancelled request ends COMPLETED with an error (client.py reads both)
            done = {"logs": [] if logs else None, "metrics": {}, "error": "Request cancelled"}
            done["error_type"] = "cancelled"
            return 200, {"status": "COMPLETED", **common, **done}
        if job["urls"] is None and job["outcome"] == "succeed":
            body = job["body"]
            n = body.get("num_images", 1)
            fmt = body.get("output_format", "png")
            job["urls"] = self.store_images(job["id"], n, *job["size"], fmt)
            self.bill(n)  # fal bills completed runs; failed 5xx runs are not billed
        done = {"logs": entries if logs else None, "metrics": {"inference_time": 1.5}}
        return 200, {"status": "COMPLETED", **common, **done}

    def status(self, job: dict, logs: bool) -> Reply:
        code, body = self.status_body(job, logs)
        return Reply(code, body)

    def stream(self, job: dict, logs: bool) -> Reply:
        """`.../status/stream`: the status objects as server-sent events until COMPLETED (a job
        timed in seconds holds the stream open until it ends)."""
        events = []
        while not events or json.loads(events[-1][6:])["status"] != "COMPLETED":
            if self.job_seconds is not None and events and not self.finished(job):
                remaining = job["created"] + self.job_seconds - time.monotonic()
                return Reply(200, b"", hold=(max(0.0, remaining), lambda: self.stream_rest(job, logs, events)))
            events.append(f"data: {json.dumps(self.status_body(job, logs)[1])}\n\n")
        return Reply(200, "".join(events), {"Content-Type": "text/event-stream"})

    def stream_rest(self, job: dict, logs: bool, events: list[str]) -> Reply:
        events.append(f"data: {json.dumps(self.status_body(job, logs)[1])}\n\n")
        return Reply(200, "".join(events), {"Content-Type": "text/event-stream"})

    def cancel(self, job: dict | None) -> Reply:
        if job is None:
            return Reply(404, {"status": "NOT_FOUND"})
        if self.finished(job) or job["cancelled"]:
            return Reply(400, {"status": "ALREADY_COMPLETED"})
        job["cancelled"] = True
        return Reply(202, {"status": "CANCELLATION_REQUESTED"})

    def result(self, job: dict) -> Reply:
        if job["cancelled"]:
            return Reply(400, {"detail": "Request was cancelled"})  # undocumented wording
        if job["outcome"] == "moderate":
            return Reply(
                422,
                {
                    "detail": [
                        {
                            "loc": ["body", "prompt"],
                            "msg": "The prompt was flagged by the content checker",
                            "type": "content_policy_violation",
                        }
                    ]
                },
            )
        if job["outcome"] == "fail":
            return Reply(
                422, {"detail": [{"loc": ["body"], "msg": "Generation failed upstream", "type": "generation_error"}]}
            )
        if job["urls"] is None:
            return Reply(400, {"detail": "Request is still in progress"})
        fmt = job["body"].get("output_format", "png")
        width, height = job["size"]
        images = []
        for url in job["urls"]:
            data = self.image_bytes(url)
            name = unquote(url.rsplit("/", 1)[1])
            if job["body"].get("sync_mode"):  # media as data URIs (fal.md, Parameters: sync_mode)
                url = f"data:{CONTENT_TYPES[fmt]};base64,{base64.b64encode(data).decode()}"
            image = {"url": url, "content_type": CONTENT_TYPES[fmt], "file_name": name, "file_size": len(data)}
            images.append({**image, "width": width, "height": height})
        return Reply(200, {"images": images})
