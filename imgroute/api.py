"""The Python API: price a job everywhere, or run it, from code. The CLI and `imgroute serve` are
users of these functions, not second implementations.

    import imgroute
    route = imgroute.quote("a lighthouse at dusk", quality="high")
    route.choice.offer.id, route.choice.cost          # the winner, as the CLI's table shows it
    result = imgroute.generate("a lighthouse at dusk", quality="high", out="shots")
    result.images[0].path, result.actual

Every argument is checked as its CLI flag is, and every failure is one of `imgroute.errors`'
ImgrouteError tree (with `exit_code`). `quote` reads the pricing table and routes; it loads no
HTTP library. `generate` and `edit` route among the offers a key is present for, journal, send,
wait and save, and return the JobResult; a job that fails raises its error with the JobResult
attached as `error.result`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from imgroute import policy
from imgroute.errors import named
from imgroute.options import JOB, ROUTE, keyword_arguments, signature_of
from imgroute.vocab import DEFAULT_NAME

if TYPE_CHECKING:
    from imgroute.home.config import Settings
    from imgroute.jobs.state import JobResult
    from imgroute.models import Constraints, Request
    from imgroute.pricing.router import Route, RouteCache
    from imgroute.pricing.table import PricingTable
    from imgroute.session import Keys


class Planned(NamedTuple):
    """A job routed and ready to send: what `run` needs."""

    request: Request
    table: PricingTable
    settings: Settings
    constraints: Constraints
    keys: Keys | None  # the keys present and the base-URL overrides (None: quoted without keys)
    route: Route


def plan(
    prompt: str | None,  # (None, a prompt the CLI did not get, is refused as an empty one)
    *,
    pricing: str | Path | None = None,
    with_keys: bool = True,
    loaded: tuple | None = None,
    routes: RouteCache | None = None,
    **options: Any,
) -> Planned:
    """Check the job and route it: with `with_keys`, only among offers a key is present for.
    `options`: what the job is and where it may go, each option of imgroute.options' JOB and ROUTE
    by its name (quality="high", n=2, images=[...], providers=["kie"], max_cost="0.10", ...).
    `loaded`: (table, settings, keys) read once by a caller that plans many jobs (`serve`), and
    `routes` its router.RouteCache over that table and those keys (jobs alike share a ranking)."""
    from imgroute.pricing.router import rank as rank_offers
    from imgroute.pricing.router import with_caveats
    from imgroute.request import build_constraints, build_request
    from imgroute.session import Keys, load_table_and_settings

    job, where = keyword_arguments(options, (JOB, ROUTE), "plan")
    request = build_request(prompt, **job)
    if loaded is None:
        table, settings = load_table_and_settings(Path(pricing) if pricing is not None else None)
        keys = Keys(table.registry) if with_keys else None
    else:
        table, settings, keys = loaded
    constraints = build_constraints(table, settings, **where)
    if routes is not None:
        route = routes.rank(request, constraints)
    else:
        route = rank_offers(request, table, constraints, keys.available if keys else None)
    route = with_caveats(route, settings.pricing_max_age_days, constraints.rank)
    return Planned(request=request, table=table, settings=settings, constraints=constraints, keys=keys, route=route)


PLAN_OWN = (
    inspect.Parameter("pricing", inspect.Parameter.KEYWORD_ONLY, default=None),
    inspect.Parameter("with_keys", inspect.Parameter.KEYWORD_ONLY, default=True),
    inspect.Parameter("loaded", inspect.Parameter.KEYWORD_ONLY, default=None),
    inspect.Parameter("routes", inspect.Parameter.KEYWORD_ONLY, default=None),
)
plan.__signature__ = signature_of((JOB, ROUTE), *PLAN_OWN)  # type: ignore[attr-defined]


def quote(prompt: str | None, **options) -> Route:
    """Every offer priced and ranked for this job (whatever keys are present): `route.choice` is
    the winner, `route.quotes` every offer with its cost, delivery and the reasons it lost,
    `route.caveats` what is worth knowing about the winner before paying. Takes the keyword
    arguments of `plan`."""
    return plan(prompt, **options, with_keys=False).route


def run(
    planned: Planned,
    *,
    out: str | Path = ".",
    name: str = DEFAULT_NAME,
    timeout: float = policy.DEFAULT_JOB_TIMEOUT_S,
    detach: bool = False,
    on_event: Callable[[Any], None] | None = None,
    on_runner: Callable[[Any], None] | None = None,
) -> JobResult:
    """Send a planned job, wait for it and save its images. Raises NoOfferError (naming why)
    when no offer can take it; otherwise returns the JobResult, whose `error` says how it failed.
    `on_event`: each step's progress (job_state.Event); `on_runner`: the JobRunner, once made."""
    from imgroute.errors import UsageError
    from imgroute.jobs.runner import JobRunner
    from imgroute.jobs.state import JobOptions, OutputOptions
    from imgroute.pricing.router import no_offer_error
    from imgroute.session import check_out_dir, interrupted, one_job

    check_output(timeout, name)
    route = planned.route
    if route.choice is None:
        raise no_offer_error(route, "in each quote's reasons")
    if detach and route.choice.offer.window_s is None:
        raise UsageError(
            f"{named('detach')} is for offers that take a while; {route.choice.offer.id} answers at once",
            f"drop {named('detach')}, or allow a batch offer with {named('deadline')} 24h",
        )
    output = OutputOptions(check_out_dir(Path(out)), name)
    options = JobOptions(
        output=output, timeout=timeout, max_cost=planned.constraints.max_cost, detach=detach, on_event=on_event
    )
    if planned.keys is None:
        raise UsageError("this plan was made without keys, for quoting", "plan it with with_keys=True to run it")
    with one_job(planned.table, planned.settings, planned.keys) as services:
        runner = JobRunner(services, options)
        if on_runner is not None:
            on_runner(runner)
        try:
            result = runner.run(planned.request, route, constraints=planned.constraints)
        except KeyboardInterrupt:  # what was sent is in the ledger: say what is known of it
            raise interrupted(runner.job_id, services.ledger, services.registry) from None
    return result._replace(caveats=route.caveats)


def resume(
    job_id: str,
    *,
    timeout: float = policy.DEFAULT_JOB_TIMEOUT_S,
    pricing: str | Path | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> JobResult:
    """Finish a journaled job from the ledger (`imgroute jobs resume ID`): poll and download what
    was sent, never send again what may have been sent, route the images never sent. Raises Busy
    when another imgroute runs it."""
    from imgroute.jobs.runner import JobRunner
    from imgroute.jobs.state import JobOptions, OutputOptions
    from imgroute.session import interrupted, one_job

    table, settings, keys, reroute = _resume_setup(timeout, pricing)
    options = JobOptions(
        output=OutputOptions(Path(".")), timeout=timeout, on_event=on_event
    )  # (the job's own folder is used)
    with one_job(table, settings, keys) as services:
        runner = JobRunner(services, options)
        try:
            return runner.resume(job_id, reroute)
        except KeyboardInterrupt:
            raise interrupted(runner.job_id, services.ledger, services.registry) from None


def resume_all(
    *,
    timeout: float = policy.DEFAULT_JOB_TIMEOUT_S,
    pricing: str | Path | None = None,
    on_result: Callable[[Any], None] | None = None,
    on_stop: Callable[[int], None] | None = None,
) -> list:
    """Every unfinished job of the ledger resumed together, within the providers' limits
    (`imgroute jobs resume --all`). Each ends as a resume_all.Resumed (its JobResult, or the error
    that kept it: Busy when another imgroute runs it), given to `on_result` as it ends and returned
    in that order. A stop (Ctrl-C) raises KeyboardInterrupt once the jobs under way are reported."""
    from imgroute.batches.run import BatchRun
    from imgroute.jobs.resume_all import resume_together
    from imgroute.session import ledger, many_jobs

    table, settings, keys, reroute = _resume_setup(timeout, pricing)
    with ledger() as journal:
        targets = [record.id for record in journal.unfinished()]
    ended: list = []

    def report(resumed) -> None:
        ended.append(resumed)
        if on_result is not None:
            on_result(resumed)

    if targets:
        workers = BatchRun.workers_for(len(targets))
        with many_jobs(table, settings, keys, workers=workers, connections=workers + len(targets)) as services:
            resume_together(targets, services, timeout, reroute, report, on_stop or (lambda sent: None))
    return ended


def _resume_setup(timeout: float, pricing: str | Path | None) -> tuple:
    """(table, settings, keys, reroute) for a resume: images never sent are routed as now
    configured, within the job's own journaled choices."""
    from imgroute.jobs.fallback import rerouter
    from imgroute.request import build_constraints, check_timeout
    from imgroute.session import Keys, load_table_and_settings

    check_timeout(timeout)
    table, settings = load_table_and_settings(Path(pricing) if pricing is not None else None)
    keys = Keys(table.registry)
    return table, settings, keys, rerouter(table, build_constraints(table, settings), keys.available)


class PlannedBatch(NamedTuple):
    """A batch file read and routed, nothing sent: what `run_batch` needs."""

    rows: list  # batch.Row: the rows that could be read
    bad: list  # batch.BadRow: the rows that could not (by line), skipped
    label: str  # the file's resolved path, or "stdin"
    key: str  # the file's key in the ledger: a rerun finds its rows again by it
    plan: Any  # batch.Plan: what is left to do, where, for how much; what cannot be served
    pacing: list[dict]  # per provider: submits and the least time its submit rate allows
    table: PricingTable
    settings: Settings
    keys: Keys
    constraints: Constraints
    routes: RouteCache  # the rows' rankings, looked up again when each row runs


def plan_batch(
    source: str | Path, *, text: str | None = None, pricing: str | Path | None = None, **routing
) -> PlannedBatch:
    """Read a batch file (JSON Lines or CSV; `-`: stdin, or `text` given) and route every row, as
    `imgroute batch --dry-run` does; nothing is sent. A rerun plans only what is left to do.
    `routing`: plan's routing keyword arguments (providers, exclude, max_cost, plan, official_only,
    stated_quality, deadline, rank). Raises UsageError when no row can be read."""
    from imgroute.batches.rows import batch_label, parse_rows, read_text
    from imgroute.batches.rows import plan as make_plan
    from imgroute.errors import UsageError
    from imgroute.home import config
    from imgroute.pricing.router import RouteCache
    from imgroute.session import Keys, ledger, load_table_and_settings

    table, settings = load_table_and_settings(Path(pricing) if pricing is not None else None)  # a row may name a relay
    if text is None:
        text, label = read_text(str(source))
    else:
        label = str(source)
    rows, bad = parse_rows(text, label, table.registry)
    if not rows and not bad:
        raise UsageError(f"no rows in {label}", "each row needs at least a prompt")
    constraints = _constraints(table, settings, routing)
    keys = Keys(table.registry)
    routes = RouteCache(table, keys.available)
    key = batch_label(label, team=config.ledger_url(settings)[0] is not None)
    with ledger() as journal:
        priors = journal.jobs_for_rows(key)  # a rerun plans only what is left to do
    the_plan = make_plan(rows, routes, constraints, priors, key, settings.pricing_max_age_days)
    pacing = the_plan.pacing(table.registry.limits(settings.limits))
    return PlannedBatch(
        rows=rows,
        bad=bad,
        label=label,
        key=key,
        plan=the_plan,
        pacing=pacing,
        table=table,
        settings=settings,
        keys=keys,
        constraints=constraints,
        routes=routes,
    )


def check_batch(planned: PlannedBatch, max_total: Decimal | float | str | None = None) -> None:
    """Refuse (BudgetError) a batch whose estimate passes `max_total` or what is left of a budget
    cap, before anything is sent; UsageError when no row could be read, NoOfferError when no row
    can be served."""
    from imgroute.errors import NoOfferError, UsageError
    from imgroute.jobs.budget import check_batch as check_budgets
    from imgroute.request import parse_money
    from imgroute.session import ledger
    from imgroute.words import count

    if not planned.rows:
        refused = count(len(planned.bad), "row")
        raise UsageError(f"no usable rows in {planned.label}: {refused} refused, each by its line", "fix them")
    the_plan = planned.plan
    if not the_plan.rows and not (the_plan.done_before or the_plan.not_retried):
        raise NoOfferError("no row of the batch can be served", "see the reasons in the plan")
    cap = parse_money(str(max_total), named("max_total")) if max_total is not None else None
    with ledger() as journal:
        check_budgets(journal, the_plan.total, cap)


def run_batch(
    planned: PlannedBatch,
    *,
    out: str | Path = ".",
    concurrency: int = policy.DEFAULT_BATCH_CONCURRENCY,
    timeout: float = policy.DEFAULT_JOB_TIMEOUT_S,
    max_total: Decimal | float | str | None = None,
    on_result: Callable[[Any], None] | None = None,
    on_stop: Callable[[int], None] | None = None,
    idle: Callable[[], None] | None = None,
    on_start: Callable[[Any], None] | None = None,
) -> list:
    """Run a planned batch: its rows concurrently within each provider's limits, each through the
    same path as `generate`, journaled by row so that a rerun pays nothing twice. Each row ends as
    a batch_run.RowResult, given to `on_result` as it ends and returned in that order (rows no
    offer can serve first). A stop (Ctrl-C) sends nothing new, waits for what was sent, then raises
    KeyboardInterrupt; `on_start` gets the BatchRun (its `request_stop()`, `running`, `left_running`)."""
    from imgroute.batches.run import BatchRun, Outcome, RowResult
    from imgroute.errors import UsageError
    from imgroute.jobs.fallback import rerouter
    from imgroute.request import check_timeout
    from imgroute.session import check_out_dir, many_jobs

    if concurrency < 1 or concurrency > 500:
        raise UsageError(f"{named('concurrency')} {concurrency} is out of range", "use 1 to 500")
    check_timeout(timeout)
    check_batch(planned, max_total)
    out_dir = check_out_dir(Path(out))
    ended: list = []

    def report(result) -> None:
        ended.append(result)
        if on_result is not None:
            on_result(result)

    for row, why in planned.plan.unservable:  # every row gets its result, these first
        report(RowResult(row=row, outcome=Outcome.UNSERVABLE, result=None, note=why))
    workers = BatchRun.workers_for(concurrency)
    # a connection per worker, and one per job a synchronous provider holds open while it generates
    sizes = {"workers": workers, "total": concurrency, "connections": workers + concurrency}
    with many_jobs(planned.table, planned.settings, planned.keys, **sizes) as services:
        runner = BatchRun(
            services,
            routes=planned.routes,
            base_constraints=planned.constraints,
            out_dir=out_dir,
            timeout=timeout,
            concurrency=concurrency,
            batch_label=planned.key,
            on_result=report,
            reroute=rerouter(planned.table, planned.constraints, planned.keys.available),
            on_stop=on_stop,
        )
        if on_start is not None:
            on_start(runner)
        runner.run(planned.plan.runs(), idle=idle)
    return ended


def batch(source: str | Path, *, strict: bool = False, **options) -> list:
    """`plan_batch` then `run_batch`: every row's batch_run.RowResult. `options`: plan_batch's
    (pricing, routing) and run_batch's (out, concurrency, timeout, max_total, on_result). With
    `strict`, a file with a bad row is refused whole (UsageError)."""
    from imgroute.errors import UsageError

    running = {name: options.pop(name) for name in RUN_BATCH_OPTIONS if name in options}
    planned = plan_batch(source, **options)
    if strict and planned.bad:
        first = planned.bad[0]
        raise UsageError(f"{planned.label}:{first.line}: {first.problem}", "fix it, or pass strict=False to skip it")
    return run_batch(planned, **running)


RUN_BATCH_OPTIONS = ("out", "concurrency", "timeout", "max_total", "on_result", "on_stop", "idle", "on_start")


def _constraints(table, settings, routing: dict) -> Constraints:
    """Routing keyword arguments (plan's) as Constraints over config.yaml's settings."""
    from imgroute.errors import UsageError
    from imgroute.request import build_constraints

    known = [option.name for option in ROUTE]
    unknown = sorted(set(routing) - set(known))
    if unknown:
        raise UsageError(f"unknown batch option {unknown[0]!r}", f"routing options: {', '.join(known)}")
    (where,) = keyword_arguments(routing, (ROUTE,), "plan_batch")
    return build_constraints(table, settings, **where)


def check_output(timeout: float, name: str) -> None:
    """The waiting time and the file-name template, refused before anything is routed or sent."""
    from imgroute.request import check_timeout
    from imgroute.session import check_name

    check_timeout(timeout)
    check_name(name)


def generate(
    prompt: str,
    *,
    out: str | Path = ".",
    name: str = DEFAULT_NAME,
    timeout: float = policy.DEFAULT_JOB_TIMEOUT_S,
    detach: bool = False,
    **options,
) -> JobResult:
    """Route, send, wait, save: the JobResult (files, estimated and actual cost, attempts, and the
    winner's caveats). A failed job raises its error (exit code and all), with the JobResult as
    `error.result`."""
    result = run(plan(prompt, **options), out=out, name=name, timeout=timeout, detach=detach)
    if result.error is not None:
        result.error.result = result
        raise result.error
    return result


def edit(prompt: str, images: Sequence[str] | str, *, mask: str | None = None, **options) -> JobResult:
    """`generate` with reference images (paths or URLs) and an optional mask."""
    return generate(prompt, images=[images] if isinstance(images, str) else list(images), mask=mask, **options)
