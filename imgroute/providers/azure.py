"""Azure OpenAI / Microsoft Foundry: the official model in the customer's own resource, on the v1
path (providers/azure.md): `POST {endpoint}/openai/v1/images/generations?api-version=...` (and
`/edits`, multipart), the `api-key` header, the customer's deployment name as `model`, OpenAI's
body and answers otherwise. Its content filter (400 `content_filter`) is moderation; `quality` is
always sent (Azure's default is high, which a medium job must not be billed as)."""

from __future__ import annotations

import httpx

from imgroute.errors import JobFailed
from imgroute.models import JobSpec
from imgroute.providers.base import error_message
from imgroute.providers.openai import OpenAIAdapter

FILTER_CODES = {"content_filter", "contentFilter", "ResponsibleAIPolicyViolation"}


class AzureAdapter(OpenAIAdapter):
    provider = "azure"
    documented_origin = ""  # each customer's own resource: AZURE_OPENAI_ENDPOINT (home/azure.py)
    end_user_field = "user"  # (Azure documents OpenAI's `user`; `safety_identifier` is not in its v1 schema)

    def __init__(self, key: str, base_url: str | None = None, *, deployment: str = "gpt-image-2",
                 api_version: str = "preview"):  # fmt: skip
        super().__init__(key, base_url)
        self.deployment = deployment
        query = f"?api-version={api_version}"
        self.path = f"/openai/v1/images/generations{query}"
        self.edit_path = f"/openai/v1/images/edits{query}"

    def auth_headers(self) -> dict:
        return {"api-key": self.key}

    def body(self, spec: JobSpec) -> dict:
        return {**super().body(spec), "model": self.deployment}

    def check_key(self, http):
        from imgroute.providers.base import KeyCheck

        return KeyCheck(state="unknown", detail="Azure documents no free route for a key on the v1 images path")

    def failure(self, response: httpx.Response) -> Exception:
        try:
            body = response.json()
        except ValueError:
            body = None
        err = body.get("error") if isinstance(body, dict) else None
        inner = err.get("innererror") if isinstance(err, dict) else None
        codes = {
            err.get("code") if isinstance(err, dict) else None,
            inner.get("code") if isinstance(inner, dict) else None,
        }
        if codes & FILTER_CODES:
            message = error_message(body, "filtered by Azure's content management policy")
            return JobFailed(f"{self.provider}: {self.clean(message)}", moderated=True)
        return super().failure(response)
