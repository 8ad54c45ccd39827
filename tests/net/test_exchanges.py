"""Long requests on the exchanges' event loop: the same POST and the same reading of a failure as a
blocking `Http.post_once` (was it sent or not: the submit rule depends on it)."""

from __future__ import annotations

import socket
import threading

import httpx

from imgroute.net.exchanges import Exchanges


def posted(exchanges: Exchanges, url: str, timeout: float = 5.0, **body):
    ended = threading.Event()
    outcome: list = []

    def done(answer, error) -> None:
        outcome.append((answer, error))
        ended.set()

    exchanges.post(url, {"Authorization": "Bearer k"}, httpx.Timeout(timeout), body, done)
    assert ended.wait(10)
    return outcome[0]


def test_an_answer_comes_back_with_what_was_sent(fakes):
    exchanges = Exchanges(4)
    try:
        url = fakes["openai"].url + "/v1/images/generations"
        answer, error = posted(exchanges, url, json={"model": "gpt-image-2", "prompt": "a fox", "quality": "low"})
        assert error is None and answer.status_code in (200, 401)
        (request,) = fakes["openai"].calls("/v1/images/generations", "POST")
        assert request.header("Authorization") == "Bearer k" and request.json()["prompt"] == "a fox"
        assert request.header("User-Agent").startswith("imgroute/") and exchanges.requests == 1
    finally:
        exchanges.close()


def test_a_refused_connection_was_not_sent_and_a_dropped_answer_may_have_been(fakes):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    exchanges = Exchanges(4)
    try:
        _, refused = posted(exchanges, f"http://127.0.0.1:{port}/v1/images/generations", json={})
        assert refused.reached is False and "could not connect" in str(refused)
        fakes["openai"].inject("submit", drop=True)  # the request arrives; no answer comes back
        _, dropped = posted(exchanges, fakes["openai"].url + "/v1/images/generations", json={"prompt": "a fox"})
        assert dropped.reached is True and "no complete answer" in str(dropped)
    finally:
        exchanges.close()


def test_a_large_pool_is_split_into_clients_of_a_few_connections_each(fakes):
    from imgroute.net.exchanges import SHARD

    exchanges = Exchanges(100)
    try:
        answer, error = posted(exchanges, fakes["openai"].url + "/v1/images/generations", json={"prompt": "a fox"})
        assert error is None
        clients = exchanges._clients
        assert len(clients) == 4 and all(c._transport._pool._max_connections == 25 for c in clients)  # <= SHARD
        assert SHARD >= 25 and exchanges._busy == [0, 0, 0, 0]  # (each request counted off its client)
    finally:
        exchanges.close()
