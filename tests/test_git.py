"""The base-branch checks (G011–G013) with real git: a bare repository as the remote, two
clones, branches, fetch, rebase, merge; Alembic's ScriptDirectory says how many heads the
merged checkout really has."""

from __future__ import annotations

import json
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from conftest import GIT_INI as INI, add_revision, clone, commit, git, migration_text
from migration_lsp.cli import main
from migration_lsp.core import Span
from migration_lsp.engine import Engine
from migration_lsp.features.git_fixes import git_fixes
from migration_lsp.gitbase import Stats, Tracker, find_repository, read_base, resolve_base


def findings(root: Path, codes: tuple[str, ...] = ("G011", "G012", "G013")) -> list:
    engine = Engine([root], cache=False, trusted=False)
    return [d for d in engine.snapshot().diagnostics if d.code in codes]


def heads(root: Path) -> list[str]:
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    return sorted(ScriptDirectory.from_config(config).get_heads())


def apply(text: str, edits: list[tuple[Span, str]]) -> str:
    lines = text.split("\n")
    for span, new in sorted(edits, key=lambda e: e[0], reverse=True):
        assert span.line == span.end_line
        line = lines[span.line]
        lines[span.line] = line[:span.col] + new + line[span.end_col:]
    return "\n".join(lines)


def test_second_head_appears_once_the_other_branch_is_merged_and_fetched(checkout: tuple[Path, Path]) -> None:
    bob, b1 = checkout  # (alice's c1 is merged on main, not fetched)
    engine = Engine([bob], cache=False, trusted=False)
    assert [d for d in engine.snapshot().diagnostics if d.code.startswith("G")] == []  # up to date
    assert not engine.refresh_git()  # nothing fetched yet: nothing moved
    assert [d.code for d in engine.snapshot().diagnostics if d.code == "G011"] == []

    git(bob, "fetch", "-q")
    assert engine.refresh_git()
    moved = [d for d in engine.snapshot().diagnostics if d.code == "G011"]
    assert len(moved) == 1
    d = moved[0]
    assert d.path == b1.resolve()
    script = engine.snapshot().script(d.path)
    assert d.span == script.down_revision.ids[0].span
    assert d.message.startswith("origin/main's head is now c1 (add phone); after merging there will be two heads")

    # Without the fix the merge really has two heads (Alembic says so)
    git(bob, "switch", "-q", "-c", "probe")
    git(bob, "merge", "-q", "--no-edit", "origin/main")
    assert heads(bob) == ["b1", "c1"]
    git(bob, "switch", "-q", "feature-b")
    git(bob, "branch", "-q", "-D", "probe")

    [(title, edits)] = git_fixes(d, script)
    assert title == "Rebase onto c1 (add phone)"
    b1.write_text(apply(script.text, edits))
    assert "Revises: c1" in b1.read_text()
    # until main is merged in, c1 is not in this checkout: an error, said as what it is
    # (and a2 is no second head: after the merge it is c1's parent)
    [g002] = findings(bob, ("G001", "G002", "G009", "G011"))
    assert (g002.code, g002.severity.label) == ("G002", "error")
    assert g002.message == ("down_revision 'c1' is c1 (add phone) on origin/main, not in this checkout yet: "
                            "bring origin/main in (git merge origin/main) before upgrading")
    commit(bob, "rebase onto c1")
    git(bob, "merge", "-q", "--no-edit", "origin/main")
    assert heads(bob) == ["b1"]
    assert findings(bob, ("G001", "G002", "G009", "G011", "G012", "G013")) == []


def test_only_the_lowest_new_revision_moves(checkout: tuple[Path, Path]) -> None:
    bob, b1 = checkout
    add_revision(bob, "b2", "b1", "add items")
    commit(bob, "items")
    git(bob, "fetch", "-q")
    [d] = findings(bob)
    assert (d.code, d.path, d.data["onto"]) == ("G011", b1.resolve(), "c1")
    engine = Engine([bob], cache=False, trusted=False)
    [(_, edits)] = git_fixes(d, engine.snapshot().script(b1.resolve()))
    b1.write_text(apply(b1.read_text(), edits))
    commit(bob, "rebase")
    git(bob, "merge", "-q", "--no-edit", "origin/main")
    assert heads(bob) == ["b2"]


def test_a_git_rebase_turns_g011_into_what_the_graph_already_says(checkout: tuple[Path, Path]) -> None:
    """Once the base is merged in (here with git rebase), the two heads are in the work
    tree: G001 says it, G011 no longer does (nothing is said twice)."""
    bob, _ = checkout
    git(bob, "fetch", "-q")
    assert [d.code for d in findings(bob)] == ["G011"]
    git(bob, "rebase", "-q", "origin/main")
    assert sorted(d.code for d in findings(bob, ("G001", "G011"))) == ["G001", "G001"]


def test_a_deleted_revision_is_g012_on_the_env_first_revision(remote: Path) -> None:
    bob = clone(remote, "bob", "feature-b")
    a2 = next((bob / "migrations" / "versions").glob("a2_*.py"))
    a2.unlink()
    commit(bob, "remove a2")
    [d] = findings(bob)
    assert d.code == "G012" and d.severity.label == "error"
    assert d.path == next((bob / "migrations" / "versions").glob("a1_*.py")).resolve()
    assert "revision a2 (add email) is on origin/main but gone from this branch" in d.message


def test_a_renumbered_revision_is_g012_on_the_file_that_took_its_place(remote: Path) -> None:
    bob = clone(remote, "bob", "feature-b")
    a2 = next((bob / "migrations" / "versions").glob("a2_*.py"))
    a2.write_text(a2.read_text().replace("'a2'", "'a9'").replace("Revision ID: a2", "Revision ID: a9"))
    [d] = findings(bob)  # not even committed: the work tree is what counts
    assert (d.code, d.path) == ("G012", a2.resolve())
    assert "this file's id is now a9" in d.message
    engine = Engine([bob], cache=False, trusted=False)
    assert d.span == engine.snapshot().script(a2.resolve()).revision.ids[0].span


def test_an_edited_merged_revision_is_g013_on_the_changed_function(remote: Path) -> None:
    bob = clone(remote, "bob", "feature-b")
    a2 = next((bob / "migrations" / "versions").glob("a2_*.py"))
    text = a2.read_text()
    # layout and comments are not edits
    a2.write_text(text.replace("    op.add_column(", "    # the email column\n    op.add_column(") + "\n\n")
    assert findings(bob) == []
    a2.write_text(text.replace("sa.String()", "sa.String(200)"))
    [d] = findings(bob)
    script = Engine([bob], cache=False, trusted=False).snapshot().script(a2.resolve())
    assert (d.code, d.path, d.span) == ("G013", a2.resolve(), script.upgrade.def_span)
    assert "upgrade() was edited here" in d.message and "make a new revision instead" in d.message


def test_an_up_to_date_branch_and_a_new_revision_on_top_have_no_finding(remote: Path) -> None:
    bob = clone(remote, "bob", "feature-b")
    assert findings(bob) == []
    add_revision(bob, "b1", "a2", "add orders")
    assert findings(bob) == []


def test_outside_a_git_repository_the_checks_are_silent(tmp_path: Path) -> None:
    project = tmp_path / "plain"
    (project / "migrations" / "versions").mkdir(parents=True)
    (project / "alembic.ini").write_text(INI)
    add_revision(project, "a1", None, "create users")
    engine = Engine([project], cache=False, trusted=False)
    assert [d for d in engine.snapshot().diagnostics if d.code.startswith("G")] == []
    assert engine.git.notes[project.resolve()].endswith("the base-branch checks (G011-G013) are off")
    assert not engine.git.errors


def test_no_base_branch_is_silent_with_one_reason(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    git(project, "init", "-q", "-b", "work")
    (project / "alembic.ini").write_text(INI)
    (project / "migrations" / "versions").mkdir(parents=True)
    add_revision(project, "a1", None, "create users")
    commit(project, "one")
    engine = Engine([project], cache=False, trusted=False)
    assert [d for d in engine.snapshot().diagnostics if d.code.startswith("G")] == []
    assert engine.git.notes[project.resolve()].startswith("no base branch found")


def test_base_setting_and_local_branch(remote: Path) -> None:
    """`base-branch` names any ref; without one, a local main is used when there is no
    remote one."""
    bob = clone(remote, "bob", "feature-b")
    git(bob, "switch", "-q", "-c", "release")
    add_revision(bob, "r1", "a2", "release fix")
    commit(bob, "release fix")
    git(bob, "switch", "-q", "feature-b")
    add_revision(bob, "b1", "a2", "add orders")
    commit(bob, "orders")
    assert findings(bob) == []  # against origin/main: up to date
    engine = Engine([bob], {"base-branch": "release"}, cache=False, trusted=False)
    [d] = [d for d in engine.snapshot().diagnostics if d.code == "G011"]
    assert d.message.startswith("release's head is now r1 (release fix)")


def test_reading_uses_two_processes_per_commit_and_never_the_work_tree(remote: Path) -> None:
    bob = clone(remote, "bob", "feature-b")
    for n in range(3, 40):
        add_revision(bob, f"a{n}", f"a{n - 1}", f"step {n}")
    commit(bob, "many")
    git(bob, "push", "-q", "origin", "HEAD:main")
    git(bob, "fetch", "-q")
    git(bob, "reset", "-q", "--hard", "HEAD~1")  # the branch is one commit behind
    index = (bob / ".git" / "index").stat()
    repo = find_repository(bob)
    ref, _ = resolve_base(repo, None)
    engine = Engine([bob], cache=False, trusted=False)
    env = engine.workspace.discoveries[0].environments[0]
    stats = Stats()
    base = read_base(repo, ref, env, stats)
    # an ls-tree per commit, one cat-file; the fork's two files are blobs the tip has: read once
    assert (stats.processes, stats.blobs) == (3, 39)
    assert len(base.tip.graph.by_id) == 39 and len(base.fork.graph.by_id) == 2
    assert base.fork.graph.by_id["a2"] is base.tip.graph.by_id["a2"]
    # the work tree's parsed files stand for the blobs with the same git id: not read again
    here = engine.snapshot().environments[0].graph
    stats = Stats()
    again = read_base(repo, ref, env, stats, here=here.scripts)
    assert (stats.processes, stats.blobs) == (3, 37)
    assert again.fork.graph.by_id["a1"] is here.by_id["a1"]
    assert sorted(again.tip.graph.by_id) == sorted(base.tip.graph.by_id)
    assert all(again.tip.graph.by_id[r].text == base.tip.graph.by_id[r].text for r in base.tip.graph.by_id)
    assert (bob / ".git" / "index").stat().st_mtime_ns == index.st_mtime_ns
    assert git(bob, "status", "--porcelain") == ""


def test_a_repository_config_runs_no_program(remote: Path, tmp_path: Path) -> None:
    """An untrusted workspace runs no project code: a repository's own config (fsmonitor,
    hooks, a pager) is never invoked by the plumbing the checks use."""
    bob = clone(remote, "bob", "feature-b")
    marker = tmp_path / "ran"
    for key in ("core.fsmonitor", "core.pager", "core.sshCommand"):
        git(bob, "config", key, f"touch {marker}")
    git(bob, "config", "core.hooksPath", str(tmp_path / "hooks"))
    (tmp_path / "hooks").mkdir()
    for hook in ("post-checkout", "reference-transaction", "pre-commit"):
        (tmp_path / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (tmp_path / "hooks" / hook).chmod(0o755)
    add_revision(bob, "b1", "a2", "add orders")
    tracker = Tracker()
    assert tracker.refresh((bob.resolve(),))
    assert findings(bob) == []
    assert main(["check", str(bob), "--no-cache", "--no-import", "--changed"]) == 0
    assert not marker.exists()
    git(bob, "status")  # the sentinel is live: porcelain reading the index runs it
    assert marker.exists()


# --------------------------------------------------------------------------- CLI


def _check(root: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = main(["check", str(root), "--no-cache", "--no-import", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_changed_lists_only_the_branch_findings(remote: Path, capsys, monkeypatch) -> None:
    seed = remote.parent / "seed"
    # main already has a problem of its own (an S005 drop_table): the baseline
    add_revision(seed, "a3", "a2", "drop legacy", "op.drop_table('legacy')")
    commit(seed, "drop legacy")
    git(seed, "push", "-q", "origin", "main")
    alice, bob = clone(remote, "alice", "feature-a"), clone(remote, "bob", "feature-b")
    b1 = add_revision(bob, "b1", "a3", "drop old", "op.drop_column('users', 'old')")
    commit(bob, "drop old")
    add_revision(alice, "c1", "a3", "add phone")
    commit(alice, "phone")
    git(alice, "push", "-q", "origin", "HEAD:main")
    git(bob, "fetch", "-q")
    monkeypatch.chdir(bob)
    code, out, _ = _check(Path("."), "--format", "json", capsys=capsys)
    everything = {(d["code"], d["path"]) for d in json.loads(out)["diagnostics"]}
    assert ("S005", "migrations/versions/a3_drop_legacy.py") in everything
    code, out, _ = _check(Path("."), "--format", "json", "--changed", capsys=capsys)
    changed = [(d["code"], d["path"]) for d in json.loads(out)["diagnostics"]]
    assert {path for _, path in changed} == {"migrations/versions/b1_drop_old.py"}
    assert {"G011", "S005", "D001"} == {code for code, _ in changed}
    assert len(everything) > len(changed)
    code, out, _ = _check(Path("."), "--format", "github", "--changed", capsys=capsys)
    assert code == 0
    assert all(line.startswith(("::warning file=migrations/versions/b1_drop_old.py,",
                                "::notice file=migrations/versions/b1_drop_old.py,"))
               for line in out.splitlines()), out
    assert b1.exists()


def test_base_option(remote: Path, capsys) -> None:
    bob = clone(remote, "bob", "feature-b")
    git(bob, "switch", "-q", "-c", "release")
    add_revision(bob, "r1", "a2", "release fix")
    commit(bob, "release fix")
    git(bob, "switch", "-q", "feature-b")
    add_revision(bob, "b1", "a2", "add orders")
    commit(bob, "orders")
    code, out, _ = _check(bob, "--format", "json", "--base", "release", capsys=capsys)
    assert [d["code"] for d in json.loads(out)["diagnostics"] if d["code"].startswith("G")] == ["G011"]
    code, out, err = _check(bob, "--base", "no-such-branch", capsys=capsys)
    assert code == 2 and err.strip() == f"migration-lsp: base branch 'no-such-branch' does not exist in {bob.resolve()}"


def test_shallow_clone_without_the_base_is_a_clear_error(remote: Path, capsys) -> None:
    alice = clone(remote, "alice", "feature-a")
    add_revision(alice, "c1", "a2", "add phone")
    commit(alice, "phone")
    git(alice, "push", "-q", "origin", "feature-a")
    ci = remote.parent / "ci"
    git(remote.parent, "clone", "-q", "--depth", "1", "--branch", "feature-a", f"file://{remote}", str(ci))
    code, out, err = _check(ci, capsys=capsys)
    assert code == 2
    assert err.strip() == ("migration-lsp: shallow clone without the base branch (origin/main): "
                           "run `git fetch --unshallow origin main:refs/remotes/origin/main` first")
    git(ci, "fetch", "-q", "--unshallow", "origin", "main:refs/remotes/origin/main")
    code, out, err = _check(ci, capsys=capsys)
    assert (code, err) == (0, "")


def test_keystrokes_look_at_the_edited_file_only_and_agree_with_a_full_check(checkout: tuple[Path, Path],
                                                                           monkeypatch) -> None:
    """The engine's incremental path (a patch of the graph) gives what a from-scratch check
    of the same texts gives, for edits that make and unmake G013 and move G011."""
    from migration_lsp.checks import git as rules

    bob, b1 = checkout
    git(bob, "fetch", "-q")
    a2 = next((bob / "migrations" / "versions").glob("a2_*.py")).resolve()
    a2_text, b1_text = a2.read_text(), b1.read_text()
    engine = Engine([bob], cache=False, trusted=False)
    engine.snapshot(quick=True)
    edits = [(a2, a2_text.replace("sa.String()", "sa.String(5)")), (b1, "\n\n" + b1_text),
             (a2, a2_text.replace("def downgrade() -> None:\n", "def downgrade() -> None:\n    op.drop_table('x')\n")),
             (b1, b1_text.replace("pass", "op.drop_table('y')")), (a2, a2_text)]
    found, looked_at = [], []
    real_edited = rules._edited

    def counting(new, *args):
        looked_at.append(new.path)
        return real_edited(new, *args)

    for path, text in edits:
        engine.set_buffer(path, text)
        monkeypatch.setattr(rules, "_edited", counting)
        state = engine.snapshot(quick=True).environments[0]
        monkeypatch.setattr(rules, "_edited", real_edited)
        assert looked_at == [path]  # one file compared, not every revision
        looked_at.clear()
        mine = [d for d in state.diagnostics if d.code in ("G011", "G012", "G013")]
        base = engine.base(state.env.root, state.env, state.graph)
        fresh = sorted(rules.check_git(state.graph, base, state.env.name), key=lambda d: d.sort_key())
        assert mine == fresh
        found.append(sorted(d.code for d in mine))
    assert found == [["G011", "G013"], ["G011", "G013"], ["G011", "G013"], ["G011", "G013"], ["G011"]]
    [d] = [d for d in engine.snapshot(quick=True).diagnostics if d.code == "G011"]
    assert d.span.line == engine.snapshot(quick=True).script(b1.resolve()).down_revision.span.line


def test_the_poll_runs_git_only_when_head_or_a_ref_moved(remote: Path, monkeypatch) -> None:
    from migration_lsp import gitbase

    alice, bob = clone(remote, "alice", "feature-a"), clone(remote, "bob", "feature-b")
    ran: list[str] = []
    real = gitbase.git

    def counting(cwd, *args, **kwargs):
        ran.append(args[0])
        return real(cwd, *args, **kwargs)

    monkeypatch.setattr(gitbase, "git", counting)
    tracker = Tracker()
    root = bob.resolve()
    assert tracker.refresh((root,))
    assert ran == ["rev-parse", "cat-file", "merge-base"]  # the repository; every candidate and HEAD at once
    assert tracker.refs[root].name == "origin/main"  # (origin/HEAD, by its symbolic ref)
    ran.clear()
    for _ in range(3):
        assert not tracker.refresh((root,))
    assert ran == []  # nothing moved: stat calls only
    add_revision(alice, "c1", "a2", "add phone")
    commit(alice, "phone")
    git(alice, "push", "-q", "origin", "HEAD:main")
    assert not tracker.refresh((root,)) and ran == []  # not fetched: bob's refs did not move
    git(bob, "fetch", "-q")
    assert tracker.refresh((root,))
    assert ran == ["rev-parse", "cat-file", "merge-base"]
    ran.clear()
    git(bob, "switch", "-q", "-c", "other")  # HEAD moves to another branch, same commit
    assert not tracker.refresh((root,))  # looked again, same base: nothing to redo
    assert ran == ["rev-parse", "cat-file", "merge-base"]


def test_heads_of_differently_labelled_branches_are_not_a_second_head(remote: Path) -> None:
    """Alembic allows one head per branch label: the base growing another labelled branch
    while this branch extends the main line is no G011; growing the same line is."""
    seed = remote.parent / "seed"
    (seed / "migrations" / "versions" / "x1_audit.py").write_text(
        migration_text("x1", None, message="audit branch", branch_labels="audit"))
    commit(seed, "audit branch")
    git(seed, "push", "-q", "origin", "main")
    alice, bob = clone(remote, "alice", "feature-a"), clone(remote, "bob", "feature-b")
    add_revision(bob, "b1", "a2", "add orders")
    commit(bob, "orders")
    add_revision(alice, "x2", "x1", "audit more")
    commit(alice, "audit more")
    git(alice, "push", "-q", "origin", "HEAD:main")
    git(bob, "fetch", "-q")
    assert findings(bob) == []
    git(bob, "merge", "-q", "--no-edit", "origin/main")
    assert heads(bob) == ["b1", "x2"]  # two heads, two branches: what Alembic allows
    engine = Engine([bob], cache=False, trusted=False)
    assert [d for d in engine.snapshot().diagnostics if d.code == "G001"] == []


def test_rebase_fix_needs_a_plain_down_revision() -> None:
    from migration_lsp.core import Diagnostic, Severity
    from migration_lsp.scripts import parse_script

    from conftest import migration_text as text

    data = {"heads": ["c1", "c2"], "messages": {"c1": "add phone"}}
    plain = parse_script(Path("b1.py"), text("b1", "a2", message="orders"))
    d = Diagnostic("G011", Severity.WARNING, Path("b1.py"), plain.down_revision.ids[0].span, "", "", data)
    fixes = git_fixes(d, plain)
    assert [title for title, _ in fixes] == ["Rebase onto c1 (add phone)", "Rebase onto c2"]
    fixed = apply(plain.text, fixes[0][1])
    again = parse_script(Path("b1.py"), fixed)
    assert again.down_revision.values == ("c1",) and [r.value for r in again.doc.revises] == ["c1"]
    assert fixed.replace("c1", "a2") == plain.text  # nothing else moved
    merge = parse_script(Path("m.py"), text("m1", ("a2", "a3"), message="merge"))
    assert git_fixes(replace_span(d, merge), merge) == []
    base = parse_script(Path("n.py"), text("n1", None, message="new base"))
    [(title, edits)] = git_fixes(replace_span(d, base), base)[:1]
    assert parse_script(Path("n.py"), apply(base.text, edits)).down_revision.values == ("c1",)
    assert git_fixes(Diagnostic("G012", Severity.ERROR, Path("b1.py"), d.span, "", "", data), plain) == []


def replace_span(d, script):
    from dataclasses import replace

    return replace(d, span=script.down_revision.value_span)


def test_status_outside_a_repository_says_why(tmp_path: Path) -> None:
    project = tmp_path / "plain"
    (project / "migrations" / "versions").mkdir(parents=True)
    (project / "alembic.ini").write_text(INI)
    add_revision(project, "a1", None, "create users")
    engine = Engine([project], cache=False, trusted=False)
    status = engine.git_status(engine.snapshot(quick=True))
    [env] = status["environments"]
    assert env["heads"] == ["a1"] and env["base"] is None
    assert "not in a git repository" in env["note"]
