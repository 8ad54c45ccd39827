"""The machinery shared by the provider fakes: a real HTTP server on 127.0.0.1, faults, files.

Each fake is stateful: jobs walk through the provider's real states one poll at a time, every
request is recorded (method, path, headers, body), every job the provider would bill is counted in
`charges`, and faults can be queued for any route:

    fake.inject("submit", status=429, retry_after=1)        # once
    fake.inject("poll", status=503, times=2)
    fake.inject("submit", drop=True)                        # take the job, then hang up
    fake.inject("submit", body=b"{not json")                # malformed answer
    fake.inject("download", truncate=True)                  # half the bytes, then hang up
    fake.inject("download", status=404)                     # expired URL
    fake.inject("submit", delay=2.0)                        # slow answer

The same can be done from another process: POST /_control/inject with the keyword arguments as
JSON, POST /_control/reset, GET /_control/state, POST /_control/set (any name in `settable`).

The rule of these fakes: they are held to the providers, not to imgroute's adapters. Each accepts
what its provider documents (with the documented defaults applied), answers every field the
provider's official client reads, and refuses what the provider refuses, in its own error shape.
Routes, fields and codes cite the provider notes (`providers/<name>.md`, the section) or the
official client's source; where no source says, the fake marks it `undocumented` and can serve
each plausible shape (a switch in `settable`), so an adapter is tested against all of them. Every
answer carries the provider's request-id header where the provider documents one
(`request_id_header`), errors included. tests/providers/test_conformance_*.py drive the fakes with the
official clients.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@functools.lru_cache(maxsize=64)
def make_image(width: int, height: int, fmt: str = "png", seed: int = 0) -> bytes:
    """A real, decodable image of exactly this size and format."""
    color = ((seed * 67) % 256, (seed * 131 + 90) % 256, (seed * 29 + 180) % 256)
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, PIL_FORMATS[fmt])
    return buf.getvalue()


def image_info(data: bytes) -> tuple[str, int, int, bool] | None:
    """(format, width, height, has_alpha) if the bytes decode as an image, else None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.format.lower(), image.width, image.height, "A" in image.getbands()
    except Exception:
        return None


def decode_data_uri(uri: str) -> bytes | None:
    import base64
    import binascii

    if not uri.startswith("data:") or ";base64," not in uri:
        return None
    try:
        return base64.b64decode(uri.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_multipart(request) -> tuple[dict[str, list[str]], dict[str, list[tuple[str, str, bytes]]]]:
    """Form fields and file parts of a multipart/form-data body."""
    from email.parser import BytesParser
    from email.policy import HTTP

    content_type = request.header("Content-Type") or ""
    if not content_type.startswith("multipart/form-data"):
        raise ValueError("not multipart/form-data")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.raw)
    fields: dict[str, list[str]] = {}
    files: dict[str, list[tuple[str, str, bytes]]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is None:
            fields.setdefault(name, []).append(payload.decode())
        else:
            files.setdefault(name, []).append((part.get_filename(), part.get_content_type(), payload))
    return fields, files


class Reply:
    """An answer. `hold` = (seconds, then): the connection is held that long (outside the fake's
    lock, as a provider holds a request open), then `then()` makes the answer actually sent."""

    def __init__(
        self,
        status: int = 200,
        body: Any = b"",
        headers: dict | None = None,
        hold: tuple[float, Callable[[], Reply]] | None = None,
    ):
        self.status = status
        self.hold = hold
        self.headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            self.body = json.dumps(body).encode()
            self.headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            self.body = body.encode()
        else:
            self.body = body


class Fault:
    def __init__(
        self,
        route: str,
        times: int = 1,
        status: int | None = None,
        retry_after: float | None = None,
        body: bytes | str | dict | None = None,
        drop: bool = False,
        truncate: bool = False,
        delay: float = 0.0,
    ):
        self.route = route
        self.times = times
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.drop = drop
        self.truncate = truncate
        self.delay = delay


class Request:
    def __init__(self, method: str, path: str, query: dict, headers: dict, body: bytes):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.raw = body
        self.at = time.monotonic()  # arrival, for checking rate limits

    def json(self) -> Any:
        return json.loads(self.raw or b"null")

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connections when a batch opens fifty at once
    # (the client then waits a second for its SYN to be retried); real providers' edges do not.
    request_queue_size = 512

    def handle_error(self, request, client_address) -> None:
        """A client that hung up or was killed mid-answer is normal here; anything else is a bug."""
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class FakeProvider:
    """Base class: subclasses implement `route(request) -> Reply` and name their routes."""

    name = "fake"
    key = "test-key"
    request_id_header: str | None = None  # the provider's request-id header, on every answer
    # What POST /_control/set may change (subclasses add their `undocumented` switches).
    settable: tuple[str, ...] = ("credits", "outcome", "steps", "key", "job_seconds", "alike")

    def __init__(self, key: str | None = None, port: int = 0, steps: int = 2):
        self.key = key or self.key
        self.initial = (self.key, steps)
        self.steps = steps  # polls a job spends before it finishes
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.jobs: dict[str, dict] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.charges = 0  # jobs the provider would bill
        self.in_flight = 0  # requests being handled right now
        self.peak_in_flight = 0  # the most handled at once since the last reset
        # Seconds each answer to a generation came later than the generation's own time (this
        # process's own lag under load: bench_serve_scale.py tells it apart from the server's).
        self.overdue: list[float] = []
        self.last_activity = time.monotonic()
        self.images_billed = 0
        self.credits: int | None = None  # None: unlimited; 0: insufficient
        self.outcome = "succeed"  # or "fail" / "moderate" for the next jobs
        self.image_size: tuple[int, int] | None = None  # force a (wrong) size on results
        self.image_format: str | None = None  # force a (wrong) format on results
        self.job_seconds: float | None = None  # jobs finish after this long, however often polled
        self.alike = False  # every image the same bytes (a provider may send two alike)
        self._ids = itertools.count(1)
        self._seeds = itertools.count()
        self.server = _Server(("127.0.0.1", port), self._handler_class())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- jobs -------------------------------------------------------------------------------

    def clock_job(self, job: dict) -> dict:
        """Stamp a new job with when it was created, on both clocks (timing, and what is reported)."""
        job["created"], job["created_at"] = time.monotonic(), time.time()
        return job

    def generation_seconds(self, request: Request) -> float:
        """How long a successful answer to `request` is held back: a synchronous provider keeps
        the connection open while it generates. Asynchronous providers answer at once."""
        return 0.0

    def still_running(self, job: dict) -> bool:
        """Whether a job is still running at this poll: for `job_seconds` after it was created,
        else for `steps` polls. A finished job gets `completed_at`, the wall-clock moment it
        finished, which the asynchronous providers report."""
        if self.job_seconds is not None:
            running = time.monotonic() - job["created"] < self.job_seconds
            finish = job["created_at"] + self.job_seconds
        else:
            running = job["polls"] <= self.steps
            finish = time.time()
        if not running:
            job.setdefault("completed_at", finish)
        return running

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()
            self.jobs.clear()
            self.files.clear()
            self.charges = self.images_billed = self.peak_in_flight = 0
            self.overdue.clear()
            self.key, self.steps = self.initial
            self.credits = None
            self.outcome = "succeed"
            self.image_size = self.image_format = self.job_seconds = None
            self.alike = False

    # -- test controls ----------------------------------------------------------------------

    def inject(self, route: str, **kwargs) -> None:
        with self.lock:
            self.faults.append(Fault(route, **kwargs))

    def take_fault(self, route: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.route == route and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def calls(self, route_prefix: str, method: str | None = None) -> list[Request]:
        with self.lock:
            return [
                r for r in self.requests if r.path.startswith(route_prefix) and (method is None or r.method == method)
            ]

    def settle(self, quiet_for: float = 0.5, limit: float = 10.0) -> None:
        """Wait until no request has been in the handler for `quiet_for` seconds (slow answers done)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self.lock:
                busy = self.in_flight > 0
                idle = time.monotonic() - self.last_activity
            if not busy and idle >= quiet_for:
                return
            time.sleep(0.02)

    def state(self) -> dict:
        with self.lock:
            routes: dict[str, int] = {}
            for request in self.requests:
                name = self.route_name(request)
                routes[name] = routes.get(name, 0) + 1
            return {
                "charges": self.charges,
                "images_billed": self.images_billed,
                "jobs": len(self.jobs),
                "requests": len(self.requests),
                "by_route": routes,
                "arrivals_s": _span([r.at for r in self.requests if self.generation_seconds(r)]),
                "overdue_p50": _share(self.overdue, 0.5),
                "overdue_p95": _share(self.overdue, 0.95),
            }

    # -- helpers for subclasses -------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}"

    def bill(self, images: int) -> None:
        with self.lock:
            self.charges += 1
            self.images_billed += images
            if self.credits is not None:
                self.credits = max(0, self.credits - images)

    def store_images(self, job_id: str, count: int, width: int, height: int, fmt: str) -> list[str]:
        width, height = self.image_size or (width, height)
        fmt = self.image_format or fmt
        urls = []
        for i in range(count):
            name = f"{job_id}-{i}.{'jpg' if fmt == 'jpeg' else fmt}"
            # Each image its own bytes, as a real model's are; a few seeds keep make_image's cache warm.
            seed = 0 if self.alike else next(self._seeds) % 16
            self.files[name] = (make_image(width, height, fmt, seed=seed), fmt)
            urls.append(f"{self.url}/files/{name}")
        return urls

    def image_bytes(self, url: str) -> bytes:
        return self.files[url.rsplit("/", 1)[1]][0]

    def host_file(self, data: bytes, name: str) -> str:
        """Keep an uploaded file and return the URL it is served at."""
        info = image_info(data)
        stored = f"upload-{next(self._ids):04d}-{name}"
        self.files[stored] = (data, info[0] if info else "png")
        return f"{self.url}/files/{stored}"

    def uploads(self) -> list[bytes]:
        return [data for name, (data, _) in self.files.items() if name.startswith("upload-")]

    def serve_file(self, request: Request) -> Reply:
        name = request.path.rsplit("/", 1)[1]
        if name not in self.files:
            return Reply(404, {"error": "not found"})
        data, fmt = self.files[name]
        return Reply(200, data, {"Content-Type": CONTENT_TYPES[fmt]})

    def route(self, request: Request) -> Reply:  # pragma: no cover - subclasses
        raise NotImplementedError

    def route_name(self, request: Request) -> str:
        """Which fault route a request belongs to: submit, poll, result or download."""
        if request.path.startswith("/files/"):
            return "download"
        if "upload" in request.path:
            return "upload"
        return "submit" if request.method == "POST" else "poll"

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        """An injected error status, in the provider's own error shape (subclasses override)."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return Reply(status, {"error": {"message": f"injected {status}", "type": "server_error"}}, headers)

    def new_request_id(self) -> str:
        return uuid.uuid4().hex

    def answer_headers(self, reply: Reply) -> dict:
        """Headers every answer carries (the request id), unless the route set its own."""
        return {self.request_id_header: self.new_request_id()} if self.request_id_header else {}

    # -- HTTP -------------------------------------------------------------------------------

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle's algorithm on, the second waits for
            # the client's delayed ACK (~40 ms on loopback), which no real provider's edge adds.
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
                if parts.path.startswith("/_control/"):
                    self._send(fake.control(request))
                    return
                with fake.lock:
                    fake.requests.append(request)
                    fake.in_flight += 1
                    fake.peak_in_flight = max(fake.peak_in_flight, fake.in_flight)
                try:
                    self._serve(request)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1
                        fake.last_activity = time.monotonic()

            def _serve(self, request: Request) -> None:
                fault = fake.take_fault(fake.route_name(request))
                if fault and fault.delay:
                    time.sleep(fault.delay)
                if fault and (fault.status or fault.body is not None) and not fault.drop:
                    reply = (
                        Reply(fault.status or 200, fault.body)
                        if fault.body is not None
                        else fake.error_reply(fault.status, fault.retry_after)
                    )
                    if fault.retry_after is not None:
                        reply.headers["Retry-After"] = f"{fault.retry_after:g}"
                    self._send(reply)
                    return
                with fake.lock:
                    reply = fake.route(request)
                generating = fake.generation_seconds(request) if reply.status == 200 else 0.0
                time.sleep(generating)  # outside the lock: others go on
                while reply.hold is not None:  # a request the provider holds open (Prefer: wait)
                    seconds, then = reply.hold
                    time.sleep(seconds)
                    with fake.lock:
                        reply = then()
                if fault and fault.drop:  # the work is done (and billed), the answer is lost
                    self.close_connection = True
                    return
                if fault and fault.truncate:
                    self._send(reply, truncate=True)
                    return
                self._send(reply)
                if generating:
                    with fake.lock:
                        fake.overdue.append(time.monotonic() - request.at - generating)

            def _send(self, reply: Reply, truncate: bool = False) -> None:
                self.send_response(reply.status)
                headers = {k.lower(): (k, v) for k, v in fake.answer_headers(reply).items()}
                headers.update({k.lower(): (k, v) for k, v in reply.headers.items()})
                for name, value in headers.values():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                if truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply.body[: len(reply.body) // 2] if truncate else reply.body)
                if truncate:
                    self.wfile.flush()
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        return Handler

    def control(self, request: Request) -> Reply:
        action = request.path.removeprefix("/_control/")
        if action == "inject":
            self.inject(**request.json())
        elif action == "reset":
            self.reset()
        elif action == "set":
            for field, value in request.json().items():
                if field in self.settable:
                    setattr(self, field, value)
        elif action != "state":
            return Reply(404, {"error": f"unknown control {action}"})
        return Reply(200, self.state())


def _share(values: list[float], share: float) -> float | None:
    """The value `share` of the way up the sorted values (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _span(moments: list[float]) -> float:
    """Seconds from the first to the last of `moments` (0 for fewer than two)."""
    return max(moments) - min(moments) if len(moments) > 1 else 0.0
