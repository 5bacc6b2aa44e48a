"""Offline MITRE ATT&CK data for pySigma.

pySigma 1.x downloads the full ATT&CK STIX bundle on first use (the Elastic backend maps
tags to its threat model). This machine, like many build hosts, has no route there, so the
build points pySigma at the subset shipped in ``siem_content/attack`` and at a private cache
(never a user's cache that may hold another ATT&CK version: the output must not depend on it).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

SUBSET = Path(__file__).resolve().parents[2] / "siem_content" / "attack" / "attack-subset.stix.json"
_done = False


def use_offline_attack() -> None:
    global _done
    if _done:
        return
    try:
        from sigma.data import mitre_attack
    except ImportError:  # pySigma 0.11 ships its ATT&CK tables statically
        return
    mitre_attack.set_cache_dir(tempfile.mkdtemp(prefix="podtrail-attack-"))
    mitre_attack.set_url(str(SUBSET))
    _done = True


def known_ids() -> set[str]:
    """Technique and tactic ids in the shipped subset."""
    objs = json.loads(SUBSET.read_text())["objects"]
    return {r["external_id"] for o in objs for r in o.get("external_references", [])}
