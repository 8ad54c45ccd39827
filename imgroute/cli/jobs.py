"""`imgroute jobs`: list, show and resume the jobs in the ledger."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from imgroute import policy
from imgroute.cli.app import app
from imgroute.cli.options import JsonOpt, PricingOpt, flag, opt, parse_day
from imgroute.errors import Busy, ImgrouteError, Interrupted, UsageError, quoted
from imgroute.models import JobState
from imgroute.session import ledger
from imgroute.words import count

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
    state: Annotated[
        list[str] | None, opt("--state", help="Only jobs in these states (repeatable).", metavar="STATE")
    ] = None,
    provider: Annotated[
        str | None, opt("--provider", help="Only jobs tried at this provider or offer.", metavar="NAME")
    ] = None,
    since: Annotated[str | None, opt("--since", help="Jobs created on or after YYYY-MM-DD.", metavar="DATE")] = None,
    until: Annotated[str | None, opt("--until", help="Jobs created before YYYY-MM-DD.", metavar="DATE")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.", metavar="N")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent jobs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stdout_console
    from imgroute.output.text.jobs import print_jobs
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
        print_json(data)
    else:
        print_jobs(stdout_console(), data, filtered=bool(states or provider or since or until))


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="A job id, or its first characters.", metavar="JOB")],
    as_json: JsonOpt = False,
) -> None:
    """Everything the ledger knows about one job."""
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stdout_console
    from imgroute.output.text.jobs import print_job_details

    with ledger() as journal:
        job = resolve_job(journal, job_id)
        attempts = journal.attempts(job.id)
        data = report.job_details(job, attempts, journal.tasks(job.id), journal.files(job.id), journal.events(job.id))
    if as_json:
        print_json(data)
        return
    console = stdout_console()
    print_job_details(console, data)
    _possibly_charged(console, job.id, attempts)


def _possibly_charged(console, job_id: str, attempts) -> None:
    """What each attempt may have been charged for requests that failed without the provider saying,
    and how to settle it (the attempt's line above has its state, failed_at_risk)."""
    from imgroute.money import fmt_usd
    from imgroute.output.text.layout import print_wrapped

    for attempt in attempts:
        if attempt.at_risk is not None:
            print_wrapped(
                console,
                f"attempt {attempt.seq}: {fmt_usd(attempt.at_risk)} possibly charged by {attempt.provider} for failed "
                f"requests (counted against the budgets until settled); check the {attempt.provider} dashboard, then: "
                f"imgroute jobs settle {job_id} --charged or --not-charged",
                style="yellow",
                indent="    ",
            )


@jobs_app.command("settle")
def jobs_settle(
    job_id: Annotated[
        str, typer.Argument(help="A job with a request whose fate, or whose charge, is unknown.", metavar="JOB")
    ],
    charged: Annotated[bool, flag("--charged", help="The provider's dashboard shows it charged.")] = False,
    not_charged: Annotated[
        bool, flag("--not-charged", help="The dashboard shows no such job, or no charge: never charged.")
    ] = False,
) -> None:
    """Settle a job's requests whose fate is unknown, or that failed without the provider saying
    whether it charged, after checking the provider's dashboard."""
    from imgroute.money import fmt_usd
    from imgroute.store.interface import LEASE_SECONDS, PROCESS_OWNER, held_by, job_key

    if charged == not_charged:
        raise UsageError("say what the dashboard shows: --charged or --not-charged", "give exactly one of them")
    with ledger() as journal:
        job = resolve_job(journal, job_id)
        lease = [job_key(job.id)]
        with journal.transaction() as tx:  # not while another imgroute runs it (it would not know)
            held = tx.claim(lease, PROCESS_OWNER, LEASE_SECONDS)
        if held:
            raise Busy(
                f"job {job.id} is being run by another imgroute ({held_by(held)})", "settle it once that one ends"
            )
        try:
            with journal.transaction() as tx:
                settled = tx.settle(job.id, charged)
        finally:
            with journal.transaction() as tx:
                tx.release(lease, PROCESS_OWNER)
    if not settled.unknown and not settled.failed:
        raise UsageError(
            f"job {job.id} has no request whose fate or charge is unknown", f"see: imgroute jobs show {job.id}"
        )
    if settled.unknown and charged:
        print(
            f"job {job.id}: {count(settled.unknown, 'request')} settled as charged, their images lost; counted as spent"
        )
    elif settled.unknown:
        print(
            f"job {job.id}: {count(settled.unknown, 'request')} settled as never charged; "
            f"send them with: imgroute jobs resume {job.id}"
        )
    if settled.failed and charged:
        print(
            f"job {job.id}: {count(settled.failed, 'failed request')} settled as charged; "
            f"{fmt_usd(settled.failed_usd)} counted as spent"
        )
    elif settled.failed:
        print(f"job {job.id}: {count(settled.failed, 'failed request')} settled as never charged; nothing counted")


@jobs_app.command("resume")
def jobs_resume(
    job_id: Annotated[
        str | None, typer.Argument(help="The job to finish (or --all).", show_default=False, metavar="JOB")
    ] = None,
    all_jobs: Annotated[bool, flag("--all", help="Every unfinished job, all at once.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Most seconds to wait per job.", metavar="SECONDS")] = (
        policy.DEFAULT_JOB_TIMEOUT_S
    ),
    quiet: Annotated[bool, flag("--quiet", help="Print only the saved file paths.")] = False,
    pricing: PricingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Finish interrupted jobs: poll and download what was sent, never sending it again."""
    from imgroute import api
    from imgroute.output.text.jobs import JobProgress

    if (job_id is None) == (not all_jobs):
        raise UsageError("give one job id, or --all", "for example: imgroute jobs resume 3f1c9a52 (or --all)")
    shown = _Shown(quiet, as_json)
    if job_id:
        with ledger() as journal:
            target = resolve_job(journal, job_id).id
        with JobProgress(enabled=not (quiet or as_json)) as progress:
            shown.add(api.resume(target, timeout=timeout, pricing=pricing, on_event=progress.update))
    else:
        _resume_all(timeout, pricing, shown)
    shown.end()


def _resume_all(timeout: float, pricing, shown) -> None:
    """Every unfinished job at once (api.resume_all); a job another imgroute runs is skipped."""
    from imgroute import api, signals

    def report(resumed) -> None:
        if isinstance(resumed.error, Busy):  # the other process finishes it
            sys.stderr.write(f"skipped: {resumed.error.worded('cli')[0]}\n")
        elif resumed.error is not None:  # an error inside the job's steps: it ends that job only
            error = resumed.error
            if not isinstance(error, ImgrouteError):
                error = ImgrouteError(
                    f"job {resumed.job_id}: internal error: {error!r}", "see the ledger: imgroute jobs show"
                )
            shown.failed(resumed.job_id, error)
        else:
            shown.add(resumed.result)

    def stopping(sent: int) -> None:
        sys.stderr.write(
            f"{signals.stop_word()}: no new request is sent; waiting for the {count(sent, 'job')} under way "
            "(Ctrl-C again to leave them for the next run)\n"
        )

    try:
        api.resume_all(timeout=timeout, pricing=pricing, on_result=report, on_stop=stopping)
    except KeyboardInterrupt:
        raise Interrupted(
            f"{signals.stop_word()}: {count(len(shown.results), 'job')} finished here",
            "the others are in the ledger as they were: run imgroute jobs resume --all again",
        ) from None


class _Shown:
    """What `jobs resume` prints: each job as it ends (a JSON list at the end), and the first
    failure's error to exit with."""

    def __init__(self, quiet: bool, as_json: bool):
        self.quiet, self.as_json = quiet, as_json
        self.results: list = []
        self.worst: ImgrouteError | None = None

    def add(self, result) -> None:
        from imgroute.output.text.console import stdout_console
        from imgroute.output.text.jobs import print_job

        self.results.append(result)
        if result.error is not None and self.worst is None:
            self.worst = result.error
        if self.as_json:
            return
        if self.quiet:
            for image in result.images:
                sys.stdout.write(f"{image.path}\n")
            return
        console = stdout_console()
        console.print(f"job {result.job_id}: {result.status}", style="bold", markup=False)
        print_job(console, result, [])

    def failed(self, job_id: str, error: ImgrouteError) -> None:
        sys.stderr.write(f"job {job_id}: {error.worded('cli')[0]}\n")
        if self.worst is None:
            self.worst = error

    def end(self) -> None:
        from imgroute.output import report
        from imgroute.output.text.console import print_json, stdout_console

        if self.as_json:
            print_json([report.job_result(r, []) for r in self.results])
        elif not self.results and not self.quiet and self.worst is None:
            stdout_console().print("no unfinished jobs")
        if self.worst is not None:
            raise self.worst
