"""Can one offer deliver a request, what exactly would it deliver, and what would it cost.

Pure functions, no I/O. Every estimate carries a breakdown of its arithmetic (`quote --explain`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from imgroute.models import Request
from imgroute.pricing import price_models, sizing
from imgroute.pricing.price_models import Line
from imgroute.pricing.sizing import Delivery
from imgroute.pricing.table import Offer, Plan
from imgroute.vocab import QUALITIES, QUALITY_RANK


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


class Fit(NamedTuple):
    """What an offer can do with a request, before any price: the same for every plan, and for
    every prompt under the offer's length limit (so `router.rank` keeps it across such jobs)."""

    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    delivery: Delivery | None
    quality: str | None
    requests: tuple[int, ...]


def fit(request: Request, offer: Offer) -> Fit:
    reasons: list[str] = []
    notes: list[str] = []

    delivery, size_reason = sizing.fit(request.target, offer.sizes)
    if size_reason:
        reasons.append(size_reason)
    elif delivery is not None and delivery.experimental:
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
    if request.background not in offer.backgrounds:
        reasons.append(f"cannot make a {request.background} background (only {', '.join(offer.backgrounds)})")
    if request.moderation not in offer.moderations:
        reasons.append(f"no {request.moderation} moderation setting (only {', '.join(offer.moderations)})")
    if request.output_format not in offer.output_formats:
        reasons.append(f"cannot output {request.output_format} (only {', '.join(offer.output_formats)})")
    reasons.extend(_edit_reasons(request, offer))
    return Fit(reasons=tuple(reasons), notes=tuple(notes), delivery=delivery, quality=quality, requests=requests)


def assess(request: Request, offer: Offer, plan: Plan, fitted: Fit | None = None) -> Assessment:
    """The offer's fit for the request (`fitted`, if already known) and its price at `plan`."""
    fitted = fitted or fit(request, offer)
    reasons, notes = list(fitted.reasons), list(fitted.notes)
    delivery, quality, requests = fitted.delivery, fitted.quality, fitted.requests

    cost: Decimal | None = None
    breakdown: tuple[Line, ...] = ()
    if delivery is not None and quality is not None and requests:
        charging = price_models.of(offer)
        job = price_models.Job(
            request=request, offer=offer, plan=plan, delivery=delivery, quality=quality, requests=requests
        )
        cost, breakdown, price_reason = charging.estimate(job)
        if price_reason:
            reasons.append(price_reason)
        elif len(requests) == 1:
            notes.extend(charging.published_disagreement(offer, delivery, quality))
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
    """Images per request: a job larger than one request at this offer is sent as several, each
    priced on its own (fal rounds each up to the cent) and journaled on its own."""
    per = offer.images_per_request
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
