"""Load and validate pricing.yaml into immutable offers and plans. No arithmetic lives here.

The bundled table ships inside the package; a user file (home dir or --pricing) is merged over it:
offers are matched by provider + model and plans by provider + plan name, and mappings merge key
by key, so a user file can change one price without repeating the whole offer.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from imgroute.errors import named, quoted
from imgroute.models import Ratio
from imgroute.pricing.fields import Field, read_yaml
from imgroute.pricing.price_models import PRICE_MODELS
from imgroute.pricing.table import (
    IDENTITIES,
    INPUT_KINDS,
    EditCaps,
    Identity,
    Offer,
    PixelRules,
    Plan,
    PresetRatio,
    Price,
    PricingTable,
    Provenance,
    ProviderInfo,
    SizeCaps,
)
from imgroute.providers.registry import REGISTRY, RELAY_APIS, ProviderSpec
from imgroute.vocab import BACKGROUNDS, IMAGE_FORMATS, MODERATIONS, QUALITIES, RESOLUTIONS

SCHEMA_VERSION = 1
_FIX_HINT = "fix the field, or check it with: imgroute pricing validate FILE"


# -- files ------------------------------------------------------------------------------------


def bundled_path() -> Path:
    """pricing.yaml inside the installed package, or at the repo root in a source checkout."""
    package = Path(__file__).resolve().parent.parent  # (this file is imgroute/pricing/load.py)
    packaged = package / "pricing.yaml"
    return packaged if packaged.is_file() else package.parent / "pricing.yaml"


def load_table(user_file: Path | None = None) -> PricingTable:
    """The bundled table, with the user's file merged over it when one is given."""
    base_path = bundled_path()
    raw = read_yaml(base_path)
    files = [str(base_path)]
    origins: list[str] = []
    if isinstance(raw, dict) and isinstance(raw.get("offers"), list):
        origins = [base_path.name] * len(raw["offers"])
    provider_files: dict[str, str] = {}
    if user_file is not None:
        overlay = read_yaml(user_file)
        raw, origins, provider_files = merge_tables(raw, overlay, str(user_file), origins)
        files.append(str(user_file))
    return build_table(raw, base_path.name, origins, provider_files)


def load_file(path: Path) -> PricingTable:
    """Validate one file on its own, as a complete table (`imgroute pricing validate`)."""
    raw = read_yaml(path)
    count = len(raw["offers"]) if isinstance(raw, dict) and isinstance(raw.get("offers"), list) else 0
    return build_table(raw, str(path), [str(path)] * count)


def merge_tables(base: Any, overlay: Any, overlay_file: str, origins: list[str]) -> tuple[dict, list[str], dict]:
    """The bundled table with the user's file over it; which file each offer and provider last came
    from (errors name that file)."""
    root = Field(overlay, "", overlay_file, _FIX_HINT)
    top = root.mapping({"version", "providers", "offers"})
    if "version" in top:
        _check_version(top["version"])
    merged = copy.deepcopy(base)
    if "providers" in top:
        provider_files = dict.fromkeys(top["providers"].mapping(), overlay_file)
        merged["providers"] = _deep_merge(merged.get("providers") or {}, top["providers"].value)
    else:
        provider_files = {}
    origins = list(origins)
    listed: set[tuple] = set()
    if "offers" in top:
        offers = merged.setdefault("offers", [])
        for item in top["offers"].items():
            entry = item.mapping()
            key = (_plain(entry.get("provider")), _plain(entry.get("model")))
            if None in key:
                raise item.fail("an offer needs 'provider' and 'model' to be matched or added")
            if key in listed:
                raise item.fail(f"offer {key[0]}/{key[1]} is listed twice in this file", "merge the two entries")
            listed.add(key)
            index = next((i for i, o in enumerate(offers) if (o.get("provider"), o.get("model")) == key), None)
            if index is None and "like" in entry:
                item = _like(item, entry, offers)
                entry = item.mapping()
            if index is None:
                missing = [name for name in NEW_OFFER_FIELDS if name not in entry]
                if missing:  # most likely a typo in the model of an offer to change
                    known = ", ".join(
                        f"{o.get('provider')}/{o.get('model')}" for o in offers if o.get("provider") == key[0]
                    )
                    raise item.fail(
                        f"no offer {key[0]}/{key[1]} to change (known: {known or 'none'}), and a new offer needs "
                        f"{', '.join(missing)}",
                        "fix the model name, or give every field of the new offer",
                    )
                offers.append(copy.deepcopy(item.value))
                origins.append(overlay_file)
            else:
                offers[index] = _deep_merge(offers[index], item.value)
                origins[index] = overlay_file
    return merged, origins, provider_files


# What a new offer in a user's file must give (a change to a known one may give any part).
NEW_OFFER_FIELDS = ("source", "observed", "qualities", "images_per_request", "prompt_max_chars", "sizes", "price")
# What `like:` never copies: the other offer's identity, published examples and notes are its own.
_NOT_INHERITED = ("identity", "notes", "like")


def _like(item: Field, entry: dict[str, Field], offers: list[dict]) -> Field:
    """A new offer written as `like: provider/model` plus what differs: the named offer's sizes,
    qualities, limits and edit capabilities copied, its price replaced (with its own source)."""
    name = entry["like"].text()
    target = next((o for o in offers if f"{o.get('provider')}/{o.get('model')}" == name), None)
    if target is None:
        known = ", ".join(f"{o.get('provider')}/{o.get('model')}" for o in offers)
        raise entry["like"].fail(f"no offer {quoted(name)} to be like", f"known offers: {known}")
    price = entry.get("price")
    for needed in ("source", "observed"):
        if needed not in entry:
            raise item.fail(f"an offer written with like: needs its own '{needed}'")
        if price is None or not isinstance(price.value, dict) or needed not in price.value:
            raise item.child("price", None if price is None else price.value).fail(
                f"an offer written with like: needs its own price with its '{needed}'",
                "give the price it charges, with where it says so",
            )
    base = {k: copy.deepcopy(v) for k, v in target.items() if k not in _NOT_INHERITED}
    base["price"] = {k: v for k, v in base["price"].items() if k not in ("published", "source", "observed", "notes")}
    price = cast(Field, price)  # (the loop above raised without it)
    if price.value.get("model", base["price"].get("model")) != base["price"].get("model"):
        base["price"] = {}  # another price model: nothing of the old one applies
    merged = _deep_merge(base, {k: v for k, v in item.value.items() if k != "like"})
    return Field(merged, item.path, item.file, item.hint)


def _plain(field: Field | None) -> Any:
    return None if field is None else field.value


def _deep_merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = _deep_merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(overlay)


# -- validation -------------------------------------------------------------------------------


def build_table(raw: Any, file: str, origins: list[str], provider_files: dict | None = None) -> PricingTable:
    root = Field(raw, "", file, _FIX_HINT)
    top = root.mapping({"version", "providers", "offers"})
    _check_version(root.get("version"))
    providers = {}
    for pid, node in root.get("providers").mapping().items():
        node = Field(node.value, node.path, (provider_files or {}).get(pid, file), node.hint)
        providers[pid] = _provider(pid, node)
    _check_relay_keys(providers, provider_files or {}, file)
    offers = []
    seen = set()
    offer_items = top["offers"].items() if "offers" in top else []
    if not offer_items:
        raise root.fail("no offers defined", "a pricing table needs at least one offer")
    for i, node in enumerate(offer_items):
        origin = origins[i] if i < len(origins) else file
        labelled = _label_offer(node, origin)
        offer = _offer(labelled, providers, origin)
        if offer.id in seen:
            raise labelled.fail(f"offer {offer.id} is defined twice")
        seen.add(offer.id)
        offers.append(offer)
    return PricingTable(providers=providers, offers=tuple(offers), files=(file,), balances={})


def _check_version(node: Field) -> None:
    if node.integer() != SCHEMA_VERSION:
        raise node.fail(f"unsupported version {node.value}", f"this imgroute reads version {SCHEMA_VERSION}")


def _label_offer(node: Field, origin: str) -> Field:
    """Name an offer in error paths by provider/model instead of its list index, where known."""
    value = node.value
    if isinstance(value, dict) and isinstance(value.get("provider"), str) and isinstance(value.get("model"), str):
        return Field(value, f"offers[{value['provider']}/{value['model']}]", origin, node.hint)
    return Field(value, node.path, origin, node.hint)


def _provenance(node: Field) -> Provenance:
    return Provenance(source=node.get("source").text(), observed=node.get("observed").date())


def _notes(node: Field) -> tuple[str, ...]:
    notes = node.get("notes", [])
    return tuple(item.text() for item in notes.items())


_RELAY_FIELDS = {"api", "base_url", "key_env", "concurrency", "per_minute", "docs"}
_RELAY_HINT = "declare a relay with api: openai-images, base_url and key_env"


def _provider(pid: str, node: Field) -> ProviderInfo:
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
                provenance=_provenance(node),
                notes=(),
            )
        }
        return ProviderInfo(
            id=pid, name=node.get("name", pid).text(), provenance=_provenance(node), plans=plans, relay=relay
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
        id=pid, name=node.get("name", pid).text(), provenance=_provenance(node), plans=plans, relay=relay
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


def _check_relay_keys(providers: dict[str, ProviderInfo], files: dict[str, str], file: str) -> None:
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
        provenance=_provenance(node),
        notes=_notes(node),
    )


_OFFER_FIELDS = {
    "provider",
    "model",
    "source",
    "observed",
    "qualities",
    "quality_selectable",
    "images_per_request",
    "prompt_max_chars",
    "output_formats",
    "sizes",
    "edit",
    "price",
    "notes",
    "identity",
    "quality_stated",
    "quality_note",
    "unsourced",
    "background",
    "moderation",
    "completion_window",
}

UNDECLARED_IDENTITY = Identity(kind="relay", source=None, note="no identity given: counted as a relay", declared=False)


def _identity(node: Field | None) -> Identity:
    if node is None:
        return UNDECLARED_IDENTITY
    fields = node.mapping({"kind", "source", "note"})
    note = fields["note"].text() if "note" in fields else ""
    return Identity(kind=node.get("kind").choice(IDENTITIES), source=node.get("source").text(), note=note)


def _unsourced(node: Field | None) -> dict[str, str]:
    if node is None:
        return {}
    return {name: why.text() for name, why in node.mapping().items()}


def _offer(node: Field, providers: dict[str, ProviderInfo], origin: str) -> Offer:
    fields = node.mapping(_OFFER_FIELDS)
    provider_node = node.get("provider")
    provider = provider_node.choice((*REGISTRY, *providers))
    if provider not in providers:
        raise provider_node.fail(f"provider '{provider}' has no entry under providers:", "add it with its plans")
    qualities = node.get("qualities").text_list(QUALITIES)
    offer = Offer(
        provider=provider,
        model=node.get("model").text(),
        provenance=_provenance(node),
        qualities=tuple(q for q in QUALITIES if q in qualities),
        quality_selectable=node.get("quality_selectable", True).boolean(),
        images_per_request=node.get("images_per_request").integer(minimum=1),
        prompt_max_chars=node.get("prompt_max_chars").integer(minimum=1),
        output_formats=node.get("output_formats", ["png"]).text_list(IMAGE_FORMATS),
        sizes=_sizes(node.get("sizes")),
        edit=_edit(node.get("edit", {"supported": False})),
        price=_price(node.get("price"), qualities),
        notes=_notes(node),
        origin=origin,
        identity=_identity(fields.get("identity")),
        quality_stated=node.get("quality_stated", True).boolean(),
        quality_note=fields["quality_note"].text() if "quality_note" in fields else "",
        unsourced=_unsourced(fields.get("unsourced")),
        backgrounds=node.get("background", ["auto"]).text_list(BACKGROUNDS),
        moderations=node.get("moderation", ["auto"]).text_list(MODERATIONS),
        window_s=_window(fields.get("completion_window")),
    )
    if not offer.quality_stated and not offer.quality_note:
        raise node.fail("quality_stated: false needs a quality_note saying why the tier is assumed")
    if offer.price.uses_credits and not any(p.usd_per_credit is not None for p in providers[provider].plans.values()):
        raise node.get("price").fail(f"credit prices need a plan with usd_per_credit under providers.{provider}.plans")
    PRICE_MODELS[offer.price.model].validate(node.get("price"), offer)
    return offer


def _window(node: Field | None) -> float | None:
    if node is None:
        return None
    from imgroute.errors import UsageError
    from imgroute.request import parse_duration

    try:
        return parse_duration(node.text(), "completion_window")
    except UsageError:
        raise node.fail(f"{quoted(node.value)} is not a duration", "write it like 24h") from None


def _sizes(node: Field) -> SizeCaps:
    node.mapping({"mode", "rules", "presets", "source", "observed", "notes"})
    mode = node.get("mode").choice(("pixels", "presets"))
    rules = None
    presets: dict[Ratio, PresetRatio] = {}
    if mode == "pixels":
        rules = _rules(node.get("rules"))
    else:
        for ratio_text, tiers_node in node.get("presets").mapping().items():
            ratio = _ratio(tiers_node, ratio_text)
            tiers = {}
            for tier, size_node in tiers_node.mapping().items():
                if tier not in RESOLUTIONS:
                    raise size_node.fail(f"'{tier}' is not a resolution tier (use {', '.join(RESOLUTIONS)})")
                tiers[tier] = None if size_node.value is None else _pixels(size_node, ratio)
            if not tiers:
                raise tiers_node.fail("no resolution tiers listed")
            if ratio in presets:
                raise tiers_node.fail(f"aspect ratio {ratio_text} is listed twice (as {presets[ratio].label})")
            presets[ratio] = PresetRatio(label=ratio_text.strip(), tiers=tiers, learned={})
        if not presets:
            raise node.fail("presets mode needs at least one aspect ratio")
    return SizeCaps(mode=mode, rules=rules, presets=presets, provenance=_provenance(node))


def _ratio(node: Field, text: str) -> Ratio:
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        hint = 'write ratios as quoted text, like "16:9" (unquoted, YAML reads 16:9 as a number)'
        raise node.fail(f"aspect ratio '{text}' does not parse as W:H", hint)
    return Ratio.of(int(parts[0]), int(parts[1]))


def _pixels(node: Field, ratio: Ratio) -> tuple[int, int]:
    text = node.text()
    w, _, h = text.lower().partition("x")
    if not (w.isdigit() and h.isdigit()) or int(w) == 0 or int(h) == 0:
        raise node.fail(f"'{text}' is not WIDTHxHEIGHT")
    width, height = int(w), int(h)
    if Ratio.of(width, height) != ratio:
        raise node.fail(f"{text} is not {ratio}")
    return width, height


def _rules(node: Field) -> PixelRules:
    f = node.mapping({"multiple_of", "max_edge", "min_pixels", "max_pixels", "max_ratio", "experimental_above_pixels"})
    rules = PixelRules(
        multiple_of=f["multiple_of"].integer(minimum=1) if "multiple_of" in f else 1,
        max_edge=node.get("max_edge").integer(minimum=1),
        min_pixels=node.get("min_pixels").integer(minimum=1),
        max_pixels=node.get("max_pixels").integer(minimum=1),
        max_ratio=node.get("max_ratio").money(),
        experimental_above_pixels=(
            f["experimental_above_pixels"].integer(minimum=1) if "experimental_above_pixels" in f else None
        ),
    )
    if rules.min_pixels > rules.max_pixels:
        raise node.fail("min_pixels is above max_pixels")
    if rules.max_ratio < 1:
        raise f["max_ratio"].fail("max_ratio is long edge over short edge, so at least 1")
    return rules


_EDIT_FIELDS = {
    "supported",
    "model",
    "max_images",
    "max_image_bytes",
    "formats",
    "mask",
    "inputs",
    "source",
    "observed",
    "notes",
}


def _edit(node: Field) -> EditCaps:
    f = node.mapping(_EDIT_FIELDS)
    supported = node.get("supported").boolean()
    if not supported:
        return EditCaps(
            supported=False,
            model=None,
            max_images=None,
            max_image_bytes=None,
            formats=(),
            mask=False,
            inputs=(),
            provenance=None,
        )
    return EditCaps(
        supported=True,
        model=f["model"].text() if "model" in f else None,
        max_images=f["max_images"].integer(minimum=1) if "max_images" in f else None,
        max_image_bytes=f["max_image_bytes"].integer(minimum=1) if "max_image_bytes" in f else None,
        formats=node.get("formats").text_list(IMAGE_FORMATS),
        mask=node.get("mask", False).boolean(),
        inputs=node.get("inputs").text_list(INPUT_KINDS),
        provenance=_provenance(node),
    )


def _price(node: Field, qualities: tuple[str, ...]) -> Price:
    model_node = node.get("model")
    model = PRICE_MODELS[model_node.choice(tuple(PRICE_MODELS))]  # an unknown one fails, naming the known models
    fields = node.mapping({"model", "source", "observed", "published", "notes", *model.fields})
    values: dict[str, Any] = {
        "usd_per_million": {},
        "round_up_per_request": None,
        "credits_per_image": {},
        "usd_per_image": None,
    }
    values["usd_per_quality"] = {}
    values.update(model.parse(node, fields, qualities))
    return Price(
        model=model.name,
        **values,
        provenance=_provenance(node),
        published=_published(fields.get("published")),
        uses_credits=model.uses_credits,
    )


def _published(node: Field | None) -> dict[str, dict[str, Decimal]]:
    if node is None:
        return {}
    node.mapping({"source", "observed", "per_image_usd"})
    table = {}
    for size, row in node.get("per_image_usd").mapping().items():
        table[size] = {q: cell.money() for q, cell in row.mapping(set(QUALITIES)).items()}
    return table
