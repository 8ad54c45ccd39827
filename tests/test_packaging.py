"""The built wheel carries pricing.yaml, and a fresh venv with only the wheel can run `quote`."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("imgroute-*.whl"))


def test_wheel_contains_the_root_pricing_yaml(wheel):
    from imgroute import __version__

    assert wheel.name.startswith(f"imgroute-{__version__}-")  # one version, written in imgroute/version.py
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("imgroute/pricing.yaml") == (ROOT / "pricing.yaml").read_bytes()
        assert "imgroute/cli/__init__.py" in zf.namelist()


def test_fresh_venv_with_the_wheel_runs_quote(wheel, tmp_path):
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
        ).strip()
    )
    # The dependencies come from this environment (no network in tests); imgroute only from the wheel.
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "_deps_for_test.pth").write_text("\n".join(sorted(deps)) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    where = subprocess.check_output(
        [python, "-c", "import imgroute; print(imgroute.__file__)"], text=True, cwd=tmp_path
    )
    assert where.startswith(str(venv))
    result = subprocess.run(
        [venv / "bin" / "imgroute", "quote", "a lighthouse", "--quality", "high", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "IMGROUTE_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["choice"]["provider"] == "kie"
