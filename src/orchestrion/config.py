"""One typed settings object, read once.

Precedence, highest first: explicit overrides, ``ORCHESTRION_*`` environment variables,
``orchestrion.toml`` (in ``ORCHESTRION_HOME`` or the path in ``ORCHESTRION_CONFIG``), defaults.
The environment is passed in as a mapping, so tests never patch ``os.environ``.

>>> s = load_settings({"ORCHESTRION_HOME": "/tmp/x"})
>>> str(s.database_path)
'/tmp/x/data/orchestrion.duckdb'
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrion.errors import ConfigError
from orchestrion.money import check_locale

__all__ = ["ENV_PREFIX", "Format", "MappingRule", "RunPath", "Settings", "TriggerRule", "load_settings"]

ENV_PREFIX = "ORCHESTRION_"


RunPath = Literal["deliver", "daily", "backfill", "schedule", "trigger"]
"""The ways a day's deliverables get planned: ``orchestrion deliver``, ``run daily`` (CLI or API),
``backfill``, the scheduler (and its catch-up), an event trigger."""


Format = Literal["html", "json", "md"]
"""The forms a deliverable is rendered in (:mod:`orchestrion.delivery.rendering`): ``outbox_formats``
and the API's ``?format=``."""

_PATH: Final = re.compile(r"^(properties|context)(\.[^.\s]+)+$")
_PATH_HELP: Final = "a path such as properties.track_id or context.page.path (properties.… or context.…)"


class MappingRule(BaseModel):
    """One ``[[mappings]]`` table: an event name → a canonical type, item, value and domain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str = Field(min_length=1, max_length=256, description="The event name as sent (track's event).")
    type: str = Field(min_length=1, max_length=64, description="The canonical type, e.g. play or purchase.")
    item: str | None = Field(None, description="Path to the item id, e.g. properties.track_id.")
    value: str | float | None = Field(None, description="Path to the value, or a constant number.")
    domain: str | None = Field(None, min_length=1, max_length=64, description="The domain, e.g. music.")

    @field_validator("event", "type")
    @classmethod
    def _printable(cls, text: str) -> str:
        if text != text.strip() or not text.isprintable():
            raise ValueError(f"{text!r} must be printable text without surrounding spaces")
        return text

    @field_validator("item")
    @classmethod
    def _item_path(cls, path: str | None) -> str | None:
        if path is not None and not _PATH.match(path):
            raise ValueError(f"{path!r} is not {_PATH_HELP}")
        return path

    @field_validator("value")
    @classmethod
    def _value_path(cls, value: str | float | None) -> str | float | None:
        if isinstance(value, str) and not _PATH.match(value):
            raise ValueError(f"{value!r} is neither a number nor {_PATH_HELP}")
        return value


class TriggerRule(BaseModel):
    """An event-driven trigger: events of ``event_type`` whose properties match ``conditions``
    propose a goal of ``template`` for the event's user at once (see ``orchestrion.runs.triggers``).

    A condition is ``{"property": value}`` (equal) or ``{"property": {"lt": 3}}`` with one of
    ``eq, ne, lt, le, gt, ge, in``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    event_type: str
    template: str
    conditions: dict[str, Any] = Field(default_factory=dict)


def _default_triggers() -> list[TriggerRule]:
    return [TriggerRule(name="stock-low-reorder", event_type="stock_low", template="reorder")]


class Settings(BaseModel):
    """Everything configurable, with the embedded defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Field(default_factory=Path.cwd, description="Root for data/, models/ and the outbox.")
    database: Path | None = Field(None, description="DuckDB file; default HOME/data/orchestrion.duckdb.")
    models_dir: Path | None = Field(None, description="Model registry; default HOME/models.")
    outbox_dir: Path | None = Field(None, description="Local deliverables outbox; default HOME/data/outbox.")
    outbox_formats: tuple[Format, ...] = Field(
        ("html",),
        description="Files per deliverable in the outbox: html (always; it carries the JSON record too), plus json "
        "and md when listed, e.g. html,json,md. Every format is also served by GET /v1/deliverables/{id}?format=.",
    )
    datasets: Path | None = Field(None, description="Folder holding the real public datasets.")
    require_datasets: bool = Field(False, description="Missing datasets fail tests instead of skipping.")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = Field(
        None,
        description="The web page's address as people reach it (e.g. https://orchestrion.example.com), for the "
        "links in outbox pages and emails; unset = http://HOST:PORT.",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
    )
    locale: str | None = Field(
        None,
        description="Locale money is written in (e.g. en_GB, de_DE, en_US); unset = each currency's home "
        "locale (en_GB for GBP).",
    )
    max_event_bytes: int = Field(32 * 1024, gt=0, description="Largest single event accepted.")
    max_body_bytes: int = Field(500 * 1024, gt=0, description="Largest request body accepted.")
    body_timeout_s: float = Field(
        60.0, gt=0, description="Longest a request may take to send its body (then 408): no client holds a "
        "connection and its buffer for ever by trickling bytes.",
    )
    commit_max_events: int = Field(50_000, gt=0, description="Group commit: events per transaction.")
    commit_max_delay_ms: float = Field(2.0, ge=0, description="Group commit: wait for more requests.")
    switch_interval_ms: float = Field(
        0.5, gt=0, le=100,
        description="serve's GIL switch interval (Python's default 5 ms): how long a thread waits, at most, for "
        "the GIL back from one running Python, e.g. the writer after each DuckDB call while the event loop decodes.",
    )
    bulk_chunk_rows: int = Field(
        1_000_000, gt=0, description="Rows per chunk (one transaction each) in bulk ingestion."
    )

    policy_file: Path | None = Field(None, description="Policy TOML; default HOME/policy.toml when it exists.")
    order_url: str | None = Field(
        None, description="Order provider endpoint (POST, Idempotency-Key header); unset = orders go to the outbox."
    )
    webhook_url: str | None = Field(None, description="Where `publish` to the webhook channel posts.")
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 key signing webhook bodies.")
    delivery_batch_users: int = Field(2_000, gt=0, description="Users planned and written per batch.")
    delivery_max_attempts: int = Field(
        3, gt=0, description="Times a deliverable that failed (a fault, not a review) is tried before it stays failed."
    )
    approval_days: int = Field(
        14, ge=0, description="An order or message waiting this many days for its person's approval is cancelled, "
        "with the reason, when their next day is run (0 = it waits for ever).",
    )
    claim_stale_minutes: int = Field(
        15, ge=0, description="A ledger claim older than this with no run working on it is reconciled by the sweep."
    )

    llm_base_url: str | None = Field(None, description="OpenAI-compatible endpoint; unset = offline.")
    llm_api_key: str | None = None
    llm_model: str | None = None
    llm_timeout: float = Field(30.0, gt=0, description="Seconds one LLM request may take before it is retried.")
    llm_max_retries: int = Field(4, ge=0, description="Retries of one LLM request after a 429, a 5xx or a timeout.")
    llm_backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry, with full jitter.")
    llm_backoff_max_s: float = Field(20.0, ge=0, description="Longest wait between retries (Retry-After included).")
    llm_max_repairs: int = Field(2, ge=0, description="Times a tool or validation error goes back to the model.")
    llm_concurrency: int = Field(8, gt=0, description="Goals planned at once with the LLM planner.")
    llm_offline_paths: tuple[RunPath, ...] = Field(
        (),
        description="Run paths that plan offline although an endpoint is configured: any of deliver, daily, "
        "backfill, schedule, trigger (e.g. backfill,trigger).",
    )
    duckdb_memory_limit: str | None = Field(
        None, description="Cap on DuckDB's memory, e.g. 1GB (default: DuckDB's, 80% of RAM); what cannot spill fails."
    )
    effect_concurrency: int = Field(
        4, gt=0, description="Deliverables whose orders and webhooks run at once (outbox files are written in turn)."
    )
    llm_max_steps: int = Field(8, gt=0, description="Model turns per deliverable.")
    llm_max_tokens: int = Field(12_000, gt=0, description="Tokens (prompt + completion) per deliverable.")
    llm_max_cost: float = Field(0.05, ge=0, description="Estimated cost per deliverable, in price units.")
    llm_run_max_steps: int = Field(20_000, gt=0, description="Model turns per run (one deliver call).")
    llm_run_max_tokens: int = Field(20_000_000, gt=0, description="Tokens per run (one deliver call).")
    llm_run_max_cost: float = Field(20.0, ge=0, description="Estimated cost per run (one deliver call).")
    llm_price_prompt_1k: float = Field(0.0, ge=0, description="Price per 1,000 prompt tokens (for the cost caps).")
    llm_price_completion_1k: float = Field(0.0, ge=0, description="Price per 1,000 completion tokens.")

    web_secret: str | None = Field(
        None, description="Signs web sessions and sign-in links; unset = generated once into HOME/.web-secret."
    )
    web_link_days: int = Field(14, gt=0, description="Days a `users link` sign-in link stays valid (it signs in once).")
    web_session_hours: float = Field(
        168.0, gt=0, le=30 * 24, description="Longest a web session lasts after sign-in, in hours (default 7 days)."
    )
    web_session_idle_hours: float = Field(
        12.0, gt=0, description="A web session unused for this many hours ends (idle expiry)."
    )
    web_trusted_proxies: tuple[str, ...] = Field(
        (),
        description="Addresses or networks (e.g. 127.0.0.1,10.0.0.0/8) of reverse proxies whose X-Forwarded-Proto "
        "is believed; cookies are Secure when it says https. Unset = the header is ignored.",
    )

    delivery_time: str = Field(
        "07:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Users' local time of the daily run, HH:MM."
    )
    retrain_time: str = Field("02:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Nightly retrain, HH:MM UTC.")
    scheduler: bool = Field(True, description="Run the schedules (daily, retrain, trigger sweep) inside `serve`.")
    schedule_misfire_grace_s: int = Field(3600, gt=0, description="A scheduled run late by up to this still runs.")
    catch_up_days: int = Field(3, ge=0, description="Days back the scheduler catches up missed daily runs on start.")
    trigger_sweep_s: float = Field(30.0, gt=0, description="Seconds between sweeps for due actions and triggers.")
    triggers: list[TriggerRule] = Field(
        default_factory=_default_triggers, description="Event-driven trigger rules (TOML [[triggers]] tables)."
    )
    mappings: tuple[MappingRule, ...] = Field(
        (),
        description="Event names mapped to canonical events (TOML [[mappings]] tables; "
        "see orchestrion.ingest.mappings).",
    )

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str | None) -> str | None:
        return check_locale(value) if value else None

    @field_validator("mappings")
    @classmethod
    def _one_mapping_per_event(cls, rules: tuple[MappingRule, ...]) -> tuple[MappingRule, ...]:
        seen: dict[str, int] = {}
        for number, rule in enumerate(rules, 1):
            if rule.event in seen:
                raise ValueError(
                    f"tables {seen[rule.event]} and {number} both map event {rule.event!r}; keep one"
                )
            seen[rule.event] = number
        return rules

    @field_validator("outbox_formats", "llm_offline_paths", mode="before")
    @classmethod
    def _split_formats(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("outbox_formats")
    @classmethod
    def _html_always(cls, value: tuple[Format, ...]) -> tuple[Format, ...]:
        if "html" not in value:
            raise ValueError("must include html (the file that marks a deliverable delivered); add json or md to it")
        return tuple(dict.fromkeys(value))

    @field_validator("web_trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("web_trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"{entry!r} is not an IP address or network; write it like 10.0.0.1 or 10.0.0.0/8"
                ) from exc
        return value

    @property
    def database_path(self) -> Path:
        return self.database or self.home / "data" / "orchestrion.duckdb"

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.home / "models"

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir or self.home / "data" / "outbox"

    @property
    def web_url(self) -> str:
        """The web page's base address for links people follow (``public_url``, else HOST:PORT), no
        trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def policy_path(self) -> Path:
        return self.policy_file or self.home / "policy.toml"

    @property
    def llm_configured(self) -> bool:
        return self.llm_base_url is not None


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    fields = Settings.model_fields
    values: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in fields:
            values[name] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from ``environ`` (default ``os.environ``), the TOML file and ``overrides``."""
    env = dict(os.environ if environ is None else environ)
    from_env = _from_environ(env)
    home = Path(overrides.get("home") or from_env.get("home") or Path.cwd())
    toml_path = Path(env.get(ENV_PREFIX + "CONFIG", home / "orchestrion.toml"))
    from_toml: dict[str, Any] = {}
    if toml_path.is_file():
        try:
            from_toml = tomllib.loads(toml_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_path} is not valid TOML: {exc}; fix the file or remove it") from exc
        from_toml = {k: v for k, v in from_toml.items() if not isinstance(v, dict)}
    merged = {**from_toml, **from_env, **{k: v for k, v in overrides.items() if v is not None}}
    merged.setdefault("home", home)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"], toml_path) for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from exc


def _problem(loc: tuple[int | str, ...], msg: str, toml_path: Path) -> str:
    """A validation error named as the operator wrote it: a TOML table and field, or a variable."""
    if loc and loc[0] in ("mappings", "triggers"):
        table = f" table {int(loc[1]) + 1}" if len(loc) > 1 and isinstance(loc[1], int) else " tables"
        field = f", field {'.'.join(map(str, loc[2:]))!r}" if len(loc) > 2 else ""
        return f"{toml_path} [[{loc[0]}]]{table}{field}: {msg}"
    return f"{ENV_PREFIX}{'.'.join(map(str, loc)).upper()}: {msg}"
