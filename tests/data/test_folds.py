"""k-fold cross-validation: each fold takes the validation split's place, test stays held out, classes stay balanced."""

from __future__ import annotations

from collections import Counter

import pytest
from support import FIXTURES, TINY, reviews_task

from encoderlab.config.schema import CVConfig, ModelConfig, RunConfig, TaskConfig
from encoderlab.data.folds import fold_ids
from encoderlab.data.sources import load_raw
from encoderlab.errors import ConfigError


def test_fold_ids_spread_each_class_evenly_and_depend_on_the_seed():
    classes = ["a"] * 10 + ["b"] * 7 + ["c"] * 3
    ids = fold_ids(classes, 20, 3, seed=1)
    for c in "abc":
        per_fold = Counter(f for f, k in zip(ids, classes, strict=True) if k == c)
        assert max(per_fold.values()) - min(per_fold.get(f, 0) for f in range(3)) <= 1, c
    sizes = Counter(ids)
    assert max(sizes.values()) - min(sizes.values()) <= 1
    assert ids == fold_ids(classes, 20, 3, seed=1) and ids != fold_ids(classes, 20, 3, seed=2)


def _col(ds, name) -> list:
    return list(ds[name])


def test_folds_partition_train_and_validation_and_keep_the_same_test():
    task = reviews_task()
    plain = load_raw(task)
    pool = sorted(_col(plain["train"], "id") + _col(plain["validation"], "id"))
    seen = []
    for fold in range(4):
        ds = load_raw(task, CVConfig(folds=4, fold=fold))
        assert _col(ds["test"], "id") == _col(plain["test"], "id")  # the held-out test set never moves
        train, val = _col(ds["train"], "id"), _col(ds["validation"], "id")
        assert sorted(train + val) == pool and not set(train) & set(val)
        counts = Counter(_col(ds["validation"], "sentiment"))
        assert abs(counts["neg"] - counts["pos"]) <= 1  # stratified: 24 neg + 24 pos over 4 folds
        seen += val
    assert sorted(seen) == pool  # every pooled example is validated exactly once


def test_folds_work_for_ner_without_stratification():
    task = TaskConfig(
        name="ner",
        kind="token_classification",
        data_files={"train": str(FIXTURES / "ner_small.conll")},
        validation_split=None,
        test_split=None,
        metrics=["entity_f1"],
        primary_metric="entity_f1",
    )
    plain = load_raw(task)
    a, b = (load_raw(task, CVConfig(folds=2, fold=f)) for f in (0, 1))
    assert _col(a["test"], "tokens") == _col(plain["test"], "tokens")
    assert len(a["validation"]) + len(b["validation"]) == len(plain["train"]) + len(plain["validation"])


@pytest.mark.parametrize(("folds", "fold", "key"), [(1, 0, "cv.folds"), (5, 5, "cv.fold"), (3, -1, "cv.fold")])
def test_bad_fold_settings_name_the_key(folds, fold, key):
    with pytest.raises(ConfigError) as e:
        CVConfig(folds=folds, fold=fold).check()
    assert e.value.key == key


def test_more_folds_than_the_smallest_class_is_an_error_naming_cv_folds():
    with pytest.raises(ConfigError) as e:
        load_raw(reviews_task(), CVConfig(folds=30, fold=0))  # 24 examples per class outside test
    assert e.value.key == "cv.folds" and "at most cv.folds=24" in str(e.value) and "\n" not in str(e.value)


def test_pretraining_has_no_folds():
    with pytest.raises(ConfigError) as e:
        RunConfig(
            task=TaskConfig(
                kind="pretraining", source="files", data_dir="x", metrics=["mlm_loss"], primary_metric="mlm_loss"
            ),
            model=ModelConfig(from_scratch=True),
            cv=CVConfig(folds=3),
        ).check()
    assert e.value.key == "cv.folds"


@pytest.mark.slow
def test_a_cv_sweep_is_reported_as_one_group_over_its_folds(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    bin_dir = Path(sys.executable).parent
    env = {
        "ENCODERLAB_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PROJECT_ROOT": str(FIXTURES.parents[1]),
    }
    import os

    env = os.environ | env
    sweep = tmp_path / "cv"
    args = [
        str(bin_dir / "encoderlab-train"),
        "-m",
        "task=csv_example",
        "cv.folds=3",
        "cv.fold=0,1,2",
        "save_model=false",
        *TINY,
        f"hydra.sweep.dir={sweep}",
    ]
    p = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    summaries = [json.loads(f.read_text()) for f in sorted(sweep.glob("*/summary.json"))]
    assert len(summaries) == 3 and {s["status"] for s in summaries} == {"finished"}
    p = subprocess.run(
        [str(bin_dir / "encoderlab-report"), str(sweep), "--no-plots"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "3 finished runs in 1 group" in p.stdout
