"""The open-document store: which text each migration file has now (an open buffer wins over
the disk), parsed once per text, and which files changed since the last build."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ..project import Discovery, Environment
from ..scripts import MigrationScript, parse_script
from .snapshot import EnvironmentState
from .sources import decode_source, read_file


def unreadable(path: Path, why: str | None) -> MigrationScript:
    """The script of a file that cannot be read: G010 says why (too large, not a regular
    file, the OS's error)."""
    return MigrationScript(path=path, text="", error=why or "file cannot be read", functions={})


class Documents:
    def __init__(self, shared: Documents | None = None) -> None:
        self.buffers: dict[Path, str] = {}  # open documents: their text wins over disk
        self.dirty: set[Path] = set()  # changed since the last build took them in
        self._parsed: dict[Path, MigrationScript] = {}
        # a detached reader's: the store's parses, read (never written) from another thread
        self._shared = shared._parsed if shared is not None else None
        self.version = 0  # bumped by every touch: what a detached reader saw is told apart
        self._touched: dict[Path, int] = {}  # each file's last touch (its version)
        # bytes read for the CLI's environment memo key, parsed only on a miss (read once)
        self._raw: dict[Path, tuple[bytes | None, str | None]] = {}

    def set_buffer(self, path: Path, text: str) -> bool:
        """True when the text changed."""
        text = text.removeprefix("\ufeff")  # a BOM, as Python reads files
        if self.buffers.get(path) == text:
            return False
        self.buffers[path] = text
        self.touch(path)
        return True

    def close_buffer(self, path: Path) -> bool:
        if self.buffers.pop(path, None) is None:
            return False
        self.touch(path)
        return True

    def touch(self, path: Path) -> None:
        """The file's text changed (edited, saved, closed, changed on disk)."""
        self._parsed.pop(path, None)
        self.dirty.add(path)
        self.version += 1
        self._touched[path] = self.version

    def detached(self) -> Documents:
        """A reader for another thread (engine.rebuilds.Rebuild): the open buffers as they are
        now, the parses made so far; what it parses stays its own until `take`."""
        reader = Documents(self)
        reader.buffers = dict(self.buffers)
        reader.version = self.version
        return reader

    def take(self, reader: Documents) -> None:
        """What a detached reader parsed, kept unless its file was touched since; the files
        touched since are dirty again, so that the next build patches them in."""
        touched = {path for path, version in self._touched.items() if version > reader.version}
        for path, script in reader._parsed.items():
            if path not in touched:
                self._parsed.setdefault(path, script)
        self.dirty |= touched

    def read(self, path: Path) -> tuple[bytes | None, str | None]:
        """The file's bytes from disk (read_file), kept until it is parsed."""
        found = self._raw[path] = read_file(path)
        return found

    def forget_reads(self) -> None:
        self._raw.clear()

    def script(self, path: Path) -> MigrationScript:
        cached = self._parsed.get(path) or (self._shared.get(path) if self._shared is not None else None)
        if cached is not None:
            return cached
        text = self.buffers.get(path)
        why = None
        if text is None:
            raw, why = self._raw.pop(path) if path in self._raw else read_file(path)
            text = decode_source(raw)[0] if raw is not None else None
        script = parse_script(path, text) if text is not None else unreadable(path, why)
        self._parsed[path] = script
        return script

    def adopt(self, parsed: Iterable[tuple[Path, MigrationScript]]) -> None:
        """Files parsed elsewhere (engine.forked: by the CLI's worker process), from the disk."""
        self._parsed.update(parsed)

    def with_new_buffers(self, env: Environment, discoveries: Iterable[Discovery]) -> Environment:
        """Open buffers inside a version location that discovery has not seen yet (a file
        just created by the editor) belong to that environment."""
        known = [e for d in discoveries for e in d.environments]
        extra = tuple(
            p for p in self.buffers
            if p.suffix == ".py" and p not in env.file_set and env.contains(p)
            and all(p not in e.file_set for e in known)
        )
        return replace(env, files=env.files + extra) if extra else env

    def scripts(self, env: Environment, previous: EnvironmentState | None
                ) -> tuple[tuple[MigrationScript, ...], list[int] | None]:
        """The environment's parsed files: the previous state's, with those re-parsed since
        (an edit costs a lookup per changed file, not one per file), and the positions that
        differ from the previous state's (None: no previous state with the same files)."""
        parsed = self._parsed
        if previous is None or previous.env.files != env.files:
            return tuple(parsed.get(p) or self.script(p) for p in env.files), None
        scripts = previous.scripts
        stale = sorted(i for p in self.dirty if (i := previous.file_index.get(p)) is not None
                       and parsed.get(p) is not scripts[i])
        if not stale:
            return scripts, []
        fresh = list(scripts)
        for i in stale:
            fresh[i] = parsed.get(env.files[i]) or self.script(env.files[i])
        return tuple(fresh), stale
