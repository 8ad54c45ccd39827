"""Fake Replicate: the official openai/gpt-image-2 model's predictions, held to the classic client
replicate 1.0.7 (`replicate/prediction.py`, `model.py`, `account.py`, `run.py`), its recorded
answers (replicate-python `tests/cassettes`) and providers/replicate.md.

- `POST /v1/models/openai/gpt-image-2/predictions` (Bearer token, `{"input": {...}}`), or
  `POST /v1/predictions` with `"version": "openai/gpt-image-2"` (replicate.md, 2. Create), answers
  201 with the prediction. `Prefer: wait` / `Prefer: wait=N` (N 1-60, default 60) holds the
  request until the prediction finishes or the wait runs out (replicate.md, 3. Sync mode): a job
  of `job_seconds` finishes while held and is answered `succeeded`; one longer than the wait is
  answered in `starting` ("If this time is exceeded the prediction will be returned in a
  `starting` state"). The answer carries `Preference-Applied`, echoing the preference (cassette
  `test_models_predictions_create_blocking[True-10].yaml`: `Preference-Applied: wait=10`). A job
  timed in polls (`steps`, no `job_seconds`) has no wall-clock length: its wait is over at once.
- `GET /v1/predictions/{id}` walks starting -> processing -> succeeded (or failed);
  `POST /v1/predictions/{id}/cancel` answers the prediction `canceled` (replicate.md, 7. Cancel);
  `GET /v1/predictions?created_after=` lists the account's predictions, newest first, in pages.
- `GET /v1/models/openai/gpt-image-2` (the client's `models.get`: the `Model` fields it requires),
  `GET /v1/account` (`Account`: type, username, name, github_url), free, for `keys check`.
- Errors are problem details (`application/problem+json`: title, detail, status) (replicate.md,
  Error body). Outputs are URLs; each output image is billed when the prediction succeeds.

No request-id header appears in Replicate's recorded answers (cassettes): none is sent; they do
carry `ratelimit-remaining` / `ratelimit-reset`, and so do these answers.
"""

from __future__ import annotations

import time
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
BODY_FIELDS = {"input", "webhook", "webhook_events_filter", "stream"}  # `prediction_create_params.py`
MODEL = "openai/gpt-image-2"
PAGE = 100
DEFAULT_WAIT = 60
ACCOUNT = {"type": "user", "username": "imgroute-tests", "name": "imgroute tests", "github_url": None}


def problem(status: int, title: str, detail: str) -> Reply:
    return Reply(
        status, {"title": title, "detail": detail, "status": status}, {"Content-Type": "application/problem+json"}
    )


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wait_seconds(prefer: str | None) -> int | None:
    """`Prefer: wait` -> 60, `Prefer: wait=N` -> N (clamped to 1-60: out-of-range values are
    undocumented), anything else -> None."""
    if not prefer or not prefer.strip().startswith("wait"):
        return None
    _, _, value = prefer.strip().partition("=")
    try:
        return min(DEFAULT_WAIT, max(1, int(value))) if value else DEFAULT_WAIT
    except ValueError:
        return DEFAULT_WAIT


class FakeReplicate(FakeProvider):
    name = "replicate"
    key = "r8_test0123456789abcdefABCDEF"

    def answer_headers(self, reply: Reply) -> dict:
        return {"ratelimit-remaining": "599", "ratelimit-reset": "1"}

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        reply = problem(status, "Request was throttled" if status == 429 else "Server error", f"injected {status}")
        if retry_after is not None:
            reply.headers["Retry-After"] = f"{retry_after:g}"
        return reply

    def route(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return self.serve_file(request)
        if request.header("Authorization") != f"Bearer {self.key}":
            return problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        if request.method == "POST" and request.path == f"/v1/models/{MODEL}/predictions":
            return self.create(request)
        if request.method == "POST" and request.path == "/v1/predictions":
            return self.create(request, by_version=True)
        if request.method == "GET" and request.path == "/v1/predictions":
            return self.listing(request)
        if request.method == "GET" and request.path == f"/v1/models/{MODEL}":
            return Reply(200, self.model())
        if request.method == "GET" and request.path == "/v1/account":
            return Reply(200, ACCOUNT)
        if request.path.startswith("/v1/predictions/"):
            parts = request.path.removeprefix("/v1/predictions/").split("/")
            job = self.jobs.get(parts[0])
            if job is None:
                return problem(404, "Not found", "The requested resource could not be found.")
            if request.method == "GET" and len(parts) == 1:
                return Reply(200, self.advance(job))
            if request.method == "POST" and parts[1:] == ["cancel"]:
                return Reply(200, self.cancel(job))
        return problem(404, "Not found", f"No route for {request.method} {request.path}")

    def route_name(self, request: Request) -> str:
        if request.path.endswith("/cancel"):
            return "cancel"
        return super().route_name(request)

    # -- create -----------------------------------------------------------------------------

    def create(self, request: Request, by_version: bool = False) -> Reply:
        try:
            body = request.json() or {}
        except ValueError:
            return problem(400, "Bad request", "The body is not valid JSON")
        allowed = BODY_FIELDS | ({"version"} if by_version else set())
        extra = set(body) - allowed
        if extra:
            return problem(422, "Input validation failed", f"Additional property {sorted(extra)[0]} is not allowed")
        if by_version and body.get("version") != MODEL:  # the owner/name form, for official models
            return problem(
                422,
                "Invalid version or not permitted",
                "The specified version does not exist (or perhaps you don't have permission to use it?)",
            )
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
        job = self.clock_job(
            {"id": prediction_id, "polls": 0, "input": data, "outcome": self.outcome, "urls": None, "canceled": False}
        )
        self.jobs[prediction_id] = job
        prefer = request.header("Prefer")
        wait = wait_seconds(prefer)
        if wait is None:
            return Reply(201, self.view(job))
        applied = {"Preference-Applied": prefer.strip()}
        if self.job_seconds is None:  # timed in polls: the wait is over at once
            if self.steps == 0:
                job["polls"] = 1  # finished while the create was held open
            return Reply(201, self.view(job), applied)
        hold = max(0.0, min(float(wait), job["created"] + self.job_seconds - time.monotonic()))

        def after_the_wait() -> Reply:
            if not self.still_running(job):
                job["polls"] = max(job["polls"], 1)
            return Reply(201, self.view(job), applied)

        return Reply(201, self.view(job), applied, hold=(hold, after_the_wait))

    # -- predictions ------------------------------------------------------------------------

    def advance(self, job: dict) -> dict:
        job["polls"] += 1
        return self.view(job)

    def cancel(self, job: dict) -> dict:
        """A running prediction is canceled (not billed here: billing of a canceled run of this
        per-image model is not stated, replicate.md Open questions 1); a finished one is returned."""
        if job["urls"] is None and not job.get("ended"):
            job["canceled"] = True
        return self.view(job)

    def view(self, job: dict) -> dict:
        data = job["input"]
        urls = {
            "get": f"{self.url}/v1/predictions/{job['id']}",
            "cancel": f"{self.url}/v1/predictions/{job['id']}/cancel",
            "web": f"https://replicate.com/p/{job['id']}",
        }
        prediction = {
            "id": job["id"], "model": MODEL, "version": "hidden", "input": data, "logs": "", "output": None,
            "error": None, "data_removed": False, "created_at": iso(job["created_at"]), "started_at": None,
            "completed_at": None, "metrics": None, "source": "api", "urls": urls,
        }  # fmt: skip
        if job["canceled"]:
            job.setdefault("completed_at", time.time())
            prediction.update(status="canceled", completed_at=iso(job["completed_at"]))
            prediction["metrics"] = {"total_time": job["completed_at"] - job["created_at"]}
            return prediction
        if job["polls"] == 0 or self.still_running(job):
            prediction["status"] = "starting" if job["polls"] <= 1 else "processing"
            if prediction["status"] == "processing":
                prediction["started_at"] = iso(job["created_at"])
            return prediction
        job["ended"] = True
        prediction["started_at"] = iso(job["created_at"])
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

    def model(self) -> dict:
        """The model, with every field the client's `Model` requires (`replicate/model.py`). An
        official model hides its version (replicate.md: `"version": "hidden"`): no latest_version."""
        return {
            "url": f"https://replicate.com/{MODEL}",
            "owner": "openai",
            "name": "gpt-image-2",
            "description": "OpenAI's GPT Image 2",
            "visibility": "public",
            "github_url": None,
            "paper_url": None,
            "license_url": None,
            "run_count": len(self.jobs),
            "cover_image_url": None,
            "default_example": None,
            "latest_version": None,
            "is_official": True,
        }

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
