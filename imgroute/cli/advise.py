"""`imgroute advise`: a month of your work priced every way, with each monthly plan's break-even."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated

from imgroute.cli.app import app
from imgroute.cli.options import DeadlineOpt, JsonOpt, PlanOpt, PricingOpt, opt, parse_day
from imgroute.errors import UsageError
from imgroute.session import ledger, load_table_and_settings


@app.command()
def advise(
    mix: Annotated[
        Path | None, opt("--mix", help="A month of work: YAML list or CSV of rows with a count.", metavar="FILE")
    ] = None,
    since: Annotated[
        str | None, opt("--since", help="Or the ledger's jobs since YYYY-MM-DD (default: 30 days).", metavar="DATE")
    ] = None,
    plan: PlanOpt = None,
    deadline: DeadlineOpt = None,
    pricing: PricingOpt = None,
    plot: Annotated[
        Path | None, opt("--plot", help="Also draw the charts into FILE.png or FILE.svg.", metavar="FILE")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What a month costs with imgroute's routing, at every single offer and plan, and from how
    many images each monthly plan pays off."""
    from imgroute.advice import month as advice
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stdout_console
    from imgroute.output.text.money import print_advice
    from imgroute.request import build_constraints

    if mix is not None and since is not None:
        raise UsageError("give --mix or --since, not both", "--mix prices a planned month, --since your history")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--plot {plot} is not a .png or .svg file", "for example --plot month.png")
    table, settings = load_table_and_settings(pricing)
    constraints = build_constraints(table, settings, plan=plan, deadline=deadline)
    if mix is not None:
        rows, source = advice.read_mix(mix.expanduser()), str(mix)
    else:
        start = parse_day(since, "--since").timestamp() if since else time.time() - 30 * 86400
        with ledger() as journal:
            records = journal.jobs(("succeeded",), None, start, None, 1_000_000)
        if not records:
            raise UsageError("no succeeded jobs in the ledger for that time", "price a planned month with --mix FILE")
        days = (time.time() - start) / 86400
        rows, source = advice.history_rows(records, days), f"{len(records)} jobs since {dt.date.fromtimestamp(start)}"
    result = advice.advise(rows, table, constraints)
    data = report.advice(result, source)
    data["prepaid"] = report.balances(table.balances.values(), dt.date.today())
    if plot is not None:
        from imgroute.advice.plots import advice_charts

        advice_charts(data, plot)
    if as_json:
        print_json(data)
    else:
        print_advice(stdout_console(), data)
        if plot is not None:
            stdout_console().print(f"charts: {plot}", markup=False)
