"""precision=auto: bf16 only where the hardware runs it fast (ENCODERLAB_FAST_BF16 forces either path; on a CPU the
instructions and a cached matmul probe decide), what ran and why in summary.json, and one warning line for an
explicit bf16 run on a CPU without fast bf16."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from clirun import run_cli

from encoderlab.errors import EncoderlabError
from encoderlab.training import precision

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_detection(monkeypatch):
    precision._detected.cache_clear()
    monkeypatch.setattr(precision, "_device", lambda accelerator="auto": "cpu")
    yield
    precision._detected.cache_clear()


@pytest.fixture()
def cpu(monkeypatch, tmp_path):
    """A CPU whose instructions and probe the test sets; counts the probe's measurements."""
    monkeypatch.delenv(precision.ENV, raising=False)
    state = {"instructions": None, "ratio": 12.0, "measured": 0}

    def measure(size=0, reps=0):
        state["measured"] += 1
        return {"fp32_s": 0.01, "bf16_s": 0.01 * state["ratio"], "bf16_over_fp32": state["ratio"]}

    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: state["instructions"])
    monkeypatch.setattr(precision, "_is_x86", lambda: True)
    monkeypatch.setattr(precision, "measure_matmul", measure)
    monkeypatch.setenv("ENCODERLAB_CACHE", str(tmp_path / "cache"))
    return state


def test_the_environment_variable_forces_either_path(monkeypatch):
    monkeypatch.setenv(precision.ENV, "1")
    assert precision.resolve("auto", pretraining=True) == ("bf16-true", "auto: ENCODERLAB_FAST_BF16=1")
    assert precision.resolve("auto", pretraining=False)[0] == "bf16-mixed"
    precision._detected.cache_clear()
    monkeypatch.setenv(precision.ENV, "0")
    assert precision.resolve("auto", pretraining=True) == ("32-true", "auto: ENCODERLAB_FAST_BF16=0")
    assert precision.resolve("bf16-true", pretraining=True) == ("bf16-true", "precision=bf16-true set in the config")
    monkeypatch.setenv(precision.ENV, "yes")
    with pytest.raises(EncoderlabError, match="ENCODERLAB_FAST_BF16"):
        precision.env_override()


def test_a_cpu_with_bf16_instructions_and_a_fast_probe_runs_bf16(cpu):
    cpu["instructions"], cpu["ratio"] = "AMX", 0.1
    chosen, why = precision.resolve("auto", pretraining=True)
    assert chosen == "bf16-true" and "AMX" in why and "10.0x as fast" in why
    assert precision.resolve("auto", pretraining=False)[0] == "bf16-mixed"


def test_a_cpu_whose_probe_says_bf16_is_slower_runs_fp32(cpu):
    cpu["instructions"], cpu["ratio"] = "AVX512-BF16", 1.5
    chosen, why = precision.resolve("auto", pretraining=True)
    assert chosen == "32-true" and "1.5x slower" in why


def test_an_x86_cpu_without_the_instructions_runs_fp32_without_probing(cpu):
    assert precision.resolve("auto", pretraining=True) == (
        "32-true",
        f"auto: CPU ({precision.torch_capability()}) without AMX or AVX512-BF16: bf16 is emulated",
    )
    assert cpu["measured"] == 0


def test_the_probe_is_measured_once_per_machine_and_cached(cpu, tmp_path):
    first = precision.cpu_probe()
    again = precision.cpu_probe()
    assert cpu["measured"] == 1 and first == again
    stored = json.loads((tmp_path / "cache" / precision.PROBE_FILE).read_text())
    assert list(stored) == [precision.probe_key()] and "torch" in precision.probe_key()
    (tmp_path / "cache" / precision.PROBE_FILE).write_text("{not json")  # a broken cache is measured again
    precision.cpu_probe()
    assert cpu["measured"] == 2


def test_an_explicit_bf16_run_on_a_slow_cpu_warns_with_the_probes_ratio(cpu, tmp_path):
    from support import reviews_task

    from encoderlab.config.schema import RunConfig

    run = RunConfig(task=reviews_task(), precision="bf16-true")
    line = precision.slow_bf16_warning(run)
    assert line is not None and "\n" not in line
    assert "precision=bf16-true" in line and "~12x slower" in line and "precision=auto" in line
    cpu["instructions"], cpu["ratio"] = "AMX", 0.1  # another machine: its own probe
    (tmp_path / "cache" / precision.PROBE_FILE).unlink()
    precision._detected.cache_clear()
    assert precision.slow_bf16_warning(run) is None  # fast here: nothing to say
    run.precision = "32-true"
    assert precision.slow_bf16_warning(run) is None


def _train(args: list[str], env: dict) -> subprocess.CompletedProcess:
    from support import TINY

    full = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | env | {"OMP_NUM_THREADS": "1"}
    return run_cli("encoderlab-train", ["task=csv_example", *TINY, *args], full, ROOT)


def test_a_run_records_what_precision_ran_and_why(tmp_path, cache_dir):
    p = _train([f"hydra.run.dir={tmp_path / 'fp32'}", "+trainer.extra.max_flops=1e6"], {precision.ENV: "0"})
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((tmp_path / "fp32" / "summary.json").read_text())
    assert s["precision"] == "32-true" and s["precision_reason"] == "auto: ENCODERLAB_FAST_BF16=0"
    assert s["train_flops"] >= 1e6 and s["steps"] < 4  # the FLOP budget stopped it before trainer=debug's 4 batches
    assert "without fast bf16" not in p.stdout + p.stderr

    p = _train([f"hydra.run.dir={tmp_path / 'bf16'}", "precision=bf16-mixed"], {precision.ENV: "0"})
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((tmp_path / "bf16" / "summary.json").read_text())
    assert s["precision"] == "bf16-mixed" and s["precision_reason"] == "precision=bf16-mixed set in the config"
    warned = [ln for ln in (p.stdout + p.stderr).splitlines() if "without fast bf16" in ln]
    assert len(warned) == 1 and "precision=auto" in warned[0]


def test_a_composed_config_resolves_auto_by_task_kind(monkeypatch):
    from hydra import compose, initialize_config_dir

    import encoderlab.cli.train  # noqa: F401  (the schema in Hydra's ConfigStore)
    from encoderlab.config.validate import validate

    monkeypatch.setenv(precision.ENV, "1")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        finetune = validate(compose("config", overrides=["task=csv_example"]))
        pretrain = validate(compose("config", overrides=["task=pretrain_mlm_small", "model=bert_tiny_preln"]))
        explicit = validate(compose("config", overrides=["task=csv_example", "precision=32-true"]))
    assert (finetune.precision, pretrain.precision, explicit.precision) == ("bf16-mixed", "bf16-true", "32-true")
    assert precision.precision_reason(pretrain) == "auto: ENCODERLAB_FAST_BF16=1"
    assert precision.precision_reason(explicit) == "precision=32-true set in the config"
