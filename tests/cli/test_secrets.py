"""No credential from the environment lands in a run dir: saved configs, summary.json, logs, W&B's offline files."""

from __future__ import annotations

import os
from pathlib import Path

from clirun import run_cli
from support import TINY

from encoderlab.redact import MASK, redact, secret_values

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "WANDB_API_KEY": "wandbkey0123456789abcdef0123456789abcdef",
    "HF_TOKEN": "hf_SecretTokenValue4242",
    "MY_SERVICE_SECRET": "service-secret-value-77",
    "DB_PASSWORD": "correct-horse-battery",
    "OPENAI_API_KEY": "sk-not-a-real-key-1234",
}


def test_secret_values_are_masked_wherever_they_appear():
    env = SECRETS | {"HOME": "/home/someone", "SHORT_KEY": "1", "TOKENIZERS_PARALLELISM": "false-but-long"}
    values = secret_values(env)
    assert set(values) == set(SECRETS.values())  # by name; a 1-character "key" would mask every 1
    summary = {"overrides": [f"task.description={SECRETS['HF_TOKEN']}"], "test": {"accuracy": 0.75}, "seed": 1}
    out = redact(summary, values)
    assert out == {"overrides": [f"task.description={MASK}"], "test": {"accuracy": 0.75}, "seed": 1}


def test_a_run_writes_no_secret_anywhere_in_its_run_dir(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | SECRETS
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    args = TINY + ["task=csv_example", "logger=wandb", f"hydra.run.dir={run_dir}"]
    # secrets reach the config through the schema's free-text keys, resolved from the environment
    args += ["task.description=${oc.env:HF_TOKEN}", "tags=[${oc.env:MY_SERVICE_SECRET},${oc.env:DB_PASSWORD}]"]
    p = run_cli("encoderlab-train", args, env, ROOT)
    assert p.returncode == 0, p.stderr[-4000:]

    files = [f for f in run_dir.rglob("*") if f.is_file()]
    assert (run_dir / "summary.json").exists() and any(f.parent.name == "files" for f in files)  # W&B wrote
    for f in files:
        data = f.read_bytes()
        for name, value in SECRETS.items():
            assert value.encode() not in data, f"{name} in {f.relative_to(run_dir)}"
    assert MASK in (run_dir / "summary.json").read_text()  # the resolved description was there, masked
