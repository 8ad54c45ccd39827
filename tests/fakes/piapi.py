"""Fake PiAPI OpenAI-compatible Images API: both models, URL or base64 results, 402 for credits."""

from __future__ import annotations

import base64

from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Reply, Request


class FakePiAPI(FakeOpenAI):
    name = "piapi"
    key = "piapi-test-key-0123456789abcdef"
    models = {"gpt-image-2", "gpt-image-2-preview"}
    image_field = "image"  # PiAPI's edit takes repeated `image` parts

    def route(self, request: Request) -> Reply:
        if (
            self.credits == 0
            and request.method == "POST"
            and (request.header("Authorization") or "").endswith(self.key)
        ):
            return Reply(402, {"code": 402, "message": "insufficient credits, please top up", "data": None})
        return super().route(request)

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
