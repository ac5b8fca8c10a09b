"""Turn a composed Hydra config into a typed :class:`RunConfig`, with errors that name the key."""

from __future__ import annotations

import dataclasses
import typing

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from encoderlab.config.schema import TASK_SECTIONS, RunConfig
from encoderlab.errors import ConfigError, choices


def _fields_at(path: str) -> list[str]:
    """Names allowed at a dotted path of the schema ('' is the top level)."""
    cls: type = RunConfig
    for part in [p for p in path.split(".") if p]:
        sub = typing.get_type_hints(cls).get(part)
        if not (isinstance(sub, type) and dataclasses.is_dataclass(sub)):
            return []
        cls = sub
    return [f.name for f in dataclasses.fields(cls)]


def _section_of(leaf: str) -> str | None:
    """The per-kind section (``ner``, ``qa``, ``mlm``) that holds ``leaf``, if any."""
    return next((name for name, cls in TASK_SECTIONS.items() if leaf in cls.__dataclass_fields__), None)


def migrate_task(task: dict) -> dict:
    """A saved run's ``task`` from before the per-kind sections (``task.mlm_probability``) in today's layout
    (``task.mlm.mlm_probability``), so older run dirs still load as teachers, stages and predict sources."""
    out = dict(task)
    for leaf in list(out):
        section = _section_of(leaf)
        if section is not None and leaf not in _fields_at("task"):
            out[section] = {**(out.get(section) or {}), leaf: out.pop(leaf)}
    subtasks = out.get("subtasks")
    if isinstance(subtasks, dict):
        out["subtasks"] = {k: migrate_task(v) if isinstance(v, dict) else v for k, v in subtasks.items()}
    return out


def unknown_key_error(key: str) -> ConfigError:
    """A key the schema does not have, with the keys allowed next to it (or where it moved)."""
    parent, _, leaf = key.rpartition(".")
    section = (
        _section_of(leaf) if parent.split(".")[0] == "task" and parent.split(".")[-1] not in TASK_SECTIONS else None
    )
    if section is not None:
        return ConfigError(key, f"this setting lives in the task's '{section}' section: use {parent}.{section}.{leaf}")
    allowed = _fields_at(parent)
    hint = f"; keys allowed under '{parent or 'the top level'}': {choices(allowed)}" if allowed else ""
    return ConfigError(key, f"unknown key '{leaf}'{hint}")


def wrong_type_error(key: str, msg: str) -> ConfigError:
    return ConfigError(key or "?", f"wrong type: {msg.splitlines()[0]}")


def validate(cfg: DictConfig | dict) -> RunConfig:
    """Merge ``cfg`` (without its ``hydra`` node) into the schema and build the dataclasses."""
    if isinstance(cfg, DictConfig):
        cfg = cfg.copy()
        with open_dict(cfg):
            # the hydra node interpolates runtime values that only exist inside a launched job
            cfg.pop("hydra", None)
        try:
            plain = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as e:  # e.g. ${oc.env:VAR} with VAR unset
            raise ConfigError(getattr(e, "full_key", None) or "?", str(e).splitlines()[0]) from None
    else:
        plain = dict(cfg)
    plain.pop("hydra", None)
    plain.pop("experiment", None)  # an experiment is a diff already merged into the rest
    if isinstance(plain.get("task"), dict):
        plain["task"] = migrate_task(plain["task"])
    schema = OmegaConf.structured(RunConfig)
    try:
        merged = OmegaConf.merge(schema, plain)
        run = OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        raise unknown_key_error(e.full_key or "?") from None
    except ValidationError as e:
        raise wrong_type_error(e.full_key, e.msg) from None
    except OmegaConfBaseException as e:
        raise ConfigError(getattr(e, "full_key", None) or "?", str(e).splitlines()[0]) from None
    assert isinstance(run, RunConfig)
    if run.task.kind == "multitask":
        from encoderlab.config.subtasks import resolve_subtasks

        run.task.subtasks = resolve_subtasks(plain)
    if run.task.shots_per_class is not None and run.task.train_sample_seed is None:
        run.task.train_sample_seed = run.seed  # the K-shot draw follows the run's seed (schema: task.shots_per_class)
    run.check()
    if run.precision == "auto":  # what this machine runs fast (torch is imported only here, for a valid config)
        from encoderlab.training.precision import resolve_run

        resolve_run(run)
    return run
