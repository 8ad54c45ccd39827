"""Batch input and planning: rows from JSON Lines or CSV, each routed before anything is spent.

A row is a prompt plus optional overrides. Every row gets a stable id (its content hash, numbered
among identical rows) so that running the same file again skips rows that are done and resumes
those in flight, instead of paying again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from imgroute.errors import UsageError, quoted
from imgroute.models import UNFINISHED_JOB_STATES, Constraints, Request
from imgroute.options import JOB, ROW_FIELDS
from imgroute.policy import DEFAULT_PRICING_MAX_AGE_DAYS
from imgroute.providers.registry import lane
from imgroute.request import build_request, check_providers, check_text, kind_of, parse_duration, read_stdin

if TYPE_CHECKING:  # the router is imported only when a batch is planned
    from imgroute.pricing.router import Quote, Route, RouteCache
    from imgroute.pricing.table import Offer
    from imgroute.store.records import RowJob

# Exit codes of a job worth trying again on the next run: provider trouble, a budget refusal, a
# result that could not be fetched, a stop before sending. A failed or moderated job (6) or an
# unservable row (4) is final.
RETRYABLE_EXIT_CODES = (5, 7, 8, 130)

FIELDS = ROW_FIELDS  # id, prompt, each option a row may set (imgroute.options), name


class Row(NamedTuple):
    line: int  # in the input file, for messages
    key: str  # stable id: the row's `id`, else its content hash (+ its rank among identical rows)
    request: Request
    providers: frozenset[str]
    exclude: frozenset[str]
    name: str | None  # output file name (stem) for this row
    deadline_s: float | None = None  # how long this row may take (admits OpenAI Batch at 24h)


class BadRow(NamedTuple):
    line: int
    problem: str


class OfferPlan(NamedTuple):
    offer_id: str
    provider: str
    rows: int
    images: int
    cost: Decimal
    submits: int  # requests to send (Kie takes one image per request)
    windowed: bool = False  # an offer with a completion window (OpenAI Batch): its own limits


class Plan(NamedTuple):
    rows: tuple[tuple[Row, str, Decimal], ...]  # (row, offer id, new spend) for every row left to run
    unservable: tuple[tuple[Row, str], ...]  # (row, why)
    by_offer: tuple[OfferPlan, ...]
    total: Decimal  # what this run is estimated to spend: rows done before cost nothing
    done_before: tuple[tuple[Row, str | None], ...] = ()  # (row, where its images are)
    not_retried: tuple[tuple[Row, str], ...] = ()  # (row, how it failed before)
    whole: Decimal = Decimal(0)  # the whole file's estimate, rows done before included
    caveats: tuple[str, ...] = ()  # about the offers the rows go to, each said once (router.caveats)

    def runs(self) -> list[Row]:
        """The rows a run goes through, in the file's order: those left to do, and those done or
        failed before (reported as such, sent nothing)."""
        rows = [row for row, _, _ in self.rows] + [row for row, _ in (*self.done_before, *self.not_retried)]
        return sorted(rows, key=lambda row: row.line)

    def pacing(self, limits: dict[str, tuple[int, float | None]]) -> list[dict]:
        """Per provider: the submits planned and the least time its submit rate allows for them."""
        submits: dict[str, int] = {}
        for offer in self.by_offer:  # (a batch API's lane has its own limits: "openai:batch")
            where = lane(offer.provider, offer.windowed)
            submits[where] = submits.get(where, 0) + offer.submits
        paced = []
        for provider, count in sorted(submits.items()):
            concurrency, per_minute = limits.get(provider, (None, None))
            paced.append(
                {
                    "provider": provider,
                    "submits": count,
                    "concurrency": concurrency,
                    "per_minute": per_minute,
                    "min_minutes": round(count / per_minute, 1) if per_minute else None,
                }
            )
        return paced


# -- reading ------------------------------------------------------------------------------------


def read_text(source: str) -> tuple[str, str]:
    """(text, label) of the input: a file, or `-` for stdin."""

    if source == "-":
        return read_stdin("the batch rows"), "stdin"
    path = Path(source).expanduser()
    try:
        # A byte that is not UTF-8 is kept (surrogateescape) so that its row alone is refused, by line
        return path.read_text(encoding="utf-8", errors="surrogateescape"), str(path.resolve())
    except FileNotFoundError:
        raise UsageError(f"batch file {source} does not exist", "check the path") from None
    except OSError as exc:
        raise UsageError(f"cannot read batch file {source}: {exc.strerror}", "give a JSON Lines or CSV file") from None


def raw_rows(text: str, label: str) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line, fields, problem) per row. JSON Lines when the first row starts with `{`, else CSV."""
    stripped = text.lstrip()
    if label.endswith((".jsonl", ".ndjson")) or stripped.startswith("{"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON ({exc.msg})"
                continue
            if not isinstance(value, dict):
                yield number, None, "a row must be a JSON object"
                continue
            yield number, value, None
        return
    try:
        yield from _csv_rows(text)
    except csv.Error as exc:  # a cell over the csv module's limit (128 KB), or a broken quote
        raise UsageError(f"the CSV cannot be read: {exc}", "keep each cell under 128 KB, and quotes paired") from None


def _csv_rows(text: str) -> Iterator[tuple[int, dict | None, str | None]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "prompt" not in [f.strip() for f in reader.fieldnames]:
        yield 1, None, "a CSV batch needs a header row with a `prompt` column"
        return
    for record in reader:
        values = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in record.items() if k}
        if None in record:  # more cells than header columns
            yield reader.line_num, None, "more cells than columns in the header"
            continue
        yield reader.line_num, {k: v for k, v in values.items() if v not in ("", None)}, None


def parse_rows(text: str, label: str, registry=None) -> tuple[list[Row], list[BadRow]]:
    """The rows of a file (its `label` is its resolved path, or "stdin"). A relative image or mask
    path in a file is read from the file's own folder, as a row is written next to its images.
    `registry`: the providers rows may name (the pricing table's: its relays too)."""
    rows: list[Row] = []
    bad: list[BadRow] = []
    seen: dict[str, int] = {}
    folder = Path(label).parent if label != "stdin" else Path.cwd()
    for line, fields, problem in raw_rows(text, label):
        if problem or fields is None:
            bad.append(BadRow(line, problem or "an empty row"))
            continue
        try:
            row = _row(line, fields, folder, registry)
        except UsageError as exc:
            bad.append(BadRow(line, exc.worded("cli")[0]))  # (the fields read as the flags they match)
            continue
        count = seen.get(row.key, 0)
        seen[row.key] = count + 1
        rows.append(row._replace(key=f"{row.key}-{count}") if "id" not in fields else row)
    ids = [row.key for row in rows]
    if len(ids) != len(set(ids)):
        duplicate = next(k for k in ids if ids.count(k) > 1)
        raise UsageError(f"two rows share the id {quoted(duplicate)}", "give every row its own `id`")
    return rows, bad


def _row(line: int, fields: dict, folder: Path, registry) -> Row:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise UsageError(f"unknown field {quoted(unknown[0])}", f"fields: {', '.join(FIELDS)}")
    for field, value in fields.items():  # JSON may carry anything: only text (and numbers) are read
        if field in ("image", "provider", "exclude") and isinstance(value, list):
            value = next((v for v in value if not isinstance(v, str)), "")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UsageError(f"{field} is {kind_of(value)}", f'give {field} as text, like "{field}": "..."')
    for field, value in fields.items():  # a byte that is not UTF-8 (kept by surrogateescape) is this row's fault
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                check_text(item, "the prompt" if field == "prompt" else field)
    text: dict[str, Any] = {k: v if isinstance(v, (list, int)) else str(v) for k, v in fields.items()}
    n = text.get("n", 1)
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise UsageError(f"n {quoted(n)} is not a whole number", "for example n: 2") from None
    job = {option.name: text[option.row] for option in JOB if option.row in text}
    job["n"] = n
    job["images"] = [_beside(folder, image) for image in _list(text.get("image"))]
    if "mask" in text:
        job["mask"] = _beside(folder, text["mask"])
    request = build_request(text.get("prompt"), **job)
    providers = frozenset(check_providers(_list(text.get("provider")), "provider", registry=registry))
    exclude = frozenset(check_providers(_list(text.get("exclude")), "exclude", registry=registry))  # (row fields)
    canonical = json.dumps({k: fields[k] for k in sorted(fields)}, sort_keys=True, default=str)
    key = str(fields["id"]) if "id" in fields else hashlib.sha256(canonical.encode()).hexdigest()[:16]
    deadline = parse_duration(text["deadline"], "deadline") if "deadline" in text else None
    return Row(
        line=line,
        key=key,
        request=request,
        providers=providers,
        exclude=exclude,
        name=text.get("name"),
        deadline_s=deadline,
    )


def _beside(folder: Path, source: str) -> str:
    """A row's image path read from the batch file's folder (URLs and absolute paths as given)."""
    if "://" in source or source.lower().startswith("data:"):
        return source
    path = Path(source).expanduser()
    return source if path.is_absolute() else str(folder / path)


def _list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [part for part in str(value).replace(";", " ").split() if part]


# -- planning -----------------------------------------------------------------------------------


def row_constraints(row: Row, base: Constraints) -> Constraints:
    """A row's own provider list narrows the command line's; its excludes add to them."""
    if row.providers and base.providers:  # both may name providers or offers (provider/model)
        kept = {s for s in row.providers if s in base.providers or s.split("/")[0] in base.providers}
        kept |= {s for s in base.providers if s.split("/")[0] in row.providers}
        providers = frozenset(kept) or frozenset({"(none)"})  # disjoint: nothing left
    else:
        providers = row.providers or base.providers
    deadline = row.deadline_s if row.deadline_s is not None else base.deadline_s
    return base._replace(providers=providers, exclude=base.exclude | row.exclude, deadline_s=deadline)


def batch_label(label: str, team: bool = False) -> str:
    """The file's key in the ledger: the rows of one file are found again by it (hex: see
    Ledger.jobs_for_rows). On a team ledger a file is known by its name alone, so that machines
    whose copies of it live at different paths share its rows (a row is known by its content, or
    its `id`)."""
    name = f"name:{Path(label).name}" if team and label != "stdin" else label
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def plan(
    rows: list[Row],
    routes: RouteCache,
    base: Constraints,
    priors: dict | None = None,
    label: str = "",
    max_age_days: int = DEFAULT_PRICING_MAX_AGE_DAYS,
) -> Plan:
    """Route every row left to do; keep only what the summary needs (routes are looked up again
    when a row runs, from the same cache, so memory stays flat however long the file).

    With `priors` (what earlier runs of this file did, by row key), rows done before are set aside,
    rows that failed for good are not retried, and a row whose job is under way or partly delivered
    is counted for what it still needs: nothing for a request already sent, the images still
    missing otherwise."""
    from imgroute.pricing.router import with_caveats

    priors = priors or {}
    runnable, unservable, done, final = [], [], [], []
    caveats: dict[str, None] = {}  # in order, once each
    caveats_seen: set[tuple[int, bool]] = set()  # rankings already read (rows alike share one)
    offers: dict[str, OfferPlan] = {}
    total = whole = Decimal(0)
    for row in rows:
        prior = priors.get(f"{label}:{row.key}")
        if prior is not None and prior.state == "succeeded":
            done.append((row, prior.out_dir))
            earlier = routes.rank(row.request, row_constraints(row, base)).choice
            whole += earlier.cost if earlier and earlier.cost is not None else Decimal(0)
            continue
        if (
            prior is not None
            and prior.state not in UNFINISHED_JOB_STATES
            and prior.exit_code not in RETRYABLE_EXIT_CODES
        ):
            final.append((row, prior.error or "failed"))
            continue
        route = routes.rank(row.request, row_constraints(row, base))
        choice = route.choice
        if choice is None:
            unservable.append((row, _why_unservable(route)))
            continue
        cost, submits = _still_needed(choice, row, prior)
        whole += choice.cost or Decimal(0)
        runnable.append((row, choice.offer.id, cost))
        shape = (id(route.quotes), row.request.target.from_image is not None)
        if shape not in caveats_seen:
            caveats_seen.add(shape)
            caveats.update(dict.fromkeys(with_caveats(route, max_age_days, base.rank).caveats))
        _count(offers, choice.offer, row.request.n, cost, submits)
        total += cost
    by_offer = tuple(sorted(offers.values(), key=lambda o: -o.cost))
    return Plan(
        rows=tuple(runnable),
        unservable=tuple(unservable),
        by_offer=by_offer,
        total=total,
        done_before=tuple(done),
        not_retried=tuple(final),
        whole=whole,
        caveats=tuple(caveats),
    )


def _why_unservable(route: Route) -> str:
    """A row's reasons, as its first offers give them; an offer ruled out only for want of a key
    comes first (a key is what a person can add), as `gen` says it (router.no_offer_error)."""
    keyless = route.skipped_for_keys()
    others = [quote for quote in route.quotes if all(quote is not key for key in keyless)]
    return "; ".join(f"{quote.offer.id}: {quote.reasons[0]}" for quote in [*keyless, *others][:3])


def _still_needed(choice: Quote, row: Row, prior: RowJob | None) -> tuple[Decimal, int]:
    """(cost, submits) a row still needs at its winner: all of it, or, finished from the ledger,
    nothing for a request already sent and the images still missing otherwise."""
    cost, submits = choice.cost, len(choice.assessment.requests)
    assert cost is not None, "the winner of a route is priced"
    if prior is None:
        return cost, submits
    under_way = prior.state in ("submitted", "running", "unknown")
    missing = 0 if under_way else max(0, row.request.n - prior.images)
    return cost * missing / row.request.n, submits if missing else 0


def _count(offers: dict[str, OfferPlan], offer: Offer, images: int, cost: Decimal, submits: int) -> None:
    """Add a row to its offer's line of the plan."""
    so_far = offers.get(offer.id) or OfferPlan(
        offer_id=offer.id,
        provider=offer.provider,
        rows=0,
        images=0,
        cost=Decimal(0),
        submits=0,
        windowed=offer.window_s is not None,
    )
    offers[offer.id] = so_far._replace(
        rows=so_far.rows + 1, images=so_far.images + images, cost=so_far.cost + cost, submits=so_far.submits + submits
    )
