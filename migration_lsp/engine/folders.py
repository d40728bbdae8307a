"""Workspace folders and rescans. The outermost folders are discovered (a discovery under one
finds everything below it: a second one would report it twice); each environment takes the
editor settings of the innermost folder that contains it (a folder opened inside another keeps
its own, e.g. its own interpreter). A rescan walks the disk, so the server runs it in a thread:
`Rescan` is the plan made on the event loop (what to walk, with which settings) and `run()` is
the part that may run anywhere; the engine adopts the result back on the loop.
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
