"""Convert one rule for one SIEM with pySigma (pure: rule files in, query text or a reason out).

Which backend expresses what, decided once here:
- Splunk (SPL over the CEF events): alerts; event_count, value_count and temporal
  correlations (the backend's ``stats`` method). temporal_ordered has no Splunk method.
- Elastic: alerts as Lucene query rules over the ECS index; event_count, value_count and
  temporal correlations as ES|QL rules; temporal_ordered as an EQL ``sequence`` rule. ES|QL
  cannot rename fields per rule, so correlations with ``aliases`` are not expressible there.
- QRadar (AQL over the LEEF events): alerts only; the AQL backend has no correlation support
  (QRadar correlates in its rule engine, not in AQL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from podtrail.rules.attack import use_offline_attack
from podtrail.rules.catalog import RuleFile, load
from podtrail.rules.pipeline import build_pipeline
from podtrail.rules.targets import ELASTIC_INDEX, TARGETS


@dataclass(frozen=True)
class Converted:
    rule: str
    siem: str
    output: list[Any]  # queries (str) or SIEM rule objects (dict)
    unsupported: str = ""  # the reason, when the SIEM cannot express the rule


def _unsupported(rf: RuleFile, siem: str, why: str) -> Converted:
    return Converted(rf.name, siem, [], why)


def _run(backend: Any, rf: RuleFile, files: list[RuleFile], fmt: str, siem: str) -> Converted:
    try:
        out = backend.convert(load(rf, files), fmt)
    except NotImplementedError as e:  # the backend's own word that it cannot express this
        return _unsupported(rf, siem, str(e).split(" (while")[0])
    return Converted(rf.name, siem, list(out) if isinstance(out, list) else [out])


def to_splunk(rf: RuleFile, files: list[RuleFile]) -> Converted:
    from sigma.backends.splunk import SplunkBackend

    return _run(SplunkBackend(build_pipeline(TARGETS["splunk"])), rf, files, "default", "splunk")


# The EQL backend ends a temporal_ordered sequence without group-by aliases with
# " by  with runs=2", which EQL rejects; a sequence needs neither (group-by is in its head).
_EQL_TRAILER = re.compile(r"\s+by\s+with runs=\d+\s*$")


def to_elastic(rf: RuleFile, files: list[RuleFile]) -> Converted:
    from sigma.backends.elasticsearch import EqlBackend, ESQLBackend, LuceneBackend

    use_offline_attack()
    pipe = build_pipeline(TARGETS["elastic"])
    ctype = rf.correlation_type
    if ctype is None:
        return _run(LuceneBackend(pipe, index_names=[ELASTIC_INDEX]), rf, files, "siem_rule_ndjson", "elastic")
    if ctype == "temporal_ordered":
        res = _run(EqlBackend(pipe, index_names=[ELASTIC_INDEX]), rf, files, "siem_rule_ndjson", "elastic")
        for r in res.output:
            r["query"] = _EQL_TRAILER.sub("", r["query"])
        return res
    if rf.doc["correlation"].get("aliases"):
        return _unsupported(rf, "elastic", "ES|QL correlations cannot rename fields per rule (Sigma aliases)")
    return _run(ESQLBackend(pipe), rf, files, "siem_rule_ndjson", "elastic")


def to_qradar(rf: RuleFile, files: list[RuleFile]) -> Converted:
    """pysigma-backend-qradar-community: the AQL backend on pySigma 1.x, in the main venv."""
    from sigma.backends.QRadarAQL import QRadarAQLBackend

    if rf.correlation_type is not None:
        return _unsupported(rf, "qradar", "the QRadar AQL backend has no correlation support")
    return _run(QRadarAQLBackend(build_pipeline(TARGETS["qradar"])), rf, files, "default", "qradar")
