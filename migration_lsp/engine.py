"""The engine both front ends share: mutable session state in, immutable snapshots out.

`Engine` holds what changes (discovered environments, open buffers, parsed files keyed by
content); `snapshot()` returns a read-only `Snapshot` that requests work from. An edit
re-parses one file and rebuilds only the environment that file belongs to; parsed files
are reused across snapshots as long as their text is the same.
"""

from __future__ import annotations

import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from io import BytesIO
from pathlib import Path

from .checks import apply_filters
from .checks.downgrade import check_downgrade
from .checks.graph import check_graph
from .checks.models import check_models
from .checks.safety import check_safety
from .compare import CompareOptions, Difference, options_from_env_py
from .core import Diagnostic
from .graph import RevisionGraph
from .models import MetadataSource, ModelTables, load_models, metadata_source
from .project import ConfigProblem, Discovery, Environment, Settings, discover
from .schema import Replay, RevisionSchema
from .scripts import MigrationScript, parse_script

MAX_FILE_BYTES = 20_000_000


def decode_source(data: bytes) -> tuple[str, str | None]:
    """Text of a Python file as Python would decode it, plus a problem when it cannot."""
    try:
        return data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"), None
    except UnicodeDecodeError:
        pass
    try:
        encoding, _ = tokenize.detect_encoding(BytesIO(data).readline)
        return data.decode(encoding), None
    except (SyntaxError, LookupError, UnicodeDecodeError) as exc:
        return data.decode("utf-8", "replace"), f"cannot decode file: {exc}"


def read_source(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return decode_source(path.read_bytes())[0]
    except OSError:
        return None


@dataclass(frozen=True, eq=False)
class EnvironmentState:
    env: Environment
    scripts: tuple[MigrationScript, ...]
    graph: RevisionGraph
    diagnostics: tuple[Diagnostic, ...]
    replay: Replay | None = None
    compare_options: CompareOptions = field(default_factory=CompareOptions)
    # what autogenerate would emit for the models (empty when models are not loaded)
    differences: tuple[Difference, ...] = ()
    schema_diagnostics: tuple[Diagnostic, ...] = ()  # the models / downgrade part, unfiltered
    partial: bool = False  # schema diagnostics are from the last full pass (quick snapshot)

    @cached_property
    def script_by_path(self) -> dict[Path, MigrationScript]:
        return {s.path: s for s in self.scripts}


@dataclass(frozen=True, eq=False)
class Snapshot:
    environments: tuple[EnvironmentState, ...]
    problems: tuple[ConfigProblem, ...] = ()
    roots: tuple[Path, ...] = ()
    settings: Settings = field(default_factory=Settings)

    @cached_property
    def _by_path(self) -> dict[Path, EnvironmentState]:
        return {s.path: state for state in self.environments for s in state.scripts}

    def environment_of(self, path: Path) -> EnvironmentState | None:
        return self._by_path.get(path)

    def script(self, path: Path) -> MigrationScript | None:
        state = self._by_path.get(path)
        return state.script_by_path.get(path) if state else None

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return sorted((d for s in self.environments for d in s.diagnostics), key=Diagnostic.sort_key)

    def diagnostics_by_path(self) -> dict[Path, list[Diagnostic]]:
        out: dict[Path, list[Diagnostic]] = {}
        for state in self.environments:
            for d in state.diagnostics:
                out.setdefault(d.path, []).append(d)
        return out

    def files(self) -> Iterable[Path]:
        return self._by_path.keys()


def _outermost(roots: Iterable[Path]) -> tuple[Path, ...]:
    """Roots without repeats and without those inside another root: discovery under the outer
    one already finds everything below, and a second discovery would report it twice."""
    unique = list(dict.fromkeys(roots))
    return tuple(r for r in unique if not any(o != r and r.is_relative_to(o) for o in unique))


class Engine:
    """Session state for one or more workspace roots."""

    UNTRUSTED = "the workspace is not trusted (no project code is run)"

    def __init__(self, roots: Iterable[Path], overrides: dict | None = None, trusted: bool = True,
                 untrusted_reason: str = UNTRUSTED) -> None:
        self.roots = _outermost(Path(r).resolve() for r in roots)
        self.overrides = dict(overrides or {})
        # project code (the models) may run, in a child process, only when trusted
        self.trusted = trusted
        self.untrusted_reason = untrusted_reason
        self.models: dict[tuple[Path, str], ModelTables] = {}
        self._replays: dict[tuple[Path, str], Replay] = {}
        self._downgrade_cache: dict[MigrationScript, tuple[RevisionSchema, str | None, list[Diagnostic]]] = {}
        self.buffers: dict[Path, str] = {}  # open documents: their text wins over disk
        self._parsed: dict[Path, MigrationScript] = {}
        self._states: dict[tuple[Path, str], EnvironmentState] = {}
        self._dirty: set[Path] = set()
        self._snapshot: Snapshot | None = None
        self._snapshot_partial = False
        self.discoveries: tuple[Discovery, ...] = ()
        self.rescan()

    # ---------------------------------------------------------------- changes

    def rescan(self, overrides: dict | None = None) -> None:
        """Discover environments again (new config, created or deleted files)."""
        if overrides is not None:
            self.overrides = dict(overrides)
        self.discoveries = tuple(discover(root, self.overrides) for root in self.roots)
        self._states.clear()
        self._snapshot = None

    def set_buffer(self, path: Path, text: str) -> None:
        path = path.resolve()
        text = text[1:] if text.startswith("\ufeff") else text  # a BOM, as Python reads files
        if self.buffers.get(path) != text:
            self.buffers[path] = text
            self._touch(path)

    def close_buffer(self, path: Path) -> None:
        path = path.resolve()
        if self.buffers.pop(path, None) is not None:
            self._touch(path)

    def file_changed(self, path: Path) -> None:
        """The file changed on disk (saved, or edited by another program)."""
        self._touch(path.resolve())

    def _touch(self, path: Path) -> None:
        self._parsed.pop(path, None)
        self._dirty.add(path)
        self._snapshot = None

    def tracks(self, path: Path) -> bool:
        """Is this file one of the discovered revision files (not just inside a location)?"""
        path = path.resolve()
        return any(path in env.files for d in self.discoveries for env in d.environments)

    def knows(self, path: Path) -> bool:
        path = path.resolve()
        return any(d.environment_of(path) for d in self.discoveries)

    # ---------------------------------------------------------------- reading

    def _script(self, path: Path) -> MigrationScript:
        cached = self._parsed.get(path)
        if cached is not None:
            return cached
        text = self.buffers.get(path)
        if text is None:
            text = read_source(path)
        script = parse_script(path, text if text is not None else "")
        if text is None:
            script = MigrationScript(path=path, text="", error="file cannot be read", functions={})
        self._parsed[path] = script
        return script

    def snapshot(self, quick: bool = False) -> Snapshot:
        """The current picture. `quick`: the graph and its diagnostics are current, the
        schema-based ones (models, downgrades) are those of the last full pass, minus the
        files edited since — what an editor needs on every keystroke; a full pass follows
        when typing pauses."""
        if self._snapshot is not None and (quick or not self._snapshot_partial):
            return self._snapshot
        dirty, self._dirty = self._dirty, set()
        states: list[EnvironmentState] = []
        problems: list[ConfigProblem] = []
        for discovery in self.discoveries:
            problems.extend(discovery.problems)
            for env in discovery.environments:
                env = self._with_new_buffers(env)
                key = (discovery.root, env.name)
                state = self._states.get(key)
                changed = state is None or state.env.files != env.files or any(p in dirty for p in env.files)
                if changed or (state.partial and not quick):
                    state = self._build(env, key, state, quick)
                    self._states[key] = state
                states.append(state)
        settings = self.discoveries[0].settings if self.discoveries else Settings()
        self._snapshot = Snapshot(tuple(states), tuple(problems), self.roots, settings)
        self._snapshot_partial = any(s.partial for s in states)
        return self._snapshot

    def _with_new_buffers(self, env: Environment) -> Environment:
        """Open buffers inside a version location that discovery has not seen yet (a file
        just created by the editor) belong to that environment."""
        extra = tuple(
            p for p in self.buffers
            if p.suffix == ".py" and p not in env.files and env.contains(p)
            and all(p not in e.files for d in self.discoveries for e in d.environments)
        )
        return replace(env, files=env.files + extra) if extra else env

    def _build(self, env: Environment, key: tuple[Path, str], previous: EnvironmentState | None,
               quick: bool) -> EnvironmentState:
        scripts = tuple(self._script(p) for p in env.files)
        if previous is not None and previous.scripts == scripts:
            graph = previous.graph  # same parsed files: same graph
        else:
            graph = RevisionGraph(scripts)
        by_path = {s.path: s for s in scripts}
        graph_diagnostics = check_graph(graph, env.name)
        options = self._compare_options(env)
        if quick:
            edited = {s.path for s in scripts} - {s.path for s in previous.scripts if by_path.get(s.path) is s} \
                if previous else set(by_path)
            kept = tuple(d for d in previous.schema_diagnostics if d.path not in edited) if previous else ()
            return self._state(env, scripts, graph, graph_diagnostics, kept, None, options, (), True)
        replay = Replay(graph, self._replays.get(key))
        self._replays[key] = replay
        schema_diagnostics: list[Diagnostic] = []
        for rev, script in graph.by_id.items():
            schema_diagnostics.extend(self._downgrade(script, replay, rev, options, env.name))
        self._downgrade_cache = {s: v for s, v in self._downgrade_cache.items() if s.path not in by_path
                                 or by_path[s.path] is s}
        differences: list[Difference] = []
        if graph.by_id and not graph.cycles():
            model_diags, differences = check_models(
                replay.at_heads(), self.models.get(key), self.metadata_source(env), options,
                None if self.trusted else self.untrusted_reason, env.name,
                env.config_path or scripts[0].path)
            schema_diagnostics.extend(model_diags)
        return self._state(env, scripts, graph, graph_diagnostics, tuple(schema_diagnostics), replay, options,
                           tuple(differences), False)

    def _state(self, env, scripts, graph, graph_diagnostics, schema_diagnostics, replay, options, differences,
               partial) -> EnvironmentState:
        by_path = {s.path: s for s in scripts}
        diagnostics = apply_filters(list(graph_diagnostics) + list(schema_diagnostics), env.settings, by_path)
        return EnvironmentState(env, scripts, graph, tuple(sorted(diagnostics, key=Diagnostic.sort_key)),
                                replay, options, differences, schema_diagnostics, partial)

    def _downgrade(self, script: MigrationScript, replay: Replay, rev: str, options: CompareOptions,
                   env_name: str) -> list[Diagnostic]:
        """D001–D003 and S001–S005 for one revision, reused while its text, its history
        and the dialect are unchanged."""
        schema = replay.revision(rev)
        cached = self._downgrade_cache.get(script)
        if cached is not None and cached[0] is schema and cached[1] == options.dialect:
            return cached[2]
        found = check_downgrade(script, schema, options, env_name) + check_safety(
            script, schema, options.dialect, env_name)
        self._downgrade_cache[script] = (schema, options.dialect, found)
        return found

    def _compare_options(self, env: Environment) -> CompareOptions:
        text = ""
        if env.env_py is not None:
            text = read_source(env.env_py) or ""
        return options_from_env_py(text, env.dialect, env.settings.exclude_tables)

    # ---------------------------------------------------------------- models

    def metadata_source(self, env: Environment) -> MetadataSource:
        return metadata_source(env)

    def environments(self) -> list[tuple[tuple[Path, str], Environment]]:
        return [((d.root, env.name), env) for d in self.discoveries for env in d.environments]

    def model_jobs(self) -> list[tuple[tuple[Path, str], Environment, MetadataSource]]:
        """What loading the models means for each environment (empty when untrusted)."""
        if not self.trusted:
            return []
        return [(key, env, self.metadata_source(env)) for key, env in self.environments()]

    def set_models(self, key: tuple[Path, str], models: ModelTables) -> None:
        self.models[key] = models
        self._states.pop(key, None)
        self._snapshot = None

    def load_models(self) -> None:
        """Load every environment's models now (blocking; the server runs the jobs in a
        thread and hands the results back with set_models)."""
        for key, env, source in self.model_jobs():
            self.set_models(key, load_models(env, source))

    def model_files(self) -> set[Path]:
        return {f for m in self.models.values() for f in m.files}
