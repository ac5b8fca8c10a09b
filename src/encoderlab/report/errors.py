"""Error analysis of the test predictions, per group of runs: what a model gets wrong, and how sure it was.

Reads the ``predictions_test.jsonl`` each run writes. Classification: a confusion matrix (summed over the
group's seeds, as PNG), per-class precision / recall / F1 and the most confident mistakes with their text.
NER: per entity type, the errors by sort (missed, spurious, wrong type, wrong boundary) and the sentences with
the most errors. Regression: the largest errors. Written to ``errors.md`` and ``per_class.csv``.

A multitask run writes each task's predictions in ``tasks/<task>/``, as a single-task run of that task writes them;
its group gets one section per task (``<group> · <task>``), or, in the task view (``--task``), the one task's.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encoderlab.config.task import kind_classifies_sequences, kind_has_task_models
from encoderlab.report.aggregate import Report

PREDICTIONS = "predictions_test.jsonl"
TASKS_DIR = "tasks"  # a multitask run's per-task folders (encoderlab.kinds.multitask.kind.TASKS_DIR)
ERRORS_MD = "errors.md"
PER_CLASS_CSV = "per_class.csv"
ERROR_SORTS = ("missed", "spurious", "wrong_type", "wrong_boundary")


def read_predictions(run_dir: str | Path) -> list[dict] | None:
    path = Path(run_dir) / PREDICTIONS
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                return None  # a file cut short by a crash: no analysis rather than a wrong one
    return rows


def _clip(text: Any, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------------------------- classification


@dataclass
class ClassErrors:
    labels: list[str]
    confusion: np.ndarray  # [gold, pred] counts, summed over runs
    per_class: pd.DataFrame  # label, precision, recall, f1, support
    mistakes: pd.DataFrame  # the most confident wrong predictions
    n_runs: int


def classification_errors(runs: list[tuple[str, Any, list[dict]]], top: int = 10) -> ClassErrors:
    """``runs``: (run dir, seed, prediction rows). Per-class scores come from the summed confusion matrix."""
    labels: list[str] = []
    for _, _, rows in runs:
        for r in rows:
            for name in list(r.get("probabilities", {})) or [r["gold"], r["pred"]]:
                if name not in labels:
                    labels.append(name)
    index = {n: i for i, n in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=int)
    wrong = []
    for run_dir, seed, rows in runs:
        for r in rows:
            cm[index[r["gold"]], index[r["pred"]]] += 1
            if r["gold"] != r["pred"]:
                wrong.append(
                    {
                        "confidence": float(r.get("confidence", r.get("probabilities", {}).get(r["pred"], np.nan))),
                        "gold": r["gold"],
                        "pred": r["pred"],
                        "text": r.get("text", ""),
                        "text_pair": r.get("text_pair"),
                        "seed": seed,
                        "index": r.get("index"),
                        "run_dir": run_dir,
                    }
                )
    tp = np.diag(cm).astype(float)
    predicted, support = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    per_class = pd.DataFrame({"label": labels, "precision": precision, "recall": recall, "f1": f1, "support": support})
    columns = ["confidence", "gold", "pred", "text", "text_pair", "seed", "index", "run_dir"]
    mistakes = pd.DataFrame(wrong, columns=columns)
    mistakes = mistakes.sort_values("confidence", ascending=False, kind="mergesort").head(top).reset_index(drop=True)
    return ClassErrors(labels, cm, per_class, mistakes, len(runs))


def plot_confusion(errors: ClassErrors, title: str, path: Path) -> Path:
    """Rows: gold, columns: predicted; colour = share of the gold class, text = counts (summed over seeds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = errors.confusion
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(errors.labels)
    size = 2.2 + 0.55 * n
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), errors.labels, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), errors.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    runs = f"{errors.n_runs} run{'s' if errors.n_runs > 1 else ''}"
    ax.set_title(f"{title}\n(counts over {runs}; colour: share of the gold class)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


# ---------------------------------------------------------------------------------------------- NER


def _spans(entities: list[dict]) -> dict[tuple[int, int], str]:
    return {(int(e["start"]), int(e["end"])): str(e["type"]) for e in entities}


def sentence_errors(row: dict) -> list[dict]:
    """The entity errors of one sentence: each gold entity not predicted exactly, each prediction not in gold."""
    gold, pred = _spans(row.get("gold_entities", [])), _spans(row.get("entities", []))
    tokens = row.get("tokens", [])
    out = []

    def text(span):
        return " ".join(tokens[span[0] : span[1]])

    def overlaps(a, b):
        return a[0] < b[1] and b[0] < a[1]

    for span, typ in gold.items():
        if pred.get(span) == typ:
            continue
        if span in pred:
            out.append({"sort": "wrong_type", "type": typ, "pred_type": pred[span], "text": text(span)})
        elif any(overlaps(span, p) and t == typ for p, t in pred.items()):
            out.append({"sort": "wrong_boundary", "type": typ, "pred_type": typ, "text": text(span)})
        else:
            out.append({"sort": "missed", "type": typ, "pred_type": None, "text": text(span)})
    for span, typ in pred.items():
        if span in gold:
            continue  # counted above as right or wrong_type
        if any(overlaps(span, g) and t == typ for g, t in gold.items()):
            continue  # the boundary error, counted once on the gold side
        out.append({"sort": "spurious", "type": typ, "pred_type": typ, "text": text(span)})
    return out


@dataclass
class EntityErrors:
    per_type: pd.DataFrame  # type, gold, predicted, correct, precision, recall, f1, + one column per error sort
    sentences: list[dict] = field(default_factory=list)  # the sentences with the most errors
    n_runs: int = 0


def ner_errors(runs: list[tuple[str, Any, list[dict]]], top: int = 10) -> EntityErrors:
    counts: dict[str, Counter] = {}
    ranked = []
    for _run_dir, seed, rows in runs:
        for r in rows:
            gold, pred = _spans(r.get("gold_entities", [])), _spans(r.get("entities", []))
            for typ in gold.values():
                counts.setdefault(typ, Counter())["gold"] += 1
            for span, typ in pred.items():
                counts.setdefault(typ, Counter())["predicted"] += 1
                if gold.get(span) == typ:
                    counts[typ]["correct"] += 1
            errs = sentence_errors(r)
            for e in errs:
                counts.setdefault(e["type"], Counter())[e["sort"]] += 1
            if errs:
                ranked.append(
                    {
                        "n_errors": len(errs),
                        "seed": seed,
                        "index": r.get("index"),
                        "text": " ".join(r.get("tokens", [])),
                        "gold": [f"{e['text']} ({e['type']})" for e in r.get("gold_entities", [])],
                        "pred": [f"{e['text']} ({e['type']})" for e in r.get("entities", [])],
                        "errors": errs,
                    }
                )
    table = []
    for typ in sorted(counts):
        c = counts[typ]
        p = c["correct"] / c["predicted"] if c["predicted"] else 0.0
        rec = c["correct"] / c["gold"] if c["gold"] else 0.0
        f1 = 2 * p * rec / (p + rec) if p + rec else 0.0
        table.append(
            {
                "type": typ,
                "gold": c["gold"],
                "predicted": c["predicted"],
                "correct": c["correct"],
                "precision": p,
                "recall": rec,
                "f1": f1,
                **{s: c[s] for s in ERROR_SORTS},
            }
        )
    ranked.sort(key=lambda s: -s["n_errors"])
    return EntityErrors(pd.DataFrame(table), ranked[:top], len(runs))


# ---------------------------------------------------------------------------------------------- writing


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")[:60] or "all"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _task_order(row: dict) -> list[str]:
    """A multitask run's ``task.tasks`` (flattened to JSON text in the runs frame), [] when not known."""
    try:
        tasks = json.loads(row.get("cfg.task.tasks") or "[]")
    except (TypeError, ValueError):
        return []
    return [str(t) for t in tasks] if isinstance(tasks, list) else []


def prediction_dirs(run_dir: str | Path, kind: str, task: str, tasks: list[str] | None = None) -> dict[str, Path]:
    """{sub-task or "": the folder holding its predictions file} of one run.

    A single-task run: its own dir. A multitask run: ``tasks/<task>/`` for each of its tasks (in ``tasks`` order
    when given), or only the one named ``task`` when the run is seen through the task view (``--task``).
    """
    run_dir = Path(run_dir)
    if not kind_has_task_models(kind):
        return {"": run_dir}
    root = run_dir / TASKS_DIR
    if (root / task).is_dir():
        return {"": root / task}
    found = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    order = [t for t in tasks or [] if t in found] + [t for t in found if t not in (tasks or [])]
    return {t: root / t for t in order}


def _group_runs(report: Report) -> list[tuple[str, str, list[tuple[str, Any, list[dict]]]]]:
    """(label, kind, [(predictions dir, seed, rows)]) for each group, best first, with the runs that wrote
    predictions; a group of multitask runs gives one entry per task (label ``<group> · <task>``)."""
    out = []
    for label in report.table["group"]:
        group = report.runs[report.runs["group"] == label]
        by_task: dict[str, list[tuple[str, Any, list[dict]]]] = {}
        for r in group.to_dict("records"):
            kind, task = str(r.get("kind") or ""), str(r.get("task") or "")
            for sub, folder in prediction_dirs(r["run_dir"], kind, task, _task_order(r)).items():
                rows = read_predictions(folder)
                if rows:
                    by_task.setdefault(sub, []).append((str(folder), r.get("seed"), rows))
        kind = str(group["kind"].iloc[0]) if "kind" in group and len(group) else ""
        for sub, runs in by_task.items():
            out.append((f"{label} · {sub}" if sub else str(label), kind if not sub else "", runs))
    return out


def hf_dir(predictions_dir: str | Path) -> Path:
    """The exported model beside a predictions folder: ``<run>/hf``, or ``<run>/hf/<task>`` for a multitask task."""
    folder = Path(predictions_dir)
    own = folder / "hf"
    if folder.parent.name == TASKS_DIR and not own.is_dir():
        return folder.parent.parent / "hf" / folder.name
    return own


def _explain_mistakes(mistakes: pd.DataFrame) -> list[str]:
    """The 5 tokens that drove each mistake (integrated gradients on the run's ``hf/`` model), or a note why not."""
    from encoderlab.report.explain import explain, load_classifier

    models: dict[str, tuple | None] = {}
    out = []
    for m in mistakes.itertuples():
        hf = hf_dir(m.run_dir)
        if m.run_dir not in models:
            models[m.run_dir] = load_classifier(hf) if (hf / "config.json").is_file() else None
        pair = models[m.run_dir]
        if pair is None or isinstance(m.text_pair, str) or not m.text:
            out.append("(no exported hf/ classifier)" if pair is None else "(single texts only)")
            continue
        (e,) = explain(pair, [m.text], [m.pred])
        out.append(", ".join(f"{tok} {score:+.2f}" for tok, score in e.top(5)))
    return out


def write_error_analysis(
    report: Report, out: Path, top: int = 10, plots: bool = True, explain: bool = False
) -> list[Path]:
    """``errors.md``, ``per_class.csv`` and one confusion-matrix PNG per classification group; [] without
    predictions files (runs from W&B, QA runs, runs written before encoderlab wrote them)."""
    groups = _group_runs(report)
    if not groups:
        return []
    lines = ["# Error analysis (test predictions)", ""]
    csv_rows, files = [], []
    for i, (label, kind, runs) in enumerate(groups, 1):
        first = runs[0][2][0]
        lines += [f"## {_md(label)}", "", f"{len(runs)} run(s): " + ", ".join(f"seed {s}" for _, s, _ in runs), ""]
        if "gold_entities" in first:
            e = ner_errors(runs, top)
            lines += _ner_lines(e)
            csv_rows += [{"group": label, **r} for r in e.per_type.to_dict("records")]
        elif "probabilities" in first or kind_classifies_sequences(kind):
            e = classification_errors(runs, top)
            if plots:
                png = plot_confusion(e, label, out / f"confusion_{i}_{_slug(label)}.png")
                files.append(png)
                lines += [f"![confusion matrix]({png.name})", ""]
            lines += _class_lines(e, _explain_mistakes(e.mistakes) if explain and not e.mistakes.empty else None)
            csv_rows += [{"group": label, **r} for r in e.per_class.to_dict("records")]
        elif "error" in first:
            lines += _regression_lines(runs, top)
    (out / ERRORS_MD).write_text("\n".join(lines) + "\n", encoding="utf-8")
    files.insert(0, out / ERRORS_MD)
    if csv_rows:
        pd.DataFrame(csv_rows).to_csv(out / PER_CLASS_CSV, index=False)
        files.insert(1, out / PER_CLASS_CSV)
    return files


def _class_lines(e: ClassErrors, why: list[str] | None = None) -> list[str]:
    lines = ["| class | precision (%) | recall (%) | F1 (%) | support |", "|:---|---:|---:|---:|---:|"]
    for r in e.per_class.itertuples():
        lines.append(f"| {_md(r.label)} | {_pct(r.precision)} | {_pct(r.recall)} | {_pct(r.f1)} | {r.support} |")
    lines += ["", f"Most confident mistakes ({len(e.mistakes)}):", ""]
    if e.mistakes.empty:
        return lines + ["none", ""]
    head = "| confidence | gold | predicted | seed | text |" + (" tokens that drove it (IG) |" if why else "")
    lines += [head, "|---:|:---|:---|---:|:---|" + (":---|" if why else "")]
    for i, m in enumerate(e.mistakes.itertuples()):
        text = m.text + (f" ‖ {m.text_pair}" if isinstance(m.text_pair, str) else "")
        row = f"| {m.confidence:.3f} | {_md(m.gold)} | {_md(m.pred)} | {m.seed} | {_md(_clip(text))} |"
        lines.append(row + (f" {_md(why[i])} |" if why else ""))
    return lines + [""]


def _ner_lines(e: EntityErrors) -> list[str]:
    head = "| type | gold | predicted | correct | P (%) | R (%) | F1 (%) | " + " | ".join(ERROR_SORTS) + " |"
    lines = [head, "|:---" + "|---:" * (6 + len(ERROR_SORTS)) + "|"]
    for r in e.per_type.to_dict("records"):
        sorts = " | ".join(str(r[s]) for s in ERROR_SORTS)
        lines.append(
            f"| {_md(r['type'])} | {r['gold']} | {r['predicted']} | {r['correct']} | {_pct(r['precision'])} | "
            f"{_pct(r['recall'])} | {_pct(r['f1'])} | {sorts} |"
        )
    lines += ["", f"Sentences with the most errors ({len(e.sentences)}):", ""]
    for s in e.sentences:
        errs = "; ".join(
            f"{x['sort']}: {x['text']} ({x['type']}"
            + (f" → {x['pred_type']}" if x["sort"] == "wrong_type" else "")
            + ")"
            for x in s["errors"]
        )
        lines.append(f"- seed {s['seed']}, sentence {s['index']}: {_md(_clip(s['text'], 200))}  ")
        lines.append(f"  gold: {_md(', '.join(s['gold']) or '–')}; predicted: {_md(', '.join(s['pred']) or '–')}  ")
        lines.append(f"  errors: {_md(errs)}")
    return lines + [""]


def _regression_lines(runs, top: int) -> list[str]:
    rows = [dict(r, seed=seed) for _, seed, rs in runs for r in rs]
    rows.sort(key=lambda r: -abs(float(r["error"])))
    lines = [
        f"Largest errors ({min(top, len(rows))}):",
        "",
        "| error | gold | predicted | seed | text |",
        "|---:|---:|---:|---:|:---|",
    ]
    for r in rows[:top]:
        lines.append(
            f"| {r['error']:+.3f} | {r['gold']:.3f} | {r['pred']:.3f} | {r['seed']} | {_md(_clip(r.get('text', '')))} |"
        )
    return lines + [""]
