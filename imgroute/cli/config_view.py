"""`imgroute config`: the settings imgroute would use right now, and where each one comes from.

Everything is read the way a command reads it (the home, config.yaml, the pricing files, the
environment, the flags given), through the same functions, so what this shows is what a `gen`
would do. A key is shown by its name and where it comes from, never by its value.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import NamedTuple

from imgroute import policy
from imgroute.home import config

DEFAULT = "default"
CONFIG = "config.yaml"


class Setting(NamedTuple):
    name: str  # dotted: "plans.apiframe", "limits.openai.per_minute", "keys.kie"
    value: object  # JSON-ready
    source: str  # default, config.yaml, environment (VAR), flag (--plan), keys file, a pricing file...


def environment(variable: str) -> str:
    return f"environment ({variable})"


def effective(
    pricing: Path | None = None,
    plans: list[str] | None = None,
    official_only: bool = False,
    stated_quality: bool = False,
) -> list[Setting]:
    """Every setting, with its source. The flags are those a command would be given (`--pricing`,
    `--plan`, `--official-only`, `--stated-quality`): they win over config.yaml, as they do there."""
    from imgroute.request import build_constraints
    from imgroute.session import load_table_and_settings

    table, settings = load_table_and_settings(pricing)
    constraints = build_constraints(table, settings, plan=plans)  # (refuses a bad --plan, as gen does)
    flagged = {item.partition("=")[0].strip() for item in plans or []}
    out = _home(settings.path)
    out += _pricing(table, pricing)
    for provider, info in table.providers.items():
        if len(info.plans) > 1 or provider in constraints.plans:
            chosen = constraints.plans.get(provider) or info.default_plan.name
            source = "flag (--plan)" if provider in flagged else CONFIG if provider in settings.plans else DEFAULT
            out.append(Setting(f"plans.{provider}", chosen, source))
    out += _choices(settings, official_only, stated_quality)
    for provider, balance in table.balances.items():  # prepaid credits, as `plans show` has them
        left = {"bought": str(balance.bought), "left": str(balance.left), "expires": balance.expires.isoformat()}
        where = CONFIG if provider in settings.credits else "imgroute plans set (credits.json)"
        out.append(Setting(f"prepaid.{provider}", left, where))
    out += _limits(settings, table.registry)
    out += _keys_and_origins(table.registry)
    out += _environment_only()
    return out


def _home(config_path: Path) -> list[Setting]:
    home = config.home()
    from_env = environment(config.ENV_HOME) if os.environ.get(config.ENV_HOME) else DEFAULT
    exists = "" if config_path.is_file() else " (none)"
    from imgroute.ledger_url import redacted

    url, ledger_source = config.ledger_url()
    ledger = (redacted(url), ledger_source) if url else (str(home / "ledger.sqlite"), from_env)
    return [
        Setting("home", str(home), from_env),
        Setting("config_file", f"{config_path}{exists}", from_env),
        Setting("ledger", *ledger),
    ]


def _pricing(table, pricing: Path | None) -> list[Setting]:
    from imgroute.pricing.load import bundled_path

    out = [
        Setting(
            "pricing.bundled", f"{bundled_path()} (figures up to {newest_observed(table, 'pricing.yaml')})", "imgroute"
        )
    ]
    user = pricing or config.user_pricing_file()
    if user is not None:
        newest = newest_observed(table, str(user))
        dated = f" (figures up to {newest})" if newest else ""
        out.append(Setting("pricing.user", f"{user}{dated}", "flag (--pricing)" if pricing else "home"))
    return out


def newest_observed(table, origin: str) -> dt.date | None:
    """The newest date a figure of the offers from `origin` was observed (their price, sizes, edit
    inputs and the offer itself): how fresh that pricing file is."""
    dates = [
        provenance.observed
        for offer in table.offers
        if offer.origin == origin
        for provenance in (offer.provenance, offer.price.provenance, offer.sizes.provenance, offer.edit.provenance)
        if provenance is not None
    ]
    return max(dates, default=None)


def _choices(settings, official_only: bool, stated_quality: bool) -> list[Setting]:
    def flag_or_config(name: str, flag: bool, configured: bool) -> Setting:
        if flag:
            return Setting(name, True, f"flag (--{name.replace('_', '-')})")
        return Setting(name, configured, CONFIG if configured else DEFAULT)

    default_offer = config.Settings._field_defaults["default_offer"]
    max_age = policy.DEFAULT_PRICING_MAX_AGE_DAYS
    return [
        flag_or_config("official_only", official_only, settings.official_only),
        flag_or_config("stated_quality", stated_quality, settings.stated_quality),
        Setting(
            "pricing_max_age_days",
            settings.pricing_max_age_days,
            CONFIG if settings.pricing_max_age_days != max_age else DEFAULT,
        ),
        Setting(
            "default_offer", settings.default_offer, CONFIG if settings.default_offer != default_offer else DEFAULT
        ),
        *(Setting(f"profiles.{name}", dict(hints), CONFIG) for name, hints in settings.profiles.items()),
        *(
            Setting(f"credits.{provider}", {"credits": str(credits), "expires": expires.isoformat()}, CONFIG)
            for provider, (credits, expires) in settings.credits.items()
        ),
    ]


def _limits(settings, registry) -> list[Setting]:
    out = []
    for spec in registry.specs():
        concurrency, per_minute = settings.limits.get(spec.id, (None, None))
        out.append(
            Setting(
                f"limits.{spec.id}.concurrency", concurrency or spec.concurrency, CONFIG if concurrency else DEFAULT
            )
        )
        out.append(
            Setting(
                f"limits.{spec.id}.per_minute",
                per_minute if per_minute is not None else spec.per_minute,
                CONFIG if per_minute is not None else DEFAULT,
            )
        )
    return out


def _keys_and_origins(registry) -> list[Setting]:
    """Each provider's key (by name and source only) and the origin its requests go to."""
    from imgroute.home import keys

    out = []
    for info in keys.list_keys(registry):
        source = {"env": environment(info.env), "file": f"keys file ({keys.keys_path()})"}.get(info.source, "-")
        out.append(Setting(f"keys.{info.provider}", "set" if info.source != "missing" else "not set", source))
    out += _azure()
    for provider, override in keys.all_base_urls(registry).items():
        origin = override or registry.adapter_class(provider).documented_origin or "(not set up)"
        out.append(
            Setting(
                f"base_url.{provider}",
                origin,
                environment(f"IMGROUTE_{provider.upper()}_BASE_URL") if override else DEFAULT,
            )
        )
    return out


def _azure() -> list[Setting]:
    """Where Azure's deployment is (home/azure.py): the environment, config.yaml, or the defaults."""
    from imgroute.home import azure

    path = config.home() / config.CONFIG_FILE
    where, in_file = azure.target(path), azure.configured(path)
    out = []
    for name, env, value in (
        ("endpoint", azure.ENDPOINT_ENV, where.endpoint),
        ("deployment", azure.DEPLOYMENT_ENV, where.deployment),
        ("api_version", azure.API_VERSION_ENV, where.api_version),
    ):
        source = environment(env) if os.environ.get(env, "").strip() else CONFIG if name in in_file else DEFAULT
        out.append(Setting(f"azure.{name}", value or "not set", source))
    return out


def _environment_only() -> list[Setting]:
    from imgroute.serve.server import TOKEN_ENV
    from imgroute.store.interface import MACHINE

    scale = os.environ.get(policy.TIME_SCALE_ENV)
    token = os.environ.get(TOKEN_ENV)
    lease = os.environ.get(policy.LEASE_ENV)
    named = os.environ.get("IMGROUTE_MACHINE")
    return [
        Setting("time_scale", scale or "1", environment(policy.TIME_SCALE_ENV) if scale else DEFAULT),
        Setting("serve_token", "set" if token else "not set", environment(TOKEN_ENV) if token else DEFAULT),
        Setting("machine", MACHINE, environment("IMGROUTE_MACHINE") if named else "default (host name)"),
        Setting("lease_seconds", policy.lease_seconds(), environment(policy.LEASE_ENV) if lease else DEFAULT),
    ]


def version_text() -> str:
    """`imgroute --version`: imgroute's version and how fresh its prices are (the bundled table's,
    and a pricing file of the home's, if there is one)."""
    from imgroute.errors import ImgrouteError
    from imgroute.session import load_pricing
    from imgroute.version import __version__

    lines = [f"imgroute {__version__}"]
    user = config.user_pricing_file()
    try:
        table = load_pricing(None)
    except ImgrouteError as exc:  # --version still answers, and says what is wrong with the prices
        return f"{lines[0]}\npricing: cannot be read: {exc.message}"
    lines.append(f"pricing: bundled table, figures observed up to {newest_observed(table, 'pricing.yaml')}")
    if user is not None:
        newest = newest_observed(table, str(user))
        lines.append(f"pricing: {user} over it" + (f", figures observed up to {newest}" if newest else " (plans only)"))
    return "\n".join(lines)
