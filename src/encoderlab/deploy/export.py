"""``encoderlab-export``: a run's model as ONNX (fp32, dynamic int8, calibrated static int8), each variant scored,
timed on this machine, and the one to serve recommended.

Writes ``RUN/onnx/`` (model.onnx, model.int8.onnx, model.int8-static.onnx, tokenizer, deploy.json,
recommendation.json) and ``RUN/export.json`` (per variant: test metrics, size on disk, latency at batch 1,
samples/s at batch 32, and the largest logit difference from the PyTorch model; and the recommendation).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

import torch

from encoderlab.deploy import evaluate as ev
from encoderlab.deploy.logits import LogitsModule
from encoderlab.deploy.onnx import write_onnx_folder
from encoderlab.deploy.quantize_static import CALIBRATION_SAMPLES, calibration_batches, training_rows
from encoderlab.deploy.recommend import DEFAULT_TOLERANCE, describe, parse_tolerance, recommend, write_recommendation
from encoderlab.deploy.served import (
    ONNX_DIR,
    ServeError,
    describe_hf,
    input_names,
    is_run_dir,
    load_torch_model,
    onnx_backend,
    quantize_torch,
    read_run_config,
    torch_backend,
)
from encoderlab.kinds import get_kind
from encoderlab.provenance import machine_info

log = logging.getLogger(__name__)
EXPORT_FILE = "export.json"
QUANTIZE = {"int8": ("dynamic", "static"), "dynamic": ("dynamic",), "static": ("static",)}  # --quantize
ONNX_TOLERANCE = 1e-4  # fp32 ONNX logits vs PyTorch's, largest absolute difference


def _run_dir(path: str | Path) -> Path:
    p = Path(os.path.expanduser(str(path)))
    if not p.is_dir():
        raise ServeError(f"run directory '{p}' does not exist (give outputs/.../<time> of a finished run)")
    if not is_run_dir(p) and is_run_dir(p.parent):
        p = p.parent  # the hf/ folder was given
    if not is_run_dir(p):
        raise ServeError(f"'{p}' is not a run directory (it has no .hydra/config.yaml or summary.json)")
    if not (p / "hf").is_dir():
        raise ServeError(f"run directory '{p}' has no hf/ export; train it with save_model=true")
    return p


def export_run(
    run_dir: str | Path,
    quantize: str | None = None,
    evaluate: bool = True,
    latency_samples: int = 100,
    throughput_samples: int = 512,
    tolerance: float = DEFAULT_TOLERANCE,
    calibration_samples: int = CALIBRATION_SAMPLES,
) -> dict:
    """Export ``RUN/hf`` to ``RUN/onnx`` and, unless ``evaluate`` is false, score and time every variant and
    recommend the fastest within ``tolerance`` points of fp32. ``quantize``: int8 (dynamic and static), dynamic,
    static or None."""
    if quantize is not None and quantize not in QUANTIZE:
        raise ServeError(f"unknown --quantize {quantize!r}; allowed: {', '.join(QUANTIZE)}")
    kinds = QUANTIZE.get(quantize or "", ())
    tolerance = parse_tolerance(tolerance)
    run_dir = _run_dir(run_dir)
    hf = run_dir / "hf"
    info = describe_hf(hf)
    model, tokenizer = load_torch_model(hf, info["kind"], info["feature"])
    module = LogitsModule(model).eval()
    names = input_names(tokenizer)
    task = read_run_config(run_dir).get("task", {})
    serving = get_kind(info["kind"]).serving
    qa = serving.settings(hf)  # what the kind keeps beside its model (QA's lengths)
    meta = {
        "kind": info["kind"],
        "label_names": info["label_names"],
        "max_length": int(task.get("max_seq_length") or 512),
        "qa_settings": qa,
        "source": str(hf),
    } | serving.export_meta(hf)
    calibration = None
    if "static" in kinds:
        rows = training_rows(run_dir, tokenizer)
        calibration = calibration_batches(rows, names, tokenizer.pad_token_id or 0, calibration_samples)
        meta["calibration"] = {"samples": min(calibration_samples, len(rows)), "split": "train"}
    files = write_onnx_folder(module, tokenizer, names, run_dir / ONNX_DIR, meta, "dynamic" in kinds, calibration)
    report = {
        "run_dir": str(run_dir),
        "kind": info["kind"],
        "onnx_dir": str(run_dir / ONNX_DIR),
        "files": {k: str(v) for k, v in files.items()},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch_threads": torch.get_num_threads(),
        "variants": [],
    }
    if evaluate:
        report |= _evaluate(run_dir, module, tokenizer, names, files, kinds, latency_samples, throughput_samples)
        rec = recommend(report["variants"], report["metric"], report["greater_is_better"], tolerance)
        measured = {
            "throughput_samples": throughput_samples,
            "latency_samples": latency_samples,
            "threads": torch.get_num_threads(),
        }
        path = write_recommendation(run_dir / ONNX_DIR, rec, machine_info(), measured)
        report["recommendation"] = json.loads(path.read_text())
    tmp = run_dir / (EXPORT_FILE + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, run_dir / EXPORT_FILE)
    return report


VARIANT_LABELS = {"onnx": "onnx", "onnx-int8": "onnx int8", "onnx-int8-static": "onnx int8 static"}


def _evaluate(run_dir, module, tokenizer, names, files, kinds, latency_samples, throughput_samples) -> dict:
    split = ev.rebuild_test_split(run_dir, tokenizer, names)
    hf = run_dir / "hf"
    variants = [("pytorch", "torch", torch_backend(module), ev.dir_size_mb([hf]))]
    if "dynamic" in kinds:
        q = quantize_torch(module)
        variants.append(("pytorch int8", "torch-int8", torch_backend(q), ev.torch_size_mb(q)))
    for backend, path in files.items():
        served = onnx_backend(path, threads=torch.get_num_threads())
        variants.append((VARIANT_LABELS[backend], backend, served, ev.dir_size_mb([path])))
    rows, reference = [], None
    for label, backend_name, backend, size in variants:
        metrics, outputs = ev.score(split, backend)
        if reference is None:
            reference = outputs
        row = {
            "variant": label,
            "backend": backend_name,
            "metrics": metrics,
            "size_mb": size,
            "max_abs_logit_diff_vs_pytorch": ev.max_abs_diff(reference, outputs),
            **ev.timing(split, backend, latency_samples, throughput_samples),
        }
        rows.append(row)
    onnx_row = next(r for r in rows if r["backend"] == "onnx")
    ok = onnx_row["max_abs_logit_diff_vs_pytorch"] <= ONNX_TOLERANCE
    if not ok:
        diff = onnx_row["max_abs_logit_diff_vs_pytorch"]
        log.warning("fp32 ONNX logits differ from PyTorch's by %.2e (> %.0e)", diff, ONNX_TOLERANCE)
    return {
        "metric": split.metric,
        "greater_is_better": split.greater_is_better,
        "test_samples": len(split.rows),
        "onnx_matches_pytorch": ok,
        "onnx_tolerance": ONNX_TOLERANCE,
        "variants": rows,
    }


def table(report: dict) -> str:
    """The printed comparison (plain text, so it reads the same in a log)."""
    if not report.get("variants"):
        return f"exported to {report['onnx_dir']} (not evaluated)"
    metric = report["metric"]
    base = report["variants"][0]["metrics"].get(metric)
    head = [
        "variant",
        metric,
        "Δ vs fp32",
        "size MB",
        "p50 ms (b=1)",
        "p95 ms (b=1)",
        "samples/s (b=32)",
        "max |Δlogit|",
    ]
    lines = []
    for r in report["variants"]:
        m = r["metrics"].get(metric)
        lines.append(
            [
                r["variant"],
                f"{m:.4f}" if m is not None else "-",
                f"{m - base:+.4f}" if m is not None and base is not None else "-",
                f"{r['size_mb']:.1f}",
                f"{r['latency_ms_p50']:.2f}",
                f"{r['latency_ms_p95']:.2f}",
                f"{r['samples_per_second_batch32']:.1f}",
                f"{r['max_abs_logit_diff_vs_pytorch']:.1e}",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]

    def fmt(row: list) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(cells))

    out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in lines]
    out.append(
        f"{report['test_samples']} test examples of {report['run_dir']}; latency over the first "
        f"{report['variants'][0]['latency_samples']}, throughput over {report['variants'][0]['throughput_samples']} "
        f"({report['torch_threads']} torch threads)"
    )
    if report.get("recommendation"):
        out.append(describe(report["recommendation"]))
    return "\n".join(out)
