"""Knowledge distillation for sequence classification (Hinton et al. 2015; DistilBERT, Sanh et al. 2019).

``finetune=distill distill.teacher=RUN_DIR``: a student learns from a finished run's soft targets. The student is
``model`` (a from-scratch size or a smaller pre-trained encoder, with its own tokenizer), or, with
``distill.student_layers``, the teacher's own network with fewer layers, its embeddings, kept layers, pooler and
classifier copied from the teacher as DistilBERT initialises its student.

The teacher is frozen, so its logits on the training split are computed once, on the text tokenized with the
teacher's tokenizer and in the student's row order, and cached under a key of the teacher run and the data (the
seeds and arms of a study share one computation).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from encoderlab.config.schema import ModelConfig, RunConfig
from encoderlab.config.task import kind_classifies_sequences
from encoderlab.data.collate import PadCollator, sorted_batches
from encoderlab.errors import ConfigError, DataError
from encoderlab.kinds.base import Prepared
from encoderlab.models.module import SequenceModule

log = logging.getLogger("encoderlab")

TEACHER_HELP = "give the run dir of a finished encoderlab run (it holds hf/ and summary.json)"


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, labels)``.

    The KL divergence of the student's softened distribution from the teacher's is summed over the classes and
    averaged over the batch (``batchmean``, the true KL per example); CE is the usual mean cross-entropy. Hinton et
    al. scale the soft term by T^2 because its gradients shrink as 1/T^2: without it a higher temperature would
    quietly give the hard labels more weight.
    """
    hard = F.cross_entropy(student_logits, labels)
    if alpha == 0:
        return hard
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * t * t * soft + (1 - alpha) * hard


class DistillSequenceModule(SequenceModule):
    """A sequence classifier trained on the distillation loss; evaluation losses stay plain cross-entropy."""

    def step(self, batch):
        if "teacher_logits" not in batch:
            return super().step(batch)
        logits = self.logits(batch).float()
        d = self.run.distill
        loss = distillation_loss(logits, batch["teacher_logits"].float(), batch["labels"], d.temperature, d.alpha)
        return loss, {"preds": logits.argmax(-1), "logits": logits}


# ---- the teacher -----------------------------------------------------------------------------------------------


@dataclass
class Teacher:
    dir: Path
    summary: dict
    label_names: list[str]
    num_layers: int
    model_type: str

    @property
    def hf(self) -> Path:
        return self.dir / "hf"

    def check_labels(self, names: list[str] | None) -> None:
        """The student's task must have the teacher's classes, in the teacher's order."""
        if names is not None and [str(n) for n in names] != self.label_names:
            raise ConfigError(
                "distill.teacher",
                f"the teacher in '{self.dir}' predicts {self.label_names} (task '{self.summary.get('task')}'), "
                f"this run's task has {list(names)}: distil from a teacher of the same task and label set",
            )

    def describe(self, run: RunConfig, layers: list[int] | None) -> dict:
        metric = self.summary.get("primary_metric")
        test = self.summary.get("test") or {}
        return {
            "teacher": str(self.dir),
            "teacher_model": self.summary.get("model"),
            "teacher_test": test,
            "teacher_primary_metric": metric,
            "teacher_test_primary": test.get(metric),
            "teacher_params": self.summary.get("total_params"),
            "temperature": run.distill.temperature,
            "alpha": run.distill.alpha,
            "student_layers": layers,
        }


def load_teacher(run: RunConfig) -> Teacher:
    """The finished run named by ``distill.teacher``, checked before any data is read."""
    key = "distill.teacher"
    d = Path(os.path.expanduser(str(run.distill.teacher))).resolve()
    if not d.is_dir():
        raise ConfigError(key, f"'{run.distill.teacher}' does not exist; {TEACHER_HELP}")
    f = d / "summary.json"
    if not f.is_file():
        raise ConfigError(key, f"'{d}' holds no summary.json: not an encoderlab run dir; {TEACHER_HELP}")
    try:
        summary = json.loads(f.read_text())
    except json.JSONDecodeError:
        raise ConfigError(key, f"'{f}' is not valid JSON; {TEACHER_HELP}") from None
    if summary.get("status") != "finished":
        raise ConfigError(
            key, f"the run in '{d}' has not finished (status {summary.get('status')!r}); train it to the end first"
        )
    if not kind_classifies_sequences(summary.get("kind")):
        raise ConfigError(key, f"the run in '{d}' is a {summary.get('kind')} run; a teacher is a sequence classifier")
    if not (d / "hf" / "config.json").is_file():
        raise ConfigError(
            key,
            f"'{d}' has no hf/ export with a config.json (a run with save_model=false, or a frozen-feature export): "
            "a teacher is a run whose hf/ loads as a sequence classifier",
        )
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(d / "hf")
    names = [str(config.id2label[i]) for i in range(config.num_labels)]
    teacher = Teacher(d, summary, names, int(config.num_hidden_layers), config.model_type)
    teacher.check_labels(run.task.label_names)
    student_layer_indices(run.distill.student_layers, teacher.num_layers)  # out of range: fail now, not later
    return teacher


# ---- the student -----------------------------------------------------------------------------------------------


def student_layer_indices(spec, n_layers: int) -> list[int] | None:
    """``distill.student_layers`` as teacher layer indices (``every_other``: 0, 2, 4, ...), or None."""
    if spec is None:
        return None
    if spec == "every_other":
        return list(range(0, n_layers, 2))
    layers = [int(i) for i in spec]
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ConfigError(
            "distill.student_layers",
            f"{bad} out of range: the teacher has {n_layers} layers, numbered 0..{n_layers - 1}",
        )
    return layers


def student_run(run: RunConfig, teacher: Teacher) -> RunConfig:
    """With ``distill.student_layers`` the student starts from the teacher's export (``model`` is not read):
    its tokenizer, config and every weight; :func:`keep_layers` then drops the other layers."""
    layers = student_layer_indices(run.distill.student_layers, teacher.num_layers)
    if layers is None:
        return run
    name = f"{teacher.summary.get('model') or teacher.model_type}_{len(layers)}of{teacher.num_layers}"
    model = ModelConfig(name=name, path=str(teacher.hf), pooling=run.model.pooling)
    return dataclasses.replace(run, model=model)


def keep_layers(model: nn.Module, layers: list[int]) -> nn.Module:
    """``model`` (a BERT-family ``*ForSequenceClassification``) with only these encoder layers, in this order.

    Embeddings, pooler and classifier stay as they are: every weight of the student is the teacher's.
    """
    stack = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if not isinstance(stack, nn.ModuleList):
        raise ConfigError(
            "distill.student_layers",
            f"needs a BERT-family teacher (encoder.layer); this one is {type(model).__name__}: set it to null",
        )
    kept = nn.ModuleList([stack[i] for i in layers])
    for new, layer in enumerate(kept):
        for sub in layer.modules():  # the cache index of each attention (unused by an encoder, kept consistent)
            if hasattr(sub, "layer_idx"):
                sub.layer_idx = new
    model.base_model.encoder.layer = kept
    model.config.num_hidden_layers = len(layers)
    return model


# ---- teacher logits, once per data ------------------------------------------------------------------------------


class DistillCollator:
    """The split's own collator, plus the rows' cached ``teacher_logits`` stacked into one tensor."""

    def __init__(self, base):
        self.base = base

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if "teacher_logits" not in rows[0]:
            return self.base(rows)
        batch = self.base([{k: v for k, v in r.items() if k != "teacher_logits"} for r in rows])
        batch["teacher_logits"] = torch.tensor([r["teacher_logits"] for r in rows], dtype=torch.float32)
        return batch


def logits_key(teacher: Teacher, data_key: str, run: RunConfig) -> str:
    """What fixes the teacher's logits: the teacher run (its dir, config and when it finished: a teacher retrained
    in the same dir is another teacher), the student's data (its rows and their order), the task's length limit
    and whether the forward ran in bf16."""
    payload = [
        str(teacher.dir),
        teacher.summary.get("config_hash"),
        teacher.summary.get("finished_at"),
        data_key,
        run.task.max_seq_length,
        run.precision.startswith("bf16"),
    ]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def attach_teacher_logits(run: RunConfig, prepared: Prepared, teacher: Teacher, root: Path | None) -> Prepared:
    """``prepared`` with each training row's ``teacher_logits`` (the other splits are evaluated on hard labels)."""
    teacher.check_labels(prepared.meta.get("label_names"))
    train = prepared.datasets["train"]
    labels = list(train["labels"])
    if run.distill.alpha == 0:  # the soft term has no weight: nothing to compute
        return dataclasses.replace(prepared, collator=DistillCollator(prepared.collator))
    key = logits_key(teacher, prepared.meta.get("data_key", ""), run)
    path = root / "teacher_logits" / key / "train.safetensors" if root is not None else None
    logits = _load(path, labels)
    if logits is None:
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # loading the teacher must not move the student's random stream
            logits = compute_teacher_logits(run, teacher, labels, root)
        log.info("teacher logits on %d training rows in %.1fs", len(labels), time.perf_counter() - t0)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            save_file({"logits": logits.contiguous(), "labels": torch.tensor(labels)}, str(tmp))
            os.replace(tmp, path)
    datasets = dict(prepared.datasets) | {"train": train.add_column("teacher_logits", logits.tolist())}
    meta = prepared.meta | {"teacher_logits": str(path) if path is not None else None}
    return dataclasses.replace(prepared, datasets=datasets, collator=DistillCollator(prepared.collator), meta=meta)


def _load(path: Path | None, labels: list[int]) -> torch.Tensor | None:
    if path is None or not path.exists():
        return None
    try:
        stored = load_file(str(path))
    except Exception as e:
        log.warning("cached teacher logits %s unreadable (%s); recomputing", path, e)
        return None
    if stored["labels"].tolist() != labels:
        log.warning("cached teacher logits %s are for other rows; recomputing", path)
        return None
    log.info("using cached teacher logits %s", path)
    return stored["logits"]


@torch.no_grad()
def compute_teacher_logits(run: RunConfig, teacher: Teacher, labels: list[int], root: Path | None) -> torch.Tensor:
    """The teacher's logits on the training rows: the same rows as the student's, tokenized by the teacher's own
    tokenizer (the two may differ), in the student's order."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from encoderlab.kinds.sequence.data import prepare as prepare_sequence

    tokenizer = AutoTokenizer.from_pretrained(teacher.hf)
    teacher_run = dataclasses.replace(run, model=ModelConfig(name="teacher", path=str(teacher.hf)))
    rows = prepare_sequence(teacher_run, tokenizer, root if run.speed.cache_tokenized else None).datasets["train"]
    if list(rows["labels"]) != labels:
        raise DataError(
            f"the training split tokenized for the teacher ({len(rows)} rows) does not line up with the student's "
            f"({len(labels)} rows); distillation needs the same rows in the same order"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForSequenceClassification.from_pretrained(teacher.hf).to(device).eval()
    collate = PadCollator(tokenizer.pad_token_id)
    rows = rows.to_list()
    lengths = [len(r["input_ids"]) for r in rows]
    out = torch.zeros(len(rows), model.config.num_labels)
    bf16 = run.precision.startswith("bf16")
    fields = [k for k in ("input_ids", "attention_mask", "token_type_ids") if rows and k in rows[0]]
    for idx in sorted_batches(lengths, run.eval_batch_size):
        batch = collate([{k: rows[i][k] for k in fields} for i in idx])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        out[idx] = logits.float().cpu()
    return out
