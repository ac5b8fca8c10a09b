"""Uninterrupted runs that several resume tests compare with, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """``reference(args)``: the run dir of ``encoderlab-train ARGS`` run to its end, made when first asked for (the
    resume tests of both modules compare with the same few references; each is a few seconds of training and
    start-up)."""
    from training.test_resume import cli, ok

    root = tmp_path_factory.mktemp("references")
    env = {"ENCODERLAB_CACHE": str(root / "cache")}
    made: dict[tuple[str, ...], Path] = {}

    def reference(args: list[str]) -> Path:
        key = tuple(args)
        if key not in made:
            run = root / f"run{len(made)}"
            ok(cli([*args, f"hydra.run.dir={run}"], env))
            made[key] = run
        return made[key]

    return reference
