"""The rich rendering: a batch's progress line and its ETA."""

from __future__ import annotations


def test_the_eta_is_never_shorter_than_the_pacing_allows(monkeypatch):
    from types import SimpleNamespace

    from imgroute.output.text.batches import BatchProgress

    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    progress = BatchProgress(30, __import__("decimal").Decimal("0.9"), paced_seconds=300)
    with progress:
        progress.update(SimpleNamespace(outcome="done", result=None), running=1)
        eta = progress._progress.tasks[0].fields["eta"]
        assert eta.startswith("0:04:") or eta.startswith("0:05:")
        progress.update(SimpleNamespace(outcome="not_started", result=None))
        assert "1 not started" in progress._detail(0, 1.0)
