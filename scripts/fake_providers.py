#!/usr/bin/env python3
"""Start the provider fakes on loopback for trying imgroute by hand (no real provider).

    python scripts/fake_providers.py --port 8700

prints the environment to paste into another shell (keys and IMGROUTE_*_BASE_URL overrides), then
serves until Ctrl-C. Faults can be injected while it runs, e.g.:

    curl -X POST localhost:8700/_control/inject -d '{"route": "submit", "status": 429, "retry_after": 2}'
    curl -X POST localhost:8702/_control/set -d '{"outcome": "moderate"}'
    curl localhost:8703/_control/state
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imgroute.providers.registry import BASE_URL_ENV, KEY_ENV  # noqa: E402


def fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(code)


try:
    from tests.fakes import FAKES  # noqa: E402
except ModuleNotFoundError as missing:  # the fakes make real images with Pillow, a test dependency
    fail(f"the fakes need {missing.name} ({'Pillow' if missing.name == 'PIL' else missing.name}); install the "
         "test extras: pip install -e '.[dev]'")  # fmt: skip


def launch(port: int, *options: str):
    """Start this script in its own process (for the benchmarks): (the process, the environment it
    printed: keys and IMGROUTE_*_BASE_URL overrides, without the time scale)."""
    import re
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, __file__, "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    env = {}
    while True:
        line = proc.stdout.readline()
        if not line or line.startswith("# Ctrl-C"):
            break
        match = re.match(r"export (\w+)=(\S+)", line)
        if match and "TIME_SCALE" not in match.group(1):
            env[match.group(1)] = match.group(2)
    if not env:
        proc.kill()
        raise SystemExit(f"the fakes did not start (is port {port} free? try --port)")
    return proc, env


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the imgroute provider fakes on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8700, help="first port; each fake takes the next port")
    parser.add_argument("--steps", type=int, default=3, help="status polls a job takes before it finishes")
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=None,
        help="jobs at Kie, Apiframe, fal and Replicate finish after this long instead (benchmarks)",
    )
    args = parser.parse_args()

    servers = []
    for offset, (name, cls) in enumerate(FAKES.items()):
        port = args.port + offset
        try:
            server = cls(port=port, steps=args.steps)
        except OSError as exc:
            for _, started in servers:
                started.stop()
            why = "is taken" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
            fail(f"port {port} (for the {name} fake) {why}; the fakes take {len(FAKES)} ports from --port: "
                 f"choose others, like --port {args.port + 100}")  # fmt: skip
        server.job_seconds = args.job_seconds
        servers.append((name, server.start()))
    print("# paste into another shell:")
    for name, server in servers:
        print(f"export {KEY_ENV[name]}={server.key}")
        print(f"export {BASE_URL_ENV[name]}={server.url}")
        for variable, value in getattr(server, "settings", {}).items():  # (Azure: the deployment's name)
            print(f"export {variable}={value}")
    print("export IMGROUTE_TIME_SCALE=0.1  # poll ten times faster than against real providers")
    print("# Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for _, server in servers:
            server.stop()


if __name__ == "__main__":
    main()
