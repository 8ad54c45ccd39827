"""`imgroute batch FILE`: plan every row, show the cost, ask, then run concurrently and resumably."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imgroute import options, policy, signals
from imgroute.cli.app import app
from imgroute.cli.options import Flags, JsonLinesOpt, RouteFlags, flag, opt, takes
from imgroute.errors import ImgrouteError, Interrupted, StdoutClosed, UsageError
from imgroute.money import fmt_usd
from imgroute.words import count

if TYPE_CHECKING:
    from imgroute.batches.run import BatchRun


@app.command()
@takes(RouteFlags)
def batch(
    where: Flags,
    *,
    file: Annotated[str, typer.Argument(help="JSON Lines or CSV, one job per row ('-' for stdin).", metavar="FILE")],
    max_total: Annotated[
        str | None, opt("--max-total", help="Most USD the whole batch may cost.", metavar="USD")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the images.", metavar="DIR")] = Path("."),
    concurrency: Annotated[int, typer.Option("--concurrency", help="Jobs at the providers at once.", metavar="N")] = (
        policy.DEFAULT_BATCH_CONCURRENCY
    ),
    timeout: Annotated[
        float, typer.Option("--timeout", help="Most seconds to wait for each job.", metavar="SECONDS")
    ] = (policy.DEFAULT_JOB_TIMEOUT_S),
    strict: Annotated[bool, flag("--strict", help="Refuse the whole file if any row is bad.")] = False,
    dry_run: Annotated[bool, flag("--dry-run", help="Show the plan; send nothing.")] = False,
    yes: Annotated[bool, flag("--yes", "-y", help="Run without asking (needed without a terminal).")] = False,
    as_json: JsonLinesOpt = False,
) -> None:
    """Many jobs from a file: planned and priced first, then run within every provider's limits."""
    from imgroute import api
    from imgroute.output import report
    from imgroute.output.text.batches import print_batch_plan
    from imgroute.output.text.console import print_json, stderr_console, stdout_console

    planned = api.plan_batch(file, **where.api_options())
    for item in planned.bad:
        sys.stderr.write(f"{planned.label}:{item.line}: {item.problem}\n")
    if planned.bad and strict:
        hint = "fix them, or drop --strict to skip them"
        raise UsageError(f"{count(len(planned.bad), 'bad row')} in {planned.label}", hint)
    if not planned.rows:
        refused = count(len(planned.bad), "row")
        raise UsageError(f"no usable rows in {planned.label}: {refused} refused, each said above", "fix them")
    the_plan = planned.plan
    shown = report.batch_plan(the_plan, planned.pacing, planned.bad)
    if as_json and dry_run:
        print_json(shown)
    elif not as_json:
        print_batch_plan(stderr_console() if not dry_run else stdout_console(), shown)
    if dry_run:
        return
    api.check_batch(planned, max_total)
    if the_plan.rows and not yes and not _confirmed(the_plan):  # (a finished file asks nothing)
        sys.stderr.write("nothing was sent\n")
        return
    routing = [(option.flag, getattr(where, option.name)) for option in (*options.ROUTE, options.BY_NAME["pricing"])]
    again = _rerun_command(
        file,
        [
            *(pair for pair in routing if pair[0] != "--rank" or pair[1] != "price"),
            ("--max-total", max_total),
            ("--out", out if out != Path(".") else None),
            ("--concurrency", concurrency if concurrency != policy.DEFAULT_BATCH_CONCURRENCY else None),
            ("--timeout", timeout if timeout != policy.DEFAULT_JOB_TIMEOUT_S else None),
            ("--json", as_json),
        ],
    )
    paced = max((p["min_minutes"] or 0) for p in shown["pacing"]) * 60 if shown["pacing"] else 0.0
    _Run(planned, as_json, paced).go(again, out=out, concurrency=concurrency, timeout=timeout, max_total=max_total)


def _confirmed(the_plan) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("no terminal to confirm the batch", "pass --yes to run it")
    left = f" ({len(the_plan.done_before)} done before)" if the_plan.done_before else ""
    return typer.confirm(f"Run {len(the_plan.rows)} jobs for about {fmt_usd(the_plan.total)}{left}?", err=True)


def _rerun_command(file: str, options: list[tuple[str, object]]) -> str:
    """The same command, to finish an interrupted batch (its rows are found by file and content)."""
    parts = ["imgroute", "batch", file]
    for name, value in options:
        values = value if isinstance(value, list) else [value]
        for one in values:
            if one is True:
                parts.append(name)
            elif one not in (None, False):
                parts += [name, f"{one:g}" if isinstance(one, float) else str(one)]
    command = shlex.join([*parts, "--yes"])
    return f"{command} (with the same rows on stdin)" if file == "-" else command


class _Run:
    """Running a planned batch (api.run_batch): the rows' results reported as they end, the summary
    at the end, and how it stops (a second Ctrl-C, a closed stdout)."""

    def __init__(self, planned, as_json: bool, paced: float):
        from imgroute.batches.run import Outcome
        from imgroute.output.text.batches import BatchProgress

        self.planned, self.plan, self.as_json = planned, planned.plan, as_json
        rows = len(self.plan.runs())  # what earlier runs did too: each row gets its line
        self.progress = BatchProgress(rows, self.plan.total, enabled=not as_json, paced_seconds=paced)
        self.counts = dict.fromkeys(Outcome, 0)
        self.failed: ImgrouteError | None = None  # the first failed row's error: the batch exits with its code
        self.runner: BatchRun | None = None  # the BatchRun, once it starts
        self.stdout_gone = False  # its reader went away: the batch stops as on Ctrl-C, then exits 141

    def go(self, again: str, **running) -> None:
        from imgroute import api
        from imgroute.output import report
        from imgroute.output.text.batches import print_batch_summary
        from imgroute.output.text.console import stdout_console

        started = time.monotonic()
        with self.progress:
            if self.as_json:  # every row gets its line: the bad ones first, then those no offer serves
                for item in self.planned.bad:
                    self.write_line(report.bad_row(item))
            try:
                api.run_batch(
                    self.planned,
                    on_result=self.report,
                    on_stop=self.stopping,
                    idle=self.watch_stdout,
                    on_start=self.started,
                    **running,
                )
            except KeyboardInterrupt:
                if self.runner is not None and self.runner.left_running:
                    self.leave(again)
                raise self.stopped(again) from None
        if not self.as_json:
            elapsed = time.monotonic() - started
            print_batch_summary(
                stdout_console(), self.counts, self.progress.spent, self.plan.total, self.plan.whole, elapsed
            )
        if self.failed is not None:
            raise self.failed

    def started(self, runner) -> None:
        self.runner = runner
        if self.stdout_gone:  # (it went while the first lines were written)
            runner.request_stop()

    def stopped(self, again: str) -> ImgrouteError:
        """How the stopped run ended, counted as it is: rows done, and rows never sent."""
        from imgroute.batches.run import Outcome

        done, unsent = self.counts[Outcome.DONE], self.counts[Outcome.NOT_STARTED]
        said = f"{count(done, 'row')} done, {count(unsent, 'row')} not started (nothing was sent for them)"
        reported = sum(self.counts.values()) - self.counts[Outcome.UNSERVABLE]  # (runs() leaves those out)
        unread = len(self.plan.runs()) - reported  # the file's rows the run never reached
        if unread:
            said += f", {count(unread, 'row')} not reached"
        hint = f"run the same command again to finish (nothing is sent twice): {again}"
        if self.stdout_gone:
            return StdoutClosed(f"stdout was closed: {said}; what was sent was finished and saved", hint)
        return Interrupted(f"{signals.stop_word()}: {said}", hint)

    def stopping(self, sent: int) -> None:
        why = "stdout was closed" if self.stdout_gone else f"{signals.stop_word()}"
        them = "it" if sent == 1 else "them"
        again = "" if self.stdout_gone else f" (Ctrl-C again to leave {them} for the next run)"
        waiting = f"waiting for the {count(sent, 'job')} already sent to finish and be recorded{again}" if sent else ""
        sys.stderr.write(f"{why}: no new request is sent{'; ' + waiting if waiting else ''}\n")
        sys.stderr.flush()

    def leave(self, again: str) -> None:
        """A second Ctrl-C: say what is left, and end the process at once (worker threads may be
        inside a step; they must not run into the interpreter's shutdown)."""
        assert self.runner is not None, "only a run that started has jobs left running"
        left = self.runner.left_running
        sys.stderr.write(
            f"error: {signals.stop_word()}; {count(left, 'job')} already sent {'was' if left == 1 else 'were'} left at "
            f"{'its provider' if left == 1 else 'their providers'}, journaled; "
            f"run the same command again to finish {'it' if left == 1 else 'them'} (nothing is sent twice): {again}\n"
        )
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.flush()
        sys.stderr.flush()
        os._exit(signals.exit_code())

    def write_line(self, data: dict) -> None:
        """One JSON line on stdout, as its row ends (a closed stdout stops the batch: see below)."""
        if self.stdout_gone:
            return
        try:
            sys.stdout.write(json.dumps(data) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            self.stdout_lost()

    def watch_stdout(self) -> None:
        """Between results: a reader of stdout that went away (`| head -1`) stops the batch as
        Ctrl-C does (found here before the next row's line would fail to be written)."""
        if not self.stdout_gone and signals.stdout_closed():
            self.stdout_lost()

    def stdout_lost(self) -> None:
        self.stdout_gone = True
        signals.discard_stdout()
        if self.runner is not None:
            self.runner.request_stop()

    def report(self, row_result) -> None:
        from imgroute.output import report

        self.counts[row_result.outcome] += 1
        if row_result.code is not None and self.failed is None:  # the first failed row sets the exit code
            result = row_result.result
            error = result.error if result is not None and result.error is not None else None
            self.failed = error or ImgrouteError(
                f"row {row_result.row.line} failed: {row_result.note}", "see its line in the output"
            )
            self.failed.exit_code = row_result.code
        if self.as_json:
            self.write_line(report.batch_row(row_result))
        if row_result.outcome != "unservable":  # the progress bar counts the rows that run
            self.progress.update(row_result, running=self.runner.running if self.runner is not None else 0)
