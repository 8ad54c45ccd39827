"""What the -v trace writes of one exchange (see net/debug.py): its line, its headers and bodies,
with every key and every image's bytes hidden."""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from imgroute.net.debug import _Exchange

BODY_LIMIT = 600  # characters of a body shown
VALUE_LIMITS = (200, 80, 40)  # characters of one JSON string or form value shown: fewer if the body is long
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


# -- what is written ----------------------------------------------------------------------------


class Formatter:
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


def is_text(content_type: str) -> bool:
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
