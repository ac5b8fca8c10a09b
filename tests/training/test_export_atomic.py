"""The run's hf/ export appears whole or not at all: a failure while exporting keeps the previous hf/ untouched."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from encoderlab import runner


def _built(export):
    run = SimpleNamespace(save_model=True, task=SimpleNamespace(kind="sequence_classification"))
    return SimpleNamespace(
        run=run, kind=SimpleNamespace(export=export), module=None, tokenizer=None, prepared=SimpleNamespace(meta={})
    )


FITTED = SimpleNamespace(trainer=SimpleNamespace(is_global_zero=True), test={}, val={})


def test_an_export_that_fails_midway_leaves_the_previous_hf_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_model_card", lambda *a, **k: None)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("old")

    def broken(module, tokenizer, out, prepared):
        out.mkdir(parents=True)
        (out / "config.json").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        runner.export(_built(broken), FITTED, tmp_path, [])
    assert (tmp_path / "hf" / "config.json").read_text() == "old"

    def good(module, tokenizer, out, prepared):
        out.mkdir(parents=True)
        (out / "config.json").write_text("new")

    runner.export(_built(good), FITTED, tmp_path, [])
    assert (tmp_path / "hf" / "config.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
