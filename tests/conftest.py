"""Shared helpers for the unit tests.

`migration_text` renders Alembic's own default `script.py.mako` (the `generic` template
of the installed Alembic) with the same keyword arguments `ScriptDirectory.generate_revision`
passes, so fixtures look exactly like files `alembic revision` writes.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import fcntl
import os
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

import alembic
import pytest
from hypothesis import settings
from alembic import util as alembic_util
from alembic.script import revision as alembic_revision
from mako.template import Template

GENERIC_TEMPLATE = Path(alembic.__file__).parent / "templates" / "generic" / "script.py.mako"
_TEMPLATE = Template(filename=str(GENERIC_TEMPLATE))

# Tests never read or write the user's real cache (and never see a previous run's): one
# fresh folder per session, inherited by every server and CLI they start.
os.environ["MIGRATION_LSP_CACHE_DIR"] = tempfile.mkdtemp(prefix="migration-lsp-test-cache-")
atexit.register(shutil.rmtree, os.environ["MIGRATION_LSP_CACHE_DIR"], ignore_errors=True)

# Property tests: `make test` runs a fixed set of examples, so that a run fails only for a
# change, never for a newly drawn input; `make fuzz` (HYPOTHESIS_PROFILE=fuzz) draws new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("fuzz", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"


def migration_text(
    rev: str,
    down: str | Sequence[str] | None = None,
    *,
    message: str = "some change",
    branch_labels: str | Sequence[str] | None = None,
    depends_on: str | Sequence[str] | None = None,
    upgrades: str | None = None,
    downgrades: str | None = None,
) -> str:
    """A migration file as `alembic revision -m MESSAGE` would write it."""
    if isinstance(down, (list, tuple)):
        down = alembic_revision.tuple_rev_as_scalar(tuple(down))
    if isinstance(depends_on, (list, tuple)):
        depends_on = alembic_revision.tuple_rev_as_scalar(tuple(depends_on))
    text = _TEMPLATE.render_unicode(
        up_revision=rev,
        down_revision=down,
        branch_labels=alembic_util.to_tuple(branch_labels),
        depends_on=depends_on,
        create_date=datetime.datetime(2024, 5, 17, 10, 11, 12, 123456),
        comma=alembic_util.format_as_comma,
        message=message,
        imports="",
        upgrades=upgrades,
        downgrades=downgrades,
    )
    return text.replace("\r\n", "\n")


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path -> text, dedented) below `root`; returns `root`."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("\n"):
            text = textwrap.dedent(text[1:])
        path.write_text(text, encoding="utf-8")
    return root


def numbered_revision(n: int, message: str, upgrade: str, downgrade: str = "    pass\n") -> str:
    """Revision `n` of a linear history with numbered ids (`000000000007` revises
    `000000000006`), its header laid out as Alembic writes it (down_revision on line 9), with
    the given bodies (indented lines, each ending in a newline): the long generated histories."""
    down = repr(f"{n - 1:012d}") if n else "None"
    return (f'"""{message}\n\nRevision ID: {n:012d}\nRevises: {"" if not n else f"{n - 1:012d}"}\n"""\n'
            "from alembic import op\nimport sqlalchemy as sa\n\n"
            f"revision = '{n:012d}'\ndown_revision = {down}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n{upgrade}\n\ndef downgrade():\n{downgrade}")


MINIMAL_INI = """\
[alembic]
script_location = %(here)s/migrations
path_separator = os
sqlalchemy.url = sqlite:///app.db
"""

MINIMAL_ENV_PY = """\
from alembic import context

target_metadata = None
"""


def alembic_project(root: Path, revisions: dict[str, str], ini: str = MINIMAL_INI) -> Path:
    """A minimal configured project: alembic.ini + migrations/{env.py,versions/<name>}."""
    files = {"alembic.ini": ini, "migrations/env.py": MINIMAL_ENV_PY}
    for name, text in revisions.items():
        files[f"migrations/versions/{name}"] = text
    return write_project(root, files)


def line_of(text: str, needle: str, nth: int = 0) -> int:
    """0-based number of the `nth` line containing `needle`."""
    hits = [n for n, line in enumerate(text.splitlines()) if needle in line]
    assert len(hits) > nth, f"{needle!r} not found"
    return hits[nth]


def col_of(text: str, needle: str, line: int) -> int:
    """0-based code-point column of `needle` on 0-based `line`."""
    col = text.splitlines()[line].find(needle)
    assert col >= 0, f"{needle!r} not on line {line}"
    return col


@pytest.fixture
def project(tmp_path: Path):
    """`project(files)` writes a tree below tmp_path and returns its root."""

    def make(files: dict[str, str]) -> Path:
        return write_project(tmp_path, files)

    return make


# A real git remote and clones (test_git.py, test_rebuild_off_loop.py, the git end-to-end tests)

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}
GIT_INI = "[alembic]\nscript_location = migrations\n"


def leftovers() -> tuple[int, set[str]]:
    """How many descriptors this process holds and its child processes' pids: the same before
    and after a forked worker's life means it left nothing behind."""
    children: set[str] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as fh:
            children |= set(fh.read().split())
    return len(os.listdir("/proc/self/fd")), children


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_ENV)
    return subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always", *args],
                          cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def add_revision(clone: Path, rev: str, down: str | None, message: str, upgrade: str = "pass") -> Path:
    path = clone / "migrations" / "versions" / f"{rev}_{message.replace(' ', '_')}.py"
    path.write_text(migration_text(rev, down, message=message, upgrades=upgrade))
    return path


def commit(clone: Path, message: str) -> None:
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", message)


def clone(remote: Path, name: str, branch: str | None = None) -> Path:
    dest = remote.parent / name
    git(remote.parent, "clone", "-q", str(remote), str(dest))
    if branch:
        git(dest, "switch", "-q", "-c", branch)
    return dest


def seeded_remote(root: Path, revisions: Sequence[tuple[str, str | None, str, str]]) -> Path:
    """A bare repository `root/remote.git` whose main has `revisions`, each (rev, down_revision,
    message, upgrade body), pushed from a clone `root/seed`."""
    bare = root / "remote.git"
    git(root, "init", "-q", "--bare", str(bare))
    seed = root / "seed"
    git(root, "clone", "-q", str(bare), str(seed))
    (seed / "alembic.ini").write_text(GIT_INI)
    (seed / "migrations" / "versions").mkdir(parents=True)
    for rev, down, message, upgrade in revisions:
        add_revision(seed, rev, down, message, upgrade)
    commit(seed, "first migrations")
    git(seed, "push", "-q", "origin", "main")
    return bare


def alice_and_bob(remote: Path, base: str) -> tuple[Path, Path, Path]:
    """Two clones of `remote` on their own branches (alice: feature-a, bob: feature-b) and
    bob's revision b1 on `base`, committed: (alice, bob, b1)."""
    alice, bob = clone(remote, "alice", "feature-a"), clone(remote, "bob", "feature-b")
    b1 = add_revision(bob, "b1", base, "add orders")
    commit(bob, "orders")
    return alice, bob, b1


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository whose main has two revisions, a1 <- a2."""
    return seeded_remote(tmp_path, [
        ("a1", None, "create users", "op.create_table('users')"),
        ("a2", "a1", "add email", "op.add_column('users', sa.Column('email', sa.String()))")])


@pytest.fixture
def checkout(remote: Path) -> tuple[Path, Path]:
    """bob's checkout (branch feature-b) and his committed revision b1 on a2, after alice's
    revision c1 on a2 was merged on main (bob has not fetched it yet; once he does, b1 needs
    a rebase: G011)."""
    alice, bob, b1 = alice_and_bob(remote, "a2")
    add_revision(alice, "c1", "a2", "add phone")
    commit(alice, "phone")
    git(alice, "push", "-q", "origin", "HEAD:main")
    return bob, b1


# Parallel runs: `make test` runs pytest-xdist with two workers, `--dist loadfile` (a module's
# tests on one worker, so its wider fixtures are made once) and the slowest modules handed out
# first (below). Two guarantees, by a lock folder the controller makes for the run, held around
# each test's whole protocol (set-up and tear-down of wider fixtures included):
# - tests marked `xdist_group(name)` in different modules never run at the same time (they
#   write the same files); `--dist loadgroup` would put them on one worker, but xdist 3.8
#   cannot mark pytest 9.2's node ids, so it schedules them as `load` would;
# - a test marked `alone` runs while no other test runs on any worker (it looks at every
#   process of the machine): a readers-writer lock that it takes exclusively and every other
#   test shared; a waiting `alone` test holds the gate, so that the others cannot starve it.
LOCKS_ENV = "MIGRATION_LSP_TEST_LOCKS"

# The slowest modules (measured with --durations: 60% of the suite's time), first: files are
# handed out in collection order, so a long one started last would leave the other worker idle.
# Only an ordering hint; a module not listed keeps its place after these.
SLOW_MODULES = [
    "test_vscode_e2e", "test_argument_mutations", "test_scripts_fast", "test_drift_fixtures",
    "test_adversarial", "test_env_models", "test_server_e2e", "test_truth_speed", "test_roundtrip",
    "test_drift_partly", "test_trust", "test_server_requests",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "alone: runs while no other test runs (in any xdist worker)")
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist): before any worker starts
        folder = tempfile.mkdtemp(prefix="migration-lsp-test-locks-")
        os.environ[LOCKS_ENV] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker; every worker sorts alike (a stable sort)
        rank = {name: n for n, name in enumerate(SLOW_MODULES)}
        items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    folder = Path(os.environ[LOCKS_ENV])
    alone = item.get_closest_marker("alone") is not None
    groups = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
    with contextlib.ExitStack() as held:
        gate = held.enter_context(open(folder / "gate", "a"))
        lock = held.enter_context(open(folder / "lock", "a"))
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        held.callback(fcntl.flock, lock, fcntl.LOCK_UN)
        for name in groups:  # sorted: two tests of two groups take them in the same order
            group = held.enter_context(open(folder / f"group-{name}", "a"))
            fcntl.flock(group, fcntl.LOCK_EX)
            held.callback(fcntl.flock, group, fcntl.LOCK_UN)
        return (yield)
