"""Requests that wait long, held on one event loop instead of a thread each.

A synchronous provider (OpenAI, PiAPI, an OpenAI-style relay) holds its request open while it
generates, 10 to 60 s. A thread blocked in each of those costs ~100 KB and the scheduler's
bookkeeping; hundreds of clients of `imgroute serve` at once made hundreds of threads. Here such a
request is sent with httpx's AsyncClient on one loop thread, and the job's step generator yields
an `Exchange` (jobs/steps.py): the scheduler hands it here and resumes the job with the answer.
The request, its headers, body and timeout, and what a transport failure means (sent or not:
net/http.py's submit rule) are the same as a blocking `Http.post_once`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import httpx

from imgroute.net.http import client_options, failure_of, without_cookies

SHARD = 32  # connections per client: httpcore's pool looks at every connection of its client at
# each request's start and end, so one client of 500 connections spent a quarter of serve's CPU there


class Exchanges:
    """One loop thread and its AsyncClients (made on first use), shared by a door's jobs: as many
    clients of SHARD connections as `pool_size` needs, each request sent by the least busy."""

    def __init__(self, pool_size: int):
        self._pool_size = pool_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[httpx.AsyncClient] = []
        self._busy: list[int] = []  # requests under way on each client (read and written on the loop)
        self._lock = threading.Lock()
        self.requests = 0  # every request sent, for benchmarks and tests

    def post(
        self, url: str, headers: dict, timeout: httpx.Timeout, body: dict[str, Any], done: Callable[[Any, Any], None]
    ) -> None:
        """POST once, as Http.post_once does; `done(response, None)` or `done(None, TransportFailure)`
        is called on the loop thread."""
        loop = self._started()
        future: Future = asyncio.run_coroutine_threadsafe(self._post(url, headers, timeout, body), loop)
        future.add_done_callback(lambda ended: _report(ended, done))

    async def _post(self, url: str, headers: dict, timeout: httpx.Timeout, body: dict[str, Any]) -> httpx.Response:
        if not self._clients:  # (made on the loop they serve)
            shards = max(1, -(-self._pool_size // SHARD))
            size = -(-self._pool_size // shards)
            self._clients = [without_cookies(httpx.AsyncClient(**client_options(size))) for _ in range(shards)]
            self._busy = [0] * shards
        which = min(range(len(self._clients)), key=self._busy.__getitem__)
        self._busy[which] += 1
        self.requests += 1
        try:
            return await self._clients[which].post(url, headers=headers, timeout=timeout, **body)
        except httpx.TransportError as exc:
            raise failure_of(exc) from None
        finally:
            self._busy[which] -= 1

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="imgroute-exchanges", daemon=True).start()
                self._loop = loop
            return self._loop

    def close(self) -> None:
        """After the last job: the client's connections closed, the loop stopped."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        for client in self._clients:
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)


def _report(ended: Future, done: Callable[[Any, Any], None]) -> None:
    error = ended.exception()  # a TransportFailure; anything else is a bug, reported as the job's failure
    done(None, error) if error is not None else done(ended.result(), None)
