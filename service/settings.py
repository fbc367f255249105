"""Service settings: one frozen msgspec Struct, filled from defaults, then ``PREFSUM_*`` environment variables, then
command-line flags (``prefsum serve``), in that order of precedence (flags win).

Every field is documented here; ``docs/service.md`` lists them with their environment names. A bad value is an error
that names the variable and says what is expected, before anything starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

ENV_PREFIX = "PREFSUM_"

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable (or flag) and the fix."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the service reads at start-up. Environment name: ``PREFSUM_`` + the field name in upper case."""

    bundles: str = "runs/tiny/bundles"
    """Folder holding one sub-folder per exported bundle (``OUT/bundles/<name>/`` as the pipeline writes them)."""
    host: str = "127.0.0.1"
    """Interface to bind (loopback by default; put a reverse proxy in front to expose it)."""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    """TCP port (0 = any free port, for tests)."""
    workers: PositiveInt = 1
    """uvicorn worker processes; each loads its own copy of the bundles and shares the SQLite database."""
    db: str = "runs/tiny/service/prefsum.db"
    """SQLite database (labelers, label tasks, answers, eval jobs); created on first start, WAL mode."""
    admin_token: str | None = None
    """Bearer token for admin endpoints (labelers, task queue, export, eval jobs). When unset, one is generated on
    first start and kept in ``<db>.admin-token`` (mode 0600) so restarts keep it."""
    default_policy: str | None = None
    """Policy used when a request names none (default: the first policy bundle by name)."""
    default_reward: str | None = None
    """Reward model used when a request names none (default: the first reward bundle by name)."""
    threads: PositiveInt | None = None
    """ONNX Runtime intra-op threads per model (default: ONNX Runtime's choice)."""
    provider: str = "auto"
    """ONNX Runtime execution provider: auto (CUDA when present, else CPU), cpu or cuda."""
    batching: bool = True
    """Dynamic micro-batching of concurrent requests; false runs every request on its own (max_batch 1)."""
    max_batch: PositiveInt = 32
    """Most items (posts, or summary/post pairs to score) in one model call."""
    max_wait_ms: NonNegFloat = 5.0
    """How long the first request of a batch waits for others to join it."""
    max_queue: PositiveInt = 256
    """Most items waiting per model; beyond it requests are refused with 503 and Retry-After."""
    retry_after_s: PositiveInt = 1
    """Seconds suggested to refused clients in Retry-After."""
    max_body_bytes: PositiveInt = 1_048_576
    """Largest request body accepted (413 above it)."""
    data_dir: str = "runs/world"
    """Data for eval jobs: a world folder (tldr/, news/, frames.jsonl). Clients cannot name other paths."""
    eval_dir: str = "runs/tiny/service/evals"
    """Where eval jobs write their judgments and reports (one folder per job id)."""
    eval_workers: PositiveInt = 1
    """Eval jobs run at once (in background threads)."""
    max_eval_jobs: PositiveInt = 8
    """Most eval jobs queued or running; beyond it POST /v1/evals answers 503."""
    max_eval_n: PositiveInt = 2000
    """Largest ``n`` (items per policy) an eval job may ask for."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """uvicorn log level."""

    @property
    def effective_max_batch(self) -> int:
        return self.max_batch if self.batching else 1


FIELDS: tuple[str, ...] = Settings.__struct_fields__


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _convert(raw: Mapping[str, Any], where: Mapping[str, str]) -> Settings:
    try:
        return msgspec.convert(dict(raw), Settings, strict=False)
    except msgspec.ValidationError as e:
        msg = str(e)
        # msgspec says "... - at `$.port`": name the variable or flag the user actually set.
        for field, origin in where.items():
            if f"`$.{field}`" in msg:
                msg = msg.replace(f" - at `$.{field}`", "")
                raise SettingsError(f"{origin}: {msg}; see docs/service.md for the valid values") from None
        raise SettingsError(f"bad service settings: {msg}") from None


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then ``PREFSUM_*`` variables from ``environ`` (default: os.environ), then ``overrides`` (flags;
    a value of None means "not given")."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    where: dict[str, str] = {}
    for field in FIELDS:
        value = environ.get(env_name(field))
        if value is not None and value != "":
            raw[field] = value
            where[field] = f"environment variable {env_name(field)}={value!r}"
    for field, value in (overrides or {}).items():
        if field not in FIELDS:
            raise SettingsError(f"unknown setting {field!r}; valid names: {', '.join(FIELDS)}")
        if value is not None:
            raw[field] = value
            where[field] = f"--{field.replace('_', '-')} {value!r}"
    settings = _convert(raw, where)
    if settings.provider not in ("auto", "cpu", "cuda"):
        raise SettingsError(f"provider must be auto, cpu or cuda, got {settings.provider!r} ({env_name('provider')})")
    return settings


def to_environ(settings: Settings) -> dict[str, str]:
    """The settings as ``PREFSUM_*`` variables (what ``prefsum serve --workers N`` hands to worker processes)."""
    out = {}
    for field in FIELDS:
        value = getattr(settings, field)
        if value is None:
            continue
        out[env_name(field)] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out
