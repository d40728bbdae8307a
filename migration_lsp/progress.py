"""A one-line progress indicator on stderr for `check` on a terminal.

A check that takes a while (loading the models in a child process, a large project's
first pass) should not look hung. The line appears only when stderr is a terminal, the
output is the text report (never next to json / sarif / github / gitlab output, which
tools read), TERM is not `dumb`, and the work has already taken more than a second — a
quick check shows nothing; it is erased when the work ends, before the report is printed.
A thread redraws it, so a long step that never returns to us still shows time passing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from typing_extensions import Self

DELAY = 1.0  # seconds of work before the line appears
INTERVAL = 0.1  # seconds between redraws
FRAMES = "|/-\\"
ERASE = "\r\033[K"  # back to the line's start, clear to its end


class Progress:
    """`with Progress(stream, enabled) as status: status.stage("loading models") ...`"""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.text = "starting"
        self.drawn = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()

    def stage(self, text: str) -> None:
        self.text = text

    def __enter__(self) -> Self:
        if self.enabled:
            self._thread = threading.Thread(target=self._draw, name="migration-lsp progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self.drawn:
            self._write(ERASE)

    def _draw(self) -> None:
        if self._stop.wait(DELAY):
            return
        frame = 0
        while True:
            line = f"migration-lsp: {self.text} {FRAMES[frame % len(FRAMES)]} {time.monotonic() - self._start:.0f}s"
            self._write(ERASE + line[: self._width() - 1])
            self.drawn = True
            frame += 1
            if self._stop.wait(INTERVAL):
                return

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (OSError, ValueError, AttributeError):
            return 80

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: the check itself goes on
            pass


def for_command(args) -> Progress:
    """The indicator for a parsed command line: enabled for `check` with text output on a
    terminal only."""
    stream = sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    enabled = (getattr(args, "command", None) == "check" and getattr(args, "format", "text") == "text"
               and tty and os.environ.get("TERM") != "dumb")
    return Progress(stream, enabled)
