from __future__ import annotations

import math

import pytest
import torch

from encoderlab.config.schema import OPTIMIZERS as SCHEMA_OPTIMIZERS
from encoderlab.config.schema import OptimizerConfig
from encoderlab.errors import ConfigError
from encoderlab.training.optim import OPTIMIZERS, BertAdamW, build_optimizer

torch.set_num_threads(1)


def _run(opt_cls, steps: int, **kwargs) -> list[torch.Tensor]:
    """Parameters after each of ``steps`` updates on a fixed quadratic loss."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    target = torch.randn(4, 3, dtype=torch.float64)
    opt = opt_cls([w], **kwargs)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
        history.append(w.detach().clone())
    return history


def test_bias_corrected_bert_adamw_matches_torch_adamw():
    kwargs = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    ours = _run(BertAdamW, 5, bias_correction=True, **kwargs)
    ref = _run(torch.optim.AdamW, 5, **kwargs)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_without_bias_correction_first_step_differs_by_the_known_factor():
    """Step 1: AdamW moves by lr; uncorrected Adam by lr * (1 - beta1) / sqrt(1 - beta2) (3.16x for 0.9/0.999)."""
    torch.manual_seed(0)
    start = torch.randn(4, 3, dtype=torch.float64)
    kwargs = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-12, weight_decay=0.0)
    bert = _run(BertAdamW, 1, bias_correction=False, **kwargs)[0] - start
    adamw = _run(torch.optim.AdamW, 1, **kwargs)[0] - start
    factor = (1 - 0.9) / math.sqrt(1 - 0.999)
    torch.testing.assert_close(bert, adamw * factor, rtol=1e-6, atol=0)


def test_without_bias_correction_follows_the_original_bert_update():
    lr, (b1, b2), eps, wd = 1e-2, (0.9, 0.999), 1e-6, 0.01
    ours = _run(BertAdamW, 3, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, bias_correction=False)
    torch.manual_seed(0)
    w, target = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for step in range(3):
        g = 2 * (w - target)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (v.sqrt() + eps) + wd * w)  # google-research/bert AdamWeightDecayOptimizer
        torch.testing.assert_close(ours[step], w, rtol=0, atol=1e-12)


def test_step_calls_the_closure_and_returns_its_loss():
    w = torch.nn.Parameter(torch.ones(2))
    opt = BertAdamW([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 2.0
    assert (w < 1).all()


def test_registry_covers_every_optimizer_name_the_schema_allows():
    assert set(OPTIMIZERS) == set(SCHEMA_OPTIMIZERS)


@pytest.mark.parametrize(
    ("cfg", "cls", "eps", "bias_correction"),
    [
        (OptimizerConfig(name="adamw"), torch.optim.AdamW, 1e-8, None),
        (OptimizerConfig(name="adamw", bias_correction=False), BertAdamW, 1e-8, False),
        (OptimizerConfig(name="adamw_bert"), BertAdamW, 1e-6, False),  # the name alone is the BERT recipe
        (OptimizerConfig(name="adamw_bert", eps=1e-8), BertAdamW, 1e-8, False),
        (OptimizerConfig(name="adamw_bert", bias_correction=True), torch.optim.AdamW, 1e-6, None),
    ],
    ids=["adamw", "adamw_no_correction", "adamw_bert", "adamw_bert_eps", "adamw_bert_corrected"],
)
def test_build_optimizer_picks_the_class_and_keeps_group_settings(cfg, cls, eps, bias_correction):
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    groups = [
        {"params": [a], "lr": 1e-3, "base_lr": 1e-3, "weight_decay": 0.0, "layer_id": 0, "name": "embeddings.no_decay"},
        {"params": [b], "lr": 5e-3, "base_lr": 5e-3, "weight_decay": 0.01, "layer_id": 1, "name": "head.decay"},
    ]
    opt = build_optimizer(groups, cfg)
    assert type(opt) is cls
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 5e-3]
    assert [g["layer_id"] for g in opt.param_groups] == [0, 1]
    assert all(g["eps"] == eps for g in opt.param_groups)
    if bias_correction is not None:
        assert all(g["bias_correction"] is bias_correction for g in opt.param_groups)


@pytest.mark.parametrize(
    "overrides",
    [["optimizer.name=adamw_bert"], ["optimizer=adamw_bert"]],
    ids=["name_alone", "group"],
)
def test_adamw_bert_from_the_command_line_is_the_bert_optimizer_and_each_knob_changes_alone(overrides):
    from encoderlab.training.optim import resolved

    assert resolved(_compose(overrides).optimizer) == (1e-6, False)
    assert resolved(_compose([*overrides, "optimizer.bias_correction=true"]).optimizer) == (1e-6, True)
    assert resolved(_compose([*overrides, "optimizer.eps=1e-8"]).optimizer) == (1e-8, False)
    assert resolved(_compose([]).optimizer) == (1e-8, True)


def test_the_stability_study_arms_differ_in_bias_correction_only():
    from encoderlab.training.optim import resolved

    arms = []
    for value in ("false", "true"):
        run = _compose(["experiment=stability_study", f"optimizer.bias_correction={value}"])
        arms.append((run.optimizer.name, run.optimizer.lr, *resolved(run.optimizer)))
    assert arms == [("adamw_bert", 2e-5, 1e-6, False), ("adamw_bert", 2e-5, 1e-6, True)]
    with_hydra = _compose(["experiment=stability_study"], hydra=True)
    params = {k: str(v) for k, v in with_hydra.hydra.sweeper.params.items()}
    assert params["optimizer.bias_correction"] == "false,true" and "optimizer" not in params


def _compose(overrides: list[str], hydra: bool = False):
    from hydra import compose, initialize_config_dir

    from encoderlab.cli.train import CONF_DIR
    from encoderlab.config.validate import validate

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=hydra)
    return cfg if hydra else validate(cfg)


def test_unknown_optimizer_name_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match="adamw_bert") as err:
        build_optimizer([{"params": [torch.nn.Parameter(torch.ones(1))]}], OptimizerConfig(name="sgd"))
    assert err.value.key == "optimizer.name"


def test_built_adamw_matches_the_per_tensor_update_within_float_noise():
    """The whole-tensor kernels (fused AdamW, foreach BertAdamW) change speed, not the training math."""

    def train(make, steps=20):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Flatten(), torch.nn.Linear(24, 2))
        groups = [
            {"params": list(net[0].parameters()), "lr": 1e-2, "weight_decay": 0.0},
            {"params": list(net[2].parameters()), "lr": 3e-2, "weight_decay": 0.1},
        ]
        opt = make(groups)
        x, y = torch.randint(0, 50, (16, 3)), torch.randint(0, 2, (16,))
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        return [p.detach() for p in net.parameters()]

    for cfg, ref in [
        (OptimizerConfig(name="adamw"), lambda g: torch.optim.AdamW(g, eps=1e-8, foreach=False)),
        (
            OptimizerConfig(name="adamw_bert"),
            lambda g: _PerTensorBertAdamW(g, eps=1e-6, weight_decay=0.0, bias_correction=False),
        ),
    ]:
        ours = train(lambda g, cfg=cfg: build_optimizer(g, cfg))
        for a, b in zip(ours, train(ref), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class _PerTensorBertAdamW(torch.optim.Optimizer):
    """The uncorrected BERT update written one tensor at a time: the reference for the foreach kernels."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, bias_correction=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (b1, b2), lr = group["betas"], group["lr"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
                st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                p.mul_(1 - lr * group["weight_decay"])
                p.addcdiv_(st["m"], st["v"].sqrt().add_(group["eps"]), value=-lr)
