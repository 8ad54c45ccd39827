"""OpenRouter's Image API (providers/openrouter.md): synchronous `POST /api/v1/images`, Bearer auth,
OpenRouter's own fields (`size`, `quality`, `n`, `input_references` for edits), and one upstream
pinned: `provider: {order: [UPSTREAM], allow_fallbacks: false}`. OpenRouter would otherwise pick
among its upstreams, and a price quoted for one would be a guess for the job; the offer's model
names its upstream after an `@` (`gpt-image-2@openai`: OpenRouter's `openai/gpt-image-2` at its
`openai` upstream), so its quote, `--max-cost` and identity are that upstream's.

The answer (openrouter-rs `api/images.rs`, ImageGenerationResponse): `data: [{b64_json,
media_type}]` and `usage: {prompt_tokens, completion_tokens, total_tokens, cost}`, where `cost` is
the dollars charged: recorded as the job's actual cost (Usage.usd). A failed generation answers 502
and is not billed (billing is all or nothing), so its images may move on to another offer.
"""

from __future__ import annotations

import httpx

from imgroute.errors import JobFailed, ProviderTrouble, TroubleKind
from imgroute.models import JobSpec
from imgroute.net.http import Http
from imgroute.providers.base import Adapter, PreparedRequest, Usage, data_uri, error_message, is_url, json_or_none
from imgroute.providers.openai import OpenAIAdapter

AUTHOR = "openai"  # OpenRouter names models author/slug: openai/gpt-image-2


def upstream_of(model: str) -> tuple[str, str | None]:
    """`gpt-image-2@openai` -> (the model OpenRouter knows, `openai/gpt-image-2`; the upstream pinned)."""
    name, _, upstream = model.partition("@")
    return (name if "/" in name else f"{AUTHOR}/{name}"), upstream or None


class OpenRouterAdapter(OpenAIAdapter):
    """OpenAI's synchronous shape (its answer is read as OpenAI's is), OpenRouter's own body."""

    provider = "openrouter"
    documented_origin = "https://openrouter.ai"
    path = "/api/v1/images"  # (Bearer auth, as OpenAI's)

    def endpoints(self, http: Http, model: str) -> dict:
        """`GET /api/v1/images/models/{author}/{slug}/endpoints`: each upstream of a model and its
        pricing rows (openrouter.md; openrouter-rs ImageModelEndpointsResponse)."""
        response = http.get(f"{self.base}/api/v1/images/models/{model}/endpoints", headers=self.auth_headers())
        if response.status_code != 200:
            raise self.trouble_for_status(response, error_message(_json(response), f"HTTP {response.status_code}"))
        return self.json_of(response, "the endpoints answer")

    def body(self, spec: JobSpec) -> dict:
        model, upstream = upstream_of(spec.model)
        body: dict = {
            "model": model,
            "prompt": spec.prompt,
            "n": spec.n,
            "size": f"{spec.width}x{spec.height}",
            "quality": spec.quality,
            "output_format": spec.output_format,
        }
        if spec.background != "auto":
            body["background"] = spec.background
        if spec.images:
            body["input_references"] = [
                {"type": "image_url", "image_url": {"url": p if is_url(p) else data_uri(p)}} for p in spec.images
            ]
        if upstream:
            body["provider"] = {"order": [upstream], "allow_fallbacks": False}
        return body

    def prepare(self, spec: JobSpec) -> PreparedRequest:  # (edits too: their images ride in the JSON body)
        return PreparedRequest(
            method="POST", url=self.base + self.path, headers={"Content-Type": "application/json"}, body=self.body(spec)
        )

    def check_key(self, http: Http):
        return Adapter.check_key(self, http)  # (OpenAI's models route is not OpenRouter's)

    def job_id_of(self, response: httpx.Response, body: dict) -> str | None:
        return body.get("id")

    def usage_of(self, body: dict) -> Usage | None:
        return usage_of(body.get("usage"))

    def failure(self, response: httpx.Response) -> Exception:
        body = json_or_none(response)
        message = error_message(body, response.text[:200] or f"HTTP {response.status_code}")
        if response.status_code == 502:  # the generation failed upstream: not billed (openrouter.md)
            return JobFailed(f"{self.provider}: {self.clean(message)}", never_ran=True)
        if response.status_code == 403 and "moderat" in message.lower():
            return JobFailed(f"{self.provider}: {self.clean(message)}", moderated=True)
        if response.status_code == 402:
            return ProviderTrouble(f"{self.provider}: {self.clean(message)}", TroubleKind.CREDITS)
        return self.trouble_for_status(response, message)


def usage_of(raw) -> Usage | None:
    """OpenRouter's usage: tokens, and `cost`, the dollars it charged (kept as decimal text)."""
    if not isinstance(raw, dict):
        return None
    cost = raw.get("cost")
    return Usage(
        image_output=int(raw.get("completion_tokens") or 0),
        text_input=int(raw.get("prompt_tokens") or 0),
        usd=str(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
    )


def _json(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return None
