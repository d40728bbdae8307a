"""The stall diagnostics of the server's event loop: the off-by-default watchdog
(MIGRATION_LSP_WATCHDOG) and the reader that takes the client's messages on the loop itself
(server.PipeReader) instead of pygls's thread with a round trip per line."""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading

from pygls.io_ import StdinAsyncReader, run_async

from migration_lsp import server as srv
from migration_lsp import watchdog


def test_the_watchdog_is_off_unless_asked_for():
    assert watchdog.threshold_from_env({}) is None
    assert watchdog.threshold_from_env({watchdog.ENV: ""}) is None
    assert watchdog.threshold_from_env({watchdog.ENV: "0"}) is None
    assert watchdog.threshold_from_env({watchdog.ENV: "soon"}) is None
    assert watchdog.threshold_from_env({watchdog.ENV: "120"}) == 0.12


async def test_no_watchdog_thread_without_the_setting(monkeypatch):
    monkeypatch.delenv(watchdog.ENV, raising=False)
    assert watchdog.start_from_env(asyncio.get_running_loop()) is None
    assert not any(t.name == "migration-lsp-watchdog" for t in threading.enumerate())


def hold_the_loop(dog: watchdog.Watchdog) -> int:
    """Our code keeping the event loop (pure Python: the GIL is handed over every switch
    interval, so the watchdog's thread samples it) until the watchdog has sampled it."""
    spins = 0
    while not dog.samples and spins < 10**9:
        spins += 1
    return spins


async def test_a_stall_is_reported_with_the_stack_that_held_the_loop():
    out = io.StringIO()
    dog = watchdog.Watchdog(threshold=0.02, out=out)
    dog.start(asyncio.get_running_loop())
    try:
        await asyncio.sleep(0.05)  # (a few beats)
        hold_the_loop(dog)
        for _ in range(1000):  # the loop beats again: the report follows on the thread's next check
            if dog.stalls:
                break
            await asyncio.sleep(0.01)
    finally:
        dog.stop.set()
    report = out.getvalue()
    assert dog.stalls >= 1, report
    assert "the event loop did not run for" in report
    assert "of event loop:" in report and "hold_the_loop" in report  # the stack that held it
    assert "thread event loop" in report and "waited for a core" in report  # per-thread CPU and run-queue wait


def _frame(payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    return f"Content-Length: {len(body)}\r\n\r\n".encode() + body


class _Recorder:
    """Stands for pygls's protocol: records what run_async hands over."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def structure_message(self, data: dict) -> dict:
        return data

    def handle_message(self, message: dict) -> None:
        self.messages.append(message)


async def _read_all(make_reader, data: bytes) -> tuple[list[dict], int, int]:
    """Feed `data` through a pipe to run_async with the reader `make_reader(read end)` makes:
    the messages handled, the executor calls it needed and the turns of the event loop it took."""
    loop = asyncio.get_running_loop()
    executor_calls = 0
    run_in_executor = loop.run_in_executor

    def counted(*args):
        nonlocal executor_calls
        executor_calls += 1
        return run_in_executor(*args)

    loop.run_in_executor = counted  # type: ignore[method-assign]  # (counted for this test only)
    turns = 0
    done = asyncio.Event()

    def turn() -> None:
        nonlocal turns
        turns += 1
        if not done.is_set():
            loop.call_soon(turn)

    read_fd, write_fd = os.pipe()

    def write() -> None:  # (in a thread: more than a pipe holds blocks until it is read)
        with open(write_fd, "wb") as end:
            end.write(data)

    writer = threading.Thread(target=write)
    if len(data) < 32768:
        write()  # (all of it there before reading starts: the turns counted are the reading's)
    else:
        writer.start()
    recorder = _Recorder()
    with os.fdopen(read_fd, "rb") as pipe:
        reader = await make_reader(pipe)
        loop.call_soon(turn)
        try:
            await run_async(threading.Event(), reader, recorder)  # type: ignore[arg-type]
        finally:
            done.set()
            loop.run_in_executor = run_in_executor  # type: ignore[method-assign]
    if writer.ident is not None:
        writer.join()
    return recorder.messages, executor_calls, turns


async def _pipe_reader(pipe) -> srv.PipeReader:
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(limit=srv.LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
    return srv.PipeReader(stream)


async def _pygls_reader(pipe) -> StdinAsyncReader:
    return StdinAsyncReader(pipe)


MESSAGES = [{"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"n": n, "text": "x" * 2000}}
            for n in range(5)]


async def test_messages_are_read_on_the_loop_without_a_thread_round_trip_per_line():
    """pygls's reader needs an executor call per line and per body, each a turn of the loop
    (and, while a pass runs, the GIL) before the next line is read; a keystroke waited for three
    of them. On a pipe, the server reads on the loop: no executor, the messages of one write
    handed over in a few turns whatever their number."""
    data = b"".join(_frame(m) for m in MESSAGES)
    theirs, their_calls, their_turns = await _read_all(_pygls_reader, data)
    ours, our_calls, our_turns = await _read_all(_pipe_reader, data)
    assert ours == theirs == MESSAGES
    assert their_calls >= 3 * len(MESSAGES)  # header, blank line, body (and the end of input)
    assert our_calls == 0
    assert our_turns <= 4 < their_turns


async def test_a_line_longer_than_the_limit_is_skipped_and_the_next_message_read():
    junk = b"X-Junk: " + b"y" * (3 * srv.LINE_LIMIT) + b"\r\n"
    data = _frame(MESSAGES[0]) + junk + _frame(MESSAGES[1]) + b"Content-Length: 999\r\n\r\n{\"trunc"
    ours, _, _ = await _read_all(_pipe_reader, data)
    assert ours == MESSAGES[:2]  # (and a message cut short by the end of input ends the reading)


def test_git_never_reads_the_servers_stdin(tmp_path):
    """The server's stdin is the client's stream (non-blocking once read on the loop): a git
    command started without input must get none, never inherit it."""
    import subprocess
    import sys

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    code = ("import sys; from pathlib import Path; from migration_lsp.gitbase import git; "
            "sys.stdout.write(git(Path(sys.argv[1]), 'hash-object', '--stdin').stdout.decode())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], input=b"Content-Length: 2\r\n\r\n{}",
                         capture_output=True, timeout=60, check=True).stdout.decode().strip()
    assert out == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # the empty blob: nothing of ours was read


def test_the_loop_reads_only_a_pipe_or_socket_of_its_own(tmp_path):
    """A pipe or a socket is read on the loop; a file, or one socket used both ways (the loop
    would make our writes to it non-blocking), is left to pygls's reader thread."""
    import socket

    read, unused_write = os.pipe()
    unused_read, write = os.pipe()  # (stdin and stdout: two pipes)
    one, other = socket.socketpair()
    regular = os.open(tmp_path / "f", os.O_CREAT | os.O_RDWR)
    try:
        assert srv.is_pipe(read, write)
        assert srv.is_pipe(one.fileno(), other.fileno())
        assert not srv.is_pipe(one.fileno(), one.fileno())
        assert not srv.is_pipe(regular, write)
    finally:
        for fd in (read, unused_write, unused_read, write, regular):
            os.close(fd)
        one.close()
        other.close()
