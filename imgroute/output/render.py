"""Turn routes, offers and prices into rich tables or JSON. Data in, text out; no decisions."""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.text import Text

from imgroute.money import fmt_usd
from imgroute.output import report
from imgroute.output.layout import Column, Grid, print_wrapped
from imgroute.pricing.router import Quote, Route
from imgroute.pricing.table import Offer, PricingTable
from imgroute.words import count

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID
    from rich.status import Status

WINNER = "*"
# Piped into a file, a pager or grep, no line is wrapped: a table is as wide as its content.
PIPE_WIDTH = 100_000


class Terminal(Console):
    """rich's Console, but a reader that went away (`| head -1`) is a broken pipe for the CLI to end
    quietly with 141, as Unix tools do (rich's own answer is exit 1)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def stdout_console() -> Console:
    console = Terminal(highlight=False)
    if not console.is_terminal:
        console = Terminal(highlight=False, width=PIPE_WIDTH, soft_wrap=True)
    return console


def stderr_console() -> Console:
    console = Terminal(stderr=True, highlight=False)
    if not console.is_terminal:  # as stdout: a log file gets whole lines
        console = Terminal(stderr=True, highlight=False, width=PIPE_WIDTH, soft_wrap=True)
    return console


def print_json(data: object) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")


# -- quote ------------------------------------------------------------------------------------


def print_quote(console: Console, route: Route, explain: bool = False, caveats: tuple[str, ...] | None = None) -> None:
    """The quote table, the winner, notes; the caveats about the winner (the route's, unless given)
    go right under it."""
    caveats = route.caveats if caveats is None else caveats
    # On a narrow terminal the least needed columns go first; then one block per offer.
    columns = [
        Column("", head=True),
        Column("offer", head=True),  # ids are typed back (--provider kie/...): never split them
        Column("plan", drop=2),
        Column("model is"),  # official / relay / substitute
        Column("delivers"),
        Column("cost", "right", head=True),
        Column("per image", "right", drop=1, head=True),
    ]
    known = any(q.offer.history is not None and q.offer.history.enough for q in route.quotes)
    if known:  # your own record of each offer, where it is long enough to say something
        columns += [
            Column("delivered", "right", drop=3),
            Column("p50 / p95", "right", drop=0),
            Column("expected", "right", drop=4, head=True),
        ]
    columns.append(Column("why not", wrap=True, min_width=20))
    grid = Grid(columns, title=f"GPT Image 2: {_describe(route)}")
    winner = route.choice
    for quote in route.quotes:
        a = quote.assessment
        style = "bold green" if quote is winner else ("" if quote.eligible else "dim")
        cells = [
            WINNER if quote is winner else "",
            a.offer.id,
            a.plan.name if a.offer.price.uses_credits else "",
            identity_label(a.offer),
            _delivers(quote),
            fmt_usd(a.cost) if a.cost is not None else "-",
            fmt_usd(a.per_image) if a.per_image is not None else "-",
        ]
        if known:
            cells.extend(_history_cells(quote))
        grid.add_row(*cells, _why_not(quote, winner), style=style)  # as written: no markup
    lines = []  # what follows the table, printed with it in one go (each print costs rich a pass)
    if winner:
        lines.append((f"{WINNER} cheapest: {winner.offer.id} at {_ranked_at(winner)}", "bold"))
    lines += [(f"caveat: {caveat}", "yellow") for caveat in caveats]
    if not explain:
        lines += [
            (f"note: {quote.offer.id}: {note}", "yellow")
            for quote in route.quotes
            if quote.eligible
            for note in quote.assessment.notes
        ]
    grid.print(console, *(Text(line, style=style) for line, style in lines))
    for quote in route.quotes:
        if explain and quote.assessment.breakdown:
            console.print(Text(f"\n{_provider_label(quote)}", style="bold"))
            for line in quote.assessment.breakdown:
                console.print(f"  {line.text}", markup=False)
            for note in quote.assessment.notes:
                console.print(f"  note: {note}", style="yellow", markup=False)


def _history_cells(quote: Quote) -> list[str]:
    stats = quote.offer.history
    if stats is None or not stats.enough:
        return [f"{stats.attempts} jobs" if stats else "-", "", ""]
    p50, p95 = stats.percentile(0.5), stats.percentile(0.95)
    times = f"{p50:.0f}s / {p95:.0f}s" if p50 is not None else ""
    expected = fmt_usd(quote.expected) if quote.expected is not None else ""
    return [f"{stats.success_rate:.0%} of {stats.attempts}", times, expected]


def identity_label(offer: Offer) -> str:
    """official / relay / substitute; `relay?` for a user's offer that did not say."""
    return offer.identity.kind + ("" if offer.identity.declared else "?")


def _describe(route: Route) -> str:
    r = route.request
    return f"{count(r.n, 'image')}, {r.quality} quality, {r.target}"


def _provider_label(quote: Quote) -> str:
    a = quote.assessment
    if a.offer.price.uses_credits:
        return f"{a.offer.id} ({a.plan.name} plan)"
    return a.offer.id


def _delivers(quote: Quote) -> str:
    a = quote.assessment
    if a.delivery is None:
        return "-"
    quality = a.quality or "?"
    if a.quality and not a.offer.quality_stated:
        quality += " (assumed)"
    elif a.quality and not a.offer.quality_selectable:
        quality += " (fixed)"
    tasks = f", {len(a.requests)} requests" if len(a.requests) > 1 else ""
    return f"{a.delivery.label()} {quality}{tasks}"


def _why_not(quote: Quote, winner: Quote | None) -> str:
    """Why an eligible offer lost: by how much, in what routing ranks by (the marginal cost)."""
    if quote.reasons:
        return "; ".join(quote.reasons)
    if winner is None or quote is winner:
        return ""
    ours, theirs = quote.rank_cost, winner.rank_cost
    assert ours is not None and theirs is not None, "an eligible offer is priced"
    extra = ours - theirs
    if extra == 0:
        return f"same cost; {winner.offer.provider} wins the tie by name"
    credits = " (paid from credits that would expire)" if winner.marginal is not None else ""
    return f"{fmt_usd(extra)} more than {winner.offer.provider}{credits}"


def _ranked_at(winner: Quote) -> str:
    """The winner's price, and its marginal cost when prepaid credits made it win."""
    cost = winner.cost
    assert cost is not None, "the winner is priced"
    if winner.marginal is None:
        return fmt_usd(cost)
    return (
        f"{fmt_usd(winner.marginal)} beyond prepaid credits that would expire unused "
        f"(list price {fmt_usd(cost)}, which --max-cost and budgets count)"
    )


# -- providers --------------------------------------------------------------------------------


def print_providers(console: Console, table: PricingTable) -> None:
    columns = [
        Column("provider/model", head=True),
        Column("quality"),
        Column("sizes", wrap=True, min_width=20),
        Column("n/req", label="images per request"),
        Column("prompt", label="prompt limit"),
        Column("edit", wrap=True, min_width=20),
        Column("price", wrap=True, min_width=20),
    ]
    grid = Grid(columns, title="What each GPT Image 2 offer can do")
    for offer in table.offers:
        caps = report.offer_json(offer)
        qualities = "/".join(caps["qualities"]) + ("" if offer.quality_selectable else " (fixed)")
        n = str(offer.images_per_request)
        grid.add_row(
            offer.id,
            qualities,
            caps["sizes"],
            n,
            f"{offer.prompt_max_chars:,}",
            caps["edit"],
            caps["price"],
        )
    grid.print(console)


# -- pricing ----------------------------------------------------------------------------------


def print_pricing(console: Console, rows: list[dict], notes: list[str]) -> None:
    columns = [
        Column("provider", head=True),
        Column("what", head=True),
        Column("value", wrap=True, min_width=20),
        Column("observed", head=True),
        Column("source", wrap=True),  # a URL: one word, never broken
    ]
    grid = Grid(columns, title="Pricing table: every figure with its source")
    for row in rows:
        observed = f"{row['observed']} ({row['age_days']}d)"
        grid.add_row(
            row["provider"],
            row["what"],
            row["value"],
            Text(observed, style="yellow" if row["stale"] else ""),
            row["source"],
        )
    grid.print(console)
    for note in notes:
        console.print(f"note: {note}", style="dim")


# -- config -----------------------------------------------------------------------------------


def print_config(console: Console, settings) -> None:
    """`imgroute config`: each setting, its value and where it comes from."""
    import json

    grid = Grid(
        [Column("setting", head=True), Column("value", wrap=True, min_width=20), Column("from", wrap=True)],
        title="Settings in effect",
    )
    for setting in settings:
        value = setting.value if isinstance(setting.value, str) else json.dumps(setting.value)
        grid.add_row(setting.name, value, setting.source)
    grid.print(console)


# -- gen --------------------------------------------------------------------------------------


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


def print_dry_run(console: Console, route: Route, data: dict) -> None:
    """The quote, then the exact request `gen` would send (report.dry_run's dict)."""
    print_quote(console, route)
    sent = data["request"]
    count = data["requests"]
    console.print(f"\nwould send ({count} request{'s' if count > 1 else ''}; nothing was sent):")
    console.print(f"{sent['method']} {sent['url']}", markup=False)
    for header, value in sent["headers"].items():
        console.print(f"{header}: {value}", markup=False)
    if sent["files"]:
        console.print("multipart/form-data:", markup=False)
        for field, value in sent["body"].items():
            console.print(f"  {field} = {value}", markup=False)
        for part in sent["files"]:
            console.print(f"  {part['field']} = @{part['path']}", markup=False)
    else:
        import json

        console.print(json.dumps(sent["body"], indent=2), markup=False)
    choice = route.choice
    assert choice is not None, "a dry run shows the request to the chosen offer"
    inputs = choice.offer.edit.inputs
    if any(not image.is_url for image in route.request.images) and inputs and set(inputs) <= {"url", "upload_service"}:
        console.print(f"(local images are first uploaded to {choice.offer.provider}'s own storage)", markup=False)


def print_reasons(console: Console, route: Route) -> None:
    """Why each offer cannot take the job, one line each (gen, edit: no table was shown)."""
    for quote in route.quotes:
        console.print(f"{quote.offer.id}: {'; '.join(quote.reasons)}", style="yellow", markup=False, soft_wrap=True)


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
            f"note: skipped {item['provider']}/{item['model']} ({_money(item['cost_usd'])}): {item['reason']}",
            style="dim",
            markup=False,
        )


# -- ledger -----------------------------------------------------------------------------------


def _money(value: float | None) -> str:
    return "-" if value is None else fmt_usd(Decimal(str(value)))


def print_jobs(console: Console, rows: list[dict], filtered: bool = False) -> None:
    """`filtered`: the listing was narrowed (--state, --provider, --since, --until)."""
    if not rows:
        console.print("no jobs match" if filtered else "no jobs in the ledger yet")
        return
    columns = [
        Column("job", head=True),
        Column("created", head=True),
        Column("state", head=True),
        Column("offer"),
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
            str(row["images"]),
            _money(row["estimate_usd"]),
            _money(row["actual_usd"]),
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
        f"estimate {_money(data['estimate_usd'])}, actual {_money(data['actual_usd'])}"
        + (f" ({data['actual_source']})" if data["actual_source"] else ""),
        indent="  ",
    )
    if data["error"]:
        print_wrapped(console, f"error: {data['error']}", style="red", indent="  ")
    for attempt in data["attempts"]:
        print_wrapped(
            console,
            f"attempt {attempt['seq']}: {attempt['provider']}/{attempt['model']} ({attempt['plan']}) "
            f"{attempt['state']}, est {_money(attempt['estimate_usd'])}, actual {_money(attempt['actual_usd'])}"
            + (f": {attempt['error']}" if attempt["error"] else ""),
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


def print_spend(console: Console, data: dict) -> None:
    for name in ("day", "month", "provider", "quality", "total"):
        rows = data[name]
        columns = [
            Column(name, head=True),
            Column("attempts", "right", drop=0),
            Column("images", "right", drop=1),
            Column("estimated", "right", head=True),
            Column("actual", "right", head=True),
            Column("drift", "right", head=True),
            Column("in flight", "right", drop=2),
        ]
        grid = Grid(columns, title=f"by {name}" if name != "total" else "total")
        for row in rows:
            grid.add_row(
                str(row["key"]),
                str(row["attempts"]),
                str(row["images"]),
                _money(row["estimated_usd"]),
                _money(row["actual_usd"]),
                _drift(row["drift_pct"]),
                _money(row["in_flight_usd"]),
            )
        grid.print(console)


def _drift(pct: float | None) -> str:
    """+1.5%, -0.3%; a drift that rounds to nothing has no sign."""
    if pct is None:
        return "-"
    text = f"{pct:+.1f}%"
    return text[1:] if text in ("+0.0%", "-0.0%") else text


# -- batch ------------------------------------------------------------------------------------


def _minutes(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _by_reason(items: list[dict]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for item in items:
        grouped.setdefault(item["reason"], []).append(item["line"])
    return grouped


def _lines(lines: list[int], shown: int = 5) -> str:
    if len(lines) == 1:
        return f"line {lines[0]}"
    listed = ", ".join(str(n) for n in lines[:shown])
    more = f" and {len(lines) - shown} more" if len(lines) > shown else ""
    return f"lines {listed}{more} ({len(lines)} rows)"


def print_batch_plan(console: Console, plan: dict) -> None:
    console.print(
        f"Batch plan: {count(plan['rows'], 'row')}, {count(plan['images'], 'image')}, "
        f"about {_money(plan['estimated_usd'])}",
        style="bold",
        markup=False,
    )
    _print_earlier(console, plan)
    if plan["by_offer"]:
        columns = [
            Column("offer", head=True),
            Column("rows", "right", drop=1, head=True),
            Column("images", "right", drop=0, head=True),
            Column("estimated", "right", head=True),
        ]
        grid = Grid(columns)
        for row in plan["by_offer"]:
            grid.add_row(row["offer"], str(row["rows"]), str(row["images"]), _money(row["estimated_usd"]))
        grid.print(console)
    for pace in plan["pacing"]:
        if pace["min_minutes"] is not None and pace["min_minutes"] >= 1:  # worth knowing before saying yes
            console.print(
                f"{pace['provider']}: {pace['submits']} submits at {pace['per_minute']:g}/min take at least "
                f"{_minutes(pace['min_minutes'])} (raise limits.{pace['provider']}.per_minute in config.yaml "
                "if your account allows more)",
                style="yellow",
                markup=False,
            )
    for reason, lines in _by_reason(plan["unservable"]).items():  # one line per reason, not per row
        console.print(
            f"{_lines(lines)}: no offer can serve {'it' if len(lines) == 1 else 'them'} ({reason})",
            style="yellow",
            markup=False,
        )
    if plan["bad_rows"]:
        console.print(f"{count(len(plan['bad_rows']), 'bad row')} skipped", style="yellow")
    for caveat in plan.get("caveats", ()):  # about the offers the rows go to: before anything is paid
        console.print(f"caveat: {caveat}", style="yellow", markup=False)


def _print_earlier(console: Console, plan: dict) -> None:
    """What earlier runs of the file did: rows done (and where their images are), rows not retried."""
    if plan["done_before"]:
        places = sorted({d["out_dir"] for d in plan["done_before"] if d["out_dir"]})
        where = f"; their images are in {', '.join(places)}" if places else ""
        console.print(f"{count(len(plan['done_before']), 'row')} done before, not run again{where}", markup=False)
    if plan["not_retried"]:
        lines = [d["line"] for d in plan["not_retried"]]
        console.print(f"{_lines(lines)}: failed before and not retried", style="yellow", markup=False)


class BatchProgress:
    """Done / failed / running, spend so far against the estimate, rate and ETA, on stderr."""

    def __init__(self, total: int, estimate: Decimal, enabled: bool = True, paced_seconds: float = 0.0):
        """`paced_seconds`: the least time the providers' submit rates allow for the run (the ETA
        is never shorter than what is left of it)."""
        self.total, self.estimate, self.paced_seconds = total, estimate, paced_seconds
        self.console = Terminal(stderr=True, highlight=False)
        self.enabled = enabled and self.console.is_terminal
        self.spent = Decimal(0)
        self.counts = {"done": 0, "failed": 0, "not_started": 0, "other": 0}
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> BatchProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("batch"),
                BarColumn(bar_width=None),  # whatever the counts leave: they matter more
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TextColumn("{task.fields[eta]}", style="cyan"),
                console=self.console,
                expand=True,
            )
            self._progress.__enter__()
            eta = _clock(self.paced_seconds) if self.paced_seconds else "-:--:--"
            self._task = self._progress.add_task("batch", total=self.total, detail="", eta=eta)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, row_result, running: int = 0) -> None:
        key = row_result.outcome if row_result.outcome in self.counts else "other"
        self.counts[key] += 1
        done_before = row_result.outcome == "skipped"  # (its recorded cost was spent by an earlier run)
        if row_result.result is not None and row_result.result.actual is not None and not done_before:
            self.spent += row_result.result.actual
        if self._progress is not None and self._task is not None:  # (both set on entering)
            finished = sum(self.counts.values())
            elapsed = self._progress.tasks[0].elapsed or 0
            rate = finished / elapsed * 60 if elapsed else 0
            by_rate = (self.total - finished) / (finished / elapsed) if finished and elapsed else 0.0
            eta = max(by_rate, self.paced_seconds - elapsed, 0.0)  # pacing bounds it from below
            self._progress.update(self._task, completed=finished, detail=self._detail(running, rate), eta=_clock(eta))

    # Room the other columns need at the least: "batch", a short bar, "4999/5000", "0:00:00", gaps.
    OTHER_COLUMNS = 40

    def _detail(self, running: int, rate: float) -> str:
        """The counts in full, or (on a narrow terminal, rather than squeezing the counts into
        "1…") without the rate and with the money in cents."""
        done, failed = self.counts["done"], self.counts["failed"]
        full = (
            f"{done} done, {failed} failed, {running} running, "
            f"{fmt_usd(self.spent)} of ~{fmt_usd(self.estimate)}, {rate:.0f}/min"
        )
        if self.counts["not_started"]:  # stopped rows are not done
            full += f", {self.counts['not_started']} not started"
        if len(full) + self.OTHER_COLUMNS <= self.console.width:
            return full
        short = f"{done} done {failed} failed {running} running ${self.spent:.2f}/~${self.estimate:.2f}"
        return short + (f" {self.counts['not_started']} not started" if self.counts["not_started"] else "")


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def print_batch_summary(
    console: Console, counts: dict, spent: Decimal, estimate: Decimal, whole: Decimal, elapsed: float
) -> None:
    """`estimate`: what this run was to spend; `whole`: the whole file's, rows done before included."""
    parts = [
        f"{counts[k]} {k.replace('_', ' ')}"
        for k in ("done", "skipped", "failed", "unservable", "not_started")
        if counts[k]
    ]
    # A rerun skips rows paid for before: the whole file's estimate covers them, this run's does not.
    said = f"estimated {fmt_usd(whole)} for the whole file" if counts["skipped"] else f"estimated {fmt_usd(estimate)}"
    left = counts["done"] + counts["failed"] + counts["not_started"]  # rows this run had to do
    if counts["skipped"] and left and estimate and estimate != whole:
        said = f"{fmt_usd(estimate)} left to do; {said}"
    console.print(
        f"batch: {', '.join(parts) or 'nothing to do'}; spent {fmt_usd(spent)} this run ({said}) in {elapsed:.1f}s",
        markup=False,
    )


def print_advice(console: Console, data: dict) -> None:
    """`imgroute advise`: the month with routing, a bar per single route, each plan's break-even."""
    routed = data["routed_usd"]
    console.print(
        f"a month of {data['images_per_month']:,g} images ({data['source']}): "
        f"${routed:,.2f} with imgroute's routing (per-job minimum ${data['floor_usd']:,.2f})",
        markup=False,
    )
    if data["unservable_rows"]:
        console.print(f"{_unserved(data['unservable_rows'], 12)} no offer can serve (left out)", markup=False)
    priced = [m for m in data["by_offer"] if m["usd"] is not None]
    widest = max([routed, *(m["usd"] for m in priced)], default=routed) or 1
    columns = [
        Column("route", head=True),
        Column("plan", head=True),
        Column("month", "right", head=True),
        Column("vs routing", "right", wrap=True, min_width=20),
        Column("", drop=0),  # the bar: the first to go
    ]
    table = Grid(columns, box=box.SIMPLE_HEAD, show_edge=False)
    table.add_row("imgroute routing", "", f"${routed:,.2f}", "", _bar(routed, widest), style="bold")
    for m in data["by_offer"]:
        if m["excluded"]:
            table.add_row(m["offer"], m["plan"], "-", m["excluded"], "")
            continue
        if m["usd"] is None:
            table.add_row(m["offer"], m["plan"], "-", f"cannot serve {_unserved(m['unservable_rows'])}", "")
            continue
        more = m["usd"] - routed
        pct = f" ({m['saving_pct']:.0f}%)" if m["saving_pct"] is not None else ""
        table.add_row(m["offer"], m["plan"], f"${m['usd']:,.2f}", f"+${more:,.2f}{pct}", _bar(m["usd"], widest))
    table.print(console)
    best = data["cheapest_single"]
    if best:
        console.print(
            f"routing saves ${best['saving_usd']:,.2f} ({best['saving_pct']:.0f}%) a month against the cheapest "
            f"single route, {best['offer']} ({best['plan']})",
            markup=False,
        )
    for row in data.get("prepaid", []):
        console.print(
            f"prepaid {row['provider']} credits: {row['left']:,.0f} left, expiring {row['expires']}; at the pace "
            f"so far ({row['per_day']:,.1f} a day) {row['expiring']:,.0f} will expire unused",
            markup=False,
        )
    for b in data["break_even"]:
        status = "past it this month" if b["past_it"] else "not reached this month"
        if b["images_per_month"] is None:
            console.print(
                f"{b['offer']} {b['plan']} (${b['monthly_usd']:g}/month): never pays off for this mix: {b['why']}",
                markup=False,
            )
        else:
            console.print(
                f"{b['offer']} {b['plan']} (${b['monthly_usd']:g}/month): {b['why']}; this month "
                f"{b['this_month_images']:,.0f} images: {status}, {b['unused_credits']:,.0f} credits unused",
                markup=False,
            )


def _unserved(rows: list, shown: int = 6) -> str:
    """Rows of a mix file (by their number), or jobs of the ledger (by their id, for `jobs show`)."""
    noun = "job" if rows and isinstance(rows[0], str) else "row"
    listed = ", ".join(map(str, rows[:shown])) + (f" and {len(rows) - shown} more" if len(rows) > shown else "")
    return f"{noun}{'s' if len(rows) > 1 else ''} {listed}"


def _bar(value: float, widest: float, width: int = 30) -> str:
    return "█" * max(1, round(value / widest * width)) if value else ""


def print_savings(console: Console, data: dict) -> None:
    """`imgroute spend --savings`: what the jobs cost, and what they would have cost without routing."""
    if not data["savings"]:
        console.print("no succeeded jobs in the ledger for that time")
        return
    columns = [
        Column("period", head=True),
        Column("jobs", "right", head=True),
        Column("spent", "right", head=True),
        Column("at the default offer"),  # an offer id and its cost: whole
        Column("saved", "right", label="saved vs the default"),
        Column("at the cheapest single offer"),
        Column("saved", "right", label="saved vs the cheapest"),
    ]
    table = Grid(columns, box=box.SIMPLE_HEAD, show_edge=False)

    def money(value) -> str:
        return f"${value:,.2f}" if value is not None else "-"

    for row in data["savings"]:
        default = (
            f"{row['default_offer']} {money(row['at_default_usd'])}"
            if row["at_default_usd"] is not None
            else f"{row['default_offer']}: cannot serve them all"
        )
        cheapest = f"{row['cheapest_offer']} {money(row['at_cheapest_usd'])}" if row["cheapest_offer"] else "-"
        table.add_row(
            row["period"],
            str(row["jobs"]),
            money(row["spent_usd"]),
            default,
            money(row["saved_vs_default_usd"]),
            cheapest,
            money(row["saved_vs_cheapest_usd"]),
        )
    table.print(console)
