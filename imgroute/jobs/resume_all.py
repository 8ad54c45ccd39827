"""`jobs resume --all`: every unfinished job resumed together, on one scheduler.

One after another, a job whose provider takes its time (an OpenAI Batch job is looked at once a
few minutes, and may take a day) held up every job behind it. Here each job waits for its own
provider while the others go on, within the same per-provider limits as a batch, and each reports
its own time. A stop (Ctrl-C, SIGTERM) sends nothing new and waits for the jobs under way, as a
batch's does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from imgroute.batches.pool import JobPool
from imgroute.jobs.runner import JobRunner
from imgroute.jobs.state import JobOptions, OutputOptions

if TYPE_CHECKING:
    from imgroute.session import Services


class Resumed(NamedTuple):
    job_id: str
    result: object | None  # the JobResult, or None when the job could not be taken up
    error: BaseException | None  # why not (Busy: another imgroute runs it)


def resume_together(
    job_ids: list[str],
    services: Services,
    timeout: float,
    reroute,
    report: Callable[[Resumed], None],
    on_stop: Callable[[int], None] = lambda sent: None,
) -> None:
    """Resume every job at once on `services` (session.open_many's), `report` each as it ends (on
    this thread). Raises KeyboardInterrupt after a stop, once the jobs under way are reported."""
    assert services.scheduler is not None, "resume_together runs on open_many's services"
    pool = JobPool(services.scheduler, ahead=max(1, len(job_ids)))

    def start(job_id: str, sent):
        options = JobOptions(
            output=OutputOptions(services.home), timeout=timeout, on_sent=sent
        )  # (each job has its own folder)
        return JobRunner(services, options).steps_resume(job_id, reroute)

    try:
        pool.run(job_ids, start, Resumed, report, on_stop)
    finally:
        services.abandoned = bool(pool.left)  # (after a second signal, threads may still be inside a step)
