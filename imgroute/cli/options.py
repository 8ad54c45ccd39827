"""Options shared by several commands, written once: their flags and help, and the objects that
carry them from a command into the core (`JobFlags` for what a job is, `RouteFlags` for where it
may go, `OutputFlags` for where its images land)."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import sys
from pathlib import Path
from typing import Annotated, NamedTuple

import typer

from imgroute import policy
from imgroute.errors import UsageError, quoted
from imgroute.models import Constraints, Request
from imgroute.vocab import DEFAULT_NAME


def opt(*names: str, help: str, metavar: str | None = None, complete=None):
    """An option with a value, shown in --help as what to write (`--provider NAME`), not as its
    Python type (`<list[str]>`); `complete` lists what a shell may complete it with."""
    return typer.Option(*names, help=help, show_default=False, metavar=metavar, autocompletion=complete)


# -- shell completion (imgroute --install-completion): what the pricing table names --------------


def _table():
    """The pricing table for completion, or None: a bad pricing file must not break the shell."""
    from imgroute.errors import ImgrouteError
    from imgroute.session import load_pricing

    try:
        return load_pricing(None)
    except ImgrouteError:
        return None


def complete_offers(incomplete: str) -> list[str]:
    """Provider ids and offer ids, as --provider and --exclude take them."""
    table = _table()
    names = [*table.providers, *(offer.id for offer in table.offers)] if table else []
    return [name for name in names if name.startswith(incomplete)]


def complete_plans(incomplete: str) -> list[str]:
    """PROVIDER=PLAN for every provider with more than one plan."""
    table = _table()
    providers = table.providers.items() if table else ()
    pairs = [f"{p}={plan}" for p, info in providers if len(info.plans) > 1 for plan in info.plans]
    return [pair for pair in pairs if pair.startswith(incomplete)]


def complete_providers(incomplete: str) -> list[str]:
    from imgroute.providers import BUILT_IN

    table = _table()  # (a relay a pricing file declares is a provider too)
    known = (table.registry if table else BUILT_IN).known()
    return [name for name in known if name.startswith(incomplete)]


def flag(*names: str, help: str):
    """An on/off option: no `<bool>` after it in --help, it takes no value."""
    return typer.Option(*names, help=help, metavar="")


PromptArg = Annotated[
    str | None,
    typer.Argument(help="What to draw. Read from stdin when omitted.", show_default=False, metavar="PROMPT"),
]
QualityOpt = Annotated[str, typer.Option("--quality", "-q", help="low, medium or high.", metavar="TIER")]
SizeOpt = Annotated[str | None, opt("--size", help="Exact pixels, WIDTHxHEIGHT.", metavar="WxH")]
AspectOpt = Annotated[str | None, opt("--aspect", help="Aspect ratio W:H (default 1:1).", metavar="W:H")]
ResolutionOpt = Annotated[str | None, opt("--resolution", help="1K, 2K or 4K (default 1K).", metavar="TIER")]
NOpt = Annotated[int, typer.Option("--n", "-n", help="Images in the job.", metavar="N")]
ProviderOpt = Annotated[
    list[str] | None,
    opt("--provider", help="Only these providers or offers (repeatable).", metavar="NAME", complete=complete_offers),
]
ExcludeOpt = Annotated[
    list[str] | None,
    opt("--exclude", help="Never these providers or offers (repeatable).", metavar="NAME", complete=complete_offers),
]
MaxCostOpt = Annotated[str | None, opt("--max-cost", help="Most USD to spend on the job.", metavar="USD")]
PlanOpt = Annotated[
    list[str] | None,
    opt("--plan", help="The plan you are on (repeatable).", metavar="PROVIDER=PLAN", complete=complete_plans),
]
PricingOpt = Annotated[
    Path | None, opt("--pricing", help="A pricing file merged over the bundled table.", metavar="FILE")
]
JsonOpt = Annotated[bool, flag("--json", help="One JSON object on stdout.")]
JsonLinesOpt = Annotated[bool, flag("--json", help="One JSON object per row on stdout, as each row ends.")]
ImageOpt = Annotated[
    list[str] | None, opt("--image", help="Reference image to edit: a file or URL (repeatable).", metavar="PATH|URL")
]
MaskOpt = Annotated[str | None, opt("--mask", help="PNG whose transparent pixels mark where to edit.", metavar="PNG")]
FormatOpt = Annotated[str, typer.Option("--format", help="png, jpeg or webp.", metavar="FORMAT")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Directory for the images.", metavar="DIR")]
NameOpt = Annotated[
    str,
    typer.Option(
        "--name",
        help="File name template: {slug} {provider} {model} {index} {job} {quality} {date}.",
        metavar="TEMPLATE",
    ),
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Most seconds to wait for the job.", metavar="SECONDS")]
BackgroundOpt = Annotated[str, typer.Option("--background", help="auto, opaque or transparent.", metavar="KIND")]
ModerationOpt = Annotated[
    str, typer.Option("--moderation", help="auto, or low (less strict, where offered).", metavar="LEVEL")
]
OfficialOnlyOpt = Annotated[bool, flag("--official-only", help="Only offers that run OpenAI's own model.")]
StatedQualityOpt = Annotated[bool, flag("--stated-quality", help="Only offers that state the quality they deliver.")]
DeadlineOpt = Annotated[
    str | None,
    opt("--deadline", help="How long the job may take (24h): admits slower, cheaper offers.", metavar="DURATION"),
]
DryRunOpt = Annotated[bool, flag("--dry-run", help="Show the route and the exact request; send nothing.")]
QuietOpt = Annotated[bool, flag("--quiet", help="Print only the saved file paths, one per line.")]
RankOpt = Annotated[
    str,
    opt(
        "--rank",
        help="price, or expected: per delivered image, from your history (20+ jobs at an offer).",
        metavar="HOW",
    ),
]
DetachOpt = Annotated[
    bool, flag("--detach", help="With an offer that takes a while (a batch): send, print the job id, do not wait.")
]

DEFAULT_TIMEOUT = policy.DEFAULT_JOB_TIMEOUT_S


class JobFlags(NamedTuple):
    """What the job is: the flags every command that makes or prices a job takes."""

    prompt: str | None
    quality: str = "medium"
    size: str | None = None
    aspect: str | None = None
    resolution: str | None = None
    n: int = 1
    image: list[str] | None = None
    mask: str | None = None
    output_format: str = "png"
    background: str = "auto"
    moderation: str = "auto"

    OPTIONS = {
        "prompt": PromptArg,
        "quality": QualityOpt,
        "size": SizeOpt,
        "aspect": AspectOpt,
        "resolution": ResolutionOpt,
        "n": NOpt,
        "image": ImageOpt,
        "mask": MaskOpt,
        "output_format": FormatOpt,
        "background": BackgroundOpt,
        "moderation": ModerationOpt,
    }

    def request(self) -> Request:
        from imgroute.request import build_request

        return build_request(read_prompt(self.prompt), *self[1:])

    def api_options(self) -> dict:
        """Everything but the prompt, as the Python API's keyword arguments (imgroute.api.plan)."""
        values = self._asdict()
        del values["prompt"]
        values["images"] = values.pop("image")
        return values


class RouteFlags(NamedTuple):
    """Where the job may go, and at what price."""

    provider: list[str] | None = None
    exclude: list[str] | None = None
    max_cost: str | None = None
    plan: list[str] | None = None
    pricing: Path | None = None
    official_only: bool = False
    stated_quality: bool = False
    deadline: str | None = None
    rank: str = "price"

    OPTIONS = {
        "provider": ProviderOpt,
        "exclude": ExcludeOpt,
        "max_cost": MaxCostOpt,
        "plan": PlanOpt,
        "pricing": PricingOpt,
        "official_only": OfficialOnlyOpt,
        "stated_quality": StatedQualityOpt,
        "deadline": DeadlineOpt,
        "rank": RankOpt,
    }

    def constraints(self, table, settings) -> Constraints:
        from imgroute.request import build_constraints

        return build_constraints(table, settings, *self[:4], *self[5:])


class OutputFlags(NamedTuple):
    """Where the images land, how long to wait, and what is printed."""

    out: Path = Path(".")
    name: str = DEFAULT_NAME
    timeout: float = DEFAULT_TIMEOUT
    dry_run: bool = False
    quiet: bool = False
    as_json: bool = False
    detach: bool = False

    OPTIONS = {
        "out": OutOpt,
        "name": NameOpt,
        "timeout": TimeoutOpt,
        "dry_run": DryRunOpt,
        "quiet": QuietOpt,
        "as_json": JsonOpt,
        "detach": DetachOpt,
    }


def takes(*groups):
    """Give a command the options of these groups, written once above, and call it with one
    object per group: `@takes(JobFlags, RouteFlags) def quote(job, where, *, explain=...)`.

    typer reads a command's parameters from its signature, so the wrapper's signature lists every
    group's options (with their defaults) and then the command's own keyword-only ones."""

    def decorate(command):
        own = list(inspect.signature(command, eval_str=True).parameters.values())[len(groups) :]
        keyword = inspect.Parameter.KEYWORD_ONLY
        params = [
            inspect.Parameter(name, keyword, default=group._field_defaults.get(name), annotation=kind)
            for group in groups
            for name, kind in group.OPTIONS.items()
        ] + own

        @functools.wraps(command)
        def run(**values):
            flags = [group(*(values.pop(name) for name in group._fields)) for group in groups]
            return command(*flags, **values)

        run.__signature__ = inspect.Signature(params)
        run.__annotations__ = {param.name: param.annotation for param in params}
        return run

    return decorate


def read_prompt(prompt: str | None) -> str | None:
    """The prompt argument, or stdin when it is omitted or `-` (None when there is neither)."""
    from imgroute.request import check_text, read_stdin

    if prompt is None or prompt == "-":
        if sys.stdin is None or sys.stdin.isatty():
            return None
        return check_text(read_stdin("the prompt"), "the prompt on stdin")
    return check_text(prompt, "the prompt argument")


def parse_day(text: str, flag: str) -> dt.datetime:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text.strip()), dt.time())
    except ValueError:
        hint = f"write it as YYYY-MM-DD, like {flag} 2026-11-01"
        raise UsageError(f"{flag} {quoted(text)} is not a date", hint) from None
