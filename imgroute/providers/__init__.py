"""Provider adapters, one module each. `adapter_class` is the only registry."""

from __future__ import annotations

import importlib

from imgroute.providers.base import Adapter

# provider id -> (module, class); modules import lazily so unused adapters cost nothing.
_ADAPTERS = {
    "openai": ("imgroute.providers.openai", "OpenAIAdapter"),
    "fal": ("imgroute.providers.fal", "FalAdapter"),
    "piapi": ("imgroute.providers.piapi", "PiAPIAdapter"),
    "kie": ("imgroute.providers.kie", "KieAdapter"),
    "apiframe": ("imgroute.providers.apiframe", "ApiframeAdapter"),
}

KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "fal": "FAL_KEY",
    "piapi": "PIAPI_API_KEY",
    "kie": "KIE_API_KEY",
    "apiframe": "APIFRAME_API_KEY",
}

BASE_URL_ENV = {provider: f"IMGROUTE_{provider.upper()}_BASE_URL" for provider in KEY_ENV}


def adapter_class(provider: str) -> type[Adapter]:
    module, name = _ADAPTERS[provider]
    return getattr(importlib.import_module(module), name)
