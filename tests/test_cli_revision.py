"""`migration-lsp revision`: a new file like `alembic revision`, checked by real Alembic."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from lsp_helpers import EXAMPLE, HEAD_A, HEAD_B, TYPO_REV

from migration_lsp.cli import main


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_revision_then_autogenerate_accepted_by_alembic(tmp_path: Path, monkeypatch, capsys):
    project = tmp_path / "blog"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    typo = next((project / "migrations" / "versions").glob(f"{TYPO_REV}_*.py"))
    typo.write_text(typo.read_text().replace("bd474000086b", HEAD_B))
    monkeypatch.chdir(project)
    # two heads: refused with one clear line
    assert main(["revision", "-m", "x"]) == 2
    assert "multiple heads" in capsys.readouterr().err
    assert main(["revision", "-m", "merge", "--head", HEAD_A]) == 0
    out = capsys.readouterr().out
    first = project / out.split("Generating ")[1].split(" ...")[0]
    assert first.exists() and f"'{HEAD_A}'" in first.read_text()
    assert main(["revision", "-m", "published at", "--head", TYPO_REV, "--autogenerate"]) == 0
    second = project / capsys.readouterr().out.split("Generating ")[1].split(" ...")[0]
    text = second.read_text()
    assert "op.add_column('posts', sa.Column('published_at'" in text
    heads = run("alembic", "heads", cwd=project)
    assert heads.returncode == 0, heads.stderr
    assert sorted(line.split()[0] for line in heads.stdout.splitlines()) == sorted(
        [first.name.split("_")[0], second.name.split("_")[0]])
    assert run("alembic", "upgrade", "heads", cwd=project).returncode == 0
    check = run("alembic", "check", cwd=project)
    assert check.returncode == 0 and "No new upgrade operations detected" in check.stdout + check.stderr
