"""`imgroute budget` (caps) and `imgroute spend` (what was spent, estimated against actual)."""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Annotated

import typer

from imgroute.cli.app import app
from imgroute.cli.options import JsonOpt, flag, opt, parse_day
from imgroute.errors import UsageError
from imgroute.session import ledger

budget_app = typer.Typer(help="Daily and monthly spending caps.", no_args_is_help=True)
app.add_typer(budget_app, name="budget")


def _cap(text: str | None, flag: str) -> Decimal | None:
    from imgroute.request import parse_money

    if text is None or text.strip().lower() in ("none", "off"):
        return None
    return parse_money(text, flag)


@budget_app.command("set")
def budget_set(
    daily: Annotated[
        str | None, opt("--daily", help="Most USD per calendar day ('none' to clear).", metavar="USD")
    ] = None,
    monthly: Annotated[
        str | None, opt("--monthly", help="Most USD per calendar month ('none' to clear).", metavar="USD")
    ] = None,
) -> None:
    """Set spending caps, checked before every submit against what is spent and in flight."""
    if daily is None and monthly is None:
        raise UsageError("nothing to set", "give --daily USD and/or --monthly USD")
    caps = {}
    if daily is not None:
        caps["daily"] = _cap(daily, "--daily")
    if monthly is not None:
        caps["monthly"] = _cap(monthly, "--monthly")
    with ledger() as journal, journal.transaction() as tx:
        for period, cap in caps.items():
            tx.set_budget(period, cap)
    budget_show(as_json=False)


@budget_app.command("show")
def budget_show(as_json: JsonOpt = False) -> None:
    """The caps, what is spent (including jobs in flight), what is left and when each resets."""
    from imgroute.jobs.budget import cap_states
    from imgroute.money import fmt_usd
    from imgroute.output import report
    from imgroute.output.text.console import print_json

    with ledger() as journal:
        states = cap_states(journal)
    rows = report.budget(states)
    if as_json:
        print_json(rows)
        return
    for row, state in zip(rows, states, strict=True):
        cap = f"${row['cap_usd']:g}" if row["cap_usd"] is not None else "no cap"
        left = f", ${row['left_usd']:g} left" if row["left_usd"] is not None else ""
        possibly = state["possibly_charged"]
        risk = f" ({fmt_usd(possibly)} of it possibly charged)" if possibly else ""
        sys.stdout.write(
            f"{row['period']:<8} {cap}: ${row['spent_usd']:g} spent{risk}{left} (resets {row['resets']})\n"
        )
    if any(state["possibly_charged"] for state in states):
        _say_possibly_charged("")


def _say_possibly_charged(lead: str) -> None:
    """What `budget show` and `spend` say under their figures when failed requests may have been charged."""
    from imgroute.output.text.console import stdout_console
    from imgroute.output.text.layout import print_wrapped

    print_wrapped(
        stdout_console(),
        f"{lead}possibly charged: requests a provider failed without saying whether it charged, counted until "
        "settled (see imgroute jobs show JOB, then imgroute jobs settle JOB --charged or --not-charged)",
        indent="  ",
    )


@app.command()
def spend(
    since: Annotated[str | None, opt("--since", help="Only spending on or after YYYY-MM-DD.", metavar="DATE")] = None,
    savings: Annotated[
        bool, flag("--savings", help="What routing saved: the same jobs at the default offer and the cheapest one.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """What was spent, by day, month, provider, quality and machine: estimated vs actual, and the drift."""
    from imgroute.jobs.budget import spend_summary
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stdout_console
    from imgroute.output.text.money import print_spend

    start = parse_day(since, "--since").timestamp() if since else None
    if savings:
        _savings(start, as_json)
        return
    with ledger() as journal:
        rows = journal.spend_rows(start)
    summary = spend_summary(rows)
    data = report.spend(summary)
    if as_json:
        print_json(data)
        return
    print_spend(stdout_console(), data)
    possibly = sum((group["possibly_charged"] for group in summary["total"]), Decimal(0))
    if possibly:  # inside "in flight": never counted as spent
        from imgroute.money import fmt_usd

        _say_possibly_charged(f"in flight includes {fmt_usd(possibly)} ")


def _savings(start: float | None, as_json: bool) -> None:
    """`spend --savings`: per month, the jobs' cost against the default offer and the cheapest one."""
    from imgroute.advice import month as advice
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stdout_console
    from imgroute.output.text.money import print_savings
    from imgroute.request import build_constraints
    from imgroute.session import load_table_and_settings

    table, settings = load_table_and_settings(None)
    if all(offer.id != settings.default_offer for offer in table.offers):
        from imgroute.errors import ConfigError

        raise ConfigError(
            f"{settings.path}: default_offer {settings.default_offer!r} is not an offer",
            f"offers: {', '.join(o.id for o in table.offers)}",
        )
    with ledger() as journal:
        records = journal.jobs(("succeeded",), None, start, None, 1_000_000)
    rows = advice.savings(records, table, build_constraints(table, settings), settings.default_offer)
    data = report.savings(rows)
    if as_json:
        print_json(data)
    else:
        print_savings(stdout_console(), data)
