"""A month of work priced every way: with imgroute's routing, at each single offer and plan, the
per-job minimum, and where each monthly plan breaks even. Pure arithmetic over the pricing table;
the month comes from a mix file or the ledger's history (`imgroute advise`, `spend --savings`).

A monthly plan (a fee for a number of credits) is priced as what the month really costs on it:
the fee, times as many months of credits as the work needs. Its break-even is the volume of this
mix (the rows its offer can serve) from which that fee beats what those images cost by the best
other route; past its credits it never does, and what it leaves unused is said.
"""

from __future__ import annotations

import csv
import io
import math
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple, cast

from imgroute.errors import UsageError, quoted
from imgroute.models import InputImage, Request
from imgroute.pricing.costs import assess
from imgroute.request import build_request

ADVICE_CACHE = 16384  # distinct job shapes kept while pricing a month (~10 KB each, freed after)
DEFAULT_PROMPT_CHARS = 200  # a typical prompt: token-priced offers charge for its text
MIX_FIELDS = ("quality", "size", "aspect", "resolution", "n", "count", "images", "mask", "prompt_chars")


class MixRow(NamedTuple):
    line: int | str  # its row in the mix file, or (history) the job id it stands for
    request: Request
    # jobs a month (history scaled to a month may be fractional); the field is meant to shadow tuple.count
    count: Decimal  # type: ignore[assignment]

    @property
    def images(self) -> Decimal:
        return self.count * self.request.n


class OfferMonth(NamedTuple):
    offer: str
    plan: str
    usd: Decimal | None  # None: it cannot serve every row
    unservable_rows: tuple[int | str, ...]
    credits: Decimal | None = None  # credits the month uses (credit-priced plans)
    unused_credits: Decimal | None = None  # monthly plans: what the month leaves unused
    excluded: str = ""  # why the constraints rule it out (a batch offer without --deadline), if they do


class BreakEven(NamedTuple):
    offer: str
    plan: str
    monthly_usd: Decimal
    images_per_month: int | None  # None: its credits run out before it pays off
    this_month_images: Decimal  # images of the mix its offer can serve
    past: bool
    unused_credits: Decimal
    why: str


class Advice(NamedTuple):
    rows: tuple[MixRow, ...]
    routed_usd: Decimal
    floor_usd: Decimal
    unservable_rows: tuple[int | str, ...]  # rows (or jobs) no offer can serve (left out of every figure)
    by_offer: tuple[OfferMonth, ...]
    break_even: tuple[BreakEven, ...]

    @property
    def images(self) -> Decimal:
        return sum((r.images for r in self.rows), Decimal(0))


# -- the month ---------------------------------------------------------------------------------


def read_mix(path: Path) -> list[MixRow]:
    """A YAML list or a CSV (with a header) of rows; each a job shape and its count a month."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"the mix file {path} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
        raise UsageError(f"cannot read the mix file {path}: {reason}", "give a YAML or CSV file") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        items = [
            (i + 2, {k.strip(): v.strip() for k, v in row.items() if k and v and v.strip()})
            for i, row in enumerate(rows)
        ]
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UsageError(
                f"{path}: not valid YAML", "write a list of rows, like - {quality: high, count: 100}"
            ) from None
        if not isinstance(data, list):
            raise UsageError(f"{path}: the mix must be a list of rows", "like - {quality: high, count: 100}")
        items = list(enumerate(data, start=1))
    if not items:
        raise UsageError(f"{path}: the mix has no rows", "add at least one row with a count")
    return [_mix_row(path, line, fields) for line, fields in items]


def _mix_row(path: Path, line: int, fields) -> MixRow:
    where = f"{path}: row {line}"
    if not isinstance(fields, dict):
        raise UsageError(f"{where} is not a mapping", "write each row like {quality: high, count: 100}")
    unknown = sorted(set(map(str, fields)) - set(MIX_FIELDS))
    if unknown:
        raise UsageError(f"{where}: unknown field {quoted(unknown[0])}", f"fields: {', '.join(MIX_FIELDS)}")
    count = _number(fields.get("count"), f"{where}: count", whole=False)
    images = int(_number(fields.get("images", 0), f"{where}: images"))
    mask = int(_number(fields.get("mask", 0), f"{where}: mask"))
    chars = int(_number(fields.get("prompt_chars", DEFAULT_PROMPT_CHARS), f"{where}: prompt_chars"))
    try:
        request = build_request(
            "x" * max(1, chars),
            quality=str(fields.get("quality", "medium")),
            size=_text(fields.get("size")),
            aspect=_text(fields.get("aspect")),
            resolution=_text(fields.get("resolution")),
            n=int(_number(fields.get("n", 1), f"{where}: n")),
        )
    except UsageError as exc:
        raise exc.about(where) from None
    return MixRow(line, with_inputs(request, images, bool(mask)), count)


def with_inputs(request: Request, images: int, mask: bool) -> Request:
    """An edit of `images` typical reference images (1024x1024 PNG, 1.5 MB), with a mask or not."""
    if not images:
        return request
    inputs = tuple(
        InputImage(
            source=f"mix-image-{i}.png",
            is_url=False,
            format="png",
            width=1024,
            height=1024,
            bytes=1_500_000,
            has_alpha=False,
        )
        for i in range(images)
    )
    checked = (
        InputImage(
            source="mix-mask.png", is_url=False, format="png", width=1024, height=1024, bytes=300_000, has_alpha=True
        )
        if mask
        else None
    )
    return request._replace(images=inputs, mask=checked)


def _number(value, what: str, whole: bool = True) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except Exception:
        number = None
    if number is None or not number.is_finite() or number < 0 or (whole and number != number.to_integral()):
        kind = "a whole number" if whole else "a number"
        raise UsageError(f"{what} {quoted(value)} is not {kind} of zero or more", "for example 100")
    return number


def _text(value) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value)


def history_rows(records, days: float) -> list[MixRow]:
    """The ledger's succeeded jobs over `days`, scaled to a 30-day month, one row per job (named
    by its job id, which `imgroute jobs show` takes)."""
    scale = Decimal(30) / Decimal(str(max(days, 1.0)))
    return [MixRow(record.id, Request.from_json(record.request), scale) for record in records]


# -- pricing it --------------------------------------------------------------------------------


def advise(rows: list[MixRow], table, constraints, routes=None) -> Advice:
    from imgroute.pricing.router import RouteCache

    routes = routes or RouteCache(table, size=ADVICE_CACHE)
    chosen = {provider: table.plan(provider, constraints.plans.get(provider)) for provider in table.providers}
    routed = floor = Decimal(0)
    servable, unservable = [], []
    best: dict[int | str, Decimal] = {}  # row line (or job id) -> its cost by the route imgroute picks
    for row in rows:
        route = routes.rank(row.request, constraints)
        if route.choice is None:
            unservable.append(row.line)
            continue
        servable.append(row)
        best[row.line] = route.choice.cost
        routed += route.choice.cost * row.count
        floor += cheapest(row.request, table, chosen, constraints) * row.count
    by_offer = tuple(sorted(_by_offer(servable, table, constraints), key=_by_cost))
    plans = tuple(_break_even(servable, table, best, month) for month in by_offer if _monthly(table, month))
    return Advice(
        rows=tuple(rows),
        routed_usd=routed,
        floor_usd=floor,
        unservable_rows=tuple(unservable),
        by_offer=by_offer,
        break_even=plans,
    )


def cheapest(request: Request, table, plans: dict, constraints=None) -> Decimal:
    """The per-job minimum by brute force over every offer at the plan in use: the router's floor."""
    from imgroute.pricing.router import _constraint_reasons

    costs = []
    for offer in table.offers:
        a = assess(request, offer, plans[offer.provider])
        if a.capable and a.cost is not None and not (constraints and _constraint_reasons(offer, constraints)):
            costs.append(a.cost)
    return min(costs)


def _by_offer(rows: list[MixRow], table, constraints) -> list[OfferMonth]:
    from imgroute.pricing.router import _constraint_reasons

    out = []
    for offer in table.offers:
        excluded = "; ".join(_constraint_reasons(offer, constraints))
        for plan in table.providers[offer.provider].plans.values():
            total, credits, missing = Decimal(0), Decimal(0), []
            for row in rows:
                a = assess(row.request, offer, plan)
                if not a.capable or a.cost is None:
                    missing.append(row.line)
                    continue
                total += a.cost * row.count
                if plan.usd_per_credit:
                    credits += a.cost / plan.usd_per_credit * row.count
            credits_used = credits if offer.price.uses_credits else None
            usd, unused = (None if missing else total), None
            if plan.monthly_usd is not None and plan.credits_per_month:
                months = max(1, math.ceil(credits / plan.credits_per_month))
                usd = None if missing else plan.monthly_usd * months
                unused = plan.credits_per_month * months - credits
            if excluded:
                usd = None
            out.append(
                OfferMonth(
                    offer=offer.id,
                    plan=plan.name,
                    usd=usd,
                    unservable_rows=tuple(missing),
                    credits=credits_used,
                    unused_credits=unused,
                    excluded=excluded,
                )
            )
    return out


def _by_cost(month: OfferMonth) -> tuple:
    return (month.usd is None, month.usd or 0, month.offer, month.plan)


def _monthly(table, month: OfferMonth) -> bool:
    provider = month.offer.split("/", 1)[0]
    plan = table.providers[provider].plans[month.plan]
    return plan.monthly_usd is not None and bool(plan.credits_per_month)


def _break_even(rows: list[MixRow], table, best: dict, month: OfferMonth) -> BreakEven:
    offer = next(o for o in table.offers if o.id == month.offer)
    plan = table.providers[offer.provider].plans[month.plan]
    images = other_usd = credits = Decimal(0)
    for row in rows:
        a = assess(row.request, offer, plan)
        if not a.capable or a.cost is None:
            continue
        images += row.images
        other_usd += best[row.line] * row.count
        credits += a.cost / plan.usd_per_credit * row.count
    unused = max(Decimal(0), plan.credits_per_month - credits)
    if not images or not other_usd:
        return BreakEven(
            offer=offer.id,
            plan=plan.name,
            monthly_usd=plan.monthly_usd,
            images_per_month=None,
            this_month_images=images,
            past=False,
            unused_credits=unused,
            why="serves no row of the mix",
        )
    per_image, credits_per_image = other_usd / images, credits / images
    needed = math.ceil(plan.monthly_usd / per_image)
    breaks_even: int | None = needed
    why = f"beats the best other route (${per_image:.4f}/image) from {needed:,} images a month"
    if needed * credits_per_image > plan.credits_per_month:
        covered = int(plan.credits_per_month / credits_per_image)
        why = f"its {plan.credits_per_month:,} credits cover {covered:,} images, fewer than the {needed:,} it needs"
        breaks_even = None
    return BreakEven(
        offer=offer.id,
        plan=plan.name,
        monthly_usd=plan.monthly_usd,
        images_per_month=breaks_even,
        this_month_images=images,
        past=breaks_even is not None and images >= breaks_even,
        unused_credits=unused,
        why=why,
    )


# -- what routing saved ------------------------------------------------------------------------

DEFAULT_OFFER = "openai/gpt-image-2"  # what a user picks without a router (config: default_offer)


class Saving(NamedTuple):
    period: str  # YYYY-MM, or "total"
    jobs: int
    spent: Decimal  # what the jobs cost (actual where known, else the estimate)
    default_offer: str
    at_default: Decimal | None  # None: the default offer could not have served every job
    cheapest_offer: str | None
    at_cheapest: Decimal | None


def savings(records, table, constraints, default_offer: str = DEFAULT_OFFER) -> list[Saving]:
    """Per month of succeeded jobs, and in total: what they cost, and what the same jobs would have
    cost at the default offer and at the cheapest single offer (each at the plan in use)."""
    import datetime as dt

    months: dict[str, list] = {}
    for record in records:
        months.setdefault(dt.date.fromtimestamp(record.created).strftime("%Y-%m"), []).append(record)
    periods = sorted(months.items())
    if len(periods) > 1:
        periods.append(("total", list(records)))
    chosen = {p: table.plan(p, constraints.plans.get(p)).name for p in table.providers}
    out = []
    for period, group in periods:
        rows = [MixRow(i, Request.from_json(r.request), Decimal(1)) for i, r in enumerate(group, start=1)]
        spent = sum(((r.actual if r.actual is not None else r.estimate) or Decimal(0) for r in group), Decimal(0))
        singles = [
            m
            for m in _by_offer(rows, table, constraints._replace(deadline_s=None, providers=frozenset()))
            if m.plan == chosen[m.offer.split("/", 1)[0]]
        ]
        default = next((m for m in singles if m.offer == default_offer), None)
        served = [m for m in singles if m.usd is not None and not m.excluded]
        best = min(served, key=lambda m: cast(Decimal, m.usd)) if served else None  # (served: priced ones only)
        out.append(
            Saving(
                period=period,
                jobs=len(group),
                spent=spent,
                default_offer=default_offer,
                at_default=default.usd if default is not None else None,
                cheapest_offer=best.offer if best else None,
                at_cheapest=best.usd if best else None,
            )
        )
    return out
