"""A hostile repository or setting cannot make us run a program or block: a partial clone
whose "promisor" remote is an `ext::` command, a FIFO where a ref file should be, a dialect
name that would send SQLAlchemy's registry to the installed entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from migration_lsp.gitbase import find_repository, read_blobs


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd,
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()


def test_a_promisor_remote_that_is_a_command_never_runs(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "x.py").write_text("revision = 'a'\n")
    _git(repo, "add", "x.py")
    _git(repo, "commit", "-qm", "x")
    sha = _git(repo, "rev-parse", "HEAD:x.py")
    (repo / ".git" / "objects" / sha[:2] / sha[2:]).unlink()  # a blob the clone "lacks"
    marker = tmp_path / "RAN"
    for key, value in (("core.repositoryformatversion", "1"), ("extensions.partialClone", "evil"),
                       ("remote.evil.promisor", "true"), ("remote.evil.url", f"ext::sh -c touch% {marker}"),
                       ("protocol.allow", "always")):
        _git(repo, "config", key, value)
    # the trap is real: a plain git does run the remote's command to fetch the blob
    subprocess.run(["git", "cat-file", "-p", sha], cwd=repo, capture_output=True, timeout=60)
    assert marker.exists()
    marker.unlink()
    found = read_blobs(find_repository(repo), [sha])
    assert sha not in found
    assert not marker.exists()


def test_a_fifo_where_a_ref_file_should_be_does_not_block(tmp_path: Path):
    fifo = tmp_path / "HEAD"
    os.mkfifo(fifo)
    code = f"from pathlib import Path\nfrom migration_lsp.gitbase import _read\nprint(repr(_read(Path({str(fifo)!r}))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "''", out


def test_a_dialect_setting_is_one_of_sqlalchemys_own():
    """Hover and `sql` hand the dialect to SQLAlchemy's registry, which searches every installed
    distribution's entry points for a name it does not know: only its own names get through."""
    from migration_lsp.project import Settings

    assert Settings().merged({"dialect": "evil"}).dialect is None
    assert Settings().merged({"dialect": "Postgres"}).dialect == "postgresql"
    assert Settings().merged({"dialect": "sqlite"}).dialect == "sqlite"
