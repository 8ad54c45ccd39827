"""The small interface every provider adapter implements, and the neutral types it speaks.

An adapter translates HTTP only: a JobSpec in, the provider's requests out, its answers back as
Submission / Poll values or one of three errors. It never reads config, prices or the ledger.

- ProviderTrouble: the provider could not take or run the job for reasons that are not the user's
  fault (bad key, no credits, overloaded, rejected parameters). The job may move to another offer.
- JobFailed: the provider accepted the job and failed it (including moderation). Final, unless the
  adapter marks it `charge_unknown` (it ran and made no image, and the provider does not say whether
  it charged: the images move on, the failed share counts as possibly charged until settled by
  hand) or `never_ran` (dropped unrun and unbilled: the images move on).
- SubmitUnknown: a submit may have reached the provider but no usable answer came back. The job
  may exist and may be charged, so it must not be sent again anywhere without a human decision.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import httpx

from imgroute.errors import MalformedAnswer, ProviderTrouble, SubmitUnknown, TransportFailure, TroubleKind
from imgroute.models import JobSpec, is_url
from imgroute.net.http import Http
from imgroute.net.redaction import redact


class Output(NamedTuple):
    """One finished image: bytes in hand, or a URL to download."""

    url: str | None = None
    data: bytes | None = None


class Usage(NamedTuple):
    """What the provider says it charged, where it says so."""

    text_input: int = 0
    image_input: int = 0
    image_output: int = 0
    text_output: int = 0
    credits: int | None = None
    usd: str | None = None  # the dollars it says it charged (OpenRouter's usage.cost), as decimal text

    @property
    def reports_tokens(self) -> bool:
        """Whether the provider said how many tokens it charged (Kie and Apiframe say only credits)."""
        return any((self.text_input, self.image_input, self.image_output, self.text_output))


class Submission(NamedTuple):
    job_id: str | None  # the provider's id; None for synchronous providers
    handle: dict  # JSON-safe: what poll() needs later (ids, URLs), also kept in the ledger
    outputs: tuple[Output, ...] = ()  # synchronous providers answer with the images
    usage: Usage | None = None


class Poll(NamedTuple):
    state: str  # queued | running | succeeded | failed
    detail: str = ""
    progress: int | None = None
    outputs: tuple[Output, ...] = ()
    usage: Usage | None = None
    took: float | None = None  # finished jobs: seconds from creation to completion, by the provider's own clock


class KeyCheck(NamedTuple):
    """What a free, documented call said about a key (`imgroute keys check`).

    state: "valid" (the provider accepted the key), "refused" (it refused it), or "unknown" (no
    verdict: no free route is documented, the key may not read that route, or the provider could
    not be reached: then `reached` is False). `balance` is the account's balance where the answer
    carries one, in `unit` ("credits", or a currency code such as "USD")."""

    state: str
    detail: str = ""
    route: str = ""  # the free route asked (method and URL path), for the user to see
    balance: Decimal | None = None
    unit: str | None = None
    reached: bool = True


class PreparedRequest(NamedTuple):
    """The exact submit request: JSON `body`, or form fields in `body` plus `files` for multipart."""

    method: str
    url: str
    headers: dict
    body: Any
    files: tuple[tuple[str, str], ...] = ()  # (form field, local path)


STATUS_KINDS = {
    401: TroubleKind.AUTH,
    403: TroubleKind.AUTH,
    402: TroubleKind.CREDITS,
    429: TroubleKind.RATE_LIMITED,
}


class Adapter:
    """Base class: shared plumbing for the five adapters. Subclasses set the class attributes."""

    provider: str = ""
    documented_origin: str = ""
    synchronous: bool = False
    idempotent_submit: bool = False  # the provider dedupes a repeated submit (Apiframe)
    findable: bool = False  # a submit whose answer was lost can be looked up (Replicate: `find`)
    # Polling: first wait, growth factor, longest wait (seconds), suited to each provider's pace.
    poll_schedule: tuple[float, float, float] = (2.0, 1.5, 10.0)
    window_s: float = 0.0  # batch APIs: how long a job may take there (waited for, whatever --timeout says)

    def __init__(self, key: str, base_url: str | None = None):
        self.key = key
        self.base = (base_url or self.documented_origin).rstrip("/")

    # -- to implement -----------------------------------------------------------------------

    def prepare(self, spec: JobSpec) -> PreparedRequest:
        raise NotImplementedError

    def submit(self, http: Http, spec: JobSpec) -> Submission:
        raise NotImplementedError

    def poll(self, http: Http, handle: dict) -> Poll:
        raise NotImplementedError

    def find(self, http: Http, spec: JobSpec, sent_at: float) -> Submission | None:
        """The job a lost submit made, if the provider can say (only where `findable`)."""
        raise NotImplementedError

    def check_key(self, http: Http) -> KeyCheck:
        """Ask a route the provider documents as free whether the key is good (and, where the
        answer has it, the balance). Nothing is generated, nothing is paid."""
        return KeyCheck(state="unknown", detail=f"{self.provider} documents no free route to check a key with")

    def ask_free(self, http: Http, url: str, headers: dict | None = None) -> httpx.Response | KeyCheck:
        """GET a free route with the key (the usual auth headers, unless `headers`): the answer, or
        the KeyCheck of a provider that could not be reached (no answer, 5xx, 429)."""
        from urllib.parse import urlsplit

        route = f"GET {urlsplit(url).path}"
        try:
            response = http.get(url, headers=headers or self.auth_headers())
        except TransportFailure as exc:
            return KeyCheck(state="unknown", detail=self.clean(str(exc)), route=route, reached=False)
        if response.status_code >= 500 or response.status_code == 429:
            body = json_or_none(response)
            message = self.clean(error_message(body, response.text[:200] or ""))
            return KeyCheck(
                state="unknown", detail=f"HTTP {response.status_code}: {message}", route=route, reached=False
            )
        return response

    def key_verdict(self, response: httpx.Response, route: str, refused: tuple[int, ...] = (401, 403)) -> KeyCheck:
        """The plain reading: 2xx valid, `refused` statuses refused (with the provider's message,
        the key redacted from it), anything else unknown."""
        if 200 <= response.status_code < 300:
            return KeyCheck(state="valid", detail="", route=route)
        message = self.clean(error_message(json_or_none(response), response.text[:200] or ""))
        state = "refused" if response.status_code in refused else "unknown"
        return KeyCheck(state=state, detail=f"HTTP {response.status_code}: {message}".rstrip(": "), route=route)

    def upload_inputs(self, http: Http, spec: JobSpec) -> JobSpec:
        """Make local reference images reachable the way the provider takes them.

        Providers that take only URLs (Kie, Apiframe) implement `upload`; the rest take the
        files themselves and need nothing here.
        """
        if type(self).upload is Adapter.upload:
            return spec
        return spec._replace(images=tuple(p if is_url(p) else self.upload(http, p) for p in spec.images))

    def upload(self, http: Http, path: str) -> str:
        """Upload one local image to the provider's storage; return its URL."""
        raise NotImplementedError

    def post_file(self, http: Http, url: str, path: str, fields: dict | None = None) -> httpx.Response:
        """The multipart POST of an upload: free and safe to repeat, so retried like a GET."""
        from imgroute import policy

        name, data, content_type = file_part(path)
        try:
            return http.post_repeatable(
                url,
                headers=self.auth_headers(),
                timeout=policy.READ_TIMEOUT_S,
                files={"file": (name, data, content_type)},
                data=fields,
            )
        except TransportFailure as exc:
            raise ProviderTrouble(f"{self.provider}: uploading {name}: {exc}", TroubleKind.UNREACHABLE) from None

    # -- shared helpers ---------------------------------------------------------------------

    def auth_headers(self) -> dict:
        raise NotImplementedError

    def redacted_headers(self) -> dict:
        return {name: redact(value, self.key) for name, value in self.auth_headers().items()}

    def send(self, http: Http, prepared: PreparedRequest, timeout: float) -> httpx.Response:
        """POST a prepared submit once, turning transport failures into the job's terms."""
        headers, body = self.outgoing(prepared)
        try:
            return http.post_once(prepared.url, headers=headers, timeout=timeout, **body)
        except TransportFailure as exc:
            raise self.unanswered(exc) from None

    def outgoing(self, prepared: PreparedRequest) -> tuple[dict, dict[str, Any]]:
        """A prepared submit's headers (the key's among them) and body, as httpx takes them."""
        headers = {**prepared.headers, **self.auth_headers()}
        if prepared.files:
            fields = {name: str(value) for name, value in prepared.body.items() if value is not None}
            return headers, {"data": fields, "files": [(field, file_part(path)) for field, path in prepared.files]}
        return headers, {"json": prepared.body}

    def unanswered(self, exc: TransportFailure) -> Exception:
        """A submit with no answer, in the job's terms: its fate unknown once it may have arrived."""
        if exc.reached:
            return SubmitUnknown(f"{self.provider}: {self.clean(str(exc))}")
        return ProviderTrouble(f"{self.provider}: {self.clean(str(exc))}", TroubleKind.UNREACHABLE)

    def read_submission(self, spec: JobSpec, response: httpx.Response) -> Submission:
        """A synchronous provider's answer to its submit (its images in it)."""
        raise NotImplementedError

    def owns(self, url: str) -> bool:
        """Whether `url` is on the provider's own origin (or its configured override): the only place
        its key may be sent, whatever an answer points at."""
        return _origin(url) == _origin(self.base)

    def get(self, http: Http, url: str, params: dict | None = None) -> httpx.Response:
        if not self.owns(url):
            raise ProviderTrouble(
                f"{self.provider}: an answer pointed at {_origin(url)}, not {_origin(self.base)}; the key was not sent",
                TroubleKind.SERVER,
            )
        try:
            return http.get(url, headers=self.auth_headers(), params=params)
        except TransportFailure as exc:
            raise ProviderTrouble(f"{self.provider}: {self.clean(str(exc))}", TroubleKind.UNREACHABLE) from None

    def clean(self, text: str) -> str:
        return redact(text, self.key)

    def json_of(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            snippet = self.clean(response.text[:120]) if response.content else "an empty body"
            message = f"{self.provider}: {what} was not JSON (HTTP {response.status_code}): {snippet}"
            raise MalformedAnswer(message) from None

    def trouble_for_status(self, response: httpx.Response, message: str) -> ProviderTrouble:
        """The usual mapping of an HTTP error status to a fallback-worthy kind."""
        from imgroute.net.http import retry_after_seconds

        status = response.status_code
        kind = STATUS_KINDS.get(status) or (TroubleKind.SERVER if status >= 500 else TroubleKind.REJECTED)
        text = f"{self.provider}: HTTP {status}: {self.clean(message)}"
        return ProviderTrouble(text, kind, retry_after=retry_after_seconds(response))


# What a provider's failure says when its moderation refused the job (Replicate's E005 is its code
# for a flagged input). A moderated job is final: it is not sent to another provider.
MODERATION_WORDS = ("content policy", "flagged", "moderation", "safety", "sensitive", "e005")


def moderated(message: str) -> bool:
    """Whether a failure's message says the provider's moderation refused the job."""
    lowered = message.lower()
    return any(word in lowered for word in MODERATION_WORDS)


def json_or_none(response: httpx.Response) -> Any:
    """An answer's JSON body, or None where it is not JSON (an HTML error page, an empty body)."""
    try:
        return response.json()
    except ValueError:
        return None


def as_balance(value) -> Decimal | None:
    """A balance figure from an answer (a number, or a numeric string), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def file_part(path: str) -> tuple[str, bytes, str]:
    """(file name, bytes, content type) for a multipart upload of a local image."""
    from pathlib import Path

    from imgroute.net.images import sniff

    data = Path(path).read_bytes()
    return Path(path).name, data, CONTENT_TYPES[sniff(data[:65536]).format]


def data_uri(path: str) -> str:
    import base64

    name, data, content_type = file_part(path)
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def error_message(body: Any, fallback: str) -> str:
    """The human message from the error bodies seen across providers."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            detail = body.get("details")
            return f"{err}: {json.dumps(detail)}" if detail else err
        for field in ("message", "msg", "detail"):
            value = body.get(field)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value:
                first = value[0]
                return str(first.get("msg", first)) if isinstance(first, dict) else str(first)
    return fallback
