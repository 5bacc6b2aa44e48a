"""Load Sigma rules (the shipped ones and configured files or folders) and compile each once.

pySigma parses the YAML, resolves correlation references and applies the generic-taxonomy
pipeline (``product: linux`` rules' ``Image``, ``CommandLine``, ... become podtrail's field
names, podtrail.rules.pipeline); this module turns each rule into a ``Signature`` (predicate,
anchors, log source) or a ``Correlation`` (a spec for podtrail.detect.correlate). A rule that
cannot be used becomes a ``Problem`` with its reason; the others load regardless.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podtrail.detect.alert import LEVELS
from podtrail.detect.correlate import OPS, TYPES, CorrelationSpec
from podtrail.detect.predicate import Anchor, Node, Pred, Unsupported, compile_tree
from podtrail.model.fields import FIELDS, SIGMA_TAXONOMY, SIGMA_UNMAPPED, Kind
from podtrail.rules.targets import CATEGORIES, PRODUCT

# log-source category -> (event_type, action or None for any)
SOURCES: dict[str, tuple[str, str | None]] = {
    cat: (kind.value, conds.get("action")) for cat, (kind, conds) in CATEGORIES.items()
}
PRODUCTS = (PRODUCT, "linux")
RULE_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class Meta:
    id: str
    name: str
    title: str
    level: str
    status: str
    tactics: list[str]
    techniques: list[str]
    path: str


@dataclass
class Signature:
    meta: Meta
    pred: Pred
    anchors: list[Anchor] | None
    sources: list[tuple[str, str | None]]
    fields: frozenset[str]
    output: bool  # alerts on its own (else only feeds correlations)
    feeds: list[tuple[int, int]] = field(default_factory=list)  # (correlation index, slot)
    tree: Node | None = None  # the condition as data (podtrail.detect.codegen compiles it); None: use pred
    requirements: list[list[Anchor]] = field(default_factory=list)  # anchor sets that must each hold


@dataclass
class Correlation:
    meta: Meta
    spec: CorrelationSpec
    referenced: list[str]  # names/ids of the referenced rules, by slot


@dataclass(frozen=True)
class Problem:
    id: str
    title: str
    path: str
    reason: str


@dataclass
class RuleSet:
    signatures: list[Signature] = field(default_factory=list)
    correlations: list[Correlation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    read: int = 0

    @property
    def usable(self) -> int:
        return len(self.signatures) + len(self.correlations)


def rule_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Rule files under ``paths`` (files as given, folders searched recursively), in a stable order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix in RULE_SUFFIXES and q.is_file())
        else:
            out.append(p)
    return out


def _meta(rule: Any, path: str) -> Meta:
    tags = [t for t in (rule.tags or []) if t.namespace == "attack"]
    techniques = [t.name.upper() for t in tags if t.name[:1] in "tT" and t.name[1:2].isdigit()]
    tactics = [t.name for t in tags if t.name.upper() not in techniques]
    level = str(rule.level).lower() if rule.level is not None else "medium"
    status = str(rule.status).lower() if rule.status is not None else "experimental"
    rid = str(rule.id) if rule.id else (rule.name or rule.title or path)
    return Meta(rid, rule.name or rid, rule.title or rid, level if level in LEVELS else "medium", status,
                tactics, techniques, path)


def canonical(name: str) -> str:
    """podtrail's name for a field written in canonical or generic-taxonomy form; raises Unsupported."""
    if name in FIELDS:
        return name
    if name in SIGMA_TAXONOMY:
        return SIGMA_TAXONOMY[name]
    if name in SIGMA_UNMAPPED:
        raise Unsupported(f"field {name!r} has no podtrail counterpart: {SIGMA_UNMAPPED[name]}")
    raise Unsupported(f"field {name!r} has no podtrail counterpart")


def _sources(rule: Any) -> list[tuple[str, str | None]]:
    ls = rule.logsource
    if ls.product not in (*PRODUCTS, None):
        raise Unsupported(f"log source product {ls.product!r}: podtrail serves {' and '.join(PRODUCTS)}")
    if ls.service:
        raise Unsupported(f"log source service {ls.service!r}: podtrail's events are process_creation, "
                          "network_connection and file_event, not a service's log")
    if ls.category is None:
        if ls.product is None:
            raise Unsupported("log source names neither a product nor a category")
        return [(k.value, None) for k in (Kind.PROCESS, Kind.SOCKET, Kind.FILE)]
    if ls.category not in SOURCES:
        raise Unsupported(f"log source category {ls.category!r}: podtrail provides {', '.join(SOURCES)}")
    return [SOURCES[ls.category]]


def compile_signature(rule: Any, path: str, output: bool) -> Signature:
    from sigma.conditions import ConditionOR

    def check(name: str) -> None:
        if name not in FIELDS:
            canonical(name)  # raises with the reason

    sources = _sources(rule)
    trees = [c.parsed for c in rule.detection.parsed_condition]
    tree = trees[0] if len(trees) == 1 else ConditionOR(trees)
    c = compile_tree(tree, check)
    return Signature(_meta(rule, path), c.pred, c.anchors, sources, c.fields, output, tree=c.tree,
                     requirements=c.requirements)


def compile_correlation(rule: Any, path: str) -> Correlation:
    from sigma.correlations import SigmaExtendedCorrelationCondition

    ctype = rule.type.name.lower()
    if ctype not in TYPES:
        raise Unsupported(f"correlation type {ctype} is not supported (supported: {', '.join(TYPES)})")
    if isinstance(rule.condition, SigmaExtendedCorrelationCondition):
        raise Unsupported("extended (boolean) correlation conditions are not supported")
    op = rule.condition.op.name.lower()
    if op not in OPS:
        raise Unsupported(f"correlation condition {op} is not supported")
    if ctype == "temporal_ordered" and op not in ("gte", "gt"):
        raise Unsupported("temporal_ordered supports gte/gt conditions only")
    refs = list(rule.referenced_rules or [])
    for ref in refs:
        if type(ref.rule).__name__ == "SigmaCorrelationRule":
            raise Unsupported(f"correlation of correlations ({ref.reference}) is not supported")
    group = list(rule.group_by or [])
    aliases: dict[str, dict[str, str]] = {}
    for a in rule.aliases or []:
        aliases[a.alias] = {r.reference: f for r, f in a.mapping.items()}

    def field_for(ref: Any, name: str) -> str:
        mapping = aliases.get(name)
        if mapping is not None:
            for key in (ref.reference, getattr(ref.rule, "name", None), str(getattr(ref.rule, "id", ""))):
                if key in mapping:
                    return canonical(mapping[key])
        return canonical(name)

    counted = rule.condition.fieldref
    if isinstance(counted, list):
        if len(counted) != 1:
            raise Unsupported("value_count over several fields is not supported")
        counted = counted[0]
    if ctype == "value_count" and not counted:
        raise Unsupported("value_count needs condition.field")
    spec = CorrelationSpec(
        type=ctype, span_us=int(rule.timespan.seconds * 1_000_000), op=op, count=int(rule.condition.count),
        group_by=group, group_fields=[[field_for(r, g) for g in group] for r in refs],
        value_fields=[field_for(r, counted) if counted else None for r in refs], n_slots=len(refs))
    if spec.span_us <= 0:
        raise Unsupported("the correlation timespan must be positive")
    return Correlation(_meta(rule, path), spec, [r.reference for r in refs])


def _looks_like_rules(text: str) -> bool:
    """Some YAML document of ``text`` is a Sigma rule, correlation or filter (a rule folder may
    also hold test data or pipelines; those are named, not parsed as broken rules)."""
    import yaml

    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return True  # let pySigma report the syntax error
    return any(isinstance(d, dict) and ({"detection", "correlation", "filter"} & d.keys()) for d in docs)


def _problem(rule: Any, path: str, reason: str) -> Problem:
    rid = str(getattr(rule, "id", "") or getattr(rule, "name", "") or "")
    return Problem(rid, str(getattr(rule, "title", "") or ""), path, reason)


def _error_text(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def load_texts(texts: Sequence[tuple[str, str]], *, outputs: dict[str, bool] | None = None) -> RuleSet:
    """Compile rules from (path, YAML text) pairs. ``outputs`` decides, by rule name, whether a
    rule alerts on its own (the shipped rules: all but the building blocks); any other rule does
    unless a correlation references it without ``generate: true`` (Sigma's convention)."""
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.rule import SigmaRule

    from podtrail.rules.pipeline import taxonomy_pipeline

    rs = RuleSet()
    origin: dict[int, str] = {}
    collections = []
    for path, text in texts:
        if not _looks_like_rules(text):
            rs.read += 1
            rs.problems.append(Problem("", "", path, "not a Sigma rule: no detection, correlation or filter section"))
            continue
        try:
            coll = SigmaCollection.from_yaml(text, collect_errors=True, resolve_references=False)
        except Exception as e:  # noqa: BLE001 - a broken file is reported, the rest loads
            rs.read += max(1, text.count("\n---"))
            rs.problems.append(Problem("", "", path, f"cannot parse: {_error_text(e)}"))
            continue
        for r in coll.rules:
            origin[id(r)] = path
        rs.read += len(coll.rules) + len(coll.errors)
        for err in coll.errors:
            rs.problems.append(Problem("", "", path, f"cannot parse: {_error_text(err)}"))
        collections.append(coll)
    merged = SigmaCollection.merge(collections, resolve_references=False)
    rules = [r for r in merged.rules if not getattr(r, "errors", None)]
    for r in merged.rules:
        if getattr(r, "errors", None):
            rs.problems.append(_problem(r, origin.get(id(r), ""), f"cannot parse: {_error_text(r.errors[0])}"))
    referenced: set[int] = set()
    correlations: list[Any] = []
    for r in rules:
        if isinstance(r, SigmaCorrelationRule):
            try:
                r.resolve_rule_references(merged)
            except Exception as e:  # noqa: BLE001
                rs.problems.append(_problem(r, origin.get(id(r), ""), _error_text(e)))
                continue
            correlations.append(r)
            if not r.generate:
                referenced |= {id(ref.rule) for ref in r.referenced_rules}
    pipe = taxonomy_pipeline()
    index: dict[int, int] = {}
    for r in rules:
        if not isinstance(r, SigmaRule):
            continue
        path = origin.get(id(r), "")
        try:
            pipe.apply(r)
            decided = (outputs or {}).get(r.name or "")
            sig = compile_signature(r, path, output=decided if decided is not None else id(r) not in referenced)
        except Exception as e:  # noqa: BLE001 - Unsupported, or pySigma refusing the rule
            rs.problems.append(_problem(r, path, _error_text(e)))
            continue
        index[id(r)] = len(rs.signatures)
        rs.signatures.append(sig)
    for r in correlations:
        path = origin.get(id(r), "")
        missing = [ref.reference for ref in r.referenced_rules if id(ref.rule) not in index]
        try:
            if missing:
                raise Unsupported(f"references rules that cannot be used: {', '.join(missing)}")
            corr = compile_correlation(r, path)
        except Exception as e:  # noqa: BLE001
            rs.problems.append(_problem(r, path, _error_text(e)))
            continue
        ci = len(rs.correlations)
        rs.correlations.append(corr)
        for slot, ref in enumerate(r.referenced_rules):
            rs.signatures[index[id(ref.rule)]].feeds.append((ci, slot))
    return rs


def load_paths(paths: Iterable[str | Path], *, shipped: bool = True) -> RuleSet:
    """The shipped rules (unless ``shipped`` is False) and every rule file under ``paths``."""
    texts, outputs = rule_texts(paths, shipped=shipped)
    return load_texts(texts, outputs=outputs)


def rule_texts(paths: Iterable[str | Path], *, shipped: bool = True) -> tuple[list[tuple[str, str]], dict[str, bool]]:
    """(path, text) of the shipped rules and of every rule file under ``paths``, and which shipped
    rules alert on their own; raises RuleLoadError for a path that cannot be read."""
    from podtrail.rules.catalog import rule_files

    texts: list[tuple[str, str]] = []
    outputs: dict[str, bool] = {}
    if shipped:
        for rf in rule_files():
            texts.append((str(rf.path), rf.path.read_text()))
            outputs[rf.name] = rf.kind != "base"
    for p in rule_paths(paths):
        try:
            texts.append((str(p), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise RuleLoadError(f"cannot read rule file {p}: {getattr(e, 'strerror', None) or e}") from None
    return texts, outputs


class RuleLoadError(Exception):
    """A configured rule path that cannot be read (a configuration mistake, reported in one line)."""
