"""A file that does not parse still has its upgrade() recovered (scripts._parse_tolerant);
the ops found there are conditional only when they sit under an if / loop / try, as in a
file that parses (the recovery once passed the function's line offset as that flag)."""

from __future__ import annotations

from pathlib import Path

from migration_lsp.scripts import parse_script

TEXT = '''"""broken"""
from alembic import op

revision = "a1"
down_revision = None


def upgrade():
    op.add_column("t", None)
    if True:
        op.drop_column("t", "x")


def downgrade():
    op.drop_column("t", (
'''


def test_ops_of_a_recovered_function_are_conditional_only_under_a_branch():
    script = parse_script(Path("versions/a1.py"), TEXT)
    assert script.syntax_error
    assert script.upgrade is not None
    assert [(op.name, op.conditional) for op in script.upgrade.ops] == [("add_column", False),
                                                                         ("drop_column", True)]
