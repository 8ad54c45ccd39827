"""PiAPI's OpenAI-compatible Images API, for gpt-image-2 (tokens) and gpt-image-2-preview (flat).

Same path and shape as OpenAI, but PiAPI can answer with URLs (it rehosts the images), reports
insufficient credits as 402, and may use `{"message": ...}` or `{"code", "message"}` error bodies.

Unverified: `background`, `moderation` and a `mask` part are OpenAI's fields, which PiAPI does not
document (piapi.md, Parameters: "Treat them as pass-through and unverified"). They are sent only
when the request asks for them (a value other than auto, a mask given: the bundled pricing table
offers none of them at PiAPI, so only a user's own table routes such a job here). PiAPI may honour
them, ignore them, or refuse them: a refusal is a 400 that moves the job to another offer (never
charged); an ignored one cannot be seen in the answer, so such a job's result is PiAPI's word only.
Neither end-user field (`user`, `safety_identifier`) is documented by PiAPI: none is sent.
"""

from __future__ import annotations

from imgroute.models import JobSpec
from imgroute.net.http import Http
from imgroute.providers.base import KeyCheck, as_balance
from imgroute.providers.openai import OpenAIAdapter


class PiAPIAdapter(OpenAIAdapter):
    provider = "piapi"
    documented_origin = "https://api.piapi.ai"
    image_field = "image"  # PiAPI's edit takes repeated `image` parts

    def body(self, spec: JobSpec) -> dict:
        body = super().body(spec)
        body.pop(self.end_user_field)  # not documented by PiAPI
        body["response_format"] = "url"  # PiAPI's examples; b64_json answers are read too
        return body

    def check_key(self, http: Http) -> KeyCheck:
        """`GET /account/info` with `x-api-key` (piapi.md, Account / balance): the account and its
        balance, `equivalent_in_usd` in US dollars (doc.qubico.ai account-info). The envelope is
        not documented: the fields are read from `data`, or from the top level."""
        response = self.ask_free(http, f"{self.base}/account/info", {"x-api-key": self.key})
        if isinstance(response, KeyCheck):  # the provider could not be reached
            return response
        verdict = self.key_verdict(response, "GET /account/info")
        if verdict.state != "valid":
            return verdict
        try:
            body = response.json()
        except ValueError:
            return verdict
        if isinstance(body, dict) and body.get("code") not in (None, 0, 200):
            code = body.get("code")
            state = "refused" if code in (401, 403) else "unknown"
            return KeyCheck(
                state=state, detail=f"code {code}: {self.clean(str(body.get('message') or ''))}", route=verdict.route
            )
        info = body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else body
        usd = as_balance(info.get("equivalent_in_usd")) if isinstance(info, dict) else None
        return verdict._replace(balance=usd, unit="USD" if usd is not None else None)
