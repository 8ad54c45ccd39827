"""The values that flow through imgroute, each with a paired `to_json` / `from_json`.

What is journaled must come back as the very same value: a resume works from the ledger alone.
`tests/test_models.py` round-trips many of each. Parsing what a user typed lives in request.py;
states are enums so that no module spells them on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple


class Ratio(NamedTuple):
    """An aspect ratio in lowest terms, e.g. 16:9."""

    w: int
    h: int

    @classmethod
    def of(cls, w: int, h: int) -> Ratio:
        g = math.gcd(w, h)
        return cls(w // g, h // g)

    @classmethod
    def parse(cls, text: str) -> Ratio:
        """'W:H' as journaled (already checked when the user typed it)."""
        w, _, h = text.partition(":")
        return cls.of(int(w), int(h))

    def __str__(self) -> str:
        return f"{self.w}:{self.h}"


class Target(NamedTuple):
    """What the output should look like: exact pixels, or an aspect ratio at a resolution tier."""

    aspect: Ratio
    resolution: str | None = None  # set when the user asked by tier
    width: int | None = None  # set (with height) when the user asked for exact pixels
    height: int | None = None
    aspect_text: str | None = None  # as the user wrote it ("21:9"); `aspect` is reduced ("7:3")
    # An edit given no size or aspect: the first image's pixels ("1536x1024") when its shape was
    # taken from it, or FROM_URL when it was a URL (its shape unknown here: the default 1:1 stands).
    from_image: str | None = None

    @property
    def aspect_label(self) -> str:
        return self.aspect_text or str(self.aspect)

    @property
    def exact(self) -> bool:
        return self.width is not None

    def __str__(self) -> str:
        if self.exact:
            return f"{self.width}x{self.height}"
        shape = f"{self.aspect_label} at {self.resolution}"
        if self.from_image and self.from_image != FROM_URL:
            shape += f" (the first image's shape, {self.from_image})"
        return shape

    def to_json(self) -> dict:
        return {
            "size": f"{self.width}x{self.height}" if self.exact else None,
            "aspect": self.aspect_label,
            "resolution": self.resolution,
            "aspect_from_image": self.from_image,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> Target:
        if data.get("size"):
            w, _, h = data["size"].partition("x")
            width, height = int(w), int(h)
            return cls(aspect=Ratio.of(width, height), width=width, height=height)
        text = data.get("aspect") or "1:1"
        ratio = Ratio.parse(text)
        return cls(
            aspect=ratio,
            resolution=data.get("resolution") or "1K",
            aspect_text=aspect_text(text, ratio),
            from_image=data.get("aspect_from_image"),
        )


FROM_URL = "url"  # Target.from_image: the first image was a URL, whose shape is not known here


def aspect_text(text: str, ratio: Ratio) -> str | None:
    """The ratio as the user wrote it, kept only where it differs from its lowest terms (21:9)."""
    return text if text != str(ratio) else None


DEFAULT_TARGET = Target(aspect=Ratio(1, 1), resolution="1K")


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


class InputImage(NamedTuple):
    """A reference image or mask: a local file (inspected by its header) or a public URL."""

    source: str  # the path or URL as given (local paths made absolute)
    is_url: bool
    format: str | None = None  # known for local files
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    has_alpha: bool | None = None

    @property
    def name(self) -> str:
        return self.source if self.is_url else Path(self.source).name

    def to_json(self) -> dict:
        return self._asdict()

    @classmethod
    def from_json(cls, data: Mapping | str) -> InputImage:
        if isinstance(data, str):  # ledgers before 0.2 kept only the source
            return cls(data, is_url(data))
        values: dict[str, Any] = {field: data.get(field) for field in cls._fields}
        return cls(**values)


class Request(NamedTuple):
    prompt: str
    quality: str = "medium"
    target: Target = DEFAULT_TARGET
    n: int = 1
    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    output_format: str = "png"
    background: str = "auto"  # auto | opaque | transparent
    moderation: str = "auto"  # auto | low

    def to_json(self) -> dict:
        return {
            "prompt": self.prompt,
            "quality": self.quality,
            **self.target.to_json(),
            "n": self.n,
            "images": [image.to_json() for image in self.images],
            "mask": self.mask.to_json() if self.mask else None,
            "format": self.output_format,
            "background": self.background,
            "moderation": self.moderation,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> Request:
        mask = data.get("mask")
        return cls(
            prompt=data["prompt"],
            quality=data["quality"],
            target=Target.from_json(data),
            n=data["n"],
            images=tuple(InputImage.from_json(image) for image in data.get("images") or ()),
            mask=InputImage.from_json(mask) if mask else None,
            output_format=data.get("format", "png"),
            background=data.get("background", "auto"),
            moderation=data.get("moderation", "auto"),
        )


class Constraints(NamedTuple):
    """Routing limits from flags and config."""

    providers: frozenset[str] = frozenset()  # empty means all
    exclude: frozenset[str] = frozenset()
    max_cost: Decimal | None = None
    plans: Mapping[str, str] = MappingProxyType({})  # provider -> plan name
    official_only: bool = False  # only offers that run OpenAI's own model
    stated_quality: bool = False  # only offers whose quality tier their provider states
    deadline_s: float | None = None  # the job may take this long: admits offers that are slower but cheaper
    rank: str = "price"  # or "expected": by expected dollars per delivered image, from the offers' history

    def to_json(self) -> dict:
        return {
            "providers": sorted(self.providers),
            "exclude": sorted(self.exclude),
            "max_cost": str(self.max_cost) if self.max_cost is not None else None,
            "plans": dict(self.plans),
            "official_only": self.official_only,
            "stated_quality": self.stated_quality,
            "deadline_s": self.deadline_s,
            "rank": self.rank,
        }

    @classmethod
    def from_json(cls, data: Mapping | None) -> Constraints:
        data = data or {}
        max_cost = data.get("max_cost")
        return cls(
            providers=frozenset(data.get("providers") or ()),
            exclude=frozenset(data.get("exclude") or ()),
            max_cost=Decimal(max_cost) if max_cost is not None else None,
            plans=MappingProxyType(dict(data.get("plans") or {})),
            official_only=bool(data.get("official_only")),
            stated_quality=bool(data.get("stated_quality")),
            deadline_s=data.get("deadline_s"),
            rank=data.get("rank") or "price",
        )


class JobSpec(NamedTuple):
    """One request to one provider: everything an adapter needs, already decided."""

    prompt: str
    model: str
    quality: str | None  # None for offers with no quality knob
    width: int
    height: int
    aspect: str | None  # the provider's own ratio label, for preset offers
    resolution: str | None  # the provider's tier, for preset offers
    n: int  # images in this request
    output_format: str
    client_ref: str  # our id for this request: idempotency key, `user` field
    images: tuple[str, ...] = ()  # reference images: local paths or URLs (after any upload)
    mask: str | None = None
    exact_size: bool = True  # False: the provider does not publish its pixels; only the ratio is checked
    background: str = "auto"
    moderation: str = "auto"

    def to_json(self) -> dict:
        return {**self._asdict(), "images": list(self.images)}

    @classmethod
    def from_json(cls, data: Mapping) -> JobSpec:
        values: dict[str, Any] = {field: data[field] for field in cls._fields if field in data}
        values["images"] = tuple(values.get("images") or ())
        return cls(**values)


# -- states -----------------------------------------------------------------------------------


class OfferRef(NamedTuple):
    """An offer as a job is billed for it: provider, the model it asked for (an edit may use the
    offer's edit model), and the plan that priced it."""

    provider: str
    model: str
    plan: str


class JobState(StrEnum):
    PLANNED = "planned"  # journaled, nothing reserved
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # a submit's fate is unknown
    CANCELLED = "cancelled"  # stopped before anything was sent


# Jobs that `jobs resume --all` and a batch rerun pick up again.
UNFINISHED_JOB_STATES = (
    JobState.PLANNED,
    JobState.SUBMITTING,
    JobState.SUBMITTED,
    JobState.RUNNING,
    JobState.UNKNOWN,
)


class AttemptState(StrEnum):
    """One offer tried for a job. The row is also the attempt's budget reservation."""

    PLANNED = "planned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the provider failed the job, or its output was bad
    # The provider ran a request and failed it without an image, and does not say whether it charged
    # (JobFailed.charge_unknown): the job moved on; the failed share (`at_risk` in the ledger) counts
    # against the caps and --max-cost until `imgroute jobs settle` says charged or not (then FAILED).
    FAILED_AT_RISK = "failed_at_risk"
    TROUBLE = "trouble"  # the provider could not take it: the job moved on
    UNKNOWN = "unknown"
    REFUSED = "refused"  # by a budget
    ABANDONED = "abandoned"  # stopped before anything was sent


# Attempts in these states may still cost money: they count at their estimate until settled. (A
# FAILED_AT_RISK attempt counts what it delivered plus its failed share: ledger.committed_cost.)
OPEN_ATTEMPT_STATES = (AttemptState.PLANNED, AttemptState.RUNNING, AttemptState.UNKNOWN)


class TaskState(StrEnum):
    """One request inside an attempt (Kie: one per image)."""

    SUBMITTING = "submitting"  # journaled, about to be sent
    SUBMITTED = "submitted"  # the provider's id is recorded
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # results recorded
    FAILED = "failed"
    # Ran and failed without an image, its charge not stated (JobFailed.charge_unknown): its images
    # moved on. Kept after `jobs settle`, whose verdict is on the attempt (and in the task's detail).
    FAILED_AT_RISK = "failed_at_risk"
    UNKNOWN = "unknown"  # sent, no usable answer


# A task's detail while it waits for its provider batch to be sent (batch_window.py): a resume
# that finds it so knows nothing reached the provider. Sending replaces it before the request goes.
UNSENT = "waiting for its batch to be sent"
SENDING_BATCH = "sent in a provider batch"
