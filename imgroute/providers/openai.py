"""OpenAI Images API: synchronous POST /v1/images/generations, Bearer auth, base64 results."""

from __future__ import annotations

import base64
import binascii

import httpx

from imgroute import policy
from imgroute.errors import JobFailed, MalformedAnswer, ProviderTrouble, SubmitUnknown, TroubleKind
from imgroute.models import JobSpec
from imgroute.net.http import Http
from imgroute.providers.base import (
    Adapter,
    KeyCheck,
    Output,
    PreparedRequest,
    Submission,
    Usage,
    error_message,
    json_or_none,
)

MODERATION_CODES = {"moderation_blocked", "content_policy_violation"}


class OpenAIAdapter(Adapter):
    provider = "openai"
    documented_origin = "https://api.openai.com"
    synchronous = True
    path = "/v1/images/generations"
    edit_path = "/v1/images/edits"
    image_field = "image[]"  # the SDK's name for repeated image parts
    # Our request's marker as OpenAI's end-user field. `user` is deprecated in favour of
    # `safety_identifier` (openai-python 3.63, `types/image_generate_params.py` and
    # `image_edit_params.py`: "A non-empty value takes precedence over the deprecated `user`
    # parameter"); relays keep `user`, which is what they document.
    end_user_field = "safety_identifier"

    def auth_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def body(self, spec: JobSpec) -> dict:
        return {
            "model": spec.model,
            "prompt": spec.prompt,
            "size": f"{spec.width}x{spec.height}",
            "quality": spec.quality,
            "n": spec.n,
            "output_format": spec.output_format,
            self.end_user_field: spec.client_ref,
            **_set(background=spec.background, moderation=spec.moderation),
        }

    def check_key(self, http: Http) -> KeyCheck:
        """`GET /v1/models`: free, and refused (401) for a wrong key (openai-compat.md, Other
        endpoints; the SDK's `models.list`)."""
        url = f"{self.base}/v1/models"
        response = self.ask_free(http, url)
        if isinstance(response, KeyCheck):  # the provider could not be reached
            return response
        return self.key_verdict(response, "GET /v1/models")

    def prepare(self, spec: JobSpec) -> PreparedRequest:
        if not spec.images:
            return PreparedRequest(
                method="POST",
                url=self.base + self.path,
                headers={"Content-Type": "application/json"},
                body=self.body(spec),
            )
        files = tuple((self.image_field, path) for path in spec.images)
        if spec.mask:
            files += (("mask", spec.mask),)
        return PreparedRequest(
            method="POST", url=self.base + self.edit_path, headers={}, body=self.body(spec), files=files
        )

    def submit(self, http: Http, spec: JobSpec) -> Submission:
        return self.read_submission(spec, self.send(http, self.prepare(spec), timeout=policy.SYNC_READ_TIMEOUT_S))

    def read_submission(self, spec: JobSpec, response: httpx.Response) -> Submission:
        if response.status_code != 200:
            raise self.failure(response)
        try:
            body = self.json_of(response, "the generation answer")
            outputs = tuple(self.output(item) for item in body["data"])
        except (MalformedAnswer, KeyError, TypeError) as exc:
            # The provider answered 200, so it generated (and billed) the images: never resend.
            raise SubmitUnknown(f"{self.provider}: unreadable answer after a successful request: {exc}") from None
        if len(outputs) != spec.n:
            raise SubmitUnknown(f"{self.provider}: asked for {spec.n} images, got {len(outputs)}")
        return Submission(job_id=self.job_id_of(response, body), handle={}, outputs=outputs, usage=self.usage_of(body))

    def job_id_of(self, response: httpx.Response, body: dict) -> str | None:
        return response.headers.get("x-request-id")

    def usage_of(self, body: dict) -> Usage | None:
        return usage_of(body.get("usage"))

    def output(self, item: dict) -> Output:
        if item.get("b64_json"):
            try:
                return Output(data=base64.b64decode(item["b64_json"], validate=True))
            except (binascii.Error, ValueError):
                raise MalformedAnswer("b64_json is not valid base64") from None
        if item.get("url"):
            return Output(url=item["url"])
        raise MalformedAnswer("an image entry has neither b64_json nor url")

    def failure(self, response: httpx.Response) -> Exception:
        body = json_or_none(response)
        message = error_message(body, response.text[:200] or f"HTTP {response.status_code}")
        err = body.get("error") if isinstance(body, dict) else None
        code = err.get("code") if isinstance(err, dict) else None
        if code in MODERATION_CODES or "safety system" in message:
            return JobFailed(f"{self.provider}: {self.clean(message)}", moderated=True)
        trouble = self.trouble_for_status(response, message)
        if code == "insufficient_quota" or (isinstance(code, str) and "billing" in code):
            return ProviderTrouble(str(trouble), TroubleKind.CREDITS)
        return trouble


def _set(**values: str) -> dict:
    """The optional fields that are not left to the provider's default ("auto")."""
    return {name: value for name, value in values.items() if value != "auto"}


def usage_of(raw) -> Usage | None:
    """OpenAI's `usage` block (also PiAPI's), read leniently: details are optional."""
    if not isinstance(raw, dict):
        return None
    inputs = raw.get("input_tokens_details") or {}
    outputs = raw.get("output_tokens_details") or {}
    total_in = int(raw.get("input_tokens") or 0)
    image_in = int(inputs.get("image_tokens") or 0)
    total_out = int(raw.get("output_tokens") or 0)
    text_out = int(outputs.get("text_tokens") or 0)
    return Usage(
        text_input=int(inputs.get("text_tokens", total_in - image_in) or 0),
        image_input=image_in,
        image_output=int(outputs.get("image_tokens", total_out - text_out) or 0),
        text_output=text_out,
    )
