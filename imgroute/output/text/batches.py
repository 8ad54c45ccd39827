"""`imgroute batch` as a person reads it: the plan, the live progress line and the summary."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from rich.console import Console

from imgroute.money import fmt_usd
from imgroute.output.text.console import Terminal, usd_or_dash
from imgroute.output.text.layout import Column, Grid
from imgroute.words import count

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def _minutes(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _by_reason(items: list[dict]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for item in items:
        grouped.setdefault(item["reason"], []).append(item["line"])
    return grouped


def _lines(lines: list[int], shown: int = 5) -> str:
    if len(lines) == 1:
        return f"line {lines[0]}"
    listed = ", ".join(str(n) for n in lines[:shown])
    more = f" and {len(lines) - shown} more" if len(lines) > shown else ""
    return f"lines {listed}{more} ({len(lines)} rows)"


def print_batch_plan(console: Console, plan: dict) -> None:
    console.print(
        f"Batch plan: {count(plan['rows'], 'row')}, {count(plan['images'], 'image')}, "
        f"about {usd_or_dash(plan['estimated_usd'])}",
        style="bold",
        markup=False,
    )
    _print_earlier(console, plan)
    if plan["by_offer"]:
        columns = [
            Column("offer", head=True),
            Column("rows", "right", drop=1, head=True),
            Column("images", "right", drop=0, head=True),
            Column("estimated", "right", head=True),
        ]
        grid = Grid(columns)
        for row in plan["by_offer"]:
            grid.add_row(row["offer"], str(row["rows"]), str(row["images"]), usd_or_dash(row["estimated_usd"]))
        grid.print(console)
    for pace in plan["pacing"]:
        if pace["min_minutes"] is not None and pace["min_minutes"] >= 1:  # worth knowing before saying yes
            console.print(
                f"{pace['provider']}: {pace['submits']} submits at {pace['per_minute']:g}/min take at least "
                f"{_minutes(pace['min_minutes'])} (raise limits.{pace['provider']}.per_minute in config.yaml "
                "if your account allows more)",
                style="yellow",
                markup=False,
            )
    for reason, lines in _by_reason(plan["unservable"]).items():  # one line per reason, not per row
        console.print(
            f"{_lines(lines)}: no offer can serve {'it' if len(lines) == 1 else 'them'} ({reason})",
            style="yellow",
            markup=False,
        )
    if plan["bad_rows"]:
        console.print(f"{count(len(plan['bad_rows']), 'bad row')} skipped", style="yellow")
    for caveat in plan.get("caveats", ()):  # about the offers the rows go to: before anything is paid
        console.print(f"caveat: {caveat}", style="yellow", markup=False)


def _print_earlier(console: Console, plan: dict) -> None:
    """What earlier runs of the file did: rows done (and where their images are), rows not retried."""
    if plan["done_before"]:
        places = sorted({d["out_dir"] for d in plan["done_before"] if d["out_dir"]})
        where = f"; their images are in {', '.join(places)}" if places else ""
        console.print(f"{count(len(plan['done_before']), 'row')} done before, not run again{where}", markup=False)
    if plan["not_retried"]:
        lines = [d["line"] for d in plan["not_retried"]]
        console.print(f"{_lines(lines)}: failed before and not retried", style="yellow", markup=False)


class BatchProgress:
    """Done / failed / running, spend so far against the estimate, rate and ETA, on stderr."""

    def __init__(self, total: int, estimate: Decimal, enabled: bool = True, paced_seconds: float = 0.0):
        """`paced_seconds`: the least time the providers' submit rates allow for the run (the ETA
        is never shorter than what is left of it)."""
        self.total, self.estimate, self.paced_seconds = total, estimate, paced_seconds
        self.console = Terminal(stderr=True, highlight=False)
        self.enabled = enabled and self.console.is_terminal
        self.spent = Decimal(0)
        self.counts = {"done": 0, "failed": 0, "not_started": 0, "other": 0}
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> BatchProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("batch"),
                BarColumn(bar_width=None),  # whatever the counts leave: they matter more
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TextColumn("{task.fields[eta]}", style="cyan"),
                console=self.console,
                expand=True,
            )
            self._progress.__enter__()
            eta = _clock(self.paced_seconds) if self.paced_seconds else "-:--:--"
            self._task = self._progress.add_task("batch", total=self.total, detail="", eta=eta)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, row_result, running: int = 0) -> None:
        key = row_result.outcome if row_result.outcome in self.counts else "other"
        self.counts[key] += 1
        done_before = row_result.outcome == "skipped"  # (its recorded cost was spent by an earlier run)
        if row_result.result is not None and row_result.result.actual is not None and not done_before:
            self.spent += row_result.result.actual
        if self._progress is not None and self._task is not None:  # (both set on entering)
            finished = sum(self.counts.values())
            elapsed = self._progress.tasks[0].elapsed or 0
            rate = finished / elapsed * 60 if elapsed else 0
            by_rate = (self.total - finished) / (finished / elapsed) if finished and elapsed else 0.0
            eta = max(by_rate, self.paced_seconds - elapsed, 0.0)  # pacing bounds it from below
            self._progress.update(self._task, completed=finished, detail=self._detail(running, rate), eta=_clock(eta))

    # Room the other columns need at the least: "batch", a short bar, "4999/5000", "0:00:00", gaps.
    OTHER_COLUMNS = 40

    def _detail(self, running: int, rate: float) -> str:
        """The counts in full, or (on a narrow terminal, rather than squeezing the counts into
        "1…") without the rate and with the money in cents."""
        done, failed = self.counts["done"], self.counts["failed"]
        full = (
            f"{done} done, {failed} failed, {running} running, "
            f"{fmt_usd(self.spent)} of ~{fmt_usd(self.estimate)}, {rate:.0f}/min"
        )
        if self.counts["not_started"]:  # stopped rows are not done
            full += f", {self.counts['not_started']} not started"
        if len(full) + self.OTHER_COLUMNS <= self.console.width:
            return full
        short = f"{done} done {failed} failed {running} running ${self.spent:.2f}/~${self.estimate:.2f}"
        return short + (f" {self.counts['not_started']} not started" if self.counts["not_started"] else "")


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def print_batch_summary(
    console: Console, counts: dict, spent: Decimal, estimate: Decimal, whole: Decimal, elapsed: float
) -> None:
    """`estimate`: what this run was to spend; `whole`: the whole file's, rows done before included."""
    parts = [
        f"{counts[k]} {k.replace('_', ' ')}"
        for k in ("done", "skipped", "failed", "unservable", "not_started")
        if counts[k]
    ]
    # A rerun skips rows paid for before: the whole file's estimate covers them, this run's does not.
    said = f"estimated {fmt_usd(whole)} for the whole file" if counts["skipped"] else f"estimated {fmt_usd(estimate)}"
    left = counts["done"] + counts["failed"] + counts["not_started"]  # rows this run had to do
    if counts["skipped"] and left and estimate and estimate != whole:
        said = f"{fmt_usd(estimate)} left to do; {said}"
    console.print(
        f"batch: {', '.join(parts) or 'nothing to do'}; spent {fmt_usd(spent)} this run ({said}) in {elapsed:.1f}s",
        markup=False,
    )
