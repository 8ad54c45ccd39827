"""Fake Kie.ai Market jobs API: createTask / recordInfo, errors in the body `code` with HTTP 200."""

from __future__ import annotations

import json
import time

from tests.fakes.server import FakeProvider, Reply, Request, image_info, parse_multipart

RATIOS = {"auto", "1:1", "9:16", "16:9", "4:3", "3:4"}
LONG_EDGE = {"1K": 1024, "2K": 2048, "4K": 3840}
MODELS = {"gpt-image-2-text-to-image", "gpt-image-2-image-to-image"}


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

    def route(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return self.serve_file(request)
        if request.header("Authorization") != f"Bearer {self.key}":
            return Reply(200, {"code": 401, "msg": "You do not have access permissions"})
        if request.method == "POST" and request.path == "/api/file-stream-upload":
            return self.upload(request)
        if request.method == "POST" and request.path == "/api/v1/jobs/createTask":
            return self.create(request)
        if request.method == "GET" and request.path == "/api/v1/jobs/recordInfo":
            task_id = (request.query.get("taskId") or [""])[0]
            if task_id not in self.jobs:
                return Reply(200, {"code": 404, "msg": "task not found"})
            return self.record(self.jobs[task_id])
        return Reply(404, {"code": 404, "msg": "Not Found"})

    def create(self, request: Request) -> Reply:
        body = request.json()
        data = body.get("input") or {}
        ratio, tier = data.get("aspect_ratio", "auto"), data.get("resolution", "1K")
        if body.get("model") not in MODELS or not data.get("prompt"):
            return Reply(200, {"code": 422, "msg": "model and input.prompt are required"})
        if len(data["prompt"]) > 20000:
            return Reply(200, {"code": 422, "msg": "prompt is longer than 20000 characters"})
        if ratio not in RATIOS or tier not in LONG_EDGE:
            return Reply(200, {"code": 422, "msg": f"unsupported aspect_ratio {ratio} or resolution {tier}"})
        urls = data.get("input_urls")
        if body["model"] == "gpt-image-2-image-to-image" and not (
            isinstance(urls, list) and 1 <= len(urls) <= 16 and all(u.startswith(("http://", "https://")) for u in urls)
        ):
            return Reply(200, {"code": 422, "msg": "input_urls must be 1 to 16 public URLs"})
        if (ratio == "auto" and tier != "1K") or (ratio == "1:1" and tier == "4K"):
            return Reply(200, {"code": 422, "msg": f"aspect_ratio {ratio} is not available at {tier}"})
        if self.credits == 0:
            return Reply(200, {"code": 402, "msg": "Credits insufficient"})
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
        self.bill(1)  # Kie charges on creation; one image per task
        return Reply(200, {"code": 200, "msg": "success", "data": {"taskId": task_id}})

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
            return Reply(200, {"code": 200, "msg": "success", "data": data})
        completed = round(job["completed_at"] * 1000)  # Kie's timestamps are Unix milliseconds
        data.update(completeTime=completed, updateTime=completed, costTime=completed - created)
        if job["outcome"] == "succeed":
            if job["urls"] is None:
                job["urls"] = self.store_images(job["id"], 1, *job["size"], "png")
            data.update(state="success", resultJson=json.dumps({"resultUrls": job["urls"]}))
        else:
            message = (
                "Your prompt was flagged by the content policy."
                if job["outcome"] == "moderate"
                else "Generation failed, please try again later."
            )
            data.update(state="fail", failCode="400" if job["outcome"] == "moderate" else "500", failMsg=message)
        return Reply(200, {"code": 200, "msg": "success", "data": data})
