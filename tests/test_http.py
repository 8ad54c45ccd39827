"""The retry policy, with httpx.MockTransport: GETs are retried, POSTs never."""

import httpx
import pytest

from imgroute.http import Http, TransportFailure, retry_after_seconds


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
