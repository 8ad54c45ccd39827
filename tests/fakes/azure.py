"""Fake Azure OpenAI (Microsoft Foundry) Images API, v1 path: `POST /openai/v1/images/generations`
and `/openai/v1/images/edits` with `?api-version=` and the `api-key` header, the customer's
deployment name as `model`, OpenAI's body otherwise (providers/azure.md, Endpoint).

Where Azure differs from OpenAI (azure.md, Parameters and Errors): quality defaults to high when
absent (the fake bills it so: a client that leaves it out pays for high); WEBP is refused; the
content filter answers 400 with `code: content_filter` and an `innererror.content_filter_result`;
a 429 carries `retry-after-ms` beside `retry-after`.
"""

from __future__ import annotations

from tests.fakes.openai import FakeOpenAI, Problem, error
from tests.fakes.server import Reply, Request

DEPLOYMENT = "image-east"  # the deployment this fake's resource has (any name the customer chose)


class FakeAzure(FakeOpenAI):
    name = "azure"
    key = "azure-test-key-0123456789abcdef0123"
    models = {DEPLOYMENT}
    settings = {"AZURE_OPENAI_DEPLOYMENT": DEPLOYMENT}  # what a client of this resource must be told
    path = "/openai/v1/images/generations"
    edit_path = "/openai/v1/images/edits"

    def route(self, request: Request) -> Reply:
        if request.method != "POST" or request.path not in (self.path, self.edit_path):
            return error(404, "Resource not found", "404")
        if "api-version" not in request.query:
            return error(404, "Resource not found", "404")  # (Azure answers a missing api-version so)
        given = request.header("api-key")
        if given != self.key:
            return Reply(401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key or "
                                         "wrong API endpoint."}})  # fmt: skip
        try:
            body = self.edit_body(request)[0] if request.path == self.edit_path else self.generation_body(request)
            if body.get("output_format") == "webp":
                raise Problem("WEBP images aren't supported.", param="output_format")
        except Problem as exc:
            return error(400, str(exc), exc.code, "invalid_request_error", exc.param)
        if self.outcome == "moderate" or "FORBIDDEN" in str(body.get("prompt")):
            return Reply(400, {"error": {
                "code": "content_filter", "message": "The response was filtered due to the prompt triggering "
                "Azure OpenAI's content management policy.",
                "innererror": {"code": "ResponsibleAIPolicyViolation",
                               "content_filter_result": {"violence": {"filtered": True, "severity": "high"}}},
            }})  # fmt: skip
        return super().route(self._as_openai(request))

    def _as_openai(self, request: Request) -> Request:
        """The checked request, handed to OpenAI's logic (the same body; its key as OpenAI's header).
        A quality left out is billed as high there too (the OpenAI fake's `auto` picks high)."""
        headers = {**request.headers, "Authorization": f"Bearer {self.key}"}
        return Request(request.method, request.path, request.query, headers, request.raw)

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        reply = super().error_reply(status, retry_after)
        if retry_after is not None:
            reply.headers["retry-after-ms"] = f"{int(retry_after * 1000)}"
        return reply
