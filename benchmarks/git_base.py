"""Reading the base branch's migration files from git objects (stage `git`).

    python benchmarks/git_base.py [--revisions 5000] [--repeat 5]

Generates a project (benchmarks/generate.py), commits it in a fresh repository as the
base branch `main`, makes a feature branch one revision ahead, then times what the engine
does when HEAD or the base moves: list the version locations (`git ls-tree -r -z`), read
every blob (one `git cat-file --batch`), parse the headers into a RevisionGraph. Printed:
the best of `--repeat` runs, split into git's part and the parse, and the processes used.
Target (issue 16): <= 0.5 s for 5,000 revisions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import generate  # noqa: E402

from migration_lsp.gitbase import Stats, find_repository, list_files, read_blobs, read_base, resolve_base  # noqa: E402
from migration_lsp.engine import Engine  # noqa: E402
from migration_lsp.project import discover  # noqa: E402

ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
       "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@example.com"}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, env=ENV, check=True,
                   capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", "-n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="migration-lsp-git-bench-") as tmp:
        root = Path(tmp) / "project"
        generate(root, args.revisions, seed=1)
        git(root, "init", "-q")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "base")
        git(root, "gc", "-q")  # packed, as a cloned repository is
        head = read_head(root)
        # main moves on by one revision, the feature branch adds its own: two commits to read
        add(root, "f00000000001", head, "on main")
        git(root, "switch", "-q", "-c", "feature", "HEAD~1")
        add(root, "f00000000002", head, "on the branch")
        env = discover(root.resolve()).environments[0]
        repo = find_repository(root.resolve())
        assert repo is not None
        ref, _ = resolve_base(repo, None)
        assert ref is not None and ref.merge_base != ref.sha
        here = Engine([root], cache=False, trusted=False).snapshot(quick=True).environments[0].graph.scripts
        results = {}
        for label, known in (("cold, nothing parsed", ()), ("the engine's case, work tree parsed", here)):
            best = best_cpu = float("inf")
            for _ in range(args.repeat):
                stats = Stats()
                started, cpu = time.perf_counter(), cpu_seconds()
                base = read_base(repo, ref, env, stats, here=known)
                best = min(best, time.perf_counter() - started)
                best_cpu = min(best_cpu, cpu_seconds() - cpu)
            assert len(base.tip.graph.by_id) == args.revisions + 1
            results[label] = (best, best_cpu, stats)
        git_best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            for commit in (ref.sha, ref.merge_base):
                read_blobs(repo, list(list_files(repo, commit, env).values()))
            git_best = min(git_best, time.perf_counter() - started)
        for label, (best, best_cpu, stats) in results.items():
            print(f"git base read, {args.revisions} revisions, tip + merge base ({label}): {best * 1000:.0f} ms "
                  f"(CPU, git included: {best_cpu * 1000:.0f} ms; {stats.processes} git processes, "
                  f"{stats.blobs} blobs, {stats.bytes / 1e6:.1f} MB)")
        print(f"  of which git alone (ls-tree + cat-file of both commits, every blob): {git_best * 1000:.0f} ms")
    return 0


def cpu_seconds() -> float:
    """CPU time of this process and of the git processes it waited for (a loaded machine
    stretches wall time, much less CPU time)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def read_head(root: Path) -> str:
    """The single head of the generated project (its manifest names the head file)."""
    manifest = json.loads((root / ".bench.json").read_text())
    return manifest["head"]["revision"]


def add(root: Path, rev: str, down: str, message: str) -> None:
    (root / "migrations" / "versions" / f"{rev}_x.py").write_text(
        f'"""{message}\n\nRevision ID: {rev}\nRevises: {down}\n"""\n'
        f"revision = {rev!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


if __name__ == "__main__":
    raise SystemExit(main())
