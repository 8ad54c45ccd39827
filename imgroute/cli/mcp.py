"""`imgroute mcp`: the MCP server for AI agents, on stdin/stdout (see imgroute/agents/mcp_server.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from imgroute.cli.app import app
from imgroute.cli.options import opt


@app.command("mcp")
def mcp(
    max_cost: Annotated[
        str | None, opt("--max-cost", help="Most USD any one call may spend (a tool may only lower it).", metavar="USD")
    ] = None,
    session_budget: Annotated[
        str | None, opt("--session-budget", help="Most USD the whole session may spend.", metavar="USD")
    ] = None,
    out: Annotated[
        Path | None, opt("--out", help="Where images are saved (default ~/.imgroute/mcp).", metavar="DIR")
    ] = None,
) -> None:
    """Serve imgroute's tools (quote, generate, edit, spend) to an AI agent over stdio (MCP)."""
    from imgroute.agents.mcp_server import serve_stdio
    from imgroute.home import config
    from imgroute.request import parse_money
    from imgroute.session import load_table_and_settings

    _, settings = load_table_and_settings(None)
    configured = settings.mcp
    per_call = parse_money(max_cost, "--max-cost") if max_cost is not None else configured.get("max_cost")
    session = parse_money(session_budget, "--session-budget") if session_budget is not None else configured.get(
        "session_budget")  # fmt: skip
    folder = out or configured.get("out") or config.home() / "mcp"
    serve_stdio(per_call, session, Path(folder).expanduser())
