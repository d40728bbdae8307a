"""Environments built anew off the event loop. After a base branch moved, a rescan that changed
environments, or more files changed on disk than an edit patches into a graph (a checkout, a
pull), building an environment from scratch takes long enough to freeze typing on a large
project. The server therefore builds those environments in a thread. `Rebuilds` is the
bookkeeping that makes this safe, kept out of the engine so that it has one job: which
environments are waiting for a rebuild, that their previous states are served meanwhile (the
engine patches open buffers' edits into them), and which results may be taken in (only the
newest plan's, only for environments whose files are still those it was built from).
`Rebuild` is one plan: decided on the loop, `run()` anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..project import Environment
from .build import graph_part, quick_state
from .documents import Documents
from .folders import Workspace
from .graph_index import PATCH_LIMIT, GraphIndex
from .snapshot import EnvironmentState

Key = tuple[Path, str]  # (workspace root, environment name)


@dataclass(frozen=True)
class Rebuild:
    """Environments to build anew, decided on the event loop; `run()` builds them in any
    thread. It reads the open buffers as they were when it was planned and the parses made
    so far, and writes only into its own `documents` and `graphs` (detached copies), which
    the engine takes back in with the states. `number` orders rebuilds: only the newest
    plan's result is taken in."""

    number: int
    # per environment: what it is now and its current state; when that was built for the
    # same environment (a base branch moved), its schema part stays until the full pass,
    # minus the files whose text differs (else the schema part is empty until then)
    jobs: tuple[tuple[Key, Environment, EnvironmentState | None], ...]
    documents: Documents
    graphs: GraphIndex

    def run(self) -> dict[Key, EnvironmentState]:
        states = {key: quick_state(graph_part(self.documents, self.graphs, env, key, None),
                                   state if state is not None and state.env == env else None)
                  for key, env, state in self.jobs}  # (comparing environments: every file's path)
        GraphIndex.warm_up(states.values())  # (what the first keystroke would pay for, on the loop)
        return states


class Rebuilds:
    """Which environments wait for a rebuild off the loop. Off (`enabled` False: the CLI, the
    tests' engines) an environment to build anew simply loses its state and the next snapshot
    builds it; the server turns it on once its first index is built."""

    def __init__(self, workspace: Workspace, documents: Documents, graphs: GraphIndex) -> None:
        self.workspace = workspace
        self.documents = documents
        self.graphs = graphs
        self.enabled = False
        self.stale: set[Key] = set()  # the environments to build anew; their states are served meanwhile
        self.number = 0  # bumped when that set grows or the folders change: only the newest plan is taken

    @property
    def pending(self) -> bool:
        return bool(self.stale)

    def want(self, keys: Iterable[Key]) -> None:
        """Build these environments anew off the loop (nothing when rebuilds are off)."""
        keys = set(keys)
        if self.enabled and keys:
            self.stale |= keys
            self.number += 1

    def keep_roots(self, roots: Iterable[Path]) -> None:
        """Workspace folders were removed: their environments wait for nothing, and a plan made
        before would bring back a removed folder's states."""
        roots = set(roots)
        self.stale = {key for key in self.stale if key[0] in roots}
        self.number += 1

    def served(self, key: Key, env: Environment, state: EnvironmentState | None, dirty: set[Path]) -> bool:
        """Is `key`'s state served as it is (open buffers' edits patched in) until its rebuild
        is taken in? More of its files changed on disk than an edit patches into its graph
        (a checkout, a pull) puts it on the list here."""
        if state is not None and key not in self.stale and self._many_on_disk(env, dirty):
            self.want({key})
        return key in self.stale

    def _many_on_disk(self, env: Environment, dirty: set[Path]) -> bool:
        if not self.enabled or len(dirty) <= PATCH_LIMIT:
            return False
        buffers = self.documents.buffers
        return sum(1 for p in dirty if p in env.file_set and p not in buffers) > PATCH_LIMIT

    def plan(self, states: dict[Key, EnvironmentState]) -> Rebuild:
        """The environments to build anew, with what they read (its `run()`, safe in a thread)."""
        discoveries = self.workspace.discoveries
        jobs = tuple((key, self.documents.with_new_buffers(env, discoveries), states.get(key))
                     for key, env in self.workspace.environments() if key in self.stale)
        return Rebuild(self.number, jobs, self.documents.detached(), self.graphs.detached())

    def take(self, plan: Rebuild, built: dict[Key, EnvironmentState]) -> dict[Key, EnvironmentState] | None:
        """The states of `plan` to adopt, unless a newer rebuild was asked for since (None). An
        environment whose files changed meanwhile (a buffer created in it) stays to be built
        again; files edited meanwhile are patched in by the next snapshot. What the plan's
        detached documents and graphs computed is taken in here."""
        if plan.number != self.number:
            return None
        envs = dict(self.workspace.environments())
        discoveries = self.workspace.discoveries
        taken = {}
        for key, env, _ in plan.jobs:
            now = envs.get(key)
            now = self.documents.with_new_buffers(now, discoveries) if now is not None else None
            if now is not None and (now is env or now == env):  # (the same object unless a buffer was created)
                taken[key] = built[key]
        self.stale -= taken.keys() | (self.stale - envs.keys())
        self.documents.take(plan.documents)
        self.graphs.take(plan.graphs, set(taken))
        return taken
