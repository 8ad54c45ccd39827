"""The scripts beside the package: scripts/fake_providers.py says in one line what stops it."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_the_fakes_script_says_in_one_line_what_to_do(tmp_path):
    import socket

    script = str(ROOT / "scripts" / "fake_providers.py")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, script, "--port", str(port)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"port {port} (for the openai fake) is taken" in done.stderr and "--port" in done.stderr
    no_pillow = f"import sys, runpy; sys.modules['PIL'] = None; runpy.run_path({script!r}, run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", no_pillow], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "the fakes need PIL (Pillow); install the test extras: pip install -e '.[dev]'" in done.stderr
