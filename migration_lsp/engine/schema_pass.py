"""The schema pass: D001–D003 and S001–S005 of every revision of an environment. Each
revision gets a key (its text and the keys below it); its findings come from the memo, else
the persistent cache, else are computed along the replay of the history, one revision per
step so that the server can run the pass in slices between requests."""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..cache import Store, digest
from ..checks import apply_filters, families_off
from ..core import Diagnostic, log
from ..graph import RevisionGraph
from ..project import Environment
from ..scripts import MigrationScript, reads_outside
from .memo import RevisionMemo
from .snapshot import EnvironmentState
from .sources import read_source
from .stored import decode_diagnostics, encode_diagnostics

if TYPE_CHECKING:
    from ..compare import CompareOptions
    from ..outside import Outside
    from ..replay import Replay

KEY_STEP = 500  # revisions keyed between two yields of the full pass
Key = tuple[Path, str]


class FindingsHelper(Protocol):
    """A helper computing the findings of `revs` elsewhere (the CLI's: engine.forked_findings)."""

    revs: frozenset[str]

    def collect(self, schema: SchemaPass, graph: RevisionGraph, keys: dict[str, str], store: Store) -> int: ...

    def close(self) -> None: ...


# (schema, env, graph, keys, revisions to compute, replay_of, options, env.py) -> a started worker or None
StartWorker = Callable[["SchemaPass", Environment, RevisionGraph, dict[str, str], list[str], "ReplayMaker",
                        "Callable[[], CompareOptions]", Callable[[], tuple[Path | None, str]]], FindingsHelper | None]


def env_py_text(env: Environment) -> str:
    return (read_source(env.env_py) or "") if env.env_py is not None else ""


def environment_salt(env: Environment) -> str:
    """What, besides the files, the D/S rules read: the options (from env.py), the dialect."""
    salt = digest("schema", env.name, str(env.dialect), repr(env.settings.exclude_tables),
                  str(env.settings.postgres_version), env_py_text(env))
    off = families_off(env.settings)  # (the families select/ignore skip: their findings are not stored)
    return digest(salt, *sorted(off)) if off else salt


def options_factory(env: Environment) -> Callable[[], CompareOptions]:
    """The environment's compare options (from env.py), made on first use."""
    made: list[CompareOptions] = []

    def options() -> CompareOptions:
        if not made:
            from ..compare import options_from_env_py

            made.append(options_from_env_py(env_py_text(env), env.dialect, env.settings.exclude_tables))
        return made[0]
    return options


class SchemaPass:
    def __init__(self, memo: RevisionMemo, is_open: Callable[[Path], bool], outside: Outside | None = None) -> None:
        self.memo = memo
        self.is_open = is_open  # open files keep their evaluated ops (features read them)
        self.outside = outside  # what evaluations may read of other files (the engine's; None: the disk)
        self.replays: dict[Key, Replay] = {}  # the last replay per environment (the next starts from it)
        self._digests: weakref.WeakKeyDictionary[MigrationScript, str] = weakref.WeakKeyDictionary()
        # what a script's evaluation asks other files (interpret.outside_questions), per dialect
        self._questions: weakref.WeakKeyDictionary[MigrationScript, dict[str | None, tuple[str, ...]]] = \
            weakref.WeakKeyDictionary()
        # per environment, the outside answers of its readers when its last replay was made,
        # and whether any revision asked other files at its last pass
        self._answered: dict[Key, dict[str, str]] = {}
        self._asking: dict[Key, bool] = {}
        self.computed_revisions = 0  # D/S results not found in memory or in the cache (tests read it)
        # the CLI's first full pass: a forked worker computes part of the findings (set by the
        # Engine to engine.forked_findings.FindingsWorker.fork; None: every finding computed here)
        self.fork: StartWorker | None = None

    # ---------------------------------------------------------------- keys

    def _digest(self, script: MigrationScript) -> str:
        found = self._digests.get(script)
        if found is None:
            found = self._digests[script] = digest(script.text)
        return found

    def _questions_of(self, script: MigrationScript, dialect: str | None, store: Store) -> tuple[str, ...]:
        """What evaluating `script` asks other files: remembered per parse, else from the
        persistent cache (by text and dialect), else evaluated now (then cached)."""
        per_dialect = self._questions.get(script)
        if per_dialect is None:
            per_dialect = self._questions[script] = {}
        found = per_dialect.get(dialect)
        if found is None:
            stored_key = digest("outside", self._digest(script), str(dialect))
            cached = store.get("outside", stored_key)
            if isinstance(cached, list) and all(isinstance(q, str) for q in cached):
                found = tuple(cached)
            else:
                from ..interpret import outside_questions

                found = outside_questions(script, dialect, self.outside)
                store.put("outside", stored_key, list(found))
            per_dialect[dialect] = found
        return found

    def outside_reads(self, script: MigrationScript, dialect: str | None, store: Store
                      ) -> list[tuple[str, str | None]]:
        """What other files answer `script`'s evaluation now: [(question, answer)], empty
        when it asks nothing (the common case: no import from outside sqlalchemy / alembic)."""
        if not reads_outside(script):
            return []
        questions = self._questions_of(script, dialect, store)
        if not questions:
            return []
        from ..outside import tablename

        return [(q, tablename(script.path, q, self.outside)) for q in questions]

    def outside_answers(self, script: MigrationScript, dialect: str | None, store: Store) -> str:
        """A digest of outside_reads ("" when it asks nothing: its key stays what the text
        and ancestry make it)."""
        reads = self.outside_reads(script, dialect, store)
        return digest("answers", *(f"{q}={a!r}" for q, a in reads)) if reads else ""

    def asks_outside(self, key: Key) -> bool:
        """Did a revision of this environment read another file at its last pass?"""
        return self._asking.get(key, False)

    def revision_keys(self, graph: RevisionGraph, salt: str, keys: dict[str, str], dialect: str | None = None,
                      store: Store | None = None, answers: dict[str, str] | None = None) -> Iterator[None]:
        """Fills `keys`: a key per revision that changes whenever anything its schema checks
        read may have changed: its own text, what other files answer its evaluation
        (`User.__tablename__` read from models.py: filled into `answers` for the revisions
        that ask) and, recursively, the keys of the revisions below it (an edit changes the
        keys of the revision and of everything above it). Revisions in or above a cycle get
        none (never cached). Ordered: a revision after those below it. Yields every KEY_STEP
        revisions (the full pass runs in slices)."""
        store = store if store is not None else Store(None)
        answers = answers if answers is not None else {}
        parents, dependencies, by_id = graph.parents, graph.dependencies, graph.by_id
        pending: dict[str, int] = {}
        above: dict[str, list[str]] = {}
        for rev in by_id:  # (in steps too: at 20,000 revisions this setup alone held the loop ~30 ms)
            below = dict.fromkeys(parents[rev] + dependencies[rev])
            pending[rev] = len(below)
            for p in below:
                above.setdefault(p, []).append(rev)
            if len(pending) % KEY_STEP == 0:
                yield
        ready = [rev for rev, n in pending.items() if n == 0]
        while ready:
            rev = ready.pop()
            script = by_id[rev]
            outside = self.outside_answers(script, dialect, store) if script.imports else ""
            if outside:
                answers[rev] = outside
            # fixed-length hex parts (or none): plain concatenation is unambiguous
            keys[rev] = hashlib.blake2b("".join((salt, self._digest(script), outside, *(keys[p] for p in parents[rev]), "|",
                                                 *(keys[d] for d in dependencies[rev]))).encode(),
                                        digest_size=16).hexdigest()
            for a in above.get(rev, ()):
                pending[a] -= 1
                if pending[a] == 0:
                    ready.append(a)
            if len(keys) % KEY_STEP == 0:
                yield

    # ---------------------------------------------------------------- replay

    def replay_factory(self, graph: RevisionGraph, key: Key, keys: dict[str, str],
                       dialect: str | None = None, answers: dict[str, str] | None = None) -> ReplayMaker:
        """The replay of this graph, made once on first use: from the previous one (only what
        an edit can have changed is recomputed: a file, or what other files answer a
        revision, `answers` of revision_keys), and given every state computed before under
        the same revision key (an edit and its undo replay nothing twice)."""
        answers = answers if answers is not None else {}
        self._answered.setdefault(key, answers)
        self._asking[key] = bool(answers)
        return ReplayMaker(self, graph, key, keys, dialect, answers)

    def _remember_replay(self, replay: Replay, rev: str, rev_key: str | None) -> None:
        found = replay.result(rev)
        if rev_key is not None and found is not None:
            self.memo.entry(rev_key).replay = found

    def replay_steps(self, graph: RevisionGraph, replay: Replay, keys: dict[str, str], revs: Iterable[str],
                     stale: Callable[[], bool]) -> Generator[None, None, bool]:
        """Replay `revs` one per step (each remembered, its bodies released); False once
        `stale()` says an edit has made the pass stale."""
        for rev in revs:
            replay.prepare(rev)
            self._release(graph.by_id[rev], replay, rev)
            self._remember_replay(replay, rev, keys.get(rev))
            yield
            if stale():
                return False
        return True

    def replay_to(self, state: EnvironmentState, rev: str) -> Iterator[None]:
        """The schema around `rev` in `state` (a complete snapshot's), replayed one revision
        per step, those below first (what a fix that needs the schema asks for)."""
        replay = state.replay
        if replay is None or rev not in state.graph.by_id:
            return
        for below in self._unreplayed_below(state.graph, replay, rev):
            replay.prepare(below)
            self._release(state.graph.by_id[below], replay, below)
            yield
        replay.prepare(rev)

    def _release(self, script: MigrationScript, replay: Replay, rev: str) -> None:
        """Once a revision's schema is computed, forget its syntax trees and evaluated ops
        (parsed again if a feature or a later edit asks); open files keep theirs."""
        if not self.is_open(script.path):
            script.release_bodies()
            replay.release(rev)

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

    # ---------------------------------------------------------------- findings

    def findings(self, env: Environment, graph: RevisionGraph, by_path: dict[Path, MigrationScript],
                 keys: dict[str, str], replay_of: ReplayMaker, options: Callable[[], CompareOptions],
                 store: Store, stale: Callable[[], bool]
                 ) -> Generator[None, None, tuple[dict[Path, tuple[Diagnostic, ...]], dict[Path, dict[Diagnostic, None]]] | None]:
        """Every revision's D/S findings, filtered: (per file when a revision's findings are
        all in its own file, the others grouped by file, without repeats: S018 on env.py is
        said by every revision it concerns, and merged at the end of the pass in one go it
        was most of that step); None once stale()."""
        env_py_once: list[tuple[Path | None, str]] = []  # env.py found and read once per pass

        def env_py() -> tuple[Path | None, str]:
            if not env_py_once:
                env_py_once.append((env.env_py, env_py_text(env)))
            return env_py_once[0]
        order = [*keys, *(r for r in graph.by_id if r not in keys)]  # ancestors first
        worker = self._worker(env, graph, keys, order, replay_of, options, store, env_py) if self.fork else None
        try:
            return (yield from self._findings(env, graph, by_path, keys, replay_of, options, store, stale, order,
                                              env_py, worker))
        finally:
            if worker is not None:
                worker.close()

    def _worker(self, env: Environment, graph: RevisionGraph, keys: dict[str, str], order: list[str],
                replay_of: ReplayMaker, options: Callable[[], CompareOptions], store: Store,
                env_py: Callable[[], tuple[Path | None, str]]) -> FindingsHelper | None:
        """The CLI's forked worker for the last part of the revisions to compute (None: none)."""
        assert self.fork is not None
        todo = []
        for rev in order:
            rev_key = keys.get(rev)
            entry = self.memo.get(rev_key)
            if rev_key is not None and (entry is None or entry.found is None) and store.get("schema", rev_key) is None:
                todo.append(rev)
        return self.fork(self, env, graph, keys, todo, replay_of, options, env_py) if todo else None

    def _findings(self, env: Environment, graph: RevisionGraph, by_path: dict[Path, MigrationScript],
                  keys: dict[str, str], replay_of: ReplayMaker, options: Callable[[], CompareOptions],
                  store: Store, stale: Callable[[], bool], order: list[str],
                  env_py: Callable[[], tuple[Path | None, str]], worker: FindingsHelper | None
                  ) -> Generator[None, None, tuple[dict[Path, tuple[Diagnostic, ...]], dict[Path, dict[Diagnostic, None]]] | None]:
        grouped: dict[Path, dict[Diagnostic, None]] = {}
        schema_by_path: dict[Path, tuple[Diagnostic, ...]] = {}
        settings = env.settings
        for looked, rev in enumerate(order, 1):
            script, rev_key = graph.by_id[rev], keys.get(rev)
            if worker is not None and rev in worker.revs:
                worker.collect(self, graph, keys, store)  # (its findings are in the memo now, or it failed)
            entry = self.memo.get(rev_key)
            found = entry.found if entry is not None else None
            if found is None and rev_key is not None:
                cached = store.get("schema", rev_key)
                found = decode_diagnostics(cached, script.path) if cached is not None else None  # None: a miss
                if found is not None:
                    entry = self.memo.entry(rev_key)
                    entry.found = found
            computed = found is None
            if found is None:
                yield from replay_of.steps()
                replay = replay_of()
                if not (yield from self.replay_steps(graph, replay, keys, self._unreplayed_below(graph, replay, rev),
                                                     stale)):
                    return None
                found = self._compute(script, rev, rev_key, replay, options, env, store, env_py)
                self._remember_replay(replay, rev, rev_key)
                entry = self.memo.get(rev_key)
            # filtered and sorted once per revision key: a pass over cached results stays cheap
            mine = entry.filtered_with(settings) if entry is not None else None
            if mine is None:
                mine = tuple(sorted(apply_filters(found, settings, by_path), key=Diagnostic.sort_key))
                if entry is not None:
                    entry.filtered, entry.filtered_for = mine, settings
            if mine and all(d.path == script.path for d in mine) and script.path not in schema_by_path:
                schema_by_path[script.path] = mine
            else:
                for d in mine:
                    grouped.setdefault(d.path, {})[d] = None
            if computed or looked % KEY_STEP == 0:
                yield
                if stale():
                    return None
        return schema_by_path, grouped

    def _compute(self, script: MigrationScript, rev: str, key: str | None, replay: Replay,
                 options: Callable[[], CompareOptions], env: Environment, store: Store,
                 env_py_source: Callable[[], tuple[Path | None, str]]) -> list[Diagnostic]:
        """The D and S rules of one revision, computed (and remembered). `env_py_source`:
        env.py's path and text (found and read once per pass: three stats and a read per
        revision were 3 % of a first check)."""
        self.computed_revisions += 1
        try:
            found = self.rules(script, rev, replay, options, env, env_py_source)
        except Exception:  # a bug of ours: this revision goes unchecked, the rest is still served
            log.exception("migration-lsp: checking %s failed (please report this); its D/S rules are skipped",
                          script.path)
            self._release(script, replay, rev)
            if key is not None:  # said once: not tried again until the text changes (nor cached on disk)
                self.memo.entry(key).found = []
            return []
        if key is not None:
            self.memo.entry(key).found = found
            store.put("schema", key, encode_diagnostics(found, script.path))
        self._release(script, replay, rev)
        return found

    def judge(self, graph: RevisionGraph, replay: Replay, keys: dict[str, str], rev: str,
              options: Callable[[], CompareOptions], env: Environment,
              env_py_source: Callable[[], tuple[Path | None, str]]) -> list[Diagnostic]:
        """One revision's D/S findings along `replay`, the revisions below it replayed first
        without their rules (what the CLI's findings worker does per revision; raises on a bug
        of ours; its findings are not remembered)."""
        for _ in self.replay_steps(graph, replay, keys, self._unreplayed_below(graph, replay, rev), lambda: False):
            pass
        script = graph.by_id[rev]
        try:
            return self.rules(script, rev, replay, options, env, env_py_source)
        finally:
            self._release(script, replay, rev)

    def rules(self, script: MigrationScript, rev: str, replay: Replay, options: Callable[[], CompareOptions],
              env: Environment, env_py_source: Callable[[], tuple[Path | None, str]]) -> list[Diagnostic]:
        """The D and S rules of one revision along `replay` (raises on a bug of ours; also run by
        the CLI's findings worker, engine.forked_findings)."""
        from ..checks.downgrade import check_downgrade
        from ..checks.env_py import env_py_facts
        from ..checks.history import check_history
        from ..checks.pg_ddl import check_pg_ddl
        from ..checks.pg_transactions import check_pg_transactions
        from ..checks.portable import check_portable
        from ..checks.safety import check_safety

        env_name = env.name
        schema = replay.revision(rev)
        off = families_off(env.settings)
        found: list[Diagnostic] = [] if "downgrade" in off else check_downgrade(script, schema, options(), env_name,
                                                                                           self.outside)
        found += [] if "safety" in off else check_safety(script, schema, options().dialect, env_name)
        env_py = env_py_facts(*env_py_source())
        version = env.settings.postgres_version
        if "pg_ddl" not in off:
            found += check_pg_ddl(script, schema, options().dialect, env_name, version)
        if "pg_transactions" not in off:
            found += check_pg_transactions(script, schema, options().dialect, env_name, env_py, version)
        if "portable" not in off:
            found += check_portable(script, schema, options().dialect, env_name, env_py)
        if "history" not in off:
            found += check_history(script, schema, env_name)
        return found


class ReplayMaker:
    """SchemaPass.replay_factory: a callable that makes the replay once; steps() makes it in
    steps for the full pass (at 20,000 revisions, comparing the graph with the previous
    replay's and taking in the memo's states of every revision held the loop 40-60 ms)."""

    def __init__(self, schema: SchemaPass, graph: RevisionGraph, key: Key, keys: dict[str, str],
                 dialect: str | None, answers: dict[str, str]) -> None:
        self.schema, self.graph, self.key, self.keys, self.dialect = schema, graph, key, keys, dialect
        self.answers = answers  # (what other files answer its revisions: revision_keys)
        self.made: Replay | None = None

    def steps(self) -> Iterator[None]:
        """Make the replay, yielding every KEY_STEP revisions taken in from the memo."""
        if self.made is not None:
            return
        from ..replay import Replay

        replay = Replay(self.graph, None, self.dialect, outside=self.schema.outside)
        previous = self.schema.replays.get(self.key)
        before, answers = self.schema._answered.get(self.key, {}), self.answers
        if previous is not None:
            moved = {rev for rev in answers.keys() | before.keys() if answers.get(rev) != before.get(rev)}
            yield from replay.take_over(previous, KEY_STEP, moved)
        memo = self.schema.memo
        for n, (rev, rev_key) in enumerate(self.keys.items(), 1):
            entry = memo.get(rev_key)
            if entry is not None and entry.replay is not None:
                replay.adopt(rev, *entry.replay)
            if n % KEY_STEP == 0:
                yield
        if self.made is None:  # (not made meanwhile by a call)
            self.made = self.schema.replays[self.key] = replay
            self.schema._answered[self.key] = answers

    def __call__(self) -> Replay:
        if self.made is None:
            for _ in self.steps():
                pass
        assert self.made is not None  # (steps() ran to its end)
        return self.made
