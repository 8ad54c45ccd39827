"""Parsing what the user asked for into the values of models.py.

Size semantics (also in the README):
- `--size WxH` asks for exactly those pixels.
- `--aspect W:H` with `--resolution 1K|2K|4K` asks for exactly that aspect ratio at a pixel
  budget: 1K = 1024x1024 px, 2K = 2048x2048 px, 4K = 3840x2160 px (see RESOLUTION_PIXELS).
- Neither means `--aspect 1:1 --resolution 1K`, which is 1024x1024 where pixels can be chosen.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from imgroute.errors import ConfigError, NotAnImage, UsageError, named, quoted
from imgroute.models import FROM_URL, Constraints, InputImage, Ratio, Request, Target, aspect_text
from imgroute.vocab import BACKGROUNDS, IMAGE_FORMATS, MODERATIONS, QUALITY_RANK, RANKS, RESOLUTION_PIXELS, RESOLUTIONS

MAX_N = 100
MAX_EDGE_ACCEPTED = 100_000  # beyond any provider; only guards against absurd input


_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_RATIO_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


# Each check below names what it checks with a label: an option named with errors.named (each
# door spells it: --size, size=, size), or plain words for what is not an option.


def parse_size(text: str, label: str = named("size")) -> tuple[int, int]:
    m = _SIZE_RE.match(text)
    if not m:
        raise UsageError(f"{label} {quoted(text)} is not WIDTHxHEIGHT", f"write it like {label} 1536x1024")
    w, h = int(m.group(1)), int(m.group(2))
    if w == 0 or h == 0:
        raise UsageError(f"{label} {quoted(text)} has a zero edge", "both edges must be at least 1 px")
    if max(w, h) > MAX_EDGE_ACCEPTED:
        raise UsageError(f"{label} {quoted(text)} is absurdly large", "no provider goes past 3840 px")
    return w, h


def parse_ratio(text: str, label: str = named("aspect")) -> Ratio:
    m = _RATIO_RE.match(text)
    if not m:
        raise UsageError(f"{label} {quoted(text)} is not W:H", f"write it like {label} 16:9")
    w, h = int(m.group(1)), int(m.group(2))
    if w == 0 or h == 0:
        raise UsageError(f"{label} {quoted(text)} has a zero side", "both sides must be at least 1")
    return Ratio.of(w, h)


def parse_resolution(text: str, label: str = named("resolution")) -> str:
    tier = text.strip().upper()
    if tier not in RESOLUTION_PIXELS:
        raise UsageError(f"{label} {quoted(text)} is not a tier", f"use one of {', '.join(RESOLUTIONS)}")
    return tier


def parse_quality(text: str, label: str = named("quality")) -> str:
    q = text.strip().lower()
    if q not in QUALITY_RANK:
        raise UsageError(f"{label} {quoted(text)} is not a tier", "use low, medium or high")
    return q


def build_target(
    size: str | None, aspect: str | None, resolution: str | None, first_image: InputImage | None = None
) -> Target:
    """What the output should look like. Given no size and no aspect, an edit keeps the shape of
    its first image (at 1K unless --resolution says otherwise: a 12 MP photo must not move to 4K
    prices unasked); a generation is 1:1."""
    if size and (aspect or resolution):
        size_, aspect_, tier_ = named("size"), named("aspect"), named("resolution")
        raise UsageError(
            f"{size_} cannot be combined with {aspect_} or {tier_}",
            f"ask for exact pixels with {size_}, or for a shape with {aspect_} and {tier_}",
        )
    if size:
        w, h = parse_size(size)
        return Target(aspect=Ratio.of(w, h), width=w, height=h)
    tier = parse_resolution(resolution) if resolution else "1K"
    if aspect:
        ratio = parse_ratio(aspect)
        return Target(aspect=ratio, resolution=tier, aspect_text=aspect_text(aspect.replace(" ", ""), ratio))
    if first_image is not None and first_image.is_url:
        return Target(aspect=Ratio(1, 1), resolution=tier, from_image=FROM_URL)
    if first_image is not None and first_image.width and first_image.height:
        ratio = photo_ratio(first_image.width, first_image.height)
        return Target(aspect=ratio, resolution=tier, from_image=f"{first_image.width}x{first_image.height}")
    return Target(aspect=Ratio(1, 1), resolution=tier)


PHOTO_RATIO_TOLERANCE = Fraction(1, 100)  # a photo's shape within 1%: 3000x2001 is 3:2


def photo_ratio(width: int, height: int) -> Ratio:
    """The simplest aspect ratio within 1% of a photo's: its exact ratio is often not on any
    provider's grid (3000x2001 is 1000:667), and 1% is a distortion no eye sees. The candidates
    are the continued-fraction convergents of width/height, simplest first."""
    exact = Fraction(width, height)
    for convergent in _convergents(exact):
        if abs(convergent - exact) <= exact * PHOTO_RATIO_TOLERANCE:
            return Ratio(convergent.numerator, convergent.denominator)
    return Ratio.of(width, height)


def _convergents(value: Fraction):
    """p/q for each prefix of the continued fraction of `value` (all of them: it is rational)."""
    p0, q0, p1, q1 = 0, 1, 1, 0
    while True:
        whole = value.numerator // value.denominator
        p0, q0, p1, q1 = p1, q1, whole * p1 + p0, whole * q1 + q0
        if q1:
            yield Fraction(p1, q1)
        rest = value - whole
        if rest == 0:
            return
        value = 1 / rest


def parse_format(text: str, label: str = named("output_format")) -> str:
    fmt = text.strip().lower()
    fmt = "jpeg" if fmt == "jpg" else fmt
    if fmt not in IMAGE_FORMATS:
        raise UsageError(f"{label} {quoted(text)} is not an image format", "use png, jpeg or webp")
    return fmt


def parse_choice(text: str, label: str, allowed: tuple[str, ...]) -> str:
    value = str(text).strip().lower()
    if value not in allowed:
        raise UsageError(
            f"{label} {quoted(text)} is not one of {', '.join(allowed)}", f"for example {label} {allowed[0]}"
        )
    return value


def check_n(n: int, label: str = named("n")) -> int:
    if n < 1 or n > MAX_N:
        raise UsageError(f"{label} {n} is out of range", f"ask for 1 to {MAX_N} images per job")
    return n


def check_prompt(prompt: str | None, where: str = "") -> str:
    """The prompt, trimmed: text, not empty, with no NUL byte (which some providers cut the prompt at)."""
    if prompt is not None and not isinstance(prompt, str):
        hint = 'give it as a string: "prompt": "a lighthouse"'
        raise UsageError(f"the prompt{where} is {kind_of(prompt)}, not text", hint)
    if prompt is None or not prompt.strip():
        raise UsageError("the prompt is empty", 'give it as the first argument ("a lighthouse at dusk") or on stdin')
    check_text(prompt, f"the prompt{where}")
    if "\x00" in prompt:
        raise UsageError("the prompt contains a NUL byte", "remove the control characters from it")
    return prompt.strip()


def check_text(text: str, what: str) -> str:
    """Text that can be journaled and sent: UTF-8. Under a C or POSIX locale Python reads argv and
    stdin with `surrogateescape`, so a Latin-1 byte arrives as a lone surrogate and fails only
    later, when the text is written; here it is refused naming where it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = ord(text[exc.start])
        byte = f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"character U+{char:04X}"
        before = text[max(0, exc.start - 20) : exc.start].encode("utf-8", "replace").decode()
        raise UsageError(
            f"{what} has a {byte} that is not UTF-8, at character {exc.start + 1} (after {before!r})",
            "save or send it as UTF-8 (for Latin-1 text: iconv -f latin1 -t utf-8)",
        ) from None
    return text


def read_stdin(what: str) -> str:
    """All of stdin as text, whatever the locale: a byte that is not UTF-8 is kept as Python's C
    locale keeps it (surrogateescape), for `check_text` to refuse naming where it is."""
    import sys

    raw = getattr(sys.stdin, "buffer", None)
    if raw is not None:
        return raw.read().decode("utf-8", "surrogateescape")
    try:
        return sys.stdin.read()
    except UnicodeDecodeError:
        raise UsageError(f"{what} on stdin is not UTF-8 text", "send UTF-8") from None


def check_timeout(seconds: float, label: str = named("timeout")) -> float:
    if not math.isfinite(seconds):
        raise UsageError(f"{label} {seconds:g} is not a number of seconds", f"give seconds, like {label} 300")
    if seconds <= 0:
        raise UsageError(f"{label} {seconds:g} must be above zero", f"give seconds, like {label} 300")
    return seconds


def kind_of(value) -> str:
    return {list: "a list", dict: "an object", bool: "true/false"}.get(type(value), type(value).__name__)


def parse_money(text: str, label: str) -> Decimal:
    try:
        amount = Decimal(text.strip().lstrip("$"))
    except ArithmeticError:
        amount = None
    if amount is None or not amount.is_finite():
        raise UsageError(f"{label} {quoted(text)} is not an amount", f"write it in USD, like {label} 0.25")
    if amount < 0:
        raise UsageError(f"{label} {quoted(text)} is negative", f"give a positive USD amount to {label}")
    return amount


# -- reference images and masks ---------------------------------------------------------------

MAX_INPUT_IMAGES = 16  # the most any provider takes
MAX_INPUT_EDGE = 16_384  # WebP's own limit; no provider documents a larger input


def inspect_input(source: str, label: str) -> InputImage:
    """A URL as given, or a local file read by its header: it must exist and really be an image."""
    from imgroute.net import images

    text = check_text(source, label).strip()
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        return InputImage(source=text, is_url=True)
    if "://" in text or lowered.startswith("data:"):
        hint = "give a local path or a public URL"
        raise UsageError(f"{label} {quoted(text)} is neither a file nor an http(s) URL", hint)
    path = Path(text).expanduser().absolute()  # journaled: a resume may run elsewhere
    try:
        with open(path, "rb") as fh:
            head = fh.read(images.HEADER_BYTES)
            size = fh.seek(0, 2)
            fh.seek(max(0, size - images.TAIL_BYTES))
            tail = fh.read()
    except FileNotFoundError:
        raise UsageError(f"{label} {text}: no such file", "check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{label} {text} is a directory", "give an image file") from None
    except OSError as exc:
        raise UsageError(f"{label} {text} cannot be read: {exc.strerror}", "check its permissions") from None
    try:
        info = images.sniff(head)
    except NotAnImage as exc:
        if head[:4] in (b"\x89PNG", b"RIFF") or head[:3] == b"\xff\xd8\xff":
            raise UsageError(f"{label} {text} is not a usable image: {exc}", "export it again") from None
        raise UsageError(f"{label} {text} is not a PNG, JPEG or WebP image", "convert it to PNG") from None
    if max(info.width, info.height) > MAX_INPUT_EDGE:
        raise UsageError(
            f"{label} {text} claims {info.width}x{info.height} pixels",
            f"no provider takes images over {MAX_INPUT_EDGE} px",
        )
    try:
        images.check_complete(info, head, tail, size)
    except NotAnImage as exc:
        raise UsageError(f"{label} {text} is not a usable image: {exc}", "export it again") from None
    return InputImage(
        source=str(path),
        is_url=False,
        format=info.format,
        width=info.width,
        height=info.height,
        bytes=size,
        has_alpha=info.has_alpha,
    )


def build_inputs(images: list[str] | None, mask: str | None) -> tuple[tuple[InputImage, ...], InputImage | None]:
    image, mask_ = named("images"), named("mask")
    inputs = tuple(inspect_input(source, image) for source in images or [])
    if len(inputs) > MAX_INPUT_IMAGES:
        raise UsageError(f"{len(inputs)} {image} inputs", f"no provider takes more than {MAX_INPUT_IMAGES}")
    if mask is None:
        return inputs, None
    if not inputs:
        raise UsageError(f"{mask_} needs at least one {image}", f"the mask applies to the first {image}")
    checked = inspect_input(mask, mask_)
    if not checked.is_url:
        if checked.format != "png" or not checked.has_alpha:
            kind = "a PNG without an alpha channel" if checked.format == "png" else f"a {checked.format}"
            raise UsageError(
                f"{mask_} {mask} is {kind}", "a mask is a PNG whose transparent pixels mark the area to edit"
            )
        first = inputs[0]
        if not first.is_url and (first.width, first.height) != (checked.width, checked.height):
            raise UsageError(
                f"{mask_} {mask} is {checked.width}x{checked.height}, the first {image} is "
                f"{first.width}x{first.height}",
                "the mask must have the same pixel size as the first image",
            )
    return inputs, checked


# -- a whole job --------------------------------------------------------------------------------


def build_request(
    prompt: str | None,
    *,
    quality: str = "medium",
    size: str | None = None,
    aspect: str | None = None,
    resolution: str | None = None,
    n: int = 1,
    images: list[str] | None = None,
    mask: str | None = None,
    output_format: str = "png",
    background: str = "auto",
    moderation: str = "auto",
) -> Request:
    """A Request from what a user typed (CLI flags, a batch row, the Python API), checked whole."""
    inputs, checked_mask = build_inputs(images, mask)
    target = build_target(size, aspect, resolution, inputs[0] if inputs else None)
    return Request(
        prompt=check_prompt(prompt),
        quality=parse_quality(quality),
        target=target,
        n=check_n(n),
        images=inputs,
        mask=checked_mask,
        output_format=parse_format(output_format),
        background=parse_choice(background, named("background"), BACKGROUNDS),
        moderation=parse_choice(moderation, named("moderation"), MODERATIONS),
    )


def build_constraints(
    table,
    settings,
    *,
    providers: list[str] | None = None,
    exclude: list[str] | None = None,
    max_cost: str | None = None,
    plan: list[str] | None = None,
    official_only: bool = False,
    stated_quality: bool = False,
    deadline: str | None = None,
    rank: str = "price",
) -> Constraints:
    """Routing constraints from flags, over the plans chosen in config.yaml."""
    chosen_plans = {}
    for provider, configured in settings.plans.items():
        problem = _plan_problem(table, provider, configured)
        if problem:
            raise ConfigError(f"{settings.path}: plans.{provider}: {problem[0]}", problem[1])
        chosen_plans[provider] = configured
    label = named("plan")
    for item in plan or []:  # PROVIDER=PLAN, over config.yaml's
        provider, sep, name = item.partition("=")
        provider, name = provider.strip(), name.strip()
        if not sep or not provider or not name:
            raise UsageError(f"{label} {quoted(item)} is not PROVIDER=PLAN", f"write it like {label} apiframe=growth")
        problem = _plan_problem(table, provider, name)
        if problem:
            raise UsageError(f"{label} {item}: {problem[0]}", problem[1])
        chosen_plans[provider] = name
    return Constraints(
        providers=frozenset(check_providers(providers, named("providers"), table)),
        exclude=frozenset(check_providers(exclude, named("exclude"), table)),
        max_cost=parse_money(max_cost, named("max_cost")) if max_cost is not None else None,
        plans=chosen_plans,
        official_only=official_only or settings.official_only,
        stated_quality=stated_quality or settings.stated_quality,
        deadline_s=parse_duration(deadline, named("deadline")) if deadline else None,
        rank=parse_choice(rank, named("rank"), RANKS),
    )


def parse_duration(text: str, label: str) -> float:
    """Seconds from `90s`, `30m`, `24h`, `2d` (a bare number is seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = str(text).strip().lower()
    unit = units.get(value[-1:]) if value else None
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"{label} {quoted(text)} is not a duration", f"write it like {label} 24h (or 30m, 2d)")
    return seconds


def check_providers(values: list[str] | str | None, label: str, table=None, registry=None) -> list[str]:
    """Provider ids (kie) or offer ids (piapi/gpt-image-2-preview), repeatable and comma- or
    space-separated; each provider must be known (to `table`, else to `registry`, else built in),
    and with `table` each offer too."""
    from imgroute.providers.registry import BUILT_IN

    known = (table.registry if table is not None else registry or BUILT_IN).known()
    if isinstance(values, str):
        values = [values]
    out = []
    for value in values or []:
        for name in value.replace(",", " ").split():
            provider, _, model = name.strip().partition("/")
            name = provider.lower() + (f"/{model}" if model else "")
            if provider.lower() not in known:
                raise UsageError(f"unknown provider {quoted(name)} in {label}", f"known providers: {', '.join(known)}")
            if model and table is not None and all(o.id != name for o in table.offers):
                # what a job's output names is its model, which for an edit may be the offer's edit
                # model (kie/gpt-image-2-image-to-image): input takes it as its offer
                same = table.offer(provider.lower(), model)
                if same is None:
                    offers = ", ".join(o.id for o in table.offers if o.provider == provider.lower())
                    raise UsageError(f"no offer {quoted(name)} in {label}", f"{provider.lower()} offers: {offers}")
                name = same.id
            out.append(name)
    return out


def _plan_problem(table, provider: str, plan: str) -> tuple[str, str] | None:
    """(problem, hint) when the plan cannot be used, else None."""
    if provider not in table.providers:
        return f"unknown provider {quoted(provider)}", f"known providers: {', '.join(table.providers)}"
    plans = table.providers[provider].plans
    if plan not in plans:
        known = ", ".join(plans)
        return f"{provider} has no plan {quoted(plan)}", f"{provider} plans: {known}; add yours in pricing.yaml"
    return None
