"""Bad input to encoderlab-predict / encoderlab-export ends in one line naming what to change (exit 2), and a failed
prediction never leaves a half-written output."""

from __future__ import annotations

import json

import pytest
from support import FIXTURES

from encoderlab.deploy import predict as P
from encoderlab.deploy.served import ServeError, load
from encoderlab.errors import DataError


def one_line_error(capsys, argv: list[str], main) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("make_input", "extra", "expected"),
    [
        (
            lambda d: FIXTURES / "reviews.csv",
            ["--text-column", "body"],
            "column 'body' (--text-column) is not in the input",
        ),
        (lambda d: d / "empty.csv", [], "is empty"),
        (lambda d: FIXTURES / "reviews_latin1.csv", [], "--encoding latin-1"),
        (lambda d: d / "missing.csv", [], "does not exist (--input)"),
        (lambda d: FIXTURES / "reviews.csv", ["--question-column", "q"], "--question-column does not apply"),
        (lambda d: d / "x.parquet", [], "--format"),
    ],
    ids=["missing-column", "empty-file", "not-utf8", "missing-file", "wrong-kind-option", "unknown-extension"],
)
def test_predict_input_errors_are_one_line_and_leave_the_output_alone(
    cls_run, tmp_path, capsys, make_input, extra, expected
):
    from encoderlab.cli.predict import main

    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "x.parquet").write_text("x")
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    err = one_line_error(
        capsys, [str(cls_run), "--input", str(make_input(tmp_path)), "--output", str(out), *extra], main
    )
    assert err.startswith("encoderlab-predict: error: ") and expected in err
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["empty.csv", "x.parquet", "out.jsonl"])


def test_model_folders_that_cannot_serve(cls_run, tmp_path, tiny_bert_config, tokenizer):
    from transformers import BertForMaskedLM

    with pytest.raises(ServeError, match="not a model export"):
        load(tmp_path)
    with pytest.raises(ServeError, match="does not exist"):
        load(tmp_path / "nowhere")
    mlm = tmp_path / "mlm"
    BertForMaskedLM(tiny_bert_config).save_pretrained(mlm)
    with pytest.raises(ServeError, match="BertForMaskedLM model, which predicts no labels"):
        load(mlm)
    fresh = tmp_path / "fresh_run"
    (fresh / ".hydra").mkdir(parents=True)
    (fresh / "summary.json").write_text(json.dumps({"status": "failed"}))
    with pytest.raises(ServeError, match="has no hf/ export"):
        load(fresh)
    with pytest.raises(ServeError, match="encoderlab-export .* --format onnx"):
        load(fresh, "onnx")


def test_a_missing_text_in_a_row_names_the_row(cls_run):
    with pytest.raises(DataError, match="row 2: no value in column 'review'"):
        P.predict_rows(load(cls_run), [{"review": "fine"}, {"review": None}])


def test_export_errors(tmp_path, capsys):
    from encoderlab.cli.export import main

    assert "nothing to do" in one_line_error(capsys, [str(tmp_path)], main)
    err = one_line_error(capsys, [str(tmp_path), "--format", "onnx"], main)
    assert "is not a run directory" in err


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--tolerance", "-1", "--tolerance must be a number of points >= 0"),
        ("--tolerance", "a point", "--tolerance must be a number of points >= 0"),
        ("--quantize", "int4", "unknown --quantize 'int4'; allowed: int8, dynamic, static"),
        ("--calibration-samples", "0", "--calibration-samples must be a whole number >= 1"),
    ],
)
def test_bad_export_flags_are_one_line_naming_the_flag(cls_run, capsys, flag, value, expected):
    from encoderlab.cli.export import main

    err = one_line_error(capsys, [str(cls_run), "--format", "onnx", flag, value], main)
    assert err.startswith("encoderlab-export: error: ") and expected in err


def test_an_unknown_backend_is_one_line_listing_the_backends(cls_run, capsys):
    from encoderlab.cli.predict import main

    err = one_line_error(
        capsys, [str(cls_run), "--input", str(FIXTURES / "reviews.csv"), "--backend", "tensorrt"], main
    )
    assert "unknown backend 'tensorrt' (--backend)" in err and "onnx-int8-static" in err


def test_push_to_hub_offline_is_one_line(cls_run, capsys, monkeypatch):
    from encoderlab.cli.export import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = one_line_error(capsys, [str(cls_run), "--push-to-hub", "someone/tiny-reviews"], main)
    assert "offline" in err and "HF_HUB_OFFLINE" in err
