"""`imgroute plans`: prepaid credit balances (bought credits, drawn down by each job's credit cost)."""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal
from typing import Annotated

import typer

from imgroute.cli.app import app
from imgroute.cli.options import JsonOpt, complete_providers, opt
from imgroute.errors import UsageError

plans_app = typer.Typer(help="Prepaid credits you have bought from credit-priced providers.", no_args_is_help=True)
app.add_typer(plans_app, name="plans")


@plans_app.command("set")
def plans_set(
    provider: Annotated[
        str,
        typer.Argument(
            help="A credit-priced provider (apiframe, kie).", metavar="PROVIDER", autocompletion=complete_providers
        ),
    ],
    credits: Annotated[int, typer.Option("--credits", help="Credits bought (the balance starts here).", metavar="N")],
    expires: Annotated[str, opt("--expires", help="The day they expire, YYYY-MM-DD.", metavar="DATE")],
) -> None:
    """Record a prepaid balance: quote marks offers it pays for, advise says what will expire."""
    from imgroute.home import config
    from imgroute.home import credits as prepaid
    from imgroute.session import load_pricing

    table = load_pricing(None)
    known = table.registry.known()
    if provider not in known:
        raise UsageError(f"unknown provider {provider!r}", f"known providers: {', '.join(known)}")
    priced_in_credits = {o.provider for o in table.offers if o.price.uses_credits}
    if provider not in priced_in_credits:
        raise UsageError(
            f"{provider} is not priced in credits", f"prepaid credits apply to: {', '.join(sorted(priced_in_credits))}"
        )
    if credits < 1:
        raise UsageError(f"--credits {credits} must be at least 1", "give the credits you bought, like --credits 12000")
    try:
        day = dt.date.fromisoformat(expires.strip())
    except ValueError:
        raise UsageError(f"--expires {expires!r} is not a date", "write it as YYYY-MM-DD") from None
    if day < dt.date.today():
        raise UsageError(f"--expires {day} is in the past", "give the day the credits expire")
    prepaid.set_balance(config.home(), provider, Decimal(credits), day)
    sys.stdout.write(f"{provider}: {credits:,} prepaid credits, expiring {day}\n")


@plans_app.command("show")
def plans_show(as_json: JsonOpt = False) -> None:
    """The prepaid balances: bought, left, the pace since they were set, and what will expire."""
    from imgroute.home import config
    from imgroute.home import credits as prepaid
    from imgroute.output import report
    from imgroute.output.text.console import print_json

    rows = report.balances(prepaid.read(config.home()).values(), dt.date.today())
    if as_json:
        print_json(rows)
        return
    if not rows:
        sys.stdout.write("no prepaid credits recorded (imgroute plans set PROVIDER --credits N --expires DATE)\n")
    for row in rows:
        sys.stdout.write(
            f"{row['provider']}: {row['left']:,.0f} of {row['bought']:,.0f} credits left, expiring {row['expires']}; "
            f"{row['per_day']:,.1f} a day so far, {row['expiring']:,.0f} would expire unused at that pace\n"
        )
