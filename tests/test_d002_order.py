"""D002's message names what the downgrade leaves behind in one order, run after run.

Alembic reports the columns a table has too many, and foreign keys, in the order of Python
sets (string hashes, which change with every interpreter, and object addresses): the
message listed the first three in that order, so the same files gave another message (and
other examples) from one run to the next (seen on zenml and prefect in the real-project
corpus, benchmarks/REALWORLD.md).
"""

from __future__ import annotations

import json

from migration_lsp.cli import main

from conftest import alembic_project, migration_text

COLUMNS = ["zeta", "alpha", "mu", "beta", "omega", "kappa", "delta"]
CREATE = "op.create_table('users', sa.Column('id', sa.Integer(), primary_key=True))"
ADD = "".join(f"\n    op.add_column('users', sa.Column('{c}_id', sa.Integer(), sa.ForeignKey('users.id')))"
              for c in COLUMNS)


def test_d002_lists_what_is_left_behind_sorted(tmp_path, monkeypatch, capsys):
    alembic_project(tmp_path, {
        "a1_.py": migration_text("a1", upgrades=CREATE, downgrades="op.drop_table('users')"),
        # the downgrade drops one added column of seven, and none of the foreign keys
        "b1_.py": migration_text("b1", "a1", upgrades=ADD.strip(), downgrades="op.drop_column('users', 'zeta_id')"),
    })
    monkeypatch.chdir(tmp_path)
    main(["check", "--static", "--no-import", "--no-cache", "--format", "json", "--select", "D002", "."])
    (d002,) = json.loads(capsys.readouterr().out)["diagnostics"]
    assert d002["path"].endswith("b1_.py")
    left = sorted([f"column users.{c}_id" for c in COLUMNS if c != "zeta"] +
                  [f"foreign key on users({c}_id)" for c in COLUMNS if c != "zeta"])
    assert d002["message"] == ("downgrade() does not restore the schema upgrade() started from: "
                               + "; ".join(f"{w} is left behind" for w in left[:3]) + " (and 9 more)")
