"""`imgroute batch FILE`: plan every row, show the cost, ask, then run concurrently and resumably."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from imgroute import config, policy, signals
from imgroute.cli import app
from imgroute.cli.options import JsonLinesOpt, RouteFlags, flag, opt, takes
from imgroute.errors import ImgrouteError, Interrupted, NoOfferError, StdoutClosed, UsageError
from imgroute.money import fmt_usd
from imgroute.session import Keys, check_out_dir, ledger, load_table_and_settings
from imgroute.words import count


@app.command()
@takes(RouteFlags)
def batch(
    where: RouteFlags,
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
    from imgroute import render, report
    from imgroute.batch import batch_label
    from imgroute.batch import plan as make_plan
    from imgroute.budget import check_batch
    from imgroute.providers import provider_limits
    from imgroute.request import check_timeout, parse_money
    from imgroute.router import RouteCache

    if concurrency < 1 or concurrency > 500:
        raise UsageError(f"--concurrency {concurrency} is out of range", "use 1 to 500")
    check_timeout(timeout)
    total_cap = parse_money(max_total, "--max-total") if max_total is not None else None
    table, settings = load_table_and_settings(where.pricing)  # first: a row may name a declared relay
    rows, bad, label = _read_rows(file, strict)
    constraints = where.constraints(table, settings)
    keys = Keys()
    routes = RouteCache(table, keys.available)
    file_key = batch_label(label)
    with ledger() as journal:
        priors = journal.jobs_for_rows(file_key)  # a rerun plans only what is left to do
    the_plan = make_plan(rows, routes, constraints, priors, file_key, settings.pricing_max_age_days)
    shown = report.batch_plan(the_plan, the_plan.pacing(provider_limits(settings.limits)), bad)
    if as_json and dry_run:
        render.print_json(shown)
    elif not as_json:
        render.print_batch_plan(render.stderr_console() if not dry_run else render.stdout_console(), shown)
    if dry_run:
        return
    if not the_plan.rows and not (the_plan.done_before or the_plan.not_retried):
        raise NoOfferError("no row of the batch can be served", "see the reasons in the plan")
    with ledger() as journal:
        check_batch(journal, the_plan.total, total_cap)
    if the_plan.rows and not yes and not _confirmed(the_plan):  # (a finished file asks nothing)
        sys.stderr.write("nothing was sent\n")
        return
    again = _rerun_command(
        file,
        [
            ("--provider", where.provider),
            ("--exclude", where.exclude),
            ("--max-cost", where.max_cost),
            ("--max-total", max_total),
            ("--plan", where.plan),
            ("--pricing", where.pricing),
            ("--out", out if out != Path(".") else None),
            ("--concurrency", concurrency if concurrency != policy.DEFAULT_BATCH_CONCURRENCY else None),
            ("--timeout", timeout if timeout != policy.DEFAULT_JOB_TIMEOUT_S else None),
            ("--json", as_json),
        ],
    )
    paced = max((p["min_minutes"] or 0) for p in shown["pacing"]) * 60 if shown["pacing"] else 0.0
    run = _Run(the_plan, routes, constraints, keys, check_out_dir(out), timeout, concurrency, settings, as_json, paced)
    run.bad = bad  # each gets its --json line too
    run.go(file_key, again)


def _read_rows(file: str, strict: bool):
    """The file's rows, its bad rows (each reported on stderr with its line) and its label."""
    from imgroute.batch import parse_rows, read_text

    text, label = read_text(file)
    rows, bad = parse_rows(text, label)
    for item in bad:
        sys.stderr.write(f"{label}:{item.line}: {item.problem}\n")
    if bad and strict:
        raise UsageError(f"{count(len(bad), 'bad row')} in {label}", "fix them, or drop --strict to skip them")
    if not rows and bad:
        raise UsageError(f"no usable rows in {label}: {count(len(bad), 'row')} refused, each said above", "fix them")
    if not rows:
        raise UsageError(f"no rows in {label}", "each row needs at least a prompt")
    return rows, bad, label


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
    """Running a planned batch: the rows' results reported as they end, the summary at the end."""

    def __init__(self, the_plan, routes, constraints, keys, out_dir, timeout, concurrency, settings, as_json, paced):
        from imgroute import render
        from imgroute.batch_run import Outcome

        self.plan, self.routes, self.constraints, self.keys = the_plan, routes, constraints, keys
        self.out_dir, self.timeout, self.concurrency, self.settings = out_dir, timeout, concurrency, settings
        self.as_json = as_json
        self.rows = the_plan.runs()  # what earlier runs did too: each row gets its line
        self.progress = render.BatchProgress(len(self.rows), the_plan.total, enabled=not as_json, paced_seconds=paced)
        self.counts = dict.fromkeys(Outcome, 0)
        self.failed = None  # the first failed row's error: the batch exits with its code
        self.runner = None
        self.stdout_gone = False  # its reader went away: the batch stops as on Ctrl-C, then exits 141
        self.bad = []  # the file's bad rows (batch.BadRow): each gets its --json line too

    def go(self, label: str, again: str) -> None:
        from imgroute import render, report
        from imgroute.batch_run import BatchRun, Outcome, RowResult
        from imgroute.fallback import rerouter
        from imgroute.http import build_client
        from imgroute.scheduler import Limits

        started = time.monotonic()
        limits = Limits.from_settings(self.settings.limits, total=self.concurrency)
        # a connection per worker, and one per job a synchronous provider holds open while it generates
        pool = BatchRun.workers_for(self.concurrency) + self.concurrency
        with build_client(pool_size=pool) as client, self.progress:
            self.runner = BatchRun(
                routes=self.routes,
                base_constraints=self.constraints,
                keys=self.keys.available,
                base_urls=self.keys.base_urls,
                out_dir=self.out_dir,
                home=config.home(),
                timeout=self.timeout,
                concurrency=self.concurrency,
                limits=limits,
                client=client,
                batch_label=label,
                on_result=self.report,
                reroute=rerouter(self.routes.table, self.constraints, self.keys.available),
                on_stop=self.stopping,
            )
            if self.as_json:  # every row gets its line: the bad ones first, then those no offer serves
                for item in self.bad:
                    self.write_line(report.bad_row(item))
            for row, why in self.plan.unservable:
                self.report(RowResult(row, Outcome.UNSERVABLE, None, why))
            try:
                self.runner.run(self.rows, idle=self.watch_stdout)
            except KeyboardInterrupt:
                if self.runner.left_running:
                    self.leave(again)
                raise self.stopped(again) from None
        if not self.as_json:
            elapsed = time.monotonic() - started
            render.print_batch_summary(
                render.stdout_console(), self.counts, self.progress.spent, self.plan.total, self.plan.whole, elapsed
            )
        if self.failed is not None:
            raise self.failed

    def stopped(self, again: str) -> ImgrouteError:
        """How the stopped run ended, counted as it is: rows done, and rows never sent."""
        from imgroute.batch_run import Outcome

        done, unsent = self.counts[Outcome.DONE], self.counts[Outcome.NOT_STARTED]
        said = f"{count(done, 'row')} done, {count(unsent, 'row')} not started (nothing was sent for them)"
        hint = f"run the same command again to finish (nothing is sent twice): {again}"
        if self.stdout_gone:
            return StdoutClosed(f"stdout was closed: {said}; what was sent was finished and saved", hint)
        return Interrupted(f"{signals.stop_word()}: {said}", hint)

    def stopping(self, sent: int) -> None:
        why = "stdout was closed" if self.stdout_gone else f"{signals.stop_word()}"
        again = "" if self.stdout_gone else " (Ctrl-C again to leave them for the next run)"
        waiting = f"waiting for the {count(sent, 'job')} already sent to finish and be recorded{again}" if sent else ""
        sys.stderr.write(f"{why}: no new request is sent{'; ' + waiting if waiting else ''}\n")
        sys.stderr.flush()

    def leave(self, again: str) -> None:
        """A second Ctrl-C: say what is left, and end the process at once (worker threads may be
        inside a step; they must not run into the interpreter's shutdown)."""
        left = self.runner.left_running
        sys.stderr.write(
            f"error: {signals.stop_word()}; {count(left, 'job')} already sent were left at their providers, journaled; "
            f"run the same command again to finish them (nothing is sent twice): {again}\n"
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
        self.runner.request_stop()

    def report(self, row_result) -> None:
        from imgroute import report

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
            self.progress.update(row_result, running=self.runner.running)
