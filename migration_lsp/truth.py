"""The truth pass: the migrations run for real on a scratch database, then `alembic check`.

A static replay cannot be exact on arbitrary Python (helpers, runtime branches, data
migrations); a database can. In the trusted child (truth_child.py, the project's
interpreter) each revision is upgraded one at a time on a database the tool owns
(scratchdb.py): a failure becomes R001 on the line of the revision that raised it; at
head, Alembic's own `alembic check` lists the differences with the models, item for
item, and each becomes M001 (in the models, not in the database), M002 (in the
database, not in the models) or M003 (changed), located on the model line or on the op
that created it (the static replay's origins). These replace the static M findings of
the environment (never both).

Incremental: after each revision the SQLite database file is kept in the user's cache
folder, keyed by the revisions run so far (content and ancestry), with a size cap and
least-recently-used eviction; on the embedded PostgreSQL, template databases with the
same keys (below the head, at it, below the revision edited last: see _boundaries), kept
while the cluster lives. The next pass starts from the newest snapshot it has, so editing
the head revision re-runs only it.

Cost: env.py runs once per pass (truth_child.Run), the project's bytecode is kept in the
user's cache folder, the child starts before the database (its imports overlap the
cluster's start), and the server keeps a spare child warm for the pass after a save
(Spares). benchmarks/truth_speed.py measures it.

Dialect: the scratch database is always of the environment's own dialect. When there is
none (PostgreSQL without the extra or a URL, MySQL without a URL) the pass is skipped and
says so once; an environment whose dialect is unknown runs on SQLite, and a failure there
is "not verified", never R001. One history of several kept per dialect (prefect:
versions/sqlite, versions/postgresql) is walked by Alembic from the environment's own
folder; when env.py chooses another one (by its own settings, e.g. an environment variable
naming the database), the run is "not verified", never R001.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import child, scratchdb
from .cache import cache_root
from .core import Diagnostic, Span
from .rules import severity

CHILD = Path(__file__).with_name("truth_child.py")
TIMEOUT = 600.0
MEMORY_LIMIT = 4 * 1024**3
SNAPSHOT_CAP = 1024**3  # bytes of SQLite snapshots kept in the cache folder, at most
# Part of every snapshot's key, with the interpreter that ran it: a snapshot taken the way an
# older migration-lsp took them (2: SQLite's backup API, a WAL journal's content included) is
# never restored by a newer one.
SNAPSHOT_FORMAT = "2"
REPLACES = ("M001", "M002", "M003", "M004")  # static findings a completed truth pass answers for
CODES = ("R001", "M001", "M002", "M003")


@dataclass
class Outcome:
    """One environment's truth pass."""

    env_name: str
    database: str = ""  # "SQLite (temp file)", ...
    skipped: str | None = None  # why the pass did not run (said once)
    ran: int = 0  # revisions upgraded in this pass
    reused: int = 0  # revisions answered by a snapshot
    total: int = 0
    secs: float = 0.0
    failed: str | None = None  # the revision that failed
    hint: str | None = None  # what the user may set about the failure (the summary says it)
    not_verified: str | None = None  # unknown dialect failing on SQLite: why
    compared: bool = False  # `alembic check` ran at head: the M findings below are the truth
    compare_error: str | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)  # alembic check's list, described
    located: int = 0  # items placed on a model line or an op (not the fallback)
    executed: list[str] = field(default_factory=list)  # revisions upgraded, in order
    downgraded: set = field(default_factory=set)  # files whose downgrade ran: D001/D002 are the database's
    configure: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)  # the child's (benchmarks/truth_speed.py; counts for the tests)

    def summary(self) -> str:
        if self.skipped:
            return f"truth pass skipped for {self.env_name}: {self.skipped}"
        parts = [f"truth pass on {self.database}: {self.ran} revision{'s' if self.ran != 1 else ''} upgraded"]
        if self.reused:
            parts[0] += f" ({self.reused} from snapshots)"
        if self.failed:
            parts.append(f"stopped at {self.failed}")
        if self.not_verified:
            parts.append(f"not verified: {self.not_verified}")
        if self.compared:
            parts.append(f"alembic check: {len(self.items)} difference{'s' if len(self.items) != 1 else ''}")
        elif self.compare_error:
            parts.append(f"alembic check failed: {self.compare_error}")
        hint = f"; {self.hint}" if self.hint else ""
        return f"{', '.join(parts)} in {self.secs:.1f} s ({self.env_name}){hint}"


# --------------------------------------------------------------------------- order and keys


def upgrade_order(graph) -> list[str]:
    """Every revision after those below it (parents, depends_on), ties by id: the order
    the pass upgrades in, and the one its snapshots are keyed by."""
    below = {rev: tuple(dict.fromkeys(graph.parents[rev] + graph.dependencies[rev])) for rev in graph.by_id}
    pending = {rev: sum(1 for b in below[rev] if b in graph.by_id) for rev in graph.by_id}
    above: dict[str, list[str]] = {}
    for rev, bs in below.items():
        for b in bs:
            above.setdefault(b, []).append(rev)
    import heapq

    ready = [rev for rev, n in pending.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        rev = heapq.heappop(ready)
        order.append(rev)
        for a in above.get(rev, ()):
            pending[a] -= 1
            if pending[a] == 0:
                heapq.heappush(ready, a)
    return order


def chain_keys(order: list[str], graph, salt: str) -> list[str]:
    """Key of the database after order[i]: every revision run so far, by content, in order."""
    keys, chain = [], hashlib.blake2b(salt.encode(), digest_size=16).hexdigest()
    for rev in order:
        text = graph.by_id[rev].text
        chain = hashlib.blake2b(f"{chain}|{rev}|".encode() + text.encode("utf-8", "surrogatepass"),
                                digest_size=16).hexdigest()
        keys.append(chain)
    return keys


def _snapshot_dir(name: str = "truth-snapshots") -> Path | None:
    """A folder of ours alone in the user's cache folder (never the workspace), or None."""
    root = cache_root()
    if root is None:
        return None
    folder = root / name
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
            return None  # not ours alone: never used
    except OSError:
        return None
    return folder


def _evict(folder: Path, cap: int) -> None:
    """Least recently used first, until the snapshots fit in `cap` bytes."""
    entries = []
    for path in folder.glob("*.db"):
        try:
            st = path.stat()
        except OSError:
            continue
        entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= cap:
            break
        path.unlink(missing_ok=True)
        total -= size


# --------------------------------------------------------------------------- the pass


def verify(state, models=None, source=None, *, database_url: str | None = None, python: str | None = None,
           timeout: float | None = None, snapshots: bool = True, schema=None,
           downgrades: bool | set | frozenset = True, on_start=None, spares: Spares | None = None) -> Outcome:
    """Run the truth pass for one environment (blocking; never raises but Refused).
    `schema`: the static schema at head, for locating (else taken from the state's replay;
    the server passes it: the replay is the engine's, not to be touched from a thread).
    `downgrades`: all, none, or the revisions (ids) to downgrade. `on_start(proc)`: the
    child process, for a caller that cancels (Verifier). `spares`: warm children to take
    the job (and one is started for the next pass)."""
    env = state.env
    outcome = Outcome(env.name)
    t0 = time.perf_counter()
    own = spares is None  # (the CLI: a child started early, for this pass only)
    try:
        _verify(outcome, state, models, source, database_url, python, timeout, snapshots, schema, downgrades,
                on_start, spares or Spares(), keep_spare=not own)
    except scratchdb.Unavailable as exc:
        outcome.skipped = str(exc)
    outcome.secs = time.perf_counter() - t0
    return outcome


def _verify(outcome: Outcome, state, models, source, database_url, python, timeout, snapshots, schema,
            downgrades, on_start, spares: Spares, keep_spare: bool) -> None:
    from .models import interpreter

    env, graph = state.env, state.graph
    if env.env_py is None or env.config_path is None:
        outcome.skipped = "no env.py to run"
        return
    if models is not None and models.error:  # loading them ran env.py: it cannot run, and M004 says why
        outcome.skipped = "the models could not be loaded (see M004)"
        return
    if graph is None or not graph.by_id:
        outcome.skipped = "no revisions"
        return
    py = python or interpreter(env)
    cwd = str(env.config_path.parent)
    spares.prepare(py, cwd, unless_ready=True)  # importing its libraries while the database starts
    try:
        _run_pass(outcome, state, models, source, database_url, timeout, snapshots, schema, downgrades, on_start,
                  spares, py)
    finally:
        if keep_spare:
            spares.prepare(py, cwd, unless_ready=True)  # warm for the next pass (after a save)
        else:
            spares.close()


def _run_pass(outcome: Outcome, state, models, source, database_url, timeout, snapshots, schema, downgrades,
              on_start, spares: Spares, py: str) -> None:
    from .models import sys_paths

    env, graph = state.env, state.graph
    dialect = env.dialect
    order = upgrade_order(graph)
    outcome.total = len(order)
    initial = env.settings.initial_metadata  # (its tables are in every snapshot: part of their key)
    salt = "|".join((SNAPSHOT_FORMAT, py, str(env.config_path), env.name, _read(env.env_py), _read(env.config_path),
                     *([f"initial-metadata={initial}"] if initial else [])))
    keys = chain_keys(order, graph, salt)
    # PostgreSQL (the embedded cluster): template databases, kept while the cluster lives
    templates = snapshots and dialect == "postgresql" and not database_url
    names = [scratchdb.snapshot_name(k) for k in keys] if templates else []
    start = scratchdb.newest_snapshot(names) if templates else 0
    scratch = scratchdb.open_scratch(dialect, database_url, template=names[start - 1] if start else None)
    outcome.database = scratch.label
    pg_snapshots = _boundaries(order, keys, names, start, salt) if templates else {}
    try:
        folder = _snapshot_dir() if snapshots and scratch.dialect == "sqlite" else None
        work = tempfile.mkdtemp(prefix="migration-lsp-truth-")
        try:
            if folder is not None:
                start = _restore(folder, keys, scratch)
            outcome.reused = start
            pycache = _snapshot_dir("pycache")
            if isinstance(downgrades, (set, frozenset)):
                which: bool | list[str] = sorted(downgrades)
            else:
                which = bool(downgrades)
            front, after = sys_paths(env)
            job = {
                "ini": str(env.config_path) if env.config_path.suffix != ".toml" else None,
                "toml": str(env.config_path) if env.config_path.suffix == ".toml" else None,
                "cwd": str(env.config_path.parent),
                "script_location": str(env.script_location) if env.script_location else None,
                # one dialect's history of the config's versions folder (prefect): Alembic's
                # ScriptDirectory must walk that folder, as env.py has it walk when it chooses it
                "version_locations": [str(p) for p in env.version_locations] if env.history_dialect else None,
                "sys_path": front,  # alembic.ini's prepend_sys_path, as Alembic puts it
                "sys_path_after": after,  # the workspace, last (its `logging/` must not shadow the stdlib's)
                "url": scratch.url,
                "allow_unix": list(scratch.allow_unix),
                "allow_tcp": [list(x) for x in scratch.allow_tcp],
                "isolate_network": scratch.isolate_network,
                "revisions": order[start:],
                "compare": not (source is not None and getattr(source, "disabled", False)),
                "snapshot_each": work if folder is not None else None,
                "pg_snapshots": pg_snapshots,
                "downgrades": which,
                "pycache": str(pycache) if pycache is not None else None,
                # created on an empty database only (a snapshot or template has its tables already)
                "initial_metadata": initial if start == 0 else None,
            }
            limit = TIMEOUT if timeout is None else timeout

            def run(job: dict):
                spare = spares.take(py, job["cwd"])
                if spare is None:
                    return json.loads(child.run(py, str(CHILD), [json.dumps(job)], cwd=job["cwd"], timeout=limit,
                                                memory=MEMORY_LIMIT, on_start=on_start))
                if on_start is not None:
                    on_start(spare.proc)
                return json.loads(spare.finish(json.dumps(job).encode() + b"\n", timeout=limit))

            try:
                data = run(job)
                first = data

                def fresh():  # a database where this run started: from the same snapshot
                    if templates and start and scratchdb.newest_snapshot(names[:start]) != start:
                        raise scratchdb.Unavailable("the snapshot this pass started from is gone")
                    again = scratchdb.open_scratch(dialect, database_url,
                                                   template=names[start - 1] if start and templates else None)
                    if folder is not None and start:
                        try:
                            shutil.copyfile(folder / f"{keys[start - 1]}.db", again.url.split("///", 1)[1])
                        except OSError:
                            again.close()
                            raise
                    return again

                data = _explained(data, job, order, run, fresh)
                steps = data.get("steps") or [] if isinstance(data, dict) else []
                if steps and isinstance(steps[-1], dict) and steps[-1].get("unrestored"):
                    # a downgrade left the database neither here nor there: the upgrades and
                    # `alembic check` again on a fresh database, without downgrades; the
                    # downgrade findings so far are kept
                    scratch.close()
                    scratch = scratchdb.open_scratch(dialect, database_url)
                    start = 0
                    again = run(dict(job, url=scratch.url, revisions=order, downgrades=False, snapshot_each=None,
                                     pg_snapshots={}, initial_metadata=initial))
                    downs = {s.get("rev"): s.get("downgrade") for s in steps if isinstance(s, dict)}
                    for step in again.get("steps") or []:
                        if isinstance(step, dict) and downs.get(step.get("rev")):
                            step["downgrade"] = downs[step["rev"]]
                    data = again
            except (child.ChildError, ValueError, AttributeError) as exc:
                outcome.compare_error = f"the truth pass {exc}"
                return
            if folder is not None and start == outcome.reused:  # (a second run keeps none)
                _keep(folder, keys, order, data.get("snapshots") or {}, work)
            if templates and isinstance(first, dict) and isinstance(first.get("pg_snapshots"), dict):
                made = set(pg_snapshots.values())  # (only the names we asked for)
                scratchdb.keep_snapshots([n for n in first["pg_snapshots"].values() if n in made])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        scratch.close()
    _read_result(outcome, data, state, models, source, dialect, scratch.dialect, schema)


def _explained(data, job: dict, order: list[str], run, fresh) -> dict:
    """A downgrade that did not restore the schema, in a run that could not reflect the
    schema it should have restored (the child reflects a schema only when its fingerprint
    differs, and a PostgreSQL database keeps no copy of the states it has left): the pass
    again on a fresh database (`fresh()`, from the same snapshot), reflecting each state
    around those revisions at once (the child's `eager`), then around every revision if
    that is still not enough. Healthy downgrades never come here."""
    for attempt in range(2):
        unexplained = data.get("unexplained") if isinstance(data, dict) else None
        if not isinstance(unexplained, list) or not unexplained:
            return data
        index = {rev: i for i, rev in enumerate(order)}
        eager: bool | list[str] = True if attempt else sorted(
            {order[j] for rev in unexplained if rev in index for j in (index[rev] - 1, index[rev]) if j >= 0})
        try:
            scratch = fresh()
        except (OSError, scratchdb.Refused, scratchdb.Unavailable):  # (the unexplained downgrades keep their static findings)
            return data
        try:
            again = run(dict(job, url=scratch.url, eager=eager, snapshot_each=None, pg_snapshots={}))
        finally:
            scratch.close()
        if not isinstance(again, dict):
            return data
        passes = (data.get("timings") or {}).get("passes", 1) if isinstance(data.get("timings"), dict) else 1
        if isinstance(again.get("timings"), dict):
            again["timings"]["passes"] = passes + 1
        again["snapshots"] = data.get("snapshots")  # (the first run's copies: the same states)
        data = again
    return data


def _boundaries(order: list[str], keys: list[str], names: list[str], start: int, salt: str) -> dict[str, str]:
    """PostgreSQL: after which revisions this pass keeps a template database. Each one
    makes env.py run again (a template needs every connection to it closed), so not after
    every revision: below the head (editing the head re-runs only it), and below the
    first revision that changed since the last pass here (editing it again re-runs only
    it and what is above)."""
    last = scratchdb.remember_keys(salt, keys)
    wanted = {len(order) - 2, len(order) - 1}
    if last is not None:
        changed = next((i for i, (a, b) in enumerate(zip(keys, last)) if a != b), min(len(keys), len(last)))
        wanted.add(changed - 1)
    return {order[i]: names[i] for i in sorted(wanted) if start <= i < len(order)}


def _read(path: Path | None) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path else ""
    except OSError:
        return ""


def _restore(folder: Path, keys: list[str], scratch) -> int:
    """Copy the newest snapshot we have into the scratch file: how many revisions it holds."""
    target = scratch.url.split("///", 1)[1]
    for i in range(len(keys) - 1, -1, -1):
        snap = folder / f"{keys[i]}.db"
        if snap.is_file():
            try:
                shutil.copyfile(snap, target)
                os.utime(snap)  # recently used
                return i + 1
            except OSError:
                return 0
    return 0


def _keep(folder: Path, keys: list[str], order: list[str], made: dict, work: str) -> None:
    """The child's per-revision copies, into the cache under their keys (from our temp
    folder only: a path the child names elsewhere is not taken)."""
    index = {rev: i for i, rev in enumerate(order)}
    for rev, path in made.items():
        i = index.get(rev)
        if i is None or os.path.dirname(os.path.realpath(str(path))) != os.path.realpath(work):
            continue
        try:
            os.replace(path, folder / f"{keys[i]}.db")
        except OSError:
            pass
    _evict(folder, SNAPSHOT_CAP)


def _read_result(outcome: Outcome, data: dict, state, models, source, dialect, scratch_dialect, schema) -> None:
    env = state.env
    if not isinstance(data, dict):
        outcome.compare_error = "the truth pass sent unreadable output"
        return
    outcome.configure = data.get("configure") or {}
    timings = data.get("timings")
    outcome.timings = timings if isinstance(timings, dict) else {}
    if data.get("initial_metadata_error"):  # the setting's tables could not be made: no revision ran
        outcome.skipped = (f"initial-metadata {env.settings.initial_metadata!r} could not be created: "
                           f"{data['initial_metadata_error']}")
        return
    if data.get("not_verified"):  # env.py ran another history: nothing it did is this environment's
        outcome.not_verified = str(data["not_verified"])
        return
    if env.history_dialect and data.get("other_backends"):  # (`alembic check` ran env.py, for another history)
        outcome.not_verified = (f"env.py made its engine for {', '.join(map(str, data['other_backends']))} (by its "
                                "own settings, e.g. an environment variable naming the database), not for this "
                                "environment's history")
        return
    if data.get("error"):
        outcome.compare_error = data["error"]
    for step in data.get("steps") or []:
        if not isinstance(step, dict) or not isinstance(step.get("rev"), str):
            continue
        outcome.executed.append(step["rev"])
        if step.get("ok"):
            outcome.ran += 1
            if dialect is not None:
                _downgrade_findings(outcome, state, step, scratch_dialect)
            continue
        outcome.failed = step["rev"]
        outcome.hint = _initial_hint(state, step)
        if dialect is None:  # unknown dialect tried on SQLite: a failure says nothing about the project
            outcome.not_verified = f"{step['rev']} fails on SQLite and the environment's dialect is unknown"
            continue
        script = state.graph.by_id.get(step["rev"])
        if script is None:
            continue
        path, span = _failure_location(script, step.get("frames") or [])
        outcome.diagnostics.append(Diagnostic(
            "R001", severity("R001"), path, span, f"upgrade fails on {scratch_dialect}: {step.get('error')}",
            env.name, {"sql": step.get("sql") or []}))
    compare = data.get("compare")
    if isinstance(compare, dict):
        if compare.get("ok") and not outcome.failed:
            outcome.compared = True
            outcome.items = [i for i in compare.get("items") or [] if isinstance(i, dict)]
            _differences(outcome, state, models, source, schema)
        elif compare.get("error"):
            outcome.compare_error = str(compare["error"])


MISSING_TABLE = re.compile(r"no such table|relation \S+ does not exist|doesn't exist|NoSuchTableError")


def _initial_hint(state, step: dict) -> str | None:
    """A base revision that fails on a missing table (mlflow's 451aebb31d03 alters a table its
    application creates before `alembic upgrade head`): the setting that says so. Not guessed
    (README): only named."""
    rev = step.get("rev")
    if state.env.settings.initial_metadata or not isinstance(rev, str) or state.graph.parents.get(rev):
        return None
    if not MISSING_TABLE.search(str(step.get("error") or "")):
        return None
    return ("the base revision needs a table no revision creates: if the application creates it before "
            "`alembic upgrade head`, name that metadata in `initial-metadata` (README, Configuration)")


def _downgrade_findings(outcome: Outcome, state, step: dict, dialect: str) -> None:
    """The down-and-up of one revision: R002 (fails), D001 (changes nothing), D002 (does not
    restore the schema before the upgrade), R002 (the upgrade again fails)."""
    script = state.graph.by_id.get(step["rev"])
    down = step.get("downgrade")
    if script is None or not isinstance(down, dict) or down.get("skipped") or down.get("unexplained"):
        return  # (unexplained: the database could not say; the static D001/D002 stand)
    outcome.downgraded.add(script.path)
    function = script.downgrade
    where = function.def_span if function else Span.point(0)
    env = state.env.name
    if not down.get("ok"):
        path, span = _failure_location(script, down.get("frames") or [], "downgrade")
        outcome.diagnostics.append(Diagnostic("R002", severity("R002"), path, span,
                                              f"downgrade fails on {dialect}: {down.get('error')}", env))
    elif down.get("noop"):
        outcome.diagnostics.append(Diagnostic(
            "D001", severity("D001"), script.path, where,
            f"downgrade() leaves the schema as upgrade() made it (run on {dialect})", env))
    elif down.get("left") or down.get("missing") or down.get("changed"):
        parts = [f"{label}: {', '.join(map(str, down[key][:5]))}{' ...' if len(down[key]) > 5 else ''}"
                 for key, label in (("left", "left behind"), ("missing", "not restored"), ("changed", "changed"))
                 if down.get(key)]
        outcome.diagnostics.append(Diagnostic(
            "D002", severity("D002"), script.path, where,
            f"downgrade does not restore the schema before upgrade() (run on {dialect}): {'; '.join(parts)}", env))
    again = step.get("reupgrade")
    if isinstance(again, dict):
        outcome.failed = step["rev"]  # the run stopped there
        path, span = _failure_location(script, again.get("frames") or [])
        outcome.diagnostics.append(Diagnostic("R002", severity("R002"), path, span,
                                              f"upgrade after downgrade fails on {dialect}: {again.get('error')}",
                                              env))


def _failure_location(script, frames: list, function: str = "upgrade") -> tuple[Path, Span]:
    """The revision's line that raised (the deepest frame in its file), else `def upgrade`
    (or `def downgrade`)."""
    line = None
    own = os.path.realpath(script.path)
    for frame in frames:
        if isinstance(frame, list) and len(frame) == 2 and isinstance(frame[0], str) \
                and isinstance(frame[1], int) and os.path.realpath(frame[0]) == own:
            line = frame[1] - 1
    if line is not None and line < len(script.lines or ()):
        text = script.lines[line]
        return script.path, Span(line, len(text) - len(text.lstrip()), line, len(text.rstrip()))
    found = script.upgrade if function == "upgrade" else script.downgrade
    return script.path, found.def_span if found else Span.point(0)


# --------------------------------------------------------------------------- alembic check -> M001-M003


_NOUN = {"Index": "index", "UniqueConstraint": "unique constraint", "ForeignKeyConstraint": "foreign key",
         "CheckConstraint": "check constraint", "PrimaryKeyConstraint": "primary key"}


def _what(item: dict) -> str:
    table = item.get("table") or "?"
    if item.get("schema"):
        table = f"{item['schema']}.{table}"
    kind = item.get("kind", "")
    if item.get("column"):
        return f"column {table}.{item['column']}"
    if item.get("object"):
        noun = _NOUN.get(item["object"], item["object"])
        name = f" {item['name']}" if item.get("name") else ""
        return f"{noun}{name} on {table} ({', '.join(map(str, item.get('columns') or []))})"
    if "comment" in kind:
        return f"comment of table {table}"
    if item.get("table"):
        return f"table {table}"
    return kind


def _differences(outcome: Outcome, state, models, source, schema=None) -> None:
    """Each item of `alembic check`'s list -> one diagnostic, located."""
    fallback_path, fallback_span = source.location(state.env.config_path) if source is not None \
        else (state.env.env_py or state.env.config_path, Span.point(0))
    if schema is None:
        try:
            schema = state.replay.at_heads() if state.replay is not None else None
        except Exception:  # noqa: BLE001 - replaying workspace revisions may raise anything: compare without a schema
            schema = None
    model_tables = models.tables if models is not None and not models.error else {}
    for item in outcome.items:
        kind = item.get("kind", "")
        what = _what(item)
        if kind.startswith("add_"):
            code, message = "M001", f"{what} is in the models but not in the database at head (alembic check)"
            origin = _model_origin(model_tables, item)
        elif kind.startswith("remove_"):
            code, message = "M002", f"{what} is in the database at head but not in the models (alembic check)"
            origin = _schema_origin(schema, item)
        else:
            changes = item.get("changes") or []
            detail = "; ".join(f"{c.get('kind', '').replace('modify_', '')}: {c.get('old')!s} in the database, "
                               f"{c.get('new')!s} in the models" for c in changes) or kind
            code, message = "M003", f"{what} differs: {detail} (alembic check)"
            origin = _model_origin(model_tables, item) or _schema_origin(schema, item)
        if origin is not None:
            outcome.located += 1
        path, span = origin if origin is not None else (fallback_path, fallback_span)
        outcome.diagnostics.append(Diagnostic(code, severity(code), path, span, message, state.env.name,
                                              {"what": what, "alembic": item.get("repr")}))


def _key(item: dict) -> str:
    return f"{item['schema']}.{item['table']}" if item.get("schema") else str(item.get("table"))


def _model_origin(tables: dict, item: dict):
    table = tables.get(_key(item))
    if table is None:
        return None
    if item.get("column"):
        col = table.column(item["column"])
        return (col.origin if col is not None and col.origin else None) or table.origin
    if item.get("object"):
        made = next((o for obj, o in (*table.indexes, *table.constraints) if item.get("name")
                     and getattr(obj, "name", None) == item["name"] and o and o != table.origin), None)
        if made is not None:  # the `Index(...)` line the models loader saw
            return made
        args = (table.info or {}).get("table_args")
        if args and (not item.get("name") or item["name"] in (table.info or {}).get("table_args_names", ())):
            return args
        for name in item.get("columns") or []:
            col = table.column(name)
            if col is not None and col.origin:
                return col.origin
        return args or table.origin
    return table.origin


def _schema_origin(schema, item: dict):
    if schema is None:
        return None
    table = schema.table(item.get("table"), item.get("schema"))
    if table is None:
        return None
    if item.get("column"):
        col = table.column(item["column"])
        return (col.origin if col is not None and col.origin else None) or table.origin
    if item.get("object") and item.get("name"):
        for obj, origin in (*table.indexes, *table.constraints):
            if getattr(obj, "name", None) == item["name"] and origin:
                return origin
    if item.get("object"):
        for name in item.get("columns") or []:
            col = table.column(name)
            if col is not None and col.origin:
                return col.origin
    return table.origin


# --------------------------------------------------------------------------- into a snapshot


def verify_snapshot(engine, snapshot, *, database_url: str | None = None, progress=None,
                    downgrades: bool | str = True):
    """The truth pass for every environment of `snapshot` that has revisions: the snapshot
    with each pass's findings in place of the static ones it answers for, and the outcomes
    (for the summary lines). `downgrades`: True ("all"), False ("none") or "changed" (the
    revisions this branch adds or changes, against the merge base with the base branch).
    Raises scratchdb.Refused for a URL the tool must not use, or "changed" without a base."""
    from dataclasses import replace

    states, outcomes = [], []
    for state in snapshot.environments:
        if not runnable(engine, state):
            states.append(state)
            continue
        if progress is not None:
            progress(f"truth pass: {state.env.name}")
        key = (state.env.root, state.env.name)
        downs = changed_downgrades(engine, state) if downgrades == "changed" \
            else downgrades not in (False, "none")
        outcome = verify(state, engine.models.get(key), engine.metadata_source(state.env), database_url=database_url,
                         downgrades=downs)
        outcomes.append(outcome)
        states.append(with_outcome(state, outcome))
    return replace(snapshot, environments=tuple(states)), outcomes


def changed_downgrades(engine, state) -> frozenset:
    """`--downgrades changed`: the revisions this branch adds or whose file it changed,
    compared with the merge base (what `check --changed` reports on); the others were
    downgraded when they were added."""
    from .checks.git import changed_revisions

    base = engine.base(state.env.root, state.env, state.graph)
    if base is None:
        why = next(iter(engine.git.notes.values()), "no base branch")
        raise scratchdb.Refused(f"--downgrades changed needs a base branch (git): {why}")
    return frozenset(changed_revisions(state.graph, base))


GRAPH_ERRORS = ("G002", "G003", "G004", "G005", "G006", "G007")  # Alembic cannot even load such a graph


def runnable(engine, state) -> bool:
    """The pass runs where `alembic check` could: a trusted workspace, revisions, a graph
    Alembic can load, and models to compare with (env.py's target_metadata, found statically
    or when env.py ran under Alembic's EnvironmentContext to load them). Elsewhere the G
    errors and the drift status say why."""
    if not engine.trusted or state.graph is None or not state.graph.by_id:
        return False
    if any(d.code in GRAPH_ERRORS for d in state.graph_diagnostics):
        return False
    source = engine.metadata_source(state.env)
    if source.disabled:
        return False
    models = engine.models.get((state.env.root, state.env.name))
    return bool(source.specs) or (models is not None and not models.error and bool(models.tables))


def with_outcome(state, outcome: Outcome):
    """`state` with the pass's findings: R001 added; when `alembic check` ran at head, its
    M001-M003 instead of the static M001-M004 (never both)."""
    from dataclasses import replace

    from .checks import apply_filters

    if outcome.skipped or not outcome.diagnostics and not outcome.compared and not outcome.downgraded:
        return state
    drop = set(REPLACES) if outcome.compared else set()
    found = apply_filters(outcome.diagnostics, state.env.settings, state.script_by_path)
    by_path: dict[Path, tuple[Diagnostic, ...]] = {}
    for path, ds in state.by_path.items():
        gone = drop | {"D001", "D002"} if path in outcome.downgraded else drop
        kept = tuple(d for d in ds if d.code not in gone)
        if kept:
            by_path[path] = kept
    for d in found:
        by_path[d.path] = by_path.get(d.path, ()) + (d,)
    by_path = {p: tuple(sorted(ds, key=Diagnostic.sort_key)) for p, ds in by_path.items()}
    return replace(state, by_path=by_path)


# --------------------------------------------------------------------------- the server's passes


class Spares:
    """Warm children for the server's passes: starting Python and importing SQLAlchemy and
    Alembic is most of a re-run after a save (seconds), so after each pass a spare child
    for the same interpreter and folder is started and imports them while the user types;
    the next pass hands it its job on stdin. Each spare serves ONE pass (nothing carries
    over from one pass to the next); it is a child like any other (its own process group,
    killed with the server by child.kill_all, dies with it by PR_SET_PDEATHSIG), and a
    stale or dead one is discarded, never used."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str], child.Started] = {}
        self._lock = threading.Lock()
        self.started = 0  # spares started, taken (what the tests count)
        self.taken = 0

    def take(self, python: str, cwd: str) -> child.Started | None:
        with self._lock:
            spare = self._idle.pop((python, cwd), None)
        if spare is not None and spare.alive():
            self.taken += 1
            return spare
        if spare is not None:
            spare.discard()
        return None

    def prepare(self, python: str, cwd: str, unless_ready: bool = False) -> None:
        """A new spare for (python, cwd) (`unless_ready`: unless a live one waits already)."""
        if unless_ready:
            with self._lock:
                idle = self._idle.get((python, cwd))
            if idle is not None and idle.alive():
                return
        try:
            spare = child.start(python, str(CHILD), ["--wait"], cwd=cwd, memory=MEMORY_LIMIT, stdin=True)
        except child.ChildError:  # no spare: the next pass starts its own child
            return
        self.started += 1
        with self._lock:
            old, self._idle[(python, cwd)] = self._idle.get((python, cwd)), spare
        if old is not None:
            old.discard()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle.values()), {}
        for spare in idle:
            spare.discard()


def _kill_group(proc) -> None:
    """SIGKILL to a pass's child and its process group (it leads one: child.py)."""
    if proc.returncode is not None:  # reaped: its pid may be somebody else's now
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:  # already gone
        pass


class Verifier:
    """The language server's truth passes (setting `verify`: "auto" | "off", `databaseUrl`):
    the last outcome per environment, shown in place of the static findings it answers
    for until a file changes (then the static ones again, until the pass after the next
    save). `generation` moves on every change: a pass that started before is discarded,
    and its child process (with its process group) is killed at once, not left to finish
    the migrations for nothing (the scratch database is dropped as the pass ends)."""

    def __init__(self) -> None:
        self.enabled = True
        self.database_url: str | None = None
        self.outcomes: dict[tuple[Path, str], Outcome] = {}
        self.generation = 0
        self._children: dict[int, object] = {}  # pid -> Popen of the running passes' children
        self.spares = Spares()
        self._lock = threading.Lock()
        # (id of by_path, id of the outcome, the state with it, that by_path: kept alive so its id stays its own)
        self._applied: dict[tuple[Path, str], tuple[int, int, object, object]] = {}

    def configure(self, raw) -> None:
        if isinstance(raw, dict) and isinstance(raw.get("migrationLsp"), dict):
            raw = raw["migrationLsp"]
        raw = raw if isinstance(raw, dict) else {}
        self.enabled = str(raw.get("verify", "auto")).lower() != "off"
        url = raw.get("databaseUrl") or raw.get("database-url") or raw.get("database_url")
        self.database_url = url if isinstance(url, str) and url else None
        if not self.enabled:
            self.invalidate()
            self.spares.close()

    def invalidate(self) -> None:
        with self._lock:
            self.generation += 1
            running = list(self._children.values())
        for proc in running:
            _kill_group(proc)
        self.outcomes.clear()
        self._applied.clear()

    def _started(self, proc, cancelled) -> None:
        """A pass's child started: known to invalidate(), and killed now if its pass is
        already stale (registered first: an invalidate() after the check kills it too)."""
        with self._lock:
            self._children[proc.pid] = proc
        if cancelled():
            _kill_group(proc)

    def jobs(self, engine, snapshot) -> list[tuple]:
        """What one pass runs (taken on the event loop: the engine is not thread-safe):
        per environment, its state, models, metadata source and schema at head."""
        out = []
        for state in snapshot.environments:
            if not runnable(engine, state):
                continue
            key = (state.env.root, state.env.name)
            try:
                schema = state.replay.at_heads() if state.replay is not None else None
            except Exception:  # noqa: BLE001 - replaying workspace revisions may raise anything: no schema, still a pass
                schema = None
            out.append((key, state, engine.models.get(key), engine.metadata_source(state.env), schema))
        return out

    def run(self, jobs: list[tuple], cancelled=lambda: False) -> dict[tuple[Path, str], Outcome]:
        """Blocking (a worker thread): one pass per environment, until `cancelled()`."""
        found = {}
        for key, state, models, source, schema in jobs:
            if cancelled():
                break
            started: list = []

            def on_start(proc, started=started) -> None:
                started.append(proc)
                self._started(proc, cancelled)

            try:
                found[key] = verify(state, models, source, database_url=self.database_url, schema=schema,
                                    on_start=on_start, spares=self.spares)
            except scratchdb.Refused as exc:
                found[key] = Outcome(state.env.name, skipped=str(exc))
            finally:
                with self._lock:
                    for proc in started:
                        self._children.pop(proc.pid, None)
        return found

    def accept(self, generation: int, outcomes: dict) -> bool:
        if generation != self.generation:
            return False
        self.outcomes.update(outcomes)
        self._applied.clear()
        return True

    def apply(self, snapshot):
        """`snapshot` with the outcomes in place (memoized per environment state)."""
        if not self.outcomes:
            return snapshot
        from dataclasses import replace

        states, changed = [], False
        for state in snapshot.environments:
            key = (state.env.root, state.env.name)
            outcome = self.outcomes.get(key)
            if outcome is None:
                states.append(state)
                continue
            memo = self._applied.get(key)
            if memo is None or memo[0] != id(state.by_path) or memo[1] != id(outcome):
                memo = (id(state.by_path), id(outcome), with_outcome(state, outcome), state.by_path)
                self._applied[key] = memo
            states.append(memo[2])
            changed = True
        return replace(snapshot, environments=tuple(states)) if changed else snapshot
