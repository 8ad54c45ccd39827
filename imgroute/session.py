"""What several doors open (the CLI, the Python API, `serve`): the pricing table, the ledger, the keys,
a job runner with its HTTP client and progress line, and the output directory check that comes
before any money is spent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imgroute import config
from imgroute.errors import ConfigError, Interrupted, UsageError


def load_pricing(pricing_file: Path | None):
    """The table (bundled, with the user's file over it), with what the home's caches know."""
    return load_table_and_settings(pricing_file)[0]


def load_table_and_settings(pricing_file: Path | None):
    """(table, config.yaml's settings), read once each. The table comes first: the relays it
    declares are providers that config.yaml's `limits:` and `credits:` may name."""
    from imgroute import credits, history, learned_sizes, table_cache

    home = config.home()
    table = learned_sizes.apply(table_cache.load(pricing_file or config.user_pricing_file(), home), home)
    settings = config.load_settings()
    return credits.attach(history.apply(table, home), home, settings.credits), settings


def open_ledger(durable: bool = True):
    from imgroute.ledger import LEDGER_FILE, Ledger

    return Ledger(config.home() / LEDGER_FILE, durable=durable)


@contextmanager
def ledger() -> Iterator:
    opened = open_ledger()
    try:
        yield opened
    finally:
        opened.close()


class Keys:
    """The keys present here and the base-URL overrides, read once per command (by every door that
    can send: gen, edit, batch, jobs resume, serve, the Python API)."""

    def __init__(self):
        from imgroute import keys as key_store

        self.available = key_store.all_keys()
        self.base_urls = key_store.all_base_urls()
        check_time_scale(self.available, self.base_urls)


def check_time_scale(keys, base_urls: dict[str, str | None]) -> None:
    """IMGROUTE_TIME_SCALE shortens every wait imgroute chooses (polls, backoff): meant for the local
    fakes only. Against a real provider it would poll and back off many times too fast, so it is
    refused unless every provider a key is present for is reached on loopback."""
    import os

    from imgroute.policy import TIME_SCALE_ENV
    from imgroute.providers import adapter_class

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
        origin = base_urls.get(provider) or adapter_class(provider).documented_origin
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

    out_dir = Path(check_text(str(out), "the --out folder")).expanduser()  # journaled: text, not bytes
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".imgroute-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"cannot write images to {out_dir}: {reason}", "choose another --out directory") from None
    return out_dir


def check_name(template: str) -> None:
    from imgroute import images
    from imgroute.request import check_text

    check_text(template, "--name")
    sample = {field: "x" for field in images.NAME_FIELDS}
    try:
        images.render_name(template, sample)
    except ValueError as exc:
        raise UsageError(str(exc), "for example --name '{slug}-{index}'") from None


def interrupted(runner, journal) -> Interrupted:
    """What a Ctrl-C left, said as it is: a resume that will work, or a request whose fate only the
    provider's dashboard can tell (its answer, with any images in it, is gone)."""
    from imgroute.models import TaskState
    from imgroute.providers import adapter_class
    from imgroute.signals import stop_word

    stopped = stop_word()  # interrupted (Ctrl-C), or terminated (SIGTERM): the same stop
    job = runner.job_id if runner is not None else None
    if job is None or journal.job(job) is None:
        return Interrupted(f"{stopped} before anything was sent", None)
    lost = [t for t in journal.tasks(job) if t.state == TaskState.UNKNOWN]
    lost = [t for t in lost if not adapter_class(t.provider).idempotent_submit]  # (Apiframe replays)
    if lost:
        provider = lost[0].provider
        return Interrupted(
            f"{stopped} while {provider} was answering job {job}: whether it was charged is unknown, and its "
            "images, if any, were in the answer that was cut off; nothing is sent again",
            f"check the {provider} dashboard, then: imgroute jobs settle {job} --charged (or --not-charged)",
        )
    return Interrupted(
        f"{stopped}; job {job} is in the ledger and nothing is sent twice",
        f"finish it with: imgroute jobs resume {job}",
    )


@contextmanager
def job_runner(table, keys: Keys, output, timeout: float, silent: bool, max_cost) -> Iterator:
    """A JobRunner with its HTTP client, ledger and progress line; Ctrl-C becomes exit 130."""
    from imgroute import render
    from imgroute.http import Http, build_client
    from imgroute.jobs import JobRunner
    from imgroute.observations import Observations

    journal = open_ledger()
    progress = render.JobProgress(enabled=not silent)
    runner = None
    try:
        with build_client() as client, progress:
            runner = JobRunner(
                table=table,
                http=Http(client),
                ledger=journal,
                keys=keys.available,
                base_urls=keys.base_urls,
                output=output,
                spool_dir=config.home() / "spool",
                timeout=timeout,
                max_cost=max_cost,
                on_event=progress.update,
                observations=Observations(config.home()),
            )
            yield runner
    except KeyboardInterrupt:
        raise interrupted(runner, journal) from None
    finally:
        if runner is not None:  # what the run observed, merged into the home's caches
            runner.observations.flush(force=True)
        journal.close()
