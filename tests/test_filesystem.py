"""File-system faults and generated files: the rest keeps working, nothing is lost or
overwritten, every generated path stays inside the versions directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import migration_text
from migration_lsp.engine import Engine
from migration_lsp.features import path_to_uri, uri_to_path
from migration_lsp.models import load_models, metadata_source
from migration_lsp.render import render_revision


def project(root: Path, revisions: dict[str, str | None]) -> Path:
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    for rev, down in revisions.items():
        (versions / f"{rev}_x.py").write_text(migration_text(rev, down))
    return root


def test_symlink_loops_and_dangling_links(tmp_path: Path):
    root = project(tmp_path, {"aaaa": None, "bbbb": "aaaa"})
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "migrations" / "versions" / "self").symlink_to(root / "migrations" / "versions", target_is_directory=True)
    (root / "migrations" / "versions" / "gone_x.py").symlink_to(root / "nowhere.py")
    snapshot = Engine([root]).snapshot()
    (state,) = snapshot.environments
    assert set(state.graph.by_id) == {"aaaa", "bbbb"}
    # the dangling link is a file nobody can read: one clear G010, nothing else
    assert [(d.code, d.path.name) for d in snapshot.diagnostics] == [("G010", "gone_x.py")]


def test_files_deleted_during_indexing_and_versions_dir_vanishing(tmp_path: Path, monkeypatch):
    root = project(tmp_path, {"aaaa": None, "bbbb": "aaaa", "cccc": "bbbb"})
    engine = Engine([root])
    (root / "migrations" / "versions" / "bbbb_x.py").unlink()  # after discovery, before reading
    snapshot = engine.snapshot()
    codes = sorted(d.code for d in snapshot.diagnostics)
    # the vanished file (G010), its child pointing nowhere (G002), two heads now (G001)
    assert codes == ["G001", "G001", "G002", "G010"]
    shutil.rmtree(root / "migrations" / "versions")
    engine.rescan()
    assert engine.snapshot().diagnostics == []
    assert sum(len(s.graph.by_id) for s in engine.snapshot().environments) == 0


def test_huge_trees_skipped_and_odd_path_characters(tmp_path: Path):
    root = tmp_path / "my project #1 % 100 ünïcode"
    project(root, {"aaaa": None, "bbbb": "aaaa"})
    junk = root / "node_modules" / "pkg" / "alembic" / "versions"
    junk.mkdir(parents=True)
    (junk / "zzzz_x.py").write_text(migration_text("zzzz", "nope"))
    venv = root / "env-py"
    (venv / "lib" / "alembic").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr\n")
    (venv / "lib" / "alembic" / "yyyy.py").write_text(migration_text("yyyy", "nope"))
    snapshot = Engine([root]).snapshot()
    assert [sorted(s.graph.by_id) for s in snapshot.environments] == [["aaaa", "bbbb"]]
    assert snapshot.diagnostics == []
    file = next((root / "migrations" / "versions").glob("aaaa*"))
    assert uri_to_path(path_to_uri(file)) == file.resolve()  # URIs survive '#', '%', spaces, non-ASCII


def test_generated_names_are_safe_and_never_overwrite(tmp_path: Path):
    root = project(tmp_path, {"aaaa": None})
    state = Engine([root]).snapshot().environments[0]
    versions = (root / "migrations" / "versions").resolve()
    for message in ["../../etc/passwd", "a/b\\c", "nul\x00byte", "x" * 500, "..", "", "'''\"\"\"", "ü🎉 ok"]:
        new = render_revision(state.env, state.graph, message, ["aaaa"])
        assert new.path.resolve().parent == versions
        assert len(new.path.name) < 120 and "\x00" not in new.path.name and "/" not in new.path.name[:-3]
        compile(new.text, str(new.path), "exec")  # the file is valid Python whatever the message
    # a clash gets a fresh id instead of overwriting
    taken = render_revision(state.env, state.graph, "clash", ["aaaa"], rev_id="ffff")
    taken.path.write_text("# precious\n")
    again = render_revision(state.env, state.graph, "clash", ["aaaa"], rev_id="ffff")
    assert again.path != taken.path and again.rev_id != "ffff"
    assert taken.path.read_text() == "# precious\n"
    # an id already in the graph is never reused either
    assert render_revision(state.env, state.graph, "m", ["aaaa"], rev_id="aaaa").rev_id != "aaaa"


MODELS_OK = """
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
class Base(DeclarativeBase):
    pass
class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
"""


def _models_project(tmp_path: Path, models: str) -> Path:
    root = project(tmp_path, {"aaaa": None})
    (root / "migrations" / "env.py").write_text("from app.models import Base\ntarget_metadata = Base.metadata\n")
    (root / "app").mkdir()
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "models.py").write_text(models)
    return root


@pytest.mark.parametrize("prelude, expected", [
    ("import os\nos._exit(7)\n", "exited with code 7"),
    ("raise SystemExit(3)\n", "SystemExit"),
    ("x = bytearray(4 * 1024 ** 3)\n", "MemoryError"),
    ("print('noise on stdout'); print('@@MIGRATION_LSP_MODELS@@{bad json')\n", None),
])
def test_model_loader_crashes_become_m004(tmp_path: Path, prelude: str, expected: str | None):
    root = _models_project(tmp_path, prelude + MODELS_OK)
    env = Engine([root]).snapshot().environments[0].env
    result = load_models(env, metadata_source(env))
    if expected is None:  # noise, even a fake marker line, does not confuse the loader
        assert result.error is None and list(result.tables) == ["users"]
    else:
        assert result.error and expected in result.error


def test_model_loader_is_killed_on_timeout(tmp_path: Path):
    root = _models_project(tmp_path, "import time\ntime.sleep(60)\n" + MODELS_OK)
    env = Engine([root]).snapshot().environments[0].env
    result = load_models(env, metadata_source(env), timeout=2)
    assert result.error and "longer than 2 s" in result.error
    out = subprocess.run(["pgrep", "-f", "model_child.py"], capture_output=True, text=True)
    assert str(root) not in out.stdout  # no loader left behind
