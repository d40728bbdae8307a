"""The rule registry: every diagnostic code the tool emits, described once.

The checks take their severities from here, SARIF its rule descriptors, the editor its
"Show documentation" links, and the README its rule tables (generated from this module;
tests/test_rules_registry.py fails when the README and the registry disagree).

Adding a rule is one `Rule(...)` entry in `_RULES`, then
`python -m migration_lsp.rules --update README.md` to regenerate the tables. A check takes
a finding's severity from `severity(code)`; a rule whose findings vary declares the other
levels (`also=`) and the check names the one it means: `severity(code, INFO)`.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .core import Severity

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

HOME = "https://github.com/migration-lsp/migration-lsp"


@dataclass(frozen=True)
class Rule:
    code: str  # stable: G001, S003, ...
    name: str  # kebab-case, for people and SARIF
    severity: Severity  # the usual one, SARIF's default level
    summary: str  # one line: what is reported
    where: str  # where the finding sits (Markdown)
    rationale: str  # why it matters
    fix: str  # what to do (and the quick fix offered, if any)
    dialects: tuple[str, ...] = ()  # SQLAlchemy dialect names it speaks for; empty: every dialect
    also: tuple[Severity, ...] = ()  # other severities some findings take (the rationale says when)

    @property
    def severities(self) -> tuple[Severity, ...]:
        """Every severity a finding of this rule may have, the usual one first."""
        return (self.severity, *self.also)

    @property
    def severity_label(self) -> str:
        """`warning`, or `warning or info` for a rule whose findings vary."""
        return " or ".join(s.label for s in self.severities)

    @property
    def family(self) -> str:
        return self.code[0]

    @property
    def doc_url(self) -> str:
        return doc_url(self.code)


# family letter -> (README heading, where more detail lives, if anywhere)
FAMILIES: dict[str, tuple[str, str]] = {
    "G": ("Revision graph", "#working-with-branches"),
    "M": ("Models and migrations", ""),
    "D": ("Downgrades", ""),
    "S": ("Safety", "#safety-rules"),
    "R": ("Scratch database", ""),
}

_RULES: tuple[Rule, ...] = (
    # ----------------------------------------------------------------- graph
    Rule("G001", "multiple-heads", ERROR, "multiple heads in one branch",
         "`revision =` line of each head",
         "`alembic upgrade head` refuses to run when a branch has two heads, so the next deploy "
         "fails. It usually appears after merging two branches that each added a revision. Heads "
         "of differently-labelled branches are fine.",
         "**Merge heads** creates a merge revision whose `down_revision` names every head; "
         "**Rebase onto …** points this revision at the other head instead."),
    Rule("G002", "missing-down-revision", ERROR, "down_revision points to a revision that does not exist",
         "the id inside `down_revision`",
         "Alembic cannot build the revision graph and every command fails with `KeyError` / "
         "\"Revision … referenced from … is not present\". A header reference must be a full id "
         "or a branch label: a partial id that matches one revision is reported here too.",
         "**Change to …** one of the closest existing ids (the message names them), or "
         "**Point to current head**."),
    Rule("G003", "missing-dependency", ERROR,
         "depends_on names a revision or branch label that does not exist",
         "the id inside `depends_on`",
         "Alembic fails to resolve the dependency and refuses to run any command.",
         "**Change to …** a close existing id, or **Point to current head**; or remove the entry."),
    Rule("G004", "revision-cycle", ERROR, "revision cycle",
         "`down_revision` of each revision in the loop",
         "A revision that is (indirectly) its own ancestor has no order to run in; Alembic "
         "reports a cycle and stops. The message lists the loop.",
         "Point one `down_revision` of the loop at a revision outside it."),
    Rule("G005", "duplicate-revision-id", ERROR, "the same revision id in two files",
         "`revision =` of each file",
         "Alembic keeps one of the two files and silently ignores the other (or warns), so one "
         "migration never runs. Typical after copying a file as a template.",
         "**Give this revision a new id** writes a fresh id into `revision =`, the docstring and "
         "the file name."),
    Rule("G006", "branch-label-clash", ERROR, "branch label used twice, or equal to a revision id",
         "`branch_labels`",
         "Alembic refuses to load a graph in which a label names two branches or shadows a "
         "revision id: every command fails.",
         "Rename one of the labels."),
    Rule("G007", "ambiguous-revision-id", ERROR, "partial revision id that matches several revisions",
         "the reference",
         "Alembic cannot tell which revision is meant and fails with \"Multiple revisions start "
         "with …\".",
         "**Change to …** the full id of the revision meant."),
    Rule("G008", "second-base", WARNING, "a second base in an unlabelled branch",
         "`down_revision = None`",
         "Two revisions without a parent and without branch labels make two unrelated histories "
         "in one branch: usually a file whose `down_revision` was lost, and `upgrade head` then "
         "sees two heads.",
         "Set `down_revision` to the revision it follows, or give the new branch a `branch_labels`."),
    Rule("G009", "docstring-header-mismatch", WARNING,
         "docstring Revision ID / Revises disagree with the variables",
         "docstring line",
         "Alembic reads only the variables; a docstring that says otherwise misleads whoever "
         "reads the file or resolves a merge conflict by it.",
         "**Update docstring header** copies the variables' values into the docstring."),
    Rule("G010", "unreadable-revision-file", WARNING,
         "file in a versions directory whose revision header cannot be read",
         "line 1",
         "Alembic would fail to load it (or skip it), so its revision and everything after it "
         "is missing from the graph.",
         "Give the file a literal `revision = \"…\"` and `down_revision`, fix its syntax error, or "
         "move it out of the versions directory."),
    Rule("G011", "base-branch-moved", WARNING,
         "the base branch has moved: after the merge there will be two heads",
         "`down_revision` of the branch's lowest new revision",
         "The base branch gained a revision since this branch forked; merging as is leaves two "
         "heads (G001) on the base branch, and its next deploy fails.",
         "**Rebase onto …** points the branch's lowest new revision at the base branch's head; "
         "then bring the base branch in."),
    Rule("G012", "base-revision-removed", ERROR,
         "a revision the base branch has is gone (databases stamped at it cannot upgrade)",
         "the file that took its place, else the environment's first revision",
         "Databases already migrated to that revision record its id in `alembic_version`; "
         "without it Alembic cannot find where they stand and no upgrade runs.",
         "Restore the revision (its file and id); make changes in a new revision instead."),
    Rule("G013", "base-revision-edited", WARNING,
         "a revision already on the base branch was edited (databases that ran it will not see it)",
         "the changed function",
         "Databases that already ran the revision never run it again, so the edit reaches only "
         "new databases and the schemas drift apart.",
         "Revert the edit and make the change in a new revision."),
    # ----------------------------------------------------------------- models
    Rule("M001", "missing-in-migrations", WARNING, "in the models, missing from the schema at head (table, column, index, unique constraint, foreign key)",
         "the model attribute / class / `Table()` line",
         "The models expect a table or column no migration creates: the application fails on "
         "a migrated database, and `alembic check` reports it.",
         "**Generate revision from model changes** writes the revision autogenerate would."),
    Rule("M002", "missing-in-models", WARNING, "in the schema at head, absent from the models (a renamed index is M002 + M001, as autogenerate's remove + add)",
         "the op that created it",
         "The migrations create something the models no longer have: the next autogenerate "
         "would drop it, often by surprise.",
         "Add it back to the models, or **Generate revision from model changes** to drop it."),
    Rule("M003", "column-differs", WARNING, "column differs (type, nullability, server default, comment), or a table's comment",
         "model line",
         "The database the migrations build is not the one the models describe; `alembic check` "
         "fails and queries can break on the difference.",
         "**Generate revision from model changes** writes the `alter_column` autogenerate would."),
    Rule("M004", "models-not-loaded", WARNING,
         "models could not be loaded or compared (why); info when untrusted, `--no-import`, or partly compared",
         "env.py `target_metadata` line",
         "Without the models, M001–M003 cannot be checked; the message says why (an import "
         "error, a timeout, an untrusted workspace, a helper that cannot be followed). A warning "
         "when loading or comparing them failed (CI must not pass with drift unchecked); info when "
         "they are left out on purpose (untrusted, `--no-import`) or a part of the comparison is.",
         "Fix the import error, set `models` (`package.module:Base.metadata`), or trust the "
         "workspace.", also=(INFO,)),
    # ----------------------------------------------------------------- downgrades
    Rule("D001", "empty-downgrade", WARNING, "downgrade is empty while upgrade changes the schema",
         "`def downgrade`",
         "`alembic downgrade` then reports success and changes nothing: the database and the "
         "recorded revision disagree.",
         "**Fill downgrade() by reversing upgrade()** writes Alembic's reverse of each op, "
         "completed from the schema history."),
    Rule("D002", "downgrade-does-not-restore", WARNING,
         "downgrade does not restore the schema the upgrade started from",
         "`def downgrade`",
         "After upgrade then downgrade the schema differs from before (the message lists how), "
         "so a rollback leaves the database in a state no revision describes.",
         "Make `downgrade()` undo exactly what `upgrade()` does."),
    Rule("D003", "irreversible-operation", INFO,
         "operation cannot be reversed automatically (raw SQL, data migration)",
         "the op",
         "Raw SQL and data changes have no automatic reverse, so the filled-in downgrade cannot "
         "cover them.",
         "Write its reverse in `downgrade()` by hand."),
    # ----------------------------------------------------------------- safety
    Rule("S001", "not-null-without-default", WARNING,
         "NOT NULL column added to an existing table without server_default",
         "the op",
         "Existing rows get no value: the migration fails on any table that has rows, typically "
         "in production after passing on an empty database. `alter_column(nullable=False)` "
         "fails the same way while any row holds NULL.",
         "**Add server_default=sa.text(\"…\")** inserts a placeholder for the type; or add the "
         "column nullable, backfill, then set NOT NULL."),
    Rule("S002", "index-without-concurrently", WARNING,
         "PostgreSQL: index created on an existing table without CONCURRENTLY",
         "the op",
         "A plain `CREATE INDEX` blocks every write to the table for as long as the build takes.",
         "**Create the index CONCURRENTLY inside autocommit_block()**.",
         ("postgresql",)),
    Rule("S003", "concurrently-in-transaction", ERROR,
         "PostgreSQL: CONCURRENTLY outside autocommit_block()",
         "the op",
         "Alembic runs PostgreSQL migrations in a transaction, and PostgreSQL refuses "
         "`CONCURRENTLY` there: the migration fails every time.",
         "**Run it inside op.get_context().autocommit_block()**.",
         ("postgresql",)),
    Rule("S004", "alter-outside-batch", ERROR,
         "SQLite: ALTER of a column/constraint outside batch_alter_table",
         "the op",
         "SQLite's `ALTER TABLE` cannot change columns or constraints: Alembic raises "
         "`NotImplementedError` or SQLite a syntax error.",
         "**Rewrite as batch_alter_table(…) block** (Alembic's move-and-copy batch mode).",
         ("sqlite",)),
    Rule("S005", "destructive-operation", INFO, "destructive: drop_table / drop_column (data loss)",
         "the op",
         "The data goes with the table or column; a downgrade recreates the structure, not the "
         "rows, and the previous application version breaks while both run.",
         "Deploy the code that stops using it first, keep a backup, then acknowledge with "
         "`# migration-lsp: ignore[S005]`."),
    # ------------------------------------------------- PostgreSQL DDL (existing tables)
    Rule("S006", "constraint-without-not-valid", WARNING,
         "PostgreSQL: foreign key / CHECK added to an existing table without NOT VALID (scans under lock)",
         "the op, or the statement inside an `op.execute` string",
         "Adding a FOREIGN KEY or CHECK validates every existing row while holding a lock that blocks "
         "writes (SHARE ROW EXCLUSIVE for a foreign key, ACCESS EXCLUSIVE for a CHECK): on a big "
         "table, writes stop for the whole scan.",
         "Add it with `postgresql_not_valid=True` (instant), then `VALIDATE CONSTRAINT` in its own "
         "transaction (SHARE UPDATE EXCLUSIVE: reads and writes go on). The quick fix does both, "
         "the validation inside `autocommit_block()`.", dialects=("postgresql",)),
    Rule("S007", "set-not-null-scan", WARNING,
         "PostgreSQL: SET NOT NULL on an existing table scans it under ACCESS EXCLUSIVE",
         "the op, or the statement inside an `op.execute` string",
         "`ALTER COLUMN ... SET NOT NULL` checks every row under ACCESS EXCLUSIVE: no reads, no "
         "writes until the scan ends. From PostgreSQL 12 a validated `CHECK (col IS NOT NULL)` lets "
         "it skip the scan.",
         "On PostgreSQL 12+: the quick fix adds `CHECK (col IS NOT NULL) NOT VALID`, validates it in "
         "`autocommit_block()`, sets NOT NULL (no scan), then drops the CHECK.", dialects=("postgresql",)),
    Rule("S008", "table-rewriting-type-change", WARNING,
         "PostgreSQL: column type change that rewrites an existing table",
         "the op, or the statement inside an `op.execute` string",
         "Most type changes rewrite the whole table (and its indexes) under ACCESS EXCLUSIVE. No "
         "finding for the changes PostgreSQL does in place: varchar to text, a longer varchar, more "
         "numeric precision (and timestamp to timestamptz from PostgreSQL 12 in UTC).",
         "Add a new column, backfill it in batches, switch the application, then drop the old one.",
         dialects=("postgresql",)),
    Rule("S009", "constraint-builds-index-under-lock", WARNING,
         "PostgreSQL: unique / primary key / exclusion constraint built on an existing table under lock",
         "the op, or the statement inside an `op.execute` string",
         "The constraint builds its index while holding ACCESS EXCLUSIVE: the table is unreadable "
         "until the index is built.",
         "The quick fix builds the unique index `CONCURRENTLY` in `autocommit_block()` and adds the "
         "constraint `USING INDEX` (a primary key only when its columns are already NOT NULL).",
         dialects=("postgresql",)),
    Rule("S010", "rewriting-column-default", WARNING,
         "PostgreSQL: volatile default, identity or stored generated column added to an existing table (rewrite)",
         "the op, or the statement inside an `op.execute` string",
         "A constant default is stored in the catalog (no rewrite since PostgreSQL 11), but a volatile "
         "default (`now()` is stable and fine; `random()`, `uuid_generate_v4()` are not), an identity "
         "or a stored generated column rewrites every row under ACCESS EXCLUSIVE.",
         "Add the column without the default, set the default, backfill in batches.", dialects=("postgresql",)),
    Rule("S011", "drop-index-without-concurrently", WARNING,
         "PostgreSQL: drop_index on an existing table without CONCURRENTLY",
         "the op, or the statement inside an `op.execute` string",
         "`DROP INDEX` takes ACCESS EXCLUSIVE on the table: queued behind long transactions, it "
         "blocks every read behind it.",
         "The quick fix adds `postgresql_concurrently=True` inside `autocommit_block()`.",
         dialects=("postgresql",)),
    Rule("S012", "identifier-truncated", WARNING,
         "PostgreSQL: identifier longer than 63 bytes (PostgreSQL truncates it)",
         "the op, or the statement inside an `op.execute` string",
         "PostgreSQL silently truncates names to 63 bytes: the database then holds a different name "
         "than the models, and autogenerate reports a difference forever.",
         "Choose a shorter name.", dialects=("postgresql",)),
    Rule("S013", "foreign-key-without-index", INFO,
         "PostgreSQL: foreign key without an index on its columns",
         "the op, or the statement inside an `op.execute` string",
         "PostgreSQL does not index the referencing columns: every delete or key update on the "
         "referenced table scans the referencing one, and joins on the key are slow.",
         "The quick fix adds `create_index` on the columns right after the op (`CONCURRENTLY` when "
         "the table already existed).", dialects=("postgresql",)),
    Rule("S014", "identifier-too-long", ERROR,
         "PostgreSQL: index / constraint name longer than 63 characters (SQLAlchemy refuses it)",
         "the op, or the statement inside an `op.execute` string",
         "SQLAlchemy raises `IdentifierError` for an explicit index or constraint name over the "
         "dialect's limit, so the upgrade fails on PostgreSQL.",
         "Choose a name of at most 63 characters.", dialects=("postgresql",)),
    # ------------------------------------------- transactions, raw SQL and portability
    Rule("S015", "access-exclusive-without-lock-timeout", WARNING,
         "PostgreSQL: ACCESS EXCLUSIVE on an existing table with no lock_timeout set before it",
         "the first op (or statement in an `op.execute` string) taking ACCESS EXCLUSIVE on an existing table",
         "The ALTER waits for any long query on the table, and every read and write queues behind "
         "the waiting ALTER: an outage as long as that query. Counted as set: `SET [LOCAL] "
         "lock_timeout` / `set_config('lock_timeout', ...)` earlier in `upgrade()`, or `lock_timeout` "
         "anywhere in env.py's code; a timeout of 0 or `RESET` does not count.",
         "**Set lock_timeout at the top of upgrade()** inserts `op.execute(\"SET lock_timeout = '5s'\")` "
         "as the first statement; retry the deploy if it times out.", dialects=("postgresql",)),
    Rule("S016", "backfill-under-ddl-lock", WARNING,
         "PostgreSQL: data backfill in the same transaction as DDL that locked the same table",
         "the backfill (or its statement in the string)",
         "The DDL's lock is held until commit, so the table stays blocked for the whole backfill. "
         "A backfill before the DDL, on a table created in the same revision, or inside "
         "`autocommit_block()` is not reported.",
         "Move the backfill to its own revision, or into `with op.get_context().autocommit_block():` "
         "in batches.", dialects=("postgresql",)),
    Rule("S017", "rename", INFO, "rename of an existing table or column (breaks the running application)",
         "the op (or its statement in the string)",
         "During the deploy the previous application version still runs, and its queries name the "
         "old table or column.",
         "Add the new one, write to both, backfill, move the reads, drop the old one later."),
    Rule("S018", "one-transaction-for-all-revisions", INFO,
         "PostgreSQL: transaction_per_migration is off and a revision takes ACCESS EXCLUSIVE",
         "env.py's `context.configure(` (once per environment)",
         "Alembic's default runs every pending revision in one transaction, so an ACCESS EXCLUSIVE "
         "lock one revision takes is held until the last revision commits.",
         "Pass `transaction_per_migration=True` to `context.configure(...)` in env.py.", dialects=("postgresql",)),
    Rule("S019", "breaks-offline-mode", WARNING,
         "reading from the database without an is_offline_mode() guard (breaks `alembic upgrade --sql`)",
         "the call",
         "In `alembic upgrade --sql` the bind is a mock connection that writes SQL out and returns "
         "nothing: `sa.inspect(...)`, reading result rows, `bind.scalar(...)` or an ORM `Session` on "
         "the bind fail. `op.get_bind()` for `bind.dialect.name` or to execute statements works "
         "offline and is not reported.",
         "Guard it with `if not context.is_offline_mode():` (or return early when offline)."),
    Rule("S020", "imports-application-models", WARNING, "a revision imports the application's models",
         "the import",
         "The revision runs against the models as they are when it is *run*, not as they were when "
         "it was written: it breaks, or silently does something else, once they change.",
         "Describe what the revision needs in the revision: `sa.table(\"users\", sa.column(\"id\"))`, "
         "or a local `MetaData`."),
    Rule("S021", "unnamed-constraint", ERROR,
         "a constraint named None dropped (fails everywhere) or created in batch mode (fails on SQLite)",
         "the op",
         "`op.drop_constraint(None, ...)` cannot be emitted on any dialect; `batch_op.create_*(None, "
         "...)` fails where the batch rebuilds the table (always on SQLite). Error in `upgrade()` "
         "where it surely fails, warning in `downgrade()` and where it may not.",
         "Give the constraint a name (a `naming_convention` on the MetaData makes autogenerate "
         "write them).", also=(WARNING,)),
    Rule("S022", "drop-referenced-column", ERROR,
         "a column dropped while a foreign key still references it (broken history)",
         "the op",
         "PostgreSQL, MySQL and SQL Server refuse to drop a column another table's foreign key "
         "references, so `alembic upgrade` stops at this revision; SQLite allows it and keeps a "
         "foreign key to a column that no longer exists (an error on the next write with "
         "`PRAGMA foreign_keys=ON`). Model drift leaves that key out of the comparison.",
         "Drop (or point elsewhere) the foreign key in the same revision, before the column."),
    # ------------------------------------------------------------ scratch database
    Rule("R001", "upgrade-fails", ERROR,
         "upgrade fails on a real database of the environment's dialect (truth pass)",
         "the revision's `def upgrade`",
         "The truth pass ran the migrations one revision at a time on a scratch database of the "
         "environment's dialect (SQLite temp file, embedded PostgreSQL, or `--database-url`): this "
         "revision's upgrade raised, so `alembic upgrade head` fails there too. The message has the "
         "first line of the error.",
         "Fix the revision so it runs on the dialect; `check --static` skips the pass."),
    Rule("R002", "downgrade-fails", ERROR, "downgrade fails on a real database (truth pass)",
         "the revision's `def downgrade`",
         "After upgrading the revision on the scratch database, its `downgrade()` was run one step "
         "and raised: `alembic downgrade -1` fails there too.",
         "Fix `downgrade()`; `check --downgrades none` leaves downgrades out of the pass."),
)

RULES: dict[str, Rule] = {rule.code: rule for rule in _RULES}


def rule(code: str) -> Rule | None:
    return RULES.get(code)


def severity(code: str, level: Severity | None = None) -> Severity:
    """A finding's severity: the rule's, or `level` when the rule declares that one too (`also`).
    A code missing from the registry, or a level it does not declare, is a programming error,
    said plainly: every finding's severity is one the registry (and so SARIF, the README) shows."""
    try:
        rule = RULES[code]
    except KeyError:
        raise KeyError(f"{code} is not in the rule registry: add its Rule(...) to migration_lsp/rules.py") from None
    if level is None:
        return rule.severity
    if level not in rule.severities:
        raise ValueError(f"{code} is a {rule.severity_label} in the rule registry, not {level.label}: "
                         f"declare it in its Rule(..., also=...) or emit the registry's")
    return level


def doc_url(code: str) -> str:
    """The README anchor documenting `code` (GitHub's anchor of the heading `#### G001`)."""
    return f"{HOME}#{code.lower()}"


# --------------------------------------------------------------------------- README

BEGIN = "<!-- rules:begin (generated by `python -m migration_lsp.rules --update README.md`; do not edit) -->"
END = "<!-- rules:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _dialects(rule: Rule) -> str:
    return ", ".join(rule.dialects) if rule.dialects else "any"


def markdown() -> str:
    """The README's rule section: per family a table (code, name, severity, dialects,
    summary), then each rule under a `#### CODE` heading (the documentation links' anchors)."""
    out: list[str] = []
    for letter, (title, more) in FAMILIES.items():
        family = [r for r in _RULES if r.family == letter]
        if not family:
            continue
        out += [f"### {title} ({letter})", ""]
        if more:
            out += [f"More in [{more[1:].replace('-', ' ').capitalize()}]({more}).", ""]
        out += ["| code | name | severity | dialects | summary |", "|---|---|---|---|---|"]
        out += [f"| [{r.code}](#{r.code.lower()}) | `{r.name}` | {r.severity_label} | {_dialects(r)} | "
                f"{_cell(r.summary)} |" for r in family]
        out.append("")
        for r in family:
            out += [f"#### {r.code}", "",
                    f"**{_cell(r.summary)}**", "",
                    (f"`{r.name}` · {r.severity_label} · {_dialects(r) if r.dialects else 'any dialect'} · "
                     f"reported on: {r.where}"), "",
                    f"*Why:* {r.rationale}", "",
                    f"*Fix:* {r.fix}", ""]
    return "\n".join([BEGIN, "", *out, END])


def readme_block(text: str) -> str | None:
    """The generated part of a README's text (markers included), or None."""
    m = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), text, re.DOTALL)
    return m.group(0) if m else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migration_lsp.rules",
                                     description="Print the README's rule tables, or update them in place.")
    parser.add_argument("--update", metavar="README", type=Path,
                        help="replace the generated block between the markers in this file")
    args = parser.parse_args(argv)
    if args.update is None:
        print(markdown())
        return 0
    text = args.update.read_text(encoding="utf-8")
    block = readme_block(text)
    if block is None:
        print(f"{args.update}: no `{BEGIN}` ... `{END}` block", file=sys.stderr)
        return 2
    new = text.replace(block, markdown(), 1)
    if new != text:
        args.update.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
