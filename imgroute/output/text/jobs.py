"""A job as a person reads it: the live status line while `gen` runs, its end, and the ledger's
`imgroute jobs` and `jobs show`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from imgroute.money import fmt_usd
from imgroute.output.text.console import Terminal, usd_or_dash
from imgroute.output.text.layout import Column, Grid, print_wrapped
from imgroute.words import count

if TYPE_CHECKING:
    from rich.status import Status


class JobProgress:
    """A live status line on stderr while a job runs; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool = True):
        self.console = Terminal(stderr=True, highlight=False)
        self.enabled = enabled and self.console.is_terminal
        self._status: Status | None = None

    def __enter__(self) -> JobProgress:
        if self.enabled:
            self._status = self.console.status("routing...")
            self._status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def update(self, event) -> None:
        if self._status is None:
            return
        estimate = f" est {fmt_usd(event.estimate)}" if event.estimate is not None else ""
        line = f"{event.provider}/{event.model}: {event.state} {event.message} ({event.elapsed:.0f}s{estimate})"
        if event.state in ("fallback", "retrying"):
            self.console.print(f"{event.provider}: {event.message}", style="yellow", markup=False)
        self._status.update(Text(line))


def print_job(console: Console, result, skipped: list[dict], within: frozenset[str] = frozenset()) -> None:
    """`within`: the --provider choices the route was made among (then it is not 'the cheapest you
    have a key for', but the cheapest of those)."""
    for attempt in result.attempts:
        if attempt.state not in ("succeeded",):
            console.print(
                f"{attempt.provider}/{attempt.model}: {attempt.state}: {attempt.error}", style="yellow", markup=False
            )
    if result.provider is not None and result.images:
        why = "cheapest offer you have a key for"
        if within:
            why = f"cheapest among --provider {', '.join(sorted(within))}"
        if len(result.attempts) > 1:
            why = f"after {count(len(result.attempts) - 1, 'fallback')}"
        estimate = fmt_usd(result.estimate) if result.estimate is not None else "unknown"
        actual = fmt_usd(result.actual) if result.actual is not None else "unknown"
        source = f" ({result.actual_source})" if result.actual_source else ""
        console.print(
            f"{result.provider}/{result.model} ({why}): estimated {estimate}, actual {actual}{source}, "
            f"{count(len(result.images), 'image')} in {result.elapsed:.1f}s, job {result.job_id}",
            markup=False,
        )
    for image in result.images:
        flag = "" if image.verified else "  (did not match the request)"
        console.print(f"  {image.path}  {image.width}x{image.height} {image.format}{flag}", markup=False)
    for item in skipped:
        console.print(
            f"note: skipped {item['provider']}/{item['model']} ({usd_or_dash(item['cost_usd'])}): {item['reason']}",
            style="dim",
            markup=False,
        )


def print_jobs(console: Console, rows: list[dict], filtered: bool = False) -> None:
    """`filtered`: the listing was narrowed (--state, --provider, --since, --until)."""
    if not rows:
        console.print("no jobs match" if filtered else "no jobs in the ledger yet")
        return
    machines = len({row.get("host") for row in rows}) > 1  # (a team ledger: which machine ran what)
    columns = [
        Column("job", head=True),
        Column("created", head=True),
        Column("state", head=True),
        Column("offer"),
        *([Column("machine", drop=3)] if machines else []),
        Column("images", drop=0),
        Column("estimate", drop=2, head=True),
        Column("actual", head=True),
        Column("prompt", wrap=True, drop=1, min_width=20),
    ]
    grid = Grid(columns, title="Recent jobs")
    for row in rows:
        style = {"succeeded": "", "failed": "red", "unknown": "yellow"}.get(row["state"], "cyan")
        grid.add_row(
            row["job_id"],
            row["created"],
            Text(row["state"], style=style),
            row["offer"] or "-",
            *([row.get("host") or "-"] if machines else []),
            str(row["images"]),
            usd_or_dash(row["estimate_usd"]),
            usd_or_dash(row["actual_usd"]),
            row["prompt"][:40],
        )
    grid.print(console)


def print_job_details(console: Console, data: dict) -> None:
    """Lines of facts; on a narrow terminal wrapped between words, never inside a date."""
    created = data["created"]
    print_wrapped(console, f"job {data['job_id']}  {data['state']}  created {created}", (created,), "bold", "  ")
    print_wrapped(console, f"prompt: {data['prompt']}", indent="  ")
    print_wrapped(
        console,
        f"estimate {usd_or_dash(data['estimate_usd'])}, actual {usd_or_dash(data['actual_usd'])}"
        + (f" ({data['actual_source']})" if data["actual_source"] else ""),
        indent="  ",
    )
    if data["error"]:
        print_wrapped(console, f"error: {data['error']}", style="red", indent="  ")
    for attempt in data["attempts"]:
        print_wrapped(
            console,
            f"attempt {attempt['seq']}: {attempt['provider']}/{attempt['model']} ({attempt['plan']}) "
            f"{attempt['state']}, est {usd_or_dash(attempt['estimate_usd'])}, "
            f"actual {usd_or_dash(attempt['actual_usd'])}" + (f": {attempt['error']}" if attempt["error"] else ""),
            indent="  ",
        )
    for task in data["tasks"]:
        print_wrapped(
            console,
            f"  request {task['client_ref']} sent {task['sent']}: {task['state']}, provider id "
            f"{task['provider_job_id'] or 'not received'}" + (f" ({task['detail']})" if task["detail"] else ""),
            (task["sent"] or "",),
            indent="    ",
        )
    for item in data["files"]:
        mark = "" if item["verified"] else " (did not match the request)"
        print_wrapped(
            console,
            f"  {item['path']}  {item['width']}x{item['height']} {item['format']} sha256 {item['sha256'][:16]}{mark}",
            (str(item["path"]),),
            indent="    ",
        )
    print_wrapped(
        console, "history: " + " -> ".join(event["state"] for event in data["history"]), style="dim", indent="  "
    )
