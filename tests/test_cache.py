"""The persistent cache: same results with and without it, reuse only what is unchanged,
never inside the workspace, and no harm from a damaged or unwritable cache."""

from __future__ import annotations

import hashlib
import hmac
import marshal
import pickle
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from migration_lsp import cache
from migration_lsp.cli import main
from migration_lsp.engine import Engine

from conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "blog"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "blog"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    return root


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch) -> Path:
    where = tmp_path / "user-cache"
    monkeypatch.setenv(cache.DIR_ENV, str(where))
    monkeypatch.delenv(cache.DISABLE_ENV, raising=False)
    return where


def _computed(engine: Engine) -> int:
    """Revisions whose schema checks the full pass had to compute."""
    before = engine.computed_revisions
    engine.snapshot()
    return engine.computed_revisions - before


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_second_engine_computes_nothing_and_agrees(project, cache_dir):
    before = _files(project)
    first = Engine([project], trusted=False)
    assert _computed(first) == len(first.snapshot().environments[0].graph.by_id)
    first.save_cache()
    assert list(cache_dir.rglob("*.marshal")), "the cache is written to the user's cache folder"
    assert _files(project) == before, "nothing is written into the workspace"

    second = Engine([project], trusted=False)
    assert _computed(second) == 0
    uncached = Engine([project], trusted=False, cache=False)
    assert second.snapshot().diagnostics == uncached.snapshot().diagnostics
    assert [d.data for d in second.snapshot().diagnostics] == [d.data for d in uncached.snapshot().diagnostics]


def test_a_changed_rule_in_the_same_version_computes_again(project, cache_dir, monkeypatch, tmp_path):
    """A development install keeps its version number while its code changes: what the old
    code stored (an old message of a rule) is not served to the new code."""
    code = tmp_path / "package"
    shutil.copytree(cache.PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "PACKAGE", code)
    first = Engine([project], trusted=False)
    assert _computed(first) > 0
    first.save_cache()
    assert _computed(Engine([project], trusted=False)) == 0, "the same code: answered by the cache"

    rule = code / "checks" / "safety.py"
    rule.write_text(rule.read_text() + "\n# a rule changed\n")
    again = Engine([project], trusted=False)
    assert _computed(again) == len(again.snapshot().environments[0].graph.by_id)


def test_an_edit_recomputes_the_file_and_what_is_above_it(project, cache_dir):
    engine = Engine([project], trusted=False)
    engine.snapshot()
    engine.save_cache()
    graph = engine.snapshot().environments[0].graph
    base = graph.bases[0]
    edited = graph.by_id[base].path
    edited.write_text(edited.read_text().replace("def downgrade()", "# edited\ndef downgrade()"))

    again = Engine([project], trusted=False)
    assert _computed(again) == 1 + len(graph.descendants(base))
    assert again.snapshot().diagnostics == Engine([project], trusted=False, cache=False).snapshot().diagnostics


def test_new_files_are_discovered_despite_the_cache(project, cache_dir):
    Engine([project], trusted=False).save_cache()
    versions = project / "migrations" / "versions"
    head = Engine([project], trusted=False).snapshot().environments[0].graph.heads[0]
    (versions / "ffffffffffff_new.py").write_text(
        f"revision = 'ffffffffffff'\ndown_revision = '{head}'\n\ndef upgrade():\n    pass\n\n"
        "def downgrade():\n    pass\n")
    graph = Engine([project], trusted=False).snapshot().environments[0].graph
    assert "ffffffffffff" in graph.by_id


def test_damaged_cache_is_ignored_and_replaced(project, cache_dir):
    engine = Engine([project], trusted=False)
    expected = engine.snapshot().diagnostics
    engine.save_cache()
    (stored,) = cache_dir.rglob("*.marshal")
    stored.write_bytes(b"\x00garbage" * 100)
    damaged = Engine([project], trusted=False)
    assert damaged.snapshot().diagnostics == expected
    damaged.save_cache()
    assert _computed(Engine([project], trusted=False)) == 0


def test_disabled_or_unwritable_cache(project, cache_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(cache.DISABLE_ENV, "1")
    engine = Engine([project], trusted=False)
    expected = engine.snapshot().diagnostics
    engine.save_cache()
    assert not cache_dir.exists()

    monkeypatch.delenv(cache.DISABLE_ENV)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.DIR_ENV, str(blocker / "cache"))
    engine = Engine([project], trusted=False)
    assert engine.snapshot().diagnostics == expected
    engine.save_cache()  # cannot write: no error


def test_cli_output_equal_with_and_without_cache(project, cache_dir, capsys, monkeypatch):
    head = Engine([project], trusted=False, cache=False).snapshot().environments[0].graph.heads[0]
    (project / "migrations" / "versions" / "eeeeeeeeeeee_drop.py").write_text(
        f"from alembic import op\nrevision = 'eeeeeeeeeeee'\ndown_revision = '{head}'\n\n"
        "def upgrade():\n    op.drop_table('tags')\n\ndef downgrade():\n    pass\n")
    monkeypatch.chdir(project)
    outputs = []
    for args in (["check", "--no-import", "--format", "json"], ["check", "--no-import", "--format", "json"],
                 ["check", "--no-import", "--no-cache", "--format", "json"]):
        main(args)
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]
    assert '"S005"' in outputs[0] and '"D001"' in outputs[0] and '"M004"' in outputs[0]


def test_an_edit_abandons_a_running_pass_and_the_next_one_resumes(project, cache_dir):
    engine = Engine([project], trusted=False, cache=False)
    engine.snapshot(quick=True)
    revisions = len(engine.snapshot(quick=True).environments[0].graph.by_id)
    steps = engine.snapshot_steps()
    next(steps)
    next(steps)
    head = engine.snapshot(quick=True).environments[0].graph.heads[0]
    path = engine.snapshot(quick=True).environments[0].graph.by_id[head].path
    edited = path.read_text().replace("def downgrade()", "# edited\ndef downgrade()")
    engine.set_buffer(path, edited)
    for _ in steps:  # the pass notices the edit and stops without publishing a stale picture
        pass
    assert any(s.partial for s in engine.snapshot(quick=True).environments)
    computed_before = engine.computed_revisions
    assert computed_before < revisions
    live = engine.snapshot().diagnostics
    # the work of the abandoned pass was kept: the whole history was computed once, plus the edit
    assert engine.computed_revisions <= revisions + 1
    path.write_text(edited)
    assert live == Engine([project], trusted=False, cache=False).snapshot().diagnostics


def test_cli_answers_an_unchanged_project_from_the_memo_and_follows_edits(project, cache_dir, capsys, monkeypatch):
    monkeypatch.chdir(project)
    args = ["check", "--no-import", "--format", "json"]
    main(args)
    first = capsys.readouterr().out
    # unchanged: the whole environment comes from the memo, no file is parsed
    parsed = []
    import migration_lsp.engine.documents as engine_module  # (where the engine parses files)
    real = engine_module.parse_script
    monkeypatch.setattr(engine_module, "parse_script", lambda *a, **k: parsed.append(a[0]) or real(*a, **k))
    main(args)
    assert capsys.readouterr().out == first and parsed == []
    # one file edited: parsed again, and the report equals an uncached one
    target = next((project / "migrations" / "versions").glob("*.py"))
    text = target.read_text()
    target.write_text(text.replace("def upgrade() -> None:", "def upgrade() -> None:\n    op.drop_table('legacy')", 1))
    assert target.read_text() != text
    main(args)
    edited = capsys.readouterr().out
    assert parsed
    main(args + ["--no-cache"])
    assert capsys.readouterr().out == edited != first


def test_released_revisions_give_their_ops_back_on_demand(project, cache_dir):
    """After a full pass, files that are not open keep only their schema (bodies and
    evaluated ops are forgotten); asking for a revision's ops evaluates them again."""
    engine = Engine([project], trusted=False, cache=False)
    state = engine.snapshot().environments[0]
    fresh = Engine([project], trusted=False, cache=False).snapshot().environments[0]
    for rev in state.graph.by_id:
        assert state.script_by_path[state.graph.by_id[rev].path].functions is None  # released
        ops = [(ev.call.name, ev.span) for ev in state.replay.revision(rev).upgrade]
        from migration_lsp.replay import Replay

        expected = [(ev.call.name, ev.span) for ev in Replay(fresh.graph).revision(rev).upgrade]
        assert ops == expected
        assert state.replay.revision(rev).after.tables.keys() == Replay(fresh.graph).revision(rev).after.tables.keys()


def test_an_edit_and_its_undo_are_never_replayed_twice(project, cache_dir):
    engine = Engine([project], trusted=False, cache=False)
    graph = engine.snapshot().environments[0].graph
    base_path = graph.by_id[graph.bases[0]].path
    original = base_path.read_text()
    edited = original.replace("def downgrade()", "# edited\ndef downgrade()")
    for text in (edited, original):
        engine.set_buffer(base_path, text)
        engine.snapshot()
    before = engine.computed_revisions
    for text in (edited, original, edited):
        engine.set_buffer(base_path, text)
        state = engine.snapshot().environments[0]
        assert engine.computed_revisions == before
        # the new replay starts out knowing every revision's schema (adopted by key)
        assert all(state.replay.computed(rev) for rev in state.graph.by_id)


class _Planted:
    """What a forged cache entry would make pickle call on loading."""

    def __reduce__(self):
        return (Path.touch, (Path(cache.os.environ[cache.DIR_ENV]) / "ran",))


def _stored(cache_dir: Path) -> tuple[Path, dict]:
    (stored,) = cache_dir.rglob("*.marshal")
    data = stored.read_bytes()
    magic = getattr(cache, "MAGIC", None)
    return stored, marshal.loads(data[len(magic) + 32:] if magic and data.startswith(magic) else data)


def _signed(cache_dir: Path, data: dict) -> bytes:
    """The cache file for `data` under the user's own key: what only this user's runs can
    write. Used to reach the checks behind the HMAC (the unpickler, the shape checks).
    (Before the HMAC, a cache file was the bare marshal data.)"""
    body = marshal.dumps(data)
    if not hasattr(cache, "MAGIC"):
        return body
    key = cache.user_key(cache_dir)
    return cache.MAGIC + hmac.new(key, cache.MAGIC + body, hashlib.sha256).digest() + body


def _forge(cache_dir: Path, section: str, change, sign: bool = True) -> int:
    """Replace every entry of `section` by change(entry); the number replaced. `sign`: with
    the user's key; else as an attacker without it would (a made-up MAC)."""
    stored, data = _stored(cache_dir)
    forged = 0
    for key, value in data.get(section, {}).items():
        data[section][key] = change(value)
        forged += 1
    if sign or not hasattr(cache, "MAGIC"):
        stored.write_bytes(_signed(cache_dir, data))
    else:
        body = marshal.dumps(data)
        stored.write_bytes(cache.MAGIC + hashlib.sha256(body).digest() + body)
    return forged


def test_a_forged_discovery_entry_runs_nothing(project, cache_dir):
    """Discovery records are the one pickled value in the cache: loading them allows only
    the project's own record classes and paths, so a forged entry is no cache, not code
    (even one signed with the user's key)."""
    engine = Engine([project], trusted=False)
    expected = engine.snapshot().diagnostics
    engine.save_cache()
    assert _forge(cache_dir, "discovery", lambda v: (pickle.dumps(_Planted()), *v[1:])) == 1
    assert Engine([project], trusted=False).snapshot().diagnostics == expected
    assert not (cache_dir / "ran").exists()


def _errors_project(project: Path) -> Path:
    """The example plus a revision that drops a table: S005, D001 (and M004: no models)."""
    head = Engine([project], trusted=False, cache=False).snapshot().environments[0].graph.heads[0]
    (project / "migrations" / "versions" / "eeeeeeeeeeee_drop.py").write_text(
        f"from alembic import op\nrevision = 'eeeeeeeeeeee'\ndown_revision = '{head}'\n\n"
        "def upgrade():\n    op.drop_table('tags')\n\ndef downgrade():\n    pass\n")
    return project


def _check(project: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["check", "--no-import", "--format", "json", *extra])
    return code, capsys.readouterr().out


def test_a_forged_memo_is_a_miss(project, cache_dir, capsys, monkeypatch):
    """Attack: the environment memo (a whole environment's findings) rewritten to "no
    findings" made `check --no-import` report all checks passed on a project with errors.
    Without the user's key the file's MAC does not check: the forged file is no cache."""
    monkeypatch.chdir(_errors_project(project))
    first = _check(project, capsys)
    assert '"S005"' in first[1] and first[0] != 0
    assert _forge(cache_dir, "environment", lambda v: (v[0], []), sign=False) == 1
    assert _check(project, capsys) == first


@pytest.mark.parametrize("section", ["discovery", "environment", "schema", "models"])
def test_entries_of_the_wrong_shape_are_misses(project, cache_dir, capsys, monkeypatch, section):
    """Entries that decode (even under the user's key) but are not of the shape written
    are a miss, never an exception."""
    monkeypatch.chdir(_errors_project(project))
    first = _check(project, capsys)
    shapes = iter([("x",), [1, 2, 3], {"a": 1}, (b"\x80\x04N.", [["x"]], []), ((1, 2, 3, 4, 5), [("p", [1])]),
                   [("G001", 9, None, (1, 2), "m", "e", {})], [("G001", 1, None, (-1, 0, 0, 0), "m", "e", [])],
                   ((("a",), (), (), (), ()), [("/x", [("G001", 1, None, (0, 0, 0, 0), 5, "e", {})])])] * 30)
    expected = Engine([project], trusted=False, cache=False).snapshot().diagnostics
    assert _forge(cache_dir, section, lambda v: next(shapes)) >= 1
    assert Engine([project], trusted=False).snapshot().diagnostics == expected  # (no memo: every section read)
    assert _check(project, capsys) == first


def _sentinel_python(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PYTHON_RAN"
    script = tmp_path / "evil-python"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    script.chmod(0o755)
    return script, marker


def test_a_cached_discovery_does_not_choose_the_python(project, cache_dir, capsys, monkeypatch, tmp_path):
    """Attack: a cached discovery whose settings name the Python to run made the next
    trusted `check` run that program. Settings are never cached (read from the config
    files on every run), and a record carrying them is refused."""
    from migration_lsp.project import Settings

    monkeypatch.chdir(project)
    assert main(["check"]) in (0, 1)
    capsys.readouterr()
    script, marker = _sentinel_python(tmp_path)

    def with_python(value):
        found = pickle.loads(value[0])
        envs = tuple(replace(e, settings=Settings(python=str(script))) for e in found.environments)
        return (pickle.dumps(replace(found, environments=envs, settings=Settings(python=str(script)))), *value[1:])

    assert _forge(cache_dir, "discovery", with_python) == 1
    main(["check"])
    assert not marker.exists()


def test_a_cache_file_of_another_user_or_writable_by_others_is_not_used(project, cache_dir, capsys, monkeypatch,
                                                                        caplog):
    """Attack: a shared cache folder where another user planted the file. Not the user's
    own (or writable by others): no cache, said once."""
    if os.geteuid() != 0:
        pytest.skip("chown needs root; the mode check below runs everywhere")  # see the next test
    monkeypatch.chdir(_errors_project(project))
    first = _check(project, capsys)
    _forge(cache_dir, "environment", lambda v: (v[0], []))  # signed: only the owner check stops it
    (stored,) = cache_dir.rglob("*.marshal")
    os.chown(stored, 12345, 12345)
    with caplog.at_level("WARNING", logger="migration_lsp"):
        assert _check(project, capsys) == first
    assert any("belongs to another user" in r.getMessage() for r in caplog.records)
    # the same file, ours again, in a folder of another user
    os.chown(stored, os.geteuid(), os.getegid())
    _forge(cache_dir, "environment", lambda v: (v[0], []))
    os.chown(stored.parent, 12345, 12345)
    assert _check(project, capsys) == first


def test_a_cache_writable_by_others_is_not_used(project, cache_dir, capsys, monkeypatch):
    monkeypatch.chdir(_errors_project(project))
    first = _check(project, capsys)
    _forge(cache_dir, "environment", lambda v: (v[0], []))
    (stored,) = cache_dir.rglob("*.marshal")
    stored.chmod(0o666)
    assert _check(project, capsys) == first
    stored.chmod(0o600)
    stored.parent.chmod(0o777)
    assert _check(project, capsys) == first


def test_cache_folders_and_files_are_private(project, cache_dir):
    engine = Engine([project], trusted=False)
    engine.snapshot()
    engine.save_cache()
    (stored,) = cache_dir.rglob("*.marshal")
    for folder in (cache_dir, stored.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for file in (stored, cache_dir / "key"):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_a_relative_cache_folder_is_ignored(project, tmp_path, monkeypatch):
    """Attack: XDG_CACHE_HOME=.cache-in-repo (relative) put the cache inside the workspace
    (where the workspace decides what it holds). Ignored, as the XDG spec says."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(cache.DIR_ENV, raising=False)
    monkeypatch.delenv(cache.DISABLE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "cache-in-repo")
    monkeypatch.chdir(project)
    before = _files(project)
    engine = Engine([project], trusted=False)
    engine.snapshot()
    engine.save_cache()
    assert _files(project) == before
    assert list((home / ".cache" / "migration-lsp").rglob("*.marshal"))
    monkeypatch.setenv(cache.DIR_ENV, "also-relative")
    assert cache.cache_root() == home / ".cache" / "migration-lsp"


def test_a_save_holds_one_copy_of_what_it_writes(cache_dir, tmp_path):
    """The server saves at idle moments; at 5,000 revisions the file's body is megabytes, and
    the save held two copies of it at once (MAGIC + body for the HMAC, then MAGIC + mac +
    body to write). Measured here by tracemalloc's peak during the save."""
    import marshal
    import tracemalloc

    store = cache.Store.for_root(tmp_path)
    assert store.enabled
    for n in range(2_000):
        store.put("schema", f"k{n}", [("S001", 2, None, (n, 0, n, 9), "m" * 200 + str(n), "env", None)])
    size = len(marshal.dumps(store._new))
    tracemalloc.start()
    try:
        assert store.save()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * size  # (old code: 2 x)
    again = cache.Store.for_root(tmp_path)  # what was written reads back, its HMAC checks
    assert again.get("schema", "k1999") == store.get("schema", "k1999")


def test_a_value_marshal_cannot_write_costs_only_its_entry(cache_dir, tmp_path):
    """A finding whose data held a SQLAlchemy `quoted_name` (a str subclass marshal refuses)
    made the whole save fail: every later run was a first run (zenml's S022)."""
    from sqlalchemy.sql.elements import quoted_name

    store = cache.Store.for_root(tmp_path)
    store.put("schema", "plain", [("S022", {"table": "a", "column": "id"})])
    store.put("schema", "subclass", [("S022", {"table": quoted_name("a", None), "column": "id"})])
    assert store.save()
    again = cache.Store.for_root(tmp_path)
    assert again.get("schema", "plain") == [("S022", {"table": "a", "column": "id"})]
    assert again.get("schema", "subclass") is None


def test_a_dropped_column_still_referenced_is_cached(tmp_path, cache_dir):
    """S022's data is plain str (the table named by the replayed state was a quoted_name,
    which the cache's encoder refused: that revision was computed again on every run)."""
    from conftest import alembic_project, migration_text as m

    root = alembic_project(tmp_path / "p", {
        "aaaa_base.py": m("aaaa", None, upgrades=(
            'op.create_table("parent", sa.Column("id", sa.Integer, primary_key=True))\n'
            '    op.create_table("child", sa.Column("id", sa.Integer, primary_key=True),\n'
            '                    sa.Column("p_id", sa.Integer, sa.ForeignKey("parent.id", name="fk_child_parent")))')),
        "bbbb_drop.py": m("bbbb", "aaaa", upgrades='op.drop_column("parent", "id")'),
    })
    first = Engine([root], trusted=False)
    assert _computed(first) == 2
    assert any(d.code == "S022" for d in first.snapshot().diagnostics)
    first.save_cache()
    second = Engine([root], trusted=False)
    assert _computed(second) == 0  # (old code: 1, the revision with the S022)
    assert second.snapshot().diagnostics == first.snapshot().diagnostics


def test_the_memo_key_follows_each_files_path(project, cache_dir, capsys, monkeypatch):
    """The memo key hashes the environment without its file list (stored.report_key): each
    file's path is in the key pieces instead. A revision file renamed, its text unchanged,
    is parsed again and reported under its new name."""
    monkeypatch.chdir(project)
    args = ["check", "--no-import", "--format", "json"]
    main(args)
    capsys.readouterr()
    parsed = []
    import migration_lsp.engine.documents as engine_module
    real = engine_module.parse_script
    monkeypatch.setattr(engine_module, "parse_script", lambda *a, **k: parsed.append(a[0]) or real(*a, **k))
    target = sorted((project / "migrations" / "versions").glob("*.py"))[0]
    moved = target.with_name("zz_" + target.name)
    target.rename(moved)
    main(args)
    out = capsys.readouterr().out
    assert moved in parsed
    main(args + ["--no-cache"])
    assert capsys.readouterr().out == out
