"""encoderlab-export: the ONNX model computes PyTorch's logits (within 1e-4) and scores the same on the run's test
split; int8 stays within a stated tolerance; export.json records metric, size, latency and throughput."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

from encoderlab.deploy.export import ONNX_TOLERANCE, export_run, table  # noqa: E402

# int8 (dynamic, weights and activations) against fp32 on the 12-row test split of tests/fixtures/reviews.csv
INT8_ACCURACY_TOLERANCE = 1 / 12  # at most one of the twelve predictions may flip


def test_onnx_export_matches_pytorch_and_records_every_variant(cls_run):
    report = export_run(cls_run, quantize="int8", latency_samples=5, throughput_samples=12)
    assert (cls_run / "onnx" / "model.onnx").is_file() and (cls_run / "onnx" / "model.int8.onnx").is_file()
    assert json.loads((cls_run / "export.json").read_text()) == report
    v = {r["variant"]: r for r in report["variants"]}
    assert set(v) == {"pytorch", "pytorch int8", "onnx", "onnx int8"}
    assert report["metric"] == "accuracy" and report["test_samples"] == 12

    # the fp32 ONNX graph computes the same logits, so the same test metrics as in training
    assert v["onnx"]["max_abs_logit_diff_vs_pytorch"] <= ONNX_TOLERANCE and report["onnx_matches_pytorch"]
    assert v["onnx"]["metrics"] == pytest.approx(v["pytorch"]["metrics"], abs=1e-6)
    summary = json.loads((cls_run / "summary.json").read_text())
    assert v["pytorch"]["metrics"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    for name in ("onnx int8", "pytorch int8"):
        assert 0 < v[name]["max_abs_logit_diff_vs_pytorch"]  # really quantized
        assert abs(v[name]["metrics"]["accuracy"] - v["pytorch"]["metrics"]["accuracy"]) <= INT8_ACCURACY_TOLERANCE
    assert v["onnx int8"]["size_mb"] < 0.5 * v["onnx"]["size_mb"]
    for r in v.values():
        assert 0 < r["latency_ms_p50"] <= r["latency_ms_p95"] and r["samples_per_second_batch32"] > 0
    printed = table(report)
    assert "onnx int8" in printed and "accuracy" in printed


def test_ner_export_scores_entities_as_training_did(ner_run):
    report = export_run(ner_run, latency_samples=2, throughput_samples=4)
    v = {r["variant"]: r for r in report["variants"]}
    summary = json.loads((ner_run / "summary.json").read_text())
    assert v["onnx"]["max_abs_logit_diff_vs_pytorch"] <= ONNX_TOLERANCE
    assert v["pytorch"]["metrics"]["entity_f1"] == pytest.approx(summary["test"]["entity_f1"], abs=1e-6)
    assert v["onnx"]["metrics"]["entity_f1"] == pytest.approx(summary["test"]["entity_f1"], abs=1e-6)
