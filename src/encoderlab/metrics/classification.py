"""torchmetrics collections for sequence classification and regression, chosen by name from the task."""

from __future__ import annotations

from torchmetrics import MeanSquaredError, MetricCollection, PearsonCorrCoef, SpearmanCorrCoef
from torchmetrics.classification import (
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)


def classification_metrics(names: list[str], num_labels: int) -> MetricCollection:
    factories = {
        "accuracy": lambda: MulticlassAccuracy(num_classes=num_labels, average="micro"),
        "f1_macro": lambda: MulticlassF1Score(num_classes=num_labels, average="macro"),
        "matthews_correlation": lambda: MulticlassMatthewsCorrCoef(num_classes=num_labels),
        # F1 of the positive class (label 1), as GLUE reports for MRPC and QQP
        "f1": lambda: BinaryF1Score(),
    }
    return MetricCollection({n: factories[n]() for n in names})


def regression_metrics(names: list[str]) -> MetricCollection:
    factories = {"pearson": PearsonCorrCoef, "spearman": SpearmanCorrCoef, "mse": MeanSquaredError}
    return MetricCollection({n: factories[n]() for n in names})
