"""Every `--json` output by name, with the command that prints it and its schema: what `imgroute
schema NAME` prints, and what tests/output/test_schemas.py validates real output against."""

from __future__ import annotations

from typing import NamedTuple

from imgroute.output.batches import BATCH_PLAN, BATCH_ROW
from imgroute.output.jobs import DRY_RUN, JOB, JOB_DETAILS, JOB_LISTING
from imgroute.output.keys import KEYS, KEYS_CHECK
from imgroute.output.ledger import LEDGER, LEDGER_COPY
from imgroute.output.money import ADVICE, BUDGET, PLANS, SAVINGS, SPEND
from imgroute.output.offers import PRICING, PROVIDERS
from imgroute.output.quotes import ROUTE
from imgroute.output.settings import CONFIG
from imgroute.output.vocabulary import array_of, extended

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE = "https://imgroute.dev/schema/"


class Shape(NamedTuple):
    name: str
    command: str  # what prints it
    summary: str  # one line, for `imgroute schema`
    schema: dict


SHAPES = {
    shape.name: shape
    for shape in (
        Shape(
            name="quote", command="imgroute quote --json", summary="every offer's quote and the choice", schema=ROUTE
        ),
        Shape(name="gen", command="imgroute gen --json", summary="one job (edit too), failures included", schema=JOB),
        Shape(
            name="gen-dry-run",
            command="imgroute gen --dry-run --json",
            summary="the choice and the exact request, unsent",
            schema=DRY_RUN,
        ),
        Shape(
            name="batch-plan",
            command="imgroute batch --dry-run --json",
            summary="what a batch would run, where, for how much",
            schema=BATCH_PLAN,
        ),
        Shape(
            name="batch-row",
            command="imgroute batch --json",
            summary="each line: a row's job and its outcome",
            schema=BATCH_ROW,
        ),
        Shape(
            name="jobs",
            command="imgroute jobs --json",
            summary="the recent jobs in the ledger",
            schema=array_of(JOB_LISTING, "Recent jobs, newest first."),
        ),
        Shape(
            name="job",
            command="imgroute jobs show --json",
            summary="everything the ledger knows about one job",
            schema=JOB_DETAILS,
        ),
        Shape(
            name="resume",
            command="imgroute jobs resume --json",
            summary="the jobs resumed, each as gen's object",
            schema=array_of(
                extended(JOB, {}, drop=("reasons",)),
                "The jobs resumed (one, or every unfinished one with --all), each as gen's object.",
            ),
        ),
        Shape(
            name="spend",
            command="imgroute spend --json",
            summary="spending by day, month, provider and quality",
            schema=SPEND,
        ),
        Shape(
            name="savings",
            command="imgroute spend --savings --json",
            summary="what routing saved, per month",
            schema=SAVINGS,
        ),
        Shape(
            name="budget",
            command="imgroute budget show --json",
            summary="each cap, what is spent and left",
            schema=BUDGET,
        ),
        Shape(
            name="pricing",
            command="imgroute pricing --json",
            summary="every figure of the table with its source and age",
            schema=PRICING,
        ),
        Shape(
            name="providers", command="imgroute providers --json", summary="what each offer can do", schema=PROVIDERS
        ),
        Shape(
            name="advise",
            command="imgroute advise --json",
            summary="a month priced every way, and plans' break-even",
            schema=ADVICE,
        ),
        Shape(name="plans", command="imgroute plans show --json", summary="the prepaid credit balances", schema=PLANS),
        Shape(
            name="keys", command="imgroute keys list --json", summary="which keys are set, and where from", schema=KEYS
        ),
        Shape(
            name="keys-check",
            command="imgroute keys check --json",
            summary="each key checked with a free call",
            schema=KEYS_CHECK,
        ),
        Shape(
            name="config",
            command="imgroute config --json",
            summary="each setting in effect and where it comes from",
            schema=CONFIG,
        ),
        Shape(
            name="ledger",
            command="imgroute ledger show --json",
            summary="which ledger this machine writes to, and who uses it",
            schema=LEDGER,
        ),
        Shape(
            name="ledger-copy",
            command="imgroute ledger copy --json",
            summary="what a copy into a team ledger moved",
            schema=LEDGER_COPY,
        ),
    )
}


def document(name: str) -> dict:
    """The schema of one output, as a JSON Schema document of its own (KeyError: no such name)."""
    shape = SHAPES[name]
    body = {key: value for key, value in shape.schema.items() if key != "description"}
    return {
        "$schema": DRAFT,
        "$id": f"{BASE}{name}.json",
        "title": shape.command,
        "description": shape.schema.get("description") or shape.summary,
        **body,
    }
