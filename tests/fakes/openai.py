"""Fake OpenAI Images API: synchronous POST /v1/images/generations, Bearer auth, b64_json."""

from __future__ import annotations

import base64

from imgroute.tokens import output_tokens
from tests.fakes.openai_batch import BatchSide
from tests.fakes.server import FakeProvider, Reply, Request, image_info, parse_multipart

MODELS = {"gpt-image-2", "gpt-image-2-2026-04-21"}
QUALITIES = {"low", "medium", "high", "auto"}
FORMATS = {"png", "jpeg", "webp"}


def size_problem(size: str) -> str | None:
    """OpenAI's custom-size rules for gpt-image-2."""
    try:
        w, h = (int(x) for x in size.split("x"))
    except ValueError:
        return f"Invalid size '{size}'."
    if w % 16 or h % 16:
        return f"Invalid size '{size}'. Width and height must both be divisible by 16."
    if max(w, h) > 3840 or max(w, h) / min(w, h) > 3 or not 655_360 <= w * h <= 8_294_400:
        return f"Invalid size '{size}'. The size is outside the supported range."
    return None


def error(status: int, message: str, code: str | None, type_: str = "invalid_request_error", param=None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})


class FakeOpenAI(BatchSide, FakeProvider):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.edits: list[dict] = []
        self.reset_batches()

    def reset(self) -> None:
        super().reset()
        self.edits.clear()
        self.reset_batches()

    def route_name(self, request: Request) -> str:
        """Batch routes: the input file's upload, the batch's create (a submit), its polls, and the
        download of its result files."""
        if request.path == "/v1/files" and request.method == "POST":
            return "upload"
        if request.path.startswith("/v1/files/"):
            return "result"
        return super().route_name(request)

    name = "openai"
    key = "sk-test-openai-0123456789abcdef"
    models = MODELS
    path = "/v1/images/generations"
    edit_path = "/v1/images/edits"
    image_field = "image[]"

    def route(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return self.serve_file(request)
        batch_side = request.path.startswith(("/v1/files", "/v1/batches"))
        if not batch_side and (request.method != "POST" or request.path not in (self.path, self.edit_path)):
            return error(404, f"Unknown request URL: {request.method} {request.path}", "unknown_url")
        auth = request.header("Authorization") or ""
        if auth != f"Bearer {self.key}":
            shown = auth.removeprefix("Bearer ")
            # OpenAI echoes part of a wrong key; the client must not print it.
            return error(
                401, f"Incorrect API key provided: {shown}. You can find your API key at ...", "invalid_api_key"
            )
        if batch_side:
            return self.batch_route(request) or error(404, f"Unknown request URL: {request.path}", "unknown_url")
        input_tokens = 0
        if request.path == self.edit_path:
            body, problem, input_tokens = self.edit_body(request)
            if problem:
                return error(400, problem, "invalid_value", "invalid_request_error")
        else:
            try:
                body = request.json()
            except ValueError:
                return error(400, "We could not parse the JSON body of your request.", None)
        problem = self.validate(body)
        if problem:
            return error(400, problem, "invalid_value", "image_generation_user_error")
        if self.credits == 0:
            return error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            )
        if self.outcome == "moderate" or "FORBIDDEN" in body["prompt"]:
            return error(
                400,
                "Your request was rejected by the safety system.",
                "moderation_blocked",
                "image_generation_user_error",
            )
        if self.outcome == "fail":
            return error(500, "The server had an error while processing your request.", None, "server_error")
        n = body.get("n", 1)
        w, h = (int(x) for x in body["size"].split("x"))
        fmt = body.get("output_format", "png")
        job_id = self.new_id("img_")
        self.bill(n)
        answer = self.answer(body, job_id, n, w, h, fmt)
        if input_tokens and "usage" in answer:
            answer["usage"]["input_tokens"] += input_tokens
            answer["usage"]["input_tokens_details"]["image_tokens"] = input_tokens
        return Reply(200, answer, {"x-request-id": f"req_{job_id}"})

    def generation_seconds(self, request: Request) -> float:
        """The Images API answers when the images are made: `job_seconds` after the request."""
        return (self.job_seconds or 0.0) if request.path in (self.path, self.edit_path) else 0.0

    def edit_body(self, request: Request) -> tuple[dict, str | None, int]:
        """The multipart edit: form fields, one or more image parts, an optional PNG mask."""
        try:
            fields, files = parse_multipart(request)
        except ValueError:
            return {}, "The edit endpoint takes multipart/form-data.", 0
        body = {name: values[0] for name, values in fields.items()}
        for number in ("n",):
            if number in body:
                body[number] = int(body[number])
        parts = files.get(self.image_field, [])
        if not parts:
            return body, f"Missing required parameter: '{self.image_field}'.", 0
        if len(parts) > 16:
            return body, "At most 16 images.", 0
        infos = [image_info(data) for _, _, data in parts]
        if any(info is None or info[0] not in ("png", "jpeg", "webp") for info in infos):
            return body, "Invalid image file. Supported formats are png, jpeg and webp.", 0
        for mask_name, _, mask in files.get("mask", []):
            info = image_info(mask)
            if info is None or info[0] != "png" or not info[3]:
                return body, f"Invalid mask '{mask_name}': the mask must be a PNG with an alpha channel.", 0
            if info[1:3] != infos[0][1:3]:
                return body, "Invalid mask: it must have the same dimensions as the image.", 0
        self.edits.append(
            {
                "fields": body,
                "images": [data for _, _, data in parts],
                "mask": files["mask"][0][2] if "mask" in files else None,
            }
        )
        return body, None, 1024 * len(parts)

    def validate(self, body) -> str | None:
        if not isinstance(body, dict):
            return "The body must be a JSON object."
        if body.get("model") not in self.models:
            return f"Invalid value for 'model': {body.get('model')!r}."
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return "Missing required parameter: 'prompt'."
        if body.get("quality") not in QUALITIES:
            return f"Invalid value for 'quality': {body.get('quality')!r}."
        if not isinstance(body.get("n", 1), int) or not 1 <= body.get("n", 1) <= 10:
            return "Invalid value for 'n': must be between 1 and 10."
        if body.get("output_format", "png") not in FORMATS:
            return "Invalid value for 'output_format'."
        if "response_format" in body and self.name == "openai":
            return "Unknown parameter: 'response_format'."
        return size_problem(str(body.get("size", "")))

    def answer(self, body, job_id, n, w, h, fmt) -> dict:
        images = []
        for i in range(n):
            data = self.image_bytes(self.store_images(f"{job_id}-{i}", 1, w, h, fmt)[0])
            images.append({"b64_json": base64.b64encode(data).decode()})
        out = output_tokens(w, h, body["quality"]) * n
        text_in = len(body["prompt"]) // 4 + 6
        return {
            "created": 1777100000,
            "background": "opaque",
            "output_format": fmt,
            "quality": body["quality"],
            "size": body["size"],
            "data": images,
            "usage": {
                "input_tokens": text_in,
                "input_tokens_details": {"text_tokens": text_in, "image_tokens": 0},
                "output_tokens": out,
                "output_tokens_details": {"image_tokens": out, "text_tokens": 0},
                "total_tokens": text_in + out,
            },
        }
