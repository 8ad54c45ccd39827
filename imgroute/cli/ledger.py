"""`imgroute ledger`: which ledger this machine writes to (the home's SQLite file, or a team's
PostgreSQL), a copy of the home's history into a team ledger, and the team's time zone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from imgroute.cli.app import app
from imgroute.cli.options import JsonOpt, opt
from imgroute.errors import UsageError

ledger_app = typer.Typer(help="The ledger: which one, a copy into a team ledger, its time zone.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("show")
def ledger_show(as_json: JsonOpt = False) -> None:
    """Which ledger this machine writes to, where that comes from, and who uses it."""
    from imgroute.home import config
    from imgroute.output.ledger import ledger_json
    from imgroute.output.text.console import print_json
    from imgroute.session import ledger

    url, source = config.ledger_url()
    with ledger() as journal:
        data = ledger_json(journal, "postgresql" if url else "sqlite", source)
    if as_json:
        print_json(data)
        return

    def by_machine(entries: list[dict], count: str) -> str:
        return ", ".join(f"{e['host'] or '(unrecorded)'} {e[count]:,}" for e in entries) or "none"

    lines = [  # (where it is stands alone on its line: a long URL or path is wrapped whole by the terminal)
        f"ledger: {data['backend']}, from {data['source']}, schema {data['schema_version']}",
        f"  {data['where']}",
        f"budget days counted in: {data['timezone']}",
        f"jobs by machine: {by_machine(data['machines'], 'jobs')}",
        f"claims held now: {by_machine(data['leases'], 'held')}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")


@ledger_app.command("copy")
def ledger_copy(
    to: Annotated[str, opt("--to", help="The team ledger: postgresql://USER:PASSWORD@HOST/DATABASE.", metavar="URL")],
    source: Annotated[
        Path | None, opt("--from", help="The SQLite ledger to copy (default: the home's).", metavar="FILE")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a SQLite ledger's history (jobs, requests, files, spend, caps) into a team ledger; run
    again, it copies only what is new."""
    from imgroute.home import config
    from imgroute.ledger_url import is_postgres_url, redacted
    from imgroute.output.ledger import copy_json
    from imgroute.output.text.console import print_json
    from imgroute.store.copy import copy_ledger
    from imgroute.store.postgres import PostgresLedger
    from imgroute.store.sqlite import LEDGER_FILE, SQLiteLedger

    if not is_postgres_url(to):
        raise UsageError(
            f"--to '{redacted(to)}' is not a PostgreSQL URL", "give --to postgresql://USER:PASSWORD@HOST/DB"
        )
    path = source or config.home() / LEDGER_FILE
    if not path.is_file():
        raise UsageError(f"no SQLite ledger at {path}", "give the file with --from FILE")
    origin, target = SQLiteLedger(path), PostgresLedger(to, heartbeat=False)
    try:
        copied = copy_ledger(origin, target)
    finally:
        origin.close()
        target.close()
    data = copy_json(copied, str(path), redacted(to))
    if as_json:
        print_json(data)
        return
    caps = f"; caps taken: {', '.join(copied.budgets)}" if copied.budgets else ""
    sys.stdout.write(
        f"copied {copied.jobs:,} jobs ({copied.attempts:,} attempts, {copied.tasks:,} requests, "
        f"{copied.files:,} files) from {path} to {redacted(to)}; {copied.already:,} were there already{caps}\n"
    )


@ledger_app.command("timezone")
def ledger_timezone(
    zone: Annotated[str, typer.Argument(help="An IANA time zone: UTC, Europe/Paris.", metavar="ZONE")],
) -> None:
    """Set the time zone a team ledger counts budget days and months in (one for every machine)."""
    from imgroute.session import ledger
    from imgroute.store.postgres import PostgresLedger

    with ledger() as journal:
        if not isinstance(journal, PostgresLedger):
            raise UsageError(
                "this machine's ledger is its own SQLite file: its budget days are its local days",
                "set a team ledger first (ledger: in config.yaml, or IMGROUTE_LEDGER_URL)",
            )
        journal.set_zone(zone)
    sys.stdout.write(f"budget days and months are now counted in {zone}, on every machine of this ledger\n")
