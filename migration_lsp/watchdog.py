"""A diagnostic for stalls of the server's event loop: off unless MIGRATION_LSP_WATCHDOG is
set (to a threshold in milliseconds, e.g. 120). Written to find the last slow keystrokes of
issue 13 (benchmarks/RESULTS.md, "the last slow keystrokes").

The loop beats every BEAT seconds; a thread checks the beat as often. When the beat is late
by more than the threshold, the thread samples every thread's stack (sys._current_frames)
on each check until the loop beats again, then writes one report to stderr: how late, the
stacks seen (with counts) and, per thread, the CPU it used and the time it waited for a
core meanwhile (/proc/self/task/<tid>/schedstat). That tells the causes apart: the loop
running our code (the loop thread's CPU), another thread of ours holding the GIL (its CPU,
its stack), or the OS not running us at all (run-queue wait, little CPU anywhere).

The sampler needs the GIL too: a C call that holds it (a collection, a regular expression)
shows as the stack it was called from, seen when it lets go."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

ENV = "MIGRATION_LSP_WATCHDOG"
BEAT = 0.01  # seconds between the loop's beats (and the thread's checks)
DEPTH = 12  # innermost frames kept per sampled stack


def threshold_from_env(environ: dict[str, str] | None = None) -> float | None:
    """The threshold in seconds MIGRATION_LSP_WATCHDOG asks for; None when unset, not a
    positive number, or not a number (the watchdog stays off)."""
    raw = (os.environ if environ is None else environ).get(ENV, "")
    try:
        ms = float(raw)
    except ValueError:
        return None
    return ms / 1000 if ms > 0 else None


def schedstat(tid: int) -> tuple[int, int]:
    """(CPU ns, run-queue wait ns) of one thread of this process; (0, 0) where /proc has no such file."""
    try:
        fields = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
        return int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return 0, 0


class Watchdog:
    """The loop's beat, the checking thread, the samples of one stall and its report."""

    def __init__(self, threshold: float, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.out = out
        self.clock = clock
        self.last_beat = clock()
        self.loop_thread = 0  # the event loop's thread ident (threading.get_ident)
        self.stop = threading.Event()
        self.stalls = 0  # reports written
        self.samples: Counter[tuple[str, str]] = Counter()  # (thread name, stack) -> times seen in this stall
        self.started_at: dict[int, tuple[int, int]] = {}  # native tid -> schedstat at the last beat

    # ------------------------------------------------------------------ on the loop

    def start(self, loop: asyncio.AbstractEventLoop) -> threading.Thread:
        self.loop_thread = threading.get_ident()
        self.last_beat = self.clock()
        loop.call_soon(self._beat, loop)
        thread = threading.Thread(target=self._watch, name="migration-lsp-watchdog", daemon=True)
        thread.start()
        return thread

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        self.last_beat = self.clock()
        if not self.stop.is_set():
            loop.call_later(BEAT, self._beat, loop)

    # ------------------------------------------------------------------ in the thread

    def _watch(self) -> None:
        stalled_since: float | None = None
        self.started_at = self._cpu()
        while not self.stop.wait(BEAT):
            beat = self.last_beat
            late = self.clock() - beat - BEAT
            if late > self.threshold:
                if stalled_since is None:
                    stalled_since = beat
                self.sample()
            elif stalled_since is not None:
                self.report(beat - stalled_since)
                stalled_since = None
                self.started_at = self._cpu()
            elif late < BEAT:
                self.started_at = self._cpu()  # (a punctual beat: the window starts here)

    def _cpu(self) -> dict[int, tuple[int, int]]:
        return {t.native_id: schedstat(t.native_id) for t in threading.enumerate() if t.native_id is not None}

    def sample(self) -> None:
        """Every thread's innermost frames, counted (the sampler's own thread left out)."""
        names = {t.ident: t.name for t in threading.enumerate()}
        me = threading.get_ident()
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            name = "event loop" if ident == self.loop_thread else names.get(ident, str(ident))
            stack = "".join(traceback.format_list(traceback.extract_stack(frame)[-DEPTH:]))
            self.samples[name, stack] += 1

    def report(self, seconds: float) -> str:
        """One stall, as text (also written to `out`, stderr by default); the samples restart."""
        now = self._cpu()
        names = {t.native_id: ("event loop" if t.ident == self.loop_thread else t.name) for t in threading.enumerate()}
        head = (f"migration-lsp watchdog {time.strftime('%H:%M:%S')}: the event loop did not run for "
                f"{seconds * 1000:.0f} ms (pid {os.getpid()}, load average {os.getloadavg()[0]:.2f})")
        lines = [head]
        for tid, (cpu, wait) in sorted(now.items()):
            cpu0, wait0 = self.started_at.get(tid, (cpu, wait))
            lines.append(f"  thread {names.get(tid, tid)} ({tid}): CPU {(cpu - cpu0) / 1e6:.1f} ms, "
                         f"waited for a core {(wait - wait0) / 1e6:.1f} ms")
        for (name, stack), count in self.samples.most_common():
            lines.append(f"  {count} sample(s) of {name}:")
            lines.append("    " + stack.rstrip("\n").replace("\n", "\n    "))
        text = "\n".join(lines) + "\n"
        self.samples.clear()
        self.stalls += 1
        out = self.out if self.out is not None else sys.stderr
        try:
            out.write(text)
            out.flush()
        except (OSError, ValueError):  # (stderr closed: the diagnostic must not fail the server)
            pass
        return text


def start_from_env(loop: asyncio.AbstractEventLoop) -> Watchdog | None:
    """The watchdog on this loop when MIGRATION_LSP_WATCHDOG asks for it, else nothing."""
    threshold = threshold_from_env()
    if threshold is None:
        return None
    dog = Watchdog(threshold)
    dog.start(loop)
    return dog
