"""Every `--json` output by name, with the command that prints it and its schema: what `imgroute
schema NAME` prints, and what tests/test_schemas.py validates real output against."""

from __future__ import annotations

from typing import NamedTuple

from imgroute.output.batches import BATCH_PLAN, BATCH_ROW
from imgroute.output.jobs import DRY_RUN, JOB, JOB_DETAILS, JOB_LISTING
from imgroute.output.keys import KEYS, KEYS_CHECK
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
        Shape("quote", "imgroute quote --json", "every offer's quote and the choice", ROUTE),
        Shape("gen", "imgroute gen --json", "one job (edit too), failures included", JOB),
        Shape("gen-dry-run", "imgroute gen --dry-run --json", "the choice and the exact request, unsent", DRY_RUN),
        Shape(
            "batch-plan", "imgroute batch --dry-run --json", "what a batch would run, where, for how much", BATCH_PLAN
        ),
        Shape("batch-row", "imgroute batch --json", "each line: a row's job and its outcome", BATCH_ROW),
        Shape(
            "jobs",
            "imgroute jobs --json",
            "the recent jobs in the ledger",
            array_of(JOB_LISTING, "Recent jobs, newest first."),
        ),
        Shape("job", "imgroute jobs show --json", "everything the ledger knows about one job", JOB_DETAILS),
        Shape(
            "resume",
            "imgroute jobs resume --json",
            "the jobs resumed, each as gen's object",
            array_of(
                extended(JOB, {}, drop=("reasons",)),
                "The jobs resumed (one, or every unfinished one with --all), each as gen's object.",
            ),
        ),
        Shape("spend", "imgroute spend --json", "spending by day, month, provider and quality", SPEND),
        Shape("savings", "imgroute spend --savings --json", "what routing saved, per month", SAVINGS),
        Shape("budget", "imgroute budget show --json", "each cap, what is spent and left", BUDGET),
        Shape("pricing", "imgroute pricing --json", "every figure of the table with its source and age", PRICING),
        Shape("providers", "imgroute providers --json", "what each offer can do", PROVIDERS),
        Shape("advise", "imgroute advise --json", "a month priced every way, and plans' break-even", ADVICE),
        Shape("plans", "imgroute plans show --json", "the prepaid credit balances", PLANS),
        Shape("keys", "imgroute keys list --json", "which keys are set, and where from", KEYS),
        Shape("keys-check", "imgroute keys check --json", "each key checked with a free call", KEYS_CHECK),
        Shape("config", "imgroute config --json", "each setting in effect and where it comes from", CONFIG),
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
