"""Stage `git`: the base branch's migration files, read from git objects.

What the merge of this branch into its base will produce can be known before the merge:
the base's revision files sit in the repository's objects. This stage finds the
repository of a workspace root, resolves the base ref (setting `base-branch` / `--base`;
default the remote's default branch `refs/remotes/origin/HEAD`, else `origin/main`,
`origin/master`, `main`, `master`), and reads two versions of an environment's version
locations: the base's tip (the graph the merge will produce is its union with the work
tree) and the merge base (what this branch started from: revisions deleted or edited on
the branch are measured against it).

Reading goes through git's plumbing, never the work tree or the index: one `git ls-tree
-r -z` per commit lists the version locations, one `git cat-file --batch` process returns
every blob. Why plumbing and not a library (dulwich, pygit2): git is present wherever a
repository is, reads packs with its own delta cache in C, and one batch process streams
thousands of blobs (5,000 revision files: ~0.1 s for the objects, benchmarks/git_base.py);
dulwich reads packs in Python (several times slower on deltified blobs), pygit2 is a
binary dependency for what two plumbing commands do. Only plumbing that runs no
configured program is used (no index, no hooks, no filters, no fsmonitor, no network),
with optional locks off: a repository's own config cannot make this stage run code or
write anything.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from .graph import RevisionGraph
from .project import Environment, read_file, read_text, toml_module
from .scripts import MigrationScript, parse_script

if TYPE_CHECKING:
    import subprocess

DEFAULT_BASES = ("refs/remotes/origin/HEAD", "origin/main", "origin/master", "main", "master")
TIMEOUT = 30.0
_REV_FILE = re.compile(r"(?!\.#|__init__)(.*\.py)$")  # Alembic's _only_source_rev_file
# what a repository's own config could make git run is switched off on the command line (which
# wins over the repository's config): fsmonitor, hooks, and any transport — a partial clone
# fetches missing objects from its "promisor" remote, whose URL could be `ext::sh -c ...`
_SAFE_CONFIG = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.untrackedCache=false",
                "-c", "protocol.allow=never")


class GitError(Exception):
    """A problem that makes a git-based answer impossible (a shallow clone without the
    base, a base ref that does not exist): the CLI prints it and exits 2."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", GIT_NO_LAZY_FETCH="1", LC_ALL="C")
    return env


def git(cwd: Path, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    """One plumbing command; never raises (no git, a timeout: returncode 128). Its stdin is
    `data` or nothing: never the server's own stdin (the client's messages)."""
    import subprocess  # (here: a check outside a repository never runs one, nor pays for the import)

    try:
        return subprocess.run(["git", *_SAFE_CONFIG, *args], cwd=cwd, input=b"" if data is None else data,
                              capture_output=True, env=_env(), timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(args, 128, b"", str(exc).encode())


@dataclass(frozen=True)
class Repository:
    toplevel: Path
    git_dir: Path  # this work tree's (HEAD lives here)
    common_dir: Path  # shared by worktrees (refs, packed-refs, objects)
    shallow: bool

    def watched(self, ref: str | None = None) -> list[Path]:
        """Files whose change means HEAD or a branch moved: HEAD, packed-refs, the refs."""
        out = [self.git_dir / "HEAD", self.common_dir / "packed-refs"]
        head = _read(self.git_dir / "HEAD")
        if head.startswith("ref: "):
            out.append(self.common_dir / head[5:].strip())
        for name in ((ref,) if ref else DEFAULT_BASES):
            for candidate in ([name] if name.startswith("refs/") else [f"refs/remotes/{name}", f"refs/heads/{name}"]):
                out.append(self.common_dir / candidate)
        symref = _read(self.common_dir / "refs/remotes/origin/HEAD")
        if symref.startswith("ref: "):
            out.append(self.common_dir / symref[5:].strip())
        out.append(self.common_dir / "shallow")
        return out

    def fingerprint(self, ref: str | None = None) -> tuple:
        """Stat data of the watched files: the cheap poll (no process) that says whether
        HEAD or the base may have moved since the last look."""
        out: list[tuple[str, int, int, int] | tuple[str, None]] = []
        for path in self.watched(ref):
            try:
                st = os.stat(path)
                out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((str(path), None))
        return tuple(out)


def _read(path: Path) -> str:
    """A ref file (a few bytes): a regular file only — a FIFO in .git must not block us."""
    try:
        return read_file(path, 1 << 20).decode("utf-8", "replace")
    except OSError:  # (SkippedFile too)
        return ""


def _maybe_in_repository(root: Path) -> bool:
    """Could git find a repository from `root`? Not when no folder from it up holds a `.git`
    (a folder, or a worktree's file) nor is a bare repository's (HEAD, objects/, refs/):
    then no git process is started (a few ms of a check outside a repository). GIT_DIR and
    the like cannot say otherwise: git() runs without them."""
    for folder in (root, *root.parents):
        try:
            if os.path.lexists(folder / ".git") or (os.path.isfile(folder / "HEAD") and os.path.isdir(
                    folder / "objects") and os.path.isdir(folder / "refs")):
                return True
        except (OSError, ValueError):
            return True  # (git decides)
    return False


def find_repository(root: Path) -> Repository | None:
    """The repository `root` is in (None: not in one, or git is not installed)."""
    if not root.is_dir() or not _maybe_in_repository(root.resolve()):  # (git starts from the real path)
        return None
    result = git(root, "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-dir",
                 "--git-common-dir", "--is-shallow-repository")
    lines = result.stdout.decode(errors="replace").splitlines()
    if result.returncode != 0 or len(lines) != 4:
        return None
    return Repository(Path(lines[0]), Path(lines[1]), Path(lines[2]), lines[3].strip() == "true")


@dataclass(frozen=True)
class BaseRef:
    ref: str  # as given or found ("origin/main", "refs/remotes/origin/HEAD")
    name: str  # for messages ("origin/main")
    sha: str  # the base's tip
    merge_base: str | None  # what HEAD and the base share (None: HEAD is unborn, or unrelated)
    head: str | None  # HEAD's commit


def _commits(repo: Repository, names: list[str]) -> list[str | None]:
    """The commit each name means (None: no such commit), all through one `git cat-file
    --batch-check` (a process per candidate would cost more than the whole check of a
    cached project)."""
    if any(not n or any(c.isspace() for c in n) for n in names):  # (one name a line: no smuggling)
        return [None if not n or any(c.isspace() for c in n) else _commits(repo, [n])[0] for n in names]
    result = git(repo.toplevel, "cat-file", "--batch-check", data="".join(f"{n}^{{commit}}\n" for n in names).encode())
    lines = result.stdout.decode(errors="replace").splitlines()
    out: list[str | None] = []
    for n in range(len(names)):
        parts = lines[n].split() if n < len(lines) else []
        out.append(parts[0] if len(parts) == 3 and parts[1] == "commit" else None)
    return out


def _short_name(repo: Repository, ref: str) -> str:
    """origin/HEAD -> origin/main (the symbolic ref's file), refs/remotes/x/y -> x/y."""
    if ref.endswith("/HEAD"):
        full = ref if ref.startswith("refs/") else f"refs/remotes/{ref}"
        target = _read(repo.common_dir / full)
        if target.startswith("ref: "):
            ref = target[5:].strip()
    for prefix in ("refs/remotes/", "refs/heads/", "refs/tags/", "refs/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def fetch_hint(ref: str | None) -> str:
    """The `git fetch` that brings a missing base (and enough history to find the merge base)."""
    if ref and not ref.startswith("refs/") and "/" in ref:
        remote, branch = ref.split("/", 1)
        return f"git fetch --unshallow {remote} {branch}:refs/remotes/{remote}/{branch}"
    if ref and ref.startswith("refs/remotes/") and ref.count("/") >= 3 and not ref.endswith("/HEAD"):
        remote, branch = ref[len("refs/remotes/"):].split("/", 1)
        return f"git fetch --unshallow {remote} {branch}:refs/remotes/{remote}/{branch}"
    return "git fetch --unshallow origin main:refs/remotes/origin/main"


def resolve_base(repo: Repository, setting: str | None) -> tuple[BaseRef | None, str | None]:
    """(the base, None) or (None, why there is none). Raises GitError when the answer would
    be wrong rather than absent: a shallow clone whose base or merge base is not fetched,
    or a base named explicitly that does not exist."""
    candidates = [setting] if setting else list(DEFAULT_BASES)
    *found, head = _commits(repo, [*candidates, "HEAD"])
    ref, sha = next(((c, f) for c, f in zip(candidates, found) if f is not None), (None, None))
    if sha is None or ref is None:
        if repo.shallow:
            raise GitError(f"shallow clone without the base branch ({setting or 'origin/main'}): "
                           f"run `{fetch_hint(setting or 'origin/main')}` first")
        if setting:
            raise GitError(f"base branch {setting!r} does not exist in {repo.toplevel}")
        return None, "no base branch found (origin/HEAD, origin/main, origin/master, main, master)"
    name = _short_name(repo, ref)
    merge_base = None
    if head is not None:
        result = git(repo.toplevel, "merge-base", head, sha)
        merge_base = result.stdout.decode().strip() or None if result.returncode == 0 else None
        if merge_base is None and repo.shallow:
            raise GitError(f"shallow clone: the merge base of HEAD and {name} is not fetched: "
                           f"run `{fetch_hint(ref)}` first")
    return BaseRef(ref, name, sha, merge_base, head), None


@dataclass
class Stats:
    """How much one read cost (the benchmark and the tests read it)."""

    processes: int = 0
    blobs: int = 0
    bytes: int = 0


def _decode(data: bytes) -> str:
    """A file's text as Python would decode it (as the engine reads the work tree's)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode(tokenize.detect_encoding(BytesIO(data).readline)[0])
    except (SyntaxError, LookupError, UnicodeDecodeError):
        return data.decode("utf-8", "replace")


def blob_id(text: str) -> str:
    """Git's id of a blob holding `text` in UTF-8 (a file read with another encoding, or
    with a BOM, just does not match: its blob is then read)."""
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _locations(repo: Repository, env: Environment) -> list[str]:
    out = []
    for loc in env.version_locations:
        try:
            rel = loc.resolve().relative_to(repo.toplevel.resolve())  # (ValueError: outside)
        except ValueError:
            continue
        out.append(rel.as_posix() or ".")
    return out


def list_files(repo: Repository, commit: str, env: Environment, stats: Stats | None = None) -> dict[str, str]:
    """{path relative to the top level: blob sha} of the revision files below the
    environment's version locations at `commit` (recursively, as discovery finds them)."""
    locations = _locations(repo, env)
    if not locations:
        return {}
    out: dict[str, str] = {}
    links = _ls_tree(repo, commit, ["-r", "--", *locations], out, stats)
    if links is None:
        return {}
    for _ in range(MAX_LINKS):  # (a link to a link: followed again, a loop stops here)
        targets = _link_targets(repo, links, stats) if links else []
        if not targets:
            break
        links = _ls_tree(repo, commit, ["--", *targets], out, stats) or {}
    return out


MAX_LINKS = 8  # links followed one after the other (a loop costs two git processes a link)


def _ls_tree(repo: Repository, commit: str, args: list[str], out: dict[str, str],
             stats: Stats | None) -> dict[str, str] | None:
    """`git ls-tree`'s revision files into `out` ({path: blob sha}); the symlinks among them
    named as revision files are (discovery lists them by name) returned ({path: sha of the
    blob holding the link's target}); None when git fails."""
    result = git(repo.toplevel, "ls-tree", "-z", "--full-tree", commit, *args)
    if stats is not None:
        stats.processes += 1
    if result.returncode != 0:
        return None
    links: dict[str, str] = {}
    for entry in result.stdout.split(b"\0"):
        meta, _, raw_path = entry.partition(b"\t")
        parts = meta.split()
        if len(parts) != 3 or parts[1] != b"blob":
            continue
        path = raw_path.decode("utf-8", "surrogateescape")
        if parts[0] == b"120000":
            if path.endswith(".py"):
                links[path] = parts[2].decode()
        elif _REV_FILE.match(path.rsplit("/", 1)[-1]):
            out[path] = parts[2].decode()
    return links


def _link_targets(repo: Repository, links: dict[str, str], stats: Stats | None) -> list[str]:
    """Where symlinks in the tree point, as paths in the tree. Discovery names a symlinked
    revision file by its resolved path (as Alembic loads it), so the base's file is looked up
    there too; a link out of the repository (or absolute) has no file in the tree."""
    texts = read_blobs(repo, list(links.values()), stats)
    targets = []
    for path, sha in links.items():
        raw = texts.get(sha)
        if raw is None or raw.startswith(b"/") or b"\0" in raw:
            continue
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), raw.decode("utf-8", "surrogateescape")))
        if target != ".." and not target.startswith("../"):
            targets.append(target)
    return targets


def read_blobs(repo: Repository, shas: list[str], stats: Stats | None = None) -> dict[str, bytes]:
    """Every blob's bytes, through one `git cat-file --batch`."""
    if not shas:
        return {}
    unique = list(dict.fromkeys(shas))
    result = git(repo.toplevel, "cat-file", "--batch", data="".join(s + "\n" for s in unique).encode())
    if stats is not None:
        stats.processes += 1
    out: dict[str, bytes] = {}
    data = result.stdout
    pos = 0
    for sha in unique:
        end = data.find(b"\n", pos)
        if end < 0:
            break
        header = data[pos:end].split()
        pos = end + 1
        if len(header) != 3:  # "<sha> missing"
            continue
        size = int(header[2])
        out[sha] = data[pos:pos + size]
        pos += size + 1
        if stats is not None:
            stats.blobs += 1
            stats.bytes += size
    return out


@dataclass(frozen=True)
class Version:
    """One commit's revision files of one environment, parsed (paths as in the work tree)."""

    commit: str
    scripts: tuple[MigrationScript, ...]
    graph: RevisionGraph = field(repr=False)

    @property
    def ids(self) -> set[str]:
        return set(self.graph.by_id)


def read_version(repo: Repository, commit: str, env: Environment, stats: Stats | None = None,
                 here: Iterable[MigrationScript] = (), parsed: dict | None = None) -> Version:
    """The environment's revision files at `commit`, parsed with the work tree's parser.
    Their paths are where they would be in the work tree (a base file and the work tree's
    file at the same path compare directly).

    Most base files are byte for byte the work tree's, and both reading them (cat-file:
    ~0.2 s for 5,000) and parsing them (~0.8 s) would be wasted: a file `here` has at the
    same path whose git blob id (sha1 of its bytes, computed here) is the tree's is that
    parsed script, reused without reading the blob. `parsed` ({(path, blob sha): script},
    kept by the caller) spares reading and parsing a blob again for the next commit (the
    merge base after the tip, the base after a fetch)."""
    files = list_files(repo, commit, env, stats)
    parsed = {} if parsed is None else parsed
    known: dict[str, MigrationScript] = {}
    for s in here:
        known[str(s.path)] = s
    top = f"{repo.toplevel}/"
    missing = []
    for path, sha in files.items():
        if (path, sha) in parsed:
            continue
        mine = known.get(top + path)
        if mine is not None and blob_id(mine.text) == sha:
            parsed[(path, sha)] = mine
        else:
            missing.append(sha)
    blobs = read_blobs(repo, missing, stats)
    scripts = []
    for path, sha in sorted(files.items()):
        script = parsed.get((path, sha))
        if script is None:
            data = blobs.get(sha)
            if data is None:
                continue
            where, text = repo.toplevel / path, _decode(data)
            mine = known.get(str(where))
            script = parsed[(path, sha)] = mine if mine is not None and mine.text == text else parse_script(where, text)
        scripts.append(script)
    return Version(commit, tuple(scripts), RevisionGraph(scripts))


@dataclass(frozen=True)
class Base:
    """What the git checks of one environment compare with."""

    ref: BaseRef
    tip: Version  # the base branch as it is now
    fork: Version  # the merge base (the tip when there is none)

    @cached_property
    def kept(self) -> frozenset[str]:
        """Ids the merge base had and the base still has (what this branch must keep)."""
        return frozenset(self.fork.graph.by_id.keys() & self.tip.graph.by_id.keys())

    @cached_property
    def fork_scripts(self) -> frozenset[MigrationScript]:
        """The merge base's parsed files (mostly the work tree's own objects, reused)."""
        return frozenset(self.fork.scripts)


def read_base(repo: Repository, ref: BaseRef, env: Environment, stats: Stats | None = None,
              versions: dict | None = None, here: Iterable[MigrationScript] = (),
              parsed: dict | None = None) -> Base:
    """The base's versions; `versions` ({(commit, locations): Version}) reuses what was read
    before for the same commit and locations; `here` and `parsed` as read_version's."""
    parsed = {} if parsed is None else parsed

    def version(commit: str) -> Version:
        key = (commit, env.version_locations, env.root)
        if versions is not None and key in versions:
            return versions[key]
        found = read_version(repo, commit, env, stats, here, parsed)
        if versions is not None:
            versions[key] = found
        return found

    tip = version(ref.sha)
    fork = version(ref.merge_base) if ref.merge_base and ref.merge_base != ref.sha else tip
    return Base(ref, tip, fork)


def base_setting(root: Path, overrides: dict | None) -> str | None:
    """`base-branch`: the LSP setting / `--base` (in `overrides`), else `[tool.migration-lsp]`
    of the root's pyproject.toml."""
    for key in ("base-branch", "base_branch", "baseBranch"):
        value = (overrides or {}).get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    try:
        text = read_text(root / "pyproject.toml")
        section = toml_module().loads(text).get("tool", {}).get("migration-lsp", {})
    except (OSError, ValueError):  # (a FIFO or a device is a SkippedFile, an OSError)
        return None
    value = section.get("base-branch") if isinstance(section, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


class Tracker:
    """The base of each workspace root, kept current by a cheap poll: `refresh()` stats
    HEAD, the refs and packed-refs and asks git again only when one changed; versions read
    are kept by (commit, locations), so reading is done again only when HEAD or the base
    moved. Problems are kept for the front ends to say once: `notes` (why the checks are
    silent) and `errors` (a shallow clone or a missing explicit base: the CLI exits 2)."""

    def __init__(self, overrides: dict | None = None) -> None:
        self.overrides = dict(overrides or {})
        self.repos: dict[Path, Repository | None] = {}
        self.refs: dict[Path, BaseRef | None] = {}
        self.fingerprints: dict[Path, tuple] = {}
        self.notes: dict[Path, str] = {}
        self.errors: dict[Path, str] = {}
        self.versions: dict = {}
        self.parsed: dict = {}  # {(path, blob sha): MigrationScript}
        self.bases: dict = {}  # {(root, env name, locations, BaseRef): Base}
        self.stats = Stats()

    def _look(self, root: Path) -> BaseRef | None:
        self.notes.pop(root, None)
        self.errors.pop(root, None)
        repo = self.repos.get(root)
        if repo is None:
            self.notes[root] = f"{root} is not in a git repository: the base-branch checks (G011-G013) are off"
            return None
        try:
            ref, why = resolve_base(repo, base_setting(root, self.overrides))
        except GitError as exc:
            self.errors[root] = str(exc)
            return None
        if ref is None:
            self.notes[root] = f"{why}: the base-branch checks (G011-G013) are off"
        return ref

    def refresh(self, roots: tuple[Path, ...]) -> bool:
        """Look again where HEAD or a ref may have moved; True when a base changed."""
        changed = False
        for root in roots:
            if root not in self.repos:
                self.repos[root] = find_repository(root)
            repo = self.repos[root]
            setting = base_setting(root, self.overrides)
            fingerprint = (setting, repo.fingerprint(setting) if repo else None)
            if root in self.refs and self.fingerprints.get(root) == fingerprint:
                continue
            if root in self.refs and repo is not None:  # (fetched deeper, or moved: look again)
                repo = self.repos[root] = find_repository(root)
                fingerprint = (setting, repo.fingerprint(setting) if repo else None)
            self.fingerprints[root] = fingerprint
            ref = self._look(root)
            if root not in self.refs or ref != self.refs[root]:
                changed = True
            self.refs[root] = ref
        if len(self.versions) > 16:  # old commits: drop what the current bases do not use
            live = {c for r in self.refs.values() if r for c in (r.sha, r.merge_base)}
            self.versions = {k: v for k, v in self.versions.items() if k[0] in live}
            used = {id(s) for v in self.versions.values() for s in v.scripts}
            self.parsed = {k: s for k, s in self.parsed.items() if id(s) in used}
        return changed

    def base(self, root: Path, env: Environment, here: Iterable[MigrationScript] = ()) -> Base | None:
        """The versions of the current base (read on first use; `here`: the work tree's
        parsed files, reused where the base has the same text)."""
        ref = self.refs.get(root)
        repo = self.repos.get(root)
        if ref is None or repo is None:
            return None
        key = (root, env.name, env.version_locations, ref)
        found = self.bases.get(key)
        if found is None:
            found = read_base(repo, ref, env, self.stats, self.versions, here, self.parsed)
            self.bases = {k: v for k, v in self.bases.items() if k[0] != root or k[3] == ref}  # (older go)
            self.bases[key] = found
        return found

    def key(self, root: Path) -> str:
        """What the findings depend on besides the files (the CLI's memo key)."""
        ref = self.refs.get(root)
        return f"{ref.ref}:{ref.sha}:{ref.merge_base}" if ref else f"none:{self.errors.get(root, '')}"
