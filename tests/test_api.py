"""The Python API: `imgroute.quote`, `generate` and `edit`, the same path as the CLI's."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import imgroute
from imgroute.errors import JobFailedError, NoOfferError, UsageError
from tests.fakes.server import make_image


def test_quote_returns_typed_ranked_quotes_without_loading_an_http_library(tmp_path):
    code = (
        "import sys, imgroute\n"
        "route = imgroute.quote('a lighthouse', quality='high')\n"
        "print(route.choice.offer.id, route.choice.cost, len(route.quotes))\n"
        "print(sorted(m for m in ('httpx', 'httpcore', 'sqlite3') if m in sys.modules))\n"
    )
    env = {"IMGROUTE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    first, loaded = out.splitlines()
    offer, cost, count = first.split()
    assert offer == "kie/gpt-image-2-text-to-image" and Decimal(cost) == Decimal("0.03") and int(count) >= 7
    assert loaded == "[]"


def test_quote_takes_the_cli_options_and_refuses_bad_ones_with_the_same_errors():
    route = imgroute.quote("a fox", quality="high", official_only=True, aspect="16:9", resolution="2K")
    assert route.choice.offer.identity.kind == "official"
    assert all(q.cost is not None for q in route.quotes if q.eligible)
    with pytest.raises(UsageError) as caught:
        imgroute.quote("a fox", quality="ultra")
    assert caught.value.exit_code == 2 and "ultra" in caught.value.message


def test_generate_runs_the_job_and_returns_its_result(fakes, tmp_path):
    result = imgroute.generate("a lighthouse", quality="low", providers="kie", out=tmp_path / "shots")
    assert result.status == "succeeded" and result.provider == "kie"
    assert Path(result.images[0].path).is_file() and result.images[0].verified
    assert result.estimate == Decimal("0.03") and fakes["kie"].charges == 1


def test_a_failed_job_raises_its_error_with_the_result_attached(fakes, tmp_path):
    with pytest.raises(JobFailedError) as caught:
        imgroute.generate("FORBIDDEN", providers=["openai"], out=tmp_path)
    assert caught.value.exit_code == 6 and caught.value.result.job_id
    with pytest.raises(NoOfferError):
        imgroute.generate("a fox", size="1000x1000", providers="openai", out=tmp_path)


def test_edit_sends_the_images(fakes, tmp_path):
    (tmp_path / "in.png").write_bytes(make_image(1024, 1024))
    result = imgroute.edit("make it dusk", str(tmp_path / "in.png"), providers="fal", quality="low", out=tmp_path)
    assert result.model == "openai/gpt-image-2/edit" and len(result.images) == 1


def test_a_plan_made_for_quoting_is_refused_by_run_before_anything_is_sent(fakes):
    import imgroute
    from imgroute.errors import UsageError

    planned = imgroute.plan("a lighthouse", with_keys=False)
    with pytest.raises(UsageError, match="made without keys"):
        imgroute.run(planned)
    assert all(not f.requests for f in fakes.values())


def test_the_public_surface_names_the_functions_their_results_and_the_errors():
    import subprocess
    import sys

    import imgroute
    import imgroute.errors

    assert sorted(imgroute.__all__) == sorted(imgroute._HOME)  # each name loads from its module
    for name in imgroute.__all__:
        assert getattr(imgroute, name) is not None
    errors = {name for name, value in vars(imgroute.errors).items() if isinstance(value, type)
              and issubclass(value, imgroute.errors.ImgrouteError)}  # fmt: skip
    assert errors <= set(imgroute.__all__)  # every error a caller may catch
    assert {"quote", "generate", "edit", "batch", "resume", "Route", "JobResult", "RowResult"} <= set(imgroute.__all__)
    light = "import imgroute, sys; print(sorted(m for m in sys.modules if m.startswith('imgroute')))"
    loaded = subprocess.run([sys.executable, "-c", light], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['imgroute', 'imgroute.version']"  # `import imgroute` loads nothing more
