"""ONNX export (``torch.onnx.export`` with dynamic batch and sequence axes) and dynamic int8 quantization (static
int8, which needs calibration texts, is in ``encoderlab.deploy.quantize_static``).

The exported graph takes ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer makes
them) and returns one ``logits`` tensor, whatever the kind: :class:`LogitsModule` gives every model the same
signature (``encoderlab.deploy.logits``), so the same pre- and post-processing serve PyTorch and ONNX.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from encoderlab.deploy.logits import LogitsModule
from encoderlab.deploy.quantize_static import quantize_static_onnx
from encoderlab.deploy.served import (
    DEPLOY_FILE,
    ONNX_FILE,
    ONNX_INT8_FILE,
    ONNX_INT8_STATIC_FILE,
    ServeError,
    require,
)
from encoderlab.kinds import get_kind

log = logging.getLogger(__name__)
OPSET = 17


def _example_inputs(tokenizer, names: list[str]) -> tuple[torch.Tensor, ...]:
    enc = tokenizer(
        ["an example to trace", "a second, somewhat longer example to trace the graph"],
        padding=True,
        return_tensors="pt",
    )
    return tuple(enc[n] for n in names)


def export_onnx(module: LogitsModule, tokenizer, names: list[str], out_file: Path, token_level: bool) -> None:
    """Write ``out_file`` atomically; a network the exporter cannot trace is a one-line error."""
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic["logits"] = {0: "batch", 1: "sequence"} if token_level else {0: "batch"}
    require("onnx")
    module = module.eval()
    tmp = out_file.with_name(out_file.name + ".tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                _example_inputs(tokenizer, names),
                str(tmp),
                input_names=names,
                output_names=["logits"],
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as e:  # the exporter raises many types for an untraceable op
        tmp.unlink(missing_ok=True)
        head = getattr(getattr(module, "model", None), "head", None)
        what = f"a {head.kind} head" if head is not None else type(module.model).__name__
        raise ServeError(
            f"torch.onnx.export cannot export {what}: {type(e).__name__}: {str(e).splitlines()[0][:200]}; "
            "serve this run with --backend torch"
        ) from None
    finally:
        module.eval()  # the exporter restores the training flag it found; keep inference mode either way
    os.replace(tmp, out_file)


def quantize_onnx(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization (weights int8, activations quantized per batch): onnxruntime's recipe for
    transformers on CPU."""
    require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dst.with_name(dst.name + ".tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs a pre-processing hint meant for CNNs on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    os.replace(tmp, dst)


def write_onnx_folder(
    module: LogitsModule,
    tokenizer,
    names: list[str],
    out_dir: Path,
    meta: dict,
    dynamic: bool,
    calibration: list | None = None,
) -> dict[str, Path]:
    """``out_dir`` with model.onnx (+ model.int8.onnx when ``dynamic``, + model.int8-static.onnx calibrated on the
    ``calibration`` batches), the tokenizer and deploy.json; built in a temporary folder beside it and swapped in,
    so a failed export never leaves half a folder."""
    token_level = get_kind(meta["kind"]).serving.token_level  # outputs per token, not per sequence
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary folder
    files = {"onnx": ONNX_FILE}
    try:
        export_onnx(module, tokenizer, names, work / ONNX_FILE, token_level)
        if dynamic:
            quantize_onnx(work / ONNX_FILE, work / ONNX_INT8_FILE)
            files["onnx-int8"] = ONNX_INT8_FILE
        if calibration is not None:
            quantize_static_onnx(work / ONNX_FILE, work / ONNX_INT8_STATIC_FILE, calibration)
            files["onnx-int8-static"] = ONNX_INT8_STATIC_FILE
        tokenizer.save_pretrained(work)
        (work / DEPLOY_FILE).write_text(json.dumps(meta | {"input_names": names, "opset": OPSET}, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {k: out_dir / name for k, name in files.items()}
