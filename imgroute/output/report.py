"""Every `--json` shape imgroute prints, in one place (the contract in design.md section 5), each
builder with its JSON Schema written beside it.

Values in, plain JSON-ready dicts out. USD amounts are numbers rounded to 6 places. The builders
run for every row of a batch and every request of `serve`: they validate nothing. Their schemas
are plain data in the words of vocabulary.py; catalog.py names each output (`imgroute schema
NAME`), and tests/output/test_schemas.py validates real output against them, so a key a builder adds
without its schema fails there.

- quotes.py: `quote` (the route, each quote, the request) and the route text jobs journal
- jobs.py: `gen` (the job object, its failure and its dry run), `jobs`, `jobs show`
- batches.py: `batch --dry-run` (the plan) and `batch`'s lines
- offers.py: `providers` and `pricing`
- money.py: `spend`, `spend --savings`, `budget show`, `advise`, `plans show`
- keys.py: the schemas of `keys list` and `keys check` (their builders live with the keys)
- settings.py: `config`
"""

from imgroute.output.batches import bad_row, batch_plan, batch_row
from imgroute.output.jobs import (
    JOB_KEYS,
    abbreviate,
    dry_run,
    job_details,
    job_failure,
    job_listing,
    job_result,
    skipped_json,
    when,
)
from imgroute.output.money import _amount, advice, balances, budget, savings, spend
from imgroute.output.offers import offer_json, price_summary, pricing_rows
from imgroute.output.quotes import (
    _QUOTES_TEXT,
    _QUOTES_TEXT_KEPT,
    _quotes_text,
    _quotes_text_lock,
    history_json,
    identity_json,
    quote_json,
    request_json,
    route_json,
    route_text,
)
from imgroute.output.settings import config_json

__all__ = [
    "JOB_KEYS",
    "_QUOTES_TEXT",
    "_QUOTES_TEXT_KEPT",
    "_amount",
    "_quotes_text",
    "_quotes_text_lock",
    "abbreviate",
    "advice",
    "bad_row",
    "balances",
    "batch_plan",
    "batch_row",
    "budget",
    "config_json",
    "dry_run",
    "history_json",
    "identity_json",
    "job_details",
    "job_failure",
    "job_listing",
    "job_result",
    "offer_json",
    "price_summary",
    "pricing_rows",
    "quote_json",
    "request_json",
    "route_json",
    "route_text",
    "savings",
    "skipped_json",
    "spend",
    "when",
]
