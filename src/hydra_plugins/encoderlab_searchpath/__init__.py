"""Hydra discovers search-path plugins in the ``hydra_plugins`` namespace: this one puts a user's config dirs
(:mod:`encoderlab.config.search_path`) ahead of encoderlab's conf/, for encoderlab's app only."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin


class EncoderlabSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from encoderlab.config.search_path import packaged_conf_dir, user_config_dirs
        from encoderlab.errors import EncoderlabError

        main = [e for e in search_path.get_path() if e.provider == "main"]
        if not main or main[0].path is None or main[0].path.startswith("pkg://"):
            return
        if Path(main[0].path.removeprefix("file://")).resolve() != packaged_conf_dir():
            return  # another Hydra app in the same environment
        try:
            dirs = user_config_dirs()
        except EncoderlabError:
            return  # encoderlab-train reports it in one line before composing
        for d in dirs:
            search_path.prepend(provider="encoderlab-user", path=f"file://{d}", anchor=SearchPathQuery(provider="main"))
