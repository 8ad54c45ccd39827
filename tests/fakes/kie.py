"""Fake Kie.ai Market jobs API, held to providers/kie.md and Kie's own pages (Kie has no official
Python client). Kie reports errors in the body's `code`, usually with HTTP 200 (kie.md, Create the
task: "Kie reports errors mainly through the code field of the JSON body, and the HTTP status may
still be 200").

Routes, each documented:
- `POST /api/v1/jobs/createTask` (kie.md, 2. Create the task): `model`
  (`gpt-image-2-text-to-image` / `gpt-image-2-image-to-image`), `input` {`prompt` <= 20,000,
  `aspect_ratio` auto|1:1|9:16|16:9|4:3|3:4 (default auto), `resolution` 1K|2K|4K (default 1K),
  `input_urls` 1-16 for i2i}, optional `callBackUrl` (kie.md, Parameters); `auto` only at 1K, no
  1:1 at 4K (kie.md, Size rules). Answer `{"code": 200, "msg": "success", "data": {"taskId"}}`.
- `GET /api/v1/jobs/recordInfo?taskId=` (kie.md, 3. Poll; docs.kie.ai/market/common/get-task-detail):
  states waiting, queuing, generating, success, fail; `resultJson` and `param` are JSON strings;
  times in ms. Its documented codes: 200; 401; 404 task not found; 422 "Validation error in original
  request: check the failMsg"; 500 internal error ("retry after a few minutes"); 501 "Generation
  failed: check failMsg" (get-task-detail, Error codes; the response enum also lists 402, 429, 455,
  505). `record_code` makes a failed task answer 422 or 501 in `code` (with the task in `data`,
  or, `record_data = False`, `data: null`); by default a failed task is `code: 200, state: fail`
  with `failCode` "400" (content policy) or "500" (kie.md, Response on failure).
- `GET /api/v1/chat/credit` (kie.md, 6. Credits balance): `{"code": 200, "msg": "success",
  "data": <credits>}`: free, what `keys check` asks.
- `POST /api/file-stream-upload` on Kie's upload origin (kie.md, 1.): multipart `file` and
  `uploadPath`; the answer's `data.downloadUrl` (field names as in public client code; the fakes
  serve both origins on one port).

Auth (kie.md, Authentication): a bad key is `{"code": 401, "msg": "You do not have access
permissions"}` with HTTP 200; `auth_http_status = 401` serves the HTTP-401 variant some client
code sees (kie.md, Open questions 6: "handle both"). Other body codes (kie.md, Errors table):
402 credits, 422 validation, 429, 433 sub-key limit, 455 maintenance, 500, 501, 505 can be injected
with `inject(route, body={"code": ...})`. `msg` or `message`: both appear (kie.md: "accept either";
get-task-detail's example uses `message`): `message_key` says which.

undocumented: whether a task is charged at creation or only on success (kie.md, Pricing: "Whether
a failed task is charged is not stated"); the fake bills at creation. The pixel size of a ratio at
a tier (not published: the fake picks its own). No request-id header is documented.
"""

from __future__ import annotations

import json
import time

from tests.fakes.server import FakeProvider, Reply, Request, image_info, parse_multipart

RATIOS = {"auto", "1:1", "9:16", "16:9", "4:3", "3:4"}
LONG_EDGE = {"1K": 1024, "2K": 2048, "4K": 3840}
MODELS = {"gpt-image-2-text-to-image", "gpt-image-2-image-to-image"}
FAILURES = {  # outcome -> (failCode, failMsg) of a task that ends `fail`
    "moderate": ("400", "Your prompt was flagged by the content policy."),
    "fail": ("500", "Generation failed, please try again later."),
}


def kie_size(ratio: str, tier: str) -> tuple[int, int]:
    """The fake's own pixel choice for a ratio at a tier (Kie publishes none)."""
    a, b = (1, 1) if ratio == "auto" else (int(x) for x in ratio.split(":"))
    long_edge = LONG_EDGE[tier]
    if a >= b:
        return long_edge, round(long_edge * b / a / 16) * 16
    return round(long_edge * a / b / 16) * 16, long_edge


class FakeKie(FakeProvider):
    name = "kie"
    key = "kie-test-key-0123456789abcdef"
    states = ("waiting", "queuing", "generating")
    settable = (*FakeProvider.settable, "auth_http_status", "record_code", "record_data", "message_key")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.defaults()

    def defaults(self) -> None:
        self.auth_http_status = 200  # documented: HTTP 200 with code 401; 401: the HTTP variant
        self.record_code: int | None = None  # 422 or 501: how recordInfo reports a failed task
        self.record_data = True  # with record_code: the task in `data` (True) or `data: null`
        self.message_key = "msg"

    def reset(self) -> None:
        super().reset()
        self.defaults()

    def body(self, code: int, message: str, data=None, key: str | None = None) -> dict:
        return {"code": code, key or self.message_key: message, "data": data}

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return Reply(status, self.body(status, f"injected {status}"), headers)

    def route(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return self.serve_file(request)
        if request.header("Authorization") != f"Bearer {self.key}":
            return Reply(self.auth_http_status, self.body(401, "You do not have access permissions"))
        if request.method == "POST" and request.path == "/api/file-stream-upload":
            return self.upload(request)
        if request.method == "POST" and request.path == "/api/v1/jobs/createTask":
            return self.create(request)
        if request.method == "GET" and request.path == "/api/v1/jobs/recordInfo":
            task_id = (request.query.get("taskId") or [""])[0]
            if task_id not in self.jobs:
                return Reply(200, self.body(404, "task not found"))
            return self.record(self.jobs[task_id])
        if request.method == "GET" and request.path == "/api/v1/chat/credit":
            return Reply(200, self.body(200, "success", 5000 if self.credits is None else self.credits))
        return Reply(404, self.body(404, "Not Found"))

    def create(self, request: Request) -> Reply:
        try:
            body = request.json()
        except ValueError:
            return Reply(200, self.body(422, "the body is not JSON"))
        data = body.get("input") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return Reply(200, self.body(422, "model and input are required"))
        ratio, tier = data.get("aspect_ratio", "auto"), data.get("resolution", "1K")
        if body.get("model") not in MODELS or not data.get("prompt"):
            return Reply(200, self.body(422, "model and input.prompt are required"))
        if len(data["prompt"]) > 20000:
            return Reply(200, self.body(422, "prompt is longer than 20000 characters"))
        if ratio not in RATIOS or tier not in LONG_EDGE:
            return Reply(200, self.body(422, f"unsupported aspect_ratio {ratio} or resolution {tier}"))
        urls = data.get("input_urls")
        if body["model"] == "gpt-image-2-image-to-image" and not (
            isinstance(urls, list) and 1 <= len(urls) <= 16 and all(u.startswith(("http://", "https://")) for u in urls)
        ):
            return Reply(200, self.body(422, "input_urls must be 1 to 16 public URLs"))
        if (ratio == "auto" and tier != "1K") or (ratio == "1:1" and tier == "4K"):
            return Reply(200, self.body(422, f"aspect_ratio {ratio} is not available at {tier}"))
        if self.credits == 0:
            return Reply(200, self.body(402, "Credits insufficient"))
        task_id = self.new_id("task_gptimg2_")
        self.jobs[task_id] = self.clock_job(
            {
                "id": task_id,
                "polls": 0,
                "body": body,
                "outcome": self.outcome,
                "urls": None,
                "size": kie_size(ratio, tier),
            }
        )
        self.bill(1)  # undocumented: charged at creation here; one image per task
        return Reply(200, self.body(200, "success", {"taskId": task_id}))

    def upload(self, request: Request) -> Reply:
        """Kie's file-stream upload: multipart `file` + `uploadPath`, answered with a download URL."""
        fields, files = parse_multipart(request)
        if "file" not in files or "uploadPath" not in fields:
            return Reply(400, {"success": False, "code": 400, "msg": "file and uploadPath are required"})
        name, content_type, data = files["file"][0]
        if image_info(data) is None:
            return Reply(400, {"success": False, "code": 400, "msg": "unreadable image"})
        url = self.host_file(data, name)
        return Reply(
            200,
            {
                "success": True,
                "code": 200,
                "msg": "File uploaded successfully",
                "data": {
                    "fileName": name,
                    "filePath": f"{fields['uploadPath'][0]}/{name}",
                    "downloadUrl": url,
                    "fileSize": len(data),
                    "mimeType": content_type,
                    "uploadedAt": "2026-11-24T12:00:00.000Z",
                },
            },
        )

    def record(self, job: dict) -> Reply:
        job["polls"] += 1
        created = round(job["created_at"] * 1000)
        data = {
            "taskId": job["id"],
            "model": job["body"]["model"],
            "param": json.dumps(job["body"]),
            "resultJson": "",
            "failCode": "",
            "failMsg": "",
            "costTime": 0,
            "completeTime": None,
            "createTime": created,
            "updateTime": round(time.time() * 1000),
        }
        if self.still_running(job):
            data["state"] = self.states[min(job["polls"] - 1, len(self.states) - 1)]
            return Reply(200, self.body(200, "success", data))
        completed = round(job["completed_at"] * 1000)  # Kie's timestamps are Unix milliseconds
        data.update(completeTime=completed, updateTime=completed, costTime=completed - created)
        if job["outcome"] == "succeed":
            if job["urls"] is None:
                job["urls"] = self.store_images(job["id"], 1, *job["size"], "png")
            data.update(state="success", resultJson=json.dumps({"resultUrls": job["urls"]}))
            return Reply(200, self.body(200, "success", data))
        code, message = FAILURES.get(job["outcome"], FAILURES["fail"])
        if self.record_code is not None:  # the documented task result codes, in the body's code
            code = str(self.record_code)
            if self.record_code == 422:
                message = "Validation error: aspect_ratio 1:1 is not available at 4K"
        data.update(state="fail", failCode=code, failMsg=message)
        if self.record_code is None:
            return Reply(200, self.body(200, "success", data))
        return Reply(200, self.body(self.record_code, message, data if self.record_data else None))
