"""The pricing table as values: offers, plans, providers and what each can deliver, immutable once
loaded (pricing/load.py reads them from pricing.yaml). No arithmetic lives here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from imgroute.models import Ratio
from imgroute.providers.registry import ProviderSpec, Registry

if TYPE_CHECKING:
    import datetime as dt
    from decimal import Decimal

    from imgroute.home.learned_sizes import Seen

INPUT_KINDS = ("file", "data_uri", "url", "upload_service")


class Provenance(NamedTuple):
    source: str
    observed: dt.date


class Price(NamedTuple):
    """How an offer is priced: its price model's name and the figures that model reads."""

    model: str
    usd_per_million: dict[str, Decimal]  # tokens model
    round_up_per_request: Decimal | None  # tokens model (fal)
    credits_per_image: dict[str, int]  # by quality or by resolution
    usd_per_image: Decimal | None  # flat model
    provenance: Provenance
    # The provider's own per-image figures: "WxH" -> quality -> USD.
    published: dict[str, dict[str, Decimal]]
    usd_per_quality: dict[str, Decimal]  # flat by quality (Replicate)
    uses_credits: bool = False  # charged in a plan's credits (its price model says so)


class Plan(NamedTuple):
    provider: str
    name: str
    description: str
    usd_per_credit: Decimal | None
    monthly_usd: Decimal | None
    credits_per_month: int | None
    default: bool
    provenance: Provenance
    notes: tuple[str, ...]


class ProviderInfo(NamedTuple):
    id: str
    name: str
    provenance: Provenance
    plans: dict[str, Plan]
    relay: ProviderSpec | None = None  # a relay the file declares (not a built-in provider)

    @property
    def default_plan(self) -> Plan:
        return next(p for p in self.plans.values() if p.default)


class PixelRules(NamedTuple):
    multiple_of: int
    max_edge: int
    min_pixels: int
    max_pixels: int
    max_ratio: Decimal
    experimental_above_pixels: int | None


class SizeCaps(NamedTuple):
    mode: str  # "pixels" or "presets"
    rules: PixelRules | None
    presets: dict[Ratio, PresetRatio]
    provenance: Provenance


class PresetRatio(NamedTuple):
    label: str  # as the provider spells it ("21:9", not "7:3"); sent as-is
    tiers: dict[str, tuple[int, int] | None]  # tier -> (width, height), None when unpublished
    learned: dict[str, Seen]  # tier -> what an unpublished tier has delivered before (learned_sizes)


class EditCaps(NamedTuple):
    supported: bool
    model: str | None
    max_images: int | None
    max_image_bytes: int | None
    formats: tuple[str, ...]
    mask: bool
    inputs: tuple[str, ...]
    provenance: Provenance | None


IDENTITIES = ("official", "relay", "substitute")


class Identity(NamedTuple):
    """What the offer really runs: OpenAI's model (`official`: OpenAI, or a host OpenAI or the
    host marks as the official model), a `relay` that forwards to OpenAI, or a `substitute`
    (another model, or a reverse-engineered channel, sold under the name)."""

    kind: str
    source: str | None
    note: str = ""
    declared: bool = True  # False: a user's offer that gave none (counted as a relay)


class Offer(NamedTuple):
    provider: str
    model: str
    provenance: Provenance
    qualities: tuple[str, ...]
    quality_selectable: bool
    images_per_request: int
    prompt_max_chars: int
    output_formats: tuple[str, ...]
    sizes: SizeCaps
    edit: EditCaps
    price: Price
    notes: tuple[str, ...]
    origin: str  # the file that defined or last changed this offer
    identity: Identity  # is it OpenAI's model, a relay of it, or something sold under its name
    unsourced: dict[str, str]  # field -> why: values no source states (shown as assumed, never as fact)
    quality_stated: bool = True  # False: the provider never says which tier it delivers (Kie)
    quality_note: str = ""  # why, when the tier is assumed
    backgrounds: tuple[str, ...] = ("auto",)
    moderations: tuple[str, ...] = ("auto",)
    window_s: float | None = None  # results come within this long, not at once (OpenAI Batch: 24h)
    typical_s: float | None = None  # how long a job usually takes there: the first polls' prior
    history: Any = None  # history.OfferStats: what it has done for this user (attached at load)
    unset: str = ""  # what this user has not set up for it yet (Azure: its endpoint), attached at load

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def price_assumed(self) -> str:
        """Why its price is assumed, where no source states its rates ("": sourced; one rate of several
        assumed, as PiAPI's text output, is said in its notes, not here)."""
        return next(
            (why for field, why in self.unsourced.items() if field.startswith("usd_per") and "." not in field), ""
        )


class PricingTable(NamedTuple):
    providers: dict[str, ProviderInfo]
    offers: tuple[Offer, ...]
    files: tuple[str, ...]
    balances: dict[str, Any]  # provider -> credits.Balance: prepaid credits (attached at load)

    @property
    def relays(self) -> tuple[ProviderSpec, ...]:
        return tuple(info.relay for info in self.providers.values() if info.relay is not None)

    @property
    def registry(self) -> Registry:
        """The providers this table can route to: the built-in ones and the relays it declares."""
        return Registry(self.relays)

    def offer(self, provider: str, model: str) -> Offer | None:
        """The offer a journaled attempt was made at: by its model, or by its edit model."""
        matches = [o for o in self.offers if o.provider == provider and model in (o.model, o.edit.model)]
        return next((o for o in matches if o.model == model), matches[0] if matches else None)

    def plan(self, provider: str, name: str | None) -> Plan:
        info = self.providers[provider]
        if name is None:
            return info.default_plan
        return info.plans[name]
