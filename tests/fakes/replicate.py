"""Fake Replicate: the official openai/gpt-image-2 model's predictions, as the HTTP API documents them.

`POST /v1/models/openai/gpt-image-2/predictions` (Bearer token, `{"input": {...}}`) answers 201 with
the prediction; with `Prefer: wait` it holds on and answers finished when the job is quick
(`steps == 0`), else in `starting`. `GET /v1/predictions/{id}` walks starting -> processing ->
succeeded (or failed). `GET /v1/predictions?created_after=` lists the account's predictions, newest
first, in pages. Outputs are URLs; each output image is billed when the prediction succeeds.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.fakes.server import FakeProvider, Reply, Request, decode_data_uri, image_info

ASPECTS = {
    "1:1": (1024, 1024),
    "3:2": (1536, 1024),
    "2:3": (1024, 1536),
    "4:3": (1536, 1152),
    "3:4": (1152, 1536),
    "16:9": (1360, 768),
    "9:16": (768, 1360),
    "auto": (1024, 1024),
    "1024x1024": (1024, 1024),
    "1536x1024": (1536, 1024),
    "1024x1536": (1024, 1536),
    "1536x1152": (1536, 1152),
    "1152x1536": (1152, 1536),
    "2048x2048": (2048, 2048),
    "2048x1152": (2048, 1152),
    "1152x2048": (1152, 2048),
    "3840x2160": (3840, 2160),
    "2160x3840": (2160, 3840),
}  # fmt: skip  (ratios render at sizes Replicate does not publish: the fake picks its own)
INPUT_FIELDS = {
    "prompt", "quality", "aspect_ratio", "number_of_images", "background", "moderation", "output_format",
    "output_compression", "input_images", "user_id", "openai_api_key",
}  # fmt: skip
PAGE = 100


def problem(status: int, title: str, detail: str) -> Reply:
    return Reply(
        status, {"title": title, "detail": detail, "status": status}, {"Content-Type": "application/problem+json"}
    )


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeReplicate(FakeProvider):
    name = "replicate"
    key = "r8_test0123456789abcdefABCDEF"

    def route(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return self.serve_file(request)
        if request.header("Authorization") != f"Bearer {self.key}":
            return problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        if request.method == "POST" and request.path == "/v1/models/openai/gpt-image-2/predictions":
            return self.create(request)
        if request.method == "GET" and request.path == "/v1/predictions":
            return self.listing(request)
        if request.method == "GET" and request.path.startswith("/v1/predictions/"):
            job = self.jobs.get(request.path.rsplit("/", 1)[1])
            if job is None:
                return problem(404, "Not found", "The requested resource could not be found.")
            return Reply(200, self.advance(job))
        return problem(404, "Not found", f"No route for {request.method} {request.path}")

    def create(self, request: Request) -> Reply:
        body = request.json() or {}
        extra = set(body) - {"input", "webhook", "webhook_events_filter"}
        if extra:
            return problem(422, "Input validation failed", f"Additional property {sorted(extra)[0]} is not allowed")
        data = body.get("input") or {}
        problems = [f"input.{f}: unknown" for f in set(data) - INPUT_FIELDS]
        if not isinstance(data.get("prompt"), str) or not data["prompt"]:
            problems.append("input.prompt: required")
        if data.get("aspect_ratio", "1:1") not in ASPECTS:
            problems.append("input.aspect_ratio: aspect_ratio must be one of the following: ...")
        if data.get("quality", "auto") not in ("low", "medium", "high", "auto"):
            problems.append("input.quality: must be low, medium, high or auto")
        if not 1 <= int(data.get("number_of_images", 1)) <= 10:
            problems.append("input.number_of_images: must be between 1 and 10")
        if data.get("output_format", "webp") not in ("png", "jpeg", "webp"):
            problems.append("input.output_format: must be png, jpeg or webp")
        for uri in data.get("input_images") or []:
            raw = decode_data_uri(uri) if uri.startswith("data:") else b"url"
            if raw is None or (uri.startswith("data:") and image_info(raw) is None):
                problems.append("input.input_images: not a readable image")
        if problems:
            return problem(422, "Input validation failed", "\n".join(f"- {p}" for p in problems))
        if self.credits == 0:
            return problem(402, "Insufficient credit", "You have insufficient credit to run this model.")
        prediction_id = self.new_id("pred")
        job = self.clock_job({"id": prediction_id, "polls": 0, "input": data, "outcome": self.outcome, "urls": None})
        self.jobs[prediction_id] = job
        if (request.header("Prefer") or "").startswith("wait") and self.steps == 0 and self.job_seconds is None:
            job["polls"] = 1  # finished while the create was held open
        return Reply(201, self.view(job))

    def advance(self, job: dict) -> dict:
        job["polls"] += 1
        return self.view(job)

    def view(self, job: dict) -> dict:
        data = job["input"]
        prediction = {
            "id": job["id"], "model": "openai/gpt-image-2", "version": "hidden", "input": data, "logs": "",
            "output": None, "error": None, "data_removed": False, "created_at": iso(job["created_at"]),
            "source": "api",
            "urls": {"get": f"{self.url}/v1/predictions/{job['id']}", "web": f"https://replicate.com/p/{job['id']}"},
        }  # fmt: skip
        if job["polls"] == 0 or self.still_running(job):
            prediction["status"] = "starting" if job["polls"] <= 1 else "processing"
            return prediction
        prediction["completed_at"] = iso(job["completed_at"])
        prediction["metrics"] = {"predict_time": 0.1, "total_time": job["completed_at"] - job["created_at"]}
        if job["outcome"] == "succeed":
            if job["urls"] is None:
                count = int(data.get("number_of_images", 1))
                width, height = ASPECTS[data.get("aspect_ratio", "1:1")]
                job["urls"] = self.store_images(job["id"], count, width, height, data.get("output_format", "webp"))
                self.bill(count)  # per output image, when it is made
            prediction.update(status="succeeded", output=job["urls"])
        else:
            moderated = job["outcome"] == "moderate"
            error = "The input or output was flagged as sensitive. (E005)" if moderated else "Prediction failed."
            prediction.update(status="failed", error=error)
        return prediction

    def listing(self, request: Request) -> Reply:
        after = (request.query.get("created_after") or [None])[0]
        jobs = sorted(self.jobs.values(), key=lambda j: j["created_at"], reverse=True)
        if after:
            since = datetime.fromisoformat(after.replace("Z", "+00:00")).timestamp()
            jobs = [j for j in jobs if j["created_at"] >= since]
        start = int((request.query.get("cursor") or ["0"])[0])
        page = jobs[start : start + PAGE]
        more = start + PAGE < len(jobs)
        after_part = f"&created_after={after}" if after else ""
        return Reply(
            200,
            {
                "previous": None,
                "next": f"{self.url}/v1/predictions?cursor={start + PAGE}{after_part}" if more else None,
                "results": [self.view(job) for job in page],  # as they stand: listing does not advance them
            },
        )
