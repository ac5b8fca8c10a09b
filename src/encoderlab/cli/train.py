"""``encoderlab-train``: compose a run from conf/ + experiments/ + overrides, validate it, run it.

Thin on purpose: all work happens in :mod:`encoderlab.runner`. Bad input ends in one line naming what to
change (exit code 2), never a traceback. In a multirun a failed job is recorded in its summary.json and
the sweep goes on; a job that already finished with the same config is skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from encoderlab.config.schema import LOWER_IS_BETTER, RunConfig  # noqa: E402
from encoderlab.errors import EncoderlabError  # noqa: E402

# The typed schema is the first entry of conf/config.yaml's defaults: every key exists (so any key can be
# overridden without '+') and a wrong key or type in a YAML file fails while composing.
ConfigStore.instance().store(name="encoderlab_schema", node=RunConfig)

CONF_DIR = os.environ.get("ENCODERLAB_CONF", str(Path(__file__).resolve().parents[3] / "conf"))
log = logging.getLogger("encoderlab")


def _sqlite_url(path: str) -> str:
    """An absolute SQLite URL; creates the folder, since Optuna opens the file before any job has made it."""
    db = Path(path).expanduser().resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def _job_dir(overrides: str, limit: int = 200) -> str:
    """A sweep job's folder: its overrides (``k=v,...``), cut with a stable hash past ``limit`` characters.

    File names stop at 255 bytes; an Optuna trial's full-precision floats plus a few overrides pass that, and
    Hydra would then fail the whole sweep. The same overrides always give the same folder, so resuming works.
    """
    if len(overrides) <= limit:
        return overrides
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:10]
    kept = ""
    for item in overrides.split(","):
        if len(kept) + len(item) + 1 > limit - len(digest) - 2:
            break
        kept += item + ","
    return f"{kept}~{digest}"


# conf/hydra/sweeper/optuna_search.yaml: the study optimises the task's primary metric in its own direction and
# keeps its trials in the sweep dir, so rerunning the command continues the study
OmegaConf.register_new_resolver(
    "encoderlab.direction", lambda metric: "minimize" if metric in LOWER_IS_BETTER else "maximize", replace=True
)
OmegaConf.register_new_resolver("encoderlab.sqlite", _sqlite_url, replace=True)
# conf/hydra/default.yaml: the folder of each job of a sweep
OmegaConf.register_new_resolver("encoderlab.job_dir", _job_dir, replace=True)


def _optuna_is_ours() -> None:
    """``hydra/sweeper=optuna`` runs encoderlab's search (conf/hydra/sweeper/optuna_search.yaml), not the plugin's
    bare defaults (minimize, no storage, nothing to search). A file named optuna.yaml cannot do that: Hydra 1.3
    refuses a config file that shadows a plugin config which has a defaults list. So the plugin's config is kept
    as ``optuna_plugin`` (optuna_search.yaml extends it) and ``optuna`` becomes an alias of optuna_search."""
    from hydra.core.plugins import Plugins

    Plugins.instance()  # Hydra's one scan of the plugins (re)registers their configs: alias after it, not before
    try:
        from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
    except ImportError:  # the `sweeps` extra is not installed
        return
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="optuna_plugin", node=OptunaSweeperConf, provider="optuna_sweeper")
    store.store(
        group="hydra/sweeper", name="optuna", node={"defaults": ["optuna_search", "_self_"]}, provider="encoderlab"
    )


_optuna_is_ours()
# conf/hydra/launcher/joblib.yaml sets n_jobs on top of the plugin's config of the same name, which Hydra 1.3 merges
# with a deprecation warning; at import time, so that joblib's worker processes (which compose again) stay quiet too
warnings.filterwarnings("ignore", message="\\s*'hydra/launcher/joblib' is validated against ConfigStore schema")


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


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig):
    from encoderlab.config.validate import validate

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    try:
        run = validate(cfg)
    except EncoderlabError as e:
        return _fail(str(e), multirun)
    # imported after validation: a config error is reported in a second, not after torch and Lightning load
    from encoderlab.runner import execute, finished_before, is_rank_zero

    if multirun and run.skip_finished and finished_before(run_dir, run):
        log.info("skipping %s: finished before with the same config (skip_finished=false reruns it)", run_dir)
        return _stored_value(run_dir, run)  # a sweeper (Optuna) still gets the job's value
    try:
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
    if is_rank_zero():
        print(
            f"encoderlab: {run.task.name} / {run.model.name} / {run.finetune.strategy}: {shown}  ({run_dir})",
            flush=True,
        )
    return val.get(metric)


def _quiet() -> None:
    """Keep the console for what the user acts on; details still go to the run's log file."""
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    for pattern in (".*Experiment logs directory.*", ".*LeafSpec.*", ".*module\\(s\\) in eval mode.*", ".*litlogger.*"):
        warnings.filterwarnings("ignore", message=pattern)


def compose_error_message(e: Exception) -> str:
    """One line for a Hydra compose error: the group and its options, or the key and what is allowed."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    from encoderlab.config.validate import unknown_key_error, wrong_type_error

    if isinstance(e, MissingConfigException) and e.missing_cfg_file and e.options:
        group, _, name = e.missing_cfg_file.rpartition("/")
        where = "experiments/" if group == "experiment" else f"conf/{group}/"
        return (
            f"unknown {group} '{name}' ({group}={name}); options ({where}): {', '.join(sorted(e.options))}"
            if group
            else str(e).splitlines()[0]
        )
    cause = e.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.full_key:
        return str(unknown_key_error(cause.full_key))
    if isinstance(cause, ValidationError):
        return str(wrong_type_error(cause.full_key, cause.msg))
    first = " ".join(str(e).split("\nConfig search path:")[0].split())
    return first + (f" ({str(cause).splitlines()[0]})" if cause is not None else "")


def main() -> None:
    """Compose errors (unknown option or key, bad override) end in one line and exit code 2, like any bad input.

    Hydra would print them with a hint about HYDRA_FULL_ERROR and exit 1; asking it to raise lets us word
    them. A user who sets HYDRA_FULL_ERROR=1 still gets Hydra's full trace.
    """
    from hydra.errors import CompactHydraException

    _quiet()
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except CompactHydraException as e:
        if full_error:
            raise
        _fail(compose_error_message(e), multirun=False)


if __name__ == "__main__":
    main()
