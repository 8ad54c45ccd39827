"""A job's shapes: `imgroute gen --json` (the job object, failures included, and the dry run) and
the ledger's `imgroute jobs --json` and `jobs show --json`. Each builder with its schema above it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from imgroute.models import Request
from imgroute.money import usd_json
from imgroute.output.quotes import REQUEST, request_json
from imgroute.output.vocabulary import (
    CAVEATS,
    LOCAL_TIME,
    MODEL,
    OFFER_ID,
    PLAN,
    PROVIDER,
    STRINGS,
    any_json,
    array_of,
    boolean,
    enum,
    extended,
    integer,
    map_of,
    nullable,
    number,
    obj,
    states,
    text,
    usd,
)
from imgroute.vocab import IMAGE_FORMATS, RANKS

# models.JobState, AttemptState and TaskState, each value with its meaning (tests/output/test_schemas.py
# checks they are the same values: a new state is a change of the contract, and is described here)
JOB_STATES = {
    "planned": "journaled, nothing sent yet",
    "submitting": "being sent",
    "submitted": "sent and taken (where --detach leaves it: collect it with `imgroute jobs resume`)",
    "running": "timed out here while the provider still works: `imgroute jobs resume`",
    "succeeded": "",
    "failed": "",
    "unknown": "a submit's fate is unknown: see `imgroute jobs settle`",
    "cancelled": "stopped before anything was sent",
}
ATTEMPT_STATES = {
    "planned": "reserved, not sent yet",
    "running": "",
    "succeeded": "",
    "failed": "the provider failed the job, or its output was bad",
    "failed_at_risk": (
        "failed without an image, the provider not saying whether it charged: the job moved on; counted as "
        "possibly charged until `imgroute jobs settle`"
    ),
    "trouble": "the provider could not take it: the job moved on",
    "unknown": "sent, no usable answer",
    "refused": "by a budget",
    "abandoned": "stopped before anything was sent",
}
TASK_STATES = {
    "submitting": "journaled, about to be sent",
    "submitted": "the provider's id is recorded",
    "running": "",
    "succeeded": "results recorded",
    "failed": "",
    "failed_at_risk": "failed without an image, its charge not stated",
    "unknown": "sent, no usable answer",
}

IMAGE = obj(
    {
        "path": text("Where the image was saved"),
        "format": enum(IMAGE_FORMATS, "As read from the file's bytes"),
        "width": integer("Pixels, as read from the file"),
        "height": integer("Pixels, as read from the file"),
        "bytes": integer(minimum=0),
        "sha256": text(pattern=r"^[0-9a-f]{64}$"),
        "verified": boolean("Its format and shape were checked against what was asked"),
    },
    description="A saved image.",
)

ATTEMPT = obj(
    {
        "provider": PROVIDER,
        "model": MODEL,
        "plan": PLAN,
        "cost_usd": usd("The attempt's estimate"),
        "state": states(ATTEMPT_STATES),
        "error": nullable(text()),
        "images": integer("Images it delivered", minimum=0),
    },
    description="One offer tried for the job.",
)

SKIPPED = obj(
    {
        "provider": PROVIDER,
        "model": MODEL,
        "cost_usd": usd("Its price for the job"),
        "reason": text(),
    },
    description="An offer that would have won, or been cheaper than the choice, but has no key.",
)

JOB = obj(
    {
        "job_id": nullable(text("The job's id in the ledger; null when no job was made (no offer, a bad flag)")),
        "status": states(JOB_STATES, "The job's state"),
        "provider": nullable({**PROVIDER, "description": "The offer that delivered (or was tried last)"}),
        "model": nullable(MODEL),
        "plan": nullable(PLAN),
        "cost_usd": usd("The estimate"),
        "actual_cost_usd": usd("What it cost"),
        "actual_cost_source": nullable(
            text("Where `actual_cost_usd` comes from: `usage`, `list price`, ... (several joined by `, `)")
        ),
        "files": array_of(text(), "The saved images' paths"),
        "images": array_of(IMAGE),
        "attempts": array_of(ATTEMPT, "Each offer tried, in order"),
        "skipped_without_key": array_of(SKIPPED),
        "elapsed_s": nullable(number("Seconds it took here; null when it never ran")),
        "error": nullable(text("Why it failed; null when it did not")),
        "caveats": CAVEATS,
        "reasons": array_of(
            obj({"offer": OFFER_ID, "reasons": STRINGS}),
            "Only when no offer could deliver the request: each offer's reasons",
        ),
    },
    optional=("reasons",),
    description=("One job: printed whatever happened (with `error` set when it failed, nulls where nothing is known)."),
)

# gen's keys, in order: a failure's object has them all (and `reasons` when no offer could)
JOB_KEYS = tuple(JOB["required"])


def job_result(result, skipped: list[dict]) -> dict:
    """`imgroute gen --json`: one object per job (design.md section 5)."""
    return {
        "job_id": result.job_id,
        "status": result.status,
        "provider": result.provider,
        "model": result.model,
        "plan": result.plan,
        "cost_usd": usd_json(result.estimate),
        "actual_cost_usd": usd_json(result.actual),
        "actual_cost_source": result.actual_source,
        "files": [str(image.path) for image in result.images],
        "images": [
            {
                "path": str(i.path),
                "format": i.format,
                "width": i.width,
                "height": i.height,
                "bytes": i.bytes,
                "sha256": i.sha256,
                "verified": i.verified,
            }
            for i in result.images
        ],
        "attempts": [
            {
                "provider": a.provider,
                "model": a.model,
                "plan": a.plan,
                "cost_usd": usd_json(a.estimate),
                "state": a.state,
                "error": a.error,
                "images": a.images,
            }
            for a in result.attempts
        ],
        "skipped_without_key": skipped,
        "elapsed_s": round(result.elapsed, 3),
        "error": result.error.worded("cli")[0] if result.error else None,
        "caveats": list(result.caveats),
    }


def job_failure(error, job_id: str | None, route) -> dict:
    """gen's object when it ended before a job result existed (no offer, no key, Ctrl-C, bad flags):
    the same keys, nulls where nothing is known, `error` set; and each offer's reasons if none could."""
    failed: dict[str, Any] = {key: None for key in JOB_KEYS}
    failed.update(job_id=job_id, status="failed", files=[], images=[], attempts=[], error=error.worded("cli")[0])
    failed["skipped_without_key"] = skipped_json(route) if route is not None else []
    failed["caveats"] = list(route.caveats) if route is not None else []
    if route is not None and route.choice is None:
        failed["reasons"] = [{"offer": q.offer.id, "reasons": list(q.reasons)} for q in route.quotes]
    return failed


def skipped_json(route) -> list[dict]:
    """Offers that would have won, or been cheaper than the choice, but have no key."""
    return [
        {
            "provider": q.offer.provider,
            "model": q.offer.model,
            "cost_usd": usd_json(q.cost),
            "reason": q.reasons[0],
        }
        for q in route.skipped_for_keys()
    ]


DRY_RUN = obj(
    {
        "dry_run": {"description": "Always true: nothing was sent", "const": True},
        "provider": PROVIDER,
        "model": MODEL,
        "requests": integer("Requests the job would send (the first is shown)", minimum=1),
        "request": obj(
            {
                "method": text(),
                "url": text(),
                "headers": map_of(text(), "The headers, with the key shown as [redacted]"),
                "body": any_json("The body as the provider's API takes it; data URIs shortened to their type and size"),
                "files": array_of(obj({"field": text(), "path": text()}), "Files sent as multipart parts"),
            },
            description="The first request, exactly as it would be sent.",
        ),
        "cost_usd": usd("The estimate", known=True),
        "caveats": CAVEATS,
    },
    description="The route's choice and the exact request it would send; nothing is sent.",
)


def dry_run(quote, prepared, caveats=()) -> dict:
    """`imgroute gen --dry-run --json`: the route's choice and the exact request, nothing sent."""
    a = quote.assessment
    return {
        "dry_run": True,
        "provider": quote.offer.provider,
        "model": a.model,
        "requests": len(a.requests),
        "request": {
            "method": prepared.method,
            "url": prepared.url,
            "headers": prepared.headers,
            "body": abbreviate(prepared.body),
            "files": [{"field": field, "path": path} for field, path in prepared.files],
        },
        "cost_usd": usd_json(quote.cost),
        "caveats": list(caveats),
    }


def abbreviate(value):
    """Data URIs are megabytes of base64; show their type and size instead."""
    if isinstance(value, str) and value.startswith("data:") and len(value) > 80:
        return f"{value[: value.index(',') + 1]}... ({len(value):,} characters)"
    if isinstance(value, dict):
        return {key: abbreviate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [abbreviate(item) for item in value]
    return value


# -- the ledger ---------------------------------------------------------------------------------


def when(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


JOB_STATE = states(JOB_STATES)

JOB_LISTING = obj(
    {
        "job_id": text(),
        "created": LOCAL_TIME,
        "state": JOB_STATE,
        "offer": nullable(text("Its last attempt's offer, provider/model; null before any")),
        "prompt": text(),
        "images": integer("Files saved", minimum=0),
        "estimate_usd": usd("The estimate"),
        "actual_usd": usd("What it cost"),
        "error": nullable(text()),
        "host": nullable(text("The machine that made it (a team ledger has many); null in ledgers from before")),
    },
    description="A job in the ledger.",
)


def job_listing(record) -> dict:
    """One line of `imgroute jobs --json`."""
    return {
        "job_id": record.id,
        "created": when(record.created),
        "state": record.state,
        "offer": record.offer,
        "prompt": record.prompt,
        "images": record.images,
        "estimate_usd": usd_json(record.estimate),
        "actual_usd": usd_json(record.actual),
        "error": record.error,
        "host": record.host,
    }


CONSTRAINTS = obj(
    {
        "providers": array_of(text(), "Only these providers (empty: all)"),
        "exclude": STRINGS,
        "max_cost": nullable(text("--max-cost: USD as a decimal string")),
        "plans": map_of(text(), "Provider -> the plan it is priced at (--plan)"),
        "official_only": boolean(),
        "stated_quality": boolean(),
        "deadline_s": nullable(number("--deadline in seconds")),
        "rank": enum(RANKS),
    },
    optional=("official_only", "stated_quality", "deadline_s", "rank"),  # (jobs journaled by older versions)
    description="The routing limits it was made with (null for jobs journaled before they were kept).",
)

JOB_DETAILS = obj(
    {
        "job_id": text(),
        "created": LOCAL_TIME,
        "state": JOB_STATE,
        "prompt": text(),
        "request": extended(REQUEST, {"constraints": nullable(CONSTRAINTS)}),
        "estimate_usd": usd("The estimate"),
        "actual_usd": usd("What it cost"),
        "actual_source": nullable(text("Where `actual_usd` comes from: `usage`, `list price`, ...")),
        "error": nullable(text()),
        "out_dir": nullable(text()),
        "quotes": array_of(
            obj(
                {
                    "provider": PROVIDER,
                    "model": MODEL,
                    "cost_usd": usd(),
                    "eligible": boolean(),
                    "reasons": STRINGS,
                }
            ),
            "The quotes as they were when the job was made",
        ),
        "attempts": array_of(
            obj(
                {
                    "seq": integer(minimum=0),
                    "provider": PROVIDER,
                    "model": MODEL,
                    "plan": PLAN,
                    "state": ATTEMPT["properties"]["state"],
                    "estimate_usd": usd("The estimate"),
                    "actual_usd": usd("What it cost"),
                    "actual_source": nullable(text()),
                    "error": nullable(text()),
                    "breakdown": array_of(text(), "The arithmetic behind the estimate"),
                }
            )
        ),
        "tasks": array_of(
            obj(
                {
                    "attempt": integer("Its attempt's seq"),
                    "provider": PROVIDER,
                    "client_ref": text("imgroute's id for the request (idempotency key)"),
                    "provider_job_id": nullable(text("The provider's id, recorded as soon as it came back")),
                    "state": states(TASK_STATES),
                    "images": integer(minimum=0),
                    "detail": nullable(text()),
                    "sent": LOCAL_TIME,
                }
            ),
            "Each request sent (or about to be)",
        ),
        "files": array_of(IMAGE),
        "history": array_of(obj({"at": LOCAL_TIME, "state": JOB_STATE, "detail": nullable(text())})),
    },
    description="Everything the ledger knows about one job.",
)


def job_details(record, attempts, tasks, files, events) -> dict:
    """`imgroute jobs show --json`: everything the ledger knows about one job."""
    return {
        "job_id": record.id,
        "created": when(record.created),
        "state": record.state,
        "prompt": record.prompt,
        "request": {
            **request_json(Request.from_json(record.request)),
            "constraints": record.request.get("constraints"),
        },
        "estimate_usd": usd_json(record.estimate),
        "actual_usd": usd_json(record.actual),
        "actual_source": record.actual_source,
        "error": record.error,
        "out_dir": record.out_dir,
        "quotes": [
            {key: q[key] for key in ("provider", "model", "cost_usd", "eligible", "reasons")}
            for q in record.route.get("quotes", [])
        ],
        "attempts": [
            {
                "seq": a.seq,
                "provider": a.provider,
                "model": a.model,
                "plan": a.plan,
                "state": a.state,
                "estimate_usd": usd_json(a.estimate),
                "actual_usd": usd_json(a.actual),
                "actual_source": a.actual_source,
                "error": a.error,
                "breakdown": a.breakdown,
            }
            for a in attempts
        ],
        "tasks": [
            {
                "attempt": t.attempt_seq,
                "provider": t.provider,
                "client_ref": t.client_ref,
                "provider_job_id": t.provider_job_id,
                "state": t.state,
                "images": t.images,
                "detail": t.detail,
                "sent": when(t.created),
            }
            for t in tasks
        ],
        "files": [
            {
                "path": f.path,
                "sha256": f.sha256,
                "bytes": f.bytes,
                "format": f.format,
                "width": f.width,
                "height": f.height,
                "verified": f.verified,
            }
            for f in files
        ],
        "history": [{"at": when(e.at), "state": e.state, "detail": e.detail} for e in events],
    }
