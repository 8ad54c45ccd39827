"""Tables that stay readable however narrow the terminal.

Given a table wider than the terminal, rich shrinks every column until it fits: costs become
`$0.…`, offer ids `openai/gpt-image…`, dates stack two digits a line. imgroute's tables are made of
things that must be read whole (costs, dates, offer and job ids that are typed back on the command
line), so a `Grid` says, column by column, how it may give way:

- a column is printed whole (never cut, folded or wrapped) unless it is `wrap` text (a reason, a
  prompt), which wraps at word boundaries only, never narrower than its longest word or `min_width`;
- a column with a `drop` rank is left out when the table does not fit, the lowest rank first (and
  a dim line says which were left out);
- when even the columns that are never dropped do not fit, each row becomes a block: its `head`
  cells on one line, aligned from block to block, its other cells below as indented `label: value`
  items.

When the whole table fits it is printed exactly as rich prints it, so output to a pipe (a console
100,000 columns wide) never changes. Every width is rich's own measurement (`Measurement.get`).
`print_wrapped` does the same for a line of prose: wrapped between words, never inside a date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from rich import box as boxes
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

INDENT = "    "  # a block's lines under its head line
HANGING = "  "  # more, for the second line of a wrapped item
GAP = "  "  # between the cells of a head line
SEP = " · "  # between the items of a detail line
_UNBOUNDED = 1_000_000  # measure as if nothing had to wrap


@dataclass(frozen=True)
class Column:
    header: str
    justify: Literal["left", "right"] = "left"
    wrap: bool = False  # text that may wrap at word boundaries; otherwise never cut, folded or wrapped
    drop: int | None = None  # None: always shown; otherwise left out when too wide, the lowest first
    head: bool = False  # stacked: on the block's first line (the id, the money), not an item below it
    label: str | None = None  # stacked: the item's name, when the header alone would not say it (an
    # unnamed column that is not `head`, a bar say, is left out of the stacked layout)
    min_width: int = 0  # a wrap column is never narrower (nor narrower than its longest word)


@dataclass
class Grid:
    """A table's columns and rows; `renderables(console)` lays it out for that console's width."""

    columns: list[Column]
    title: str | None = None
    box: boxes.Box = boxes.HEAVY_HEAD
    show_edge: bool = True
    rows: list[tuple[list[Text], str]] = field(default_factory=list)

    def add_row(self, *cells: str | Text, style: str = "") -> None:
        """Cells are printed as written: a str is never read as rich markup."""
        self.rows.append(([cell if isinstance(cell, Text) else Text(cell) for cell in cells], style))

    def print(self, console: Console, *after: RenderableType) -> None:
        """The grid and what follows it (notes), in one print."""
        console.print(*self.renderables(console), *after, sep="\n", crop=False)  # (crop: see _stacked)

    def renderables(self, console: Console) -> list[RenderableType]:
        wide = console.options.update_width(_UNBOUNDED)
        everything = list(range(len(self.columns)))
        full = self._table(everything)
        if Measurement.get(console, wide, full).maximum <= console.width:
            return [full]  # as it always was
        spans = [self._span(console, wide, i) for i in everything]
        for shown in self._fewer(everything):
            widths = self._fit(console, wide, shown, spans)
            if widths is not None:
                left_out = [self.columns[i].header for i in everything if i not in shown and self.columns[i].header]
                note = [Text(f"not shown at this width: {', '.join(left_out)}", style="dim")] if left_out else []
                return [self._table(shown, widths), *note]
        return [Group(*self._stacked(console, wide))]  # (a Group: print would merge the lines into one Text)

    # -- a table of the columns that fit ---------------------------------------------------------

    def _table(self, shown: list[int], widths: dict[int, int] | None = None) -> Table:
        table = Table(title=self.title, title_justify="left", box=self.box, show_edge=self.show_edge)
        for i in shown:
            column = self.columns[i]
            if widths is None:
                table.add_column(column.header, justify=column.justify)
            else:
                table.add_column(
                    column.header, justify=column.justify, width=widths[i], no_wrap=not column.wrap, overflow="fold"
                )
        for cells, style in self.rows:
            table.add_row(*(cells[i] for i in shown), style=style)
        return table

    def _span(self, console: Console, wide: ConsoleOptions, i: int) -> tuple[int, int]:
        """The narrowest a column may be (its whole width, or a wrap column's longest word or
        min_width) and its width on one line."""
        column = self.columns[i]
        measured = [Measurement.get(console, wide, Text(column.header))]
        measured += [Measurement.get(console, wide, cells[i]) for cells, _ in self.rows]
        widest = max(m.maximum for m in measured)
        if not column.wrap:
            return widest, widest
        return min(widest, max(column.min_width, *(m.minimum for m in measured))), widest

    def _fewer(self, everything: list[int]):
        """The columns to try, all of them first, then without each droppable one in turn."""
        shown = list(everything)
        yield list(shown)
        droppable = sorted((c.drop, -i) for i, c in enumerate(self.columns) if c.drop is not None)
        for _, minus_i in droppable:
            shown.remove(-minus_i)
            yield list(shown)

    def _fit(self, console, wide, shown: list[int], spans) -> dict[int, int] | None:
        """Widths for these columns within the console, or None: whole columns as wide as their
        content, wrap columns sharing what is left, up to their width on one line."""
        widths = {i: spans[i][0] for i in shown}
        least = Measurement.get(console, wide, self._table(shown, widths)).maximum  # borders and padding too
        if least > console.width:
            return None
        room = console.width - least
        growing = [i for i in shown if widths[i] < spans[i][1]]
        while room and growing:
            for i in list(growing):
                if not room:
                    break
                widths[i] += 1
                room -= 1
                if widths[i] >= spans[i][1]:
                    growing.remove(i)
        return widths

    # -- one block per row -----------------------------------------------------------------------

    def _stacked(self, console: Console, wide: ConsoleOptions) -> list[Text]:
        """Lines that already fit (an item wider than the terminal on its own, such as a long URL,
        is left whole on its line, for the terminal to wrap: hence crop=False when printing)."""

        def cells(text: Text | str) -> int:
            return Measurement.get(console, wide, Text(text) if isinstance(text, str) else text).maximum

        head = [i for i, c in enumerate(self.columns) if c.head]
        widths = {i: max([cells(self.columns[i].header)] + [cells(row[i]) for row, _ in self.rows]) for i in head}
        # The id (the first named head column) and unnamed marks (the winner's *) stay on the head
        # line; the others move under it if they must, in the order the table would drop them.
        named = [i for i in head if self.columns[i].header]
        demote = sorted(named[1:], key=lambda i: (self.columns[i].drop is None, self.columns[i].drop or 0, -i))
        while demote and sum(widths[i] for i in head) + cells(GAP) * (len(head) - 1) > console.width:
            head.remove(demote.pop(0))
        items = [i for i in range(len(self.columns)) if i not in head]

        def line(row: list[Text], style: str) -> Text:
            parts = []
            for n, i in enumerate(head):
                pad = " " * (widths[i] - cells(row[i]))
                last = n == len(head) - 1
                if self.columns[i].justify == "right":
                    parts.append(Text(pad) + row[i])
                else:
                    parts.append(row[i] if last else row[i] + Text(pad))
            joined = Text(GAP).join(parts)
            joined.rstrip()  # an empty last cell leaves no trailing spaces
            return _line(joined, style)

        out = [Text(self.title, style="table.title")] if self.title else []
        if len(head) > 1:
            out.append(line([Text(c.header) for c in self.columns], "table.header"))
        room = console.width - cells(INDENT)
        for row, style in self.rows:
            out.append(line(row, style))
            facts = [(self.columns[i], _named(self.columns[i], row[i])) for i in items if row[i].plain]
            facts = [(column, text) for column, text in facts if column.label or column.header]
            whole = [text for column, text in facts if not column.wrap]
            out += [_line(Text(INDENT) + text, style) for text in _fill(whole, room, SEP, cells)]
            for column, text in facts:
                if column.wrap:  # on line(s) of its own, the lines after the first indented further
                    words = list(text.split(" ", allow_blank=False))
                    lines = _fill(words, room, " ", cells, room - cells(HANGING))
                    indents = [Text(INDENT)] + [Text(INDENT + HANGING)] * (len(lines) - 1)
                    out += [_line(indent + text, style) for indent, text in zip(indents, lines, strict=True)]
        return out


def _line(text: Text, style: str = "") -> Text:
    """A line laid out already: rich must neither wrap nor cut it."""
    text = text.copy()
    if style:
        text.stylize_before(style)  # under the cells' own styles, as a table row's style is
    text.no_wrap, text.overflow = True, "ignore"
    return text


def _named(column: Column, cell: Text) -> Text:
    return Text(f"{column.label or column.header}: ") + cell


def _fill(items: list[Text], room: int, sep: str, cells, later: int | None = None) -> list[Text]:
    """Items (never split) packed into lines of at most `room` cells (`later` for the lines after
    the first); an item wider than that gets a line of its own."""
    lines: list[Text] = []
    for item in items:
        space = room if len(lines) == 1 or later is None else later  # (of the line it would go on)
        if lines and cells(lines[-1]) + cells(sep) + cells(item) <= space:
            lines[-1] = lines[-1] + Text(sep) + item
        else:
            lines.append(item)
    return lines


def print_wrapped(console: Console, text: str, keep: tuple[str, ...] = (), style: str = "", indent: str = "") -> None:
    """A line of prose, printed as written (no markup); on a terminal too narrow for it, wrapped at
    spaces but never inside `keep` (a date and its time, say), continuation lines indented."""
    wide = console.options.update_width(_UNBOUNDED)
    if Measurement.get(console, wide, Text(text)).maximum <= console.width:
        console.print(text, style=style, markup=False)
        return
    masked = text
    for kept in keep:  # each `keep` span is one word
        masked = masked.replace(kept, kept.replace(" ", "\0")) if kept else masked
    lead = masked[: len(masked) - len(masked.lstrip(" "))]
    words = [word.replace("\0", " ") for word in re.findall(r"\S+ *", masked)]  # each with the spaces after it

    def cells(item: str) -> int:
        return Measurement.get(console, wide, Text(item)).maximum

    lines = [lead]
    for word in words:
        if lines[-1].strip() and cells(lines[-1]) + cells(word.rstrip(" ")) > console.width:
            lines[-1] = lines[-1].rstrip(" ")
            lines.append(indent)
        lines[-1] += word
    console.print(Group(*(_line(Text(line.rstrip(" ")), style) for line in lines)), crop=False)
