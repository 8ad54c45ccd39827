"""What an attempt sends and must get back: the request specs built from an assessment, the
shape its images must have, and the `--dry-run` preview of its first request."""

from __future__ import annotations

from imgroute.jobs.outputs import ImageShape
from imgroute.jobs.tasks import Task
from imgroute.models import JobSpec, Request
from imgroute.pricing.costs import Assessment
from imgroute.pricing.router import Quote
from imgroute.providers.registry import REGISTRY, lane


def job_spec(request: Request, assessment: Assessment, count: int, client_ref: str) -> JobSpec:
    d = assessment.delivery
    assert d is not None, "a job is only sent to an offer that can deliver it"
    return JobSpec(
        prompt=request.prompt,
        model=assessment.model,
        quality=assessment.quality if assessment.offer.quality_selectable else None,
        width=d.width,
        height=d.height,
        aspect=d.aspect,
        resolution=d.resolution,
        n=count,
        output_format=request.output_format,
        client_ref=client_ref,
        images=tuple(image.source for image in request.images),
        mask=request.mask.source if request.mask else None,
        exact_size=d.exact,
        background=request.background,
        moderation=request.moderation,
    )


def attempt_shape(request: Request, quote: Quote, assessment: Assessment) -> ImageShape:
    """What the attempt's images must be, and what their names and sidecars say."""
    d = assessment.delivery
    assert d is not None, "a job is only sent to an offer that can deliver it"
    return ImageShape(
        prompt=request.prompt,
        provider=quote.offer.provider,
        model=assessment.model,
        quality=assessment.quality,
        format=request.output_format,
        width=d.width,
        height=d.height,
        exact=d.exact,
        per_image=assessment.per_image,
    )


def delivered_size(task: Task) -> tuple[int, int]:
    """The real size read from the first saved image, else the size that was asked for."""
    if task.saved:
        return task.saved[0].width, task.saved[0].height
    return task.spec.width, task.spec.height


def lane_of(offer, key: str | None = None) -> str:
    """Which limits a job at this offer counts against: its account's (the provider's API, a batch
    API apart, and the key used), and its deployment's where the offer names one after an `@`
    (`azure/gpt-image-2@east`: each deployment has its own limits, keyed per account and deployment)."""
    variant = offer.model.partition("@")[2]
    spec = REGISTRY.get(offer.provider)
    own = variant and spec is not None and spec.variant_lanes
    return lane(f"{offer.provider}#{variant}" if own else offer.provider, offer.window_s is not None, key)


def provider_job_id(handle: dict) -> str | None:
    return handle.get("request_id") or handle.get("task_id") or handle.get("job_id") or handle.get("batch")


def preview(quote: Quote, request: Request, keys):
    """The exact first request `gen` would send for this quote, key redacted (`--dry-run`).
    `keys`: session.Keys (the key present for the provider, and its base-URL override)."""
    a = quote.assessment
    adapter = keys.adapter(quote.offer.provider, quote.offer.window_s is not None)
    prepared = adapter.prepare(job_spec(request, a, a.requests[0], "dry-run"))
    return prepared._replace(headers={**prepared.headers, **adapter.redacted_headers()})
