"""The lock model without a database: version awareness, context, raw SQL located in its
string, rendering through Alembic, and "unknown" where the SQL does not say.
(What PostgreSQL really does is checked by test_pglocks_real.py.)"""

from __future__ import annotations

import gc
import io
import warnings
import weakref

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.operations import ops as alembic_ops
from sqlalchemy.engine.url import make_url

from migration_lsp import pglocks
from migration_lsp.evaluate import Recorder
from migration_lsp.pglocks import DEFAULT_VERSION, FORMS, Lock
from pglocks_examples import example_ops, example_state, lock_of_pg_mode

op = Recorder()


def forms(effects):
    return [name for e in effects for name in e.forms]


def test_lock_names_and_what_they_block():
    assert Lock.ACCESS_EXCLUSIVE.pg_mode == "AccessExclusiveLock"
    assert lock_of_pg_mode("ShareUpdateExclusiveLock") is Lock.SHARE_UPDATE_EXCLUSIVE
    assert Lock.SHARE_ROW_EXCLUSIVE.sql == "SHARE ROW EXCLUSIVE"
    assert Lock.ACCESS_EXCLUSIVE.blocks == "reads and writes"
    assert Lock.SHARE.blocks == Lock.SHARE_ROW_EXCLUSIVE.blocks == "writes"
    assert Lock.SHARE_UPDATE_EXCLUSIVE.blocks == "neither reads nor writes"


def test_default_version_is_the_newest_supported():
    assert DEFAULT_VERSION == max(pglocks.SUPPORTED_VERSIONS) == 18
    assert set(range(12, 19)) <= set(pglocks.SUPPORTED_VERSIONS)


def test_constant_default_rewrites_only_before_11():
    add = op.add_column("t", sa.Column("c", sa.Integer, nullable=False, server_default="0"))
    for version in (9, 10):
        (effect,) = pglocks.op_effects(add, version=version)
        assert effect.rewrite is True and effect.scan is True
    for version in pglocks.SUPPORTED_VERSIONS:
        (effect,) = pglocks.op_effects(add, version=version)
        assert effect.forms == ("add_column.default",) and effect.rewrite is False and effect.scan is False


def test_volatile_stable_and_unknown_defaults():
    def effect(default):
        (e,) = pglocks.op_effects(op.add_column("t", sa.Column("c", sa.DateTime, server_default=default)))
        return e.forms[0], e.rewrite

    assert effect(sa.func.now()) == ("add_column.default", False)  # stable, not volatile
    assert effect(sa.text("statement_timestamp()")) == ("add_column.default", False)
    assert effect(sa.text("'2020-01-01'::timestamp")) == ("add_column.default", False)
    assert effect(sa.func.clock_timestamp()) == ("add_column.volatile_default", True)
    assert effect(sa.text("random()")) == ("add_column.volatile_default", True)
    assert effect(sa.text("gen_random_uuid()")) == ("add_column.volatile_default", True)
    assert effect(sa.text("my_app_default()")) == ("add_column.unknown_default", None)


def test_virtual_generated_column_exists_from_18():
    add = op.add_column("t", sa.Column("c", sa.Integer, sa.Computed("n * 2")))
    (at18,) = pglocks.op_effects(add, version=18)
    (at17,) = pglocks.op_effects(add, version=17)
    assert at18.forms == ("add_column.generated_virtual",) and at18.rewrite is False
    assert "STORED" in pglocks.render_sql(add, "postgresql", 17)
    assert at17.forms == ("add_column.generated_stored",) and at17.rewrite is True


def test_type_changes_by_old_and_new_type():
    state = example_state()

    def change(column, new, **kw):
        (e,) = pglocks.op_effects(op.alter_column("t", column, type_=new, **kw), state)
        return e.forms[0], e.rewrite

    assert change("name", sa.String(40)) == ("alter_column.type_coercible", False)
    assert change("name", sa.String(10)) == ("alter_column.type", True)
    assert change("name", sa.Text) == ("alter_column.type_coercible", False)
    assert change("amount", sa.Numeric(20, 2)) == ("alter_column.type_coercible", False)
    assert change("amount", sa.Numeric(20, 3)) == ("alter_column.type", True)
    assert change("n", sa.BigInteger) == ("alter_column.type", True)
    assert change("created", sa.DateTime(timezone=True)) == ("alter_column.type_timezone", None)
    # the op's own existing_type wins over the history
    assert change("n", sa.String(40), existing_type=sa.String(20)) == ("alter_column.type_coercible", False)


def test_without_history_what_the_sql_does_not_say_is_unknown():
    (e,) = pglocks.op_effects(op.alter_column("t", "n", type_=sa.BigInteger))
    assert e.forms == ("alter_column.type_unknown",) and e.rewrite is None and e.scan is None
    assert e.locks == (pglocks.RelationLock("t", Lock.ACCESS_EXCLUSIVE, "table"),)
    (e,) = pglocks.op_effects(op.drop_index("ix_t_note"))
    assert e.locks == (pglocks.RelationLock(None, Lock.ACCESS_EXCLUSIVE, "table of index ix_t_note"),)
    (e,) = pglocks.op_effects(op.drop_index("ix_t_note"), example_state())
    assert e.locks == (pglocks.RelationLock("t", Lock.ACCESS_EXCLUSIVE, "table"),)
    (e,) = pglocks.op_effects(op.drop_constraint("fk_t_parent", "t"))
    assert e.forms == ("drop_constraint",) and "foreign key" in e.unknown
    (e,) = pglocks.op_effects(op.drop_constraint("fk_t_parent", "t"), example_state())
    assert e.forms == ("drop_constraint.foreign_key",) and e.unknown == ""
    assert {(r.relation, r.role) for r in e.locks} == {("t", "table"), ("parent", "referenced table")}


def test_coercible_type_change_scans_when_a_check_mentions_the_column():
    state = example_state()
    (e,) = pglocks.op_effects(op.alter_column("t", "amount", type_=sa.Numeric(20, 2)), state)
    assert e.rewrite is False and e.scan is True  # ck_t_amount is validated again
    (e,) = pglocks.op_effects(op.alter_column("t", "name", type_=sa.Text), state)
    assert e.rewrite is False and e.scan is False
    (e,) = pglocks.op_effects(op.alter_column("t", "name", type_=sa.Text, existing_type=sa.String(20)))
    assert e.rewrite is False and e.scan is None and "CHECK" in e.unknown


def test_set_not_null_proven_by_a_check_only_from_12():
    state = example_state()
    set_nn = op.alter_column("t", "created", nullable=False)
    assert pglocks.op_effects(set_nn, state, 12)[0].scan is False
    assert pglocks.op_effects(set_nn, state, 11)[0].scan is True
    assert pglocks.op_effects(op.alter_column("t", "n", nullable=False), state)[0].scan is True


def test_one_op_can_emit_several_statements():
    alter = op.alter_column("t", "n", nullable=False, server_default="1", comment="x", new_column_name="m")
    effects = pglocks.op_effects(alter, example_state())
    assert forms(effects) == ["alter_column.set_not_null", "alter_column.set_default", "comment",
                              "alter_column.rename"]
    assert [e.lock for e in effects] == [Lock.ACCESS_EXCLUSIVE] * 2 + [Lock.SHARE_UPDATE_EXCLUSIVE,
                                                                        Lock.ACCESS_EXCLUSIVE]


def test_rendering_twice_gives_the_same_sql():
    """Alembic attaches an op's columns to the table it renders: the second rendering
    would lose an inline foreign key (and `FORMS` examples are rendered many times)."""
    create = op.create_table("c", sa.Column("id", sa.Integer, primary_key=True),
                             sa.Column("p", sa.Integer, sa.ForeignKey("parent.id")))
    add = op.add_column("t", sa.Column("p", sa.Integer, sa.ForeignKey("parent.id")))
    for item in (create, add):  # (_render: past the memo of render_sql, Alembic renders it again)
        first = pglocks._render(item, "postgresql", None)
        assert "REFERENCES parent (id)" in first
        assert pglocks._render(item, "postgresql", None) == first
    assert forms(pglocks.op_effects(add)) == ["add_column", "add_constraint.foreign_key"]


def test_render_sql_is_alembics_offline_output():
    assert pglocks.render_sql(op.create_index("ix", "t", ["a"], postgresql_concurrently=True)) \
        == "CREATE INDEX CONCURRENTLY ix ON t (a);\n\n"
    assert pglocks.render_sql(op.add_column("t", sa.Column("c", sa.Integer)), "sqlite") \
        == "ALTER TABLE t ADD COLUMN c INTEGER;\n\n"


def test_raw_sql_statements_are_located_in_their_string():
    sql = ("-- é ünïcode before\nSET lock_timeout = '1s';\n"
           "CREATE INDEX CONCURRENTLY ix_a ON s.t (a);  /* ö */ ALTER TABLE t ADD CONSTRAINT fk"
           " FOREIGN KEY (a) REFERENCES p (id) NOT VALID, ALTER COLUMN b SET NOT NULL;\n"
           "ALTER TABLE t VALIDATE CONSTRAINT fk; UPDATE t SET a = 1")
    effects = pglocks.sql_effects(sql)
    assert [e.sql for e in effects] == [sql[e.offset:e.offset + e.length] for e in effects]
    assert [e.sql.split()[0] for e in effects] == ["SET", "CREATE", "ALTER", "ALTER", "UPDATE"]
    assert [e.forms for e in effects] == [
        ("no_table",), ("create_index.concurrently",),
        ("add_constraint.foreign_key_not_valid", "alter_column.set_not_null"),
        ("validate_constraint.foreign_key",), ("update",)]  # fk: a foreign key, added above
    assert effects[1].transactional is False and effects[1].locks == (
        pglocks.RelationLock("s.t", Lock.SHARE_UPDATE_EXCLUSIVE, "table"),)
    # one ALTER TABLE: the strongest lock per table, a scan if any part scans
    assert set(effects[2].locks) == {pglocks.RelationLock("t", Lock.ACCESS_EXCLUSIVE, "table"),
                                     pglocks.RelationLock("p", Lock.SHARE_ROW_EXCLUSIVE, "referenced table")}
    assert effects[2].scan is True and effects[2].blocks == "reads and writes"
    assert set(effects[3].locks) == {pglocks.RelationLock("t", Lock.SHARE_UPDATE_EXCLUSIVE, "table"),
                                     pglocks.RelationLock("p", Lock.ROW_SHARE, "referenced table")}


def test_unknown_statements_and_unparsable_sql():
    (e,) = pglocks.sql_effects("DO $$ BEGIN ALTER TABLE t ADD COLUMN c int; END $$")
    assert e.forms == ("unknown",) and e.locks == () and e.scan is None and e.rewrite is None
    assert "DoStmt" in e.unknown
    assert pglocks.sql_effects("ALTER TABLE t ADD COLUM x int") is None
    assert pglocks.op_effects(op.execute("not sql at all")) is None


def test_without_pglast_everything_is_unknown(monkeypatch):
    monkeypatch.setattr(pglocks, "HAVE_PGLAST", False)
    assert pglocks.sql_effects("CREATE INDEX ix ON t (a)") is None
    assert pglocks.op_effects(op.create_index("ix", "t", ["a"])) is None


def test_every_form_is_reachable_and_named_consistently():
    for name, form in FORMS.items():
        assert form.name == name
        for example in example_ops(form):
            effects = pglocks.op_effects(example, example_state(), max(form.since, DEFAULT_VERSION))
            assert name in forms(effects), (name, pglocks.render_sql(example))


CORPUS = open(__file__.replace("test_pglocks.py", "data/pglocks_corpus.sql"), encoding="utf-8").read()


def test_a_corpus_of_statements_never_crashes_and_unknown_means_no_claim():
    effects = pglocks.sql_effects(CORPUS)
    assert len(effects) == len(pglocks.parse_sql(CORPUS)) > 70
    for e in effects:
        assert e.forms
        if "unknown" in e.forms:
            assert e.unknown and e.scan is None and e.rewrite is None, e
    by_sql = {e.sql: e for e in effects}
    # what the model does not know it says so, with the reason
    assert "CASCADE" in by_sql["DROP TYPE mood CASCADE"].unknown
    assert "changes data" in by_sql["WITH x AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM x"].unknown
    assert "my_func" in by_sql["SELECT my_func()"].unknown
    assert by_sql["DROP TYPE mood"].forms == ("no_table",)
    assert by_sql["UPDATE t SET a = u.a FROM u WHERE t.id = u.id"].locks == (
        pglocks.RelationLock("t", Lock.ROW_EXCLUSIVE, "table"), pglocks.RelationLock("u", Lock.ACCESS_SHARE,
                                                                                      "read table"))


def test_version_dependent_lock():
    (e,) = pglocks.sql_effects("ALTER INDEX ix RENAME TO iy", version=12)
    assert e.locks == (pglocks.RelationLock("ix", Lock.SHARE_UPDATE_EXCLUSIVE, "index"),)
    (e,) = pglocks.sql_effects("ALTER INDEX ix RENAME TO iy", version=11)
    assert e.lock is Lock.ACCESS_EXCLUSIVE


def test_postgres_version_setting():
    assert pglocks.postgres_version(16) == pglocks.postgres_version("16.4") == 16
    assert pglocks.postgres_version(None) == pglocks.postgres_version("latest") == DEFAULT_VERSION
    assert pglocks.postgres_version(7) == DEFAULT_VERSION


def test_rendering_never_changes_an_example_op():
    """The replay's ops are shared: rendering one (hover, `sql`) must leave it as it was."""
    for form in FORMS.values():
        for example in example_ops(form):
            first = pglocks._render(example, "postgresql", None)
            assert pglocks._render(example, "postgresql", None) == first, form.name


def _fresh_context_sql(example, dialect: str, version: int | None) -> str:
    """Alembic's offline rendering through a context configured for this one op (what
    render_sql did before it kept one context per dialect and version)."""
    buf = io.StringIO()
    sa_dialect = make_url(f"{dialect}://").get_dialect()()
    if version:
        sa_dialect.server_version_info = (version, 0)
        sa_dialect.supports_virtual_generated_columns = version >= 18
    context = MigrationContext.configure(dialect=sa_dialect, opts={"as_sql": True, "output_buffer": buf})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Operations(context).invoke(pglocks._fresh(example))
    return buf.getvalue()


def test_the_shared_context_renders_what_a_context_of_its_own_renders():
    """render_sql keeps one offline context per (dialect, version): every example op, rendered
    one after the other through it, gives the SQL a context configured for that op alone gives."""
    examples = [(form.name, ex) for form in FORMS.values() for ex in example_ops(form)]
    compared = 0
    for dialect, version in (("postgresql", 12), ("postgresql", 18), ("sqlite", None)):
        for name, example in examples:
            try:
                expected = _fresh_context_sql(example, dialect, version)
            except Exception as exc:  # noqa: BLE001 - an op this dialect cannot render: so must the shared one
                with pytest.raises(type(exc)):
                    pglocks._render(example, dialect, version)
                continue
            assert pglocks._render(example, dialect, version) == expected, (dialect, version, name)
            compared += 1
    assert compared > 2 * len(examples)


def test_an_op_is_rendered_once_per_dialect_and_version(monkeypatch):
    """Several readers ask for the same op's SQL (pg_ddl, pg_transactions, hints, hover):
    Alembic renders it once per (dialect, version), and the memo goes with the op."""
    rendered = []
    real = pglocks._render

    def counting(op_, dialect, version):
        rendered.append((dialect, version))
        return real(op_, dialect, version)

    monkeypatch.setattr(pglocks, "_render", counting)
    alter = alembic_ops.AlterColumnOp("t", "n", modify_nullable=False)  # (a Recorder would keep it alive)
    sql = pglocks.render_sql(alter)
    assert "SET NOT NULL" in sql
    assert pglocks.render_sql(alter) == sql
    assert forms(pglocks.op_effects(alter, example_state())) == ["alter_column.set_not_null"]
    assert pglocks.op_effects(alter, version=DEFAULT_VERSION) is not None
    assert rendered == [("postgresql", None), ("postgresql", DEFAULT_VERSION)]
    pglocks.render_sql(alter, "postgresql", 12)
    pglocks.render_sql(alter, "sqlite", 12)  # (the version is PostgreSQL's: not part of sqlite's key)
    pglocks.render_sql(alter, "sqlite")
    assert rendered[2:] == [("postgresql", 12), ("sqlite", None)]
    other = alembic_ops.AlterColumnOp("t", "n", modify_nullable=False)  # an equal op is another op
    pglocks.render_sql(other)
    assert len(rendered) == 5
    with pytest.raises(Exception, match="existing type"):  # MySQL needs the old type
        pglocks.render_sql(alter, "mysql")
    assert len(rendered) == 6
    with pytest.raises(Exception, match="existing type"):
        pglocks.render_sql(alter, "mysql")
    assert len(rendered) == 7  # (a failure is not remembered)
    alter.existing_type = sa.Integer()  # what replay.with_history fills in (writing a downgrade)
    assert pglocks.render_sql(alter, "mysql") == "ALTER TABLE t MODIFY n INTEGER NOT NULL;\n\n"
    alter.existing_server_default = "1"
    assert pglocks.render_sql(alter, "mysql") == "ALTER TABLE t MODIFY n INTEGER NOT NULL DEFAULT '1';\n\n"
    assert len(rendered) == 9
    before = len(pglocks._RENDERED)
    refs = [weakref.ref(alter), weakref.ref(other)]
    del alter, other
    gc.collect()
    assert [r() for r in refs] == [None, None]  # the memo did not keep them alive
    assert len(pglocks._RENDERED) <= before - 2  # (other tests' dead ops may go too)


def test_vacuum_and_reindex_options():
    def form(sql):
        (e,) = pglocks.sql_effects(sql)
        return e.forms[0]

    assert form("VACUUM (FULL) u") == form("VACUUM FULL u") == "vacuum.full"
    assert form("VACUUM (FULL false) u") == form("VACUUM (FULL off) u") == form("VACUUM u") == "vacuum"
    assert form("REINDEX (CONCURRENTLY) TABLE t") == form("REINDEX TABLE CONCURRENTLY t") == "reindex.concurrently"
    assert form("VACUUM") == "unknown"  # every table


def test_a_lock_nobody_checked_on_a_version_is_unknown_there():
    def locks(version):
        (e,) = pglocks.sql_effects("GRANT SELECT ON t TO PUBLIC", version=version)
        return e.locks, e.unknown

    assert locks(18) == ((pglocks.RelationLock("t", Lock.ACCESS_SHARE, "table"),), "")
    assert locks(15) == ((), "")  # checked on PostgreSQL 15: no lock on the table
    assert locks(16)[0] == () and "PostgreSQL 16" in locks(16)[1]


def test_a_form_newer_than_the_version_says_so():
    (e,) = pglocks.sql_effects("REINDEX TABLE CONCURRENTLY t", version=11)
    assert "needs PostgreSQL 12" in e.unknown
    (e,) = pglocks.sql_effects("REINDEX TABLE CONCURRENTLY t", version=12)
    assert e.unknown == ""


def test_sql_the_parser_cannot_take_is_unknown():
    """pglast raises its ParseError for bad syntax and UnicodeEncodeError for a lone surrogate
    (which a Python string literal in a migration can hold): both are "cannot parse"."""
    assert pglocks.parse_sql("SELEC 1") is None
    assert pglocks.parse_sql("SELECT '\ud800'") is None
    assert pglocks.sql_effects("ALTER TABLE t ADD COLUMN c text DEFAULT '\ud800'", None, DEFAULT_VERSION) is None
    assert pglocks.parse_sql("SELECT 1") is not None
