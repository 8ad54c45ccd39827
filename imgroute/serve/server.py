"""`imgroute serve`: the OpenAI Images API on a local port, every request an imgroute job.

Needs the optional extra (`pip install 'imgroute[serve]'`: Starlette, uvicorn, python-multipart),
imported only here, so `quote` keeps its start-up time.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import sys
from pathlib import Path

from imgroute.errors import Interrupted, UsageError, named

TOKEN_ENV = "IMGROUTE_SERVE_TOKEN"


def check_bind(host: str, token: str | None) -> None:
    """Loopback by default; anywhere else only behind a token (keys pay for what others send)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not token:
        raise UsageError(
            f"{named('host')} {host} would let anyone who can reach it spend your keys",
            f"give a token with {named('token')} or {TOKEN_ENV} (clients send it as their API key)",
        )


def serve(host: str, port: int, token: str | None, out_dir: Path) -> None:
    try:
        import python_multipart  # noqa: F401  (for edits' multipart bodies)
        import uvicorn

        from imgroute.serve.app import build_app
        from imgroute.serve.stopping import StoppingServer
    except ImportError:
        raise UsageError(
            "imgroute serve needs its optional dependencies (Starlette, uvicorn, python-multipart)",
            "install them with: pip install 'imgroute[serve]'",
        ) from None
    from imgroute.home import config
    from imgroute.serve.gateway import Gateway

    check_bind(host, token)
    gateway = Gateway(out_dir)
    app = build_app(gateway, token, config.home() / "serve-inputs")
    server = StoppingServer(gateway, uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    gc.freeze()  # what start-up built lives as long as the server: no collection need walk it again
    sys.stderr.write(
        f"imgroute serve: http://{host}:{port}/v1 (OpenAI Images API); images saved in {out_dir}; "
        f"{'token required' if token else 'no token (loopback only)'}; Ctrl-C stops\n"
    )
    for line in start_up_warnings(gateway):
        sys.stderr.write(f"warning: {line}\n")
    stopped = Interrupted("stopped; every job that was sent is in the ledger", "imgroute jobs shows them")
    try:
        server.run()  # Ctrl-C: stops accepting, lets the requests in progress (their jobs) finish
    except KeyboardInterrupt:  # (uvicorn raises the signal again once it has shut down)
        raise stopped from None
    finally:
        gateway.close()
    if server.should_exit:
        raise stopped


def start_up_warnings(gateway) -> list[str]:
    """What the limits mean for many clients at once: the open files they need, and the limits
    too slow for them (capacity.py)."""
    from imgroute.serve import capacity

    needed = capacity.open_files_needed(gateway.connections, gateway.at_once)
    files = capacity.raise_open_files(needed)
    return [*([files] if files else []), *capacity.slow_limits(gateway.limits, gateway.keys.available.keys())]


def token_from_env(token: str | None) -> str | None:
    return token or os.environ.get(TOKEN_ENV) or None
