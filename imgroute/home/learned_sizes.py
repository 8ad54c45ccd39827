"""Pixel sizes learned from what providers delivered, for the preset sizes they do not publish.

Kie publishes no pixel size for its tiers, so an exact `--size 1024x1024` could never be routed
there, even after it has delivered 1024x1024 a hundred times. Every image saved at a preset whose
size is unpublished is recorded here, per offer, aspect and tier; a tier that has always delivered
one size then matches that size (the quote says it was learned, and how often it was seen).

A small JSON file in the home directory (`delivered-sizes.json`), not the ledger, so that `quote`
reads it without opening sqlite. It is a cache of observations: losing it loses nothing paid for,
so it is replaced atomically but not fsynced, and two processes merging at once may drop a count.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from imgroute.home.cache import Merger, read_json

FILE = "delivered-sizes.json"


class Seen(NamedTuple):
    """What one offer's tier at one aspect has delivered."""

    size: tuple[int, int] | None  # the one size it has always delivered; None: sizes differed
    times: int  # images seen (not `count`, which would hide tuple.count)
    sizes: tuple[str, ...]  # every size seen, as WxH


def read(home: Path) -> dict[str, dict[str, dict[str, Seen]]]:
    """offer id -> aspect label -> tier -> Seen. A missing or unreadable file is no observations."""
    raw = read_json(home / FILE)
    out: dict[str, dict[str, dict[str, Seen]]] = {}
    for offer, aspects in raw.items():
        for aspect, tiers in (aspects or {}).items() if isinstance(aspects, dict) else ():
            for tier, counts in (tiers or {}).items() if isinstance(tiers, dict) else ():
                seen = _seen(counts)
                if seen is not None:
                    out.setdefault(offer, {}).setdefault(aspect, {})[tier] = seen
    return out


def _seen(counts) -> Seen | None:
    """From {"1024x1024": 12, ...}: every entry a WxH with a positive count, else ignored."""
    if not isinstance(counts, dict) or not counts:
        return None
    sizes = []
    for size, count in counts.items():
        w, _, h = str(size).partition("x")
        if not (w.isdigit() and h.isdigit() and isinstance(count, int) and count > 0):
            return None
        sizes.append(((int(w), int(h)), count))
    only = sizes[0][0] if len(sizes) == 1 else None
    return Seen(only, sum(count for _, count in sizes), tuple(f"{w}x{h}" for (w, h), _ in sizes))


def _mapping(parent: dict, key: str) -> dict:
    """parent[key] as a mapping, replacing anything else a damaged file had there."""
    if not isinstance(parent.get(key), dict):
        parent[key] = {}
    return parent[key]


class Recorder(Merger):
    """Collects one run's deliveries; merged into the file (see home_cache.Merger)."""

    def __init__(self, home: Path):
        super().__init__(home, FILE)
        self.pending: dict[tuple[str, str, str, str], int] = {}

    def record(self, offer: str, aspect: str, tier: str, width: int, height: int) -> None:
        self.add((offer, aspect, tier, f"{width}x{height}"))

    def collect(self, key) -> None:
        self.pending[key] = self.pending.get(key, 0) + 1

    def has_pending(self) -> bool:
        return bool(self.pending)

    def fold(self, raw: dict) -> None:
        for (offer, aspect, tier, size), count in self.pending.items():
            counts = _mapping(_mapping(_mapping(raw, offer), aspect), tier)
            old = counts.get(size)
            counts[size] = (old if isinstance(old, int) and old > 0 else 0) + count
        self.pending.clear()


def apply(table, home: Path):
    """The table with what was delivered at each unpublished preset known to its offers."""
    learned = read(home)
    if not learned:
        return table
    offers = []
    for offer in table.offers:
        aspects = learned.get(offer.id)
        if not aspects or offer.sizes.mode != "presets":
            offers.append(offer)
            continue
        presets = {
            ratio: preset._replace(
                learned={
                    tier: seen
                    for tier, seen in aspects.get(preset.label, {}).items()
                    if tier in preset.tiers and preset.tiers[tier] is None
                }
            )
            for ratio, preset in offer.sizes.presets.items()
        }
        offers.append(offer._replace(sizes=offer.sizes._replace(presets=presets)))
    return table._replace(offers=tuple(offers))
