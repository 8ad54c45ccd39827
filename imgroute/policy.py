"""Policy numbers in one place: anything a reasonable person might want to tune."""

from __future__ import annotations

import os

# `imgroute pricing` warns about rows observed longer ago than this (config: pricing_max_age_days).
DEFAULT_PRICING_MAX_AGE_DAYS = 180

# -- HTTP ---------------------------------------------------------------------------------------
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0  # polls, result fetches, downloads
SYNC_READ_TIMEOUT_S = 300.0  # synchronous generation (OpenAI, PiAPI) holds the connection open
GET_ATTEMPTS = 4  # GETs are safe to repeat
SUBMIT_ATTEMPTS = 3  # only when nothing reached the provider, or it dedupes by idempotency key
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
RETRY_AFTER_MAX_S = 120.0  # a provider asking for longer is treated as unavailable
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

# -- jobs ---------------------------------------------------------------------------------------
DEFAULT_JOB_TIMEOUT_S = 600.0


TIME_SCALE_ENV = "IMGROUTE_TIME_SCALE"


def time_scale() -> float:
    """IMGROUTE_TIME_SCALE multiplies every wait imgroute chooses (polls, backoff, Retry-After).

    Only for running against local fakes: 0.01 makes a 2 s poll take 20 ms. (session.Keys refuses
    it, and a value that is not a number from 0 to 1, unless every keyed provider is on loopback.)
    """
    raw = os.environ.get(TIME_SCALE_ENV)
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        return 1.0
    return value if 0 <= value <= 1 else 1.0


LEASE_ENV = "IMGROUTE_LEASE_SECONDS"
DEFAULT_LEASE_S = 60.0


def lease_seconds() -> float:
    """How long a claim on a job or a batch row holds on a team ledger unless its machine renews it
    (every quarter of it): how soon a dead machine's work is taken over. IMGROUTE_LEASE_SECONDS
    sets it (at least 2 s; for tests, or a team that wants quicker takeovers)."""
    raw = os.environ.get(LEASE_ENV)
    try:
        return max(2.0, float(raw)) if raw else DEFAULT_LEASE_S
    except ValueError:
        return DEFAULT_LEASE_S  # (session.open_ledger refuses it, with its name: see lease_problem)


def lease_problem() -> str | None:
    """What is wrong with IMGROUTE_LEASE_SECONDS, if anything."""
    raw = os.environ.get(LEASE_ENV)
    try:
        if raw and float(raw) >= 2:
            return None
    except ValueError:
        pass
    return f"{LEASE_ENV}={raw!r} is not a number of seconds of at least 2" if raw else None


# -- batch ----------------------------------------------------------------------------------------
DEFAULT_BATCH_CONCURRENCY = 8
# A worker blocked in an HTTP retry's backoff gets a stand-in, so one provider's 429s cannot stall
# every other job; at most this many at once (a provider gone wrong must not spawn a thread per job).
MAX_STANDIN_WORKERS = 16
# serve's workers: what they do after an answer (fsync the spool and the image, unlink the spool,
# commit) mostly waits on the disk with the GIL released, and the filesystem's journal folds
# concurrent fsyncs into one commit, so more workers finish a wave of 500 answers sooner
# (scripts/bench_serve_scale.py: handler p95 added 1.91 s with 4, 1.68 s with 16; 18 threads).
SERVE_WORKERS = 16
# A stand-in no longer needed waits this long to stand in again before its thread ends.
SPARE_SECONDS = 30.0
# Per-provider limits (jobs in progress, submits per minute) are defaults in the provider registry
# (imgroute/providers/registry.py), overridden in config.yaml `limits:`.

MIN_HISTORY_ATTEMPTS = 20  # below this, an offer's record here says too little to rank by (--rank expected)
