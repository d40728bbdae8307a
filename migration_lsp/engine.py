"""The engine both front ends share: mutable session state in, immutable snapshots out.

`Engine` holds what changes (discovered environments, open buffers, parsed files keyed by
content); `snapshot()` returns a read-only `Snapshot` that requests work from. An edit
re-parses one file and rebuilds only the environment that file belongs to; parsed files
are reused across snapshots as long as their text is the same.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import pickle
import threading
import tokenize
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import Store, digest
from .checks import apply_filters
from .checks.git import check_git, explain_incoming
from .checks.graph import check_graph, check_script, closest_ids
from .core import Diagnostic, Severity, Span
from .gitbase import Base, Tracker
from .graph import RevisionGraph
from . import project
from .project import ConfigProblem, Discovery, Environment, Settings, discover, walk
from .scripts import MigrationScript, parse_script

log = logging.getLogger("migration_lsp")

if TYPE_CHECKING:  # the schema stages import SQLAlchemy and Alembic (0.4 s): loaded on first
    # use, so a check whose results all come from the cache never pays for them
    from .compare import CompareOptions, Difference
    from .models import MetadataSource, ModelTables
    from .schema import Replay

MAX_FILE_BYTES = project.MAX_FILE_BYTES
KEY_STEP = 500  # revisions keyed between two yields of the full pass
PATCH_LIMIT = 4  # files changed at once that are patched into the graph rather than rebuilt


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


class _DiscoveryUnpickler(pickle.Unpickler):
    """Discovery records come back from the cache with only the project's own record
    classes (not Settings: those are never cached) and paths allowed: a cache file cannot
    make loading run anything else, nor choose the Python or the models that run."""

    def find_class(self, module: str, name: str):
        if (module == Environment.__module__ and name in ("Discovery", "Environment", "ConfigProblem")) or (
                module == "pathlib" and name in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not expected in a cached discovery")


def _bare_discovery(data: bytes, root: Path) -> Discovery | None:
    """A cached discovery record, checked field by field (None: not one of ours)."""
    def paths(value) -> bool:
        return isinstance(value, tuple) and all(isinstance(p, Path) for p in value)

    def optional(value, kind) -> bool:
        return value is None or isinstance(value, kind)

    try:
        found = _DiscoveryUnpickler(BytesIO(data)).load()
        if not (type(found) is Discovery and found.root == root and found.settings is None
                and paths(found.outside) and isinstance(found.environments, tuple)
                and isinstance(found.problems, tuple)):
            return None
        if not all(type(p) is ConfigProblem and isinstance(p.path, Path) and isinstance(p.message, str)
                   for p in found.problems):
            return None
        for env in found.environments:
            if not (type(env) is Environment and isinstance(env.name, str) and env.root == root
                    and optional(env.config_path, Path) and optional(env.script_location, Path)
                    and paths(env.version_locations) and env.files == () and isinstance(env.file_template, str)
                    and type(env.truncate_slug_length) is int and optional(env.timezone, str)
                    and env.dialect is None and env.settings is None and optional(env.config_dialect, str)):
                return None
    except Exception:  # not a record of this version: no cache
        return None
    return found


def graph_only(settings: Settings) -> bool:
    """Only graph rules (G...) are selected: no schema replay, no models (a pre-commit
    "one head" check reads headers only)."""
    select = [s.upper() for s in settings.select]
    return bool(select) and "ALL" not in select and all(s.startswith("G") for s in select)


def may_enable(settings: Settings, family: str) -> bool:
    """Could any code starting with `family` ("M") pass select / ignore?"""
    select = [s.upper() for s in settings.select]
    if select and "ALL" not in select and not any(s.startswith(family) or family.startswith(s) for s in select):
        return False
    return not any(family.startswith(s.upper()) for s in settings.ignore)


def read_file(path: Path) -> tuple[bytes | None, str | None]:
    """(the file's bytes, None) or (None, why it is not read: too large, not a regular file,
    the OS's error). Regular files only, never blocking (project.read_file)."""
    try:
        return project.read_file(path, MAX_FILE_BYTES), None
    except project.SkippedFile as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"file cannot be read ({exc.strerror})" if exc.strerror else "file cannot be read"


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes (None: unreadable, not a regular file, or too large to be a migration)."""
    return read_file(path)[0]


def read_source(path: Path) -> str | None:
    data = read_bytes(path)
    return decode_source(data)[0] if data is not None else None


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
class EnvironmentState:
    env: Environment
    scripts: tuple[MigrationScript, ...]
    # None only in a state rebuilt from the environment memo (Engine(memo=True), the CLI's
    # check, which reads nothing but `summary` and the diagnostics)
    graph: RevisionGraph | None
    # every diagnostic of this environment, filtered (select/ignore, suppressions), per file
    # and sorted within it: an edit rebuilds the entries of the files it affects only
    by_path: dict[Path, tuple[Diagnostic, ...]]
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
    memo_summary: GraphSummary | None = None

    @cached_property
    def summary(self) -> GraphSummary:
        return self.memo_summary or GraphSummary.of(self.graph)  # type: ignore[arg-type]

    @cached_property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """All of them, sorted as Diagnostic.sort_key sorts (path first)."""
        return tuple(d for path in sorted(self.by_path, key=str) for d in self.by_path[path])

    @cached_property
    def file_index(self) -> dict[Path, int]:
        """Position of each file in `scripts` (env.files order)."""
        return {path: n for n, path in enumerate(self.env.files)}

    @cached_property
    def script_by_path(self) -> dict[Path, MigrationScript]:
        return {s.path: s for s in self.scripts}  # (the engine hands over the one it built)

    @cached_property
    def replay(self) -> Replay | None:
        return self.replay_factory() if self.replay_factory else None

    @cached_property
    def compare_options(self) -> CompareOptions:
        if self.options_factory:
            return self.options_factory()
        from .compare import CompareOptions

        return CompareOptions()


@dataclass(frozen=True, eq=False)
class Snapshot:
    environments: tuple[EnvironmentState, ...]
    problems: tuple[ConfigProblem, ...] = ()
    roots: tuple[Path, ...] = ()
    settings: Settings = field(default_factory=Settings)

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

    @property
    def diagnostics(self) -> list[Diagnostic]:
        if len(self.environments) == 1:
            return list(self.environments[0].diagnostics)
        return sorted((d for s in self.environments for d in s.diagnostics), key=Diagnostic.sort_key)

    def diagnostics_by_path(self) -> dict[Path, tuple[Diagnostic, ...]]:
        """Per file, sorted; the tuples are shared with the environments' (do not mutate)."""
        if len(self.environments) == 1:
            return self.environments[0].by_path
        out: dict[Path, tuple[Diagnostic, ...]] = {}
        for state in self.environments:
            for path, found in state.by_path.items():
                out[path] = tuple(sorted(out[path] + found, key=Diagnostic.sort_key)) if path in out else found
        return out

    def files(self) -> Iterable[Path]:
        return [path for state in self.environments for path in state.script_by_path]


def _outermost(roots: Iterable[Path]) -> tuple[Path, ...]:
    """Roots without repeats and without those inside another root: discovery under the outer
    one already finds everything below, and a second discovery would report it twice."""
    unique = list(dict.fromkeys(roots))
    return tuple(r for r in unique if not any(o != r and r.is_relative_to(o) for o in unique))


class Engine:
    """Session state for one or more workspace roots."""

    UNTRUSTED = "the workspace is not trusted (no project code is run)"

    def __init__(self, roots: Iterable[Path], overrides: dict | None = None, trusted: bool = True,
                 untrusted_reason: str = UNTRUSTED, cache: bool = True, memo: bool = False) -> None:
        self.roots = _outermost(Path(r).resolve() for r in roots)
        self.overrides = dict(overrides or {})
        # project code (the models) may run, in a child process, only when trusted
        self.trusted = trusted
        self.untrusted_reason = untrusted_reason
        self.models: dict[tuple[Path, str], ModelTables] = {}
        self._replays: dict[tuple[Path, str], Replay] = {}
        # D/S results by revision key (see _revision_keys): in memory, and on disk in `stores`
        self._schema_results: dict[tuple[Path, str], dict[str, list[Diagnostic]]] = {}
        self.stores: dict[Path, Store] = {root: Store.for_root(root) if cache else Store(None)
                                          for root in self.roots}
        # a whole environment's findings cached under the digest of all its files (for a
        # one-shot check: an unchanged project is answered without parsing or building it)
        self.memo = memo
        self._raw: dict[Path, tuple[bytes | None, str | None]] = {}  # read for the memo key, not parsed yet
        self.buffers: dict[Path, str] = {}  # open documents: their text wins over disk
        self._parsed: dict[Path, MigrationScript] = {}
        self._digests: dict[MigrationScript, str] = {}
        # G009 per file, with the scripts they were found in, per environment
        self._doc_findings: dict[tuple[Path, str], tuple[tuple | None, dict | None]] = {}
        # per environment: filtered + sorted D/S results by revision key, and the settings used
        self._filtered: dict[tuple[Path, str], dict[str, tuple[Diagnostic, ...]]] = {}
        self._filtered_settings: dict[tuple[Path, str], Settings] = {}
        # M001–M004 of the last few (head revision keys, environment, models) seen, per environment
        self._model_results: dict[tuple[Path, str], list[tuple[tuple, tuple]]] = {}
        # replay results by revision key, per environment (see _replay_factory)
        self._replay_memo: dict[tuple[Path, str], dict[str, tuple]] = {}
        self._states: dict[tuple[Path, str], EnvironmentState] = {}
        self._dirty: set[Path] = set()
        self.computed_revisions = 0  # D/S results not found in memory or in the cache (tests read it)
        self._generation = 0  # bumped by every change: a running pass knows it is stale
        self._snapshot: Snapshot | None = None
        self._snapshot_partial = False
        self.discoveries: tuple[Discovery, ...] = ()
        self.git = Tracker(self.overrides)  # the base branch of each root (G011–G013)
        self._git_lock = threading.RLock()  # poll_git() runs in the server's threads
        self._git_memo: dict[tuple[Path, str], dict] = {}
        self.rescan()

    # ---------------------------------------------------------------- changes

    def rescan(self, overrides: dict | None = None) -> None:
        """Discover environments again (new config, created or deleted files)."""
        if overrides is not None:
            self.overrides = dict(overrides)
            with self._git_lock:
                self.git.overrides = self.overrides
                self.git.refs.clear()  # (a new base-branch setting: look again)
        self.discoveries = tuple(self._discover(root) for root in self.roots)
        self._generation += 1
        self._states.clear()
        self._snapshot = None

    def _discover(self, root: Path) -> Discovery:
        """discover(), reused from the cache while no file it looked at has changed. The
        cache holds the discovery without settings: those are read from the config files
        on every run (they choose the Python and the models that run)."""
        scan = walk(root)
        store = self.stores[root]
        if not store.enabled:
            return discover(root, self.overrides, scan)
        key = digest(repr(scan.fingerprint()))
        paths = {str(p): p for ps in scan.py_by_dir.values() for p in ps}
        cached = store.get("discovery", key)
        found = self._cached_discovery(cached, root.resolve(), paths) if cached is not None else None
        if found is not None:
            scan.report_skipped()
            return project.settle(found, self.overrides)
        bare = project.discover_bare(root, scan)
        outside = project.walk_locations(bare.outside).fingerprint() if bare.outside else []
        store.put("discovery", key, (
            pickle.dumps(replace(bare, environments=tuple(replace(env, files=()) for env in bare.environments))),
            [[str(f) for f in env.files] for env in bare.environments], outside))
        return project.settle(bare, self.overrides)

    @staticmethod
    def _cached_discovery(cached, root: Path, paths: dict[str, Path]) -> Discovery | None:
        """The bare discovery of a cache entry (None: a miss: not of the expected shape, or a
        configured location outside the walk changed)."""
        try:
            data, files, outside = cached
            if not (isinstance(data, bytes) and isinstance(files, list) and isinstance(outside, list)
                    and all(isinstance(fs, list) and all(isinstance(f, str) for f in fs) for fs in files)):
                return None
        except (TypeError, ValueError):
            return None
        found = _bare_discovery(data, root)
        if found is None or len(files) != len(found.environments):
            return None
        if found.outside and project.walk_locations(found.outside).fingerprint() != outside:
            return None
        if any(f not in paths and not any(f.startswith(str(loc) + os.sep) for loc in found.outside)
               for fs in files for f in fs):
            return None
        return replace(found, environments=tuple(
            replace(env, files=tuple(paths.get(f) or Path(f) for f in env_files))
            for env, env_files in zip(found.environments, files)))

    def warm_up(self) -> None:
        """Precompute what the first keystroke would otherwise pay for (loop check of the
        graph, file positions, the did-you-mean index): the server calls it after indexing."""
        for state in self._states.values():
            state.graph.cycles(include_dependencies=True)
            state.graph._position  # noqa: B018 (a cached property)
            closest_ids(state.graph, "")

    def save_cache(self) -> None:
        """Write the persistent cache (the CLI after a check, the server now and then)."""
        for store in self.stores.values():
            store.save()

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
        self._generation += 1
        self._parsed.pop(path, None)
        self._dirty.add(path)
        self._snapshot = None

    def tracks(self, path: Path) -> bool:
        """Is this file one of the discovered revision files (not just inside a location)?"""
        path = path.resolve()
        return any(path in env.file_set for d in self.discoveries for env in d.environments)

    def knows(self, path: Path) -> bool:
        path = path.resolve()
        return any(d.environment_of(path) for d in self.discoveries)

    # ---------------------------------------------------------------- git

    def refresh_git(self) -> bool:
        """Poll HEAD and the base refs (a few stat calls; git runs only when one moved).
        True when a base moved: every environment is then checked again. The server runs
        the two halves apart: poll_git() in a thread, base_moved() on its event loop."""
        moved = self.poll_git()
        if moved:
            self.base_moved()
        return moved

    def poll_git(self) -> bool:
        """The git half of refresh_git(), safe to run in another thread: it touches only the
        git tracker (under its lock); when a base moved, the bases of every environment are
        read here too, so that the rebuild on the event loop finds them ready."""
        with self._git_lock:
            if not self.git.refresh(self.roots):
                return False
            for (root, name), env in self.environments():
                state = self._states.get((root, name))
                try:
                    self.git.base(root, env, state.scripts if state is not None else ())
                except Exception:  # said when the rebuild asks again (base())
                    pass
            return True

    def base_moved(self) -> None:
        """A base branch moved (poll_git() said so): every environment is checked again."""
        self._generation += 1
        self._states.clear()
        self._snapshot = None

    def base(self, root: Path, env: Environment, here: RevisionGraph | None = None) -> Base | None:
        """The base branch's versions of this environment (None: no repository, no base);
        `here`: the graph whose parsed files the base reuses where its text is the same."""
        with self._git_lock:
            if any(r not in self.git.refs for r in self.roots):
                self.git.refresh(self.roots)
            try:
                return self.git.base(root, env, here.scripts if here is not None else ())
            except Exception:  # a bug of ours: the git checks go silent, the rest is served
                log.exception("migration-lsp: reading the base branch failed (please report this)")
                return None

    def git_status(self, snapshot: Snapshot) -> dict:
        """`{environments: [{name, heads, base: {ref, ahead, behind} | null, note}]}`: what
        the editor's status bar shows ("1 head · origin/main +2"). `ahead`: revisions here
        and not on the base; `behind`: revisions the base added since the merge base that
        are not here; `note`: why there is no base (no repository, no branch, shallow)."""
        out = []
        for state in snapshot.environments:
            root = state.env.root
            base = self.base(root, state.env, state.graph) if state.graph is not None else None
            entry: dict = {"name": state.env.name, "heads": list(state.summary.heads), "base": None}
            if base is not None:
                here, tip, fork = state.graph.by_id, base.tip.graph.by_id, base.fork.graph.by_id  # type: ignore[union-attr]
                entry["base"] = {"ref": base.ref.name, "ahead": sum(1 for r in here if r not in tip),
                                 "behind": sum(1 for r in tip if r not in fork and r not in here)}
            else:
                entry["note"] = self.git.errors.get(root) or self.git.notes.get(root) or ""
            out.append(entry)
        return {"environments": out}

    def _git_key(self, root: Path) -> str:
        with self._git_lock:
            if root not in self.git.refs:
                self.git.refresh(self.roots)
            return self.git.key(root)

    def _git_findings(self, key: tuple[Path, str], env: Environment, graph: RevisionGraph, found: list[Diagnostic],
                      previous: EnvironmentState | None = None, changed: list | None = None) -> list[Diagnostic]:
        """The graph findings `found` plus G011–G013 against the base branch (a G002 on an
        id the base has says so); after a patch of the previous graph (`changed`: its (old,
        new) pairs) only the edited files are looked at."""
        base = self.base(key[0], env, graph)
        if base is None:
            return found
        try:
            return explain_incoming(found, graph, base) + check_git(
                graph, base, env.name, self._git_memo.setdefault(key, {}),
                (previous.graph if previous is not None else None, changed))
        except Exception:
            log.exception("migration-lsp: the base-branch checks failed (please report this)")
            return found

    # ---------------------------------------------------------------- reading

    def _script(self, path: Path) -> MigrationScript:
        cached = self._parsed.get(path)
        if cached is not None:
            return cached
        text = self.buffers.get(path)
        why = None
        if text is None:
            raw, why = self._raw.pop(path) if path in self._raw else read_file(path)
            text = decode_source(raw)[0] if raw is not None else None
        script = parse_script(path, text if text is not None else "")
        if text is None:  # G010 says why: too large, not a regular file, unreadable
            script = MigrationScript(path=path, text="", error=why or "file cannot be read", functions={})
        self._parsed[path] = script
        return script

    def snapshot(self, quick: bool = False) -> Snapshot:
        """The current picture. `quick`: the graph and its diagnostics are current, the
        schema-based ones (models, downgrades) are those of the last full pass, minus the
        files edited since — what an editor needs on every keystroke; a full pass follows
        when typing pauses."""
        for _ in self.snapshot_steps(quick):
            pass
        assert self._snapshot is not None
        return self._snapshot

    def snapshot_steps(self, quick: bool = False) -> Iterator[None]:
        """snapshot() in small steps: it yields between revisions of the schema pass, so the
        server can answer requests in between; an edit made meanwhile abandons it (what it
        computed so far stays cached by revision key, so the next pass resumes, not restarts)."""
        if self._snapshot is not None and (quick or not self._snapshot_partial):
            return
        generation = self._generation
        dirty = set(self._dirty)
        states: list[EnvironmentState] = []
        built: dict[tuple[Path, str], EnvironmentState] = {}
        problems: list[ConfigProblem] = []
        for discovery in self.discoveries:
            problems.extend(discovery.problems)
            for env in discovery.environments:
                env = self._with_new_buffers(env)
                key = (discovery.root, env.name)
                state = self._states.get(key)
                changed = state is None or state.env.files != env.files or any(p in env.file_set for p in dirty)
                memo_key = None
                if self.memo and not quick and state is None and not self.trusted and not self.buffers:
                    memo_key, state = self._from_memo(env, key)
                    changed = state is None
                if changed or (state.partial and not quick):
                    state = yield from self._build(env, key, state, quick, generation)
                    if memo_key is not None and state is not None:
                        self._to_memo(memo_key, state)
                    if self._generation != generation:
                        return  # edited meanwhile: this picture is already stale
                    built[key] = state
                states.append(state)
        self._states.update(built)
        self._dirty -= dirty
        settings = self.discoveries[0].settings if self.discoveries else Settings()
        self._snapshot = Snapshot(tuple(states), tuple(problems), self.roots, settings)
        self._snapshot_partial = any(s.partial for s in states)

    def _from_memo(self, env: Environment, key: tuple[Path, str]) -> tuple[str | None, EnvironmentState | None]:
        """(memo key, the state rebuilt from the memo or None). The key covers every input of
        the findings: each file's path and content, the environment (settings included), the
        tool's and its libraries' versions (the store's own key), why models are off."""
        store = self.stores.get(key[0])
        if store is None or not store.enabled:
            return None, None
        parts = [repr(env), self.untrusted_reason, self._environment_salt(env), self._git_key(key[0])]
        for path in env.files:
            raw, why = self._raw[path] = read_file(path)
            parts += (str(path), digest(raw) if raw is not None else f"-{why}")
        memo_key = digest(*parts)
        cached = store.get("environment", memo_key)
        if cached is None:
            return memo_key, None
        try:  # any entry not of the shape _to_memo writes is a miss, never an exception
            summary, found = cached
            paths = {str(p): p for p in env.files}
            if not (isinstance(summary, tuple) and len(summary) == 5 and isinstance(found, list) and all(
                    isinstance(ids, tuple) and all(isinstance(i, str) for i in ids) for ids in summary)):
                return memo_key, None
            by_path = {}
            for p, value in found:
                path = (paths.get(p) or Path(p)) if isinstance(p, str) else None
                decoded = _decode_diagnostics(value, path) if path is not None else None
                if decoded is None:
                    return memo_key, None
                by_path[path] = tuple(decoded)
            state = EnvironmentState(env, (), None, by_path, memo_summary=GraphSummary(*summary))
        except (TypeError, ValueError):
            return memo_key, None
        self._raw.clear()  # not needed: nothing will be parsed
        return memo_key, state

    def _to_memo(self, memo_key: str, state: EnvironmentState) -> None:
        store = self.stores.get(state.env.root) or next(iter(self.stores.values()), None)
        if store is None:
            return
        found = []
        for path, diagnostics in state.by_path.items():
            value = _encode_diagnostics(list(diagnostics), path)
            if value is None:
                return  # something not plain: not remembered
            found.append((str(path), value))
        summary = state.summary
        store.put("environment", memo_key, ((summary.revision_ids, summary.heads, summary.bases,
                                             summary.merge_points, summary.branch_points), found))

    def _with_new_buffers(self, env: Environment) -> Environment:
        """Open buffers inside a version location that discovery has not seen yet (a file
        just created by the editor) belong to that environment."""
        extra = tuple(
            p for p in self.buffers
            if p.suffix == ".py" and p not in env.file_set and env.contains(p)
            and all(p not in e.file_set for d in self.discoveries for e in d.environments)
        )
        return replace(env, files=env.files + extra) if extra else env

    def _scripts(self, env: Environment, previous: EnvironmentState | None) -> tuple[MigrationScript, ...]:
        """The environment's parsed files: the previous state's, with those re-parsed since
        (an edit costs a lookup per changed file, not one per file)."""
        parsed = self._parsed
        if previous is None or previous.env.files != env.files:
            return tuple(parsed.get(p) or self._script(p) for p in env.files)
        scripts = previous.scripts
        stale = [i for p in self._dirty if (i := previous.file_index.get(p)) is not None
                 and parsed.get(p) is not scripts[i]]
        if not stale:
            return scripts
        fresh = list(scripts)
        for i in stale:
            fresh[i] = parsed.get(env.files[i]) or self._script(env.files[i])
        return tuple(fresh)

    def _docstring_findings(self, key: tuple[Path, str], env: Environment, graph: RevisionGraph,
                            scripts: tuple[MigrationScript, ...], previous: EnvironmentState | None,
                            changed: list[tuple[MigrationScript, MigrationScript]] | None) -> list[Diagnostic]:
        """G009 per file, kept per environment: after a patch of the previous state's graph
        (ids unchanged) only the edited files are checked again; otherwise every revision."""
        scripts_then, findings = self._doc_findings.get(key, (None, None))
        if findings is None or changed is None or previous is None or scripts_then is not previous.scripts:
            findings = {s.path: found for s in graph.by_id.values() if (found := check_script(s, env.name))}
        elif changed:
            findings = dict(findings)
            for old, new in changed:
                findings.pop(old.path, None)
                found = check_script(new, env.name)
                if found and graph.by_id.get(new.revision_id or "") is new:
                    findings[new.path] = found
        self._doc_findings[key] = (scripts, findings)
        return [d for found in findings.values() for d in found]

    @staticmethod
    def _graph(scripts: tuple[MigrationScript, ...], previous: EnvironmentState | None
               ) -> tuple[RevisionGraph, list[tuple[MigrationScript, MigrationScript]] | None]:
        """The previous graph when nothing changed, patched when a few files changed (with the
        (old, new) pairs), else built anew (None for the pairs)."""
        if previous is None or previous.graph is None or len(previous.scripts) != len(scripts):
            return RevisionGraph(scripts), None
        changed = [(old, new) for old, new in zip(previous.scripts, scripts) if old is not new]
        if len(changed) > PATCH_LIMIT:
            return RevisionGraph(scripts), None
        graph: RevisionGraph | None = previous.graph
        for old, new in changed:
            graph = graph.replacing(old, new) if graph is not None else None
        return (graph, changed) if graph is not None else (RevisionGraph(scripts), None)

    def _build(self, env: Environment, key: tuple[Path, str], previous: EnvironmentState | None,
               quick: bool, generation: int) -> Generator[None, None, EnvironmentState | None]:
        """One environment's state; a generator that yields after each revision it had to
        compute, and gives up (None) once an edit has made its work stale."""
        scripts = self._scripts(env, previous)
        graph, changed_pairs = self._graph(scripts, previous)
        if previous is not None and len(previous.scripts) == len(scripts):
            by_path = dict(previous.script_by_path)
            pairs = changed_pairs if changed_pairs is not None else [
                pair for pair in zip(previous.scripts, scripts) if pair[0] is not pair[1]]
            for old, new in pairs:
                by_path.pop(old.path, None)
                by_path[new.path] = new
        else:
            by_path = {s.path: s for s in scripts}
        if previous is not None and previous.graph is graph and previous.env == env:
            graph_found = previous.graph_diagnostics  # same graph, same settings: same findings
        else:
            found = check_graph(graph, env.name, None) + self._docstring_findings(key, env, graph, scripts,
                                                                                     previous, changed_pairs)
            found = self._git_findings(key, env, graph, found, previous, changed_pairs)
            graph_found = tuple(apply_filters(found, env.settings, by_path))
        options = self._options_factory(env)
        if quick:
            kept = previous.schema_by_path if previous is not None else {}
            if previous is not None and len(previous.scripts) == len(scripts):
                edited = {s.path for pair in pairs for s in pair}
            elif previous is not None:
                edited = set(by_path) - {s.path for s in previous.scripts if by_path.get(s.path) is s}
            else:
                edited = set()
            if edited & kept.keys():
                kept = {p: v for p, v in kept.items() if p not in edited}
            return self._state(env, scripts, by_path, graph, graph_found, kept, None, options, (), True, previous)
        if graph_only(env.settings):  # no selected rule reads the schema: none is replayed
            return self._state(env, scripts, by_path, graph, graph_found, {}, None, options, (), False, None)
        store = self.stores.get(key[0]) or Store(None)
        keys: dict[str, str] = {}
        yield from self._revision_keys(graph, self._environment_salt(env), keys)
        replay_of = self._replay_factory(graph, key, keys)
        known = self._schema_results.setdefault(key, {})
        used: dict[str, list[Diagnostic]] = {}
        if self._filtered_settings.get(key) != env.settings:
            self._filtered[key], self._filtered_settings[key] = {}, env.settings
        filtered = self._filtered[key]
        grouped: dict[Path, list[Diagnostic]] = {}
        schema_by_path: dict[Path, tuple[Diagnostic, ...]] = {}
        for rev in [*keys, *(r for r in graph.by_id if r not in keys)]:  # ancestors first
            script, rev_key = graph.by_id[rev], keys.get(rev)
            found = self._cached_revision(script, rev_key, known, store, used)
            computed = found is None
            if found is None:
                replay = replay_of()
                if not (yield from self._replay_steps(key, graph, replay, keys,
                                                      self._unreplayed_below(graph, replay, rev), generation)):
                    return None
                found = self._compute_revision(script, rev, rev_key, replay, options, env.name, store, known,
                                               used)
                self._remember_replay(key, replay, rev, rev_key)
            # filtered and sorted once per revision key: a pass over cached results stays cheap
            mine = filtered.get(rev_key) if rev_key is not None else None
            if mine is None:
                mine = tuple(sorted(apply_filters(found, env.settings, by_path), key=Diagnostic.sort_key))
                if rev_key is not None:
                    filtered[rev_key] = mine
            if mine and all(d.path == script.path for d in mine) and script.path not in schema_by_path:
                schema_by_path[script.path] = mine
            else:
                for d in mine:
                    grouped.setdefault(d.path, []).append(d)
            if computed:
                yield
                if self._generation != generation:
                    return None
        # keep this pass's results, and what earlier (abandoned) passes computed, within reason
        if len(known) > 4 * len(used) + 1000:
            self._schema_results[key] = used
            self._filtered[key] = {k: v for k, v in filtered.items() if k in used}
        memo = self._replay_memo.get(key, {})
        if len(memo) > 4 * len(keys) + 1000:
            live = set(keys.values())
            self._replay_memo[key] = {k: v for k, v in memo.items() if k in live}
        differences: tuple[Difference, ...] = ()
        if graph.by_id and not graph.cycles():
            models = self.models.get(key) if self.trusted else None
            memo = (tuple(keys.get(h) for h in graph.heads), env, models)
            recent = self._model_results.setdefault(key, [])
            hit = next((result for m, result in recent if m[0] == memo[0] and m[1] == env and m[2] is models), None)
            if hit is None:
                if models is not None and not models.error:
                    replay = replay_of()  # the heads' schema, one revision per step
                    if not (yield from self._replay_steps(key, graph, replay, keys, keys, generation)):
                        return None
                model_found, model_differences = self._model_diagnostics(env, key, graph, replay_of, options, store)
                hit = (apply_filters(model_found, env.settings, by_path), tuple(model_differences))
                recent.insert(0, (memo, hit))
                del recent[4:]
            for d in hit[0]:
                grouped.setdefault(d.path, []).append(d)
            differences = hit[1]
        for path, found in grouped.items():
            schema_by_path[path] = tuple(sorted([*schema_by_path.get(path, ()), *found], key=Diagnostic.sort_key))
        yield
        return self._state(env, scripts, by_path, graph, graph_found, schema_by_path, replay_of, options,
                           differences, False, None)

    @staticmethod
    def _state(env, scripts, by_path, graph, graph_found, schema_by_path, replay_of, options, differences, partial,
               previous) -> EnvironmentState:
        """Per-file diagnostics: the schema part as is, merged with the graph part where a
        file has both. With `previous` (a quick pass) only files whose entries can differ are
        rebuilt."""
        graph_by_path: dict[Path, list[Diagnostic]] = {}
        for d in graph_found:
            graph_by_path.setdefault(d.path, []).append(d)
        if previous is not None and previous.schema_by_path is schema_by_path:
            result = dict(previous.by_path)
            stale = set(previous.graph_paths) | set(graph_by_path)
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
        state = EnvironmentState(env, scripts, graph, result, replay_of, options, differences, schema_by_path,
                                 partial, tuple(graph_by_path), tuple(graph_found))
        state.__dict__["script_by_path"] = by_path  # the cached properties, already built
        if previous is not None and previous.env.files == env.files and "file_index" in previous.__dict__:
            state.__dict__["file_index"] = previous.file_index
        return state

    # ---------------------------------------------------------------- schema pass

    def _replay_factory(self, graph: RevisionGraph, key: tuple[Path, str],
                        keys: dict[str, str] | None = None) -> Callable[[], Replay]:
        """The replay of this graph, made once on first use: from the previous one (only what
        an edit can have changed is recomputed), and given every state computed before under
        the same revision key (an edit and its undo replay nothing twice)."""
        made: list[Replay] = []

        def replay() -> Replay:
            if not made:
                from .schema import Replay

                made.append(Replay(graph, self._replays.get(key)))
                self._replays[key] = made[0]
                memo = self._replay_memo.get(key, {})
                for rev, rev_key in (keys or {}).items():
                    found = memo.get(rev_key)
                    if found is not None:
                        made[0].adopt(rev, *found)
            return made[0]
        return replay

    def _remember_replay(self, key: tuple[Path, str], replay: Replay, rev: str, rev_key: str | None) -> None:
        found = replay.result(rev)
        if rev_key is not None and found is not None:
            self._replay_memo.setdefault(key, {})[rev_key] = found

    def _options_factory(self, env: Environment) -> Callable[[], CompareOptions]:
        made: list[CompareOptions] = []

        def options() -> CompareOptions:
            if not made:
                from .compare import options_from_env_py

                made.append(options_from_env_py(self._env_py_text(env), env.dialect, env.settings.exclude_tables))
            return made[0]
        return options

    @staticmethod
    def _env_py_text(env: Environment) -> str:
        return (read_source(env.env_py) or "") if env.env_py is not None else ""

    def _environment_salt(self, env: Environment) -> str:
        """What, besides the files, the D/S rules read: the options (from env.py), the dialect."""
        return digest("schema", env.name, str(env.dialect), repr(env.settings.exclude_tables),
                      self._env_py_text(env))

    def _digest(self, script: MigrationScript) -> str:
        found = self._digests.get(script)
        if found is None:
            found = self._digests[script] = digest(script.text)
        return found

    def _revision_keys(self, graph: RevisionGraph, salt: str, keys: dict[str, str]) -> Iterator[None]:
        """Fills `keys`: a key per revision that changes whenever anything its schema checks
        read may have changed: its own text and, recursively, the keys of the revisions below
        it (an edit changes the keys of the revision and of everything above it). Revisions in
        or above a cycle get none (never cached). Ordered: a revision after those below it.
        Yields every KEY_STEP revisions (the full pass runs in slices)."""
        below = {rev: tuple(dict.fromkeys(graph.parents[rev] + graph.dependencies[rev])) for rev in graph.by_id}
        pending = {rev: len(b) for rev, b in below.items()}
        above: dict[str, list[str]] = {}
        for rev, b in below.items():
            for p in b:
                above.setdefault(p, []).append(rev)
        ready = [rev for rev, n in pending.items() if n == 0]
        parents, dependencies, by_id = graph.parents, graph.dependencies, graph.by_id
        while ready:
            rev = ready.pop()
            # fixed-length hex parts: plain concatenation is unambiguous
            keys[rev] = hashlib.blake2b("".join((salt, self._digest(by_id[rev]), *(keys[p] for p in parents[rev]), "|",
                                                 *(keys[d] for d in dependencies[rev]))).encode(),
                                        digest_size=16).hexdigest()
            for a in above.get(rev, ()):
                pending[a] -= 1
                if pending[a] == 0:
                    ready.append(a)
            if len(keys) % KEY_STEP == 0:
                yield
        if self._digests and len(self._digests) > 2 * max(len(graph.by_id), 1000):
            live = set(self._parsed.values())
            self._digests = {s: d for s, d in self._digests.items() if s in live}

    def _replay_steps(self, key: tuple[Path, str], graph: RevisionGraph, replay: Replay, keys: dict[str, str],
                      revs: Iterable[str], generation: int) -> Generator[None, None, bool]:
        """Replay `revs` one per step (each remembered, its bodies released); False once an
        edit has made the pass stale."""
        for rev in revs:
            replay.prepare(rev)
            self._release(graph.by_id[rev], replay, rev)
            self._remember_replay(key, replay, rev, keys.get(rev))
            yield
            if self._generation != generation:
                return False
        return True

    def _cached_revision(self, script: MigrationScript, key: str | None, known: dict[str, list[Diagnostic]],
                         store: Store, used: dict[str, list[Diagnostic]]) -> list[Diagnostic] | None:
        """D001–D003 and S001–S005 of one revision from memory or the persistent cache."""
        if key is None:
            return None
        found = known.get(key)
        if found is None:
            cached = store.get("schema", key)
            if cached is not None:
                found = _decode_diagnostics(cached, script.path)  # None: not ours, a miss
        if found is not None:
            used[key] = found
        return found

    def _compute_revision(self, script: MigrationScript, rev: str, key: str | None, replay: Replay,
                          options: Callable[[], CompareOptions], env_name: str, store: Store,
                          known: dict[str, list[Diagnostic]], used: dict[str, list[Diagnostic]]) -> list[Diagnostic]:
        """D001–D003 and S001–S005 of one revision, computed (and remembered)."""
        from .checks.downgrade import check_downgrade
        from .checks.safety import check_safety

        self.computed_revisions += 1
        try:
            schema = replay.revision(rev)
            found = check_downgrade(script, schema, options(), env_name) + check_safety(
                script, schema, options().dialect, env_name)
        except Exception:  # a bug of ours: this revision goes unchecked, the rest is still served
            log.exception("migration-lsp: checking %s failed (please report this); its D/S rules are skipped",
                          script.path)
            self._release(script, replay, rev)
            if key is not None:  # said once: not tried again until the text changes (nor cached on disk)
                used[key] = known[key] = []
            return []
        if key is not None:
            used[key] = known[key] = found
            store.put("schema", key, _encode_diagnostics(found, script.path))
        self._release(script, replay, rev)
        return found

    def _release(self, script: MigrationScript, replay: Replay, rev: str) -> None:
        """Once a revision's schema is computed, forget its syntax trees and evaluated ops
        (parsed again if a feature or a later edit asks); open files keep theirs."""
        if script.path not in self.buffers:
            script.release_bodies()
            replay.release(rev)

    def replay_steps(self, state: EnvironmentState, rev: str) -> Iterator[None]:
        """The schema around `rev` in `state` (a complete snapshot's), replayed one revision
        per step, those below first: a fix that needs the schema (Fill downgrade()) asks for
        it, and the server runs the steps in slices as it runs the full pass."""
        replay = state.replay
        if replay is None or state.graph is None or rev not in state.graph.by_id:
            return
        for below in self._unreplayed_below(state.graph, replay, rev):
            replay.prepare(below)
            self._release(state.graph.by_id[below], replay, below)
            yield
        replay.prepare(rev)

    @staticmethod
    def _unreplayed_below(graph: RevisionGraph, replay: Replay, rev: str) -> list[str]:
        """The revisions below `rev` whose schema the replay has not computed yet, those
        below first: stepping through them keeps every step of the pass to one revision."""
        order: list[str] = []
        seen = {rev}
        todo = [(rev, iter(graph.parents.get(rev, ()) + graph.dependencies.get(rev, ())))]
        while todo:
            node, below = todo[-1]
            for nxt in below:
                if nxt not in seen and not replay.computed(nxt):
                    seen.add(nxt)
                    todo.append((nxt, iter(graph.parents.get(nxt, ()) + graph.dependencies.get(nxt, ()))))
                    break
            else:
                todo.pop()
                if node != rev:
                    order.append(node)
        return order

    def _model_diagnostics(self, env: Environment, key: tuple[Path, str], graph: RevisionGraph,
                           replay_of: Callable[[], Replay], options: Callable[[], CompareOptions],
                           store: Store) -> tuple[list[Diagnostic], list[Difference]]:
        """M001–M004. Untrusted, the answer (an M004 saying why) depends only on env.py and
        the settings, so it is cached like the revisions' results."""
        models_off = None if self.trusted else self.untrusted_reason
        fallback = env.config_path or graph.scripts[0].path
        memo = digest("models-off", repr(env), models_off or "", self._env_py_text(env)) if models_off else None
        if memo is not None:
            cached = store.get("models", memo)
            decoded = _decode_diagnostics(cached, None) if cached is not None else None
            if decoded is not None:
                return decoded, []
        from .checks.models import check_models

        models = self.models.get(key)
        schema = replay_of().at_heads() if models is not None and not models_off else None
        found, differences = check_models(schema, models, self.metadata_source(env), options(), models_off,
                                          env.name, fallback)
        if memo is not None:
            store.put("models", memo, _encode_diagnostics(found, None))
        return found, differences

    # ---------------------------------------------------------------- models

    def metadata_source(self, env: Environment) -> MetadataSource:
        from .models import metadata_source

        return metadata_source(env)

    def environments(self) -> list[tuple[tuple[Path, str], Environment]]:
        return [((d.root, env.name), env) for d in self.discoveries for env in d.environments]

    def model_jobs(self) -> list[tuple[tuple[Path, str], Environment, MetadataSource]]:
        """What loading the models means for each environment (empty when untrusted)."""
        if not self.trusted:
            return []
        return [(key, env, self.metadata_source(env)) for key, env in self.environments()
                if may_enable(env.settings, "M")]

    def set_models(self, key: tuple[Path, str], models: ModelTables) -> None:
        self._generation += 1
        self.models[key] = models
        state = self._states.get(key)
        if state is not None:  # the graph stands; the schema part waits for the next full pass
            self._states[key] = replace(state, partial=True)
            self._states[key].__dict__["script_by_path"] = state.script_by_path
        self._snapshot = None

    def load_models(self) -> None:
        """Load every environment's models now (blocking; the server runs the jobs in a
        thread and hands the results back with set_models)."""
        jobs = self.model_jobs()
        if not jobs:
            return
        from .models import load_models

        for key, env, source in jobs:
            self.set_models(key, load_models(env, source))

    def model_files(self) -> set[Path]:
        return {f for m in self.models.values() for f in m.files}


def _encode_diagnostics(found: list[Diagnostic], path: Path | None):
    """Plain data for the cache (None when something in it is not plain: not cached)."""
    try:
        value = [(d.code, int(d.severity), str(d.path) if path is None else None, (d.span.line, d.span.col, d.span.end_line, d.span.end_col), d.message,
                  d.environment, d.data) for d in found if path is None or d.path == path]
        if len(value) != len(found):
            return None
        marshal.dumps(value)
        return value
    except (ValueError, TypeError):
        return None


def _decode_diagnostics(value, path: Path | None) -> list[Diagnostic] | None:
    """What _encode_diagnostics wrote; None for anything of another shape (a miss)."""
    if not isinstance(value, list):
        return None
    out = []
    try:
        for code, severity, where, span, message, environment, data in value:
            if not (isinstance(code, str) and type(severity) is int and isinstance(message, str)
                    and isinstance(environment, str) and isinstance(data, dict) and isinstance(span, tuple)
                    and len(span) == 4 and all(type(n) is int and n >= 0 for n in span)
                    and (where is None if path is not None else isinstance(where, str))):
                return None
            out.append(Diagnostic(code, Severity(severity), path or Path(where), Span(*span), message,
                                  environment, data))
    except (TypeError, ValueError):
        return None
    return out
