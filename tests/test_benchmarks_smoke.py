"""The benchmark scripts that `make bench` runs import, and the helper that confirms a truth
pass is under way (a process below the server using CPU) sees a real child. The benchmarks
themselves run in `make bench`, not here."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_truth_responsiveness_imports_and_sees_a_busy_child():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        bench = importlib.import_module("truth_responsiveness")
    finally:
        sys.path.remove(str(BENCHMARKS))
    # a parent that starts a grandchild burning CPU: both are found below the parent
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time\\nt = time.time()\\n"
        "while time.time() - t < 5: pass'])\n"
        "print(p.pid, flush=True)\n"
        "p.wait()\n")], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(parent.stdout.readline())
        found = bench.descendants_cpu(parent.pid)
        assert grandchild in found and parent.pid not in found
        assert bench.descendants_cpu(grandchild) == {}
    finally:
        subprocess.run(["kill", str(grandchild)], check=False)
        parent.wait(10)


def test_run_keeps_the_hand_written_sections_when_it_rewrites_the_results(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        run = importlib.import_module("run")
    finally:
        sys.path.remove(str(BENCHMARKS))
    results = tmp_path / "RESULTS.md"
    assert run.kept_sections(results) == ""
    results.write_text("# Benchmarks\n\n| old table |\n\n## Issue 13\n\nmeasured by hand\n\n## Issue 15\n\nmore\n")
    kept = run.kept_sections(results)
    assert kept == "\n## Issue 13\n\nmeasured by hand\n\n## Issue 15\n\nmore\n"
    assert "old table" not in kept
