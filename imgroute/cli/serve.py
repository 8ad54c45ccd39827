"""`imgroute serve`: an OpenAI-compatible Images endpoint on this machine (see imgroute/serve/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgroute.cli.app import app
from imgroute.cli.options import opt


@app.command()
def serve(
    host: Annotated[
        str, opt("--host", help="Address to listen on (loopback unless a token is set).", metavar="ADDRESS")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", metavar="PORT")] = 8787,
    token: Annotated[
        str | None,
        opt("--token", help="Require `Authorization: Bearer TOKEN` (or set IMGROUTE_SERVE_TOKEN).", metavar="TOKEN"),
    ] = None,
    out: Annotated[
        Path | None, opt("--out", help="Where served images go (default ~/.imgroute/served).", metavar="DIR")
    ] = None,
) -> None:
    """Serve the OpenAI Images API: point an OpenAI client's base_url at it, and imgroute routes."""
    from imgroute.errors import UsageError
    from imgroute.home import config
    from imgroute.serve.server import serve as run_server
    from imgroute.serve.server import token_from_env
    from imgroute.session import check_out_dir

    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is out of range", "use 1 to 65535")
    if out is None:  # the home's own folder: owner-only, as the home is
        from imgroute.files import private_dir

        out = private_dir(config.home() / "served")
    run_server(host, port, token_from_env(token), check_out_dir(out))
