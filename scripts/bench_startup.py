#!/usr/bin/env python3
"""Startup cost of `imgroute quote` against a plain typer + rich CLI.

The floor is a program this script writes itself: a one-command typer app that prints a six-row
rich table. It loads no YAML parser, and neither does a warm `imgroute quote`: the pricing table
is built once and kept in the home (imgroute/pricing/cache.py), and the timed runs come after a
warm-up run, as every command after a user's first does. Both run interleaved in the same
session, several times each; the medians are compared. Target: ratio <= 1.15. The ratio is printed last.

imgroute skips Python's garbage collection at exit (`imgroute.cli.entry`), which the plain floor
pays. So that what imgroute's own code costs stays in view, a second floor does the same (the
floor with `gc.freeze()` at exit) and its ratio is printed too, for comparison.

imgroute's modules are byte-compiled first, as an installed package is: with
PYTHONDONTWRITEBYTECODE set (some sandboxes and containers set it) every run would otherwise
recompile them from source, which no installed copy does.

    python scripts/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR_PROGRAM = """
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False)


@app.command()
def quote(prompt: str, quality: str = "medium") -> None:
    table = Table(title=f"{prompt} ({quality})")
    for column in ("provider", "model", "cost"):
        table.add_column(column)
    for i in range(6):
        table.add_row(f"provider-{i}", "gpt-image-2", f"${i / 100:.2f}")
    Console().print(table)


if __name__ == "__main__":
    app()
"""

# The floor again, ending as `imgroute.cli.entry` does: no garbage collection over the heap at exit.
QUICK_EXIT_FLOOR = FLOOR_PROGRAM.replace(
    'if __name__ == "__main__":\n    app()',
    'if __name__ == "__main__":\n    import gc\n\n    try:\n        app()\n    finally:\n        gc.freeze()',
)
assert QUICK_EXIT_FLOOR != FLOOR_PROGRAM, "the floor's ending changed: update QUICK_EXIT_FLOOR"

TARGET = 1.15


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def imgroute_command() -> list[str]:
    script = Path(sys.executable).with_name("imgroute")
    found = str(script) if script.exists() else shutil.which("imgroute")
    base = [found] if found else [sys.executable, "-m", "imgroute"]
    return [*base, "quote", "a lighthouse", "--quality", "high"]


def precompile() -> None:
    import compileall

    import imgroute

    compileall.compile_dir(str(Path(imgroute.__file__).parent), quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each program (default 15)")
    args = parser.parse_args()

    precompile()
    with tempfile.TemporaryDirectory() as tmp:
        floor = Path(tmp) / "floor.py"
        floor.write_text(FLOOR_PROGRAM)
        quick_floor = Path(tmp) / "quick_exit_floor.py"
        quick_floor.write_text(QUICK_EXIT_FLOOR)
        home = Path(tmp) / "home"
        home.mkdir(mode=0o700)  # as anyone's who has used imgroute (keys, config, a job) has one
        env = dict(os.environ, IMGROUTE_HOME=str(home))
        floor_cmd = [sys.executable, str(floor), "a lighthouse", "--quality", "high"]
        quick_cmd = [sys.executable, str(quick_floor), "a lighthouse", "--quality", "high"]
        quote_cmd = imgroute_command()
        # Warm the page cache and .pyc files so the first timed run is not an outlier.
        for cmd in (floor_cmd, quick_cmd, quote_cmd):
            timed(cmd, env)
        floor_times, quick_times, quote_times = [], [], []
        for _ in range(args.runs):
            floor_times.append(timed(floor_cmd, env))
            quick_times.append(timed(quick_cmd, env))
            quote_times.append(timed(quote_cmd, env))

    # Each imgroute run is compared with the floor runs just before it: this machine's speed drifts
    # by 10% over seconds, and runs in a row share the moment (the ratio of the medians did not).
    ratio = statistics.median(q / f for q, f in zip(quote_times, floor_times, strict=True))
    quick_ratio = statistics.median(q / f for q, f in zip(quote_times, quick_times, strict=True))
    print(f"runs each:                          {args.runs} (interleaved)")
    print(f"floor (typer+rich)          median: {statistics.median(floor_times) * 1000:7.1f} ms")
    print(f"floor with gc.freeze() exit median: {statistics.median(quick_times) * 1000:7.1f} ms")
    print(f"imgroute quote              median: {statistics.median(quote_times) * 1000:7.1f} ms")
    print(f"over the quick-exit floor: {quick_ratio:.3f} (for comparison: imgroute's own modules and work)")
    print(f"target: ratio <= {TARGET}")
    print(f"ratio: {ratio:.3f} (median of each run over the floor run just before it)")


if __name__ == "__main__":
    main()
