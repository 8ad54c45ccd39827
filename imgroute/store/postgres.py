"""The team ledger on PostgreSQL: one ledger, one budget and one set of leases for many machines.

Selected by `ledger: postgresql://...` in config.yaml or IMGROUTE_LEDGER_URL (session.open_ledger);
psycopg 3 is the `imgroute[postgres]` extra, imported only here. What changes from SQLite, and why:

- Leases expire. A lease is held until its expiry, renewed every quarter of it by a heartbeat
  thread while this process lives; a dead machine's jobs and batch rows are free once its leases
  run out. Before each request is sent, the intent's transaction checks that this process still
  holds the job's lease (`LeaseLost` otherwise): a machine that stalled past its lease never sends
  for a job another machine has taken over.
- Caps hold team-wide. A reservation takes a transaction-scoped advisory lock before it reads what
  the period has committed, so reservations on every machine check the caps one at a time; a day's
  committed total grows in one statement (NUMERIC), so concurrent changes never lose one another.
- One clock. Every stamp, lease expiry and budget day is on the database's clock (this machine's
  clock corrected by the difference measured at connect), so machines whose clocks disagree agree;
  budget days and months are counted in the ledger's one time zone (UTC unless set).
- A URL's password is never shown: `redacted(url)` is what errors, `imgroute config` and
  `imgroute ledger` print.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any, ClassVar

from imgroute.errors import ConfigError, LeaseLost
from imgroute.ledger_url import redacted, scrubbed
from imgroute.store.interface import (
    LEASE_SECONDS,
    MACHINE,
    PROCESS_OWNER,
    Answer,
    answered,
    died_here,
    slot_key,
    slot_order,
)
from imgroute.store.periods import local_day
from imgroute.store.postgres_schema import migrate
from imgroute.store.records import Holder, RowJob
from imgroute.store.sql_ledger import GroupedCommits, SQLLedger
from imgroute.store.sql_writes import NEW_TASK, ROW_JOB, SQLTransaction, budgets, row_job_of, spent_since

RESERVATION_LOCK = 7_461_024_002  # pg_advisory_xact_lock key: one cap check at a time, team-wide
DEFAULT_ZONE = "UTC"
RETRIED_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock: the transaction is run again
RETRIES = 5
ID_BLOCK = 100  # ids a connection takes from a table's sequence at a time (Connection.new_id)


# -- the connection: the ledger's SQL on psycopg -------------------------------------------------


class _Row(tuple):
    """A row read by position (unpacking) or by column name, as sqlite3.Row is."""

    _index: ClassVar[Mapping[str, int]] = MappingProxyType({})  # (each row class gets its own)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> Sequence[str]:
        return list(self._index)


_row_classes: dict[tuple[str, ...], type[_Row]] = {}


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
    names = tuple(column.name for column in cursor.description or ())
    cls = _row_classes.get(names)
    if cls is None:
        cls = _row_classes[names] = type("Row", (_Row,), {"_index": {n: i for i, n in enumerate(names)}})
    return cls


class _Rows:
    """The rows a held statement answered (Connection.later): read once what was held is sent."""

    __slots__ = ("connection", "rows")

    def __init__(self, connection: Connection):
        self.connection = connection
        self.rows: list[Any] | None = None

    def fetchall(self) -> list[Any]:
        if self.rows is None:
            self.connection.flush()
        assert self.rows is not None, "a held statement's rows are read once it is sent"
        return self.rows

    def fetchone(self) -> Any:
        rows = self.fetchall()
        return rows[0] if rows else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class Connection:
    """psycopg's connection, spoken to as the ledger's SQL is written: `?` placeholders. In
    autocommit mode: the ledger begins and commits its transactions itself, as it does on SQLite.

    A transaction's writes whose answer nobody reads (`send`) are held, and go to the server in one
    message with the next statement whose answer is read, or at `flush` (COMMIT is one): a round
    trip to the server is what a job's journal spends its time on, and most of its statements need
    no answer. Held statements are written out with their values (psycopg's client-side quoting)
    and sent as one query string; PostgreSQL runs them in order and stops at the first error,
    which `flush` raises."""

    def __init__(self, raw: Any):
        self.raw = raw
        self._converted: dict[str, str] = {}
        self._held: list[tuple[str, _Rows | None]] = []  # (a statement with its values, its rows)
        self._sent = 0  # times held statements were sent (Connection.unsend)
        self._quoting: Any = None  # a psycopg ClientCursor, to write a statement with its values
        self._ids: dict[str, list[int]] = {}  # table -> ids taken from its sequence, not used yet

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        if self._held:  # (in one message with what is held)
            rows = self.later(sql, args)
            self.flush()
            return rows
        if not args:
            return self.raw.execute(sql)
        return self.raw.execute(self._psycopg(sql), args)

    def _psycopg(self, sql: str) -> str:
        """The statement in psycopg's placeholders (`%s`, a literal `%` doubled), converted once."""
        query = self._converted.get(sql)
        if query is None:  # (no `?` or `%` of ours is inside a literal)
            query = self._converted[sql] = sql.replace("%", "%%").replace("?", "%s")
        return query

    def close(self) -> None:
        self.raw.close()

    # -- statements held, sent together

    def send(self, sql: str, args: Sequence[Any] = ()) -> None:
        """Hold a statement whose answer is not read, until the next one that is (or `flush`)."""
        self._held.append((self._with_values(sql, args), None))

    def later(self, sql: str, args: Sequence[Any] = ()) -> _Rows:
        """Hold a statement whose rows are read later: they come with what is held, when sent."""
        rows = _Rows(self)
        self._held.append((self._with_values(sql, args), rows))
        return rows

    def flush(self) -> None:
        """Send what is held, in one message; raise the first error."""
        if not self._held:
            return
        held, self._held = self._held, []
        self._sent += 1
        cursor = self.raw.execute("; ".join(text for text, _ in held))
        for _, rows in held:  # (one result a statement, in order)
            if rows is not None:
                rows.rows = cursor.fetchall() if cursor.description else []
            cursor.nextset()

    def position(self) -> tuple[int, int]:
        """Where the held statements stand now: for `unsend`."""
        return self._sent, len(self._held)

    def discard(self) -> None:
        """Forget what is held (its transaction is being rolled back)."""
        self._held = []

    def unsend(self, position: tuple[int, int]) -> bool:
        """Forget what was held after `position`: True if none of it had been sent since."""
        if self._sent != position[0]:
            self._held = []
            return False
        del self._held[position[1] :]
        return True

    def new_id(self, table: str) -> int:
        """An id for a new row of `table` (attempts, tasks), from its sequence, which hands out a
        hundred at a time: a row whose id is known before it is inserted needs no answer, and is
        held with the other writes. (Ids a process did not use are skipped: gaps, never reuse.)"""
        ids = self._ids.get(table)
        if not ids:
            rows = self.raw.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", (table, ID_BLOCK)
            ).fetchall()
            ids = self._ids[table] = [row[0] for row in reversed(rows)]
        return ids.pop()

    def _with_values(self, sql: str, args: Sequence[Any]) -> str:
        if not args:
            return sql
        if self._quoting is None:
            import psycopg

            self._quoting = psycopg.ClientCursor(self.raw)
        return self._quoting.mogrify(self._psycopg(sql), args)


def connect(url: str) -> Connection:
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "the ledger is on PostgreSQL, and psycopg is not installed", "pip install 'imgroute[postgres]'"
        ) from None
    try:
        raw = psycopg.connect(url, autocommit=True, row_factory=_row_factory, application_name="imgroute")
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    return Connection(raw)


def unreachable(url: str, exc: BaseException) -> ConfigError:
    said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    said = scrubbed(said, url)
    return ConfigError(
        f"the ledger {redacted(url)} cannot be reached ({said})",
        "check the URL (ledger: in config.yaml, or IMGROUTE_LEDGER_URL) and that the database is up",
    )


# -- writes ----------------------------------------------------------------------------------------


def with_id(insert: str) -> str:
    """An `INSERT INTO table (columns) VALUES (values)` that also sets the row's id (its first value)."""
    columns, values = insert.index("(") + 1, insert.index("VALUES (") + len("VALUES (")
    return insert[:columns] + "id, " + insert[columns:values] + "?, " + insert[values:]


# An intent in one round trip: the job of the attempt; its lease, renewed (and its row locked) if
# this process holds it; a live holder of its batch row other than this process (that row locked
# too); and the request's row (rolled back with the transaction when a lease was lost).
INTENT = (
    "WITH job AS (SELECT jobs.id, jobs.row_key FROM attempts JOIN jobs ON jobs.id = attempts.job_id "
    "WHERE attempts.id = ?), "
    "held AS (UPDATE claims SET expires = ? WHERE key = 'job:' || (SELECT id FROM job) AND owner = ? "
    "AND (expires IS NULL OR expires >= ?) RETURNING 1), "
    "other AS (SELECT owner FROM claims WHERE key = (SELECT row_key FROM job) AND owner <> ? "
    "AND (expires IS NULL OR expires >= ?) FOR UPDATE), "
    f"task AS ({with_id(NEW_TASK)}) "
    "SELECT (SELECT id FROM job), EXISTS (SELECT 1 FROM held), (SELECT owner FROM other LIMIT 1)"
)

# A lease on each of the keys (k) nobody holds, or whose lease ran out, or that are the owner's own:
# (pid, owner, host, now, expiry, keys, now); the keys taken.
CLAIM = (
    "INSERT INTO claims (key, pid, owner, host, at, expires) SELECT k, ?, ?, ?, ?, ? FROM unnest(?::text[]) "
    "AS k ON CONFLICT (key) DO UPDATE SET pid = excluded.pid, owner = excluded.owner, host = excluded.host, "
    "at = excluded.at, expires = excluded.expires WHERE claims.owner = excluded.owner "
    "OR claims.expires IS NULL OR claims.expires < ? RETURNING key"
)


class PostgresTransaction(SQLTransaction):
    """A day's committed total is one row every machine's transactions add to. Its row lock is held
    from the first change until COMMIT, so the changes are added up here and written last, in one
    statement a day: writers wait for each other only for that statement and the commit, and the
    locks are always taken in one order (a reservation's advisory lock before a day's row), so
    that two writers cannot deadlock on them."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # What this transaction adds to the days' totals, and the rows `_then` put off, each marked
        # with the part of the transaction that made it (savepoints begin new ones): an undone part
        # takes back its own changes alone, even one of an earlier part's rows read since.
        self._part = 0
        self._changes: list[tuple[int, str, Decimal]] = []  # (part, day, amount)
        self._unread: list[tuple[int, Any, Callable[[Any], None]]] = []  # (part, a cursor, what to do with its row)
        self._reading_part: int | None = None  # (while an earlier part's row is used)
        # Read once a transaction (a group commit's reservations would each pay a round trip): the
        # caps, and the days' committed totals as read under the reservation lock, which is held
        # until COMMIT, so no reservation on any machine changes them meanwhile. (A settlement,
        # which takes no lock, commits meanwhile unseen, as it would just after a read.)
        self._caps_read: dict[str, Decimal] | None = None
        self._committed_read: dict[str, Decimal] = {}  # first day -> its days' totals, as read

    def write(self, sql: str, args: tuple = ()) -> None:
        self.db.send(sql, args)

    def flush(self) -> None:
        self._read_rows()  # (the answers put off: an intent's check is raised here)
        self.db.flush()

    def unsent(self) -> None:
        self.db.discard()

    def savepoint(self) -> Any:
        self.write("SAVEPOINT job")
        position = self.db.position()  # (after it: undone or not, the savepoint is there to release)
        self._part += 1
        return position, self._part

    def undo(self, savepoint: Any) -> None:
        position, part = savepoint
        self._changes = [change for change in self._changes if change[0] < part]
        self._unread = [entry for entry in self._unread if entry[0] < part]
        self._committed_read.clear()  # (the reservation lock may have been taken after the savepoint)
        if not self.db.unsend(position):  # (the savepoint was sent: the server takes it back)
            self.db.execute("ROLLBACK TO job")

    def _row_before(self, sql: str, args: tuple) -> Any:
        return self.db.later(sql, args)  # (read when its answer is needed: no round trip of its own)

    def _then(self, row: Any, use: Callable[[Any], None]) -> None:
        self._unread.append((self._part, row, use))

    def _read_rows(self) -> None:
        """The rows `_then` put off, used now (what they change is their own part's)."""
        unread, self._unread = self._unread, []
        for part, cursor, use in unread:
            row = cursor.fetchone()
            if row is not None:
                self._reading_part = part
                try:
                    use(row)
                finally:
                    self._reading_part = None

    def _insert(self, sql: str, args: tuple) -> int:
        new_id = self.db.new_id(sql.split(None, 3)[2])  # ("INSERT INTO table ...")
        self.write(with_id(sql), (new_id, *args))
        return new_id

    def add_committed(self, created: float, delta: Decimal) -> None:
        if delta:
            part = self._part if self._reading_part is None else self._reading_part
            self._changes.append((part, local_day(created, self.zone), delta))

    def _spent_since(self, since: float) -> Decimal:
        self._read_rows()
        first = local_day(since, self.zone)
        committed = self._committed_read.get(first)
        if committed is None:
            committed = self._committed_read[first] = super()._spent_since(since)
        return committed + sum((delta for _, day, delta in self._changes if day >= first), Decimal(0))

    def _caps(self) -> dict[str, Decimal]:
        if self._caps_read is None:
            self._caps_read = super()._caps()
        return self._caps_read

    def before_commit(self) -> None:
        self._read_rows()
        days: dict[str, Decimal] = {}
        for _, day, delta in self._changes:
            days[day] = days.get(day, Decimal(0)) + delta
        for day, delta in sorted(days.items()):  # (one order: no two writers wait on each other)
            if delta:
                self.write(
                    "INSERT INTO spend_days (day, committed_usd) VALUES (?, ?) ON CONFLICT (day) DO UPDATE "
                    "SET committed_usd = spend_days.committed_usd + excluded.committed_usd",
                    (day, delta),
                )
        self._changes.clear()

    def _serialise_reservations(self) -> None:
        self.write(f"SELECT pg_advisory_xact_lock({RESERVATION_LOCK})")  # (taken before the reads after it)

    def claim(self, keys: list[str], owner: str, ttl: float) -> dict[str, Holder]:
        """Keys nobody holds, or whose lease ran out, or that are the owner's own, become the
        owner's until now + ttl; the others are left to their holders: {key: holder}."""
        return self.ask_claim(keys, owner, ttl)()

    def ask_claim(self, keys: list[str], owner: str, ttl: float) -> Answer[dict[str, Holder]]:
        """`claim`, sent with the next statement that is read. Who holds each key is asked with it
        (a key taken shows its new owner, and is not looked at)."""
        if not keys:
            return Answer.given({})
        now, wanted = self.clock(), sorted(set(keys))  # (one order for every machine: no deadlock)
        taken = self.db.later(CLAIM, (os.getpid(), owner, MACHINE, now, now + ttl, wanted, now))
        holders = self.db.later("SELECT key, owner, pid, host FROM claims WHERE key = ANY(?::text[])", (wanted,))
        return Answer(lambda: self._held_elsewhere(taken, holders, owner, ttl, now))

    def _held_elsewhere(self, taken: Any, holders: Any, owner: str, ttl: float, now: float) -> dict[str, Holder]:
        refused = {key for key, *_ in holders.fetchall()} - {key for (key,) in taken.fetchall()}
        held = {}
        for key, holder, pid, host in holders.fetchall():
            if key not in refused:
                continue
            if died_here(holder, pid):  # its process ended on this machine: no need to wait out the lease
                retaken = self.db.execute(
                    "UPDATE claims SET pid = ?, owner = ?, host = ?, at = ?, expires = ? WHERE key = ? AND owner = ? "
                    "RETURNING 1",
                    (os.getpid(), owner, MACHINE, now, now + ttl, key, holder),
                ).fetchone()
                if retaken is not None:
                    continue
            held[key] = Holder(owner=holder, pid=pid, host=host)  # (or another process of here took it first)
        return held

    def renew(self, keys: list[str], owner: str, ttl: float) -> None:
        self.db.execute(
            "UPDATE claims SET expires = ? WHERE key = ANY(?::text[]) AND owner = ?",
            (self.clock() + ttl, sorted(set(keys)), owner),
        )

    def task_submitting(self, attempt_id: int, seq: int, client_ref: str, images: int, spec: dict) -> int:
        """The intent, once this process is known to still hold the job's lease, and no other
        machine its batch row's (else LeaseLost: the job, or its row, was taken over while this one
        stalled, and nothing may be sent). The job's lease is renewed and its row locked by the same
        statement, so a takeover waits for this transaction instead of slipping past the check; a
        lease that is gone (a taker finished and gave it up) is lost too.

        The check's answer is read with the next statement that is, at the latest in the round trip
        before COMMIT: a group commit's intents cost no round trip each. Its LeaseLost is raised
        there, and the transaction (or the job's savepoint) taken back."""
        now, task_id = self.clock(), self.db.new_id("tasks")
        checked = self.db.later(
            INTENT, (attempt_id, now + LEASE_SECONDS, PROCESS_OWNER, now, PROCESS_OWNER, now,
                     task_id, attempt_id, seq, client_ref, images, json.dumps(spec), now, now),
        )  # fmt: skip

        def check(row: Any) -> None:
            job_id, held, other = row
            if not held:
                raise LeaseLost(job_id, self._holder(f"job:{job_id}"))
            if other is not None:
                raise LeaseLost(job_id, f"{other}, which holds its batch row")

        self._then(checked, check)
        return task_id

    def ask_lane(
        self, account: str, holder: str, concurrency: int | None, spacing: float | None
    ) -> Answer[float | None]:
        """A provider account's limits hold for every machine using it: its slots are leases
        (`slot:ACCOUNT:HOLDER`, renewed with this process's others, gone with a dead machine), and
        its submits are booked one after the other at its spacing, under a lock of the account's
        own (machines on other accounts never wait for it). One statement: a function of the
        schema's (postgres_schema.TAKE_LANE), sent with the committer's other claims and slots."""
        wait = self.db.later(
            "SELECT imgroute_take_lane(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (account, slot_key(account, holder), PROCESS_OWNER, MACHINE, os.getpid(), self.clock(),
             LEASE_SECONDS, concurrency, spacing),
        )  # fmt: skip
        return Answer(lambda: wait.fetchone()[0])

    def ask_row_job(self, key: str) -> Answer[RowJob | None]:
        rows = self.db.later(ROW_JOB, (key,))
        return Answer(lambda: row_job_of(rows.fetchall()))

    def _holder(self, key: str) -> str:
        row = self.db.execute("SELECT owner, host FROM claims WHERE key = ?", (key,)).fetchone()
        return f"{row[0]} on {row[1]}" if row is not None else "a machine that has since finished it"


# -- the ledger ------------------------------------------------------------------------------------


class PostgresLedger(SQLLedger):
    shared_by_machines = True
    QUALITY = "(jobs.request::json ->> 'quality')"
    ROWS_OF_BATCH = "row_key LIKE ? || ':%'"
    TRANSACTION = PostgresTransaction

    def __init__(self, url: str, clock: Callable[[], float] | None = None, heartbeat: bool = True):
        """`clock`: for tests (else the database's, see the module's docstring); `heartbeat`:
        renew this process's leases every quarter of LEASE_SECONDS while it lives."""
        super().__init__()
        self.url = url
        self.db = connect(url)
        # A second connection for what needs no transaction of its own (reads, a claim, a slot, the
        # heartbeat): each is a round trip to the server, and on the writers' connection each would
        # wait for the group commit under way.
        self.side = connect(url)
        self._side_lock = threading.Lock()
        self.clock = time.time  # (until the database's is measured, once its tables are there)
        self._offset = 0.0  # the database's clock less this machine's (measured again at each beat)
        try:
            self._retrying(lambda: self._migrate())
            self._offset = self._clock_offset(self.db)
            self.clock = clock or self._database_clock
            self.zone = self._zone()
        except BaseException:
            self.db.close()
            self.side.close()
            raise
        self._closed = threading.Event()
        if heartbeat:
            threading.Thread(target=self._heartbeat, name="imgroute-leases", daemon=True).start()

    def _migrate(self) -> None:
        with self.transaction():
            migrate(self.db)

    def where(self) -> str:
        return redacted(self.url)

    def _database_clock(self) -> float:
        """Now on the database's clock: this machine's, moved by the offset last measured (at
        connect, then at each heartbeat: a machine whose clock is set while it runs agrees again
        within a quarter of a lease)."""
        return time.time() + self._offset

    @staticmethod
    def _clock_offset(db: Connection) -> float:
        """The database's clock less this machine's, taken halfway through a round trip."""
        before = time.time()
        (server,) = db.execute("SELECT extract(epoch from clock_timestamp())::float8").fetchone()
        return server - (before + time.time()) / 2

    def _zone(self) -> dt.tzinfo:
        row = self.db.execute("SELECT value FROM ledger_settings WHERE name = 'timezone'").fetchone()
        name = row[0] if row else DEFAULT_ZONE
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"the ledger's time zone '{name}' is unknown on this machine",
                "install the time zone data (tzdata), or set another with `imgroute ledger timezone`",
            ) from None

    def set_zone(self, name: str) -> None:
        """The team's time zone for budget days (an IANA name: UTC, Europe/Paris)."""
        try:
            zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"unknown time zone '{name}'", "give an IANA name: UTC, Europe/Paris, America/New_York"
            ) from None
        with self.transaction():
            self.db.execute(
                "INSERT INTO ledger_settings (name, value) VALUES ('timezone', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name,),
            )
        self.zone = zone

    def commit(self, unsaved) -> None:
        self._retrying(lambda: SQLLedger.commit(self, unsaved))

    def _run_again(self, exc: BaseException) -> bool:
        return getattr(exc, "sqlstate", None) in RETRIED_SQLSTATES

    def _retrying(self, run: Callable[[], None]) -> None:
        """Run a whole transaction again when PostgreSQL gave it up to let another through."""
        for attempt in range(RETRIES):
            try:
                return run()
            except Exception as exc:
                if not self._run_again(exc) or attempt == RETRIES - 1:
                    raise
                time.sleep(0.01 * 2**attempt)

    def take_lane(self, account: str, holder: str, concurrency: int | None, spacing: float | None) -> float | None:
        """PostgresTransaction.ask_lane, on its own (its one statement commits at once)."""
        with self._side_lock:
            return self.TRANSACTION(self.side, self.clock, self.zone).ask_lane(account, holder, concurrency, spacing)()

    def release_lane(self, account: str, holder: str) -> None:
        with self._side_lock:
            tx = self.TRANSACTION(self.side, self.clock, self.zone)
            tx.release([slot_key(account, holder)], PROCESS_OWNER)
            tx.flush()

    def _read(self, sql: str, args: tuple | list = ()) -> list[Any]:
        with self._side_lock:
            return self.side.execute(sql, args).fetchall()

    def spent_since(self, since: float) -> Decimal:
        with self._side_lock:
            return spent_since(self.side, since, self.zone)

    def budgets(self) -> dict[str, Decimal]:
        with self._side_lock:
            return budgets(self.side)

    def _heartbeat(self) -> None:
        """Every quarter of a lease, a beat (`_beat`). A lost connection is opened again; while it
        cannot be, the leases run out, and this process's next intent finds its job lost rather
        than sending (PostgresTransaction.task_submitting)."""
        while not self._closed.wait(LEASE_SECONDS / 4):
            try:
                self._beat()
            except Exception:  # (the connection is gone: the process is closing, or it is opened again)
                if self._closed.is_set():
                    return
                self._reconnect_side()

    def _beat(self) -> None:
        """Measure the database's clock again, renew this process's leases, and read the team's time
        zone again (`ledger timezone` on another machine reaches this one within a quarter of a lease)."""
        with self._side_lock:
            self._offset = self._clock_offset(self.side)
            self.side.execute(  # (rows a writer holds are renewed at the next beat: no deadlock)
                "UPDATE claims SET expires = ? WHERE key IN (SELECT key FROM claims WHERE owner = ? "
                "FOR UPDATE SKIP LOCKED)",
                (self.clock() + LEASE_SECONDS, PROCESS_OWNER),
            )
            row = self.side.execute("SELECT value FROM ledger_settings WHERE name = 'timezone'").fetchone()
        if row is not None and str(self.zone) != row[0]:
            self.zone = zoneinfo.ZoneInfo(row[0])

    def _reconnect_side(self) -> None:
        try:
            fresh = connect(self.url)
        except ConfigError:  # (the database is unreachable: tried again at the next beat)
            return
        with self._side_lock:
            old, self.side = self.side, fresh
        with contextlib.suppress(Exception):  # (already broken)
            old.close()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self.db.close()
        with self._side_lock:
            self.side.close()

    def schema_version(self) -> int:
        return self._read("SELECT version FROM schema_version")[0][0]


class SharedPostgresLedger(GroupedCommits, PostgresLedger):
    """PostgresLedger for many threads: commits grouped (sql_ledger.GroupedCommits); its reads go
    through its second connection, never waiting for a commit."""

    def _late_errors(self) -> tuple[type[Exception], ...]:
        """The server's refusals, and a lost lease: an intent's check is read with a later statement
        (PostgresTransaction.task_submitting), so whose it was is not known either."""
        import psycopg

        return (psycopg.DatabaseError, LeaseLost)  # (a lost connection fails the second run too, and is raised)

    _read = PostgresLedger._read
    spent_since = PostgresLedger.spent_since
    budgets = PostgresLedger.budgets

    def _run_ordered(self, ordered: list[Any]) -> None:
        """Sent together on the side connection: every work's statements (a claim, a slot, its
        release: one or two each) in one message, which PostgreSQL runs as one short transaction
        with no BEGIN and COMMIT to wait for, taking the locks in the works' order (so that two
        machines' messages never wait for each other; a group's intent, which locks the batch row
        of a job another machine took over, can still meet one: the server then gives one of the
        two up, 40P01, and it is run again). Then each work's Answer is read. Should that fail,
        each work is run again on its own, so that an error is its work's alone (running one again
        is harmless: a claim or a slot already its holder's is kept, a release is done once; a
        slot's submit is booked again, a little later)."""
        try:
            self._send_together(ordered)
        except Exception:
            super()._run_ordered(ordered)

    def _run_alone(self, waiting: Any) -> BaseException | None:
        try:
            self._send_together([waiting])
        except Exception as exc:
            return exc
        return None

    def _send_together(self, ordered: list[Any]) -> None:
        def run() -> None:
            with self._side_lock:
                tx = self.TRANSACTION(self.side, self.clock, self.zone)
                try:
                    asked = [waiting.work(tx) for waiting in ordered]
                    tx.before_commit()  # (nothing, unless a work changed a day's total)
                    tx.flush()
                    for waiting, result in zip(ordered, asked, strict=True):
                        waiting.result, waiting.error = answered(result), None
                except BaseException:
                    tx.unsent()
                    raise

        self._retrying(run)
        self.commits += 1  # (one implicit transaction)

    def release_lane(self, account: str, holder: str) -> None:
        """Given back by the committer thread: no thread of the jobs waits for it. (Should that
        fail, the slot's lease runs out as a dead machine's does.)"""
        keys = [slot_key(account, holder)]
        self.transact_later(
            lambda tx: tx.release(keys, PROCESS_OWNER), lambda answer, error: None, slot_order(account, release=True)
        )

    def commit(self, unsaved) -> None:
        self._retrying(lambda: GroupedCommits.commit(self, unsaved))
