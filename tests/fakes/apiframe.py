"""Fake Apiframe v2: generate with X-API-Key + Idempotency-Key, jobs QUEUED -> PROCESSING -> COMPLETED."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.fakes.server import FakeProvider, Reply, Request, image_info, parse_multipart

CREDITS = {"low": 4, "medium": 9, "high": 23, "auto": 23}
SIZES = {"1:1": (1024, 1024), "3:2": (1536, 1024), "2:3": (1024, 1536)}
TOP_FIELDS = {"model", "prompt", "gptImage2Params", "webhookUrl", "webhookEvents"}
PARAM_FIELDS = {
    "quality",
    "aspect_ratio",
    "output_format",
    "background",
    "moderation",
    "input_images",
    "number_of_images",
}


class FakeApiframe(FakeProvider):
    name = "apiframe"
    key = "afk_test0123456789abcdef"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.idempotent: dict[str, Reply] = {}

    def reset(self) -> None:
        super().reset()
        self.idempotent.clear()

    def route(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return self.serve_file(request)
        key = request.header("X-API-Key")
        if not key:
            return Reply(401, {"error": "API key is required"})
        if key != self.key:
            return Reply(401, {"error": "Invalid API key"})
        if request.method == "POST" and request.path == "/v2/uploads":
            fields, files = parse_multipart(request)
            if "file" not in files or image_info(files["file"][0][2]) is None:
                return Reply(400, {"error": "ValidationError", "details": {"file": ["An image file is required"]}})
            name, content_type, data = files["file"][0]
            return Reply(
                201,
                {
                    "id": self.new_id("upl-"),
                    "url": self.host_file(data, name),
                    "kind": "image",
                    "contentType": content_type,
                    "byteSize": len(data),
                    "expiresAt": "2026-11-24T14:00:00.000Z",
                },
            )
        if request.method == "POST" and request.path == "/v2/images/generate":
            ref = request.header("Idempotency-Key")
            if ref and ref in self.idempotent:
                return self.idempotent[ref]  # replay: no second job, no second charge
            reply = self.generate(request)
            if ref and reply.status < 400:
                self.idempotent[ref] = reply
            return reply
        if request.method == "GET" and request.path.startswith("/v2/jobs/"):
            job = self.jobs.get(request.path.removeprefix("/v2/jobs/"))
            return self.job(job) if job else Reply(404, {"error": "Job not found"})
        return Reply(404, {"error": "Not found"})

    def generate(self, request: Request) -> Reply:
        body = request.json()
        params = body.get("gptImage2Params") or {}
        details = {}
        for field in set(body) - TOP_FIELDS:
            details[field] = ["Unrecognized key"]
        for field in set(params) - PARAM_FIELDS:
            details[f"gptImage2Params.{field}"] = ["Unrecognized key"]
        if body.get("model") != "gpt-image-2":
            details["model"] = ["Invalid enum value"]
        if not 1 <= len(body.get("prompt") or "") <= 2000:
            details["prompt"] = ["String must contain between 1 and 2000 character(s)"]
        if params.get("aspect_ratio", "1:1") not in SIZES:
            details["gptImage2Params.aspect_ratio"] = ["Invalid enum value"]
        if params.get("quality", "auto") not in CREDITS:
            details["gptImage2Params.quality"] = ["Invalid enum value"]
        inputs = params.get("input_images")
        if inputs is not None and not (
            isinstance(inputs, list)
            and all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in inputs)
        ):
            details["gptImage2Params.input_images"] = ["Invalid url"]
        if not 1 <= params.get("number_of_images", 1) <= 10:
            details["gptImage2Params.number_of_images"] = ["Number must be between 1 and 10"]
        if details:
            return Reply(400, {"error": "ValidationError", "details": details})
        n = params.get("number_of_images", 1)
        cost = CREDITS[params.get("quality", "auto")] * n
        if self.credits is not None and self.credits < cost:
            return Reply(
                402, {"error": "Insufficient credits", "creditsRequired": cost, "creditsAvailable": self.credits}
            )
        job_id = self.new_id("6a1d2f3e-")
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
            "webhookStatus": None,
            "createdAt": _iso(job["created_at"]),
            "completedAt": None,
            "input": {"prompt": job["body"]["prompt"]},
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
            out.update(status="COMPLETED", progress=100, result={"images": job["urls"]})
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
