"""Which variant to serve: the fastest one whose test metric stays within the accuracy tolerance of the fp32 model,
measured on the machine that ran ``encoderlab-export``.

int8 pays only where the CPU multiplies int8 fast (AVX-512 VNNI, AVX-VNNI, AMX); elsewhere it can be no faster than
fp32 ONNX and still cost accuracy. The recommendation says so, and names the path that does pay there: a distilled
student (fewer layers) exported to ONNX. ``encoderlab-predict --backend auto`` serves the first variant of the
ranking that the folder it is given can serve.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

from encoderlab.deploy.served import RECOMMEND_FILE, ServeError

DEFAULT_TOLERANCE = 1.0  # points of the primary metric (x 100): accuracy 0.910 -> 0.900 is one point
INT8_PAYS = 1.10  # an int8 variant pays when it serves at least this many times the fastest fp32 variant
REFERENCE = "torch"  # the fp32 PyTorch model: the metric every variant is compared with
DISTILL_HINT = (
    "distil a smaller student (encoderlab-train finetune=distill distill.teacher=RUN_DIR "
    "distill.student_layers=every_other) and export it with encoderlab-export STUDENT_RUN_DIR --format onnx"
)


def _points(t: float) -> str:
    return f"{t:g} point" + ("" if t == 1 else "s")


def parse_tolerance(value: str | float) -> float:
    """``--tolerance``: points of the primary metric, a finite number >= 0."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = math.nan
    if not math.isfinite(t) or t < 0:
        raise ServeError(f"--tolerance must be a number of points >= 0 (e.g. 1 or 0.5), not {value!r}")
    return t


def points_lost(value: float | None, reference: float | None, greater_is_better: bool) -> float | None:
    """How many points (x 100) worse than the reference a metric value is; negative when better."""
    if value is None or reference is None:
        return None
    return 100.0 * ((reference - value) if greater_is_better else (value - reference))


def recommend(variants: list[dict], metric: str, greater_is_better: bool, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """The ranking (fastest first) of the variants within ``tolerance`` points of the fp32 reference, by samples/s
    in batches; the reference is always within it. ``variants`` are export.json rows (backend, metrics, speed)."""
    tolerance = parse_tolerance(tolerance)
    by_backend = {r["backend"]: r for r in variants}
    if REFERENCE not in by_backend:
        raise ServeError("no fp32 PyTorch row to compare the variants with; export again without --no-eval")
    reference = by_backend[REFERENCE]["metrics"].get(metric)
    rows = []
    for r in variants:
        lost = points_lost(r["metrics"].get(metric), reference, greater_is_better)
        rows.append(
            {
                "backend": r["backend"],
                metric: r["metrics"].get(metric),
                "points_lost": None if lost is None else round(lost, 4),
                "samples_per_second": r["samples_per_second_batch32"],
                "latency_ms_p50": r["latency_ms_p50"],
                "within_tolerance": r["backend"] == REFERENCE or (lost is not None and lost <= tolerance + 1e-9),
            }
        )
    ranking = sorted((r for r in rows if r["within_tolerance"]), key=lambda r: -r["samples_per_second"])
    chosen = ranking[0]["backend"]
    fp32 = max(r["samples_per_second"] for r in rows if "int8" not in r["backend"])
    int8 = [r for r in ranking if "int8" in r["backend"]]
    int8_pays = bool(int8) and int8[0]["samples_per_second"] >= INT8_PAYS * fp32
    note = None
    if not int8_pays:
        tried = [r for r in rows if "int8" in r["backend"]]
        if not tried:
            note = (
                "no int8 variant was exported (--quantize int8 exports and measures them here); where int8 does not "
                "pay, " + DISTILL_HINT
            )
        else:
            note = (
                f"int8 does not pay on this CPU: no int8 variant within {_points(tolerance)} serves "
                f"{INT8_PAYS:.2f}x the fastest fp32 variant; for more speed, " + DISTILL_HINT
            )
    return {
        "backend": chosen,
        "ranking": [r["backend"] for r in ranking],
        "metric": metric,
        "greater_is_better": greater_is_better,
        "tolerance_points": tolerance,
        "reference": REFERENCE,
        "int8_pays": int8_pays,
        "note": note,
        "variants": rows,
    }


def write_recommendation(onnx_dir: Path, rec: dict, machine: dict, measured: dict) -> Path:
    """``onnx_dir/recommendation.json``, written atomically, with the machine it was measured on."""
    out = rec | {
        "machine": machine,
        "measured": measured,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    target = onnx_dir / RECOMMEND_FILE
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(out, indent=2))
    os.replace(tmp, target)
    return target


def describe(rec: dict) -> str:
    """The printed recommendation: the variant to serve, and the note when int8 does not pay."""
    line = (
        f"recommended: --backend {rec['backend']} (the fastest variant within {_points(rec['tolerance_points'])} "
        f"of fp32 {rec['metric']} on this machine; encoderlab-predict --backend auto serves it)"
    )
    return line + (f"\nnote: {rec['note']}" if rec.get("note") else "")
