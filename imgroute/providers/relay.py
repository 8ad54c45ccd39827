"""OpenAI-compatible relays a user declares in a pricing file: the OpenAI Images API under another
base URL, with another key. No code per relay: `bound_to` makes the adapter of one declaration."""

from __future__ import annotations

from imgroute.providers.base import Adapter
from imgroute.providers.openai import OpenAIAdapter


class RelayAdapter(OpenAIAdapter):
    """`/v1/images/generations` and `/v1/images/edits` under the declared base URL (which may carry
    a path prefix), Bearer auth with the key from the declared variable, b64 or URL results. The
    end-user field is `user`, which OpenAI-compatible relays document (not OpenAI's newer
    `safety_identifier`); no free route to check a key is known for a relay."""

    end_user_field = "user"
    check_key = Adapter.check_key  # what a relay documents as free is not known to imgroute

    @classmethod
    def bound_to(cls, spec) -> type[RelayAdapter]:
        return type(f"RelayAdapter[{spec.id}]", (cls,), {"provider": spec.id, "documented_origin": spec.base_url})
