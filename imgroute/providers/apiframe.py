"""Apiframe v2: POST /v2/images/generate with X-API-Key and an Idempotency-Key, poll /v2/jobs/{id}.

The Idempotency-Key makes a repeated submit replay the first answer instead of creating a second
job, so this is the one provider whose submit may be retried after a timeout. FAILED jobs are
refunded; `creditCost` is what was charged.
"""

from __future__ import annotations

from datetime import datetime
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
    Usage,
    as_balance,
    error_message,
    is_url,
    json_or_none,
    moderated,
)
from imgroute.providers.openai import _set

RUNNING = {"QUEUED": "queued", "PROCESSING": "running"}


class ApiframeAdapter(Adapter):
    provider = "apiframe"
    documented_origin = "https://api.apiframe.ai"
    idempotent_submit = True
    poll_schedule = (2.0, 1.25, 5.0)  # Apiframe: poll every 2-3 s, ~15 s per image

    def auth_headers(self) -> dict:
        return {"X-API-Key": self.key}

    def check_key(self, http: Http) -> KeyCheck:
        """`GET /v2/me` ("Useful for verifying credentials", Apiframe's OpenAPI spec in its Node SDK,
        apiframe-ai/apiframe-nodejs-sdk `openapi.json`): the team's credit balance in
        `team.credits`; 401 for a missing or wrong key, 403 for an inactive one."""
        response = self.ask_free(http, f"{self.base}/v2/me")
        if isinstance(response, KeyCheck):  # the provider could not be reached
            return response
        verdict = self.key_verdict(response, "GET /v2/me", refused=(401, 403))
        if verdict.state != "valid":
            return verdict
        try:
            team = response.json().get("team") or {}
        except (ValueError, AttributeError):
            return verdict
        balance = as_balance(team.get("credits")) if isinstance(team, dict) else None
        return verdict._replace(balance=balance, unit="credits" if balance is not None else None)

    def prepare(self, spec: JobSpec) -> PreparedRequest:
        body: dict[str, Any] = {
            "model": spec.model,
            "prompt": spec.prompt,
            "gptImage2Params": {
                "quality": spec.quality,
                "aspect_ratio": spec.aspect,
                "output_format": spec.output_format,
                "number_of_images": spec.n,
                **_set(background=spec.background, moderation=spec.moderation),
            },
        }
        if spec.images:
            body["gptImage2Params"]["input_images"] = list(spec.images)
        headers = {"Content-Type": "application/json", "Idempotency-Key": spec.client_ref}
        return PreparedRequest(method="POST", url=f"{self.base}/v2/images/generate", headers=headers, body=body)

    def submit(self, http: Http, spec: JobSpec) -> Submission:
        response = self.send(http, self.prepare(spec), timeout=policy.READ_TIMEOUT_S)
        if response.status_code >= 400:
            raise self.failure(response)
        try:
            job_id = self.json_of(response, "the submit answer")["jobId"]
        except (MalformedAnswer, KeyError, TypeError) as exc:
            raise SubmitUnknown(f"{self.provider}: the submit answer could not be read: {exc}") from None
        return Submission(job_id=job_id, handle={"job_id": job_id})

    def upload(self, http: Http, path: str) -> str:
        """Apiframe takes URLs: local files go through POST /v2/uploads (kept ~1-2 h) first.

        Confirmed by Apiframe's OpenAPI spec (apiframe-ai/apiframe-nodejs-sdk `openapi.json`, commit
        9f9b464, and its `src/resources/uploads.ts`): a multipart body whose required part is
        `file`, answered 201 with an `Upload` whose required `url` is the CDN URL to pass on."""
        response = self.post_file(http, f"{self.base}/v2/uploads", path)
        if response.status_code >= 400:
            raise self.failure(response)
        url = self.json_of(response, "the upload answer").get("url")
        if not isinstance(url, str) or not is_url(url):
            raise ProviderTrouble(f"{self.provider}: the upload answer has no url", TroubleKind.SERVER)
        return url

    def poll(self, http: Http, handle: dict) -> Poll:
        response = self.get(http, f"{self.base}/v2/jobs/{handle['job_id']}")
        if response.status_code >= 400:
            raise self.failure(response)
        body = self.json_of(response, "the job answer")
        status = str(body.get("status", "")).upper()
        credits = body.get("creditCost")
        usage = Usage(credits=int(credits)) if isinstance(credits, (int, float)) else None
        if status in RUNNING:
            return Poll(state=RUNNING[status], detail=status, progress=body.get("progress"), usage=usage)
        if status == "COMPLETED":
            if body.get("expired"):
                raise JobFailed(f"{self.provider}: the job's output files have expired")
            urls = _result_urls(body.get("result"))
            outputs = tuple(Output(url=u) for u in urls)
            return Poll(state="succeeded", detail=status, outputs=outputs, usage=usage, took=_took(body))
        if status in ("FAILED", "CANCELLED"):
            message = self.clean(str(body.get("error") or status.lower()))
            flagged = moderated(message)
            raise JobFailed(f"{self.provider}: {message} (credits refunded)", moderated=flagged)
        return Poll(state="running", detail=status or "unknown status", usage=usage)

    def failure(self, response) -> Exception:
        body = json_or_none(response)
        return self.trouble_for_status(response, error_message(body, response.text[:200]))


def _took(body: dict) -> float | None:
    """How long the job ran, from Apiframe's createdAt / completedAt (None if either is unreadable)."""
    try:
        created = datetime.fromisoformat(body["createdAt"])
        completed = datetime.fromisoformat(body["completedAt"])
    except (KeyError, TypeError, ValueError):
        return None
    if created.tzinfo is None or completed.tzinfo is None:
        return None
    seconds = (completed - created).total_seconds()
    return seconds if seconds >= 0 else None


def _result_urls(result) -> list[str]:
    """`result` is documented three ways: a URL, a list of URLs, or {"images": [...]}."""
    if isinstance(result, str):
        return [result]
    if isinstance(result, dict):
        result = result.get("images")
    if isinstance(result, list) and result and all(isinstance(u, str) for u in result):
        return result
    raise MalformedAnswer("apiframe: the completed job has no result images")
