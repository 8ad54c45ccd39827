"""Small JSON files in the home that runs add their observations to (delivered sizes, each offer's
history, prepaid balances): read leniently, merged under a lock, replaced atomically.

They are caches of what the ledger also knows, kept as JSON so that `quote` reads them without
opening sqlite: a damaged or missing file is an empty one, and one that cannot be written changes
no job's outcome.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from imgroute.files import atomic_write, private_dir


def read_json(path: Path) -> dict:
    """The file's top-level mapping; {} when it is missing, unreadable or not a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return {}
    import json  # only now: `quote` with no such file (the usual case) need not load it

    try:
        raw = json.loads(text)
    except ValueError:
        return {}
    return raw if isinstance(raw, dict) else {}


def write_json(path: Path, raw: dict, durable: bool = False) -> None:
    import json

    private_dir(path.parent)
    atomic_write(path, json.dumps(raw, indent=1, sort_keys=True), durable=durable)


class Merger:
    """Collects a run's observations and merges them into the file: at once the first time, then
    at most every FLUSH_EVERY_S (a batch settles hundreds of jobs a minute), and whatever is left
    when `force`d. Subclasses say how one run's `pending` folds into the file's mapping."""

    FLUSH_EVERY_S = 5.0

    def __init__(self, home: Path, name: str):
        self.home = home
        self.path = home / name
        self._lock = threading.Lock()  # a batch's workers share one
        self._written: float | None = None

    def add(self, change) -> None:
        with self._lock:
            self.collect(change)

    def flush(self, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if self.has_pending() and (force or self._written is None or now - self._written >= self.FLUSH_EVERY_S):
                raw = read_json(self.path)
                self.fold(raw)
                with contextlib.suppress(OSError):  # a cache that cannot be written changes no job's outcome
                    write_json(self.path, raw)
                self._written = now

    # -- to implement -------------------------------------------------------------------------

    def collect(self, change) -> None:
        raise NotImplementedError

    def has_pending(self) -> bool:
        raise NotImplementedError

    def fold(self, raw: dict) -> None:
        """Add what is pending to `raw` (the file's mapping) and forget it."""
        raise NotImplementedError
