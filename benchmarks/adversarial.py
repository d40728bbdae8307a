"""Adversarial sizes: time at n and 4n, and the ratio (about 4 when linear, 16 when quadratic).

    python benchmarks/adversarial.py [--n 50000] [--ops 2000] [--only NAME]

Each case builds an input of size n and 4n, runs it (best of --repeat runs) and prints
`name  t(n)  t(4n)  ratio`. A ratio above --limit (default 6) is flagged `SUPERLINEAR`.
Cases: the docstring reader (a `Revises:` line with a long run of spaces), the parser's
other paths on long whitespace runs (the ast path, the tolerant path of a file with a
syntax error), the raw-SQL readers (S003's CONCURRENTLY, the replay's DDL tables, S001's
UPDATE targets) on long SQL, the project's header scan, the `# migration-lsp: ignore`
comment pattern, and a whole Engine pass on one revision with --ops and 4x --ops ops.
Timing belongs here, not in tests (tests/test_linear_inputs.py counts instead). On a
loaded machine the ratios of small times are noisy: compare with the control case.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import alembic_project, migration_text  # noqa: E402

from migration_lsp import project  # noqa: E402
from migration_lsp.checks import _IGNORE  # noqa: E402
from migration_lsp.checks.safety import runs_concurrently  # noqa: E402
from migration_lsp.checks.walk import updated_tables  # noqa: E402
from migration_lsp.engine import Engine  # noqa: E402
from migration_lsp.rawsql import ddl_tables, is_ddl  # noqa: E402
from migration_lsp.scripts import parse_script  # noqa: E402

TEMPLATE = migration_text("a1", "b0")


def doc(line: str) -> str:
    return TEMPLATE.replace("Revises: b0", line, 1)


def parse(text: str, **kw):
    return lambda: parse_script(Path("a1_x.py"), text, **kw)


CONTROL = re.compile(r"\bQQQ\b", re.I)

CASES = {
    "control: one linear regex scan (the machine's own ratio)": lambda n: lambda: CONTROL.search("a" * n),
    "docstring Revises: spaces (fast path)": lambda n: parse(doc("Revises: a" + " " * n + "b")),
    "docstring Revises: spaces (ast path)": lambda n: parse(doc("Revises: a" + " " * n + "b"), header_only=False),
    "docstring Revises: tokens": lambda n: parse(doc("Revises: " + "(a, " * (n // 4))),
    "tolerant parse, long line": lambda n: parse(doc("Revises: a" + " " * n + "b") + "\ndef (:\n", header_only=False),
    "tolerant parse, header + newlines": lambda n: parse("revision" + "\n" * n + " = 'a'\ndef (:\n", header_only=False),
    "header lines the fast scanner gives up on": lambda n: parse("revision :" + " x" * (n // 2) + "\n" * n + "def upgrade(): pass\n"),
    "S003 REINDEX ... (no CONCURRENTLY)": lambda n: lambda: runs_concurrently("REINDEX " * (n // 8)),
    "S003 CREATE UNIQUE ...": lambda n: lambda: runs_concurrently("CREATE UNIQUE " * (n // 14)),
    "DDL: newlines": lambda n: lambda: is_ddl("\n" * n + "x"),
    "DDL tables: INDEX INDEX ...": lambda n: lambda: ddl_tables("INDEX " * (n // 6)),
    "DDL tables: spaces": lambda n: lambda: ddl_tables("TABLE" + " " * n + "t"),
    "UPDATE targets: long name": lambda n: lambda: updated_tables('UPDATE "' + "a" * n),
    "project header scan (16 KB head)": lambda n: lambda: project._HEADER_VAR.findall(
        ("revision" + " " * 50 + "\n") * (n // 59)),
    "ignore comment, unclosed [ (n/10)": lambda n: lambda: _IGNORE.search("# migration-lsp: ignore[" * (n // 250) + "x"),
}


def ops_revision(n: int) -> str:
    lines = ["op.create_table('t', sa.Column('id', sa.Integer(), primary_key=True))"]
    for i in range(n - 1):
        lines.append(
            (f"op.add_column('t', sa.Column('c{i}', sa.Integer(), nullable=True))",
             f"op.create_index('ix_{i}', 't', ['c{i - 1}'])",
             f"op.execute('UPDATE t SET c{i - 2} = 1')",
             f"op.alter_column('t', 'c{i - 3}', nullable=False, existing_type=sa.Integer())")[i % 4])
    return "\n    ".join(lines)


def engine_pass(n: int):
    root = Path(tempfile.mkdtemp(prefix="adversarial-"))
    alembic_project(root, {"a1_x.py": migration_text("a1", upgrades=ops_revision(n), downgrades="op.drop_table('t')")})
    return lambda: Engine([root], trusted=False, cache=False).snapshot()


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()  # CPU time: other processes on the machine count less
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=float, default=6.0)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    cases = {name: (make, args.n) for name, make in CASES.items()}
    cases[f"Engine pass, one revision of n ops (n={args.ops})"] = (engine_pass, args.ops)
    print(f"{'case':58} {'t(n)':>9} {'t(4n)':>9} {'ratio':>6}")
    for name, (make, n) in cases.items():
        if args.only and args.only not in name:
            continue
        small, large = best(make(n), args.repeat), best(make(4 * n), args.repeat)
        ratio = large / max(small, 1e-9)
        flag = "  SUPERLINEAR" if ratio > args.limit and large > 0.05 else ""
        print(f"{name:58} {small:9.4f} {large:9.4f} {ratio:6.1f}{flag}", flush=True)


if __name__ == "__main__":
    main()
