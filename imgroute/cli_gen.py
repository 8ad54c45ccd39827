"""`imgroute gen`: route, submit, wait, download, record. And `imgroute keys`.

Heavy modules (httpx, sqlite, the adapters) are imported inside the commands, so `quote` never
pays for them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from imgroute import config, policy
from imgroute.cli import (
    AspectOpt,
    ExcludeOpt,
    ImageOpt,
    JsonOpt,
    MaskOpt,
    MaxCostOpt,
    NOpt,
    PlanOpt,
    PricingOpt,
    PromptArg,
    ProviderOpt,
    QualityOpt,
    ResolutionOpt,
    SizeOpt,
    _opt,
    app,
    build_constraints,
    build_request,
    load_pricing,
    no_offer_error,
)
from imgroute.errors import ConfigError, Interrupted, UsageError
from imgroute.request import parse_format

keys_app = typer.Typer(help="API keys: set, list (names and sources only), remove.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Directory for the images.")]
NameOpt = Annotated[
    str, typer.Option("--name", help="File name template: {slug} {provider} {model} {index} {job} {quality} {date}.")
]
FormatOpt = Annotated[str, typer.Option("--format", help="png, jpeg or webp.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Most seconds to wait for the job.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the route and the exact request; send nothing.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="Print only the saved file paths, one per line.")]


@app.command()
def gen(
    prompt: PromptArg = None,
    quality: QualityOpt = "medium",
    size: SizeOpt = None,
    aspect: AspectOpt = None,
    resolution: ResolutionOpt = None,
    n: NOpt = 1,
    provider: ProviderOpt = None,
    exclude: ExcludeOpt = None,
    max_cost: MaxCostOpt = None,
    plan: PlanOpt = None,
    pricing: PricingOpt = None,
    image: ImageOpt = None,
    mask: MaskOpt = None,
    output_format: FormatOpt = "png",
    out: OutOpt = Path("."),
    name: NameOpt = "{slug}-{provider}-{index}",
    timeout: TimeoutOpt = policy.DEFAULT_JOB_TIMEOUT_S,
    dry_run: DryRunOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate: route to the cheapest offer you have a key for, submit, wait, save the images.

    With --image (and --mask) it edits those images: see `imgroute edit`.
    """
    from imgroute import keys as key_store
    from imgroute import render
    from imgroute.router import rank

    request = build_request(prompt, quality, size, aspect, resolution, n, image, mask)._replace(
        output_format=parse_format(output_format)
    )
    if timeout <= 0:
        raise UsageError(f"--timeout {timeout:g} must be above zero", "give seconds, like --timeout 300")
    _check_name(name)
    table = load_pricing(pricing)
    constraints = build_constraints(table, config.load_settings(), provider, exclude, max_cost, plan)
    available = key_store.all_keys()
    base_urls = key_store.all_base_urls()

    route = rank(request, table, constraints, extra_reasons=key_store.missing_key_reasons(available))
    skipped = _skipped_for_keys(route)
    if route.choice is None:
        raise _no_route_error(route, skipped)
    if dry_run:
        _dry_run(route, request, available, base_urls, as_json)
        return
    out_dir = _check_out_dir(out)
    result = _run(request, route, table, available, base_urls, out_dir, name, timeout, quiet or as_json, constraints)
    if as_json:
        from imgroute.jobs import result_to_json

        render.print_json(result_to_json(result, skipped))
    elif quiet:
        for image in result.images:
            sys.stdout.write(f"{image.path}\n")
    else:
        render.print_job(render.stdout_console(), result, skipped)
    if result.error is not None:
        raise result.error


def _run(request, route, table, available, base_urls, out_dir, name, timeout, silent, constraints):
    from imgroute.jobs import OutputOptions

    output = OutputOptions(out_dir, name)
    with job_runner(table, available, base_urls, output, timeout, silent, constraints.max_cost) as runner:
        return runner.run(request, route, constraints=constraints)


@contextmanager
def job_runner(table, available, base_urls, output, timeout, silent, max_cost):
    """A JobRunner with its HTTP client, ledger and progress line; Ctrl-C becomes exit 130."""
    from imgroute import render
    from imgroute.http import Http, build_client
    from imgroute.jobs import JobRunner
    from imgroute.ledger import LEDGER_FILE, Ledger

    ledger = Ledger(config.home() / LEDGER_FILE)
    progress = render.JobProgress(enabled=not silent)
    runner = None
    try:
        with build_client() as client, progress:
            runner = JobRunner(
                table=table,
                http=Http(client),
                ledger=ledger,
                keys=available,
                base_urls=base_urls,
                output=output,
                spool_dir=config.home() / "spool",
                timeout=timeout,
                max_cost=max_cost,
                on_event=progress.update,
            )
            yield runner
    except KeyboardInterrupt:
        job = runner.job_id if runner is not None else None
        if job is None:
            raise Interrupted("interrupted before anything was sent", None) from None
        raise Interrupted(
            f"interrupted; job {job} is in the ledger and nothing is sent twice",
            f"finish it with: imgroute jobs resume {job}",
        ) from None
    finally:
        ledger.close()


def _skipped_for_keys(route) -> list[dict]:
    """Offers that would have won or been cheaper than the choice, but have no key."""
    from imgroute.money import usd_json

    choice = route.choice
    out = []
    for quote in route.quotes:
        if not quote.reasons or not all(r.startswith("no key:") for r in quote.reasons):
            continue
        if choice is None or (quote.cost is not None and quote.cost < choice.cost):
            out.append(
                {
                    "provider": quote.offer.provider,
                    "model": quote.offer.model,
                    "cost_usd": usd_json(quote.cost),
                    "reason": quote.reasons[0],
                }
            )
    return out


def _no_route_error(route, skipped):
    if skipped:
        cheapest = skipped[0]
        return ConfigError(
            f"no API key for any provider that can deliver this (cheapest: {cheapest['provider']} "
            f"{cheapest['model']} at ${cheapest['cost_usd']})",
            cheapest["reason"].removeprefix("no key: "),
        )
    return no_offer_error(route)


def _check_name(template: str) -> None:
    from imgroute import images

    sample = {field: "x" for field in images.NAME_FIELDS}
    try:
        images.render_name(template, sample)
    except ValueError as exc:
        raise UsageError(str(exc), "for example --name '{slug}-{index}'") from None


def _check_out_dir(out: Path) -> Path:
    """Make sure images can be written before any money is spent."""
    out_dir = out.expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".imgroute-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"cannot write images to {out_dir}: {reason}", "choose another --out directory") from None
    return out_dir


def _dry_run(route, request, available, base_urls, as_json) -> None:
    from imgroute import render
    from imgroute.jobs import job_spec
    from imgroute.providers import adapter_class

    choice = route.choice
    a = choice.assessment
    adapter = adapter_class(choice.offer.provider)(available[choice.offer.provider], base_urls[choice.offer.provider])
    spec = job_spec(request, a, a.requests[0], "dry-run")
    prepared = adapter.prepare(spec)
    headers = {**prepared.headers, **adapter.redacted_headers()}
    body = _abbreviate(prepared.body)
    data = {
        "dry_run": True,
        "provider": choice.offer.provider,
        "model": a.model,
        "requests": len(a.requests),
        "request": {
            "method": prepared.method,
            "url": prepared.url,
            "headers": headers,
            "body": body,
            "files": [{"field": field, "path": path} for field, path in prepared.files],
        },
    }
    if as_json:
        from imgroute.money import usd_json

        data["cost_usd"] = usd_json(choice.cost)
        render.print_json(data)
        return
    console = render.stdout_console()
    render.print_quote(console, route)
    console.print(f"\nwould send ({len(a.requests)} request{'s' if len(a.requests) > 1 else ''}; nothing was sent):")
    console.print(f"{prepared.method} {prepared.url}", markup=False)
    for header, value in headers.items():
        console.print(f"{header}: {value}", markup=False)
    if prepared.files:
        console.print("multipart/form-data:", markup=False)
        for field, value in body.items():
            console.print(f"  {field} = {value}", markup=False)
        for field, path in prepared.files:
            console.print(f"  {field} = @{path}", markup=False)
    else:
        console.print(json.dumps(body, indent=2), markup=False)
    if (
        any(not image.is_url for image in request.images)
        and choice.offer.edit.inputs
        and set(choice.offer.edit.inputs) <= {"url", "upload_service"}
    ):
        console.print(f"(local images are first uploaded to {choice.offer.provider}'s own storage)", markup=False)


def _abbreviate(value):
    """Data URIs are megabytes of base64; show their type and size instead."""
    if isinstance(value, str) and value.startswith("data:") and len(value) > 80:
        return f"{value[: value.index(',') + 1]}... ({len(value):,} characters)"
    if isinstance(value, dict):
        return {key: _abbreviate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_abbreviate(item) for item in value]
    return value


@app.command()
def edit(
    prompt: PromptArg = None,
    image: ImageOpt = None,
    mask: MaskOpt = None,
    quality: QualityOpt = "medium",
    size: SizeOpt = None,
    aspect: AspectOpt = None,
    resolution: ResolutionOpt = None,
    n: NOpt = 1,
    provider: ProviderOpt = None,
    exclude: ExcludeOpt = None,
    max_cost: MaxCostOpt = None,
    plan: PlanOpt = None,
    pricing: PricingOpt = None,
    output_format: FormatOpt = "png",
    out: OutOpt = Path("."),
    name: NameOpt = "{slug}-{provider}-{index}",
    timeout: TimeoutOpt = policy.DEFAULT_JOB_TIMEOUT_S,
    dry_run: DryRunOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Edit images: --image PATH|URL (repeatable) and an optional --mask, routed like gen."""
    if not image and mask is None:  # with a mask alone, the mask check below explains better
        raise UsageError(
            "edit needs at least one --image", 'for example: imgroute edit "make it dusk" --image photo.png'
        )
    gen(
        prompt,
        quality,
        size,
        aspect,
        resolution,
        n,
        provider,
        exclude,
        max_cost,
        plan,
        pricing,
        image,
        mask,
        output_format,
        out,
        name,
        timeout,
        dry_run,
        quiet,
        as_json,
    )


# -- keys -------------------------------------------------------------------------------------


@keys_app.command("set")
def keys_set(
    name: Annotated[str, typer.Argument(help="Provider id (fal) or its variable (FAL_KEY).")],
    value: Annotated[str | None, _opt("--value", help="The key; prompted for (hidden) when omitted.")] = None,
) -> None:
    """Store a key in the keys file (mode 0600)."""
    from imgroute import keys as key_store

    provider = key_store.provider_for(name)
    if value is None:
        if sys.stdin is None or not sys.stdin.isatty():
            value = sys.stdin.readline() if sys.stdin else ""
        else:
            import getpass

            value = getpass.getpass(f"{provider} key (hidden): ")
    key_store.set_key(provider, value)
    sys.stdout.write(f"stored the {provider} key in {key_store.keys_path()}\n")


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False) -> None:
    """Which keys are set and where each comes from (never the values)."""
    from imgroute import keys as key_store
    from imgroute import render

    rows = key_store.list_keys()
    if as_json:
        render.print_json([row._asdict() for row in rows])
        return
    for row in rows:
        where = {"env": f"from ${row.env}", "file": f"from {key_store.keys_path()}", "missing": "not set"}[row.source]
        sys.stdout.write(f"{row.provider:<9} {row.env:<17} {where}\n")


@keys_app.command("remove")
def keys_remove(name: Annotated[str, typer.Argument(help="Provider id or its variable.")]) -> None:
    """Remove a key from the keys file (environment variables are yours to unset)."""
    from imgroute import keys as key_store

    provider = key_store.provider_for(name)
    if key_store.remove_key(provider):
        sys.stdout.write(f"removed the {provider} key from {key_store.keys_path()}\n")
    else:
        sys.stdout.write(f"no {provider} key in {key_store.keys_path()}\n")


@keys_app.command("path")
def keys_path() -> None:
    """Where the keys file lives."""
    from imgroute import keys as key_store

    sys.stdout.write(f"{key_store.keys_path()}\n")
