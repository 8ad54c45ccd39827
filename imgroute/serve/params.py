"""What an OpenAI Images API request asks for, read as imgroute's API arguments.

`/v1/images/generations` sends JSON; `/v1/images/edits` sends multipart form fields, every one a
string. Both are read here into an ImageCall: the keyword arguments of `imgroute.api.plan`, plus
the identity of the request (so a client's retry of it joins the job already running). A value
imgroute cannot honour is refused with OpenAI's 400 naming the parameter, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple, cast

from imgroute.errors import ParamError
from imgroute.options import HINTS

MODEL = "gpt-image-2"
QUALITY_AUTO = "medium"  # OpenAI's `auto` leaves the tier to the model; imgroute prices medium

# Accepted because SDKs and tools send them, with no effect on what is generated.
IGNORED = {"user", "safety_identifier"}
COMMON = {"prompt", "model", "n", "size", "quality", "background", "output_format", "moderation", "imgroute"}
COMMON |= {"response_format", "output_compression", "stream", "partial_images"} | IGNORED
GENERATION_FIELDS = COMMON | {"style"}
EDIT_FIELDS = COMMON | {"input_fidelity"}


class ImageCall(NamedTuple):
    options: dict  # imgroute.api.plan's keyword arguments (prompt included)
    dry_run: bool
    identity: str  # the same request sent again (a client's retry) has the same identity
    output_format: str
    inputs: Path | None = None  # the folder of an edit's uploaded files (see Gateway: kept while needed)
    uploads: tuple[tuple[str, str], ...] = ()  # (where an upload was saved, the name the client gave it)

    def in_client_terms(self, text: str) -> str:
        """A message with each saved upload's path (the server's own) as the client named it."""
        for saved, name in self.uploads:
            text = text.replace(saved, name)
        return text


def read_generation(body: Any, profiles: dict, offers: set[str]) -> ImageCall:
    if not isinstance(body, dict):
        raise ParamError("The body must be a JSON object.")
    return _read(body, GENERATION_FIELDS, profiles, offers, images=[], mask=None, files_digest="")


def read_edit(fields: dict[str, str | list[str]], files: tuple, profiles, offers) -> ImageCall:
    """Form fields (strings) with the uploaded files already saved: `files` is (their folder, the
    images' paths, the mask's path or None, the digest of their names and contents)."""
    inputs, images, mask, digest = files
    if not images:
        raise ParamError("Missing required parameter: 'image'.", "image")
    body: dict[str, Any] = {}
    hints: dict[str, Any] = {}
    for name, value in fields.items():  # the SDK sends extra_body={"imgroute": {...}} as imgroute[key]
        if name.startswith("imgroute[") and name.endswith("]"):
            hints[name[len("imgroute[") : -1]] = _form_value(value)
        else:
            body[name] = value
    if hints:
        body["imgroute"] = hints
    for name in ("n", "output_compression", "partial_images"):
        if name in body:
            body[name] = _integer(body[name], name)
    if "stream" in body:
        body["stream"] = str(body["stream"]).strip().lower() in ("true", "1")
    if isinstance(body.get("imgroute"), str):
        try:
            body["imgroute"] = json.loads(body["imgroute"])
        except ValueError:
            raise ParamError("'imgroute' must be a JSON object of routing hints.", "imgroute") from None
    return _read(body, EDIT_FIELDS, profiles, offers, images=images, mask=mask, files_digest=digest, inputs=inputs)


def _read(body: dict, allowed: set[str], profiles, offers, images, mask, files_digest, inputs=None) -> ImageCall:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ParamError(f"Unknown parameter: '{unknown[0]}'.", unknown[0])
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ParamError("Missing required parameter: 'prompt'.", "prompt")
    _refuse_unsupported(body)
    options: dict[str, Any] = {"prompt": prompt, "images": images, "mask": mask}
    options.update(_model(body.get("model"), profiles, offers))
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int):
        raise ParamError("Invalid type for 'n': expected an integer.", "n")
    options["n"] = n
    quality = body.get("quality", "auto")
    options["quality"] = QUALITY_AUTO if quality in (None, "auto") else _text(quality, "quality")
    size = body.get("size")
    if size not in (None, "auto"):
        options["size"] = _text(size, "size")
    for name in ("background", "moderation", "output_format"):
        if body.get(name) is not None:
            options[name] = _text(body[name], name)
    hints = body.get("imgroute") or {}
    if not isinstance(hints, dict):
        raise ParamError("'imgroute' must be an object of routing hints.", "imgroute")
    dry_run = False
    for name, value in hints.items():
        if name not in HINTS:
            raise ParamError(f"Unknown routing hint 'imgroute.{name}' (known: {', '.join(HINTS)}).", f"imgroute.{name}")
        if name == "dry_run":
            dry_run = bool(value)
        else:
            options[cast(str, HINTS[name])] = value  # (only dry_run's hint names no option)
    if "size" in options and ("aspect" in options or "resolution" in options):
        raise ParamError("Give either 'size' or the 'imgroute' aspect/resolution hints, not both.", "size")
    canonical = json.dumps({k: v for k, v in body.items() if k not in IGNORED}, sort_keys=True, default=str)
    identity = hashlib.sha256(f"{canonical}|{files_digest}".encode()).hexdigest()
    return ImageCall(
        options=options,
        dry_run=dry_run,
        identity=identity,
        output_format=options.get("output_format", "png"),
        inputs=inputs,
    )


def _refuse_unsupported(body: dict) -> None:
    if body.get("stream"):
        raise ParamError("Streaming is not supported by imgroute: omit 'stream'.", "stream")
    if body.get("partial_images") not in (None, 0):
        raise ParamError("Partial images are not supported by imgroute (they need streaming).", "partial_images")
    if body.get("response_format") not in (None, "b64_json"):
        raise ParamError("imgroute returns images as b64_json only.", "response_format")
    if body.get("output_compression") not in (None, 100):
        raise ParamError("output_compression is not supported by imgroute's routes; omit it.", "output_compression")
    if body.get("style") is not None:
        raise ParamError("'style' is a DALL-E 3 parameter; gpt-image-2 has none.", "style")
    if body.get("input_fidelity") not in (None, "low"):
        raise ParamError("input_fidelity 'high' is not offered by imgroute's routes; omit it.", "input_fidelity")


def _model(value, profiles: dict, offers: set[str]) -> dict:
    """`gpt-image-2`, a profile from config.yaml (a named set of hints), or an offer id to pin."""
    if value in (None, MODEL):
        return {}
    name = _text(value, "model")
    if name in profiles:
        return {HINTS[k]: v for k, v in profiles[name].items()}
    if name in offers:
        return {"providers": [name]}
    known = ", ".join([MODEL, *sorted(profiles), *sorted(offers)])
    raise ParamError(f"The model '{name}' does not exist here (models: {known}).", "model")


def _form_value(value):
    """A form field's text as the JSON value it stands for: true/false, or the text itself."""
    if isinstance(value, list):
        return value
    return {"true": True, "false": False}.get(value.strip().lower(), value)


def _text(value, name: str) -> str:
    if not isinstance(value, str):
        raise ParamError(f"Invalid type for '{name}': expected a string.", name)
    return value


def _integer(value: str, name: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ParamError(f"Invalid value for '{name}': expected an integer.", name) from None
