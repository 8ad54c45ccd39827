"""`imgroute batch FILE`: plan every row, show the cost, ask, then run concurrently and resumably."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from imgroute import config, policy
from imgroute.cli import (
    ExcludeOpt,
    JsonOpt,
    MaxCostOpt,
    PlanOpt,
    PricingOpt,
    ProviderOpt,
    _opt,
    app,
    build_constraints,
    load_pricing,
)
from imgroute.errors import BudgetError, Interrupted, NoOfferError, UsageError
from imgroute.money import fmt_usd


@app.command()
def batch(
    file: Annotated[str, typer.Argument(help="JSON Lines or CSV, one job per row ('-' for stdin).")],
    provider: ProviderOpt = None,
    exclude: ExcludeOpt = None,
    max_cost: MaxCostOpt = None,
    max_total: Annotated[str | None, _opt("--max-total", help="Most USD the whole batch may cost.")] = None,
    plan: PlanOpt = None,
    pricing: PricingOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the images.")] = Path("."),
    concurrency: Annotated[int, typer.Option("--concurrency", help="Jobs at the providers at once.")] = (
        policy.DEFAULT_BATCH_CONCURRENCY
    ),
    timeout: Annotated[float, typer.Option("--timeout", help="Most seconds to wait for each job.")] = (
        policy.DEFAULT_JOB_TIMEOUT_S
    ),
    strict: Annotated[bool, typer.Option("--strict", help="Refuse the whole file if any row is bad.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; send nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Run without asking (needed without a terminal).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Many jobs from a file: planned and priced first, then run within every provider's limits."""
    from imgroute import keys as key_store
    from imgroute import render
    from imgroute.batch import parse_rows, read_text
    from imgroute.batch import plan as make_plan
    from imgroute.providers import provider_limits
    from imgroute.request import parse_money
    from imgroute.router import RouteCache

    if concurrency < 1 or concurrency > 500:
        raise UsageError(f"--concurrency {concurrency} is out of range", "use 1 to 500")
    if timeout <= 0:
        raise UsageError(f"--timeout {timeout:g} must be above zero", "give seconds, like --timeout 300")
    total_cap = parse_money(max_total, "--max-total") if max_total is not None else None
    text, label = read_text(file)
    rows, bad = parse_rows(text, label)
    for item in bad:
        sys.stderr.write(f"{label}:{item.line}: {item.problem}\n")
    if bad and strict:
        raise UsageError(f"{len(bad)} bad row(s) in {label}", "fix them, or drop --strict to skip them")
    if not rows:
        raise UsageError(f"no usable rows in {label}", "each row needs at least a prompt")
    table = load_pricing(pricing)
    settings = config.load_settings()
    constraints = build_constraints(table, settings, provider, exclude, max_cost, plan)
    available = key_store.all_keys()

    routes = RouteCache(table, key_store.missing_key_reasons(available))
    the_plan = make_plan(rows, routes, constraints)
    report = {
        **the_plan.to_json(),
        "pacing": the_plan.pacing(provider_limits(settings.limits)),
        "bad_rows": [{"line": b.line, "problem": b.problem} for b in bad],
    }
    if as_json and dry_run:
        render.print_json(report)
    elif not as_json:
        render.print_batch_plan(render.stderr_console() if not dry_run else render.stdout_console(), report)
    if dry_run:
        return
    if not the_plan.rows:
        raise NoOfferError("no row of the batch can be served", "see the reasons in the plan")
    _check_money(the_plan.total, total_cap)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to confirm the batch", "pass --yes to run it")
        if not typer.confirm(f"Run {len(the_plan.rows)} jobs for about {fmt_usd(the_plan.total)}?", err=True):
            sys.stderr.write("nothing was sent\n")
            return
    again = _rerun_command(
        file,
        [
            ("--provider", provider),
            ("--exclude", exclude),
            ("--max-cost", max_cost),
            ("--max-total", max_total),
            ("--plan", plan),
            ("--pricing", pricing),
            ("--out", out if out != Path(".") else None),
            ("--concurrency", concurrency if concurrency != policy.DEFAULT_BATCH_CONCURRENCY else None),
            ("--timeout", timeout if timeout != policy.DEFAULT_JOB_TIMEOUT_S else None),
            ("--json", as_json),
        ],
    )
    _run(the_plan, routes, constraints, available, out, timeout, concurrency, settings, label, as_json, again)


def _rerun_command(file: str, options: list[tuple[str, object]]) -> str:
    """The same command, to finish an interrupted batch (its rows are found by file and content)."""
    import shlex

    parts = ["imgroute", "batch", file]
    for flag, value in options:
        values = value if isinstance(value, list) else [value]
        for one in values:
            if one is True:
                parts.append(flag)
            elif one not in (None, False):
                parts += [flag, f"{one:g}" if isinstance(one, float) else str(one)]
    command = shlex.join([*parts, "--yes"])
    return f"{command} (with the same rows on stdin)" if file == "-" else command


def _check_money(total: Decimal, total_cap: Decimal | None) -> None:
    from imgroute.cli_ledger import open_ledger
    from imgroute.ledger import period_reset, period_start

    if total_cap is not None and total > total_cap:
        raise BudgetError(
            f"the batch is estimated at {fmt_usd(total)}, over --max-total {fmt_usd(total_cap)}",
            "raise --max-total, or run fewer rows",
        )
    import datetime as dt

    now = dt.datetime.now()
    ledger = open_ledger()
    try:
        for period, cap in ledger.budgets().items():
            left = cap - ledger.spent_since(period_start(period, now).timestamp())
            if total > left:
                raise BudgetError(
                    f"the batch is estimated at {fmt_usd(total)}; the {period} budget has {fmt_usd(max(left, 0))} "
                    f"left of {fmt_usd(cap)} (resets {period_reset(period, now):%Y-%m-%d %H:%M})",
                    "raise it with `imgroute budget set`, or run fewer rows",
                )
    finally:
        ledger.close()


def _run(the_plan, routes, constraints, available, out, timeout, concurrency, settings, label, as_json, again):
    from imgroute import keys as key_store
    from imgroute import render
    from imgroute.batch_run import BatchRun
    from imgroute.cli_gen import _check_out_dir
    from imgroute.http import build_client
    from imgroute.jobs import rerouter, result_to_json
    from imgroute.scheduler import Limits

    out_dir = _check_out_dir(out)
    base_urls = key_store.all_base_urls()

    reroute = rerouter(routes.table, constraints, key_store.missing_key_reasons(available))

    progress = render.BatchProgress(len(the_plan.rows), the_plan.total, enabled=not as_json)
    counts = {"done": 0, "skipped": 0, "failed": 0, "unservable": 0, "not_started": 0}
    worst: list = []

    def on_result(row_result):
        counts[row_result.outcome] += 1
        result = row_result.result
        if result is not None and result.error is not None and not worst:
            worst.append(result.error)
        if as_json:
            line = result_to_json(result, []) if result is not None else {"status": row_result.outcome}
            line.update(
                {
                    "row": row_result.row.line,
                    "id": row_result.row.key,
                    "outcome": row_result.outcome,
                    "note": row_result.note or None,
                }
            )
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
        progress.update(row_result, running=runner.running)

    label_key = hashlib.sha256(label.encode()).hexdigest()[:12]
    started = time.monotonic()
    limits = Limits.from_settings(settings.limits, total=concurrency)
    with build_client(pool_size=BatchRun.workers_for(concurrency)) as client, progress:
        runner = BatchRun(
            routes=routes,
            base_constraints=constraints,
            keys=available,
            base_urls=base_urls,
            out_dir=out_dir,
            home=config.home(),
            timeout=timeout,
            concurrency=concurrency,
            limits=limits,
            client=client,
            batch_label=label_key,
            on_result=on_result,
            reroute=reroute,
        )
        try:
            runner.run([row for row, _, _ in the_plan.rows])
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted: {counts['done']} rows done, the rows in flight were recorded",
                f"run the same command again to finish: {again}",
            ) from None
    if not as_json:
        render.print_batch_summary(
            render.stdout_console(), counts, progress.spent, the_plan.total, time.monotonic() - started
        )
    if counts["failed"] and worst:
        raise worst[0]
