"""encoderlab-export: the ONNX model computes PyTorch's logits (within 1e-4) and scores the same on the run's test
split; int8 (dynamic and calibrated static) stays within a stated tolerance; export.json records metric, size,
latency and throughput; the recommendation names a measured variant within the tolerance."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

pytest.importorskip("onnxruntime")

from encoderlab.deploy.export import ONNX_TOLERANCE, export_run, table  # noqa: E402

# int8 (dynamic, weights and activations) against fp32 on the 12-row test split of tests/fixtures/reviews.csv
INT8_ACCURACY_TOLERANCE = 1 / 12  # at most one of the twelve predictions may flip


@pytest.fixture
def own_run(cls_run, tmp_path):
    """A copy of the trained run: its export (and recommendation) stays out of the other tests' way."""
    return shutil.copytree(cls_run, tmp_path / "run", ignore=shutil.ignore_patterns("onnx", "export.json"))


def test_onnx_export_matches_pytorch_and_records_every_variant(own_run):
    cls_run = own_run
    report = export_run(cls_run, quantize="int8", latency_samples=5, throughput_samples=12)
    onnx_dir = cls_run / "onnx"
    for name in ("model.onnx", "model.int8.onnx", "model.int8-static.onnx", "recommendation.json"):
        assert (onnx_dir / name).is_file(), name
    assert not [p.name for p in cls_run.rglob("*.tmp")]  # every file was written beside its target and renamed
    assert json.loads((cls_run / "export.json").read_text()) == report
    v = {r["variant"]: r for r in report["variants"]}
    assert set(v) == {"pytorch", "pytorch int8", "onnx", "onnx int8", "onnx int8 static"}
    assert json.loads((onnx_dir / "deploy.json").read_text())["calibration"] == {"samples": 38, "split": "train"}
    assert report["metric"] == "accuracy" and report["test_samples"] == 12

    # the fp32 ONNX graph computes the same logits, so the same test metrics as in training
    assert v["onnx"]["max_abs_logit_diff_vs_pytorch"] <= ONNX_TOLERANCE and report["onnx_matches_pytorch"]
    assert v["onnx"]["metrics"] == pytest.approx(v["pytorch"]["metrics"], abs=1e-6)
    summary = json.loads((cls_run / "summary.json").read_text())
    assert v["pytorch"]["metrics"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    for name in ("onnx int8", "pytorch int8", "onnx int8 static"):
        assert 0 < v[name]["max_abs_logit_diff_vs_pytorch"]  # really quantized
        assert abs(v[name]["metrics"]["accuracy"] - v["pytorch"]["metrics"]["accuracy"]) <= INT8_ACCURACY_TOLERANCE
    assert v["onnx int8"]["size_mb"] < 0.5 * v["onnx"]["size_mb"]
    # static int8 quantizes the weight matmuls (the embedding table, most of this tiny model's bytes, stays fp32)
    import onnx

    static = onnx.load(onnx_dir / "model.int8-static.onnx").graph
    int8_weights = [t for t in static.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert len(int8_weights) >= 6 * 2  # q, k, v, output, intermediate, output dense of both layers
    assert v["onnx int8 static"]["size_mb"] < v["onnx"]["size_mb"]
    # ... and onnxruntime runs each of them as one integer kernel: no float matmul is left once it has optimized
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(cls_run / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(onnx_dir / "model.int8-static.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(cls_run / "optimized.onnx").graph.node]
    assert "MatMul" not in ops and ops.count("MatMulIntegerToFloat") >= 12, sorted(set(ops))
    for r in v.values():
        assert 0 < r["latency_ms_p50"] <= r["latency_ms_p95"] and r["samples_per_second_batch32"] > 0

    # the recommendation: measured here, the fastest variant within one point of fp32, in the ONNX folder
    rec = json.loads((onnx_dir / "recommendation.json").read_text())
    assert rec == report["recommendation"] and rec["tolerance_points"] == 1.0
    assert rec["machine"]["cpu"] and rec["measured"]["throughput_samples"] == 12
    fp32 = v["pytorch"]["metrics"]["accuracy"]
    within = [r for r in report["variants"] if fp32 - r["metrics"]["accuracy"] <= 0.01 + 1e-9]
    fastest = max(within, key=lambda r: r["samples_per_second_batch32"])
    assert rec["backend"] == fastest["backend"] == rec["ranking"][0] and "torch" in rec["ranking"]
    printed = table(report)
    assert "onnx int8 static" in printed and "accuracy" in printed
    assert f"recommended: --backend {rec['backend']}" in printed


def test_static_int8_predicts_as_fp32_onnx_and_auto_serves_the_recommendation(own_run, tmp_path, capsys):
    from support import FIXTURES

    from encoderlab.deploy import predict as P
    from encoderlab.deploy.served import load, locate

    export_run(own_run, quantize="static", latency_samples=2, throughput_samples=8)
    with (FIXTURES / "reviews.csv").open() as f:
        rows = [{"review": r["review"]} for r in csv.DictReader(f)]
    fp32 = P.predict_rows(load(own_run, "onnx"), rows, progress=False)
    static = P.predict_rows(load(own_run, "onnx-int8-static"), rows, progress=False)
    agree = sum(a["label"] == b["label"] for a, b in zip(fp32, static, strict=True))
    assert agree >= 0.9 * len(rows), f"{agree}/{len(rows)}"
    assert max(abs(a["score"] - b["score"]) for a, b in zip(fp32, static, strict=True)) < 0.05

    rec_file = own_run / "onnx" / "recommendation.json"
    rec = json.loads(rec_file.read_text())
    assert load(own_run).backend_name == rec["backend"]  # --backend auto serves the recommendation
    # whatever it names, from the run dir, its hf/ folder and its ONNX folder alike
    rec_file.write_text(json.dumps(rec | {"ranking": ["onnx-int8-static", "torch"]}))
    for folder in (own_run, own_run / "hf", own_run / "onnx"):
        assert load(folder).backend_name == "onnx-int8-static", folder
    assert locate(own_run, "auto", recommended=False)[2] == "torch"  # on a GPU: the CPU's choice does not apply
    from encoderlab.cli.predict import main

    out = tmp_path / "pred.jsonl"
    main([str(own_run), "--input", str(FIXTURES / "reviews.csv"), "--output", str(out)])  # --backend auto
    assert "(sequence_classification, onnx-int8-static)" in capsys.readouterr().err
    assert [json.loads(line)["label"] for line in out.read_text().splitlines()] == [r["label"] for r in static]
    rec_file.write_text(json.dumps(rec | {"ranking": ["onnx-int8", "torch"]}))  # not exported: the next one
    served = load(own_run / "onnx")
    assert served.backend_name == "torch" and served.model_dir == own_run / "hf"
    rec_file.unlink()  # no recommendation: ONNX for an ONNX folder, PyTorch for a run, as before
    assert load(own_run / "onnx").backend_name == "onnx" and load(own_run).backend_name == "torch"


def test_export_without_evaluation_writes_no_recommendation(own_run):
    export_run(own_run, quantize="dynamic", evaluate=False)
    assert (own_run / "onnx" / "model.int8.onnx").is_file()
    assert not (own_run / "onnx" / "model.int8-static.onnx").exists()
    assert not (own_run / "onnx" / "recommendation.json").exists()


def test_ner_export_scores_entities_as_training_did(ner_run, tmp_path):
    ner_run = shutil.copytree(ner_run, tmp_path / "ner", ignore=shutil.ignore_patterns("onnx", "export.json"))
    report = export_run(ner_run, quantize="static", latency_samples=2, throughput_samples=4)
    v = {r["variant"]: r for r in report["variants"]}
    assert "onnx int8 static" in v and report["recommendation"]["backend"] in report["recommendation"]["ranking"]
    summary = json.loads((ner_run / "summary.json").read_text())
    assert v["onnx"]["max_abs_logit_diff_vs_pytorch"] <= ONNX_TOLERANCE
    assert v["pytorch"]["metrics"]["entity_f1"] == pytest.approx(summary["test"]["entity_f1"], abs=1e-6)
    assert v["onnx"]["metrics"]["entity_f1"] == pytest.approx(summary["test"]["entity_f1"], abs=1e-6)
