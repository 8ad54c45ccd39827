"""Fake Apiframe v2, held to providers/apiframe.md and the OpenAPI spec of Apiframe's official
Node SDK (github.com/apiframe-ai/apiframe-nodejs-sdk `openapi.json`, commit 9f9b464; cited as
"spec" below). Apiframe has no official Python client.

Routes:
- `POST /v2/images/generate` (spec `GenerateImageRequest`, the gpt-image-2 branch,
  `additionalProperties: false` at both levels): `model`, `prompt` (1-2000), `gptImage2Params`
  {quality low|medium|high|auto, aspect_ratio 1:1|3:2|2:3, output_format png|jpeg|webp, background
  auto|opaque, moderation auto|low, input_images (URIs, nullable), number_of_images 1-10},
  `webhookUrl`, `webhookEvents`. 202 `JobAccepted` {jobId (uuid), status}. `Idempotency-Key`
  replays the first answer within 24 h (apiframe.md, Authentication).
- `GET /v2/jobs/{id}` (spec `Job`): 400 when `id` is not a UUID, 404 `{"error": "Job not found"}`.
  `result` is documented three ways (apiframe.md, Open questions 1): `result_shape` serves
  "images" ({images: [...]}, the default), "list" or "string". FAILED jobs are refunded.
- `POST /v2/uploads` (spec: multipart, required part `file`; 201 `Upload` {id, url, kind,
  contentType, byteSize, expiresAt}, all required; 400 `ValidationError`). This confirms the
  adapter's field name and the answer's `url`.
- `GET /v2/me` (spec `Me`: {user, team: {id, name, credits, plan, customerId}, apiKey}): "Useful
  for verifying credentials", free, for `keys check`.

Errors (spec; apiframe.md, Errors table): `{"error": ...}` (`ErrorResponse`); 400
`{"error": "ValidationError", "details": {path: [messages]}}`; 401 "API key is required" /
"Invalid API key"; 402 `InsufficientCredits` {error, creditsRequired, creditsAvailable}; 403 "API
key is inactive" (`inactive`); 404; 429 "Too many requests" with Retry-After; 503 "Service
unavailable". Every answer carries `x-request-id` (the SDK's `src/errors.ts` reads it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tests.fakes.server import FakeProvider, Reply, Request, image_info, parse_multipart

CREDITS = {"low": 4, "medium": 9, "high": 23, "auto": 23}
SIZES = {"1:1": (1024, 1024), "3:2": (1536, 1024), "2:3": (1024, 1536)}
TOP_FIELDS = {"model", "prompt", "gptImage2Params", "webhookUrl", "webhookEvents"}
ENUMS = {
    "quality": set(CREDITS),
    "aspect_ratio": set(SIZES),
    "output_format": {"png", "jpeg", "webp"},
    "background": {"auto", "opaque"},
    "moderation": {"auto", "low"},
}
PARAM_FIELDS = set(ENUMS) | {"input_images", "number_of_images"}
ERRORS = {429: "Too many requests", 503: "Service unavailable", 500: "Internal server error"}


class FakeApiframe(FakeProvider):
    name = "apiframe"
    key = "afk_test0123456789abcdef"
    request_id_header = "x-request-id"
    settable = (*FakeProvider.settable, "result_shape", "inactive")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.idempotent: dict[str, Reply] = {}
        self.defaults()

    def defaults(self) -> None:
        self.result_shape = "images"  # or "list", "string"
        self.inactive = False  # the key is known but inactive: 403

    def reset(self) -> None:
        super().reset()
        self.idempotent.clear()
        self.defaults()

    def new_id(self, prefix: str) -> str:
        """Job and upload ids are UUIDs (spec `JobAccepted.jobId`, `Upload.id`: format uuid)."""
        return str(uuid.UUID(int=int(super().new_id("").lstrip("0") or "0") + (0x6A1D2F3E << 96)))

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return Reply(status, {"error": ERRORS.get(status, f"HTTP {status}")}, headers)

    def route(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return self.serve_file(request)
        key = request.header("X-API-Key")
        if not key:
            return Reply(401, {"error": "API key is required"})
        if key != self.key:
            return Reply(401, {"error": "Invalid API key"})
        if self.inactive:
            return Reply(403, {"error": "API key is inactive"})
        if request.method == "GET" and request.path == "/v2/me":
            return Reply(200, self.me())
        if request.method == "POST" and request.path == "/v2/uploads":
            return self.upload(request)
        if request.method == "POST" and request.path == "/v2/images/generate":
            ref = request.header("Idempotency-Key")
            if ref and ref in self.idempotent:
                return self.idempotent[ref]  # replay: no second job, no second charge
            reply = self.generate(request)
            if ref and reply.status < 400:
                self.idempotent[ref] = reply
            return reply
        if request.method == "GET" and request.path.startswith("/v2/jobs/"):
            job_id = request.path.removeprefix("/v2/jobs/")
            try:
                uuid.UUID(job_id)
            except ValueError:
                return Reply(400, {"error": "Invalid job id"})  # spec: "`id` is not a valid UUID"
            job = self.jobs.get(job_id)
            return self.job(job) if job else Reply(404, {"error": "Job not found"})
        return Reply(404, {"error": "Not found"})

    def me(self) -> dict:
        credits = 52_000 if self.credits is None else self.credits
        return {
            "user": {"id": str(uuid.UUID(int=1)), "email": "dev@example.com", "role": "OWNER"},
            "team": {"id": str(uuid.UUID(int=2)), "name": "imgroute tests", "credits": credits, "plan": "growth",
                     "customerId": None},
            "apiKey": {"id": str(uuid.UUID(int=3)), "name": "imgroute-tests", "prefix": self.key[:8]},
        }  # fmt: skip

    def upload(self, request: Request) -> Reply:
        try:
            fields, files = parse_multipart(request)
        except ValueError:
            return Reply(400, {"error": "ValidationError", "details": {"file": ["Expected multipart/form-data"]}})
        if "file" not in files or image_info(files["file"][0][2]) is None:
            return Reply(400, {"error": "ValidationError", "details": {"file": ["An image file is required"]}})
        name, content_type, data = files["file"][0]
        return Reply(
            201,
            {
                "id": self.new_id(""),
                "url": self.host_file(data, name),
                "kind": "image",
                "contentType": content_type,
                "byteSize": len(data),
                "expiresAt": "2026-11-24T14:00:00.000Z",
            },
        )

    def generate(self, request: Request) -> Reply:
        try:
            body = request.json()
        except ValueError:
            return Reply(400, {"error": "ValidationError", "details": {"": ["Invalid JSON"]}})
        if not isinstance(body, dict):
            return Reply(400, {"error": "ValidationError", "details": {"": ["Expected object"]}})
        params = body.get("gptImage2Params") or {}
        details = {}
        for field in set(body) - TOP_FIELDS:
            details[field] = ["Unrecognized key"]
        for field in set(params) - PARAM_FIELDS:
            details[f"gptImage2Params.{field}"] = ["Unrecognized key"]
        if body.get("model") != "gpt-image-2":
            details["model"] = ["Invalid enum value"]
        if not isinstance(body.get("prompt"), str) or not 1 <= len(body["prompt"]) <= 2000:
            details["prompt"] = ["String must contain between 1 and 2000 character(s)"]
        for field, allowed in ENUMS.items():
            if field in params and params[field] not in allowed:
                details[f"gptImage2Params.{field}"] = ["Invalid enum value"]
        inputs = params.get("input_images")
        if inputs is not None and not (
            isinstance(inputs, list)
            and all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in inputs)
        ):
            details["gptImage2Params.input_images"] = ["Invalid url"]
        count = params.get("number_of_images", 1)
        if not isinstance(count, int) or not 1 <= count <= 10:
            details["gptImage2Params.number_of_images"] = ["Number must be between 1 and 10"]
        events = body.get("webhookEvents")
        if events is not None and not (
            isinstance(events, list) and events and set(events) <= {"progress", "completed", "failed"}
        ):
            details["webhookEvents"] = ["Invalid enum value"]
        if details:
            return Reply(400, {"error": "ValidationError", "details": details})
        n = count
        cost = CREDITS[params.get("quality", "auto")] * n
        if self.credits is not None and self.credits < cost:
            return Reply(
                402, {"error": "Insufficient credits", "creditsRequired": cost, "creditsAvailable": self.credits}
            )
        job_id = self.new_id("")
        self.jobs[job_id] = self.clock_job(
            {
                "id": job_id,
                "polls": 0,
                "body": body,
                "params": params,
                "n": n,
                "cost": cost,
                "outcome": self.outcome,
                "urls": None,
            }
        )
        self.bill(n)
        return Reply(202, {"jobId": job_id, "status": "QUEUED"})

    def job(self, job: dict) -> Reply:
        job["polls"] += 1
        out = {
            "id": job["id"],
            "model": "gpt-image-2",
            "progress": 0,
            "result": None,
            "error": None,
            "creditCost": job["cost"],
            "webhookStatus": "pending" if job["body"].get("webhookUrl") else None,
            "createdAt": _iso(job["created_at"]),
            "completedAt": None,
            "input": {"prompt": job["body"]["prompt"], "gptImage2Params": job["params"]},
            "expired": False,
        }
        if self.still_running(job):
            out.update(status="QUEUED" if job["polls"] == 1 else "PROCESSING", progress=40)
            return Reply(200, out)
        out["completedAt"] = _iso(job["completed_at"])
        if job["outcome"] == "succeed":
            if job["urls"] is None:
                size = SIZES[job["params"].get("aspect_ratio", "1:1")]
                job["urls"] = self.store_images(job["id"], job["n"], *size, job["params"].get("output_format", "webp"))
            result = {"images": job["urls"], "list": job["urls"], "string": job["urls"][0]}[self.result_shape]
            out.update(status="COMPLETED", progress=100, result=result)
        else:
            if not job.get("refunded"):  # FAILED jobs are refunded
                job["refunded"] = True
                with self.lock:
                    self.charges -= 1
                    self.images_billed -= job["n"]
            error = "Prompt rejected by safety system" if job["outcome"] == "moderate" else "Upstream generation failed"
            out.update(status="FAILED", creditCost=0, error=error)
        return Reply(200, out)


def _iso(moment: float) -> str:
    """Apiframe's timestamps: ISO 8601 in UTC with milliseconds, e.g. 2026-04-24T09:12:03.000Z."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
