"""imgroute: route GPT Image 2 jobs to the cheapest provider that can really deliver them.

The Python API (see imgroute/api.py): `imgroute.quote(...)`, `imgroute.generate(...)`,
`imgroute.edit(...)`, `plan`/`run` for the two halves of a job, `batch` (or `plan_batch`/`run_batch`)
for a file of jobs, and `resume`/`resume_all` for jobs the ledger has unfinished. Loaded on first use, so that
`import imgroute` (and the CLI's start-up) stays light.
"""

from imgroute.version import __version__ as __version__  # (re-exported)

__all__ = ["quote", "generate", "edit", "plan", "run", "batch", "plan_batch", "run_batch", "resume", "resume_all"]


def __getattr__(name: str):
    if name in __all__:
        from imgroute import api

        return getattr(api, name)
    raise AttributeError(f"module 'imgroute' has no attribute {name!r}")
