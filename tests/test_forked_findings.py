"""The CLI's first full check on two cores (engine/forked_findings.py): a forked worker computes
the D/S findings of the last part of the revisions. The output must be what one process prints
(and what the cache gives back on a second run); this process must not judge the worker's
revisions again; any failure of the worker — it died, raised, sent something else, could not
judge one revision — falls back to this process with the same answer, and no process or
descriptor is left behind."""

from __future__ import annotations

import importlib.util
import io
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from conftest import REPO_ROOT, leftovers

from migration_lsp import cli
from migration_lsp.engine import forked, forked_findings
from migration_lsp.engine.schema_pass import SchemaPass

REVISIONS = 120


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A benchmarks/generate.py project (a branch point and a merge, 190 findings of many families)."""
    spec = importlib.util.spec_from_file_location("bench_generate", REPO_ROOT / "benchmarks" / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_generate", generate)
    spec.loader.exec_module(generate)
    root = tmp_path_factory.mktemp("fc") / "gen"
    generate.generate(root, REVISIONS, 3)
    return root


@pytest.fixture
def workers(monkeypatch) -> list:
    """Every findings worker started, with what collect() took in (from 20 revisions to compute)."""
    monkeypatch.setattr(forked_findings, "FORK_MIN", 20)
    started: list = []
    real_fork = forked_findings.FindingsWorker.fork.__func__
    real_collect = forked_findings.FindingsWorker.collect

    def fork(cls, *args):
        worker = real_fork(cls, *args)
        started.append([worker, None])
        return worker

    def collect(self, *args):
        took = real_collect(self, *args)
        for entry in started:
            if entry[0] is self and entry[1] is None:
                entry[1] = took
        return took

    monkeypatch.setattr(forked_findings.FindingsWorker, "fork", classmethod(fork))
    monkeypatch.setattr(forked_findings.FindingsWorker, "collect", collect)
    return started


@pytest.fixture
def judged(monkeypatch) -> list:
    """The revisions judged by this process (SchemaPass.rules; the worker's calls stay in its copy)."""
    found: list = []
    real = SchemaPass.rules
    me = os.getpid()

    def rules(self, script, rev, *args):
        if os.getpid() == me:
            found.append(rev)
        return real(self, script, rev, *args)

    monkeypatch.setattr(SchemaPass, "rules", rules)
    return found


def _check(project: Path, cache: Path, monkeypatch) -> tuple[int, str]:
    monkeypatch.setenv("MIGRATION_LSP_CACHE_DIR", str(cache))
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["check", "--no-import", "--format", "json", str(project)])
    return code, out.getvalue()


@pytest.fixture
def expected(project: Path, tmp_path: Path, monkeypatch) -> tuple[int, str]:
    """What one process prints (no worker: FORK_MIN beyond the project)."""
    monkeypatch.setattr(forked_findings, "FORK_MIN", 10**9)
    return _check(project, tmp_path / "one", monkeypatch)


def test_the_worker_gives_the_sequential_answer(project: Path, tmp_path: Path, monkeypatch, expected, workers, judged):
    assert '"S015"' in expected[1] and '"D001"' in expected[1] and expected[1].count('"code"') > 150
    before = leftovers()
    found = _check(project, tmp_path / "two", monkeypatch)
    assert found == expected
    (worker, took), = workers
    # the worker took the last ~34 % and judged them all; this process judged only the rest
    assert len(worker.revs) == REVISIONS - round(REVISIONS * forked_findings.SHARE) and took == len(worker.revs)
    assert len(judged) == REVISIONS - len(worker.revs) and not set(judged) & worker.revs
    assert worker.pid == -1 and worker.fd == -1
    assert leftovers() == before
    # the worker's findings went into the cache as this process's would have: a second run reads them all
    judged.clear()
    assert _check(project, tmp_path / "two", monkeypatch) == expected and judged == [] and len(workers) == 1


def _broken(how: str):
    def work(schema, env, graph, keys, revs, replay_of, options, env_py, fd):
        if how == "exit":
            os._exit(3)
        if how == "raise":
            raise RuntimeError("worker bug")
        if how == "garbage":
            os.write(fd, (100).to_bytes(8, "little") + b"\x00" * 10)  # short
        if how == "wrong shape":
            forked.send(fd, [(rev, "not findings") for rev in revs])
        if how == "another revision":
            forked.send(fd, [("0000deadbeef", [])])
        if how == "die after sending":
            real_work(schema, env, graph, keys, revs, replay_of, options, env_py, fd)
            os._exit(5)
    real_work = forked_findings.work
    return work


@pytest.mark.parametrize("how", ["exit", "raise", "garbage", "wrong shape", "another revision", "die after sending"])
def test_a_failing_worker_costs_only_time(project: Path, tmp_path: Path, monkeypatch, expected, workers, judged,
                                          how: str):
    before = leftovers()
    monkeypatch.setattr(forked_findings, "work", _broken(how))
    assert _check(project, tmp_path / "two", monkeypatch) == expected
    (worker, took), = workers
    assert took == 0 and len(judged) == REVISIONS  # this process judged every revision itself
    assert worker.pid == -1 and worker.fd == -1
    assert leftovers() == before


def test_a_revision_the_worker_cannot_judge_is_judged_here(project: Path, tmp_path: Path, monkeypatch, expected,
                                                           workers, judged):
    """A bug of ours raising in the worker on one revision: left out, this process judges it
    (and would say so the way it always does)."""
    me, real = os.getpid(), SchemaPass.rules
    victim: list[str] = []

    def rules(self, script, rev, *args):
        if os.getpid() != me and not victim:
            victim.append(rev)  # (the worker's copy)
            raise RuntimeError("a bug of ours, in the worker only")
        return real(self, script, rev, *args)

    monkeypatch.setattr(SchemaPass, "rules", rules)
    assert _check(project, tmp_path / "two", monkeypatch) == expected
    (worker, took), = workers
    assert took == len(worker.revs) - 1
    assert len(judged) == REVISIONS - len(worker.revs) + 1  # (the wrapper beneath counts this process's calls)


def test_no_worker_beside_another_thread_or_for_a_warm_cache(project: Path, tmp_path: Path, monkeypatch, expected,
                                                             workers):
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert _check(project, tmp_path / "two", monkeypatch) == expected
    finally:
        stop.set()
        thread.join()
    assert [w for w, _ in workers] == [None]  # asked, declined: a fork copies one thread
    assert _check(project, tmp_path / "one", monkeypatch) == expected  # (expected's cache: nothing to compute)
    assert len(workers) == 1  # not even asked


def test_no_worker_on_one_core(project: Path, tmp_path: Path, monkeypatch, expected, workers, judged):
    """With one CPU to run on (affinity, a cgroup quota) the worker's replay of this process's
    part would be pure cost: no fork, every revision judged here."""
    monkeypatch.setattr(forked_findings, "cores", lambda: 1)
    assert _check(project, tmp_path / "two", monkeypatch) == expected
    assert [w for w, _ in workers] == [None] and len(judged) == REVISIONS


def test_cores_reads_the_affinity():
    assert 1 <= forked_findings.cores() <= len(os.sched_getaffinity(0))
