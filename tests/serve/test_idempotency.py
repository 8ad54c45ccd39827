"""serve's Idempotency-Key: one key is one job for a day, on one server or on every replica of a
team ledger. The official SDK sends none by itself; a client sets it with `extra_headers`."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.helpers import wait_for
from tests.serve.conftest import Served

BODY = {"prompt": "a heron at dawn", "quality": "low", "imgroute": {"provider": "openai"}}


def post(server: Served, key: str, body: dict = BODY) -> httpx.Response:
    url = server.url + "/images/generations"
    return httpx.post(url, json=body, headers={"Idempotency-Key": key}, timeout=60)


def test_one_key_is_one_job_and_its_answer_comes_back_without_paying_again(served, fakes):
    client = served.client(max_retries=0)
    first = client.images.generate(prompt="a heron", extra_headers={"Idempotency-Key": "k-1"},
                                   extra_body={"imgroute": {"provider": "openai"}})  # fmt: skip
    again = client.images.generate(prompt="a heron", extra_headers={"Idempotency-Key": "k-1"},
                                   extra_body={"imgroute": {"provider": "openai"}})  # fmt: skip
    assert fakes["openai"].charges == 1
    assert again.data[0].b64_json == first.data[0].b64_json
    assert again.model_extra["imgroute"]["job_id"] == first.model_extra["imgroute"]["job_id"]
    assert again.model_extra["imgroute"]["joined"] is True


def test_the_same_key_with_another_request_is_refused(served, fakes):
    assert post(served, "k-2").status_code == 200
    reused = post(served, "k-2", {**BODY, "prompt": "something else"})
    assert reused.status_code == 400 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert reused.headers["x-should-retry"] == "false" and fakes["openai"].charges == 1


def test_the_same_key_while_its_job_runs_is_told_to_retry_and_nothing_is_paid(served, fakes):
    fakes["openai"].job_seconds = 1.5
    answers: list[httpx.Response] = []
    first = threading.Thread(target=lambda: answers.append(post(served, "k-3")))
    first.start()
    wait_for(lambda: fakes["openai"].in_flight == 1)
    busy = post(served, "k-3")
    first.join()
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "idempotency_in_progress"
    assert busy.headers["x-should-retry"] == "true"
    assert answers[0].status_code == 200 and fakes["openai"].charges == 1


def test_a_request_refused_before_any_job_leaves_its_key_free(served, fakes):
    refused = post(served, "k-4", {**BODY, "n": 0})
    assert refused.status_code == 400
    assert post(served, "k-4").status_code == 200 and fakes["openai"].charges == 1


def test_replicas_on_one_team_ledger_answer_a_key_once(fakes, isolated_home, tmp_path, monkeypatch):
    """Two servers on one PostgreSQL ledger: the key's job runs once; the other replica answers it
    from the shared output folder, and names the job and its replica when the folder is not shared."""
    from tests.pg_cluster import cluster

    monkeypatch.setenv("IMGROUTE_LEDGER_URL", cluster().new_database())
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.yaml").write_text("limits:\n  openai: {concurrency: 20, per_minute: 100000}\n")
    first, shared = Served(fakes, isolated_home), Served(fakes, isolated_home)  # one --out between them
    other_home = tmp_path / "elsewhere"
    other_home.mkdir()
    apart = Served(fakes, other_home)  # an output folder of its own
    try:
        answered = post(first, "team-1")
        assert answered.status_code == 200
        again = post(shared, "team-1")
        assert again.status_code == 200 and again.json()["data"] == answered.json()["data"]
        (image,) = answered.json()["imgroute"]["files"]
        Path(image).rename(tmp_path / "moved.png")  # as if it were on the first replica's own disk
        elsewhere = post(apart, "team-1")
        assert elsewhere.status_code == 409 and elsewhere.json()["error"]["code"] == "idempotency_elsewhere"
        job = answered.json()["imgroute"]["job_id"]
        assert job in elsewhere.json()["error"]["message"]
        assert fakes["openai"].charges == 1
    finally:
        for server in (first, shared, apart):
            server.stop()
