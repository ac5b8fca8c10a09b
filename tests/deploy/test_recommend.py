"""The recommendation: the fastest variant within the accuracy tolerance of fp32, and a plain note (with the path
that pays: a distilled student) where int8 is no faster than fp32 on the CPU that measured it."""

from __future__ import annotations

import pytest

from encoderlab.deploy.recommend import describe, parse_tolerance, recommend
from encoderlab.deploy.served import ServeError


def row(backend: str, accuracy: float, speed: float) -> dict:
    return {
        "backend": backend,
        "metrics": {"accuracy": accuracy},
        "samples_per_second_batch32": speed,
        "latency_ms_p50": 1000 / speed,
    }


def test_the_fastest_variant_within_the_tolerance_is_recommended():
    variants = [
        row("torch", 0.900, 80),
        row("onnx", 0.900, 100),
        row("onnx-int8", 0.880, 300),  # 2 points lost: out
        row("onnx-int8-static", 0.895, 250),  # 0.5 points lost: in
    ]
    rec = recommend(variants, "accuracy", True, tolerance=1.0)
    assert rec["backend"] == "onnx-int8-static" and rec["ranking"] == ["onnx-int8-static", "onnx", "torch"]
    assert rec["int8_pays"] and rec["note"] is None
    lost = {r["backend"]: r["points_lost"] for r in rec["variants"]}
    assert lost["onnx-int8"] == pytest.approx(2.0) and lost["onnx-int8-static"] == pytest.approx(0.5)
    # a looser tolerance lets the faster dynamic variant in; zero keeps only the exact ones
    assert recommend(variants, "accuracy", True, tolerance=2.5)["backend"] == "onnx-int8"
    assert recommend(variants, "accuracy", True, tolerance=0)["backend"] == "onnx"
    assert "--backend onnx-int8-static" in describe(rec)


def test_a_metric_where_lower_is_better_counts_a_rise_as_the_loss():
    variants = [row("torch", 0.30, 80), row("onnx-int8", 0.305, 200), row("onnx-int8-static", 0.32, 400)]
    for r in variants:
        r["metrics"] = {"mse": r["metrics"]["accuracy"]}
    rec = recommend(variants, "mse", False, tolerance=1.0)  # mse 0.30 -> 0.32 is 2 points worse: out
    assert rec["backend"] == "onnx-int8"


def test_where_int8_does_not_pay_the_note_names_the_distilled_student():
    variants = [row("torch", 0.90, 85), row("onnx", 0.90, 96.6), row("onnx-int8", 0.892, 97.4)]
    rec = recommend(variants, "accuracy", True, tolerance=1.0)
    assert rec["backend"] == "onnx-int8" and not rec["int8_pays"]  # the fastest, but only by a hair
    assert "int8 does not pay" in rec["note"] and "finetune=distill" in rec["note"]
    assert "note: int8 does not pay" in describe(rec)


@pytest.mark.parametrize("bad", ["-1", "one", "nan", "inf", ""])
def test_a_bad_tolerance_is_one_line_naming_the_flag(bad):
    with pytest.raises(ServeError, match="--tolerance must be a number of points >= 0"):
        parse_tolerance(bad)
    assert parse_tolerance("0.5") == 0.5
