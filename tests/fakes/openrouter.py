"""Fake OpenRouter Image API, held to providers/openrouter.md and to openrouter-rs `api/images.rs`
(realmorrisliu/openrouter-rs, the field names of its request, answer and endpoint types):

- `POST /api/v1/images`, `Authorization: Bearer KEY`; body `model`, `prompt`, `n`, `size`,
  `resolution`, `aspect_ratio`, `quality`, `background`, `output_format`, `output_compression`,
  `seed`, `input_references: [{type: image_url, image_url: {url}}]`, `provider: {only, order,
  ignore, sort, allow_fallbacks}` (openrouter.md, Endpoint).
- The answer: `{created, data: [{b64_json, media_type}], usage: {prompt_tokens, completion_tokens,
  total_tokens, cost}}`, `cost` in dollars charged (openrouter.md: usage.cost).
- A failed generation is 502 and not billed (openrouter.md: "all-or-nothing"); 402 without credits.
- `GET /api/v1/images/models/{author}/{slug}/endpoints`: `{id, endpoints: [{provider_name,
  provider_slug, provider_tag, supported_parameters, allowed_passthrough_parameters,
  supports_streaming, pricing: [{billable, unit, cost_usd, variant}]}]}`.

Each upstream's price (the endpoints API's rows) is what the fake charges as `usage.cost`: its
`openai` upstream by OpenAI's tokens, its `imagerouter` upstream a flat price per image by quality.
Without `allow_fallbacks: false` the fake routes to the cheapest upstream, as `sort: price` would.
"""

from __future__ import annotations

import base64
from decimal import Decimal

from imgroute.pricing.tokens import output_tokens
from tests.fakes.openai import size_problem
from tests.fakes.server import FakeProvider, Reply, Request

MODEL = "openai/gpt-image-2"
FIELDS = {"model", "prompt", "n", "size", "resolution", "aspect_ratio", "quality", "background", "output_format",
          "output_compression", "seed", "input_references", "provider", "stream"}  # fmt: skip
UPSTREAMS = {
    "openai": {"provider_name": "OpenAI", "pricing": [
        {"billable": "text_input", "unit": "token", "cost_usd": 5e-06},
        {"billable": "image_input", "unit": "token", "cost_usd": 8e-06},
        {"billable": "image_output", "unit": "token", "cost_usd": 3e-05},
    ]},
    "imagerouter": {"provider_name": "ImageRouter", "pricing": [
        {"billable": "image", "unit": "image", "cost_usd": 0.004, "variant": "low"},
        {"billable": "image", "unit": "image", "cost_usd": 0.04, "variant": "medium"},
        {"billable": "image", "unit": "image", "cost_usd": 0.16, "variant": "high"},
    ]},
}  # fmt: skip


def error(status: int, message: str, code: int | None = None) -> Reply:
    return Reply(status, {"error": {"code": code or status, "message": message}})


class FakeOpenRouter(FakeProvider):
    name = "openrouter"
    key = "sk-or-v1-test-0123456789abcdef0123456789abcdef"
    settable = (*FakeProvider.settable, "overcharge")

    def __init__(self, *args, **kwargs):
        self.overcharge = Decimal(1)
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        super().reset()
        self.overcharge = Decimal(1)  # what it bills over its endpoints' prices (a price changed upstream)

    def route(self, request: Request) -> Reply:
        if request.header("Authorization") != f"Bearer {self.key}":
            return error(401, "No auth credentials found" if not request.header("Authorization") else "User not found.")
        if request.method == "GET" and request.path.startswith("/api/v1/images/models/"):
            return self.endpoints(request.path.removeprefix("/api/v1/images/models/"))
        if request.method != "POST" or request.path != "/api/v1/images":
            return error(404, f"Not found: {request.method} {request.path}")
        try:
            body = request.json()
        except ValueError:
            return error(400, "Invalid JSON body")
        problem = self.problem(body)
        if problem:
            return error(400, problem)
        if self.credits == 0:
            return error(402, "Insufficient credits. Add more using https://openrouter.ai/credits")
        upstream = self.upstream(body)
        if upstream is None:
            return error(404, "No allowed providers are available for the selected model.")
        if self.outcome == "fail":
            return error(502, f"{UPSTREAMS[upstream]['provider_name']} failed to generate the image")  # not billed
        if self.outcome == "moderate":
            return error(403, "Your prompt was flagged by moderation.")
        return self.generate(body, upstream)

    def problem(self, body) -> str | None:
        if not isinstance(body, dict):
            return "The body must be a JSON object."
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            return f"Unknown parameter: {unknown[0]}"
        if body.get("model") != MODEL:
            return f"{body.get('model')!r} is not a valid model ID"
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return "prompt is required"
        if body.get("quality", "auto") not in ("low", "medium", "high", "auto"):
            return f"Invalid quality: {body['quality']!r}"
        if "size" in body and size_problem(str(body["size"])):
            return size_problem(str(body["size"]))
        for ref in body.get("input_references") or []:
            url = (ref.get("image_url") or {}).get("url", "") if isinstance(ref, dict) else ""
            if not url.startswith(("data:", "https://", "http://")) or ref.get("type") != "image_url":
                return "input_references entries are {type: image_url, image_url: {url}}"
        return None

    def upstream(self, body: dict) -> str | None:
        """The upstream that runs it: the `order`'s first (with `allow_fallbacks: false`, only it)."""
        routing = body.get("provider") or {}
        order = [slug for slug in routing.get("order") or [] if slug in UPSTREAMS]
        if routing.get("order") and not order and routing.get("allow_fallbacks") is False:
            return None
        return order[0] if order else "imagerouter"

    def generate(self, body: dict, upstream: str) -> Reply:
        n = int(body.get("n", 1))
        width, height = (int(x) for x in str(body.get("size", "1024x1024")).split("x"))
        fmt = body.get("output_format", "png")
        quality = body.get("quality", "auto")
        quality = "high" if quality == "auto" else quality
        job_id = self.new_id("gen-")
        self.bill(n)
        images = [self.image_bytes(url) for url in self.store_images(job_id, n, width, height, fmt)]
        completion = output_tokens(width, height, quality) * n
        prompt_tokens = len(body["prompt"]) // 4 + 6
        inputs = body.get("input_references") or []  # (each ~1,024 image tokens, as the OpenAI fake counts)
        cost = self.cost(upstream, quality, n, prompt_tokens, 1024 * len(inputs), completion) * Decimal(
            str(self.overcharge)
        )
        return Reply(200, {
            "created": 1782000000,
            "data": [{"b64_json": base64.b64encode(data).decode(), "media_type": f"image/{fmt}"} for data in images],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion, "cost": float(cost), "is_byok": False},
        })  # fmt: skip

    @staticmethod
    def cost(upstream: str, quality: str, n: int, text_in: int, image_in: int, image_out: int) -> Decimal:
        rates = {
            row.get("variant") or row["billable"]: Decimal(str(row["cost_usd"]))
            for row in UPSTREAMS[upstream]["pricing"]
        }
        if upstream == "imagerouter":
            return rates[quality] * n
        return text_in * rates["text_input"] + image_in * rates["image_input"] + image_out * rates["image_output"]

    def endpoints(self, model: str) -> Reply:
        if model.removesuffix("/endpoints") != MODEL:
            return error(404, f"Model {model!r} not found")
        rows = [
            {"provider_name": info["provider_name"], "provider_slug": slug, "provider_tag": slug,
             "supported_parameters": {"quality": {"type": "enum", "values": ["low", "medium", "high", "auto"]}},
             "allowed_passthrough_parameters": [], "supports_streaming": True, "pricing": info["pricing"]}
            for slug, info in UPSTREAMS.items()
        ]  # fmt: skip
        return Reply(200, {"id": MODEL, "endpoints": rows})
