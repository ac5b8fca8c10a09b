"""The sequence kind on its real built network: each strategy trains exactly what it claims, exports reload
with the same logits, and caching frozen features changes nothing but speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from support import quiet_trainer, ratings_task, reviews_task
from transformers import AutoModelForSequenceClassification, pipeline

from encoderlab.config.schema import (
    CallbacksConfig,
    FinetuneConfig,
    ModelConfig,
    OptimizerConfig,
    PathsConfig,
    RunConfig,
    SpeedConfig,
    TrainerConfig,
)
from encoderlab.data.datamodule import EncoderDataModule
from encoderlab.errors import ConfigError
from encoderlab.kinds.sequence import kind as kind
from encoderlab.models.heads import FeatureModel, ScalarMix, load_feature_model
from encoderlab.training.freezing import count_parameters

torch.set_num_threads(1)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
H = 32  # hidden size of the tiny encoder
CLASSIFIER = H * 2 + 2
POOLER = H * H + H


def make_run(strategy: str = "full", n_layers: int = 2, cache_dir: Path | None = None, **finetune) -> RunConfig:
    run = RunConfig(
        task=reviews_task(max_seq_length=32),
        model=ModelConfig(
            name="tiny",
            from_scratch=True,
            num_hidden_layers=n_layers,
            hidden_size=H,
            num_attention_heads=2,
            intermediate_size=64,
            pooling="cls",
        ),
        finetune=FinetuneConfig(strategy=strategy, **finetune),
        optimizer=OptimizerConfig(lr=1e-3),
        batch_size=8,
        eval_batch_size=16,
    )
    if cache_dir is not None:
        run.paths = PathsConfig(cache_dir=str(cache_dir))
    run.check()
    return run


@pytest.fixture(scope="module")
def prepared(tokenizer):
    return kind.prepare(make_run(), tokenizer, None)


@pytest.fixture()
def batch(prepared):
    return prepared.collator(prepared.datasets["train"].to_list()[:8])


def build(prepared, tokenizer, strategy="full", seed=0, **kw):
    torch.manual_seed(seed)
    return kind.build(make_run(strategy, **kw), prepared, tokenizer)


def backward(module, batch) -> dict[str, torch.Tensor | None]:
    module.network.zero_grad(set_to_none=True)
    loss, _ = module.step(batch)
    loss.backward()
    return {n: p.grad for n, p in module.network.named_parameters()}


def trained(module) -> set[str]:
    return {n for n, p in module.network.named_parameters() if p.requires_grad}


def assert_grads(grads: dict, trains) -> None:
    """Parameters that train get a non-zero gradient; frozen ones get none at all."""
    for name, g in grads.items():
        if trains(name):
            assert g is not None and g.abs().sum() > 0, f"{name} should learn"
        else:
            assert g is None or not g.any(), f"{name} should be frozen"


def test_full_trains_every_parameter(prepared, tokenizer, batch):
    module = build(prepared, tokenizer, "full")
    assert isinstance(module.network, torch.nn.Module) and not isinstance(module.network, FeatureModel)
    trainable, total = count_parameters(module.network)
    assert trainable == total
    assert_grads(backward(module, batch), lambda n: True)


def test_frozen_trains_only_the_linear_head(prepared, tokenizer, batch):
    module = build(prepared, tokenizer, "frozen")
    net = module.network
    assert isinstance(net, FeatureModel) and isinstance(net.head.classifier, torch.nn.Linear)
    assert trained(module) == {"head.classifier.weight", "head.classifier.bias"}
    assert count_parameters(net)[0] == CLASSIFIER
    assert_grads(backward(module, batch), lambda n: n.startswith("head."))


@pytest.mark.parametrize(
    ("layers", "head", "expected"),
    [
        ("weighted_sum_all", "linear", CLASSIFIER + 2 + 1),  # + ScalarMix: one weight per layer, and gamma
        ("last", "mlp", (H * 256 + 256) + (256 * 2 + 2)),
        ("second_to_last", "linear", CLASSIFIER),
    ],
)
def test_feature_based_trains_only_its_head(prepared, tokenizer, batch, layers, head, expected):
    module = build(prepared, tokenizer, "feature_based", layers=layers, head=head)
    net = module.network
    assert isinstance(net, FeatureModel)
    assert all(n.startswith("head.") for n in trained(module))
    assert count_parameters(net)[0] == expected
    if layers.startswith("weighted"):
        assert isinstance(net.head.mix, ScalarMix) and {"head.mix.weights", "head.mix.gamma"} <= trained(module)
    assert_grads(backward(module, batch), lambda n: n.startswith("head."))


def test_feature_layers_choose_the_hidden_states(prepared, tokenizer):
    assert build(prepared, tokenizer, "feature_based", layers="second_to_last").network.layers == [1]
    assert build(prepared, tokenizer, "feature_based", layers="weighted_sum_all").network.layers == [1, 2]
    assert build(prepared, tokenizer, "feature_based", layers="embeddings").network.layers == [0]
    with pytest.raises(ConfigError) as e:
        build(prepared, tokenizer, "feature_based", layers="concat_last4")  # 2 layers only
    assert e.value.key == "finetune.layers"


def test_top_k_trains_top_layers_pooler_and_classifier(prepared, tokenizer, batch):
    module = build(prepared, tokenizer, "top_k", n_layers=3, k=2)

    def trains(name: str) -> bool:
        return name.startswith(("bert.encoder.layer.1.", "bert.encoder.layer.2.", "bert.pooler.", "classifier."))

    names = [n for n, _ in module.network.named_parameters()]
    assert trained(module) == {n for n in names if trains(n)}
    assert any(n.startswith("bert.embeddings.") for n in names) and not any(
        n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for n in trained(module)
    )
    assert_grads(backward(module, batch), trains)


def test_top_k_with_train_embeddings_trains_them_too(prepared, tokenizer):
    module = build(prepared, tokenizer, "top_k", n_layers=3, k=1, train_embeddings=True)
    assert any(n.startswith("bert.embeddings.") for n in trained(module))
    assert not any(n.startswith(("bert.encoder.layer.0.", "bert.encoder.layer.1.")) for n in trained(module))


def test_top_k_larger_than_the_model_names_k_and_the_layer_count(prepared, tokenizer):
    with pytest.raises(ConfigError) as e:
        build(prepared, tokenizer, "top_k", k=99)
    assert e.value.key == "finetune.k" and "2 layers" in str(e.value)


class _LrProbe(pl.Callback):
    """The LR of every parameter group at each optimizer step (after the unfreezer set it)."""

    def __init__(self):
        self.steps: list[dict[int, float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        lrs: dict[int, float] = {}
        for g in optimizer.param_groups:
            lrs[g["layer_id"]] = max(lrs.get(g["layer_id"], 0.0), g["lr"])
        self.steps.append(lrs)


def test_gradual_unfreeze_gives_frozen_layers_lr_zero_and_thaws_from_the_top(prepared, tokenizer):
    run = make_run("gradual_unfreeze", unfreeze_interval=1 / 3)
    run.scheduler.warmup_ratio = 0.0
    run.scheduler.name = "constant"
    torch.manual_seed(0)
    module = kind.build(run, prepared, tokenizer)
    assert count_parameters(module.network)[0] == count_parameters(module.network)[1]  # never requires_grad
    before = {n: p.detach().clone() for n, p in module.network.named_parameters()}
    probe, first = _LrProbe(), _MovedAfterFirstStep(before)
    dm = EncoderDataModule(prepared.datasets, prepared.collator, 8, 16, run.speed, seed=0)
    trainer = quiet_trainer(
        max_epochs=1,
        max_steps=3,  # thaws at steps 1 and 2: the last layer still trains before the end
        limit_val_batches=0,
        callbacks=[probe, first],
    )
    trainer.fit(module, datamodule=dm)
    step0 = probe.steps[0]
    # layer ids: 0 embeddings, 1..2 encoder layers, 3 head (pooler + classifier)
    assert step0[3] > 0 and step0[0] == step0[1] == step0[2] == 0.0
    for name, moved in first.moved.items():
        assert moved == name.startswith(("classifier.", "bert.pooler.")), name  # LR 0: not even weight decay


class _MovedAfterFirstStep(pl.Callback):
    """Which parameters the first optimizer step changed."""

    def __init__(self, before: dict[str, torch.Tensor]):
        self.before, self.moved = before, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            net = pl_module.network
            self.moved = {n: not torch.equal(self.before[n], p.detach()) for n, p in net.named_parameters()}


def test_gradual_unfreeze_thaws_one_layer_per_interval(prepared, tokenizer):
    run = make_run("gradual_unfreeze", unfreeze_interval=1 / 4)
    run.scheduler.name, run.scheduler.warmup_ratio = "constant", 0.0
    torch.manual_seed(0)
    module = kind.build(run, prepared, tokenizer)
    probe = _LrProbe()
    dm = EncoderDataModule(prepared.datasets, prepared.collator, 8, 16, run.speed, seed=0)
    quiet_trainer(
        max_epochs=1,
        max_steps=4,
        limit_val_batches=0,
        callbacks=[probe],
    ).fit(module, datamodule=dm)
    thawed = [sorted(lid for lid, lr in s.items() if lr > 0) for s in probe.steps]
    assert thawed == [[3], [2, 3], [1, 2, 3], [1, 2, 3]]  # embeddings stay frozen without train_embeddings


# ---- export ------------------------------------------------------------------------------------------------


def _train_a_little(module, batch, steps: int = 3) -> None:
    opt = torch.optim.SGD([p for p in module.network.parameters() if p.requires_grad], lr=0.5)
    module.train()
    for _ in range(steps):
        opt.zero_grad()
        module.step(batch)[0].backward()
        opt.step()
    module.eval()


def test_full_export_reloads_with_the_same_logits_and_label_names(prepared, tokenizer, batch, tmp_path):
    module = build(prepared, tokenizer, "full")
    _train_a_little(module, batch)
    out = tmp_path / "hf"
    kind.export(module, tokenizer, out, prepared)
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        expected = module.logits(batch)
        torch.testing.assert_close(reloaded(**inputs).logits, expected, atol=1e-5, rtol=1e-4)
    assert reloaded.config.id2label == {0: "neg", 1: "pos"}

    clf = pipeline("text-classification", model=str(out), device="cpu")
    texts = ["the best movie of the year", "painfully slow and boring"]
    got = clf(texts)
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = module.network(**enc).logits.argmax(-1).tolist()
    assert [r["label"] for r in got] == [["neg", "pos"][i] for i in want]


def test_frozen_pooler_probe_folds_into_a_sequence_classifier(prepared, tokenizer, batch, tmp_path):
    module = build(prepared, tokenizer, "frozen", pooling="pooler")
    assert module.network.pooling == "pooler"
    _train_a_little(module, batch)
    out = tmp_path / "hf"
    kind.export(module, tokenizer, out, prepared)
    assert not (out / "feature_head.pt").exists()  # a plain *ForSequenceClassification folder
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, module.logits(batch), atol=1e-5, rtol=1e-4)
    assert [r["label"] for r in pipeline("text-classification", model=str(out), device="cpu")(["a delight"])][0] in (
        "neg",
        "pos",
    )


def test_feature_based_export_holds_the_encoder_and_the_head(prepared, tokenizer, batch, tmp_path):
    module = build(prepared, tokenizer, "feature_based", layers="weighted_sum_all", head="mlp")
    _train_a_little(module, batch)
    out = tmp_path / "hf"
    kind.export(module, tokenizer, out, prepared)
    desc = json.loads((out / "feature_head.json").read_text())
    assert desc["layers"] == [1, 2] and desc["combine"] == "weighted" and desc["label_names"] == ["neg", "pos"]
    # no config.json at the top: a pipeline cannot silently pair the encoder with a random classifier
    assert not (out / "config.json").exists() and (out / "encoder" / "config.json").exists()
    reloaded, tok, _ = load_feature_model(out)
    assert tok("a delight")["input_ids"] == tokenizer("a delight")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(batch), module.logits(batch), atol=1e-5, rtol=1e-4)


# ---- feature caching ---------------------------------------------------------------------------------------


def _quick_run(tmp_path: Path, name: str, cache_features: bool) -> tuple[dict, Path]:
    from encoderlab.runner import execute

    run = make_run("frozen", cache_dir=tmp_path / "cache")
    run.speed = SpeedConfig(cache_features=cache_features)
    run.trainer = TrainerConfig(max_epochs=2, accelerator="cpu", devices=1, enable_progress_bar=False)
    run.callbacks = CallbacksConfig(early_stopping=False, rich_progress=False)
    run.optimizer = OptimizerConfig(lr=5e-2)
    run_dir = tmp_path / name
    run_dir.mkdir()
    return execute(run, run_dir, []), run_dir


def test_cached_features_give_the_same_model_as_encoding_every_step(tmp_path):
    cached, cached_dir = _quick_run(tmp_path, "cached", True)
    plain, plain_dir = _quick_run(tmp_path, "plain", False)
    assert cached["data"].get("cached_features") and not plain["data"].get("cached_features")
    assert list((tmp_path / "cache" / "features").glob("*/train.safetensors"))
    for key in ("loss", "accuracy"):
        assert cached["test"][key] == pytest.approx(plain["test"][key], abs=1e-4)
    a = torch.load(cached_dir / "hf" / "feature_head.pt")
    b = torch.load(plain_dir / "hf" / "feature_head.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-3)
    assert not torch.equal(a["classifier.weight"], torch.zeros_like(a["classifier.weight"]))


def test_regression_predicts_one_number_and_exports_a_regression_head(tokenizer, tmp_path):
    run = make_run()
    run.task = ratings_task(max_seq_length=32)
    run.check()
    prepared = kind.prepare(run, tokenizer, None)
    assert prepared.meta["label_names"] is None
    torch.manual_seed(0)
    module = kind.build(run, prepared, tokenizer)
    batch = prepared.collator(prepared.datasets["train"].to_list()[:8])
    assert batch["labels"].dtype == torch.float32
    loss, out = module.step(batch)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(out["preds"], batch["labels"]))
    assert out["preds"].shape == (8,)
    _train_a_little(module, batch)
    kind.export(module, tokenizer, tmp_path / "hf", prepared)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert reloaded.config.num_labels == 1 and reloaded.config.problem_type == "regression"
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, module.logits(batch), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_gradients_reach_the_fused_optimizer_clipped_in_every_precision(prepared, tokenizer, precision):
    """Lightning refuses to clip for a fused optimizer under mixed precision; bf16 has no loss scaler, so the module
    clips itself: the optimizer sees gradients whose total norm is the clip value."""
    run = make_run("full")
    torch.manual_seed(0)
    module = kind.build(run, prepared, tokenizer)
    norms: list[float] = []

    class Watch(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            opt = trainer.optimizers[0]
            assert opt.defaults.get("fused") is True
            params = [p for g in opt.param_groups for p in g["params"]]

            def seen(optimizer, args, kwargs):
                grads = [p.grad for p in params if p.grad is not None]
                norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

            opt.register_step_post_hook(seen)  # Lightning runs the backward inside step(closure)

    dm = EncoderDataModule(prepared.datasets, prepared.collator, 8, 16, run.speed, seed=0)
    quiet_trainer(
        max_steps=3,
        precision=precision,
        gradient_clip_val=1e-3,
        limit_val_batches=0,
        callbacks=[Watch()],
    ).fit(module, datamodule=dm)
    assert len(norms) == 3 and all(n == pytest.approx(1e-3, rel=1e-3) for n in norms)
