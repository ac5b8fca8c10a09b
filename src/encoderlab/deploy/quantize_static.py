"""Calibrated static int8 ONNX: activation ranges measured once, on a few hundred of the run's own training texts.

Dynamic int8 (``encoderlab.deploy.onnx.quantize_onnx``) measures every activation's range again on each batch;
static int8 fixes the ranges in advance, so the graph runs integer matmuls with no per-batch range pass. The recipe
follows onnxruntime's for transformers on an x86 CPU: shape inference first, QDQ format, int8 weights per output
channel and uint8 activations (U8S8, the pair x86 int8 kernels multiply), only the matmuls quantized (the linear
layers' and attention's two products), and their outputs left in float: onnxruntime then fuses each into one
integer matmul with a float result (``MatMulIntegerToFloat``). Quantizing the outputs as well leaves
quantize/dequantize chains around every layer norm and activation, which cost both speed and accuracy. Layer norms,
softmax, GELU, the embedding table and the classifier stay fp32. Calibration feeds the training texts as
``encoderlab-predict`` batches them: tokenized as in training, sorted by length, padded per batch.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np

from encoderlab.deploy.served import ServeError, require

log = logging.getLogger(__name__)
CALIBRATION_SAMPLES = 300  # training rows fed through the fp32 graph to measure activation ranges
CALIBRATION_BATCH = 16
CALIBRATION_SEED = 0


def training_rows(run_dir: Path, tokenizer) -> list[dict]:
    """The run's training split, tokenized by the kind's own ``prepare`` as in training."""
    from omegaconf import OmegaConf

    import encoderlab.cli.hydra_setup  # noqa: F401  (the resolvers a saved config may use)
    from encoderlab.config.validate import validate
    from encoderlab.data.cache import cache_root
    from encoderlab.kinds import get_kind

    cfg_file = run_dir / ".hydra" / "config.yaml"
    if not cfg_file.is_file():
        raise ServeError(
            f"'{run_dir}' has no .hydra/config.yaml, so static int8 has no training texts to calibrate on; "
            "use --quantize dynamic"
        )
    run = validate(OmegaConf.load(cfg_file))
    root = cache_root(run.paths.cache_dir) if run.speed.cache_tokenized else None
    train = get_kind(run.task.kind).prepare(run, tokenizer, root).datasets.get("train")
    rows = [] if train is None else (train.to_list() if hasattr(train, "to_list") else list(train))
    if not rows:
        raise ServeError(f"the training split of '{run_dir}' is empty: nothing to calibrate on; use --quantize dynamic")
    return rows


def calibration_batches(
    rows: list[dict],
    names: list[str],
    pad_id: int,
    samples: int = CALIBRATION_SAMPLES,
    batch_size: int = CALIBRATION_BATCH,
    seed: int = CALIBRATION_SEED,
) -> list[dict[str, np.ndarray]]:
    """``samples`` rows drawn with a fixed seed, in length-sorted padded batches of the graph's inputs."""
    from encoderlab.data.collate import PadCollator, sorted_batches

    if samples < 1:
        raise ServeError(f"--calibration-samples must be at least 1, not {samples}")
    picked = random.Random(seed).sample(range(len(rows)), min(samples, len(rows)))
    chosen = [{k: rows[i][k] for k in names} for i in picked]
    collate = PadCollator(pad_id)
    lengths = [len(r["input_ids"]) for r in chosen]
    out = []
    for idx in sorted_batches(lengths, batch_size):
        batch = collate([chosen[i] for i in idx])
        out.append({k: batch[k].numpy().astype(np.int64) for k in names})
    return out


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: ``get_next`` gives one input dict, then None."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # part of the protocol; one pass is all MinMax calibration needs
        pass


def quantize_static_onnx(src: Path, dst: Path, batches: list[dict[str, np.ndarray]]) -> None:
    """Static int8 (QDQ, U8S8, per-channel weights, MinMax activation ranges over ``batches``, float matmul
    outputs) of ``src``, written atomically to ``dst``; onnxruntime's failure is one line."""
    require("onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not batches:
        raise ServeError("static int8 needs calibration texts; the run's training split gave none")
    tmp = dst.with_name(dst.name + ".tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs hints meant for CNNs on the root logger
    try:
        with tempfile.TemporaryDirectory(prefix=".calibrate.", dir=dst.parent) as work, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = Path(work) / "prepared.onnx"
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(tmp),
                _Reader(batches),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={
                    "OpTypesToExcludeOutputQuantization": ["MatMul"],
                    "CalibMaxIntermediateOutputs": 8,
                },
            )
    except ServeError:
        raise
    except Exception as e:  # onnxruntime raises many types for a graph it cannot quantize
        tmp.unlink(missing_ok=True)
        raise ServeError(
            f"onnxruntime cannot quantize this graph statically: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}; use --quantize dynamic"
        ) from None
    finally:
        root.setLevel(level)
    os.replace(tmp, dst)
