"""The Batch API side of the OpenAI fake: files (`POST /v1/files`, `GET /v1/files/{id}/content`)
and batches (`POST /v1/batches`, `GET /v1/batches[/{id}]`), as openai-batch.md documents them.

A batch walks validating -> in_progress -> finalizing -> completed, one state per poll; its lines
run when it completes, each through the synchronous fake's own checks (auth, body, moderation), and
only completed lines are billed. `batch_outcome` makes the next batches "expire" (half the lines
run, the rest come back `batch_expired`) or "invalid" (failed validation, nothing runs).
"""

from __future__ import annotations

import json
import time

from tests.fakes.server import Reply, Request, parse_multipart

STATES = ("validating", "in_progress", "finalizing")


class BatchSide:
    """Mixed into FakeOpenAI, whose `validate`, `answer` and `bill` run each line."""

    def reset_batches(self) -> None:
        self.stored: dict[str, dict] = {}  # file id -> {"bytes", "purpose", "created_at"}
        self.batches: dict[str, dict] = {}
        self.batch_outcome = "complete"

    def batch_route(self, request: Request) -> Reply | None:
        path = request.path
        if path == "/v1/files" and request.method == "POST":
            return self.upload_file(request)
        if path.startswith("/v1/files/") and path.endswith("/content") and request.method == "GET":
            stored = self.stored.get(path.split("/")[3])
            return Reply(200, stored["bytes"]) if stored else _error(404, "No such File object")
        if path == "/v1/batches" and request.method == "POST":
            return self.create_batch(request)
        if path == "/v1/batches" and request.method == "GET":
            return self.list_batches(request)
        if path.startswith("/v1/batches/") and request.method == "GET":
            batch = self.batches.get(path.split("/")[3])
            return Reply(200, self.advance(batch)) if batch else _error(404, "No such batch")
        return None

    def upload_file(self, request: Request) -> Reply:
        try:
            fields, files = parse_multipart(request)
        except ValueError:
            return _error(400, "The file upload takes multipart/form-data.")
        if fields.get("purpose") != ["batch"] or "file" not in files:
            return _error(400, "Missing 'purpose' or 'file'.")
        name, _, data = files["file"][0]
        if not name.endswith(".jsonl"):
            return _error(400, "The batch API accepts only .jsonl files.")
        file_id = self.new_id("file-")
        self.stored[file_id] = {"bytes": data, "purpose": "batch", "created_at": int(time.time())}
        return Reply(200, {"id": file_id, "object": "file", "bytes": len(data), "filename": name, "purpose": "batch"})

    def create_batch(self, request: Request) -> Reply:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        stored = self.stored.get(body.get("input_file_id"))
        if stored is None:
            return _error(400, "Invalid input_file_id.")
        if body.get("endpoint") not in ("/v1/images/generations", "/v1/images/edits"):
            return _error(400, "Invalid endpoint.")
        if body.get("completion_window") != "24h":
            return _error(400, "completion_window must be 24h.")
        lines = [json.loads(line) for line in stored["bytes"].decode().splitlines() if line.strip()]
        ids = [line.get("custom_id") for line in lines]
        problem = None
        if len(set(ids)) != len(ids):
            problem = "duplicate custom_id"
        elif any(line.get("url") != body["endpoint"] or line.get("method") != "POST" for line in lines):
            problem = "every line must POST to the batch's endpoint"
        elif len({line.get("body", {}).get("model") for line in lines}) != 1:
            problem = "an input file can only include requests to a single model"
        batch_id = self.new_id("batch_")
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "created_at": int(time.time()),
            "completed_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
            "_lines": lines,
            "_polls": 0,
            "_problem": problem or ("invalid input file" if self.batch_outcome == "invalid" else None),
            "_expire": self.batch_outcome == "expire",
        }
        self.batches[batch_id] = batch
        return Reply(200, _public(batch))

    def list_batches(self, request: Request) -> Reply:
        newest = sorted(self.batches.values(), key=lambda b: b["id"], reverse=True)
        after = (request.query.get("after") or [None])[0]
        if after:
            ids = [b["id"] for b in newest]
            newest = newest[ids.index(after) + 1 :] if after in ids else []
        limit = int((request.query.get("limit") or [20])[0])
        page = newest[:limit]
        return Reply(
            200,
            {"object": "list", "data": [_public(b) for b in page], "has_more": len(newest) > limit},
        )

    def advance(self, batch: dict) -> dict:
        """One poll moves a running batch one state on; at the end its lines run."""
        with self.lock:
            if batch["status"] in STATES:
                batch["_polls"] += 1
                if batch["_problem"] and batch["_polls"] >= 1:
                    batch["status"] = "failed"
                    batch["errors"] = {
                        "object": "list",
                        "data": [{"code": "invalid", "line": 1, "message": batch["_problem"]}],
                    }
                elif batch["_polls"] > self.steps:
                    self.finish(batch)
                else:
                    batch["status"] = STATES[min(batch["_polls"], len(STATES) - 1)]
                    batch["request_counts"]["total"] = len(batch["_lines"])
        return _public(batch)

    def finish(self, batch: dict) -> None:
        lines = batch["_lines"]
        ran = lines[: len(lines) // 2] if batch["_expire"] else lines
        good, bad = [], []
        for line in lines:
            if line in ran:
                reply = self.run_line(line["body"])
                entry = {"status_code": reply.status, "request_id": self.new_id("req_"), "body": json.loads(reply.body)}
                (good if reply.status == 200 else bad).append(
                    {"id": self.new_id("batch_req_"), "custom_id": line["custom_id"], "response": entry, "error": None}
                )
            else:
                expired = {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired.",
                }
                bad.append(
                    {
                        "id": self.new_id("batch_req_"),
                        "custom_id": line["custom_id"],
                        "response": None,
                        "error": expired,
                    }
                )
        good.reverse()  # "the output line order may not match the input line order"
        batch["output_file_id"] = self.keep_file(good) if good else None
        batch["error_file_id"] = self.keep_file(bad) if bad else None
        batch["status"] = "expired" if batch["_expire"] else "completed"
        batch["completed_at"] = int(time.time())
        batch["request_counts"] = {"total": len(lines), "completed": len(good), "failed": len(bad)}

    def keep_file(self, lines: list[dict]) -> str:
        file_id = self.new_id("file-")
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        self.stored[file_id] = {"bytes": data, "purpose": "batch_output", "created_at": int(time.time())}
        return file_id

    def run_line(self, body: dict) -> Reply:
        """A line's body through the synchronous checks; billed only when it produced images."""
        body = dict(body)
        images = body.pop("images", None)
        body.pop("mask", None)
        if images is not None and not (
            isinstance(images, list) and all("image_url" in i or "file_id" in i for i in images)
        ):
            return Reply(400, {"error": {"message": "Invalid 'images'.", "code": "invalid_value"}})
        problem = self.validate(body)
        if problem:
            return Reply(400, {"error": {"message": problem, "code": "invalid_value"}})
        if "FORBIDDEN" in body["prompt"]:
            return Reply(
                400,
                {"error": {"message": "Your request was rejected by the safety system.", "code": "moderation_blocked"}},
            )
        n = body.get("n", 1)
        w, h = (int(x) for x in body["size"].split("x"))
        self.bill(n)
        return Reply(200, self.answer(body, self.new_id("img_"), n, w, h, body.get("output_format", "png")))


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _error(status: int, message: str) -> Reply:
    return Reply(status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})
