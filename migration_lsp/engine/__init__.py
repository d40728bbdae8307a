"""The engine both front ends share: mutable session state in, immutable snapshots out.

`Engine` coordinates parts with one job each (README, Architecture):

- `folders.Workspace`: the folders, their settings and stores, what discovery found, the rescans;
- `documents.Documents`: the open-document store (buffers win over disk, parsed once per text);
- `graph_index.GraphIndex`: per environment the revision graph and its G findings (git included);
- `schema_pass.SchemaPass`: D/S findings of every revision along the replayed schema;
- `models_state.ModelsState`: the loaded models and M001–M004;
- `memo.RevisionMemo`: the one memo by revision key (content + ancestry) the last three share;
- `build`: one environment's state assembled from those parts;
- `rebuilds.Rebuilds`: the environments the server builds anew in a thread (a base branch moved,
  a rescan changed them, a checkout rewrote their files), served meanwhile (plan_rebuild /
  take_rebuild);
- `stored`: what goes into the persistent cache; `snapshot`: the pictures requests read.

`snapshot()` returns a read-only `Snapshot`; an edit re-parses one file and rebuilds only
the environment that file belongs to; `snapshot(quick=True)` leaves the schema part as the
last full pass left it, and `snapshot_steps()` is the full pass in small steps (the server
runs it in slices between requests). `report()` is the CLI's check: unchanged environments
come from the cache without being parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache import Store
from ..checks import apply_filters
from ..core import Diagnostic
from ..gitbase import Base, Tracker
from ..graph import RevisionGraph
from ..outside import Outside
from ..project import ConfigProblem, Discovery, Environment, Settings
from . import forked
from .build import SchemaPart, assemble, graph_part, quick_state
from .documents import Documents
from .folders import Rescan, Workspace
from .forked_findings import FindingsWorker
from .graph_index import GraphIndex
from .memo import RevisionMemo
from .models_state import ModelsState, heads_key, may_enable
from .rebuilds import Rebuild, Rebuilds
from .schema_pass import KEY_STEP, SchemaPass, environment_salt, options_factory
from .snapshot import (
    CachedEnvironment,
    EnvironmentReport,
    EnvironmentState,
    GraphSummary,
    Report,
    Snapshot,
)
from .sources import MAX_FILE_BYTES, decode_source, read_bytes, read_file, read_source
from .stored import KEY_CHUNK, cached_report, files_digest, remember_report, report_key

if TYPE_CHECKING:
    from ..compare import Difference
    from ..models import MetadataSource, ModelTables

__all__ = [
    "MAX_FILE_BYTES",
    "CachedEnvironment",
    "Engine",
    "EnvironmentReport",
    "EnvironmentState",
    "GraphSummary",
    "Report",
    "Snapshot",
    "decode_source",
    "graph_only",
    "may_enable",
    "read_bytes",
    "read_file",
    "read_source",
]

Key = tuple[Path, str]  # (workspace root, environment name)


def graph_only(settings: Settings) -> bool:
    """Only graph rules (G...) are selected: no schema replay, no models (a pre-commit
    "one head" check reads headers only)."""
    select = [s.upper() for s in settings.select]
    return bool(select) and "ALL" not in select and all(s.startswith("G") for s in select)


class Engine:
    """Session state for one or more workspace roots."""

    UNTRUSTED = "the workspace is not trusted (no project code is run)"

    def __init__(self, roots: Iterable[Path], overrides: dict | None = None, trusted: bool = True,
                 untrusted_reason: str = UNTRUSTED, cache: bool = True, memo: bool = False,
                 folder_overrides: dict[Path, dict] | None = None, fork: bool = False) -> None:
        self.workspace = Workspace(roots, overrides, folder_overrides, cache)
        # report(): a large environment's files read and parsed in two processes (engine.forked;
        # the CLI's: never in a process with threads)
        self.fork = fork
        self.trusted = trusted
        self.untrusted_reason = untrusted_reason
        # report(): a whole environment's findings cached under the digest of all its inputs
        self.memo = memo
        self.documents = Documents()
        self.graphs = GraphIndex(self.roots, self.workspace.overrides)
        self.revisions = RevisionMemo()
        self.model_state = ModelsState(trusted, untrusted_reason)
        self.schema = SchemaPass(self.revisions, lambda path: path in self.documents.buffers,
                                 Outside(self._outside_text))
        if fork:  # (a first full pass: part of the findings in a forked worker)
            self.schema.fork = FindingsWorker.fork
        self._states: dict[Key, EnvironmentState] = {}
        self._generation = 0  # bumped by every change: a running pass knows it is stale
        self._snapshot: Snapshot | None = None  # None once a change has made it stale
        self._latest: Snapshot | None = None  # the last one built, stale or not (what requests read)
        self._snapshot_partial = False
        self.builds = 0  # environments built (quick or full): tests count what a request started
        self._close_after_rescan: set[Path] = set()  # closed buffers discovery has yet to see (close_buffer)
        # the server's: an environment to build anew (a base branch moved, a rescan changed it)
        # keeps its state, served with edits patched in, until a rebuild made in a thread is
        # taken in (plan_rebuild / take_rebuild); otherwise it is dropped, the next snapshot builds it
        self.rebuilds = Rebuilds(self.workspace, self.documents, self.graphs)
        self.rescan()

    # the parts' state other modules and tests read
    @property
    def roots(self) -> tuple[Path, ...]:
        return self.workspace.roots

    @property
    def buffers(self) -> dict[Path, str]:
        return self.documents.buffers

    @property
    def git(self) -> Tracker:
        return self.graphs.git

    @property
    def models(self) -> dict[Key, ModelTables]:
        return self.model_state.models

    @property
    def computed_revisions(self) -> int:
        return self.schema.computed_revisions

    @property
    def rebuild_off_loop(self) -> bool:
        """Environments to build anew are built in a thread (the server turns it on)."""
        return self.rebuilds.enabled

    @rebuild_off_loop.setter
    def rebuild_off_loop(self, on: bool) -> None:
        self.rebuilds.enabled = on

    # ---------------------------------------------------------------- changes

    def rescan(self, overrides: dict | None = None, folder_overrides: dict[Path, dict] | None = None) -> None:
        """Discover environments again (new config, created or deleted files), at once. The
        server does it in three steps instead, the walk in a thread: want_rescan() (on the
        loop), plan_rescan().run() (anywhere), adopt() (on the loop)."""
        self.configure(overrides, folder_overrides)
        self.want_rescan()
        plan = self.plan_rescan()
        self.adopt(plan, plan.run())

    def configure(self, overrides: dict | None = None, folder_overrides: dict[Path, dict] | None = None) -> None:
        """New settings (the workspace's, each folder's): they apply from the next rescan."""
        self.workspace.configure(overrides, folder_overrides)
        if overrides is not None:
            self.graphs.set_overrides(self.workspace.overrides)

    def want_rescan(self, walk: Iterable[Path] | None = None, clear: bool = True) -> None:
        """Ask for a rescan that walks `walk` (default: every root) and, with `clear`, builds
        every environment again (a config or env.py changed: anything may differ). Without
        either, the roots are only settled again: an environment whose settings stay the same
        keeps its state."""
        self.workspace.want_rescan(walk, clear)

    @property
    def rescan_pending(self) -> bool:
        return self.workspace.rescan_pending

    def plan_rescan(self) -> Rescan:
        """The newest rescan asked for, to run (its `run()`, safe in a thread)."""
        return self.workspace.plan_rescan()

    def adopt(self, plan: Rescan, found: dict[Path, tuple[Discovery, Discovery, Store]]) -> set[Key] | None:
        """Take in what `plan` found, unless a newer rescan was asked for since (None: the
        result is dropped; the newer one walks what this one did). The environments whose
        state was dropped (to be built again) are returned. Open buffers are kept as they
        are: they win over what the walk read."""
        clear = self.workspace.adopt(plan, found)
        if clear is None:
            return None
        envs = dict(self.environments())
        dropped = set()
        for key, state in self._states.items():
            env = envs.get(key)
            if clear or key[0] in plan.walk or env is None or replace(env, files=()) != replace(
                    state.env, files=()):
                dropped.add(key)
        again = dropped | (envs.keys() - self._states.keys())
        for key in dropped:
            if not (self.rebuild_off_loop and key in envs):
                del self._states[key]
        # discovery has them now (or they are gone from the disk); a state kept for a rebuild
        # still holds their revisions, and the rebuild reads them from the disk
        for path in self._close_after_rescan:
            self.documents.close_buffer(path)
        self._close_after_rescan.clear()
        self._changed()
        self.rebuilds.want(again & envs.keys())
        return again

    def set_folders(self, folders: Iterable[Path]) -> set[Key]:
        """Workspace folders added or removed: a removed root's environments, states and models
        go now (their keys are returned); a new root is walked at the next rescan, the others
        only settled again (a folder added inside one may bring its own settings)."""
        gone = self.workspace.set_folders(folders)
        keys = {key for key in [*self._states, *self.models] if key[0] in gone}
        for key in keys:
            self._states.pop(key, None)
            self.model_state.drop(key)
        self.revisions.forget(keys)
        self.graphs.set_roots(self.roots)
        self.rebuilds.keep_roots(self.roots)
        self._changed()
        return keys

    def _changed(self) -> None:
        self._generation += 1
        self._snapshot = None

    def warm_up(self) -> None:
        """Precompute what the first keystroke would otherwise pay for (the server calls it
        after indexing)."""
        self.graphs.warm_up(self._states.values())

    def save_cache(self) -> None:
        """Write the persistent cache (the CLI after a check, the server now and then)."""
        self.workspace.save_cache()

    def set_buffer(self, path: Path, text: str) -> None:
        path = path.resolve()
        self._close_after_rescan.discard(path)  # (open again before the rescan: it stays open)
        if self.documents.set_buffer(path, text):
            self._changed()

    def close_buffer(self, path: Path) -> bool:
        """The editor closed the file: the disk's text counts again. False when the file is new
        on disk (the editor created and saved it: inside a version location, not yet one of
        the discovered files): its buffer, and so its revision, stays in the graph until the
        rescan asked for here (run it: rescan_pending) has taken the file in from the disk;
        closed at once, it would vanish from the graph until then."""
        path = path.resolve()
        if path in self.documents.buffers and not self.tracks(path) and path.is_file() and self.knows(path):
            self._close_after_rescan.add(path)
            self.want_rescan([d.root for d in self.workspace.discoveries if d.environment_of(path)], clear=False)
            return False
        if self.documents.close_buffer(path):
            self._changed()
        return True

    def _outside_text(self, path: Path) -> str | None:
        """What this engine's evaluations read of another file (`User.__tablename__` from
        models.py; outside.Outside): in a trusted workspace, a file the imported models
        came from as it was when they were loaded (both agree until the next load); else
        its open buffer, unsaved edits included; None: the disk."""
        saved = self.model_state.saved_text(path)
        return saved if saved is not None else self.documents.buffers.get(path)

    def file_changed(self, path: Path, resolve: Callable[[Path], Path] = Path.resolve) -> None:
        """The file changed on disk (saved, or edited by another program). `resolve`: the
        server's `paths.Resolver` for a batch of the file watcher's events."""
        self.documents.touch(resolve(path))
        self._changed()

    def tracks(self, path: Path) -> bool:
        """Is this file one of the discovered revision files (not just inside a location)?"""
        return self.workspace.tracks(path)

    def knows(self, path: Path) -> bool:
        return self.workspace.knows(path)

    def environments(self) -> list[tuple[Key, Environment]]:
        return self.workspace.environments()

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
        """The git half of refresh_git(), safe to run in another thread (GraphIndex.poll)."""
        return self.graphs.poll(self.environments(), dict(self._states))

    def base_moved(self) -> None:
        """A base branch moved (poll_git() said so): every environment is checked again
        (with rebuild_off_loop: built anew by the next rebuild, its state served until then)."""
        self._changed()
        if self.rebuild_off_loop:
            self.rebuilds.want(key for key, _ in self.environments())
        else:
            self._states.clear()

    # ---------------------------------------------------------------- rebuilds off the loop

    @property
    def rebuild_pending(self) -> bool:
        return self.rebuilds.pending

    def plan_rebuild(self) -> Rebuild:
        """The environments to build anew, with what they read (its `run()`, safe in a thread)."""
        return self.rebuilds.plan(self._states)

    def take_rebuild(self, plan: Rebuild, states: dict[Key, EnvironmentState]) -> set[Key] | None:
        """Take in the states `plan` built, unless a newer rebuild was asked for since (None).
        An environment whose files changed meanwhile (a buffer created in it) stays to be
        built again; files edited meanwhile are patched in by the next snapshot."""
        taken = self.rebuilds.take(plan, states)
        if taken is None:
            return None
        self._states.update(taken)
        self._changed()
        return set(taken)

    def base(self, root: Path, env: Environment, here: RevisionGraph | None = None) -> Base | None:
        return self.graphs.base(root, env, here)

    def git_status(self, snapshot: Snapshot) -> dict:
        return self.graphs.status(snapshot.environments)

    # ---------------------------------------------------------------- snapshots

    def snapshot(self, quick: bool = False) -> Snapshot:
        """The current picture. `quick`: the graph and its diagnostics are current, the
        schema-based ones (models, downgrades) are those of the last full pass, minus the
        files edited since — what an editor needs on every keystroke; a full pass follows
        when typing pauses."""
        for _ in self.snapshot_steps(quick):
            pass
        assert self._snapshot is not None
        return self._snapshot

    @property
    def latest(self) -> Snapshot | None:
        """The last snapshot built (None before the first), even when a change has made it
        stale since: reading it never builds anything. The server's requests read it; the
        change notifications build the next one (snapshot(quick=True)) before any request
        that follows them is read."""
        return self._latest

    @property
    def current(self) -> bool:
        """Nothing changed since `latest` was built."""
        return self._snapshot is not None

    def snapshot_steps(self, quick: bool = False) -> Iterator[None]:
        """snapshot() in small steps: it yields between revisions of the schema pass, so the
        server can answer requests in between; an edit made meanwhile abandons it (what it
        computed so far stays in the memo by revision key, so the next pass resumes, not restarts)."""
        if self._snapshot is not None and (quick or not self._snapshot_partial):
            return
        generation = self._generation
        dirty = set(self.documents.dirty)
        states: list[EnvironmentState] = []
        built: dict[Key, EnvironmentState] = {}
        problems: list[ConfigProblem] = []
        for discovery in self.workspace.discoveries:
            problems.extend(discovery.problems)
            for env in discovery.environments:
                key = (discovery.root, env.name)
                state = self._states.get(key)
                kept = self.rebuilds.served(key, env, state, dirty)  # (until its rebuild is taken in)
                if kept and state is None:
                    continue
                env = state.env if kept and state is not None else self.documents.with_new_buffers(
                    env, self.workspace.discoveries)
                # a kept state takes in edits of open buffers only (the rebuild reads the disk)
                edited = (p for p in dirty if p in self.documents.buffers) if kept else dirty
                # another Python file edited: it may answer what a revision reads (models.py)
                outside = self.schema.asks_outside(key) and any(p.suffix == ".py" and p not in env.file_set
                                                                for p in dirty)
                if state is None or outside or (state.env.files is not env.files and state.env.files != env.files) or any(p in env.file_set for p in edited) or (
                        state.partial and not quick and not kept):
                    state = yield from self._build(env, key, state, quick or kept, generation)
                    if state is None or self._generation != generation:
                        return  # edited meanwhile: this picture is already stale
                    built[key] = state
                states.append(state)
        self._states.update(built)
        self.documents.dirty -= dirty
        self._snapshot = self._latest = Snapshot(tuple(states), tuple(problems), self.roots, self.workspace.settings())
        self._snapshot_partial = any(s.partial for s in states)

    def report(self) -> Report:
        """What a one-shot check prints. With `memo` (the CLI), in an untrusted session with
        no open buffer, an environment whose inputs — every file's path and content, the
        environment and its settings, the base branch, the tool's version — are those of a
        report in the cache is read back without being parsed or built."""
        if not (self.memo and not self.trusted and not self.documents.buffers):
            return self.snapshot()
        environments: list[EnvironmentReport] = []
        problems: list[ConfigProblem] = []
        for discovery in self.workspace.discoveries:
            problems.extend(discovery.problems)
            for env in discovery.environments:
                key = (discovery.root, env.name)
                store = self.workspace.stores[discovery.root]
                if not store.enabled:
                    environments.append(self._complete(env, key))
                    continue
                worker = forked.Worker.start_for(env.files) if self.fork else None
                try:
                    found = self._reported(env, key, store, worker)
                finally:
                    if worker is not None:
                        worker.close()
                environments.append(found)
        self.documents.forget_reads()
        return Report(tuple(environments), tuple(problems), self.roots, self.workspace.settings())

    def _reported(self, env: Environment, key: Key, store: Store, worker: forked.Worker | None) -> EnvironmentReport:
        """One environment's report, from the cache when its memo key is there. `worker`: a
        forked process reading, keying and parsing the files from worker.start on, meanwhile
        this one does the others (when it fails, this one does its part too)."""
        files = env.files
        start = worker.start if worker is not None else len(files)
        pieces = self._pieces(files[:start])
        theirs = worker.pieces() if worker is not None else None
        pieces += theirs if theirs is not None else self._pieces(files[start:])
        parts = (self.untrusted_reason, environment_salt(env), self.graphs.key(key[0]))
        memo_key = report_key(env, parts, pieces)
        found: EnvironmentReport | None = cached_report(store, memo_key, env)
        if found is None:
            if worker is not None and theirs is not None:
                for path in files[:start]:
                    self.documents.script(path)  # (while the worker parses its part)
                parsed = worker.scripts(files)
                if parsed is not None:
                    self.documents.adopt(zip(files[start:], parsed))
                else:  # read again here: the key is that of the bytes parsed
                    pieces[start // KEY_CHUNK:] = self._pieces(files[start:])
                    memo_key = report_key(env, parts, pieces)
            found = self._complete(env, key)
            reads = [(str(script.path), *read) for script in found.graph.by_id.values()
                     for read in self.schema.outside_reads(script, env.dialect, store)]
            remember_report(store, memo_key, found, reads)
        return found

    def _pieces(self, files: tuple[Path, ...]) -> list[bytes]:
        """The memo key pieces of `files` (read now, kept until parsed)."""
        read = self.documents.read
        return [files_digest((p, *read(p)) for p in files[i:i + KEY_CHUNK]) for i in range(0, len(files), KEY_CHUNK)]

    def _complete(self, env: Environment, key: Key) -> EnvironmentState:
        """One environment built with its full pass, at once (the CLI: nothing edits meanwhile)."""
        steps = self._build(env, key, self._states.get(key), False, self._generation)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                state = done.value
                break
        assert state is not None  # (only an edit made meanwhile abandons a build)
        self._states[key] = state
        return state

    # ---------------------------------------------------------------- building

    def _build(self, env: Environment, key: Key, previous: EnvironmentState | None,
               quick: bool, generation: int) -> Generator[None, None, EnvironmentState | None]:
        """One environment's state; a generator that yields after each revision it had to
        compute, and gives up (None) once an edit has made its work stale."""
        self.builds += 1
        part = graph_part(self.documents, self.graphs, env, key, previous)
        if quick:
            return quick_state(part, previous)
        graph, by_path = part.graph, part.by_path
        options = options_factory(env)
        if graph_only(env.settings):  # no selected rule reads the schema: none is replayed
            return assemble(part, SchemaPart({}, options))
        store = self.workspace.stores.get(key[0]) or Store(None)

        def stale() -> bool:
            return self._generation != generation

        def forget(evicted: list[str]) -> None:
            store.forget("schema", evicted)

        keys: dict[str, str] = {}
        answers: dict[str, str] = {}  # (what other files answer the revisions that ask them)
        yield from self.schema.revision_keys(graph, environment_salt(env), keys, env.dialect, store, answers)
        yield from self.revisions.begin(key, keys.values(), forget)  # (a pass an edit abandons evicts too)
        replay_of = self.schema.replay_factory(graph, key, keys, env.dialect, answers)
        result = yield from self.schema.findings(env, graph, by_path, keys, replay_of, options, store, stale)
        if result is None:
            return None
        schema_by_path, grouped = result
        live = set(keys.values())
        differences: tuple[Difference, ...] = ()
        if graph.by_id and not graph.cycles():
            models_key = heads_key(keys, graph)
            live.add(models_key)
            entry = self.revisions.entry(models_key)
            hit = self.model_state.remembered(key, env, entry.models)
            if hit is None:
                if self.model_state.needs_schema(key):
                    replay = replay_of()  # the heads' schema, one revision per step
                    if not (yield from self.schema.replay_steps(graph, replay, keys, keys, stale)):
                        return None
                model_found, model_differences = self.model_state.findings(key, env, graph, replay_of, options, store)
                hit = (apply_filters(model_found, env.settings, by_path), tuple(model_differences))
                entry.models = (env, self.models.get(key) if self.trusted else None, hit)
            for d in hit[0]:
                grouped.setdefault(d.path, {})[d] = None
            differences = hit[1]
        yield from self.revisions.retain(key, live, forget)
        for n, (path, found) in enumerate(grouped.items(), 1):  # (in steps: 16,000 files at 20,000 revisions)
            own = schema_by_path.get(path, ())
            schema_by_path[path] = tuple(sorted({**dict.fromkeys(own), **found} if own else found,
                                                key=Diagnostic.sort_key))
            if n % KEY_STEP == 0:
                yield
        yield
        return assemble(part, SchemaPart(schema_by_path, options, replay_of, differences))

    def replay_steps(self, state: EnvironmentState, rev: str) -> Iterator[None]:
        """The schema around `rev` in `state` (a complete snapshot's), replayed one revision
        per step: a fix that needs the schema (Fill downgrade()) asks for it, and the server
        runs the steps in slices as it runs the full pass."""
        return self.schema.replay_to(state, rev)

    def heads_steps(self, states: Iterable[EnvironmentState] | None = None) -> Iterator[None]:
        """The schema at the heads of each complete state (by default the engine's own),
        replayed one revision per step: what the models' filters (model_jobs) and the truth
        pass read, through Replay.at_heads, which then only merges what is computed."""
        for state in list(self._states.values()) if states is None else states:
            if state.partial or not state.graph.heads or state.graph.cycles():
                continue
            for head in sorted(state.graph.heads):
                yield from self.schema.replay_to(state, head)

    # ---------------------------------------------------------------- models

    def metadata_source(self, env: Environment) -> MetadataSource:
        return self.model_state.metadata_source(env)

    def model_jobs(self) -> list[tuple[Key, Environment, MetadataSource]]:
        """What loading the models means for each environment (empty when untrusted, and for
        an environment whose M rules are all off)."""
        return [(key, env, replace(source, schema=self._heads_schema(key)))
                for key, env, source in self.model_state.jobs(self.environments())]

    def _heads_schema(self, key: Key):
        """What the migrations build, from the last full pass (None before one): env.py's
        include_object / include_name judge those objects in the model child."""
        state = self._states.get(key)
        if state is None or state.partial or not state.graph.heads or state.graph.cycles():
            return None
        try:
            return state.replay.at_heads() if state.replay is not None else None
        except Exception:  # noqa: BLE001 — a replay bug costs the filters' view, never the load
            return None

    def set_models(self, key: Key, models: ModelTables) -> None:
        self.model_state.put(key, models)
        self._changed()
        state = self._states.get(key)
        if state is not None:  # the graph stands; the schema part waits for the next full pass
            self._states[key] = replace(state, partial=True)

    def load_models(self) -> None:
        """Load every environment's models now (blocking; the server runs the jobs in a
        thread and hands the results back with set_models)."""
        if not self.model_jobs():
            return
        from ..models import load_models

        self.snapshot()  # the static pass first: env.py's filters judge what the migrations build too
        for key, env, source in self.model_jobs():
            self.set_models(key, load_models(env, source))

    def model_files(self) -> set[Path]:
        return self.model_state.files()
