"""Kie.ai Market jobs API: createTask, poll recordInfo; one image per task.

Kie reports errors in the body's `code`, often with HTTP 200, and returns `resultJson` as a JSON
string that must be decoded a second time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imgroute import policy
from imgroute.errors import JobFailed, MalformedAnswer, ProviderTrouble, SubmitUnknown, TroubleKind
from imgroute.models import JobSpec
from imgroute.net.http import Http
from imgroute.providers.base import (
    Adapter,
    KeyCheck,
    Output,
    Poll,
    PreparedRequest,
    Submission,
    as_balance,
    json_or_none,
    moderated,
)

# Body codes, from Kie's error table.
CODE_KINDS = {
    401: TroubleKind.AUTH,
    402: TroubleKind.CREDITS,
    433: TroubleKind.CREDITS,
    429: TroubleKind.RATE_LIMITED,
    422: TroubleKind.REJECTED,
    400: TroubleKind.REJECTED,
    404: TroubleKind.REJECTED,
    505: TroubleKind.REJECTED,
    455: TroubleKind.SERVER,
    500: TroubleKind.SERVER,
    501: TroubleKind.SERVER,
}
# Codes of recordInfo that end a task (docs.kie.ai/market/common/get-task-detail, Error codes):
# 422 "Validation error in original request: check the failMsg", 501 "Generation failed: check
# failMsg". The task was accepted and then failed, as a `state: fail` task is.
TASK_FAILED_CODES = {422, 501}
RUNNING = {"waiting": "queued", "queuing": "queued", "generating": "running"}


class KieAdapter(Adapter):
    provider = "kie"
    documented_origin = "https://api.kie.ai"
    upload_origin = "https://kieai.redpandaai.co"  # Kie's file upload service (files kept ~3 days)
    poll_schedule = (2.0, 1.5, 15.0)  # Kie's advice: start at 2-3 s, back off to 15-30 s

    def __init__(self, key: str, base_url: str | None = None):
        super().__init__(key, base_url)
        # IMGROUTE_KIE_BASE_URL replaces both of Kie's origins (the fakes serve both).
        self.upload_base = (base_url or self.upload_origin).rstrip("/")

    def auth_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def prepare(self, spec: JobSpec) -> PreparedRequest:
        body: dict[str, Any] = {
            "model": spec.model,
            "input": {"prompt": spec.prompt, "aspect_ratio": spec.aspect, "resolution": spec.resolution},
        }
        if spec.images:
            body["input"]["input_urls"] = list(spec.images)
        return PreparedRequest(
            method="POST",
            url=f"{self.base}/api/v1/jobs/createTask",
            headers={"Content-Type": "application/json"},
            body=body,
        )

    def submit(self, http: Http, spec: JobSpec) -> Submission:
        response = self.send(http, self.prepare(spec), timeout=policy.READ_TIMEOUT_S)
        try:
            body = self.json_of(response, "the createTask answer")
        except MalformedAnswer as exc:
            if response.status_code >= 400:
                raise self.trouble_for_status(response, str(exc)) from None
            raise SubmitUnknown(str(exc)) from None
        code = _code(body, response.status_code)
        if code != 200:
            raise self.trouble(code, body, response)
        task_id = (body.get("data") or {}).get("taskId") if isinstance(body.get("data"), dict) else None
        if not task_id:
            raise SubmitUnknown(f"{self.provider}: createTask said success but gave no taskId")
        return Submission(job_id=task_id, handle={"task_id": task_id})

    def upload(self, http: Http, path: str) -> str:
        """Kie takes only URLs: local files go through its file-stream upload first."""
        name = Path(path).name
        response = self.post_file(
            http, f"{self.upload_base}/api/file-stream-upload", path, {"uploadPath": "imgroute", "fileName": name}
        )
        body = self.json_of(response, "the upload answer")
        code = _code(body, response.status_code)
        url = (body.get("data") or {}).get("downloadUrl") if isinstance(body.get("data"), dict) else None
        if code != 200 or not url:
            raise self.trouble(code if code != 200 else 500, body, response)
        return url

    def poll(self, http: Http, handle: dict) -> Poll:
        response = self.get(http, f"{self.base}/api/v1/jobs/recordInfo", params={"taskId": handle["task_id"]})
        body = self.json_of(response, "the recordInfo answer")
        code = _code(body, response.status_code)
        fields = body if isinstance(body, dict) else {}
        raw_data = fields.get("data")
        data = raw_data if isinstance(raw_data, dict) else {}
        if code in TASK_FAILED_CODES:
            raise self._failed(data, fallback=str(fields.get("msg") or fields.get("message") or f"code {code}"))
        if code != 200:
            raise self.trouble(code, fields, response)
        state = str(data.get("state", "")).lower()
        if state in RUNNING:
            return Poll(state=RUNNING[state], detail=state)
        if state == "success":
            urls = _result_urls(data.get("resultJson"))
            return Poll(state="succeeded", detail=state, outputs=tuple(Output(url=u) for u in urls), took=_took(data))
        if state == "fail":
            raise self._failed(data, fallback=f"failCode {data.get('failCode')}")
        return Poll(state="running", detail=state or "unknown state")

    def _failed(self, data: dict, fallback: str) -> JobFailed:
        """A task Kie ended as failed: its failMsg (or the answer's message) as the reason.

        The task ran and made no image; whether Kie charges a failed task is not stated (kie.md,
        Pricing; get-task-detail lists the 422 and 501 codes and `state: fail` without a word on
        billing), so the failure is marked `charge_unknown`: the images may go to another offer and
        the task's estimate counts as possibly charged until settled. A moderated task stays final."""
        message = self.clean(str(data.get("failMsg") or fallback))
        flagged = moderated(message)
        return JobFailed(f"{self.provider}: {message}", moderated=flagged, charge_unknown=not flagged)

    def check_key(self, http: Http) -> KeyCheck:
        """`GET /api/v1/chat/credit` (kie.md, 6. Credits balance): free; `data` is the account's
        remaining credits. A bad key is `code: 401`, with HTTP 200 or 401 (kie.md, Open questions 6)."""
        route = "GET /api/v1/chat/credit"
        response = self.ask_free(http, f"{self.base}/api/v1/chat/credit")
        if isinstance(response, KeyCheck):  # the provider could not be reached
            return response
        body = json_or_none(response)
        code = _code(body, response.status_code)
        fields = body if isinstance(body, dict) else {}
        message = self.clean(str(fields.get("msg") or fields.get("message") or ""))
        if code in (401, 403):
            return KeyCheck(state="refused", detail=f"code {code}: {message}".rstrip(": "), route=route)
        if code in (429, 455) or code >= 500:
            return KeyCheck(state="unknown", detail=f"code {code}: {message}".rstrip(": "), route=route, reached=False)
        if code != 200 or not isinstance(body, dict):
            return KeyCheck(state="unknown", detail=f"code {code}: {message}".rstrip(": "), route=route)
        balance = as_balance(body.get("data"))
        return KeyCheck(
            state="valid", detail="", route=route, balance=balance, unit="credits" if balance is not None else None
        )

    def trouble(self, code: int, body: dict, response) -> ProviderTrouble:
        from imgroute.net.http import retry_after_seconds

        message = self.clean(str(body.get("msg") or body.get("message") or f"code {code}"))
        kind = CODE_KINDS.get(code, TroubleKind.SERVER if code >= 500 else TroubleKind.REJECTED)
        return ProviderTrouble(f"{self.provider}: code {code}: {message}", kind, retry_after_seconds(response))


def _code(body, status: int) -> int:
    code = body.get("code") if isinstance(body, dict) else None
    if code is not None:
        try:
            return int(code)
        except (TypeError, ValueError):
            pass
    return status


def _took(data: dict) -> float | None:
    """How long the job ran, from Kie's own millisecond timestamps (None if they are missing)."""
    created, completed = data.get("createTime"), data.get("completeTime")
    if isinstance(created, int) and isinstance(completed, int) and completed >= created > 0:
        return (completed - created) / 1000
    return None


def _result_urls(raw) -> list[str]:
    try:
        decoded = json.loads(raw) if isinstance(raw, str) else raw
        urls = decoded["resultUrls"]
    except (ValueError, TypeError, KeyError):
        raise MalformedAnswer("kie: resultJson has no resultUrls") from None
    if not urls or not all(isinstance(u, str) for u in urls):
        raise MalformedAnswer("kie: resultJson.resultUrls is empty")
    return urls
