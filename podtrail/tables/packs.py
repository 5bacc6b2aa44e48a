"""The shipped osquery pack, and the same queries (plus policies) as Fleet GitOps YAML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

PACK_DIR = Path(__file__).resolve().parents[2] / "siem_content" / "osquery"
PACK = PACK_DIR / "podtrail-hunting.json"
FLEET = PACK_DIR / "fleet-gitops.yml"

# Fleet policies pass when their query returns a row.
POLICIES = [
    {"name": "podtrail: no privileged containers", "table": "containers", "where": "privileged = 1",
     "description": "No container on this host runs privileged.",
     "resolution": "Drop privileged: true from the pod spec; grant only the capabilities needed."},
    {"name": "podtrail: no drifted binaries executed", "table": "container_process_events", "where": "action = 'exec' AND drift = 1",
     "description": "No container ran a binary written after it started.",
     "resolution": "Investigate the pod; rebuild images instead of installing at run time; use readOnlyRootFilesystem."},
]


def load_pack(path: Path = PACK) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def fleet_yaml(pack: dict[str, Any]) -> str:
    queries = [{"name": f"podtrail_{name}", "query": q["query"], "interval": q["interval"], "platform": pack["platform"],
                "description": q["description"], "observer_can_run": True, "automations_enabled": False,
                "logging": "snapshot" if q.get("snapshot") else "differential"}
               for name, q in pack["queries"].items()]
    policies = [{"name": p["name"], "query": f"SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {p['table']} WHERE {p['where']});",
                 "description": p["description"], "resolution": p["resolution"], "platform": pack["platform"], "critical": False}
                for p in POLICIES]
    head = "# Generated from podtrail-hunting.json by podtrail.tables.packs; do not edit.\n"
    return head + yaml.safe_dump({"queries": queries, "policies": policies}, sort_keys=False, width=1000)
