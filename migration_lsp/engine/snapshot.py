"""What requests and reports read: immutable pictures of the engine's state.

`Snapshot` (the server's features, the CLI's commands) holds an `EnvironmentState` per
environment: its parsed files, graph, diagnostics per file and, made on first use, the
replayed schema. `Report` is what a check prints: per environment the graph's summary and
the diagnostics; an unchanged project's report comes from the cache without a graph
(`CachedEnvironment`), which is why a report is not a snapshot.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import Diagnostic
from ..graph import RevisionGraph
from ..project import ConfigProblem, Environment, Settings
from ..scripts import MigrationScript

if TYPE_CHECKING:
    from ..compare import CompareOptions, Difference
    from ..replay import Replay


@dataclass(frozen=True)
class GraphSummary:
    """What a report says about a graph (the CLI's JSON and text): kept in the cache next to
    an environment's findings, so an unchanged project is reported without building it."""

    revision_ids: tuple[str, ...]
    heads: tuple[str, ...]
    bases: tuple[str, ...]
    merge_points: tuple[str, ...]
    branch_points: tuple[str, ...]

    @classmethod
    def of(cls, graph: RevisionGraph) -> GraphSummary:
        return cls(*(tuple(sorted(x)) for x in (graph.by_id, graph.heads, graph.bases, graph.merge_points,
                                                 graph.branch_points)))


@dataclass(frozen=True, eq=False)
class EnvironmentReport:
    """One environment as a report shows it: every diagnostic, filtered (select/ignore,
    suppressions), per file and sorted within it, and the graph's summary."""

    env: Environment
    by_path: dict[Path, tuple[Diagnostic, ...]]

    @property
    def summary(self) -> GraphSummary:
        raise NotImplementedError

    @cached_property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """All of them, sorted as Diagnostic.sort_key sorts (path first)."""
        return tuple(d for path in sorted(self.by_path, key=str) for d in self.by_path[path])


@dataclass(frozen=True, eq=False, kw_only=True)
class CachedEnvironment(EnvironmentReport):
    """A report read back from the cache (the CLI's check of an unchanged project)."""

    cached_summary: GraphSummary

    @property
    def summary(self) -> GraphSummary:
        return self.cached_summary


@dataclass(frozen=True, eq=False, kw_only=True)
class EnvironmentState(EnvironmentReport):
    """One environment as the engine built it (what the features read)."""

    scripts: tuple[MigrationScript, ...]
    graph: RevisionGraph
    script_by_path: dict[Path, MigrationScript]
    file_index: dict[Path, int]  # position of each file in `scripts` (env.files order)
    # made on first use (the schema of every revision, computed on demand)
    replay_factory: Callable[[], Replay] | None = field(default=None, repr=False)
    options_factory: Callable[[], CompareOptions] | None = field(default=None, repr=False)
    # what autogenerate would emit for the models (empty when models are not loaded)
    differences: tuple[Difference, ...] = ()
    # the models / downgrade / safety part, filtered, per file
    schema_by_path: dict[Path, tuple[Diagnostic, ...]] = field(default_factory=dict)
    partial: bool = False  # schema diagnostics are from the last full pass (quick snapshot)
    graph_paths: tuple[Path, ...] = ()  # files with graph diagnostics (an edit re-merges them)
    graph_diagnostics: tuple[Diagnostic, ...] = ()  # the G part, filtered
    # what changed since the state this one was made from (a quick pass after an edit): that
    # state, weakly (no chain of old states stays alive), and the only files whose entries
    # in by_path can differ from its; None: any may differ. The server publishes only those.
    delta: tuple[weakref.ref[EnvironmentState], frozenset[Path]] | None = field(default=None, repr=False)

    @cached_property
    def summary(self) -> GraphSummary:
        return GraphSummary.of(self.graph)

    @cached_property
    def replay(self) -> Replay | None:
        return self.replay_factory() if self.replay_factory else None

    @cached_property
    def compare_options(self) -> CompareOptions:
        if self.options_factory:
            return self.options_factory()
        from ..compare import CompareOptions

        return CompareOptions()


def _merged(environments: Iterable[EnvironmentReport]) -> dict[Path, tuple[Diagnostic, ...]]:
    out: dict[Path, tuple[Diagnostic, ...]] = {}
    for state in environments:
        for path, found in state.by_path.items():
            out[path] = tuple(sorted(out[path] + found, key=Diagnostic.sort_key)) if path in out else found
    return out


@dataclass(frozen=True, eq=False)
class Report:
    """What a check prints (a Snapshot is one; the CLI's cached check makes only this)."""

    environments: tuple[EnvironmentReport, ...]
    problems: tuple[ConfigProblem, ...] = ()
    roots: tuple[Path, ...] = ()
    settings: Settings = field(default_factory=Settings)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        if len(self.environments) == 1:
            return list(self.environments[0].diagnostics)
        return sorted((d for s in self.environments for d in s.diagnostics), key=Diagnostic.sort_key)

    def diagnostics_by_path(self) -> dict[Path, tuple[Diagnostic, ...]]:
        """Per file, sorted; the tuples are shared with the environments' (do not mutate)."""
        if len(self.environments) == 1:
            return self.environments[0].by_path
        return _merged(self.environments)


@dataclass(frozen=True, eq=False)
class Snapshot(Report):
    environments: tuple[EnvironmentState, ...]

    def environment_of(self, path: Path) -> EnvironmentState | None:
        for state in self.environments:
            if path in state.script_by_path:
                return state
        return None

    def script(self, path: Path) -> MigrationScript | None:
        for state in self.environments:
            found = state.script_by_path.get(path)
            if found is not None:
                return found
        return None

    def files(self) -> Iterable[Path]:
        return [path for state in self.environments for path in state.script_by_path]
