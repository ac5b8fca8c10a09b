"""What a question answering export serves: a question and a context per row in, the best answer span out, from
the same windows and post-processing as evaluation, with the run's settings (``question_answering.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from encoderlab.deploy.base import Columns, pick, refuse, run_features, task_field, value
from encoderlab.kinds.base import Serving

SETTINGS_FILE = "question_answering.json"  # beside the model: task.max_seq_length, then task.qa.*


class AnswerServing(Serving):
    name = "question_answering"
    pipeline_tag = "question-answering"
    auto_model = "AutoModelForQuestionAnswering"
    token_level = True
    usage = (
        "```python\nfrom encoderlab.kinds.question_answering.kind import QuestionAnswerer\n"
        "QuestionAnswerer(PATH)(question='...', context='...')\n```\n"
    )

    def recognizes(self, architecture: str, config: dict) -> bool:
        return architecture.endswith("ForQuestionAnswering")

    def recognizes_feature(self, desc: dict, folder: Path) -> bool:
        return desc.get("pooling") is None and (folder / SETTINGS_FILE).is_file()

    def label_names(self, names):
        return None

    def settings(self, folder: Path) -> dict:
        f = folder / SETTINGS_FILE
        return json.loads(f.read_text()) if f.is_file() else {}

    def outputs(self, logits):
        from types import SimpleNamespace

        return SimpleNamespace(start_logits=logits[..., 0], end_logits=logits[..., 1])

    def columns(self, served, rows: list[dict], given: Columns) -> Columns:
        why = "this is a question answering model; use --question-column and --context-column"
        refuse(given, {"text": "--text-column", "text_pair": "--text-pair-column"}, why)
        task = served.task_config
        return Columns(
            question=pick(
                rows, given.question, [task_field(task, "qa", "question_field"), "question"], "--question-column"
            ),
            context=pick(rows, given.context, [task_field(task, "qa", "context_field"), "context"], "--context-column"),
        )

    def predict(self, served, rows, cols, batch_size, progress):
        return predict_answers(served, rows, cols, batch_size, progress)


def predict_answers(served, rows: list[dict], cols: Columns, batch_size: int, progress: bool) -> list[dict]:
    from encoderlab.kinds.question_answering.data import (
        EXAMPLE_ID,
        OFFSETS,
        best_answers,
        prepare_eval_features,
        settings_task,
    )

    task = settings_task({"max_seq_length": served.max_length} | served.qa_settings)
    questions = [str(value(r, cols.question, i, "--question-column")) for i, r in enumerate(rows)]
    contexts = [str(value(r, cols.context, i, "--context-column")) for i, r in enumerate(rows)]
    n = len(rows)
    examples = {
        task.qa.id_field: [str(i) for i in range(n)],
        task.qa.question_field: questions,
        task.qa.context_field: contexts,
        task.qa.answers_field: [{"text": [], "answer_start": []}] * n,
    }
    enc = prepare_eval_features(examples, served.tokenizer, task)
    feats = [{k: enc[k][i] for k in served.input_names} for i in range(len(enc["input_ids"]))]
    logits = run_features(served, feats, batch_size, True, progress)
    meta = [{EXAMPLE_ID: e, OFFSETS: o} for e, o in zip(enc[EXAMPLE_ID], enc[OFFSETS], strict=True)]
    ex_rows = [{task.qa.id_field: str(i), task.qa.context_field: contexts[i]} for i in range(n)]
    found = best_answers(ex_rows, meta, [x[:, 0] for x in logits], [x[:, 1] for x in logits], task)
    return [
        {"answer": a.text, "score": a.score, "start": a.start, "end": a.end} for a in (found[str(i)] for i in range(n))
    ]


SERVING = AnswerServing()
