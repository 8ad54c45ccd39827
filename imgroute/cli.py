"""The typer app: flags in, one Request out, then render. Domain errors become exit codes here.

Startup matters (`quote` is run in loops by scripts): this module imports only what every command
needs; anything heavier (httpx, sqlite) is imported inside the command that uses it.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer

from imgroute import config
from imgroute.errors import EXIT_INTERRUPTED, BudgetError, ConfigError, ImgrouteError, NoOfferError, UsageError
from imgroute.models import Constraints, Request
from imgroute.money import fmt_usd
from imgroute.pricing import PricingTable
from imgroute.providers import known as known_providers
from imgroute.request import (
    build_inputs,
    build_target,
    check_n,
    check_prompt,
    parse_money,
    parse_quality,
)

app = typer.Typer(
    name="imgroute",
    help="Route GPT Image 2 jobs to the cheapest provider that can really deliver them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
pricing_app = typer.Typer(help="The pricing table: every figure with its source and date.", invoke_without_command=True)
app.add_typer(pricing_app, name="pricing")


def _show_version(wanted: bool) -> None:
    if wanted:
        from imgroute import __version__

        print(f"imgroute {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass


# -- shared options ---------------------------------------------------------------------------


def _opt(*names: str, help: str):
    return typer.Option(*names, help=help, show_default=False)


PromptArg = Annotated[
    str | None, typer.Argument(help="What to draw. Read from stdin when omitted.", show_default=False)
]
QualityOpt = Annotated[str, typer.Option("--quality", "-q", help="low, medium or high.")]
SizeOpt = Annotated[str | None, _opt("--size", help="Exact pixels, WIDTHxHEIGHT.")]
AspectOpt = Annotated[str | None, _opt("--aspect", help="Aspect ratio W:H (default 1:1).")]
ResolutionOpt = Annotated[str | None, _opt("--resolution", help="1K, 2K or 4K (default 1K).")]
NOpt = Annotated[int, typer.Option("--n", help="Images in the job.")]
ProviderOpt = Annotated[list[str] | None, _opt("--provider", help="Only these providers (repeatable).")]
ExcludeOpt = Annotated[list[str] | None, _opt("--exclude", help="Never these providers (repeatable).")]
MaxCostOpt = Annotated[str | None, _opt("--max-cost", help="Most USD to spend on the job.")]
PlanOpt = Annotated[list[str] | None, _opt("--plan", help="PROVIDER=PLAN, the plan you are on (repeatable).")]
PricingOpt = Annotated[Path | None, _opt("--pricing", help="A pricing file merged over the bundled table.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
ImageOpt = Annotated[list[str] | None, _opt("--image", help="Reference image to edit: a file or URL (repeatable).")]
MaskOpt = Annotated[str | None, _opt("--mask", help="PNG whose transparent pixels mark where to edit.")]
MaxAgeOpt = Annotated[int | None, _opt("--max-age", help="Warn about rows observed more than this many days ago.")]
PricingFileArg = Annotated[Path, typer.Argument(help="A pricing file: a full table or an override.")]


def load_pricing(pricing_file: Path | None) -> PricingTable:
    from imgroute.pricing import load_table

    return load_table(pricing_file or config.user_pricing_file())


def read_prompt(prompt: str | None) -> str:
    if prompt is None or prompt == "-":
        if sys.stdin is None or sys.stdin.isatty():
            return check_prompt(None)
        prompt = sys.stdin.read()
    return check_prompt(prompt)


def build_request(
    prompt: str | None,
    quality: str,
    size: str | None,
    aspect: str | None,
    resolution: str | None,
    n: int,
    images: list[str] | None = None,
    mask: str | None = None,
) -> Request:
    target = build_target(size, aspect, resolution)
    inputs, checked_mask = build_inputs(images, mask)
    return Request(
        prompt=read_prompt(prompt),
        quality=parse_quality(quality),
        target=target,
        n=check_n(n),
        images=inputs,
        mask=checked_mask,
    )


def build_constraints(
    table: PricingTable,
    settings: config.Settings,
    providers: list[str] | None,
    exclude: list[str] | None,
    max_cost: str | None,
    plans: list[str] | None,
) -> Constraints:
    chosen_plans = {}
    for provider, plan in settings.plans.items():
        problem = _plan_problem(table, provider, plan)
        if problem:
            raise ConfigError(f"{settings.path}: plans.{provider}: {problem[0]}", problem[1])
        chosen_plans[provider] = plan
    for item in plans or []:
        provider, sep, plan = item.partition("=")
        provider, plan = provider.strip(), plan.strip()
        if not sep or not provider or not plan:
            raise UsageError(f"--plan {item!r} is not PROVIDER=PLAN", "write it like --plan apiframe=growth")
        problem = _plan_problem(table, provider, plan)
        if problem:
            raise UsageError(f"--plan {item}: {problem[0]}", problem[1])
        chosen_plans[provider] = plan
    return Constraints(
        providers=frozenset(_check_providers(providers, "--provider")),
        exclude=frozenset(_check_providers(exclude, "--exclude")),
        max_cost=parse_money(max_cost, "--max-cost") if max_cost is not None else None,
        plans=chosen_plans,
    )


def _check_providers(values: list[str] | None, flag: str) -> list[str]:
    out = []
    for value in values or []:
        for name in value.split(","):
            name = name.strip().lower()
            if name not in known_providers():
                known = ", ".join(known_providers())
                raise UsageError(f"unknown provider {name!r} in {flag}", f"known providers: {known}")
            out.append(name)
    return out


def _plan_problem(table: PricingTable, provider: str, plan: str) -> tuple[str, str] | None:
    """(problem, hint) when the plan cannot be used, else None."""
    if provider not in table.providers:
        return f"unknown provider {provider!r}", f"known providers: {', '.join(table.providers)}"
    plans = table.providers[provider].plans
    if plan not in plans:
        return f"{provider} has no plan {plan!r}", f"{provider} plans: {', '.join(plans)}; add yours in pricing.yaml"
    return None


# -- commands ---------------------------------------------------------------------------------


@app.command()
def quote(
    prompt: PromptArg = None,
    quality: QualityOpt = "medium",
    size: SizeOpt = None,
    aspect: AspectOpt = None,
    resolution: ResolutionOpt = None,
    n: NOpt = 1,
    provider: ProviderOpt = None,
    exclude: ExcludeOpt = None,
    max_cost: MaxCostOpt = None,
    plan: PlanOpt = None,
    pricing: PricingOpt = None,
    image: ImageOpt = None,
    mask: MaskOpt = None,
    as_json: JsonOpt = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show the arithmetic behind every price.")] = False,
) -> None:
    """What a job costs at every provider, which one wins, and why each other one lost."""
    from imgroute import render
    from imgroute.router import rank, route_to_json

    request = build_request(prompt, quality, size, aspect, resolution, n, image, mask)
    table = load_pricing(pricing)
    constraints = build_constraints(table, config.load_settings(), provider, exclude, max_cost, plan)
    route = rank(request, table, constraints)
    if as_json:
        render.print_json(route_to_json(route))
    else:
        render.print_quote(render.stdout_console(), route, explain=explain)
    if route.choice is None:
        raise no_offer_error(route)


def no_offer_error(route) -> ImgrouteError:
    if route.only_priced_out:
        cheapest = min(q.cost for q in route.quotes if q.priced_out)
        return BudgetError(
            f"every offer that can deliver this costs more than --max-cost (cheapest: {fmt_usd(cheapest)})",
            "raise --max-cost, or ask for less (lower quality, smaller size, fewer images)",
        )
    return NoOfferError(
        "no offer can deliver this request (reasons in the table above)",
        "relax the size, aspect, quality or provider constraints",
    )


@app.command()
def providers(pricing: PricingOpt = None, as_json: JsonOpt = False) -> None:
    """The capability matrix: what each offer can do, at a glance."""
    from imgroute import render

    table = load_pricing(pricing)
    if as_json:
        render.print_json([render.offer_capabilities(o) for o in table.offers])
    else:
        render.print_providers(render.stdout_console(), table)


@pricing_app.callback()
def pricing_show(
    ctx: typer.Context,
    pricing: PricingOpt = None,
    max_age: Annotated[
        int | None,
        typer.Option("--max-age", help="Warn about rows observed more than this many days ago.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every price and plan, with its source and the date it was observed."""
    if ctx.invoked_subcommand is not None:
        return
    from imgroute import render

    table = load_pricing(pricing)
    limit = max_age if max_age is not None else config.load_settings().pricing_max_age_days
    if limit < 1:
        raise UsageError(f"--max-age {limit} must be at least 1", "give a number of days, like --max-age 90")
    rows = render.pricing_rows(table, dt.date.today(), limit)
    notes = [note for offer in table.offers for note in (f"{offer.id}: {n}" for n in offer.notes)]
    if as_json:
        render.print_json({"max_age_days": limit, "rows": rows, "notes": notes})
    else:
        render.print_pricing(render.stdout_console(), rows, notes)
    stale = [r for r in rows if r["stale"]]
    if stale:
        oldest = max(stale, key=lambda r: r["age_days"])
        sys.stderr.write(
            f"warning: {len(stale)} of {len(rows)} rows were observed more than {limit} days ago "
            f"(oldest: {oldest['provider']} {oldest['what']}, {oldest['observed']}); re-check their sources "
            f"and update pricing.yaml, or raise pricing_max_age_days in config.yaml\n"
        )


@pricing_app.command("validate")
def pricing_validate(
    file: Annotated[Path, typer.Argument(help="A pricing file: a full table or an override.")],
) -> None:
    """Check a pricing file as imgroute would use it (merged over the bundled table)."""
    from imgroute.pricing import load_table

    table = load_table(file)
    changed = [o.id for o in table.offers if o.origin == str(file)]
    print(f"ok: {file}: {len(table.offers)} offers after merging; from this file: {', '.join(changed) or 'plans only'}")


# -- entry point ------------------------------------------------------------------------------


# Commands that live in their own modules, registered only when the invocation needs them: typer
# builds every registered command on each run, and `quote` should not pay for the others.
COMMAND_MODULES = {
    "gen": "imgroute.cli_gen",
    "edit": "imgroute.cli_gen",
    "keys": "imgroute.cli_gen",
    "jobs": "imgroute.cli_ledger",
    "budget": "imgroute.cli_ledger",
    "spend": "imgroute.cli_ledger",
    "batch": "imgroute.cli_batch",
}
CORE_COMMANDS = ("quote", "providers", "pricing")


def register_commands(argv: list[str]) -> None:
    import importlib

    name = next((arg for arg in argv if not arg.startswith("-")), None)
    if name in CORE_COMMANDS:
        return
    wanted = [COMMAND_MODULES[name]] if name in COMMAND_MODULES else sorted(set(COMMAND_MODULES.values()))
    for module in wanted:  # --help, no command or a typo: everything, so help and suggestions are whole
        importlib.import_module(module)


def main(argv: list[str] | None = None) -> None:
    """Run the app; map domain errors to one stderr line and the contract's exit code.

    typer itself handles usage errors (exit 2) and Ctrl-C (exit 130) in standalone mode.
    """
    register_commands(sys.argv[1:] if argv is None else argv)
    try:
        app(args=argv, prog_name="imgroute")
    except ImgrouteError as exc:
        _fail(exc.message, exc.hint, exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", None, EXIT_INTERRUPTED)


def _fail(message: str, hint: str | None, code: int) -> None:
    text = f"error: {message}"
    if hint:
        text += f"; {hint}"
    sys.stderr.write(text + "\n")
    sys.exit(code)
