"""Which tokens drove a classification: integrated gradients (Sundararajan et al. 2017, through captum) of the
predicted class's logit with respect to the token embeddings, from a run's exported ``hf/`` model.

    from encoderlab.report.explain import explain
    explain("outputs/.../hf", ["a dull, lifeless mess"])  # -> [[("dull", 0.61), ("mess", 0.42), ...]]

The baseline is the same sequence with every non-special token replaced by padding, so an attribution says how
much the token's presence moved the logit; scores are normalised to unit L2 norm per text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Explanation:
    text: str
    target: str  # the class explained (the prediction unless given)
    tokens: list[tuple[str, float]]  # (WordPiece, attribution) in text order, special tokens left out

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        return sorted(self.tokens, key=lambda t: -abs(t[1]))[:k]


def load_classifier(model_dir: str | Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def explain(
    model_dir: str | Path | tuple,
    texts: list[str],
    targets: list[str | None] | None = None,
    max_length: int = 128,
    n_steps: int = 32,
) -> list[Explanation]:
    """Token attributions for each text, towards ``targets`` (class names; None: the predicted class).

    ``model_dir`` is a run's ``hf/`` folder or a ``(model, tokenizer)`` pair."""
    from captum.attr import LayerIntegratedGradients

    model, tokenizer = load_classifier(model_dir) if not isinstance(model_dir, tuple) else model_dir
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]

    def forward(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits

    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    out = []
    for i, text in enumerate(texts):
        enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        special = torch.tensor(tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True))
        baseline = torch.where(special.bool(), ids[0], torch.tensor(tokenizer.pad_token_id)).unsqueeze(0)
        with torch.no_grad():
            pred = int(forward(ids, mask).argmax(-1))
        want = targets[i] if targets and targets[i] is not None else names[pred]
        attr = lig.attribute(
            ids, baselines=baseline, target=names.index(want), additional_forward_args=(mask,), n_steps=n_steps
        )
        scores = attr.sum(-1)[0]
        scores = scores / scores.norm().clamp(min=1e-12)
        tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
        kept = [(t, round(float(s), 4)) for t, s, sp in zip(tokens, scores, special.tolist(), strict=True) if not sp]
        out.append(Explanation(text, want, kept))
    return out
