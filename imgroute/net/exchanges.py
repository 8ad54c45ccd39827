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

from imgroute.errors import TransportFailure
from imgroute.net.http import client_options, failure_of, without_cookies


class Exchanges:
    """One loop thread and one AsyncClient (made on first use), shared by a door's jobs."""

    def __init__(self, pool_size: int):
        self._pool_size = pool_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
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
        if self._client is None:  # (made on the loop it serves)
            self._client = without_cookies(httpx.AsyncClient(**client_options(self._pool_size)))
        self.requests += 1
        try:
            return await self._client.post(url, headers=headers, timeout=timeout, **body)
        except httpx.TransportError as exc:
            raise failure_of(exc) from None

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
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)


def _report(ended: Future, done: Callable[[Any, Any], None]) -> None:
    error = ended.exception()
    if error is None:
        done(ended.result(), None)
    elif isinstance(error, TransportFailure):
        done(None, error)
    else:  # (a bug: reported as the job's failure, with its traceback)
        done(None, error)
