"""One vocabulary for model drift, so Alembic's answer and ours can be compared item by item.

An item is a tuple of strings: `(kind, table, what)`, where `table` is `schema.table` when a
schema is given and `what` is a column name, an index name, or the sorted comma-joined
columns of a unique constraint / foreign key ("" for whole-table items). Kinds:

    add_table remove_table add_column remove_column
    modify_type modify_nullable modify_default modify_comment
    add_index remove_index add_unique remove_unique add_fk remove_fk
    add_table_comment remove_table_comment other

`from_alembic` reads the tuples of `alembic.autogenerate.compare_metadata` (duck-typed: this
module runs in each project's own venv, with only the standard library imported);
`from_diagnostic` reads migration-lsp's M001/M002/M003 JSON diagnostics (their messages:
the JSON carries no structured field for the difference yet, so the message is parsed).
"""

from __future__ import annotations

import re

Item = tuple  # (kind, table, what)


def _table(schema, name) -> str:
    return f"{schema}.{name}" if schema else str(name)


def _cols(columns) -> str:
    return ",".join(sorted(str(c) for c in columns))


def _constraint_columns(constraint) -> list[str]:
    """Column names of a UniqueConstraint / ForeignKeyConstraint / Index, also before it is
    attached to a table (then `columns` is empty, `_pending_colargs` holds the names)."""
    names = [getattr(c, "name", str(c)) for c in getattr(constraint, "columns", ())]
    if not names:
        names = [getattr(c, "name", str(c)) for c in getattr(constraint, "_pending_colargs", ())]
    if not names and hasattr(constraint, "expressions"):
        names = [getattr(e, "name", str(e)) for e in constraint.expressions]
    return names


def _table_of(obj) -> str:
    table = getattr(obj, "table", None)
    return _table(getattr(table, "schema", None), getattr(table, "name", "?"))


def _index_name(index) -> str:
    return str(index.name) if index.name else _cols(_constraint_columns(index))


def from_alembic(diff) -> list[Item]:
    """One entry of `compare_metadata(...)`: a tuple, or a list of `modify_*` tuples."""
    if isinstance(diff, list):
        out = []
        for d in diff:
            out.extend(from_alembic(d))
        return out
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        t = diff[1]
        return [(kind, _table(t.schema, t.name), "")]
    if kind in ("add_column", "remove_column"):
        return [(kind, _table(diff[1], diff[2]), diff[3].name)]
    if kind in ("modify_type", "modify_nullable", "modify_default", "modify_comment"):
        return [(kind, _table(diff[1], diff[2]), str(diff[3]))]
    if kind in ("add_index", "remove_index"):
        return [(kind, _table_of(diff[1]), _index_name(diff[1]))]
    if kind in ("add_constraint", "remove_constraint"):
        c = diff[1]
        what = "unique" if type(c).__name__ == "UniqueConstraint" else type(c).__name__
        return [(kind.split("_")[0] + "_" + what, _table_of(c), _cols(_constraint_columns(c)))]
    if kind in ("add_fk", "remove_fk"):
        c = diff[1]
        return [(kind, _table_of(c), _cols(_constraint_columns(c)))]
    if kind in ("add_table_comment", "remove_table_comment"):
        t = diff[1]
        return [(kind, _table(t.schema, t.name), "")]
    return [("other", str(kind), repr(diff)[:200])]


# migration-lsp's messages (migration_lsp/checks/models.py and compare.py):
#   M001 "<what> is in the models but no migration creates it"
#   M002 "<what> exists in the migrations but not in the models"
#   M003 "column <t>.<c> differs: type ...; NOT NULL in the model, ...; server default ...; comment ..."
#        "table <t> differs: comment 'x' in the model, None in the migrations"
# with <what> one of: table T | column T.C | index NAME on T | unique constraint on T(a, b)
#                     | foreign key on T(a)
_WHAT = [
    ("table", re.compile(r"^table (?P<t>\S+)$")),
    # (the truth pass adds the columns, and a constraint's name: "index N on T (a)",
    # "unique constraint N on T (a, b)", "foreign key N on T (a)")
    # (an expression among the columns has parentheses of its own: "(a, (b ->> 'id'::text))")
    ("index", re.compile(r"^index (?P<n>\S+) on (?P<t>\S+)(?: \(.*\))?$", re.S)),
    ("unique", re.compile(r"^unique constraint(?: \S+)? on (?P<t>[^(\s]+) ?\((?P<c>[^)]*)\)$")),
    ("fk", re.compile(r"^foreign key(?: \S+)? on (?P<t>[^(\s]+) ?\((?P<c>[^)]*)\)$")),
    ("column", re.compile(r"^column (?P<t>\S+)\.(?P<c>[^.\s]+)$")),
]
_SUFFIX = {
    "M001": (" is in the models but no migration creates it",  # the static pass
             " is in the models but not in the database at head (alembic check)"),  # the truth pass
    "M002": (" exists in the migrations but not in the models",
             " is in the database at head but not in the models (alembic check)"),
}
_TRUTH = " (alembic check)"


def from_diagnostic(diag: dict) -> list[Item]:
    """One diagnostic of `migration-lsp check --format json`; [] for other codes; an
    ("unparsed", code, message) item when an M001–M003 message has an unknown shape."""
    code, message = diag.get("code"), diag.get("message", "")
    suffix = next((s for s in _SUFFIX.get(code, ()) if message.endswith(s)), None)
    if code == "M003" and message.endswith(_TRUTH):  # "type: X in the database, Y in the models"
        message = message[: -len(_TRUTH)].replace("type: ", "type ").replace("nullable: ", "nullable ") \
            .replace("server_default: ", "server default ").replace("comment: ", "comment ")
    if suffix is not None:
        what, verb = message[: -len(suffix)], "add" if code == "M001" else "remove"
        for kind, pattern in _WHAT:
            m = pattern.match(what)
            if not m:
                continue
            if kind == "table":
                return [(f"{verb}_table", m["t"], "")]
            if kind == "column":
                return [(f"{verb}_column", m["t"], m["c"])]
            if kind == "index":
                return [(f"{verb}_index", m["t"], m["n"])]
            return [(f"{verb}_{kind}", m["t"], _cols(c.strip() for c in m["c"].split(",") if c.strip()))]
    if code == "M003":
        m = re.match(r"^column (?P<t>\S+)\.(?P<c>[^.\s]+) differs: (?P<d>.*)$", message, re.S)
        if m:
            out = []
            for part in m["d"].split("; "):
                if part.startswith("type "):
                    out.append(("modify_type", m["t"], m["c"]))
                elif part.startswith(("NOT NULL", "nullable")):
                    out.append(("modify_nullable", m["t"], m["c"]))
                elif part.startswith("server default"):
                    out.append(("modify_default", m["t"], m["c"]))
                elif part.startswith("comment"):
                    out.append(("modify_comment", m["t"], m["c"]))
            if out:
                return out
    if code == "M003":  # "table T differs: comment 'x' in the model, None in the migrations"
        m = re.match(r"^table (?P<t>\S+) differs: comment (?P<new>.*?) in the model,", message, re.S)
        if m:
            return [("remove_table_comment" if m["new"] == "None" else "add_table_comment", m["t"], "")]
    if code in ("M001", "M002", "M003"):
        return [("unparsed", code, message)]
    return []


def score(truth: list[Item], found: list[Item]) -> dict:
    """Found / missed / false by set comparison (an item counts once)."""
    t, f = set(map(tuple, truth)), set(map(tuple, found))
    hit = t & f
    return {
        "truth": len(t), "reported": len(f), "found": len(hit),
        "missed": sorted(t - f), "false": sorted(f - t),
        "recall": (len(hit) / len(t)) if t else None,
        "precision": (len(hit) / len(f)) if f else None,
    }
