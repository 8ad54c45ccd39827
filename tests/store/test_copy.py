"""`imgroute ledger copy --to postgresql://...`: a machine's history moves into a team ledger whole
(jobs, attempts, requests, files, history, spend, caps), and a rerun copies only what is new."""

from __future__ import annotations

from decimal import Decimal

from tests.helpers import gen, only
from tests.pg_cluster import cluster


def test_a_home_ledger_is_copied_into_a_team_ledger_once(cli, fakes, isolated_home, monkeypatch):
    from imgroute.store.postgres import PostgresLedger
    from imgroute.store.sqlite import SQLiteLedger

    for _ in range(2):
        assert gen(cli, *only(fakes, "kie")).code == 0
    assert cli("budget", "set", "--daily", "5").code == 0
    url = cluster().new_database()
    with_password = url.replace("postgres@", "postgres:hunter2@")
    copied = cli("ledger", "copy", "--to", with_password, "--json")
    assert copied.code == 0, copied.err
    data = copied.json()
    assert (data["jobs"], data["already"], data["files"], data["budgets"]) == (2, 0, 2, ["daily"])
    assert "hunter2" not in copied.out + copied.err and "***" in data["target"]

    home = SQLiteLedger(isolated_home / "ledger.sqlite")
    team = PostgresLedger(url, heartbeat=False)
    for record in home.jobs():
        assert team.job(record.id) == home.job(record.id)._replace(host=team.job(record.id).host)
        assert [f.sha256 for f in team.files(record.id)] == [f.sha256 for f in home.files(record.id)]
        assert team.events(record.id) == home.events(record.id)
        assert [t.outputs for t in team.tasks(record.id)] == [t.outputs for t in home.tasks(record.id)]
    assert team.spent_since(0) == home.spent_since(0) == Decimal("0.06")
    assert team.budgets() == {"daily": Decimal("5")}

    again = cli("ledger", "copy", "--to", url, "--json").json()
    assert (again["jobs"], again["already"]) == (0, 2)
    assert gen(cli, *only(fakes, "kie")).code == 0
    assert cli("ledger", "copy", "--to", url, "--json").json()["jobs"] == 1
    assert team.spent_since(0) == Decimal("0.09")

    monkeypatch.setenv("IMGROUTE_LEDGER_URL", url)
    shown = cli("ledger", "show")
    assert "postgresql" in shown.out and "budget days counted in: UTC" in shown.out
    assert all(len(line) <= 80 for line in shown.out.splitlines() if not line.startswith("  postgresql://"))
    assert cli("ledger", "timezone", "Europe/Paris").code == 0
    assert cli("ledger", "show", "--json").json()["timezone"] == "Europe/Paris"


def test_bad_ledger_commands_say_what_to_do(cli, isolated_home):
    refused = cli("ledger", "copy", "--to", "sqlite:///x.db")
    assert refused.code == 2 and "not a PostgreSQL URL" in refused.err
    nothing = cli("ledger", "copy", "--to", "postgresql://u@/db")
    assert nothing.code == 2 and "no SQLite ledger at" in nothing.err
    local = cli("ledger", "timezone", "UTC")
    assert local.code == 2 and "its own SQLite file" in local.err
    assert "budget days counted in: local" in cli("ledger", "show").out


def test_a_ledger_another_imgroute_is_running_jobs_on_is_not_copied(cli, fakes, isolated_home):
    import subprocess
    import sys

    from imgroute.store.interface import job_key
    from imgroute.store.postgres import PostgresLedger
    from imgroute.store.sqlite import SQLiteLedger

    assert gen(cli, *only(fakes, "kie")).code == 0
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        home = SQLiteLedger(isolated_home / "ledger.sqlite")
        with home.transaction() as tx:  # (as that process would hold the job it runs)
            tx.db.execute("INSERT INTO claims (key, pid, owner, at) VALUES (?, ?, 'theirs', 0)",
                          (job_key("j-running"), running.pid))  # fmt: skip
        home.close()
        url = cluster().new_database()
        refused = cli("ledger", "copy", "--to", url)
        assert refused.code == 2 and f"another imgroute (pid {running.pid}) is running jobs" in refused.err
        assert "Traceback" not in refused.err
        assert PostgresLedger(url, heartbeat=False).jobs() == []  # nothing half-copied
    finally:
        running.kill()
        running.wait()
    assert cli("ledger", "copy", "--to", url, "--json").json()["jobs"] == 1  # its process gone: copied
