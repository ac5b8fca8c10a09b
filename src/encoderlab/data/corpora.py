"""Raw text corpora for pre-training: one row per document, column ``text``.

Sources: the offline packaged corpora (BBC News articles, Rotten Tomatoes snippets grouped per movie), a text
file with a blank line between documents (``format: txt``), a folder of one-document-per-file ``.txt`` files
(``task.data_dir``), jsonl with a text field (the generic jsonl reader) and hub corpora (wikitext, bookcorpus).
Documents matter, not just text: NSP/SOP pair segments *within* a document and draw negatives from another one,
and validation holds out whole documents so no sentence of a validation document is seen in training.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from datasets import Dataset, DatasetDict, Features, Value

from encoderlab.config.schema import TaskConfig
from encoderlab.data.files import read_text
from encoderlab.data.packaged import bbc_news_documents, rotten_tomatoes_frame
from encoderlab.data.sources import register_format, register_package
from encoderlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)
TEXT = Features({"text": Value("string")})


def _documents(texts: list[str], source: str) -> Dataset:
    """A corpus Dataset from document texts; blank documents are dropped, an empty corpus is an error."""
    docs = [t.strip() for t in texts if t and t.strip()]
    if not docs:
        raise DataError(f"the corpus from {source} is empty: it has no non-blank document")
    return Dataset.from_dict({"text": docs}, features=TEXT)


@register_package("bbc_news_text")
def bbc_news_text(task: TaskConfig) -> Dataset:
    """The 2,225 BBC News articles (title, blank line, paragraphs) as documents."""
    return _documents([d[2] for d in bbc_news_documents()], "package 'bbc_news_text'")


@register_package("rotten_tomatoes_text")
def rotten_tomatoes_text(task: TaskConfig) -> Dataset:
    """The 13,905 snippets (reviews and plot summaries) grouped per movie, one snippet per line.

    Alone, a snippet is mostly a single sentence, which NSP/SOP cannot use; a movie's snippets form a document
    whose consecutive "sentences" at least share a topic.
    """
    df = rotten_tomatoes_frame()
    texts = df.groupby("movie_name", sort=True)["text"].apply(lambda s: "\n".join(str(x).strip() for x in s))
    return _documents(texts.tolist(), "package 'rotten_tomatoes_text'")


@register_package("rotten_tomatoes_train_text")
def rotten_tomatoes_train_text(task: TaskConfig) -> Dataset:
    """``rotten_tomatoes_text`` without the reviews that the ``rotten_tomatoes`` task holds out for validation/test.

    Within-task pre-training (Sun et al. 2019, "ITPT"): unlabelled text of the target task's *training* data only,
    so a model pre-trained here never saw a held-out review. The held-out set is the one ``task=rotten_tomatoes``
    draws with its defaults (stratified 10% + 10%) and this task's ``split_seed``; fine-tune with the same seed.
    """
    from encoderlab.data.packaged import rotten_tomatoes
    from encoderlab.data.sources import make_splits

    clf = TaskConfig(
        name="rotten_tomatoes",
        source="package",
        dataset="rotten_tomatoes",
        label_names=["rotten", "fresh"],
        validation_split=None,
        test_split=None,
        split_seed=task.split_seed,
    )
    splits = make_splits(DatasetDict({"train": rotten_tomatoes(clf)}), clf)
    held_out = {str(t).strip() for name in ("validation", "test") for t in splits[name]["text"]}
    df = rotten_tomatoes_frame()
    df = df[~df["text"].astype(str).str.strip().isin(held_out)]
    texts = df.groupby("movie_name", sort=True)["text"].apply(lambda s: "\n".join(str(x).strip() for x in s))
    return _documents(texts.tolist(), "package 'rotten_tomatoes_train_text'")


KJV_COMMAND = ("bible", "-l0", "gen1:1-rev22:21")  # Debian package bible-kjv: the whole text, verse per line


def kjv_chapters() -> list[str]:
    """The King James Bible (Debian ``bible-kjv``), one document per chapter (1,189); [] where not installed."""
    if not shutil.which(KJV_COMMAND[0]):
        return []
    out = subprocess.run(KJV_COMMAND, capture_output=True, text=True, check=False).stdout
    chapters, current = [], []
    for line in out.splitlines():
        text = line.strip()
        if not text:
            continue
        if _HEADING.fullmatch(text):  # a chapter heading ("Genesis 2", "1 Samuel 3") starts the next document
            if current:
                chapters.append(" ".join(current))
            current = []
        else:
            verse = _VERSE.match(text)
            current.append(verse.group(1) if verse else text)
    if current:
        chapters.append(" ".join(current))
    return chapters


_VERSE = re.compile(r"^\d+\s+(.*)$")
_HEADING = re.compile(r"(?:\d )?[A-Z][A-Za-z ]+ \d+")


@register_package("kjv_text")
def kjv_text(task: TaskConfig) -> Dataset:
    """The King James Bible, one chapter per document (Debian: ``apt-get install bible-kjv``)."""
    chapters = kjv_chapters()
    if not chapters:
        raise DataError("package 'kjv_text' needs the Debian package bible-kjv: apt-get install bible-kjv")
    return _documents(chapters, "package 'kjv_text'")


@register_package("offline_text")
def offline_text(task: TaskConfig) -> Dataset:
    """Every offline corpus together, for pre-training a small encoder (~2.7M WordPiece tokens with all parts):
    Rotten Tomatoes snippets without the held-out reviews of ``task=rotten_tomatoes`` (``rotten_tomatoes_train_text``),
    the BBC News articles, the WNUT-16 tweets (50 per document) and the King James Bible where ``bible-kjv`` is
    installed (a warning says when it is not: the corpus is then ~1.5M tokens)."""
    from encoderlab.kinds.token_classification.data import wnut16

    texts = list(rotten_tomatoes_train_text(task)["text"]) + list(bbc_news_text(task)["text"])
    tweets = [" ".join(t) for t in wnut16(TaskConfig(kind="token_classification"))["tokens"]]
    texts += ["\n".join(tweets[i : i + 50]) for i in range(0, len(tweets), 50)]
    chapters = kjv_chapters()
    if not chapters:
        log.warning("offline_text: the King James Bible is not installed (apt-get install bible-kjv); using the rest")
    return _documents(texts + chapters, "package 'offline_text'")


@register_format("txt")
def read_txt(path: Path, task: TaskConfig) -> Dataset:
    """A plain text file: documents separated by one or more blank lines."""
    text = read_text(path, task)
    blocks, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return _documents(blocks, f"'{path}'")


def load_corpus_dir(task: TaskConfig) -> Dataset:
    """``task.data_dir``: every ``*.txt`` file below the folder (sorted, recursive) is one document."""
    if not task.data_dir:
        raise ConfigError("task.data_dir", "give a folder of .txt files, one document per file")
    root = Path(os.path.expanduser(task.data_dir))
    if not root.is_dir():
        raise DataError(f"task.data_dir '{root}' is not a folder")
    files = sorted(p for p in root.rglob("*.txt") if p.is_file())
    if not files:
        raise DataError(f"task.data_dir '{root}' has no .txt files (one document per file)")
    return _documents([read_text(p, task) for p in files], f"task.data_dir '{root}' ({len(files)} files)")


def corpus_documents(ds: Dataset, task: TaskConfig, source: str = "the source") -> Dataset:
    """Any raw dataset as a corpus: the text column is ``task.text_fields[0]`` (or ``text``), blank rows dropped."""
    field = task.text_fields[0] if task.text_fields else "text"
    if field not in ds.column_names:
        if "text" in ds.column_names:
            field = "text"
        else:
            raise ConfigError(
                "task.text_fields",
                f"no column {field!r} in {source}; its columns are {', '.join(ds.column_names)}",
            )
    texts = [t if isinstance(t, str) else "" for t in ds[field]]
    return _documents(texts, source)


def _hold_out(ds: Dataset, n: int, seed: int) -> tuple[Dataset, Dataset]:
    parts = ds.train_test_split(test_size=n, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def split_corpus(ds: Dataset | DatasetDict, task: TaskConfig) -> DatasetDict:
    """train / validation / test by *documents*; splits the source lacks hold out ``task.mlm.validation_documents``.

    Validation and test each get ``max(1, round(validation_documents * n))`` whole documents, drawn with
    ``task.split_seed``; a source's own validation/test splits (``task.validation_split`` / ``test_split``) win.
    """
    if isinstance(ds, Dataset):
        ds = DatasetDict({task.train_split: ds})
    if task.train_split not in ds:
        raise ConfigError("task.train_split", f"no split {task.train_split!r} in the corpus; found {', '.join(ds)}")
    splits = {name: corpus_documents(d, task, f"split '{name}' of task '{task.name}'") for name, d in ds.items()}
    train = splits[task.train_split]
    total = len(train)
    n_hold = max(1, round(task.mlm.validation_documents * total))
    missing = [
        what
        for what, name in (("validation", task.validation_split), ("test", task.test_split))
        if name is None or name not in splits or name == task.train_split
    ]
    if missing and total - n_hold * len(missing) < 1:
        raise DataError(
            f"the corpus of task '{task.name}' has {total} document(s): too few to hold out whole documents for "
            f"{' and '.join(missing)} and still train; give at least {n_hold * len(missing) + 1} documents"
        )
    out: dict[str, Dataset] = {}
    for i, (what, name) in enumerate((("validation", task.validation_split), ("test", task.test_split))):
        if what in missing:
            train, out[what] = _hold_out(train, n_hold, task.split_seed + i)
        else:
            out[what] = splits[name]  # type: ignore[index]
    return DatasetDict({"train": train, "validation": out["validation"], "test": out["test"]})


__all__ = [
    "bbc_news_text",
    "corpus_documents",
    "kjv_chapters",
    "kjv_text",
    "offline_text",
    "load_corpus_dir",
    "read_txt",
    "rotten_tomatoes_text",
    "rotten_tomatoes_train_text",
    "split_corpus",
]
