"""Multitask runs: each name in ``task.tasks`` becomes a whole :class:`TaskConfig`, read from ``conf/task/<name>.yaml``.

A sub-task is the very config a single-task run of that name uses (``task=<name>``), with three changes, applied in
this order: the keys under ``task.subtasks.<name>`` (``task.subtasks.wnut16.max_seq_length=64``), then the multitask
config's ``task.max_train_samples`` / ``task.max_eval_samples`` as a cap on every sub-task (the smaller value wins),
and its ``name`` is the key it is listed under. A name with no file may be defined whole under ``task.subtasks``
(it then needs a ``kind``). The files are looked up in the config dirs of the running Hydra app (``--config-dir``
included), then in encoderlab's own ``conf/``. The resolved configs are part of the run's config (and its hash), so a
later change to a task file is a new config, not a silent change of an old run.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from encoderlab.config.schema import TaskConfig
from encoderlab.errors import ConfigError, EncoderlabError

_CAPS = ("max_train_samples", "max_eval_samples")


def task_dirs() -> list[Path]:
    """Folders holding task configs: those of the running Hydra app first, then encoderlab's own."""
    dirs: list[Path] = []
    try:
        from hydra.core.hydra_config import HydraConfig

        for source in HydraConfig.get().runtime.config_sources:
            if source.schema == "file":
                dirs.append(Path(source.path) / "task")
    except (ImportError, ValueError):  # not inside a Hydra job (tests, the compose API)
        pass
    from encoderlab.config.search_path import packaged_conf_dir, user_config_dirs

    try:
        users = [d / "task" for d in user_config_dirs()]
    except EncoderlabError:  # a bad ENCODERLAB_CONFIG_PATH is reported where the app starts
        users = []
    own = packaged_conf_dir() / "task"
    return [d for d in dict.fromkeys(dirs + users + [own]) if d.is_dir()]


def _task_file(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        f = d / f"{name}.yaml"
        if f.is_file():
            return f
    return None


def _options(dirs: list[Path]) -> str:
    names = sorted({f.stem for d in dirs for f in d.glob("*.yaml")} - {"multitask"})
    return ", ".join(names)


def resolve_subtasks(plain: dict) -> dict[str, TaskConfig]:
    """Each sub-task of the composed config ``plain`` (a resolved container) as a checked-type TaskConfig."""
    task = plain.get("task") or {}
    names = list(task.get("tasks") or [])
    overrides = dict(task.get("subtasks") or {})
    dirs = task_dirs()
    # the sub-task files may interpolate the rest of the config (${paths.root_dir}, ${seed})
    root = OmegaConf.create({k: v for k, v in plain.items() if k != "task"})
    out: dict[str, TaskConfig] = {}
    for name in names:
        if not isinstance(name, str) or not name or "." in name or "/" in name:
            raise ConfigError("task.tasks", f"'{name}' is not a task config name (conf/task/<name>.yaml)")
        if name == "multitask":
            raise ConfigError("task.tasks", "a multitask run cannot contain another one; list single tasks")
        own = overrides.get(name) or {}
        if not isinstance(own, dict):
            raise ConfigError(f"task.subtasks.{name}", "give the keys to change, e.g. {max_seq_length: 64}")
        path = _task_file(name, dirs)
        if path is None and "kind" not in own:
            raise ConfigError(
                "task.tasks", f"unknown task '{name}' (no conf/task/{name}.yaml); options: {_options(dirs)}"
            )
        base = OmegaConf.load(path) if path is not None else OmegaConf.create({})
        try:
            with_root = OmegaConf.merge(root, {"task": OmegaConf.merge(base, own)})
            values = OmegaConf.to_container(with_root.task, resolve=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"task.subtasks.{name}", str(e).splitlines()[0]) from None
        values.pop("defaults", None)
        values["name"] = name
        for cap in _CAPS:
            limit = task.get(cap)
            if limit is not None:
                values[cap] = limit if values.get(cap) is None else min(limit, values[cap])
        out[name] = _typed(name, values)
    stray = sorted(set(overrides) - set(names))
    if stray:
        raise ConfigError(f"task.subtasks.{stray[0]}", f"'{stray[0]}' is not in task.tasks ({', '.join(names)})")
    return out


def _typed(name: str, values: dict) -> TaskConfig:
    try:
        sub = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TaskConfig), values))
    except ConfigKeyError as e:
        raise ConfigError(f"task.subtasks.{name}.{e.full_key or '?'}", "unknown key") from None
    except ValidationError as e:
        raise ConfigError(f"task.subtasks.{name}.{e.full_key or '?'}", f"wrong type: {e.msg.splitlines()[0]}") from None
    assert isinstance(sub, TaskConfig)
    return sub
