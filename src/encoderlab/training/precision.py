"""``precision=auto`` (the default): bf16 only where the hardware runs it fast, fp32 everywhere else.

Detection (:func:`detect_fast_bf16`), in order:

1. ``ENCODERLAB_FAST_BF16=1`` or ``=0`` decides (tests and users force either path with it);
2. a CUDA GPU: fast when it supports bf16;
3. a CPU: fast when it has the instructions (AMX or AVX512-BF16; on x86 without them bf16 is emulated, many times
   slower than fp32) and a matmul probe confirms it: the same square matmul in bf16 and in fp32, a few repetitions,
   well under a second. The probe's result is cached per machine in ``<cache dir>/bf16_probe.json`` (keyed by CPU
   model, torch version and CPU capability), so it runs once.

Where bf16 is fast, ``auto`` runs pre-training (``task.kind=pretraining``) in ``bf16-true`` (bf16 weights, fp32
master weights: the faster of the two for the MLM stage) and fine-tuning in ``bf16-mixed``: ``bf16-true`` fine-tuned
MiniLM faster on the development machine (docs/RESULTS.md), but its fine-tuning accuracy has not been compared with
``bf16-mixed`` yet, so ``auto`` keeps the precision whose accuracy is known (:data:`FINETUNE_BF16`). Elsewhere it
runs ``32-true``. ``summary.json`` records what ran (``precision``) and why (``precision_reason``). An explicit
``precision=bf16-*`` on a CPU without fast bf16 still runs, after one warning line saying how much slower the probe
measured bf16 matmuls there (:func:`slow_bf16_warning`).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from encoderlab.errors import EncoderlabError

ENV = "ENCODERLAB_FAST_BF16"
PRETRAIN_BF16 = "bf16-true"
FINETUNE_BF16 = "bf16-mixed"
PROBE_FILE = "bf16_probe.json"
PROBE_SIZE = 256  # an emulated bf16 matmul of 256 x 256 takes tens of ms on 2 AVX2 cores; 512 already a third of a s
PROBE_REPS = 3
_REASON = "_precision_reason"  # the attribute of a validated RunConfig that keeps why its precision was chosen


def env_override() -> bool | None:
    """``ENCODERLAB_FAST_BF16``: True (1), False (0) or None (unset: detect)."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    if value not in ("0", "1"):
        raise EncoderlabError(f"{ENV}={value!r}: use 1 (bf16 is fast here), 0 (it is not), or unset it to detect")
    return value == "1"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_bf16_instructions() -> str | None:
    """'AMX' or 'AVX512-BF16' where the CPU has them (as torch sees it), else None."""
    import torch

    cpu = torch.cpu
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return None


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def measure_matmul(size: int = PROBE_SIZE, reps: int = PROBE_REPS) -> dict:
    """Seconds of one ``size`` x ``size`` matmul in fp32 and in bf16 (best of ``reps`` after one warm-up each)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    best = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x, y = a.to(dtype), b.to(dtype)
        x @ y
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - t)
        best[name] = max(min(times), 1e-9)
    return {"fp32_s": best["fp32"], "bf16_s": best["bf16"], "bf16_over_fp32": best["bf16"] / best["fp32"]}


def _cache_dir(cache_dir: str | Path | None) -> Path:
    configured = cache_dir or os.environ.get("ENCODERLAB_CACHE") or "~/.cache/encoderlab"
    return Path(os.path.expanduser(str(configured)))


def probe_key() -> str:
    import torch

    return f"{cpu_model()} | torch {torch.__version__} | {torch_capability()}"


def cpu_probe(cache_dir: str | Path | None = None) -> dict:
    """The matmul probe of this machine (:func:`measure_matmul`), measured once and cached in ``PROBE_FILE``."""
    path = _cache_dir(cache_dir) / PROBE_FILE
    key = probe_key()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), dict) and "bf16_over_fp32" in known[key]:
        return known[key]
    result = measure_matmul()
    known[key] = result
    try:  # written whole, then renamed: parallel jobs never read half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{PROBE_FILE}.")
        with os.fdopen(fd, "w") as f:
            json.dump(known, f, indent=2)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the probe again next time
    return result


def torch_capability() -> str:
    """torch's CPU capability: 'AVX2', 'AVX512', 'DEFAULT', ..."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def _device(accelerator: str = "auto") -> str:
    import torch

    return "cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"


def detect_fast_bf16(cache_dir: str | Path | None = None, accelerator: str = "auto") -> tuple[bool, str]:
    """(whether bf16 runs fast where a run with ``trainer.accelerator=accelerator`` trains, why)."""
    forced = env_override()
    if forced is not None:
        return forced, f"{ENV}={int(forced)}"
    import torch

    if _device(accelerator) == "cuda":
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return True, f"GPU {name} runs bf16"
        return False, f"GPU {name} has no fast bf16"
    capability = torch_capability()
    instructions = cpu_bf16_instructions()
    if instructions is None and _is_x86():
        return False, f"CPU ({capability}) without AMX or AVX512-BF16: bf16 is emulated"
    ratio = cpu_probe(cache_dir)["bf16_over_fp32"]
    has = f"with {instructions}" if instructions else capability
    if ratio < 1.0:
        return True, f"CPU ({has}): bf16 matmul {1 / ratio:.1f}x as fast as fp32 (probe)"
    return False, f"CPU ({has}): bf16 matmul {ratio:.1f}x slower than fp32 (probe)"


def bf16_rows(device: str = "cpu") -> tuple[bool, str]:
    """Whether a benchmark runs its bf16 rows on ``device`` ('cpu' or 'cuda'), and why: the same detection as
    ``precision=auto`` (``ENCODERLAB_FAST_BF16`` included). A script that skips them prints ``bf16 rows skipped:``
    and the reason."""
    return detect_fast_bf16(accelerator="gpu" if device == "cuda" else "cpu")


@lru_cache(maxsize=8)
def _detected(cache_dir: str | None, accelerator: str, env: str | None) -> tuple[bool, str]:
    return detect_fast_bf16(cache_dir, accelerator)


def resolve(
    requested: str, pretraining: bool, cache_dir: str | None = None, accelerator: str = "auto"
) -> tuple[str, str]:
    """(the precision to run, why) for ``precision=requested``; only ``auto`` looks at the hardware."""
    if requested != "auto":
        return requested, f"precision={requested} set in the config"
    fast, why = _detected(cache_dir, accelerator, os.environ.get(ENV))
    if not fast:
        return "32-true", f"auto: {why}"
    return (PRETRAIN_BF16 if pretraining else FINETUNE_BF16), f"auto: {why}"


def resolve_run(run) -> None:
    """Set a validated run's ``precision`` to what runs (``auto`` resolved) and keep the reason on it."""
    chosen, why = resolve(run.precision, run.task.pretrains, run.paths.cache_dir, str(run.trainer.accelerator))
    run.precision = chosen
    setattr(run, _REASON, why)


def precision_reason(run) -> str:
    """Why ``run.precision`` is what it is (``summary.json``'s ``precision_reason``)."""
    return getattr(run, _REASON, None) or f"precision={run.precision} set in the config"


def slow_bf16_warning(run) -> str | None:
    """One line for a bf16 run on a CPU where bf16 is slow, with the probe's slowdown; None where it is fine."""
    if not run.precision.startswith("bf16") or _device(str(run.trainer.accelerator)) != "cpu":
        return None
    fast, why = _detected(run.paths.cache_dir, "cpu", os.environ.get(ENV))
    if fast:
        return None
    if env_override() is False:
        slower = "expect training several times slower than in fp32"
    else:
        ratio = cpu_probe(run.paths.cache_dir)["bf16_over_fp32"]
        slower = (
            f"expect training up to ~{ratio:.0f}x slower than in fp32 (bf16 matmuls ran {ratio:.0f}x slower in a probe)"
        )
    return (
        f"precision={run.precision} on a CPU without fast bf16 ({why}): {slower}; "
        "precision=auto (or 32-true) runs fp32 here"
    )
