"""Options shared by several commands, derived from the tables in imgroute.options (each option's
flag, help, metavar and completion are written there once), and the groups that carry them from a
command into the core (`JobFlags` for what a job is, `RouteFlags` for where it may go, `OutputFlags`
for where its images land)."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer

from imgroute import options
from imgroute.errors import UsageError, quoted
from imgroute.options import Option


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
    from imgroute.providers.registry import BUILT_IN

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
PricingOpt = Annotated[
    Path | None, opt("--pricing", help="A pricing file merged over the bundled table.", metavar="FILE")
]
JsonOpt = Annotated[bool, flag("--json", help="One JSON object on stdout.")]
JsonLinesOpt = Annotated[bool, flag("--json", help="One JSON object per row on stdout, as each row ends.")]
DryRunOpt = Annotated[bool, flag("--dry-run", help="Show the route and the exact request; send nothing.")]
QuietOpt = Annotated[bool, flag("--quiet", help="Print only the saved file paths, one per line.")]

COMPLETIONS = {"offers": complete_offers, "plans": complete_plans}


def annotated(option: Option):
    """An option of the tables in imgroute.options as a typer parameter: its flag, help and
    metavar, the value it takes (repeatable, on/off, a number), and what a shell completes it with."""
    names = (option.flag, option.short) if option.short else (option.flag,)
    if option.kind is bool:
        return Annotated[bool, flag(*names, help=option.help)]
    kind: Any = list[str] if option.kind is list else option.kind
    complete = COMPLETIONS.get(option.complete) if option.complete else None
    if option.default is None:  # (nothing to show as its default)
        return Annotated[kind | None, opt(*names, help=option.help, metavar=option.metavar, complete=complete)]
    return Annotated[kind, typer.Option(*names, help=option.help, metavar=option.metavar, autocompletion=complete)]


# Single options for the commands that take one or two of them, not a whole group.
PlanOpt = annotated(options.BY_NAME["plan"])
DeadlineOpt = annotated(options.BY_NAME["deadline"])
OfficialOnlyOpt = annotated(options.BY_NAME["official_only"])
StatedQualityOpt = annotated(options.BY_NAME["stated_quality"])


class Flags:
    """The values one group of options was given, by the Python API's names (`where.max_cost`)."""

    def __init__(self, values: dict[str, Any]):
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def api_options(self) -> dict[str, Any]:
        """As the Python API's keyword arguments (api.plan, api.plan_batch): all but the prompt."""
        return {name: value for name, value in self._values.items() if name != "prompt"}


class Group(NamedTuple):
    """Options that go together (what a job is, where it may go, where its images land): each is
    (name, annotation, default); a command given the group receives one Flags."""

    params: tuple[tuple[str, Any, Any], ...]

    @classmethod
    def of(cls, options: tuple[Option, ...], before=(), after=()) -> Group:
        return cls((*before, *((o.name, annotated(o), o.default) for o in options), *after))


# What the job is: the prompt and options.JOB.
JobFlags = Group.of(options.JOB, before=[("prompt", PromptArg, None)])
# Where the job may go and at what price: options.ROUTE, and the pricing file to read.
RouteFlags = Group.of((*options.ROUTE, options.BY_NAME["pricing"]))
# Where the images land, how long to wait, and what is printed.
OutputFlags = Group.of(
    tuple(options.BY_NAME[name] for name in ("out", "name", "timeout", "detach")),
    after=[("dry_run", DryRunOpt, False), ("quiet", QuietOpt, False), ("as_json", JsonOpt, False)],
)


def takes(*groups: Group):
    """Give a command the options of these groups, written once in imgroute.options, and call it
    with one Flags per group: `@takes(JobFlags, RouteFlags) def quote(job, where, *, explain=...)`.

    typer reads a command's parameters from its signature, so the wrapper's signature lists every
    group's options (with their defaults) and then the command's own keyword-only ones."""

    def decorate(command):
        own = list(inspect.signature(command, eval_str=True).parameters.values())[len(groups) :]
        keyword = inspect.Parameter.KEYWORD_ONLY
        params = [
            inspect.Parameter(name, keyword, default=default, annotation=kind)
            for group in groups
            for name, kind, default in group.params
        ] + own

        @functools.wraps(command)
        def run(**values):
            given = [Flags({name: values.pop(name) for name, _, _ in group.params}) for group in groups]
            return command(*given, **values)

        # (mypy knows no __signature__ on a function; inspect, and so typer, reads it)
        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
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
