"""The CLI's first check on two cores (engine/forked.py): a forked worker reads, keys and parses
the last part of an environment's files. It must give what the sequential path gives — the
same findings, graph and parsed headers, the same memo key, bad files included — fall back
to that path when the worker dies, raises or sends something else, and leave no process or
descriptor behind."""

from __future__ import annotations

import io
import os
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from conftest import MINIMAL_ENV_PY, MINIMAL_INI, leftovers, migration_text

from migration_lsp import cli, scripts
from migration_lsp.engine import Engine, forked

COUNT = 300  # the worker takes files[128:] (forked.split: a whole number of key pieces)
WORKER_START = 128


def _rev(n: int) -> str:
    return f"{n:012x}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A linear history with a second head, a broken reference, and in the worker's part:
    a file in another encoding, one not UTF-8, a header that needs the ast, a syntax error
    in the header, a FIFO named like a revision and (see _vanish) one deleted after discovery."""
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "alembic.ini").write_text(MINIMAL_INI)
    (tmp_path / "migrations" / "env.py").write_text(MINIMAL_ENV_PY)
    for n in range(COUNT):
        down = _rev(n - 1) if n else None
        if n == 200:
            down = _rev(150)  # a second head
        if n == 250:
            down = "0000deadbeef"  # G002
        text = migration_text(_rev(n), down, message=f"change {n}")
        if n == 140:
            text = text.replace(f"down_revision: Union[str, Sequence[str], None] = '{_rev(139)}'",
                                f"down_revision = (\n    '{_rev(139)}',\n)")  # not one line: the ast reads it
        path = versions / f"{n:04d}_{_rev(n)}.py"
        if n == 160:
            path.write_bytes(b"# -*- coding: latin-1 -*-\n" + text.replace("change", "\xe9t\xe9").encode("latin-1"))
        elif n == 170:
            path.write_bytes(text.encode() + b"\n# \xff\xfe not UTF-8\n")
        elif n == 180:
            path.write_text(text.replace(f"revision: str = '{_rev(n)}'", f"revision: str = '{_rev(n)}"))
        else:
            path.write_text(text)
    os.mkfifo(versions / f"{COUNT:04d}_fifo.py")
    return tmp_path


def _vanish(project: Path) -> None:
    (project / "migrations" / "versions" / f"0190_{_rev(190)}.py").unlink()


def _header(script: scripts.MigrationScript) -> tuple:
    return (script.path, script.text, script.revision, script.down_revision, script.branch_labels, script.depends_on,
            script.doc, script.imports, script.error, script.lines, script.upgrade is None, script.syntax_error)


@pytest.fixture
def workers(monkeypatch) -> list:
    """Every worker started (a small project is worth one here)."""
    monkeypatch.setattr(forked, "FORK_MIN", 100)
    started: list = []
    real = forked.Worker.start_for.__func__

    def counted(cls, files):
        worker = real(cls, files)
        started.append(worker)
        return worker

    monkeypatch.setattr(forked.Worker, "start_for", classmethod(counted))
    return started


def _engine(project: Path, monkeypatch, cache: Path, fork: bool = False) -> Engine:
    monkeypatch.setenv("MIGRATION_LSP_CACHE_DIR", str(cache))  # (read when the engine is made)
    return Engine([project], {"select": ["G"]}, trusted=False, memo=True, fork=fork)


def test_the_worker_gives_the_sequential_answer(project: Path, tmp_path: Path, monkeypatch, workers):
    before = leftovers()
    sequential = _engine(project, monkeypatch, tmp_path / "one")
    two = _engine(project, monkeypatch, tmp_path / "two", fork=True)
    _vanish(project)  # between discovery and the read, for both
    expected, found = sequential.report(), two.report()
    assert len(workers) == 1 and workers[0] is not None and workers[0].start == WORKER_START  # (fork=False: none)
    assert found.diagnostics == expected.diagnostics
    assert {"G001", "G002", "G010"} <= {d.code for d in found.diagnostics}
    g010 = {d.path.name: d.message for d in found.diagnostics if d.code == "G010"}
    assert "not a regular file" in g010[f"{COUNT:04d}_fifo.py"] and f"0190_{_rev(190)}.py" in g010
    (a,), (b,) = sequential._states.values(), two._states.values()
    assert [_header(s) for s in a.scripts] == [_header(s) for s in b.scripts]
    assert a.graph.heads == b.graph.heads and a.graph.by_id.keys() == b.graph.by_id.keys()
    assert b.scripts[140].down_revision.values == (_rev(139),) and "\xe9t\xe9" in b.scripts[160].message
    assert b.scripts[180].error  # (the parent parsed the text the worker sent)
    assert leftovers() == before


def test_the_memo_key_does_not_depend_on_who_read_a_file(project: Path, tmp_path: Path, monkeypatch, workers):
    """A sequential check finds the report a forked one stored, and the other way round."""
    for first, then in ((True, False), (False, True)):
        cache = tmp_path / f"cache-{first}"
        made = _engine(project, monkeypatch, cache, fork=first)
        expected = made.report().diagnostics
        made.save_cache()
        again = _engine(project, monkeypatch, cache, fork=then)
        assert again.report().diagnostics == expected and again.builds == 0 and made.builds == 1
    assert len(workers) == 2 and all(w is not None for w in workers)


def _broken(how: str):
    def work(files, fd):
        if how == "hang":
            time.sleep(3600)
        if how == "exit":
            os._exit(3)
        if how == "raise":
            raise RuntimeError("worker bug")
        forked.send(fd, [b"x" * 32] * -(-len(files) // forked.KEY_CHUNK))  # the right shape
        if how == "die after the key":
            os._exit(0)
        if how == "hang after the key":
            time.sleep(3600)
        if how == "garbage":
            os.write(fd, (100).to_bytes(8, "little") + b"\x00" * 10)  # short
        if how == "wrong shape":
            forked.send(fd, [("text",)] * len(files))
    return work


@pytest.mark.parametrize("how", ["exit", "raise", "die after the key", "garbage", "wrong shape", "hang",
                                 "hang after the key"])
def test_a_failing_worker_costs_only_time(project: Path, tmp_path: Path, monkeypatch, workers, how: str):
    """(A worker that hangs is given 0.5 s here: past its deadline it is killed, reaped, and
    its part done here.)"""
    expected = _engine(project, monkeypatch, tmp_path / "seq").report().diagnostics
    before = leftovers()
    monkeypatch.setattr(forked, "work", _broken(how))
    monkeypatch.setattr(forked, "TIMEOUT", 0.5)
    monkeypatch.setattr(forked, "PER_FILE", 0.0)
    engine = _engine(project, monkeypatch, tmp_path / "fork", fork=True)
    assert engine.report().diagnostics == expected
    assert workers and workers[0] is not None and workers[0].pid == -1 and workers[0].fd == -1
    assert leftovers() == before
    if how in ("die after the key", "garbage", "wrong shape", "hang after the key"):
        # its key pieces were wrong: the files were read again here, and the key is theirs
        engine.save_cache()
        again = _engine(project, monkeypatch, tmp_path / "fork")
        assert again.report().diagnostics == expected and again.builds == 0


def test_the_cli_forks_and_prints_the_same(project: Path, tmp_path: Path, monkeypatch, workers):
    outputs = []
    for n, fork_min in enumerate((100, 10**9)):
        monkeypatch.setattr(forked, "FORK_MIN", fork_min)
        monkeypatch.setenv("MIGRATION_LSP_CACHE_DIR", str(tmp_path / f"c{n}"))
        out = io.StringIO()
        with redirect_stdout(out):
            code = cli.main(["check", "--no-import", "--select", "G", "--format", "json", str(project)])
        outputs.append((code, out.getvalue()))
    assert workers[0] is not None and workers[1] is None
    assert outputs[0] == outputs[1] and '"G002"' in outputs[0][1]


def test_no_fork_beside_another_thread():
    assert forked.available()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not forked.available()
    finally:
        stop.set()
        thread.join()
    assert forked.available()


def test_plain_scripts_come_back_equal():
    """scripts.to_plain / from_plain on every template variant the fast-path tests use (and
    their \\r\\n, \\r forms): the records built from the plain data equal the parsed ones,
    bodies (parsed on first use from the same place) included."""
    import marshal

    from test_scripts_fast import MERGE, STANDARD, TEMPLATE_VARIANTS, P, snapshot

    sent = 0
    for base in (STANDARD, MERGE):
        for old, new in TEMPLATE_VARIANTS:
            text = base.replace(old, new, 1)
            for variant in (text, text.replace("\n", "\r\n"), text.replace("\n", "\r")):
                parsed = scripts.parse_script(P, variant)
                plain = scripts.to_plain(parsed)
                if plain is None:
                    assert parsed.functions is not None or parsed.error is not None
                    continue
                sent += 1
                back = scripts.from_plain(P, marshal.loads(marshal.dumps(plain)))
                assert snapshot(back) == snapshot(parsed)
    assert sent > 300  # (nearly every variant is a header-only script)
    with pytest.raises((TypeError, ValueError)):
        scripts.from_plain(P, ("text", 3))
