"""The Python API: price a job everywhere, or run it, from code. The CLI and `imgroute serve` are
users of these functions, not second implementations.

    import imgroute
    route = imgroute.quote("a lighthouse at dusk", quality="high")
    route.choice.offer.id, route.choice.cost          # the winner, as the CLI's table shows it
    result = imgroute.generate("a lighthouse at dusk", quality="high", out="shots")
    result.images[0].path, result.actual

Every argument is checked as its CLI flag is, and every failure is one of `imgroute.errors`'
ImgrouteError tree (with `exit_code`). `quote` reads the pricing table and routes; it loads no
HTTP library. `generate` and `edit` route among the offers a key is present for, journal, send,
wait and save, and return the JobResult; a job that fails raises its error with the JobResult
attached as `error.result`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from imgroute import policy

if TYPE_CHECKING:
    from imgroute.job_state import JobResult
    from imgroute.models import Constraints, Request
    from imgroute.pricing import PricingTable
    from imgroute.router import Route, RouteCache

DEFAULT_NAME = "{slug}-{provider}-{index}"

# Routing hints by their names in `serve`'s `extra_body={"imgroute": {...}}` and config.yaml's
# `profiles:`, and the keyword argument of `plan` each becomes (None: not a routing choice).
ROUTING_HINTS = {
    "max_cost": "max_cost",
    "provider": "providers",
    "providers": "providers",
    "exclude": "exclude",
    "plan": "plan",
    "aspect": "aspect",
    "resolution": "resolution",
    "deadline": "deadline",
    "official_only": "official_only",
    "stated_quality": "stated_quality",
    "dry_run": None,  # answered with the route; nothing is sent
}


class Planned(NamedTuple):
    """A job routed and ready to send: what `run` needs."""

    request: Request
    table: PricingTable
    constraints: Constraints
    keys: Any  # session.Keys: the keys present and the base-URL overrides
    route: Route


def plan(
    prompt: str,
    *,
    quality: str = "medium",
    size: str | None = None,
    aspect: str | None = None,
    resolution: str | None = None,
    n: int = 1,
    images: Sequence[str] | None = None,
    mask: str | None = None,
    output_format: str = "png",
    background: str = "auto",
    moderation: str = "auto",
    providers: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
    max_cost: Decimal | float | str | None = None,
    plan: Sequence[str] | str | None = None,
    official_only: bool = False,
    stated_quality: bool = False,
    deadline: str | None = None,
    rank: str = "price",
    pricing: str | Path | None = None,
    with_keys: bool = True,
    loaded: tuple | None = None,
    routes: RouteCache | None = None,
) -> Planned:
    """Check the job and route it: with `with_keys`, only among offers a key is present for.
    `loaded`: (table, settings, keys) read once by a caller that plans many jobs (`serve`), and
    `routes` its router.RouteCache over that table and those keys (jobs alike share a ranking)."""
    from imgroute.request import build_constraints, build_request
    from imgroute.router import rank as rank_offers
    from imgroute.router import with_caveats
    from imgroute.session import Keys, load_table_and_settings

    request = build_request(
        prompt, quality, size, aspect, resolution, n, list(images or []), mask, output_format, background, moderation
    )
    if loaded is None:
        table, settings = load_table_and_settings(Path(pricing) if pricing is not None else None)
        keys = Keys() if with_keys else None
    else:
        table, settings, keys = loaded
    constraints = build_constraints(
        table,
        settings,
        _names(providers),
        _names(exclude),
        None if max_cost is None else str(max_cost),
        _names(plan),
        official_only,
        stated_quality,
        deadline,
        rank,
    )
    if routes is not None:
        route = routes.rank(request, constraints)
    else:
        route = rank_offers(request, table, constraints, keys.available if keys else None)
    route = with_caveats(route, settings.pricing_max_age_days, constraints.rank)
    return Planned(request, table, constraints, keys, route)


def quote(prompt: str, **options) -> Route:
    """Every offer priced and ranked for this job (whatever keys are present): `route.choice` is
    the winner, `route.quotes` every offer with its cost, delivery and the reasons it lost,
    `route.caveats` what is worth knowing about the winner before paying. Takes the keyword
    arguments of `plan`."""
    return plan(prompt, **options, with_keys=False).route


def run(
    planned: Planned,
    *,
    out: str | Path = ".",
    name: str = DEFAULT_NAME,
    timeout: float = policy.DEFAULT_JOB_TIMEOUT_S,
    detach: bool = False,
    progress: bool = False,
    on_runner: Callable[[Any], None] | None = None,
) -> JobResult:
    """Send a planned job, wait for it and save its images. Raises NoOfferError (naming why)
    when no offer can take it; otherwise returns the JobResult, whose `error` says how it failed."""
    from imgroute.errors import UsageError
    from imgroute.jobs import OutputOptions
    from imgroute.router import no_offer_error
    from imgroute.session import check_out_dir, job_runner

    check_output(timeout, name)
    route = planned.route
    if route.choice is None:
        raise no_offer_error(route, "in each quote's reasons")
    if detach and route.choice.offer.window_s is None:
        raise UsageError(
            f"--detach is for offers that take a while; {route.choice.offer.id} answers at once",
            "drop --detach, or allow a batch offer with --deadline 24h",
        )
    options = OutputOptions(check_out_dir(Path(out)), name)
    with job_runner(
        planned.table, planned.keys, options, timeout, not progress, planned.constraints.max_cost
    ) as runner:
        if on_runner is not None:
            on_runner(runner)
        runner.detach = detach
        result = runner.run(planned.request, route, constraints=planned.constraints)
    return result._replace(caveats=route.caveats)


def check_output(timeout: float, name: str) -> None:
    """The waiting time and the file-name template, refused before anything is routed or sent."""
    from imgroute.request import check_timeout
    from imgroute.session import check_name

    check_timeout(timeout)
    check_name(name)


def generate(
    prompt: str,
    *,
    out: str | Path = ".",
    name: str = DEFAULT_NAME,
    timeout: float = policy.DEFAULT_JOB_TIMEOUT_S,
    detach: bool = False,
    **options,
) -> JobResult:
    """Route, send, wait, save: the JobResult (files, estimated and actual cost, attempts, and the
    winner's caveats). A failed job raises its error (exit code and all), with the JobResult as
    `error.result`."""
    result = run(plan(prompt, **options), out=out, name=name, timeout=timeout, detach=detach)
    if result.error is not None:
        result.error.result = result
        raise result.error
    return result


def edit(prompt: str, images: Sequence[str] | str, *, mask: str | None = None, **options) -> JobResult:
    """`generate` with reference images (paths or URLs) and an optional mask."""
    return generate(prompt, images=[images] if isinstance(images, str) else list(images), mask=mask, **options)


def _names(value: Sequence[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)
