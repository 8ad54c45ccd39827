"""fal.ai queue API for openai/gpt-image-2: submit, poll status_url, fetch response_url.

fal answers 202 while a request is IN_QUEUE / IN_PROGRESS and 200 once COMPLETED; a failed model
run also ends COMPLETED, and then response_url returns the model's own error. fal returns no token
usage, so the actual cost is computed from the delivered size with fal's round-up to the cent.
"""

from __future__ import annotations

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
    data_uri,
    error_message,
    is_url,
    json_or_none,
)

RUNNING = {"IN_QUEUE": "queued", "IN_PROGRESS": "running"}


class FalAdapter(Adapter):
    provider = "fal"
    documented_origin = "https://queue.fal.run"
    platform_origin = "https://api.fal.ai"  # fal's Platform APIs (account, billing)
    poll_schedule = (0.5, 1.5, 3.0)  # fal's clients poll every 0.1-0.5 s; a CLI needs less

    def __init__(self, key: str, base_url: str | None = None):
        super().__init__(key, base_url)
        # IMGROUTE_FAL_BASE_URL replaces both of fal's origins (the fakes serve both).
        self.platform_base = (base_url or self.platform_origin).rstrip("/")

    def auth_headers(self) -> dict:
        return {"Authorization": f"Key {self.key}"}

    def check_key(self, http: Http) -> KeyCheck:
        """`GET https://api.fal.ai/v1/account/billing?expand=credits` (fal docs, Platform APIs,
        platform-apis/v1/account/billing): the account and its credit balance in `credits.currency`.
        It needs a key that may read billing (fal's BILLING, READONLY and FULL key presets): a key
        made for inference only gets 403, which says nothing about the key, so it is "unknown"; a
        locked account's 403 ("User is locked", fal.md, Authentication) is a refusal."""
        route = "GET /v1/account/billing"
        response = self.ask_free(http, f"{self.platform_base}/v1/account/billing?expand=credits")
        if isinstance(response, KeyCheck):  # the provider could not be reached
            return response
        verdict = self.key_verdict(response, route, refused=(401,))
        if response.status_code == 403:
            locked = "locked" in verdict.detail.lower()
            hint = "" if locked else " (this key may not read billing; generating may still work)"
            return verdict._replace(state="refused" if locked else "unknown", detail=verdict.detail + hint)
        if verdict.state != "valid":
            return verdict
        try:
            credits = response.json().get("credits") or {}
        except (ValueError, AttributeError):
            return verdict
        balance = as_balance(credits.get("current_balance")) if isinstance(credits, dict) else None
        unit = str(credits.get("currency") or "USD") if balance is not None else None
        return verdict._replace(balance=balance, unit=unit)

    def prepare(self, spec: JobSpec) -> PreparedRequest:
        body: dict[str, Any] = {
            "prompt": spec.prompt,
            "image_size": {"width": spec.width, "height": spec.height},
            "quality": spec.quality,  # fal's default is high: always send it
            "num_images": spec.n,
            "output_format": spec.output_format,
        }
        if spec.images:  # the /edit endpoint: public URLs as given, local files as data URIs
            body["image_urls"] = [p if is_url(p) else data_uri(p) for p in spec.images]
            if spec.mask:
                body["mask_url"] = spec.mask if is_url(spec.mask) else data_uri(spec.mask)
        return PreparedRequest(
            method="POST", url=f"{self.base}/{spec.model}", headers={"Content-Type": "application/json"}, body=body
        )

    def submit(self, http: Http, spec: JobSpec) -> Submission:
        response = self.send(http, self.prepare(spec), timeout=policy.READ_TIMEOUT_S)
        if response.status_code >= 400:
            raise self.failure(response)
        try:
            body = self.json_of(response, "the submit answer")
            request_id = body["request_id"]
            handle = {
                "request_id": request_id,
                "status_url": self.own_url(body["status_url"], spec.model, request_id, "/status"),
                "response_url": self.own_url(body["response_url"], spec.model, request_id, ""),
            }
        except (MalformedAnswer, KeyError, TypeError) as exc:
            raise SubmitUnknown(f"{self.provider}: the submit answer could not be read: {exc}") from None
        return Submission(job_id=request_id, handle=handle)

    def own_url(self, given: str, model: str, request_id: str, suffix: str) -> str:
        """fal's docs say to use the URLs it returns; one on another host would get the key, so it
        is replaced by the documented one on fal's own queue origin (owner/app/requests/id)."""
        if isinstance(given, str) and self.owns(given):
            return given
        owner_app = "/".join(model.split("/")[:2])
        return f"{self.base}/{owner_app}/requests/{request_id}{suffix}"

    def poll(self, http: Http, handle: dict) -> Poll:
        response = self.get(http, handle["status_url"])
        if response.status_code >= 400:
            raise self.failure(response)
        status = str(self.json_of(response, "the status answer").get("status", "")).upper()
        if status in RUNNING:
            return Poll(state=RUNNING[status], detail=status)
        # COMPLETED (or a state the official clients do not know): the result says how it ended.
        return self.result(http, handle, status)

    def result(self, http: Http, handle: dict, status: str) -> Poll:
        response = self.get(http, handle["response_url"])
        body = self.json_of(response, "the result") if response.content else None
        if response.status_code == 200 and isinstance(body, dict) and body.get("images"):
            outputs = tuple(Output(url=image["url"]) for image in body["images"])
            return Poll(state="succeeded", detail=status, outputs=outputs)
        message = self.clean(error_message(body, f"HTTP {response.status_code}"))
        moderated = _is_content_policy(body)
        if response.status_code in (401, 403) or response.status_code >= 500:
            raise self.failure(response)
        raise JobFailed(f"{self.provider}: {message}", moderated=moderated)

    def failure(self, response) -> Exception:
        body = json_or_none(response)
        message = error_message(body, response.text[:200] or f"HTTP {response.status_code}")
        if _is_content_policy(body):
            return JobFailed(f"{self.provider}: {self.clean(message)}", moderated=True)
        trouble = self.trouble_for_status(response, message)
        if response.status_code == 403 and ("balance" in message.lower() or "locked" in message.lower()):
            return ProviderTrouble(str(trouble), TroubleKind.CREDITS)
        return trouble


def _is_content_policy(body) -> bool:
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        return any(isinstance(d, dict) and d.get("type") == "content_policy_violation" for d in body["detail"])
    return False
