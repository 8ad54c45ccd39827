"""`imgroute serve` in this process, on a free loopback port, in front of the provider fakes."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import openai
import pytest

from tests.helpers import wait_for


class Served:
    def __init__(self, fakes, home: Path, token: str | None = None):
        import uvicorn

        from imgroute.serve.app import build_app
        from imgroute.serve.gateway import Gateway

        self.gateway = Gateway(home / "served")
        app = build_app(self.gateway, token, home / "serve-inputs")
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, limit=10)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def client(self, api_key: str = "unused", **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=api_key, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.gateway.close()


@pytest.fixture
def served(fakes, isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)  # no tier-1 submit spacing in tests
    limits = "".join(f"  {name}: {{concurrency: 20, per_minute: 100000}}\n" for name in fakes)
    (isolated_home / "config.yaml").write_text(f"limits:\n{limits}")
    server = Served(fakes, isolated_home)
    yield server
    server.stop()
