"""User-facing errors.

Anything the user can fix (a config value, a missing or corrupt file) raises one of these.
The CLI prints ``error: <message>`` on one line and exits non-zero without a traceback;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ClusterbenchError(Exception):
    """An error the user can fix; its message is one line that says how."""


class ConfigError(ClusterbenchError):
    """An impossible or inconsistent config value. The message names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class DatasetError(ClusterbenchError):
    """Dataset files missing, unreadable or corrupt. The message names the path."""
