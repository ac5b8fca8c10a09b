"""``encoderlab-train``: compose a run from conf/ + experiments/ + the user's config dirs + overrides, validate it,
run it. ``--config-dir DIR``, ENCODERLAB_CONFIG_PATH and ./conf add a user's options (encoderlab.config.search_path).

Thin on purpose: all work happens in :mod:`encoderlab.runner`. Bad input ends in one line naming what to
change (exit code 2), never a traceback. In a multirun a failed job is recorded in its summary.json and
the sweep goes on; a job that already finished with the same config is skipped, and one that was killed or
failed continues from its last checkpoint (``resume=auto``, in :func:`encoderlab.runner.execute`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import encoderlab.cli.hydra_setup as hydra_setup  # noqa: E402  (registers the schema, resolvers, sweeper alias)
from encoderlab.config.schema import RunConfig  # noqa: E402
from encoderlab.errors import EncoderlabError  # noqa: E402

CONF_DIR = hydra_setup.CONF_DIR
log = logging.getLogger("encoderlab")


def _fail(msg: str, multirun: bool):
    print(f"encoderlab: error: {msg}", file=sys.stderr, flush=True)
    if not multirun:
        sys.exit(2)


def _hydra_meta(hc) -> dict:
    multirun = hc.mode == RunMode.MULTIRUN
    swept = [o for o in hc.overrides.task if not o.startswith(("hydra", "experiment="))]
    return {
        "sweep_id": Path(hc.sweep.dir).name if multirun else None,
        "swept": swept if multirun else [],
        "job_name": hc.job.override_dirname or None,
    }


def _stored_value(run_dir: Path, run: RunConfig) -> float | None:
    import json

    val = json.loads((run_dir / "summary.json").read_text()).get("val") or {}
    return val.get(run.task.primary_metric)


def _redact_saved_configs(hc, run_dir: Path, multirun: bool) -> None:
    """Hydra saved the config and overrides before the job started: mask any credential typed into them."""
    from encoderlab.redact import redact_files

    if hc.output_subdir:
        redact_files(run_dir / hc.output_subdir)
    if multirun:
        redact_files(Path(hc.sweep.dir), "multirun.yaml")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig):
    from encoderlab.config.validate import validate

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    _redact_saved_configs(hc, run_dir, multirun)
    try:
        run = validate(cfg)
    except EncoderlabError as e:
        return _fail(str(e), multirun)
    # imported after validation: a config error is reported in a second, not after torch and Lightning load
    from encoderlab.runner import execute, finished_before, is_rank_zero
    from encoderlab.stages import ensure_stages

    if multirun and run.skip_finished and finished_before(run_dir, run):
        log.info("skipping %s: finished before with the same config (skip_finished=false reruns it)", run_dir)
        return _stored_value(run_dir, run)  # a sweeper (Optuna) still gets the job's value
    try:
        ensure_stages(run)
        summary = execute(run, run_dir, list(hc.overrides.task), _hydra_meta(hc))
    except EncoderlabError as e:
        return _fail(f"{e}\n(run dir: {run_dir})", multirun)
    except Exception:
        if not multirun:
            raise
        log.exception("job failed; recorded in %s/summary.json, the sweep goes on", run_dir)
        return None
    metric = run.task.primary_metric
    test, val = summary.get("test", {}), summary.get("val", {})
    shown = (
        f"test {metric} = {test[metric]:.4f}"
        if metric in test
        else f"val {metric} = {val.get(metric, float('nan')):.4f}"
    )
    model = summary.get("model", run.model.name)  # a distilled student's own name (distill.student_layers)
    if is_rank_zero():
        print(
            f"encoderlab: {run.task.name} / {model} / {run.finetune.strategy}: {shown}  ({run_dir})",
            flush=True,
        )
    return val.get(metric)


def _user_config_dirs_first(argv: list[str]) -> list[str]:
    """Hydra's ``--config-dir DIR`` (``-cd DIR``) would put DIR after encoderlab's conf/, where a file named like a
    packaged option is never read. Taken out of argv and put first in ENCODERLAB_CONFIG_PATH, DIR's files come
    first, like those of any user config dir (and sweep jobs, which inherit the environment, see them too)."""
    from encoderlab.config.search_path import ENV

    rest, dirs, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
            i += 2
            continue
        if a.startswith("--config-dir="):
            dirs.append(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    if dirs:
        for d in dirs:
            if not Path(d).expanduser().is_dir():
                _fail(f"--config-dir: no folder {Path(d).expanduser().resolve()}", multirun=False)
        given = [str(Path(d).expanduser().resolve()) for d in dirs]
        os.environ[ENV] = os.pathsep.join(given + [p for p in os.environ.get(ENV, "").split(os.pathsep) if p])
    return rest


def main() -> None:
    """Compose errors (unknown option or key, bad override) end in one line and exit code 2, like any bad input.

    Hydra would print them with a hint about HYDRA_FULL_ERROR and exit 1; asking it to raise lets us word
    them. A user who sets HYDRA_FULL_ERROR=1 still gets Hydra's full trace.
    """
    from hydra.errors import CompactHydraException

    from encoderlab.config.search_path import user_config_dirs

    sys.argv[1:] = _user_config_dirs_first(sys.argv[1:])
    try:
        user_config_dirs()
    except EncoderlabError as e:
        _fail(str(e), multirun=False)
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except CompactHydraException as e:
        if full_error:
            raise
        _fail(hydra_setup.compose_error_message(e), multirun=False)


if __name__ == "__main__":
    main()
