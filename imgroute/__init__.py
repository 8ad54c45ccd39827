"""imgroute: route GPT Image 2 jobs to the cheapest provider that can really deliver them.

The Python API (see imgroute/api.py): `imgroute.quote(...)`, `imgroute.generate(...)`,
`imgroute.edit(...)`, `plan`/`run` for the two halves of a job, `batch` (or `plan_batch`/`run_batch`)
for a file of jobs, and `resume`/`resume_all` for jobs the ledger has unfinished; the values they
return (`Route`, `Quote`, `JobResult`, ...) and the errors they raise (`ImgrouteError` and its
tree, each with its exit code). Loaded on first use, so that `import imgroute` (and the CLI's
start-up) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgroute.version import __version__ as __version__  # (re-exported)

if TYPE_CHECKING:  # what the names below are, for type checkers and editors
    from imgroute.api import (
        Planned,
        PlannedBatch,
        batch,
        edit,
        generate,
        plan,
        plan_batch,
        quote,
        resume,
        resume_all,
        run,
        run_batch,
    )
    from imgroute.batches.run import Outcome, RowResult
    from imgroute.errors import (
        BudgetError,
        BudgetRefused,
        Busy,
        ConfigError,
        ImgrouteError,
        InputsElsewhere,
        Interrupted,
        JobFailedError,
        LeaseLost,
        NoKeyError,
        NoOfferError,
        OutputError,
        ProviderError,
        StdoutClosed,
        UsageError,
    )
    from imgroute.jobs.outputs import SavedImage
    from imgroute.jobs.state import AttemptReport, JobResult
    from imgroute.pricing.router import Quote, Route

# Each public name, and the module it is loaded from on first use.
_PUBLIC = {
    "imgroute.api": (
        "quote", "generate", "edit", "plan", "run", "batch", "plan_batch", "run_batch", "resume", "resume_all",
        "Planned", "PlannedBatch",
    ),
    "imgroute.pricing.router": ("Route", "Quote"),
    "imgroute.jobs.state": ("JobResult", "AttemptReport"),
    "imgroute.jobs.outputs": ("SavedImage",),
    "imgroute.batches.run": ("RowResult", "Outcome"),
    "imgroute.errors": (
        "ImgrouteError", "UsageError", "ConfigError", "NoKeyError", "NoOfferError", "ProviderError", "JobFailedError",
        "OutputError", "BudgetError", "BudgetRefused", "Busy", "LeaseLost", "InputsElsewhere", "Interrupted",
        "StdoutClosed",
    ),
}  # fmt: skip
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = [
    "quote",
    "generate",
    "edit",
    "plan",
    "run",
    "batch",
    "plan_batch",
    "run_batch",
    "resume",
    "resume_all",
    "Planned",
    "PlannedBatch",
    "Route",
    "Quote",
    "JobResult",
    "AttemptReport",
    "SavedImage",
    "RowResult",
    "Outcome",
    "ImgrouteError",
    "UsageError",
    "ConfigError",
    "NoKeyError",
    "NoOfferError",
    "ProviderError",
    "JobFailedError",
    "OutputError",
    "BudgetError",
    "BudgetRefused",
    "Busy",
    "LeaseLost",
    "InputsElsewhere",
    "Interrupted",
    "StdoutClosed",
]  # fmt: skip (the same names as _PUBLIC's: tests/test_api.py holds them together)


def __getattr__(name: str):
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'imgroute' has no attribute {name!r}")
