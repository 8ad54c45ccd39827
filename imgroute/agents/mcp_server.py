"""`imgroute mcp`: imgroute as tools for an AI agent (the Model Context Protocol, over stdio).

Tools: `quote` (what a job would cost everywhere), `generate` and `edit` (route, send, wait, save:
the image back as MCP image content, a preview when large, with its saved path, the offer used and
what it cost), and `spend` (what this session and the ledger have spent). Each job goes through the
same router, ledger, budgets, journal and resume as `imgroute gen`: it never pays twice.

The person who starts the server sets what the agent may spend (session_budget.SessionBudget): a
ceiling per call and a budget for the session. The agent cannot raise them: a tool's `max_cost`
can only lower the ceiling for its call. A refusal, a bad argument or a failed job comes back as a
tool error the agent can read, never a crash of the server.

The `mcp` SDK is the optional extra `imgroute[mcp]`, imported only here. (No `from __future__ import
annotations` in this module: the SDK reads the tools' parameter types from their annotations, which
are the local Annotated types of `build_server`.)
"""

import base64
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from imgroute.agents.session_budget import SessionBudget
from imgroute.errors import ConfigError, ImgrouteError, UsageError
from imgroute.money import usd_json

PREVIEW_SIDE = 512  # a larger image comes back as a preview of at most this many pixels a side
PREVIEW_BYTES = 1_000_000  # without Pillow, an image larger than this comes back as its path only

Quality = Literal["low", "medium", "high"]


def build_server(budget: SessionBudget, out: Path):
    """The MCP server with imgroute's four tools, spending within `budget`, saving into `out`."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
        from mcp_types import CallToolResult, ImageContent, TextContent
    except ImportError:
        raise ConfigError("imgroute mcp needs the MCP SDK", "pip install 'imgroute[mcp]'") from None
    from pydantic import Field

    from imgroute import api
    from imgroute.vocab import DEFAULT_NAME

    server = MCPServer(
        "imgroute",
        instructions=(
            "Generate and edit images with GPT Image 2 at the cheapest provider that can deliver them. "
            "Call quote first when cost matters; generate and edit spend real money within the limits the "
            "person running this server set (see spend)."
        ),
    )

    def tool_error(exc: ImgrouteError) -> ToolError:
        return ToolError(f"{exc.message}" + (f" ({exc.hint})" if exc.hint else ""))

    def options(quality, size, aspect, resolution, n, provider, exclude) -> dict[str, Any]:
        chosen = {"quality": quality, "size": size, "aspect": aspect, "resolution": resolution, "n": n,
                  "providers": provider, "exclude": exclude}  # fmt: skip
        return {name: value for name, value in chosen.items() if value not in (None, [])}

    def paid(prompt: str, images: list[str] | None, mask: str | None, max_cost: float | None, job: dict):
        asked = Decimal(str(max_cost)) if max_cost is not None else None
        try:
            ceiling = budget.ceiling(asked)
        except ImgrouteError as exc:
            raise tool_error(exc) from None
        cost: Decimal | None = None
        try:
            result = api.generate(prompt, out=out, name=DEFAULT_NAME, max_cost=ceiling, images=images, mask=mask, **job)
            cost = result.actual if result.actual is not None else result.estimate
            cost = (cost or Decimal(0)) + (result.at_risk or Decimal(0))  # (an offer it moved on from may have charged)
        except ImgrouteError as exc:
            failed = exc.result  # (what a failed job did: it may have been charged)
            if failed is not None:  # what it cost, what it may cost (unknown fate), what it may have been charged
                maybe = str(failed.status) in ("unknown", "running", "submitted")
                cost = failed.actual if failed.actual is not None else (failed.estimate if maybe else None)
                cost = (cost or Decimal(0)) + (failed.at_risk or Decimal(0))
            limit = budget.said(ceiling, asked) if exc.field == "max_cost" else ""
            if limit:
                raise ToolError(f"{exc.message}; {limit}") from None  # (not its hint: "raise max_cost")
            raise tool_error(exc) from None
        finally:
            budget.settle(ceiling, cost)
        return answer(result, ceiling)

    def answer(result, ceiling: Decimal | None):
        summary = {
            "job_id": result.job_id,
            "offer": f"{result.provider}/{result.model}",
            "files": [str(image.path) for image in result.images],
            "actual_cost_usd": usd_json(result.actual),
            "estimated_cost_usd": usd_json(result.estimate),
            "max_cost_usd": usd_json(ceiling),
            "session_left_usd": usd_json(budget.left()),
            "caveats": list(result.caveats),
        }
        content: list[Any] = []
        for image in result.images:  # (paid for: a preview that cannot be made must not hide the summary)
            try:
                block = image_content(Path(image.path), ImageContent)
            except Exception as exc:  # noqa: BLE001 (the summary below says where the image is)
                summary.setdefault("preview_errors", []).append(f"{image.path}: {type(exc).__name__}: {exc}")
                continue
            if block is not None:
                content.append(block)
        content.append(TextContent(type="text", text=json.dumps(summary)))
        return CallToolResult(content=content, structured_content=summary)

    Prompt = Annotated[str, Field(description="What the image should show", min_length=1)]
    Size = Annotated[str | None, Field(description="Exact pixels, WIDTHxHEIGHT (e.g. 1536x1024)")]
    Aspect = Annotated[str | None, Field(description="Aspect ratio, W:H (e.g. 16:9), with resolution")]
    Resolution = Annotated[Literal["1K", "2K", "4K"] | None, Field(description="Resolution tier, with aspect")]
    Count = Annotated[int, Field(description="How many images", ge=1, le=10)]
    MaxCost = Annotated[
        float | None, Field(description="Most USD for this call: can only lower the server's ceiling", gt=0)
    ]
    Providers = Annotated[
        list[str] | None, Field(description="Only these providers or offers (kie, openai/gpt-image-2)")
    ]
    Excluded = Annotated[list[str] | None, Field(description="Never these providers or offers")]

    @server.tool(
        description="What a job would cost at every offer, which wins, and why each other loses. Free.",
        structured_output=True,
    )
    def quote(
        prompt: Prompt,
        quality: Quality = "medium",
        size: Size = None,
        aspect: Aspect = None,
        resolution: Resolution = None,
        n: Count = 1,
        provider: Providers = None,
        exclude: Excluded = None,
    ) -> dict[str, Any]:
        from imgroute.output.quotes import route_json

        try:
            route = api.quote(prompt, **options(quality, size, aspect, resolution, n, provider, exclude))
        except ImgrouteError as exc:
            raise tool_error(exc) from None
        data = route_json(route)
        return {
            "choice": data["choice"] and {k: data["choice"][k] for k in ("offer", "cost_usd", "per_image_usd")},
            "offers": [
                {"offer": q["offer"], "eligible": q["eligible"], "cost_usd": q["cost_usd"], "reasons": q["reasons"]}
                for q in data["quotes"]
            ],
            "caveats": data["caveats"],
        }

    @server.tool(description="Generate images: routed to the cheapest offer that can deliver them, paid, saved.")
    def generate(
        prompt: Prompt,
        quality: Quality = "medium",
        size: Size = None,
        aspect: Aspect = None,
        resolution: Resolution = None,
        n: Count = 1,
        max_cost: MaxCost = None,
        provider: Providers = None,
        exclude: Excluded = None,
    ):
        return paid(prompt, None, None, max_cost, options(quality, size, aspect, resolution, n, provider, exclude))

    @server.tool(description="Edit images (local paths or URLs), with an optional mask; paid and saved as generate.")
    def edit(
        prompt: Prompt,
        images: Annotated[list[str], Field(description="The images to edit: local paths or URLs", min_length=1)],
        mask: Annotated[str | None, Field(description="A PNG mask: transparent where to edit")] = None,
        quality: Quality = "medium",
        size: Size = None,
        aspect: Aspect = None,
        resolution: Resolution = None,
        n: Count = 1,
        max_cost: MaxCost = None,
        provider: Providers = None,
        exclude: Excluded = None,
    ):
        return paid(prompt, images, mask, max_cost, options(quality, size, aspect, resolution, n, provider, exclude))

    @server.tool(
        description="What this session has spent and may still spend, and the ledger's spend by provider.",
        structured_output=True,
    )
    def spend(
        since: Annotated[str | None, Field(description="Ledger spend from this day, YYYY-MM-DD")] = None,
    ) -> dict[str, Any]:
        import datetime as dt

        from imgroute.jobs.budget import spend_summary
        from imgroute.output import report
        from imgroute.session import ledger

        try:
            start = dt.datetime.combine(dt.date.fromisoformat(since), dt.time()).timestamp() if since else None
        except ValueError:
            raise ToolError(f"since {since!r} is not a date: write it as YYYY-MM-DD") from None
        try:
            with ledger() as journal:
                summary = report.spend(spend_summary(journal.spend_rows(start)))
        except ImgrouteError as exc:
            raise tool_error(exc) from None
        return {
            "session": {
                "spent_usd": usd_json(budget.spent),
                "left_usd": usd_json(budget.left()),
                "max_cost_per_call_usd": usd_json(budget.per_call),
                "session_budget_usd": usd_json(budget.session),
            },
            "ledger": {"total": summary["total"], "provider": summary["provider"]},
        }

    return server


def image_content(path: Path, image_type):
    """The image as MCP image content: itself when small, a PNG preview when large (Pillow), or
    None when it is large and Pillow is missing (the path in the summary still says where it is)."""
    data = path.read_bytes()
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}.get(
        path.suffix.lower(), "image/png"
    )
    try:
        from PIL import Image
    except ImportError:
        if len(data) > PREVIEW_BYTES:
            return None
        return image_type(type="image", data=base64.b64encode(data).decode(), mime_type=mime)
    with Image.open(io.BytesIO(data)) as image:
        if max(image.size) <= PREVIEW_SIDE and len(data) <= PREVIEW_BYTES:
            return image_type(type="image", data=base64.b64encode(data).decode(), mime_type=mime)
        image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        shown = io.BytesIO()
        image.save(shown, format="PNG")
    return image_type(type="image", data=base64.b64encode(shown.getvalue()).decode(), mime_type="image/png")


def serve_stdio(per_call: Decimal | None, session: Decimal | None, out: Path) -> None:
    """Run the server on stdin/stdout until the client closes it."""
    if per_call is None and session is None:
        raise UsageError(
            "imgroute mcp needs a limit an agent cannot raise",
            "give --max-cost USD (per call) and/or --session-budget USD, or set them under mcp: in config.yaml",
        )
    build_server(SessionBudget(per_call, session), out).run("stdio")
