"""The Batch API side of the OpenAI fake, as openai-batch.md documents it and openai-python 3.63's
models require (`types/file_object.py`, `types/batch.py`):

- files: `POST /v1/files` (multipart `file` + `purpose`, optional `expires_after[anchor|seconds]`),
  `GET /v1/files[?purpose=]`, `GET /v1/files/{id}` (a whole `FileObject`: `created_at` and `status`
  are required by the SDK's model), `GET /v1/files/{id}/content`, `DELETE /v1/files/{id}`;
- batches: `POST /v1/batches`, `GET /v1/batches[/{id}]` (list: `first_id`, `last_id`, `has_more`),
  `POST /v1/batches/{id}/cancel` (openai-batch.md, 6. Cancel: `cancelling`, then `cancelled` with
  the partial results, if any).

A batch walks validating -> in_progress -> finalizing -> completed, one state per poll; its lines
run when it completes, each through the synchronous fake's own checks (auth, body with OpenAI's
defaults, moderation), and only completed lines are billed. `batch_outcome` makes the next batches
"expire" (half the lines run, the rest come back `batch_expired`) or "invalid" (failed validation,
nothing runs).
"""

from __future__ import annotations

import json
import time

from tests.fakes.server import Reply, Request, parse_multipart

STATES = ("validating", "in_progress", "finalizing")
PURPOSES = {"batch", "vision", "user_data", "assistants", "fine-tune", "evals"}  # `file_create_params.py`
FILE_DAYS = 30  # "Files with purpose=batch expire after 30 days by default" (openai-batch.md, 2.)
TIMESTAMPS = (
    "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at",
)  # fmt: skip


class BatchSide:
    """Mixed into FakeOpenAI, whose `checked`, `answer` and `bill` run each line."""

    def reset_batches(self) -> None:
        self.stored: dict[str, dict] = {}  # file id -> {"bytes", "purpose", "created_at", "filename", ...}
        self.batches: dict[str, dict] = {}
        self.batch_outcome = "complete"

    def batch_route(self, request: Request) -> Reply | None:
        path, method = request.path, request.method
        parts = path.split("/")
        if path == "/v1/files" and method == "POST":
            return self.upload_file(request)
        if path == "/v1/files" and method == "GET":
            purpose = (request.query.get("purpose") or [None])[0]
            files = [self.file_object(i) for i, f in self.stored.items() if purpose in (None, f["purpose"])]
            return Reply(200, {"object": "list", "data": files, "has_more": False})
        if path.startswith("/v1/files/") and len(parts) in (4, 5):
            stored = self.stored.get(parts[3])
            if stored is None:
                return _error(404, f"No such File object: {parts[3]}", "file")
            if len(parts) == 5 and parts[4] == "content" and method == "GET":
                return Reply(200, stored["bytes"], {"Content-Type": "application/octet-stream"})
            if len(parts) == 4 and method == "GET":
                return Reply(200, self.file_object(parts[3]))
            if len(parts) == 4 and method == "DELETE":
                del self.stored[parts[3]]
                return Reply(200, {"id": parts[3], "object": "file", "deleted": True})
            return None
        if path == "/v1/batches" and method == "POST":
            return self.create_batch(request)
        if path == "/v1/batches" and method == "GET":
            return self.list_batches(request)
        if path.startswith("/v1/batches/") and len(parts) in (4, 5):
            batch = self.batches.get(parts[3])
            if batch is None:
                return _error(404, f"No batch found with id '{parts[3]}'.", "batch_id")
            if len(parts) == 4 and method == "GET":
                return Reply(200, self.advance(batch))
            if len(parts) == 5 and parts[4] == "cancel" and method == "POST":
                return self.cancel_batch(batch)
        return None

    # -- files ------------------------------------------------------------------------------

    def upload_file(self, request: Request) -> Reply:
        try:
            fields, files = parse_multipart(request)
        except ValueError:
            return _error(400, "The file upload takes multipart/form-data.")
        purpose = (fields.get("purpose") or [None])[0]
        if "file" not in files:
            return _error(400, "Missing required parameter: 'file'.", "file")
        if purpose not in PURPOSES:
            return _error(400, f"Invalid value for 'purpose': {purpose!r}.", "purpose")
        name, _, data = files["file"][0]
        if purpose == "batch" and not name.endswith(".jsonl"):
            return _error(400, "The batch API accepts only .jsonl files.", "file")
        created = int(time.time())
        seconds = (fields.get("expires_after[seconds]") or [None])[0]
        if seconds is not None and not (seconds.isdigit() and 3600 <= int(seconds) <= 2_592_000):
            return _error(400, "expires_after.seconds must be between 3600 and 2592000.", "expires_after")
        expires = created + int(seconds) if seconds else (created + FILE_DAYS * 86400 if purpose == "batch" else None)
        file_id = self.new_id("file-")
        self.stored[file_id] = {
            "bytes": data,
            "purpose": purpose,
            "created_at": created,
            "filename": name,
            "expires_at": expires,
        }
        return Reply(200, self.file_object(file_id))

    def file_object(self, file_id: str) -> dict:
        """A whole `FileObject`: `created_at` and `status` are required by the SDK's model
        (`status` is deprecated, and always `processed` here)."""
        stored = self.stored[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(stored["bytes"]),
            "created_at": stored["created_at"],
            "filename": stored.get("filename", f"{file_id}.jsonl"),
            "purpose": stored["purpose"],
            "status": "processed",
            "status_details": None,
            "expires_at": stored.get("expires_at"),
        }

    def keep_file(self, lines: list[dict]) -> str:
        file_id = self.new_id("file-")
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        self.stored[file_id] = {
            "bytes": data,
            "purpose": "batch_output",
            "created_at": int(time.time()),
            "filename": "batch_output.jsonl",
            "expires_at": int(time.time()) + FILE_DAYS * 86400,
        }
        return file_id

    # -- batches ----------------------------------------------------------------------------

    def create_batch(self, request: Request) -> Reply:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _error(400, "The body must be a JSON object.")
        stored = self.stored.get(body.get("input_file_id"))
        if stored is None or stored["purpose"] != "batch":
            return _error(400, "Invalid input_file_id.", "input_file_id")
        if body.get("endpoint") not in ("/v1/images/generations", "/v1/images/edits"):
            return _error(400, "Invalid endpoint.", "endpoint")  # (the fake serves only the image endpoints)
        if body.get("completion_window") != "24h":
            return _error(400, "completion_window must be 24h.", "completion_window")
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > 16
            or any(len(str(k)) > 64 or not isinstance(v, str) or len(v) > 512 for k, v in metadata.items())
        ):
            return _error(400, "Invalid 'metadata': at most 16 string pairs.", "metadata")
        try:
            lines = [json.loads(line) for line in stored["bytes"].decode().splitlines() if line.strip()]
        except ValueError:
            lines, problem = [], "invalid JSON"
        else:
            problem = None
        ids = [line.get("custom_id") for line in lines]
        models = {(line.get("body") or {}).get("model") for line in lines}
        if problem:
            pass
        elif len(set(ids)) != len(ids):
            problem = "duplicate custom_id"
        elif any(line.get("url") != body["endpoint"] or line.get("method") != "POST" for line in lines):
            problem = "every line must POST to the batch's endpoint"
        elif len(models) != 1:
            problem = "an input file can only include requests to a single model"
        batch_id = self.new_id("batch_")
        now = int(time.time())
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "model": next(iter(models)) if len(models) == 1 else None,
            "input_file_id": body["input_file_id"],
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "created_at": now,
            "expires_at": now + 24 * 3600,
            **dict.fromkeys(TIMESTAMPS),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata,
            "usage": None,
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
        page = [_public(b) for b in newest[:limit]]
        return Reply(
            200,
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(newest) > limit,
            },
        )

    def advance(self, batch: dict) -> dict:
        """One poll moves a running batch one state on; at the end its lines run. A cancelling
        batch is cancelled at the next poll."""
        with self.lock:
            now = int(time.time())
            if batch["status"] == "cancelling":
                self.finish(batch, cancelled=True)
            elif batch["status"] in STATES:
                batch["_polls"] += 1
                if batch["_problem"] and batch["_polls"] >= 1:
                    batch.update(status="failed", failed_at=now)
                    batch["errors"] = {
                        "object": "list",
                        "data": [{"code": "invalid", "line": 1, "message": batch["_problem"], "param": None}],
                    }
                elif batch["_polls"] > self.steps:
                    self.finish(batch)
                else:
                    batch["status"] = STATES[min(batch["_polls"], len(STATES) - 1)]
                    batch[f"{batch['status']}_at"] = batch.get(f"{batch['status']}_at") or now
                    batch["request_counts"]["total"] = len(batch["_lines"])
        return _public(batch)

    def cancel_batch(self, batch: dict) -> Reply:
        if batch["status"] not in STATES:
            return _error(409, f"Cannot cancel a batch with status '{batch['status']}'.", "batch_id")
        batch.update(status="cancelling", cancelling_at=int(time.time()))
        return Reply(200, _public(batch))

    def finish(self, batch: dict, cancelled: bool = False) -> None:
        lines = batch["_lines"]
        # A cancelled batch ran nothing here (its lines run only at the end); an expired one, half.
        ran = [] if cancelled else (lines[: len(lines) // 2] if batch["_expire"] else lines)
        good, bad = [], []
        for line in lines:
            if line in ran:
                reply = self.run_line(line.get("body") or {}, line.get("url"))
                entry = {"status_code": reply.status, "request_id": self.new_id("req_"), "body": json.loads(reply.body)}
                (good if reply.status == 200 else bad).append(
                    {"id": self.new_id("batch_req_"), "custom_id": line["custom_id"], "response": entry, "error": None}
                )
            elif not cancelled:
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
        now = int(time.time())
        if cancelled:
            batch.update(status="cancelled", cancelled_at=now)
        elif batch["_expire"]:
            batch.update(status="expired", expired_at=now)
        else:
            batch.update(status="completed", completed_at=now, finalizing_at=batch.get("finalizing_at") or now)
        batch["request_counts"] = {"total": len(lines), "completed": len(good), "failed": len(bad)}

    def run_line(self, body: dict, url: str | None = None) -> Reply:
        """A line's body through the synchronous checks; billed only when it produced images. An
        edit line is the JSON edit body: `images` of `{image_url}` / `{file_id}` (openai.md, Image
        edit b; the OpenAPI `EditImageBodyJsonParam`)."""
        from tests.fakes.openai import Problem

        edit = url == "/v1/images/edits"
        try:
            inputs = self.json_images(body) if edit else []
            checked = self.checked(dict(body), edit=edit, inputs=inputs)
        except Problem as exc:
            return Reply(400, {"error": {"message": str(exc), "type": "invalid_request_error", "code": exc.code}})
        if "FORBIDDEN" in checked["prompt"]:
            return Reply(
                400,
                {
                    "error": {
                        "message": "Your request was rejected by the safety system.",
                        "type": "image_generation_user_error",
                        "code": "moderation_blocked",
                    }
                },
            )
        n = checked["n"]
        w, h = checked["_size"]
        self.bill(n)
        answer = self.answer(checked, self.new_id("img_"), n, w, h, checked["output_format"])
        if inputs:
            answer["usage"]["input_tokens"] += 1024 * len(inputs)
            answer["usage"]["total_tokens"] += 1024 * len(inputs)
            answer["usage"]["input_tokens_details"]["image_tokens"] = 1024 * len(inputs)
        return Reply(200, answer)


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _error(status: int, message: str, param: str | None = None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}})
