"""The OpenAI Images API over HTTP (Starlette): `POST /v1/images/generations`, `POST
/v1/images/edits`, `GET /v1/models`, answered as OpenAI answers them, plus an `imgroute` report.

Errors come in OpenAI's shape with the statuses the SDK maps to its exception classes, and with
`x-should-retry: false` whenever a retry could pay again (an SDK retries 429 and 5xx by default).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from imgroute import errors
from imgroute.errors import HttpError, ParamError
from imgroute.files import atomic_write, private_dir
from imgroute.money import usd_json
from imgroute.options import respelled, spelled
from imgroute.serve.gateway import Gateway, Served, cancelled, discard_inputs
from imgroute.serve.params import MODEL, read_edit, read_generation

MAX_JSON_BYTES = 1024 * 1024  # a prompt is at most 32,000 characters
MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # an edit's images and mask together
MAX_FILES = 17  # 16 images and a mask
BODY_SECONDS = 60.0  # a client that cannot send its body in this long is cut off (the job never starts)


def build_app(gateway: Gateway, token: str | None, inputs_dir: Path) -> Starlette:
    async def generations(request: Request):
        return await handle(request, "generations")

    async def edits(request: Request):
        return await handle(request, "edits")

    async def models(request: Request):
        try:
            check_token(request, token)
        except HttpError as exc:
            return error_response(exc)
        ids = [MODEL, *sorted(gateway.settings.profiles), *sorted(gateway.offers)]
        data = [{"id": i, "object": "model", "created": 0, "owned_by": "imgroute"} for i in ids]
        return JSONResponse({"object": "list", "data": data}, headers={"x-request-id": _request_id()})

    async def handle(request: Request, kind: str):
        started = time.monotonic()
        try:
            check_token(request, token)
            if kind == "generations":
                call = read_generation(await json_body(request), gateway.settings.profiles, gateway.offers)
            else:
                call = await edit_call(request, gateway, inputs_dir)
        except HttpError as exc:
            return error_response(exc)
        except ParamError as exc:
            return error_response(HttpError(400, str(exc), "invalid_request_error", None, exc.param))
        if call.dry_run:
            response = dry_run_response(gateway, call)
            discard_inputs(call.inputs)
            return response
        key = request.headers.get("idempotency-key")
        if key is not None:
            found = await asyncio.to_thread(gateway.idempotency, key, call)
            if found.verdict != "new":
                discard_inputs(call.inputs)
                return await asyncio.to_thread(keyed_answer, gateway, found, call)
        gone = asyncio.ensure_future(disconnected(request))
        try:  # (under a key, a request of its own: the key, not its content, says what it repeats)
            served, joined = await gateway.run(call, 0 if key is not None else tries_before(request), gone, key)
        finally:  # (a handler cancelled here leaves its key taken until this process ends: never paid twice)
            gone.cancel()
        if key is not None:
            await asyncio.to_thread(gateway.idempotency_end, key, served)
        response = job_response(served, call, joined)
        log_line(request.method, request.url.path, response.status_code, served, started, joined)
        return response

    app = Starlette(
        routes=[
            Route("/v1/images/generations", generations, methods=["POST"]),
            Route("/v1/images/edits", edits, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )
    return app


# -- reading requests ---------------------------------------------------------------------------


def check_token(request: Request, token: str | None) -> None:
    if token is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise HttpError(401, "Incorrect or missing imgroute serve token.", "invalid_request_error", "invalid_api_key")


async def body_bytes(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"The body is over {limit // 1024 // 1024 or 1} MB.", "invalid_request_error")
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"The body is over {limit // 1024 // 1024 or 1} MB.", "invalid_request_error")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), BODY_SECONDS)
    except TimeoutError:
        raise HttpError(408, "The body was not sent in time.", "invalid_request_error") from None
    return b"".join(chunks)


async def json_body(request: Request):
    raw = await body_bytes(request, MAX_JSON_BYTES)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "We could not parse the JSON body of your request.", "invalid_request_error") from None


async def edit_call(request: Request, gateway: Gateway, inputs_dir: Path):
    """The multipart edit: `image` or repeated `image[]`, an optional `mask`, string fields. The
    files are kept (privately) as the job's inputs, so a resume can send them again, until the
    job can no longer be resumed (Gateway.run)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HttpError(400, "The edit endpoint takes multipart/form-data.", "invalid_request_error")
    raw = await body_bytes(request, MAX_UPLOAD_BYTES)

    parsed = Request(request.scope, receive=_receiver(raw))
    try:
        form = await parsed.form(max_files=MAX_FILES, max_fields=64, max_part_size=MAX_JSON_BYTES)
    except Exception as exc:  # python-multipart's errors differ by version: all are a bad body
        raise HttpError(400, f"The multipart body could not be read: {exc}", "invalid_request_error") from None
    folder = private_dir(inputs_dir / uuid.uuid4().hex[:12])
    try:
        return await _edit_from_form(form, folder, gateway)
    except BaseException:  # refused: no job will read these files
        discard_inputs(folder)
        raise


async def _edit_from_form(form, folder: Path, gateway: Gateway):
    from starlette.datastructures import UploadFile

    fields: dict[str, str | list[str]] = {}
    images: list[str] = []
    mask = None
    uploads: list[tuple[str, str]] = []  # (saved path, the client's own name for it)
    digest = hashlib.sha256()
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            digest.update(name.encode() + hashlib.sha256(data).digest())
            stem = Path(value.filename or "image").name or "image"
            path = folder / f"{len(images) + (mask is not None)}-{stem}"
            atomic_write(path, data)  # (0600, like every file imgroute keeps in the home)
            uploads.append((str(path), f"'{stem}'"))
            if name in ("image", "image[]"):
                images.append(str(path))
            elif name == "mask":
                mask = str(path)
            else:
                raise HttpError(400, f"Unknown file field: '{name}'.", "invalid_request_error", None, name)
        elif name.endswith("[]"):  # a list, as the SDK flattens one into form fields
            listed = fields.setdefault(name[:-2], [])
            if not isinstance(listed, list):  # the plain field came first: the same parameter twice
                raise HttpError(400, f"'{name[:-2]}' is given twice.", "invalid_request_error", None, name[:-2])
            listed.append(value)
        elif name in fields:
            raise HttpError(400, f"'{name}' is given twice.", "invalid_request_error", None, name)
        else:
            fields[name] = value
    files = (folder, images, mask, digest.hexdigest())
    call = read_edit(fields, files, gateway.settings.profiles, gateway.offers)
    return call._replace(uploads=tuple(uploads))


def tries_before(request: Request) -> int | None:
    """How many times the client says it tried this request before (the OpenAI SDKs send
    `x-stainless-retry-count`: 0 on a first try); None when it does not say."""
    count = (request.headers.get("x-stainless-retry-count") or "").strip()
    return int(count) if count.isdigit() else None


async def disconnected(request: Request) -> None:
    """Ends when the client hangs up. Called once its body is read, so the server's next message
    is the disconnect (the server answers the request before it reads any other)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _receiver(raw: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return receive


# -- answers ------------------------------------------------------------------------------------


def job_response(served: Served, call, joined: bool):
    if served.error is not None:
        return error_response(http_error(served, call), served)
    result = served.result
    assert result is not None, "a job that ended without an error has its result"
    data = [{"b64_json": base64.b64encode(Path(image.path).read_bytes()).decode(), "revised_prompt": None}
            for image in result.images]  # fmt: skip
    first = result.images[0] if result.images else None
    choice = served.planned.route.choice if served.planned else None
    body = {
        "created": int(time.time()),
        "data": data,
        "output_format": call.output_format,
        "quality": choice.assessment.quality if choice is not None else None,
        "size": f"{first.width}x{first.height}" if first else None,
        "imgroute": report(served, joined),
    }
    if result.usage is not None and result.usage.reports_tokens:  # never an estimate, nor credits, as usage
        body["usage"] = usage_json(result.usage)
    return JSONResponse(body, headers=headers(served, joined), status_code=200)


def usage_json(usage) -> dict:
    """OpenAI's `usage` block from what the providers reported (image and text tokens summed)."""
    text, image = usage.text_input, usage.image_input
    output = usage.image_output + usage.text_output
    return {
        "input_tokens": text + image,
        "input_tokens_details": {"image_tokens": image, "text_tokens": text},
        "output_tokens": output,
        "output_tokens_details": {"image_tokens": usage.image_output, "text_tokens": usage.text_output},
        "total_tokens": text + image + output,
    }


def dry_run_response(gateway: Gateway, call):
    from imgroute.output.report import route_json

    try:
        planned = gateway.plan(call)
    except errors.ImgrouteError as exc:
        return error_response(http_error(Served(result=None, error=exc, planned=None), call))
    route = planned.route
    report = route_json(route)
    report["request"]["images"] = [call.in_client_terms(image) for image in report["request"]["images"]]
    if report["request"]["mask"]:
        report["request"]["mask"] = call.in_client_terms(report["request"]["mask"])
    body = {"created": int(time.time()), "data": [], "imgroute": {"dry_run": True, **report}}
    return JSONResponse(body, headers={"x-request-id": _request_id()})


def report(served: Served, joined: bool) -> dict:
    result = served.result
    assert result is not None, "the report of a job that ran"
    return {
        "job_id": result.job_id,
        "status": str(result.status),
        "provider": result.provider,
        "model": result.model,
        "estimated_cost_usd": usd_json(result.estimate),
        "actual_cost_usd": usd_json(result.actual),
        "files": [str(image.path) for image in result.images],
        "joined": joined,  # a retry of a request already running, answered by that job
        "caveats": list(served.planned.route.caveats) if served.planned is not None else [],
    }


def headers(served: Served, joined: bool) -> dict:
    result = served.result
    out = {"x-request-id": _request_id()}
    if result is not None:
        out["x-imgroute-job"] = result.job_id
        out["x-imgroute-provider"] = f"{result.provider}/{result.model}"
        if result.estimate is not None:
            out["x-imgroute-estimated-cost"] = str(usd_json(result.estimate))
        if result.actual is not None:
            out["x-imgroute-actual-cost"] = str(usd_json(result.actual))
    if joined:
        out["x-imgroute-joined"] = "true"
    return out


def keyed_answer(gateway: Gateway, found, call):
    """A request whose Idempotency-Key was seen before: refused when it came with another request,
    409 (retry later) while its job runs, else its job's answer, its images read from the output
    folder (when this replica can read them: the replicas share one), else 409 naming the job and
    the replica that has them. Nothing is sent to any provider."""
    where = f"job {found.job_id} on {found.host}" if found.job_id else f"a request on {found.host}"
    if found.verdict == "reused":
        return error_response(HttpError(
            400, "This Idempotency-Key was used with a different request; use a new key for a new request.",
            "invalid_request_error", "idempotency_key_reused", retry=False,
        ))  # fmt: skip
    if found.verdict == "running":
        return error_response(HttpError(
            409, f"A request with this Idempotency-Key is in progress ({where}); retry later for its answer.",
            "invalid_request_error", "idempotency_in_progress", retry=True,
        ))  # fmt: skip
    served = gateway.recorded(found.job_id)
    result = served.result
    assert result is not None, "an ended job's record"
    if served.error is not None:
        return error_response(HttpError(
            409, f"The request with this Idempotency-Key ended without its images ({where}): {served.error.message}",
            "invalid_request_error", "idempotency_failed", retry=False,
        ), served)  # fmt: skip
    found_here = [gateway.found_here(image) for image in result.images]
    if None in found_here:
        return error_response(HttpError(
            409, f"The request with this Idempotency-Key ended ({where}); its images are on {found.host}, "
            "not in this server's output folder (give the replicas one shared output folder to answer it anywhere).",
            "invalid_request_error", "idempotency_elsewhere", retry=False,
        ))  # fmt: skip
    return job_response(served._replace(result=result._replace(images=tuple(found_here))), call, joined=True)


def http_error(served: Served, call=None) -> HttpError:
    """An imgroute error as OpenAI's status, type and code, and whether a retry is safe. An edit's
    uploads are named as the client named them (the server's paths are its own business)."""
    error, result = served.error, served.result
    assert error is not None, "an answer of a job refused or failed"
    said, hint = error.worded("serve")  # each option named as this API's parameter
    message = said + (f" ({hint})" if hint else "")
    if call is not None:
        message = call.in_client_terms(message)
    param = spelled(error.field, "serve") if error.field else None
    status = str(result.status) if result is not None else None
    unsafe = status in ("unknown", "running", "submitted") or (result is not None and bool(result.images))
    if cancelled(served):  # stopped before it sent anything: nothing was charged, a retry is safe
        return HttpError(
            503,
            "The server is stopping: this request was not sent to any provider and nothing was charged; send it again.",
            "server_error",
            "server_stopping",
        )
    if isinstance(error, errors.UsageError):
        return HttpError(400, message, "invalid_request_error", None, param)
    if isinstance(error, errors.NoOfferError | errors.NoKeyError):  # a key the server lacks is no client's fix
        return HttpError(400, no_offer_message(served), "invalid_request_error", "no_offer", retry=False)
    if isinstance(error, errors.BudgetError) and error.field is not None:  # the request's own limit: change it
        return HttpError(400, message, "invalid_request_error", "max_cost_exceeded", param, False)
    if isinstance(error, errors.BudgetError):  # a cap of the server's: it resets (the time is in the message)
        return HttpError(429, message, "insufficient_quota", "budget_exceeded", retry=False)
    if isinstance(error, errors.JobFailedError):
        if "moderat" in message.lower() or "safety" in message.lower():
            return HttpError(400, message, "image_generation_user_error", "moderation_blocked", retry=False)
        return HttpError(502, message, "server_error", "job_failed", retry=False)
    if isinstance(error, errors.ConfigError):
        return HttpError(500, message, "server_error", "imgroute_config", retry=False)
    if isinstance(error, errors.OutputError):
        return HttpError(502, message, "server_error", "output_failed", retry=False)
    if isinstance(error, errors.ProviderError):
        if status in ("running", "submitted"):
            return HttpError(504, message, "server_error", "still_running", retry=False)
        code = "submit_unknown" if status == "unknown" else "provider_unavailable"
        return HttpError(503 if not unsafe else 502, message, "server_error", code, retry=False if unsafe else None)
    return HttpError(500, message, "server_error", "internal", retry=False)


def no_offer_message(served: Served) -> str:
    """Why no offer with a key can take the request, offer by offer (those that would need a key
    the server lacks among them), and what to send instead of exact pixels that none of them takes."""
    route = served.planned.route if served.planned is not None else None
    if route is None:
        return served.error.worded("serve")[0] if served.error else "no offer can take this request"
    reasons = [respelled(f"{q.offer.id}: {'; '.join(q.reasons)}", "serve") for q in route.quotes]
    said = "no offer this server has a key for can take this request"
    target = route.request.target
    keyed = [q for q in route.quotes if not q.needs_key]
    if target.exact and keyed and all(q.assessment.delivery is None for q in keyed):  # none takes these pixels
        said += (
            f'; {target} is exact pixels, which they do not take: send imgroute.aspect (say "1:1") and '
            f'imgroute.resolution ("1K", "2K" or "4K") instead of size'
        )
    return f"{said}: {' | '.join(reasons)}"


def error_response(exc: HttpError, served: Served | None = None):
    body = {"error": {"message": exc.args[0], "type": exc.type, "param": exc.param, "code": exc.code}}
    extra = (
        headers(served, False) if served is not None and served.result is not None else {"x-request-id": _request_id()}
    )
    if exc.retry is not None:
        extra["x-should-retry"] = "true" if exc.retry else "false"
    if served is not None and served.result is not None:
        body["imgroute"] = report(served, False)
    return JSONResponse(body, status_code=exc.status, headers=extra)


def _charged(result) -> str:
    """What a job cost, as far as is known: never an estimate shown as money spent."""
    if result.actual is not None:
        return f"${usd_json(result.actual)}"
    if str(result.status) in ("unknown", "running", "submitted"):
        estimate = f" (estimated ${usd_json(result.estimate)})" if result.estimate is not None else ""
        return f"charge not known yet{estimate}"
    return "nothing charged"


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex[:20]}"


def log_line(method: str, path: str, status: int, served: Served, started: float, joined: bool) -> None:
    """One line per job on stderr (never a key: only ids, offers and figures)."""
    took = time.monotonic() - started
    what = " (no job)"
    if served.result is not None:
        result = served.result
        what = f" job {result.job_id} {result.status} at {result.provider}/{result.model} {_charged(result)}"
        what += " (a retry, joined)" if joined else ""
    elif served.error is not None:
        what = f" refused: {served.error.worded('serve')[0][:160]}"
    sys.stderr.write(f"{method} {path} {status}{what} {took:.2f}s\n")
