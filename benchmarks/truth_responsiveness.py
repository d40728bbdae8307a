"""Is the language server still responsive while a truth pass runs? (issue 15)

    python benchmarks/truth_responsiveness.py [--revisions 300] [--cycles 20] [--delay 1.0]

One `migration-lsp serve` over stdio, driven by pygls's LanguageClient, on a trusted
workspace: a generated SQLite project (benchmarks/truth_speed.py's: a table every fifth
revision, a column otherwise, models matching the head), setting `verify: "auto"`.

What a truth pass is in the server: after a save, the migrations run in a child process on
a scratch database while the event loop goes on answering. A change to any document cancels
the running pass at once (truth.Verifier.invalidate kills its child: its result would
answer for text that is gone), so one pass can be under at most one edit. The benchmark
therefore measures, in the same run and interleaved so the machine's load hits both alike:

* didChange -> publishDiagnostics of an edit (a typo in `down_revision` of the third
  revision: G002 appears) with no truth pass running (the server idle: nothing published
  for run.QUIET seconds, then `--delay` seconds more, as for the other edit), and
* the same edit landing while a truth pass runs: the file was given a text never seen
  before and saved; the edit is sent once the server's `$/progress` "Running the
  migrations on a scratch database" has begun and `--delay` seconds have passed, and only
  counts if that progress had not ended by then and a process under the server (the truth
  child) used CPU during the delay — the pass re-runs every revision above the third, many
  seconds of work; the scratch database's alembic_version, read from the child's open file
  at that moment, says how far it has upgraded; its cancellation is part of what the edit
  costs;
* hover and codeAction (the whole file) latencies while the first, complete pass runs
  (after the models load: every revision from an empty database, nothing cancels it)
  against the same requests with the server idle afterwards.

An edit that arrives while the server sweeps the collector's frozen objects (server._sweep,
after server.SWEEP_IDLE seconds of quiet following a full pass that grew them) waits for
the sweep: the sweeps' log lines are matched to the edits they delayed and reported.

Prints a Markdown table (p50 / p95 / max, the ratio during / idle, load averages). Not a
test: wall times depend on the machine; tests/test_truth_server.py checks the behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402
import truth_speed  # noqa: E402

TRUTH_TITLE = "Running the migrations on a scratch database"


def descendants_cpu(pid: int) -> dict[int, int]:
    """CPU ticks (user + system) of every process below `pid`, from /proc."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    below, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in below}
        below |= frontier
    return {p: ticks[p] for p in below}


def scratch_revisions(pids) -> list[str]:
    """What the scratch SQLite databases open in `pids` (the truth child) hold in
    alembic_version right now: how far the pass has upgraded (read-only, one query)."""
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if not re.search(r"/migration-lsp-sqlite-[^/]+/scratch-[0-9a-f]+\.db$", target):
                continue
            try:
                with contextlib.closing(sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=1)) as db:
                    found += [row[0] for row in db.execute("SELECT version_num FROM alembic_version")
                              if row[0] not in found]
            except sqlite3.Error:
                continue
    return found


def stats(values: list[float]) -> dict:
    return {"n": len(values), "p50": run.percentile(values, 50), "p95": run.percentile(values, 95),
            "max": max(values) if values else None}


async def measure(root: Path, edited: Path, revisions: int, cycles: int, delay: float, timeout: float, scratch: Path,
                  idle_delay: float | None = None, loop_debug: bool = False) -> dict:
    from lsprotocol import types as T
    from pygls.lsp.client import LanguageClient

    res: dict = {"loads": []}
    client = LanguageClient("migration-lsp-truth-bench", "1")
    waiters: list[tuple[str, object, asyncio.Future]] = []
    logs: list[tuple[float, str]] = []  # (arrival, message)
    progress: dict[str, dict] = {}  # token -> {"title", "begin", "end", "message"}
    last_publish = [time.perf_counter()]

    @client.feature(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(ls, params: T.PublishDiagnosticsParams) -> None:
        now = time.perf_counter()
        last_publish[0] = now
        for w in list(waiters):
            uri, pred, fut = w
            if uri == params.uri and not fut.done() and pred(params.diagnostics):
                fut.set_result(now)
                waiters.remove(w)

    @client.feature(T.WINDOW_LOG_MESSAGE)
    def on_log(ls, params: T.LogMessageParams) -> None:
        logs.append((time.perf_counter(), params.message))
        if os.environ.get("BENCH_DEBUG"):
            run.log(f"server log: {params.message[:300]}")

    @client.feature(T.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def on_create(ls, params: T.WorkDoneProgressCreateParams) -> None:
        progress[str(params.token)] = {}

    @client.feature(T.PROGRESS)
    def on_progress(ls, params: T.ProgressParams) -> None:
        value = params.value
        get = value.get if isinstance(value, dict) else (lambda k, d=None: getattr(value, k, d))
        entry = progress.setdefault(str(params.token), {})
        kind = get("kind")
        if kind == "begin":
            entry.update(title=get("title"), begin=time.perf_counter())
        elif kind == "end":
            entry.update(end=time.perf_counter(), message=get("message"))

    def expect(uri: str, pred) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        waiters.append((uri, pred, fut))
        return fut

    def truth_passes() -> list[dict]:
        return sorted((p for p in progress.values() if p.get("title") == TRUTH_TITLE), key=lambda p: p["begin"])

    async def until(predicate, what: str) -> None:
        deadline = time.perf_counter() + timeout
        while not predicate():
            if time.perf_counter() > deadline:
                raise TimeoutError(what)
            await asyncio.sleep(0.01)

    cache_home = scratch / "xdg-cache"
    cache_home.mkdir(parents=True)
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    if loop_debug:  # asyncio's debug mode: the server logs every callback that held its loop over 100 ms
        env["PYTHONASYNCIODEBUG"] = "1"
    slow: list[tuple[float, str]] = []
    env.pop("MIGRATION_LSP_CACHE_DIR", None)
    cmd = run.tool("migration-lsp", "migration_lsp") + ["serve"]
    await client.start_io(cmd[0], *cmd[1:], cwd=str(root), env=env)
    server = client._server
    pid = server.pid

    async def drain() -> None:  # pygls pipes stderr but never reads it: a full pipe would block the server
        while server.stderr:
            try:
                line = await server.stderr.readline()
            except ValueError:  # a line over the stream's limit: read on
                line = await server.stderr.read(65536)
            if not line:
                return
            text = line.decode(errors="replace")
            if loop_debug and " took " in text:
                slow.append((time.perf_counter(), text.strip()[:300]))

    drainer = asyncio.ensure_future(drain())
    uri = edited.resolve().as_uri()
    doc = T.TextDocumentIdentifier(uri=uri)
    text = edited.read_text(encoding="utf-8")
    line, col, original, wrong = run.typo(text, {f"{i:04d}" for i in range(revisions + 1)})
    version = [1]

    def change(*changes) -> None:
        version[0] += 1
        client.text_document_did_change(T.DidChangeTextDocumentParams(
            text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=version[0]),
            content_changes=list(changes)))

    def has_g002(diags) -> bool:
        return any(str(d.code) == "G002" for d in diags)

    sweeps: dict[str, list[float]] = {}  # regime -> the sweeps (ms) an edit of it waited for

    def swept(since: float, until: float) -> list[float]:
        """The collector's sweeps (server._sweep, said in the log) that ended in [since, until]."""
        out = []
        for at, message in logs:
            m = re.match(r"collector: the frozen objects swept .* in (\d+) ms", message)
            if m and since <= at <= until:
                out.append(float(m.group(1)))
        return out

    async def edit(broken: bool, regime: str | None = None) -> float:
        """The typo (or its repair) -> the publishDiagnostics that reflects it (s)."""
        fut = expect(uri, has_g002 if broken else (lambda d: not has_g002(d)))
        t0 = time.perf_counter()
        change(T.TextDocumentContentChangePartial(range=T.Range(T.Position(line, col), T.Position(line, col + 1)),
                                                  text=wrong if broken else original))
        t1 = await asyncio.wait_for(fut, timeout)
        if regime is not None:
            sweeps.setdefault(regime, []).extend(swept(t0, t1))
        return t1 - t0

    async def barrier() -> None:
        """Idle: everything sent is handled and nothing was published for run.QUIET seconds."""
        sent = time.perf_counter()
        await asyncio.wait_for(client.text_document_document_symbol_async(T.DocumentSymbolParams(text_document=doc)),
                               timeout)
        while time.perf_counter() - max(last_publish[0], sent) < run.QUIET:
            await asyncio.sleep(0.1)

    async def requests(samples: dict[str, list[float]]) -> None:
        end = T.Position(text.count("\n"), 0)
        for key, request in (
                ("hover", lambda: client.text_document_hover_async(T.HoverParams(
                    text_document=doc, position=T.Position(line, col)))),
                ("codeAction", lambda: client.text_document_code_action_async(T.CodeActionParams(
                    text_document=doc, range=T.Range(T.Position(0, 0), end),
                    context=T.CodeActionContext(diagnostics=[]))))):
            t0 = time.perf_counter()
            await asyncio.wait_for(request(), timeout)
            samples.setdefault(key, []).append(time.perf_counter() - t0)

    try:
        root_uri = root.resolve().as_uri()
        caps = T.ClientCapabilities(
            text_document=T.TextDocumentClientCapabilities(
                synchronization=T.TextDocumentSyncClientCapabilities(did_save=True),
                publish_diagnostics=T.PublishDiagnosticsClientCapabilities(version_support=True)),
            window=T.WindowClientCapabilities(work_done_progress=True),
            general=T.GeneralClientCapabilities(position_encodings=[T.PositionEncodingKind.Utf16]))
        await asyncio.wait_for(client.initialize_async(T.InitializeParams(
            capabilities=caps, process_id=os.getpid(), root_uri=root_uri,
            workspace_folders=[T.WorkspaceFolder(uri=root_uri, name=root.name)],
            initialization_options={"trusted": True, "settings": {"verify": "auto"}})), timeout)
        client.initialized(T.InitializedParams())
        first = expect(uri, lambda d: True)
        client.text_document_did_open(T.DidOpenTextDocumentParams(T.TextDocumentItem(
            uri=uri, language_id="python", version=1, text=text)))
        await asyncio.wait_for(first, timeout)

        # 1. requests while the first, complete pass runs (every revision, from nothing), then idle
        await until(lambda: truth_passes(), "the first truth pass did not begin")
        res["loads"].append(os.getloadavg())
        during: dict[str, list[float]] = {}
        while "end" not in truth_passes()[0]:
            await requests(during)
            await asyncio.sleep(0.1)
        p = truth_passes()[0]
        res["first_pass"] = {"seconds": p["end"] - p["begin"], "message": p.get("message"),
                             "requests": len(during.get("hover", []))}
        run.log(f"first truth pass: {p['end'] - p['begin']:.1f} s, {len(during.get('hover', []))} hover + "
                f"codeAction pairs during it; {p.get('message')}")
        await barrier()
        idle: dict[str, list[float]] = {}
        for _ in range(min(max(len(during.get("hover", [])), 10), 300)):
            await requests(idle)
            await asyncio.sleep(0.1)
        res["requests"] = {f"{key} {when}": stats(values) for when, samples in (("idle", idle), ("during", during))
                           for key, values in samples.items()}
        res["loads"].append(os.getloadavg())

        # 2. didChange -> diagnostics: idle and during a pass, interleaved
        await edit(True)  # warm-up: the first edit after a complete pass drops its findings
        await edit(False)
        latencies: dict[str, list[float]] = {"idle": [], "during": []}
        evidence: list[dict] = []
        for i in range(cycles):
            fresh = f"{text}\n# cycle {i} {time.time_ns()}\n"  # a text never seen: the pass re-runs it and above
            change(T.TextDocumentContentChangeWholeDocument(text=fresh))
            edited.write_text(fresh, encoding="utf-8")  # what an editor's save writes
            await barrier()
            await asyncio.sleep(delay if idle_delay is None else idle_delay)  # as for the edit into a pass (below)
            t_idle = time.perf_counter()
            latencies["idle"].append(await edit(True, "idle"))
            if loop_debug:
                for at, what in slow:
                    if t_idle - 0.2 <= at <= t_idle + latencies["idle"][-1] + 0.2:
                        run.log(f"  the idle edit met a slow callback: {what}")
            await edit(False)
            await barrier()
            passes = len(truth_passes())
            client.text_document_did_save(T.DidSaveTextDocumentParams(text_document=doc))
            await until(lambda n=passes: len(truth_passes()) > n, "no truth pass began after the save")
            this = truth_passes()[-1]
            before = descendants_cpu(pid)
            await asyncio.sleep(max(0.0, this["begin"] + delay - time.perf_counter()))
            after = descendants_cpu(pid)
            busy = sum(1 for p, t in after.items() if t > before.get(p, t))
            cpu = sum(t - before.get(p, 0) for p, t in after.items()) / os.sysconf("SC_CLK_TCK")
            at = scratch_revisions(after)
            running = "end" not in this
            took = await edit(True, "during")
            await until(lambda p=this: "end" in p, "the cancelled truth pass never ended")
            counted = running and busy > 0
            evidence.append({"running": running, "busy": busy, "cpu": cpu, "at": at, "end_after_edit": this["end"] - this["begin"],
                             "message": this.get("message")})
            if counted:
                latencies["during"].append(took)
            run.log(f"cycle {i + 1}: idle {latencies['idle'][-1] * 1000:.1f} ms, during a pass {took * 1000:.1f} ms "
                    f"(pass running: {running}, busy children: {busy} ({cpu:.2f} s CPU), scratch database at "
                    f"{at or 'no revision yet'}, pass ended "
                    f"{this['end'] - this['begin']:.2f} s after it began: {this.get('message')})")
            await edit(False)
            if i % 5 == 4:
                res["loads"].append(os.getloadavg())
        # 3. how long the pass the edits cancelled takes when nothing cancels it (the same save)
        fresh = f"{text}\n# whole {time.time_ns()}\n"
        change(T.TextDocumentContentChangeWholeDocument(text=fresh))
        edited.write_text(fresh, encoding="utf-8")
        await barrier()
        passes = len(truth_passes())
        client.text_document_did_save(T.DidSaveTextDocumentParams(text_document=doc))
        await until(lambda: len(truth_passes()) > passes and "end" in truth_passes()[-1], "the re-run did not end")
        p = truth_passes()[-1]
        res["rerun"] = {"seconds": p["end"] - p["begin"], "message": p.get("message")}
        run.log(f"re-run from the third revision, not cancelled: {p['end'] - p['begin']:.1f} s; {p.get('message')}")
        res["edits"] = {k: stats(v) for k, v in latencies.items()}
        res["edits_ms"] = {k: [round(x * 1000, 1) for x in v] for k, v in latencies.items()}
        res["evidence"] = evidence
        res["loads"].append(os.getloadavg())
        res["sweeps"] = sweeps
        res["all_sweeps_ms"] = swept(0, time.perf_counter())
        return res
    finally:
        try:
            await asyncio.wait_for(client.shutdown_async(None), 30)
            client.exit(None)
            await asyncio.wait_for(server.wait(), 10)
        except Exception:  # noqa: BLE001 - a server that does not stop is killed below
            pass
        if server.returncode is None:
            server.kill()
            await server.wait()
        drainer.cancel()
        try:
            await asyncio.wait_for(client.stop(), 10)
        except Exception:  # noqa: BLE001 - the client's own shutdown: nothing left to measure
            pass


def report(res: dict, n: int, delay: float) -> str:
    def ms(v) -> str:
        return run.fmt_ms(v)

    def ratio(a, b) -> str:
        return f"{a / b:.2f}x" if a and b else "–"

    loads = res["loads"]
    lo = min(x[0] for x in loads)
    hi = max(x[0] for x in loads)
    e = res["edits"]
    lines = [
        f"{n} revisions (SQLite), load average (1 min) {lo:.1f}–{hi:.1f} during the run; "
        f"first truth pass (every revision, nothing cancels it): {res['first_pass']['seconds']:.1f} s",
        "",
        "| what | n | p50 (ms) | p95 (ms) | max (ms) | p95 during / idle |",
        "|---|--:|--:|--:|--:|--:|",
        f"| didChange → publishDiagnostics, no truth pass running | {e['idle']['n']} | {ms(e['idle']['p50'])} | "
        f"{ms(e['idle']['p95'])} | {ms(e['idle']['max'])} | |",
        f"| **didChange → publishDiagnostics, edit {delay} s into a running truth pass (the edit cancels it)** | "
        f"{e['during']['n']} | {ms(e['during']['p50'])} | {ms(e['during']['p95'])} | {ms(e['during']['max'])} | "
        f"**{ratio(e['during']['p95'], e['idle']['p95'])}** |",
    ]
    r = res["requests"]
    for key in ("hover", "codeAction"):
        idle, during = r.get(f"{key} idle"), r.get(f"{key} during")
        if idle and during:
            lines.append(f"| {key}, server idle | {idle['n']} | {ms(idle['p50'])} | {ms(idle['p95'])} | "
                         f"{ms(idle['max'])} | |")
            lines.append(f"| {key} while the first truth pass runs | {during['n']} | {ms(during['p50'])} | "
                         f"{ms(during['p95'])} | {ms(during['max'])} | {ratio(during['p95'], idle['p95'])} |")
    ev = res["evidence"]
    lines += ["", f"Edits counted as during a pass: {sum(1 for x in ev if x['running'] and x['busy'])} of {len(ev)} "
              "(progress begun and not ended when the edit was sent, a process under the server used CPU in the "
              f"{delay} s before it: {min(x['cpu'] for x in ev):.2f}–{max(x['cpu'] for x in ev):.2f} s of CPU); "
              "the scratch database's alembic_version at that moment: "
              f"{', '.join(x['at'][0] if x['at'] else '–' for x in ev)} (the pass starts from the snapshot at 0002); "
              "each such pass ended (cancelled) "
              f"{min(x['end_after_edit'] for x in ev):.2f}–{max(x['end_after_edit'] for x in ev):.2f} s after it "
              f"began; the same save's pass, not cancelled, took {res['rerun']['seconds']:.1f} s "
              f"({res['rerun']['message']}). "
              f"Edit latencies (ms), idle: {res['edits_ms']['idle']}; during: {res['edits_ms']['during']}. "
              f"Collector sweeps (server._sweep: server.SWEEP_IDLE s of quiet after a full pass whose frozen objects grew) in the "
              f"run: {len(res['all_sweeps_ms'])}, {res['all_sweeps_ms']} ms; measured edits that waited for one: "
              f"idle {res['sweeps'].get('idle', [])}, during {res['sweeps'].get('during', [])} ms."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--revisions", type=int, default=300)
    ap.add_argument("--cycles", type=int, default=20, help="edits in each regime (idle, during a pass)")
    ap.add_argument("--delay", type=float, default=1.0, help="seconds into the truth pass the edit lands")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds for any one wait")
    ap.add_argument("--idle-delay", type=float, help="seconds after the quiet spell the idle edit lands (--delay)")
    ap.add_argument("--loop-debug", action="store_true",
                    help="run the server in asyncio's debug mode and say which slow callbacks an idle edit met")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="truth-responsiveness-"))
    try:
        project = work / "project"
        files = truth_speed.generate(project, args.revisions, f"sqlite:///{work / 'app.db'}")
        run.log(f"generated {args.revisions} revisions in {project}; load average {os.getloadavg()}")
        res = asyncio.run(measure(project, files[2], args.revisions, args.cycles, args.delay, args.timeout, work,
                                  args.idle_delay, args.loop_debug))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(res, args.revisions, args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
