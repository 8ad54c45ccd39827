"""`imgroute serve` when it is told to stop and when its clients go away: nothing that was not sent
is sent after Ctrl-C or SIGTERM, nor for a client that hung up before its job's turn came; and a
request no offer with a key can take is the client's 400, not the server's 500."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from imgroute import policy
from imgroute.providers.registry import KEY_ENV
from tests.helpers import states, wait_for
from tests.serve.conftest import Served

GENERATIONS = "/v1/images/generations"


def limits_file(home, **limits: str) -> None:
    """config.yaml with each provider's limits (as YAML flow maps) and every other provider unpaced."""
    home.mkdir(parents=True, exist_ok=True)
    lines = [f"  {name}: {value}\n" for name, value in limits.items()]
    (home / "config.yaml").write_text("limits:\n" + "".join(lines))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """`imgroute serve` as a process of its own (signals go to it, not to pytest)."""

    def __init__(self, home, tmp_path):
        self.port = free_port()
        self.errors = tmp_path / "serve-stderr.txt"
        env = {**os.environ, "IMGROUTE_HOME": str(home)}
        with open(self.errors, "w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "imgroute", "serve", "--port", str(self.port), "--out", str(tmp_path / "o")],
                env=env,
                stderr=stderr,
            )
        wait_for(self.answering)

    def answering(self) -> bool:
        assert self.proc.poll() is None, self.errors.read_text()
        try:
            httpx.get(f"http://127.0.0.1:{self.port}/v1/models", timeout=1).raise_for_status()
        except httpx.HTTPError:
            return False
        return True

    def send_at_once(self, bodies: list[dict], answers: list) -> list[threading.Thread]:
        def send(body: dict) -> None:
            try:
                answers.append(httpx.post(f"http://127.0.0.1:{self.port}{GENERATIONS}", json=body, timeout=60))
            except httpx.HTTPError as exc:  # (a second signal may cut a connection)
                answers.append(exc)

        threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
        for thread in threads:
            thread.start()
        return threads

    def log(self) -> str:
        return self.errors.read_text()


def jobs_in_ledger(home) -> list[dict]:
    listed = subprocess.run(
        [sys.executable, "-m", "imgroute", "jobs", "--json"],
        env={**os.environ, "IMGROUTE_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_sends_nothing_more_and_the_queued_requests_end_cancelled(fakes, isolated_home, tmp_path, stop, code):
    limits_file(isolated_home, openai="{concurrency: 1, per_minute: 100000}")
    fakes["openai"].job_seconds = 1.5  # each generation holds its request open this long
    server = ServeProcess(isolated_home, tmp_path)
    answers: list = []
    body = {"prompt": "a fox", "quality": "low", "imgroute": {"provider": "openai"}}
    threads = server.send_at_once([dict(body, prompt=f"fox {i}") for i in range(4)], answers)
    wait_for(lambda: len(fakes["openai"].calls(GENERATIONS, "POST")) == 1)  # one generating, three queued
    server.proc.send_signal(stop)
    for thread in threads:
        thread.join(30)
    server.proc.wait(30)
    log = server.log()
    assert server.proc.returncode == code, log
    fakes["openai"].settle()
    assert len(fakes["openai"].calls(GENERATIONS, "POST")) == 1 and fakes["openai"].charges == 1
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 503, 503, 503], log
    refused = [answer.json() for answer in answers if answer.status_code == 503]
    assert all(
        a["error"]["code"] == "server_stopping" and "nothing was charged" in a["error"]["message"] for a in refused
    )
    states = sorted(job["state"] for job in jobs_in_ledger(isolated_home))
    assert states == ["cancelled", "cancelled", "cancelled", "succeeded"]
    assert "Traceback" not in log


def test_a_second_signal_stops_waiting_and_leaves_the_jobs_sent_to_resume(fakes, isolated_home, tmp_path):
    limits_file(isolated_home, kie="{concurrency: 4, per_minute: 100000}")
    fakes["kie"].job_seconds = 30
    server = ServeProcess(isolated_home, tmp_path)
    answers: list = []
    body = {"prompt": "an owl", "imgroute": {"provider": "kie"}}
    server.send_at_once([dict(body, prompt=f"owl {i}") for i in range(2)], answers)
    wait_for(lambda: fakes["kie"].charges == 2)
    server.proc.send_signal(signal.SIGINT)
    wait_for(lambda: "stopping" in server.log())
    server.proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    server.proc.wait(10)
    assert server.proc.returncode == 130 and time.monotonic() - started < 5, server.log()
    assert {job["state"] for job in jobs_in_ledger(isolated_home)} <= {"submitted", "running"}
    fakes["kie"].job_seconds = None
    resumed = subprocess.run(
        [sys.executable, "-m", "imgroute", "jobs", "resume", "--all", "--json"],
        env={**os.environ, "IMGROUTE_HOME": str(isolated_home), "IMGROUTE_TIME_SCALE": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [job["state"] for job in jobs_in_ledger(isolated_home)] == ["succeeded", "succeeded"]
    assert fakes["kie"].charges == 2


def test_the_job_of_a_client_that_hung_up_before_its_turn_is_not_sent(fakes, isolated_home):
    limits_file(isolated_home, openai="{concurrency: 1, per_minute: 100000}")
    fakes["openai"].job_seconds = 1.0
    server = Served(fakes, isolated_home)
    try:
        url = server.url.removesuffix("/v1") + GENERATIONS
        body = {"prompt": "a fox", "quality": "low", "imgroute": {"provider": "openai"}}
        first: list = []
        holder = threading.Thread(target=lambda: first.append(httpx.post(url, json=body, timeout=30)))
        holder.start()
        wait_for(lambda: len(fakes["openai"].calls(GENERATIONS, "POST")) == 1)
        late = dict(body, prompt="a hare")
        with pytest.raises(httpx.ReadTimeout):  # it waits its turn behind the first, and gives up
            httpx.post(url, json=late, timeout=0.3, headers={"x-stainless-retry-count": "0"})
        holder.join(30)
        assert first[0].status_code == 200
        wait_for(lambda: states(isolated_home, "jobs").count("cancelled") == 1)
        time.sleep(0.3)  # a moment in which a job still queued would have been sent
        assert len(fakes["openai"].calls(GENERATIONS, "POST")) == 1 and fakes["openai"].charges == 1
        # The SDK's retry of the request that timed out is a job of its own (not the cancelled one's end).
        again = httpx.post(url, json=late, timeout=30, headers={"x-stainless-retry-count": "1"})
        assert again.status_code == 200, again.text
        assert len(fakes["openai"].calls(GENERATIONS, "POST")) == 2
    finally:
        server.stop()


def test_a_request_no_keyed_offer_can_take_is_a_400_with_each_offers_reason(fakes, isolated_home, monkeypatch):
    for provider, variable in KEY_ENV.items():
        if provider != "kie":
            monkeypatch.delenv(variable, raising=False)
    server = Served(fakes, isolated_home)
    try:
        with pytest.raises(openai.BadRequestError) as refused:
            server.client(max_retries=0).images.generate(prompt="a fox", size="1024x1024")
        error = refused.value.body
        assert refused.value.status_code == 400 and error["code"] == "no_offer", error
        message = error["message"]
        assert "kie/gpt-image-2-text-to-image:" in message  # the keyed offer, and why it cannot
        assert "openai/gpt-image-2: no key" in message  # the offers that would need a key
        assert "imgroute.aspect" in message and "imgroute.resolution" in message  # what to send instead
        assert fakes["kie"].requests == []
    finally:
        server.stop()


def test_start_up_names_each_limit_too_slow_for_many_clients_and_how_to_raise_it(fakes, isolated_home, tmp_path):
    isolated_home.mkdir(parents=True, exist_ok=True)  # the built-in limits: no config.yaml
    server = ServeProcess(isolated_home, tmp_path)
    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(20)
    log = server.log()
    assert "warning: openai takes 5 submits a minute, 5 jobs at once" in log  # OpenAI's tier-1 defaults
    assert "limits: {openai: {concurrency: N, per_minute: N}}" in log
    assert "warning: fal takes 2 jobs at once" in log
    assert "warning: kie" not in log  # 50 at once, 120 a minute: it keeps up


def test_fifty_synchronous_generations_at_once_hold_no_thread_each(fakes, isolated_home):
    limits_file(isolated_home, openai="{concurrency: 100, per_minute: 100000}")
    fakes["openai"].job_seconds = 1.0  # each generation holds its request open a second
    server = Served(fakes, isolated_home)
    try:
        url = server.url.removesuffix("/v1") + GENERATIONS
        answers: list = []
        peak = 0

        def send(i: int) -> None:
            body = {"prompt": f"fox {i}", "quality": "low", "imgroute": {"provider": "openai"}}
            answers.append(httpx.post(url, json=body, timeout=60).status_code)

        clients = [threading.Thread(target=send, args=(i,)) for i in range(50)]
        for client in clients:
            client.start()
        while any(client.is_alive() for client in clients):
            ours = [t for t in threading.enumerate() if t.name.startswith("imgroute-")]
            peak = max(peak, len(ours))
            time.sleep(0.05)
        assert answers == [200] * 50
        assert fakes["openai"].peak_in_flight >= 40  # they did generate at once
        # its workers, the exchanges' loop, a stand-in or two (was a thread per generation)
        assert peak <= policy.SERVE_WORKERS + 4, peak
    finally:
        server.stop()


def test_a_job_stopped_part_way_is_not_answered_as_nothing_charged():
    """A stop can end a job CANCELLED after some of its requests went out (stopped_partway): its
    client must not hear "nothing was charged; send it again", and a retry gets its answer."""
    from decimal import Decimal

    from imgroute.errors import Interrupted
    from imgroute.jobs.state import JobResult
    from imgroute.serve.app import http_error
    from imgroute.serve.gateway import Served, cancelled

    stopped = Interrupted("stopped before this job was sent", "send it again")
    result = JobResult(
        job_id="j1", status="cancelled", provider="openai", model="gpt-image-2", plan=None,
        estimate=Decimal("0.04"), actual=None, actual_source=None, images=(), attempts=(), elapsed=1.0,
        error=stopped,
    )  # fmt: skip
    unsent = Served(result=result, error=stopped, planned=None, sent=False)
    part_way = Served(result=result, error=stopped, planned=None, sent=True)
    assert cancelled(unsent) and http_error(unsent).status == 503
    assert not cancelled(part_way)
    refused = http_error(part_way)
    assert refused.status != 503 and refused.retry is False and "nothing was charged" not in refused.args[0]
