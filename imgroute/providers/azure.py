"""Azure OpenAI / Microsoft Foundry: the official model in the customer's own resource, on the v1
path (providers/azure.md): `POST {endpoint}/openai/v1/images/generations?api-version=...` (and
`/edits`, multipart), the `api-key` header, the customer's deployment name as `model`, OpenAI's
body and answers otherwise. Its content filter (400 `content_filter`) is moderation; `quality` is
always sent (Azure's default is high, which a medium job must not be billed as)."""

from __future__ import annotations

import httpx

from imgroute.errors import JobFailed
from imgroute.models import JobSpec
from imgroute.net.http import Http
from imgroute.providers.base import KeyCheck, PreparedRequest, error_message, json_or_none
from imgroute.providers.openai import OpenAIAdapter

FILTER_CODES = {"content_filter", "contentFilter", "ResponsibleAIPolicyViolation"}


class AzureAdapter(OpenAIAdapter):
    provider = "azure"
    documented_origin = ""  # each customer's own resource: AZURE_OPENAI_ENDPOINT (home/azure.py)
    end_user_field = "user"  # (Azure documents OpenAI's `user`; `safety_identifier` is not in its v1 schema)

    def __init__(self, key: str, base_url: str | None = None, *, deployment: str = "gpt-image-2",
                 api_version: str = "preview", deployments: dict | None = None):  # fmt: skip
        """`deployments`: the ones declared by name (home/azure.py), for offers `gpt-image-2@NAME`;
        the others go to the default `deployment` at `base_url`."""
        super().__init__(key, base_url)
        self.deployment, self.api_version = deployment, api_version
        self.deployments = deployments or {}

    def _target(self, spec: JobSpec) -> tuple[str, str, str]:
        """(origin, deployment, api-version) of the deployment this job's offer names."""
        name = spec.model.partition("@")[2]
        if name and name in self.deployments:
            where = self.deployments[name]
            return (where.endpoint or self.base).rstrip("/"), where.deployment, where.api_version
        return self.base, self.deployment, self.api_version

    def prepare(self, spec: JobSpec) -> PreparedRequest:
        origin, _, api_version = self._target(spec)
        prepared = super().prepare(spec)
        path = "/openai/v1/images/edits" if spec.images else "/openai/v1/images/generations"
        return prepared._replace(url=f"{origin}{path}?api-version={api_version}")

    def auth_headers(self) -> dict:
        return {"api-key": self.key}

    def body(self, spec: JobSpec) -> dict:
        return {**super().body(spec), "model": self._target(spec)[1]}

    def check_key(self, http: Http) -> KeyCheck:
        return KeyCheck(state="unknown", detail="Azure documents no free route for a key on the v1 images path")

    def failure(self, response: httpx.Response) -> Exception:
        body = json_or_none(response)
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
