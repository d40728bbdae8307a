"""What the engine keeps in the persistent cache (cache.Store) and reads back: diagnostics as
plain data, discovery records (unpickled with only the project's record classes allowed),
and a whole environment's report under the digest of all its inputs. Anything read back is
checked field by field: an entry of another shape is a miss, never an exception."""

from __future__ import annotations

import hashlib
import marshal
import os
import pickle
from collections.abc import Iterable
from dataclasses import replace
from io import BytesIO
from pathlib import Path

from .. import project
from ..cache import Store, digest
from ..core import Diagnostic, Severity, Span
from ..project import ConfigProblem, Discovery, Environment, walk
from .snapshot import CachedEnvironment, EnvironmentReport, GraphSummary


def encode_diagnostics(found: list[Diagnostic], path: Path | None):
    """Plain data for the cache (None when something in it is not plain: not cached)."""
    try:
        # (the path is written only when it is not `path`: a revision's S018 sits on env.py)
        value = [(d.code, int(d.severity), str(d.path) if path is None or d.path != path else None,
                  (d.span.line, d.span.col, d.span.end_line, d.span.end_col), d.message,
                  d.environment, d.data) for d in found]
        if len(value) != len(found):
            return None
        marshal.dumps(value)
        return value
    except (ValueError, TypeError):
        return None


def decode_diagnostics(value, path: Path | None) -> list[Diagnostic] | None:
    """What encode_diagnostics wrote; None for anything of another shape (a miss)."""
    if not isinstance(value, list):
        return None
    out = []
    try:
        for code, severity, where, span, message, environment, data in value:
            if not (isinstance(code, str) and type(severity) is int and isinstance(message, str)
                    and isinstance(environment, str) and isinstance(data, dict) and isinstance(span, tuple)
                    and len(span) == 4 and all(type(n) is int and n >= 0 for n in span)):
                return None
            at = Path(where) if isinstance(where, str) else path if where is None else None
            if at is None:
                return None
            out.append(Diagnostic(code, Severity(severity), at, Span(*span), message, environment, data))
    except (TypeError, ValueError):
        return None
    return out


# --------------------------------------------------------------------------- discovery


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
                    and env.dialect is None and env.settings is None and optional(env.config_dialect, str)
                    and env.history_dialect in (None, *project.KNOWN_DIALECTS)):
                return None
    except Exception:  # noqa: BLE001 - unpickling other bytes raises anything (pickle's docs): a miss, no cache
        return None
    return found


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


def discover_cached_bare(root: Path, store: Store) -> Discovery:
    """discover_bare(), reused from the cache while no file it looked at has changed. The
    cache holds no settings: the engine reads them and settles the discovery per workspace
    folder on every run (engine.folders), since they choose the Python and models that run."""
    scan = walk(root)
    if not store.enabled:
        return project.discover_bare(root, scan)
    key = digest(repr(scan.fingerprint()))
    cached = store.get("discovery", key)
    found = None
    if cached is not None:  # (the paths by name only for a hit: a first check does not need them)
        paths = {str(p): p for ps in scan.py_by_dir.values() for p in ps}
        found = _cached_discovery(cached, root.resolve(), paths)
    if found is not None:
        scan.report_skipped()
        return found
    bare = project.discover_bare(root, scan)
    outside = project.walk_locations(bare.outside).fingerprint() if bare.outside else []
    store.put("discovery", key, (
        pickle.dumps(replace(bare, environments=tuple(replace(env, files=()) for env in bare.environments))),
        [[str(f) for f in env.files] for env in bare.environments], outside))
    return bare


# --------------------------------------------------------------------------- whole environments


KEY_CHUNK = 128  # files per piece of an environment's memo key (engine.forked keys pieces in two processes)


def files_digest(files: Iterable[tuple[Path, bytes | None, str | None]]) -> bytes:
    """One piece of an environment's memo key: SHA-256 over up to KEY_CHUNK consecutive files,
    each one's path and content (or why it is not read) behind its kind and length (a hash
    per file, then a hash of those, cost twice as much: a first check reads and keys every
    file)."""
    h = hashlib.sha256()
    update = h.update
    for path, raw, why in files:
        name = os.fsencode(path)
        if raw is None:
            raw = why.encode("utf-8", "surrogatepass") if why else b""
            update(b"e%d:%d:" % (len(name), len(raw)))
        else:
            update(b"f%d:%d:" % (len(name), len(raw)))
        update(name)
        update(raw)
    return h.digest()


def report_key(env: Environment, parts: Iterable[str], pieces: Iterable[bytes]) -> str:
    """The key of an environment's report: every input of the findings — each file's path
    and content (`pieces`: files_digest of its files KEY_CHUNK at a time, in order), the
    environment (settings included), `parts` (why models are off, the schema salt, the base
    branch), the tool's and its libraries' versions (the store's own). The environment's
    repr leaves its files out: `pieces` has each one's path in order (a repr of 5,000 Paths
    cost ~4 ms of a first check)."""
    h = hashlib.sha256()
    update = h.update
    for part in (repr(replace(env, files=())), *parts):
        data = part.encode("utf-8", "surrogatepass")
        update(b"p%d:" % len(data))
        update(data)
    for piece in pieces:
        update(b"c")
        update(piece)
    return h.hexdigest()


def cached_report(store: Store, key: str, env: Environment) -> CachedEnvironment | None:
    cached = store.get("environment", key)
    if cached is None:
        return None
    try:  # any entry not of the shape remember_report writes is a miss, never an exception
        summary, found, reads = cached
        if not (isinstance(reads, list) and all(
                isinstance(r, tuple) and len(r) == 3 and isinstance(r[0], str) and isinstance(r[1], str)
                and (r[2] is None or isinstance(r[2], str)) for r in reads)):
            return None
        if reads and not outside_unchanged(reads):
            return None
        paths = {str(p): p for p in env.files}
        if not (isinstance(summary, tuple) and len(summary) == 5 and isinstance(found, list) and all(
                isinstance(ids, tuple) and all(isinstance(i, str) for i in ids) for ids in summary)):
            return None
        by_path = {}
        for p, value in found:
            if not isinstance(p, str):
                return None
            path = paths.get(p) or Path(p)
            decoded = decode_diagnostics(value, path)
            if decoded is None:
                return None
            by_path[path] = tuple(decoded)
        return CachedEnvironment(env, by_path, cached_summary=GraphSummary(*summary))
    except (TypeError, ValueError):
        return None


def outside_unchanged(reads: list[tuple[str, str, str | None]]) -> bool:
    """Do other files still answer what the report's revisions read from them ((revision
    path, question, answer): `User.__tablename__` from models.py, which the report's key,
    of the environment's own files, does not cover)?"""
    from ..outside import tablename

    return all(tablename(Path(path), question) == answer for path, question, answer in reads)


def remember_report(store: Store, key: str, state: EnvironmentReport,
                    reads: list[tuple[str, str, str | None]] | None = None) -> None:
    """`reads`: what other files answered the revisions (checked again by cached_report)."""
    found = []
    for path, diagnostics in state.by_path.items():
        value = encode_diagnostics(list(diagnostics), path)
        if value is None:
            return  # something not plain: not remembered
        found.append((str(path), value))
    summary = state.summary
    store.put("environment", key, ((summary.revision_ids, summary.heads, summary.bases,
                                    summary.merge_points, summary.branch_points), found, list(reads or ())))
