"""``precision=bf16-true``: the network computes in bf16, the optimizer updates fp32 master weights.

Lightning's own ``bf16-true`` casts the whole LightningModule to bf16 and lets the optimizer update bf16 weights:
an update smaller than ~1/256 of a weight rounds away (the end of a decaying schedule does nothing), and the
metrics' sums lose counts past 256. Here (the apex "O2" / Megatron scheme):

- only the network is cast (:class:`BF16Weights`); metrics keep their dtype;
- the optimizer holds an fp32 copy of every trainable weight (:class:`MasterWeights`). Before the step (after
  Lightning's backward, before clipping) the bf16 gradients move onto the copies; after the step the copies are
  rounded back into the network. Clipping, the optimizer state and the LR schedule all work in fp32;
- checkpoints store the fp32 copies as the weights, so a resumed run continues from exactly where it stopped and
  exports (``hf/``) are fp32, as with any other precision.

What it buys: no autocast. Under ``bf16-mixed`` every op casts its fp32 inputs (the weights at each step, the
residual stream at every LayerNorm); with bf16 weights those copies are gone (BERT-mini's MLM stage on a CPU with
AMX: 1.13x the bf16-mixed step rate, docs/RESULTS.md). Frozen weights are rounded to bf16 once and stay so.
Gradients accumulated over several batches (``trainer.accumulate_grad_batches``) add up in bf16.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from pytorch_lightning.plugins.precision import HalfPrecision
from torch import nn

DTYPE = torch.bfloat16


def precision_arg(precision: str) -> dict:
    """``pl.Trainer``'s ``precision`` argument, unless :func:`precision_plugins` implements the precision."""
    return {} if precision == "bf16-true" else {"precision": precision}


def precision_plugins(precision: str) -> list:
    """bf16-true: :class:`BF16Weights` (the network in bf16, the metrics untouched)."""
    return [BF16Weights()] if precision == "bf16-true" else []


# what a loss or a metric compares against: kept in its own dtype (a regression target rounded to bf16 moves the loss)
TARGETS = ("labels", "teacher_logits")


class BF16Weights(HalfPrecision):
    """Lightning's ``bf16-true`` for the LightningModule's ``network`` only (its metrics keep float32/float64).

    Before the network is rounded to bf16, its trainable weights as loaded (fp32) are kept in the module's
    ``_master_start`` (unless a checkpoint has set them): the optimizer's fp32 copies start from them. A batch's
    floating inputs go to bf16, its targets (:data:`TARGETS`) keep their dtype."""

    def __init__(self) -> None:
        super().__init__("bf16-true")

    def convert_module(self, module: nn.Module) -> nn.Module:
        network = getattr(module, "network", None)
        if network is None:
            return super().convert_module(module)
        if getattr(module, "masters", False) is None and getattr(module, "_master_start", False) is None:
            start = {n: p.detach().clone() for n, p in network.named_parameters() if p.requires_grad}
            module._master_start = {n: v for n, v in start.items() if v.dtype == torch.float32}
        network.to(dtype=DTYPE)
        return module

    def convert_input(self, data):
        if isinstance(data, dict):
            return {k: v if k in TARGETS else self.convert_input(v) for k, v in data.items()}
        if type(data) in (list, tuple):
            return type(data)(self.convert_input(v) for v in data)
        return super().convert_input(data)


class MasterWeights:
    """fp32 copies of a network's trainable bf16 parameters, which the optimizer updates in their place."""

    def __init__(self, network: nn.Module, initial: dict[str, torch.Tensor] | None = None):
        initial = initial or {}
        self.pairs: list[tuple[nn.Parameter, torch.Tensor]] = []
        self._by_param: dict[int, torch.Tensor] = {}
        for name, p in network.named_parameters():  # tied weights are one parameter: one copy
            if not p.requires_grad or id(p) in self._by_param:
                continue
            start = initial.get(name)
            master = (start if start is not None and start.shape == p.shape else p.detach()).float().clone()
            master = master.to(p.device)
            self.pairs.append((p, master))
            self._by_param[id(p)] = master

    def swap(self, groups: Iterable[dict]) -> list[dict]:
        """Parameter groups over the fp32 copies (same order, same options)."""
        return [g | {"params": [self._by_param.get(id(p), p) for p in g["params"]]} for g in groups]

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_post_hook(lambda *_: self.to_network())

    @torch.no_grad()
    def take_grads(self) -> None:
        """The network's accumulated bf16 gradients onto the copies (as fp32); the network's are dropped."""
        for p, master in self.pairs:
            master.grad = None if p.grad is None else p.grad.float()
            p.grad = None

    @torch.no_grad()
    def to_network(self) -> None:
        for p, master in self.pairs:
            p.copy_(master)

    @torch.no_grad()
    def load(self, state: dict[str, torch.Tensor], network: nn.Module, prefix: str = "") -> None:
        """The copies from a checkpoint's (fp32) state dict."""
        for name, p in network.named_parameters():
            master, value = self._by_param.get(id(p)), state.get(prefix + name)
            if master is not None and value is not None:
                master.copy_(value)

    def into_state(self, state: dict[str, torch.Tensor], network: nn.Module, prefix: str = "") -> None:
        """Replace the network's bf16 weights in a state dict by their fp32 copies (tied and shared names included:
        one tensor under all of a parameter's names, which ``torch.save`` then stores once)."""
        saved: dict[int, torch.Tensor] = {}
        for name, p in network.named_parameters(remove_duplicate=False):
            master = self._by_param.get(id(p))
            if master is not None and prefix + name in state:
                if id(p) not in saved:
                    saved[id(p)] = master.detach().clone()
                state[prefix + name] = saved[id(p)]

    @torch.no_grad()
    def to_full_precision(self, network: nn.Module) -> None:
        """The network in fp32 holding the copies' exact values (for an export)."""
        network.float()  # the same Parameter objects, new data
        self.to_network()
