"""Commands over the ledger: `jobs` (list, show, resume), `budget` (set, show) and `spend`."""

from __future__ import annotations

import datetime as dt
import json
import sys
from decimal import Decimal
from typing import Annotated

import typer

from imgroute import config, policy
from imgroute.cli import JsonOpt, _opt, app, load_pricing
from imgroute.errors import ImgrouteError, UsageError
from imgroute.money import usd_json

jobs_app = typer.Typer(help="Jobs in the ledger: list, show, resume.", invoke_without_command=True)
budget_app = typer.Typer(help="Daily and monthly spending caps.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(budget_app, name="budget")

STATES = ("planned", "submitting", "submitted", "running", "succeeded", "failed", "unknown", "cancelled")


def open_ledger():
    from imgroute.ledger import LEDGER_FILE, Ledger

    return Ledger(config.home() / LEDGER_FILE)


def parse_day(text: str, flag: str) -> dt.datetime:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text.strip()), dt.time())
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a date", f"write it as YYYY-MM-DD, like {flag} 2026-11-01") from None


def resolve_job(ledger, job_id: str):
    matches = ledger.find_job(job_id.strip())
    if not matches:
        raise UsageError(f"no job {job_id!r} in the ledger", "list jobs with: imgroute jobs")
    if len(matches) > 1:
        raise UsageError(f"{job_id!r} matches {len(matches)} jobs", "give more characters of the id")
    return matches[0]


def _when(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


# -- jobs -------------------------------------------------------------------------------------


@jobs_app.callback()
def jobs_list(
    ctx: typer.Context,
    state: Annotated[list[str] | None, _opt("--state", help="Only jobs in these states (repeatable).")] = None,
    provider: Annotated[str | None, _opt("--provider", help="Only jobs tried at this provider.")] = None,
    since: Annotated[str | None, _opt("--since", help="Jobs created on or after YYYY-MM-DD.")] = None,
    until: Annotated[str | None, _opt("--until", help="Jobs created before YYYY-MM-DD.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent jobs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from imgroute import render
    from imgroute.providers import known

    for item in state or []:
        if item not in STATES:
            raise UsageError(f"--state {item!r} is not a job state", f"use one of {', '.join(STATES)}")
    if provider is not None and provider not in known():
        raise UsageError(f"unknown provider {provider!r} in --provider", f"known providers: {', '.join(known())}")
    if limit < 1:
        raise UsageError(f"--limit {limit} must be at least 1", "for example --limit 50")
    ledger = open_ledger()
    try:
        rows = ledger.jobs(
            tuple(state or ()),
            provider,
            parse_day(since, "--since").timestamp() if since else None,
            parse_day(until, "--until").timestamp() if until else None,
            limit,
        )
    finally:
        ledger.close()
    data = [
        {
            "job_id": r["id"],
            "created": _when(r["created"]),
            "state": r["state"],
            "offer": r["offer"],
            "prompt": r["prompt"],
            "images": r["images"],
            "estimate_usd": _usd(r["estimate_usd"]),
            "actual_usd": _usd(r["actual_usd"]),
            "error": r["error"],
        }
        for r in rows
    ]
    if as_json:
        render.print_json(data)
        return
    render.print_jobs(render.stdout_console(), data)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="A job id, or its first characters.")], as_json: JsonOpt = False
) -> None:
    """Everything the ledger knows about one job."""
    from imgroute import render

    ledger = open_ledger()
    try:
        job = resolve_job(ledger, job_id)
        data = job_details(ledger, job)
    finally:
        ledger.close()
    if as_json:
        render.print_json(data)
    else:
        render.print_job_details(render.stdout_console(), data)


def job_details(ledger, job) -> dict:
    return {
        "job_id": job["id"],
        "created": _when(job["created"]),
        "state": job["state"],
        "prompt": job["prompt"],
        "request": _request_report(json.loads(job["request"])),
        "estimate_usd": _usd(job["estimate_usd"]),
        "actual_usd": _usd(job["actual_usd"]),
        "actual_source": job["actual_source"],
        "error": job["error"],
        "out_dir": job["out_dir"],
        "quotes": [
            {
                "provider": q["provider"],
                "model": q["model"],
                "cost_usd": q["cost_usd"],
                "eligible": q["eligible"],
                "reasons": q["reasons"],
            }
            for q in json.loads(job["route"])["quotes"]
        ],
        "attempts": [
            {
                "seq": a["seq"],
                "provider": a["provider"],
                "model": a["model"],
                "plan": a["plan"],
                "state": a["state"],
                "estimate_usd": _usd(a["estimate_usd"]),
                "actual_usd": _usd(a["actual_usd"]),
                "actual_source": a["actual_source"],
                "error": a["error"],
                "breakdown": json.loads(a["breakdown"] or "[]"),
            }
            for a in ledger.attempts(job["id"])
        ],
        "tasks": [
            {
                "attempt": t["attempt_seq"],
                "provider": t["provider"],
                "client_ref": t["client_ref"],
                "provider_job_id": t["provider_job_id"],
                "state": t["state"],
                "images": t["images"],
                "detail": t["detail"],
                "sent": _when(t["created"]),
            }
            for t in ledger.tasks(job["id"])
        ],
        "files": [
            {
                "path": f["path"],
                "sha256": f["sha256"],
                "bytes": f["bytes"],
                "format": f["format"],
                "width": f["width"],
                "height": f["height"],
                "verified": bool(f["verified"]),
            }
            for f in ledger.files(job["id"])
        ],
        "history": [
            {"at": _when(e["at"]), "state": e["state"], "detail": e["detail"]} for e in ledger.events(job["id"])
        ],
    }


@jobs_app.command("resume")
def jobs_resume(
    job_id: Annotated[str | None, typer.Argument(help="The job to finish (or --all).", show_default=False)] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every unfinished job.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Most seconds to wait per job.")] = (
        policy.DEFAULT_JOB_TIMEOUT_S
    ),
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only the saved file paths.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Finish interrupted jobs: poll and download what was sent, never sending it again."""
    from imgroute import keys as key_store
    from imgroute import render
    from imgroute.cli import build_constraints
    from imgroute.cli_gen import job_runner
    from imgroute.jobs import OutputOptions, rerouter, result_to_json

    if (job_id is None) == (not all_jobs):
        raise UsageError("give one job id, or --all", "for example: imgroute jobs resume 3f1c9a52 (or --all)")
    ledger = open_ledger()
    try:
        targets = [resolve_job(ledger, job_id)["id"]] if job_id else [r["id"] for r in ledger.unfinished()]
    finally:
        ledger.close()
    table = load_pricing(None)
    available = key_store.all_keys()
    base_urls = key_store.all_base_urls()
    constraints = build_constraints(table, config.load_settings(), None, None, None, None)

    reroute = rerouter(table, constraints, key_store.missing_key_reasons(available))

    results = []
    worst: ImgrouteError | None = None
    for target in targets:
        output = OutputOptions(config.home())  # replaced by the job's own out_dir and name template
        with job_runner(table, available, base_urls, output, timeout, quiet or as_json, None) as runner:
            result = runner.resume(target, reroute)
        results.append(result)
        if result.error is not None and worst is None:
            worst = result.error
    if as_json:
        render.print_json([result_to_json(r, []) for r in results])
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


# -- budget -----------------------------------------------------------------------------------


def _cap(text: str | None, flag: str) -> Decimal | None:
    from imgroute.request import parse_money

    if text is None or text.strip().lower() in ("none", "off"):
        return None
    return parse_money(text, flag)


@budget_app.command("set")
def budget_set(
    daily: Annotated[str | None, _opt("--daily", help="Most USD per calendar day ('none' to clear).")] = None,
    monthly: Annotated[str | None, _opt("--monthly", help="Most USD per calendar month ('none' to clear).")] = None,
) -> None:
    """Set spending caps, checked before every submit against what is spent and in flight."""
    if daily is None and monthly is None:
        raise UsageError("nothing to set", "give --daily USD and/or --monthly USD")
    caps = {}
    if daily is not None:
        caps["daily"] = _cap(daily, "--daily")
    if monthly is not None:
        caps["monthly"] = _cap(monthly, "--monthly")
    ledger = open_ledger()
    try:
        for period, cap in caps.items():
            ledger.set_budget(period, cap)
    finally:
        ledger.close()
    budget_show(as_json=False)


@budget_app.command("show")
def budget_show(as_json: JsonOpt = False) -> None:
    """The caps, what is spent (including jobs in flight), what is left and when each resets."""
    from imgroute import render
    from imgroute.ledger import PERIODS, period_reset, period_start

    now = dt.datetime.now()
    ledger = open_ledger()
    try:
        caps = ledger.budgets()
        rows = []
        for period in PERIODS:
            spent = ledger.spent_since(period_start(period, now).timestamp())
            cap = caps.get(period)
            rows.append(
                {
                    "period": period,
                    "cap_usd": usd_json(cap),
                    "spent_usd": usd_json(spent),
                    "left_usd": usd_json(max(Decimal(0), cap - spent)) if cap is not None else None,
                    "resets": period_reset(period, now).strftime("%Y-%m-%d %H:%M"),
                }
            )
    finally:
        ledger.close()
    if as_json:
        render.print_json(rows)
        return
    for row in rows:
        cap = f"${row['cap_usd']:g}" if row["cap_usd"] is not None else "no cap"
        left = f", ${row['left_usd']:g} left" if row["left_usd"] is not None else ""
        sys.stdout.write(f"{row['period']:<8} {cap}: ${row['spent_usd']:g} spent{left} (resets {row['resets']})\n")


# -- spend ------------------------------------------------------------------------------------


@app.command()
def spend(
    since: Annotated[str | None, _opt("--since", help="Only spending on or after YYYY-MM-DD.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What was spent, by day, month, provider and quality: estimated vs actual, and the drift."""
    from imgroute import render

    start = parse_day(since, "--since").timestamp() if since else None
    ledger = open_ledger()
    try:
        rows = ledger.spend_rows(start)
    finally:
        ledger.close()
    groups = {
        "day": lambda r: dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d"),
        "month": lambda r: dt.datetime.fromtimestamp(r.created).strftime("%Y-%m"),
        "provider": lambda r: r.provider,
        "quality": lambda r: r.quality or "-",
    }
    data = {name: summarize(rows, key) for name, key in groups.items()}
    data["total"] = summarize(rows, lambda r: "all")
    if as_json:
        render.print_json(data)
    else:
        render.print_spend(render.stdout_console(), data)


def summarize(rows, key) -> list[dict]:
    """Per group: attempts charged, images, estimated and actual USD, and the drift between them."""
    from imgroute.ledger import committed_cost

    out: dict[str, dict] = {}
    for row in rows:
        group = out.setdefault(
            key(row),
            {
                "key": key(row),
                "attempts": 0,
                "images": 0,
                "estimated": Decimal(0),
                "actual": Decimal(0),
                "pending": Decimal(0),
                "compared_est": Decimal(0),
                "compared_act": Decimal(0),
            },
        )
        if row.actual is not None:
            group["attempts"] += 1
            group["images"] += row.images
            group["actual"] += row.actual
            group["estimated"] += row.estimate or Decimal(0)
            if row.estimate:
                group["compared_est"] += row.estimate
                group["compared_act"] += row.actual
        else:
            group["pending"] += committed_cost(None, str(row.estimate) if row.estimate else None, row.state)
    result = []
    for group in sorted(out.values(), key=lambda g: g["key"]):
        est, act = group.pop("compared_est"), group.pop("compared_act")
        drift = float((act - est) / est * 100) if est else None
        result.append(
            {
                "key": group["key"],
                "attempts": group["attempts"],
                "images": group["images"],
                "estimated_usd": usd_json(group["estimated"]),
                "actual_usd": usd_json(group["actual"]),
                "in_flight_usd": usd_json(group["pending"]),
                "drift_pct": round(drift, 2) if drift is not None else None,
            }
        )
    return result


def _request_report(stored: dict) -> dict:
    from imgroute.models import Request
    from imgroute.report import request_json

    return {**request_json(Request.from_json(stored)), "constraints": stored.get("constraints")}


def _usd(text: str | None) -> float | None:
    return usd_json(Decimal(text)) if text is not None else None
