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
import textwrap

from ..core import Diagnostic, Severity, Span
from ..gitbase import Base
from ..graph import RevisionGraph
from ..scripts import MigrationScript

GIT_CODES = ("G011", "G012", "G013")


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
    incoming = [s for rev, s in base.tip.graph.by_id.items() if rev not in fork_ids and rev not in here.by_id]
    return RevisionGraph([*here.scripts, *incoming]), {s.revision_id for s in incoming}  # type: ignore[misc]


def lowest_new(graph: RevisionGraph, head: str, new: set[str]) -> list[str]:
    """The new revisions at the bottom of `head`'s new chain(s): those with no new parent."""
    chain = ({head} | graph.ancestors(head, include_dependencies=False)) & new
    return [rev for rev in graph.by_id if rev in chain and not any(p in new for p in graph.parents[rev])]


def _shape_of(here: RevisionGraph, base: Base) -> tuple:
    """What G011 depends on: the ids and links of this branch's graph, and the base."""
    return (base.tip.commit, base.fork.commit, tuple(here.by_id), tuple(here.parents.values()),
            tuple(here.dependencies.values()), tuple(here.own_labels.values()))


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


def check_moved(here: RevisionGraph, base: Base, env_name: str, memo: dict | None = None) -> list[Diagnostic]:
    """G011, on the down_revision of each lowest new revision. `memo` keeps the answer of
    the last graph shape (a keystroke in a body rebuilds no merged graph)."""
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
            "G011", Severity.WARNING, script.path, span,
            f"{base.ref.name}'s head{'s' if len(theirs) > 1 else ''} {verb} now {words}; "
            f"after merging there will be two heads (rebase this revision onto {onto})",
            env_name, {"onto": onto, "heads": list(theirs), "base": base.ref.name,
                       "messages": {h: tip.message(h) for h in theirs}}))
    return out


def check_gone(here: RevisionGraph, base: Base, env_name: str) -> list[Diagnostic]:
    """G012: a revision the fork and the base have is missing here."""
    fork, tip = base.fork.graph, base.tip.graph
    gone = [rev for rev in fork.by_id if rev in tip.by_id and rev not in here.by_id]
    if not gone or not here.scripts:
        return []
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
            "G012", Severity.ERROR, target.path, _revision_span(target),
            f"revision {_label(fork, rev)} is on {base.ref.name} but gone from this branch{why}: "
            f"databases stamped at it can no longer upgrade",
            env_name, {"gone": rev, "base": base.ref.name}))
    return out


def _shape(script: MigrationScript, name: str) -> str | None:
    """A function's code without its layout and comments (None: no such function)."""
    function = getattr(script, name)
    if function is None:
        return None
    lines = script.lines[function.span.line:function.span.end_line + 1] or script.text.splitlines()[
        function.span.line:function.span.end_line + 1]
    text = textwrap.dedent("\n".join(lines))
    try:
        return ast.dump(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return text


def edited_functions(old: MigrationScript, new: MigrationScript) -> list[str]:
    """upgrade / downgrade whose code differs between two versions of one revision."""
    if old.text == new.text:
        return []
    return [name for name in ("upgrade", "downgrade") if _shape(old, name) != _shape(new, name)]


def check_edited(here: RevisionGraph, base: Base, env_name: str,
                 memo: dict | None = None) -> list[Diagnostic]:
    """G013: a revision the fork had (and the base still has) whose upgrade() or downgrade()
    changed here. `memo` ({(fork script, here script): findings}, refilled with the pairs
    of this call) spares comparing the unchanged ones again."""
    fork, tip = base.fork.graph, base.tip.graph
    known = dict(memo) if memo is not None else {}
    if memo is not None:
        memo.clear()
    out = []
    for rev, old in fork.by_id.items():
        new = here.by_id.get(rev)
        if new is None or new.text == old.text or rev not in tip.by_id:
            continue
        key = (old, new)
        found = known.get(key)
        if found is None:
            found = []
            for name in edited_functions(old, new):
                function = getattr(new, name)
                found.append(Diagnostic(
                    "G013", Severity.WARNING, new.path, function.def_span,
                    f"revision {rev} is already on {base.ref.name} and its {name}() was edited here: "
                    f"databases that already ran it will not see the change; make a new revision instead",
                    env_name, {"function": name, "base": base.ref.name}))
        if memo is not None:
            memo[key] = found
        out.extend(found)
    return out


def check_git(here: RevisionGraph, base: Base, env_name: str, memo: dict | None = None) -> list[Diagnostic]:
    """G011–G013. `memo`: a dict kept by the caller per environment (what a keystroke reuses)."""
    if memo is None:
        return check_moved(here, base, env_name) + check_gone(here, base, env_name) + check_edited(
            here, base, env_name)
    return (check_moved(here, base, env_name, memo.setdefault("moved", {})) + check_gone(here, base, env_name)
            + check_edited(here, base, env_name, memo.setdefault("edited", {})))


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



def changed_only(found: list[Diagnostic], here: RevisionGraph, base: Base, env_name: str) -> list[Diagnostic]:
    """What `check --changed` reports: findings in the files of revisions this branch adds
    or changes, and graph findings (G…) the base does not have already (a second head, a
    broken reference, a gone revision the branch causes). The rest is the baseline."""
    from .graph import check_graph

    touched = touched_paths(here, base)
    baseline = {(d.code, d.path, d.message) for d in check_graph(base.tip.graph, env_name)}
    return [d for d in found if d.path in touched
            or (d.code.startswith("G") and (d.code, d.path, d.message) not in baseline)]
