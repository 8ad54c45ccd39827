"""Charts for `imgroute advise --plot` (matplotlib, the optional extra `imgroute[plot]`, imported
only here): the month's cost per route, and cost against monthly volume with each plan's
break-even."""

from __future__ import annotations

from pathlib import Path

from imgroute.errors import UsageError, named


def advice_charts(data: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(f"{named('plot')} needs matplotlib", "install it with: pip install 'imgroute[plot]'") from None
    priced = [m for m in data["by_offer"] if m["usd"] is not None]
    labels = ["imgroute routing", *(f"{m['offer']} ({m['plan']})" for m in priced)]
    values = [data["routed_usd"], *(m["usd"] for m in priced)]
    figure, (bars, volume) = plt.subplots(1, 2, figsize=(14, max(4.5, 0.45 * len(labels) + 1.5)))
    colours = ["#2a7ab0", *(["#b0b0b0"] * len(priced))]
    bars.barh(labels[::-1], values[::-1], color=colours[::-1])
    for y, value in enumerate(values[::-1]):
        bars.text(value, y, f" ${value:,.2f}", va="center", fontsize=8)
    bars.set_xlabel("USD a month")
    bars.set_title(f"A month of {data['images_per_month']:g} images, priced every way")
    bars.margins(x=0.25)
    _volume_chart(volume, data)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", f"choose another {named('plot')} path") from None
    finally:
        plt.close(figure)


def _volume_chart(axes, data: dict) -> None:
    """Cost against volume (this mix scaled): routing grows in a line; a monthly plan is its fee
    (then the fee again per month of credits), and its break-even a dashed line."""
    images = data["images_per_month"] or 1
    top = max([images * 2, *((b["images_per_month"] or 0) * 1.5 for b in data["break_even"])])
    steps = [top * i / 200 for i in range(201)]
    per_image = data["routed_usd"] / images
    axes.plot(steps, [v * per_image for v in steps], label="imgroute routing (pay as you go)", color="#2a7ab0")
    for b in data["break_even"]:
        monthly = b["monthly_usd"]
        cover = None
        month = next((m for m in data["by_offer"] if m["offer"] == b["offer"] and m["plan"] == b["plan"]), None)
        if month and month["credits"]:
            credits_per_image = month["credits"] / max(b["this_month_images"], 1)
            cover = (month["credits"] + month["unused_credits"]) / credits_per_image if credits_per_image else None
        line = [monthly * (max(1, -(-v // cover)) if cover else 1) for v in steps]
        axes.plot(steps, line, label=f"{b['offer']} {b['plan']} (${monthly:g}/month)", color="#d9822b")
        if b["images_per_month"]:
            axes.axvline(b["images_per_month"], linestyle="--", color="grey")
            axes.annotate(f"break-even {b['images_per_month']:,}", (b["images_per_month"], monthly), fontsize=8)
    axes.axvline(images, color="black", linewidth=0.8)
    axes.annotate("this month", (images, 0), fontsize=8)
    axes.set_xlabel("images a month (this mix)")
    axes.set_ylabel("USD a month")
    axes.set_title("Cost against volume, and where each plan pays off")
    axes.legend(fontsize=8)
