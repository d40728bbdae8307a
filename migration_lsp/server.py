"""Front end `server`: the language server on stdio (pygls 2). Thin: it keeps the session
(engine, what was published, what the client can do) and hands every request to a
feature function over the current immutable snapshot.

Diagnostics are pushed (publishDiagnostics, for every affected file, open or not) unless
the client can pull *and* be told to re-pull (workspace/diagnostic/refresh): only then
is pull advertised, so a client never gets both. A client without refresh support (e.g.
Neovim 0.11) would otherwise keep stale diagnostics in files it is not editing.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import stat
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, PyglsError
from pygls.io_ import StdoutWriter, run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method

from . import __version__
from .child import kill_all as kill_children
from .core import Span, paused_gc
from .engine import Engine, Snapshot
from .engine.collector import FrozenGrowth
from .features import Locator, path_to_uri, uri_to_path
from .features.actions import (
    APPLY_EDIT,
    CREATE_NEXT_KIND,
    GENERATE_KIND,
    EditSupport,
    code_actions,
    resolve_edit,
)
from .features.completion import completion
from .features.diagnostics import file_diagnostics, result_id, to_lsp
from .features.hints import inlay_hints
from .features.hover import hover
from .features.lens import SHOW_GRAPH, code_lenses
from .features.navigation import (
    definition,
    document_symbols,
    references,
    workspace_symbols,
)
from .formats import format_mermaid, graph_data
from .paths import Resolver
from .truth import Verifier
from .watchdog import Watchdog
from .watchdog import start_from_env as start_watchdog

CONFIG_SECTION = "migrationLsp"
CLIENT_TIMEOUT = 5.0  # never wait longer for a client's answer to a server request
FULL_PASS_DELAY = 1.0  # seconds of quiet before the schema-based diagnostics are recomputed
SLICE_SECONDS = 0.005  # the full pass yields to the event loop this often
SLICE_PAUSE = 0.001  # for this long
SWEEP_IDLE = 3.0  # seconds with no change after a full pass before the frozen objects are swept
PUBLISH_CHUNK = 100  # files whose diagnostics are pushed per turn of the event loop (see _send)
CACHE_SAVE_INTERVAL = 60.0  # seconds between writes of the persistent cache (and at shutdown)
WATCH_GLOBS = ("**/*.py", "**/*.ini", "**/pyproject.toml", "**/script.py.mako")
# HEAD and the refs: a fetch, pull, switch or rebase moves them (the base-branch checks)
GIT_GLOBS = ("**/.git/HEAD", "**/.git/refs/**", "**/.git/packed-refs", "**/.git/shallow")
GIT_POLL_SECONDS = 2.0  # HEAD and the refs are also polled (a few stat calls): see _poll_git
STATUS = "migrationLsp.status"
GRAPH = "migration-lsp/graph"  # request: the revision graph as JSON (graph_request)
# notification, to clients that ask for it (experimental.migrationLsp.graphChanged = true):
# an environment's heads, revisions or base branch changed; fetch GRAPH again
GRAPH_CHANGED = "migration-lsp/graphChanged"
EXIT_GRACE = 5.0  # seconds the requests still being answered at `exit` get for their answers
LINE_LIMIT = 1 << 16  # bytes of a header line read at once (a longer line is read, and skipped, in pieces)
# what asking the client can end in besides an answer: no answer in time, an error response
CLIENT_ERRORS = (asyncio.TimeoutError, JsonRpcException, PyglsError)
log = logging.getLogger(__name__)


def wants_pull(caps: types.ClientCapabilities) -> bool:
    td = caps.text_document
    ws = caps.workspace
    return bool(
        td and td.diagnostic is not None
        and ws and ws.diagnostics is not None and ws.diagnostics.refresh_support
    )


@dataclass
class _Malformed:
    """A request whose params could not be read: it still gets an answer (an error)."""

    id: Any
    method: str
    jsonrpc: str = "2.0"


class MigrationProtocol(LanguageServerProtocol):
    """pygls's protocol, made strict about answering: every request gets a response,
    including malformed ones and ones arriving after shutdown."""

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except Exception:
            if isinstance(data, dict) and "id" in data and "method" in data:
                return _Malformed(data["id"], str(data["method"]))
            raise

    def handle_message(self, message):
        if isinstance(message, _Malformed):
            self._send_response(message.id, None, types.ResponseError(
                code=types.ErrorCodes.InvalidParams, message=f"invalid params for {message.method}"))
            return
        if self._shutdown and getattr(message, "method", "") != types.EXIT and getattr(message, "id", None) is not None \
                and getattr(message, "method", None):
            self._send_response(message.id, None, types.ResponseError(
                code=types.ErrorCodes.InvalidRequest, message="the server is shutting down"))
            return
        super().handle_message(message)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        result = yield from super().lsp_initialize(params)
        if not wants_pull(params.capabilities):
            result.capabilities.diagnostic_provider = None
        return result


    exiting: asyncio.Future | None = None  # the exit, waiting for the requests still being answered

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args):
        """Exit: 0 after a shutdown request, 1 without one (as the protocol says), whatever
        background work (a model loader thread) is still running. Requests read before the
        exit and still being answered (a burst of messages is handled in one turn of the loop,
        PipeReader) get up to EXIT_GRACE seconds for their answers first."""
        code = 0 if self._shutdown else 1
        handlers: Iterable[Any] = self._request_futures.values()  # (pygls types them as concurrent futures)
        answering = [f for f in handlers if isinstance(f, asyncio.Task) and not f.done()]
        if not answering:
            exit_now(code)
        self.exiting = asyncio.ensure_future(self._exit_after(answering, code))

    async def _exit_after(self, answering: list[asyncio.Task], code: int) -> None:
        try:
            await asyncio.wait(answering, timeout=EXIT_GRACE)
        finally:  # (also when the loop ends first: the input closed)
            exit_now(code)


def exit_now(code: int) -> None:
    """os._exit runs no cleanup: the running children (and their process groups) are killed first."""
    try:
        kill_children()
        sys.stdout.flush()
    finally:
        os._exit(code)


class PipeReader:
    """The client's messages read by the event loop itself (stdin a pipe or a socket, as an
    editor starts us): pygls reads stdin in a thread, one line per round trip through the
    loop (the header, the blank line, the body: three), each waiting for a turn of the loop
    and, while a pass runs, for the GIL; a keystroke then waited ~3 slices before its
    handler ran. Here the bytes arrive through the loop's selector and a whole message is
    taken from the buffer at once."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream

    async def readline(self) -> bytes:
        """A line, or a piece of one longer than LINE_LIMIT (pygls skips what is not a header)."""
        try:
            return await self.stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial  # (the end of input: b"" stops pygls's loop)
        except asyncio.LimitOverrunError as exc:
            return await self.stream.readexactly(exc.consumed)

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self.stream.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            return exc.partial


def is_pipe(fd: int, output: int | None = None) -> bool:
    """Can the event loop watch this descriptor (a pipe or a socket; not a file or a
    terminal)? Not when it is also `output` (one socket for both ways): the loop makes what
    it reads non-blocking, and our writes to the client would then fail on a full buffer."""
    try:
        found = os.fstat(fd)
        if stat.S_ISSOCK(found.st_mode) and output is not None and os.path.samestat(found, os.fstat(output)):
            return False
    except OSError:
        return False
    return stat.S_ISFIFO(found.st_mode) or stat.S_ISSOCK(found.st_mode)


class MigrationServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("migration-lsp", __version__, protocol_cls=MigrationProtocol)
        self.engine: Engine | None = None
        self.ready = asyncio.Event()
        self.trusted = False  # until the client says `trusted: true` (see trust_of)
        self.untrusted_reason = Engine.UNTRUSTED
        self.pull = False
        self.overrides: dict[str, Any] = {}
        self.init_overrides: dict[str, Any] = {}  # from initializationOptions
        self.folder_overrides: dict[Path, dict[str, Any]] = {}  # a workspace folder's own (scopeUri) settings
        self.folder_uris: dict[Path, str] = {}  # each root's workspace folder URI, as the client sent it
        self.published: dict[Path, tuple] = {}  # diagnostics last sent (push) or current (pull)
        self.published_states: tuple = ()  # the environment states they came from
        self.unsent: dict[Path, tuple] = {}  # pushed diagnostics not written yet: (diagnostics, locator)
        # a file the editor opened by another name (through a symlink) than its resolved path,
        # which the engine names it by: its diagnostics go to the editor's name (uri_of)
        self.opened_as: dict[Path, str] = {}
        self.sending: asyncio.Handle | None = None  # the next _send, scheduled
        self.roots: list[Path] = []
        self.problems_logged: set[str] = set()
        self.models_task: asyncio.Future | None = None
        self.models_again = False
        self.models_keys: set[tuple[Path, str]] | None = None  # the environments the next load is for (None: all)
        self.models_loaded = False  # a load of every environment's models was started
        self.rescan_task: asyncio.Future | None = None  # discovery again, in a thread (request_rescan)
        self.rebuild_task: asyncio.Future | None = None  # environments built anew, in a thread (rebuild)
        self.rescan_models = False  # load the models of what the rescan changed, once it is adopted
        self.after_rescan: list[Callable[[], None]] = []  # what waits for the rescan (request_rescan)
        self.models_rejudged = False  # the models loaded again once the schema pass is complete
        self.model_errors: dict[tuple[Path, str], str | None] = {}  # the last one said, per environment
        self.full_pass: asyncio.TimerHandle | None = None
        self.full_task: asyncio.Future | None = None
        self.cache_saved = float("-inf")  # when the engine's persistent cache was last written
        self.graph_key: tuple | None = None  # what GRAPH_CHANGED last announced
        self.verifier = Verifier()  # the truth pass (truth.py): after a save, in the background
        self.verify_task: asyncio.Future | None = None
        self.verify_again = False
        self.tasks: set[asyncio.Future] = set()  # background tasks, referenced until they end
        self.collector = FrozenGrowth()  # when to sweep what the passes froze (engine.collector)
        self.sweep: asyncio.TimerHandle | None = None
        self.watchdog: Watchdog | None = None  # MIGRATION_LSP_WATCHDOG: stalls of the event loop reported on stderr (watchdog.py)

    def start_io(self, stdin=None, stdout=None) -> None:
        """pygls's stdio server, but stdin read on the event loop (PipeReader) when it is a
        pipe or a socket on a POSIX system; otherwise pygls's own reader thread."""
        if stdin is not None or os.name != "posix" or not is_pipe(sys.stdin.fileno(), sys.stdout.fileno()):
            super().start_io(stdin, stdout)
            return
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        try:
            asyncio.run(self.serve_pipe(sys.stdin.buffer, self._stop_event))
        except BrokenPipeError:
            log.error("the connection to the client is lost: shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    async def serve_pipe(self, pipe, stop: threading.Event) -> None:
        """Read and handle messages from `pipe` on the running loop until it ends or `stop` is set."""
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=LINE_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
        await run_async(stop_event=stop, reader=PipeReader(stream), protocol=self.protocol,
                        logger=logging.getLogger("pygls.server"), error_handler=self.report_server_error)
        if isinstance(self.protocol, MigrationProtocol) and self.protocol.exiting is not None:
            await self.protocol.exiting  # (the input ended after `exit`: its answers are still owed)

    def spawn(self, coro) -> asyncio.Future:
        """A background task, kept referenced until it ends (the loop holds tasks weakly)."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ---------------------------------------------------------------- helpers

    @property
    def snapshot(self) -> Snapshot | None:
        """For requests: the engine's latest snapshot (current graph; schema diagnostics as of
        the last full pass), None before the first. Only read: every change notification
        builds the next quick one before a request can come, and nothing a request does
        starts a build on the loop."""
        latest = self.engine.latest if self.engine is not None else None
        return self.verifier.apply(latest) if latest is not None else None

    async def complete_snapshot(self, attempts: int = 5) -> Snapshot | None:
        """A snapshot whose schema part is current, for what needs it (a fix built on
        codeAction/resolve): a rebuild under way (in its thread) is awaited, the full pass is
        started now (not after the typing pause) and awaited, in its slices; None when edits
        keep making it stale. Nothing is built here: the pass builds, in slices."""
        for _ in range(attempts):
            if self.engine is None:
                return None
            if self.engine.rebuild_pending:
                await asyncio.shield(rebuild(self))
            snapshot = self.engine.latest
            if snapshot is not None and self.engine.current and not self.engine.rebuild_pending and not any(
                    state.partial for state in snapshot.environments):
                return snapshot
            if self.full_pass is not None:
                self.full_pass.cancel()
            await asyncio.shield(self._start_full_pass())
        return None

    def locator(self, snapshot: Snapshot) -> Locator:
        encoding = self.workspace.position_encoding if self.protocol._workspace else "utf-16"
        return Locator(snapshot, str(getattr(encoding, "value", encoding) or "utf-16"))

    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:  # noqa: BLE001, S110 - called from every handler's failure path: telling must not fail it
            pass

    def uri_of(self, path: Path) -> str:
        """The URI a file's diagnostics are sent to: the one the editor opened it by."""
        return self.opened_as.get(path) or path_to_uri(path)

    def opened(self, uri: str) -> None:
        """The editor opened a file by `uri`. Named through a symlink, its diagnostics go there
        from now on, and are taken back from the name they were sent to until now."""
        path, named = uri_to_path(uri), uri_to_path(uri, lambda p: p)
        if path is None or named is None:
            return
        was = self.uri_of(path)
        if named != path:
            self.opened_as[path] = uri
        else:  # (its own name: as before, path_to_uri's)
            self.opened_as.pop(path, None)
        if self.uri_of(path) != was and path in self.published and not self.pull:
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=was, diagnostics=[]))
            if self.engine is not None and self.engine.latest is not None:
                self.unsent[path] = (self.published[path], self.locator(self.engine.latest))
                self._send()

    def editor_names(self, edit: types.WorkspaceEdit | None) -> types.WorkspaceEdit | None:
        """`edit` with each file the editor opened by another name (a symlink) named so: an
        edit of the file's real URI would not reach the open buffer."""
        if edit is None or not self.opened_as:
            return edit

        def name(uri: str) -> str:
            path = uri_to_path(uri)
            return self.opened_as.get(path, uri) if path is not None else uri

        if edit.changes:
            edit.changes = {name(uri): edits for uri, edits in edit.changes.items()}
        for change in edit.document_changes or []:
            if isinstance(change, types.TextDocumentEdit):
                change.text_document.uri = name(change.text_document.uri)
        return edit

    def exists(self, path: Path) -> bool:
        return path.exists() or (self.engine is not None and path.resolve() in self.engine.buffers)

    def refresh(self) -> None:
        """After any change: send what changed (push) or ask the client to pull again.
        A quick pass (graph) answers at once; the full pass (schema replay, models,
        downgrades) follows when the edits pause, in slices between requests."""
        if self.engine is None:
            return
        self._publish(self.verifier.apply(self.engine.snapshot(quick=True)))
        if self.engine.rebuild_pending:
            rebuild(self)  # (environments to build anew, e.g. many files changed on disk: in a thread)

    def _publish(self, snapshot: Snapshot) -> None:
        announce_graph(self, snapshot)
        for problem in snapshot.problems:
            key = f"{problem.path}: {problem.message}"
            if key not in self.problems_logged:
                self.problems_logged.add(key)
                self.log(key, types.MessageType.Warning)
        if any(state.partial for state in snapshot.environments):
            self._schedule_full_pass()
        by_path = snapshot.diagnostics_by_path()
        changed = self._changed_paths(snapshot, by_path)
        self.published = dict(by_path)
        self.published_states = snapshot.environments
        if not changed:
            return
        if self.pull:
            self.spawn(self._request_refresh())
            return
        locator = self.locator(snapshot)
        for path in changed:
            self.unsent.pop(path, None)  # (a newer version replaces one not sent yet)
            self.unsent[path] = (by_path.get(path, ()), locator)
        self._send()

    def _send(self, scheduled: bool = False) -> None:
        """Push the diagnostics of up to PUBLISH_CHUNK files, the open ones first, and the
        rest on the next turns of the event loop. A complete pass can change thousands of
        files' diagnostics at once (a link broken in the middle of the history): written in
        one go, they held the loop for 100-260 ms at 5,000 revisions (found by a watchdog
        on the loop: the writes block on the client's pipe) while a keystroke waited."""
        if scheduled:
            self.sending = None
        buffers = self.engine.buffers if self.engine is not None else {}
        batch = [path for path in buffers if path in self.unsent]
        for path in self.unsent:
            if len(batch) >= PUBLISH_CHUNK:
                break
            if path not in buffers:
                batch.append(path)
        for path in batch:
            diagnostics, locator = self.unsent.pop(path)
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
                uri=self.uri_of(path), diagnostics=[to_lsp(d, locator) for d in diagnostics]))
        if not self.unsent or self.sending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # (no loop: nothing waits, send the rest now)
            self._send()
            return
        self.sending = loop.call_soon(self._send, True)

    def _changed_paths(self, snapshot: Snapshot, by_path: dict[Path, tuple]) -> list[Path]:
        """The files whose diagnostics differ from those last published. After a keystroke
        each environment's state says which few files can differ from the state it was made
        from (EnvironmentState.delta): when those are the states last published, only they
        are compared (20,000 revisions: tens of thousands of path lookups less per edit)."""
        old = self.published
        candidates = None if self.verifier.outcomes else _delta(self.published_states, snapshot.environments)
        if candidates is not None:
            return [p for p in candidates if (was := old.get(p)) is not (now := by_path.get(p)) and was != now]
        # per-file tuples are shared between snapshots: unchanged files compare by identity
        changed = [p for p, now in by_path.items() if (was := old.get(p)) is not now and was != now]
        added = sum(1 for p in changed if p not in old)
        if len(old) + added > len(by_path):  # some files' diagnostics went away: which
            changed += [p for p in old if p not in by_path]
        return changed

    def _schedule_full_pass(self) -> None:
        self._cancel_sweep()
        if self.full_pass is not None:
            self.full_pass.cancel()
        loop = asyncio.get_event_loop()
        self.full_pass = loop.call_later(FULL_PASS_DELAY, self._start_full_pass)

    def _start_full_pass(self) -> asyncio.Future:
        """The full pass, started unless one runs (that one sees the newer edit, stops, and
        schedules the next): the running task."""
        self._cancel_sweep()
        self.full_pass = None
        if self.full_task is None or self.full_task.done():
            self.full_task = self.spawn(self._full_pass())
        return self.full_task

    async def _full_pass(self) -> None:
        """engine.snapshot_steps() in slices of SLICE_SECONDS, yielding to the event loop in
        between: requests and edits are answered while the schema is replayed. An edit
        makes the engine abandon the pass (its results so far stay cached)."""
        engine = self.engine
        if engine is None:
            return
        try:
            with self.collector.paused():  # (core.paused_gc(freeze=True), counted)
                await sliced(engine.snapshot_steps())
            self.refresh()  # the full picture, unless abandoned
            if engine.latest is not None and not any(s.partial for s in engine.latest.environments):
                self._after_complete_pass()
            if not self.models_rejudged and any(m.needs_schema for m in engine.models.values()):
                self.models_rejudged = True  # once: env.py's filters now see what the migrations build
                schedule_models(self)
            if time.monotonic() - self.cache_saved > CACHE_SAVE_INTERVAL:
                self._when_idle()  # (a save on the loop is what the next edit's requests waited for)
        except Exception:  # noqa: BLE001 - a bug of ours in the pass: said in the log, the session goes on
            self.log(f"full pass failed:\n{traceback.format_exc()}", types.MessageType.Error)

    def _after_complete_pass(self) -> None:
        """The collector's baseline (one exact count, after the first complete pass) is taken,
        and after a later pass whose frozen objects may have grown enough the collector is
        looked at, when the session is idle (SWEEP_IDLE with no change: an edit cancels it,
        and the next complete pass asks again). The count walks every frozen object: 78 ms
        of loop CPU at 5,000 revisions, taken at the end of the first complete pass, which
        the watchdog caught holding a keystroke (RESULTS.md, "the last slow keystrokes")."""
        if self.collector.baseline is None or self.collector.may_be_due():
            self._when_idle()

    def _when_idle(self) -> None:
        """The cache save and the collector's look, once SWEEP_IDLE passed with no change
        (each takes tens of milliseconds or more on the loop; an edit cancels the timer)."""
        if self.sweep is None:
            self.sweep = asyncio.get_event_loop().call_later(SWEEP_IDLE, self._sweep)

    def _sweep(self) -> None:
        self.sweep = None
        if self.engine is not None and time.monotonic() - self.cache_saved > CACHE_SAVE_INTERVAL:
            self.cache_saved = time.monotonic()
            self.engine.save_cache()
        if self.collector.baseline is None:
            if self.engine is not None and self.engine.latest is not None and not any(
                    state.partial for state in self.engine.latest.environments):  # (after a complete pass)
                self.collector.frozen(gc.get_freeze_count())
            return
        seconds = self.collector.check()
        if seconds is not None:
            self.log(f"collector: the frozen objects swept ({self.collector.baseline:,} left) in "
                     f"{seconds * 1000:.0f} ms", types.MessageType.Log)

    def _cancel_sweep(self) -> None:
        if self.sweep is not None:
            self.sweep.cancel()
            self.sweep = None

    async def _request_refresh(self) -> None:
        try:
            await ask_client(self.workspace_diagnostic_refresh_async(None))
        except CLIENT_ERRORS:
            pass  # (the client pulls again on its own when it wants to)


def _delta(published: tuple, states: tuple) -> set[Path] | None:
    """The files whose entries can differ between the published states and `states`, when
    each state is a published one or says what changed since it (None: any may differ)."""
    if len(published) != len(states):
        return None
    out: set[Path] = set()
    for was, now in zip(published, states):
        if now is was:
            continue
        if now.delta is None or now.delta[0]() is not was:
            return None
        out |= now.delta[1]
    return out


async def sliced(steps) -> None:
    """Run a generator of small steps on the event loop, yielding to it every SLICE_SECONDS:
    requests and edits are answered in between."""
    slice_started = time.perf_counter()
    for _ in steps:
        if time.perf_counter() - slice_started > SLICE_SECONDS:
            # a real pause, not sleep(0): pygls reads stdin in a thread, one line per
            # round trip, and that thread needs the GIL to hand a message over
            await asyncio.sleep(SLICE_PAUSE)
            slice_started = time.perf_counter()


server = MigrationServer()


async def ask_client(request) -> Any:
    """A server-to-client request that never blocks us: give up after CLIENT_TIMEOUT, but
    leave the request itself pending (shielded), so a late answer is simply dropped instead
    of landing on a cancelled future (which pygls would report as an error)."""
    future = asyncio.ensure_future(request)
    _asked.add(future)  # (a task is held weakly by the loop: kept until the answer or the end)
    future.add_done_callback(_asked.discard)
    return await asyncio.wait_for(asyncio.shield(future), CLIENT_TIMEOUT)


_asked: set[asyncio.Future] = set()


def safe(default: Any = None):
    """No request may crash the server: log the failure, answer `default`."""

    def decorate(fn):
        if asyncio.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def wrapper(ls, *args):
                try:
                    return await fn(ls, *args)
                except Exception:  # noqa: BLE001 - no request may crash the server: logged, answered
                    ls.log(f"{fn.__name__} failed:\n{traceback.format_exc()}", types.MessageType.Error)
                    return default
        else:
            @functools.wraps(fn)
            def wrapper(ls, *args):
                try:
                    return fn(ls, *args)
                except Exception:  # noqa: BLE001 - no request may crash the server: logged, answered
                    ls.log(f"{fn.__name__} failed:\n{traceback.format_exc()}", types.MessageType.Error)
                    return default
        return wrapper

    return decorate


def _document(ls: MigrationServer, uri: str) -> tuple[Engine, Path] | None:
    """The engine and the document's path (None before the first index, or not a file)."""
    path = uri_to_path(uri)
    if path is None or ls.engine is None:
        return None
    return ls.engine, path


def _doc_path(ls: MigrationServer, uri: str) -> Path | None:
    found = _document(ls, uri)
    return found[1] if found is not None else None


# --------------------------------------------------------------------------- lifecycle


@server.feature(types.INITIALIZE)
def on_initialize(ls: MigrationServer, params: types.InitializeParams) -> None:
    options = params.initialization_options if isinstance(params.initialization_options, dict) else {}
    ls.trusted, why = trust_of(params.initialization_options)
    if not ls.trusted:
        ls.untrusted_reason = why
    settings = options.get("settings") or options.get(CONFIG_SECTION) or {}
    ls.init_overrides = _settings(settings)
    ls.verifier.configure(settings)
    ls.overrides = dict(ls.init_overrides)
    ls.pull = wants_pull(params.capabilities)
    roots = [uri_to_path(f.uri) for f in params.workspace_folders or []]
    ls.folder_uris = {root: f.uri for root, f in zip(roots, params.workspace_folders or []) if root is not None}
    if not roots and params.root_uri:
        roots = [uri_to_path(params.root_uri)]
    if not roots and params.root_path:
        roots = [Path(params.root_path).resolve()]
    ls.roots = [r for r in roots if r is not None and r.is_dir()]


def trust_of(options: Any) -> tuple[bool, str]:
    """Trust fails closed: only `initializationOptions.trusted` being the JSON boolean `true`
    lets project code (the models, the project's template) run; anything else — missing,
    null, "true", 1, a nested object — is untrusted, with the reason said once in the log."""
    value = options.get("trusted", _MISSING) if isinstance(options, dict) else _MISSING
    if value is True:
        return True, ""
    if value is _MISSING:
        return False, ("the workspace is not trusted: the client did not send initializationOptions.trusted = true "
                       "(no project code is run)")
    return False, (f"the workspace is not trusted: initializationOptions.trusted is {json.dumps(value, default=str)[:40]}, "
                   "not the JSON boolean true (no project code is run)")


_MISSING = object()


def _settings(raw: Any) -> dict[str, Any]:
    """LSP settings (camelCase or kebab-case) -> engine overrides."""
    if not isinstance(raw, dict):
        return {}
    if CONFIG_SECTION in raw and isinstance(raw[CONFIG_SECTION], dict):
        raw = raw[CONFIG_SECTION]
    names = {"select": "select", "ignore": "ignore", "models": "models", "python": "python", "dialect": "dialect",
             "excludeTables": "exclude_tables", "exclude-tables": "exclude_tables", "exclude_tables": "exclude_tables",
             "baseBranch": "base-branch", "base-branch": "base-branch", "base_branch": "base-branch",
             "postgresVersion": "postgres_version", "postgres-version": "postgres_version",
             "postgres_version": "postgres_version", "lockHints": "lock_hints", "lock-hints": "lock_hints",
             "lock_hints": "lock_hints", "initialMetadata": "initial_metadata",
             "initial-metadata": "initial_metadata", "initial_metadata": "initial_metadata"}
    return {names[k]: v for k, v in raw.items() if k in names and v not in (None, "", [])}


@server.feature(types.INITIALIZED)
async def on_initialized(ls: MigrationServer, params: types.InitializedParams) -> None:
    started = time.perf_counter()
    if ls.watchdog is None:
        ls.watchdog = start_watchdog(asyncio.get_running_loop())
    # progress is created alongside indexing: a client slow to answer must not delay it
    progress = ls.spawn(_begin_progress(ls, "Indexing Alembic migrations"))
    try:
        with paused_gc(freeze=True):
            engine = await asyncio.to_thread(_build_engine, ls.roots, ls.overrides, ls.trusted,
                                            ls.untrusted_reason, ls.folder_overrides)
    except Exception:  # noqa: BLE001 - a bug of ours reading the workspace: an empty engine, said in the log
        ls.log(f"indexing failed:\n{traceback.format_exc()}", types.MessageType.Error)
        engine = Engine([], {}, trusted=ls.trusted)
    engine.rebuild_off_loop = True  # (from now on: the environments to build anew are built in a thread)
    ls.engine = engine
    if engine.workspace.folders != tuple(dict.fromkeys(r.resolve() for r in ls.roots)):  # folders changed while indexing
        engine.set_folders(ls.roots)
        request_rescan(ls, walk=(), clear=False)
    for doc in list(ls.workspace.text_documents.values()):  # opened while we were indexing
        path = uri_to_path(doc.uri)
        if path is not None:
            engine.set_buffer(path, doc.source)
    snapshot = engine.snapshot(quick=True)
    revisions = sum(len(s.graph.by_id) for s in snapshot.environments)
    ls.log(f"migration-lsp {__version__}: {len(snapshot.environments)} environment(s), {revisions} revisions "
           f"indexed in {(time.perf_counter() - started) * 1000:.0f} ms (trusted workspace: {ls.trusted})")
    if not ls.trusted:
        ls.log(ls.untrusted_reason, types.MessageType.Warning)
    ls.ready.set()
    ls.refresh()
    for doc in list(ls.workspace.text_documents.values()):  # opened while indexing: answer them
        _announce_checked(ls, doc.uri)
    def indexed(task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is None:
            _end_progress(ls, task.result(), f"{revisions} revisions")

    progress.add_done_callback(indexed)
    ls.spawn(_register_watchers(ls))
    ls.spawn(_poll_git(ls))
    ls.spawn(_configure_then_load_models(ls))


async def _configure_then_load_models(ls: MigrationServer) -> None:
    """The models are imported once the client has said each folder's settings: with the
    interpreter of their own folder (multi-root), never first with the workspace's."""
    await _load_configuration(ls)
    if ls.engine is not None and ls.engine.rescan_pending:
        ls.rescan_models = True  # once the rescan has taken in the settings (new ones, or a save's)
    elif ls.models_task is None:  # (new settings have started it already)
        schedule_models(ls)


def schedule_models(ls: MigrationServer, only: Iterable[tuple[Path, str]] | None = None) -> None:
    """(Re)load the models off the event loop; only ever in a trusted workspace. `only`: of
    these environments (a rescan changed only them); the first load is of every one."""
    if ls.engine is None or not ls.trusted:
        return
    wanted = set(only) if only is not None and ls.models_loaded else None
    ls.models_loaded = True
    if ls.models_task is not None and not ls.models_task.done():
        pending = ls.models_keys if ls.models_again else set()
        ls.models_keys = None if wanted is None or pending is None else pending | wanted
        ls.models_again = True
        return
    if wanted is not None and not wanted:
        return
    ls.models_keys = wanted
    ls.models_task = ls.spawn(_load_models(ls))


def request_rescan(ls: MigrationServer, walk: Iterable[Path] | None = None, clear: bool = True,
                   models: bool = False, then: Callable[[], None] | None = None) -> None:
    """Discover again (Engine.want_rescan: `walk` these roots, by default all), off the event
    loop: the walk runs in a thread, the result is taken in on the loop (Engine.adopt). One
    rescan runs at a time; one asked for meanwhile supersedes it (its result is dropped, the
    next one walks what both asked for). Requests read the latest snapshot meanwhile, and
    edits go on: they are in the open buffers, which win over whatever the walk read.
    `models`: then load the models of the environments that changed; `then`: run it once the
    rescan is taken in (the truth pass after a save that created a migration must see it)."""
    if ls.engine is None:
        return
    ls.engine.want_rescan(walk, clear)
    ls.rescan_models = ls.rescan_models or models
    if then is not None:
        ls.after_rescan.append(then)
    run_rescans(ls)


def run_rescans(ls: MigrationServer) -> None:
    """Run the rescans the engine wants (Engine.rescan_pending) off the event loop, unless
    they already run (the running task goes on to the newest)."""
    if ls.rescan_task is None or ls.rescan_task.done():
        ls.rescan_task = ls.spawn(_rescan(ls))


async def _rescan(ls: MigrationServer) -> None:
    while (engine := ls.engine) is not None and engine.rescan_pending:
        plan = engine.plan_rescan()
        try:
            found = await asyncio.to_thread(plan.run)
        except Exception:  # noqa: BLE001 - a bug of ours reading the workspace: said in the log, the old picture stays
            ls.log(f"rescan failed:\n{traceback.format_exc()}", types.MessageType.Error)
            return
        changed = engine.adopt(plan, found) if engine is ls.engine else None
        if changed is None:
            continue  # superseded (or another engine): the newer rescan runs now
        again = ", ".join(sorted(f"{name} ({root})" for root, name in changed)) or "none"
        ls.log(f"rescan: {len(engine.environments())} environment(s); built again: {again}", types.MessageType.Log)
        ls.refresh()
        if engine.rebuild_pending and not engine.rescan_pending:  # what follows sees the rescan's picture
            await asyncio.shield(rebuild(ls))
        if engine.rescan_pending:
            continue
        if ls.rescan_models:
            ls.rescan_models = False
            schedule_models(ls, changed)
        then, ls.after_rescan = ls.after_rescan, []
        for call in then:
            call()


def rebuild(ls: MigrationServer) -> asyncio.Future:
    """Build anew, off the event loop, the environments a base move or a rescan made stale
    (Engine.plan_rebuild: in a thread; take_rebuild: on the loop): requests read their
    previous states meanwhile, with edits patched in. One rebuild runs at a time (the
    running task is returned); it goes on while some are stale."""
    if ls.rebuild_task is None or ls.rebuild_task.done():
        ls.rebuild_task = ls.spawn(_rebuild(ls))
    return ls.rebuild_task


async def _rebuild(ls: MigrationServer) -> None:
    while (engine := ls.engine) is not None and engine.rebuild_pending:
        plan = engine.plan_rebuild()
        try:
            states = await asyncio.to_thread(plan.run)
        except Exception:  # noqa: BLE001 - a bug of ours building: said in the log, the old picture stays
            ls.log(f"rebuild failed:\n{traceback.format_exc()}", types.MessageType.Error)
            return
        if engine is not ls.engine:
            return
        if engine.take_rebuild(plan, states) is not None:
            ls.refresh()


async def _load_models(ls: MigrationServer) -> None:
    from .models import load_models

    def load(jobs: list) -> list:
        return [(key, load_models(env, src)) for key, env, src in jobs]

    while True:
        engine = ls.engine
        if engine is None:
            return
        ls.models_again = False
        keys, ls.models_keys = ls.models_keys, None
        await sliced(engine.heads_steps())  # (model_jobs reads the schema at the heads)
        jobs = [job for job in engine.model_jobs() if keys is None or job[0] in keys]
        try:
            results = await asyncio.to_thread(load, jobs)
        except Exception:  # noqa: BLE001 - a bug of ours around the model child: said in the log
            ls.log(f"loading models failed:\n{traceback.format_exc()}", types.MessageType.Error)
            return
        live = dict(engine.environments())
        for key, models in results:
            if key not in live:  # its workspace folder was removed meanwhile
                continue
            engine.set_models(key, models)
            if models.error and ls.model_errors.get(key) != models.error:  # said once, until it changes
                ls.log(f"models of {key[1]}: {models.error}", types.MessageType.Warning)
            ls.model_errors[key] = models.error
        ls.refresh()
        if not ls.models_again:
            schedule_verify(ls)
            return


def schedule_verify(ls: MigrationServer) -> None:
    """The truth pass in the background (trusted workspaces, `verify` not "off"): after the
    models load and after each save; one at a time, a newer request runs after it."""
    if ls.engine is None or not ls.trusted or not ls.verifier.enabled:
        return
    if ls.verify_task is not None and not ls.verify_task.done():
        ls.verify_again = True
        return
    ls.verify_task = ls.spawn(_verify(ls))


async def _verify(ls: MigrationServer) -> None:
    """The pass reads a complete snapshot and the schema at the heads: both are computed on
    the loop in slices (the full pass, then the replay up to the heads), then the pass
    itself runs in a thread."""
    while True:
        ls.verify_again = False
        generation = ls.verifier.generation

        def cancelled(generation: int = generation) -> bool:
            return generation != ls.verifier.generation

        try:
            snapshot = await ls.complete_snapshot()
            if snapshot is None or ls.engine is None:  # edits keep coming: the next save asks again
                return
            await sliced(ls.engine.heads_steps(snapshot.environments))
            jobs = ls.verifier.jobs(ls.engine, snapshot)
            token = await _begin_progress(ls, "Running the migrations on a scratch database")
            outcomes = await asyncio.to_thread(ls.verifier.run, jobs, cancelled)
        except Exception:  # noqa: BLE001 - a bug of ours around the scratch database: said in the log
            ls.log(f"truth pass failed:\n{traceback.format_exc()}", types.MessageType.Error)
            return
        _end_progress(ls, token, "; ".join(o.summary() for o in outcomes.values())[:200] or "nothing to run")
        if ls.verifier.accept(generation, outcomes):
            for outcome in outcomes.values():
                ls.log(outcome.summary())
            ls.refresh()
        if not ls.verify_again:
            return


def _build_engine(roots: list[Path], overrides: dict, trusted: bool, untrusted_reason: str,
                  folder_overrides: dict[Path, dict]) -> Engine:
    engine = Engine(roots, overrides, trusted=trusted, untrusted_reason=untrusted_reason,
                    folder_overrides=folder_overrides)
    engine.snapshot(quick=True)  # parse + graph: first diagnostics; the schema pass follows
    engine.warm_up()
    return engine


async def _begin_progress(ls: MigrationServer, title: str) -> str | None:
    caps = ls.client_capabilities
    if not (caps.window and caps.window.work_done_progress):
        return None
    token = f"migration-lsp-{uuid.uuid4().hex[:8]}"
    try:
        await ask_client(ls.work_done_progress.create_async(token))
    except CLIENT_ERRORS:
        return None
    ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, percentage=0))
    return token


def _end_progress(ls: MigrationServer, token: str | None, message: str) -> None:
    if token is not None:
        ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))


async def _register_watchers(ls: MigrationServer) -> None:
    caps = ls.client_capabilities
    watch = caps.workspace.did_change_watched_files if caps.workspace else None
    if not (watch and watch.dynamic_registration):
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern=glob) for glob in WATCH_GLOBS + GIT_GLOBS])
    registration = types.Registration(id=f"watch-{uuid.uuid4().hex[:8]}",
                                      method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options)
    try:
        await ask_client(ls.client_register_capability_async(types.RegistrationParams(registrations=[registration])))
    except CLIENT_ERRORS as exc:
        ls.log(f"file watching not registered: {exc!r}", types.MessageType.Warning)


async def _load_configuration(ls: MigrationServer) -> None:
    """The section once without a scope, then once per workspace folder (scopeUri): in a
    multi-root workspace each folder may have its own settings, such as the interpreter that
    imports its models (VS Code: the one selected in the Python extension for that folder)."""
    caps = ls.client_capabilities
    if not (caps.workspace and caps.workspace.configuration):
        return
    folders = [(root, uri) for root, uri in ls.folder_uris.items() if root in ls.roots]
    items = [types.ConfigurationItem(section=CONFIG_SECTION)]
    items += [types.ConfigurationItem(scope_uri=uri, section=CONFIG_SECTION) for _, uri in folders]
    try:
        result = await ask_client(ls.workspace_configuration_async(types.ConfigurationParams(items=items)))
    except CLIENT_ERRORS:
        return
    result = list(result) if isinstance(result, (list, tuple)) else []
    scoped = {root: answer for (root, _), answer in zip(folders, result[1:])}
    _apply_settings(ls, result[0] if result else None, scoped)


def _apply_settings(ls: MigrationServer, settings: Any, scoped: dict[Path, Any] | None = None) -> None:
    """New settings rescan the workspace and reload the models; the same ones again (Neovim
    sends them at start, clients repeat them) change nothing. A settings object from the
    client is the whole current configuration: it replaces the one sent at initialize (a
    setting removed since is gone); no object at all (a client without such a section) keeps
    the initialize ones. `scoped` holds each folder's answer: what differs from `settings`
    applies to that folder only (without it, the folders keep what they had)."""
    overrides = _settings(settings) if isinstance(settings, dict) else dict(ls.init_overrides)
    if isinstance(settings, dict):
        ls.verifier.configure(settings)
    folders = ls.folder_overrides if scoped is None else {
        root: own for root, raw in scoped.items()
        if (own := {k: v for k, v in _settings(raw).items() if overrides.get(k) != v})}
    engine = ls.engine
    if (overrides, folders) != ((engine.workspace.overrides, engine.workspace.folder_overrides) if engine else
                                (ls.overrides, ls.folder_overrides)):
        ls.overrides = overrides
        ls.folder_overrides = folders
        if engine:
            # the workspace's settings: everything again; a folder's own: what they apply to
            everything = overrides != engine.workspace.overrides
            engine.configure(overrides, folders)
            request_rescan(ls, walk=None if everything else (), clear=everything, models=True)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
@safe()
async def on_configuration(ls: MigrationServer, params: types.DidChangeConfigurationParams) -> None:
    if isinstance(params.settings, dict) and CONFIG_SECTION in params.settings:  # ours, not another tool's
        _apply_settings(ls, params.settings)
    await _load_configuration(ls)


# --------------------------------------------------------------------------- documents


def _sync(ls: MigrationServer, uri: str) -> None:
    found = _document(ls, uri)
    if found is None:
        return
    engine, path = found
    engine.set_buffer(path, ls.workspace.get_text_document(uri).source)
    ls.refresh()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
@safe()
def did_open(ls: MigrationServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.opened(params.text_document.uri)  # (also while indexing: the diagnostics that follow go to its name)
    _sync(ls, params.text_document.uri)
    _announce_checked(ls, params.text_document.uri)


def _announce_checked(ls: MigrationServer, uri: str) -> None:
    """A migration with nothing to report still gets an answer: the editor knows it was checked."""
    found = _document(ls, uri)
    if found is not None and not ls.pull and found[1] not in ls.published and found[0].tracks(found[1]):
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
@safe()
def did_change(ls: MigrationServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.verifier.invalidate()  # edited: the static findings until the pass after the save
    _sync(ls, params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
@safe()
def did_save(ls: MigrationServer, params: types.DidSaveTextDocumentParams) -> None:
    found = _document(ls, params.text_document.uri)
    if found is None:
        return
    engine, path = found
    engine.file_changed(path)
    ls.verifier.invalidate()
    ls.refresh()
    if path in engine.model_files() or path.name == "env.py":
        then = functools.partial(schedule_models, ls)  # (then the truth pass)
    else:
        then = functools.partial(schedule_verify, ls)
    if _is_config(path) or not engine.tracks(path):
        request_rescan(ls, then=then)  # a new migration file or a changed config: what follows sees it
    else:
        then()


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
@safe()
def did_close(ls: MigrationServer, params: types.DidCloseTextDocumentParams) -> None:
    found = _document(ls, params.text_document.uri)
    if found is not None:
        engine, path = found
        if engine.close_buffer(path):
            ls.refresh()
        else:  # a file new on disk: its buffer is closed when the rescan is taken in (Engine.adopt)
            run_rescans(ls)


@server.feature(types.SHUTDOWN)
@safe()
def on_shutdown(ls: MigrationServer, *args) -> None:
    """Keep what this session computed for the next start (outside the workspace)."""
    if ls.engine is not None:
        ls.engine.save_cache()


@server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
@safe()
def did_change_folders(ls: MigrationServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    """Folders added or removed, without a restart: a removed folder's diagnostics are cleared
    and its state dropped at once; a new one is discovered (in a thread, with its own settings
    asked for first) and published; the other folders keep their state."""
    removed = {path for f in params.event.removed if (path := uri_to_path(f.uri)) is not None}
    added = {path: f.uri for f in params.event.added if (path := uri_to_path(f.uri)) is not None and path.is_dir()}
    ls.roots = [r for r in ls.roots if r not in removed or r in added] + [p for p in added if p not in ls.roots]
    for root in removed - added.keys():
        ls.folder_uris.pop(root, None)
        ls.folder_overrides.pop(root, None)
    ls.folder_uris.update(added)
    if ls.engine is None:  # still indexing: on_initialized looks at ls.roots again
        return
    for key in ls.engine.set_folders(ls.roots):
        ls.model_errors.pop(key, None)
    ls.refresh()  # (the removed folders' diagnostics: published empty)
    ls.spawn(_folders_added(ls))


async def _folders_added(ls: MigrationServer) -> None:
    """The new folders' own settings (scopeUri) first, so that they are discovered once, with
    them; then the rescan that discovers them, and loads their models."""
    await _load_configuration(ls)
    request_rescan(ls, walk=(), clear=False, models=True)


def _is_config(path: Path) -> bool:
    return path.suffix == ".ini" or path.name in ("pyproject.toml", "env.py", "script.py.mako")


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
@safe()
def did_change_watched(ls: MigrationServer, params: types.DidChangeWatchedFilesParams) -> None:
    if ls.engine is None:
        return
    rescan = False
    resolve = Resolver()  # (a checkout sends thousands of events: each folder is resolved once)
    paths = [uri_to_path(change.uri, resolve) for change in params.changes]
    for change, path in zip(params.changes, paths):
        if path is None or ".git" in path.parts:  # HEAD or a ref: polled below
            continue
        if change.type != types.FileChangeType.Changed or _is_config(path):
            rescan = True
        elif path not in ls.engine.buffers:
            ls.engine.file_changed(path, resolve)
    ls.refresh()
    ls.spawn(_refresh_git(ls))
    model_files = ls.engine.model_files()
    models = any(path in model_files for path in paths)
    then = functools.partial(schedule_models, ls) if models else None
    if rescan:
        request_rescan(ls, then=then)
    elif then is not None:
        then()


# --------------------------------------------------------------------------- pull diagnostics


@server.feature(types.TEXT_DOCUMENT_DIAGNOSTIC,
                types.DiagnosticOptions(identifier="migration-lsp", inter_file_dependencies=True,
                                        workspace_diagnostics=True))
@safe()
async def pull_document(ls: MigrationServer, params: types.DocumentDiagnosticParams):
    await _wait_ready(ls)
    path = _doc_path(ls, params.text_document.uri)
    snapshot = ls.snapshot
    if path is None or snapshot is None:
        return types.RelatedFullDocumentDiagnosticReport(items=[], result_id="empty")
    items = file_diagnostics(snapshot.diagnostics_by_path(), path, ls.locator(snapshot))
    rid = result_id(items)
    if params.previous_result_id == rid:
        return types.RelatedUnchangedDocumentDiagnosticReport(result_id=rid)
    return types.RelatedFullDocumentDiagnosticReport(items=items, result_id=rid)


@server.feature(types.WORKSPACE_DIAGNOSTIC)
@safe()
async def pull_workspace(ls: MigrationServer, params: types.WorkspaceDiagnosticParams):
    await _wait_ready(ls)
    snapshot = ls.snapshot
    if snapshot is None:
        return types.WorkspaceDiagnosticReport(items=[])
    previous = {p.uri: p.value for p in params.previous_result_ids or []}
    by_path = snapshot.diagnostics_by_path()
    locator = ls.locator(snapshot)
    reports: list = []
    asked = {path for u in previous if (path := uri_to_path(u)) is not None}
    for path in sorted(set(by_path) | asked):
        uri = ls.uri_of(path)
        items = file_diagnostics(by_path, path, locator)
        rid = result_id(items)
        if previous.get(uri) == rid:
            reports.append(types.WorkspaceUnchangedDocumentDiagnosticReport(uri=uri, result_id=rid, version=None))
        else:
            reports.append(types.WorkspaceFullDocumentDiagnosticReport(uri=uri, items=items, result_id=rid, version=None))
    return types.WorkspaceDiagnosticReport(items=reports)


async def _wait_ready(ls: MigrationServer) -> None:
    try:
        await asyncio.wait_for(ls.ready.wait(), 60)
    except asyncio.TimeoutError:
        pass


# --------------------------------------------------------------------------- requests


def _request(fn=None, *, migrations_only: bool = True, schema: bool = False):
    """Wait for the first index, resolve the document, the snapshot and the locator;
    documents that are not migration files get None (unless `migrations_only` is off).
    `schema`: the feature reads the schema around the file's revision (hover, inlay hints):
    what of it is not computed yet is replayed first, in slices (_schema_ready)."""

    def decorate(fn):
        @functools.wraps(fn)
        async def wrapper(ls: MigrationServer, params):
            await _wait_ready(ls)
            path = _doc_path(ls, params.text_document.uri)
            snapshot = ls.snapshot
            if path is None or snapshot is None or (migrations_only and snapshot.script(path) is None):
                return None
            if schema:
                await _schema_ready(ls, snapshot, path)
            return fn(ls, params, snapshot, path, ls.locator(snapshot))

        return wrapper

    return decorate(fn) if fn is not None else decorate


async def _schema_ready(ls: MigrationServer, snapshot: Snapshot, path: Path) -> None:
    """The schema around the file's revision in `snapshot`, replayed in slices where it is
    not known yet (after a start whose pass found every result in the persistent cache, no
    revision was replayed): the feature's Replay.revision is then a lookup, never a replay of
    the history below on the loop. A quick snapshot has no replay: nothing to wait for."""
    state = snapshot.environment_of(path)
    script = state.script_by_path.get(path) if state is not None else None
    if state is None or script is None or not script.revision_id or ls.engine is None:
        return
    await sliced(ls.engine.replay_steps(state, script.revision_id))


@server.feature(types.TEXT_DOCUMENT_HOVER)
@safe()
@_request(schema=True)
def on_hover(ls, params: types.HoverParams, snapshot, path, locator):
    return hover(snapshot, path, params.position, locator)


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
@safe([])
@_request
def on_definition(ls, params: types.DefinitionParams, snapshot, path, locator):
    return definition(snapshot, path, params.position, locator)


@server.feature(types.TEXT_DOCUMENT_REFERENCES)
@safe([])
@_request
def on_references(ls, params: types.ReferenceParams, snapshot, path, locator):
    return references(snapshot, path, params.position, params.context.include_declaration, locator)


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["'", '"']))
@safe()
@_request
def on_completion(ls, params: types.CompletionParams, snapshot, path, locator):
    return completion(snapshot, path, params.position, locator)


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
@safe([])
@_request
def on_document_symbol(ls, params: types.DocumentSymbolParams, snapshot, path, locator):
    return document_symbols(snapshot, path, locator)


@server.feature(types.WORKSPACE_SYMBOL)
@safe([])
async def on_workspace_symbol(ls: MigrationServer, params: types.WorkspaceSymbolParams):
    await _wait_ready(ls)
    snapshot = ls.snapshot
    return workspace_symbols(snapshot, params.query, ls.locator(snapshot)) if snapshot else []


@server.feature(types.TEXT_DOCUMENT_CODE_LENS)
@safe([])
@_request
def on_code_lens(ls, params: types.CodeLensParams, snapshot, path, locator):
    return code_lenses(snapshot, path, locator)


@server.feature(types.TEXT_DOCUMENT_INLAY_HINT)
@safe([])
@_request(schema=True)
def on_inlay_hint(ls, params: types.InlayHintParams, snapshot, path, locator):
    return inlay_hints(snapshot, path, params.range, locator)


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, CREATE_NEXT_KIND, GENERATE_KIND],
                            resolve_provider=True),
)
@safe([])
@_request(migrations_only=False)
def on_code_action(ls, params: types.CodeActionParams, snapshot, path, locator):
    """Listed from the latest snapshot, never waiting for a pass: fixes that create a file
    or need the schema are built when resolved (or run)."""
    r = params.range
    span = Span(r.start.line, locator.column(path, r.start), r.end.line, locator.column(path, r.end))
    only = [str(k.value if hasattr(k, "value") else k) for k in params.context.only] if params.context.only else None
    support = EditSupport.from_capabilities(ls.client_capabilities)
    actions = code_actions(snapshot, path, span, only, locator, support, ls.exists, ls.trusted)
    for action in actions if ls.opened_as else ():
        if isinstance(action, types.CodeAction):
            action.edit = ls.editor_names(action.edit)
    return actions


async def _resolved_edit(ls: MigrationServer, data: Any) -> types.WorkspaceEdit | None:
    """The edit of a deferred action, built from a complete snapshot (the full pass awaited
    in its slices); what the fix needs of the schema is replayed in slices too."""
    await _wait_ready(ls)
    snapshot = await ls.complete_snapshot()
    if snapshot is None:
        return None
    engine = ls.engine

    async def replay(state, rev: str) -> None:
        if engine is not None:
            await sliced(engine.replay_steps(state, rev))

    return ls.editor_names(await resolve_edit(snapshot, data, ls.locator(snapshot),
                                              EditSupport.from_capabilities(ls.client_capabilities),
                                              ls.exists, ls.trusted, replay))


@server.feature(types.CODE_ACTION_RESOLVE)
async def on_code_action_resolve(ls: MigrationServer, action: types.CodeAction) -> types.CodeAction:
    """Fill in `edit`; on any failure the action comes back as it was (never an error)."""
    try:
        if action.edit is None and action.data is not None:
            action.edit = await _resolved_edit(ls, action.data)
    except Exception:  # noqa: BLE001 - no request may crash the server: the action comes back as it was
        ls.log(f"codeAction/resolve failed:\n{traceback.format_exc()}", types.MessageType.Error)
    return action


@server.command(APPLY_EDIT)
@safe()
async def apply_edit_command(ls: MigrationServer, *args):
    """For clients that cannot resolve an edit: render it now and send it with
    workspace/applyEdit. The argument is the action's data."""
    payload = args[0] if args else None
    if isinstance(payload, list):  # pygls passes the arguments list
        payload = payload[0] if payload else None
    edit = await _resolved_edit(ls, payload)
    if edit is None:
        return {"applied": False}
    result = await ask_client(
        ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label="migration-lsp")))
    return {"applied": bool(result and result.applied)}


@server.command(SHOW_GRAPH)
@safe()
def show_graph_command(ls: MigrationServer, *args):
    snapshot = ls.snapshot
    return format_mermaid(snapshot) if snapshot else ""


@server.command(STATUS)
@safe()
async def status_command(ls: MigrationServer, *args):
    """For a status bar: heads and the base branch of each environment (Engine.git_status,
    in a thread: reading a base branch not seen yet runs git)."""
    snapshot = ls.snapshot
    if snapshot is None or ls.engine is None:
        return {"environments": []}
    return await asyncio.to_thread(ls.engine.git_status, snapshot)


@server.feature(GRAPH)
@safe({"version": 1, "environments": []})
async def graph_request(ls: MigrationServer, *args):
    """The revision graph for the editor's status bar and graph view: formats.graph_data
    (file URIs, 0-based lines) and, per environment, its base branch as `migrationLsp.status`
    says it (`base`: {ref, ahead, behind} or null, `note`: why there is none)."""
    await _wait_ready(ls)
    snapshot = ls.snapshot
    if snapshot is None or ls.engine is None:
        return {"version": 1, "environments": []}
    data = graph_data(snapshot, path_to_uri, first_line=0)
    status = await asyncio.to_thread(ls.engine.git_status, snapshot)  # (git runs for a base not seen yet)
    for env, git in zip(data["environments"], status["environments"]):
        env["base"] = git["base"]
        if "note" in git:
            env["note"] = git["note"]
    return data


def wants_graph_changed(caps: types.ClientCapabilities) -> bool:
    ours = caps.experimental.get("migrationLsp") if isinstance(caps.experimental, dict) else None
    return isinstance(ours, dict) and ours.get("graphChanged") is True


def announce_graph(ls: MigrationServer, snapshot: Snapshot) -> None:
    """GRAPH_CHANGED when what a status bar shows changed: the heads (and their messages), the
    number of revisions, the base branch. Cheap (no sorting of all revisions): it runs on
    every publish, and typing in a migration changes none of it."""
    if ls.engine is None or not wants_graph_changed(ls.client_capabilities):
        return
    key = tuple(
        (state.env.name, len(state.graph.by_id),
         tuple((h, state.graph.message(h)) for h in sorted(state.graph.heads)),
         ls.engine.git.refs.get(state.env.root))
        for state in snapshot.environments if state.graph is not None)
    if key != ls.graph_key:
        ls.graph_key = key
        ls.protocol.notify(GRAPH_CHANGED, {})


async def _refresh_git(ls: MigrationServer) -> None:
    """engine.refresh_git() with its git half in a thread: the loop only learns the answer."""
    engine = ls.engine
    if engine is not None and await asyncio.to_thread(engine.poll_git) and engine is ls.engine:
        engine.base_moved()  # (every environment built anew in a thread: rebuild)
        ls.refresh()
        await asyncio.shield(rebuild(ls))


async def _poll_git(ls: MigrationServer) -> None:
    """HEAD and the refs, looked at now and then (a few stat calls; git runs only when one
    moved): a fetch in a terminal is seen even when the client does not watch the git
    folder, or the repository's git folder is outside the workspace (a worktree). Why the
    base-branch checks are off is said once."""
    while True:
        try:
            if ls.engine is not None:
                await _refresh_git(ls)
                for root, message in [*ls.engine.git.notes.items(), *ls.engine.git.errors.items()]:
                    if f"git {root}: {message}" not in ls.problems_logged:
                        ls.problems_logged.add(f"git {root}: {message}")
                        ls.log(message, types.MessageType.Info)
        except Exception:  # noqa: BLE001 - a bug of ours reading git: said in the log, polling goes on
            ls.log(f"looking at the base branch failed:\n{traceback.format_exc()}", types.MessageType.Error)
        await asyncio.sleep(GIT_POLL_SECONDS)


class _ToClient(logging.Handler):
    """The engine's warnings (a revision it failed to check) go to the editor's log too."""

    def emit(self, record: logging.LogRecord) -> None:
        server.log(self.format(record), types.MessageType.Error if record.levelno >= logging.ERROR
                   else types.MessageType.Warning)


def serve() -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("migration_lsp").addHandler(_ToClient(logging.WARNING))
    # clients cancel requests all the time (VS Code on every cursor move): not worth a warning
    logging.getLogger("pygls.protocol.json_rpc").setLevel(logging.ERROR)
    try:
        server.start_io()
    finally:  # the client went away without `exit`: no child may outlive us
        kill_children()
