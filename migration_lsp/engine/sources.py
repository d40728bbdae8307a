"""Reading a migration file from disk as Python would: regular files only, bounded in size,
decoded by the file's own encoding declaration."""

from __future__ import annotations

import tokenize
from io import BytesIO
from pathlib import Path

from .. import project

MAX_FILE_BYTES = project.MAX_FILE_BYTES


def decode_source(data: bytes) -> tuple[str, str | None]:
    """Text of a Python file as Python would decode it, plus a problem when it cannot."""
    try:
        return data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"), None
    except UnicodeDecodeError:
        pass
    try:
        encoding, _ = tokenize.detect_encoding(BytesIO(data).readline)
        return data.decode(encoding), None
    except (SyntaxError, LookupError, UnicodeDecodeError) as exc:
        return data.decode("utf-8", "replace"), f"cannot decode file: {exc}"


def read_file(path: Path) -> tuple[bytes | None, str | None]:
    """(the file's bytes, None) or (None, why it is not read: too large, not a regular file,
    the OS's error). Regular files only, never blocking (project.read_file)."""
    try:
        return project.read_file(path, MAX_FILE_BYTES), None
    except project.SkippedFile as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"file cannot be read ({exc.strerror})" if exc.strerror else "file cannot be read"


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes (None: unreadable, not a regular file, or too large to be a migration)."""
    return read_file(path)[0]


def read_source(path: Path) -> str | None:
    data = read_bytes(path)
    return decode_source(data)[0] if data is not None else None
