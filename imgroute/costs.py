"""Can one offer deliver a request, what exactly would it deliver, and what would it cost.

Pure functions, no I/O. Every estimate carries a breakdown of its arithmetic (`quote --explain`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from imgroute import sizing, tokens
from imgroute.models import Request
from imgroute.money import MILLION, ceil_to, fmt_rate, fmt_usd
from imgroute.pricing import Offer, Plan
from imgroute.request import QUALITIES, QUALITY_RANK
from imgroute.sizing import Delivery


class Line(NamedTuple):
    """One step of the arithmetic, in words."""

    text: str


class Assessment(NamedTuple):
    offer: Offer
    model: str  # the provider's model for this job (edits may use another, e.g. fal's /edit)
    plan: Plan
    reasons: tuple[str, ...]  # why it cannot deliver; empty when it can
    delivery: Delivery | None
    quality: str | None  # the tier it would deliver
    requests: tuple[int, ...]  # images in each request it would take
    cost: Decimal | None
    breakdown: tuple[Line, ...]
    notes: tuple[str, ...]  # things worth knowing that do not disqualify

    @property
    def capable(self) -> bool:
        return not self.reasons

    @property
    def n(self) -> int:
        return sum(self.requests)

    @property
    def per_image(self) -> Decimal | None:
        return None if self.cost is None or not self.n else self.cost / self.n


def assess(request: Request, offer: Offer, plan: Plan) -> Assessment:
    reasons: list[str] = []
    notes: list[str] = []

    delivery, size_reason = sizing.fit(request.target, offer.sizes)
    if size_reason:
        reasons.append(size_reason)
    elif delivery.experimental:
        notes.append(f"{delivery.width}x{delivery.height} is above 2560x1440: labelled experimental")

    quality, quality_reason = _deliverable_quality(request.quality, offer)
    if quality_reason:
        reasons.append(quality_reason)

    requests, n_reason = _split(request.n, offer)
    if n_reason:
        reasons.append(n_reason)

    if len(request.prompt) > offer.prompt_max_chars:
        reasons.append(
            f"prompt is {len(request.prompt):,} characters; {offer.provider} takes at most {offer.prompt_max_chars:,}"
        )
    if request.output_format not in offer.output_formats:
        reasons.append(f"cannot output {request.output_format} (only {', '.join(offer.output_formats)})")
    reasons.extend(_edit_reasons(request, offer))

    cost, breakdown = None, ()
    if delivery is not None and quality is not None and requests:
        cost, breakdown, price_reason = _price(request, offer, plan, delivery, quality, requests)
        if price_reason:
            reasons.append(price_reason)
        elif len(requests) == 1 and requests[0] >= 1:
            notes.extend(_published_disagreement(offer, delivery, quality))
    model = offer.edit.model if request.images and offer.edit.model else offer.model
    return Assessment(
        offer=offer,
        model=model,
        plan=plan,
        reasons=tuple(reasons),
        delivery=delivery,
        quality=quality,
        requests=requests,
        cost=cost,
        breakdown=tuple(breakdown),
        notes=tuple(notes),
    )


def _deliverable_quality(wanted: str, offer: Offer) -> tuple[str | None, str | None]:
    """The lowest tier the offer has that is at least the one asked for."""
    for q in QUALITIES[QUALITY_RANK[wanted] :]:
        if q in offer.qualities:
            return q, None
    return None, f"quality {wanted} not offered (only {', '.join(offer.qualities)})"


def _split(n: int, offer: Offer) -> tuple[tuple[int, ...], str | None]:
    per = offer.images_per_request
    if n <= per:
        return (n,), None
    if not offer.split_across_requests:
        return (), f"{n} images is more than the {per} {offer.provider} makes per request"
    full, rest = divmod(n, per)
    return (per,) * full + ((rest,) if rest else ()), None


def _edit_reasons(request: Request, offer: Offer) -> list[str]:
    """Can the offer take these reference images and this mask, the way they are given?"""
    if not request.images and request.mask is None:
        return []
    edit = offer.edit
    if not edit.supported:
        return ["does not edit images"]
    reasons = []
    if edit.max_images and len(request.images) > edit.max_images:
        reasons.append(f"{len(request.images)} input images; takes at most {edit.max_images}")
    local = {"file", "data_uri", "upload_service"} & set(edit.inputs)
    for image in (*request.images, *((request.mask,) if request.mask else ())):
        if image.is_url and "url" not in edit.inputs:
            reasons.append(f"{image.name}: takes reference images only as uploaded files, not URLs")
        elif not image.is_url and not local:
            reasons.append(f"{image.name}: takes reference images only as public URLs")
        if image.format and image.format not in edit.formats:
            reasons.append(f"{image.name}: {image.format} not accepted (only {', '.join(edit.formats)})")
        if image.bytes and edit.max_image_bytes and image.bytes > edit.max_image_bytes:
            reasons.append(
                f"{image.name}: {image.bytes / 1e6:.1f} MB; takes at most {edit.max_image_bytes / 1e6:.0f} MB"
            )
    if request.mask is not None and not edit.mask:
        reasons.append("no documented mask support")
    return reasons


# -- price models -----------------------------------------------------------------------------


def _price(
    request: Request, offer: Offer, plan: Plan, delivery: Delivery, quality: str, requests: tuple[int, ...]
) -> tuple[Decimal | None, list[Line], str | None]:
    model = offer.price.model
    if model == "tokens":
        cost, lines = _tokens_cost(request, offer, delivery, quality, requests)
        return cost, lines, None
    n = sum(requests)
    if model == "flat_per_image":
        each = offer.price.usd_per_image
        cost = each * n
        return cost, [Line(f"{fmt_usd(each, 6)}/image flat x {_images(n)} = {fmt_usd(cost, 6)}")], None
    # credit models
    if model == "credits_per_quality":
        key, label = quality, quality
    else:
        key, label = delivery.resolution, delivery.resolution
    per_image = offer.price.credits_per_image.get(key)
    if per_image is None:
        return None, [], f"no credit price for {label}"
    if plan.usd_per_credit is None:
        return None, [], f"plan '{plan.name}' has no credit price"
    credits = per_image * n
    cost = credits * plan.usd_per_credit
    lines = [
        Line(f"{per_image} credits/image ({label}) x {_images(n)} = {credits} credits"),
        Line(
            f"{credits} credits x {fmt_rate(_rate_digits(plan.usd_per_credit))}/credit "
            f"({plan.provider} {plan.name}) = {fmt_usd(cost, 6)}"
        ),
    ]
    if len(requests) > 1:
        lines.insert(0, Line(f"one image per task: {len(requests)} tasks"))
    if request.images:
        lines.append(Line(f"reference images: no extra credits documented by {offer.provider}"))
    return cost, lines, None


def _tokens_cost(
    request: Request, offer: Offer, delivery: Delivery, quality: str, requests: tuple[int, ...]
) -> tuple[Decimal, list[Line]]:
    rates = offer.price.usd_per_million
    out_tokens = tokens.output_tokens(delivery.width, delivery.height, quality)
    in_tokens = tokens.prompt_tokens(request.prompt)
    out_rate, in_rate = rates["image_output"], rates["text_input"]
    image_rate = rates.get("image_input", Decimal(0))
    image_tokens = [tokens.input_image_tokens(i.width, i.height) for i in request.images]
    lines = []
    total = Decimal(0)
    for images in _grouped(requests):
        count, per_request = images
        output_cost = out_tokens * per_request * out_rate / MILLION
        prompt_cost = in_tokens * in_rate / MILLION
        inputs_cost = sum(image_tokens) * image_rate / MILLION
        request_cost = output_cost + prompt_cost + inputs_cost
        lines.append(
            Line(
                f"output: {_images(per_request)} x {out_tokens:,} tokens ({delivery.width}x{delivery.height} "
                f"{quality}) x {fmt_rate(out_rate)}/1M = {fmt_usd(output_cost, 6)}"
            )
        )
        lines.append(
            Line(
                f"prompt: ~{in_tokens} tokens ({len(request.prompt)} chars / {tokens.CHARS_PER_TOKEN} "
                f"+ {tokens.PROMPT_OVERHEAD_TOKENS}) x {fmt_rate(in_rate)}/1M = {fmt_usd(prompt_cost, 6)}"
            )
        )
        if image_tokens:
            unknown = sum(1 for i in request.images if not i.width)
            assumed = f"; {unknown} URL input(s) assumed 1024x1024" if unknown else ""
            lines.append(
                Line(
                    f"input images: {len(image_tokens)} x ~{round(sum(image_tokens) / len(image_tokens)):,} tokens "
                    f"x {fmt_rate(image_rate)}/1M = {fmt_usd(inputs_cost, 6)} (assumed: {tokens.PATCH_PX} px "
                    f"patches, at most {tokens.PATCH_BUDGET:,} per image, undocumented by OpenAI{assumed})"
                )
            )
        step = offer.price.round_up_per_request
        if step is not None:
            rounded = ceil_to(request_cost, step)
            lines.append(
                Line(f"request {fmt_usd(request_cost, 6)} rounded up to {fmt_rate(step)} = {fmt_usd(rounded, 6)}")
            )
            request_cost = rounded
        if count > 1:
            lines.append(Line(f"{count} requests x {fmt_usd(request_cost, 6)}"))
        total += request_cost * count
    lines.append(Line(f"total = {fmt_usd(total, 6)}"))
    return total, lines


def _grouped(requests: tuple[int, ...]) -> list[tuple[int, int]]:
    """(how many requests, images per request) pairs, e.g. (4, 4, 1) -> [(2, 4), (1, 1)]."""
    groups: list[tuple[int, int]] = []
    for images in requests:
        if groups and groups[-1][1] == images:
            groups[-1] = (groups[-1][0] + 1, images)
        else:
            groups.append((1, images))
    return groups


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def _rate_digits(rate: Decimal) -> Decimal:
    """Credit prices derived from a plan (199/52000) carry 28 digits; 8 significant are plenty."""
    return rate if rate == rate.quantize(Decimal("0.00000001")) else rate.quantize(Decimal("0.00000001"))


def _published_disagreement(offer: Offer, delivery: Delivery, quality: str) -> list[str]:
    """Surface a provider's own per-image figure when the model used here disagrees with it."""
    published = offer.price.published.get(f"{delivery.width}x{delivery.height}", {}).get(quality)
    if published is None or offer.price.model != "tokens":
        return []
    rates = offer.price.usd_per_million
    model_cost = tokens.output_tokens(delivery.width, delivery.height, quality) * rates["image_output"] / MILLION
    if offer.price.round_up_per_request is not None:
        model_cost = ceil_to(model_cost, offer.price.round_up_per_request)
    places = -published.as_tuple().exponent
    if model_cost.quantize(Decimal(1).scaleb(-places)) == published:
        return []
    return [
        f"{offer.provider}'s own table says {fmt_rate(published)}/image at {delivery.width}x{delivery.height} "
        f"{quality}; the token model used here gives {fmt_usd(model_cost, 4)} (usage decides the real charge)"
    ]


# -- actual cost ------------------------------------------------------------------------------


class Delivered(NamedTuple):
    """What one request really produced, for pricing it after the fact."""

    images: int
    width: int
    height: int
    usage: object | None  # providers.base.Usage, read by field name


def actual_cost(
    offer: Offer, plan: Plan, quality: str, tier: str | None, prompt: str, delivered: list[Delivered]
) -> tuple[Decimal, str]:
    """The charge for what was delivered, and where the figure comes from."""
    price = offer.price
    images = sum(d.images for d in delivered)
    if price.model == "flat_per_image":
        return price.usd_per_image * images, "list price"
    if price.uses_credits:
        charged = [getattr(d.usage, "credits", None) for d in delivered]
        if plan.usd_per_credit is not None and charged and all(c is not None for c in charged):
            return sum(charged) * plan.usd_per_credit, "credits charged"
        per_image = price.credits_per_image[quality if price.model == "credits_per_quality" else tier]
        return per_image * images * plan.usd_per_credit, "list price"
    rates = price.usd_per_million
    total = Decimal(0)
    from_usage = all(d.usage is not None and getattr(d.usage, "image_output", 0) for d in delivered)
    for d in delivered:
        if from_usage:
            u = d.usage
            cost = (
                u.text_input * rates["text_input"]
                + u.image_input * rates.get("image_input", Decimal(0))
                + u.image_output * rates["image_output"]
                + u.text_output * rates.get("text_output", rates["image_output"])
            ) / MILLION
        else:
            cost = (
                tokens.output_tokens(d.width, d.height, quality) * d.images * rates["image_output"]
                + tokens.prompt_tokens(prompt) * rates["text_input"]
            ) / MILLION
        if price.round_up_per_request is not None:
            cost = ceil_to(cost, price.round_up_per_request)
        total += cost
    return total, "usage tokens" if from_usage else "token model at the delivered size"
