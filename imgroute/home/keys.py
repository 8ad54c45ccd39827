"""API keys: from the environment first, else from the keys file (mode 0600) in the home dir.

Values never leave this module except to an adapter's auth header: listings show names and where
each key comes from, never the value. Which providers there are is the pricing table's to say (its
Registry: the built-in providers and the relays it declares), so each function is given it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

from imgroute.errors import ConfigError, UsageError, named
from imgroute.files import atomic_write, private_dir
from imgroute.home import config
from imgroute.providers.registry import Registry

KEYS_FILE = "keys.json"


class KeyInfo(NamedTuple):
    provider: str
    env: str
    source: str  # "env", "file" or "missing"


def keys_path() -> Path:
    return config.home() / KEYS_FILE


def provider_for(name: str, registry: Registry) -> str:
    """Accept a provider id (`fal`) or its variable name (`FAL_KEY`)."""
    lowered = name.strip().lower()
    if lowered in registry.known():
        return lowered
    for spec in registry.specs():
        if name.strip().upper() == spec.key_env:
            return spec.id
    names = ", ".join(f"{spec.id} ({spec.key_env})" for spec in registry.specs())
    raise UsageError(f"unknown key name {name!r}", f"use a provider id or its variable: {names}")


def _read_file() -> dict[str, str]:
    path = keys_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read keys file {path}: {type(exc).__name__}", "fix or remove the file") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"keys file {path} is not a mapping of names to keys", "fix or remove the file")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:  # as ssh does with a private key: a key others can read is refused, not used
        raise ConfigError(
            f"the keys file {path} can be read by others (mode {mode:o})", f"make it private: chmod 600 {path}"
        )
    return data


def _write_file(data: dict[str, str]) -> None:
    path = keys_path()
    private_dir(path.parent)
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True))  # 0600


def set_in_environment(provider: str, registry: Registry) -> str | None:
    """The provider's key variable when it is set (it wins over the keys file)."""
    env = registry.spec(provider).key_env
    return env if os.environ.get(env, "").strip() else None


def all_keys(registry: Registry) -> dict[str, str]:
    """Every key available, by provider."""
    stored = _read_file()
    out = {}
    for spec in registry.specs():
        value = os.environ.get(spec.key_env, "").strip() or stored.get(spec.id)
        if value:
            out[spec.id] = value
    return out


def every_value(registry: Registry) -> list[str]:
    """Every key this process could send, whatever provider it is for: the registry's variables
    and everything in the keys file (what a trace must never show)."""
    values = [os.environ.get(spec.key_env, "").strip() for spec in registry.specs()]
    return [value for value in (*values, *_read_file().values()) if value]


def list_keys(registry: Registry) -> list[KeyInfo]:
    stored = _read_file()
    rows = []
    for spec in registry.specs():
        env = spec.key_env
        source = "env" if os.environ.get(env, "").strip() else ("file" if stored.get(spec.id) else "missing")
        rows.append(KeyInfo(spec.id, env, source))
    return rows


def set_key(provider: str, value: str) -> None:
    value = value.strip()
    if not value:
        raise UsageError("the key is empty", f"paste the key at the prompt, or pass {named('value')}")
    if any(c.isspace() for c in value):
        raise UsageError("the key contains spaces or line breaks", "paste the key alone")
    data = _read_file()
    data[provider] = value
    _write_file(data)


def remove_key(provider: str) -> bool:
    data = _read_file()
    if provider not in data:
        return False
    del data[provider]
    _write_file(data)
    return True


def base_url(provider: str, registry: Registry) -> str | None:
    """IMGROUTE_<PROVIDER>_BASE_URL replaces the scheme, host and port of the documented origin."""
    env = registry.spec(provider).base_url_env
    raw = os.environ.get(env, "").strip()
    if not raw:
        return None
    if not raw.startswith(("http://", "https://")) or "://" not in raw or not raw.split("://", 1)[1]:
        raise ConfigError(f"{env}={raw!r} is not an http(s) URL", "set it like http://127.0.0.1:8080")
    return raw.rstrip("/")


def all_base_urls(registry: Registry) -> dict[str, str | None]:
    """Every provider's base-URL override (None where the documented origin applies)."""
    return {provider: base_url(provider, registry) for provider in registry.known()}
