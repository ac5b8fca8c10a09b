"""The contrastive stage's sentence pairs, drawn from the few labelled examples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sample_pairs(labels: Sequence[int], pairs_per_example: int, seed: int) -> list[tuple[int, int, float]]:
    """``(i, j, target)`` row pairs: for each example ``i``, ``pairs_per_example`` positive pairs (``j`` another
    example of its class, target 1.0) and as many negative ones (``j`` of another class, target 0.0), shuffled.

    As SetFit's ``num_iterations`` sampling: 2 x ``pairs_per_example`` x N pairs, half positive, half negative, so
    the loss sees both kinds equally whatever the class sizes. Unlike the library, an example is never paired with
    itself (a pair of identical texts has cosine 1 at any weights and teaches nothing). A class with a single example
    has no positive partner: its example anchors negative pairs only. The draw depends on ``seed`` and the labels.
    """
    y = np.asarray(labels)
    if pairs_per_example < 1 or len(y) < 2:
        return []
    rng = np.random.default_rng(seed)
    members = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    others = {c: np.flatnonzero(y != c) for c in members}
    pairs: list[tuple[int, int, float]] = []
    for i, c in enumerate(y.tolist()):
        same = members[c][members[c] != i]
        if len(same):
            pairs += [(i, int(j), 1.0) for j in rng.choice(same, size=pairs_per_example)]
        if len(others[c]):
            pairs += [(i, int(j), 0.0) for j in rng.choice(others[c], size=pairs_per_example)]
    return [pairs[k] for k in rng.permutation(len(pairs))]
