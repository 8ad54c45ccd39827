"""Every option a job takes, declared once, with how each door spells it.

An Option is named as the Python API's keyword argument (`max_cost`); the same row gives its CLI
flag (`--max-cost`), the parameter `serve` reads it from (an OpenAI Images API parameter such as
`n`, or a routing hint under `extra_body={"imgroute": {...}}`, which config.yaml's `profiles:` use
too), and its field in a batch row. The CLI's options, `api.plan`'s arguments, serve's hints,
config profiles and batch rows are all derived from these tables; an error about an option is
written once, naming it with `errors.named`, and each door words it (`--max-cost`, `max_cost=`,
`imgroute.max_cost`).

Adding a routing constraint: a row in ROUTE here, the Constraints field it becomes with its
reading in `request.CONSTRAINT_READERS`, and its rule in the router.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Literal, NamedTuple

from imgroute import policy, vocab

Door = Literal["cli", "api", "serve", "row"]


class Option(NamedTuple):
    name: str  # the Python API's keyword argument
    flag: str  # the CLI's
    help: str
    metavar: str | None = None
    default: Any = None
    kind: type = str  # str, int, bool (a switch) or list (repeatable; elsewhere a list or a string of names)
    short: str | None = None  # the CLI's short flag
    param: str | None = None  # serve: the OpenAI Images API parameter that carries it
    hint: str | None = None  # serve's routing hint (imgroute.<hint>) and config.yaml profiles' key
    row: str | None = None  # its field in a batch row
    complete: str | None = None  # what a shell completes it with: "offers" or "plans"


# What the job is.
JOB = (
    Option("quality", "--quality", "low, medium or high.", "TIER", "medium", short="-q", param="quality",
           row="quality"),
    Option("size", "--size", "Exact pixels, WIDTHxHEIGHT.", "WxH", param="size", row="size"),
    Option("aspect", "--aspect", "Aspect ratio W:H (default 1:1).", "W:H", hint="aspect", row="aspect"),
    Option("resolution", "--resolution", f"{', '.join(vocab.RESOLUTIONS[:-1])} or {vocab.RESOLUTIONS[-1]} "
           "(default 1K).", "TIER", hint="resolution", row="resolution"),
    Option("n", "--n", "Images in the job.", "N", 1, int, short="-n", param="n", row="n"),
    Option("images", "--image", "Reference image to edit: a file or URL (repeatable).", "PATH|URL", None, list,
           param="image", row="image"),
    Option("mask", "--mask", "PNG whose transparent pixels mark where to edit.", "PNG", param="mask", row="mask"),
    Option("output_format", "--format", "png, jpeg or webp.", "FORMAT", "png", param="output_format", row="format"),
    Option("background", "--background", "auto, opaque or transparent.", "KIND", "auto", param="background",
           row="background"),
    Option("moderation", "--moderation", "auto, or low (less strict, where offered).", "LEVEL", "auto",
           param="moderation", row="moderation"),
)  # fmt: skip

# Where it may go, and at what price: each becomes a field of models.Constraints.
ROUTE = (
    Option("providers", "--provider", "Only these providers or offers (repeatable).", "NAME", None, list,
           hint="providers", row="provider", complete="offers"),
    Option("exclude", "--exclude", "Never these providers or offers (repeatable).", "NAME", None, list,
           hint="exclude", row="exclude", complete="offers"),
    Option("max_cost", "--max-cost", "Most USD to spend on the job.", "USD", hint="max_cost"),
    Option("plan", "--plan", "The plan you are on (repeatable).", "PROVIDER=PLAN", None, list, hint="plan",
           complete="plans"),
    Option("official_only", "--official-only", "Only offers that run OpenAI's own model.", None, False, bool,
           hint="official_only"),
    Option("stated_quality", "--stated-quality", "Only offers that state the quality they deliver.", None, False,
           bool, hint="stated_quality"),
    Option("deadline", "--deadline", "How long the job may take (24h): admits slower, cheaper offers.",
           "DURATION", hint="deadline", row="deadline"),
    Option("rank", "--rank", "price, or expected: per delivered image, from your history (20+ jobs at an offer).",
           "HOW", "price"),
)  # fmt: skip

# How a run goes: the Python API's `run`, `batch` and `resume` arguments with a CLI flag of the
# same meaning (named here so that their errors are worded per door too).
RUN = (
    Option("out", "--out", "Directory for the images.", "DIR", Path("."), Path, short="-o"),
    Option("name", "--name", "File name template: {slug} {provider} {model} {index} {job} {quality} {date}.",
           "TEMPLATE", vocab.DEFAULT_NAME),
    Option("timeout", "--timeout", "Most seconds to wait for the job.", "SECONDS", policy.DEFAULT_JOB_TIMEOUT_S, float),
    Option("detach", "--detach", "With an offer that takes a while (a batch): send, print the job id, do not wait.",
           None, False, bool),
    Option("max_total", "--max-total", "Most USD the whole batch may cost.", "USD"),
    Option("concurrency", "--concurrency", "Jobs at the providers at once.", "N", kind=int),
    Option("pricing", "--pricing", "A pricing file merged over the bundled table.", "FILE"),
)  # fmt: skip

BY_NAME = {option.name: option for option in (*JOB, *ROUTE, *RUN)}

# Serve's routing hints and config.yaml profiles' keys: the hint -> the API argument it sets
# (`provider` is accepted for `providers`; `dry_run` is answered with the route, nothing sent).
HINTS: dict[str, str | None] = {option.hint: option.name for option in (*JOB, *ROUTE) if option.hint}
HINTS |= {"provider": "providers", "dry_run": None}

# A batch row's fields: its id, prompt and file name, and every option with a row field.
ROW_FIELDS = ("id", "prompt", *(option.row for option in (*JOB, *ROUTE) if option.row), "name")


def spelled(name: str, door: Door) -> str:
    """An option as a door names it: `max_cost` is `--max-cost` (cli), `max_cost=` (api),
    `imgroute.max_cost` (serve), `max_cost` (a batch row); one not in the tables (`--daily` of
    `budget set`) by the same rules."""
    option = BY_NAME.get(name)
    if door == "cli":
        return option.flag if option else "--" + name.replace("_", "-")
    if door == "serve" and option is not None and (option.param or option.hint):
        return option.param or f"imgroute.{option.hint}"
    if door == "row" and option is not None and option.row:
        return option.row
    return f"{name}=" if door == "api" else name


def respelled(text: str, door: Door) -> str:
    """A text that names options by their CLI flags (a route's reasons: "ask --aspect 1:1"), with
    each option the tables know named as `door` spells it ("ask imgroute.aspect 1:1")."""
    import re

    flags = {option.flag: option.name for option in BY_NAME.values()}
    return re.sub(
        r"--[a-z][a-z-]*", lambda found: spelled(flags[found[0]], door) if found[0] in flags else found[0], text
    )


def keyword_arguments(given: dict[str, Any], groups: tuple[tuple[Option, ...], ...], caller: str) -> list[dict]:
    """The Python API's keyword arguments, one dict per group of options, each value in the form
    the checks read: a list of names (a string may hold several: "kie, fal"), text for text (an
    amount given as a number is read as its text), the rest as given. An unknown name is a
    TypeError, as Python's own would be."""
    known = {option.name: option for group in groups for option in group}
    for name in given:
        if name not in known:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")
    return [{o.name: _as_read(o, given[o.name]) for o in group if o.name in given} for group in groups]


def _as_read(option: Option, value: Any) -> Any:
    if value is None or option.kind in (bool, int, float):
        return value
    if option.kind is list:
        return [value] if isinstance(value, str) else [str(item) for item in value]
    return value if isinstance(value, str) else str(value)


def signature_of(groups: tuple[tuple[Option, ...], ...], *own: inspect.Parameter) -> inspect.Signature:
    """A function's signature with every option of `groups` as a keyword argument (for help() and
    editors: the function itself takes **options and reads them with `keyword_arguments`)."""
    prompt = inspect.Parameter("prompt", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)
    keyword = inspect.Parameter.KEYWORD_ONLY
    options = [inspect.Parameter(o.name, keyword, default=o.default) for group in groups for o in group]
    return inspect.Signature([prompt, *options, *own])
