"""Money as a person reads it: `imgroute spend` (and `--savings`) and `imgroute advise`."""

from __future__ import annotations

from decimal import Decimal

from rich import box
from rich.console import Console

from imgroute.money import fmt_usd
from imgroute.output.text.console import usd_or_dash
from imgroute.output.text.layout import Column, Grid


def print_spend(console: Console, data: dict) -> None:
    for name in ("day", "month", "provider", "offer", "quality", "machine", "total"):
        rows = data[name]
        if name == "machine" and len(rows) < 2:  # (one machine's ledger: nothing to tell apart)
            continue
        if name == "offer":
            _print_offers(console, rows)
            continue
        columns = [
            Column(name, head=True),
            Column("attempts", "right", drop=0),
            Column("images", "right", drop=1),
            Column("estimated", "right", head=True),
            Column("actual", "right", head=True),
            Column("drift", "right", head=True),
            Column("in flight", "right", drop=2),
        ]
        grid = Grid(columns, title=f"by {name}" if name != "total" else "total")
        for row in rows:
            grid.add_row(
                str(row["key"]),
                str(row["attempts"]),
                str(row["images"]),
                usd_or_dash(row["estimated_usd"]),
                usd_or_dash(row["actual_usd"]),
                _drift(row["drift_pct"]),
                usd_or_dash(row["in_flight_usd"]),
            )
        grid.print(console)


def _print_offers(console: Console, rows: list[dict]) -> None:
    """By offer, with what the providers said they charged beside imgroute's pricing of the same
    jobs; an offer whose stated charges are more than 5% off pricing.yaml is flagged."""
    columns = [
        Column("offer", head=True),
        Column("attempts", "right", drop=0),
        Column("estimated", "right", drop=1),
        Column("actual", "right", head=True),
        Column("drift", "right", head=True),
        Column("stated", "right", drop=2),
        Column("stated vs table", "right", head=True),
    ]
    grid = Grid(columns, title="by offer")
    for row in rows:
        flag = " !" if row["flagged"] else ""
        grid.add_row(
            row["key"],
            str(row["attempts"]),
            usd_or_dash(row["estimated_usd"]),
            usd_or_dash(row["actual_usd"]),
            _drift(row["drift_pct"]),
            usd_or_dash(row["stated_usd"]),
            _drift(row["stated_drift_pct"]) + flag,
        )
    grid.print(console)
    for row in rows:
        if row["flagged"]:
            console.print(
                f"warning: {row['key']}: what it says it charged differs from pricing.yaml by "
                f"{row['stated_drift_pct']:+.2f}%: re-check its price and update pricing.yaml",
                highlight=False,
            )


def _drift(pct: float | None) -> str:
    """+1.5%, -0.3%; a drift that rounds to nothing has no sign."""
    if pct is None:
        return "-"
    text = f"{pct:+.1f}%"
    return text[1:] if text in ("+0.0%", "-0.0%") else text


def print_advice(console: Console, data: dict) -> None:
    """`imgroute advise`: the month with routing, a bar per single route, each plan's break-even."""
    routed = data["routed_usd"]
    console.print(
        f"a month of {data['images_per_month']:,g} images ({data['source']}): "
        f"${routed:,.2f} with imgroute's routing (per-job minimum ${data['floor_usd']:,.2f})",
        markup=False,
    )
    if data["unservable_rows"]:
        console.print(f"{_unserved(data['unservable_rows'], 12)} no offer can serve (left out)", markup=False)
    priced = [m for m in data["by_offer"] if m["usd"] is not None]
    widest = max([routed, *(m["usd"] for m in priced)], default=routed) or 1
    columns = [
        Column("route", head=True),
        Column("plan", head=True),
        Column("month", "right", head=True),
        Column("vs routing", "right", wrap=True, min_width=20),
        Column("", drop=0),  # the bar: the first to go
    ]
    table = Grid(columns, box=box.SIMPLE_HEAD, show_edge=False)
    table.add_row("imgroute routing", "", f"${routed:,.2f}", "", _bar(routed, widest), style="bold")
    for m in data["by_offer"]:
        if m["excluded"]:
            table.add_row(m["offer"], m["plan"], "-", m["excluded"], "")
            continue
        if m["usd"] is None:
            table.add_row(m["offer"], m["plan"], "-", f"cannot serve {_unserved(m['unservable_rows'])}", "")
            continue
        more = m["usd"] - routed
        pct = f" ({m['saving_pct']:.0f}%)" if m["saving_pct"] is not None else ""
        table.add_row(m["offer"], m["plan"], f"${m['usd']:,.2f}", f"+${more:,.2f}{pct}", _bar(m["usd"], widest))
    table.print(console)
    best = data["cheapest_single"]
    if best:
        console.print(
            f"routing saves ${best['saving_usd']:,.2f} ({best['saving_pct']:.0f}%) a month against the cheapest "
            f"single route, {best['offer']} ({best['plan']})",
            markup=False,
        )
    for row in data.get("prepaid", []):
        console.print(
            f"prepaid {row['provider']} credits: {row['left']:,.0f} left, expiring {row['expires']}; at the pace "
            f"so far ({row['per_day']:,.1f} a day) {row['expiring']:,.0f} will expire unused",
            markup=False,
        )
    for b in data["break_even"]:
        status = "past it this month" if b["past_it"] else "not reached this month"
        if b["images_per_month"] is None:
            console.print(
                f"{b['offer']} {b['plan']} (${b['monthly_usd']:g}/month): never pays off for this mix: {b['why']}",
                markup=False,
            )
        else:
            console.print(
                f"{b['offer']} {b['plan']} (${b['monthly_usd']:g}/month): {b['why']}; this month "
                f"{b['this_month_images']:,.0f} images: {status}, {b['unused_credits']:,.0f} credits unused",
                markup=False,
            )


def _unserved(rows: list, shown: int = 6) -> str:
    """Rows of a mix file (by their number), or jobs of the ledger (by their id, for `jobs show`)."""
    noun = "job" if rows and isinstance(rows[0], str) else "row"
    listed = ", ".join(map(str, rows[:shown])) + (f" and {len(rows) - shown} more" if len(rows) > shown else "")
    return f"{noun}{'s' if len(rows) > 1 else ''} {listed}"


def _bar(value: float, widest: float, width: int = 30) -> str:
    return "█" * max(1, round(value / widest * width)) if value else ""


def print_savings(console: Console, data: dict) -> None:
    """`imgroute spend --savings`: what the jobs cost, and what they would have cost without routing."""
    if not data["savings"]:
        console.print("no succeeded jobs in the ledger for that time")
        return
    columns = [
        Column("period", head=True),
        Column("jobs", "right", head=True),
        Column("spent", "right", head=True),
        Column("at the default offer"),  # an offer id and its cost: whole
        Column("saved", "right", label="saved vs the default"),
        Column("at the cheapest single offer"),
        Column("saved", "right", label="saved vs the cheapest"),
    ]
    table = Grid(columns, box=box.SIMPLE_HEAD, show_edge=False)

    def money(value) -> str:
        return fmt_usd(Decimal(str(value)), places=2) if value is not None else "-"  # (-$0.02, not $-0.02)

    for row in data["savings"]:
        default = (
            f"{row['default_offer']} {money(row['at_default_usd'])}"
            if row["at_default_usd"] is not None
            else f"{row['default_offer']}: cannot serve them all"
        )
        cheapest = f"{row['cheapest_offer']} {money(row['at_cheapest_usd'])}" if row["cheapest_offer"] else "-"
        table.add_row(
            row["period"],
            str(row["jobs"]),
            money(row["spent_usd"]),
            default,
            money(row["saved_vs_default_usd"]),
            cheapest,
            money(row["saved_vs_cheapest_usd"]),
        )
    table.print(console)
