"""Render ``docs/fields.md`` and the per-SIEM field tables of ``docs/siem-integration.md`` from the
field declaration (tests keep both files current)."""

from __future__ import annotations

from podtrail.model.fields import FIELDS_LIST, KERNEL_REDUCTIONS, Field, FieldType, Kind


def _cell(v: str | None) -> str:
    return f"`{v}`" if v else "—"


def _cef(f: Field) -> str:
    if not f.cef:
        return "—"
    return f"`{f.cef}` (label `{f.cef_label}`)" if f.cef_label else f"`{f.cef}`"


def render_fields_md() -> str:
    lines = [
        "# podtrail event fields",
        "",
        "Generated from `podtrail/model/fields.py` by `podtrail fields --markdown`; do not edit.",
        "Every source (eBPF, auditd) produces these fields and every consumer (osquery tables,",
        "CEF, LEEF, ECS JSON) takes its names from this one declaration.",
        "",
        "Kinds: P = process, S = socket, F = file, A = agent health, L = alert.",
        "",
        "| field | type | kinds | osquery column | CEF key | LEEF key | ECS | meaning |",
        "|---|---|---|---|---|---|---|---|",
    ]
    letters = {Kind.PROCESS: "P", Kind.SOCKET: "S", Kind.FILE: "F", Kind.AGENT: "A", Kind.ALERT: "L"}
    for f in FIELDS_LIST:
        kinds = "".join(letters[k] for k in Kind if k in f.kinds)
        osq = f"`{f.osquery}` {f.osquery_type}" + (" hidden" if f.hidden else "") + (" index" if f.index else "") if f.osquery else "—"
        lines.append(
            f"| `{f.name}` | {f.type.value} | {kinds} | {osq} | {_cef(f)} | {_cell(f.leef)} | {_cell(f.ecs)} | {f.description} |"
        )
    lines += [
        "",
        "CEF: `severity` goes in the header; `time_ns` is rendered as `rt` in milliseconds.",
        "LEEF: `devTime` is epoch milliseconds. ECS: `@timestamp` is ISO 8601 UTC.",
        "",
        "## Fewer crossings",
        "",
        "Some samples are not sent one by one from the kernel; none is lost. Each outcome is counted",
        "in the metric `podtrail_kernel_reductions_total{program, outcome}`.",
        "",
        "| outcome | program | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{o}` | `{prog}` | {meaning} |" for o, prog, meaning in KERNEL_REDUCTIONS]
    lines.append("")
    return "\n".join(lines)


# ---- docs/siem-integration.md: one field table per SIEM, generated between markers ---------

# LEEF 2.0 predefined keys podtrail uses (QRadar maps these to its own properties natively).
_LEEF_PREDEFINED = frozenset({"cat", "devTime", "sev", "src", "dst", "srcPort", "dstPort", "proto", "usrName", "identHostName"})
_ES_TYPES = {
    FieldType.TEXT: "keyword", FieldType.INTEGER: "long", FieldType.BIGINT: "long", FieldType.DOUBLE: "double",
    FieldType.BOOLEAN: "boolean", FieldType.TIMESTAMP_NS: "date (ISO 8601 UTC)", FieldType.JSON: "array or object",
}
SIEM_DOC = "docs/siem-integration.md"


def _splunk_row(f: Field) -> str:
    if f.name == "severity":
        where, search = "header (7th field, 0–10)", "`cef_severity`"
    elif not f.cef:
        where, search = "—", "not sent" + (" (see `cmdline`)" if f.name == "argv" else "")
    elif f.cef_label:
        where, search = f"`{f.cef}` + `{f.cef}Label={f.cef_label}`", f"`{f.cef}`, alias `{f.cef_label}`"
    elif f.type is FieldType.TIMESTAMP_NS:
        where, search = f"`{f.cef}` (epoch ms)", f"`{f.cef}`; also `_time`"
    else:
        where, search = f"`{f.cef}`", f"`{f.cef}`"
    return f"| `{f.name}` | {f.type.value} | {where} | {search} |"


def _elastic_row(f: Field) -> str:
    renames = ", ".join(f"`{a}` → `{b}`" for a, b in f.ecs_values.items()) or "—"
    return f"| `{f.name}` | {f.type.value} | {_cell(f.ecs)} | {_ES_TYPES[f.type] if f.ecs else '—'} | {renames} |"


def _qradar_row(f: Field) -> str:
    if not f.leef:
        return f"| `{f.name}` | — | — | not sent |"
    if f.type is FieldType.TIMESTAMP_NS:
        return f"| `{f.name}` | `{f.leef}` | — | event time (epoch ms, no `devTimeFormat`) |"
    qtype = "Numeric" if f.type in (FieldType.INTEGER, FieldType.BIGINT) else "AlphaNumeric"
    kind = "predefined LEEF key" if f.leef in _LEEF_PREDEFINED else "custom property"
    return f"| `{f.name}` | `{f.leef}` | {qtype} | {kind} |"


def render_siem_tables() -> dict[str, str]:
    """The per-SIEM field tables of docs/siem-integration.md, by section name."""
    heads = {
        "splunk": ["| podtrail field | type | in the CEF message | Splunk field (props.conf) |", "|---|---|---|---|"],
        "elastic": ["| podtrail field | type | ECS path | Elasticsearch type | value renames |", "|---|---|---|---|---|"],
        "qradar": ["| podtrail field | LEEF key | property type | QRadar |", "|---|---|---|---|"],
    }
    rows = {
        "splunk": [_splunk_row(f) for f in FIELDS_LIST],
        "elastic": [_elastic_row(f) for f in FIELDS_LIST],
        "qradar": [_qradar_row(f) for f in FIELDS_LIST],
    }
    return {k: "\n".join(heads[k] + rows[k]) for k in heads}


def _markers(section: str) -> tuple[str, str]:
    return (f"<!-- generated: {section} fields (python -m podtrail.model.docs); do not edit -->",
            f"<!-- end generated: {section} fields -->")


def update_siem_doc(text: str) -> str:
    """``text`` with every generated table replaced by the current one (markers must exist)."""
    for section, table in render_siem_tables().items():
        begin, end = _markers(section)
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            raise ValueError(f"{SIEM_DOC}: markers for the {section} table are missing")
        text = text[: i + len(begin)] + "\n" + table + "\n" + text[j:]
    return text


if __name__ == "__main__":  # pragma: no cover - regenerates the tables in place
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / SIEM_DOC
    doc.write_text(update_siem_doc(doc.read_text()))
