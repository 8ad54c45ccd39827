#!/usr/bin/env python3
"""What routing saves on a realistic month, and whether it ever misses the cheapest offer.

A synthetic month of 10,000 jobs (fixed seed; the mix is below: qualities, sizes and aspects, n,
prompt lengths and some edits) priced three ways in one run, at the bundled prices and default
plans: imgroute's routing (`RouteCache.rank`, as `batch` and `advise` use it), each single offer
(its total where it can serve every row, else how many rows it cannot), and the exhaustive per-job
minimum over every offer by brute force (`advice.cheapest`, which never calls the router).

Targets (issue #16): routed / floor = 1.000, and routing 10,000 jobs in under 1 s.

    python scripts/bench_savings.py [--jobs 10000] [--seed 2026] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The month: (weight, quality), (weight, size spec), (weight, n), and the share of edits.
QUALITIES = [(40, "low"), (40, "medium"), (20, "high")]
SHAPES = [
    (45, {}),  # 1:1 1K, the default
    (15, {"aspect": "16:9", "resolution": "2K"}),
    (10, {"aspect": "3:2"}),
    (8, {"size": "1536x1024"}),
    (7, {"size": "1024x1536"}),
    (6, {"aspect": "9:16"}),
    (5, {"aspect": "16:9", "resolution": "4K"}),
    (4, {"aspect": "1:1", "resolution": "2K"}),
]
COUNTS = [(80, 1), (12, 2), (8, 4)]
EDITS, MASKED = 0.10, 0.03  # shares of jobs with one reference image, and of those with a mask too


def pick(rng: random.Random, options):
    return rng.choices([value for _, value in options], weights=[weight for weight, _ in options])[0]


def month(jobs: int, seed: int):
    from imgroute.advice.month import with_inputs
    from imgroute.request import build_request

    rng = random.Random(seed)
    requests = []
    for _ in range(jobs):
        shape = pick(rng, SHAPES)
        request = build_request(
            "x" * rng.randint(40, 600),
            quality=pick(rng, QUALITIES),
            size=shape.get("size"),
            aspect=shape.get("aspect"),
            resolution=shape.get("resolution"),
            n=pick(rng, COUNTS),
        )
        edit = rng.random()
        if edit < EDITS:
            request = with_inputs(request, 1, edit < MASKED)
        requests.append(request)
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--runs", type=int, default=5, help="timed routing runs; the median is shown")
    args = parser.parse_args()

    from imgroute.advice.month import ADVICE_CACHE, cheapest
    from imgroute.models import Constraints
    from imgroute.pricing.costs import assess
    from imgroute.pricing.load import load_table
    from imgroute.pricing.router import RouteCache

    table = load_table()
    constraints = Constraints()
    plans = {provider: table.plan(provider, None) for provider in table.providers}
    requests = month(args.jobs, args.seed)

    timings, routed = [], None
    for _ in range(args.runs):
        routes = RouteCache(table, size=ADVICE_CACHE)  # a cold cache each run, sized as `advise` sizes it
        start = time.perf_counter()
        costs = [routes.rank(request, constraints).choice for request in requests]
        timings.append(time.perf_counter() - start)
        routed = costs
    unroutable = sum(1 for choice in routed if choice is None)
    routed_usd = sum((c.cost for c in routed if c is not None), Decimal(0))
    served = [r for r, c in zip(requests, routed, strict=True) if c is not None]
    floor_usd = sum((cheapest(r, table, plans, constraints) for r in served), Decimal(0))

    singles = []
    for offer in table.offers:
        if offer.window_s is not None:
            continue  # results within a day: not a substitute for the month's jobs
        total, missing = Decimal(0), 0
        for request in requests:
            a = assess(request, offer, plans[offer.provider])
            if not a.capable or a.cost is None:
                missing += 1
            else:
                total += a.cost
        singles.append((offer.id, total, missing))
    whole = [s for s in singles if s[2] == 0]
    print(f"{args.jobs:,} jobs (seed {args.seed}), bundled prices, default plans; {unroutable} no offer can serve")
    ratio = routed_usd / floor_usd
    print(f"routed ${routed_usd:,.2f}; per-job minimum ${floor_usd:,.2f}; routed / floor {ratio:.4f} (target 1.000)")
    for offer_id, total, missing in sorted(singles, key=lambda s: (s[2], s[1])):
        if missing:
            print(f"  {offer_id:<32} cannot serve {missing:,} jobs (${total:,.2f} for the rest)")
        else:
            print(f"  {offer_id:<32} ${total:,.2f}: {total / routed_usd:.2f}x routed")
    if whole:
        best = min(whole, key=lambda s: s[1])
        saving = best[1] - routed_usd
        print(f"saving against the cheapest single provider ({best[0]}): ${saving:,.2f} ({saving / best[1]:.1%})")
    print(f"routing {args.jobs:,} jobs: {statistics.median(timings):.3f} s (median of {args.runs}; target < 1 s)")


if __name__ == "__main__":
    main()
