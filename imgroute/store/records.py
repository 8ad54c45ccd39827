"""What the ledger hands back: typed records of its rows, built by name from a row mapping
(SQLite's `Row` or any database's dict row). Money is Decimal, JSON is decoded, states are enums."""

from __future__ import annotations

import json
from collections.abc import Collection
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from imgroute.models import AttemptState, JobSpec, JobState, TaskState


class Row(Protocol):
    """A row read by column name: SQLite's `Row` (which is no Mapping) or any database's dict row."""

    def __getitem__(self, column: str, /) -> Any: ...

    def keys(self) -> Collection[str]: ...


def money(text: str | None) -> Decimal | None:
    return Decimal(text) if text is not None else None


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def _optional(row: Row, key: str) -> Any:
    """A column only some queries select (listings add `offer` and `images`)."""
    return row[key] if key in row.keys() else None  # noqa: SIM118 (`in` a sqlite3.Row looks at values)


class JobRecord(NamedTuple):
    id: str
    created: float
    updated: float
    prompt: str
    request: dict  # Request.to_json(), with "constraints"
    route: dict  # the quotes as they were when the job was made
    estimate: Decimal | None
    state: JobState
    actual: Decimal | None
    actual_source: str | None
    error: str | None
    out_dir: str | None
    name_template: str | None
    max_cost: Decimal | None
    row_key: str | None
    exit_code: int | None
    offer: str | None = None  # listings only: "provider/model" of its last attempt
    images: int | None = None  # listings only: files saved
    host: str | None = None  # the machine that made the job (None: before ledgers had it)

    @classmethod
    def of(cls, row: Row) -> JobRecord:
        return cls(
            id=row["id"],
            created=row["created"],
            updated=row["updated"],
            prompt=row["prompt"],
            request=_json(row["request"]) or {},
            route=_json(row["route"]) or {},
            estimate=money(row["estimate_usd"]),
            state=JobState(row["state"]),
            actual=money(row["actual_usd"]),
            actual_source=row["actual_source"],
            error=row["error"],
            out_dir=row["out_dir"],
            name_template=row["name_template"],
            max_cost=money(row["max_cost_usd"]),
            row_key=row["row_key"],
            exit_code=row["exit_code"],
            offer=_optional(row, "offer"),
            images=_optional(row, "images"),
            host=_optional(row, "host"),
        )


class RowJob(NamedTuple):
    """What a batch rerun needs of a row's latest job."""

    id: str
    state: JobState
    exit_code: int | None
    error: str | None
    images: int = 0  # files saved for it
    out_dir: str | None = None


class AttemptRecord(NamedTuple):
    id: int
    job_id: str
    seq: int
    provider: str
    model: str
    plan: str
    estimate: Decimal | None
    breakdown: list[str]
    state: AttemptState
    actual: Decimal | None
    actual_source: str | None
    error: str | None
    created: float
    updated: float
    at_risk: Decimal | None = None  # possibly charged for failed requests, until settled (m007)

    @classmethod
    def of(cls, row: Row) -> AttemptRecord:
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            seq=row["seq"],
            provider=row["provider"],
            model=row["model"],
            plan=row["plan"],
            estimate=money(row["estimate_usd"]),
            breakdown=_json(row["breakdown"]) or [],
            state=AttemptState(row["state"]),
            actual=money(row["actual_usd"]),
            actual_source=row["actual_source"],
            error=row["error"],
            created=row["created"],
            updated=row["updated"],
            at_risk=money(row["at_risk_usd"]),
        )


class TaskRecord(NamedTuple):
    """One request sent (or about to be) for an attempt."""

    id: int
    attempt_id: int
    attempt_seq: int
    seq: int
    provider: str
    client_ref: str
    images: int
    provider_job_id: str | None
    handle: dict | None
    state: TaskState
    detail: str | None
    spec: JobSpec | None
    outputs: list[dict] | None  # recorded results: {"url": ...} or {"spool": path}
    usage: dict | None
    created: float

    @classmethod
    def of(cls, row: Row) -> TaskRecord:
        recorded = _json(row["outputs"]) or {}
        spec = _json(row["spec"])
        return cls(
            id=row["id"],
            attempt_id=row["attempt_id"],
            attempt_seq=row["attempt_seq"],
            seq=row["seq"],
            provider=row["provider"],
            client_ref=row["client_ref"],
            images=row["images"],
            provider_job_id=row["provider_job_id"],
            handle=_json(row["handle"]),
            state=TaskState(row["state"]),
            detail=row["detail"],
            spec=JobSpec.from_json(spec) if spec else None,
            outputs=recorded.get("outputs") if row["outputs"] else None,
            usage=recorded.get("usage"),
            created=row["created"],
        )


class FileRecord(NamedTuple):
    id: int
    job_id: str
    task_id: int | None
    path: str
    sha256: str
    bytes: int
    format: str
    width: int
    height: int
    verified: bool
    created: float
    host: str | None = None  # the machine whose disk it was saved on (None: before ledgers had it)

    @classmethod
    def of(cls, row: Row) -> FileRecord:
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            task_id=row["task_id"],
            path=row["path"],
            sha256=row["sha256"],
            bytes=row["bytes"],
            format=row["format"],
            width=row["width"],
            height=row["height"],
            verified=bool(row["verified"]),
            created=row["created"],
            host=_optional(row, "host"),
        )


class EventRecord(NamedTuple):
    at: float
    state: str
    detail: str | None


class SpendRow(NamedTuple):
    created: float
    provider: str
    model: str
    quality: str | None
    state: str
    estimate: Decimal | None
    actual: Decimal | None
    images: int
    at_risk: Decimal | None = None  # possibly charged (failed, charge unknown): never spent until settled
    host: str | None = None  # the machine that made its job (a team ledger's)
    priced: Decimal | None = None  # imgroute's pricing of what it delivered
    stated: Decimal | None = None  # what the provider's answer said it charged

    @classmethod
    def of(cls, row: Row) -> SpendRow:
        return cls(
            created=row["created"],
            provider=row["provider"],
            model=row["model"],
            quality=row["quality"],
            state=row["state"],
            estimate=money(row["estimate_usd"]),
            actual=money(row["actual_usd"]),
            images=row["images"],
            at_risk=money(row["at_risk_usd"]),
            host=row["host"],
            priced=money(row["priced_usd"]),
            stated=money(row["stated_usd"]),
        )


class Settled(NamedTuple):
    """What `settle` did: requests of unknown fate settled, failed requests of unknown charge
    settled, and what those counted as spent (nothing when settled as never charged)."""

    unknown: int
    failed: int
    failed_usd: Decimal


class NewJob(NamedTuple):
    """A job's row as it is first written (planned): what a resume needs to finish it anywhere."""

    id: str
    prompt: str
    request: dict  # Request.to_json(), with "constraints"
    route: dict | str  # the quotes (or their JSON text already written: report.route_text)
    estimate: str | None
    out_dir: str  # absolute: a resume may run from another directory
    name_template: str
    max_cost: str | None
    row_key: str | None = None  # a batch row's `label:row-id`


class Holder(NamedTuple):
    """Who holds a lease another asked for: its owner token, its process, and its machine (a team
    ledger's; None on one machine's)."""

    owner: str
    pid: int | None
    host: str | None = None

    def __str__(self) -> str:
        said = f"pid {self.pid}" if self.pid is not None else self.owner
        return f"{said} on {self.host}" if self.host else said


class Idempotent(NamedTuple):
    """What a request's Idempotency-Key found in the ledger (serve): `verdict` is "new" (this
    request runs the key's job), "reused" (the key came with another request), "running" (its job
    runs, on this replica or another), or "ended"; with the key's job and the machine it ran on."""

    verdict: str
    job_id: str | None = None
    host: str | None = None
