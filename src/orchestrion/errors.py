"""The one error tree of orchestrion.

Three families, so callers know what to do:

* :class:`UsageError` — the caller asked for something wrong; fix the input and call again.
* :class:`RetryableError` — a passing condition (a busy resource, a timeout); try again later.
* :class:`TerminalError` — the operation cannot succeed as configured; a person must act.

Every message names the bad value and says how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatabaseLockedError",
    "DatasetNotFoundError",
    "IngestError",
    "NotFoundError",
    "OrchestrionError",
    "RetryableError",
    "TerminalError",
    "UsageError",
]


class OrchestrionError(Exception):
    """Base of every error orchestrion raises on purpose."""


class UsageError(OrchestrionError):
    """Raised when the caller passed a bad argument, file or request; fix the input and retry."""


class RetryableError(OrchestrionError):
    """Raised for passing conditions (busy, timed out); the same call may succeed later."""


class TerminalError(OrchestrionError):
    """Raised when the operation cannot succeed as configured; a person must change something."""


class ConfigError(UsageError):
    """Raised when settings (environment or ``orchestrion.toml``) hold an invalid value."""


class NotFoundError(UsageError):
    """Raised when a named user, item, model, run or file does not exist."""


class IngestError(UsageError):
    """Raised when a whole input (file, body) cannot be read; single bad events never raise."""


class DatasetNotFoundError(NotFoundError):
    """Raised when a dataset folder is missing; the message names the official download page."""


class DatabaseLockedError(TerminalError):
    """Raised when another process (usually ``orchestrion serve``) holds the database for writing.

    The message names the holder (pid and URL) and says to go through its API or stop it.
    """
