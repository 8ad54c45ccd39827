"""`imgroute -v` / `--debug` (or IMGROUTE_DEBUG=1): a trace of every HTTP exchange on stderr.

What it shows, for each exchange (each attempt, retry and redirect its own), written whole in one write
once the answer has been read or the exchange has failed:

    debug: POST https://api.kie.ai/api/v1/jobs/createTask -> 200 OK, 84 ms, 74 bytes application/json
      headers: Authorization: ***
      request (104 bytes): {"model": "gpt-image-2-text-to-image", "input": {"prompt": "a fox", ...}}
      answer: {"code": 200, "msg": "success", "data": {"taskId": "task_0001"}}

the method and URL (query kept), the status or how the exchange failed (connection refused, a timeout, a
dropped connection), the time from sending to the answer's last byte, the answer's size and type, the
provider's request id and Retry-After when sent; then the request headers other than the usual ones and
both bodies, each on one line cut to a few hundred characters, JSON kept as JSON.

What it never shows: a key or the bytes of an image. Every header that may carry a key is `***`; every
key the door knows (session.Keys.every_value, given to http.build_client), every environment variable named
like a key, and the token of every such header sent is replaced wherever else it
appears (URL, bodies, errors), with any long piece of it a provider echoes back; a query value named like
a key, token or signature, or starting like a key (`sk-`, `r8_`, ...), is `***`. A data: URI, or any long
run of base64, becomes its length (`data:image/png;base64,... (123,456 characters)`); a multipart file
part is its field, file name, type and size; a download of an image is its line alone.

The CLI (`imgroute -v serve` too) only switches it on (`switch`); the Python API and scripts set
IMGROUTE_DEBUG=1. http.build_client reads `enabled()` and, when on, wraps the client's transports
(`trace`), so that every exchange is seen however it is made, retries and failures included; off, the
client is built as if this module did not exist. Nothing heavy is imported until a client is traced: the
CLI imports this module on every run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

from imgroute.net.trace_format import Formatter, is_text

ENV = "IMGROUTE_DEBUG"
KEEP_LIMIT = 64 * 1024 * 1024  # bytes of a text answer kept to be shown (an OpenAI answer carries its images)
PREFIX = "debug: "

_switched = False
_write_lock = threading.Lock()


def switch(on: bool) -> None:
    """The CLI's -v / --debug, set on every run (so that an in-process run does not inherit the last)."""
    global _switched
    _switched = bool(on)


def enabled() -> bool:
    """Whether clients built now are traced: -v / --debug, or IMGROUTE_DEBUG set to anything but 0/false/no/off."""
    return _switched or os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def trace(client: Any, secrets: Callable[[], Iterable[str]] | None = None) -> Any:
    """Wrap every transport of an httpx.Client (its own and any proxy mounts) so that each exchange is
    traced. `secrets`: every key the door knows, to hide wherever it appears (asked at the first
    exchange); with or without it, every environment variable named like a key is hidden too."""
    transport_class, _ = _classes()
    tracer = _Tracer(secrets)
    client._transport = transport_class(client._transport, tracer)  # httpx has no public way to wrap them
    client._mounts = {
        pattern: None if inner is None else transport_class(inner, tracer) for pattern, inner in client._mounts.items()
    }
    return client


# -- the wrapping -------------------------------------------------------------------------------


@functools.cache
def _classes():
    import httpx

    class TracingTransport(httpx.BaseTransport):
        def __init__(self, inner: httpx.BaseTransport, tracer: _Tracer):
            self.inner = inner
            self.tracer = tracer

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            exchange = _Exchange(self.tracer, request)
            try:
                response = self.inner.handle_request(request)
            except BaseException as exc:
                exchange.failed(exc)
                raise
            exchange.answered(response)
            if response.is_closed:  # made whole already (httpx.MockTransport): nothing more will be read
                exchange.received(response.content)
                exchange.finish()
                return response
            # (a sync transport's answer streams synchronously)
            response.stream = TracingStream(cast(httpx.SyncByteStream, response.stream), exchange)
            return response

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc_info) -> None:
            self.inner.__exit__(*exc_info)

        def close(self) -> None:
            self.inner.close()

    class TracingStream(httpx.SyncByteStream):
        """The answer's body as it is read: counted, kept when it is text, and the exchange written when
        it ends (read to the end and closed, left unread and closed, or broken off)."""

        def __init__(self, inner: httpx.SyncByteStream, exchange: _Exchange):
            self.inner = inner
            self.exchange = exchange

        def __iter__(self):
            try:
                for chunk in self.inner:
                    self.exchange.received(chunk)
                    yield chunk
            except GeneratorExit:  # the reader stopped reading: `close` writes the exchange
                raise
            except BaseException as exc:
                self.exchange.failed(exc)
                raise

        def close(self) -> None:
            try:
                self.inner.close()
            finally:
                self.exchange.finish()

    return TracingTransport, TracingStream


class _Tracer:
    """What one client's exchanges share: the keys to hide, looked up at the first exchange."""

    def __init__(self, secrets: Callable[[], Iterable[str]] | None):
        self._secrets = secrets
        self._keys: tuple[str, ...] | None = None

    def keys(self) -> tuple[str, ...]:
        if self._keys is None:
            from imgroute.errors import ImgrouteError

            found = set(_keys_in_environment())
            # (a relay's key, sent in its auth header, is hidden as that header's token; with an
            # unreadable keys file, the auth headers' own tokens are still hidden)
            with contextlib.suppress(ImgrouteError):
                found.update(self._secrets() if self._secrets is not None else ())
            self._keys = tuple(found)
        return self._keys


KEY_VARIABLE_ENDINGS = ("_KEY", "_TOKEN", "_SECRET")


def _keys_in_environment() -> list[str]:
    """The values of environment variables named like a key (KIE_API_KEY, REPLICATE_API_TOKEN):
    hidden even when no door said which keys it knows."""
    return [value for name, value in os.environ.items() if name.upper().endswith(KEY_VARIABLE_ENDINGS) and value]


class _Exchange:
    def __init__(self, tracer: _Tracer, request: Any):
        self.tracer = tracer
        self.request = request
        self.start = time.perf_counter()
        self.response: Any = None
        self.size = 0
        self.kept: list[bytes] | None = None
        self.kept_size = 0
        self.failure: BaseException | None = None
        self.done = False

    def answered(self, response: Any) -> None:
        self.response = response
        if is_text(response.headers.get("content-type", "")):
            self.kept = []

    def received(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.kept is not None and self.kept_size < KEEP_LIMIT:
            self.kept.append(chunk)
            self.kept_size += len(chunk)

    def failed(self, exc: BaseException) -> None:
        self.failure = exc
        self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        elapsed_ms = round((time.perf_counter() - self.start) * 1000)
        try:
            text = Formatter(self, elapsed_ms).text()
        except Exception as exc:  # the trace never breaks a request
            text = f"{PREFIX}{self.request.method} (trace failed: {type(exc).__name__})\n"
        _write(text)


def _write(text: str) -> None:
    """One write per exchange, under a lock, so that threads (batch, serve) never interleave inside one."""
    with _write_lock:
        stream = sys.stderr
        try:
            try:
                stream.write(text)
            except UnicodeEncodeError:  # a stderr that cannot show a prompt's characters
                encoding = getattr(stream, "encoding", None) or "ascii"
                stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
            stream.flush()
        except (OSError, ValueError):
            pass
