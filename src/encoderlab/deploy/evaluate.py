"""Score and time every deployable variant of a run on the run's own test split, in one process.

The test split is rebuilt from the run's saved config (``.hydra/config.yaml``) by the task kind's own
``prepare``, and scored by the kind's own LightningModule with its network replaced by the backend under test:
the metrics are computed exactly as in training, whatever runs the model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from encoderlab.data.collate import sorted_batches
from encoderlab.deploy.served import Backend, ServeError
from encoderlab.kinds import get_kind

log = logging.getLogger(__name__)


class BackendNetwork(nn.Module):
    """A backend behind the call signature of a Hugging Face head model (what the kinds' modules call).

    Every output is kept in call order, so two backends fed the same batches can be compared logit by logit.
    """

    def __init__(self, backend: Backend, names: list[str], kind: str):
        super().__init__()
        self.backend, self.names, self.kind = backend, names, kind
        self.serving = get_kind(kind).serving
        self.outputs: list[np.ndarray] = []

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        logits = self.backend({n: given[n].cpu().numpy() for n in self.names})
        self.outputs.append(logits)
        t = torch.from_numpy(np.ascontiguousarray(logits))
        return self.serving.outputs(t)  # as the kind's module reads a Hugging Face model's output


@dataclass
class TestSplit:
    """The run's test split, tokenized as in training, and a module that scores it."""

    run: object
    module: object
    rows: list[dict]
    collator: object
    names: list[str]
    kind: str
    metric: str
    greater_is_better: bool = True
    info: dict = field(default_factory=dict)


def rebuild_test_split(run_dir: Path, tokenizer, names: list[str]) -> TestSplit:
    from omegaconf import OmegaConf

    import encoderlab.cli.hydra_setup  # noqa: F401  (the resolvers a saved config may use)
    from encoderlab.config.validate import validate
    from encoderlab.data.cache import cache_root

    cfg_file = run_dir / ".hydra" / "config.yaml"
    if not cfg_file.is_file():
        raise ServeError(f"'{run_dir}' has no .hydra/config.yaml, so its test split cannot be rebuilt; pass --no-eval")
    run = validate(OmegaConf.load(cfg_file))
    kind = get_kind(run.task.kind)
    root = cache_root(run.paths.cache_dir) if run.speed.cache_tokenized else None
    prepared = kind.prepare(run, tokenizer, root)
    module = kind.build(run, prepared, tokenizer).eval()
    test = prepared.datasets["test"]
    rows = test.to_list() if hasattr(test, "to_list") else list(test)
    if not rows:
        raise ServeError(f"the test split of '{run_dir}' is empty; pass --no-eval")
    return TestSplit(
        run,
        module,
        rows,
        prepared.collator,
        names,
        run.task.kind,
        run.task.primary_metric,
        run.task.greater_is_better,
    )


def score(split: TestSplit, backend: Backend, batch_size: int = 64) -> tuple[dict[str, float], list[np.ndarray]]:
    """The task's test metrics with ``backend`` as the network, and its raw outputs (batch by batch)."""
    net = BackendNetwork(backend, split.names, split.kind)
    module = split.module
    module.network = net
    lengths = [len(r["input_ids"]) for r in split.rows]
    with torch.no_grad():
        for idx in sorted_batches(lengths, batch_size):
            batch = split.collator([split.rows[i] for i in idx])
            _, out = module.step(batch)
            module.update_metrics("test", batch, out)
        values = module.compute_metrics("test")
    return {k: float(v) for k, v in values.items()}, net.outputs


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(max(np.abs(x.astype(np.float64) - y.astype(np.float64)).max() for x, y in zip(a, b, strict=True)))


def _inputs(split: TestSplit, idx: list[int]) -> dict[str, np.ndarray]:
    batch = split.collator([{k: split.rows[i][k] for k in split.names} for i in idx])
    return {k: batch[k].numpy() for k in split.names}


def timing(
    split: TestSplit, backend: Backend, latency_samples: int = 100, throughput_samples: int = 512
) -> dict[str, float]:
    """Latency (p50/p95, ms) one example at a time, and samples/s in length-sorted batches of 32 (as
    encoderlab-predict batches), over the first rows of the test split."""
    n1 = min(latency_samples, len(split.rows))
    singles = [_inputs(split, [i]) for i in range(n1)]
    for x in singles[:3]:
        backend(x)  # warm-up: first-call allocations and lazy initialisation
    times = []
    for x in singles:
        t0 = time.perf_counter()
        backend(x)
        times.append(time.perf_counter() - t0)
    n32 = min(throughput_samples, len(split.rows))
    lengths = [len(split.rows[i]["input_ids"]) for i in range(n32)]
    batches = [_inputs(split, idx) for idx in sorted_batches(lengths, 32)]
    backend(batches[-1])
    t0 = time.perf_counter()
    for x in batches:
        backend(x)
    seconds = time.perf_counter() - t0
    return {
        "latency_ms_p50": round(float(np.percentile(times, 50)) * 1000, 3),
        "latency_ms_p95": round(float(np.percentile(times, 95)) * 1000, 3),
        "samples_per_second_batch32": round(n32 / seconds, 1),
        "latency_samples": n1,
        "throughput_samples": n32,
    }


def dir_size_mb(paths: list[Path]) -> float:
    total = 0
    for p in paths:
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.suffix in (".safetensors", ".pt"))
        elif p.is_file():
            total += p.stat().st_size
    return round(total / 2**20, 2)


def torch_size_mb(module: nn.Module) -> float:
    """Serialized size of a (quantized) module's state dict."""
    import io

    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return round(buf.tell() / 2**20, 2)
