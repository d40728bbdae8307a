"""The pre-commit hook (.pre-commit-hooks.yaml), run by the real pre-commit tool from a real
`git commit` in a temporary repository.

pre-commit installs a hook repository into its own virtualenv from a git repository at a
revision: the fixture commits this checkout's package (as it is now, uncommitted edits
included) into a temporary repository and points the project's .pre-commit-config.yaml at
it. The hook environment is built once per session (PRE_COMMIT_HOME in a session folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MINIMAL_INI, REPO_ROOT, migration_text as m, write_project

BASE, SECOND, OTHER = "1a2b3c4d5e6f", "2b3c4d5e6f7a", "3c4d5e6f7a8b"
PACKAGE = ["pyproject.toml", "README.md", ".pre-commit-hooks.yaml", "migration_lsp"]


def _git(cwd: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=check,
                          timeout=300)


def _git_env(**extra: str) -> dict:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com", GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory) -> tuple[Path, str]:
    """(path, commit) of a git repository holding this checkout's package files."""
    repo = tmp_path_factory.mktemp("hook-repo")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", *PACKAGE], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in listed:
        source = REPO_ROOT / rel
        if source.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / rel)
    env = _git_env()
    _git(repo, "init", "-q", env=env)
    _git(repo, "add", "-A", env=env)
    _git(repo, "commit", "-q", "-m", "snapshot", env=env)
    return repo, _git(repo, "rev-parse", "HEAD", env=env).stdout.strip()


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


def _revision(rev: str, down: str, message: str, column: str) -> str:
    return m(rev, down, message=message,
             upgrades=f"op.add_column('users', sa.Column('{column}', sa.String(50), nullable=True))",
             downgrades=f"op.drop_column('users', '{column}')")


def test_commit_creating_a_second_head_is_refused_and_the_fixed_one_passes(
        tmp_path: Path, hook_repo: tuple[Path, str], pre_commit_home: Path) -> None:
    hook_path, rev = hook_repo
    project = tmp_path / "project"
    write_project(project, {
        "alembic.ini": MINIMAL_INI,
        "migrations/env.py": "from alembic import context\n\ntarget_metadata = None\n",
        f"migrations/versions/{BASE}_create_users.py": m(
            BASE, message="create users",
            upgrades="op.create_table('users', sa.Column('id', sa.Integer(), primary_key=True))",
            downgrades="op.drop_table('users')"),
        f"migrations/versions/{SECOND}_add_name.py": _revision(SECOND, BASE, "add name", "name"),
        ".pre-commit-config.yaml": f"repos:\n  - repo: {hook_path}\n    rev: {rev}\n"
                                   "    hooks:\n      - id: migration-lsp\n",
    })
    env = _git_env(PRE_COMMIT_HOME=str(pre_commit_home))
    _git(project, "init", "-q", env=env)
    subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=project, env=env, check=True,
                   capture_output=True, timeout=120)
    _git(project, "add", "-A", env=env)
    first = _git(project, "commit", "-m", "two revisions", env=env, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "migration-lsp (Alembic migrations)" in first.stdout + first.stderr  # it ran, and passed
    head = _git(project, "rev-parse", "HEAD", env=env).stdout

    # a teammate's revision on the same parent: a second head
    other = project / f"migrations/versions/{OTHER}_add_email.py"
    other.write_text(_revision(OTHER, BASE, "add email", "email"), encoding="utf-8")
    _git(project, "add", "-A", env=env)
    refused = _git(project, "commit", "-m", "add email", env=env, check=False)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1, output
    assert "Failed" in output and f"{OTHER}_add_email.py:15:1: G001 multiple heads" in output
    assert _git(project, "rev-parse", "HEAD", env=env).stdout == head  # nothing committed

    other.write_text(_revision(OTHER, SECOND, "add email", "email"), encoding="utf-8")
    _git(project, "add", "-A", env=env)
    fixed = _git(project, "commit", "-m", "add email", env=env, check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "migration-lsp (Alembic migrations)" in fixed.stdout + fixed.stderr
    assert _git(project, "rev-parse", "HEAD~1", env=env).stdout == head

    # a commit with no Python or configuration file in it does not run the check
    (project / "NOTES.md").write_text("notes\n", encoding="utf-8")
    _git(project, "add", "-A", env=env)
    docs = _git(project, "commit", "-m", "notes", env=env, check=False)
    assert docs.returncode == 0 and "(no files to check)Skipped" in docs.stdout + docs.stderr
