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

from imgroute import config, policy

if TYPE_CHECKING:
    from imgroute.pool import JobPool


class Resumed(NamedTuple):
    job_id: str
    result: object | None  # the JobResult, or None when the job could not be taken up
    error: BaseException | None  # why not (Busy: another imgroute runs it)


def resume_all(
    job_ids: list[str],
    table,
    keys,
    settings,
    timeout: float,
    reroute,
    report: Callable[[Resumed], None],
    on_stop: Callable[[int], None] = lambda sent: None,
) -> JobPool:
    """Resume every job at once, `report` each as it ends (on this thread). Raises
    KeyboardInterrupt after a stop, once the jobs under way are reported (the pool, for its `left`,
    is returned otherwise)."""
    from imgroute.batch_run import BatchRun
    from imgroute.http import build_client
    from imgroute.jobs import JobRunner, OutputOptions
    from imgroute.ledger import LEDGER_FILE, SharedLedger
    from imgroute.observations import Observations
    from imgroute.poll_timing import PollTiming
    from imgroute.pool import JobPool
    from imgroute.scheduler import Limits, Scheduler

    home = config.home()
    limits = Limits.from_settings(settings.limits)
    workers = BatchRun.workers_for(len(job_ids))
    scheduler = Scheduler(workers, limits, policy.time_scale())
    ledger = SharedLedger(home / LEDGER_FILE)
    observations = Observations(home)
    timing = PollTiming()
    pool = JobPool(scheduler, ahead=max(1, len(job_ids)))
    with build_client(pool_size=workers + len(job_ids)) as client:

        def start(job_id: str, sent):
            runner = JobRunner(
                table=table,
                http=scheduler.http(client),
                ledger=ledger,
                keys=keys.available,
                base_urls=keys.base_urls,
                output=OutputOptions(home),  # replaced by the job's own folder and name template
                spool_dir=home / "spool",
                timeout=timeout,
                slots=limits,
                timing=timing,
                observations=observations,
                on_sent=sent,
            )
            return runner.steps_resume(job_id, reroute)

        try:
            pool.run(job_ids, start, Resumed, report, on_stop)
        finally:
            scheduler.close()
            observations.flush(force=True)
            if not pool.left:  # (after a second signal, threads may still be inside a step)
                ledger.close()
    return pool
