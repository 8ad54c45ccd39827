"""Replicate's official `openai/gpt-image-2`: create a prediction (holding the connection open with
`Prefer: wait`), poll it, download its output URLs at once (they vanish after an hour).

Replicate has no idempotency key. A create whose answer is lost is `unknown`, and resume looks the
prediction up among the account's recent ones by the job's own marker (`user_id`, our request's
client ref) instead of sending it again (`find`).
"""

from __future__ import annotations

import datetime as dt

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
    data_uri,
    error_message,
    is_url,
    json_or_none,
    moderated,
)
from imgroute.providers.openai import _set

MODEL_PATH = "/v1/models/openai/gpt-image-2/predictions"
WAIT_S = 55  # Prefer: wait holds the create open up to 60 s; the read timeout is a little longer
RUNNING = {"starting": "queued", "processing": "running"}
LIST_PAGES = 5  # 500 of the newest predictions: enough for a crash a few minutes ago


class ReplicateAdapter(Adapter):
    provider = "replicate"
    documented_origin = "https://api.replicate.com"
    poll_schedule = (1.5, 1.5, 5.0)  # Replicate's advice: every 1-2 s at first, then about 5 s
    findable = True  # a lost create can be found again by its marker (see `find`)

    def auth_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def check_key(self, http: Http) -> KeyCheck:
        """`GET /v1/account` (the classic client's `accounts.current`, `replicate/account.py`):
        free, 401 for a bad token (replicate.md, Authentication). It carries no balance."""
        response = self.ask_free(http, f"{self.base}/v1/account")
        if isinstance(response, KeyCheck):  # the provider could not be reached
            return response
        return self.key_verdict(response, "GET /v1/account", refused=(401, 403))

    def prepare(self, spec: JobSpec) -> PreparedRequest:
        size = f"{spec.width}x{spec.height}" if spec.exact_size else spec.aspect  # a published size, else a ratio
        data = {
            "prompt": spec.prompt,
            "aspect_ratio": size,
            "quality": spec.quality,
            "number_of_images": spec.n,
            "output_format": spec.output_format,  # the model's default is webp: always say
            "user_id": spec.client_ref,  # our marker, to find the prediction again after a crash
            **_set(background=spec.background, moderation=spec.moderation),
        }
        if spec.images:  # public URLs as given, local files as data URIs (Replicate stores neither)
            data["input_images"] = [p if is_url(p) else data_uri(p) for p in spec.images]
        headers = {"Content-Type": "application/json", "Prefer": f"wait={WAIT_S}"}
        return PreparedRequest(method="POST", url=self.base + MODEL_PATH, headers=headers, body={"input": data})

    def submit(self, http: Http, spec: JobSpec) -> Submission:
        response = self.send(http, self.prepare(spec), timeout=WAIT_S + 10)
        if response.status_code >= 400:
            raise self.failure(response)
        try:
            prediction = self.json_of(response, "the create answer")
            return self.adopt(prediction)
        except (MalformedAnswer, KeyError, TypeError) as exc:
            raise SubmitUnknown(f"{self.provider}: the create answer could not be read: {exc}") from None

    def adopt(self, prediction: dict) -> Submission:
        """A prediction (just created, or found again) as a submission: finished already with its
        outputs (Prefer: wait usually gets that far), or a handle to poll."""
        handle = {"prediction_id": prediction["id"]}
        status = prediction.get("status")
        if status == "succeeded":
            return Submission(job_id=prediction["id"], handle=handle, outputs=self._outputs(prediction))
        if status in RUNNING:
            return Submission(job_id=prediction["id"], handle=handle)
        raise self._failed(prediction)

    def poll(self, http: Http, handle: dict) -> Poll:
        response = self.get(http, f"{self.base}/v1/predictions/{handle['prediction_id']}")
        if response.status_code >= 400:
            raise self.failure(response)
        prediction = self.json_of(response, "the prediction")
        status = str(prediction.get("status", ""))
        if status in RUNNING:
            return Poll(state=RUNNING[status], detail=status)
        if status == "succeeded":
            return Poll(state="succeeded", detail=status, outputs=self._outputs(prediction), took=_took(prediction))
        raise self._failed(prediction)  # failed, canceled, aborted, or a status Replicate added since

    def find(self, http: Http, spec: JobSpec, sent_at: float) -> Submission | None:
        """The prediction a lost create made, if Replicate lists it: the newest predictions made
        since just before it was sent, matched by model and our marker in their input."""
        since = dt.datetime.fromtimestamp(sent_at - 60, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        params: dict[str, str] | None  # the later pages' URLs carry their own
        url, params = f"{self.base}/v1/predictions", {"created_after": since}
        for _ in range(LIST_PAGES):
            response = self.get(http, url, params=params)
            if response.status_code >= 400:
                raise self.failure(response)
            page = self.json_of(response, "the prediction list")
            for prediction in page.get("results") or []:
                given = prediction.get("input") or {}
                if prediction.get("model") == "openai/gpt-image-2" and given.get("user_id") == spec.client_ref:
                    return self.adopt(prediction)
            url, params = page.get("next"), None
            if not url:
                return None
        return None

    def _outputs(self, prediction: dict) -> tuple[Output, ...]:
        output = prediction.get("output")
        urls = [output] if isinstance(output, str) else output
        if not urls or not all(isinstance(u, str) for u in urls):
            raise MalformedAnswer(f"{self.provider}: the finished prediction has no output URLs")
        return tuple(Output(url=u) for u in urls)

    def _failed(self, prediction: dict) -> Exception:
        status = prediction.get("status") or "unknown"
        message = self.clean(str(prediction.get("error") or status))
        flagged = moderated(message)
        return JobFailed(f"{self.provider}: prediction {status}: {message}", moderated=flagged)

    def failure(self, response) -> Exception:
        body = json_or_none(response)
        trouble = self.trouble_for_status(response, error_message(body, response.text[:200]))
        if response.status_code == 422:  # the model's schema refused a value: not this offer's job
            return ProviderTrouble(str(trouble), TroubleKind.REJECTED)
        return trouble


def _took(prediction: dict) -> float | None:
    """Seconds from creation to completion by Replicate's own clock (metrics.total_time)."""
    total = (prediction.get("metrics") or {}).get("total_time")
    return float(total) if isinstance(total, (int, float)) and total >= 0 else None
