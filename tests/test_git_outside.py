"""Outside a repository no git process is started (gitbase.find_repository looks for `.git`
or a bare repository's layout from the folder up first: a process costs more than a
graph-only check's whole git part); inside one, git is asked as before."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from migration_lsp import gitbase


def _counted(monkeypatch) -> list[tuple]:
    runs: list[tuple] = []
    real = gitbase.git

    def git(cwd, *args, **kwargs):
        runs.append(args)
        return real(cwd, *args, **kwargs)

    monkeypatch.setattr(gitbase, "git", git)
    return runs


def test_no_git_process_outside_a_repository(tmp_path: Path, monkeypatch):
    assert not any(os.path.lexists(p / ".git") for p in tmp_path.resolve().parents)  # (where tests run)
    runs = _counted(monkeypatch)
    assert gitbase.find_repository(tmp_path) is None and runs == []


def test_a_repository_a_worktree_and_a_bare_one_are_still_asked_about(tmp_path: Path, monkeypatch):
    runs = _counted(monkeypatch)
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    (tmp_path / "repo" / "sub").mkdir()
    found = gitbase.find_repository(tmp_path / "repo" / "sub")
    assert found is not None and found.toplevel == (tmp_path / "repo").resolve() and len(runs) == 1
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "bare.git")], check=True)
    gitbase.find_repository(tmp_path / "bare.git" / "refs")
    assert len(runs) == 2  # (asked: a bare repository's layout; git decides)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "repo" / "sub")
    assert gitbase.find_repository(link) is not None and len(runs) == 3  # (from the real path)
