"""Turn a composed Hydra config into a typed :class:`RunConfig`, with errors that name the key."""

from __future__ import annotations

import dataclasses
import typing

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from encoderlab.config.schema import RunConfig
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


def validate(cfg: DictConfig | dict) -> RunConfig:
    """Merge ``cfg`` (without its ``hydra`` node) into the schema and build the dataclasses."""
    if isinstance(cfg, DictConfig):
        plain = OmegaConf.to_container(cfg, resolve=True)
    else:
        plain = dict(cfg)
    plain.pop("hydra", None)
    plain.pop("experiment", None)  # an experiment is a diff already merged into the rest
    schema = OmegaConf.structured(RunConfig)
    try:
        merged = OmegaConf.merge(schema, plain)
        run = OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        key = e.full_key or "?"
        parent, _, leaf = key.rpartition(".")
        allowed = _fields_at(parent)
        hint = f"; keys allowed under '{parent or 'the top level'}': {choices(allowed)}" if allowed else ""
        raise ConfigError(key, f"unknown key '{leaf}'{hint}") from None
    except ValidationError as e:
        raise ConfigError(e.full_key or "?", f"wrong type: {e.msg.splitlines()[0]}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(getattr(e, "full_key", None) or "?", str(e).splitlines()[0]) from None
    assert isinstance(run, RunConfig)
    run.check()
    return run
