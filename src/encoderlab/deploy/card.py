"""The model card (``hf/README.md``) of a run's export, and ``--push-to-hub``.

The card says what a hub user needs before loading the model: the task, the data and how it was split, the test
metrics, the resolved config's key choices, the command that made it and how to load it. Its YAML header carries
the hub's metadata (pipeline tag, base model, ``model-index`` results).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path

from encoderlab.deploy.served import ServeError, is_run_dir, read_run_config
from encoderlab.errors import ConfigError
from encoderlab.kinds import Serving, get_kind
from encoderlab.names import TASK_KINDS
from encoderlab.redact import redact
from encoderlab.strategies import get_strategy

log = logging.getLogger(__name__)
CARD = "README.md"


def _plain(config) -> dict:
    return asdict(config) if is_dataclass(config) else dict(config)


def _data_line(task: dict, sizes: dict) -> str:
    if task.get("source") == "files":
        files = {k: v for k, v in (task.get("data_files") or {}).items() if v}
        where = "Your files " + ", ".join(f"{k}: `{Path(v).name}`" for k, v in files.items())
    else:
        where = f"{task.get('source')} dataset `{task.get('dataset')}`" + (
            f" ({task['subset']})" if task.get("subset") else ""
        )
    carved = [s for s in ("validation", "test") if task.get(f"{s}_split") is None]
    split = (
        f"; {' and '.join(carved)} carved out of train (seeded, split_seed={task.get('split_seed')})" if carved else ""
    )
    counts = ", ".join(f"{k} {v:,}" for k, v in sizes.items() if isinstance(v, int) and not k.endswith("_questions"))
    limit = f"; at most {task['max_train_samples']:,} training examples" if task.get("max_train_samples") else ""
    return f"{where}{split}{limit}" + (f" (examples: {counts})" if counts else "")


def _choices(cfg: dict) -> list[tuple[str, object]]:
    m, ft, opt, sch, tr = (cfg.get(k, {}) for k in ("model", "finetune", "optimizer", "scheduler", "trainer"))
    rows = [
        ("model", f"{m.get('name')} ({m.get('path') or 'from scratch'})"),
        ("fine-tuning", ft.get("strategy")),
    ]
    rows += _strategy_rows(ft)
    rows += [
        ("optimizer", f"{opt.get('name', 'adamw')}, lr {opt.get('lr')}, weight decay {opt.get('weight_decay')}"),
        ("layer-wise lr decay", opt.get("layer_decay")),
        ("schedule", f"{sch.get('name')}, warmup ratio {sch.get('warmup_ratio')}"),
        ("epochs", tr.get("max_epochs")),
        ("batch size", cfg.get("batch_size")),
        ("max sequence length", cfg.get("task", {}).get("max_seq_length")),
        ("precision", cfg.get("precision")),
        ("seed", cfg.get("seed")),
    ]
    return [(k, v) for k, v in rows if v is not None]


def _strategy_rows(ft: dict) -> list[tuple[str, object]]:
    """The strategy's own rows (``Strategy.card_rows``: feature_based's layers and head, top_k's k)."""
    try:
        strategy = get_strategy(ft.get("strategy") or "")
    except ConfigError:  # a strategy this install does not know (a run made elsewhere): its name is shown alone
        return []
    return strategy.card_rows(ft)


def _serving(kind: str) -> Serving:
    """The serving of the kind named in the run's config (``Kind.serving``): pipeline tag and usage."""
    try:
        return get_kind(kind).serving
    except ConfigError:  # a kind this install does not know
        return Serving()


def _usage(serving: Serving, feature: bool) -> str:
    if feature:
        return (
            "The encoder is frozen (`encoder/`) and the trained head (`feature_head.pt`) has no Hugging Face "
            "equivalent, so no pipeline loads it alone:\n\n```python\n"
            "from encoderlab.models.heads import load_feature_model\n"
            "model, tokenizer, desc = load_feature_model(PATH)\n"
            "logits = model(tokenizer(texts, return_tensors='pt', padding=True))\n```\n"
        )
    if serving.usage is not None:
        return serving.usage
    return f'```python\nfrom transformers import pipeline\npipeline("{serving.pipeline_tag}", model=PATH)\n```\n'


def render_card(config, metrics: dict[str, dict], meta: dict, overrides: list[str], feature: bool = False) -> str:
    cfg = _plain(config)
    task = cfg.get("task", {})
    kind = task.get("kind", TASK_KINDS[0])  # configs from before task.kind: the first kind
    serving = _serving(kind)
    model = cfg.get("model", {})
    title = f"{task.get('name')} / {model.get('name')} / {cfg.get('finetune', {}).get('strategy')}"
    test = {k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))}
    header = ["---", "library_name: transformers", f"pipeline_tag: {serving.pipeline_tag}"]
    header += ["tags:", "- encoderlab", f"- {task.get('name')}"]
    base = model.get("path")
    if base and not model.get("from_scratch") and not str(base).startswith(("package:", "/", ".")):
        header.append(f"base_model: {base}")
    if task.get("source") == "hub" and task.get("dataset"):
        header += ["datasets:", f"- {task['dataset']}"]
    if test:
        header += [
            "model-index:",
            f"- name: {json.dumps(title)}",
            "  results:",
            f"  - task: {{type: {serving.pipeline_tag}}}",
            f"    dataset: {{name: {json.dumps(str(task.get('dataset') or task.get('name')))}, "
            f"type: {json.dumps(str(task.get('dataset') or task.get('name')))}, split: test}}",
            "    metrics:",
        ]
        header += [f"    - {{type: {k}, value: {v:.4f}}}" for k, v in test.items()]
    header.append("---")
    lines = header + ["", f"# {title}", ""]
    lines.append(f"Trained with encoderlab for **{kind.replace('_', ' ')}**.")
    names = meta.get("label_names")
    if names:
        lines.append(f"Labels: {', '.join(f'`{n}`' for n in names)}.")
    lines += ["", "## Data", "", _data_line(task, meta.get("sizes") or {}) + ".", ""]
    lines += ["## Results", "", "| split | " + " | ".join(test) + " |", "|---|" + "---:|" * len(test)]
    for split in ("test", "validation"):
        vals = metrics.get(split) or {}
        if vals:
            lines.append(f"| {split} | " + " | ".join(f"{vals[k]:.4f}" if k in vals else "" for k in test) + " |")
    primary = task.get("primary_metric")
    lines += ["", f"Primary metric: `{primary}` on the test split (the validation row is the best epoch's).", ""]
    lines += ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _choices(cfg)]
    command = " ".join(["encoderlab-train", *overrides]) if overrides else "encoderlab-train"
    lines += ["", "The command that made it (the full resolved config is in the run's `.hydra/config.yaml`):", ""]
    lines += ["```bash", command, "```", "", "## Use", "", _usage(serving, feature)]
    return "\n".join(lines)


def write_model_card(hf_dir: Path, config, metrics: dict[str, dict], meta: dict, overrides: list[str]) -> Path:
    """``hf_dir/README.md``, written atomically; called by the runner right after the export."""
    hf_dir = Path(hf_dir)
    text = render_card(config, metrics, meta, overrides, feature=(hf_dir / "feature_head.json").is_file())
    tmp = hf_dir / (CARD + ".tmp")
    tmp.write_text(redact(text))  # the command may hold a secret passed through an override
    os.replace(tmp, hf_dir / CARD)
    return hf_dir / CARD


def card_from_run_dir(run_dir: Path) -> Path:
    """The card of a finished run, from its saved files (for runs exported before cards existed)."""
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    return write_model_card(
        run_dir / "hf",
        read_run_config(run_dir),
        {"test": summary.get("test") or {}, "validation": summary.get("val") or {}},
        summary.get("data") or {},
        summary.get("overrides") or [],
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")


def push_to_hub(run_dir: str | Path, repo: str, private: bool = False) -> str:
    """Upload ``RUN/hf`` (with its card) to ``repo``; every failure is one line."""
    run_dir = Path(os.path.expanduser(str(run_dir)))
    if not is_run_dir(run_dir) and is_run_dir(run_dir.parent):
        run_dir = run_dir.parent
    if not (run_dir / "hf").is_dir():
        raise ServeError(f"'{run_dir}' has no hf/ export to push (give a finished run directory)")
    card = run_dir / "hf" / CARD
    if not card.is_file() or not card.read_text().startswith("---"):  # no card yet (a run from before cards)
        card_from_run_dir(run_dir)
    if _offline():
        raise ServeError(
            "cannot push to the hub: this machine is offline (HF_HUB_OFFLINE=1); run it where the hub is reachable, "
            "with HF_HUB_OFFLINE unset and a token (huggingface-cli login or HF_TOKEN)"
        )
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(run_dir / "hf"), repo_id=repo, commit_message="encoderlab export")
    except Exception as e:  # network, auth and hub errors come in many types; the first line says which
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ServeError(f"cannot push to '{repo}': {type(e).__name__}: {first[:200]}") from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo}")
