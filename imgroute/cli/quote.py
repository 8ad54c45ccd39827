"""`imgroute quote`, `providers` and `pricing`: what the table says, with no keys and no network."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer

from imgroute.cli.app import app
from imgroute.cli.options import Flags, JobFlags, JsonOpt, PricingOpt, RouteFlags, flag, opt, read_prompt, takes
from imgroute.errors import UsageError
from imgroute.home import config
from imgroute.session import load_pricing

pricing_app = typer.Typer(help="The pricing table: every figure with its source and date.", invoke_without_command=True)
app.add_typer(pricing_app, name="pricing")


@app.command()
@takes(JobFlags, RouteFlags)
def quote(
    job: Flags,
    where: Flags,
    *,
    as_json: JsonOpt = False,
    explain: Annotated[bool, flag("--explain", help="Show the arithmetic behind every price.")] = False,
) -> None:
    """What a job costs at every provider, which one wins, and why each other one lost."""
    from imgroute import api
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stdout_console
    from imgroute.output.text.quotes import print_quote
    from imgroute.pricing.router import no_offer_error

    route = api.quote(read_prompt(job.prompt), **job.api_options(), **where.api_options())
    if as_json:
        print_json(report.route_json(route))
    else:
        print_quote(stdout_console(), route, explain=explain, caveats=route.caveats)
    if route.choice is None:
        raise no_offer_error(route, "in each quote's `reasons`" if as_json else "in the table above")


@app.command()
def providers(pricing: PricingOpt = None, as_json: JsonOpt = False) -> None:
    """The capability matrix: what each offer can do, at a glance."""
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stdout_console
    from imgroute.output.text.offers import print_providers

    table = load_pricing(pricing)
    if as_json:
        print_json([report.offer_json(o) for o in table.offers])
    else:
        print_providers(stdout_console(), table)


@pricing_app.callback()
def pricing_show(
    ctx: typer.Context,
    pricing: PricingOpt = None,
    max_age: Annotated[
        int | None, opt("--max-age", help="Warn about rows observed more than this many days ago.", metavar="DAYS")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every price and plan, with its source and the date it was observed."""
    if ctx.invoked_subcommand is not None:
        return
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stdout_console
    from imgroute.output.text.offers import print_pricing

    table = load_pricing(pricing)
    limit = max_age if max_age is not None else config.load_settings().pricing_max_age_days
    if limit < 1:
        raise UsageError(f"--max-age {limit} must be at least 1", "give a number of days, like --max-age 90")
    rows = report.pricing_rows(table, dt.date.today(), limit)
    notes = [note for offer in table.offers for note in (f"{offer.id}: {n}" for n in offer.notes)]
    notes += [
        f"{o.id}: {field} is unsourced (assumed): {why}" for o in table.offers for field, why in o.unsourced.items()
    ]
    if as_json:
        print_json({"max_age_days": limit, "rows": rows, "notes": notes})
    else:
        print_pricing(stdout_console(), rows, notes)
    stale = [r for r in rows if r["stale"]]
    if stale:
        oldest = max(stale, key=lambda r: r["age_days"])
        sys.stderr.write(
            f"warning: {len(stale)} of {len(rows)} rows were observed more than {limit} days ago "
            f"(oldest: {oldest['provider']} {oldest['what']}, {oldest['observed']}); re-check their sources "
            f"and update pricing.yaml, or raise pricing_max_age_days in config.yaml\n"
        )


@pricing_app.command("refresh")
def pricing_refresh(
    provider: Annotated[str, typer.Argument(help="The provider whose published prices to read: openrouter.")],
) -> None:
    """Read a provider's published prices into your pricing file (~/.imgroute/pricing.yaml), each row
    with its source and today's date. OpenRouter: one offer per upstream of openai/gpt-image-2."""
    import datetime as dt

    import yaml

    from imgroute.errors import ConfigError, UsageError
    from imgroute.home import config
    from imgroute.home import pricing_refresh as refresh
    from imgroute.net.http import Http, build_client
    from imgroute.pricing.load import bundled_path
    from imgroute.session import Keys, load_pricing

    if provider != "openrouter":
        raise UsageError(
            f"{provider!r} publishes no prices imgroute can read",
            "only openrouter does: imgroute pricing refresh openrouter",
        )
    table = load_pricing(None)
    keys = Keys(table.registry)
    if "openrouter" not in keys.available:
        raise ConfigError("no openrouter key", "set OPENROUTER_API_KEY, or run: imgroute keys set openrouter")
    adapter = keys.adapter("openrouter")
    client = build_client(pool_size=2, secrets=keys.every_value)
    try:
        endpoints = adapter.endpoints(Http(client), refresh.MODEL)
    finally:
        client.close()
    bundled = yaml.safe_load(bundled_path().read_text(encoding="utf-8"))
    base = next(o for o in bundled["offers"] if o["provider"] == "openrouter")
    source = f"{adapter.documented_origin}{refresh.ENDPOINTS_PATH}"
    offers, skipped = refresh.offers_from(endpoints, base, source, dt.date.today())
    path = config.home() / config.USER_PRICING_FILE
    if offers:
        refresh.write(path, offers, source)
    for offer in offers:
        print(f"openrouter/{offer['model']}: {offer['price']['model']} prices written to {path}")
    for why in skipped:
        print(f"not priced: {why}")


@pricing_app.command("validate")
def pricing_validate(
    file: Annotated[Path, typer.Argument(help="A pricing file: a full table or an override.", metavar="FILE")],
) -> None:
    """Check a pricing file as imgroute would use it (merged over the bundled table)."""
    from imgroute.pricing.load import load_table

    table = load_table(file)
    changed = [o.id for o in table.offers if o.origin == str(file)]
    print(f"ok: {file}: {len(table.offers)} offers after merging; from this file: {', '.join(changed) or 'plans only'}")
