"""`imgroute batch`: the plan (`--dry-run --json`) and each row's line (`--json`). Each builder
with its schema above it."""

from __future__ import annotations

from typing import Any

from imgroute.money import usd_json
from imgroute.output.jobs import JOB, JOB_KEYS, job_result
from imgroute.output.vocabulary import (
    CAVEATS,
    OFFER_ID,
    array_of,
    enum,
    extended,
    integer,
    nullable,
    number,
    obj,
    one_of,
    states,
    text,
    usd,
)

LINE = integer("The row's line in the file", minimum=1)
ROW_ID = text("The row's id: its `id`, or a hash of its content numbered among identical rows")

BATCH_PLAN = obj(
    {
        "rows": integer("Rows this run would send", minimum=0),
        "images": integer(minimum=0),
        "estimated_usd": usd("What this run would spend (rows done before cost nothing)", known=True),
        "by_offer": array_of(
            obj(
                {
                    "offer": OFFER_ID,
                    "rows": integer(minimum=0),
                    "images": integer(minimum=0),
                    "submits": integer("Requests it would send", minimum=0),
                    "estimated_usd": usd(known=True),
                }
            )
        ),
        "pacing": array_of(
            obj(
                {
                    "provider": text("A provider, or its batch lane (openai:batch)"),
                    "submits": integer(minimum=0),
                    "concurrency": nullable(integer("Jobs in progress at once (limits in config.yaml)")),
                    "per_minute": nullable(number("Submits a minute")),
                    "min_minutes": nullable(number("The least time its submit rate allows for the submits")),
                }
            ),
            "Per provider: the submits planned and the least time they take (batch.Plan.pacing)",
        ),
        "unservable": array_of(obj({"line": LINE, "id": ROW_ID, "prompt": text(), "reason": text()})),
        "bad_rows": array_of(obj({"line": LINE, "problem": text()}), "Rows that could not be read (skipped)"),
        "done_before": array_of(
            obj({"line": LINE, "id": ROW_ID, "out_dir": nullable(text("Where its images are"))}),
            "Rows an earlier run finished",
        ),
        "not_retried": array_of(
            obj({"line": LINE, "id": ROW_ID, "error": text()}), "Rows that failed before, for a reason not retried"
        ),
        "caveats": CAVEATS,
    },
    description="What would run, where, for how much, and what cannot; nothing is sent.",
)


def batch_plan(plan, pacing: list[dict], bad_rows) -> dict:
    """`imgroute batch --dry-run --json`: what would run, where, for how much, and what cannot."""
    return {
        "rows": len(plan.rows),
        "images": sum(row.request.n for row, _, _ in plan.rows),
        "estimated_usd": usd_json(plan.total),
        "by_offer": [
            {
                "offer": o.offer_id,
                "rows": o.rows,
                "images": o.images,
                "submits": o.submits,
                "estimated_usd": usd_json(o.cost),
            }
            for o in plan.by_offer
        ],
        "pacing": pacing,
        "unservable": [
            {"line": row.line, "id": row.key, "prompt": row.request.prompt, "reason": why}
            for row, why in plan.unservable
        ],
        "bad_rows": [{"line": b.line, "problem": b.problem} for b in bad_rows],
        "done_before": [{"line": row.line, "id": row.key, "out_dir": where} for row, where in plan.done_before],
        "not_retried": [{"line": row.line, "id": row.key, "error": why} for row, why in plan.not_retried],
        "caveats": list(plan.caveats),
    }


# batch_run.Outcome (not imported: it brings the scheduler), each with its meaning for a row with
# a job and for one without; and a row that could not be read
OUTCOMES = ("done", "skipped", "failed", "unservable", "not_started")
BAD_ROW = "bad_row"

ROW_WITH_JOB = extended(
    JOB,
    {
        "row": LINE,
        "id": nullable({**ROW_ID, "description": f"{ROW_ID['description']}; null for a bad row"}),
        "outcome": states(
            {
                "done": "",
                "skipped": "done by an earlier run: its recorded files and costs, not spent now",
                "failed": "",
                "not_started": "the batch stopped before it was sent",
                BAD_ROW: "it could not be read: nothing sent",
            }
        ),
        "note": nullable(text()),
    },
    drop=("reasons",),
    description="A row with a job: gen's object for it, and the row's outcome.",
)

WITHOUT_JOB = {
    "failed": "failed before and not retried, or failed inside imgroute",
    "skipped": "being run by another imgroute",
    "unservable": "no offer can deliver it",
    "not_started": "the batch stopped first",
}

ROW_WITHOUT_JOB = obj(
    {
        "status": enum(WITHOUT_JOB, "The same as `outcome`"),
        "row": LINE,
        "id": ROW_ID,
        "outcome": states(WITHOUT_JOB),
        "note": nullable(text("Why (null when the batch stopped first)")),
    },
    description="A row that got no job here: only its outcome and why.",
)

BATCH_ROW = one_of(
    ROW_WITH_JOB,
    ROW_WITHOUT_JOB,
    description="One line of `imgroute batch --json`, written as the row ends (bad and unservable rows first).",
)


def batch_row(row_result) -> dict:
    """One line of `imgroute batch --json`: gen's object for the row's job, and the row's outcome."""
    result = row_result.result
    line = job_result(result, []) if result is not None else {"status": row_result.outcome}
    line.update(
        {
            "row": row_result.row.line,
            "id": row_result.row.key,
            "outcome": row_result.outcome,
            "note": row_result.note or None,
        }
    )
    return line


def bad_row(bad) -> dict:
    """A line of `imgroute batch --json` for a row that could not be read (skipped, nothing sent)."""
    failed: dict[str, Any] = {key: None for key in JOB_KEYS}
    failed.update(status="failed", files=[], images=[], attempts=[], skipped_without_key=[], caveats=[])
    failed.update(error=bad.problem, row=bad.line, id=None, outcome=BAD_ROW, note=bad.problem)
    return failed
