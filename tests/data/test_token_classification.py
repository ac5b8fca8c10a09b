"""Token classification data: WNUT-16 offline, CoNLL files, hub-style ClassLabel tags, run_ner alignment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from omegaconf import OmegaConf
from support import task_config

from encoderlab.config.schema import TaskConfig
from encoderlab.data.sources import load_raw, read_file
from encoderlab.errors import ConfigError, DataError
from encoderlab.kinds.token_classification import data as tc

ROOT = Path(__file__).resolve().parents[2]
CONLL = ROOT / "tests" / "fixtures" / "ner_small.conll"
CONLL_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def task_from_yaml(name: str, **overrides) -> TaskConfig:
    cfg = OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(ROOT / "conf" / "task" / f"{name}.yaml"))
    task = OmegaConf.to_object(OmegaConf.merge(cfg, overrides))
    task.check()
    return task


def conll_task(**kw) -> TaskConfig:
    base = dict(
        name="ner_file",
        kind="token_classification",
        source="files",
        data_files={"train": str(CONLL)},
        label_names=CONLL_TAGS,
        metrics=["entity_f1"],
        primary_metric="entity_f1",
    )
    base.update(kw)
    return task_config(**base)


def test_wnut16_loads_offline_with_the_declared_tag_set():
    task = task_from_yaml("wnut16")
    ds = tc.wnut16(task)
    assert len(ds) == 2394 - 99  # exact repeats dropped, so none can sit in train and test at once
    assert len({tuple(t) for t in ds["tokens"]}) == len(ds)
    assert ds[0]["tokens"][:3] == ["@paulwalk", "It", "'s"]
    seen = {t for tags in ds["tags"] for t in tags}
    assert seen == set(task.label_names)
    assert task.label_names[0] == "O" and task.label_names[1:] == sorted(task.label_names[1:])


def test_wnut16_seeded_split_by_tweet_is_reproducible():
    task = task_from_yaml("wnut16")
    a, b = load_raw(task), load_raw(task)
    assert [len(a[s]) for s in ("train", "validation", "test")] == [len(b[s]) for s in ("train", "validation", "test")]
    assert a["test"]["tokens"][:5] == b["test"]["tokens"][:5]
    assert len(a["test"]) == pytest.approx(230, abs=1)
    train = {tuple(t) for t in a["train"]["tokens"]}
    assert not any(tuple(t) in train for t in a["test"]["tokens"])


def test_conll_file_reads_sentences_and_skips_docstart():
    ds = read_file(CONLL, conll_task())
    assert len(ds) == 5
    assert ds[0]["tokens"][:3] == ["EU", "rejects", "German"]
    assert ds[0]["tags"][:3] == ["B-ORG", "O", "B-MISC"]
    assert ds[1]["tokens"] == ["Peter", "Blackburn"]
    assert all("-DOCSTART-" not in t for t in ds["tokens"])
    # the tag column counted from the front gives the same tags
    assert read_file(CONLL, conll_task(tag_column=3))["tags"] == ds["tags"]
    # another column is another tag set: the chunk tags are not NER tags, and the error says so
    with pytest.raises(DataError, match="task.label_names"):
        read_file(CONLL, conll_task(tag_column=2))


def test_a_task_with_format_conll_also_reads_jsonl_token_lists(tmp_path):
    f = tmp_path / "train.jsonl"
    rows = [{"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]}, {"tokens": ["Oslo"], "tags": ["B-LOC"]}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = read_file(f, conll_task(format="conll"))
    assert ds["tokens"] == [["Peter", "Blackburn"], ["Oslo"]] and ds["tags"][1] == ["B-LOC"]


def test_conll_whitespace_only_lines_separate_sentences(tmp_path):
    f = tmp_path / "tabs.conll"
    f.write_text("Paris\tB-LOC\nis\tO\n\t\nnice\tO\n  \nOslo\tB-LOC\n")
    ds = read_file(f, conll_task(label_names=None))
    assert ds["tokens"] == [["Paris", "is"], ["nice"], ["Oslo"]]


def test_malformed_conll_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman\n")
    with pytest.raises(DataError) as e:
        read_file(f, conll_task())
    assert f"{f}:3" in str(e.value) and "task.ner.tag_column" in str(e.value)


def test_unknown_tag_in_conll_names_tag_line_and_key(tmp_path):
    f = tmp_path / "typo.conll"
    f.write_text("EU B-ORG\nrejects O\n\nPeter B-PRE\n")
    with pytest.raises(DataError) as e:
        read_file(f, conll_task())
    msg = str(e.value)
    assert "'B-PRE'" in msg and f"{f}:4" in msg and "task.label_names" in msg


def test_unknown_tag_in_rows_names_row_and_key():
    ds = Dataset.from_dict({"words": [["a", "b"], ["Oslo"]], "labels": [["O", "O"], ["B-CITY"]]})
    task = conll_task(tokens_field="words", tags_field="labels")
    with pytest.raises(DataError) as e:
        tc.validate_tags(ds, task, "file 'x.jsonl'")
    assert "'B-CITY'" in str(e.value) and "row 1" in str(e.value) and "task.label_names" in str(e.value)


def test_hub_classlabel_ints_become_tag_strings():
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=CONLL_TAGS))})
    ds = Dataset.from_dict({"tokens": [["Peter", "Blackburn", "said"]], "ner_tags": [[1, 2, 0]]}, features=features)
    task = conll_task(tags_field="ner_tags")
    assert tc.to_tag_strings(ds, task)["ner_tags"] == [["B-PER", "I-PER", "O"]]


def test_missing_column_names_the_key():
    ds = Dataset.from_dict({"tokens": [["a"]], "ner": [["O"]]})
    with pytest.raises(DataError, match="task.ner.tags_field"):
        tc.to_tag_strings(ds, conll_task(), "file 'x'")


def test_non_iob2_tag_set_is_a_config_error(tokenizer):
    raw = DatasetDict({"train": Dataset.from_dict({"tokens": [["a"]], "tags": [["PER"]]})})
    with pytest.raises(ConfigError, match="IOB2"):
        tc.preprocess_token_classification(raw, tokenizer, conll_task(label_names=["O", "PER"]))


# ---------------------------------------------------------------- alignment

WORDS = ["Werner", "Zwingmann", "ate", "sheepmeat"]  # 'Zwingmann' -> z ##wing ##mann, 'sheepmeat' -> 3 pieces
TAGS = ["B-PER", "I-PER", "O", "B-MISC"]


def _align(tokenizer, label_all_tokens: bool):
    task = conll_task(label_all_tokens=label_all_tokens)
    label_to_id = {t: i for i, t in enumerate(CONLL_TAGS)}
    out = tc.tokenize_and_align_labels({"tokens": [WORDS], "tags": [TAGS]}, tokenizer, task, label_to_id)
    pieces = tokenizer.convert_ids_to_tokens(out["input_ids"][0])
    labels = [None if i == tc.IGNORE_INDEX else CONLL_TAGS[i] for i in out["labels"][0]]
    return pieces, labels, out


def test_first_piece_carries_the_label(tokenizer):
    pieces, labels, out = _align(tokenizer, label_all_tokens=False)
    assert pieces == ["[CLS]", "werner", "z", "##wing", "##mann", "ate", "sheep", "##me", "##at", "[SEP]"]
    assert labels == [None, "B-PER", "I-PER", None, None, "O", "B-MISC", None, None, None]
    assert out["word_ids"][0] == [-1, 0, 1, 1, 1, 2, 3, 3, 3, -1]
    assert out["word_labels"][0] == [CONLL_TAGS.index(t) for t in TAGS]


def test_label_all_tokens_turns_b_into_i_on_continuation_pieces(tokenizer):
    _, labels, _ = _align(tokenizer, label_all_tokens=True)
    assert labels == [None, "B-PER", "I-PER", "I-PER", "I-PER", "O", "B-MISC", "I-MISC", "I-MISC", None]


def test_truncation_keeps_words_for_scoring(tokenizer):
    task = conll_task(max_seq_length=8)
    words, tags = WORDS + ["in", "Bonn"], TAGS + ["O", "B-LOC"]
    raw = DatasetDict({"train": Dataset.from_dict({"tokens": [words], "tags": [tags]})})
    row = tc.preprocess_token_classification(raw, tokenizer, task)["train"][0]
    # [CLS] werner z ##wing ##mann ate sheep [SEP]: 'sheepmeat' keeps its first piece, 'in Bonn' is cut
    assert len(row["input_ids"]) == 8
    assert len(row["word_labels"]) == 6  # gold of every word, even the cut ones
    preds = tc.word_predictions(list(range(1, 9)), row["word_ids"], num_words=6)
    assert preds == [2, 3, 6, 7, None, None]
    tags_out = tc.to_tags([CONLL_TAGS.index(t) for t in TAGS] + [None, None], CONLL_TAGS)
    assert tags_out[-1] == "O"  # the cut 'Bonn' counts as a missed location, not as no word at all


def test_preprocess_a_jsonl_style_dataset_and_map_batches_back_to_words(tokenizer):
    from encoderlab.data.collate import PadCollator

    rows = {
        "words": [["Peter", "Blackburn"], ["EU", "rejects", "German", "call"]],
        "labels": [["B-PER", "I-PER"], ["B-ORG", "O", "B-MISC", "O"]],
    }
    task = conll_task(tokens_field="words", tags_field="labels")
    feats = tc.preprocess_token_classification(DatasetDict({"validation": Dataset.from_dict(rows)}), tokenizer, task)
    rows_in = [{k: v for k, v in r.items() if k != "word_labels"} for r in feats["validation"].to_list()]
    batch = PadCollator(tokenizer.pad_token_id)(rows_in)  # pads labels and word ids with -100
    assert batch["input_ids"].shape == batch["labels"].shape == batch["word_ids"].shape
    assert batch["example_index"].tolist() == [0, 1]
    # gold token labels mapped through the word ids give back each sentence's word labels
    words = tc.word_level(batch["labels"].clamp(min=0), batch["word_ids"], num_words=4)
    assert words[0, :2].tolist() == feats["validation"][0]["word_labels"] and words[0, 2:].tolist() == [-1, -1]
    assert words[1].tolist() == feats["validation"][1]["word_labels"]


def test_resolve_label_names_from_data_puts_o_first():
    raw = DatasetDict({"train": Dataset.from_dict({"tokens": [["a", "b", "c"]], "tags": [["B-X", "O", "I-X"]]})})
    assert tc.resolve_label_names(raw, conll_task(label_names=None)) == ["O", "B-X", "I-X"]


def test_entities_for_predictions_files_are_strict():
    tokens = ["Peter", "Blackburn", "in", "New", "York"]
    assert tc.entities(tokens, ["B-PER", "I-PER", "O", "I-LOC", "I-LOC"]) == [
        {"type": "PER", "text": "Peter Blackburn", "start": 0, "end": 2}
    ]
