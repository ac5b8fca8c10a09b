"""Bad input through the real ``encoderlab-train``: exit code 2 and one message naming what to change, no traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from clirun import run_cli
from support import TINY

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def cli(args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    assert "ENCODERLAB_CACHE" in env, "use the cache_dir fixture"
    return run_cli("encoderlab-train", [*args, f"hydra.run.dir={run_dir}"], env, ROOT, timeout=300)


def fails(args: list[str], run_dir: Path) -> str:
    """Run, expect exit code 2, return the error message (stderr), checked for a traceback."""
    p = cli(args, run_dir)
    assert p.returncode == 2, f"exit {p.returncode}\nstdout:\n{p.stdout[-2000:]}\nstderr:\n{p.stderr[-4000:]}"
    assert "Traceback" not in p.stderr + p.stdout
    assert "HYDRA_FULL_ERROR" not in p.stderr
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("encoderlab: error:")]
    return line


def csv_task(path: Path | str, *extra: str) -> list[str]:
    return ["task=csv_example", f"task.data_files.train={path}", *extra]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["review,sentiment"] + [f'"{t}",{label}' for t, label in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("override", "options"),
    [
        ("task=imdb", ["rotten_tomatoes", "csv_example", "sst2"]),
        ("model=bert_huge", ["minilm_l6", "bert_tiny", "from_checkpoint"]),
        ("finetune=prefix_tuning", ["full", "frozen", "feature_based", "top_k", "gradual_unfreeze", "lora"]),
        ("scheduler=exponential", ["linear", "cosine", "slanted_triangular", "inverse_sqrt"]),
        ("experiment=no_such_study", ["pretrain_vs_scratch"]),
        ("hydra/launcher=kubernetes", ["basic", "joblib", "slurm"]),
    ],
)
def test_unknown_option_lists_the_options(tmp_path, cache_dir, override, options):
    msg = fails([override], tmp_path / "run")
    group, name = override.split("=")
    assert f"unknown {group} '{name}'" in msg
    for option in options:
        assert option in msg


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["cv.folds=1"], "cv.folds"),
        (["cv.folds=5", "cv.fold=5"], "cv.fold"),
        (
            ["task=bbc_news", "task.long_text=head_tail", "task.head_tokens=128", "task.max_seq_length=128"],
            "task.head_tokens",
        ),
        (["task.long_text=chunks", "task.chunk_stride=100", "task.max_seq_length=128"], "task.chunk_stride"),
        (["finetune=lora", "finetune.lora_r=0"], "finetune.lora_r"),
        (
            [*TINY, *csv_task(FIXTURES / "reviews.csv"), "finetune=lora", "finetune.lora_target_modules=[qkv]"],
            "finetune.lora_target_modules",
        ),
        ([*TINY, *csv_task(FIXTURES / "reviews.csv"), "cv.folds=30"], "cv.folds"),
    ],
    ids=["folds", "fold", "head_tokens", "chunk_stride", "lora_r", "lora_targets", "folds_vs_classes"],
)
def test_new_finetuning_keys_fail_with_one_line_naming_them(tmp_path, cache_dir, args, key):
    assert f"'{key}'" in fails(args, tmp_path / "run")


def test_unknown_key_names_it_and_the_allowed_keys(tmp_path, cache_dir):
    msg = fails(["task.foo=1"], tmp_path / "run")
    assert "'task.foo'" in msg and "max_seq_length" in msg


def test_wrong_type_names_the_key(tmp_path, cache_dir):
    msg = fails(["optimizer.lr=fast"], tmp_path / "run")
    assert "'optimizer.lr'" in msg and "fast" in msg


def test_bad_value_names_the_key_and_allowed_values(tmp_path, cache_dir):
    msg = fails(["finetune.layers=middle"], tmp_path / "run")
    assert "'finetune.layers'" in msg and "concat_last4" in msg


def test_missing_data_file(tmp_path, cache_dir):
    missing = tmp_path / "no_such_reviews.csv"
    msg = fails(TINY + csv_task(missing), tmp_path / "run")
    assert str(missing) in msg and "task.data_files.train" in msg


def test_missing_text_column(tmp_path, cache_dir):
    msg = fails(TINY + ["task=csv_example", "task.text_fields=[body]"], tmp_path / "run")
    assert "'body'" in msg and "task.text_fields" in msg and "'review'" in msg


def test_missing_label_column(tmp_path, cache_dir):
    msg = fails(TINY + ["task=csv_example", "task.label_field=stars"], tmp_path / "run")
    assert "'stars'" in msg and "task.label_field" in msg and "'sentiment'" in msg


def test_label_outside_the_declared_set(tmp_path, cache_dir):
    rows = [(f"review number {i}", "pos" if i % 2 else "neg") for i in range(30)] + [("an odd one", "meh")]
    msg = fails(TINY + csv_task(write_csv(tmp_path / "labels.csv", rows)), tmp_path / "run")
    assert "'meh'" in msg and "task.label_names" in msg and "row" in msg and "an odd one" in msg


def test_dataset_empty_after_filtering(tmp_path, cache_dir):
    rows = [(" " * (i % 3), "pos" if i % 2 else "neg") for i in range(30)]
    msg = fails(TINY + csv_task(write_csv(tmp_path / "blank.csv", rows)), tmp_path / "run")
    assert "empty" in msg and "'review'" in msg


def test_non_utf8_file_without_encoding_then_with_it(tmp_path, cache_dir):
    latin1 = FIXTURES / "reviews_latin1.csv"
    msg = fails(TINY + csv_task(latin1), tmp_path / "run")
    assert "task.encoding" in msg and str(latin1) in msg
    ok = cli(TINY + csv_task(latin1, "task.encoding=latin-1"), tmp_path / "ok")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert (tmp_path / "ok" / "summary.json").exists()


def test_hub_model_while_offline(tmp_path, cache_dir):
    msg = fails(["model=from_checkpoint", "model.path=some-org/does-not-exist"], tmp_path / "run")
    assert "offline" in msg and "model.path" in msg and "some-org/does-not-exist" in msg


def test_checkpoint_folder_without_model_files(tmp_path, cache_dir):
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    msg = fails(["model=from_checkpoint", f"model.path={empty}"], tmp_path / "run")
    assert "model.path" in msg and str(empty) in msg and "tokenizer" in msg


def test_hub_dataset_while_offline(tmp_path, cache_dir):
    msg = fails(TINY + ["task=sst2"], tmp_path / "run")
    assert "offline" in msg and "nyu-mll/glue" in msg and "task.dataset" in msg


def test_top_k_larger_than_the_model(tmp_path, cache_dir):
    msg = fails(TINY + ["task=csv_example", "finetune=top_k", "finetune.k=99"], tmp_path / "run")
    assert "finetune.k" in msg and "99" in msg and "2 layers" in msg


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.max_epochs=-3", "trainer.max_epochs"),
        ("trainer.max_steps=-2", "trainer.max_steps"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches"),
        ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps"),
        ("trainer.num_nodes=0", "trainer.num_nodes"),
        ("trainer.gradient_clip_val=-1.0", "trainer.gradient_clip_val"),
    ],
)
def test_a_trainer_number_out_of_range_names_the_key(tmp_path, cache_dir, override, key):
    msg = fails(TINY + ["task=csv_example", override], tmp_path / "run")
    assert f"'{key}'" in msg and override.split("=")[1] in msg


def test_a_file_too_small_to_carve_splits_from_says_how_many_rows_it_needs(tmp_path, cache_dir):
    tiny = write_csv(tmp_path / "two.csv", [("a fine film", "pos"), ("a dull film", "neg")])
    msg = fails(TINY + csv_task(tiny), tmp_path / "run")
    assert str(tiny) in msg and "2 row(s)" in msg and "at least 3 rows" in msg
    assert "task.data_files.validation" in msg and "task.data_files.test" in msg


def _conll(path: Path, sentences: list[list[str]]) -> Path:
    path.write_text("\n\n".join("\n".join(s) for s in sentences) + "\n")
    return path


def ner_task(path: Path) -> list[str]:
    return ["task=wnut16", "task.source=files", f"task.data_files.train={path}"]


def test_a_conll_file_with_two_sentences_says_how_many_it_needs(tmp_path, cache_dir):
    two = _conll(tmp_path / "two.conll", [["Alice\tB-person", "runs\tO"], ["Bob\tB-person", "walks\tO"]])
    msg = fails(TINY + ner_task(two), tmp_path / "run")
    assert "2 row(s)" in msg and "at least 3 rows" in msg and "task.data_files.validation" in msg


def test_a_conll_file_named_txt_is_read_as_conll_and_a_missing_tag_names_its_line(tmp_path, cache_dir):
    sentences = [[f"Alice{i}\tB-person", "runs\tO", "home\tO"] for i in range(10)]
    sentences[6][1] = "runs"  # line 26 of the file (4 lines per sentence): a token without its tag
    msg = fails(TINY + ner_task(_conll(tmp_path / "ner.txt", sentences)), tmp_path / "run")
    assert f"{tmp_path / 'ner.txt'}:26" in msg and "'runs' has no tag" in msg


def test_a_txt_file_that_is_not_conll_says_to_set_the_format(tmp_path, cache_dir):
    prose = tmp_path / "notes.txt"
    prose.write_text("Alice went home after a long day at work.\nBob stayed.\n\nIt rained all night long, again.\n")
    msg = fails(TINY + ner_task(prose), tmp_path / "run")
    assert "task.format=conll" in msg and str(prose) in msg


def test_gradual_unfreezing_that_would_never_thaw_everything(tmp_path, cache_dir):
    """ULMFiT's one layer per epoch in a 1-epoch run: the lower layers and the embeddings would never train."""
    args = TINY + ["task=csv_example", "finetune=gradual_unfreeze", "finetune.unfreeze_interval=1"]
    msg = fails(args, tmp_path / "run")
    assert "finetune.unfreeze_interval" in msg and "never train" in msg and "finetune.unfreeze_by" in msg


# ---- mistakes a new user makes (each fails before any training) -------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("batch_size=0", "batch_size", "at least 1"),
        ("optimizer.lr=-1", "optimizer.lr", "> 0"),
        ("seed=abc", "seed", "abc"),
        ("callbacks.checkpoint_every_n_steps=0", "callbacks.checkpoint_every_n_steps", "at least 1"),
        ("task.max_seq_length=5000", "task.max_seq_length", "position limit (512)"),
        ("optimizer.weight_decay=-0.1", "optimizer.weight_decay", ">= 0"),
        ("optimizer.betas=[1.5,0.9]", "optimizer.betas", "[0, 1)"),
        ("callbacks.patience=-1", "callbacks.patience", ">= 0"),
    ],
)
def test_a_number_a_new_user_gets_wrong_names_the_key(tmp_path, cache_dir, override, key, words):
    msg = fails(TINY + ["task=csv_example", override], tmp_path / "run")
    assert f"'{key}'" in msg and words in msg


def test_a_data_path_that_is_a_folder_says_to_give_a_file(tmp_path, cache_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    msg = fails(TINY + csv_task(folder), tmp_path / "run")
    assert str(folder) in msg and "folder" in msg and "task.data_files.train" in msg


def test_an_empty_data_file_names_it(tmp_path, cache_dir):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    msg = fails(TINY + csv_task(empty), tmp_path / "run")
    assert str(empty) in msg and "empty" in msg


def test_a_row_without_a_label_names_the_row_and_the_column(tmp_path, cache_dir):
    rows = [(f"review number {i}", "pos" if i % 2 else "neg") for i in range(30)]
    path = write_csv(tmp_path / "gap.csv", rows)
    path.write_text(path.read_text().replace('"review number 7",pos', '"review number 7",'))
    msg = fails(TINY + csv_task(path), tmp_path / "run")
    assert "no label in column 'sentiment'" in msg and "review number 7" in msg


def test_a_training_split_with_one_class_only_names_the_label_column(tmp_path, cache_dir):
    path = write_csv(tmp_path / "all_pos.csv", [(f"review number {i}", "pos") for i in range(30)])
    msg = fails(TINY + csv_task(path), tmp_path / "run")
    assert "'pos'" in msg and "task.label_field" in msg and "at least 2" in msg


def test_resume_from_a_folder_or_a_file_that_is_no_checkpoint_names_resume(tmp_path, cache_dir):
    msg = fails(TINY + ["task=csv_example", f"resume={tmp_path}"], tmp_path / "run")
    assert "'resume'" in msg and str(tmp_path) in msg
    junk = tmp_path / "model.ckpt"
    junk.write_text("not a checkpoint")
    msg = fails(TINY + ["task=csv_example", f"resume={junk}"], tmp_path / "run2")
    assert "'resume'" in msg and str(junk) in msg and "resume=never" in msg


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("broken.jsonl", '{"review": "fine", "sentiment": "pos"}\n{"review": "oops, "sentiment": "neg"}\n', "line 2"),
        ("ragged.tsv", "review\tsentiment\nfine\tpos\ndull\tneg\textra\tcells\n", "line 3"),
        ("reviews.xlsx", "not a spreadsheet encoderlab reads", "task.format"),
    ],
    ids=["jsonl_bad_line", "tsv_ragged_row", "unknown_extension"],
)
def test_a_data_file_that_cannot_be_parsed_names_the_file_and_where(tmp_path, cache_dir, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    msg = fails(TINY + csv_task(path), tmp_path / "run")
    assert str(path) in msg and words in msg


def test_a_run_dir_given_as_the_model_points_to_its_hf_folder(tmp_path, cache_dir):
    run = tmp_path / "finished_run"
    (run / "hf").mkdir(parents=True)
    (run / "hf" / "config.json").write_text("{}")
    msg = fails(["task=csv_example", "model=from_checkpoint", f"model.path={run}"], tmp_path / "run")
    assert f"model.path={run / 'hf'}" in msg
