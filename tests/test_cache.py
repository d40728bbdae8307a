"""The persistent cache: same results with and without it, reuse only what is unchanged,
never inside the workspace, and no harm from a damaged or unwritable cache."""

from __future__ import annotations

import hashlib
import hmac
import marshal
import pickle
import shutil
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
    import migration_lsp.engine as engine_module
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
        from migration_lsp.schema import Replay

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
    return stored, marshal.loads(data[len(cache.MAGIC) + 32:])


def _signed(cache_dir: Path, data: dict) -> bytes:
    """The cache file for `data` under the user's own key: what only this user's runs can
    write. Used to reach the checks behind the HMAC (the unpickler, the shape checks)."""
    body = marshal.dumps(data)
    key = cache.user_key(cache_dir)
    return cache.MAGIC + hmac.new(key, cache.MAGIC + body, hashlib.sha256).digest() + body


def _forge(cache_dir: Path, section: str, change, sign: bool = True) -> int:
    """Replace every entry of `section` by change(entry); the number replaced."""
    stored, data = _stored(cache_dir)
    forged = 0
    for key, value in data.get(section, {}).items():
        data[section][key] = change(value)
        forged += 1
    if sign:
        stored.write_bytes(_signed(cache_dir, data))
    else:  # an attacker without the key: a well-formed file with a made-up MAC
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
