"""Where raw examples come from: offline packages, the Hugging Face hub, or the user's files.

``load_raw(task)`` always returns a ``DatasetDict`` with ``train``, ``validation`` and ``test``; splits the
source lacks are carved out of train (seeded, stratified by label for classification). Loaders for
packaged sets and file formats register themselves by name, so a new task kind adds its own without
touching this module.
"""

from __future__ import annotations

import importlib
import math
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict

from encoderlab.config.schema import CVConfig, TaskConfig
from encoderlab.errors import ConfigError, DataError, OfflineError, choices

PackageLoader = Callable[[TaskConfig], "Dataset | DatasetDict"]
FileReader = Callable[[Path, TaskConfig], Dataset]

_PACKAGES: dict[str, PackageLoader] = {}
_FORMATS: dict[str, FileReader] = {}
# modules that register packaged sets and file formats when imported
_PLUGINS = (
    "encoderlab.data.packaged",
    "encoderlab.data.files",
    "encoderlab.kinds.token_classification.data",
    "encoderlab.kinds.question_answering.data",
    "encoderlab.data.corpora",
)


def register_package(name: str) -> Callable[[PackageLoader], PackageLoader]:
    def deco(fn: PackageLoader) -> PackageLoader:
        _PACKAGES[name] = fn
        return fn

    return deco


def register_format(name: str) -> Callable[[FileReader], FileReader]:
    def deco(fn: FileReader) -> FileReader:
        _FORMATS[name] = fn
        return fn

    return deco


def _load_plugins() -> None:
    for mod in _PLUGINS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # the plugin exists but something it imports is missing
                raise


EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".conll": "conll",
    ".txt": "txt",
}


def infer_format(path: Path, task: TaskConfig) -> str:
    if task.format:
        return task.format
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            "task.format",
            f"cannot tell the format of '{path}' from its extension; set task.format to one of "
            f"{choices(sorted(set(EXTENSIONS.values())))}",
        )
    if fmt == "txt" and task.tags_tokens:  # NER data is often shipped as .txt
        if not looks_like_conll(path, task):
            raise ConfigError(
                "task.format",
                f"'{path}' does not look like a CoNLL column file (a token and its tag per line, separated by a tab "
                "or spaces, a blank line between sentences); set task.format=conll to read it as one, or give "
                "token and tag lists as JSON lines (task.format=jsonl)",
            )
        return "conll"
    return fmt


def looks_like_conll(path: Path, task: TaskConfig, sample: int = 200) -> bool:
    """Column lines: most non-blank lines of the file's start have the same small number (2-10) of columns.

    Running text has as many words per line as its sentences; a stray line without its tag still passes (the
    reader then names that line).
    """
    counts: Counter[int] = Counter()
    with path.open(encoding=task.encoding or "utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                counts[len(line.split("\t") if "\t" in line else line.split())] += 1
                if sum(counts.values()) >= sample:
                    break
    if not counts:
        return False
    columns, n = counts.most_common(1)[0]
    return 2 <= columns <= 10 and n >= 0.9 * sum(counts.values())


def read_file(path: str | Path, task: TaskConfig, key: str = "task.data_files") -> Dataset:
    _load_plugins()
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise DataError(f"data file not found: '{path}' (set {key} to an existing file)")
    if path.is_dir():
        raise DataError(f"'{path}' is a folder, not a data file (set {key} to a file)")
    fmt = infer_format(path, task)
    reader = _FORMATS.get(fmt)
    if reader is None:
        raise ConfigError("task.format", f"no reader for format {fmt!r}; known: {choices(sorted(_FORMATS))}")
    return reader(path, task)


def _load_package(task: TaskConfig) -> Dataset | DatasetDict:
    _load_plugins()
    loader = _PACKAGES.get(task.dataset or "")
    if loader is None:
        raise ConfigError(
            "task.dataset", f"unknown packaged dataset {task.dataset!r}; known: {choices(sorted(_PACKAGES))}"
        )
    return loader(task)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ) not in ("0", "", "false")


def _load_hub(task: TaskConfig) -> DatasetDict:
    try:
        ds = datasets.load_dataset(task.dataset, task.subset)
    except Exception as e:  # network, offline mode, missing id: all end the same way for the user
        hint = (
            "this machine is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and the dataset is not cached"
            if _offline()
            else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        )
        raise OfflineError(
            f"could not load hub dataset '{task.dataset}' (task.dataset)"
            + (f", config '{task.subset}' (task.subset)" if task.subset else "")
            + f": {hint}. Use task.source=files with local data, or an offline task such as "
            "task=rotten_tomatoes."
        ) from None
    if not isinstance(ds, DatasetDict):
        ds = DatasetDict({"train": ds})
    return ds


def _load_files(task: TaskConfig) -> DatasetDict:
    if not task.files:
        raise ConfigError("task.data_files", "source 'files' needs a file, e.g. task.data_files.train=PATH")
    return DatasetDict({split: read_file(p, task, key=f"task.data_files.{split}") for split, p in task.files.items()})


def load_source(task: TaskConfig) -> DatasetDict:
    """The source's own splits, before carving or subsetting."""
    if task.source == "package":
        ds = _load_package(task)
    elif task.source == "hub":
        ds = _load_hub(task)
    else:
        ds = _load_files(task)
    if isinstance(ds, Dataset):
        ds = DatasetDict({"train": ds})
    return ds


def class_names(ds: Dataset, task: TaskConfig) -> list[str] | None:
    """Each row's class as text (a classifier's labels, whatever their type); None for other kinds or when a row
    has no label (reported later, not here)."""
    if not task.classifies_sequences or task.label_field not in ds.column_names or len(ds) == 0:
        return None
    feat = ds.features[task.label_field]
    values = list(ds[task.label_field])
    if any(v is None or v != v for v in values):
        return None
    if isinstance(feat, datasets.ClassLabel):
        return [feat.names[v] if 0 <= v < len(feat.names) else str(v) for v in values]
    return [str(v).strip() for v in values]


def _stratify_codes(ds: Dataset, task: TaskConfig) -> list[int] | None:
    """Class codes to stratify a split by: a classifier's labels, whatever their type (names in a file
    are strings), when every class has at least two examples; None: split at random."""
    if not task.classifies_sequences or task.label_field not in ds.column_names or len(ds) == 0:
        return None
    values = list(ds[task.label_field])
    if isinstance(ds.features[task.label_field], datasets.ClassLabel):
        codes = values  # as before: the same seed gives the same split of a packaged set
    else:
        if any(v is None or v != v for v in values):  # an unlabelled row (or NaN): reported later, not here
            return None
        names = sorted({str(v).strip() for v in values})
        index = {n: i for i, n in enumerate(names)}
        codes = [index[str(v).strip()] for v in values]
    counts = Counter(codes)
    return codes if min(counts.values()) >= 2 else None


def _carve(ds: Dataset, size: float, task: TaskConfig, what: str) -> tuple[Dataset, Dataset]:
    if size <= 0:
        raise ConfigError(
            f"task.{what}_size",
            f"the source has no '{what}' split to use; set task.{what}_size > 0 to carve one out of train",
        )
    n_out = math.ceil(size * len(ds))  # what datasets' train_test_split takes out
    codes = _stratify_codes(ds, task)
    if codes is not None and min(n_out, len(ds) - n_out) < len(set(codes)):
        codes = None  # too few rows for a class of each on both sides: a seeded random split
    if codes is None:
        parts = ds.train_test_split(test_size=size, seed=task.split_seed)
        return parts["train"], parts["test"]
    # split row numbers stratified by class, then select: works for any label type, not only ClassLabel
    names = [str(c) for c in range(max(codes) + 1)]
    index = Dataset.from_dict(
        {"row": list(range(len(ds))), "y": codes},
        features=datasets.Features({"row": datasets.Value("int64"), "y": datasets.ClassLabel(names=names)}),
    )
    parts = index.train_test_split(test_size=size, seed=task.split_seed, stratify_by_column="y")
    return ds.select(parts["train"]["row"]), ds.select(parts["test"]["row"])


def _rows_left(n: int, sizes: list[float]) -> int:
    """Training rows left after carving splits of these fractions, one after the other, as datasets does."""
    for size in sizes:
        n = math.floor((1 - size) * n)
    return n


def _too_few_rows(n: int, task: TaskConfig, carved: list[str]) -> DataError:
    sizes = [getattr(task, f"{what}_size") for what in carved]
    needed = next(m for m in range(1, 10**7) if _rows_left(m, sizes) >= 1)
    source = f"'{task.files['train']}'" if task.files.get("train") else f"the train split of task '{task.name}'"
    keys = ", ".join(f"task.{what}_size={getattr(task, what + '_size')}" for what in carved)
    files = " and ".join(f"task.data_files.{what}=PATH" for what in carved)
    return DataError(
        f"{source} has {n} row(s), too few to carve {' and '.join(carved)} split(s) out of ({keys}) and keep "
        f"rows to train on: give it at least {needed} rows, or give the split(s) as files ({files})"
    )


def make_splits(ds: DatasetDict, task: TaskConfig, cv: CVConfig | None = None) -> DatasetDict:
    """Pick train/validation/test by the configured names; carve missing ones out of train.

    With ``cv.folds`` set, train and the source's validation split are pooled and fold ``cv.fold`` of them is the
    validation split (see :mod:`encoderlab.data.folds`); test is chosen as without cross-validation.
    """
    if task.train_split not in ds:
        raise ConfigError("task.train_split", f"no split {task.train_split!r} in the data; found {choices(ds)}")
    train = ds[task.train_split]
    out: dict[str, Dataset] = {}
    kfold = cv is not None and cv.folds is not None
    # test first, so validation is carved from what is left for training
    wanted = (("test", task.test_split), ("validation", task.validation_split))
    given = {what for what, name in wanted if name is not None and name in ds and name != task.train_split}
    carved = [
        what
        for what, _ in wanted
        if what not in given and getattr(task, f"{what}_size") > 0 and not (kfold and what == "validation")
    ]
    if carved and _rows_left(len(train), [getattr(task, f"{what}_size") for what in carved]) < 1:
        raise _too_few_rows(len(train), task, carved)
    for what, name in wanted:
        if what == "validation" and kfold:
            from encoderlab.data.folds import cv_split

            own = ds[name] if what in given else None
            out |= cv_split(train, own, task, cv, lambda d: class_names(d, task))
            train = out.pop("train")
            continue
        if what in given:
            out[what] = ds[name]
        elif name is not None and task.source == "hub" and name not in ds:
            raise ConfigError(f"task.{what}_split", f"no split {name!r} in the data; found {choices(ds)}")
        else:
            train, out[what] = _carve(train, task.test_size if what == "test" else task.validation_size, task, what)
    out["train"] = train
    for split, d in out.items():
        if len(d) == 0:
            raise DataError(f"the {split} split of task '{task.name}' is empty after filtering and splitting")
    return DatasetDict({k: out[k] for k in ("train", "validation", "test")})


def subsample(ds: DatasetDict, task: TaskConfig, seed: int) -> DatasetDict:
    """Seeded subsets (``task.max_train_samples`` / ``task.max_eval_samples``) for quick runs; the training
    subset is drawn with ``task.train_sample_seed`` when it is set. ``task.shots_per_class``: K-shot draws of train
    and validation (:mod:`encoderlab.data.shots`)."""
    out = {}
    for split, d in ds.items():
        limit = task.max_train_samples if split == "train" else task.max_eval_samples
        draw = task.train_sample_seed if split == "train" and task.train_sample_seed is not None else seed
        if limit is not None and limit < len(d):
            d = d.shuffle(seed=draw).select(range(limit))
        if task.shots_per_class is not None and split != "test":  # a K-shot draw (data/shots.py); test untouched
            from encoderlab.data.shots import draw_shots

            d = draw_shots(d, task, split, task.train_sample_seed if task.train_sample_seed is not None else seed)
        out[split] = d
    return DatasetDict(out)


def load_raw(task: TaskConfig, cv: CVConfig | None = None) -> DatasetDict:
    """train / validation / test for ``task``, split and subset as configured (``cv``: the k-fold split)."""
    return subsample(make_splits(load_source(task), task, cv), task, task.split_seed)


def cv_fingerprint(cv: CVConfig | None) -> dict:
    """What the fold choice adds to a data fingerprint (nothing without cross-validation: old caches stay valid)."""
    return {"cv": [cv.folds, cv.fold]} if cv is not None and cv.folds is not None else {}
