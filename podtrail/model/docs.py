"""Render ``docs/fields.md`` from the field declaration (a test keeps the file current)."""

from __future__ import annotations

from podtrail.model.fields import FIELDS_LIST, Field, Kind


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
        "Kinds: P = process, S = socket, F = file, A = agent health.",
        "",
        "| field | type | kinds | osquery column | CEF key | LEEF key | ECS | meaning |",
        "|---|---|---|---|---|---|---|---|",
    ]
    letters = {Kind.PROCESS: "P", Kind.SOCKET: "S", Kind.FILE: "F", Kind.AGENT: "A"}
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
    ]
    return "\n".join(lines)
