"""`imgroute quote` as a person reads it: every offer's cost, the winner and why each other lost;
the dry run's request; the reasons no offer can take a job."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from imgroute.money import fmt_usd
from imgroute.output.text.layout import Column, Grid
from imgroute.pricing.router import Quote, Route
from imgroute.pricing.table import Offer
from imgroute.words import count

WINNER = "*"


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
    if extra == 0 and quote.offer.price_assumed and not winner.offer.price_assumed:
        return f"same cost; {winner.offer.provider}'s price is sourced, this one's assumed"
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
