"""OpenAI's Batch API for images: requests written as JSONL lines, uploaded (`POST /v1/files`,
purpose `batch`), run as one batch (`POST /v1/batches`, window 24h), polled rarely
(`GET /v1/batches/{id}`), their results read from the output and error files by `custom_id`.

Same key and base URL as OpenAI's Images API; half the price, results within a day. Many jobs may
share one batch (`submit_group`: one line each), so what a poll learns about a batch, and the
output file it downloads, is kept for the process and shared by every job in that batch.

There is no idempotency key: a create whose answer is lost is looked up (`find`) among the
account's recent batches by imgroute's metadata and the job's `custom_id` in their input file.
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from imgroute import policy
from imgroute.errors import JobFailed, MalformedAnswer, ProviderTrouble, SubmitUnknown, TransportFailure, TroubleKind
from imgroute.models import JobSpec, is_url
from imgroute.net.http import Http
from imgroute.providers.base import Poll, PreparedRequest, Submission, data_uri
from imgroute.providers.openai import MODERATION_CODES, OpenAIAdapter, usage_of

BATCH_MODEL_SUFFIX = "-batch"  # pricing.yaml's line for the Batch offer; OpenAI's model has none
GENERATIONS, EDITS = "/v1/images/generations", "/v1/images/edits"
RUNNING = {"validating", "in_progress", "finalizing", "cancelling"}
ENDED = {"completed", "expired", "cancelled"}
MARKER = {"imgroute": "1"}  # in every batch's metadata: how `find` knows ours
LIST_PAGES = 5  # of 100 batches: how far back `find` looks
MAX_LINES = 50_000  # requests per batch
MAX_FILE_BYTES = 190 * 1024 * 1024  # of the 200 MB an input file may have, some margin


class _Shared:
    """What this process knows of each batch, shared by every job in it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.batches: dict[str, tuple[float, dict]] = {}  # batch url -> (when read, the batch object)
        self.files: dict[str, dict[str, tuple[str, int, int]]] = {}  # file url -> custom_id -> (path, at, length)
        self.fetching: dict[str, threading.Lock] = {}  # one download per file, however many jobs ask
        self.paths: list[str] = []

    def clean(self) -> None:
        for path in self.paths:
            Path(path).unlink(missing_ok=True)


_shared = _Shared()
atexit.register(_shared.clean)


class OpenAIBatchAdapter(OpenAIAdapter):
    synchronous = False
    findable = True
    # Batches take minutes to hours: the first look after a minute, then up to every 10 minutes.
    poll_schedule = (60.0, 1.5, 600.0)
    window_s = 24 * 3600.0  # a job is waited for as long as the batch may take

    # -- the lines --------------------------------------------------------------------------

    def endpoint(self, spec: JobSpec) -> str:
        return EDITS if spec.images else GENERATIONS

    def line(self, spec: JobSpec) -> dict:
        """One request of the input file: the Images API's JSON body under our `custom_id`."""
        body = {**self.body(spec), "model": spec.model.removesuffix(BATCH_MODEL_SUFFIX)}
        # A JSON line cannot carry a multipart upload: the JSON edit body. Confirmed by OpenAI's
        # OpenAPI spec (openai/openai-openapi `openapi.yaml`, commit f85dbe2, 2026-08-21):
        # POST /images/edits takes application/json `EditImageBodyJsonParam`, `images` (required,
        # 1-16) and `mask` each an `ImageRefParam` with exactly one of `image_url` (an https URL or
        # a data URL, up to 20,971,520 characters) or `file_id`. (The SDK sends only multipart.)
        if spec.images:
            body["images"] = [{"image_url": _image_url(p)} for p in spec.images]
            if spec.mask:
                body["mask"] = {"image_url": _image_url(spec.mask)}
        return {"custom_id": spec.client_ref, "method": "POST", "url": self.endpoint(spec), "body": body}

    def prepare(self, spec: JobSpec) -> PreparedRequest:
        """What --dry-run shows: the line, and the batch it would be sent in."""
        batch = {"endpoint": self.endpoint(spec), "completion_window": "24h", "metadata": MARKER}
        return PreparedRequest(
            method="POST", url=f"{self.base}/v1/batches", headers={}, body={"batch": batch, "line": self.line(spec)}
        )

    # -- sending ----------------------------------------------------------------------------

    def submit(self, http: Http, spec: JobSpec) -> Submission:
        file_id = self.upload_lines(http, [spec])
        return self.create(http, file_id, [spec])[0]

    def chunks(self, specs: list[JobSpec]) -> list[list[JobSpec]]:
        """The requests of one model and endpoint, in as few batches as OpenAI takes: at most
        50,000 lines and 200 MB per input file (data URLs of local images count)."""
        out: list[list[JobSpec]] = [[]]
        size = 0
        for spec in specs:
            line = len(json.dumps(self.line(spec))) + 1
            if out[-1] and (len(out[-1]) >= MAX_LINES or size + line > MAX_FILE_BYTES):
                out.append([])
                size = 0
            out[-1].append(spec)
            size += line
        return [chunk for chunk in out if chunk]

    def upload_lines(self, http: Http, specs: list[JobSpec]) -> str:
        """The input file: one line per request, uploaded (free, so retried like a GET)."""
        if len({self.endpoint(spec) for spec in specs}) != 1 or len({spec.model for spec in specs}) != 1:
            raise ValueError("one batch takes one endpoint and one model")  # the caller groups them
        lines = "".join(json.dumps(self.line(spec), separators=(",", ":")) + "\n" for spec in specs)
        return self._upload(http, lines.encode())

    def create(self, http: Http, file_id: str, specs: list[JobSpec]) -> list[Submission]:
        """The batch, created once (no idempotency key: a lost answer is SubmitUnknown, and `find`
        looks for it). Its id comes back in every request's Submission."""
        endpoint = self.endpoint(specs[0])
        body = {"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h", "metadata": MARKER}
        prepared = PreparedRequest(
            method="POST", url=f"{self.base}/v1/batches", headers={"Content-Type": "application/json"}, body=body
        )
        response = self.send(http, prepared, timeout=policy.READ_TIMEOUT_S)
        if response.status_code != 200:
            raise self.failure(response)
        try:
            batch = self.json_of(response, "the batch")
            batch_id = batch["id"]
        except (MalformedAnswer, KeyError, TypeError) as exc:
            raise SubmitUnknown(f"{self.provider}: unreadable answer to a created batch: {exc}") from None
        self._remember(batch)
        return [Submission(job_id=batch_id, handle={"batch": batch_id, "custom_id": spec.client_ref}) for spec in specs]

    def _upload(self, http: Http, data: bytes) -> str:
        try:
            response = http.post_repeatable(
                f"{self.base}/v1/files",
                headers=self.auth_headers(),
                timeout=policy.READ_TIMEOUT_S,
                files={"file": ("imgroute-batch.jsonl", data, "application/jsonl")},
                data={"purpose": "batch"},
            )
        except TransportFailure as exc:
            raise ProviderTrouble(
                f"{self.provider}: uploading the batch file: {exc}", TroubleKind.UNREACHABLE
            ) from None
        if response.status_code != 200:
            raise self.failure(response)
        try:
            return self.json_of(response, "the uploaded file")["id"]
        except (KeyError, TypeError):
            raise ProviderTrouble(f"{self.provider}: the uploaded file has no id", TroubleKind.SERVER) from None

    # -- waiting ----------------------------------------------------------------------------

    def poll(self, http: Http, handle: dict) -> Poll:
        batch = self._batch(http, handle["batch"])
        status = batch.get("status")
        counts = batch.get("request_counts") or {}
        if status in RUNNING:
            total, done = counts.get("total") or 0, (counts.get("completed") or 0) + (counts.get("failed") or 0)
            progress = int(100 * done / total) if total else None
            return Poll(state="running", detail=f"batch {status} ({done}/{total or '?'} requests)", progress=progress)
        if status == "failed":
            errors = (batch.get("errors") or {}).get("data") or []
            why = "; ".join(self.clean(str(e.get("message") or e.get("code"))) for e in errors[:3]) or "no reason"
            raise JobFailed(f"{self.provider}: batch {batch.get('id')} failed validation: {why}")
        if status not in ENDED:
            raise MalformedAnswer(f"{self.provider}: batch status {status!r} is not one imgroute knows")
        result = self._result(http, batch, handle["custom_id"])
        if result is None:
            if status == "completed":
                raise MalformedAnswer(f"{self.provider}: batch {batch.get('id')} has no line {handle['custom_id']}")
            raise JobFailed(f"{self.provider}: batch {status} before this request ran (not charged)", never_ran=True)
        return self._line_result(result, batch)

    def _line_result(self, line: dict, batch: dict) -> Poll:
        response, error = line.get("response") or {}, line.get("error")
        body = response.get("body") if isinstance(response, dict) else None
        if response.get("status_code") == 200 and isinstance(body, dict):
            try:
                outputs = tuple(self.output(item) for item in body["data"])
            except (KeyError, TypeError) as exc:
                raise MalformedAnswer(f"{self.provider}: a result line has no images: {exc}") from None
            took = None
            if batch.get("completed_at") and batch.get("created_at"):
                took = float(batch["completed_at"]) - float(batch["created_at"])
            return Poll(state="succeeded", outputs=outputs, usage=usage_of(body.get("usage")), took=took)
        err = (body or {}).get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else (error if isinstance(error, dict) else {})
        code = err.get("code")
        if code == "batch_expired":
            raise JobFailed(f"{self.provider}: the batch expired before this request ran (not charged)", never_ran=True)
        message = self.clean(str(err.get("message") or code or "failed"))
        moderated = code in MODERATION_CODES or "safety system" in message
        raise JobFailed(f"{self.provider}: the request failed in the batch: {message}", moderated=moderated)

    def _batch(self, http: Http, batch_id: str) -> dict:
        """The batch object, read at most once per half of the shortest poll wait, for all its jobs."""
        url = f"{self.base}/v1/batches/{batch_id}"
        fresh_for = self.poll_schedule[0] / 2 * policy.time_scale()
        with _shared.lock:
            known = _shared.batches.get(url)
        if known is not None and (known[1].get("status") in ENDED or time.monotonic() - known[0] < fresh_for):
            return known[1]
        response = self.get(http, url)
        if response.status_code != 200:
            raise self.failure(response)
        batch = self.json_of(response, "the batch")
        if not isinstance(batch, dict):
            raise MalformedAnswer(f"{self.provider}: the batch is not a JSON object")
        self._remember(batch)
        return batch

    def _remember(self, batch: dict) -> None:
        if isinstance(batch, dict) and batch.get("id"):
            with _shared.lock:
                _shared.batches[f"{self.base}/v1/batches/{batch['id']}"] = (time.monotonic(), batch)

    # -- results ----------------------------------------------------------------------------

    def _result(self, http: Http, batch: dict, custom_id: str) -> dict | None:
        """This request's line, from the output file or else the error file (None: in neither)."""
        for field in ("output_file_id", "error_file_id"):
            file_id = batch.get(field)
            if not file_id:
                continue
            index = self._index(http, file_id)
            where = index.get(custom_id)
            if where is not None:
                path, at, length = where
                with open(path, "rb") as fh:
                    fh.seek(at)
                    try:
                        return json.loads(fh.read(length))
                    except ValueError:
                        raise MalformedAnswer(f"{self.provider}: line {custom_id} of {file_id} is not JSON") from None
        return None

    def _index(self, http: Http, file_id: str) -> dict[str, tuple[str, int, int]]:
        """A result file, downloaded once into a private temporary file and indexed by custom_id
        (an output file holds megabytes of base64 per image: it is streamed, never held whole)."""
        url = f"{self.base}/v1/files/{file_id}/content"
        with _shared.lock:
            gate = _shared.fetching.setdefault(url, threading.Lock())
        with gate:
            with _shared.lock:
                if url in _shared.files:
                    return _shared.files[url]
            fd, path = tempfile.mkstemp(prefix="imgroute-batch-", suffix=".jsonl")
            _shared.paths.append(path)

            def consume(chunks) -> dict:
                with os.fdopen(os.dup(fd), "wb") as out:
                    out.truncate(0)
                    for chunk in chunks:
                        out.write(chunk)
                return _index_lines(path)

            if not self.owns(url):
                raise ProviderTrouble(f"{self.provider}: a file outside its origin", TroubleKind.SERVER)
            try:
                status, index = http.download(url, consume, headers=self.auth_headers())
            except TransportFailure as exc:
                raise ProviderTrouble(f"{self.provider}: {self.clean(str(exc))}", TroubleKind.UNREACHABLE) from None
            finally:
                os.close(fd)
            if index is None:
                raise ProviderTrouble(f"{self.provider}: result file {file_id}: HTTP {status}", TroubleKind.SERVER)
            with _shared.lock:
                _shared.files[url] = index
            return index

    # -- finding a lost create --------------------------------------------------------------

    def find(self, http: Http, spec: JobSpec, sent_at: float) -> Submission | None:
        """The batch a lost create made, if the account lists it: ours (by metadata), created
        since just before it was sent, whose input file has this request's custom_id."""
        params: dict = {"limit": 100}
        for _ in range(LIST_PAGES):
            response = self.get(http, f"{self.base}/v1/batches", params=params)
            if response.status_code != 200:
                raise self.failure(response)
            page = self.json_of(response, "the batch list")
            batches = page.get("data") or [] if isinstance(page, dict) else []
            for batch in batches:
                if (batch.get("metadata") or {}).get("imgroute") != "1":
                    continue
                if (batch.get("created_at") or 0) < sent_at - 60:
                    return None  # newest first: older batches cannot be this one
                if self._input_has(http, batch.get("input_file_id"), spec.client_ref):
                    self._remember(batch)
                    return Submission(job_id=batch["id"], handle={"batch": batch["id"], "custom_id": spec.client_ref})
            if not (isinstance(page, dict) and page.get("has_more") and batches):
                return None
            params = {"limit": 100, "after": batches[-1].get("id")}
        return None

    def _input_has(self, http: Http, file_id: str | None, custom_id: str) -> bool:
        if not file_id:
            return False
        return custom_id in self._index(http, file_id)


def _index_lines(path: str) -> dict[str, tuple[str, int, int]]:
    """custom_id -> (path, offset, length) of each line of a downloaded JSONL file."""
    index = {}
    at = 0
    with open(path, "rb") as fh:
        for raw in fh:
            marker = raw.find(b'"custom_id"')
            if marker >= 0:
                try:
                    custom_id = json.loads(raw).get("custom_id")
                except ValueError:
                    custom_id = None
                if isinstance(custom_id, str):
                    index[custom_id] = (path, at, len(raw))
            at += len(raw)
    return index


def _image_url(source: str) -> str:
    return source if is_url(source) else data_uri(source)
