"""How long a job ran, by the provider's own clock (what batch aims its first poll at): read from
Kie's millisecond timestamps and Apiframe's ISO times, None whenever they are missing or odd, so
a provider changing its answer costs the estimate, never the job. httpx.MockTransport answers."""

from __future__ import annotations

import httpx
import pytest

from imgroute.net.http import Http
from imgroute.providers.apiframe import ApiframeAdapter
from imgroute.providers.kie import KieAdapter


def poll_with(adapter, body: dict, handle: dict):
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=body)))
    return adapter.poll(Http(client, sleep=lambda seconds: None, scale=1.0), handle)


def kie_record(**times) -> dict:
    data = {"taskId": "t1", "state": "success", "resultJson": '{"resultUrls": ["https://x/1.png"]}', **times}
    return {"code": 200, "msg": "success", "data": data}


@pytest.mark.parametrize(
    ("times", "took"),
    [
        ({"createTime": 1_700_000_000_000, "completeTime": 1_700_000_012_345}, 12.345),
        ({"createTime": 1_700_000_000_000}, None),  # no completeTime
        ({"createTime": "1700000000000", "completeTime": "1700000001000"}, None),  # strings: not as documented
        ({"createTime": 1_700_000_005_000, "completeTime": 1_700_000_000_000}, None),  # completed before created
        ({"createTime": 0, "completeTime": 1000}, None),
    ],
)
def test_kie_duration_comes_from_create_and_complete_time(times, took):
    poll = poll_with(KieAdapter("k", "http://kie"), kie_record(**times), {"task_id": "t1"})
    assert poll.state == "succeeded" and poll.outputs and poll.took == took


def apiframe_job(**times) -> dict:
    return {"id": "j1", "status": "COMPLETED", "result": ["https://x/1.png"], "creditCost": 5, **times}


@pytest.mark.parametrize(
    ("times", "took"),
    [
        ({"createdAt": "2026-11-24T10:00:00.000Z", "completedAt": "2026-11-24T10:00:07.250Z"}, 7.25),
        ({"createdAt": "2026-11-24T10:00:00+00:00", "completedAt": "2026-11-24T11:00:01+01:00"}, 1.0),
        ({"createdAt": "2026-11-24T10:00:00Z"}, None),  # no completedAt
        ({"createdAt": "2026-11-24T10:00:00", "completedAt": "2026-11-24T10:00:05"}, None),  # no zone: ambiguous
        ({"createdAt": "yesterday", "completedAt": "2026-11-24T10:00:05Z"}, None),
        ({"createdAt": 1700000000, "completedAt": 1700000005}, None),
        ({"createdAt": "2026-11-24T10:00:05Z", "completedAt": "2026-11-24T10:00:00Z"}, None),  # backwards
    ],
)
def test_apiframe_duration_comes_from_created_and_completed_at(times, took):
    poll = poll_with(ApiframeAdapter("k", "http://apiframe"), apiframe_job(**times), {"job_id": "j1"})
    assert poll.state == "succeeded" and poll.outputs and poll.took == took


def test_running_jobs_report_no_duration():
    running = {"code": 200, "data": {"taskId": "t1", "state": "generating", "createTime": 1_700_000_000_000}}
    assert poll_with(KieAdapter("k", "http://kie"), running, {"task_id": "t1"}).took is None
