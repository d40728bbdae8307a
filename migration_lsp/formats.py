"""Output formats of both front ends: a check's findings as text, JSON, SARIF, GitHub
workflow commands and GitLab Code Quality; the revision graph as mermaid, dot and JSON
(the CLI's `graph` and the server's `migration-lsp/graph` request and showGraph command).

Formatters are plain functions of a Snapshot. Paths are shown relative to the current
directory (`relative`) unless the caller passes its own way of naming a file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .core import Diagnostic, Severity, printable
from .engine import EnvironmentReport, EnvironmentState, Report, Snapshot
from .rules import FAMILIES, HOME, RULES, Rule


def relative(path: Path) -> str:
    """Paths as the user typed them (relative to the current directory when inside it);
    resolved once per folder: a report names thousands of files in a few folders."""
    return _relative_folder(path.parent) + path.name if path.name else path.as_posix()


@functools.lru_cache(maxsize=4096)
def _relative_folder(folder: Path) -> str:
    """`folder` as relative shows it, with a trailing slash ("" for the current directory)."""
    text, base = str(folder), str(_cwd())
    if folder.is_absolute() and (text == base or text.startswith(base + os.sep)):
        rel = text[len(base) + 1:]  # the engine's paths are resolved already
    else:
        try:
            rel = folder.resolve().relative_to(_cwd()).as_posix()
        except ValueError:
            rel = folder.as_posix()
    rel = Path(rel).as_posix() if rel else ""
    return "" if rel in ("", ".") else rel + "/"


@functools.lru_cache(maxsize=1)
def _cwd() -> Path:
    return Path.cwd().resolve()


def reset() -> None:
    """Forget the current directory (one run of the CLI, one current directory)."""
    _relative_folder.cache_clear()
    _cwd.cache_clear()


# --------------------------------------------------------------------------- findings


def _dumps(value, **options) -> str:
    """json.dumps, imported on first use: a check that prints text does not import json."""
    import json

    return json.dumps(value, **options)


def _diagnostic_json(d: Diagnostic) -> dict:
    return {
        "code": d.code,
        "severity": d.severity.label,
        "path": relative(d.path),
        "line": d.span.line + 1,
        "column": d.span.col + 1,
        "end_line": d.span.end_line + 1,
        "end_column": d.span.end_col + 1,
        "message": d.message,
        "environment": d.environment,
    }


def format_json(snapshot: Report, drift: dict | None = None) -> str:
    """`drift`: per environment state (by id), whether the models were compared with the
    migrations (cli.drift_status), as each environment's `drift`."""
    return _dumps(
        {
            "version": 1,
            "environments": [{**environment_data(s), **({"drift": drift[id(s)]} if drift and id(s) in drift else {})}
                             for s in snapshot.environments],
            "diagnostics": [_diagnostic_json(d) for d in snapshot.diagnostics],
        },
        indent=2,
    )


def _sarif_uri(path: Path) -> str:
    """SARIF wants a URI reference: percent-encoded (spaces, non-ASCII), `file:` when absolute."""
    shown = Path(relative(path))
    if shown.is_absolute():
        return shown.as_uri()
    return urllib.parse.quote(shown.as_posix())


def _sarif_rule(rule: Rule, level: dict) -> dict:
    """A SARIF reportingDescriptor: what code scanning shows next to a finding."""
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.rationale},
        "help": {"text": f"{rule.rationale}\n\nFix: {rule.fix}",
                 "markdown": f"{rule.rationale}\n\n**Fix:** {rule.fix}"},
        "helpUri": rule.doc_url,
        "defaultConfiguration": {"level": level[rule.severity]},
        "properties": {"tags": [FAMILIES[rule.family][0].lower(), *rule.dialects]},
    }


def format_sarif(snapshot: Report) -> str:
    level = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note", Severity.HINT: "note"}
    index = {code: n for n, code in enumerate(RULES)}  # in the registry's order: family by family
    rules = [_sarif_rule(rule, level) for rule in RULES.values()]
    results = []
    for d in snapshot.diagnostics:
        result: dict[str, object] = {
            "ruleId": d.code,
            "level": level[d.severity],
            "message": {"text": d.message},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": _sarif_uri(d.path)},
                    "region": {
                        "startLine": d.span.line + 1,
                        "startColumn": d.span.col + 1,
                        "endLine": d.span.end_line + 1,
                        "endColumn": d.span.end_col + 1,
                    },
                }
            }],
        }
        if d.code in index:
            result["ruleIndex"] = index[d.code]
        results.append(result)
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "migration-lsp",
                "version": __version__,
                "informationUri": HOME,
                "rules": rules,
            }},
            "results": results,
        }],
    }
    return _dumps(sarif, indent=2)


def _escape_github(value: str, is_property: bool = False) -> str:
    # GitHub's own escapes first (a line break inside an annotation is %0A, never a new line
    # that could start a command of its own), then any other control character shown escaped
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    value = printable(value)
    if is_property:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def format_github(snapshot: Report) -> str:
    kind = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice", Severity.HINT: "notice"}
    lines = []
    for d in snapshot.diagnostics:
        props = (
            f"file={_escape_github(relative(d.path), True)},line={d.span.line + 1},col={d.span.col + 1},"
            f"endLine={d.span.end_line + 1},endColumn={d.span.end_col + 1},title={d.code}"
        )
        lines.append(f"::{kind[d.severity]} {props}::{_escape_github(f'{d.code} {d.message}')}")
    return "\n".join(lines)


def format_gitlab(snapshot: Report) -> str:
    """GitLab's Code Quality report (a subset of Code Climate's): the merge request widget
    shows what a branch adds. The fingerprint leaves the line out, so a finding that only
    moved is not new; identical findings in one file are told apart by their order."""
    level = {Severity.ERROR: "major", Severity.WARNING: "minor", Severity.INFO: "info", Severity.HINT: "info"}
    issues: list[dict] = []
    seen: dict[tuple[str, str, str], int] = {}
    for d in snapshot.diagnostics:
        path = relative(d.path)
        key = (d.code, path, d.message)
        seen[key] = seen.get(key, 0) + 1
        fingerprint = hashlib.sha256("\0".join((*key, str(seen[key]))).encode()).hexdigest()[:32]
        issues.append({
            "description": f"{d.code} {d.message}",
            "check_name": f"migration-lsp/{d.code}",
            "fingerprint": fingerprint,
            "severity": level[d.severity],
            "location": {"path": path, "lines": {"begin": d.span.line + 1, "end": d.span.end_line + 1}},
        })
    return _dumps(issues, indent=2)


def format_text(snapshot: Report, colour: bool, drift: dict | None = None) -> str:
    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if colour else text

    tone = {Severity.ERROR: "31", Severity.WARNING: "33", Severity.INFO: "36", Severity.HINT: "36"}
    lines = []
    diagnostics = snapshot.diagnostics
    for d in diagnostics:
        where = f"{printable(relative(d.path))}:{d.span.line + 1}:{d.span.col + 1}:"
        lines.append(f"{paint(where, '1')} {paint(printable(d.code), tone[d.severity])} {printable(d.message)}")
    counts = {s: sum(1 for d in diagnostics if d.severity == s) for s in Severity}
    revisions = sum(len(s.summary.revision_ids) for s in snapshot.environments)
    envs = len(snapshot.environments)
    if diagnostics:
        parts = [f"{counts[s]} {s.label}{'s' if counts[s] != 1 else ''}" for s in Severity if counts[s]]
        summary = f"Found {len(diagnostics)} problem{'s' if len(diagnostics) != 1 else ''} ({', '.join(parts)})"
    elif snapshot.problems:  # exit 2 follows: never "passed"
        summary = f"No findings, but {len(snapshot.problems)} configuration problem{'s' if len(snapshot.problems) != 1 else ''} (on stderr)"
    else:
        summary = "All checks passed"
    summary += f" in {envs} environment{'s' if envs != 1 else ''}, {revisions} revision{'s' if revisions != 1 else ''}."
    if lines:
        lines.append("")
    lines.append(paint(summary, "1"))
    for state in snapshot.environments:  # said after the summary, never silently
        status = (drift or {}).get(id(state))
        if status and status["status"] == "not checked":
            lines.append(printable(f"{state.env.name}: models vs migrations: not checked ({status['reason']})"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the revision graph


def _node_label(state: EnvironmentState, rev: str) -> str:
    graph = state.graph
    marks = []
    if rev in graph.heads:
        marks.append("head")
    if rev in graph.bases:
        marks.append("base")
    if rev in graph.merge_points:
        marks.append("merge")
    label = f"{rev}: {graph.message(rev)}".strip().rstrip(":")
    return f"{label} ({', '.join(marks)})" if marks else label


def format_mermaid(snapshot: Snapshot) -> str:
    lines = ["flowchart BT"]
    for n, state in enumerate(snapshot.environments):
        graph = state.graph
        lines.append(f"  subgraph env{n}[\"{state.env.name}\"]")
        for rev in sorted(graph.by_id):
            text = printable(_node_label(state, rev)).replace('"', "'")
            lines.append(f'    r_{rev}["{text}"]')
        lines.append("  end")
        for rev in sorted(graph.by_id):
            for parent in graph.parents[rev]:
                lines.append(f"  r_{parent} --> r_{rev}")
            for dep in graph.dependencies[rev]:
                lines.append(f"  r_{dep} -.-> r_{rev}")
    return "\n".join(lines)


def format_dot(snapshot: Snapshot) -> str:
    lines = ["digraph revisions {", "  rankdir=BT;", "  node [shape=box];"]
    for n, state in enumerate(snapshot.environments):
        graph = state.graph
        lines.append(f"  subgraph cluster_{n} {{")
        lines.append(f"    label={_dumps(state.env.name)};")
        for rev in sorted(graph.by_id):
            style = ", style=bold" if rev in graph.heads else ""
            lines.append(f"    {_dumps(rev)} [label={_dumps(_node_label(state, rev))}{style}];")
        lines.append("  }")
        for rev in sorted(graph.by_id):
            for parent in graph.parents[rev]:
                lines.append(f"  {_dumps(parent)} -> {_dumps(rev)};")
            for dep in graph.dependencies[rev]:
                lines.append(f"  {_dumps(dep)} -> {_dumps(rev)} [style=dashed];")
    lines.append("}")
    return "\n".join(lines)


def environment_data(state: EnvironmentReport, path: Callable[[Path], str] = relative) -> dict:
    """An environment as the CLI's JSON shows it: what it is and the shape of its graph."""
    env, graph = state.env, state.summary
    return {
        "name": env.name,
        "config": path(env.config_path) if env.config_path else None,
        "script_location": path(env.script_location) if env.script_location else None,
        "version_locations": [path(p) for p in env.version_locations],
        "revisions": len(graph.revision_ids),
        "revision_ids": list(graph.revision_ids),
        "heads": list(graph.heads),
        "bases": list(graph.bases),
        "merge_points": list(graph.merge_points),
        "branch_points": sorted(graph.branch_points),
    }


def graph_data(snapshot: Snapshot, path: Callable[[Path], str] = relative, first_line: int = 1) -> dict:
    """`{version, environments: [environment_data + nodes]}`; a node is a revision: id,
    message, path and line of its `revision =`, down_revisions, depends_on, branch_labels.
    The CLI names files relative to the current directory with 1-based lines; the server
    passes file URIs and 0-based lines (LSP's conventions)."""
    envs = []
    for state in snapshot.environments:
        env = environment_data(state, path)
        graph = state.graph
        env["nodes"] = [
            {
                "id": rev,
                "message": graph.message(rev),
                "path": path(script.path),
                "line": (script.revision.span.line if script.revision else 0) + first_line,
                "down_revisions": list(graph.parents[rev]),
                "depends_on": list(graph.dependencies[rev]),
                "branch_labels": sorted(graph.inherited_labels[rev]),
            }
            for rev, script in sorted(graph.by_id.items())
        ]
        envs.append(env)
    return {"version": 1, "environments": envs}


def format_graph_json(snapshot: Snapshot) -> str:
    return _dumps(graph_data(snapshot), indent=2)
