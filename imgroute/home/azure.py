"""Where a user's Azure OpenAI (Microsoft Foundry) deployment is: its resource endpoint, the
deployment's name (what is sent as `model`) and the api-version. From the environment the Azure
SDKs use (AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_DEPLOYMENT, AZURE_OPENAI_API_VERSION), else
config.yaml's `azure: {endpoint, deployment, api_version}`. The key is AZURE_OPENAI_API_KEY (or
`imgroute keys set azure`), as for every provider.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import NamedTuple

from imgroute.errors import ConfigError

ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
DEPLOYMENT_ENV = "AZURE_OPENAI_DEPLOYMENT"
API_VERSION_ENV = "AZURE_OPENAI_API_VERSION"
DEFAULT_DEPLOYMENT = "gpt-image-2"  # what most deployments of it are named (azure.md, LiteLLM)
DEFAULT_API_VERSION = "preview"  # the v1 path's (azure.md, Endpoint)
FIELDS = {"endpoint", "deployment", "api_version"}
SETUP = (
    f"{ENDPOINT_ENV}=https://RESOURCE.openai.azure.com and AZURE_OPENAI_API_KEY ({DEPLOYMENT_ENV} if the "
    f"deployment is not named {DEFAULT_DEPLOYMENT}), or azure: {{endpoint: ..., deployment: ...}} in config.yaml"
)


class AzureTarget(NamedTuple):
    endpoint: str | None  # None: not configured (the offer is shown, ineligible, with how to set it)
    deployment: str
    api_version: str


def configured(config_path: Path) -> dict[str, str]:
    """config.yaml's `azure:` fields (checked: only endpoint, deployment, api_version)."""
    from imgroute.pricing.fields import Field, read_yaml

    raw = read_yaml(config_path, what="config file") if config_path.exists() else None
    if not isinstance(raw, dict) or "azure" not in raw:
        return {}
    node = Field(raw, "", str(config_path), "fix config.yaml").mapping()["azure"]
    # (an api-version such as 2024-10-21 unquoted is a date to YAML: taken as written)
    return {name: field.value.isoformat() if isinstance(field.value, dt.date) else field.text()
            for name, field in node.mapping(FIELDS).items()}  # fmt: skip


def target(config_path: Path) -> AzureTarget:
    configured_here = configured(config_path)
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip() or configured_here.get("endpoint")
    if endpoint and not endpoint.startswith(("https://", "http://")):
        raise ConfigError(
            f"the Azure endpoint {endpoint!r} is not a URL", "give it like https://RESOURCE.openai.azure.com"
        )
    return AzureTarget(
        endpoint=endpoint.rstrip("/") if endpoint else None,
        deployment=os.environ.get(DEPLOYMENT_ENV, "").strip()
        or configured_here.get("deployment")
        or DEFAULT_DEPLOYMENT,
        api_version=os.environ.get(API_VERSION_ENV, "").strip()
        or configured_here.get("api_version")
        or DEFAULT_API_VERSION,
    )
