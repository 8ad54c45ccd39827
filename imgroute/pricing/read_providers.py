"""pricing.yaml's `providers:` entries read and checked: a provider's plans (prices per credit,
monthly fees, the default), and a relay a file declares (its registry row)."""

from __future__ import annotations

from imgroute.errors import named, quoted
from imgroute.pricing.fields import Field, notes, provenance
from imgroute.pricing.table import (
    Plan,
    ProviderInfo,
)
from imgroute.providers.registry import REGISTRY, RELAY_APIS, ProviderSpec

_RELAY_FIELDS = {"api", "base_url", "key_env", "concurrency", "per_minute", "docs"}
_RELAY_HINT = "declare a relay with api: openai-images, base_url and key_env"


def provider_of(pid: str, node: Field) -> ProviderInfo:
    fields = node.mapping({"name", "source", "observed", "plans", "notes", *_RELAY_FIELDS})
    relay = None
    if pid in REGISTRY:
        stray = sorted(_RELAY_FIELDS & set(fields))
        if stray:
            raise fields[stray[0]].fail(f"{pid} is built in; a relay is declared under its own id", _RELAY_HINT)
    elif "api" not in fields:
        raise node.fail(f"unknown provider '{pid}'", f"known providers: {', '.join(REGISTRY)}; or {_RELAY_HINT}")
    else:
        relay = _relay(pid, node, fields)
    if relay is not None and "plans" not in fields:  # a relay bills in USD: one implicit plan
        plans = {
            "payg": Plan(
                provider=pid,
                name="payg",
                description="pay-as-you-go",
                usd_per_credit=None,
                monthly_usd=None,
                credits_per_month=None,
                default=True,
                provenance=provenance(node),
                notes=(),
            )
        }
        return ProviderInfo(
            id=pid, name=node.get("name", pid).text(), provenance=provenance(node), plans=plans, relay=relay
        )
    plans = {}
    for name, plan_node in node.get("plans").mapping().items():
        plans[name] = _plan(pid, name, plan_node)
    if not plans:
        raise node.fail("no plans defined", "every provider needs at least one plan")
    defaults = [p.name for p in plans.values() if p.default]
    if len(defaults) != 1:
        found = ", ".join(defaults) or "none"
        raise fields["plans"].fail(
            f"exactly one plan must be the default (found: {found})",
            f"mark one plan `default: true`; pick another per run with {named('plan')} or in config.yaml",
        )
    return ProviderInfo(
        id=pid, name=node.get("name", pid).text(), provenance=provenance(node), plans=plans, relay=relay
    )


def _relay(pid: str, node: Field, fields: dict[str, Field]) -> ProviderSpec:
    """A declared relay's registry row, every field checked: its id becomes part of environment
    variable names, and its key may only ever go to the origin it names."""
    import re
    from urllib.parse import urlsplit

    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", pid):
        raise node.fail(f"'{pid}' cannot be a provider id", "use lowercase letters, digits and _ (like myrelay)")
    api = node.get("api").choice(tuple(RELAY_APIS))
    url_node = node.get("base_url")
    base_url = url_node.text().rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise url_node.fail(f"{quoted(base_url)} is not an http(s) base URL", "write it like https://relay.example.com")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise url_node.fail("a key would travel unencrypted over http", "use the relay's https:// URL")
    if base_url.endswith("/v1"):  # as OpenAI SDK users write it; imgroute adds /v1/images/... itself
        base_url = base_url[: -len("/v1")]
    key_env = node.get("key_env").text()
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key_env):
        raise fields["key_env"].fail(f"{quoted(key_env)} is not an environment variable name", "like MYRELAY_KEY")
    per_minute = float(fields["per_minute"].money()) if "per_minute" in fields else None
    if per_minute == 0:
        raise fields["per_minute"].fail("0 submits per minute would never send", "give a rate above 0, or leave it out")
    return ProviderSpec(
        id=pid,
        key_env=key_env,
        adapter=RELAY_APIS[api],
        concurrency=fields["concurrency"].integer(minimum=1) if "concurrency" in fields else 4,
        per_minute=per_minute,
        docs=fields["docs"].text() if "docs" in fields else base_url,
        limits_source="declared in the pricing file" if {"concurrency", "per_minute"} & set(fields) else "default",
        api=api,
        base_url=base_url,
    )


def check_relay_keys(providers: dict[str, ProviderInfo], files: dict[str, str], file: str) -> None:
    """A relay never reads another provider's key variable: OpenAI's key must not go to a relay."""
    owners = {spec.key_env: spec.id for spec in REGISTRY.values()}
    for info in providers.values():
        if info.relay is None:
            continue
        env = info.relay.key_env
        if env in owners:
            where = Field(env, f"providers.{info.id}.key_env", files.get(info.id, file))
            raise where.fail(
                f"{env} is {owners[env]}'s key; a relay needs a variable of its own",
                f"name another one (like {info.id.upper()}_KEY) and put the relay's key there",
            )
        owners[env] = info.id


def _plan(pid: str, name: str, node: Field) -> Plan:
    fields = node.mapping(
        {"default", "description", "usd_per_credit", "monthly_usd", "credits_per_month", "source", "observed", "notes"}
    )
    usd_per_credit = fields["usd_per_credit"].money() if "usd_per_credit" in fields else None
    monthly = fields["monthly_usd"].money() if "monthly_usd" in fields else None
    credits = fields["credits_per_month"].integer(minimum=1) if "credits_per_month" in fields else None
    if (monthly is None) != (credits is None):
        raise node.fail("monthly_usd and credits_per_month go together", "give both, or usd_per_credit")
    if usd_per_credit is None and monthly is not None and credits is not None:  # (given together, checked above)
        usd_per_credit = monthly / credits
    return Plan(
        provider=pid,
        name=name,
        description=node.get("description", name).text(),
        usd_per_credit=usd_per_credit,
        monthly_usd=monthly,
        credits_per_month=credits,
        default=node.get("default", False).boolean(),
        provenance=provenance(node),
        notes=notes(node),
    )
