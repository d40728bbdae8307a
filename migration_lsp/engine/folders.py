"""Workspace folders and rescans. The outermost folders are discovered (a discovery under one
finds everything below it: a second one would report it twice); each environment takes the
editor settings of the innermost folder that contains it (a folder opened inside another keeps
its own, e.g. its own interpreter). A rescan walks the disk, so the server runs it in a thread:
`Rescan` is the plan made on the event loop (what to walk, with which settings) and `run()` is
the part that may run anywhere; the engine adopts the result back on the loop. `Workspace` keeps
that state: the folders, their settings, their cache stores and what discovery found.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from .. import project
from ..cache import Store
from ..project import Discovery, Environment
from .stored import discover_cached_bare


def outermost(folders: Iterable[Path]) -> tuple[Path, ...]:
    """Folders without repeats and without those inside another folder."""
    unique = list(dict.fromkeys(folders))
    return tuple(r for r in unique if not any(o != r and r.is_relative_to(o) for o in unique))


def anchor(env: Environment) -> Path:
    """Where an environment lives: its config file's folder (else its script location)."""
    if env.config_path is not None:
        return env.config_path.parent
    if env.script_location is not None:
        return env.script_location
    return env.version_locations[0] if env.version_locations else env.root


def innermost(folders: Iterable[Path], path: Path) -> Path | None:
    """The deepest folder that contains `path` (None: none does)."""
    found = [f for f in folders if path.is_relative_to(f)]
    return max(found, key=lambda f: len(f.parts)) if found else None


def settle(bare: Discovery, overrides: dict, folder_overrides: dict[Path, dict],
           folders: Iterable[Path]) -> Discovery:
    """project.settle() with each environment under the settings of its innermost folder:
    the workspace's, then that folder's own (scopeUri) ones."""
    folders = tuple(folders)
    owner = [innermost(folders, anchor(env)) or bare.root for env in bare.environments]
    settled: dict[Path, Discovery] = {}
    for folder in dict.fromkeys([bare.root, *owner]):
        settled[folder] = project.settle(bare, {**overrides, **folder_overrides.get(folder, {})})
    base = settled[bare.root]
    if all(folder == bare.root for folder in owner):
        return base
    return replace(base, environments=tuple(
        settled[folder].environments[n] for n, folder in enumerate(owner)))


@dataclass(frozen=True)
class Rescan:
    """What one rescan does, decided on the event loop: walk `walk` again (files were created,
    deleted or a config changed), settle the other roots' last bare discoveries again (new
    settings, a folder added inside them). `number` orders rescans: the engine adopts only the
    newest plan's result (a later rescan supersedes an earlier one)."""

    number: int
    roots: tuple[Path, ...]
    walk: frozenset[Path]
    bare: dict[Path, Discovery]
    stores: dict[Path, Store]
    overrides: dict
    folder_overrides: dict[Path, dict]
    folders: tuple[Path, ...]
    cache: bool = True  # a new root's store is the persistent one (else an empty one)

    def run(self) -> dict[Path, tuple[Discovery, Discovery, Store]]:
        """Per root: (bare discovery, settled discovery, its cache store). Reads the disk and
        touches nothing the event loop reads: safe in a thread."""
        out: dict[Path, tuple[Discovery, Discovery, Store]] = {}
        for root in self.roots:
            store = self.stores.get(root)
            if store is None:  # a new folder: its cache is opened here too (a file read)
                store = Store.for_root(root) if self.cache else Store(None)
            bare = self.bare.get(root)
            if bare is None or root in self.walk:
                bare = discover_cached_bare(root, store)
            out[root] = (bare, settle(bare, self.overrides, self.folder_overrides, self.folders), store)
        return out


def by_root(folder_overrides: dict[Path, dict] | None) -> dict[Path, dict]:
    """One workspace folder's own settings (an editor's folder-level ones, e.g. the interpreter
    selected for that folder of a multi-root workspace), keyed like `Workspace.roots`."""
    return {Path(root).resolve(): dict(values) for root, values in (folder_overrides or {}).items() if values}


class Workspace:
    """The workspace folders, their settings, their cache stores and what discovery found under
    them, with the rescans asked for and adopted (one job: which environments exist, and how
    they are configured; the engine builds them)."""

    def __init__(self, roots: Iterable[Path], overrides: dict | None, folder_overrides: dict[Path, dict] | None,
                 cache: bool) -> None:
        self.cache = cache
        # every workspace folder (nested ones too: their settings apply below them)
        self.folders = tuple(dict.fromkeys(Path(r).resolve() for r in roots))
        self.roots = outermost(self.folders)
        self.overrides = dict(overrides or {})
        self.folder_overrides = by_root(folder_overrides)
        self.stores: dict[Path, Store] = {root: Store.for_root(root) if cache else Store(None)
                                          for root in self.roots}
        self.discoveries: tuple[Discovery, ...] = ()
        self._bare: dict[Path, Discovery] = {}  # each root's discovery before settings (re-settled cheaply)
        self._rescans = 0  # rescans asked for: only the newest plan's result is adopted
        self._adopted = -1  # the number of the last rescan adopted
        self._roots_to_walk: set[Path] = set()  # roots to walk again at the next adopted rescan
        self._clear = False  # ... and whether every environment is then built again

    def configure(self, overrides: dict | None, folder_overrides: dict[Path, dict] | None) -> None:
        if overrides is not None:
            self.overrides = dict(overrides)
        if folder_overrides is not None:
            self.folder_overrides = by_root(folder_overrides)

    def want_rescan(self, walk: Iterable[Path] | None, clear: bool) -> None:
        self._rescans += 1
        self._roots_to_walk |= set(self.roots if walk is None else walk)
        self._clear = self._clear or clear

    @property
    def rescan_pending(self) -> bool:
        return self._rescans != self._adopted

    def plan_rescan(self) -> Rescan:
        return Rescan(self._rescans, self.roots, frozenset(self._roots_to_walk & set(self.roots)), dict(self._bare),
                      dict(self.stores), dict(self.overrides), dict(self.folder_overrides), self.folders,
                      self.cache)

    def adopt(self, plan: Rescan, found: dict[Path, tuple[Discovery, Discovery, Store]]) -> bool | None:
        """Take in what `plan` found (None: a newer rescan was asked for since, the result is
        dropped); True when every environment is to be built again."""
        if plan.number != self._rescans or plan.roots != self.roots:
            return None
        discoveries = []
        for root in self.roots:
            bare, settled, store = found[root]
            self._bare[root] = bare
            self.stores[root] = store
            discoveries.append(settled)
        self.discoveries = tuple(discoveries)
        clear = self._clear
        self._adopted = plan.number
        self._roots_to_walk.clear()
        self._clear = False
        return clear

    def set_folders(self, folders: Iterable[Path]) -> set[Path]:
        """New workspace folders: the removed roots are returned (their stores saved and
        closed); a new root is walked at the next rescan, the others only settled again."""
        self.folders = tuple(dict.fromkeys(Path(f).resolve() for f in folders))
        roots = outermost(self.folders)
        gone = set(self.roots) - set(roots)
        new = set(roots) - set(self.roots)
        for root in gone:
            store = self.stores.pop(root, None)
            if store is not None:
                store.save()
            self._bare.pop(root, None)
        self.folder_overrides = {f: v for f, v in self.folder_overrides.items() if f in self.folders}
        self.roots = roots
        self.discoveries = tuple(d for d in self.discoveries if d.root in roots)
        self.want_rescan(new, clear=False)
        return gone

    def save_cache(self) -> None:
        for store in self.stores.values():
            store.save()

    def environments(self) -> list[tuple[tuple[Path, str], Environment]]:
        return [((d.root, env.name), env) for d in self.discoveries for env in d.environments]

    def tracks(self, path: Path) -> bool:
        path = path.resolve()
        return any(path in env.file_set for d in self.discoveries for env in d.environments)

    def knows(self, path: Path) -> bool:
        path = path.resolve()
        return any(d.environment_of(path) for d in self.discoveries)

    def settings(self) -> project.Settings:
        return self.discoveries[0].settings if self.discoveries and self.discoveries[0].settings else project.Settings()
