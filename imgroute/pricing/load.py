"""Load and validate pricing.yaml into immutable offers and plans. No arithmetic lives here.

The bundled table ships inside the package; a user file (home dir or --pricing) is merged over it:
offers are matched by provider + model and plans by provider + plan name, and mappings merge key
by key, so a user file can change one price without repeating the whole offer.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

from imgroute.errors import quoted
from imgroute.pricing.fields import Field, read_yaml
from imgroute.pricing.read_offers import offer_of
from imgroute.pricing.read_providers import check_relay_keys, provider_of
from imgroute.pricing.table import (
    PricingTable,
)

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
        providers[pid] = provider_of(pid, node)
    check_relay_keys(providers, provider_files or {}, file)
    offers = []
    seen = set()
    offer_items = top["offers"].items() if "offers" in top else []
    if not offer_items:
        raise root.fail("no offers defined", "a pricing table needs at least one offer")
    for i, node in enumerate(offer_items):
        origin = origins[i] if i < len(origins) else file
        labelled = _label_offer(node, origin)
        offer = offer_of(labelled, providers, origin)
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
