"""The CLI's first check of a large environment on two cores: a forked worker reads, keys and
parses the last part of the files while this process does the first part (issue 13, "the cold
path": a graph-only check is mostly reading files and scanning their headers, work that is
independent from file to file).

Why a fork: the worker starts with everything imported and the file list at hand, in about a
millisecond. Why `marshal`: the worker sends back plain tuples (scripts.to_plain), which load
in C with no code run; the records are built here. It sends two messages, each its length
first: the key pieces of its files (stored.files_digest: the memo key is the same whichever
process read a file), then the scripts, so that an environment found in the cache costs no
wait for the parse.

Only the CLI asks for it (Engine(fork=True)), only where os.fork exists, only in a process with
no other thread (a fork copies one thread: the server has several, and the progress line on a
terminal is one), and only from FORK_MIN files. The worker writes nothing but its pipe, and
leaves with os._exit (no buffers flushed, no atexit). Any failure of the worker — it died,
raised, sent less or other than expected — costs only time: the engine reads and parses those
files itself, to the same answer. `close()` always reaps it: no process or descriptor is left.
"""

from __future__ import annotations

import marshal
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..scripts import MigrationScript, from_plain, parse_script, to_plain
from .documents import unreadable
from .sources import decode_source, read_file
from .stored import KEY_CHUNK, files_digest

FORK_MIN = 1000  # files in an environment from which a worker pays for itself
SHARE = 0.55  # this process's part of the files (the worker's records cost it again to send and build here)
MAX_MESSAGE = 1 << 31  # a length beyond this is not one the worker sent
SIGKILL = 9  # (POSIX fixes it; the signal module's enums cost ~14 M instructions to import)
TIMEOUT = 10.0  # seconds a worker has for both messages, plus PER_FILE for each of its files
PER_FILE = 0.01  # (it reads and parses a file in ~40 us: a stuck worker, not a slow one, runs out)


def available() -> bool:
    """Can this process fork safely? Only with os.fork and no other thread (a fork copies the
    calling thread alone: a lock another one holds would stay locked in the worker)."""
    return hasattr(os, "fork") and threading.active_count() == 1


def split(count: int) -> int:
    """Where the worker's part starts: a multiple of KEY_CHUNK (the key pieces stay whole)."""
    return max(KEY_CHUNK, round(count * SHARE / KEY_CHUNK) * KEY_CHUNK)


def fork(job: Callable[[int], None]) -> tuple[int, int] | None:
    """A forked process running job(the write end of its pipe), then leaving with os._exit
    whatever happens: (its pid, the read end), or None when no pipe or fork could be made."""
    try:
        read, write = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return None
    if pid == 0:  # the worker: its pipe, then out, whatever happens
        code = 1
        try:
            os.close(read)
            job(write)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


class Worker:
    """A forked process working on files[start:]; read its results with pieces(), then
    scripts(); always close()."""

    def __init__(self, pid: int, fd: int, start: int, count: int) -> None:
        self.pid, self.fd, self.start, self.count = pid, fd, start, count
        self.deadline = time.monotonic() + TIMEOUT + PER_FILE * count

    @classmethod
    def start_for(cls, files: Sequence[Path]) -> Worker | None:
        """A worker for the last part of `files` (None: no fork here, or it failed)."""
        if len(files) < FORK_MIN or not available():
            return None
        start = split(len(files))
        mine = tuple(files[start:])
        made = fork(lambda write: work(mine, write))
        return None if made is None else cls(*made, start, len(mine))

    def pieces(self) -> list[bytes] | None:
        """The memo key pieces of the worker's files (None: the worker failed)."""
        found = self._message()
        if not (isinstance(found, list) and len(found) == -(-self.count // KEY_CHUNK)
                and all(isinstance(p, bytes) for p in found)):
            return None
        return found

    def scripts(self, files: Sequence[Path]) -> list[MigrationScript] | None:
        """The worker's files (`files`: the whole list) parsed (None: the worker failed)."""
        found = self._message()
        if not isinstance(found, list) or len(found) != self.count:
            return None
        out = []
        try:
            for path, entry in zip(files[self.start:], found):
                kind = entry[0] if isinstance(entry, tuple) and len(entry) == 2 else None
                if kind == "text" and isinstance(entry[1], str):
                    out.append(parse_script(path, entry[1]))
                elif kind == "unreadable" and isinstance(entry[1], str):
                    out.append(unreadable(path, entry[1]))
                else:
                    out.append(from_plain(path, entry))
        except (TypeError, ValueError, IndexError, KeyError, AttributeError):  # (data of another shape)
            return None
        if not self._reap():
            return None
        return out

    def _message(self):
        """The next message, unmarshalled (None: end of file, a short or absurd message)."""
        head = self._read(8)
        if head is None:
            return None
        size = int.from_bytes(head, "little")
        data = self._read(size) if size < MAX_MESSAGE else None
        if data is None:
            return None
        try:
            return marshal.loads(data)
        except (EOFError, ValueError, TypeError):
            return None

    def _read(self, size: int) -> bytes | None:
        """`size` bytes from the pipe (None: it ended, failed, or the deadline passed first)."""
        chunks = []
        poll = select.poll()
        poll.register(self.fd, select.POLLIN)
        while size > 0:
            left = self.deadline - time.monotonic()
            try:
                if left <= 0 or not poll.poll(left * 1000):
                    return None  # no answer in time: the worker is stuck (close() kills it)
                chunk = os.read(self.fd, min(size, 1 << 20))
            except OSError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _reap(self) -> bool:
        """Wait for the worker's exit (it has sent everything): True when it ended well."""
        if self.pid < 0:
            return False
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            status = -1
        self.pid = -1
        return status == 0

    def close(self) -> None:
        """Stop the worker if it still runs, reap it, close the pipe."""
        if self.pid > 0:
            try:
                os.kill(self.pid, SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def work(files: Sequence[Path], fd: int) -> None:
    """The worker's job: read every file, send the key pieces, then the parsed scripts."""
    found = [read_file(path) for path in files]
    send(fd, [files_digest((path, *got) for path, got in zip(files[i:i + KEY_CHUNK], found[i:i + KEY_CHUNK]))
               for i in range(0, len(files), KEY_CHUNK)])
    out: list = []
    for path, (raw, why) in zip(files, found):
        if raw is None:
            out.append(("unreadable", why or ""))
            continue
        text = decode_source(raw)[0]
        plain = to_plain(parse_script(path, text))
        out.append(plain if plain is not None else ("text", text))
    send(fd, out)


def send(fd: int, value) -> None:
    """One message: its length (8 bytes), then `value` marshalled."""
    data = marshal.dumps(value)
    view = memoryview(len(data).to_bytes(8, "little") + data)
    while view:
        view = view[os.write(fd, view):]
