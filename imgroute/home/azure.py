"""Where a user's Azure OpenAI (Microsoft Foundry) deployments are: the resource endpoint, the
deployment's name (what is sent as `model`) and the api-version. From the environment the Azure
SDKs use (AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_DEPLOYMENT, AZURE_OPENAI_API_VERSION), else
config.yaml's `azure: {endpoint, deployment, api_version}`. The key is AZURE_OPENAI_API_KEY (or
`imgroute keys set azure`), as for every provider.

Several deployments (regions) may be declared, each its own offer, `azure/gpt-image-2@NAME`, with
its own limits (keyed per account and deployment):

    azure:
      endpoint: https://team.openai.azure.com
      deployments:
        east: {deployment: image-east, limits: {concurrency: 5, per_minute: 20}}
        west: {endpoint: https://team-west.openai.azure.com, deployment: image-west}

A deployment's missing fields are the `azure:` ones (endpoint, api_version).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from imgroute.errors import ConfigError

ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
DEPLOYMENT_ENV = "AZURE_OPENAI_DEPLOYMENT"
API_VERSION_ENV = "AZURE_OPENAI_API_VERSION"
DEFAULT_DEPLOYMENT = "gpt-image-2"  # what most deployments of it are named (azure.md, LiteLLM)
DEFAULT_API_VERSION = "preview"  # the v1 path's (azure.md, Endpoint)
FIELDS = {"endpoint", "deployment", "api_version", "deployments"}
DEPLOYMENT_FIELDS = {"endpoint", "deployment", "api_version", "limits"}
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
SETUP = (
    f"{ENDPOINT_ENV}=https://RESOURCE.openai.azure.com and AZURE_OPENAI_API_KEY ({DEPLOYMENT_ENV} if the "
    f"deployment is not named {DEFAULT_DEPLOYMENT}), or azure: {{endpoint: ..., deployment: ...}} in config.yaml"
)


class AzureTarget(NamedTuple):
    endpoint: str | None  # None: not configured (the offer is shown, ineligible, with how to set it)
    deployment: str
    api_version: str
    limits: tuple[int | None, float | None] | None = None  # a declared deployment's own


def _text(field) -> str:
    # (an api-version such as 2024-10-21 unquoted is a date to YAML: taken as written)
    return field.value.isoformat() if isinstance(field.value, dt.date) else field.text()


def _node(config_path: Path):
    from imgroute.home.config import raw_config
    from imgroute.pricing.fields import Field

    raw = raw_config(config_path)
    if not isinstance(raw, dict) or "azure" not in raw:
        return None
    return Field(raw, "", str(config_path), "fix config.yaml").mapping()["azure"].mapping(FIELDS)


def configured(config_path: Path) -> dict[str, str]:
    """config.yaml's `azure:` fields (checked), but its deployments."""
    node = _node(config_path)
    return {name: _text(field) for name, field in (node or {}).items() if name != "deployments"}


def _endpoint(value: str | None) -> str | None:
    """The resource's origin: https (http only on this machine), without the API path Azure's docs
    show after it (…/openai/v1/), which imgroute adds itself."""
    if not value:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise ConfigError(
            f"the Azure endpoint {value!r} is not an https URL (its key would travel unencrypted)",
            "give it like https://RESOURCE.openai.azure.com",
        )
    trimmed = value.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        trimmed = trimmed.removesuffix(suffix)
    return trimmed


def default_named(config_path: Path) -> bool:
    """Whether a default deployment is named (env or config), beside any declared ones."""
    return bool(os.environ.get(DEPLOYMENT_ENV, "").strip() or configured(config_path).get("deployment"))


def target(config_path: Path) -> AzureTarget:
    """The default deployment (offer `azure/gpt-image-2`)."""
    here = configured(config_path)
    return AzureTarget(
        endpoint=_endpoint(os.environ.get(ENDPOINT_ENV, "").strip() or here.get("endpoint")),
        deployment=os.environ.get(DEPLOYMENT_ENV, "").strip() or here.get("deployment") or DEFAULT_DEPLOYMENT,
        api_version=os.environ.get(API_VERSION_ENV, "").strip() or here.get("api_version") or DEFAULT_API_VERSION,
    )


def deployments(config_path: Path) -> dict[str, AzureTarget]:
    """The deployments declared by name (offers `azure/gpt-image-2@NAME`), completed from the default."""
    node = _node(config_path)
    if not node or "deployments" not in node:
        return {}
    default = target(config_path)
    out = {}
    for name, entry in node["deployments"].mapping().items():
        if not NAME.match(name):
            raise entry.fail(
                f"{name!r} is not a deployment name imgroute takes", "use lowercase letters, digits, - or _"
            )
        fields = entry.mapping(DEPLOYMENT_FIELDS)
        given: dict[str, Any] = {k: _text(v) for k, v in fields.items() if k != "limits"}
        limits = None
        if "limits" in fields:
            own = fields["limits"].mapping({"concurrency", "per_minute"})
            limits = (
                own["concurrency"].integer(minimum=1) if "concurrency" in own else None,
                float(own["per_minute"].money()) if "per_minute" in own else None,
            )
        out[name] = AzureTarget(
            endpoint=_endpoint(given.get("endpoint")) or default.endpoint,
            deployment=given.get("deployment") or name,
            api_version=given.get("api_version") or default.api_version,
            limits=limits,
        )
    return out
