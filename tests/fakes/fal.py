"""Fake fal.ai queue for openai/gpt-image-2: IN_QUEUE -> IN_PROGRESS -> COMPLETED, 202 then 200."""

from __future__ import annotations

from tests.fakes.openai import size_problem
from tests.fakes.server import FakeProvider, Reply, Request, decode_data_uri, image_info

APP = "/openai/gpt-image-2"


class FakeFal(FakeProvider):
    name = "fal"
    key = "fal-test-key:0123456789abcdef"

    def route(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return self.serve_file(request)  # the CDN needs no auth
        if request.header("Authorization") != f"Key {self.key}":
            return Reply(401, {"detail": "Invalid API key"})
        if request.method == "POST" and request.path in (APP, APP + "/edit"):
            return self.submit(request)
        parts = request.path.removeprefix(APP + "/requests/").split("/")
        if request.method == "GET" and request.path.startswith(APP + "/requests/") and parts[0] in self.jobs:
            job = self.jobs[parts[0]]
            return self.status(job) if parts[1:] == ["status"] else self.result(job)
        return Reply(404, {"detail": "Not Found"})

    def route_name(self, request: Request) -> str:
        if request.path.startswith("/files/"):
            return "download"
        if request.method == "POST":
            return "submit"
        return "poll" if request.path.endswith("/status") else "result"

    def submit(self, request: Request) -> Reply:
        if self.credits == 0:
            return Reply(
                403,
                {
                    "detail": "User is locked. Reason: Exhausted balance. Top up your balance at "
                    "fal.ai/dashboard/billing."
                },
            )
        body = request.json()
        size = body.get("image_size")
        problems = []
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            problems.append({"loc": ["body", "prompt"], "msg": "field required", "type": "missing"})
        if not (isinstance(size, dict) and isinstance(size.get("width"), int)):
            problems.append({"loc": ["body", "image_size"], "msg": "expected {width, height}", "type": "value_error"})
        elif size_problem(f"{size['width']}x{size['height']}"):
            problems.append(
                {
                    "loc": ["body", "image_size"],
                    "msg": "Width and height must be multiples of 16",
                    "type": "value_error",
                    "input": size,
                }
            )
        if body.get("quality") not in ("low", "medium", "high"):
            problems.append({"loc": ["body", "quality"], "msg": "invalid quality", "type": "enum"})
        if not 1 <= body.get("num_images", 1) <= 4:
            problems.append({"loc": ["body", "num_images"], "msg": "at most 4", "type": "value_error"})
        if request.path.endswith("/edit"):
            problems.extend(self.edit_problems(body))
        if problems:
            return Reply(422, {"detail": problems})
        request_id = self.new_id("3f1c9a52-")
        base = f"{self.url}{APP}/requests/{request_id}"
        self.jobs[request_id] = {"id": request_id, "polls": 0, "body": body, "outcome": self.outcome, "urls": None}
        return Reply(
            200,
            {
                "status": "IN_QUEUE",
                "request_id": request_id,
                "response_url": base,
                "status_url": base + "/status",
                "cancel_url": base + "/cancel",
                "queue_position": 0,
            },
        )

    def edit_problems(self, body: dict) -> list[dict]:
        urls = body.get("image_urls")
        if not isinstance(urls, list) or not 1 <= len(urls) <= 16:
            return [{"loc": ["body", "image_urls"], "msg": "1 to 16 image URLs are required", "type": "value_error"}]
        problems = []
        for i, url in enumerate(urls + ([body["mask_url"]] if body.get("mask_url") else [])):
            if url.startswith("data:"):
                data = decode_data_uri(url)
                if data is None or image_info(data) is None:
                    problems.append(
                        {"loc": ["body", "image_urls", i], "msg": "not a readable image", "type": "image_load_error"}
                    )
            elif not url.startswith(("http://", "https://")):
                problems.append({"loc": ["body", "image_urls", i], "msg": "not a URL", "type": "value_error"})
        return problems

    def status(self, job: dict) -> Reply:
        job["polls"] += 1
        base = f"{self.url}{APP}/requests/{job['id']}"
        common = {
            "request_id": job["id"],
            "response_url": base,
            "status_url": base + "/status",
            "cancel_url": base + "/cancel",
        }
        if job["polls"] < self.steps:
            state = "IN_QUEUE" if job["polls"] == 1 else "IN_PROGRESS"
            return Reply(202, {"status": state, **common, **({"queue_position": 0} if state == "IN_QUEUE" else {})})
        if job["urls"] is None and job["outcome"] == "succeed":
            body = job["body"]
            size = body["image_size"]
            n = body.get("num_images", 1)
            job["urls"] = self.store_images(
                job["id"], n, size["width"], size["height"], body.get("output_format", "png")
            )
            self.bill(n)  # fal bills completed runs; failed 5xx runs are not billed
        return Reply(200, {"status": "COMPLETED", **common, "logs": [], "metrics": {"inference_time": 1.5}})

    def result(self, job: dict) -> Reply:
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
        size = job["body"]["image_size"]
        return Reply(
            200,
            {
                "images": [
                    {
                        "url": url,
                        "content_type": "image/png",
                        "file_name": url.rsplit("/", 1)[1],
                        "width": size["width"],
                        "height": size["height"],
                    }
                    for url in job["urls"]
                ]
            },
        )
