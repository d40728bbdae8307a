"""One environment's state put together from its parts: the graph part (files parsed, revision
graph, G findings) and the schema part (D/S/M findings, the replay). The engine's builds use
it on the event loop (an edit patches the previous state), and `rebuilds.Rebuild` uses it in a
thread: after a base branch moved or a rescan that changed environments, every affected
environment is built anew there, and the engine only takes the result in on the loop.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import Diagnostic
from ..graph import RevisionGraph
from ..project import Environment
from ..scripts import MigrationScript
from .documents import Documents
from .graph_index import GraphIndex, Pairs
from .schema_pass import options_factory
from .snapshot import EnvironmentState

if TYPE_CHECKING:
    from ..compare import CompareOptions, Difference
    from ..replay import Replay

Key = tuple[Path, str]  # (workspace root, environment name)


@dataclass(frozen=True)
class GraphPart:
    """An environment's files as parsed now, its revision graph and the graph's findings."""

    env: Environment
    scripts: tuple[MigrationScript, ...]
    by_path: dict[Path, MigrationScript]
    graph: RevisionGraph
    found: tuple[Diagnostic, ...]  # the G findings, filtered
    pairs: Pairs  # (old, new) of the files changed since the previous state ...
    patched: bool = False  # ... when it was built from one with as many files (else: unknown)


@dataclass(frozen=True)
class SchemaPart:
    """The schema-based findings per file, with what reads the schema on demand."""

    by_path: dict[Path, tuple[Diagnostic, ...]]
    options: Callable[[], CompareOptions]
    replay_of: Callable[[], Replay] | None = None
    differences: tuple[Difference, ...] = ()
    partial: bool = False  # those of the last full pass (a quick build)
    dropped: set[Path] = field(default_factory=set)  # files whose kept entries an edit made stale


def graph_part(documents: Documents, graphs: GraphIndex, env: Environment, key: Key,
               previous: EnvironmentState | None) -> GraphPart:
    """The graph part, from the previous state's where files did not change."""
    scripts, positions = documents.scripts(env, previous)
    graph, changed_pairs = graphs.graph(scripts, previous, positions)
    pairs: Pairs
    patched = previous is not None and len(previous.scripts) == len(scripts)
    if previous is not None and patched:
        by_path = dict(previous.script_by_path)
        pairs = changed_pairs if changed_pairs is not None else [
            pair for pair in zip(previous.scripts, scripts) if pair[0] is not pair[1]]
        for old, new in pairs:
            by_path.pop(old.path, None)
            by_path[new.path] = new
    else:
        pairs = []
        by_path = {s.path: s for s in scripts}
    found = graphs.findings(key, env, graph, scripts, by_path, previous, changed_pairs)
    return GraphPart(env, scripts, by_path, graph, found, pairs, patched)


def quick_state(part: GraphPart, previous: EnvironmentState | None) -> EnvironmentState:
    """The graph part current, the schema part the previous state's minus the files edited
    since (what an editor needs on every keystroke; the full pass follows)."""
    kept = previous.schema_by_path if previous is not None else {}
    if previous is not None and part.patched:
        edited = {s.path for pair in part.pairs for s in pair}
    elif previous is not None:
        edited = set(part.by_path) - {s.path for s in previous.scripts if part.by_path.get(s.path) is s}
    else:
        edited = set()
    dropped = edited & kept.keys()
    if dropped:
        kept = {p: v for p, v in kept.items() if p not in edited}
    schema = SchemaPart(kept, options_factory(part.env), None,
                        previous.differences if previous is not None else (), True, dropped)
    return assemble(part, schema, previous)


def assemble(part: GraphPart, schema: SchemaPart, previous: EnvironmentState | None = None) -> EnvironmentState:
    """Per-file diagnostics: the schema part as is, merged with the graph part where a file has
    both. With `previous` (a quick build, whose schema part is the previous one's, or that
    minus the `dropped` files) only files whose entries can differ are rebuilt, and the state
    says which (delta)."""
    graph_by_path: dict[Path, list[Diagnostic]] = {}
    for d in part.found:
        graph_by_path.setdefault(d.path, []).append(d)
    schema_by_path, dropped = schema.by_path, schema.dropped
    delta = None
    if previous is not None and (previous.schema_by_path is schema_by_path or dropped):
        result = dict(previous.by_path)
        stale = set(previous.graph_paths) | set(graph_by_path) | dropped
        delta = (weakref.ref(previous), frozenset(stale))
    else:
        result = dict(schema_by_path)
        stale = set(graph_by_path)
    for path in stale:
        mine = graph_by_path.get(path, [])
        theirs = schema_by_path.get(path, ())
        if mine:
            result[path] = tuple(sorted([*mine, *theirs], key=Diagnostic.sort_key))
        elif theirs:
            result[path] = theirs
        else:
            result.pop(path, None)
    env = part.env
    same_files = previous is not None and previous.env.files == env.files
    file_index = previous.file_index if previous is not None and same_files else {
        path: n for n, path in enumerate(env.files)}
    return EnvironmentState(env, result, scripts=part.scripts, graph=part.graph, script_by_path=part.by_path,
                            file_index=file_index, replay_factory=schema.replay_of, options_factory=schema.options,
                            differences=schema.differences, schema_by_path=schema_by_path, partial=schema.partial,
                            graph_paths=tuple(graph_by_path), graph_diagnostics=part.found, delta=delta)

