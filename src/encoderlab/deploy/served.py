"""A model folder, ready to serve: what it predicts, its labels, its tokenizer and a backend that runs it.

A run directory, its ``hf/`` folder (a Hugging Face model or a feature-based export) and an ONNX export
(``RUN/onnx/``, written by ``encoderlab-export``) all load into one :class:`Served`. A backend is a function
from padded numpy inputs to numpy logits, so the pre- and post-processing are the same for every backend:
``[batch, labels]`` for sequences, ``[batch, tokens, labels]`` for tokens, ``[batch, tokens, 2]`` (start,
end) for question answering.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from encoderlab.deploy.base import (  # noqa: F401  (importable from here, as before)
    DEPLOY_FILE,
    ServeError,
    read_run_config,
)
from encoderlab.names import TASK_KINDS

if TYPE_CHECKING:
    from encoderlab.kinds import Serving

BACKENDS = ("auto", "torch", "torch-int8", "onnx", "onnx-int8", "onnx-int8-static")

ONNX_DIR = "onnx"  # inside a run directory
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"  # dynamic int8
ONNX_INT8_STATIC_FILE = "model.int8-static.onnx"  # calibrated static int8
ONNX_FILES = {"onnx": ONNX_FILE, "onnx-int8": ONNX_INT8_FILE, "onnx-int8-static": ONNX_INT8_STATIC_FILE}
RECOMMEND_FILE = "recommendation.json"  # in the ONNX folder: the variant --backend auto serves, measured here

log = logging.getLogger(__name__)
Backend = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class Served:
    kind: str
    tokenizer: Any
    backend: Backend
    input_names: list[str]
    max_length: int
    label_names: list[str] | None = None
    qa_settings: dict = field(default_factory=dict)
    model_dir: Path | None = None
    run_dir: Path | None = None
    backend_name: str = "torch"

    @property
    def task_config(self) -> dict:
        """The run's resolved ``task`` config when the folder belongs to a run (text columns, lengths)."""
        if self.run_dir is None:
            return {}
        return read_run_config(self.run_dir).get("task", {})


# ---------------------------------------------------------------- finding the folder


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file() or (path / "summary.json").is_file()


def _hint() -> str:
    return "give a run directory (outputs/.../<time>), its hf/ folder, or an ONNX folder written by encoderlab-export"


def locate(path: str | Path, backend: str, recommended: bool = True) -> tuple[Path, Path | None, str]:
    """(model folder, run dir or None, concrete backend) for a path given by the user; ``recommended``: whether
    ``auto`` follows the CPU recommendation of encoderlab-export."""
    if backend not in BACKENDS:
        raise ServeError(f"unknown backend {backend!r} (--backend); allowed: {', '.join(BACKENDS)}")
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise ServeError(f"model folder '{p}' does not exist; {_hint()}")
    if not p.is_dir():
        raise ServeError(f"'{p}' is a file, not a model folder; {_hint()}")
    run_dir = p if is_run_dir(p) else (p.parent if is_run_dir(p.parent) else None)
    onnx_here = (p / ONNX_FILE).is_file()
    if backend == "auto" and recommended:
        p, backend = _auto(p, run_dir, onnx_here)
        onnx_here = (p / ONNX_FILE).is_file()
    elif backend == "auto":
        backend = "onnx" if onnx_here else "torch"
    if backend.startswith("onnx"):
        folder = run_dir / ONNX_DIR if run_dir is not None and not onnx_here else p  # a run dir or its hf/
        name = ONNX_FILES[backend]
        if not (folder / name).is_file():
            what = {"onnx": "ONNX model", "onnx-int8": "dynamic int8 ONNX model"}.get(backend, "static int8 ONNX model")
            fix = {"onnx": "", "onnx-int8": " --quantize dynamic"}.get(backend, " --quantize static")
            raise ServeError(
                f"'{folder}' holds no {what} ({name}); export it first: encoderlab-export "
                f"{run_dir or 'RUN_DIR'} --format onnx{fix} (or use --backend torch)"
            )
        return folder, run_dir, backend
    folder = p / "hf" if p == run_dir else p
    if onnx_here and not (folder / "config.json").is_file():
        raise ServeError(f"'{p}' is an ONNX export; use --backend onnx (or give the run's hf/ folder)")
    if not folder.is_dir():
        raise ServeError(
            f"run directory '{p}' has no hf/ export (was it run with save_model=false, or did it fail? "
            "see its summary.json); train it again with save_model=true"
        )
    return folder, run_dir, backend


def _auto(p: Path, run_dir: Path | None, onnx_here: bool) -> tuple[Path, str]:
    """``--backend auto``: the first variant of the folder's recommendation (written by encoderlab-export, which
    measured every variant on its machine) that this folder can serve; without one, ONNX for an ONNX folder and
    PyTorch otherwise."""
    onnx_dir = p if onnx_here else (run_dir / ONNX_DIR if run_dir is not None else None)
    rec = read_recommendation(onnx_dir) if onnx_dir is not None else {}
    ranking = rec.get("ranking", [])
    measured_on = (rec.get("machine") or {}).get("cpu")
    if measured_on:
        from encoderlab.provenance import machine_info

        here = machine_info()["cpu"]
        if here != measured_on:
            log.warning(
                "%s was measured on %s, this CPU is %s: run encoderlab-export again here to measure the variants "
                "on this machine",
                onnx_dir / RECOMMEND_FILE,
                measured_on,
                here,
            )
    for backend in ranking:
        if backend in ONNX_FILES and (onnx_dir / ONNX_FILES[backend]).is_file():
            return p, backend
        if backend in ("torch", "torch-int8") and run_dir is not None and (run_dir / "hf").is_dir():
            return (run_dir if onnx_here else p), backend
    return p, "onnx" if onnx_here else "torch"


def read_recommendation(onnx_dir: Path) -> dict:
    """The ONNX folder's recommendation, or {} (none written, or unreadable: auto falls back)."""
    f = onnx_dir / RECOMMEND_FILE
    if not f.is_file():
        return {}
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(rec, dict) or not isinstance(rec.get("ranking"), list):
        return {}
    return rec


# ---------------------------------------------------------------- what a folder serves


def _label_list(id2label: dict | None) -> list[str] | None:
    if not id2label:
        return None
    return [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]


def serving_of(kind: str) -> Serving:
    """The serving of the kind an export stores (``Kind.serving``, ``kinds/<kind>/serving.py``)."""
    from encoderlab.kinds import get_kind

    return get_kind(kind).serving


def servings() -> list[Serving]:
    """The serving of every kind (``kinds/<kind>/serving.py``): which exports it recognizes, how it predicts."""
    return [serving_of(name) for name in TASK_KINDS]


def describe_hf(folder: Path) -> dict:
    """kind, label names and loader type of an ``hf/`` folder, read from its files (no weights loaded); the kind is
    the one whose serving recognizes the folder."""
    if (folder / "feature_head.json").is_file():
        desc = json.loads((folder / "feature_head.json").read_text())
        serving = next(s for s in servings() if s.recognizes_feature(desc, folder))
        return {"kind": serving.name, "label_names": serving.label_names(desc.get("label_names")), "feature": True}
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        per_task = sorted(d.name for d in folder.glob("*") if (d / "config.json").is_file())
        if per_task:  # a multitask run: one model per task
            raise ServeError(
                f"'{folder}' holds one model per task of a multitask run: give one of them, "
                + ", ".join(str(folder / name) for name in per_task)
            )
        raise ServeError(
            f"'{folder}' is not a model export: it has neither config.json nor feature_head.json; {_hint()}"
        )
    cfg = json.loads(cfg_file.read_text())
    arch = (cfg.get("architectures") or ["?"])[0]
    serving = next((s for s in servings() if s.recognizes(arch, cfg)), None)
    if serving is None:
        raise ServeError(
            f"'{folder}' holds a {arch} model, which predicts no labels, values, entities or answers; "
            "encoderlab-predict serves fine-tuned classification, regression, NER and QA runs "
            "(fine-tune it first: encoderlab-train model=from_checkpoint model.path=" + str(folder) + ")"
        )
    names = serving.label_names(_label_list(cfg.get("id2label")))
    return {"kind": serving.name, "label_names": names, "feature": False, "config": cfg}


def _max_length(run_dir: Path | None, tokenizer, config: dict | None) -> int:
    if run_dir is not None:
        n = read_run_config(run_dir).get("task", {}).get("max_seq_length")
        if isinstance(n, int):
            return n
    config = config or {}
    limit = config.get("max_position_embeddings", 512)
    if config.get("model_type") in OFFSET_POSITIONS:  # positions numbered from padding_idx + 1: two fewer tokens
        limit -= int(config.get("pad_token_id") if config.get("pad_token_id") is not None else 1) + 1
    return int(min(limit, getattr(tokenizer, "model_max_length", limit) or limit))


# architectures whose position ids start after the padding index (RoBERTa's scheme): max_position_embeddings - 2
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "data2vec-text", "xmod")


def input_names(tokenizer) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in getattr(tokenizer, "model_input_names", []):
        names.append("token_type_ids")
    return names


# ---------------------------------------------------------------- loading


def load_torch_model(folder: Path, kind: str, feature: bool):
    """(network, tokenizer) of an ``hf/`` folder; a feature-based export comes back as its FeatureModel."""
    import transformers
    from transformers import AutoTokenizer

    if feature:
        from encoderlab.models.heads import load_feature_model

        model, tokenizer, _ = load_feature_model(folder)
        return model.eval(), tokenizer
    auto = getattr(transformers, serving_of(kind).auto_model)  # the kind's Auto class
    try:
        model = auto.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise ServeError(f"cannot load the model in '{folder}': {str(e).splitlines()[0]}") from None
    return model.eval(), tokenizer


def torch_backend(module, device: str = "cpu") -> Backend:
    """A :class:`~encoderlab.deploy.logits.LogitsModule` as a numpy function."""
    import torch

    module = module.to(device).eval()

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            args = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}
            return module(**args).float().cpu().numpy()

    return run


def quantize_torch(module):
    """Dynamic int8 quantization of every Linear layer (weights int8, activations quantized on the fly)."""
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 announces a future move of the quantized tensor API
        return quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)


def require(module: str):
    """Import an optional dependency of the ``deploy`` extra, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ServeError(
            f"{module} is not installed: pip install onnx==1.23.2 onnxruntime==1.32.0 (the 'deploy' extra, "
            "part of make install)"
        ) from None


def onnx_backend(path: Path, device: str = "cpu", threads: int | None = None) -> Backend:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for a corrupt or foreign file
        raise ServeError(f"onnxruntime cannot load '{path}': {str(e).splitlines()[0]}; export it again") from None
    wanted = [i.name for i in session.get_inputs()]

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(None, {k: inputs[k].astype(np.int64) for k in wanted})[0]

    return run


def load(path: str | Path, backend: str = "auto", device: str = "cpu", threads: int | None = None) -> Served:
    """Load a run dir, an ``hf/`` folder or an ONNX folder for prediction with the chosen backend
    (``threads``: onnxruntime's intra-op threads; PyTorch's are set with ``torch.set_num_threads``)."""
    folder, run_dir, backend = locate(path, backend, recommended=device == "cpu")  # measured on the CPU
    if backend.startswith("onnx"):
        return _load_onnx(folder, run_dir, backend, device, threads)
    from encoderlab.deploy.logits import LogitsModule

    info = describe_hf(folder)
    model, tokenizer = load_torch_model(folder, info["kind"], info["feature"])
    module = LogitsModule(model)
    if backend == "torch-int8":
        module = quantize_torch(module)
    qa = serving_of(info["kind"]).settings(folder)  # what the kind keeps beside its model (QA's lengths)
    return Served(
        kind=info["kind"],
        tokenizer=tokenizer,
        backend=torch_backend(module, device),
        input_names=input_names(tokenizer),
        max_length=_max_length(run_dir, tokenizer, info.get("config") or _encoder_config(folder)),
        label_names=info["label_names"],
        qa_settings=qa,
        model_dir=folder,
        run_dir=run_dir,
        backend_name=backend,
    )


def _encoder_config(folder: Path) -> dict | None:
    f = folder / "encoder" / "config.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _load_onnx(folder: Path, run_dir: Path | None, backend: str, device: str, threads: int | None) -> Served:
    from transformers import AutoTokenizer

    meta_file = folder / DEPLOY_FILE
    if not meta_file.is_file():
        raise ServeError(f"'{folder}' has no {DEPLOY_FILE}; export it with encoderlab-export RUN_DIR --format onnx")
    meta = json.loads(meta_file.read_text())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    name = ONNX_FILES[backend]
    return Served(
        kind=meta["kind"],
        tokenizer=tokenizer,
        backend=onnx_backend(folder / name, device, threads),
        input_names=list(meta["input_names"]),
        max_length=int(meta["max_length"]),
        label_names=meta.get("label_names"),
        qa_settings=meta.get("qa_settings") or {},
        model_dir=folder,
        run_dir=run_dir,
        backend_name=backend,
    )
