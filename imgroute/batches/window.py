"""Batch rows that can wait, sent together: every new row routed to an offer with a completion
window (OpenAI's Batch API) is journaled unsent, then the rows of one offer and endpoint go out as
one provider batch (one line each) instead of one batch per row. Each row's job is then collected
by `resume`, like any job left at a provider: polled rarely, its results decoded and saved.

The order of writes is what makes a kill safe at every point:
1. each job, its reservation and its requests' intents, marked UNSENT (a resume knows nothing was
   sent, and routes the job again);
2. the input file uploaded (free);
3. every request of the batch marked as being sent, in one commit;
4. the batch created (once: no idempotency key; a lost answer leaves the requests unknown, and a
   resume finds the batch by imgroute's metadata and the request's custom_id);
5. the batch id journaled on every request, in one commit, before anything else uses it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from imgroute.errors import BudgetRefused, ProviderTrouble, SubmitUnknown
from imgroute.models import SENDING_BATCH, UNSENT, AttemptState, JobState, TaskState
from imgroute.net.http import Http
from imgroute.store.interface import Ledger
from imgroute.words import count

if TYPE_CHECKING:
    from imgroute.jobs.runner import JobRunner
    from imgroute.models import Constraints, Request
    from imgroute.pricing.router import Route


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")


def send(
    waiting: Sequence[tuple[str, Request, Route, Constraints]],
    runner_for: Callable[[str], JobRunner],
    http: Http,
    ledger: Ledger,
    say: Callable[[str], None] = _to_stderr,
) -> dict[str, str]:
    """`waiting`: (row key, request, route, constraints) of new rows whose winner has a window.
    Returns row key -> job id of the rows journaled (each to be collected with `resume`); rows a
    budget refused are left out, to be refused with their reason on the usual path."""
    groups: dict[tuple, list] = {}
    jobs: dict[str, str] = {}
    for row_key, request, route, constraints in waiting:
        runner = runner_for(row_key)
        try:
            unsent = runner.journal_unsent(request, route, row_key, constraints)
        except BudgetRefused:
            continue
        jobs[row_key] = unsent.job_id
        assert route.choice is not None, "only a routed row waits for a provider batch"
        offer = route.choice.offer
        groups.setdefault((offer.id, bool(request.images)), []).append(unsent)
    for (offer_id, _), members in groups.items():
        adapter = members[0].adapter
        by_ref = {task.spec.client_ref: (member, task) for member in members for task in member.tasks}
        for chunk in adapter.chunks([task.spec for member in members for task in member.tasks]):
            _send_one(adapter, http, ledger, [by_ref[spec.client_ref] for spec in chunk], offer_id, say)
    return jobs


def _send_one(adapter, http: Http, ledger: Ledger, lines: list, offer_id: str, say) -> None:
    specs = [task.spec for _, task in lines]
    try:
        file_id = adapter.upload_lines(http, specs)
    except ProviderTrouble as exc:  # nothing was sent: the jobs are routed again when collected
        say(f"{offer_id}: the batch file could not be uploaded ({exc}); its rows are routed again")
        return
    with ledger.transaction() as tx:
        for _, task in lines:
            tx.task_state(task.task_id, TaskState.SUBMITTING, SENDING_BATCH)
    try:
        submissions = adapter.create(http, file_id, specs)
    except ProviderTrouble as exc:  # refused, so not created: back to unsent, routed again
        with ledger.transaction() as tx:
            for _, task in lines:
                tx.task_state(task.task_id, TaskState.SUBMITTING, UNSENT)
        say(f"{offer_id}: the batch was refused ({exc}); its rows are routed again")
        return
    except SubmitUnknown as exc:
        with ledger.transaction() as tx:
            for _, task in lines:
                tx.task_state(task.task_id, TaskState.UNKNOWN, str(exc))
        say(f"{offer_id}: {exc}; its rows are looked up at OpenAI when collected, never sent again")
        return
    with ledger.transaction() as tx:
        for (_, task), submission in zip(lines, submissions, strict=True):
            tx.task_submitted(task.task_id, submission.job_id, submission.handle)
        for member in {id(m): m for m, _ in lines}.values():
            tx.job_state(member.job_id, JobState.SUBMITTED)
            tx.attempt_state(member.attempt_id, AttemptState.RUNNING)
    say(f"{offer_id}: {count(len(lines), 'request')} sent as batch {submissions[0].job_id}; results within 24h")
