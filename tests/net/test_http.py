"""The retry policy, with httpx.MockTransport: GETs are retried, POSTs never."""

import httpx
import pytest

from imgroute.errors import TransportFailure
from imgroute.net.http import Http, retry_after_seconds


def http_with(handler, waits):
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Http(client, sleep=waits.append, scale=1.0)


def test_get_retries_retryable_statuses_honouring_retry_after():
    answers = iter([httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(503), httpx.Response(200)])
    waits = []
    http = http_with(lambda request: next(answers), waits)
    assert http.get("http://x/status").status_code == 200
    assert waits[0] == 3 and 0.375 <= waits[1] <= 1.0
    assert http.requests == 3


def test_get_gives_up_when_told_to_wait_too_long():
    waits = []
    http = http_with(lambda request: httpx.Response(429, headers={"Retry-After": "600"}), waits)
    assert http.get("http://x").status_code == 429 and waits == []


def test_get_returns_non_retryable_status_at_once():
    waits = []
    http = http_with(lambda request: httpx.Response(404), waits)
    assert http.get("http://x").status_code == 404 and http.requests == 1


def test_get_transport_errors_are_retried_then_raised():
    def fail(request):
        raise httpx.ReadError("reset by peer")

    waits = []
    http = http_with(fail, waits)
    with pytest.raises(TransportFailure):
        http.get("http://x")
    assert http.requests == 4 and len(waits) == 3


@pytest.mark.parametrize(
    ("error", "reached"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow"), False),
        (httpx.ReadTimeout("late"), True),
        (httpx.RemoteProtocolError("Server disconnected"), True),
    ],
)
def test_post_is_sent_once_and_says_whether_it_may_have_landed(error, reached):
    calls = []

    def handler(request):
        calls.append(request)
        raise error

    http = http_with(handler, [])
    with pytest.raises(TransportFailure) as exc:
        http.post_once("http://x/submit", headers={}, timeout=5, json={})
    assert exc.value.reached is reached and len(calls) == 1


def test_retry_after_forms():
    assert retry_after_seconds(httpx.Response(429, headers={"retry-after-ms": "1500"})) == 1.5
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "7"})) == 7
    when = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})
    assert retry_after_seconds(when, now=1792567670.0) == 10.0
    assert retry_after_seconds(httpx.Response(429)) is None


@pytest.mark.parametrize(
    ("kind", "retry_after", "attempt", "idempotent", "expected"),
    [
        ("unreachable", None, 0, False, "backoff"),  # nothing was sent
        ("rate_limited", 7.0, 0, False, 7.0),  # a 429 means the job was not taken
        ("rate_limited", 600.0, 0, False, None),  # asked to wait too long: treated as unavailable
        ("server", None, 0, False, None),  # a 5xx may have created the job
        ("server", 2.0, 0, True, 2.0),  # ... unless the provider dedupes by idempotency key
        (None, None, 1, True, "backoff"),  # an answer lost: replayed under the same key
        (None, None, 0, False, None),  # ... and never without one
        ("auth", None, 0, True, None),
        ("credits", None, 0, True, None),
        ("rejected", None, 0, True, None),
        ("unreachable", None, 2, False, None),  # the last of three attempts
    ],
)
def test_the_submit_rule(kind, retry_after, attempt, idempotent, expected):
    from imgroute.errors import TroubleKind

    http = Http(httpx.Client(), sleep=lambda s: None, scale=1.0)
    delay = http.submit_retry_delay(TroubleKind(kind) if kind else None, retry_after, attempt, idempotent)
    if expected == "backoff":
        assert delay is not None and 0 < delay <= 8
    else:
        assert delay == expected


def test_downloads_share_the_get_retry_loop():
    answers = iter(
        [httpx.Response(503), httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, content=b"img")]
    )
    waits = []
    http = http_with(lambda request: next(answers), waits)
    assert http.download("http://x/1.png", lambda chunks: b"".join(chunks)) == (200, b"img")
    assert http.requests == 3 and waits[1] == 2
