"""Rule family G011–G013: this branch against its base branch (DESIGN.md, stage `git`).

Three sets of revision ids decide everything: `here` (the work tree, open buffers
included), `tip` (the base branch now) and `fork` (the merge base: what this branch
started from). The graph the merge will produce is `here` plus what the base added since
the fork (`tip - fork`, minus what is here already): its competing heads, when one comes
from each side, are the second head the merge would create (G011). What the fork had, the
base still has and this branch lost is G012; a body this branch changed in a revision the
fork had is G013.
"""

from __future__ import annotations

import ast
from dataclasses import replace

from ..core import Diagnostic, Span
from ..gitbase import Base
from ..graph import RevisionGraph
from ..rules import severity
from ..scripts import MigrationScript


def _revision_span(script: MigrationScript) -> Span:
    if script.revision and script.revision.ids:
        return script.revision.ids[0].span
    if script.revision:
        return script.revision.span
    return Span.point(0)


def _label(graph: RevisionGraph, rev: str) -> str:
    message = graph.message(rev)
    return f"{rev} ({message})" if message else rev


def merged_graph(here: RevisionGraph, base: Base) -> tuple[RevisionGraph, set[str]]:
    """The graph the merge will produce, and the ids that only the base brings into it."""
    fork_ids = base.fork.graph.by_id
    incoming = {rev: s for rev, s in base.tip.graph.by_id.items() if rev not in fork_ids and rev not in here.by_id}
    return RevisionGraph([*here.scripts, *incoming.values()]), set(incoming)


def lowest_new(graph: RevisionGraph, head: str, new: set[str]) -> list[str]:
    """The new revisions at the bottom of `head`'s new chain(s): those with no new parent."""
    chain = ({head} | graph.ancestors(head, include_dependencies=False)) & new
    return [rev for rev in graph.by_id if rev in chain and not any(p in new for p in graph.parents[rev])]


def _shape_of(here: RevisionGraph, base: Base) -> tuple:
    """What G011 depends on: the ids and links of this branch's graph (compared as dicts:
    a keystroke in a body compares equal at C speed), and the base."""
    return (base.tip.commit, base.fork.commit, here.parents, here.dependencies, here.own_labels)


def moved(here: RevisionGraph, base: Base) -> list[tuple[str, list[str]]]:
    """(lowest new revision, the base's competing heads) for each second head the merge
    would create: merged, a branch has one head from the base and one from here."""
    merged, incoming = merged_graph(here, base)
    if not incoming:
        return []
    tip = base.tip.graph.by_id
    new = {rev for rev in here.by_id if rev not in tip}
    out: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for group in merged.head_groups():
        theirs = [h for h in group if h in incoming]
        mine = [h for h in group if h in new]
        if theirs and mine:
            for head in mine:
                for rev in lowest_new(merged, head, new):
                    if rev not in seen:
                        seen.add(rev)
                        out.append((rev, theirs))
    return out


def check_moved(here: RevisionGraph, base: Base, env_name: str, memo: dict | None = None,
                found: list[tuple[str, list[str]]] | None = None) -> list[Diagnostic]:
    """G011, on the down_revision of each lowest new revision. `memo` keeps the answer of
    the last graph shape (a keystroke in a body rebuilds no merged graph); `found`: the
    answer, known already."""
    if found is None:
        shape = _shape_of(here, base) if memo is not None else None
        if memo is not None and memo.get("shape") == shape:
            found = memo["moved"]
        else:
            found = moved(here, base)
            if memo is not None:
                memo["shape"], memo["moved"] = shape, found
    tip = base.tip.graph
    out: list[Diagnostic] = []
    for rev, theirs in found:
        script = here.by_id[rev]
        down = script.down_revision
        span = (down.ids[0].span if down.ids else down.value_span) if down else _revision_span(script)
        onto = theirs[0]
        words = " and ".join(_label(tip, h) for h in theirs)
        verb = "are" if len(theirs) > 1 else "is"
        out.append(Diagnostic(
            "G011", severity("G011"), script.path, span,
            f"{base.ref.name}'s head{'s' if len(theirs) > 1 else ''} {verb} now {words}; "
            f"after merging there will be two heads (rebase this revision onto {onto})",
            env_name, {"onto": onto, "heads": list(theirs), "base": base.ref.name,
                       "messages": {h: tip.message(h) for h in theirs}}))
    return out


def check_gone(here: RevisionGraph, base: Base, env_name: str) -> list[Diagnostic]:
    """G012: a revision the fork and the base have is missing here."""
    fork = base.fork.graph
    missing = base.kept - here.by_id.keys()
    if not missing or not here.scripts:
        return []
    gone = [r for r in fork.by_id if r in missing]  # (in file order)
    by_path = {s.path: s for s in here.scripts}
    first = here.by_id.get(here.bases[0]) if here.bases else None
    first = first or here.scripts[0]
    out = []
    for rev in gone:
        old = fork.by_id[rev]
        successor = by_path.get(old.path)
        target = successor or first
        now = successor.revision_id if successor is not None else None
        why = (f"; this file's id is now {now}" if now else "; this file took its place") if successor else ""
        out.append(Diagnostic(
            "G012", severity("G012"), target.path, _revision_span(target),
            f"revision {_label(fork, rev)} is on {base.ref.name} but gone from this branch{why}: "
            f"databases stamped at it can no longer upgrade",
            env_name, {"gone": rev, "base": base.ref.name}))
    return out


def _source(script: MigrationScript, name: str) -> str | None:
    import textwrap  # (here: only G012's comparison of two versions needs it)

    function = getattr(script, name)
    if function is None:
        return None
    lines = script.lines[function.span.line:function.span.end_line + 1] or script.text.splitlines()[
        function.span.line:function.span.end_line + 1]
    return textwrap.dedent("\n".join(lines))


def _shape(text: str) -> str:
    """A function's code without its layout and comments."""
    try:
        return ast.dump(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return text


def edited_functions(old: MigrationScript, new: MigrationScript) -> list[str]:
    """upgrade / downgrade whose code differs between two versions of one revision (the
    same text is the same code; a different one is compared without layout and comments)."""
    if old.text == new.text:
        return []
    out = []
    for name in ("upgrade", "downgrade"):
        before, after = _source(old, name), _source(new, name)
        if before != after and (before is None or after is None or _shape(before) != _shape(after)):
            out.append(name)
    return out


def _edited(new: MigrationScript, here: RevisionGraph, base: Base, env_name: str) -> list[Diagnostic]:
    rev = new.revision_id
    if rev is None or rev not in base.kept:
        return []
    old = base.fork.graph.by_id.get(rev)
    if old is None or here.by_id.get(rev) is not new or new.text == old.text:
        return []
    found = []
    for name in edited_functions(old, new):
        function = getattr(new, name)
        found.append(Diagnostic(
            "G013", severity("G013"), new.path, function.def_span,
            f"revision {rev} is already on {base.ref.name} and its {name}() was edited here: "
            f"databases that already ran it will not see the change; make a new revision instead",
            env_name, {"function": name, "base": base.ref.name}))
    return found


def check_edited(here: RevisionGraph, base: Base, env_name: str) -> dict:
    """G013 by file: a revision the fork had (and the base still has) whose upgrade() or
    downgrade() changed here. The work tree's files whose text the merge base has are its
    very objects (gitbase reuses them): only the others are compared, found by a set
    difference rather than a loop over every revision."""
    out = {}
    for new in set(here.scripts) - base.fork_scripts:
        found = _edited(new, here, base, env_name)
        if found:
            out[new.path] = found
    return out


def check_git(here: RevisionGraph, base: Base, env_name: str, memo: dict | None = None,
              since: tuple[RevisionGraph | None, list | None] | None = None) -> list[Diagnostic]:
    """G011–G013. `memo`: a dict the caller keeps per environment; `since`: (the graph of
    the previous call, the (old, new) scripts that alone changed since): an edit that keeps
    every revision's id and links (a keystroke) then looks at the edited files only."""
    memo = {} if memo is None else memo
    last = memo.get("last")
    previous, pairs = since or (None, None)
    if (last is not None and pairs is not None and previous is not None and last["graph"] is previous
            and last["base"] is base and all(_same_links(previous, here, old, new) for old, new in pairs)):
        touched = {s.path for pair in pairs for s in pair}
        gone = last["gone"]
        if any(d.path in touched for d in gone):
            gone = check_gone(here, base, env_name)
        edited = dict(last["edited"])
        for old, new in pairs:
            edited.pop(old.path, None)
            found = _edited(new, here, base, env_name)
            if found:
                edited[new.path] = found
        moved_found = last["moved"]
    else:
        moved_found = None
        gone = check_gone(here, base, env_name)
        edited = check_edited(here, base, env_name)
    moved_diagnostics = check_moved(here, base, env_name, memo.setdefault("moved", {}), moved_found)
    memo["last"] = {"graph": here, "base": base, "gone": gone, "edited": edited,
                    "moved": memo["moved"].get("moved", []) if moved_found is None else moved_found}
    return moved_diagnostics + gone + [d for path in sorted(edited, key=str) for d in edited[path]]


def _same_links(before: RevisionGraph, after: RevisionGraph, old: MigrationScript, new: MigrationScript) -> bool:
    rev = new.revision_id
    return (rev is not None and rev == old.revision_id and before.by_id.get(rev) is old and after.by_id.get(rev) is new
            and before.parents[rev] == after.parents[rev] and before.dependencies[rev] == after.dependencies[rev]
            and before.own_labels[rev] == after.own_labels[rev])


def explain_incoming(found: list[Diagnostic], here: RevisionGraph, base: Base) -> list[Diagnostic]:
    """G002 on an id that only the base branch has (after *Rebase onto Z*, before the base
    is merged in): still an error, this checkout cannot upgrade, but said as what it is; and
    the second head that broken link seems to leave (G001 on Z's ancestor) is no head once
    the base is merged in: not reported."""
    tip = base.tip.graph
    out = []
    incoming = False
    for d in found:
        ref = d.data.get("ref")
        if d.code == "G002" and ref in tip.by_id and ref not in here.by_id:
            incoming = True
            name = base.ref.name
            d = replace(d, message=f"down_revision '{ref}' is {_label(tip, ref)} on {name}, not in this "
                                   f"checkout yet: bring {name} in (git merge {name}) before upgrading")
        out.append(d)
    if incoming:
        heads = set(merged_graph(here, base)[0].heads)
        out = [d for d in out if d.code != "G001" or set(d.data.get("heads", ())) <= heads]
    return out


def changed_revisions(here: RevisionGraph, base: Base) -> set[str]:
    """Ids this branch adds or whose file it changed (compared with the merge base)."""
    fork = base.fork.graph.by_id
    return {rev for rev, s in here.by_id.items() if rev not in fork or fork[rev].text != s.text}


def touched_paths(here: RevisionGraph, base: Base) -> set:
    """Files of revisions added or changed on this branch (what `check --changed` keeps)."""
    changed = changed_revisions(here, base)
    paths = {here.by_id[rev].path for rev in changed}
    fork_paths = {s.path: s.text for s in base.fork.scripts}
    paths |= {s.path for s in here.scripts if s.revision_id is None and fork_paths.get(s.path) != s.text}
    return paths
