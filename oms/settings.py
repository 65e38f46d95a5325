"""One typed settings object, read from ``OMS_*`` environment variables."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from kombu.transport import resolve_transport
from kombu.utils.url import maybe_sanitize_url
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .durations import MAX_SECONDS, LongDuration

#: The queue of the engine's own tasks (the SLA scan, the reconciler), sent by beat.
ENGINE_QUEUE = "oms"


class OmsSettings(BaseSettings):
    """Engine settings. With nothing set, everything lives under the working directory."""

    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    #: SQLAlchemy URL of the state database (definitions, instances, tasks, events).
    database_url: str = "sqlite:///oms.db"
    #: Celery broker URL. The default is kombu's filesystem transport under ``home``,
    #: which needs no server and works across processes on one machine.
    broker_url: str = "filesystem://"
    #: Directory for embedded data (the filesystem broker's message folders).
    home: Path = Path(".oms")
    #: Largest accepted payload or result, in bytes of JSON.
    max_payload_bytes: int = Field(default=1024 * 1024, gt=0)
    #: Most items a mapped step may run over (its list, from the payload or a result).
    max_map_items: int = Field(default=10_000, gt=0)
    #: Deepest nesting of objects and arrays in a payload or result.
    max_payload_depth: int = Field(default=64, gt=0, le=500)
    #: Most steps in one workflow (its first message carries every step's signature).
    max_steps: int = Field(default=200, gt=0, le=10_000)
    #: Longest workflow description, in characters.
    max_description_chars: int = Field(default=10_000, ge=0)
    #: Longest failure or cancellation reason, in characters (a handler's error is cut to it).
    max_reason_chars: int = Field(default=10_000, gt=0)
    #: Seconds a hard ``time_limit`` exceeds the soft one (at least; 10% of the SLA when larger).
    hard_limit_margin: float = Field(default=5.0, ge=0, le=MAX_SECONDS)
    #: Seconds between SLA scans (the beat schedule of ``oms.scan_sla``).
    sla_scan_interval: float = Field(default=10.0, gt=0, le=MAX_SECONDS)
    #: Fraction of the SLA after which a step turns yellow, unless the step says otherwise.
    sla_warn_fraction: float = Field(default=0.8, gt=0, lt=1)
    #: Seconds of finished steps the scanner's prediction of each topic's pace looks back over (0: no prediction).
    predict_window: float = Field(default=300.0, ge=0, le=MAX_SECONDS)
    #: Finished steps a topic needs in that window before its pace is trusted.
    predict_min_samples: int = Field(default=10, ge=2)
    #: Topic that receives a task for every SLA breach.
    sla_violation_topic: str = "sla_violation"
    #: Topic that receives a task for every SLA warning (yellow light).
    sla_warning_topic: str = "sla_warning"
    #: Seconds a push worker's claim stays valid without a heartbeat: a step whose
    #: worker died runs again within about this plus one scan interval.
    worker_lease: float = Field(default=40.0, gt=0, le=MAX_SECONDS)
    #: Seconds between a push worker's heartbeats (extending its claims' leases).
    heartbeat_interval: float = Field(default=10.0, gt=0, le=MAX_SECONDS)
    #: Seconds a queued step may wait, with its topic's queue empty, before the
    #: reconciler publishes it again (its message was lost).
    reconcile_after: float = Field(default=30.0, gt=0, le=MAX_SECONDS)
    #: Seconds a worker keeps retrying a transition while the database is unreachable.
    db_retry_seconds: float = Field(default=300.0, ge=0, le=MAX_SECONDS)
    #: PostgreSQL: make each claim wait for its WAL flush, as completions always do. Off by
    #: default: a claim the server loses in a crash only returns its step to the queue.
    durable_claims: bool = False
    #: Seconds between sweeps of cancelled time-limit timers in a prefork worker.
    timer_compact_interval: float = Field(default=60.0, gt=0, le=MAX_SECONDS)
    #: Redis broker only: seconds before an unacknowledged message is redelivered. Must
    #: exceed every step's hard time limit and retry delay, or long steps would run twice.
    visibility_timeout: int = Field(default=7 * 24 * 3600, gt=0, le=MAX_SECONDS)
    #: Finished instances older than this are deleted with their tasks and events, every hour,
    #: by beat (the ``oms.prune`` task); unset, they are kept until ``oms prune`` runs.
    retention: LongDuration | None = None
    #: Which databases bring their schema up to date on first use: ``sqlite`` (the embedded
    #: default does; a server database refuses to start until ``oms db upgrade`` has run),
    #: ``always`` or ``never``.
    auto_upgrade: Literal["sqlite", "always", "never"] = "sqlite"
    #: Address ``oms api`` listens on (loopback by default: put a TLS proxy in front to expose it).
    api_host: str = "127.0.0.1"
    #: Port ``oms api`` listens on.
    api_port: int = Field(default=8000, ge=0, le=65535)
    #: Serve the HTTP API with no tokens, every caller an admin: loopback addresses only, for trying it out.
    api_insecure_no_auth: bool = False
    #: Seconds an HTTP request waits out an unreachable database before its 503 (workers wait
    #: ``OMS_DB_RETRY_SECONDS``: a caller over HTTP would rather hear at once, and retry).
    api_db_retry_seconds: float = Field(default=5.0, ge=0, le=MAX_SECONDS)
    #: Seconds an HTTP request's body has to arrive, from the request's start: a client that declares more than it
    #: sends (``Content-Length: 100``, 10 bytes) hears 408 and its connection is closed, not held open forever.
    api_body_timeout: float = Field(default=10.0, gt=0, le=MAX_SECONDS)
    #: The address people open the page at (``https://oms.agency.gov``): notices link to an instance's page there
    #: (``<url>/#/instances/<id>``); unset, they carry no link.
    public_url: str | None = None
    #: Where e-mail notices go out: ``smtp://user:password@host:587`` (STARTTLS, required), ``smtps://…:465``
    #: (TLS from the first byte) or ``smtp+plain://localhost:25`` (no TLS: a relay on this machine only).
    smtp_url: str | None = Field(default=None, repr=False)  # its password: never in a repr
    #: The ``From:`` of e-mail notices (``oms@agency.gov``); its domain also ends their ``Message-ID``.
    smtp_from: str | None = None
    #: Seconds between passes adding the event log to the SLA report's rollups (beat's ``oms.roll_up``), so a report
    #: finds them caught up and does not pay for the log recorded since the last one.
    rollup_interval: float = Field(default=300.0, gt=0, le=MAX_SECONDS)
    #: Seconds between sweeps of the notices' outbox (the beat schedule of ``oms.send_notices``).
    notice_interval: float = Field(default=5.0, gt=0, le=MAX_SECONDS)
    #: Seconds a webhook's answer or each SMTP exchange may take before the attempt counts as failed.
    notice_timeout: float = Field(default=10.0, gt=0, le=600)
    #: Seconds before a notice's first retry; each later one waits twice as long, at most an hour.
    notice_backoff: float = Field(default=5.0, gt=0, le=3600)
    #: A notice not delivered this long after it was written is given up (``failed``, with its last error).
    notice_retry_for: float = Field(default=24 * 3600.0, gt=0, le=MAX_SECONDS)

    @field_validator("broker_url")
    @classmethod
    def _known_transport(cls, value: str) -> str:
        """A broker URL whose scheme kombu does not know would fail only when a step is published."""

        scheme = value.split("://", 1)[0] if "://" in value else ""
        try:
            resolve_transport(scheme.split("+", 1)[0] or "?")
        except (KeyError, ImportError) as exc:
            shown = maybe_sanitize_url(value)
            raise ValueError(f"unknown broker transport {scheme or shown!r} in {shown!r} (use redis://, amqp:// or "
                             f"filesystem://): {exc}") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r:.80} is not an http:// or https:// address")
        return value.rstrip("/") if value else value

    @property
    def broker_folder(self) -> Path:
        return self.home / "broker"

    @property
    def notice_lease(self) -> float:
        """Seconds a sender holds a notice it claimed: a sender that died is replaced after this long. Longer than
        one delivery can take (an SMTP delivery is several exchanges, each up to ``notice_timeout``)."""
        return max(60.0, 6 * self.notice_timeout)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_current: OmsSettings | None = None
#: Settings written in an attached app's configuration (see :func:`oms.attach`): under the environment's.
_from_app: dict[str, Any] = {}


def get_settings() -> OmsSettings:
    """The process's settings: read once from the environment, or set by :func:`oms.configure`."""
    global _current
    if _current is None:
        _current = OmsSettings()
    return _current


def set_settings(**overrides: Any) -> OmsSettings:
    """Re-read the environment, apply ``overrides`` and make the result current.

    An ``OMS_*`` variable wins over the attached app's configuration; ``overrides`` over both.
    """
    global _current
    under = {k: v for k, v in _from_app.items() if f"OMS_{k.upper()}" not in os.environ}
    _current = OmsSettings(**{**under, **overrides})
    return _current


def set_app_settings(given: dict[str, Any], name: str) -> OmsSettings:
    """Take the settings an attached app's configuration gives (each under its ``OMS_*`` variable), and apply them."""
    global _from_app, _app_name
    _from_app, _app_name = dict(given), name
    return set_settings()


_app_name = "oms"


def celery_command(command: str) -> str:
    """``celery -A <the engine's app> <command>``, for messages that tell an operator what to run."""
    return f"celery -A {_app_name} {command}"
