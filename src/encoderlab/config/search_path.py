"""Where configs come from: encoderlab's own conf/ (inside the package once installed) and a user's config dirs.

A user's dirs come first on Hydra's search path, so their files add options to the groups (task, model,
experiment, ...) and a file with a packaged option's name replaces it. They are, in this order:

- ``encoderlab-train --config-dir DIR`` (given to :func:`user_config_dirs` through ``ENCODERLAB_CONFIG_PATH``),
- ``ENCODERLAB_CONFIG_PATH`` (folders separated by ``os.pathsep``, like ``PATH``; sweep jobs inherit it),
- ``./conf`` when it holds one of encoderlab's group folders (``conf/task/``, ``conf/experiment/``, ...).

encoderlab.cli.hydra_setup.UserConfigDirs (a Hydra search-path plugin) puts them on the search path.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from encoderlab.errors import EncoderlabError

ENV = "ENCODERLAB_CONFIG_PATH"
# the groups of conf/ a user's dir may extend; ./conf counts as a user's dir when it holds one of them
GROUPS = ("task", "model", "experiment", "finetune", "optimizer", "scheduler", "trainer", "logger", "arm")


def packaged_conf_dir() -> Path:
    """encoderlab's conf/: ``ENCODERLAB_CONF`` if set, else the copy inside the installed package (a wheel ships
    the repo's conf/ and experiments/ as ``encoderlab/conf``), else the source checkout's conf/ (editable)."""
    if os.environ.get("ENCODERLAB_CONF"):
        return Path(os.environ["ENCODERLAB_CONF"]).resolve()
    packaged = files("encoderlab").joinpath("conf")
    if packaged.is_dir():
        return Path(str(packaged)).resolve()
    return Path(__file__).resolve().parents[3] / "conf"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def user_config_dirs() -> list[Path]:
    """The user's config dirs, first wins. A folder in ENCODERLAB_CONFIG_PATH that is not there is an error: a typo
    would otherwise only show later, as an unknown option."""
    dirs = []
    for entry in os.environ.get(ENV, "").split(os.pathsep):
        if not entry:
            continue
        d = Path(entry).expanduser().resolve()
        if not d.is_dir():
            raise EncoderlabError(f"{ENV}: no folder {d} (give existing config dirs, separated by '{os.pathsep}')")
        dirs.append(d)
    local = Path("conf").resolve()
    if any((local / g).is_dir() for g in GROUPS):
        dirs.append(local)
    own = packaged_conf_dir()
    kept: list[Path] = []
    for d in dirs:
        if not _same(d, own) and not any(_same(d, k) for k in kept):
            kept.append(d)
    return kept
