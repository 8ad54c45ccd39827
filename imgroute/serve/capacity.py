"""What `imgroute serve` sizes from the per-provider limits when it starts.

- Upstream connections: one for every job the limits let be at a provider at once (a synchronous
  provider holds its request open while it generates), and the workers' own for polls, uploads and
  downloads, so that no request waits in the HTTP pool behind work the limits allow.
- Open files: each of those connections, and a client's socket for each job, need one. The soft
  limit is raised toward the hard one; when even the hard one is too low, start-up says so.
- Limits that cannot keep up with clients at once (OpenAI's tier-1 default: 5 submits a minute)
  are named at start-up with how to raise them: a client's request waits its turn, and an SDK
  that gives up after a minute would see a timeout for work the account could have taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

POLLING_CONNECTIONS = 16  # beyond the workers': polls, uploads and downloads that overlap
SLOW_PER_MINUTE = 60.0  # below one submit a second, a limit is named at start-up
FEW_AT_ONCE = 10  # fewer jobs at once than this, likewise
FILES_BESIDE = 64  # the ledger, the images being written, the log, Python's own


def held_open(limits: Mapping[str, tuple[int, float | None]], keyed: Iterable[str]) -> int:
    """How many jobs the limits let be at the providers that have a key, at once (a provider's
    batch API apart: its jobs wait there without a connection)."""
    keyed = set(keyed)
    return sum(concurrency for lane, (concurrency, _) in limits.items() if ":" not in lane and lane in keyed)


def upstream_connections(limits: Mapping[str, tuple[int, float | None]], keyed: Iterable[str], workers: int) -> int:
    return held_open(limits, keyed) + workers + POLLING_CONNECTIONS


def open_files_needed(connections: int, at_once: int) -> int:
    """The upstream connections, a client's socket for each job at a provider (and as many again
    queued behind them), and the files beside."""
    return connections + 2 * at_once + FILES_BESIDE


def raise_open_files(needed: int) -> str | None:
    """Raise this process's soft limit on open files toward `needed` (up to the hard limit); a
    warning when the hard limit is lower, None when all is well."""
    try:
        import resource
    except ImportError:  # (not on Windows: nothing to raise there)
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        return (
            f"open files are limited to {soft} (hard limit {hard}), and the limits in config.yaml need about "
            f"{needed}: clients beyond that are refused; raise it (ulimit -n {needed}) or lower the limits"
        )
    return None


def slow_limits(limits: Mapping[str, tuple[int, float | None]], keyed: Iterable[str]) -> list[str]:
    """One line for each keyed provider whose limits cannot keep up with many clients at once."""
    keyed = set(keyed)
    lines = []
    for lane, (concurrency, per_minute) in sorted(limits.items()):
        if ":" in lane or lane not in keyed:  # (a batch API's lane: `openai:batch`)
            continue
        slow = per_minute is not None and per_minute < SLOW_PER_MINUTE
        if not slow and concurrency >= FEW_AT_ONCE:
            continue
        pace = f"{per_minute:g} submits a minute, " if per_minute is not None else ""
        lines.append(
            f"{lane} takes {pace}{concurrency} jobs at once: clients beyond that wait their turn (an SDK "
            f"may time out first); if your account allows more, raise it in config.yaml: "
            f"limits: {{{lane}: {{concurrency: N, per_minute: N}}}}"
        )
    return lines
