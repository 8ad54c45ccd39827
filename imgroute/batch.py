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
from typing import TYPE_CHECKING, NamedTuple

from imgroute.errors import UsageError, quoted
from imgroute.models import Constraints, Request
from imgroute.request import build_request, check_providers, kind_of, read_stdin

if TYPE_CHECKING:  # the router is imported only when a batch is planned
    from imgroute.router import RouteCache

FIELDS = (
    "id",
    "prompt",
    "quality",
    "size",
    "aspect",
    "resolution",
    "n",
    "provider",
    "exclude",
    "name",
    "image",
    "mask",
    "format",
)


class Row(NamedTuple):
    line: int  # in the input file, for messages
    key: str  # stable id: the row's `id`, else its content hash (+ its rank among identical rows)
    request: Request
    providers: frozenset[str]
    exclude: frozenset[str]
    name: str | None  # output file name (stem) for this row


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


class Plan(NamedTuple):
    rows: tuple[tuple[Row, str, Decimal], ...]  # (row, offer id, estimate) for every row that can run
    unservable: tuple[tuple[Row, str], ...]  # (row, why)
    by_offer: tuple[OfferPlan, ...]
    total: Decimal

    def pacing(self, limits: dict[str, tuple[int, float | None]]) -> list[dict]:
        """Per provider: the submits planned and the least time its submit rate allows for them."""
        submits: dict[str, int] = {}
        for offer in self.by_offer:
            submits[offer.provider] = submits.get(offer.provider, 0) + offer.submits
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
        return path.read_text(encoding="utf-8"), str(path.resolve())
    except FileNotFoundError:
        raise UsageError(f"batch file {source} does not exist", "check the path") from None
    except UnicodeDecodeError:
        raise UsageError(f"batch file {source} is not UTF-8 text", "save it as UTF-8") from None
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


def parse_rows(text: str, label: str) -> tuple[list[Row], list[BadRow]]:
    rows: list[Row] = []
    bad: list[BadRow] = []
    seen: dict[str, int] = {}
    for line, fields, problem in raw_rows(text, label):
        if problem:
            bad.append(BadRow(line, problem))
            continue
        try:
            row = _row(line, fields)
        except UsageError as exc:
            bad.append(BadRow(line, exc.message))
            continue
        count = seen.get(row.key, 0)
        seen[row.key] = count + 1
        rows.append(row._replace(key=f"{row.key}-{count}") if "id" not in fields else row)
    ids = [row.key for row in rows]
    if len(ids) != len(set(ids)):
        duplicate = next(k for k in ids if ids.count(k) > 1)
        raise UsageError(f"two rows share the id {quoted(duplicate)}", "give every row its own `id`")
    return rows, bad


def _row(line: int, fields: dict) -> Row:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise UsageError(f"unknown field {quoted(unknown[0])}", f"fields: {', '.join(FIELDS)}")
    for field, value in fields.items():  # JSON may carry anything: only text (and numbers) are read
        if field in ("image", "provider", "exclude") and isinstance(value, list):
            value = next((v for v in value if not isinstance(v, str)), "")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UsageError(f"{field} is {kind_of(value)}", f'give {field} as text, like "{field}": "..."')
    text = {k: v if isinstance(v, (list, int)) else str(v) for k, v in fields.items()}
    n = text.get("n", 1)
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise UsageError(f"n {quoted(n)} is not a whole number", "for example n: 2") from None
    request = build_request(
        text.get("prompt"),
        text.get("quality", "medium"),
        text.get("size"),
        text.get("aspect"),
        text.get("resolution"),
        n,
        _list(text.get("image")),
        text.get("mask"),
        text.get("format", "png"),
    )
    providers = frozenset(check_providers(_list(text.get("provider")), "provider"))
    exclude = frozenset(check_providers(_list(text.get("exclude")), "exclude"))
    canonical = json.dumps({k: fields[k] for k in sorted(fields)}, sort_keys=True, default=str)
    key = str(fields["id"]) if "id" in fields else hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return Row(line, key, request, providers, exclude, text.get("name"))


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
    return base._replace(providers=providers, exclude=base.exclude | row.exclude)


def plan(rows: list[Row], routes: RouteCache, base: Constraints) -> Plan:
    """Route every row; keep only what the summary needs (routes are looked up again when a row
    runs, from the same cache, so memory stays flat however long the file)."""
    runnable = []
    unservable = []
    offers: dict[str, OfferPlan] = {}
    total = Decimal(0)
    for row in rows:
        route = routes.rank(row.request, row_constraints(row, base))
        choice = route.choice
        if choice is None:
            reasons = "; ".join(f"{q.offer.id}: {q.reasons[0]}" for q in route.quotes[:3])
            unservable.append((row, reasons))
            continue
        runnable.append((row, choice.offer.id, choice.cost))
        offer = choice.offer
        so_far = offers.get(offer.id) or OfferPlan(offer.id, offer.provider, 0, 0, Decimal(0), 0)
        offers[offer.id] = so_far._replace(
            rows=so_far.rows + 1,
            images=so_far.images + row.request.n,
            cost=so_far.cost + choice.cost,
            submits=so_far.submits + len(choice.assessment.requests),
        )
        total += choice.cost
    by_offer = tuple(sorted(offers.values(), key=lambda o: -o.cost))
    return Plan(tuple(runnable), tuple(unservable), by_offer, total)
