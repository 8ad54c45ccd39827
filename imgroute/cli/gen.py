"""`imgroute gen` and `imgroute edit`: route among the offers you have keys for, submit, wait, save."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from imgroute.cli.app import app
from imgroute.cli.options import Flags, JobFlags, OutputFlags, RouteFlags, read_prompt, takes
from imgroute.errors import ImgrouteError, UsageError

if TYPE_CHECKING:
    from imgroute.jobs.runner import JobRunner
    from imgroute.pricing.router import Route


@app.command()
@takes(JobFlags, RouteFlags, OutputFlags)
def gen(job: Flags, where: Flags, output: Flags) -> None:
    """Generate: route to the cheapest offer you have a key for, submit, wait, save the images.

    With --image (and --mask) it edits those images: see `imgroute edit`.
    """
    run_job(job, where, output)


@app.command()
@takes(JobFlags, RouteFlags, OutputFlags)
def edit(job: Flags, where: Flags, output: Flags) -> None:
    """Edit images: --image PATH|URL (repeatable) and an optional --mask, routed like gen."""
    if not job.images and job.mask is None:  # with a mask alone, the mask check explains better
        raise UsageError(
            "edit needs at least one --image", 'for example: imgroute edit "make it dusk" --image photo.png'
        )
    run_job(job, where, output)


def run_job(job: Flags, where: Flags, output: Flags) -> None:
    """gen and edit: whatever happens, --json prints the job's object, with `error` set if it failed."""
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stderr_console
    from imgroute.output.text.quotes import print_reasons

    attempt = _Attempt()
    try:
        _run(job, where, output, attempt)
    except ImgrouteError as exc:
        if output.as_json and not attempt.printed:
            print_json(report.job_failure(exc, attempt.job_id, attempt.route))
        elif attempt.route is not None and attempt.route.choice is None:
            print_reasons(stderr_console(), attempt.route)
        raise


class _Attempt:
    """What a gen got as far as, for its failure report."""

    route: Route | None = None
    runner: JobRunner | None = None
    printed = False

    @property
    def job_id(self) -> str | None:
        return self.runner.job_id if self.runner is not None else None


def _run(job: Flags, where: Flags, output: Flags, attempt: _Attempt) -> None:
    from imgroute import api
    from imgroute.jobs.spec import preview
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stdout_console
    from imgroute.output.text.jobs import JobProgress, print_job
    from imgroute.output.text.quotes import print_dry_run
    from imgroute.pricing.router import no_offer_error

    api.check_output(output.timeout, output.name)  # a bad flag is refused before anything else
    planned = api.plan(read_prompt(job.prompt), **job.api_options(), **where.api_options())
    route = attempt.route = planned.route
    if route.choice is None:
        raise no_offer_error(route, "in `reasons`" if output.as_json else "above")
    if output.dry_run:
        prepared = preview(route.choice, planned.request, planned.keys)
        data = report.dry_run(route.choice, prepared, route.caveats)
        if output.as_json:
            print_json(data)
        else:
            print_dry_run(stdout_console(), route, data)
        return
    silent = output.quiet or output.as_json
    if not output.as_json:  # before paying, as `quote` shows them (--json carries them in its object)
        for caveat in route.caveats:
            sys.stderr.write(f"caveat: {caveat}\n")

    def started(runner) -> None:
        attempt.runner = runner

    with JobProgress(enabled=not silent) as progress:  # a live status line on a terminal
        result = api.run(
            planned,
            out=output.out,
            name=output.name,
            timeout=output.timeout,
            detach=output.detach,
            on_event=progress.update,
            on_runner=started,
        )
    constraints = planned.constraints
    skipped = report.skipped_json(route)
    if output.as_json:
        print_json(report.job_result(result, skipped))
        attempt.printed = True
    elif result.status == "submitted":  # --detach: the id is the data (J=$(imgroute gen ... --detach))
        window = route.choice.offer.window_s
        assert window is not None, "only an offer that answers later takes --detach"
        sys.stdout.write(f"{result.job_id}\n")
        sys.stderr.write(
            f"job {result.job_id} is at {result.provider}/{result.model} (results within {window / 3600:g}h); "
            f"collect it with: imgroute jobs resume {result.job_id}\n"
        )
    elif output.quiet:
        for image in result.images:
            sys.stdout.write(f"{image.path}\n")
    else:
        print_job(stdout_console(), result, skipped, constraints.providers)
    if result.error is not None:
        raise result.error
