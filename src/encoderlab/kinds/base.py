"""What every task kind provides and returns: :class:`Prepared` (tokenized splits and what goes with them), the
:class:`Kind` protocol and :class:`KindFunctions`. The kinds' modules import these from here, not from the package,
so the package's :func:`~encoderlab.kinds.get_kind`, which imports the kinds, and the kinds never import each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from datasets import DatasetDict

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from encoderlab.config.schema import RunConfig
    from encoderlab.data.datamodule import EncoderDataModule
    from encoderlab.models.module import EncoderModule


@dataclass
class Prepared:
    """Tokenized splits ready for batching, plus what the model and the outputs need to know."""

    datasets: DatasetDict  # train / validation / test, tokenized, unpadded
    collator: Callable  # list of rows -> batch of tensors
    meta: dict = field(default_factory=dict)  # JSON-able: label_names, data stats, ... (goes into summary.json)
    extras: dict[str, Any] = field(default_factory=dict)  # anything else (raw examples for QA post-processing)
    # per-row lengths for length-bucketed batches; None: sample uniformly
    lengths: dict[str, list[int]] | None = None
    # multitask: which rows may share a batch and which task trains next (data.multitask.TaskBatching)
    batching: Any = None


class PrepareFn(Protocol):
    def __call__(self, run: RunConfig, tokenizer: Any, cache_root: Path | None) -> Prepared:
        """Raw splits -> :class:`Prepared` (tokenized splits, collator, meta, lengths); ``cache_root`` None: no
        cache."""
        ...


class BuildFn(Protocol):
    def __call__(self, run: RunConfig, prepared: Prepared, tokenizer: Any) -> EncoderModule:
        """The network with its head, the strategy's freezing applied, in an :class:`EncoderModule`."""
        ...


class ExportFn(Protocol):
    def __call__(self, module: EncoderModule, tokenizer: Any, out_dir: Path, prepared: Prepared) -> None:
        """``out_dir``: a Hugging Face folder that ``transformers.pipeline`` loads (where the network allows)."""
        ...


class PredictFn(Protocol):
    def __call__(
        self,
        module: EncoderModule,
        trainer: pl.Trainer,
        datamodule: EncoderDataModule,
        prepared: Prepared,
        run_dir: Path,
    ) -> dict:
        """Writes predictions files into ``run_dir``; returns extra test metrics (computed outside the loop)."""
        ...


class TokenizerFn(Protocol):
    def __call__(self, run: RunConfig, run_dir: Path) -> Any:
        """The run's tokenizer when it is not the model's own (pre-training may train a WordPiece vocabulary)."""
        ...


class AssessFn(Protocol):
    def __call__(self, run: RunConfig, summary: dict) -> dict:
        """What a finished run's summary says about it: ``{"status": "undertrained", "undertrained": what it reached,
        "undertrained_fix": what to change}`` for a run below the kind's floor, else ``{}``."""
        ...


class CardPartsFn(Protocol):
    def __call__(self, run: RunConfig, metrics: dict[str, dict], meta: dict) -> list[tuple[str, RunConfig, dict, dict]]:
        """(folder inside ``hf/``, its run config, its metrics by split, its data meta) of each model the export
        holds, one model card each."""
        ...


class Serving:
    """What a kind's export serves (``encoderlab-predict``, ``encoderlab-export``, the model card): deploy/ looks it
    up by the kind name an export stores (``Kind.serving``) and never names a kind. The defaults fit a kind whose
    export no pipeline serves; each kind's ``serving`` module overrides what its export does."""

    name: str = ""  # the task.kind it serves
    pipeline_tag: str = "feature-extraction"  # the hub's pipeline tag, in the model card
    auto_model: str | None = None  # the transformers Auto class that loads its hf/; None: encoderlab-predict refuses
    token_level: bool = False  # one output per token ([batch, tokens, ...]) rather than per sequence
    usage: str | None = None  # the card's "Use" code; None: transformers.pipeline(pipeline_tag)

    def recognizes(self, architecture: str, config: dict) -> bool:
        """An hf/ folder whose config.json has this architecture (and config) holds a model of this kind."""
        return False

    def recognizes_feature(self, desc: dict, folder: Path) -> bool:
        """A feature-based export (``feature_head.json`` read into ``desc``) holds a model of this kind."""
        return False

    def label_names(self, names: list[str] | None) -> list[str] | None:
        """The label names it predicts, from the export's (None: it predicts values or spans)."""
        return names

    def settings(self, folder: Path) -> dict:
        """Settings the export keeps beside the model that prediction needs (question answering's lengths)."""
        return {}

    def export_meta(self, folder: Path) -> dict:
        """Entries for an ONNX folder's deploy.json, read from the hf/ export (a long-text run's windowing)."""
        return {}

    def outputs(self, logits):
        """A backend's logits (a tensor) as the kind's module reads a Hugging Face model's output."""
        from types import SimpleNamespace

        return SimpleNamespace(logits=logits)

    def columns(self, served, rows: list[dict], given):
        """The input columns to read (``deploy.base.Columns``): as given, else the run's own fields, else the usual."""
        raise NotImplementedError

    def predict(self, served, rows: list[dict], cols, batch_size: int, progress: bool) -> list[dict]:
        """One prediction per row, in input order."""
        raise NotImplementedError


class Kind(Protocol):
    """What a task kind provides to the runner (and to multitask, which builds on the other kinds)."""

    prepare: PrepareFn
    build: BuildFn
    export: ExportFn
    predict: PredictFn | None  # None: no predictions files, no extra metrics
    tokenizer: TokenizerFn | None  # None: the model's own (models/encoder.load_tokenizer)
    assess: AssessFn | None  # None: a finished run is finished
    card_parts: CardPartsFn | None  # None: one model, one card for hf/
    serving: Serving  # what its export serves


@dataclass(frozen=True)
class KindFunctions:
    """A :class:`Kind` made of functions: what each kind's module puts in its ``KIND``."""

    prepare: PrepareFn
    build: BuildFn
    export: ExportFn
    predict: PredictFn | None = None
    tokenizer: TokenizerFn | None = None
    assess: AssessFn | None = None
    card_parts: CardPartsFn | None = None
    serving: Serving = field(default_factory=Serving)


def write_json(path: Path, obj) -> None:
    import json

    path.write_text(json.dumps(obj, indent=2, default=str))
