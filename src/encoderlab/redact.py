"""Keep credentials out of what a run writes: saved configs, summary.json, the W&B run's config and tags.

A value reaches a config through an override such as ``task.description=${oc.env:HF_TOKEN}`` (resolved before the
run), or is typed on the command line; either way it is the *value* of a secret environment variable, so that is
what is masked. Secret variables are WANDB_API_KEY, HF_TOKEN and any whose name ends in _TOKEN, _KEY, _SECRET or
PASSWORD. Values shorter than 8 characters are left alone: masking "1" would mask every 1 in a summary.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

MASK = "***"
MIN_LENGTH = 8
_NAMES = re.compile(r"(_TOKEN|_KEY|_SECRET|PASSWORD)$", re.IGNORECASE)  # WANDB_API_KEY and HF_TOKEN too


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The values of the secret variables, longest first (so a value that contains another is masked whole)."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if _NAMES.search(k) and len(v) >= MIN_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(obj: Any, values: list[str] | None = None) -> Any:
    """``obj`` (str, dict, list, tuple, nested) with every secret value replaced by ``***``."""
    values = secret_values() if values is None else values
    if not values:
        return obj
    if isinstance(obj, str):
        for v in values:
            obj = obj.replace(v, MASK)
        return obj
    if isinstance(obj, dict):
        return {redact(k, values): redact(v, values) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, values) for v in obj)
    return obj


def redact_files(folder: Path, pattern: str = "*.yaml") -> None:
    """Mask secret values in text files written before the run started (Hydra's ``.hydra/*.yaml``), atomically."""
    values = secret_values()
    if not values or not folder.is_dir():
        return
    for path in folder.glob(pattern):
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        masked = redact(text, values)
        if masked != text:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(masked, encoding="utf-8", errors="surrogateescape")
            os.replace(tmp, path)
