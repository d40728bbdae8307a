"""Front end `cli`: check / graph / revision / sql / serve (DESIGN.md, Contracts)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from . import __version__, formats, progress
from .core import Diagnostic, Severity, paused_gc, printable
from .engine import (
    Engine,
    EnvironmentReport,
    EnvironmentState,
    Report,
    Snapshot,
    may_enable,
)
from .formats import relative

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
CHECK_FORMATS = {"json": formats.format_json, "sarif": formats.format_sarif, "github": formats.format_github,
                 "gitlab": formats.format_gitlab}  # and text (it needs to know about colour)
GRAPH_FORMATS = {"mermaid": formats.format_mermaid, "dot": formats.format_dot, "json": formats.format_graph_json}


class UsageError(Exception):
    """A problem with how the command was called or configured: exit 2, one line."""


class RevisionNotWritten(Exception):
    """`revision` could not name or write the new file (an unusable `file_template`, a
    message too long for a file name, a read-only versions folder): exit 2, one line."""


def _codes(value: str | None) -> tuple[str, ...]:
    return tuple(c.strip().upper() for c in (value or "").split(",") if c.strip())


def _engine(paths: list[str], args: argparse.Namespace, memo: bool = False) -> tuple[Engine, Report]:
    """`memo`: the caller reads only findings and GraphSummary (check: Engine.report()): an
    unchanged project is answered from the cache without being parsed."""
    roots = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UsageError(f"{p}: no such file or directory")
        roots.append(path if path.is_dir() else path.parent)
    overrides = {}
    if getattr(args, "select", None):
        overrides["select"] = _codes(args.select)
    if getattr(args, "ignore", None):
        overrides["ignore"] = _codes(args.ignore)
    if getattr(args, "base", None):
        overrides["base-branch"] = args.base
    no_import = getattr(args, "no_import", True)
    with progress.for_command(args) as status:  # a line on a terminal's stderr while it takes a while
        engine = Engine(roots, overrides, trusted=not no_import, untrusted_reason="--no-import was given",
                        cache=not getattr(args, "no_cache", False), memo=memo, fork=memo)
        status.stage("loading models")
        engine.load_models()
        status.stage(f"checking {sum(len(env.files) for _, env in engine.environments())} revision files")
        with paused_gc():
            report = engine.report() if memo else engine.snapshot()
        engine.save_cache()
    return engine, report


def _snapshot(paths: list[str], args: argparse.Namespace) -> tuple[Engine, Snapshot]:
    """The engine and its complete snapshot (the commands that read graphs and schemas)."""
    engine, _ = _engine(paths, args)
    return engine, engine.snapshot()  # (the one just built)


def _report_problems(snapshot: Report) -> bool:
    """Configuration problems: one line each on stderr (exit 2), after the findings of the
    environments that could be read."""
    for problem in snapshot.problems:
        print(f"migration-lsp: {_problem(problem)}", file=sys.stderr)
    return bool(snapshot.problems)


def _problem(problem) -> str:
    """`path: message`, without repeating the file name the message may start with."""
    message = problem.message
    prefix = f"{problem.path.name}: "
    message = message.removeprefix(prefix)
    return printable(f"{relative(problem.path)}: {message}")


# --------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    truth_on = not args.no_import and not args.static  # trusted: the truth pass runs project code anyway
    engine, snapshot = _engine(args.paths or ["."], args, memo=not args.changed and not truth_on)
    truth_lines: list[str] = []
    if truth_on or args.changed:  # no memo: the engine's complete snapshot is what _engine built
        complete = engine.snapshot()
        if truth_on:
            complete, truth_lines = _truth(engine, complete, args)
        _git_errors(engine)
        snapshot = _changed_only(engine, complete) if args.changed else complete
    else:
        _git_errors(engine)
    drift = {id(s): drift_status(engine, s) for s in snapshot.environments}
    if args.format == "text":
        output = formats.format_text(snapshot, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ,
                                     drift=drift)
        output = "\n".join([output, *truth_lines]) if truth_lines else output
        truth_lines = []
    elif args.format == "json":
        output = formats.format_json(snapshot, drift)
    else:
        output = CHECK_FORMATS[args.format](snapshot)
    if output:
        print(output)
    for line in truth_lines:  # not in a machine-readable stdout
        print(printable(f"migration-lsp: {line}"), file=sys.stderr)
    if _report_problems(snapshot):
        return EXIT_USAGE
    if args.strict and any(status["status"] == "not checked" for status in drift.values()):
        return EXIT_FINDINGS  # CI asked for drift to be checked, and it was not (said on stdout)
    if args.exit_zero:
        return EXIT_OK
    return EXIT_FINDINGS if any(d.severity == Severity.ERROR for d in snapshot.diagnostics) else EXIT_OK


def drift_status(engine: Engine, state: EnvironmentReport) -> dict:
    """Were the models compared with the migrations? {"status": "checked" | "not checked" |
    "off" (env.py sets target_metadata = None), "reason": why not}. CI must be able to
    tell a clean result from one where drift was never looked at (`--strict`). With every M
    rule left out (`--select G`, a pre-commit "one head" check) the comparison is off."""
    env = state.env
    if not may_enable(env.settings, "M"):  # (and no need to import the models' machinery: 0.3 s)
        return {"status": "off", "reason": "no M rule is selected (--select / --ignore)"}
    key = next((k for k, e in engine.environments() if e.name == env.name and e.config_path == env.config_path), None)
    models = engine.models.get(key) if key is not None else None
    source = engine.metadata_source(env)
    if source.disabled or (models is not None and models.disabled):
        return {"status": "off", "reason": "env.py sets target_metadata = None"}
    if not engine.trusted:
        return {"status": "not checked", "reason": engine.untrusted_reason}
    if models is None:
        return {"status": "not checked", "reason": "models not loaded"}
    if models.error:
        return {"status": "not checked", "reason": models.error}
    return {"status": "checked", "reason": None}


def _truth(engine: Engine, snapshot: Snapshot, args: argparse.Namespace) -> tuple[Snapshot, list[str]]:
    """The truth pass (truth.py): the migrations on a scratch database, then alembic check."""
    from . import scratchdb, truth

    try:
        with progress.for_command(args) as status:
            snapshot, outcomes = truth.verify_snapshot(engine, snapshot, database_url=args.database_url,
                                                       progress=status.stage,
                                                       downgrades=args.downgrades if args.downgrades == "changed"
                                                       else args.downgrades == "all")
    except scratchdb.Refused as exc:
        raise UsageError(str(exc)) from None
    finally:
        scratchdb.close_all()
    return snapshot, [o.summary() for o in outcomes]


def _git_errors(engine: Engine) -> None:
    """A shallow clone or a missing --base: exit 2 rather than a wrong answer."""
    for error in engine.git.errors.values():
        raise UsageError(error)


def _changed_only(engine: Engine, snapshot: Snapshot) -> Snapshot:
    """`--changed`: only what this branch adds or changes — findings in the files of
    revisions it adds or changes, and graph findings (G…) the base does not have already (a
    second head, a broken reference, a gone revision the branch causes). The rest is the
    baseline."""
    from dataclasses import replace

    from .checks.git import touched_paths
    from .checks.graph import check_graph

    states = []
    for state in snapshot.environments:
        base = engine.base(state.env.root, state.env, state.graph)
        if base is None:
            why = next(iter(engine.git.notes.values()), "no base branch")
            raise UsageError(f"--changed needs a base branch: {why}")
        touched = touched_paths(state.graph, base)
        baseline = {(d.code, d.path, d.message) for d in check_graph(base.tip.graph, state.env.name)}
        kept = [d for d in state.diagnostics if d.path in touched
                or (d.code.startswith("G") and (d.code, d.path, d.message) not in baseline)]
        by_path: dict[Path, tuple[Diagnostic, ...]] = {}
        for d in kept:
            by_path[d.path] = by_path.get(d.path, ()) + (d,)
        states.append(replace(state, by_path=by_path))
    return replace(snapshot, environments=tuple(states))


# --------------------------------------------------------------------------- graph


def cmd_graph(args: argparse.Namespace) -> int:
    _, snapshot = _snapshot([args.path], args)
    print(GRAPH_FORMATS[args.format](snapshot))
    return EXIT_USAGE if _report_problems(snapshot) else EXIT_OK


def cmd_revision(args: argparse.Namespace) -> int:
    """Write a new revision file like `alembic revision [--autogenerate]`, without a
    database; never overwrites a file."""
    from .render import UnusableFileTemplate

    try:
        return _write_revision(args)
    except UnusableFileTemplate as exc:
        raise RevisionNotWritten(str(exc)) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        if len(where) > 120:
            where = f"{where[:60]}...{where[-40:]}"
        raise RevisionNotWritten(f"cannot write the new revision: {where}{exc.strerror or exc}") from None


def _one_environment(snapshot: Snapshot, path: str) -> EnvironmentState:
    """The environment a command that works on one (revision, sql) is pointed at."""
    states = [s for s in snapshot.environments if s.graph.by_id or s.env.config_path]
    if len(states) != 1:
        raise UsageError(f"{len(states)} environments under {path}: pass the folder of one of them")
    return states[0]


def _write_revision(args: argparse.Namespace) -> int:
    from .render import render_migration, render_revision

    args.no_import = not args.autogenerate
    _, snapshot = _snapshot([args.path], args)
    if _report_problems(snapshot):
        return EXIT_USAGE
    state = _one_environment(snapshot, args.path)
    graph = state.graph
    if args.head:
        heads = graph.resolve(args.head)
        if len(heads) != 1:
            raise UsageError(f"--head {args.head}: {'ambiguous' if heads else 'no such revision'}")
    else:
        heads = graph.heads
        if len(heads) > 1:
            raise UsageError(f"multiple heads ({', '.join(sorted(heads))}): merge them or pass --head")
    upgrades = downgrades = imports = ""
    if args.autogenerate:
        m004 = [d for d in state.diagnostics if d.code == "M004"]
        if m004 and not state.differences:
            raise UsageError(m004[0].message)
        if state.differences:
            options = state.compare_options
            upgrades, downgrades, imports = render_migration(
                [d.op for d in state.differences], options.render_as_batch, options.dialect)
    # like `alembic revision`, the environment's script.py.mako is rendered (it is project
    # code: in a sandboxed child process); if that fails, Alembic's generic template
    new = render_revision(state.env, graph, args.message, list(heads), upgrades=upgrades, downgrades=downgrades,
                          imports=imports, trusted=True)
    if new.note:
        print(f"migration-lsp: {new.note}", file=sys.stderr)
    new.path.parent.mkdir(parents=True, exist_ok=True)
    with open(new.path, "x", encoding="utf-8") as fh:  # "x": never overwrite
        fh.write(new.text)
    print(f"Generating {relative(new.path)} ... done")
    return EXIT_OK


def cmd_sql(args: argparse.Namespace) -> int:
    """Each revision's upgrade SQL (Alembic's offline rendering), with PostgreSQL's locks."""
    from .features.op_hover import revision_sql, select_revisions
    from .pglocks import postgres_version

    args.no_import = True
    _, snapshot = _snapshot([args.path], args)
    if _report_problems(snapshot):
        return EXIT_USAGE
    state = _one_environment(snapshot, args.path)
    try:
        revs = select_revisions(state, args.revisions)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    dialect = args.dialect or state.env.dialect or "postgresql"
    version = args.postgres_version or postgres_version(getattr(state.env.settings, "postgres_version", None))
    if not (args.dialect or state.env.dialect):
        print("-- no dialect configured: SQL for PostgreSQL")
    for rev in revs:
        print(revision_sql(state, rev, dialect, version))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve()
    return EXIT_OK


# --------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="migration-lsp", description="Language server and linter for Alembic migrations.")
    parser.add_argument("--version", action="version", version=f"migration-lsp {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    check = sub.add_parser("check", help="report problems in the migrations under PATH")
    check.add_argument("paths", nargs="*", metavar="PATH")
    check.add_argument("--format", choices=["text", *CHECK_FORMATS], default="text")
    check.add_argument("--no-import", action="store_true", help="never import the project's models")
    check.add_argument("--select", help="comma-separated codes or prefixes to report (e.g. G,S001)")
    check.add_argument("--ignore", help="comma-separated codes or prefixes to leave out")
    check.add_argument("--no-cache", action="store_true",
                       help="neither read nor write the cache of per-revision results (in the user's cache folder)")
    check.add_argument("--exit-zero", action="store_true", help="exit 0 even when errors are found")
    check.add_argument("--base", metavar="REF", help="base branch for G011-G013 (default: origin/HEAD, "
                       "origin/main, origin/master, main, master)")
    check.add_argument("--changed", action="store_true",
                       help="report only what this branch adds or changes (against the base branch)")
    check.add_argument("--strict", action="store_true",
                       help="exit 1 when the models could not be compared with the migrations (drift not checked)")
    check.add_argument("--static", action="store_true",
                       help="no truth pass: do not run the migrations on a scratch database")
    check.add_argument("--database-url", metavar="URL",
                       help="run the truth pass on this server (a new database is created there and dropped; "
                            "default: SQLite temp file, embedded PostgreSQL with migration-lsp[postgres])")
    check.add_argument("--downgrades", choices=["all", "changed", "none"], default="all",
                       help="truth pass: downgrade each revision it runs one step and compare (default: all; "
                            "changed: only the revisions this branch adds or changes, against the base branch)")
    check.set_defaults(func=cmd_check)

    graph = sub.add_parser("graph", help="print the revision graph")
    graph.add_argument("path", nargs="?", default=".", metavar="PATH")
    graph.add_argument("--format", choices=list(GRAPH_FORMATS), default="mermaid")
    graph.set_defaults(func=cmd_graph)

    revision = sub.add_parser("revision", help="write a new revision file (never overwrites one)")
    revision.add_argument("path", nargs="?", default=".", metavar="PATH")
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--autogenerate", action="store_true", help="operations from the model changes")
    revision.add_argument("--head", help="revision to build on (default: the only head)")
    revision.set_defaults(func=cmd_revision)

    sql = sub.add_parser("sql", help="print each revision's upgrade SQL with the locks it takes (no database)")
    sql.add_argument("path", nargs="?", default=".", metavar="PATH")
    sql.add_argument("revisions", nargs="?", metavar="REV|RANGE", help="REV, or FROM:TO as for alembic upgrade")
    sql.add_argument("--dialect", help="render for this dialect (default: the environment's)")
    sql.add_argument("--postgres-version", type=int, choices=range(9, 19), metavar="MAJOR",
                     help="PostgreSQL major version for the lock model (default: 18)")
    sql.set_defaults(func=cmd_sql)

    serve = sub.add_parser("serve", help="run the language server on stdio")
    serve.add_argument("--stdio", action="store_true", help="accepted for clients that pass it (stdio is the default)")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    formats.reset()  # one run, one current directory
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        return args.func(args)
    except UsageError as exc:
        print(printable(f"migration-lsp: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except RevisionNotWritten as exc:
        print(printable(f"migration-lsp: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


def run() -> None:
    """The console script: main(), then leave without tearing the index down object by
    object (0.65 s of a first check of 5,000 revisions); everything is written by then."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `check | head`: the reader is gone, nothing more to say
        pass
    if "logging" in sys.modules:  # (imported only when something was logged: core.log)
        sys.modules["logging"].shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
