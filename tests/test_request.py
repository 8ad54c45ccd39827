"""What a request is made of, checked before anything is sent: its prompt (text, not empty, no NUL
byte, every byte UTF-8, wherever it comes from: an argument, stdin, a batch file, the Python API) and
the offers it may go to (a provider, or one of its models by its offer id, printed and read back as
provider/model)."""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers import nothing_sent, only, photo, run_imgroute

# -- the prompt ------------------------------------------------------------------------------------


def test_a_prompt_with_a_nul_byte_is_refused_wherever_it_comes_from(cli, fakes, tmp_path):
    assert cli("gen", "a\x00b", "--out", "out").code == 2
    assert cli("gen", "--out", "out", stdin="a\x00b").code == 2
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "a\u0000b"}) + "\n")
    r = cli("batch", str(rows), "--yes", "--strict")
    assert r.code == 2 and "NUL byte" in r.err
    (tmp_path / "rows.csv").write_text('prompt\n"a\x00b"\n')
    assert cli("batch", str(tmp_path / "rows.csv"), "--yes", "--strict").code == 2
    assert nothing_sent(fakes)


def test_invalid_utf8_on_stdin_and_a_huge_csv_cell_are_one_line(cli, tmp_path, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a \xff lighthouse"), encoding="utf-8"))
    from imgroute.cli.app import main

    with pytest.raises(SystemExit) as exit_:
        main(["quote"])
    assert exit_.value.code == 2
    big = tmp_path / "rows.csv"
    big.write_text("prompt\n" + '"' + "x" * 200_000 + '"\n')
    r = cli("batch", str(big), "--dry-run")
    assert r.code == 2 and "Traceback" not in r.err and "128 KB" in r.err


def test_an_empty_stdin_does_not_suggest_another_command(cli):
    r = cli("gen", "--out", "o", stdin="")
    assert r.code == 2 and "imgroute quote" not in r.err


# -- a byte that is not UTF-8 ----------------------------------------------------------------------


LATIN1 = b"caf\xe9 au lait"


@pytest.mark.parametrize("locale", [{"LANG": "C.UTF-8"}, {"LANG": "C", "LC_ALL": "C"}, {"LC_ALL": "POSIX"}])
def test_a_latin1_byte_is_one_clean_error_from_argv_and_stdin_in_every_container_locale(fakes, locale):
    argv = os.fsdecode(LATIN1)  # as Python hands a program its argv under these locales
    for args, stdin, where in [
        (("gen", argv, "--out", "out"), None, "the prompt argument"),
        (("gen", "--out", "out"), LATIN1, "the prompt on stdin"),
        (("gen", argv, "--dry-run"), None, "the prompt argument"),
        (("quote", argv), None, "the prompt argument"),
    ]:
        done = run_imgroute(*args, stdin=stdin, env=locale, text=False)
        err = done.stderr.decode()
        assert done.returncode == 2, err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"{where} has a byte 0xe9 that is not UTF-8, at character 4 (after 'caf')" in err
    assert nothing_sent(fakes)


def test_a_latin1_byte_in_a_batch_file_or_on_stdin_is_a_bad_row_with_its_line(cli, fakes, tmp_path):
    rows = b'{"prompt": "a lighthouse"}\n{"prompt": "' + LATIN1 + b'"}\n'
    (tmp_path / "rows.jsonl").write_bytes(rows)
    for source, stdin in [(str(tmp_path / "rows.jsonl"), None), ("-", rows)]:
        done = run_imgroute("batch", source, "--dry-run", "--json", stdin=stdin, text=False)
        plan = json.loads(done.stdout)
        assert done.returncode == 0, done.stderr
        assert plan["rows"] == 1 and plan["bad_rows"][0]["line"] == 2
        assert "the prompt has a byte 0xe9 that is not UTF-8" in plan["bad_rows"][0]["problem"]
    assert nothing_sent(fakes)


def test_a_json_body_with_a_lone_surrogate_is_refused_by_the_api_checks(tmp_path):
    from imgroute import api
    from imgroute.errors import UsageError

    with pytest.raises(UsageError, match="the prompt has a byte 0xe9"):
        api.quote("caf\udce9")
    with pytest.raises(UsageError, match="images= has a"):  # (the Python API names its own argument)
        api.quote("x", images=[str(tmp_path / "caf\udce9.png")])


# -- offer ids wherever a provider is accepted -----------------------------------------------------


def test_an_offer_id_pins_one_of_a_providers_models(cli, fakes, tmp_path):
    data = cli("quote", "x", "--quality", "low", "--provider", "piapi/gpt-image-2-preview", "--json").json()
    assert (data["choice"]["provider"], data["choice"]["model"]) == ("piapi", "gpt-image-2-preview")
    data = cli("quote", "x", "--quality", "high", "--exclude", "kie/gpt-image-2-text-to-image", "--json").json()
    assert data["choice"]["provider"] != "kie"
    r = cli("quote", "x", "--provider", "piapi/gpt-image-2-prev")
    assert r.code == 2 and "piapi/gpt-image-2-preview" in r.err
    done = cli("gen", "x", "--quality", "low", "--provider", "piapi/gpt-image-2-preview", "--out", "o", "--json")
    assert done.code == 0 and done.json()["model"] == "gpt-image-2-preview"
    assert cli("jobs", "--provider", "piapi/gpt-image-2-preview", "--json").json()[0]["job_id"] == done.json()["job_id"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "x", "quality": "low", "provider": "piapi/gpt-image-2-preview"}) + "\n")
    plan = cli("batch", str(rows), "--provider", "piapi", "--dry-run", "--json").json()
    assert plan["by_offer"][0]["offer"] == "piapi/gpt-image-2-preview"


def test_offer_names_are_printed_as_provider_slash_model_and_taken_back_as_input(cli, fakes, tmp_path):
    wide = photo(tmp_path, 1024, 768)  # 4:3, which Kie offers
    r = cli("edit", "make it dusk", "--image", wide, "--out", "out", *only(fakes, "kie"))
    assert r.code == 0, r.err
    assert "kie/gpt-image-2-image-to-image (cheapest" in r.out  # the edit model, as the job ran
    listed = cli("jobs").out
    assert "kie/gpt-image-2-image-to-image" in listed and "kie gpt-image" not in listed
    # what was printed is accepted back, where offers are named
    assert cli("jobs", "--provider", "kie/gpt-image-2-image-to-image", "--json").json()[0]["offer"] == (
        "kie/gpt-image-2-image-to-image"
    )
    quoted = cli("quote", "x", "--image", wide, "--provider", "kie/gpt-image-2-image-to-image", "--json").json()
    assert quoted["choice"]["offer"] == "kie/gpt-image-2-text-to-image"
    assert cli("quote", "x", "--provider", "kie/gpt-image-3").code == 2
