"""Feature-based models: a frozen encoder, hidden layers chosen as in BERT Table 7, and a small head.

The encoder never trains and always runs in eval mode (no dropout), so its features are a pure function of
the input: they can be computed once and cached (``speed.cache_features``) without changing the result.
Features are kept per selected layer (``[..., n_layers, hidden]``) and combined in the head, so a learned
weighted sum trains on cached features too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from encoderlab.errors import ConfigError

if TYPE_CHECKING:
    from encoderlab.config.schema import RunConfig

# one entry per encoderlab.names.FEATURE_LAYERS: which hidden_states to keep (index into HF's tuple: 0 = embeddings,
# i = layer i), and how to combine them
LAYER_CHOICES = {
    "embeddings": (lambda n: [0], "single"),
    "last": (lambda n: [n], "single"),
    "second_to_last": (lambda n: [n - 1], "single"),
    "concat_last4": (lambda n: [n - 3, n - 2, n - 1, n], "concat"),
    "weighted_sum_last4": (lambda n: [n - 3, n - 2, n - 1, n], "weighted"),
    "weighted_sum_all": (lambda n: list(range(1, n + 1)), "weighted"),
}


def layer_indices(layers: str, n_layers: int) -> tuple[list[int], str]:
    pick, combine = LAYER_CHOICES[layers]
    idx = pick(n_layers)
    if min(idx) < 0:
        raise ConfigError("finetune.layers", f"'{layers}' needs more layers than the model's {n_layers}")
    return idx, combine


class ScalarMix(nn.Module):
    """Softmax-normalised learned weights over layers, times a scale (ELMo's scalar mix)."""

    def __init__(self, n: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n))
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # [..., n, H] -> [..., H]
        w = torch.softmax(self.weights, dim=0).to(feats.dtype)
        return self.gamma.to(feats.dtype) * torch.einsum("...nh,n->...h", feats, w)


class FeatureHead(nn.Module):
    """Combine the selected layers, then classify each sequence (``[B, n, H]``) or token (``[B, T, n, H]``)."""

    def __init__(
        self,
        n_selected: int,
        hidden: int,
        num_outputs: int,
        combine: str,
        head: str = "linear",
        head_hidden_size: int = 256,
        dropout: float = 0.1,
        normalize: bool = False,
    ):
        super().__init__()
        self.combine = combine
        self.normalize = normalize  # unit-length vectors before the classifier (a sentence encoder's Normalize)
        # what rebuilds this head from an export (feature_head.json)
        self.kind, self.n_selected, self.hidden = head, n_selected, hidden
        self.num_outputs, self.head_hidden_size = num_outputs, head_hidden_size
        self.mix = ScalarMix(n_selected) if combine == "weighted" else None
        width = hidden * n_selected if combine == "concat" else hidden
        self.dropout = nn.Dropout(dropout)
        self.lstm = None
        if head == "linear":
            self.classifier: nn.Module = nn.Linear(width, num_outputs)
        elif head == "mlp":
            self.classifier = nn.Sequential(
                nn.Linear(width, head_hidden_size),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(head_hidden_size, num_outputs),
            )
        else:  # bilstm over tokens, as in BERT's feature-based NER (Table 7)
            self.lstm = nn.LSTM(width, head_hidden_size, num_layers=2, batch_first=True, bidirectional=True)
            self.classifier = nn.Linear(2 * head_hidden_size, num_outputs)

    def combined(self, feats: torch.Tensor) -> torch.Tensor:
        if self.combine == "weighted":
            return self.mix(feats)
        return feats.flatten(-2)  # single layer: [.., 1, H] -> [.., H]; concat: [.., n*H]

    def forward(self, feats: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.combined(feats.float())
        x = self.dropout(nn.functional.normalize(x, dim=-1) if self.normalize else x)
        if self.lstm is not None:
            lengths = (
                attention_mask.sum(-1).clamp(min=1).cpu()
                if attention_mask is not None
                else torch.full((x.shape[0],), x.shape[1])
            )
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=feats.shape[1])
            x = self.dropout(x)
        return self.classifier(x)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """[B, T, n, H] -> [B, n, H] by the [CLS] vector or the mean over real tokens."""
    if how == "cls":
        return hidden[:, 0]
    m = attention_mask[:, :, None, None].to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class FeatureModel(nn.Module):
    """A frozen encoder whose selected hidden layers feed a trainable :class:`FeatureHead`."""

    def __init__(self, encoder: nn.Module, head: FeatureHead, layers: list[int], pooling: str | None):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.layers = layers
        self.pooling = pooling  # None: per-token features
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # features must not depend on dropout, so caching them is exact
        return self

    @torch.no_grad()
    def encode(self, input_ids, attention_mask, token_type_ids=None, all_layers: bool = False) -> torch.Tensor:
        """Features of the selected layers; ``all_layers``: of every layer (embeddings first), for caching."""
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=True,
        )
        if self.pooling == "pooler":
            return out.pooler_output[:, None, :]
        # the last layer as the model outputs it: pre-LayerNorm models (RoBERTa-PreLN) normalise after the last block
        states = (*out.hidden_states[:-1], out.last_hidden_state)
        layers = range(len(states)) if all_layers else self.layers
        hidden = torch.stack([states[i] for i in layers], dim=2)  # [B, T, n, H]
        if self.pooling is None:
            return hidden
        return pool(hidden, attention_mask, self.pooling)

    def forward(self, batch: dict) -> torch.Tensor:
        feats = batch.get("features")
        if feats is None:
            feats = self.encode(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        mask = batch.get("attention_mask") if self.pooling is None else None
        return self.head(feats, mask)


class PooledModel(nn.Module):
    """A *trainable* encoder with a linear classifier on its last layer's [CLS] vector or mean over real tokens.

    ``finetune.pooling=cls|mean`` with a strategy that trains the encoder (full, top_k, gradual_unfreeze): the
    sentence vector of sentence-transformers, fine-tuned end to end, instead of the model's own
    ``*ForSequenceClassification`` head (BERT's pooler on [CLS]). It matters for encoders whose [CLS] was never
    trained, such as one pre-trained by masked-LM alone. Same attributes as :class:`FeatureModel`, so it exports
    the same way (``hf/encoder`` + the head) and :func:`encoderlab.models.heads.load_feature_model` reloads it.
    """

    def __init__(self, encoder: nn.Module, head: FeatureHead, pooling: str):
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused by this head: no weights without gradients (DDP, weight decay)
        self.encoder = encoder
        self.head = head
        self.layers = [encoder.config.num_hidden_layers]
        self.pooling = pooling

    def forward(self, batch: dict) -> torch.Tensor:
        mask = batch["attention_mask"]
        hidden = self.encoder(
            input_ids=batch["input_ids"], attention_mask=mask, token_type_ids=batch.get("token_type_ids")
        ).last_hidden_state
        return self.head(pool(hidden[:, :, None, :], mask, self.pooling))


def feature_model(run: RunConfig, config, num_outputs: int, token_level: bool = False) -> FeatureModel:
    """The frozen encoder + head of a strategy with a frozen encoder: the hidden layers and the head its
    ``feature_layers`` names (``finetune=frozen``: the last layer, linear; ``feature_based``: finetune.layers/head)."""
    from transformers import AutoModel

    from encoderlab.models.encoder import build_model

    ft = run.finetune
    encoder = build_model(run.model, AutoModel, config)
    n = config.num_hidden_layers
    from encoderlab.strategies import get_strategy

    layers_name, head = get_strategy(ft.strategy).feature_layers(ft)  # a linear probe: the last layer, linear
    pooling = None if token_level else (ft.pooling or run.model.pooling)
    if pooling == "pooler" and layers_name != "last":
        raise ConfigError(
            "finetune.pooling",
            f"'pooler' reads the last layer only; with finetune.layers={layers_name} use finetune.pooling=cls or mean",
        )
    if pooling == "pooler" and getattr(encoder, "pooler", None) is None:
        raise ConfigError("finetune.pooling", "this model has no pooler; use finetune.pooling=cls or mean")
    idx, combine = layer_indices(layers_name, n)
    head_mod = FeatureHead(
        1 if pooling == "pooler" else len(idx),
        config.hidden_size,
        num_outputs,
        "single" if pooling == "pooler" else combine,
        head,
        ft.head_hidden_size,
        ft.head_dropout,
    )
    return FeatureModel(encoder, head_mod, idx, pooling)


def export_feature_model(network: FeatureModel | PooledModel, tokenizer, out: Path, meta: dict) -> None:
    """The frozen encoder in ``out/encoder`` (Hugging Face format) and the trained head beside it.

    ``out`` itself holds no config.json on purpose: ``transformers.pipeline`` would otherwise load the encoder with
    a randomly initialised classifier and predict nonsense. :func:`load_feature_model` rebuilds the whole model.
    """
    from encoderlab.models.encoder import save_pretrained

    save_pretrained(network.encoder, tokenizer, out / "encoder")
    head = network.head
    torch.save(head.state_dict(), out / "feature_head.pt")
    desc = {
        "layers": network.layers,
        "pooling": network.pooling,
        "combine": head.combine,
        "head": head.kind,
        "n_selected": head.n_selected,
        "hidden": head.hidden,
        "num_outputs": head.num_outputs,
        "head_hidden_size": head.head_hidden_size,
        "normalize": head.normalize,
        **meta,
    }
    (out / "feature_head.json").write_text(json.dumps(desc, indent=2))
    (out / "README.md").write_text(
        "An encoder (encoder/) with a trained head on its pooled hidden states (feature_head.pt). Load both with\n\n"
        "    from encoderlab.models.heads import load_feature_model\n"
        "    model, tokenizer, desc = load_feature_model(PATH)\n"
        "    logits = model(tokenizer(texts, return_tensors='pt', padding=True))\n"
    )


def load_feature_model(path: str | Path) -> tuple[FeatureModel, object, dict]:
    """(model, tokenizer, description) of a folder written by :func:`export_feature_model`."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path)
    desc = json.loads((path / "feature_head.json").read_text())
    head = FeatureHead(
        desc["n_selected"],
        desc["hidden"],
        desc["num_outputs"],
        desc["combine"],
        desc["head"],
        desc["head_hidden_size"],
        normalize=desc.get("normalize", False),  # exports from before the option: no normalisation
    )
    head.load_state_dict(torch.load(path / "feature_head.pt", map_location="cpu", weights_only=True))
    encoder = AutoModel.from_pretrained(path / "encoder")
    model = FeatureModel(encoder, head, desc["layers"], desc["pooling"]).eval()
    return model, AutoTokenizer.from_pretrained(path / "encoder"), desc
