"""The one place an httpx client is built; retries; translation of transport failures.

One retry policy, two rules that keep money safe:
- GETs (status, results, downloads) and free POSTs (uploads) may always be repeated: one loop
  retries them with backoff, honouring Retry-After, on transport errors and retryable statuses.
- A submit is sent once per call (`post_once`), which says whether a failure happened before
  anything was sent (`TransportFailure.reached` is False). Whether to send it again is decided by
  `submit_retry_delay` alone: only when nothing can have reached the provider or it dedupes.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

import httpx

from imgroute import policy
from imgroute.errors import TransportFailure, TroubleKind
from imgroute.net import debug
from imgroute.version import __version__

# Failures that prove the request never left this machine.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


_SHARED_RNG = random.Random()


class _Answer(NamedTuple):
    status: int
    value: Any  # the response (GET), or what `consume` made of the body (download)
    response: httpx.Response  # for its Retry-After


class _NoCookies(httpx.Cookies):
    """No provider sets cookies, and reading them from every answer cost ~15% of a request's CPU."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


def build_client(
    transport: httpx.BaseTransport | None = None,
    pool_size: int = 10,
    secrets: Callable[[], Iterable[str]] | None = None,
) -> httpx.Client:
    """The client, keeping up to `pool_size` connections open (one per thread that may use it).
    `secrets`: the keys a trace (-v) must hide, asked only if it is on (see debug.trace)."""
    client = without_cookies(httpx.Client(transport=transport, **client_options(pool_size)))
    if debug.enabled():  # -v / --debug / IMGROUTE_DEBUG: every exchange of this client traced on stderr
        debug.trace(client, secrets)
    return client


def client_options(pool_size: int) -> dict[str, Any]:
    """What every client imgroute builds shares (the blocking one here, the asyncio one of
    exchanges.py): its pool, timeouts, User-Agent, redirects, and no cookie jar."""
    return {
        "limits": httpx.Limits(max_connections=max(pool_size, 10), max_keepalive_connections=max(pool_size, 10)),
        "timeout": httpx.Timeout(policy.READ_TIMEOUT_S, connect=policy.CONNECT_TIMEOUT_S),
        "headers": {"User-Agent": f"imgroute/{__version__}"},
        "follow_redirects": True,
    }


def without_cookies(client: Any) -> Any:
    """No cookie jar (httpx has no switch for it; tests/net/test_http.py checks it holds)."""
    client._cookies = _NoCookies()
    return client


def failure_of(exc: httpx.TransportError) -> TransportFailure:
    """A submit's transport failure in the submit rule's terms: could it have reached the provider?"""
    if isinstance(exc, _NOT_SENT):
        return TransportFailure(f"could not connect: {_describe(exc)}", reached=False)
    return TransportFailure(f"no complete answer: {_describe(exc)}", reached=True)


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """Retry-After in seconds (retry-after-ms, delta seconds, or an HTTP date), if given."""
    ms = response.headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


class Http:
    """An httpx client plus the retry policy. Time and sleep come in so tests never wait."""

    def __init__(
        self,
        client: httpx.Client,
        sleep: Callable[[float], None] = time.sleep,
        scale: float | None = None,
        on_event: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
        generating: Callable[[], AbstractContextManager] = nullcontext,
        exchanges=None,
    ):
        self.client = client
        self.exchanges = exchanges  # exchanges.Exchanges: long requests on an event loop, or None
        self._sleep = sleep
        self.generating = generating  # what a synchronous provider's long request runs under
        self.scale = policy.time_scale() if scale is None else scale
        self.on_event = on_event or (lambda message: None)
        self._rng = rng or _SHARED_RNG  # seeding a Random per job costs more than the job's own maths
        self.requests = 0  # every request sent, for benchmarks and tests

    def wait(self, seconds: float) -> None:
        self._sleep(seconds * self.scale)

    def backoff(self, attempt: int) -> float:
        """0.5 s x 2^attempt, capped at 8 s, minus up to 25% jitter (as OpenAI's SDK does)."""
        base = min(policy.BACKOFF_MAX_S, policy.BACKOFF_BASE_S * 2**attempt)
        return base * (1 - 0.25 * self._rng.random())

    def post_once(self, url: str, *, headers: dict, timeout: float, **body: Any) -> httpx.Response:
        """One POST. Never retried here; TransportFailure.reached tells whether it may have landed."""
        self.requests += 1
        try:
            return self.client.post(url, headers=headers, timeout=_timeout(timeout), **body)
        except httpx.TransportError as exc:
            raise failure_of(exc) from None

    def post_awaited(self, url: str, *, headers: dict, timeout: float, **body: Any) -> Callable[[Callable], None]:
        """The same POST, to be sent on the exchanges' event loop (exchanges.py): a function that
        sends it and calls `done(response, None)` or `done(None, TransportFailure)` at its end, for a
        job's steps to yield as an Exchange. Only where this Http has exchanges (batch, serve)."""
        exchanges = self.exchanges
        assert exchanges is not None, "post_awaited needs the exchanges of a door running many jobs"
        self.requests += 1
        return lambda done: exchanges.post(url, headers, _timeout(timeout), body, done)

    def get(self, url: str, *, headers: dict | None = None, params: dict | None = None) -> httpx.Response:
        """GET with retries on transport errors and retryable statuses. Returns the last response."""
        return self._repeatable("GET", url, headers=headers, params=params)

    def post_repeatable(self, url: str, *, headers: dict, timeout: float, **body: Any) -> httpx.Response:
        """A POST that costs nothing and may safely happen twice (uploading a reference image)."""
        return self._repeatable("POST", url, headers=headers, timeout=_timeout(timeout), **body)

    def _repeatable(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        def once() -> _Answer:
            response = self.client.request(method, url, **kwargs)
            return _Answer(response.status_code, response, response)

        return self._with_retries(method, once).value

    def download(self, url: str, consume: Callable[[Iterator[bytes]], Any], headers: dict | None = None) -> Any:
        """Stream a GET into `consume`, retrying the whole download on failure.

        `consume` gets the body's chunks and returns its result; if it raises, nothing is kept.
        Returns (status, result); result is None when the final status is not 200.
        """

        def once() -> _Answer:
            with self.client.stream("GET", url, headers=headers) as response:
                if response.status_code == 200:
                    return _Answer(200, consume(response.iter_bytes()), response)
                response.read()
                return _Answer(response.status_code, None, response)

        answer = self._with_retries("download", once)
        return answer.status, answer.value

    def _with_retries(self, what: str, once: Callable[[], _Answer]) -> _Answer:
        """The one retry loop for requests that may be repeated: transport errors and retryable
        statuses are tried again with backoff (honouring Retry-After), up to GET_ATTEMPTS times."""
        for attempt in range(policy.GET_ATTEMPTS):
            last = attempt == policy.GET_ATTEMPTS - 1
            self.requests += 1
            try:
                answer = once()
            except httpx.TransportError as exc:
                if last:
                    raise TransportFailure(f"{what} failed: {_describe(exc)}", reached=True) from None
                pause = self.backoff(attempt)
                self.on_event(f"{what} interrupted ({_describe(exc)}); retrying in {pause:.1f}s")
                self.wait(pause)
                continue
            if answer.status not in policy.RETRYABLE_STATUSES or last:
                return answer
            delay = self._delay_for(answer.response, attempt)
            if delay is None:
                return answer
            self.on_event(f"{what} HTTP {answer.status}; retrying in {delay:.1f}s")
            self.wait(delay)
        raise AssertionError("unreachable")

    # -- the submit rule ----------------------------------------------------------------------

    def submit_retry_delay(
        self, kind: TroubleKind | None, retry_after: float | None, attempt: int, idempotent: bool
    ) -> float | None:
        """Seconds to wait before sending a submit again, or None when it must not be repeated.

        A submit costs money, so it is repeated only when that cannot create a second job: nothing
        reached the provider (`kind` UNREACHABLE), the provider refused it with 429 (it did not take
        the job), or the provider dedupes by idempotency key (a 5xx, or an answer that was lost:
        `kind` None). Never after the last of SUBMIT_ATTEMPTS."""
        if attempt >= policy.SUBMIT_ATTEMPTS - 1:
            return None
        if kind is TroubleKind.UNREACHABLE:
            return self.backoff(attempt)
        if kind is TroubleKind.RATE_LIMITED:
            wait = retry_after if retry_after is not None else self.backoff(attempt)
            return wait if wait <= policy.RETRY_AFTER_MAX_S else None
        if idempotent and kind in (TroubleKind.SERVER, None):
            return retry_after if retry_after is not None else self.backoff(attempt)
        return None

    def _delay_for(self, response: httpx.Response, attempt: int) -> float | None:
        """How long to wait before repeating; None when the server asks for too long."""
        asked = retry_after_seconds(response)
        if asked is None:
            return self.backoff(attempt)
        return asked if asked <= policy.RETRY_AFTER_MAX_S else None


def _timeout(read: float) -> httpx.Timeout:
    return httpx.Timeout(read, connect=policy.CONNECT_TIMEOUT_S)


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
