"""Where a person's text goes: stdout and stderr as rich consoles (whole lines when piped, a
closed pipe ended quietly), JSON written plainly, and the cell for an amount that may be missing."""

from __future__ import annotations

import sys
from decimal import Decimal

from rich.console import Console

from imgroute.money import fmt_usd

# Piped into a file, a pager or grep, no line is wrapped: a table is as wide as its content.
PIPE_WIDTH = 100_000


class Terminal(Console):
    """rich's Console, but a reader that went away (`| head -1`) is a broken pipe for the CLI to end
    quietly with 141, as Unix tools do (rich's own answer is exit 1)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def stdout_console() -> Console:
    console = Terminal(highlight=False)
    if not console.is_terminal:
        console = Terminal(highlight=False, width=PIPE_WIDTH, soft_wrap=True)
    return console


def stderr_console() -> Console:
    console = Terminal(stderr=True, highlight=False)
    if not console.is_terminal:  # as stdout: a log file gets whole lines
        console = Terminal(stderr=True, highlight=False, width=PIPE_WIDTH, soft_wrap=True)
    return console


def print_json(data: object) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def usd_or_dash(value: float | None) -> str:
    return "-" if value is None else fmt_usd(Decimal(str(value)))
