"""PiAPI's OpenAI-compatible Images API, for gpt-image-2 (tokens) and gpt-image-2-preview (flat).

Same path and shape as OpenAI, but PiAPI can answer with URLs (it rehosts the images), reports
insufficient credits as 402, and may use `{"message": ...}` or `{"code", "message"}` error bodies.
"""

from __future__ import annotations

from imgroute.models import JobSpec
from imgroute.providers.openai import OpenAIAdapter


class PiAPIAdapter(OpenAIAdapter):
    provider = "piapi"
    documented_origin = "https://api.piapi.ai"
    image_field = "image"  # PiAPI's edit takes repeated `image` parts

    def body(self, spec: JobSpec) -> dict:
        body = super().body(spec)
        body.pop("user")  # not documented by PiAPI
        body["response_format"] = "url"  # PiAPI's examples; b64_json answers are read too
        return body
