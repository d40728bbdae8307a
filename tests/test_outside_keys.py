"""A revision's key covers what its evaluation read from other files (engine.schema_pass).

`op.create_table(User.__tablename__, ...)` reads the table's name from models.py next to
the migrations (outside.tablename, statically). The engine's revision keys (memo and
persistent cache) and its replay cover that answer, so an edit of models.py (an unsaved
buffer, or the disk) recomputes exactly the revisions that read it and those above them;
an edit of any other file recomputes nothing; revisions that read nothing keep their keys.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from migration_lsp import cache
from migration_lsp.cache import digest
from migration_lsp.cli import main
from migration_lsp.engine import Engine
from migration_lsp.engine.memo import RevisionMemo
from migration_lsp.engine.schema_pass import SchemaPass
from migration_lsp.graph import RevisionGraph
from migration_lsp.scripts import parse_script

from conftest import MINIMAL_ENV_PY, MINIMAL_INI, migration_text, write_project

REVISIONS = 6  # r0 (reads nothing), r1 (reads models.py), r2..r5 (read nothing)
MODELS = """\
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = {name!r}
    id = sa.Column(sa.Integer, primary_key=True)
"""


def revision_text(n: int) -> str:
    down = f"r{n - 1}" if n else None
    if n == 1:  # the reader: its upgrade names the table from models.py, its downgrade literally
        text = migration_text("r1", down, upgrades="op.create_table(User.__tablename__, sa.Column('id', sa.Integer(), "
                              "primary_key=True))", downgrades="op.drop_table('people')")
        return text.replace("import sqlalchemy as sa", "import sqlalchemy as sa\nfrom models import User")
    return migration_text(f"r{n}", down, upgrades=f"op.create_table('t{n}', sa.Column('id', sa.Integer()))",
                          downgrades="pass" if n == 3 else f"op.drop_table('t{n}')")  # (r3: a D001 always)


def make_project(root: Path) -> Path:
    write_project(root, {
        "alembic.ini": MINIMAL_INI,
        "models.py": MODELS.format(name="people"),
        "helpers.py": "VALUE = 1\n",
        "migrations/env.py": MINIMAL_ENV_PY,
        **{f"migrations/versions/r{n}_.py": revision_text(n) for n in range(REVISIONS)},
    })
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "p")


def _tables_and_d002(engine: Engine) -> tuple[list[str], list[str]]:
    snapshot = engine.snapshot()
    (state,) = snapshot.environments
    tables = sorted(state.replay.at_heads().tables)
    d002 = sorted(d.path.name for d in snapshot.diagnostics if d.code == "D002")
    return tables, d002


def test_an_edit_of_models_recomputes_its_readers_and_above_only(project: Path):
    engine = Engine([project], trusted=False, cache=False)
    assert _tables_and_d002(engine) == (["people", "t0", "t2", "t3", "t4", "t5"], [])
    models = (project / "models.py").resolve()

    # an unsaved edit in the editor: r1 and the four above it, and the findings follow
    before = engine.computed_revisions
    engine.set_buffer(models, MODELS.format(name="persons"))
    assert _tables_and_d002(engine) == (["persons", "t0", "t2", "t3", "t4", "t5"], ["r1_.py"])
    assert engine.computed_revisions - before == REVISIONS - 1

    # another file edited (open or on disk): nothing recomputed
    before = engine.computed_revisions
    engine.set_buffer((project / "helpers.py").resolve(), "VALUE = 2\n")
    (project / "helpers.py").write_text("VALUE = 3\n")
    engine.file_changed(project / "helpers.py")
    assert _tables_and_d002(engine) == (["persons", "t0", "t2", "t3", "t4", "t5"], ["r1_.py"])
    assert engine.computed_revisions == before

    # the buffer closed: the disk's name again, found in the memo (nothing computed twice)
    engine.close_buffer(models)
    assert _tables_and_d002(engine) == (["people", "t0", "t2", "t3", "t4", "t5"], [])
    assert engine.computed_revisions == before

    # saved on disk by another program (a watcher's event)
    models.write_text(MODELS.format(name="members"))
    engine.file_changed(models)
    assert _tables_and_d002(engine) == (["members", "t0", "t2", "t3", "t4", "t5"], ["r1_.py"])
    assert engine.computed_revisions - before == REVISIONS - 1


@pytest.mark.parametrize("flags", [[], ["--no-import"]])
def test_the_cli_with_its_cache_follows_an_edit_of_models_py(project: Path, tmp_path, monkeypatch, capsys, flags):
    """Per revision (trusted: the persistent schema cache) and per environment (untrusted:
    the whole report, keyed by the environment's own files, checks what models.py answered).
    Before: the second run read the first one's findings back, no D002."""
    monkeypatch.setenv(cache.DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(project)
    models = project / "models.py"
    seen = []
    for name in ("people", "persons", "persons", "people", "members"):
        models.write_text(MODELS.format(name=name))
        main(["check", "--static", "--select", "D002", *flags, "."])
        seen.append(capsys.readouterr().out.count("D002"))
    assert seen == [0, 1, 1, 0, 1]


def test_revisions_that_read_nothing_keep_their_keys(project: Path):
    """The common case costs nothing: a history that imports only sqlalchemy / alembic has
    the keys text and ancestry make (and the persistent cache's entries stay valid)."""
    scripts = [parse_script(p, p.read_text()) for p in sorted((project / "migrations" / "versions").glob("r*_.py"))]
    graph = RevisionGraph(scripts)
    keys: dict[str, str] = {}
    answers: dict[str, str] = {}
    list(SchemaPass(RevisionMemo(), lambda p: False).revision_keys(graph, "salt", keys, "sqlite", None, answers))
    assert list(answers) == ["r1"]

    def plain(rev: str) -> str:  # the key of text and ancestry alone
        script = graph.by_id[rev]
        parents = "".join(keys[p] for p in graph.parents[rev])
        return hashlib.blake2b(("salt" + digest(script.text) + parents + "|").encode(), digest_size=16).hexdigest()

    assert keys["r0"] == plain("r0")
    assert keys["r1"] != plain("r1")  # (models.py answered it)
    assert all(keys[f"r{n}"] == plain(f"r{n}") for n in range(2, REVISIONS))  # (above r1: its key in theirs)


@pytest.mark.parametrize("imports, body, asks", [
    ("from models import User", "op.create_table(User.__tablename__, sa.Column('id', sa.Integer()))", True),
    ("import models", "op.create_table(models.User.__tablename__, sa.Column('id', sa.Integer()))", True),
    ("from models import User",
     "op.add_column('posts', sa.Column('user_id', sa.Integer(), sa.ForeignKey(User.id)))", True),
    ("from models import User", "op.create_table('users', sa.Column('id', sa.Integer()))", False),
    ("from sqlalchemy import ForeignKey as FK", "op.add_column('p', sa.Column('u', sa.Integer(), FK('u.id')))", False),
])
def test_reads_outside_says_which_evaluations_can_ask(tmp_path: Path, imports: str, body: str, asks: bool):
    """The cheap test the keys rest on (scripts.reads_outside) is true of every script whose
    evaluation asks another file: a script it says False of keeps its plain key."""
    from migration_lsp.interpret import outside_questions
    from migration_lsp.scripts import reads_outside

    (tmp_path / "models.py").write_text(MODELS.format(name="people"))
    text = migration_text("a1", None, upgrades=body).replace("import sqlalchemy as sa",
                                                            f"import sqlalchemy as sa\n{imports}")
    script = parse_script(tmp_path / "a1_.py", text)
    assert bool(outside_questions(script, "sqlite")) is asks
    assert reads_outside(script) is asks


def test_two_engines_in_one_process_never_read_each_others_buffers(project: Path):
    """What an engine's evaluations read of other files is handed to them (outside.Outside),
    never kept in a module: before, one process-wide dict of open buffers let an engine read
    another's unsaved models.py, and a close in one dropped the other's buffer."""
    models = (project / "models.py").resolve()
    editing = Engine([project], trusted=False, cache=False)
    other = Engine([project], trusted=False, cache=False)
    editing.set_buffer(models, MODELS.format(name="persons"))
    assert _tables_and_d002(editing) == (["persons", "t0", "t2", "t3", "t4", "t5"], ["r1_.py"])
    assert _tables_and_d002(other) == (["people", "t0", "t2", "t3", "t4", "t5"], [])

    # the other engine opens and closes models.py: the first one's buffer stays its own
    other.set_buffer(models, MODELS.format(name="members"))
    assert _tables_and_d002(other)[0][0] == "members"
    other.close_buffer(models)
    assert _tables_and_d002(other)[0][0] == "people"
    editing.set_buffer((project / "helpers.py").resolve(), "VALUE = 2\n")  # (a change: a new pass)
    assert _tables_and_d002(editing)[0][0] == "persons"


TRUSTED_INI = MINIMAL_INI + "prepend_sys_path = .\n"
TRUSTED_ENV_PY = """\
from alembic import context

from models import Base

target_metadata = Base.metadata

context.configure(url="sqlite://", target_metadata=target_metadata)
"""


def _m_findings(engine: Engine) -> tuple[list[str], list[tuple[str, str]]]:
    """(the tables at the heads, the M001-M003 findings as (code, table named))."""
    snapshot = engine.snapshot()
    (state,) = snapshot.environments
    found = sorted((d.code, next(n for n in ("people", "persons", "t0") if n in d.message))
                   for d in snapshot.diagnostics if d.code in ("M001", "M002", "M003"))
    return sorted(state.replay.at_heads().tables), found


def test_trusted_the_replay_reads_models_py_as_the_imported_models_were_loaded(tmp_path: Path):
    """A trusted workspace imports the models from the saved models.py; the migration reads
    `User.__tablename__` statically. Both must read the same version: before, the replay read
    the unsaved buffer while the models stayed the saved file's, and a rename showed an
    M001/M002 pair until the save (and the models' reload)."""
    root = write_project(tmp_path / "p", {
        "alembic.ini": TRUSTED_INI,
        "models.py": MODELS.format(name="people"),
        "migrations/env.py": TRUSTED_ENV_PY,
        "migrations/versions/r0_.py": migration_text(
            "r0", None, upgrades="op.create_table(User.__tablename__, sa.Column('id', sa.Integer(), "
            "primary_key=True))", downgrades="op.drop_table(User.__tablename__)").replace(
            "import sqlalchemy as sa", "import sqlalchemy as sa\nfrom models import User"),
    })
    models = (root / "models.py").resolve()
    engine = Engine([root], trusted=True, cache=False)
    engine.load_models()
    assert sorted(engine.models[next(iter(engine.models))].tables) == ["people"]
    assert _m_findings(engine) == (["people"], [])

    # an unsaved rename: the models are still the saved file's, so is the replay's name
    engine.set_buffer(models, MODELS.format(name="persons"))
    assert _m_findings(engine) == (["people"], [])

    # saved: until the models are loaded again, both stay the version they were loaded from
    models.write_text(MODELS.format(name="persons"))
    engine.file_changed(models)
    assert _m_findings(engine) == (["people"], [])

    # loaded again (the server does it on the save): both read the saved rename
    engine.load_models()
    assert _m_findings(engine) == (["persons"], [])

    # untrusted, nothing is imported: the buffer is what the replay reads
    untrusted = Engine([root], trusted=False, cache=False)
    untrusted.set_buffer(models, MODELS.format(name="members"))
    assert sorted(untrusted.snapshot().environments[0].replay.at_heads().tables) == ["members"]


def test_a_models_load_that_overtakes_a_read_of_its_file_is_not_undone(tmp_path: Path, monkeypatch):
    """The rebuild thread reads a models file while the loop takes in a new load of the models
    (ModelsState.put): the text read before that load is not kept as the new load's version."""
    from migration_lsp.engine import sources
    from migration_lsp.engine.models_state import ModelsState
    from migration_lsp.models import ModelTables

    models = tmp_path / "models.py"
    models.write_text(MODELS.format(name="people"))
    state, key = ModelsState(True, ""), (tmp_path, "alembic")
    state.put(key, ModelTables(files=(models,)))
    read = sources.read_source

    def saved_meanwhile(path: Path) -> str | None:
        text = read(path)
        models.write_text(MODELS.format(name="persons"))  # saved, and the models loaded again
        state.put(key, ModelTables(files=(models,)))
        return text

    monkeypatch.setattr(sources, "read_source", saved_meanwhile)
    assert "'people'" in (state.saved_text(models) or "")  # (what that read found)
    monkeypatch.undo()
    assert "'persons'" in (state.saved_text(models) or "")  # the new load's version
    assert ModelsState(False, "").saved_text(models) is None  # (untrusted: no models, the buffer or disk)
