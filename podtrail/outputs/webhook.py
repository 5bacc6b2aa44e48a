"""Webhook output: JSON batches to an HTTP endpoint (SOAR, messengers), through the same
disk spool and retry/backoff as syslog; an auth header from the config; a non-2xx answer is
a failure and the batch is sent again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from podtrail.model.event import Event
from podtrail.outputs.syslog import SpooledOutput


@dataclass
class WebhookConfig:
    type: str = "webhook"
    url: str = ""
    format: str = "json"  # json (flat podtrail names) | ecs
    auth_header: str = "Authorization"
    auth_value: str = ""  # e.g. "Bearer <token>"; prefer auth_value_file
    auth_value_file: str = ""
    batch_max: int = 500
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

    def message(self, ev: Event) -> bytes:
        return self._fmt(ev).encode()

    def deliver(self, records: list[bytes]) -> None:
        for i in range(0, len(records), self.cfg.batch_max):
            body = b"[" + b",".join(records[i:i + self.cfg.batch_max]) + b"]"
            try:
                r = self._session.post(self.cfg.url, data=body, timeout=self.cfg.timeout_seconds)
            except requests.RequestException as e:
                raise ConnectionError(str(e)) from None
            if not 200 <= r.status_code < 300:
                raise ConnectionError(f"HTTP {r.status_code}")


def build_webhook(spec: dict[str, Any], spool_dir: str, where: str) -> WebhookSink:
    from podtrail.config import ConfigError, from_dict

    cfg = from_dict(WebhookConfig, spec, where)
    if not cfg.url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: an http(s) URL is required")
    if cfg.format not in ("json", "ecs"):
        raise ConfigError(f"{where}.format: json or ecs, not {cfg.format!r}")
    return WebhookSink(cfg, spool_dir)
