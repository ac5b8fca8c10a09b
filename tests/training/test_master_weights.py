"""precision=bf16-true: the network computes in bf16, the optimizer steps fp32 copies of its weights. Steps too small
for bf16 still count, metrics keep their precision, clipping sees the true gradients and exports are fp32."""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
from support import quiet_trainer, reviews_task
from torch import nn

from encoderlab.config.schema import ModelConfig, OptimizerConfig, RunConfig
from encoderlab.data.datamodule import EncoderDataModule
from encoderlab.kinds.sequence import kind
from encoderlab.training.master_weights import BF16Weights, MasterWeights

torch.set_num_threads(1)


def test_updates_too_small_for_bf16_accumulate_in_the_fp32_copies():
    """Near 1.0 bf16 weights move in steps of 2^-8: twenty SGD steps of 1e-3 each round away on bf16 weights, and
    add up to 0.02 on the copies (what the end of a decaying LR schedule needs)."""
    net = nn.Linear(4, 1, bias=False)
    nn.init.ones_(net.weight)
    net.to(torch.bfloat16)
    plain = copy.deepcopy(net)
    masters = MasterWeights(net)
    opt = torch.optim.SGD(masters.swap([{"params": list(net.parameters())}]), lr=1e-3)
    masters.attach(opt)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=1e-3)
    x = torch.ones(1, 4, dtype=torch.bfloat16)  # d(sum(w . x))/dw = 1
    for _ in range(20):
        net(x).sum().backward()
        masters.take_grads()
        assert net.weight.grad is None and masters.pairs[0][1].grad.dtype == torch.float32
        opt.step()
        opt.zero_grad()
        plain(x).sum().backward()
        plain_opt.step()
        plain_opt.zero_grad()
    assert torch.equal(plain.weight, torch.ones_like(plain.weight))  # every step rounded away
    master = masters.pairs[0][1]
    torch.testing.assert_close(master, torch.full_like(master, 0.98))
    assert net.weight.dtype == torch.bfloat16 and torch.equal(net.weight, master.to(torch.bfloat16))


def test_tied_weights_get_one_copy_and_checkpoints_hold_it_under_every_name():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.emb.weight

    net = Tied().to(torch.bfloat16)
    masters = MasterWeights(net)
    assert len(masters.pairs) == 1
    with torch.no_grad():
        masters.pairs[0][1].add_(1e-3)  # a value bf16 cannot hold
    state = {f"network.{k}": v for k, v in net.state_dict().items()}
    masters.into_state(state, net, "network.")
    assert state["network.emb.weight"].dtype == state["network.out.weight"].dtype == torch.float32
    assert torch.equal(state["network.emb.weight"], masters.pairs[0][1])

    again = MasterWeights(net, {k.removeprefix("network."): v for k, v in state.items()})  # as on resume
    assert torch.equal(again.pairs[0][1], masters.pairs[0][1])


def test_bf16_true_trains_the_network_in_bf16_clips_fp32_gradients_and_exports_fp32(tokenizer):
    model = ModelConfig(
        name="tiny", from_scratch=True, num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64
    )
    run = RunConfig(
        task=reviews_task(max_seq_length=32), model=model, optimizer=OptimizerConfig(lr=1e-3), precision="bf16-true"
    )
    run.check()
    prepared = kind.prepare(run, tokenizer, None)
    torch.manual_seed(0)
    module = kind.build(run, prepared, tokenizer)
    start = {k: v.clone() for k, v in module.network.state_dict().items()}
    norms, seen = [], {}

    class Watch(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            opt = trainer.optimizers[0]
            params = [p for g in opt.param_groups for p in g["params"]]
            seen["optimizer"] = {p.dtype for p in params}
            seen["network"] = {p.dtype for p in pl_module.network.parameters()}
            seen["metric"] = pl_module.eval_loss["val"].mean_value.dtype

            def after(optimizer, args, kwargs):
                grads = [p.grad for p in params if p.grad is not None]
                norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

            opt.register_step_post_hook(after)

    dm = EncoderDataModule(prepared.datasets, prepared.collator, 8, 16, run.speed, seed=0)
    quiet_trainer(
        max_steps=3,
        plugins=[BF16Weights()],
        gradient_clip_val=1e-3,
        limit_val_batches=1,
        val_check_interval=3,
        callbacks=[Watch()],
    ).fit(module, datamodule=dm)

    assert seen == {"optimizer": {torch.float32}, "network": {torch.bfloat16}, "metric": torch.float64}
    assert len(norms) == 3 and all(n == pytest.approx(1e-3, rel=1e-3) for n in norms)  # clipped in fp32
    for p, master in module.masters.pairs:
        assert torch.equal(p, master.to(torch.bfloat16))
    module.full_precision()
    after = module.network.state_dict()
    assert {v.dtype for v in after.values() if v.is_floating_point()} == {torch.float32}
    moved = [k for k in after if after[k].is_floating_point() and not torch.equal(after[k], start[k])]
    assert moved  # trained, and not only rounded: the copies' exact values
    for p, master in module.masters.pairs:
        assert torch.equal(p, master)


def test_bf16_true_starts_the_fp32_copies_from_the_weights_as_loaded_and_keeps_regression_labels_fp32(tokenizer):
    """The copies are the weights the run continues from: rounding them to bf16 first would lose what the
    pre-trained (fp32) weights hold below bf16's precision; a regression target rounded to bf16 moves the loss."""
    from support import ratings_task, tiny_model

    run = RunConfig(task=ratings_task(), model=tiny_model(), precision="bf16-true")
    run.check()
    prepared = kind.prepare(run, tokenizer, None)
    torch.manual_seed(0)
    module = kind.build(run, prepared, tokenizer)
    start = {n: p.detach().clone() for n, p in module.network.named_parameters()}
    seen = {}

    class Watch(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            named = dict(pl_module.network.named_parameters())
            by_id = {id(p): n for n, p in named.items()}
            seen["copies"] = all(torch.equal(m, start[by_id[id(p)]]) for p, m in pl_module.masters.pairs)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen["labels"] = batch["labels"].dtype

    dm = EncoderDataModule(prepared.datasets, prepared.collator, 8, 16, run.speed, seed=0)
    quiet_trainer(max_steps=1, plugins=[BF16Weights()], limit_val_batches=0, callbacks=[Watch()]).fit(module, dm)

    assert seen == {"copies": True, "labels": torch.float32}


def test_a_checkpoint_holds_a_shared_weights_fp32_copy_once():
    """A multitask network shares its encoder between the task models: one copy in the file, under every name."""
    import io

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            encoder = nn.Linear(64, 64)
            self.a, self.b = nn.Sequential(encoder, nn.Linear(64, 2)), nn.Sequential(encoder, nn.Linear(64, 3))

    net = Shared().to(torch.bfloat16)
    masters = MasterWeights(net)
    state = {f"network.{k}": v for k, v in net.state_dict().items()}
    masters.into_state(state, net, "network.")
    assert state["network.a.0.weight"].dtype == torch.float32
    assert state["network.a.0.weight"].data_ptr() == state["network.b.0.weight"].data_ptr()
    buf = io.BytesIO()
    torch.save(state, buf)
    assert len(buf.getvalue()) < 1.5 * 64 * 64 * 4  # the 64x64 fp32 encoder weight once
