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

ENV = "IMGROUTE_DEBUG"
BODY_LIMIT = 600  # characters of a body shown
VALUE_LIMITS = (200, 80, 40)  # characters of one JSON string or form value shown: fewer if the body is long
KEEP_LIMIT = 64 * 1024 * 1024  # bytes of a text answer kept to be shown (an OpenAI answer carries its images)
PREFIX = "debug: "
INDENT = "  "

# The answer headers a provider names its request by, the first one found shown.
REQUEST_ID_HEADERS = (
    "x-request-id",  # OpenAI, Apiframe
    "x-fal-request-id",  # fal
    "request-id",
    "x-amzn-requestid",
    "x-amz-request-id",
    "apim-request-id",  # Azure
    "x-ms-request-id",
    "x-correlation-id",
    "x-trace-id",
    "cf-ray",  # Cloudflare's, in front of many relays: what their support asks for
)
# Request headers everyone sends, left out of the `headers:` line.
USUAL_HEADERS = {"host", "accept", "accept-encoding", "connection", "user-agent", "content-length", "content-type"}
NOT_SECRET_HEADERS = {"idempotency-key"}
KEY_PREFIXES = ("sk-", "sk_", "r8_", "AKIA", "AIza", "ghp_")  # a query value that starts so is a key, whatever its name

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
        if _is_text(response.headers.get("content-type", "")):
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
            text = _Formatter(self, elapsed_ms).text()
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


# -- what is written ----------------------------------------------------------------------------


class _Formatter:
    def __init__(self, exchange: _Exchange, elapsed_ms: int):
        self.x = exchange
        self.elapsed_ms = elapsed_ms
        request = exchange.request
        self.secrets = _secrets(exchange.tracer.keys(), request.headers.raw)

    def hide(self, text: str) -> str:
        from imgroute.net.redaction import redact

        for secret in self.secrets:  # whole keys first: keys may share pieces
            text = text.replace(secret, "[redacted]")
        for secret in self.secrets:  # then any long piece of one a provider echoes
            text = redact(text, secret)
        return text

    def text(self) -> str:
        request, response = self.x.request, self.x.response
        lines = [f"{PREFIX}{request.method} {self.url(str(request.url))} -> {self.outcome()}"]
        headers = self.headers()
        if headers:
            lines.append(f"{INDENT}headers: {headers}")
        sent = self.sent()
        if sent:
            lines.append(f"{INDENT}request {sent}")
        if response is not None and self.x.kept:
            answer = self.body(b"".join(self.x.kept), response.headers)
            if answer:
                lines.append(f"{INDENT}answer: {answer}")
        return "\n".join(lines) + "\n"

    def outcome(self) -> str:
        response, failure = self.x.response, self.x.failure
        if response is None:
            return f"{self.failure(cast(BaseException, failure))}, {self.elapsed_ms:,} ms"  # (no answer: it failed)
        parts = [f"{response.status_code} {response.reason_phrase}".rstrip(), f"{self.elapsed_ms:,} ms"]
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        parts.append(f"{self.x.size:,} bytes" + (f" {content_type}" if content_type else ""))
        if failure is not None:  # the answer broke off
            parts.append(f"then {self.failure(failure)}")
        for name in REQUEST_ID_HEADERS:
            if name in response.headers:
                parts.append(f"{name} {self.hide(response.headers[name])}")
                break
        for name in ("retry-after", "retry-after-ms"):
            if name in response.headers:
                parts.append(f"{name} {response.headers[name]}")
        return ", ".join(parts)

    def failure(self, exc: BaseException) -> str:
        import httpx

        detail = self.hide(" ".join(str(exc).split()))
        if isinstance(exc, httpx.ConnectTimeout):
            return "timeout connecting"
        if isinstance(exc, httpx.ReadTimeout):
            return "timeout waiting for the answer"
        if isinstance(exc, httpx.WriteTimeout):
            return "timeout sending"
        if isinstance(exc, httpx.PoolTimeout):
            return "timeout waiting for a free connection"
        if isinstance(exc, httpx.ConnectError):
            return "connection refused" if "refused" in detail.lower() else f"could not connect ({detail})"
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
            return f"dropped ({detail})" if detail else "dropped"
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            return "stopped"
        return f"{type(exc).__name__}" + (f": {detail}" if detail else "")

    def url(self, url: str) -> str:
        import re

        if "@" in url.split("?")[0]:  # user:password@host
            url = re.sub(r"^([a-zA-Z][\w+.-]*://)[^/@]*@", r"\1***@", url)
        if "?" in url:
            base, query = url.split("?", 1)
            fields = []
            for field in query.split("&"):
                name, eq, value = field.partition("=")
                secret = _secret_name(name, query=True) or value.startswith(KEY_PREFIXES)
                fields.append(f"{name}=***" if eq and secret else field)
            url = base + "?" + "&".join(fields)
        return self.hide(url)

    def headers(self) -> str:
        shown = []
        for raw_name, raw_value in self.x.request.headers.raw:
            name = raw_name.decode("latin-1")
            if name.lower() in USUAL_HEADERS:
                continue
            value = "***" if _secret_name(name) else self.hide(raw_value.decode("latin-1"))
            shown.append(f"{name}: {value}")
        return ", ".join(shown)

    def sent(self) -> str | None:
        request = self.x.request
        fields = getattr(request.stream, "fields", None)
        length = request.headers.get("content-length")
        size = f"{int(length):,} bytes" if length and length.isdigit() else "streamed"
        if fields is not None:  # multipart: the fields, and of each file its name, type and size, never its bytes
            return f"(multipart, {size}): {self.multipart(fields)}"
        try:
            content = request.content
        except Exception:  # a streamed body: not read here
            return f"({size})"
        if not content:
            return None
        return f"({size}): {self.body(content, request.headers)}"

    def multipart(self, fields: list) -> str:
        import json

        shown: dict[str, Any] = {}  # name -> its text, or a list of them
        for field in fields:
            if hasattr(field, "filename"):
                content_type = field.headers.get("Content-Type", "")
                total = field.get_length()
                data = f", {total - len(field.render_headers()):,} bytes" if total is not None else ""
                text = f"@{field.filename}" + (f" ({content_type}{data})" if content_type or data else "")
            else:
                value = field.value
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                text = _short(self.hide(_strip_base64(text)))
            name = self.hide(field.name)
            shown[name] = text if name not in shown else [*_listed(shown[name]), text]
        return _cut(self.hide(json.dumps(shown, ensure_ascii=False)))

    def body(self, data: bytes, headers: Any) -> str | None:
        """A body on one line: JSON as compact JSON, text with its spaces collapsed, neither longer than the cut."""
        import json

        content_type = headers.get("content-type", "").lower()
        data = _decoded(data, headers)
        if not data:
            return None
        if b"\x00" in data[:1024]:
            return f"({len(data):,} bytes of binary)"
        text = data.decode("utf-8", "replace")
        text = self.hide(_strip_base64(text))
        if "json" in content_type or text.lstrip()[:1] in ("{", "["):
            try:
                parsed = json.loads(text)
            except ValueError:
                pass
            else:
                for limit in VALUE_LIMITS:  # long strings shortened further until the whole fits, if it can
                    shown = self.hide(json.dumps(_shorten(parsed, limit), ensure_ascii=False))
                    if len(shown) <= BODY_LIMIT:
                        break
                return _cut(shown)
        if "x-www-form-urlencoded" in content_type:
            text = self.url("?" + text)[1:]
        return _cut(" ".join(text.split()))


def _secrets(keys: tuple[str, ...], raw_headers: list[tuple[bytes, bytes]]) -> list[str]:
    """The known keys and the tokens of the key-carrying headers sent, longest first."""
    found = {key for key in keys if key}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1")
        if _secret_name(name):
            parts = raw_value.decode("latin-1").split()  # `TOKEN`, `Bearer TOKEN`, `Key TOKEN`
            if parts and len(parts[-1]) >= 4:
                found.add(parts[-1])
    return sorted(found, key=len, reverse=True)


_SECRET_WORDS = ("auth", "key", "token", "secret", "cookie", "passw", "credential", "signature", "session")


def _secret_name(name: str, query: bool = False) -> bool:
    """A header (or, `query`, a query parameter) whose value may carry a key."""
    lowered = name.lower()
    if lowered in NOT_SECRET_HEADERS:
        return False
    if query and lowered in ("sig", "code", "access_token", "apikey", "api-key"):
        return True
    return any(word in lowered for word in _SECRET_WORDS)


def _is_text(content_type: str) -> bool:
    """Whether an answer's body is shown: JSON, text, or unlabelled (shown only if it is not binary)."""
    lowered = content_type.lower().split(";")[0].strip()
    return not lowered or "json" in lowered or lowered.startswith("text/") or "xml" in lowered or "form" in lowered


def _decoded(data: bytes, headers: Any) -> bytes:
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return data
    import httpx

    try:
        return httpx.Response(200, headers={"content-encoding": encoding}, content=data).content
    except Exception:
        return b""


@functools.cache
def _base64_patterns():
    import re

    base64 = r"[A-Za-z0-9+/\\]"  # (a backslash: JSON may escape the slash, or break the lines with \n)
    data_uri = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,\"\s]*)*);base64," + base64 + "*=*")
    run = re.compile(base64 + "{200,}=*")
    return data_uri, run


def _strip_base64(text: str) -> str:
    """Every data: URI and every long run of base64 replaced by its length."""
    if len(text) < 200 and "data:" not in text:
        return text
    data_uri, run = _base64_patterns()
    text = data_uri.sub(lambda m: f"data:{m[1] or ''}{m[2]};base64,... ({len(m[0]):,} characters)", text)
    return run.sub(lambda m: f"... ({len(m[0]):,} characters of base64)", text)


def _shorten(value: Any, limit: int) -> Any:
    """JSON with every long string cut, so that one long prompt does not hide the rest."""
    if isinstance(value, str):
        return _short(value, limit)
    if isinstance(value, list):
        return [_shorten(item, limit) for item in value]
    if isinstance(value, dict):
        return {key: _shorten(item, limit) for key, item in value.items()}
    return value


def _short(text: str, limit: int = VALUE_LIMITS[0]) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _cut(text: str) -> str:
    return text if len(text) <= BODY_LIMIT else f"{text[:BODY_LIMIT]} ... ({len(text):,} characters)"


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]
