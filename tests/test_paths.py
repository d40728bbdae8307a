"""paths.Resolver: `Path.resolve()` for a batch of paths with each folder resolved once (the
file watcher's events of a checkout, handled on the server's event loop). Its answer must be
`Path.resolve()`'s for every kind of path, symlinks included; the work is counted in calls
of `os.path.realpath` (what `Path.resolve()` runs), never timed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import migration_text
from lsprotocol import types as t

from migration_lsp import server as srv
from migration_lsp.engine import Engine
from migration_lsp.paths import Resolver


@pytest.fixture
def realpaths(monkeypatch) -> list[str]:
    """Every path `os.path.realpath` (so `Path.resolve()`) is asked for."""
    seen: list[str] = []
    real = os.path.realpath

    def counting(path, *args, **kwargs):
        seen.append(os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os.path, "realpath", counting)
    return seen


def tree(tmp_path: Path) -> list[Path]:
    """Paths of every kind a watcher may report, each as the editor names it."""
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "a.py").write_text("")
    (real / "sub" / "b.py").write_text("")
    (tmp_path / "elsewhere.py").write_text("")
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)  # a symlinked folder
    (tmp_path / "relative").symlink_to("real/sub", target_is_directory=True)  # ... by a relative link
    (real / "file_link.py").symlink_to(tmp_path / "elsewhere.py")  # a symlinked file
    (real / "chain.py").symlink_to("file_link.py")  # a link to a link
    (real / "dangling.py").symlink_to(tmp_path / "nowhere.py")
    (real / "to_folder").symlink_to(real / "sub", target_is_directory=True)
    return [
        real / "a.py", real / "missing.py", real / "sub" / "b.py", tmp_path / "linked" / "a.py",
        tmp_path / "linked" / "sub" / "b.py", tmp_path / "linked" / "missing.py", tmp_path / "relative" / "b.py",
        real / "file_link.py", tmp_path / "linked" / "file_link.py", real / "chain.py", real / "dangling.py",
        real / "to_folder", real / "to_folder" / "b.py", real / "sub" / ".." / "a.py", real / "sub" / "..",
        real / "a.py" / "under_a_file.py", tmp_path / "gone" / "deeper" / "x.py", Path("/"), Path("relative.py"),
    ]


def test_the_answer_is_path_resolve_for_every_kind_of_path(tmp_path: Path) -> None:
    paths = tree(tmp_path)
    resolve = Resolver()
    for path in paths + paths:  # (twice: the second time from what it remembers)
        assert resolve(path) == path.resolve(), path
        assert resolve(path.resolve()) == path.resolve(), path  # (a resolved path again)
    assert resolve(tmp_path / "linked" / "file_link.py") == tmp_path / "elsewhere.py"
    assert resolve(tmp_path / "linked" / "a.py") == tmp_path / "real" / "a.py"


def test_a_symlink_loop_fails_as_path_resolve_fails(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "cycle").symlink_to(tmp_path / "cycle", target_is_directory=True)
    for path in (tmp_path / "loop", tmp_path / "cycle" / "x.py"):
        with pytest.raises(RuntimeError):
            path.resolve()
        with pytest.raises(RuntimeError):
            Resolver()(path)


def test_each_folder_is_resolved_once(tmp_path: Path, realpaths: list[str]) -> None:
    """A thousand files in a symlinked folder cost one realpath (the folder's); a symlinked
    file costs its own (its target is resolved in full)."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    (tmp_path / "target.py").write_text("")
    (real / "link.py").symlink_to(tmp_path / "target.py")
    resolve = Resolver()
    found = [resolve(tmp_path / "linked" / f"r{n}.py") for n in range(1000)]
    assert found == [real / f"r{n}.py" for n in range(1000)]
    assert realpaths == [str(tmp_path / "linked")]
    assert resolve(tmp_path / "linked" / "link.py") == tmp_path / "target.py"
    assert realpaths == [str(tmp_path / "linked"), str(real / "link.py")]
    assert [resolve(p) for p in found] == found and len(realpaths) == 2  # (resolved ones: as they are)


# ---------------------------------------------------------------- the server's file watcher


def _project(tmp_path: Path) -> tuple[Path, Path]:
    """A project whose migrations folder (script_location) is a symlink to a folder outside
    it (shared migrations), with 1,000 application files next to it."""
    outside = tmp_path / "shared" / "migrations"
    (outside / "versions").mkdir(parents=True)
    for n in range(3):
        (outside / "versions" / f"r{n}_t.py").write_text(
            migration_text(f"r{n}", f"r{n - 1}" if n else None, message=f"table {n}"))
    root = tmp_path / "p"
    root.mkdir()
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    (root / "migrations").symlink_to(outside, target_is_directory=True)
    (root / "app").mkdir()
    for n in range(1000):
        (root / "app" / f"m{n}.py").write_text("")
    return root, outside


async def test_watched_events_in_a_symlinked_folder_resolve_each_folder_once(tmp_path: Path,
                                                                            realpaths: list[str]) -> None:
    root, outside = _project(tmp_path)
    ls = srv.MigrationServer()
    ls.engine = Engine([root], trusted=False, cache=False)
    ls.pull = True  # (nothing is pushed to a client that is not there)
    ls.protocol.client_capabilities = t.ClientCapabilities()
    ls.ready.set()
    ls.refresh()
    changed = outside / "versions" / "r1_t.py"
    changed.write_text(changed.read_text().replace("= 'r0'", "= 'zz'"))
    named = root / "migrations" / "versions" / "r1_t.py"  # as the editor names it: through the link
    events = [t.FileEvent(uri=named.as_uri(), type=t.FileChangeType.Changed)] + [
        t.FileEvent(uri=(root / "app" / f"m{n}.py").as_uri(), type=t.FileChangeType.Changed) for n in range(1000)]
    realpaths.clear()
    srv.did_change_watched(ls, t.DidChangeWatchedFilesParams(changes=events))
    # each folder once (versions through the link, app), not three times an event as before
    assert sorted(realpaths) == sorted([str(root / "migrations" / "versions"), str(root / "app")])
    snapshot = ls.engine.snapshot(quick=True)
    assert "zz" in snapshot.script(changed).text  # taken in, under the name discovery gave it
    assert (changed, "G002") in [(d.path, d.code) for d in snapshot.diagnostics]
    assert snapshot.diagnostics == Engine([root], trusted=False, cache=False).snapshot(quick=True).diagnostics
