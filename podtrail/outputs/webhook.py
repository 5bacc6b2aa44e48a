"""Webhook output: JSON batches to an HTTP endpoint (SOAR, messengers), through the same
disk spool and retry/backoff as syslog; an auth header from the config; a non-2xx answer is
a failure and the batch is sent again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from podtrail.model.event import Event
from podtrail.outputs.spool import Chunk
from podtrail.outputs.syslog import SpooledOutput


@dataclass
class WebhookConfig:
    type: str = "webhook"
    url: str = ""
    format: str = "json"  # json (flat podtrail names) | ecs
    auth_header: str = "Authorization"
    auth_value: str = ""  # e.g. "Bearer <token>"; prefer auth_value_file
    auth_value_file: str = ""
    batch_max: int = 500  # messages per POST
    batch_max_bytes: int = 1 << 20  # body size per POST
    linger_seconds: float = 0.2  # wait this long for a fuller batch (one POST per event otherwise)
    timeout_seconds: float = 10.0
    verify: bool = True
    ca_file: str = ""
    queue_size: int = 65536
    spool_max_bytes: int = 1 << 30
    event_types: list[str] = field(default_factory=list)
    min_severity: int = 0
    namespaces: list[str] = field(default_factory=list)
    name: str = ""


class WebhookSink(SpooledOutput):
    def __init__(self, cfg: WebhookConfig, spool_dir: str) -> None:
        self.cfg = cfg
        if cfg.format == "ecs":
            from podtrail.formatters.ecs_json import format_ecs as fmt
        else:
            from podtrail.outputs.stdout import to_json_line as fmt
        self._fmt = fmt
        self._session = requests.Session()
        token = cfg.auth_value
        if cfg.auth_value_file:
            with open(cfg.auth_value_file) as f:
                token = f.read().strip()
        if token:
            self._session.headers[cfg.auth_header] = token
        self._session.headers["Content-Type"] = "application/json"
        self._session.verify = cfg.ca_file or cfg.verify
        super().__init__(cfg.name or "webhook", spool_dir, cfg.queue_size, cfg.spool_max_bytes,
                         cfg.event_types, cfg.min_severity, cfg.namespaces)
        self.batch_records, self.linger_s = cfg.batch_max, cfg.linger_seconds

    def texts(self, evs: list[Event]) -> list[str]:
        fmt = self._fmt
        return [fmt(ev) for ev in evs]

    def batches(self, records: list[bytes]) -> list[list[bytes]]:
        """Split by count (``batch_max``) and body size (``batch_max_bytes``; one oversized
        message still goes alone)."""
        out: list[list[bytes]] = []
        cur: list[bytes] = []
        size = 2
        for r in records:
            if cur and (len(cur) >= self.cfg.batch_max or size + len(r) + 1 > self.cfg.batch_max_bytes):
                out.append(cur)
                cur, size = [], 2
            cur.append(r)
            size += len(r) + 1
        if cur:
            out.append(cur)
        return out

    def deliver(self, chunk: Chunk) -> None:
        for batch in self.batches(chunk.records()):
            body = b"[" + b",".join(batch) + b"]"
            try:
                r = self._session.post(self.cfg.url, data=body, timeout=self.cfg.timeout_seconds)
            except requests.RequestException as e:
                raise ConnectionError(str(e)) from None
            if not 200 <= r.status_code < 300:
                raise ConnectionError(f"HTTP {r.status_code}")


def webhook_config(spec: dict[str, Any], where: str) -> WebhookConfig:
    """The checked config of one webhook output (no side effects: run checks before loading)."""
    from podtrail.config import ConfigError, from_dict

    cfg = from_dict(WebhookConfig, spec, where)
    if not cfg.url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: an http(s) URL is required")
    if cfg.format not in ("json", "ecs"):
        raise ConfigError(f"{where}.format: json or ecs, not {cfg.format!r}")
    return cfg


def build_webhook(spec: dict[str, Any], spool_dir: str, where: str) -> WebhookSink:
    return WebhookSink(webhook_config(spec, where), spool_dir)
