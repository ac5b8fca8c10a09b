"""Errors a user can act on.

Every error raised for bad input is an :class:`EncoderlabError`: the CLI prints its message alone
(no traceback), so the message must name what to change: the config key, the file and line, the
allowed values.
"""

from __future__ import annotations

from collections.abc import Iterable


class EncoderlabError(Exception):
    """A problem with the user's input: config, files, data or environment."""


class ConfigError(EncoderlabError):
    """A config key has a wrong value, type or combination."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}")


class DataError(EncoderlabError):
    """A data file, column, label or row is not what the task config declares."""


class OfflineError(EncoderlabError):
    """A hub model or dataset is needed but cannot be fetched."""


def choices(allowed: Iterable[str]) -> str:
    return ", ".join(repr(a) for a in allowed)


def check_choice(key: str, value: object, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(key, f"unknown value {value!r}; allowed: {choices(allowed)}")
