"""Every `--json` shape imgroute prints, in one place (the contract in design.md section 5).

Values in, plain JSON-ready dicts out. USD amounts are numbers rounded to 6 places.
"""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

from imgroute import price_models
from imgroute.models import Request
from imgroute.money import fmt_rate, usd_json


def quote_json(quote) -> dict:
    """One offer's line of `imgroute quote --json`."""
    a = quote.assessment
    delivery = a.delivery
    return {
        "provider": a.offer.provider,
        "model": a.model,
        "plan": a.plan.name,
        "eligible": quote.eligible,
        "cost_usd": usd_json(a.cost),
        "per_image_usd": usd_json(a.per_image),
        "marginal_cost_usd": usd_json(quote.rank_cost),  # what routing ranked it by (prepaid credits)
        "output": {
            "width": delivery.width if delivery else None,
            "height": delivery.height if delivery else None,
            "quality": a.quality,
            "exact_size": delivery.exact if delivery else None,
            "resolution": delivery.resolution if delivery else None,
            "aspect": delivery.aspect if delivery else None,
            "seen_before": delivery.seen if delivery else None,  # learned: delivered at this size N times
        },
        "requests": len(a.requests),
        "offer": a.offer.id,
        "identity": identity_json(a.offer),
        "quality_stated": a.offer.quality_stated,
        "history": history_json(a.offer.history),
        "expected_per_image_usd": usd_json(quote.expected),
        "reasons": list(quote.reasons),
        "notes": list(a.notes),
        "breakdown": [line.text for line in a.breakdown],
    }


def history_json(stats) -> dict | None:
    """What an offer has done here (null when it has no record)."""
    if stats is None:
        return None
    return {
        "attempts": stats.attempts,
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "moderated": stats.moderated,
        "charged_failures_usd": usd_json(stats.charged_usd),
        "p50_s": stats.percentile(0.5),
        "p95_s": stats.percentile(0.95),
        "enough": stats.enough,
    }


def identity_json(offer) -> dict:
    identity = offer.identity
    return {"kind": identity.kind, "source": identity.source, "note": identity.note, "declared": identity.declared}


def route_json(route) -> dict:
    """`imgroute quote --json`. The route's caveats about the winner join its notes, and are
    listed on their own too."""
    quotes = [quote_json(q) for q in route.quotes]
    if route.choice is not None:
        quotes[0]["notes"] = [*quotes[0]["notes"], *route.caveats]
    return {
        "request": request_json(route.request),
        "choice": quotes[0] if route.choice is not None else None,
        "quotes": quotes,
        "caveats": list(route.caveats),
    }


def route_text(route) -> str:
    """`route_json(route)` as JSON text, as every job journals its route (its caveats listed once,
    not also among the winner's notes). Requests alike but for their wording share one ranking
    (router.RouteCache), and its quotes are written out once for all of them (it was an eighth of
    the CPU a job of `serve` takes on its worker)."""
    import json  # (not at the top: `quote` does without it)

    choice, quotes = _quotes_text(route.quotes)
    request = json.dumps(request_json(route.request))
    chosen = choice if route.choice is not None else "null"
    caveats = json.dumps(list(route.caveats))
    return f'{{"request": {request}, "choice": {chosen}, "quotes": {quotes}, "caveats": {caveats}}}'


_QUOTES_TEXT: dict[int, tuple[tuple, str, str]] = {}  # id(quotes) -> (those quotes, first's text, all)
_QUOTES_TEXT_KEPT = 256
_quotes_text_lock = threading.Lock()


def _quotes_text(quotes: tuple) -> tuple[str, str]:
    """(the first quote's JSON text, the list's) for this tuple of quotes, made once per tuple.
    (The tuple is kept with its text, so its id cannot be reused while it is remembered.)"""
    import json

    found = _QUOTES_TEXT.get(id(quotes))
    if found is not None and found[0] is quotes:
        return found[1], found[2]
    items = [json.dumps(quote_json(quote)) for quote in quotes]
    texts = (quotes, items[0] if items else "null", f"[{', '.join(items)}]")
    with _quotes_text_lock:
        if len(_QUOTES_TEXT) >= _QUOTES_TEXT_KEPT:
            del _QUOTES_TEXT[next(iter(_QUOTES_TEXT))]  # the oldest
        _QUOTES_TEXT[id(quotes)] = texts
    return texts[1], texts[2]


def request_json(request: Request) -> dict:
    """What was asked, as a user would write it: images and mask by their path or URL."""
    return {
        "prompt": request.prompt,
        "quality": request.quality,
        **request.target.to_json(),
        "n": request.n,
        "images": [image.source for image in request.images],
        "mask": request.mask.source if request.mask else None,
        "format": request.output_format,
    }


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
        "error": result.error.message if result.error else None,
        "caveats": list(result.caveats),
    }


# -- providers and pricing ------------------------------------------------------------------


def offer_json(offer) -> dict:
    """One offer of `imgroute providers --json`: what it can do."""
    sizes = offer.sizes
    if sizes.mode == "pixels":
        r = sizes.rules
        size_text = (
            f"any WxH, edges x{r.multiple_of}, <= {r.max_edge} px, "
            f"{r.min_pixels / 1e6:.2f}-{r.max_pixels / 1e6:.2f} MP, <= {r.max_ratio.normalize():f}:1"
        )
    else:
        size_text = "; ".join(f"{p.label} {'/'.join(p.tiers)}" for p in sizes.presets.values())
    edit = offer.edit
    if edit.supported:
        edit_text = (
            f"yes, up to {edit.max_images or '?'} images, {'mask' if edit.mask else 'no mask'}, {'/'.join(edit.inputs)}"
        )
    else:
        edit_text = "no"
    return {
        "provider": offer.provider,
        "model": offer.model,
        "qualities": list(offer.qualities),
        "quality_selectable": offer.quality_selectable,
        "sizes": size_text,
        "images_per_request": offer.images_per_request,
        "prompt_max_chars": offer.prompt_max_chars,
        "edit": edit_text,
        "price": price_summary(offer),
        "identity": identity_json(offer),
        "quality_stated": offer.quality_stated,
        "background": list(offer.backgrounds),
        "moderation": list(offer.moderations),
        "unsourced": dict(offer.unsourced),
    }


def price_summary(offer) -> str:
    return price_models.of(offer).summary(offer.price)


def pricing_rows(table, today: dt.date, max_age_days: int) -> list[dict]:
    """`imgroute pricing --json` rows: every figure with its source, date and age."""
    rows = []

    def add(provider: str, what: str, value: str, prov, origin: str) -> None:
        age = (today - prov.observed).days
        rows.append(
            {
                "provider": provider,
                "what": what,
                "value": value,
                "source": prov.source,
                "observed": prov.observed.isoformat(),
                "age_days": age,
                "stale": age > max_age_days,
                "file": origin,
            }
        )

    for info in table.providers.values():
        for plan in info.plans.values():
            if plan.usd_per_credit is not None:
                value = f"{fmt_rate(plan.usd_per_credit.quantize(Decimal('0.00000001')).normalize())}/credit"
                if plan.monthly_usd is not None:
                    value += f" ({fmt_rate(plan.monthly_usd)}/month for {plan.credits_per_month:,} credits)"
            else:
                value = plan.description
            label = f"plan {plan.name}" + (" (default)" if plan.default else "")
            add(info.id, label, value, plan.provenance, "")
    for offer in table.offers:
        add(offer.provider, f"{offer.model} price", price_summary(offer), offer.price.provenance, offer.origin)
        add(
            offer.provider,
            f"{offer.model} sizes",
            offer_json(offer)["sizes"],
            offer.sizes.provenance,
            offer.origin,
        )
    return rows


# -- the ledger ---------------------------------------------------------------------------------


def when(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


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
    }


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


def spend(summary: dict[str, list[dict]]) -> dict:
    """`imgroute spend --json`: per grouping, each group's figures in USD."""
    return {
        name: [
            {
                "key": g["key"],
                "attempts": g["attempts"],
                "images": g["images"],
                "estimated_usd": usd_json(g["estimated"]),
                "actual_usd": usd_json(g["actual"]),
                "in_flight_usd": usd_json(g["in_flight"]),
                "drift_pct": g["drift_pct"],
            }
            for g in groups
        ]
        for name, groups in summary.items()
    }


def budget(states: list[dict]) -> list[dict]:
    """`imgroute budget show --json`: each period's cap, what is spent and left, when it resets."""
    return [
        {
            "period": s["period"],
            "cap_usd": usd_json(s["cap"]),
            "spent_usd": usd_json(s["spent"]),
            "left_usd": usd_json(s["left"]),
            "resets": s["resets"].strftime("%Y-%m-%d %H:%M"),
        }
        for s in states
    ]


# -- gen --------------------------------------------------------------------------------------


def job_failure(error, job_id: str | None, route) -> dict:
    """gen's object when it ended before a job result existed (no offer, no key, Ctrl-C, bad flags):
    the same keys, nulls where nothing is known, `error` set; and each offer's reasons if none could."""
    failed = {key: None for key in JOB_KEYS}
    failed.update(job_id=job_id, status="failed", files=[], images=[], attempts=[], error=error.message)
    failed["skipped_without_key"] = skipped_json(route) if route is not None else []
    failed["caveats"] = list(route.caveats) if route is not None else []
    if route is not None and route.choice is None:
        failed["reasons"] = [{"offer": q.offer.id, "reasons": list(q.reasons)} for q in route.quotes]
    return failed


JOB_KEYS = (
    "job_id", "status", "provider", "model", "plan", "cost_usd", "actual_cost_usd", "actual_cost_source", "files",
    "images", "attempts", "skipped_without_key", "elapsed_s", "error", "caveats",
)  # fmt: skip


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


# -- batch --------------------------------------------------------------------------------------


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
    failed = {key: None for key in JOB_KEYS}
    failed.update(status="failed", files=[], images=[], attempts=[], skipped_without_key=[], caveats=[])
    failed.update(error=bad.problem, row=bad.line, id=None, outcome="bad_row", note=bad.problem)
    return failed


def advice(result, source: str) -> dict:
    """`imgroute advise --json`: every figure of the month."""
    routed, floor = result.routed_usd, result.floor_usd
    singles = [m for m in result.by_offer if m.usd is not None]
    cheapest = min(singles, key=lambda m: m.usd) if singles else None
    return {
        "source": source,
        "images_per_month": _amount(result.images),
        "routed_usd": usd_json(routed),
        "floor_usd": usd_json(floor),
        "unservable_rows": list(result.unservable_rows),
        "cheapest_single": (
            {
                "offer": cheapest.offer,
                "plan": cheapest.plan,
                "usd": usd_json(cheapest.usd),
                "saving_usd": usd_json(cheapest.usd - routed),
                "saving_pct": round(float((cheapest.usd - routed) / cheapest.usd * 100), 1) if cheapest.usd else None,
            }
            if cheapest
            else None
        ),
        "by_offer": [
            {
                "offer": m.offer,
                "plan": m.plan,
                "usd": usd_json(m.usd),
                "saving_usd": usd_json(m.usd - routed) if m.usd is not None else None,
                "saving_pct": round(float((m.usd - routed) / m.usd * 100), 1) if m.usd else None,
                "unservable_rows": list(m.unservable_rows),
                "credits": _amount(m.credits),
                "unused_credits": _amount(m.unused_credits),
                "excluded": m.excluded or None,
            }
            for m in result.by_offer
        ],
        "break_even": [
            {
                "offer": b.offer,
                "plan": b.plan,
                "monthly_usd": usd_json(b.monthly_usd),
                "images_per_month": b.images_per_month,
                "this_month_images": _amount(b.this_month_images),
                "past_it": b.past,
                "unused_credits": _amount(b.unused_credits),
                "why": b.why,
            }
            for b in result.break_even
        ],
    }


def _amount(value: Decimal | None) -> float | None:
    """A count that may be fractional (images or credits in a month scaled from history): one
    decimal, not money's six places (125.0, not 124.999998)."""
    return None if value is None else round(float(value), 1)


def savings(rows) -> dict:
    """`imgroute spend --savings --json`."""

    def saved(other):
        return usd_json(other - row.spent) if other is not None else None

    out = []
    for row in rows:
        out.append(
            {
                "period": row.period,
                "jobs": row.jobs,
                "spent_usd": usd_json(row.spent),
                "default_offer": row.default_offer,
                "at_default_usd": usd_json(row.at_default),
                "saved_vs_default_usd": saved(row.at_default),
                "cheapest_offer": row.cheapest_offer,
                "at_cheapest_usd": usd_json(row.at_cheapest),
                "saved_vs_cheapest_usd": saved(row.at_cheapest),
            }
        )
    return {"savings": out}


def balances(balances, today) -> list[dict]:
    """`imgroute plans show --json` (and advise's `prepaid`): each prepaid balance and its outlook."""
    return [
        {
            "provider": b.provider,
            "bought": usd_json(b.bought),
            "left": usd_json(b.left),
            "expires": b.expires.isoformat(),
            "per_day": usd_json(b.pace_per_day(today)),
            "expiring": usd_json(b.expiring(today)),
        }
        for b in balances
    ]
