"""Fake PiAPI: its OpenAI-compatible Images API for both models, URL or base64 results, 402 for
credits, and `GET /account/info`. Held to providers/piapi.md (PiAPI has no official Python client).

Documented (piapi.md, A/B and Parameters): `POST /v1/images/generations` (JSON) and
`POST /v1/images/edits` (multipart, repeated `image` parts) with Bearer auth; `model`
(`gpt-image-2`, `gpt-image-2-preview`), `prompt`, `n`, `size` (default `1024x1024`), `quality`
(default `auto`), `output_format`, `response_format` (`url` in PiAPI's examples; `b64_json`);
`usage` for token-billed `gpt-image-2` only. Errors (piapi.md, Errors): OpenAI's body,
`{"message"}` or `{"code", "message", "data": null}` (`error_shape` serves each); 402 for credits.
`GET /account/info` with `x-api-key` (piapi.md, Account / balance; field names from the account-info
doc, https://doc.qubico.ai/account-management/account-info: account_name, account_id, credits,
equivalent_in_usd; the envelope around them is undocumented: the `{code, data, message}` of
PiAPI's other routes).

undocumented (piapi.md: "Not documented by PiAPI. Treat them as pass-through and unverified"):
`background`, `moderation`, `output_compression`, a `mask` part, and `image[]` parts. The switch
`undocumented` serves each plausible behaviour: "pass" (honoured as OpenAI does), "ignore"
(dropped silently: the answer says `background: opaque`), "reject" (400 naming the field).
No request-id header is documented for PiAPI.
"""

from __future__ import annotations

import base64

from tests.fakes.openai import FakeOpenAI, Problem, error
from tests.fakes.server import Reply, Request

UNDOCUMENTED = ("background", "moderation", "output_compression")


class FakePiAPI(FakeOpenAI):
    name = "piapi"
    key = "piapi-test-key-0123456789abcdef"
    request_id_header = None  # none documented
    models = {"gpt-image-2", "gpt-image-2-preview"}
    image_fields = ("image", "image[]")  # `image` documented; `image[]` undocumented (see `undocumented`)
    strict_fields = False  # PiAPI does not document refusing unknown fields
    settable = (*FakeOpenAI.settable, "undocumented", "error_shape")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.undocumented = "pass"
        self.error_shape = "openai"  # or "message", "envelope"

    def reset(self) -> None:
        super().reset()
        self.undocumented = "pass"
        self.error_shape = "openai"

    def route(self, request: Request) -> Reply:
        if request.path == "/account/info" and request.method == "GET":
            return self.account_info(request)
        if request.path.startswith("/v1/") and not request.path.startswith("/v1/images/"):
            return self.shaped(error(404, "Not found", None))  # no Files, Batch or models API is documented
        if (
            self.credits == 0
            and request.method == "POST"
            and (request.header("Authorization") or "").endswith(self.key)
        ):
            return Reply(402, {"code": 402, "message": "insufficient credits, please top up", "data": None})
        return self.shaped(super().route(request))

    def account_info(self, request: Request) -> Reply:
        if request.header("x-api-key") != self.key:
            return Reply(401, {"code": 401, "message": "Invalid API key", "data": None})
        credits = 25_000_000 if self.credits is None else self.credits
        data = {
            "account_name": "imgroute-tests",
            "account_id": "acc_0001",
            "credits": credits,
            "equivalent_in_usd": round(credits / 1_000_000, 2),
        }
        return Reply(200, {"code": 200, "data": data, "message": "success"})

    def shaped(self, reply: Reply) -> Reply:
        """An OpenAI-shaped error in the shape `error_shape` says (piapi.md: all three are seen)."""
        import json

        if reply.status < 400 or self.error_shape == "openai" or not reply.body.startswith(b'{"error"'):
            return reply
        message = json.loads(reply.body)["error"]["message"]
        body = {"message": message} if self.error_shape == "message" else {"code": reply.status, "message": message}
        if self.error_shape == "envelope":
            body["data"] = None
        return Reply(reply.status, body, {k: v for k, v in reply.headers.items() if k != "Content-Type"})

    def checked(self, body: dict, edit: bool = False, inputs: list | None = None) -> dict:
        body = {k: v for k, v in body.items() if v is not None}
        body.setdefault("size", "1024x1024")  # PiAPI's documented default (piapi.md, Parameters)
        present = [f for f in UNDOCUMENTED if f in body]
        if edit and self.edits and self.edits[-1].get("mask") is not None:
            present.append("mask")
        if edit and self.edits and "image[]" in self.edits[-1].get("image_fields", []):
            present.append("image[]")
        if present and self.undocumented == "reject":
            raise Problem(f"Unsupported parameter: '{present[0]}'.", "unsupported_parameter", present[0])
        if present and self.undocumented == "ignore":
            for field in present:
                body.pop(field, None)
            if self.edits and edit:
                self.edits[-1]["ignored"] = present
        return super().checked(body, edit, inputs)

    def answer(self, body, job_id, n, w, h, fmt) -> dict:
        answer = super().answer(body, job_id, n, w, h, fmt)
        if body.get("response_format", "url") == "url":
            urls = self.store_images(job_id, n, w, h, fmt)
            answer["data"] = [{"url": url} for url in urls]
        else:
            answer["data"] = [
                {"b64_json": base64.b64encode(self.image_bytes(u)).decode()}
                for u in self.store_images(job_id, n, w, h, fmt)
            ]
        if body["model"] == "gpt-image-2-preview":
            answer.pop("usage")  # flat-priced: no token usage
        return answer
