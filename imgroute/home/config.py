"""The imgroute home directory and config.yaml.

Home is $IMGROUTE_HOME, else ~/.imgroute. It holds config.yaml, an optional pricing.yaml merged
over the bundled table, and (later) keys and the ledger.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from imgroute.policy import DEFAULT_PRICING_MAX_AGE_DAYS
from imgroute.pricing.fields import Field

ENV_HOME = "IMGROUTE_HOME"
ENV_LEDGER_URL = "IMGROUTE_LEDGER_URL"
CONFIG_FILE = "config.yaml"
USER_PRICING_FILE = "pricing.yaml"

# The fields config.yaml may have: the one list both the check and its hint read.
CONFIG_FIELDS = (
    "plans",
    "pricing_max_age_days",
    "limits",
    "official_only",
    "stated_quality",
    "profiles",
    "default_offer",
    "credits",
    "ledger",
    "mcp",
    "azure",
)
_HINT = "fix config.yaml"


def home() -> Path:
    override = os.environ.get(ENV_HOME)
    return Path(override).expanduser() if override else Path.home() / ".imgroute"


def in_home(path: Path) -> bool:
    """Whether `path` lies in the home (then what imgroute writes there is owner-only too)."""
    try:
        return path.expanduser().resolve().is_relative_to(home().resolve())
    except OSError:
        return False


def home_warning() -> str | None:
    """A warning when the home exists and others may read it: keys, the ledger and images live
    there. (It is made 0700 by every command that makes it.)"""
    from imgroute.files import wider_than_private

    where = home()
    mode = wider_than_private(where)
    if mode is None:
        return None
    return f"warning: {where} can be read by others (mode {mode:o}); make it private: chmod 700 {where}"


def raw_config(path: Path) -> Any:
    """config.yaml as parsed (None when there is none), parsed once per version of the file: the
    settings, the ledger's URL and Azure's deployments are each read from it, by several doors."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return _parsed(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _parsed(path: str, mtime_ns: int, size: int) -> Any:
    from imgroute.pricing.fields import read_yaml

    return read_yaml(Path(path), what="config file")  # (an error is raised, and never cached)


class Settings(NamedTuple):
    path: Path
    plans: Mapping[str, str] = MappingProxyType({})  # provider -> plan name
    pricing_max_age_days: int = DEFAULT_PRICING_MAX_AGE_DAYS
    # provider -> (concurrency, per_min), None where config.yaml leaves the registry's default
    limits: Mapping[str, tuple[int | None, float | None]] = MappingProxyType({})
    official_only: bool = False  # route only to offers that run OpenAI's own model
    stated_quality: bool = False  # route only on quality tiers a provider states
    profiles: Mapping[str, Mapping] = MappingProxyType({})  # serve: `model` names a set of routing hints
    default_offer: str = "openai/gpt-image-2"  # spend --savings: what a user would pick without imgroute
    credits: Mapping[str, tuple] = MappingProxyType({})  # provider -> (credits, expires): prepaid balances
    ledger: str | None = None  # a team ledger's postgresql:// URL (None: the home's SQLite file)
    mcp: Mapping[str, object] = MappingProxyType({})  # imgroute mcp: out, max_cost, session_budget


def load_settings(home_dir: Path | None = None, registry=None) -> Settings:
    """config.yaml's settings. `registry`: the providers its `limits:` and `credits:` may name (the
    pricing table's: the built-in ones and its relays; the built-in ones when not given)."""
    from imgroute.providers.registry import BUILT_IN

    registry = registry or BUILT_IN

    path = (home_dir or home()) / CONFIG_FILE
    raw = raw_config(path)
    if raw is None:
        return Settings(path=path)
    root = Field(raw, "", str(path), _HINT)
    fields = root.mapping(set(CONFIG_FIELDS))
    plans = {}
    if "plans" in fields:
        plans = {provider: node.text() for provider, node in fields["plans"].mapping().items()}
    max_age = DEFAULT_PRICING_MAX_AGE_DAYS
    if "pricing_max_age_days" in fields:
        max_age = fields["pricing_max_age_days"].integer(minimum=1)
    limits = {}
    if "limits" in fields:
        known = registry.known()
        for provider, node in fields["limits"].mapping().items():
            if provider not in known:
                raise node.fail(f"unknown provider '{provider}'", f"known providers: {', '.join(known)}")
            entry = node.mapping({"concurrency", "per_minute"})
            concurrency = entry["concurrency"].integer(minimum=1) if "concurrency" in entry else None
            per_minute = float(entry["per_minute"].money()) if "per_minute" in entry else None
            limits[provider] = (concurrency, per_minute)
    official_only = fields["official_only"].boolean() if "official_only" in fields else False
    stated_quality = fields["stated_quality"].boolean() if "stated_quality" in fields else False
    profiles = _profiles(fields["profiles"]) if "profiles" in fields else {}
    default_offer = (
        fields["default_offer"].text() if "default_offer" in fields else Settings._field_defaults["default_offer"]
    )
    prepaid = _credits(fields["credits"], registry.known()) if "credits" in fields else {}
    ledger = _ledger_url(fields["ledger"]) if "ledger" in fields else None
    agents = _mcp(fields["mcp"]) if "mcp" in fields else {}
    return Settings(
        path=path,
        plans=plans,
        pricing_max_age_days=max_age,
        limits=limits,
        official_only=official_only,
        stated_quality=stated_quality,
        profiles=profiles,
        default_offer=default_offer,
        credits=prepaid,
        ledger=ledger,
        mcp=agents,
    )


def _mcp(node: Field) -> dict[str, object]:
    """`mcp: {out: DIR, max_cost: USD, session_budget: USD}`: what `imgroute mcp` uses unless its
    flags say otherwise."""
    entry = node.mapping({"out", "max_cost", "session_budget"})
    out: dict[str, object] = {}
    if "out" in entry:
        out["out"] = Path(entry["out"].text()).expanduser()
    for name in ("max_cost", "session_budget"):
        if name in entry:
            out[name] = entry[name].money()
    return out


def _ledger_url(node: Field) -> str:
    from imgroute.ledger_url import is_postgres_url, redacted

    url = node.text()
    if not is_postgres_url(url):
        raise node.fail(
            f"'{redacted(url)}' is not a PostgreSQL URL",
            "give postgresql://USER:PASSWORD@HOST/DATABASE, or remove `ledger:` to keep the home's SQLite ledger",
        )
    return url


def ledger_url(settings: Settings | None = None) -> tuple[str | None, str]:
    """The team ledger's URL, or None for the home's SQLite file, and where that comes from:
    IMGROUTE_LEDGER_URL over config.yaml's `ledger:` (read on its own when `settings` is not given:
    every command that opens the ledger asks, not only those that read the whole config)."""
    from imgroute.ledger_url import is_postgres_url, redacted

    env = os.environ.get(ENV_LEDGER_URL)
    if env:
        if not is_postgres_url(env):
            from imgroute.errors import ConfigError

            raise ConfigError(
                f"{ENV_LEDGER_URL}='{redacted(env)}' is not a PostgreSQL URL",
                f"give postgresql://USER:PASSWORD@HOST/DATABASE, or unset {ENV_LEDGER_URL}",
            )
        return env, f"environment ({ENV_LEDGER_URL})"
    if settings is None:
        settings = _ledger_only(home() / CONFIG_FILE)
    return (settings.ledger, CONFIG_FILE) if settings.ledger else (None, "default")


def _ledger_only(path: Path) -> Settings:
    """config.yaml's `ledger:` alone (its other fields are checked by the commands that use them)."""
    raw = raw_config(path)
    if not isinstance(raw, dict) or "ledger" not in raw:
        return Settings(path=path)
    return Settings(
        path=path, ledger=_ledger_url(Field(raw, "", str(path), _HINT).mapping(set(CONFIG_FIELDS))["ledger"])
    )


def _credits(node: Field, known: tuple[str, ...]) -> dict[str, tuple]:
    """Prepaid balances: `credits: {apiframe: {credits: 12000, expires: 2026-12-31}}`."""
    out = {}
    for provider, entry in node.mapping().items():
        if provider not in known:
            raise entry.fail(f"unknown provider '{provider}'", f"known providers: {', '.join(known)}")
        entry.mapping({"credits", "expires"})  # (refuses any other field)
        out[provider] = (Decimal(entry.get("credits").integer(minimum=1)), entry.get("expires").date())
    return out


def _profiles(node: Field) -> dict[str, dict]:
    """Named sets of routing hints (`imgroute serve`: a request's `model` may name one)."""
    from imgroute.options import HINTS

    out = {}
    allowed = {name for name, kwarg in HINTS.items() if kwarg is not None}
    for name, hints in node.mapping().items():
        out[name] = {key: value.value for key, value in hints.mapping(allowed).items()}
    return out


def user_pricing_file(home_dir: Path | None = None) -> Path | None:
    path = (home_dir or home()) / USER_PRICING_FILE
    return path if path.is_file() else None
