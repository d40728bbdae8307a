"""Rule family G (G001–G010) on small projects, through the engine as the front ends use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import alembic_project, line_of, migration_text as m, write_project
from migration_lsp.checks import suppressed
from migration_lsp.checks.graph import closest_ids
from migration_lsp.core import Diagnostic, Severity, Span
from migration_lsp.engine import Engine
from migration_lsp.graph import RevisionGraph
from migration_lsp.rules import RULES
from migration_lsp.scripts import parse_script

DOWN_PREFIX = "down_revision: Union[str, Sequence[str], None] = '"  # the template's line, up to the id
DEPS_PREFIX = "depends_on: Union[str, Sequence[str], None] = '"
LABELS_PREFIX = "branch_labels: Union[str, Sequence[str], None] = ('"


def run(tmp_path: Path, revisions: dict[str, str], overrides: dict | None = None, **kw) -> list[Diagnostic]:
    alembic_project(tmp_path, revisions, **kw)
    return Engine([tmp_path], overrides).snapshot().diagnostics


def codes(diags) -> list[str]:
    return [d.code for d in diags]


def only(diags, code: str) -> list[Diagnostic]:
    return [d for d in diags if d.code == code]


def named(diags, code: str) -> dict[str, Diagnostic]:
    """code's diagnostics by file name (asserting one per file)."""
    out: dict[str, Diagnostic] = {}
    for d in only(diags, code):
        assert d.path.name not in out, f"two {code} in {d.path.name}"
        out[d.path.name] = d
    return out


def revision_line_span(text: str) -> Span:
    line = line_of(text, "revision: str =")
    return Span(line, 0, line, len(text.splitlines()[line]))


def id_span_after(text: str, prefix: str, value: str) -> Span:
    line = line_of(text, prefix)
    col = len(prefix)
    assert text.splitlines()[line][col : col + len(value)] == value
    return Span(line, col, line, col + len(value))


# --------------------------------------------------------------------------- healthy


def test_healthy_linear_history_has_no_diagnostics(tmp_path):
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": m("bbbb2222", "aaaa1111"), "c.py": m("cccc3333", "bbbb2222")})
    assert diags == []


def test_merged_heads_are_fine(tmp_path):
    diags = run(tmp_path, {
        "a.py": m("aaaa1111"),
        "b.py": m("bbbb2222", "aaaa1111"),
        "c.py": m("cccc3333", "aaaa1111"),
        "d.py": m("dddd4444", ("bbbb2222", "cccc3333"), message="merge heads"),
    })
    assert diags == []


def test_expand_contract_branches_are_healthy(tmp_path):
    diags = run(tmp_path, {
        "kilo.py": m("kilo"),
        "e1.py": m("e1e1e1", "kilo", branch_labels="expand"),
        "c1.py": m("c1c1c1", "kilo", branch_labels="contract"),
        "e2.py": m("e2e2e2", "e1e1e1"),
        "c2.py": m("c2c2c2", "c1c1c1", depends_on="e2e2e2"),
    })
    assert diags == []


# --------------------------------------------------------------------------- G001


def test_g001_on_the_revision_line_of_each_head(tmp_path):
    b, c = m("bbbb2222", "aaaa1111", message="add bio"), m("cccc3333", "aaaa1111", message="add slug")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": b, "c.py": c})
    assert codes(diags) == ["G001", "G001"]
    g = named(diags, "G001")
    assert set(g) == {"b.py", "c.py"}
    assert g["b.py"].severity == Severity.ERROR
    assert g["b.py"].span == revision_line_span(b)
    assert g["c.py"].span == revision_line_span(c)
    assert "'cccc3333' (add slug)" in g["b.py"].message
    assert "'bbbb2222' (add bio)" in g["c.py"].message
    assert g["b.py"].environment == "migrations"
    assert g["b.py"].data["heads"] and set(g["b.py"].data["heads"]) == {"bbbb2222", "cccc3333"}


def test_g001_not_for_heads_of_differently_labelled_branches(tmp_path):
    diags = run(tmp_path, {
        "a.py": m("aaaa1111"),
        "b.py": m("bbbb2222", "aaaa1111", branch_labels="users"),
        "c.py": m("cccc3333", "aaaa1111", branch_labels="billing"),
        "d.py": m("dddd4444", "bbbb2222"),  # inherits 'users'
    })
    assert diags == []


def test_g001_not_for_two_labelled_bases(tmp_path):
    diags = run(tmp_path, {
        "a.py": m("aaaa1111", branch_labels="core"),
        "b.py": m("bbbb2222", branch_labels="plugin", depends_on="aaaa1111"),
    })
    assert diags == []


def test_g001_not_when_labels_are_non_literal_but_different(tmp_path):
    label_line = "branch_labels: Union[str, Sequence[str], None] = None"
    b = m("bbbb2222", "aaaa1111").replace(label_line, "branch_labels = (cli.EXPAND_BRANCH,)")
    c = m("cccc3333", "aaaa1111").replace(label_line, "branch_labels = (cli.CONTRACT_BRANCH,)")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": b, "c.py": c})
    assert only(diags, "G001") == []
    assert diags == []


def test_g001_for_two_heads_inside_one_labelled_branch(tmp_path):
    diags = run(tmp_path, {
        "a.py": m("aaaa1111", branch_labels="feature"),
        "b.py": m("bbbb2222", "aaaa1111"),
        "c.py": m("cccc3333", "aaaa1111"),
    })
    assert set(named(diags, "G001")) == {"b.py", "c.py"}


def test_g001_not_when_a_parent_is_not_a_literal(tmp_path):
    # we cannot know where `down_revision = compute()` attaches: no guess, no G001
    c = m("cccc3333", "aaaa1111").replace("= 'aaaa1111'", "= compute_parent()")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": m("bbbb2222", "aaaa1111"), "c.py": c})
    assert only(diags, "G001") == []


# --------------------------------------------------------------------------- G002


def test_g002_on_the_id_inside_down_revision(tmp_path):
    c = m("27c6a30d7c24", "1975ea38b712")  # 8 and 3 transposed
    diags = run(tmp_path, {"a.py": m("1975ea83b712", message="create users"), "c.py": c})
    g = named(diags, "G002")["c.py"]
    assert g.severity == Severity.ERROR
    assert g.span == id_span_after(c, DOWN_PREFIX, "1975ea38b712")
    assert "'1975ea38b712' does not exist" in g.message
    assert "did you mean '1975ea83b712' (create users)?" in g.message
    assert g.data["candidates"] == ["1975ea83b712"]
    assert g.data["ref"] == "1975ea38b712"


@pytest.mark.parametrize("typo,kind", [
    ("ae1027a6acf1", "one changed character"),
    ("ae1027a6afc0", "transposed characters"),
    ("ae1027a6acf0e", "one extra character"),
    ("ae1027a6ac0", "one missing character"),
])
def test_g002_names_the_closest_id(tmp_path, typo, kind):
    diags = run(tmp_path, {
        "a.py": m("ae1027a6acf0", message="target"),
        "z.py": m("0000ffffeeee", "ae1027a6acf0"),  # an unrelated id, far away
        "c.py": m("c0c0c0c0c0c0", typo),
    })
    g = named(diags, "G002")["c.py"]
    assert g.data["candidates"][0] == "ae1027a6acf0", kind
    assert "did you mean 'ae1027a6acf0' (target)" in g.message
    assert "0000ffffeeee" not in g.message


def test_g002_closest_first(tmp_path):
    diags = run(tmp_path, {
        "a.py": m("1975ea83b712"),
        "b.py": m("1975ea83b7ab", "1975ea83b712"),
        "c.py": m("c0c0c0c0c0c0", "1975ea83b713"),
    })
    g = named(diags, "G002")["c.py"]
    assert g.data["candidates"] == ["1975ea83b712", "1975ea83b7ab"]
    assert g.message.index("'1975ea83b712'") < g.message.index("'1975ea83b7ab'")


def test_g002_without_any_close_id(tmp_path):
    diags = run(tmp_path, {"a.py": m("1975ea83b712"), "c.py": m("c0c0c0c0c0c0", "ffffffffffff")})
    g = named(diags, "G002")["c.py"]
    assert "did you mean" not in g.message
    assert g.data["candidates"] == []


def test_g002_unique_prefix_is_a_partial_id(tmp_path):
    c = m("c0c0c0c0c0c0", "ae1027")
    diags = run(tmp_path, {"a.py": m("ae1027a6acf0", message="target"), "b.py": m("b0b0b0b0b0b0", "ae1027a6acf0"), "c.py": c})
    g = named(diags, "G002")["c.py"]
    assert "partial id" in g.message
    assert "'ae1027a6acf0' (target)" in g.message
    assert g.span == id_span_after(c, DOWN_PREFIX, "ae1027")
    assert only(diags, "G007") == []


def test_g002_in_a_tuple_points_at_the_bad_element(tmp_path):
    d = m("dddd4444", ("aaaa1111", "bbbb2223"))
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": m("bbbb2222", "aaaa1111"), "d.py": d})
    g = named(diags, "G002")["d.py"]
    line = line_of(d, "down_revision:")
    col = d.splitlines()[line].index("bbbb2223")
    assert g.span == Span(line, col, line, col + 8)


def test_g002_a_branch_label_in_down_revision(tmp_path):
    # Alembic resolves labels in depends_on only: RevisionMap raises KeyError('core') here
    b = m("bbbb2222", "core")
    diags = run(tmp_path, {"a.py": m("aaaa1111", branch_labels="core", message="init"), "b.py": b})
    g = named(diags, "G002")
    assert set(g) == {"b.py"}
    assert g["b.py"].span == id_span_after(b, DOWN_PREFIX, "core")
    assert "branch label" in g["b.py"].message
    assert "'aaaa1111' (init)" in g["b.py"].message
    assert g["b.py"].data["candidates"] == ["aaaa1111"]


# --------------------------------------------------------------------------- G003


def test_g003_on_the_id_inside_depends_on(tmp_path):
    b = m("bbbb2222", "aaaa1111", depends_on="aaaa1112")
    diags = run(tmp_path, {"a.py": m("aaaa1111", message="base"), "b.py": b})
    assert codes(diags) == ["G003"]
    g = diags[0]
    assert g.severity == Severity.ERROR and g.path.name == "b.py"
    assert g.span == id_span_after(b, DEPS_PREFIX, "aaaa1112")
    assert "did you mean 'aaaa1111' (base)" in g.message


def test_g003_label_and_id_dependencies_are_fine(tmp_path):
    diags = run(tmp_path, {
        "a.py": m("aaaa1111", branch_labels="invenio_db"),
        "b.py": m("bbbb2222", None, branch_labels="accounts", depends_on="invenio_db"),
        "c.py": m("cccc3333", "bbbb2222", depends_on=("aaaa1111",)),
    })
    assert diags == []


# --------------------------------------------------------------------------- G004


def test_g004_two_cycle_and_the_rest_still_reported(tmp_path):
    b, c = m("bbbb2222", "cccc3333"), m("cccc3333", "bbbb2222")
    e = m("eeee5555", "dddd4445")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": b, "c.py": c, "d.py": m("dddd4444", "aaaa1111"), "e.py": e})
    g = named(diags, "G004")
    assert set(g) == {"b.py", "c.py"}
    assert g["b.py"].severity == Severity.ERROR
    assert g["b.py"].span.line == line_of(b, "down_revision:")
    assert g["c.py"].span.line == line_of(c, "down_revision:")
    assert "bbbb2222" in g["b.py"].message and "cccc3333" in g["b.py"].message
    assert "revision cycle" in g["b.py"].message
    # a separate problem in the same environment is still found
    g2 = named(diags, "G002")
    assert set(g2) == {"e.py"}
    assert "did you mean 'dddd4444'" in g2["e.py"].message


def test_g004_self_loop(tmp_path):
    b = m("bbbb2222", "bbbb2222")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": b, "c.py": m("cccc3333", "aaaa1111")})
    assert codes(diags) == ["G004"]
    assert diags[0].path.name == "b.py"
    assert diags[0].span.line == line_of(b, "down_revision:")
    assert "bbbb2222 -> bbbb2222" in diags[0].message


def test_g004_cycle_through_depends_on(tmp_path):
    b = m("bbbb2222", "aaaa1111", depends_on="cccc3333")
    c = m("cccc3333", "bbbb2222")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": b, "c.py": c})
    g = named(diags, "G004")
    assert set(g) == {"b.py", "c.py"}
    # b's edge of the loop is its depends_on, c's is its down_revision
    assert g["b.py"].span.line == line_of(b, "depends_on:")
    assert g["c.py"].span.line == line_of(c, "down_revision:")


def test_g004_three_cycle_lists_the_loop(tmp_path):
    diags = run(tmp_path, {
        "a.py": m("aaaa1111", "cccc3333"),
        "b.py": m("bbbb2222", "aaaa1111"),
        "c.py": m("cccc3333", "bbbb2222"),
    })
    g = named(diags, "G004")
    assert set(g) == {"a.py", "b.py", "c.py"}
    loop = g["a.py"].data["loop"]
    assert sorted(loop) == ["aaaa1111", "bbbb2222", "cccc3333"]
    message = g["a.py"].message
    assert message.count("->") == 3


# --------------------------------------------------------------------------- G005


def test_g005_on_both_files(tmp_path):
    b1, b2 = m("bbbb2222", "aaaa1111", message="one"), m("bbbb2222", "aaaa1111", message="two")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b1.py": b1, "b2.py": b2})
    g = named(diags, "G005")
    assert set(g) == {"b1.py", "b2.py"}
    assert g["b1.py"].span == revision_line_span(b1)
    assert g["b2.py"].span == revision_line_span(b2)
    assert "b2.py" in g["b1.py"].message and "b1.py" in g["b2.py"].message
    assert g["b1.py"].severity == Severity.ERROR


# --------------------------------------------------------------------------- G006


def test_g006_label_used_twice(tmp_path):
    c = m("cccc3333", None, branch_labels="core")
    diags = run(tmp_path, {"a.py": m("aaaa1111", branch_labels="core", message="first"), "c.py": c})
    g = named(diags, "G006")
    assert set(g) == {"c.py"}
    assert g["c.py"].span == id_span_after(c, LABELS_PREFIX, "core")
    assert "'core'" in g["c.py"].message and "'aaaa1111' (first)" in g["c.py"].message
    assert g["c.py"].severity == Severity.ERROR


def test_g006_label_equal_to_a_revision_id(tmp_path):
    b = m("bbbb2222", "aaaa1111", branch_labels="aaaa1111")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": b})
    g = named(diags, "G006")
    assert set(g) == {"b.py"}
    assert g["b.py"].span == id_span_after(b, LABELS_PREFIX, "aaaa1111")
    assert "also a revision id" in g["b.py"].message


def test_g006_label_listed_twice_in_one_revision(tmp_path):
    a = m("aaaa1111", branch_labels=("core", "core"))
    diags = run(tmp_path, {"a.py": a})
    g = named(diags, "G006")
    assert set(g) == {"a.py"}
    line = line_of(a, "branch_labels:")
    second = a.splitlines()[line].rindex("core")
    assert g["a.py"].span == Span(line, second, line, second + 4)
    assert "twice" in g["a.py"].message


# --------------------------------------------------------------------------- G007


def test_g007_ambiguous_prefix(tmp_path):
    c = m("c1c1c1", "abc")
    diags = run(tmp_path, {"a.py": m("abc111"), "b.py": m("abc222", "abc111"), "c.py": c})
    g = named(diags, "G007")
    assert set(g) == {"c.py"}
    assert g["c.py"].span == id_span_after(c, DOWN_PREFIX, "abc")
    assert "matches 2 revisions" in g["c.py"].message
    assert "'abc111'" in g["c.py"].message and "'abc222'" in g["c.py"].message
    assert g["c.py"].data["candidates"] == ["abc111", "abc222"]
    assert only(diags, "G002") == []


def test_g007_in_depends_on(tmp_path):
    c = m("c1c1c1", "abc222", depends_on="abc")
    diags = run(tmp_path, {"a.py": m("abc111"), "b.py": m("abc222", "abc111"), "c.py": c})
    g = named(diags, "G007")
    assert g["c.py"].span == id_span_after(c, DEPS_PREFIX, "abc")
    assert only(diags, "G003") == []


# --------------------------------------------------------------------------- G008


def test_g008_second_unlabelled_base(tmp_path):
    c = m("cccc3333")
    diags = run(tmp_path, {"a.py": m("aaaa1111", message="main"), "b.py": m("bbbb2222", "aaaa1111"), "c.py": c})
    g = named(diags, "G008")
    assert set(g) == {"c.py"}  # the base with the longer history is the main one
    assert g["c.py"].severity == Severity.WARNING
    line = line_of(c, "down_revision:")
    assert g["c.py"].span.line == line
    assert c.splitlines()[line].endswith("= None")
    assert "'aaaa1111' (main)" in g["c.py"].message


def test_g008_not_for_a_labelled_second_base(tmp_path):
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": m("bbbb2222", "aaaa1111"), "c.py": m("cccc3333", None, branch_labels="plugin")})
    assert diags == []


# --------------------------------------------------------------------------- G009


def test_g009_revision_id_mismatch(tmp_path):
    a = m("aaaa1111").replace("Revision ID: aaaa1111", "Revision ID: aaaa1112")
    diags = run(tmp_path, {"a.py": a})
    assert codes(diags) == ["G009"]
    g = diags[0]
    assert g.severity == Severity.WARNING
    line = line_of(a, "Revision ID:")
    assert g.span == Span(line, 13, line, 21)
    assert "aaaa1112" in g.message and "aaaa1111" in g.message


def test_g009_revises_mismatch(tmp_path):
    b = m("bbbb2222", "aaaa1111").replace("Revises: aaaa1111", "Revises: aaaa9999")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": b})
    assert codes(diags) == ["G009"]
    line = line_of(b, "Revises:")
    assert diags[0].span == Span(line, 9, line, 17)
    assert "aaaa9999" in diags[0].message


def test_g009_merge_order_does_not_matter(tmp_path):
    d = m("dddd4444", ("bbbb2222", "cccc3333")).replace("Revises: bbbb2222, cccc3333", "Revises: cccc3333, bbbb2222")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": m("bbbb2222", "aaaa1111"), "c.py": m("cccc3333", "aaaa1111"), "d.py": d})
    assert diags == []


@pytest.mark.parametrize("revises", ["Revises: <base>", "Revises:", "Revises: None", "Revises: "])
def test_no_g009_for_a_base(tmp_path, revises):
    a = m("aaaa1111")
    assert "Revises: \n" in a
    a = a.replace("Revises: \n", revises + "\n")
    diags = run(tmp_path, {"a.py": a})
    assert diags == []


def test_g009_base_docstring_naming_a_parent(tmp_path):
    a = m("aaaa1111").replace("Revises: \n", "Revises: ffff0000\n")
    diags = run(tmp_path, {"a.py": a})
    assert codes(diags) == ["G009"]


# --------------------------------------------------------------------------- G010


def test_g010_helper_module_in_versions(tmp_path):
    diags = run(tmp_path, {
        "a.py": m("aaaa1111"),
        "helpers.py": "import sqlalchemy as sa\n\ndef utc_now():\n    return sa.func.now()\n",
        "__init__.py": "",
        ".#a.py": "emacs lock file",  # not a revision file for Alembic either
    })
    assert codes(diags) == ["G010"]
    g = diags[0]
    assert g.path.name == "helpers.py"
    assert g.severity == Severity.WARNING
    assert g.span == Span(0, 0, 0, len("import sqlalchemy as sa"))
    assert "no `revision = ...`" in g.message


def test_g010_revision_that_is_not_a_literal(tmp_path):
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": "revision = make_id()\ndown_revision = 'aaaa1111'\n"})
    assert codes(diags) == ["G010"]
    assert "make_id()" in diags[0].message


def test_half_typed_file_is_not_g010(tmp_path):
    b = m("bbbb2222", "aaaa1111", upgrades="op.add_column('users', sa.Column(")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": b})
    assert diags == []


# --------------------------------------------------------------------------- suppression and settings


def _typo_project(comment: str = "") -> dict[str, str]:
    """b.py: a typo in depends_on (G003) and a stale docstring (G009), on different lines."""
    b = m("bbbb2222", "aaaa1111", depends_on="aaaa1112").replace("Revises: aaaa1111", "Revises: aaaa0000")
    if comment:
        b = b.replace("= 'aaaa1112'", "= 'aaaa1112'  " + comment)
        assert comment in b
    return {"a.py": m("aaaa1111"), "b.py": b}


def test_without_suppression(tmp_path):
    assert codes(run(tmp_path, _typo_project())) == ["G009", "G003"]


@pytest.mark.parametrize("comment", [
    "# migration-lsp: ignore[G003]",
    "# migration-lsp: ignore",
    "#migration-lsp:ignore[G009, g003]",
    "# migration-lsp: ignore[G]",
])
def test_suppression_comment(tmp_path, comment):
    diags = run(tmp_path, _typo_project(comment))
    assert codes(diags) == ["G009"]  # the docstring line is not silenced


def test_suppression_of_another_code_does_not_silence(tmp_path):
    diags = run(tmp_path, _typo_project("# migration-lsp: ignore[G002]"))
    assert codes(diags) == ["G009", "G003"]


def test_suppression_must_end_the_line(tmp_path):
    diags = run(tmp_path, _typo_project("# migration-lsp: ignore[G003] but not really"))
    assert codes(diags) == ["G009", "G003"]


def test_suppression_of_g002_on_down_revision(tmp_path):
    b = m("bbbb2222", "aaaa1112").replace("= 'aaaa1112'", "= 'aaaa1112'  # migration-lsp: ignore[G002]")
    diags = run(tmp_path, {"a.py": m("aaaa1111"), "b.py": b})
    assert only(diags, "G002") == []
    b = m("bbbb2222", "aaaa1112")
    assert len(only(run(tmp_path, {"a.py": m("aaaa1111"), "b.py": b}), "G002")) == 1


def test_suppressed_helper():
    script = parse_script(Path("x.py"), "revision = 'a'  # migration-lsp: ignore[G005]\n")
    d = Diagnostic("G005", Severity.ERROR, Path("x.py"), Span(0, 0, 0, 5), "m")
    assert suppressed(script, d)
    assert not suppressed(script, Diagnostic("G001", Severity.ERROR, Path("x.py"), Span(0, 0, 0, 5), "m"))
    assert not suppressed(script, Diagnostic("G005", Severity.ERROR, Path("x.py"), Span(3, 0, 3, 5), "m"))
    assert not suppressed(None, d)


def test_settings_ignore_from_pyproject(tmp_path):
    write_project(tmp_path, {"pyproject.toml": "[tool.migration-lsp]\nignore = ['G003']\n"})
    assert codes(run(tmp_path, _typo_project())) == ["G009"]


def test_settings_select_from_pyproject(tmp_path):
    write_project(tmp_path, {"pyproject.toml": "[tool.migration-lsp]\nselect = ['G003']\n"})
    assert codes(run(tmp_path, _typo_project())) == ["G003"]


def test_overrides_select_and_ignore(tmp_path):
    assert codes(run(tmp_path, _typo_project(), {"select": ["G0"], "ignore": ["G009"]})) == ["G003"]
    assert codes(run(tmp_path, _typo_project(), {"select": ["S"]})) == []


# --------------------------------------------------------------------------- helpers and rule table


def test_every_graph_code_is_documented():
    assert [c for c in RULES if c.startswith("G")] == [f"G{n:03d}" for n in range(1, 14)]
    assert {RULES[c].severity.label for c in ("G008", "G009", "G010")} == {"warning"}
    assert {RULES[f"G00{n}"].severity.label for n in range(1, 8)} == {"error"}


def test_closest_ids_prefers_prefix_then_distance():
    scripts = [parse_script(Path(f"{r}.py"), f"revision = '{r}'\ndown_revision = None\n") for r in ("ae1027a6acf0", "ae1027a6acf9", "123456789abc")]
    graph = RevisionGraph(scripts)
    assert closest_ids(graph, "ae1027") == ["ae1027a6acf0", "ae1027a6acf9"]
    assert closest_ids(graph, "ae1027a6acf1")[0] in ("ae1027a6acf0", "ae1027a6acf9")
    assert closest_ids(graph, "123456789abd") == ["123456789abc"]
    assert closest_ids(graph, "zzzzzzzzzzzz") == []
