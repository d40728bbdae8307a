"""The graph index: per environment, the revision graph (patched when a few files changed,
built anew otherwise) and its G findings — the graph rules, the docstring headers (G009,
kept per file) and the base branch (G011–G013, through the git tracker)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from pathlib import Path

from ..checks import apply_filters
from ..checks.git import check_git, explain_incoming
from ..checks.graph import check_graph, check_script, closest_ids
from ..core import Diagnostic, log
from ..gitbase import Base, Tracker
from ..graph import RevisionGraph
from ..project import Environment
from ..scripts import MigrationScript
from .snapshot import EnvironmentState

PATCH_LIMIT = 4  # files changed at once that are patched into the graph rather than rebuilt
Key = tuple[Path, str]  # (workspace root, environment name)
Pairs = list[tuple[MigrationScript, MigrationScript]]  # (old, new) of the files changed


class GraphIndex:
    def __init__(self, roots: tuple[Path, ...], overrides: dict) -> None:
        self.roots = roots
        self.git = Tracker(overrides)  # the base branch of each root (G011–G013)
        self.lock = threading.RLock()  # poll() runs in the server's threads
        self._git_memo: dict[Key, dict] = {}
        # G009 per file, with the scripts they were found in, per environment
        self._doc_findings: dict[Key, tuple[tuple | None, dict | None]] = {}

    def set_overrides(self, overrides: dict) -> None:
        with self.lock:
            self.git.overrides = overrides
            self.git.refs.clear()  # (a new base-branch setting: look again)

    def set_roots(self, roots: tuple[Path, ...]) -> None:
        """Workspace folders added or removed: what was kept for a removed root goes."""
        with self.lock:
            self.roots = roots
            for memo in (self._git_memo, self._doc_findings):
                for key in [k for k in memo if k[0] not in roots]:
                    del memo[key]

    def detached(self) -> GraphIndex:
        """For a rebuild in another thread (engine.rebuilds.Rebuild): the same git tracker, under
        the same lock; its own per-environment memos, taken back in by `take`."""
        other = copy.copy(self)
        other._git_memo, other._doc_findings = {}, {}
        return other

    def take(self, other: GraphIndex, keys: Iterable[Key]) -> None:
        """The memos a detached index kept for these environments (their states are taken in)."""
        for key in keys:
            if key in other._git_memo:
                self._git_memo[key] = other._git_memo[key]
            if key in other._doc_findings:
                self._doc_findings[key] = other._doc_findings[key]

    @staticmethod
    def graph(scripts: tuple[MigrationScript, ...], previous: EnvironmentState | None,
              positions: list[int] | None = None) -> tuple[RevisionGraph, Pairs | None]:
        """The previous graph when nothing changed, patched when a few files changed (with the
        (old, new) pairs), else built anew (None for the pairs). `positions`: where `scripts`
        differs from the previous state's, when known (Documents.scripts): then no file but
        those is looked at."""
        if previous is None or len(previous.scripts) != len(scripts):
            return RevisionGraph(scripts), None
        if positions is not None:
            changed = [(previous.scripts[i], scripts[i]) for i in positions]
        else:
            changed = [(old, new) for old, new in zip(previous.scripts, scripts) if old is not new]
        if len(changed) > PATCH_LIMIT:
            return RevisionGraph(scripts), None
        graph: RevisionGraph | None = previous.graph
        for old, new in changed:
            graph = graph.replacing(old, new) if graph is not None else None
        return (graph, changed) if graph is not None else (RevisionGraph(scripts), None)

    def findings(self, key: Key, env: Environment, graph: RevisionGraph, scripts: tuple[MigrationScript, ...],
                 by_path: dict[Path, MigrationScript], previous: EnvironmentState | None,
                 changed: Pairs | None) -> tuple[Diagnostic, ...]:
        """Every G finding of the graph, filtered."""
        if previous is not None and previous.graph is graph and previous.env == env:
            return previous.graph_diagnostics  # same graph, same settings: same findings
        found = check_graph(graph, env.name, None) + self._docstring_findings(key, env, graph, scripts, previous,
                                                                              changed)
        found = self._git_findings(key, env, graph, found, previous, changed)
        return tuple(apply_filters(found, env.settings, by_path))

    def _docstring_findings(self, key: Key, env: Environment, graph: RevisionGraph,
                            scripts: tuple[MigrationScript, ...], previous: EnvironmentState | None,
                            changed: Pairs | None) -> list[Diagnostic]:
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

    def _git_findings(self, key: Key, env: Environment, graph: RevisionGraph, found: list[Diagnostic],
                      previous: EnvironmentState | None, changed: Pairs | None) -> list[Diagnostic]:
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

    @staticmethod
    def warm_up(states: Iterable[EnvironmentState]) -> None:
        """Precompute what the first keystroke would otherwise pay for (loop check of the
        graph, file positions, the did-you-mean index)."""
        for state in states:
            state.graph.prepare_for_edits()
            closest_ids(state.graph, "")

    # ---------------------------------------------------------------- git

    def poll(self, environments: Iterable[tuple[Key, Environment]], states: dict[Key, EnvironmentState]) -> bool:
        """Look at HEAD and the base refs again (a few stat calls; git runs only when one
        moved); True when a base moved. Safe in another thread: it touches only the tracker,
        under the lock; the bases of a moved branch are read here too, so that the rebuild
        on the event loop finds them ready."""
        with self.lock:
            if not self.git.refresh(self.roots):
                return False
            for (root, _), env in environments:
                state = states.get((root, env.name))
                try:
                    self.git.base(root, env, state.scripts if state is not None else ())
                except Exception:
                    log.debug("migration-lsp: reading the base branch in poll() failed", exc_info=True)
            return True

    def base(self, root: Path, env: Environment, here: RevisionGraph | None = None) -> Base | None:
        """The base branch's versions of this environment (None: no repository, no base);
        `here`: the graph whose parsed files the base reuses where its text is the same."""
        with self.lock:
            if any(r not in self.git.refs for r in self.roots):
                self.git.refresh(self.roots)
            try:
                return self.git.base(root, env, here.scripts if here is not None else ())
            except Exception:  # a bug of ours: the git checks go silent, the rest is served
                log.exception("migration-lsp: reading the base branch failed (please report this)")
                return None

    def key(self, root: Path) -> str:
        """What the findings depend on besides the files (the CLI's memo key)."""
        with self.lock:
            if root not in self.git.refs:
                self.git.refresh(self.roots)
            return self.git.key(root)

    def status(self, states: Iterable[EnvironmentState]) -> dict:
        """`{environments: [{name, heads, base: {ref, ahead, behind} | null, note}]}`: what
        the editor's status bar shows ("1 head · origin/main +2"). `ahead`: revisions here
        and not on the base; `behind`: revisions the base added since the merge base that
        are not here; `note`: why there is no base (no repository, no branch, shallow)."""
        out = []
        for state in states:
            root = state.env.root
            base = self.base(root, state.env, state.graph)
            entry: dict = {"name": state.env.name, "heads": list(state.summary.heads), "base": None}
            if base is not None:
                here, tip, fork = state.graph.by_id, base.tip.graph.by_id, base.fork.graph.by_id
                entry["base"] = {"ref": base.ref.name, "ahead": sum(1 for r in here if r not in tip),
                                 "behind": sum(1 for r in tip if r not in fork and r not in here)}
            else:
                entry["note"] = self.git.errors.get(root) or self.git.notes.get(root) or ""
            out.append(entry)
        return {"environments": out}
