"""What an attempt delivered, saved and priced: each recorded result downloaded (or taken from the
spool), verified and placed; then the attempt's end decided (succeeded, trouble that moves the
images on, a failure, a charge unknown) and priced from what the providers reported. `Settler`
does it for one job; jobs.runner.JobRunner decides what happens next.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from imgroute.errors import JobFailedError, OutputError, ProviderTrouble, TroubleKind
from imgroute.home.observations import Observations
from imgroute.jobs.fallback import charge_unknown_note, unknown_error
from imgroute.jobs.outputs import ImageShape, Outputs, SavedImage
from imgroute.jobs.spec import delivered_size, provider_job_id
from imgroute.jobs.state import Attempt, AttemptEnd, AttemptReport, JobRun, Outcome, failure_hint
from imgroute.jobs.tasks import Task
from imgroute.models import AttemptState, JobState, TaskState
from imgroute.pricing import price_models
from imgroute.pricing.price_models import Delivered
from imgroute.pricing.table import PricingTable
from imgroute.providers.base import Usage
from imgroute.store.interface import Transaction


class Settler:
    """Saving and settling one job's attempts (made anew for each job: its outputs are its own)."""

    def __init__(
        self,
        table: PricingTable,
        observations: Observations | None,
        outputs: Outputs,
        clock: Callable[[], float],
        emit: Callable[[str, str], None],
    ):
        self.table, self.observations, self.outputs, self.clock, self._emit = table, observations, outputs, clock, emit

    def save_results(self, job: JobRun, shape: ImageShape, tasks: list[Task]) -> tuple[list[SavedImage], list[str]]:
        """Download (or take from the spool), verify and save every recorded result."""
        saved: list[SavedImage] = []
        problems: list[str] = []
        for task in tasks:
            if task.state != TaskState.SUCCEEDED:
                continue
            for output in task.outputs[len(task.saved) :]:  # those saved before (resume) are skipped
                index = len(job.saved) + len(saved) + 1
                self._emit("downloading", f"image {index}")
                try:
                    image = self._save_one(job, shape, task, output, index)
                except OutputError as exc:
                    problems.append(exc.message)
                    job.unfetched += 1
                    continue
                saved.append(image)
                task.saved.append(image)
                if not image.verified:
                    problems.append(f"{image.path}: {shape.problem(image)}")
                elif self.observations is not None:
                    offer = self.table.offer(shape.provider, task.spec.model)
                    self.observations.delivered(offer, task.spec, image.width, image.height)
        if self.observations is not None:
            self.observations.flush()  # (at most every few seconds: see home_cache.Merger)
        return saved, problems

    def _save_one(self, job: JobRun, shape: ImageShape, task: Task, output: dict, index: int) -> SavedImage:
        image = self.outputs.save(shape, output, index, job.id, provider_job_id(task.handle))
        job.unsaved.add(
            Transaction.add_file,
            job.id,
            task.task_id,
            path=str(image.path),
            sha256=image.sha256,
            size=image.bytes,
            fmt=image.format,
            width=image.width,
            height=image.height,
            verified=image.verified,
        )
        if "spool" in output:  # the spool is the only other copy: removed once the file's record is committed
            job.spooled.append(output)
        return image

    def settle(self, job, attempt: Attempt, tasks, saved, problems, stuck, outcome: Outcome) -> AttemptEnd:
        """Price what was delivered and decide how the attempt ended."""
        actual, source, priced, stated = self._costs(job, attempt, tasks)
        job.count_usage(t.usage for t in tasks if t.state == TaskState.SUCCEEDED and t.usage is not None)
        final, status, trouble = outcome.final, outcome.status, outcome.trouble
        failures = [t for t in tasks if t.state == TaskState.FAILED]
        # Ran and failed without an image, the charge unstated: the images move on, the share is at risk
        unsettled = [t for t in tasks if t.state == TaskState.FAILED_AT_RISK]
        at_risk = _share(attempt, tasks, unsettled)
        if final is None and stuck is not None:
            final, status = stuck, JobState.RUNNING
        if final is None and failures and all(t.never_ran for t in failures):
            # dropped unrun and unbilled (an expired batch): the images move on like provider trouble
            trouble = trouble or ProviderTrouble("; ".join(t.error for t in failures), TroubleKind.SERVER)
        elif final is None and failures:
            moderated = any(t.moderated for t in failures)
            final = JobFailedError("; ".join(t.error for t in failures), failure_hint(moderated))
        if final is None and any(t.state == TaskState.UNKNOWN for t in tasks):
            final, status = unknown_error(None, attempt.provider, job.id), JobState.UNKNOWN
        if final is None and problems:
            hint = "the images were saved as delivered; check them"
            if job.unfetched:  # nothing was saved of those: the results are recorded, fetch them again
                hint = f"the results are recorded: fetch them again with: imgroute jobs resume {job.id}"
            final = OutputError("; ".join(problems) + f" (job {job.id})", hint)
        if final is None:
            status = AttemptState.SUCCEEDED if trouble is None else AttemptState.TROUBLE
            if unsettled:
                status = AttemptState.FAILED_AT_RISK
        error = str(trouble) if trouble else (final.worded("cli")[0] if final else None)
        if unsettled:  # said with the way to settle it, wherever the attempt is shown
            failed = "; ".join(t.error or "failed" for t in unsettled)
            error = "; ".join(filter(None, (error, failed, charge_unknown_note(attempt.provider, job.id))))
        if trouble is not None:
            job.troubles.append((attempt.provider, trouble.kind))
        cost = str(actual) if actual is not None else None
        risk = str(at_risk) if at_risk is not None else None
        job.unsaved.add(
            Transaction.attempt_state, attempt.id, status, error=error, actual=cost, source=source, at_risk=risk,
            priced=str(priced) if priced is not None else None, stated=str(stated) if stated is not None else None,
        )  # fmt: skip
        self._remember(attempt, tasks, status, actual)
        report = AttemptReport(
            provider=attempt.provider,
            model=attempt.model,
            plan=attempt.plan,
            estimate=attempt.estimate,
            state=status,
            error=error,
            images=len(saved),
            at_risk=at_risk,
        )
        ended = (AttemptState.FAILED, AttemptState.TROUBLE, AttemptState.FAILED_AT_RISK)
        job_status = JobState.FAILED if status in ended else status
        return AttemptEnd(
            report=report,
            images=tuple(saved),
            actual=actual,
            source=source,
            error=final,
            status=job_status,
            at_risk=at_risk or Decimal(0),
        )

    def _remember(self, attempt: Attempt, tasks: list[Task], status: str, actual: Decimal | None) -> None:
        """The offer's record: delivered, failed (what it was charged, where known) or refused by moderation."""
        offer = self.table.offer(attempt.provider, attempt.model)
        watched = self.observations
        ended = (AttemptState.SUCCEEDED, AttemptState.FAILED, AttemptState.FAILED_AT_RISK)
        if watched is None or offer is None or status not in ended:
            return
        moderated = any(t.moderated for t in tasks)
        outcome = "succeeded" if status == AttemptState.SUCCEEDED else ("moderated" if moderated else "failed")
        sent = [t.sent_at for t in tasks if t.sent_at is not None]
        took = self.clock() - min(sent) if sent else None
        plan = self.table.providers[attempt.provider].plans.get(attempt.plan)
        watched.settled(offer, plan, outcome, actual, took, charge_unknown=status == AttemptState.FAILED_AT_RISK)
        watched.flush()

    def _costs(self, job: JobRun, attempt: Attempt, tasks: list[Task]) -> tuple:
        """(actual, its source, priced, stated): what the attempt cost (the provider's own statement
        of its charge where every answer has one, else imgroute's pricing); imgroute's pricing of
        what was delivered (pricing.yaml applied to the reported usage, or the list price); and the
        provider's statement (OpenRouter's dollars, or credits charged at the plan's price)."""
        offer = self.table.offer(attempt.provider, attempt.model)
        delivered = [_delivered(t) for t in tasks if t.state == TaskState.SUCCEEDED]
        if not delivered or offer is None:
            return None, None, None, None
        plan = self.table.providers[attempt.provider].plans.get(attempt.plan) or self.table.plan(attempt.provider, None)
        spec = tasks[0].spec
        model = price_models.of(offer)
        usages = [t.usage for t in tasks if t.state == TaskState.SUCCEEDED]
        unstated = [
            d._replace(usage=u._replace(credits=None, usd=None) if u else None)
            for d, u in zip(delivered, usages, strict=True)
        ]
        priced, how = model.actual(offer, plan, spec.quality or "high", spec.resolution, job.request, unstated)
        stated = _stated(usages, plan)
        # An edit's input images priced by tokens need them reported apart; where they are not
        # (OpenRouter's prompt_tokens lump them with the text), the table's figure is no match for
        # the statement, and is kept out of the comparison (`spend`'s stated drift).
        lumped = model.name == "tokens" and bool(spec.images) and not any(u and u.image_input for u in usages)
        if stated is not None:
            return stated[0], stated[1], None if lumped else priced, stated[0]
        return priced, how, priced, None


def _share(attempt: Attempt, tasks: list[Task], failed: list[Task]) -> Decimal | None:
    """The failed requests' share of the attempt's estimate (Kie makes one image a request: two of
    three delivered leave a third at risk); None when none failed so."""
    if not failed or attempt.estimate is None:
        return None
    planned = attempt.images or sum(t.spec.n for t in tasks)
    return attempt.estimate * sum(t.spec.n for t in failed) / planned


def _stated(usages: list[Usage | None], plan) -> tuple[Decimal, str] | None:
    """What the provider's answers said they charged, when every one says: (USD, how it was said)."""
    dollars = [u.usd for u in usages if u is not None and u.usd is not None]
    if len(dollars) == len(usages):  # (OpenRouter's usage.cost)
        return sum((Decimal(usd) for usd in dollars), Decimal(0)), "charge stated by the provider"
    credits = [u.credits for u in usages if u is not None and u.credits is not None]
    if len(credits) == len(usages) and plan is not None and plan.usd_per_credit is not None:
        return sum(credits) * plan.usd_per_credit, "credits charged"  # (Apiframe's creditCost, Kie's)
    return None


def _delivered(task: Task) -> Delivered:
    """What one request produced, for pricing it (its real size, read from its first image)."""
    width, height = delivered_size(task)
    return Delivered(images=len(task.outputs), width=width, height=height, usage=task.usage)
