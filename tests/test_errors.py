"""An error is one line a person can read: a value it names is never echoed whole, however big."""

from __future__ import annotations


def test_errors_never_echo_a_huge_value(cli, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(levels) + "\nversion: 1\nproviders:\n  kie:\n    observed: *a8\n")
    r = cli("pricing", "validate", str(bomb))
    assert r.code == 3 and len(r.err) < 2100, r.err[:300]
    r = cli("quote", "x", "--size", "9" * 5_000_000)
    assert r.code == 2 and len(r.err) < 300
