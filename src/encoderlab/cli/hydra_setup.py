"""Hydra plumbing for ``encoderlab-train``: the typed schema, resolvers used by conf/, the Optuna alias, one-line
compose errors, and a summary of failed jobs at the end of a sweep."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.experimental.callback import Callback
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf

from encoderlab.config.schema import LOWER_IS_BETTER, RunConfig
from encoderlab.config.search_path import packaged_conf_dir, user_config_dirs
from encoderlab.errors import EncoderlabError

# Keep the console for what the user acts on (details still go to each run's log file). At import, so that
# joblib's worker processes, which import this module again, stay quiet too.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
for _pattern in (".*Experiment logs directory.*", ".*LeafSpec.*", ".*module\\(s\\) in eval mode.*", ".*litlogger.*"):
    warnings.filterwarnings("ignore", message=_pattern)

# encoderlab's conf/ (inside the installed package, or the source checkout's); a user's config dirs go ahead of it
# on the search path (UserConfigDirs below)
CONF_DIR = str(packaged_conf_dir())
log = logging.getLogger("encoderlab")

# The typed schema is the first entry of conf/config.yaml's defaults: every key exists (so any key can be
# overridden without '+') and a wrong key or type in a YAML file fails while composing.
ConfigStore.instance().store(name="encoderlab_schema", node=RunConfig)


class UserConfigDirs(SearchPathPlugin):
    """Puts the user's config dirs (encoderlab.config.search_path.user_config_dirs) ahead of encoderlab's conf/, so
    their files add options to its groups and replace packaged options of the same name; for encoderlab's conf/
    only. Registered at import rather than found in the ``hydra_plugins`` namespace, which an editable install
    (setuptools' import-hook finder) hides from Hydra's scan."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        main = [e for e in search_path.get_path() if e.provider == "main"]
        if not main or not main[0].path or Path(main[0].path.removeprefix("file://")).resolve() != Path(CONF_DIR):
            return  # another Hydra app, or a compose without encoderlab's conf/
        try:
            dirs = user_config_dirs()
        except EncoderlabError:
            return  # encoderlab-train reports it in one line before composing
        for d in dirs:
            search_path.prepend(provider="encoderlab-user", path=f"file://{d}", anchor=SearchPathQuery(provider="main"))


Plugins.instance().register(UserConfigDirs)


def _sqlite_url(path: str) -> str:
    """An absolute SQLite URL; creates the folder, since Optuna opens the file before any job has made it."""
    db = Path(path).expanduser().resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def _job_dir(overrides: str, limit: int = 200) -> str:
    """A sweep job's folder: its overrides (``k=v,...``), cut with a stable hash past ``limit`` characters.

    File names stop at 255 bytes; an Optuna trial's full-precision floats plus a few overrides pass that, and
    Hydra would then fail the whole sweep. The same overrides always give the same folder, so resuming works.
    A path in a value (a data file, a stage's dir) would nest folders: its ``/`` becomes ``|``.
    """
    overrides = overrides.replace("/", "|")
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
# an experiment's sweeper params: a list of the config as a sweep, e.g. the stage seeds
# (stages.pretrain.seed: ${encoderlab.sweep:${stages.pretrain.seeds}}), so stages.pretrain.seeds=[1] sweeps one
OmegaConf.register_new_resolver("encoderlab.sweep", lambda values: ",".join(str(v) for v in values), replace=True)
# a product of numbers in a config, as a whole number, e.g. a stage's planned steps from its swept minutes
# (trainer.max_steps=${encoderlab.mul:${stages.pretrain.params.minutes},250})
OmegaConf.register_new_resolver("encoderlab.mul", lambda *xs: int(math.prod(float(x) for x in xs)), replace=True)


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


class SweepSummary(Callback):
    """At the end of a multirun, list the jobs of *this* invocation that failed or stopped, and exit non-zero.

    Failed jobs do not stop a sweep (the others go on), so without this a sweep with failures would end
    like a clean one. A job that stopped before training (a config error, a stage that ended undertrained) has a
    job dir from this invocation and no summary.json. Jobs skipped because they finished before count as finished.
    """

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        failed = []
        for f in sorted(sweep.glob("*/summary.json")):
            try:
                s = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if s.get("status") == "failed" and f.stat().st_mtime >= self.started:
                failed.append((f.parent.name, (s.get("error") or "").splitlines()[0][:200]))
        for f in sorted(sweep.glob("*/.hydra/overrides.yaml")):
            job = f.parent.parent
            if not (job / "summary.json").exists() and f.stat().st_mtime >= self.started:
                failed.append((job.name, "stopped before training (its error is above)"))
        if failed:
            print(
                f"encoderlab: {len(failed)} job(s) of this sweep failed or stopped "
                "(rerun the same command to retry them):",
                file=sys.stderr,
            )
            for name, err in failed:
                print(f"  {sweep / name}: {err}", file=sys.stderr)
            sys.stderr.flush()
            sys.exit(1)
