"""Map a requested Target onto what one offer can really produce, or say why it cannot.

Two kinds of offers:
- `pixels` offers take any WIDTHxHEIGHT within rules (OpenAI, fal, PiAPI). For `--aspect` with
  `--resolution` they get the largest size with exactly that ratio, edges on the required
  multiple, within the tier's pixel budget and the offer's limits.
- `presets` offers take an aspect ratio and a resolution tier from a fixed list (Kie, Apiframe).
"""

from __future__ import annotations

import functools
import math
from decimal import Decimal
from typing import NamedTuple, cast

from imgroute.models import FROM_URL, Ratio, Target
from imgroute.pricing.table import PixelRules, SizeCaps
from imgroute.vocab import RESOLUTION_PIXELS

# Nominal sizes for presets whose pixels are not published: the same fit as a pixel offer would
# get, on a 16 px grid with no other limits.
_NOMINAL_RULES = PixelRules(
    multiple_of=16,
    max_edge=100_000,
    min_pixels=1,
    max_pixels=10**12,
    max_ratio=Decimal(1000),
    experimental_above_pixels=None,
)

# An offer that picks its own pixels "reaches" a tier when it delivers at least this share of the
# tier's budget (a 3:1 image at 4K is capped by the 3840 px edge at 4.9 MP, which still counts).
MIN_SHARE_OF_BUDGET = Decimal("0.5")


class Delivery(NamedTuple):
    width: int
    height: int
    exact: bool  # False when the provider does not publish the pixel size (nominal estimate)
    resolution: str | None  # the provider's tier, for offers priced or chosen by tier
    aspect: str | None = None  # the provider's aspect label, for preset offers
    experimental: bool = False
    seen: int = 0  # unpublished, but delivered at this size this many times before (learned_sizes)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def label(self) -> str:
        size = f"{self.width}x{self.height}" if self.exact or self.seen else f"~{self.width}x{self.height}"
        if self.seen:
            size += f" (seen {self.seen}x)"
        if self.resolution:
            return f"{self.aspect or Ratio.of(self.width, self.height)} {self.resolution} {size}"
        return size


def fit(target: Target, caps: SizeCaps) -> tuple[Delivery | None, str | None]:
    """(delivery, None) when the offer can produce the target, else (None, reason)."""
    if caps.mode == "pixels":
        return _fit_pixels(target, cast(PixelRules, caps.rules))  # a pixels offer always has its rules
    return _fit_presets(target, caps)


# -- pixel offers -----------------------------------------------------------------------------


def _fit_pixels(target: Target, rules: PixelRules) -> tuple[Delivery | None, str | None]:
    if target.exact:
        width, height = cast(int, target.width), cast(int, target.height)  # exact: both are given
        reason = pixel_rule_violation(width, height, rules)
        if reason:
            return None, reason
        return _pixel_delivery(width, height, rules), None
    tier = cast(str, target.resolution)  # not exact: asked by aspect at a tier
    ratio = target.aspect
    if Decimal(max(ratio.w, ratio.h)) / min(ratio.w, ratio.h) > rules.max_ratio:
        return None, f"aspect {target.aspect_label} is beyond the {_ratio_limit(rules)} limit"
    size = best_size(ratio, RESOLUTION_PIXELS[tier], rules)
    if size is None:
        return None, f"no size of exactly {target.aspect_label} fits within the provider's pixel limits"
    width, height = size
    budget = RESOLUTION_PIXELS[tier]
    if width * height < budget * MIN_SHARE_OF_BUDGET:
        return None, (
            f"{target.resolution} out of reach at {target.aspect_label}: the largest size is {width}x{height} "
            f"({_mp(width * height)}), {target.resolution} needs at least {_mp(int(budget * MIN_SHARE_OF_BUDGET))}"
        )
    return _pixel_delivery(width, height, rules), None


def _pixel_delivery(width: int, height: int, rules: PixelRules) -> Delivery:
    experimental = rules.experimental_above_pixels is not None and width * height > rules.experimental_above_pixels
    return Delivery(width=width, height=height, exact=True, resolution=None, experimental=experimental)


@functools.lru_cache(maxsize=4096)  # pure, and asked again for every job of the same size
def pixel_rule_violation(width: int, height: int, rules: PixelRules) -> str | None:
    size = f"{width}x{height}"
    m = rules.multiple_of
    if width % m or height % m:
        nearest = f"{_round_to(width, m)}x{_round_to(height, m)}"
        return f"{size}: edges must be multiples of {m} (nearest valid: {nearest})"
    if Decimal(max(width, height)) / min(width, height) > rules.max_ratio:
        return f"{size}: aspect {Ratio.of(width, height)} is beyond the {_ratio_limit(rules)} limit"
    if max(width, height) > rules.max_edge:
        return f"{size}: the long edge is over {rules.max_edge} px"
    if width * height < rules.min_pixels:
        return f"{size}: {width * height:,} px is below the {rules.min_pixels:,} px minimum"
    if width * height > rules.max_pixels:
        return f"{size}: {width * height:,} px is above the {rules.max_pixels:,} px maximum"
    return None


@functools.lru_cache(maxsize=4096)  # pure, and asked again for every job of the same shape
def best_size(ratio: Ratio, budget: int, rules: PixelRules) -> tuple[int, int] | None:
    """Largest size of exactly `ratio` on the grid within the budget and the rules.

    Sizes of an exact ratio a:b on a grid of g px are (a*t, b*t) with t a multiple of `step`;
    if even the smallest valid size is over the budget, that one is returned.
    """
    g = rules.multiple_of
    step = math.lcm(g // math.gcd(g, ratio.w), g // math.gcd(g, ratio.h))
    unit_w, unit_h = ratio.w * step, ratio.h * step
    unit_area = unit_w * unit_h
    hi = min(
        rules.max_edge // max(unit_w, unit_h),
        math.isqrt(rules.max_pixels // unit_area),
    )
    lo = max(1, _ceil_sqrt_ratio(rules.min_pixels, unit_area))
    if lo > hi:
        return None
    within_budget = min(hi, math.isqrt(budget // unit_area))
    k = within_budget if within_budget >= lo else lo
    return unit_w * k, unit_h * k


def _ceil_sqrt_ratio(pixels: int, unit_area: int) -> int:
    """Smallest k with k*k*unit_area >= pixels."""
    k = math.isqrt(pixels // unit_area)
    while k * k * unit_area < pixels:
        k += 1
    return k


def _round_to(value: int, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def _ratio_limit(rules: PixelRules) -> str:
    return f"{rules.max_ratio.normalize():f}:1"


def _mp(pixels: int) -> str:
    return f"{pixels / 1_000_000:.1f} MP"


# -- preset offers ----------------------------------------------------------------------------


def _fit_presets(target: Target, caps: SizeCaps) -> tuple[Delivery | None, str | None]:
    ratio = target.aspect
    offered = ", ".join(p.label for p in caps.presets.values())
    preset = caps.presets.get(ratio)
    if preset is None:
        whose = " (the first image's shape)" if target.from_image and target.from_image != FROM_URL else ""
        return None, f"aspect {target.aspect_label}{whose} not offered (offers {offered})"
    tiers, label = preset.tiers, preset.label
    if target.exact:
        for tier, size in tiers.items():
            if size == (target.width, target.height):
                return Delivery(width=size[0], height=size[1], exact=True, resolution=tier, aspect=label), None
        for tier, learned in preset.learned.items():  # unpublished, but always delivered at this size
            if learned.size == (target.width, target.height):
                width, height = learned.size
                return Delivery(
                    width=width, height=height, exact=False, resolution=tier, aspect=label, seen=learned.times
                ), None
        if all(size is None for size in tiers.values()):
            pixels = cast(int, target.width) * cast(int, target.height)  # the tier nearest the pixels asked for
            tier = min(tiers, key=lambda t: abs(math.log(RESOLUTION_PIXELS[t] / pixels)))
            return None, (
                f"takes an aspect ratio and a tier, not pixels (sizes unpublished); "
                f"ask --aspect {label} --resolution {tier}"
            )
        sizes = ", ".join(f"{w}x{h}" for w, h in (s for s in tiers.values() if s))
        return None, f"{target.width}x{target.height} not offered ({label} comes as {sizes})"
    if target.resolution not in tiers:
        return None, f"{target.resolution} not offered at {label} (only {', '.join(tiers)})"
    size = tiers[target.resolution]
    if size is not None:
        return Delivery(width=size[0], height=size[1], exact=True, resolution=target.resolution, aspect=label), None
    seen = preset.learned.get(target.resolution)
    if seen is not None and seen.size is not None:
        width, height = seen.size
        return (
            Delivery(
                width=width, height=height, exact=False, resolution=target.resolution, aspect=label, seen=seen.times
            ),
            None,
        )
    # (the nominal rules have no limits a preset's ratio could miss)
    nominal = cast(tuple[int, int], best_size(ratio, RESOLUTION_PIXELS[target.resolution], _NOMINAL_RULES))
    return Delivery(width=nominal[0], height=nominal[1], exact=False, resolution=target.resolution, aspect=label), None
