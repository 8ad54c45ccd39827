"""Fake OpenAI Images API: synchronous POST /v1/images/generations and /v1/images/edits, Bearer auth,
b64_json, held to openai-python 3.63 (`types/image_generate_params.py`, `image_edit_params.py`,
`images_response.py`) and the notes in providers/openai.md.

What the SDK sends with its defaults is accepted: every optional field may be omitted (or null) and
OpenAI's default applies (openai.md, Parameters: `quality` auto, `size` auto, `n` 1, `output_format`
png, `background` auto, `moderation` auto); `size="auto"` and every valid WxH; an edit's one image
as the multipart field `image` and several as `image[]` (openai-compat.md, /v1/images/edits), or the
JSON edit body with `images: [{image_url | file_id}]` (openai.md, Image edit b); `stream: true` as
server-sent events (openai.md, Optional: streaming); `safety_identifier` and the deprecated `user`
(the SDK's `image_generate_params.py`). Answers report what was used: with `auto`, the fake's model
picks (openai.md: "When you send auto, they report the value the model chose"). Every answer, errors
included, carries `x-request-id` (openai.md, Authentication). GET /v1/models serves the model list
(openai-compat.md, Other endpoints) for `imgroute keys check`.
"""

from __future__ import annotations

import base64
import json

from imgroute.pricing.tokens import output_tokens
from tests.fakes.openai_batch import BatchSide
from tests.fakes.server import (
    FakeProvider,
    Reply,
    Request,
    decode_data_uri,
    image_info,
    parse_multipart,
)

MODELS = {"gpt-image-2", "gpt-image-2-2026-04-21"}
QUALITIES = {"low", "medium", "high", "auto"}
FORMATS = {"png", "jpeg", "webp"}
BACKGROUNDS = {"transparent", "opaque", "auto"}
MODERATIONS = {"low", "auto"}
FIDELITIES = {"high", "low"}
STANDARD_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))  # always valid (openai.md, Size rules)
AUTO_QUALITY = "high"  # what the fake's model picks for quality=auto (it reports it, as OpenAI does)
# The request fields OpenAI documents for GPT image models (openai.md, Parameters; the SDK's params).
GENERATE_FIELDS = {
    "model", "prompt", "n", "size", "quality", "background", "output_format", "output_compression",
    "moderation", "stream", "partial_images", "user", "safety_identifier", "response_format", "style",
}  # fmt: skip
EDIT_FIELDS = GENERATE_FIELDS - {"style"} | {"input_fidelity", "image", "image[]", "images", "mask"}
INTEGER_FIELDS = ("n", "output_compression", "partial_images")  # multipart: every field is a string


def size_problem(size: str) -> str | None:
    """OpenAI's custom-size rules for gpt-image-2 (openai.md, Size / aspect / resolution rules)."""
    try:
        w, h = (int(x) for x in size.split("x"))
    except ValueError:
        return f"Invalid size '{size}'."
    if w % 16 or h % 16:
        return f"Invalid size '{size}'. Width and height must both be divisible by 16."
    if max(w, h) > 3840 or max(w, h) / min(w, h) > 3 or not 655_360 <= w * h <= 8_294_400:
        return f"Invalid size '{size}'. The size is outside the supported range."
    return None


def nearest_standard(width: int, height: int) -> tuple[int, int]:
    """The standard size closest in shape to width x height (what `size=auto` makes of an edit)."""
    return min(STANDARD_SIZES, key=lambda s: abs(s[0] / s[1] - width / height))


def error(status: int, message: str, code: str | None, type_: str = "invalid_request_error", param=None) -> Reply:
    """OpenAI's error body (openai-compat.md, Errors)."""
    return Reply(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})


class Problem(Exception):
    """A request OpenAI refuses with 400: message, code, param."""

    def __init__(self, message: str, code: str | None = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.code, self.param = code, param


class FakeOpenAI(BatchSide, FakeProvider):
    name = "openai"
    key = "sk-test-openai-0123456789abcdef"
    request_id_header = "x-request-id"  # on every answer (openai.md, Authentication)
    models = MODELS
    path = "/v1/images/generations"
    edit_path = "/v1/images/edits"
    image_fields = ("image", "image[]")  # the SDK: one file as `image`, a list as `image[]`
    strict_fields = True  # unknown parameters are refused ("Unknown parameter: 'x'.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.edits: list[dict] = []
        self.reset_batches()

    def reset(self) -> None:
        super().reset()
        self.edits.clear()
        self.reset_batches()

    def new_request_id(self) -> str:
        return f"req_{super().new_request_id()}"

    def route_name(self, request: Request) -> str:
        """Batch routes: the input file's upload, the batch's create (a submit), its polls, and the
        download of its result files."""
        if request.path == "/v1/files" and request.method == "POST":
            return "upload"
        if request.path.startswith("/v1/files/"):
            return "result"
        return super().route_name(request)

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        reply = error(status, f"injected {status}", None, "server_error" if status >= 500 else "invalid_request_error")
        if retry_after is not None:
            reply.headers["Retry-After"] = f"{retry_after:g}"
        return reply

    # -- routing ----------------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        if request.path.startswith("/files/"):
            return self.serve_file(request)
        image_route = request.method == "POST" and request.path in (self.path, self.edit_path)
        other = request.path.startswith(("/v1/files", "/v1/batches", "/v1/models"))
        if not image_route and not other:
            return error(404, f"Invalid URL ({request.method} {request.path})", None)
        auth = request.header("Authorization") or ""
        if not auth.startswith("Bearer "):
            return error(401, "You didn't provide an API key.", None)
        if auth != f"Bearer {self.key}":
            shown = auth.removeprefix("Bearer ")
            # OpenAI echoes part of a wrong key; the client must not print it.
            return error(
                401, f"Incorrect API key provided: {shown}. You can find your API key at ...", "invalid_api_key"
            )
        if request.path.startswith("/v1/models"):
            return self.model_route(request)
        if not image_route:
            return self.batch_route(request) or error(404, f"Invalid URL ({request.method} {request.path})", None)
        try:
            if request.path == self.edit_path:
                body, inputs = self.edit_body(request)
            else:
                body, inputs = self.generation_body(request), []
            body = self.checked(body, edit=request.path == self.edit_path, inputs=inputs)
        except Problem as exc:
            kind = "image_generation_user_error" if exc.code == "invalid_value" else "invalid_request_error"
            return error(400, str(exc), exc.code, kind, exc.param)
        return self.generate(body, inputs, edit=request.path == self.edit_path)

    def model_route(self, request: Request) -> Reply:
        """GET /v1/models and /v1/models/{id}: free, what `imgroute keys check` asks."""
        models = [{"id": m, "object": "model", "created": 1776729600, "owned_by": "system"} for m in sorted(MODELS)]
        if request.method == "GET" and request.path == "/v1/models":
            return Reply(200, {"object": "list", "data": models})
        found = next((m for m in models if request.path == f"/v1/models/{m['id']}"), None)
        if request.method == "GET" and found:
            return Reply(200, found)
        name = request.path.removeprefix("/v1/models/")
        return error(404, f"The model '{name}' does not exist", "model_not_found")

    def generation_seconds(self, request: Request) -> float:
        """The Images API answers when the images are made: `job_seconds` after the request."""
        return (self.job_seconds or 0.0) if request.path in (self.path, self.edit_path) else 0.0

    # -- reading the request ----------------------------------------------------------------

    def generation_body(self, request: Request) -> dict:
        try:
            body = request.json()
        except ValueError:
            raise Problem("We could not parse the JSON body of your request.", None) from None
        if not isinstance(body, dict):
            raise Problem("The body must be a JSON object.", None)
        return body

    def edit_body(self, request: Request) -> tuple[dict, list[tuple[int, int]]]:
        """The edit, multipart (one `image` or several `image[]` parts, an optional PNG `mask`) or
        JSON (`images` of `{image_url}` / `{file_id}`, openai.md Image edit b). Returns the fields
        and the input images' sizes."""
        content_type = request.header("Content-Type") or ""
        if content_type.startswith("application/json"):
            body = self.generation_body(request)
            inputs = self.json_images(body)
            self.edits.append({"fields": body, "images": [], "mask": None, "json": True, "image_fields": []})
            return body, inputs
        try:
            fields, files = parse_multipart(request)
        except ValueError:
            raise Problem("The edit endpoint takes multipart/form-data or JSON.", None) from None
        body: dict = {name: values[0] for name, values in fields.items()}
        for number in INTEGER_FIELDS:
            if number in body:
                try:
                    body[number] = int(body[number])
                except ValueError:
                    raise Problem(f"Invalid value for '{number}': expected an integer.", param=number) from None
        if "stream" in body:
            body["stream"] = body["stream"].lower() == "true"
        parts, used = [], []
        for field in self.image_fields:
            parts += files.get(field, [])
            used += [field] * len(files.get(field, []))
        for field in set(files) - set(self.image_fields) - {"mask"}:
            body[field] = "<file>"  # an unknown file part: refused below as an unknown parameter
        if not parts:
            raise Problem(f"Missing required parameter: '{self.image_fields[0]}'.", "missing_required_parameter")
        if len(parts) > 16:
            raise Problem("At most 16 images.", param="image")
        infos = [image_info(data) for _, _, data in parts]
        if any(info is None or info[0] not in ("png", "jpeg", "webp") for info in infos):
            raise Problem("Invalid image file. Supported formats are png, jpeg and webp.", param="image")
        masks = files.get("mask", [])
        for mask_name, _, mask in masks:
            info = image_info(mask)
            if info is None or info[0] != "png" or not info[3]:
                message = f"Invalid mask '{mask_name}': the mask must be a PNG with an alpha channel."
                raise Problem(message, param="mask")
            if info[1:3] != infos[0][1:3]:
                raise Problem("Invalid mask: it must have the same dimensions as the image.", param="mask")
        self.edits.append(
            {
                "fields": body,
                "images": [data for _, _, data in parts],
                "mask": masks[0][2] if masks else None,
                "json": False,
                "image_fields": used,
            }
        )
        return body, [info[1:3] for info in infos]

    def json_images(self, body: dict) -> list[tuple[int, int]]:
        """`images` (1-16) and `mask`: each exactly one of `image_url` (https or a data URL) or
        `file_id` (an uploaded file) (openai.md, Image edit b; the OpenAPI `ImageRefParam`)."""
        images = body.get("images")
        if not isinstance(images, list) or not 1 <= len(images) <= 16:
            raise Problem("'images' must be a list of 1 to 16 image references.", param="images")
        sizes = [self.image_ref(ref, "images") for ref in images]
        if body.get("mask") is not None:
            self.image_ref(body["mask"], "mask")
        return sizes

    def image_ref(self, ref, param: str) -> tuple[int, int]:
        if (
            not isinstance(ref, dict)
            or len(set(ref) & {"image_url", "file_id"}) != 1
            or set(ref)
            - {
                "image_url",
                "file_id",
            }
        ):
            raise Problem(f"Each of '{param}' needs exactly one of 'image_url' or 'file_id'.", param=param)
        if "file_id" in ref:
            stored = self.stored.get(ref["file_id"])
            if stored is None:
                raise Problem(f"No such File object: {ref['file_id']}", param=param)
            info = image_info(stored["bytes"])
        else:
            url = ref["image_url"]
            if not isinstance(url, str) or len(url) > 20_971_520:
                raise Problem(f"Invalid '{param}': image_url.", param=param)
            if url.startswith("data:"):
                data = decode_data_uri(url)
                info = image_info(data) if data is not None else None
            elif url.startswith(("https://", "http://")):
                return 1024, 1024  # a URL is not fetched: its size is taken as 1024x1024
            else:
                raise Problem(f"Invalid '{param}': image_url must be a URL or a data URL.", param=param)
        if info is None or info[0] not in ("png", "jpeg", "webp"):
            raise Problem(f"Invalid '{param}': not a png, jpeg or webp image.", param=param)
        return info[1], info[2]

    def checked(self, body: dict, edit: bool = False, inputs: list | None = None) -> dict:
        """The request with OpenAI's defaults applied, or Problem (openai.md, Parameters)."""
        body = {k: v for k, v in body.items() if v is not None}  # null is "use the default"
        if self.strict_fields:
            unknown = sorted(set(body) - (EDIT_FIELDS if edit else GENERATE_FIELDS))
            if unknown:
                raise Problem(f"Unknown parameter: '{unknown[0]}'.", "unknown_parameter", unknown[0])
        if body.get("model") not in self.models:
            model = body.get("model", "dall-e-2" if not edit else "gpt-image-1.5")  # OpenAI's defaults
            raise Problem(f"Invalid value for 'model': {model!r} (this fake serves {', '.join(sorted(self.models))}).")
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            raise Problem("Missing required parameter: 'prompt'.", "missing_required_parameter", "prompt")
        if len(body["prompt"]) > 32_000:
            raise Problem("The prompt is longer than 32000 characters.", param="prompt")
        body.setdefault("quality", "auto")
        body.setdefault("size", "auto")
        body.setdefault("n", 1)
        body.setdefault("output_format", "png")
        body.setdefault("background", "auto")
        body.setdefault("moderation", "auto")
        if body["quality"] not in QUALITIES:
            raise Problem(f"Invalid value for 'quality': {body['quality']!r}.", param="quality")
        if not isinstance(body["n"], int) or not 1 <= body["n"] <= 10:
            raise Problem("Invalid value for 'n': must be between 1 and 10.", param="n")
        if body["output_format"] not in FORMATS:
            raise Problem(f"Invalid value for 'output_format': {body['output_format']!r}.", param="output_format")
        if body["background"] not in BACKGROUNDS:
            raise Problem(f"Invalid value for 'background': {body['background']!r}.", param="background")
        if body["background"] == "transparent" and body["output_format"] == "jpeg":
            raise Problem("Transparent backgrounds need output_format png or webp.", param="background")
        if body["moderation"] not in MODERATIONS:
            raise Problem(f"Invalid value for 'moderation': {body['moderation']!r}.", param="moderation")
        compression = body.get("output_compression", 100)
        if not isinstance(compression, int) or not 0 <= compression <= 100:
            raise Problem("Invalid value for 'output_compression': must be between 0 and 100.")
        if body.get("input_fidelity", "low") not in FIDELITIES:
            raise Problem(f"Invalid value for 'input_fidelity': {body['input_fidelity']!r}.", param="input_fidelity")
        partial = body.get("partial_images", 0)
        if not isinstance(partial, int) or not 0 <= partial <= 3:
            raise Problem("Invalid value for 'partial_images': must be between 0 and 3.", param="partial_images")
        for field in ("user", "safety_identifier"):
            if field in body and not isinstance(body[field], str):
                raise Problem(f"Invalid type for '{field}': expected a string.", "invalid_type", field)
        if "response_format" in body and self.name == "openai":
            # DALL-E only: "Do not send it for GPT image models" (openai.md, Parameters).
            raise Problem("Unknown parameter: 'response_format'.", "unknown_parameter", "response_format")
        if body["size"] == "auto":
            width, height = nearest_standard(*inputs[0]) if edit and inputs else (1024, 1024)
        else:
            problem = size_problem(str(body["size"]))
            if problem:
                raise Problem(problem, param="size")
            width, height = (int(x) for x in body["size"].split("x"))
        body["_size"] = (width, height)
        body["_quality"] = AUTO_QUALITY if body["quality"] == "auto" else body["quality"]
        return body

    # -- answering --------------------------------------------------------------------------

    def generate(self, body: dict, inputs: list, edit: bool) -> Reply:
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
        n = body["n"]
        w, h = body["_size"]
        job_id = self.new_id("img_")
        self.bill(n)
        answer = self.answer(body, job_id, n, w, h, body["output_format"])
        input_tokens = 1024 * len(inputs)
        if input_tokens and "usage" in answer:
            answer["usage"]["input_tokens"] += input_tokens
            answer["usage"]["total_tokens"] += input_tokens
            answer["usage"]["input_tokens_details"]["image_tokens"] = input_tokens
        if body.get("stream"):
            return self.stream(answer, body, edit)
        return Reply(200, answer, {"x-request-id": f"req_{job_id}"})

    def stream(self, answer: dict, body: dict, edit: bool) -> Reply:
        """`stream: true`: `partial_images` partial events, then the completed one, as server-sent
        events (openai.md, Optional: streaming)."""
        kind = "image_edit" if edit else "image_generation"
        common = {k: answer[k] for k in ("size", "quality", "background", "output_format")}
        common["created_at"] = answer["created"]
        image = answer["data"][0].get("b64_json", "")
        events = [
            (f"{kind}.partial_image", {"type": f"{kind}.partial_image", "b64_json": image, "partial_image_index": i})
            for i in range(body.get("partial_images", 0))
        ]
        completed = {"type": f"{kind}.completed", "b64_json": image, "usage": answer.get("usage")}
        events.append((f"{kind}.completed", completed))
        text = "".join(f"event: {name}\ndata: {json.dumps({**data, **common})}\n\n" for name, data in events)
        return Reply(200, text, {"Content-Type": "text/event-stream"})

    def answer(self, body, job_id, n, w, h, fmt) -> dict:
        images = []
        for i in range(n):
            data = self.image_bytes(self.store_images(f"{job_id}-{i}", 1, w, h, fmt)[0])
            images.append({"b64_json": base64.b64encode(data).decode()})
        quality = body.get("_quality") or body["quality"]
        out = output_tokens(w, h, quality) * n
        text_in = len(body["prompt"]) // 4 + 6
        return {
            "created": 1777100000,
            "background": "transparent" if body.get("background") == "transparent" else "opaque",
            "output_format": fmt,
            "quality": quality,
            "size": f"{w}x{h}",
            "data": images,
            "usage": {
                "input_tokens": text_in,
                "input_tokens_details": {"text_tokens": text_in, "image_tokens": 0},
                "output_tokens": out,
                "output_tokens_details": {"image_tokens": out, "text_tokens": 0},
                "total_tokens": text_in + out,
            },
        }
