"""The provider registry: every fact about a provider that is not a price, in one row each.

Data only (no httpx, no adapter imported), so `quote` reads it for free. Everything else derives
from it: key variables, base-URL overrides, default limits, the ids that flags and files accept.
Adding a provider is: its adapter module, one row here, its `pricing.yaml` rows, its fake, its
README lines (tests/providers/test_registry.py fails when one of them is missing).

Relays a user declares in a pricing file (`providers: {myrelay: {api: openai-images, ...}}`) are
part of that table (`PricingTable.registry`, a Registry of the built-in providers and its relays);
they speak an API imgroute already has an adapter for, so they need no code.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from imgroute.providers.base import Adapter


class ProviderSpec(NamedTuple):
    id: str
    key_env: str  # the environment variable holding its key
    adapter: str  # "module:Class", imported only when a job is sent
    concurrency: int  # default jobs in progress at once (config.yaml `limits:` overrides)
    per_minute: float | None  # default submits per minute; None: no documented rate
    docs: str  # where its API is documented
    limits_source: str = ""  # why those defaults
    api: str | None = None  # declared relays: the API they speak ("openai-images")
    base_url: str | None = None  # declared relays: their origin (and path prefix), from the file
    window_adapter: str | None = None  # "module:Class" for its offers that take a while (a batch API)
    setup: str = ""  # what else it needs beside its key, said where the key is asked for (Azure: its endpoint)
    # Its offers' `@NAME` variants are deployments with limits of their own (Azure), not one
    # account's routes (OpenRouter's pinned upstreams share its limits)
    variant_lanes: bool = False

    @property
    def base_url_env(self) -> str:
        """IMGROUTE_<ID>_BASE_URL: replaces the scheme, host and port of the documented origin."""
        return f"IMGROUTE_{self.id.upper()}_BASE_URL"


REGISTRY: dict[str, ProviderSpec] = {
    spec.id: spec
    for spec in (
        ProviderSpec(
            id="openai",
            key_env="OPENAI_API_KEY",
            adapter="imgroute.providers.openai:OpenAIAdapter",
            concurrency=5,
            per_minute=5.0,
            docs="https://developers.openai.com/api/docs/guides/image-generation",
            limits_source="usage tier 1: 5 images per minute (tiers 2-5: 20, 50, 150, 250)",
            window_adapter="imgroute.providers.openai_batch:OpenAIBatchAdapter",
        ),
        ProviderSpec(
            id="fal",
            key_env="FAL_KEY",
            adapter="imgroute.providers.fal:FalAdapter",
            concurrency=2,
            per_minute=None,
            docs="https://docs.fal.ai/model-endpoints/queue",
            limits_source="new accounts: 2 requests in progress; rises with credit purchases, up to 40",
        ),
        ProviderSpec(
            id="piapi",
            key_env="PIAPI_API_KEY",
            adapter="imgroute.providers.piapi:PiAPIAdapter",
            concurrency=10,
            per_minute=None,
            docs="https://piapi.ai/docs/gpt-image/gpt-image-api",
            limits_source="plan-dependent caps, not published",
        ),
        ProviderSpec(
            id="kie",
            key_env="KIE_API_KEY",
            adapter="imgroute.providers.kie:KieAdapter",
            concurrency=50,
            per_minute=120.0,
            docs="https://docs.kie.ai/market/gpt/gpt-image-2-text-to-image",
            limits_source="~20 new tasks per 10 s per key (third-party figure, unconfirmed)",
        ),
        ProviderSpec(
            id="apiframe",
            key_env="APIFRAME_API_KEY",
            adapter="imgroute.providers.apiframe:ApiframeAdapter",
            concurrency=10,
            per_minute=None,
            docs="https://docs-v2.apiframe.ai/docs/images/gpt-image-2",
            limits_source="not published; 429s are honoured",
        ),
        ProviderSpec(
            id="azure",
            key_env="AZURE_OPENAI_API_KEY",
            adapter="imgroute.providers.azure:AzureAdapter",
            concurrency=5,
            per_minute=None,
            docs="https://learn.microsoft.com/azure/ai-foundry/openai/how-to/dall-e",
            limits_source="set per deployment by the customer (requests and tokens per minute); 429s are honoured",
            setup="its endpoint and deployment: "
            "AZURE_OPENAI_ENDPOINT (and AZURE_OPENAI_DEPLOYMENT), or azure: in config.yaml",
            variant_lanes=True,
        ),
        ProviderSpec(
            id="openrouter",
            key_env="OPENROUTER_API_KEY",
            adapter="imgroute.providers.openrouter:OpenRouterAdapter",
            concurrency=10,
            per_minute=None,
            docs="https://openrouter.ai/docs/guides/overview/multimodal/image-generation",
            limits_source="credit-based limits, not published per model; 429s are honoured",
        ),
        ProviderSpec(
            id="replicate",
            key_env="REPLICATE_API_TOKEN",
            adapter="imgroute.providers.replicate:ReplicateAdapter",
            concurrency=10,
            per_minute=600.0,
            docs="https://replicate.com/docs/reference/http",
            limits_source="600 creates per minute (rate-limits doc); no concurrency cap found, 10 is conservative",
        ),
    )
}

# The adapter of each API a relay may declare.
RELAY_APIS = {"openai-images": "imgroute.providers.relay:RelayAdapter"}

# For tests and scripts: the built-in providers' variables. (The package asks a Registry, which
# reads REGISTRY at each call, so a provider registered at run time, tests/providers/test_registry.py, counts.)
KEY_ENV = {spec.id: spec.key_env for spec in REGISTRY.values()}
BASE_URL_ENV = {spec.id: spec.base_url_env for spec in REGISTRY.values()}


class Registry:
    """The providers a pricing table can route to: the built-in ones and the relays the table
    declares (`PricingTable.registry`). A value of its table, never module state: two tables loaded
    in one process each know their own relays."""

    __slots__ = ("_relays",)

    def __init__(self, relays: Iterable[ProviderSpec] = ()):
        self._relays = {relay.id: relay for relay in relays}

    def specs(self) -> tuple[ProviderSpec, ...]:
        return (*REGISTRY.values(), *self._relays.values())

    def spec(self, provider: str) -> ProviderSpec:
        return REGISTRY.get(provider) or self._relays[provider]

    def known(self) -> tuple[str, ...]:
        return (*REGISTRY, *self._relays)

    def adapter_class(self, provider: str, windowed: bool = False) -> type[Adapter]:
        """The provider's adapter; `windowed`: the one for its offers with a completion window."""
        found = self.spec(provider)
        location = found.window_adapter if windowed else found.adapter
        if location is None:
            raise KeyError(f"{provider} has no adapter for offers with a completion window")
        module, _, name = location.partition(":")
        cls = getattr(importlib.import_module(module), name)
        return cls.bound_to(found) if found.api else cls

    def limits(self, overrides=None) -> dict[str, tuple[int, float | None]]:
        """Per provider: (jobs in progress at once, submits per minute or None): the registry's
        conservative defaults with config.yaml's `limits:` over them, field by field."""
        merged = {}
        for entry in self.specs():
            own = (overrides or {}).get(entry.id, (None, None))
            merged[entry.id] = (own[0] or entry.concurrency, own[1] if own[1] is not None else entry.per_minute)
            if entry.window_adapter:
                merged[lane(entry.id, True)] = BATCH_LANE
        return merged


BUILT_IN = Registry()  # the providers imgroute knows with no pricing file (keys, limits of a stand-in)


def adapter_class(provider: str, windowed: bool = False) -> type[Adapter]:
    """A built-in provider's adapter (for tests and scripts; the package asks its table's Registry)."""
    return BUILT_IN.adapter_class(provider, windowed)


def provider_limits(overrides=None) -> dict[str, tuple[int, float | None]]:
    """The built-in providers' limits (for tests; the package asks its table's Registry)."""
    return BUILT_IN.limits(overrides)


# Jobs at a provider's batch API (OpenAI Batch) wait in a pool of their own: its rate limits are
# separate from the synchronous API's, and a job there mostly waits. A generous cap, no spacing.
BATCH_LANE = (100, None)


def lane(provider: str, windowed: bool, key: str | None = None) -> str:
    """The limits a job counts against: an account's (design.md section 5), which is its provider's
    API (its batch API apart) and a fingerprint of the key, never the key itself; with no key, the
    provider's. Two doors, or on a team ledger two machines, using one key share its limits."""
    where = f"{provider}:batch" if windowed else provider
    return f"{where}@{key_fingerprint(key)}" if key else where


def limits_of(lane_name: str) -> str:
    """The provider lane whose configured limits an account lane has: `kie@3f2a...` -> `kie`
    (`azure#east@3f2a...` -> `azure#east`: a deployment declared with limits of its own)."""
    return lane_name.partition("@")[0]


def limit_for(limits: dict, lane_name: str):
    """A lane's (concurrency, per minute): its own, else its provider's (a deployment without its own)."""
    own = limits_of(lane_name)
    return limits.get(own) or limits.get(own.partition("#")[0])


@functools.lru_cache(maxsize=64)
def key_fingerprint(key: str) -> str:
    """Twelve hex digits of the key's SHA-256: tells accounts apart, and says nothing of the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]
