"""The table as a person reads it: `imgroute providers` (what each offer can do), `imgroute pricing`
(every figure with its source and date) and `imgroute config` (each setting and where it comes from)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from imgroute.output import report
from imgroute.output.text.layout import Column, Grid
from imgroute.pricing.table import PricingTable


def print_providers(console: Console, table: PricingTable) -> None:
    columns = [
        Column("provider/model", head=True),
        Column("quality"),
        Column("sizes", wrap=True, min_width=20),
        Column("n/req", label="images per request"),
        Column("prompt", label="prompt limit"),
        Column("edit", wrap=True, min_width=20),
        Column("price", wrap=True, min_width=20),
    ]
    grid = Grid(columns, title="What each GPT Image 2 offer can do")
    for offer in table.offers:
        caps = report.offer_json(offer)
        qualities = "/".join(caps["qualities"]) + ("" if offer.quality_selectable else " (fixed)")
        n = str(offer.images_per_request)
        grid.add_row(
            offer.id,
            qualities,
            caps["sizes"],
            n,
            f"{offer.prompt_max_chars:,}",
            caps["edit"],
            caps["price"],
        )
    grid.print(console)


def print_pricing(console: Console, rows: list[dict], notes: list[str]) -> None:
    columns = [
        Column("provider", head=True),
        Column("what", head=True),
        Column("value", wrap=True, min_width=20),
        Column("observed", head=True),
        Column("source", wrap=True),  # a URL: one word, never broken
    ]
    grid = Grid(columns, title="Pricing table: every figure with its source")
    for row in rows:
        observed = f"{row['observed']} ({row['age_days']}d)"
        grid.add_row(
            row["provider"],
            row["what"],
            row["value"],
            Text(observed, style="yellow" if row["stale"] else ""),
            row["source"],
        )
    grid.print(console)
    for note in notes:
        console.print(f"note: {note}", style="dim")


def print_config(console: Console, settings) -> None:
    """`imgroute config`: each setting, its value and where it comes from."""
    import json

    grid = Grid(
        [Column("setting", head=True), Column("value", wrap=True, min_width=20), Column("from", wrap=True)],
        title="Settings in effect",
    )
    for setting in settings:
        value = setting.value if isinstance(setting.value, str) else json.dumps(setting.value)
        grid.add_row(setting.name, value, setting.source)
    grid.print(console)
