"""`imgroute jobs`: list, show and resume the jobs in the ledger."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from imgroute import config, policy
from imgroute.cli import app
from imgroute.cli.options import JsonOpt, PricingOpt, flag, opt, parse_day
from imgroute.errors import Busy, ImgrouteError, UsageError, quoted
from imgroute.models import JobState
from imgroute.session import Keys, job_runner, ledger, load_table_and_settings

jobs_app = typer.Typer(help="Jobs in the ledger: list, show, resume.", invoke_without_command=True)
app.add_typer(jobs_app, name="jobs")


def resolve_job(journal, job_id: str):
    matches = journal.find_job(job_id.strip())
    if not matches:
        raise UsageError(f"no job {quoted(job_id)} in the ledger", "list jobs with: imgroute jobs")
    if len(matches) > 1:
        raise UsageError(f"{quoted(job_id)} matches {len(matches)} jobs", "give more characters of the id")
    return matches[0]


@jobs_app.callback()
def jobs_list(
    ctx: typer.Context,
    state: Annotated[list[str] | None, opt("--state", help="Only jobs in these states (repeatable).")] = None,
    provider: Annotated[str | None, opt("--provider", help="Only jobs tried at this provider.")] = None,
    since: Annotated[str | None, opt("--since", help="Jobs created on or after YYYY-MM-DD.")] = None,
    until: Annotated[str | None, opt("--until", help="Jobs created before YYYY-MM-DD.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent jobs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from imgroute import render, report
    from imgroute.request import check_providers

    states = tuple(state or ())
    for item in states:
        if item not in JobState._value2member_map_:
            raise UsageError(f"--state {quoted(item)} is not a job state", f"use one of {', '.join(JobState)}")
    if limit < 1:
        raise UsageError(f"--limit {limit} must be at least 1", "for example --limit 50")
    with ledger() as journal:
        if provider is not None and not journal.jobs((), provider, limit=1):  # (a relay once used counts)
            check_providers(provider, "--provider")
        records = journal.jobs(
            states,
            provider,
            parse_day(since, "--since").timestamp() if since else None,
            parse_day(until, "--until").timestamp() if until else None,
            limit,
        )
    data = [report.job_listing(record) for record in records]
    if as_json:
        render.print_json(data)
    else:
        render.print_jobs(render.stdout_console(), data)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="A job id, or its first characters.")], as_json: JsonOpt = False
) -> None:
    """Everything the ledger knows about one job."""
    from imgroute import render, report

    with ledger() as journal:
        job = resolve_job(journal, job_id)
        data = report.job_details(
            job, journal.attempts(job.id), journal.tasks(job.id), journal.files(job.id), journal.events(job.id)
        )
    if as_json:
        render.print_json(data)
    else:
        render.print_job_details(render.stdout_console(), data)


@jobs_app.command("settle")
def jobs_settle(
    job_id: Annotated[str, typer.Argument(help="A job whose submit's fate is unknown.")],
    charged: Annotated[
        bool, flag("--charged", help="The provider's dashboard shows it charged (images lost).")
    ] = False,
    not_charged: Annotated[bool, flag("--not-charged", help="The dashboard shows no such job: never charged.")] = False,
) -> None:
    """Settle a job whose submit's fate is unknown, after checking the provider's dashboard."""
    if charged == not_charged:
        raise UsageError("say what the dashboard shows: --charged or --not-charged", "give exactly one of them")
    with ledger() as journal:
        job = resolve_job(journal, job_id)
        settled = journal.settle_unknown(job.id, charged)
    if not settled:
        raise UsageError(f"job {job.id} has no request whose fate is unknown", f"see: imgroute jobs show {job.id}")
    if charged:
        print(f"job {job.id}: {settled} request(s) settled as charged, their images lost; counted as spent")
    else:
        print(
            f"job {job.id}: {settled} request(s) settled as never charged; "
            f"send them with: imgroute jobs resume {job.id}"
        )


@jobs_app.command("resume")
def jobs_resume(
    job_id: Annotated[str | None, typer.Argument(help="The job to finish (or --all).", show_default=False)] = None,
    all_jobs: Annotated[bool, flag("--all", help="Every unfinished job.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Most seconds to wait per job.")] = (
        policy.DEFAULT_JOB_TIMEOUT_S
    ),
    quiet: Annotated[bool, flag("--quiet", help="Print only the saved file paths.")] = False,
    pricing: PricingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Finish interrupted jobs: poll and download what was sent, never sending it again."""
    from imgroute import render, report
    from imgroute.fallback import rerouter
    from imgroute.jobs import OutputOptions
    from imgroute.request import build_constraints, check_timeout

    check_timeout(timeout)
    if (job_id is None) == (not all_jobs):
        raise UsageError("give one job id, or --all", "for example: imgroute jobs resume 3f1c9a52 (or --all)")
    with ledger() as journal:
        targets = [resolve_job(journal, job_id).id] if job_id else [r.id for r in journal.unfinished()]
    table, settings = load_table_and_settings(pricing)
    keys = Keys()
    reroute = rerouter(table, build_constraints(table, settings), keys.available)
    results = []
    worst: ImgrouteError | None = None
    for target in targets:
        output = OutputOptions(config.home())  # replaced by the job's own out_dir and name template
        try:
            with job_runner(table, keys, output, timeout, quiet or as_json, None) as runner:
                result = runner.resume(target, reroute)
        except Busy as busy:
            if job_id:  # the one asked for: say so (exit 2)
                raise
            sys.stderr.write(f"skipped: {busy.message}\n")  # --all: the other process finishes it
            continue
        results.append(result)
        if result.error is not None and worst is None:
            worst = result.error
    if as_json:
        render.print_json([report.job_result(r, []) for r in results])
    elif quiet:
        for result in results:
            for image in result.images:
                sys.stdout.write(f"{image.path}\n")
    else:
        console = render.stdout_console()
        if not results:
            console.print("no unfinished jobs")
        for result in results:
            console.print(f"job {result.job_id}: {result.status}", style="bold", markup=False)
            render.print_job(console, result, [])
    if worst is not None:
        raise worst
