"""Benchmark runner: `make bench` (or `python benchmarks/run.py [--sizes "1000 5000 20000"]`).

For each size it generates (once, cached by size + seed) a realistic Alembic project with
benchmarks/generate.py and measures, in one run:

* cold `migration-lsp check --no-import` (subprocess, empty cache directory) and a warm one
  (same cache directory again), next to `alembic heads` (subprocess, in the project
  directory; first run without .pyc files, then with them) -> ratio heads / check;
* the language server `migration-lsp serve` through a real stdio client (pygls's
  LanguageClient): initialize -> first publishDiagnostics for the opened head file, and
  didOpen -> that notification; then didChange -> publishDiagnostics latency (p50/p95) over
  edits that alternately break (typo) and repair the `down_revision` of an open
  mid-history revision, in two series (--pauses): 0.1 s between edits (typing) and 1.5 s
  (the next edit may land while the server's debounced full pass runs); codeAction and
  hover right after an edit and while the full pass it starts runs; for each, next to the
  wall time, the CPU time of the server's event-loop thread over it (/proc schedstat: what
  a loaded machine does not change); the server's peak RSS (VmHWM) before shutdown;
* a full schema replay in-process (separate Python process): `Replay(graph).at_heads()`
  cold, again with `previous=` (warm), and after a one-character edit of the mid-history
  file; plus the engine's own cold snapshot and set_buffer + snapshot after that edit;
* peak RSS of every subprocess (wait4 rusage).

It prints a Markdown table (metrics x sizes, the 20k/5k ratio, the issue's targets) and
rewrites benchmarks/RESULTS.md with it and a description of the machine. Every
measurement has a timeout (--timeout, default 600 s) so the run never hangs; what did not
finish is shown as "timeout".
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
BIN = Path(sys.executable).parent
MiB = 1024 * 1024
PAUSES = [0.1, 1.5]
QUIET = 2.5  # seconds without diagnostics that count as "the server is idle"

sys.path.insert(0, str(HERE))
import generate  # noqa: E402


# ----------------------------------------------------------------------------- helpers


def tool(name: str, module: str) -> list[str]:
    exe = BIN / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


@dataclass
class Run:
    seconds: float | None  # None: timed out
    rss: int | None  # peak RSS in bytes
    code: int | None
    output: str = ""


def run_measured(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> Run:
    """Wall time and peak RSS (wait4 rusage of exactly this child) of one command. Python may
    write .pyc files (PYTHONDONTWRITEBYTECODE is dropped, as in a user's shell): `alembic
    heads` is measured with the migration files' .pyc present, as the table says."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()[-4000:].decode("utf-8", "replace")
    if killed.is_set():
        return Run(None, usage.ru_maxrss * 1024, None, text)
    return Run(elapsed, usage.ru_maxrss * 1024, proc.returncode, text)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def loop_cpu(pid: int) -> float | None:
    """CPU seconds the process's main thread (the server's event loop) has run so far
    (/proc schedstat, nanoseconds): the difference over an edit is the work the edit cost
    the loop, which the machine's load does not change (wall time adds the wait for a core)."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- projects


def project(cache: Path, n: int, seed: int) -> tuple[Path, dict]:
    """The generated project for (n, seed), generated once and reused."""
    root = cache / f"v{generate.GENERATOR_VERSION}-n{n}-s{seed}"
    manifest = root / ".bench.json"
    if manifest.exists():
        return root, json.loads(manifest.read_text())
    log(f"generating {n} revisions (seed {seed}) in {root}")
    partial = cache / f".partial-{root.name}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    started = time.perf_counter()
    generate.generate(partial, n, seed)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    log(f"generated in {time.perf_counter() - started:.1f} s")
    return root, json.loads(manifest.read_text())


def typo(text: str, wrong_ids: set[str]) -> tuple[int, int, str, str]:
    """(line, column, original char, typo char) of the last character of the id inside
    `down_revision = '...'`; the typo makes an id that exists nowhere."""
    for i, line in enumerate(text.splitlines()):
        m = re.match(r"""down_revision\b[^=]*=\s*(['"])([0-9a-f]+)\1""", line)
        if m:
            col = m.end(2) - 1
            original = line[col]
            for c in "0123456789abcdef":
                if c != original and m.group(2)[:-1] + c not in wrong_ids:
                    return i, col, original, c
    raise ValueError("no down_revision string in the mid-history file")


# ----------------------------------------------------------------------------- CLI


def measure_cli(root: Path, repeat: int, timeout: float, scratch: Path) -> dict:
    res: dict = {}
    check = tool("migration-lsp", "migration_lsp") + ["check", "--no-import", str(root)]
    heads = tool("alembic", "alembic") + ["heads"]
    cold: list[float] = []
    warm: list[float] = []
    hot: list[float] = []
    rss_check: list[int] = []
    rss_heads: list[int] = []

    def env_with(cache_home: Path) -> dict:
        env = dict(os.environ)
        env["XDG_CACHE_HOME"] = str(cache_home)  # the persistent cache goes here: cold = empty
        return env

    # alembic heads, first run: no .pyc of the migration files yet
    for d in root.rglob("__pycache__"):
        shutil.rmtree(d, ignore_errors=True)
    r = run_measured(heads, root, timeout)
    res["heads_first"] = r.seconds
    if r.rss:
        rss_heads.append(r.rss)
    if r.seconds is not None and "(head)" not in r.output:
        log(f"alembic heads printed no head:\n{r.output}")
    heads_lines = [ln for ln in r.output.splitlines() if "(head)" in ln]
    res["heads_count"] = len(heads_lines)

    for i in range(repeat):
        cache_home = scratch / f"xdg-cache-{i}"
        shutil.rmtree(cache_home, ignore_errors=True)
        cache_home.mkdir(parents=True)
        r = run_measured(check, root, timeout, env_with(cache_home))
        if r.seconds is None:
            log("check (cold) timed out")
            cold = []
            res["check_timeout"] = True
            break
        cold.append(r.seconds)
        rss_check.append(r.rss or 0)
        res["check_exit"] = r.code
        res["check_tail"] = r.output.strip().splitlines()[-1] if r.output.strip() else ""
        log(f"check cold #{i + 1}: {r.seconds:.2f} s (exit {r.code}; {res['check_tail'][:90]})")
        w = run_measured(check, root, timeout, env_with(cache_home))
        if w.seconds is not None:
            warm.append(w.seconds)
            rss_check.append(w.rss or 0)
            log(f"check warm #{i + 1}: {w.seconds:.2f} s")
        h = run_measured(heads, root, timeout)
        if h.seconds is not None:
            hot.append(h.seconds)
            rss_heads.append(h.rss or 0)
            log(f"alembic heads #{i + 1}: {h.seconds:.2f} s")
        if r.seconds > 60:  # slow: one sample is all the time we can spend
            break
    # the graph-only pre-commit check ("one head"), empty cache: no schema replay, no models
    select: list[float] = []
    for i in range(repeat):
        cache_home = scratch / f"xdg-cache-select-{i}"
        shutil.rmtree(cache_home, ignore_errors=True)
        cache_home.mkdir(parents=True)
        r = run_measured(check + ["--select", "G"], root, timeout, env_with(cache_home))
        if r.seconds is None:
            break
        select.append(r.seconds)
        log(f"check --select G cold #{i + 1}: {r.seconds:.2f} s")
    res["select_g_cold"] = median(select)
    res["check_cold"] = median(cold)
    res["check_warm"] = median(warm)
    res["heads"] = median(hot)
    res["check_rss"] = max(rss_check) if rss_check else None
    res["heads_rss"] = max(rss_heads) if rss_heads else None
    res["samples"] = len(cold)
    if res["check_cold"] and res["heads"]:
        res["ratio"] = res["heads"] / res["check_cold"]
    if res["check_warm"] and res["heads"]:
        res["ratio_warm"] = res["heads"] / res["check_warm"]
    if res["select_g_cold"] and res["heads"]:
        res["ratio_select_g"] = res["heads"] / res["select_g_cold"]
    return res


# ----------------------------------------------------------------------------- server


async def measure_requests(client, res: dict, uri: str, text: str, line: int, col: int, version: int, edits: int,
                           timeout: float, pid: int = 0) -> int:
    """codeAction (over the whole file: every diagnostic's fixes) and hover (the id in
    down_revision) latencies, right after an edit and while the full pass it starts runs.
    Each edit changes a comment at the end of the mid-history file, a text never seen before:
    the revision keys of the file and of everything above it change, so the full pass (it
    starts 1 s after the edit, server.FULL_PASS_DELAY) checks and replays half the history
    again; requests are sent every 50 ms for 1 s from 1.05 s after the edit."""
    from lsprotocol import types as T

    doc = T.TextDocumentIdentifier(uri=uri)
    last = text.count("\n")
    end = T.Position(last, len(text.split("\n")[-1]))
    samples: dict[str, list[float]] = {k: [] for k in ("action_after", "hover_after", "action_during", "hover_during")}
    cpu: dict[str, list[float]] = {k: [] for k in samples}

    async def timed(key: str, request) -> None:
        c0 = loop_cpu(pid)
        t0 = time.perf_counter()
        await asyncio.wait_for(request, timeout)
        samples[key].append(time.perf_counter() - t0)
        c1 = loop_cpu(pid)
        if c0 is not None and c1 is not None:
            cpu[key].append(c1 - c0)

    def action():
        return client.text_document_code_action_async(T.CodeActionParams(
            text_document=doc, range=T.Range(T.Position(0, 0), end), context=T.CodeActionContext(diagnostics=[])))

    def hover():
        return client.text_document_hover_async(T.HoverParams(text_document=doc, position=T.Position(line, col)))

    for i in range(edits):
        version += 1
        client.text_document_did_change(T.DidChangeTextDocumentParams(
            text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[T.TextDocumentContentChangeWholeDocument(text=f"{text}\n# edit {i} {time.time_ns()}\n")]))
        await timed("action_after", action())
        await timed("hover_after", hover())
        await asyncio.sleep(1.05)
        stop = time.perf_counter() + 1.0
        while time.perf_counter() < stop:
            await timed("action_during", action())
            await timed("hover_during", hover())
            await asyncio.sleep(0.05)
        log(f"server: requests after edit {i + 1}: codeAction {samples['action_after'][-1] * 1000:.1f} ms, "
            f"max during the pass {max(samples['action_during']) * 1000:.1f} ms")
    for key, values in samples.items():
        res[f"{key}_p95"] = percentile(values, 95)
        res[f"{key}_max"] = max(values) if values else None
        res[f"{key}_n"] = len(values)
        res[f"{key}_cpu_p95"] = percentile(cpu[key], 95)
        res[f"{key}_cpu_max"] = max(cpu[key]) if cpu[key] else None
    # put the file back (the edits end with the original text)
    version += 1
    client.text_document_did_change(T.DidChangeTextDocumentParams(
        text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[T.TextDocumentContentChangeWholeDocument(text=text)]))
    return version


async def measure_server(root: Path, manifest: dict, edits: int, timeout: float, pauses: list[float],
                         scratch: Path, request_edits: int = 8) -> dict:
    from lsprotocol import types as T
    from pygls.lsp.client import LanguageClient

    res: dict = {}
    client = LanguageClient("migration-lsp-bench", "1")
    waiters: list[tuple[str, object, asyncio.Future]] = []
    logs: list[str] = []
    counts = {"publish": 0}
    last_publish = [time.perf_counter()]

    @client.feature(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(ls, params: T.PublishDiagnosticsParams) -> None:
        now = time.perf_counter()
        counts["publish"] += 1
        if os.environ.get("BENCH_DEBUG"):
            log(f"publishDiagnostics {params.uri} {len(params.diagnostics)}")
        last_publish[0] = now
        for w in list(waiters):
            uri, pred, fut = w
            if uri == params.uri and not fut.done() and pred(params.diagnostics):
                fut.set_result(now)
                waiters.remove(w)

    @client.feature(T.WINDOW_LOG_MESSAGE)
    def on_log(ls, params: T.LogMessageParams) -> None:
        logs.append(params.message)
        if os.environ.get("BENCH_DEBUG"):
            log(f"server log: {params.message[:300]}")

    @client.feature(T.WINDOW_SHOW_MESSAGE)
    def on_show(ls, params: T.ShowMessageParams) -> None:
        logs.append(params.message)

    def expect(uri: str, pred) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        waiters.append((uri, pred, fut))
        return fut

    cache_home = scratch / "xdg-cache-server"
    shutil.rmtree(cache_home, ignore_errors=True)
    cache_home.mkdir(parents=True)
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    cmd = tool("migration-lsp", "migration_lsp") + ["serve"]
    await client.start_io(cmd[0], *cmd[1:], cwd=str(root), env=env)
    server = client._server
    pid = server.pid

    async def drain() -> None:  # pygls pipes stderr but never reads it: a full pipe would block the server
        keep = os.environ.get("BENCH_SERVER_STDERR")  # a file to keep it in (e.g. MIGRATION_LSP_WATCHDOG's reports)
        with open(keep, "ab") if keep else open(os.devnull, "wb") as sink:
            while server.stderr and (chunk := await server.stderr.read(65536)):
                sink.write(chunk)
                sink.flush()

    drainer = asyncio.ensure_future(drain())
    root_uri = root.resolve().as_uri()
    head = (root / manifest["head"]["path"]).resolve()
    mid = (root / manifest["mid"]["path"]).resolve()
    head_uri, mid_uri = head.as_uri(), mid.as_uri()
    try:
        caps = T.ClientCapabilities(
            text_document=T.TextDocumentClientCapabilities(
                synchronization=T.TextDocumentSyncClientCapabilities(did_save=True),
                publish_diagnostics=T.PublishDiagnosticsClientCapabilities(
                    related_information=True, version_support=True, code_description_support=True)),
            general=T.GeneralClientCapabilities(position_encodings=[T.PositionEncodingKind.Utf16]),
        )
        t_init = time.perf_counter()
        await asyncio.wait_for(client.initialize_async(T.InitializeParams(
            capabilities=caps, process_id=os.getpid(), root_uri=root_uri,
            workspace_folders=[T.WorkspaceFolder(uri=root_uri, name=root.name)])), timeout)
        res["initialize_response"] = time.perf_counter() - t_init
        client.initialized(T.InitializedParams())
        head_first = expect(head_uri, lambda diags: True)
        t_open = time.perf_counter()
        client.text_document_did_open(T.DidOpenTextDocumentParams(T.TextDocumentItem(
            uri=head_uri, language_id="python", version=1, text=head.read_text(encoding="utf-8"))))
        try:
            t_diag = await asyncio.wait_for(head_first, timeout)
            res["open_to_diag"] = t_diag - t_open
            res["init_to_diag"] = t_diag - t_init
            log(f"server: first diagnostics for the head {res['open_to_diag']:.2f} s after didOpen "
                f"({res['init_to_diag']:.2f} s after initialize)")
        except asyncio.TimeoutError:
            res["open_timeout"] = True
            log("server: no diagnostics for the head file (timeout)")
            return res

        async def ping(uri: str) -> None:
            await asyncio.wait_for(client.text_document_document_symbol_async(
                T.DocumentSymbolParams(text_document=T.TextDocumentIdentifier(uri=uri))), timeout)

        async def barrier(uri: str) -> None:
            """The server is idle: everything sent before is handled, no diagnostics for
            QUIET seconds, and whatever it scheduled meanwhile (a delayed full pass on its
            event loop) has run: a request sent after the quiet spell is answered after it."""
            sent = time.perf_counter()
            await ping(uri)
            deadline = time.perf_counter() + timeout
            while time.perf_counter() - max(last_publish[0], sent) < QUIET and time.perf_counter() < deadline:
                await asyncio.sleep(0.1)
            await ping(uri)

        await barrier(head_uri)  # models loaded (or not), everything published
        mid_text = mid.read_text(encoding="utf-8")
        line, col, original, wrong = typo(mid_text, set(manifest["ids"]))
        client.text_document_did_open(T.DidOpenTextDocumentParams(T.TextDocumentItem(
            uri=mid_uri, language_id="python", version=1, text=mid_text)))
        await barrier(mid_uri)

        def has_g002(diags) -> bool:
            return any(str(d.code) == "G002" for d in diags)

        version = 1
        for pause in pauses:
            latencies: list[float] = []
            cpu: list[float] = []
            spent = 0.0
            for i in range(edits):
                broken = i % 2 == 0
                version += 1
                fut = expect(mid_uri, has_g002 if broken else (lambda d: not has_g002(d)))
                change = T.TextDocumentContentChangePartial(
                    range=T.Range(T.Position(line, col), T.Position(line, col + 1)),
                    text=wrong if broken else original)
                c0 = loop_cpu(pid)
                t0 = time.perf_counter()
                client.text_document_did_change(T.DidChangeTextDocumentParams(
                    text_document=T.VersionedTextDocumentIdentifier(uri=mid_uri, version=version),
                    content_changes=[change]))
                try:
                    t1 = await asyncio.wait_for(fut, timeout)
                except asyncio.TimeoutError:
                    res[f"edit_timeout@{pause}"] = True
                    log(f"server: edit {i + 1} got no matching diagnostics within {timeout:.0f} s")
                    return res
                c1 = loop_cpu(pid)
                latencies.append(t1 - t0)
                if c0 is not None and c1 is not None:
                    cpu.append(c1 - c0)
                spent += t1 - t0 + pause
                if i < 2 or (i + 1) % 12 == 0 or t1 - t0 > 0.05:
                    log(f"server: pause {pause} s, edit {i + 1} ({'break' if broken else 'repair'}): "
                        f"{(t1 - t0) * 1000:.1f} ms")
                if spent > timeout and len(latencies) >= 2 and not broken:
                    log(f"server: edits take too long; stopping after {len(latencies)}")
                    break
                await asyncio.sleep(pause)
            res[f"edits@{pause}"] = len(latencies)
            res[f"edit_p50@{pause}"] = percentile(latencies, 50)
            res[f"edit_p95@{pause}"] = percentile(latencies, 95)
            res[f"edit_max@{pause}"] = max(latencies) if latencies else None
            res[f"latencies_ms@{pause}"] = [round(x * 1000, 2) for x in latencies]
            res[f"edit_cpu_p50@{pause}"] = percentile(cpu, 50)
            res[f"edit_cpu_p95@{pause}"] = percentile(cpu, 95)
            res[f"edit_cpu_max@{pause}"] = max(cpu) if cpu else None
            # the edits end repaired; let a pending full pass run before the next regime
            await barrier(mid_uri)
        version = await measure_requests(client, res, mid_uri, mid_text, line, col, version, request_edits, timeout,
                                         pid)
        await barrier(mid_uri)
        res["publishes"] = counts["publish"]
        status = Path(f"/proc/{pid}/status").read_text()
        for key in ("VmHWM", "VmRSS"):
            m = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
            if m:
                res[key] = int(m.group(1)) * 1024
        res["index_log"] = next((m for m in logs if "indexed in" in m), None)
        return res
    finally:
        try:
            await asyncio.wait_for(client.shutdown_async(None), 30)
            client.exit(None)
            await asyncio.wait_for(server.wait(), 10)
        except Exception:
            pass
        if server.returncode is None:
            server.kill()
            await server.wait()
        drainer.cancel()
        try:
            await asyncio.wait_for(client.stop(), 10)
        except Exception:
            pass


# ----------------------------------------------------------------------------- replay (in a child)


def replay_child(root: Path, mid_rel: str, mode: str) -> dict:
    """Runs in its own process (`run.py --_replay`): in-process engine and replay timings."""
    import inspect
    import resource

    from migration_lsp.replay import Replay

    out: dict = {"mode": mode}
    root = root.resolve()
    manifest = json.loads((root / ".bench.json").read_text())
    mid = (root / mid_rel).resolve()
    text = mid.read_text(encoding="utf-8")
    line, col, _, wrong = typo(text, set(manifest["ids"]))
    lines = text.splitlines(keepends=True)
    lines[line] = lines[line][:col] + wrong + lines[line][col + 1:]
    broken = "".join(lines)
    edited = text.replace('"""', '""" ', 1)  # one character, in the message line of the docstring
    from migration_lsp.core import paused_gc
    from migration_lsp.engine import read_source
    from migration_lsp.graph import RevisionGraph
    from migration_lsp.project import discover
    from migration_lsp.scripts import parse_script

    # the replay alone, cold: from scripts parsed header-only (as the engine holds them), so
    # the time includes parsing and evaluating every upgrade(); the collector paused as the
    # engine's front ends pause it
    env = discover(root, {}).environments[0]
    t = time.perf_counter()
    scripts = {p: parse_script(p, read_source(p) or "") for p in env.files}
    graph = RevisionGraph(tuple(scripts.values()))
    out["parse_and_graph"] = time.perf_counter() - t
    out["revisions"] = len(graph.by_id)
    with paused_gc():
        r = Replay(graph)
        t = time.perf_counter()
        r.at_heads()
        out["replay_cold"] = time.perf_counter() - t
    if mode == "engine":
        from migration_lsp.engine import Engine

        t = time.perf_counter()
        e = Engine([root], cache=False)  # the engine's own cost: no persistent cache
        with paused_gc(freeze=True):  # as the server runs it
            e.snapshot()
        out["engine_snapshot"] = time.perf_counter() - t
    r2 = Replay(graph, previous=r)
    t = time.perf_counter()
    r2.at_heads()
    out["replay_warm"] = time.perf_counter() - t
    if mode == "engine":
        has_quick = "quick" in inspect.signature(e.snapshot).parameters
        for name, new_text in (("break", broken), ("repair", text)):
            e.set_buffer(mid, new_text)
            if has_quick:
                t = time.perf_counter()
                e.snapshot(quick=True)
                out[f"engine_{name}_quick"] = time.perf_counter() - t
            t = time.perf_counter()
            with paused_gc(freeze=True):
                e.snapshot()
            out[f"engine_{name}_full"] = time.perf_counter() - t
        out.update(request_cpu(e, mid, text))
    scripts[mid] = parse_script(mid, edited)
    graph2 = RevisionGraph(tuple(scripts.values()))
    with paused_gc():
        r3 = Replay(graph2, previous=r2)
        t = time.perf_counter()
        r3.at_heads()
        out["replay_after_edit"] = time.perf_counter() - t
    out["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def request_cpu(engine, mid: Path, text: str, edits: int = 6) -> dict:
    """What bounds a request's latency in the server, in CPU time of this thread (the load
    of the machine does not change it): the quick snapshot after an edit, codeAction over
    the whole file and hover, and the longest step of the full pass that follows (a request
    arriving during the pass waits at most for one step and the slice, server.SLICE_SECONDS)."""
    from lsprotocol import types as T

    from migration_lsp.core import Span, paused_gc
    from migration_lsp.features import Locator
    from migration_lsp.features.actions import EditSupport, code_actions
    from migration_lsp.features.hover import hover

    clock = time.thread_time
    support = EditSupport(True, True, True, True)
    worst = {"cpu_quick": 0.0, "cpu_action": 0.0, "cpu_hover": 0.0, "cpu_step": 0.0}
    line = next(n for n, ln in enumerate(text.splitlines()) if ln.startswith("down_revision"))
    for i in range(edits):
        engine.set_buffer(mid, f"{text}\n# edit {i} {time.time_ns()}\n")  # a text never seen: a real pass
        t = clock()
        snap = engine.snapshot(quick=True)
        worst["cpu_quick"] = max(worst["cpu_quick"], clock() - t)
        t = clock()
        code_actions(snap, mid, Span(0, 0, text.count("\n"), 0), None, Locator(snap), support)
        worst["cpu_action"] = max(worst["cpu_action"], clock() - t)
        t = clock()
        hover(snap, mid, T.Position(line, 20), Locator(snap))
        worst["cpu_hover"] = max(worst["cpu_hover"], clock() - t)
        with paused_gc(freeze=True):
            t = clock()
            for _ in engine.snapshot_steps():
                now = clock()
                worst["cpu_step"] = max(worst["cpu_step"], now - t)
                t = now
    return worst


def measure_replay(root: Path, manifest: dict, mode: str, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_replay", str(root), "--_mid", manifest["mid"]["path"],
           "--_mode", mode]
    r = run_measured(cmd, REPO, timeout)
    if r.seconds is None:
        return {"timeout": True, "mode": mode}
    for line in reversed(r.output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": r.output[-500:], "mode": mode}


# ----------------------------------------------------------------------------- report


def machine() -> list[str]:
    cpu = "unknown"
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    ram = "unknown"
    try:
        m = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        ram = f"{int(m.group(1)) / 1024 / 1024:.1f} GiB" if m else ram
    except OSError:
        pass
    versions = []
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("alembic", "SQLAlchemy", "pygls", "lsprotocol"):
        try:
            versions.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    commit = commit_state()
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores (nproc {len(os.sched_getaffinity(0))})",
        f"- RAM: {ram}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), {platform.platform()}",
        f"- {', '.join(versions)}",
        f"- migration-lsp at {commit}",
        f"- load average at start (1/5/15 min): {load}",
    ]


def commit_state() -> str:
    """HEAD, and whether migration_lsp/ has uncommitted changes (others may be editing it)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "migration_lsp"], cwd=REPO, capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit or 'unknown'}{' + uncommitted changes in migration_lsp/' if dirty else ''}"


def fmt_s(v) -> str:
    return "–" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def fmt_ms(v) -> str:
    if v is None:
        return "–"
    return f"{v * 1000:.1f}" if v >= 0.001 else f"{v * 1000:.3f}"


def fmt_mib(v) -> str:
    return "–" if v is None else f"{v / MiB:.0f}"


def fmt_x(v) -> str:
    return "–" if v is None else f"{v:.1f}x"


# (label, getter, formatter, linear?, target text, target predicate on the 5k value)
def rows() -> list[tuple]:
    return [
        ("revisions (branch points / merges)", lambda r: r.get("shape"), str, False, "", None),
        ("`migration-lsp check --no-import`, new process, empty cache (s)", lambda r: r["cli"].get("check_cold"),
         fmt_s, True, "", None),
        ("`migration-lsp check --no-import`, new process, persistent cache (s)", lambda r: r["cli"].get("check_warm"),
         fmt_s, True, "", None),
        ("`alembic heads` (s)", lambda r: r["cli"].get("heads"), fmt_s, True, "", None),
        ("`alembic heads`, first run, no .pyc (s)", lambda r: r["cli"].get("heads_first"), fmt_s, True, "", None),
        ("**ratio `alembic heads` / check, persistent cache**", lambda r: r["cli"].get("ratio_warm"), fmt_x, False,
         "≥ 8x", lambda v: v >= 8),
        ("**ratio `alembic heads` / check, empty cache (first run ever)**", lambda r: r["cli"].get("ratio"), fmt_x,
         False, "≥ 2x", lambda v: v >= 2),
        ("`migration-lsp check --no-import --select G` (graph rules only), empty cache (s)",
         lambda r: r["cli"].get("select_g_cold"), fmt_s, True, "", None),
        ("**ratio `alembic heads` / `check --select G`, empty cache**", lambda r: r["cli"].get("ratio_select_g"),
         fmt_x, False, "≥ 8x", lambda v: v >= 8),
        ("check peak RSS (MiB)", lambda r: r["cli"].get("check_rss"), fmt_mib, True, "≤ 200", lambda v: v <= 200 * MiB),
        ("`alembic heads` peak RSS (MiB)", lambda r: r["cli"].get("heads_rss"), fmt_mib, True, "", None),
        ("server: initialize → first diagnostics of the head (s)", lambda r: r["server"].get("init_to_diag"), fmt_s,
         True, "", None),
        ("server: didOpen → first diagnostics of the head (s)", lambda r: r["server"].get("open_to_diag"), fmt_s,
         True, "≤ 1", lambda v: v <= 1),
        *[row for pause in PAUSES for row in (
            (f"server: didChange → publishDiagnostics p50 (ms), {pause} s between edits",
             lambda r, k=f"edit_p50@{pause}": r["server"].get(k), fmt_ms, True, "", None),
            (f"**server: didChange → publishDiagnostics p95 (ms), {pause} s between edits**",
             lambda r, k=f"edit_p95@{pause}": r["server"].get(k), fmt_ms, True, "≤ 25", lambda v: v <= 0.025),
            (f"server: edits measured, {pause} s between edits", lambda r, k=f"edits@{pause}": r["server"].get(k),
             lambda v: "–" if v is None else str(v), False, "≥ 20", lambda v: v >= 20),
            (f"server: didChange → publishDiagnostics, CPU of the server's event-loop thread per edit, p50 / p95 / "
             f"max (ms), {pause} s between edits",
             lambda r, k=f"@{pause}": (r["server"][f"edit_cpu_p50{k}"], r["server"][f"edit_cpu_p95{k}"],
                                       r["server"][f"edit_cpu_max{k}"]),
             lambda v: " / ".join(fmt_ms(x) for x in v), True, "", None),
        )],
        *[row for key, what in (("action", "codeAction"), ("hover", "hover")) for when, how in (
            ("after", "right after an edit"), ("during", "while the full pass runs")) for row in (
            (f"**server: {what} {how}, p95 / max (ms)**",
             lambda r, k=f"{key}_{when}": _pair(r["server"], f"{k}_p95", f"{k}_max"), _fmt_pair_ms, True,
             "≤ 30 / ≤ 100", lambda v: v[0] <= 0.030 and v[1] <= 0.100),
            (f"server: {what} {how}, CPU of the server's event-loop thread, p95 / max (ms)",
             lambda r, k=f"{key}_{when}": _pair(r["server"], f"{k}_cpu_p95", f"{k}_cpu_max"), _fmt_pair_ms, True,
             "", None),
        )],
        ("server peak RSS, VmHWM (MiB)", lambda r: r["server"].get("VmHWM"), fmt_mib, True, "≤ 200",
         lambda v: v <= 200 * MiB),
        ("replay cold: `Replay(graph).at_heads()`, bodies parsed and evaluated (s)",
         lambda r: r["replay"].get("replay_cold"), fmt_s, True, "≤ 2",
         lambda v: v <= 2),
        ("replay warm: `Replay(graph, previous=r)` (ms)", lambda r: r["replay"].get("replay_warm"), fmt_ms, True,
         "≤ 300", lambda v: v <= 0.3),
        ("replay after a 1-char edit of the mid file (s)", lambda r: r["replay"].get("replay_after_edit"), fmt_s,
         True, "", None),
        ("engine in-process: cold `snapshot()` (s)", lambda r: r["replay"].get("engine_snapshot"), fmt_s, True, "",
         None),
        ("engine in-process: `set_buffer` + `snapshot(quick=True)`, break / repair (ms)",
         lambda r: _pair(r["replay"], "engine_break_quick", "engine_repair_quick"), _fmt_pair_ms, True, "", None),
        ("**engine in-process, CPU of one request after an edit: quick snapshot / codeAction (whole file) / hover, "
         "max of 6 (ms)**",
         lambda r: (r["replay"]["cpu_quick"], r["replay"]["cpu_action"], r["replay"]["cpu_hover"]),
         lambda v: " / ".join(fmt_ms(x) for x in v), True, "sum ≤ 30", lambda v: sum(v) <= 0.030),
        ("**engine in-process, CPU of the longest step of the full pass after an edit (ms)**",
         lambda r: r["replay"].get("cpu_step"), fmt_ms, True, "≤ 30", lambda v: v <= 0.030),
        ("engine in-process: then `snapshot()` (full pass), break / repair (s)",
         lambda r: _pair(r["replay"], "engine_break_full", "engine_repair_full"), _fmt_pair_s, True, "", None),
    ]


def _pair(d: dict, a: str, b: str):
    return (d[a], d[b]) if a in d and b in d else None


def _fmt_pair_ms(v) -> str:
    return f"{fmt_ms(v[0])} / {fmt_ms(v[1])}"


def _fmt_pair_s(v) -> str:
    return f"{fmt_s(v[0])} / {fmt_s(v[1])}"


def table(results: dict[int, dict]) -> str:
    sizes = sorted(results)
    head = ["metric"] + [f"{n:,}" for n in sizes] + ["20k / 5k (≤ 4.5)", "target at 5k", "5k meets it"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["--:"] * len(sizes) + ["--:", "--", "--"]) + "|"]
    for label, get, fmt, linear, target, ok in rows():
        cells = []
        for n in sizes:
            r = results[n]
            v = _get(get, r)
            if v is None and _timed_out(label, r):
                cells.append("timeout")
            else:
                cells.append(fmt(v) if v is not None else "–")
        ratio = "–"
        if linear and 5000 in results and 20000 in results:
            a, b = _get(get, results[5000]), _get(get, results[20000])
            if isinstance(a, tuple) and isinstance(b, tuple):
                a, b = max(a), max(b)
            if a and b:
                ratio = f"{b / a:.2f}"
        verdict = ""
        if ok is not None and 5000 in results:
            v = _get(get, results[5000])
            verdict = "–" if v is None else ("yes" if ok(v) else "**no**")
        lines.append("| " + " | ".join([label] + cells + [ratio, target, verdict]) + " |")
    return "\n".join(lines)


def _get(get, r):
    try:
        return get(r)
    except (KeyError, TypeError):
        return None


def _timed_out(label: str, r: dict) -> bool:
    if "check" in label and "cold" in label:
        return bool(r["cli"].get("check_timeout"))
    if label.startswith("server") or "server" in label:
        s = r.get("server", {})
        return bool(s.get("timeout") or s.get("open_timeout") or s.get("error")
                    or ("didChange" in label and any(k.startswith("edit_timeout") for k in s)))
    if "replay" in label or "engine" in label:
        return bool(r.get("replay", {}).get("timeout"))
    return False


def notes(results: dict[int, dict]) -> list[str]:
    out = []
    for n in sorted(results):
        r = results[n]
        s, rp, cli = r.get("server", {}), r.get("replay", {}), r.get("cli", {})
        bits = [f"measured at {r.get('commit')}", f"load average after it {r.get('load')}",
                f"check exit {cli.get('check_exit')} ({cli.get('check_tail', '')})",
                f"`alembic heads` printed {cli.get('heads_count')} head(s)",
                f"{cli.get('samples', 0)} check sample(s), median"]
        if s.get("index_log"):
            bits.append(f"server log: \"{s['index_log']}\"")
        for key in sorted(k for k in s if k.startswith("latencies_ms@")):
            bits.append(f"edit latencies in ms, {key.split('@')[1]} s between edits (in order; break, repair, ...): "
                        f"{s[key]}")
        if rp.get("mode") == "direct":
            bits.append("replay graph built from parse_script + RevisionGraph (the engine snapshot was too slow)")
        if s.get("error"):
            bits.append(f"server error: {s['error']}")
        out.append(f"- {n:,}: " + "; ".join(bits))
    return out


def kept_sections(path: Path) -> str:
    """The hand-written sections of the results file (from its first `## ` heading on: other
    scripts' tables, per-issue measurements), kept when the runner rewrites the top."""
    try:
        old = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    at = old.find("\n## ")
    return "" if at < 0 else old[at:].lstrip("\n").join(("\n", "" if old.endswith("\n") else "\n"))


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    global PAUSES, QUIET
    p = argparse.ArgumentParser(description="migration-lsp benchmarks")
    p.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", "1000 5000 20000"))
    p.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_SEED", "1")))
    p.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")),
                   help="samples of each CLI timing (median); 1 when a run takes over a minute")
    p.add_argument("--edits", type=int, default=24)
    p.add_argument("--request-edits", type=int, default=8,
                   help="edits after which codeAction and hover are timed (right after, and during the full pass)")
    p.add_argument("--pauses", default="0.1 1.5",
                   help="seconds between edits, one series of --edits edits each: 0.1 = typing (a debounced "
                        "full pass should not start), 1.5 = the next edit may land while a full pass runs")
    p.add_argument("--quiet", type=float, default=QUIET,
                   help="seconds with no diagnostics after which the server counts as idle (before each series); "
                        "the barrier does not see the sliced full pass, so at 5,000 revisions on a loaded machine "
                        "the first one is still running when the edits start (and, as each edit abandons the pass, "
                        "may never complete): 25 lets it complete first (the steady state, RESULTS.md 'rss')")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("BENCH_TIMEOUT", "600")),
                   help="seconds per measurement")
    p.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "BENCH_CACHE", Path(tempfile.gettempdir()) / "migration-lsp-bench")))
    p.add_argument("--only", default="cli,server,replay")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument("--_replay", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_mid", help=argparse.SUPPRESS)
    p.add_argument("--_mode", default="engine", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._replay:
        print(json.dumps(replay_child(args._replay, args._mid, args._mode)))
        return 0

    sizes = [int(s) for s in args.sizes.replace(",", " ").split()]
    only = set(args.only.split(","))
    pauses = [float(x) for x in args.pauses.split()]
    PAUSES = pauses
    QUIET = args.quiet
    header = machine()
    started = dt.datetime.now()
    results: dict[int, dict] = {}
    args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="migration-lsp-bench-") as tmp:
        scratch = Path(tmp)
        for n in sizes:
            root, manifest = project(args.cache, n, args.seed)
            r: dict = {"shape": f"{n:,} ({manifest['branch_points']} / {manifest['merges']})", "cli": {}, "server": {},
                       "replay": {}}
            results[n] = r
            if "cli" in only:
                log(f"{n}: CLI")
                r["cli"] = measure_cli(root, args.repeat, args.timeout, scratch)
            if "server" in only:
                log(f"{n}: server")
                try:
                    r["server"] = asyncio.run(measure_server(root, manifest, args.edits, args.timeout, pauses,
                                                             scratch, args.request_edits))
                except asyncio.TimeoutError:
                    r["server"] = {"timeout": True}
                except Exception as exc:  # report, go on with the other measurements
                    r["server"] = {"error": f"{type(exc).__name__}: {exc}"}
                    log(f"server measurement failed: {exc!r}")
            if "replay" in only:
                slow = r["cli"].get("check_timeout") or (r["cli"].get("check_cold") or 0) > args.timeout / 2
                mode = "direct" if slow else "engine"
                log(f"{n}: replay ({mode})")
                r["replay"] = measure_replay(root, manifest, mode, args.timeout)
                if r["replay"].get("timeout") and mode == "engine":
                    log(f"{n}: replay through the engine timed out; again without the engine")
                    r["replay"] = measure_replay(root, manifest, "direct", args.timeout)
            r["load"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
            r["commit"] = commit_state()
            log(f"{n}: done (load average {r['load']})")
    out = table(results)
    print(out)
    text = "\n".join([
        "# Benchmarks",
        "",
        f"Written by `make bench` (benchmarks/run.py) on {started:%Y-%m-%d %H:%M}; the runner rewrites this part (up to the first `##` section; the sections below are kept).",
        "Projects: benchmarks/generate.py, seed " + str(args.seed) + " (Alembic's generic template, autogenerate-"
        "rendered bodies, ~2% branch points each merged back, one head).",
        "",
        "Machine:",
        "",
        *header,
        "",
        out,
        "",
        "Every `check` is a new process. Empty cache = a fresh `XDG_CACHE_HOME` (the first run on a machine: "
        "every revision parsed and replayed); persistent cache = the same command again with that cache "
        "folder, i.e. a later run (CI with a restored cache, a pre-commit hook, a second check) on a project "
        "whose files did not change: every file is still read, its header parsed and the graph built "
        "and checked; the discovery result (keyed by the files' stats) and the per-revision schema results "
        "(keyed by content and ancestry) come from the cache. "
        "`alembic heads` is the median of runs with the migration files' .pyc present (the faster, "
        "conservative baseline); the ratio uses it. Server numbers come from one `migration-lsp serve` "
        "process driven over stdio by pygls's LanguageClient; each edit waits for the publishDiagnostics "
        "of the edited file whose content reflects the edit (G002 present after a break, absent after a repair). "
        "Replay numbers come from a separate Python process (see `replay_child` in run.py).",
        "",
        "Notes per size:",
        "",
        *notes(results),
        "",
    ])
    args.results.write_text(text + kept_sections(args.results), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    log(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
