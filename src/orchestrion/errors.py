"""The one error tree of orchestrion.

Three families, so callers know what to do:

* :class:`UsageError` — the caller asked for something wrong; fix the input and call again.
* :class:`RetryableError` — a passing condition (a busy resource, a timeout); try again later.
* :class:`TerminalError` — the operation cannot succeed as configured; a person must act.

Every message names the bad value and says how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDecidedError",
    "ConfigError",
    "DatabaseLockedError",
    "DatasetNotFoundError",
    "IngestError",
    "LLMBudgetError",
    "LLMRequestError",
    "LLMUnavailableError",
    "NotEnoughDataError",
    "NotFoundError",
    "OrchestrionError",
    "PermissionDeniedError",
    "PolicyViolation",
    "RetryableError",
    "RunInProgressError",
    "StorageError",
    "TerminalError",
    "ToolError",
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


class AlreadyDecidedError(UsageError):
    """Raised when a decision (approve, reject, cancel) comes for actions another decision already
    took, or that an approval is still carrying out; ``current`` is the deliverable as it now stands
    (the HTTP API answers 409 with it). Read it, and decide again only if something still waits.
    """

    def __init__(self, message: str, current: dict[str, object]) -> None:
        super().__init__(message)
        self.current = current


class ConfigError(UsageError):
    """Raised when settings (environment or ``orchestrion.toml``) hold an invalid value."""


class NotEnoughDataError(UsageError):
    """Raised when the data cannot train a model yet (too few examples, one class only): a retrain
    keeps the model in use and says so; it is not a failure of the retrain."""


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


class StorageError(TerminalError):
    """Raised when the database's folder cannot be written: a read-only filesystem, no permission,
    or a full disk. The message names the folder and what to change (see ``store.storage_error``).
    """


class PermissionDeniedError(UsageError):
    """Raised when a caller asks for another user's data or an action its role does not allow."""


class ToolError(UsageError):
    """Raised by a tool for a call the model should correct (bad item, empty cart, unknown channel).

    The executor hands the message back to the planner; it never crashes a run.
    """


class PolicyViolation(TerminalError):
    """Raised when a policy refuses a side effect (tier, money cap, host allowlist, quiet hours, pause).

    ``rule`` names the rule; the refusal is recorded in ``policy_decisions`` and never executed.
    """

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"refused by policy rule {rule!r}: {detail}")
        self.rule = rule
        self.detail = detail


class LLMUnavailableError(RetryableError):
    """Raised when the LLM endpoint kept answering 429, 5xx, timing out or refusing connections
    after every retry; the planner falls back to the offline planner, a later run may use it again.
    """


class LLMRequestError(TerminalError):
    """Raised when the LLM endpoint rejects a request outright (a 4xx other than 429: a wrong key,
    an unknown model); fix ``ORCHESTRION_LLM_API_KEY`` / ``ORCHESTRION_LLM_MODEL``.
    """


class LLMBudgetError(TerminalError):
    """Raised when a per-deliverable or per-run cap on LLM steps, tokens or cost is spent; the goal
    falls back to the offline planner. Raise the ``ORCHESTRION_LLM_*`` caps to allow more.
    """


class RunInProgressError(RetryableError):
    """Raised when a pipeline run for the same key (pipeline, date, shard) is already running in a
    live process; the message names the run and how to follow it (``orchestrion runs show ID``).
    """
