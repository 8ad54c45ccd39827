"""pricing.yaml's `offers:` entries read and checked: what each offer can deliver (qualities,
sizes, edits, formats), what it really runs, and its price in its price model's fields."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from imgroute.errors import quoted
from imgroute.models import Ratio
from imgroute.pricing.fields import Field, notes, provenance
from imgroute.pricing.price_models import PRICE_MODELS
from imgroute.pricing.table import (
    IDENTITIES,
    INPUT_KINDS,
    EditCaps,
    Identity,
    Offer,
    PixelRules,
    PresetRatio,
    Price,
    ProviderInfo,
    SizeCaps,
)
from imgroute.providers.registry import REGISTRY
from imgroute.vocab import BACKGROUNDS, IMAGE_FORMATS, MODERATIONS, QUALITIES, RESOLUTIONS

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
    "typical_duration",
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


def offer_of(node: Field, providers: dict[str, ProviderInfo], origin: str) -> Offer:
    fields = node.mapping(_OFFER_FIELDS)
    provider_node = node.get("provider")
    provider = provider_node.choice((*REGISTRY, *providers))
    if provider not in providers:
        raise provider_node.fail(f"provider '{provider}' has no entry under providers:", "add it with its plans")
    qualities = node.get("qualities").text_list(QUALITIES)
    offer = Offer(
        provider=provider,
        model=node.get("model").text(),
        provenance=provenance(node),
        qualities=tuple(q for q in QUALITIES if q in qualities),
        quality_selectable=node.get("quality_selectable", True).boolean(),
        images_per_request=node.get("images_per_request").integer(minimum=1),
        prompt_max_chars=node.get("prompt_max_chars").integer(minimum=1),
        output_formats=node.get("output_formats", ["png"]).text_list(IMAGE_FORMATS),
        sizes=_sizes(node.get("sizes")),
        edit=_edit(node.get("edit", {"supported": False})),
        price=_price(node.get("price"), qualities),
        notes=notes(node),
        origin=origin,
        identity=_identity(fields.get("identity")),
        quality_stated=node.get("quality_stated", True).boolean(),
        quality_note=fields["quality_note"].text() if "quality_note" in fields else "",
        unsourced=_unsourced(fields.get("unsourced")),
        backgrounds=node.get("background", ["auto"]).text_list(BACKGROUNDS),
        moderations=node.get("moderation", ["auto"]).text_list(MODERATIONS),
        window_s=_duration(fields.get("completion_window"), "completion_window", "24h"),
        typical_s=_duration(fields.get("typical_duration"), "typical_duration", "30s"),
    )
    if not offer.quality_stated and not offer.quality_note:
        raise node.fail("quality_stated: false needs a quality_note saying why the tier is assumed")
    if offer.price.uses_credits and not any(p.usd_per_credit is not None for p in providers[provider].plans.values()):
        raise node.get("price").fail(f"credit prices need a plan with usd_per_credit under providers.{provider}.plans")
    PRICE_MODELS[offer.price.model].validate(node.get("price"), offer)
    return offer


def _duration(node: Field | None, name: str, example: str) -> float | None:
    if node is None:
        return None
    from imgroute.errors import UsageError
    from imgroute.request import parse_duration

    try:
        return parse_duration(node.text(), name)
    except UsageError:
        raise node.fail(f"{quoted(node.value)} is not a duration", f"write it like {example}") from None


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
    return SizeCaps(mode=mode, rules=rules, presets=presets, provenance=provenance(node))


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
        provenance=provenance(node),
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
        provenance=provenance(node),
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
