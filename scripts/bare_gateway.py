#!/usr/bin/env python3
"""The thinnest gateway on `imgroute serve`'s stack (uvicorn, Starlette, httpx), for bench_serve.py.

It forwards each `POST /v1/images/generations` body to the OpenAI fake and hands the answer back,
and does nothing else: no routing, journal, budget, file or report. Measured next to imgroute serve
in the same run, it shows what the HTTP hop itself costs, apart from what imgroute does per job.

    python scripts/bare_gateway.py PORT [POOL]   (with IMGROUTE_OPENAI_BASE_URL and OPENAI_API_KEY set)

POOL: the upstream connections (default 100, httpx's own); bench_serve_scale.py sizes it to the load.
"""

from __future__ import annotations

import os
import sys

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def build_app(upstream: str, key: str, pool: int = 100) -> Starlette:
    # An async client: of the ways to make the call from Starlette, the cheapest (a thread per
    # call, as imgroute's scheduler does for a synchronous provider, measured no faster here).
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    client = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120, limits=limits)

    async def generations(request: Request) -> Response:
        answer = await client.post(
            f"{upstream}/v1/images/generations",
            content=await request.body(),
            headers={"content-type": "application/json"},
        )
        return Response(answer.content, answer.status_code, media_type="application/json")

    async def models(request: Request) -> Response:
        return Response(b'{"object": "list", "data": []}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/images/generations", generations, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


def main() -> None:
    port = int(sys.argv[1])
    pool = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    app = build_app(os.environ["IMGROUTE_OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"], pool)
    # The same server settings as `imgroute serve`.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
