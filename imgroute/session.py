"""What a door opens once and every job it runs shares (the CLI, the Python API, `serve`): the pricing
table with config.yaml's settings, the keys, and `Services`: the ledger, the HTTP client, the home's
observations, and, when many jobs run at once, the per-provider limits and the scheduler. Also the
checks that come before any money is spent (the output folder, the file-name template, the time
scale), and what a Ctrl-C left, said as it is."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgroute import policy
from imgroute.errors import ConfigError, Interrupted, UsageError, named
from imgroute.home import config

if TYPE_CHECKING:
    import httpx

    from imgroute.batches.scheduler import Limits, Scheduler
    from imgroute.home.config import Settings
    from imgroute.home.observations import Observations
    from imgroute.jobs.polling import PollTiming
    from imgroute.jobs.steps import Slots
    from imgroute.net.http import Http
    from imgroute.pricing.table import PricingTable
    from imgroute.providers.registry import Registry
    from imgroute.store.interface import Ledger


def load_pricing(pricing_file: Path | None):
    """The table (bundled, with the user's file over it), with what the home's caches know."""
    return load_table_and_settings(pricing_file)[0]


def load_table_and_settings(pricing_file: Path | None):
    """(table, config.yaml's settings), read once each. The table comes first: the relays it
    declares are providers that config.yaml's `limits:` and `credits:` may name."""
    from imgroute.home import credits, history, learned_sizes
    from imgroute.pricing import cache as table_cache

    home = config.home()
    table = learned_sizes.apply(table_cache.load(pricing_file or config.user_pricing_file(), home), home)
    settings = config.load_settings(registry=table.registry)
    return _unset(credits.attach(history.apply(table, home), home, settings.credits)), settings


def _unset(table):
    """The offers of providers this user has not set up (beyond a key: Azure's endpoint) say so, in
    every door: quoted, but never chosen."""
    from imgroute.home import azure
    from imgroute.home.keys import base_url

    path = config.home() / config.CONFIG_FILE
    override = base_url("azure", table.registry)
    setup = table.registry.spec("azure").setup
    offers = []
    for offer in table.offers:
        if offer.provider != "azure":
            offers.append(offer)
            continue
        declared = azure.deployments(path)
        ready = bool(azure.target(path).endpoint or override)
        if ready and declared and not azure.default_named(path):  # (only the named ones are real)
            named = ", ".join(declared)
            offers.append(offer._replace(unset=f"a deployment named for it (azure.deployment), or use {named}"))
        else:
            offers.append(offer if ready else offer._replace(unset=setup))
        for name, deployed in declared.items():  # each declared deployment, its own offer
            model = f"{offer.model}@{name}"
            unset = "" if deployed.endpoint or override else setup
            offers.append(offer._replace(model=model, edit=offer.edit._replace(model=model), unset=unset))
    return table._replace(offers=tuple(offers))


def open_ledger(durable: bool = True, shared: bool = False, settings=None) -> Ledger:
    """The ledger: the team's on PostgreSQL when a URL is set (IMGROUTE_LEDGER_URL, or config.yaml's
    `ledger:`), else the home's SQLite file. `shared`: for a door's many threads (commits grouped);
    `durable`: SQLite's every commit synced (PostgreSQL's are, by its own settings)."""
    url, _ = config.ledger_url(settings)
    problem = policy.lease_problem()
    if problem:
        raise ConfigError(problem, f"set it to a number of seconds, or unset {policy.LEASE_ENV} (default 60)")
    if url is not None:
        from imgroute.store.postgres import PostgresLedger, SharedPostgresLedger

        return (SharedPostgresLedger if shared else PostgresLedger)(url)
    from imgroute.store.sqlite import LEDGER_FILE, SharedLedger, SQLiteLedger

    return (SharedLedger if shared else SQLiteLedger)(config.home() / LEDGER_FILE, durable=durable)


@contextmanager
def ledger() -> Iterator[Ledger]:
    opened = open_ledger()
    try:
        yield opened
    finally:
        opened.close()


class Keys:
    """The keys present here and the base-URL overrides, for the providers a table knows (its
    registry), read once per door (every door that can send: gen, edit, batch, jobs resume, serve,
    the Python API)."""

    def __init__(self, registry: Registry):
        from imgroute.home import keys as key_store

        self.registry = registry
        self.available = key_store.all_keys(registry)
        self.base_urls = key_store.all_base_urls(registry)
        self.options: dict[str, dict] = {}  # provider -> what its adapter takes beside key and base URL
        self._azure()
        check_time_scale(self.available, self.base_urls, registry)

    def _azure(self) -> None:
        """Azure's origin is the customer's own endpoint, and its `model` the deployment's name: with
        a key but no endpoint, it is not set up (its offer says how, as for a missing key)."""
        from imgroute.home import azure

        path = config.home() / config.CONFIG_FILE
        where, named = azure.target(path), azure.deployments(path)
        override = self.base_urls.get("azure")  # (IMGROUTE_AZURE_BASE_URL: every deployment's origin)
        self.base_urls["azure"] = override or where.endpoint
        if not self.base_urls["azure"] and not any(t.endpoint for t in named.values()):
            self.available.pop("azure", None)
        self.options["azure"] = {
            "deployment": where.deployment,
            "api_version": where.api_version,
            "deployments": {name: t._replace(endpoint=override or t.endpoint) for name, t in named.items()},
        }

    def lane_limits(self, limits: dict) -> dict:
        """The registry's limits with each declared Azure deployment's own (`azure#NAME`), field by
        field over Azure's."""
        out = dict(limits)
        for name, deployed in self.options.get("azure", {}).get("deployments", {}).items():
            if deployed.limits is not None:
                base = limits.get("azure", (None, None))
                concurrency, per_minute = deployed.limits
                out[f"azure#{name}"] = (concurrency or base[0], per_minute if per_minute is not None else base[1])
        return out

    def adapter(self, provider: str, windowed: bool = False):
        """The provider's adapter with this door's key, base URL and settings for it."""
        cls = self.registry.adapter_class(provider, windowed)
        return cls(self.available[provider], self.base_urls.get(provider), **self.options.get(provider, {}))

    def every_value(self) -> list[str]:
        """Every key this process could send (a trace hides them all: http.build_client)."""
        from imgroute.home import keys as key_store

        return key_store.every_value(self.registry)


def check_time_scale(keys, base_urls: dict[str, str | None], registry: Registry) -> None:
    """IMGROUTE_TIME_SCALE shortens every wait imgroute chooses (polls, backoff): meant for the local
    fakes only. Against a real provider it would poll and back off many times too fast, so it is
    refused unless every provider a key is present for is reached on loopback."""
    import os

    from imgroute.policy import TIME_SCALE_ENV

    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return
    try:
        scale = float(raw)
    except ValueError:
        scale = float("nan")
    if not 0 <= scale <= 1:
        raise ConfigError(f"{TIME_SCALE_ENV}={raw!r} is not a number from 0 to 1", f"unset {TIME_SCALE_ENV}")
    if scale == 1:
        return
    for provider in sorted(keys):
        origin = base_urls.get(provider) or registry.adapter_class(provider).documented_origin
        if not is_loopback_url(origin):
            raise ConfigError(
                f"{TIME_SCALE_ENV}={raw} would make imgroute poll and back off "
                f"{'without waiting' if scale == 0 else f'{1 / scale:g}x faster'}, which is only for the local fakes, "
                f"but {provider} is reached at {origin}",
                f"unset {TIME_SCALE_ENV}, or point {provider} at a fake on 127.0.0.1 too",
            )


def is_loopback_url(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_out_dir(out: Path) -> Path:
    """Make sure images can be written before any money is spent."""
    import tempfile

    from imgroute.request import check_text

    out_dir = Path(check_text(str(out), f"the {named('out')} folder")).expanduser()  # journaled: text, not bytes
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".imgroute-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        hint = f"choose another {named('out')} directory"
        raise UsageError(f"cannot write images to {out_dir}: {reason}", hint) from None
    return out_dir


def check_name(template: str) -> None:
    from imgroute.net import images
    from imgroute.request import check_text

    check_text(template, named("name"))
    sample = {field: "x" for field in images.NAME_FIELDS}
    try:
        images.render_name(template, sample)
    except ValueError as exc:
        raise UsageError(f"{named('name')} {exc}", f"for example {named('name')} '{{slug}}-{{index}}'") from None


def interrupted(job_id: str | None, journal, registry: Registry) -> Interrupted:
    """What a Ctrl-C left, said as it is: a resume that will work, or a request whose fate only the
    provider's dashboard can tell (its answer, with any images in it, is gone)."""
    from imgroute.models import TaskState
    from imgroute.signals import stop_word

    stopped = stop_word()  # interrupted (Ctrl-C), or terminated (SIGTERM): the same stop
    if job_id is None or journal.job(job_id) is None:
        return Interrupted(f"{stopped} before anything was sent", None)
    lost = [t for t in journal.tasks(job_id) if t.state == TaskState.UNKNOWN]
    lost = [t for t in lost if not registry.adapter_class(t.provider).idempotent_submit]  # (Apiframe replays)
    if lost:
        provider = lost[0].provider
        return Interrupted(
            f"{stopped} while {provider} was answering job {job_id}: whether it was charged is unknown, and its "
            "images, if any, were in the answer that was cut off; nothing is sent again",
            f"check the {provider} dashboard, then: imgroute jobs settle {job_id} --charged (or --not-charged)",
        )
    return Interrupted(
        f"{stopped}; job {job_id} is in the ledger and nothing is sent twice",
        f"finish it with: imgroute jobs resume {job_id}",
    )


# -- the services a door opens once ------------------------------------------------------------


@dataclass
class Services:
    """What every job a door runs shares, opened once: the table (and its registry), config.yaml's
    settings, the keys, the ledger, the HTTP client, the home's observations, and the slots a job
    takes at its provider. Opened by `one_job` (gen, edit, `jobs resume ID`, the Python API: the
    ledger fully durable, slots always free) or `many_jobs` (batch, serve, `jobs resume --all`:
    one shared ledger connection, per-provider limits, a scheduler of a few threads)."""

    table: PricingTable
    settings: Settings
    keys: Keys
    home: Path
    ledger: Ledger
    client: httpx.Client
    observations: Observations
    slots: Slots
    scheduler: Scheduler | None = None
    timing: PollTiming | None = None  # poll schedules learned from the jobs of this door
    # Set when a second Ctrl-C leaves jobs' threads inside a step: nothing is closed under them (the
    # journal stays exact; the process ends at once).
    abandoned: bool = False

    @property
    def registry(self) -> Registry:
        return self.table.registry

    @property
    def limits(self) -> Limits:
        """The per-provider limits (many_jobs only)."""
        from imgroute.batches.scheduler import Limits

        assert isinstance(self.slots, Limits), "one_job's slots are always free: no limits"
        return self.slots

    def http(self) -> Http:
        """An Http for one job (its progress callback is its own): on the scheduler, its blocking
        waits get a stand-in worker."""
        from imgroute.net.http import Http

        return self.scheduler.http(self.client) if self.scheduler is not None else Http(self.client)

    def close(self) -> None:
        self.observations.flush(force=True)  # what the jobs observed, merged into the home's caches
        if self.abandoned:
            return
        if self.scheduler is not None:
            self.scheduler.close()
        _report_commits(self.ledger)
        self.ledger.close()
        self.client.close()


COMMITS_ENV = "IMGROUTE_COMMITS_FILE"


def _report_commits(ledger: Ledger) -> None:
    """For scripts/bench_batch.py: how many transactions the door's jobs committed, written to the
    file IMGROUTE_COMMITS_FILE names (nothing is written without it)."""
    import os

    path = os.environ.get(COMMITS_ENV)
    if path:
        Path(path).write_text(str(getattr(ledger, "commits", 0)))


@contextmanager
def one_job(table, settings, keys: Keys) -> Iterator[Services]:
    """The services of a door that runs one job at a time."""
    from imgroute.home.observations import Observations
    from imgroute.jobs.steps import Unlimited
    from imgroute.net.http import build_client

    home = config.home()
    client = build_client(secrets=keys.every_value)
    services = Services(table, settings, keys, home, open_ledger(), client, Observations(home), Unlimited())
    try:
        yield services
    finally:
        services.close()


def open_many(
    table, settings, keys: Keys, *, workers: int, total: int | None = None, connections: int = 10, durable: bool = False
) -> Services:
    """The services of a door that runs many jobs at once (close them when done): `workers`
    scheduler threads, at most `total` jobs at the providers (None: only each provider's own limit),
    an HTTP pool of `connections`. The ledger is one connection in SQLite's NORMAL mode unless
    `durable`."""
    from imgroute.batches.scheduler import Limits, Scheduler
    from imgroute.home.observations import Observations
    from imgroute.jobs.polling import PollTiming, priors
    from imgroute.net.http import build_client

    home = config.home()
    limits = Limits(keys.lane_limits(table.registry.limits(settings.limits)), total)
    ledger = open_ledger(durable, shared=True, settings=settings)
    client = build_client(pool_size=connections, secrets=keys.every_value)
    scheduler = Scheduler(workers, limits, policy.time_scale(), _exchanges(connections))
    timing = PollTiming(priors(table.offers))  # a wave of first jobs polled from each offer's typical time
    return Services(table, settings, keys, home, ledger, client, Observations(home), limits, scheduler, timing)


def _exchanges(connections: int):
    """Where many jobs' synchronous generations wait without a thread each (net/exchanges.py);
    None while -v traces every exchange (the trace wraps the blocking client: those then run on
    threads, as one job's do)."""
    from imgroute.net import debug

    if debug.enabled():
        return None
    from imgroute.net.exchanges import Exchanges

    return Exchanges(connections)


@contextmanager
def many_jobs(table, settings, keys: Keys, **sizes) -> Iterator[Services]:
    """open_many's services for the time of a `with` (see open_many for `sizes`)."""
    services = open_many(table, settings, keys, **sizes)
    try:
        yield services
    finally:
        services.close()
