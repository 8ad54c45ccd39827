"""One entry per price model: the fields it reads from pricing.yaml, how it estimates a job (with
the arithmetic in words), how it prices what was delivered, and how it is summarised.

A new way of charging is one class here and one row in PRICE_MODELS; nothing else branches on the
model's name. Money is Decimal throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, NamedTuple, cast

from imgroute.money import MILLION, ceil_to, fmt_rate, fmt_usd
from imgroute.pricing import tokens

if TYPE_CHECKING:
    from imgroute.models import Request
    from imgroute.pricing.fields import Field
    from imgroute.pricing.sizing import Delivery
    from imgroute.pricing.table import Offer, Plan, Price

TOKEN_KINDS = ("text_input", "cached_text_input", "image_input", "cached_image_input", "image_output", "text_output")


class Line:
    """One step of the arithmetic, in words: given as text, or as a function that writes it when it
    is first read (a batch or a month of advice prices thousands of jobs and shows few breakdowns)."""

    __slots__ = ("_text", "_write")
    _text: str | None
    _write: Callable[[], str] | None

    def __init__(self, text: str | Callable[[], str]):
        self._text, self._write = (None, text) if callable(text) else (text, None)

    @property
    def text(self) -> str:
        if self._text is None:
            write = cast("Callable[[], str]", self._write)  # no text yet: the function that writes it
            self._text, self._write = write(), None
        return self._text

    def __eq__(self, other) -> bool:
        return isinstance(other, Line) and other.text == self.text

    # (no __hash__: defining __eq__ leaves a class unhashable, as a Line should be)

    def __repr__(self) -> str:
        return f"Line({self.text!r})"


def _output_line(per_request, out_tokens, delivery, quality, rate, cost) -> str:
    return (
        f"output: {_images(per_request)} x {out_tokens:,} tokens ({delivery.width}x{delivery.height} "
        f"{quality}) x {fmt_rate(rate)}/1M = {fmt_usd(cost, 6)}"
    )


def _prompt_line(in_tokens, rate, cost) -> str:
    return (
        f"prompt: ~{in_tokens} tokens (a token per {tokens.CHARS_PER_TOKEN} characters, "
        f"+ {tokens.PROMPT_OVERHEAD_TOKENS}) x {fmt_rate(rate)}/1M = {fmt_usd(cost, 6)}"
    )


def _total_line(total) -> str:
    return f"total = {fmt_usd(total, 6)}"


class Estimate(NamedTuple):
    cost: Decimal | None
    lines: tuple[Line, ...]
    reason: str | None = None  # why it cannot be priced (then cost is None)


class Delivered(NamedTuple):
    """What one request really produced, for pricing it after the fact."""

    images: int
    width: int
    height: int
    usage: object | None  # providers.base.Usage, read by field name


class Job(NamedTuple):
    """What a price depends on: the request, the offer and plan, and what the offer would deliver."""

    request: Request
    offer: Offer
    plan: Plan
    delivery: Delivery
    quality: str
    requests: tuple[int, ...]  # images in each request

    @property
    def n(self) -> int:
        return sum(self.requests)


class PriceModel:
    name = ""
    uses_credits = False
    reads_prompt = False  # whether the price depends on the prompt (its tokens), beyond its length limit
    fields: frozenset[str] = frozenset()  # what its `price:` mapping may hold, beside source/observed/notes

    def parse(self, node: Field, fields: dict[str, Field], qualities: tuple[str, ...]) -> dict:
        """The Price fields this model sets, read from its `price:` mapping."""
        raise NotImplementedError

    def estimate(self, job: Job) -> Estimate:
        raise NotImplementedError

    def actual(self, offer: Offer, plan: Plan, quality: str, tier: str | None, request: Request, delivered) -> tuple:
        """(USD, where the figure comes from) for what was delivered."""
        raise NotImplementedError

    def summary(self, price: Price) -> str:
        raise NotImplementedError

    def published_disagreement(self, offer: Offer, delivery: Delivery, quality: str) -> list[str]:
        """Notes where the provider's own per-image table disagrees with this model's figure."""
        return []

    def validate(self, node: Field, offer: Offer) -> None:
        """Checks that need the whole offer (its sizes), after it is read."""


class Tokens(PriceModel):
    """Token-metered (OpenAI, fal, PiAPI gpt-image-2): output tokens from the size and quality,
    prompt and input-image tokens, times the rates; fal rounds each request up to the cent."""

    name = "tokens"
    reads_prompt = True
    fields = frozenset({"usd_per_million_tokens", "round_up_per_request_usd"})

    def parse(self, node, fields, qualities) -> dict:
        rates_node = node.get("usd_per_million_tokens")
        rates = {kind: rate.money() for kind, rate in rates_node.mapping(set(TOKEN_KINDS)).items()}
        for required in ("text_input", "image_output"):
            if required not in rates:
                raise rates_node.fail(f"missing field '{required}'")
        round_up = None
        if "round_up_per_request_usd" in fields:
            round_up = fields["round_up_per_request_usd"].money()
            if round_up == 0:
                raise fields["round_up_per_request_usd"].fail("the rounding step must be above zero")
        return {"usd_per_million": rates, "round_up_per_request": round_up}

    def estimate(self, job: Job) -> Estimate:
        request, delivery, quality = job.request, job.delivery, job.quality
        rates = job.offer.price.usd_per_million
        out_tokens = tokens.output_tokens(delivery.width, delivery.height, quality)
        in_tokens = tokens.prompt_tokens(request.prompt)
        out_rate, in_rate = rates["image_output"], rates["text_input"]
        image_rate = rates.get("image_input", Decimal(0))
        image_tokens = [tokens.input_image_tokens(i.width, i.height) for i in request.images]
        lines = []
        total = Decimal(0)
        for count, per_request in _grouped(job.requests):
            output_cost = out_tokens * per_request * out_rate / MILLION
            prompt_cost = in_tokens * in_rate / MILLION
            inputs_cost = sum(image_tokens) * image_rate / MILLION
            request_cost = output_cost + prompt_cost + inputs_cost
            lines.append(Line(partial(_output_line, per_request, out_tokens, delivery, quality, out_rate, output_cost)))
            lines.append(Line(partial(_prompt_line, in_tokens, in_rate, prompt_cost)))
            if image_tokens:
                unknown = sum(1 for i in request.images if not i.width)
                assumed = f"; {unknown} URL input(s) assumed 1024x1024" if unknown else ""
                lines.append(
                    Line(
                        f"input images: {len(image_tokens)} x ~{round(sum(image_tokens) / len(image_tokens)):,} "
                        f"tokens x {fmt_rate(image_rate)}/1M = {fmt_usd(inputs_cost, 6)} (assumed: "
                        f"{tokens.PATCH_PX} px patches, at most {tokens.PATCH_BUDGET:,} per image, undocumented "
                        f"by OpenAI{assumed})"
                    )
                )
            step = job.offer.price.round_up_per_request
            if step is not None:
                rounded = ceil_to(request_cost, step)
                lines.append(
                    Line(f"request {fmt_usd(request_cost, 6)} rounded up to {fmt_rate(step)} = {fmt_usd(rounded, 6)}")
                )
                request_cost = rounded
            if count > 1:
                lines.append(Line(f"{count} requests x {fmt_usd(request_cost, 6)}"))
            total += request_cost * count
        lines.append(Line(partial(_total_line, total)))
        return Estimate(total, tuple(lines))

    def actual(self, offer, plan, quality, tier, request, delivered) -> tuple[Decimal, str]:
        price = offer.price
        rates = price.usd_per_million
        from_usage = all(d.usage is not None and getattr(d.usage, "image_output", 0) for d in delivered)
        total = Decimal(0)
        for d in delivered:
            if from_usage:
                u = d.usage
                cost = (
                    u.text_input * rates["text_input"]
                    + u.image_input * rates.get("image_input", Decimal(0))
                    + u.image_output * rates["image_output"]
                    + u.text_output * rates.get("text_output", rates["image_output"])
                ) / MILLION
            else:  # the token model at the delivered size, reference images included (as estimated)
                inputs = sum(tokens.input_image_tokens(i.width, i.height) for i in request.images)
                cost = (
                    tokens.output_tokens(d.width, d.height, quality) * d.images * rates["image_output"]
                    + tokens.prompt_tokens(request.prompt) * rates["text_input"]
                    + inputs * rates.get("image_input", Decimal(0))
                ) / MILLION
            if price.round_up_per_request is not None:
                cost = ceil_to(cost, price.round_up_per_request)
            total += cost
        return total, "usage tokens" if from_usage else "token model at the delivered size"

    def summary(self, price: Price) -> str:
        rates = price.usd_per_million
        text = (
            f"tokens: text in {fmt_rate(rates['text_input'])}, image in "
            f"{fmt_rate(rates.get('image_input', Decimal(0)))}, image out {fmt_rate(rates['image_output'])} per 1M"
        )
        if price.round_up_per_request:
            text += f"; each request rounded up to {fmt_rate(price.round_up_per_request)}"
        return text

    def published_disagreement(self, offer: Offer, delivery: Delivery, quality: str) -> list[str]:
        """A provider's own per-image figure, when the token model used here disagrees with it."""
        published = offer.price.published.get(f"{delivery.width}x{delivery.height}", {}).get(quality)
        if published is None:
            return []
        model_cost = (
            tokens.output_tokens(delivery.width, delivery.height, quality)
            * offer.price.usd_per_million["image_output"]
            / MILLION
        )
        if offer.price.round_up_per_request is not None:
            model_cost = ceil_to(model_cost, offer.price.round_up_per_request)
        places = -cast(int, published.as_tuple().exponent)  # a price is finite: its exponent is a number
        if model_cost.quantize(Decimal(1).scaleb(-places)) == published:
            return []
        return [
            f"{offer.provider}'s own table says {fmt_rate(published)}/image at {delivery.width}x{delivery.height} "
            f"{quality}; the token model used here gives {fmt_usd(model_cost, 4)} for the image output alone "
            "(usage decides the real charge)"
        ]


class Credits(PriceModel):
    """Credits per image by quality tier (Apiframe) or by resolution tier (Kie), times the plan's
    price of a credit."""

    uses_credits = True
    fields = frozenset({"credits_per_image"})

    def __init__(self, by: str):
        self.by = by  # "quality" or "resolution"
        self.name = f"credits_per_{by}"

    def parse(self, node, fields, qualities) -> dict:
        from imgroute.vocab import QUALITIES, RESOLUTIONS

        table = node.get("credits_per_image")
        allowed = QUALITIES if self.by == "quality" else RESOLUTIONS
        credits = {key: count.integer(minimum=0) for key, count in table.mapping(set(allowed)).items()}
        if self.by == "quality":
            for q in qualities:
                if q not in credits:
                    raise table.fail(f"no credit price for quality '{q}', which the offer lists")
        return {"credits_per_image": credits}

    def validate(self, node, offer) -> None:
        if self.by != "resolution":
            return
        from imgroute.vocab import RESOLUTIONS

        sizes = offer.sizes
        tiers = set(RESOLUTIONS)
        if sizes.mode == "presets":
            tiers = {tier for preset in sizes.presets.values() for tier in preset.tiers}
        missing = sorted(tiers - set(offer.price.credits_per_image))
        if missing:
            raise node.get("credits_per_image").fail(f"no credit price for resolution {', '.join(missing)}")

    def key(self, quality: str, tier: str | None) -> str | None:
        return quality if self.by == "quality" else tier

    def estimate(self, job: Job) -> Estimate:
        label = self.key(job.quality, job.delivery.resolution)
        per_image = job.offer.price.credits_per_image.get(label) if label is not None else None
        plan = job.plan
        if per_image is None:
            return Estimate(None, (), f"no credit price for {label}")
        if plan.usd_per_credit is None:
            return Estimate(None, (), f"plan '{plan.name}' has no credit price")
        n = job.n
        credits = per_image * n
        cost = credits * plan.usd_per_credit
        lines = [
            Line(f"{per_image} credits/image ({label}) x {_images(n)} = {credits} credits"),
            Line(
                f"{credits} credits x {fmt_rate(_rate_digits(plan.usd_per_credit))}/credit "
                f"({plan.provider} {plan.name}) = {fmt_usd(cost, 6)}"
            ),
        ]
        if len(job.requests) > 1:
            lines.insert(0, Line(f"one image per task: {len(job.requests)} tasks"))
        if job.request.images:
            lines.append(Line(f"reference images: no extra credits documented by {job.offer.provider}"))
        return Estimate(cost, tuple(lines))

    def actual(self, offer, plan, quality, tier, request, delivered) -> tuple[Decimal, str]:
        charged = [getattr(d.usage, "credits", None) for d in delivered]
        if plan.usd_per_credit is not None and charged and all(c is not None for c in charged):
            return sum(cast(list[int], charged)) * plan.usd_per_credit, "credits charged"  # (all given)
        per_image = offer.price.credits_per_image[self.key(quality, tier)]
        return per_image * sum(d.images for d in delivered) * plan.usd_per_credit, "list price"

    def summary(self, price: Price) -> str:
        cells = ", ".join(f"{k} {v}" for k, v in price.credits_per_image.items())
        return f"credits per image by {self.by}: {cells}"


class Flat(PriceModel):
    """One price per image, whatever the size or quality (PiAPI gpt-image-2-preview)."""

    name = "flat_per_image"
    fields = frozenset({"usd_per_image"})

    def parse(self, node, fields, qualities) -> dict:
        return {"usd_per_image": node.get("usd_per_image").money()}

    def estimate(self, job: Job) -> Estimate:
        each = cast(Decimal, job.offer.price.usd_per_image)  # a flat price always has it (parse reads it)
        cost = each * job.n
        return Estimate(cost, (Line(f"{fmt_usd(each, 6)}/image flat x {_images(job.n)} = {fmt_usd(cost, 6)}"),))

    def actual(self, offer, plan, quality, tier, request, delivered) -> tuple[Decimal, str]:
        return offer.price.usd_per_image * sum(d.images for d in delivered), "list price"

    def summary(self, price: Price) -> str:
        return f"{fmt_rate(price.usd_per_image)} per image, flat"


class FlatByQuality(PriceModel):
    """One price per image for each quality tier, whatever the size (Replicate's official model)."""

    name = "usd_per_quality"
    fields = frozenset({"usd_per_image"})

    def parse(self, node, fields, qualities) -> dict:
        from imgroute.vocab import QUALITIES

        table = node.get("usd_per_image")
        prices = {q: cell.money() for q, cell in table.mapping(set(QUALITIES)).items()}
        for q in qualities:
            if q not in prices:
                raise table.fail(f"no price for quality '{q}', which the offer lists")
        return {"usd_per_quality": prices}

    def estimate(self, job: Job) -> Estimate:
        each = job.offer.price.usd_per_quality[job.quality]
        cost = each * job.n
        line = Line(f"{fmt_usd(each, 6)}/image at {job.quality}, any size x {_images(job.n)} = {fmt_usd(cost, 6)}")
        return Estimate(cost, (line,))

    def actual(self, offer, plan, quality, tier, request, delivered) -> tuple[Decimal, str]:
        return offer.price.usd_per_quality[quality] * sum(d.images for d in delivered), "list price"

    def summary(self, price: Price) -> str:
        cells = ", ".join(f"{q} {fmt_rate(v)}" for q, v in price.usd_per_quality.items())
        return f"per image by quality, any size: {cells}"


PRICE_MODELS: dict[str, PriceModel] = {
    model.name: model for model in (Tokens(), Credits("quality"), Credits("resolution"), Flat(), FlatByQuality())
}


def of(offer: Offer) -> PriceModel:
    return PRICE_MODELS[offer.price.model]


# -- helpers ------------------------------------------------------------------------------------


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
