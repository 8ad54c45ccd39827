"""`imgroute ledger show --json` and `imgroute ledger copy --json`: which ledger this machine
writes to, and what a copy into a team ledger moved."""

from __future__ import annotations

from imgroute.output.vocabulary import array_of, enum, integer, nullable, obj, text

LEDGER = obj(
    {
        "backend": enum(("sqlite", "postgresql"), "The home's SQLite file, or a team ledger"),
        "where": text("The file, or the team ledger's URL with its password shown as ***"),
        "source": text("Where that comes from: default, config.yaml, or environment (IMGROUTE_LEDGER_URL)"),
        "schema_version": integer("The numbered schema steps it has had", minimum=1),
        "timezone": text("Where budget days and months are counted: local (one machine's), or a team's zone"),
        "machines": array_of(
            obj({"host": nullable(text("A machine's name; null for jobs from before")), "jobs": integer(minimum=0)}),
            "Jobs by the machine that made them, most first",
        ),
        "leases": array_of(
            obj({"host": nullable(text()), "held": integer(minimum=1)}),
            "Jobs, batch rows and provider slots claimed right now, by machine",
        ),
    },
    description="The ledger this machine writes to.",
)

LEDGER_COPY = obj(
    {
        "source": text("The SQLite ledger copied"),
        "target": text("The team ledger's URL, its password shown as ***"),
        "jobs": integer("Jobs copied now", minimum=0),
        "already": integer("Jobs the target had already (a rerun copies nothing twice)", minimum=0),
        "attempts": integer(minimum=0),
        "tasks": integer("Requests", minimum=0),
        "files": integer(minimum=0),
        "events": integer(minimum=0),
        "budgets": array_of(enum(("daily", "monthly")), "Caps the target took from the source (it had none)"),
    },
    description="What a copy into a team ledger moved.",
)


def ledger_json(ledger, backend: str, source: str) -> dict:
    zone = ledger.zone
    return {
        "backend": backend,
        "where": ledger.where(),
        "source": source,
        "schema_version": ledger.schema_version(),
        "timezone": str(zone) if zone is not None else "local",
        "machines": [{"host": host, "jobs": n} for host, n in ledger.machines().items()],
        "leases": [{"host": host, "held": n} for host, n in ledger.leases_by_machine().items()],
    }


def copy_json(copied, source: str, target: str) -> dict:
    return {"source": source, "target": target, **copied._asdict(), "budgets": list(copied.budgets)}
