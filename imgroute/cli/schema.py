"""`imgroute schema [NAME]`: the JSON Schema (draft 2020-12) of each `--json` output, from the
module that builds them (imgroute.output.report), so that scripts can rely on the contract."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from imgroute.cli.app import app
from imgroute.errors import UsageError, quoted


@app.command()
def schema(
    name: Annotated[
        str | None,
        typer.Argument(
            help="An output's name, such as quote or batch-row; none to list them.", show_default=False, metavar="NAME"
        ),
    ] = None,
) -> None:
    """The JSON Schema of a `--json` output (always JSON); with no name, the names and what prints each."""
    from imgroute.output.catalog import SHAPES, document
    from imgroute.output.text.console import print_json

    if name is None:
        width = max(len(shape_name) for shape_name in SHAPES)
        for shape in SHAPES.values():
            sys.stdout.write(f"{shape.name:<{width}}  {shape.summary} ({shape.command})\n")
        return
    if name not in SHAPES:
        import difflib

        close = difflib.get_close_matches(name, SHAPES, n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        raise UsageError(f"no schema named {quoted(name)}", f"{guess}names: {', '.join(SHAPES)}")
    print_json(document(name))
