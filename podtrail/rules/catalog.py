"""The shipped Sigma rules: where they are and what kind each is.

``rules/<category>/*.yml`` are alerts, ``rules/base/*.yml`` are building blocks that only
correlations use, ``correlations/*.yml`` are Sigma v2 correlation rules over them. Loading
works with pySigma 0.11 and 1.x. Every load is fresh because pySigma applies pipelines to
rule objects in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SIGMA_DIR = Path(__file__).resolve().parents[2] / "siem_content" / "sigma"


@dataclass(frozen=True)
class RuleFile:
    path: Path
    name: str
    kind: str  # "alert", "base" or "correlation"
    doc: dict[str, Any]

    @property
    def correlation_type(self) -> str | None:
        corr = self.doc.get("correlation")
        return str(corr["type"]) if corr else None

    @property
    def detection_fields(self) -> set[str]:
        """Field names the detection's selections test (modifiers stripped)."""
        out: set[str] = set()
        for name, sel in (self.doc.get("detection") or {}).items():
            if name == "condition":
                continue
            for item in sel if isinstance(sel, list) else [sel]:
                if isinstance(item, dict):
                    out |= {str(k).split("|")[0] for k in item}
        return out

    @property
    def fields(self) -> set[str]:
        """Every field the rule reads: its detection's, a correlation's group-by and counted field."""
        corr = self.doc.get("correlation") or {}
        counted = (corr.get("condition") or {}).get("field")
        return self.detection_fields | set(corr.get("group-by", [])) | ({counted} if counted else set())

    @property
    def referenced(self) -> list[str]:
        corr = self.doc.get("correlation")
        return list(corr["rules"]) if corr else []


def rule_files(root: Path = SIGMA_DIR) -> list[RuleFile]:
    out = []
    for p in sorted(root.glob("rules/*/*.yml")) + sorted(root.glob("correlations/*.yml")):
        doc = yaml.safe_load(p.read_text())
        kind = "correlation" if "correlation" in doc else ("base" if p.parent.name == "base" else "alert")
        out.append(RuleFile(p, str(doc["name"]), kind, doc))
    return out


def by_name(files: list[RuleFile]) -> dict[str, RuleFile]:
    return {f.name: f for f in files}


def load(rf: RuleFile, files: list[RuleFile]) -> Any:
    """A fresh SigmaCollection holding ``rf`` (and, for a correlation, the rules it uses)."""
    from sigma.collection import SigmaCollection

    names = by_name(files)
    texts = [rf.path.read_text()] + [names[r].path.read_text() for r in rf.referenced]
    return SigmaCollection.from_yaml("\n---\n".join(texts))


def output_rule(collection: Any, rf: RuleFile) -> Any:
    """The rule object in ``collection`` that conversion should emit for ``rf``."""
    for r in collection.rules:
        if r.name == rf.name:
            return r
    raise KeyError(rf.name)
