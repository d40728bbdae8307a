"""Stage `project`: find every Alembic environment under a workspace root, with no settings.

Alembic's own `Config` reads alembic.ini / `[tool.alembic]` (interpolation of `%(here)s`,
`path_separator`, toml values), so we agree with Alembic on where the versions are. Beyond
what any config says, folders of revision files found by scanning become environments too:
packages that each ship an `alembic/` folder and reference each other's revisions form one
environment (connected by references), and revision files nested below a versions directory
belong to it. Nothing here imports project code.

Every workspace file is read through `read_file`: regular files only, opened without
blocking (a FIFO or a link to /dev/stdin named `x.py` or `alembic.ini` would otherwise
hang the server, whose stdin is the LSP pipe), within a size limit. The walk is iterative
and depth-bounded, and skips (and reports once) folders it may not list; configured
version locations are followed wherever they point. Settings are applied by `settle` on
every run, never taken from a cache: they choose the Python and the models that run.
"""

from __future__ import annotations

import configparser
import math
import os
import re
import stat
import sys
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .core import say_once

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

SKIP_DIRS = {
    ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".nox",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", "site-packages", ".eggs", "build", "dist",
    ".idea", ".vscode", ".cache",
}
HEAD_BYTES = 16384  # revision headers sit at the top of a file
MAX_FILE_BYTES = 20_000_000  # larger is no migration (engine.py)
MAX_CONFIG_BYTES = 1_000_000  # alembic.ini, pyproject.toml
MAX_DEPTH = 100  # folders below the root the walk descends into
MAX_INTERPOLATION = 100_000  # characters (and references followed) one ini value may expand to
_REV_FILE = re.compile(r"(?!\.#|__init__)(.*\.py)$")  # Alembic's _only_source_rev_file
_HEADER_VAR = re.compile(
    r"^(revision|down_revision|depends_on|branch_labels)\s*(?::[^=\n]*)?=\s*(.*)$", re.MULTILINE
)
_QUOTED = re.compile(r"['\"]([^'\"\s]+)['\"]")


@dataclass(frozen=True)
class Settings:
    """`[tool.migration-lsp]` and LSP settings (DESIGN.md, Configuration)."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    models: str | None = None
    python: str | None = None
    dialect: str | None = None
    exclude_tables: tuple[str, ...] = ()
    postgres_version: int | None = None  # the PostgreSQL major the lock model assumes (hover, `sql`)
    lock_hints: bool | str | None = None  # inlay hint with the lock after each op (PostgreSQL; default on)
    # `module:attr`, a MetaData or declarative Base the truth pass creates (create_all) on the
    # scratch database before the first revision: the schema the application makes on a new
    # database before `alembic upgrade head` (mlflow's initial models)
    initial_metadata: str | None = None

    def merged(self, overrides: dict) -> Settings:
        """Apply a mapping of keys (`exclude-tables` or `exclude_tables`) over these settings."""
        changes = {}
        for key, value in (overrides or {}).items():
            name = key.replace("-", "_")
            if name not in self.__dataclass_fields__ or value is None:
                continue
            if name in ("select", "ignore", "exclude_tables"):
                value = tuple(value.replace(",", " ").split()) if isinstance(value, str) else tuple(value)
            if name == "dialect":  # SQLAlchemy's own dialects only: another name would make its
                # registry search every installed distribution's entry points (project code)
                value = "postgresql" if str(value).lower() == "postgres" else str(value).lower()
                if value not in KNOWN_DIALECTS:
                    continue
            if name == "initial_metadata":
                if not isinstance(value, str) or not value.strip():
                    continue  # (not a `module:attr`: nothing to create)
                value = value.strip()
            if name == "postgres_version":
                value = postgres_major(value)
                if value is None:
                    continue  # not a version: the default stands
            changes[name] = value
        return replace(self, **changes)

    def enabled(self, code: str) -> bool:
        """`select` (prefixes, or ALL) narrows the rules; `ignore` wins over it."""
        select = [s.upper() for s in self.select]
        if select and "ALL" not in select and not any(code.startswith(s) for s in select):
            return False
        return not any(code.startswith(s.upper()) for s in self.ignore)


@dataclass(frozen=True)
class ConfigProblem:
    path: Path
    message: str


@dataclass(frozen=True)
class Environment:
    """One Alembic environment: where its revision files are and how new ones are written."""

    name: str
    root: Path
    config_path: Path | None = None
    script_location: Path | None = None
    version_locations: tuple[Path, ...] = ()
    files: tuple[Path, ...] = ()
    file_template: str = "%(rev)s_%(slug)s"
    truncate_slug_length: int = 40
    timezone: str | None = None
    dialect: str | None = None  # the settings' dialect, else config_dialect
    settings: Settings = field(default_factory=Settings)
    config_dialect: str | None = None  # from the config's sqlalchemy.url
    history_dialect: str | None = None  # a history kept for one dialect (`versions/sqlite/`): it wins

    @property
    def env_py(self) -> Path | None:
        if self.script_location and os.path.isfile(self.script_location / "env.py"):  # (never raises)
            return self.script_location / "env.py"
        return None

    @property
    def template_path(self) -> Path | None:
        """The environment's own script.py.mako, if it has one."""
        if self.script_location and os.path.isfile(self.script_location / "script.py.mako"):
            return self.script_location / "script.py.mako"
        return None

    @cached_property
    def file_set(self) -> frozenset[Path]:
        return frozenset(self.files)

    def contains(self, path: Path) -> bool:
        return path in self.file_set or any(_is_below(path, loc) for loc in self.version_locations)


@dataclass(frozen=True)
class Discovery:
    root: Path
    environments: tuple[Environment, ...]
    problems: tuple[ConfigProblem, ...]
    settings: Settings
    outside: tuple[Path, ...] = ()  # configured version locations walked beyond the root's walk

    def environment_of(self, path: Path) -> Environment | None:
        for env in self.environments:
            if path in env.file_set:
                return env
        for env in self.environments:
            if env.contains(path):
                return env
        return None


def _is_below(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


class SkippedFile(OSError):
    """A workspace file that is not read: not a regular file (a FIFO or a device would block
    forever or never end), or larger than the limit. str() is the reason, for the user."""


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def too_large(size: int, limit: int) -> str:
    return f"file too large ({math.ceil(size / 1_000_000)} MB, limit {limit // 1_000_000} MB)"


def open_regular(path: Path | str, limit: int = MAX_FILE_BYTES) -> tuple[int, int]:
    """A file descriptor for reading a workspace file and its size, or SkippedFile / OSError. Why: a FIFO
    or `/dev/stdin` named `x.py` would block the reader forever (the server's own stdin is
    the LSP pipe). stat() first, so a device is not even opened; the open never blocks
    (O_NONBLOCK) nor takes a terminal (O_NOCTTY); fstat() of what was opened decides."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise SkippedFile(f"not a regular file ({_kind(st.st_mode)})")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the two calls
            raise SkippedFile(f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise SkippedFile(too_large(st.st_size, limit))
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def read_file(path: Path | str, limit: int = MAX_FILE_BYTES, head: int | None = None) -> bytes:
    """The bytes of a regular file (the first `head` bytes when given), at most `limit`
    (a file that grows past it while being read is SkippedFile too). Raises SkippedFile or
    OSError. Every read of a workspace file goes through here (models.py: env.py too)."""
    fd, size = open_regular(path, limit)
    try:
        want = head if head is not None else size + 1
        chunks = [os.read(fd, want)]
        total = len(chunks[0])
        if head is None and total >= want:  # it grows while being read: read to the end
            while chunks[-1] and total <= limit:
                chunks.append(os.read(fd, 1 << 20))
                total += len(chunks[-1])
            if total > limit:
                raise SkippedFile(too_large(total, limit))
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: Path | str, limit: int = MAX_FILE_BYTES) -> str:
    """read_file() decoded as UTF-8 (invalid bytes replaced): for env.py and friends."""
    return read_file(path, limit).decode("utf-8", "replace")


def read_head(path: Path, size: int = HEAD_BYTES) -> str:
    try:
        return read_file(path, MAX_FILE_BYTES, head=size).decode("utf-8", "replace")
    except SkippedFile as exc:
        say_once(f"{path}: {exc}; skipped")
        return ""
    except OSError:
        return ""


def toml_module():
    """tomllib (tomli before 3.11), imported when a pyproject.toml is read: a project without
    one does not pay for it (a few ms of a graph-only check)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib


def load_settings(pyproject: Path, base: Settings | None = None) -> tuple[Settings, ConfigProblem | None]:
    base = base or Settings()
    if not os.path.lexists(pyproject):
        return base, None
    tomllib = toml_module()
    try:
        data = tomllib.loads(read_file(pyproject, MAX_CONFIG_BYTES).decode("utf-8"))
    except FileNotFoundError:  # a dangling link, or gone meanwhile
        return base, None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return base, ConfigProblem(pyproject, f"cannot read {pyproject.name}: {exc}")
    section = data.get("tool", {}).get("migration-lsp", {})
    if not isinstance(section, dict):
        return base, ConfigProblem(pyproject, "[tool.migration-lsp] must be a table")
    return base.merged(section), None


# --------------------------------------------------------------------------- walking


@dataclass
class Scan:
    """The files discovery looks at: everything it concludes follows from these (and the
    text of the config and revision files), which is what makes it cacheable."""

    inis: list[Path] = field(default_factory=list)
    pyprojects: list[Path] = field(default_factory=list)
    py_by_dir: dict[Path, list[Path]] = field(default_factory=dict)
    visited: set[Path] = field(default_factory=set)  # folders listed
    links: set[Path] = field(default_factory=set)  # .py files that are symlinks (named by their target)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # folders not listed, and why

    def fingerprint(self) -> list[tuple[str, int, int]]:
        """(path, mtime_ns, size) of every file seen: equal fingerprints, equal discovery."""
        out = []
        for path in [*self.inis, *self.pyprojects, *(p for ps in self.py_by_dir.values() for p in ps)]:
            name = str(path)
            try:
                st = os.stat(name)
                out.append((name, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((name, -1, -1))
        return out

    def report_skipped(self) -> None:
        """One log line for the folders that could not be listed (a `pgdata/` of another
        user, a tree deeper than MAX_DEPTH): they are left out, the rest is discovered."""
        if self.skipped:
            shown = ", ".join(f"{p} ({why})" for p, why in self.skipped[:3])
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            say_once(f"skipped {len(self.skipped)} folder(s) that cannot be read: {shown}{more}")


def _is_venv(folder: Path) -> bool:
    try:
        return os.path.lexists(folder / "pyvenv.cfg")
    except (OSError, ValueError):
        return False


def walk(root: Path, scan: Scan | None = None) -> Scan:
    """The .ini, pyproject.toml and .py files below `root`, folders in sorted order (as
    os.walk, top-down). Iterative with a depth bound (a tree 1,100 folders deep is no
    RecursionError); a folder that cannot be listed is skipped and remembered; symlinked
    folders are not entered (no loops; configured locations are walked on their own)."""
    scan = scan if scan is not None else Scan()
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        here, depth = stack.pop()
        if here in scan.visited:
            continue
        try:
            with os.scandir(here) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            scan.skipped.append((here, exc.strerror or type(exc).__name__))
            continue
        scan.visited.add(here)
        child = getattr(here, "_make_child_relpath", here.joinpath)  # (the fast way, where there is one)
        below: list[Path] = []
        for entry in entries:
            name = entry.name
            try:
                is_dir = entry.is_dir()
                is_link = is_dir and entry.is_symlink()
            except OSError:
                is_dir = is_link = False
            if is_dir:
                if is_link or name in SKIP_DIRS or name.endswith(".egg-info"):
                    continue
                folder = child(name)
                if _is_venv(folder):
                    continue
                if depth + 1 > MAX_DEPTH:
                    scan.skipped.append((folder, f"deeper than {MAX_DEPTH} folders"))
                    continue
                below.append(folder)
            elif name.endswith(".ini"):
                scan.inis.append(child(name))
            elif name == "pyproject.toml":
                scan.pyprojects.append(child(name))
            elif name.endswith(".py"):
                path = child(name)
                scan.py_by_dir.setdefault(here, []).append(path)
                if entry.is_symlink():  # (from the listing: no system call)
                    scan.links.add(path)
        stack.extend((folder, depth + 1) for folder in reversed(below))
    return scan


def walk_locations(locations: tuple[Path, ...] | list[Path]) -> Scan:
    """Configured version locations the root's walk did not enter (outside the workspace,
    or reached through a symlink), each walked on its own: read-only, as Alembic reads them."""
    scan = Scan()
    for loc in locations:
        walk(loc, scan)
    return scan


def _config_text(path: Path, problems: list[ConfigProblem] | None) -> str:
    """A config file's text ("" when it cannot be read: a FIFO, a device, too large; said
    once as a config problem when `problems` is given, else in the log)."""
    try:
        return read_file(path, MAX_CONFIG_BYTES).decode("utf-8", "replace")
    except SkippedFile as exc:
        if problems is not None:
            problems.append(ConfigProblem(path, f"{path.name}: {exc}; not read"))
        else:
            say_once(f"{path}: {exc}; not read")
    except OSError:
        pass
    return ""


def _has_tool_alembic(pyproject: Path) -> bool:
    return "[tool.alembic" in _config_text(pyproject, None)


def _starts(base: Path, root: Path) -> list[Path]:
    """Folders a relative location may be relative to. Alembic uses the current directory,
    which is usually the config's folder, but some projects run it from the repository
    root or a parent: the config's folder, then each parent up to the root."""
    out = [base]
    for parent in base.parents:
        if not _is_below(parent, root):
            break
        out.append(parent)
    return out + [root / "src"]


def _resolve_location(value: str, base: Path, root: Path) -> Path:
    """A script/version location: a path or a package resource `pkg.mod:sub/dir`, where, as
    in Alembic's coerce_resource_to_filename, every further `:` separates path segments too
    (`prefect:server:database:_migrations`); the first candidate that exists."""
    if ":" in value and not re.match(r"^[A-Za-z]:[\\/]", value) and not Path(value).is_absolute():
        package, *segments = value.split(":")
        rel = Path(*package.split("."), *(s for s in segments if s))
    else:
        rel = Path(value)
        if rel.is_absolute():
            return rel.resolve()
    for start in _starts(base, root):
        if os.path.exists(start / rel):
            return (start / rel).resolve()
    return (base / rel).resolve()


def _one_line(exc: Exception) -> str:
    """A config error on one line that still says where: configparser puts the offending
    line numbers on the lines after the first, which is only the file's repr."""
    errors = getattr(exc, "errors", None)
    if isinstance(exc, configparser.ParsingError) and errors:
        return "parse error at " + ", ".join(
            f"line {n}: {str(text).replace(chr(92) + 'n', '')}" for n, text in errors[:3]
        )
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def postgres_major(value: object) -> int | None:
    """A `postgres-version` setting as a major version: 16, "16", "16.4" -> 16; anything else
    (nonsense, older than 9) -> None. The one parser of the setting (pglocks uses it too)."""
    try:
        major = int(str(value).strip().split(".")[0])
    except (TypeError, ValueError):
        return None
    return major if 9 <= major <= 99 else None


# SQLAlchemy's own dialects: the only names a setting or a URL may choose (see sqlalchemy_dialect)
KNOWN_DIALECTS = frozenset(("postgresql", "mysql", "mariadb", "sqlite", "oracle", "mssql"))


def sqlalchemy_dialect(name: str) -> Dialect:
    """A new SQLAlchemy Dialect (the default driver's) for one of KNOWN_DIALECTS, made without a
    database or its driver. Any other name raises NoSuchModuleError: the name comes from the
    workspace, and SQLAlchemy's registry would look it up among the entry points of every
    installed distribution and import the one it finds (project code, also when untrusted)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    if name not in KNOWN_DIALECTS:
        raise NoSuchModuleError(f"not one of SQLAlchemy's own dialects: {name[:100]!r}")
    return make_url(f"{name}://").get_dialect()()  # (the registry's entry for mariadb is no class)


_TEMPLATE_FIELD = re.compile(r"\{[A-Za-z_][A-Za-z0-9_.]*\}")  # a str.format field: `{alembic_dir}`


def _dialect_from_url(url: str | None) -> str | None:
    """`postgresql+psycopg2://...` -> "postgresql"; the `alembic init` placeholder
    (`driver://user:pass@localhost/dbname`) and unknown schemes -> None."""
    if not url:
        return None
    m = re.match(r"^\s*([A-Za-z0-9_]+)(\+[A-Za-z0-9_]+)?://", url)
    if not m:
        return None
    name = m.group(1).lower()
    name = "postgresql" if name == "postgres" else name
    return name if name in KNOWN_DIALECTS else None


# What discovery reads from an Alembic config (Alembic's names); nothing else is interpolated.
NEEDED_OPTIONS = ("script_location", "version_locations", "path_separator", "version_path_separator",
                  "file_template", "truncate_slug_length", "timezone", "sqlalchemy.url", "prepend_sys_path")
_REFERENCE = re.compile(r"%(?:%|\(([^)]*)\)s)")


def _interpolation_bomb(parser: configparser.ConfigParser, section: str) -> str | None:
    """The first needed option whose `%(name)s` interpolation would expand to more than
    MAX_INTERPOLATION characters or follow more references than that (3 KB of nested
    references expand without end): measured on the raw values, each option once."""
    if not parser.has_section(section):
        return None
    raw = dict(parser.items(section, raw=True))
    cost: dict[str, tuple[int, int]] = {}

    def measure(name: str) -> tuple[int, int]:  # (characters, references), iteratively
        todo, pending = [name], {name}
        while todo:
            current = todo[-1]
            if current in cost:
                todo.pop()
                continue
            refs = [m.group(1).lower() for m in _REFERENCE.finditer(raw.get(current, "")) if m.group(1) is not None]
            missing = [r for r in dict.fromkeys(refs) if r not in cost and r in raw and r not in pending]
            if missing:
                todo.extend(missing)
                pending.update(missing)
                continue
            value = raw.get(current, "")
            size = len(_REFERENCE.sub("", value)) + sum(cost.get(r, (0, 0))[0] for r in refs)
            count = len(refs) + sum(cost.get(r, (0, 0))[1] for r in refs)
            cost[current] = (size, count)  # a loop counts as nothing: configparser refuses it itself
            todo.pop()
            pending.discard(current)
        return cost[name]

    for name in NEEDED_OPTIONS:
        if name in raw and max(measure(name)) > MAX_INTERPOLATION:
            return name
    return None


def _ini_parser(ini: Path, ini_text: str | None, section: str = "alembic") -> configparser.ConfigParser:
    """The ConfigParser Alembic's Config.file_config builds for `ini` (defaults: `here`, the
    config's folder), from our text, with the interpolation budget checked (ValueError)."""
    parser = configparser.ConfigParser({"here": ini.absolute().parent.as_posix()})
    parser.read_string(ini_text if ini_text is not None else read_file(ini, MAX_CONFIG_BYTES).decode("utf-8"),
                       source=str(ini))
    bomb = _interpolation_bomb(parser, section)
    if bomb:
        raise ValueError(f"the value of {bomb} expands to more than {MAX_INTERPOLATION} characters "
                         "through %(...)s interpolation; not read")
    return parser


_SEPARATORS = {"space": " ", "newline": "\n", "os": os.pathsep, ":": ":", ";": ";"}
_SPACE_COMMA = re.compile(r", *|(?: +)")


class IniConfig:
    """What discovery asks of Alembic's `Config` for an alembic.ini alone (no
    `[tool.alembic]`), answered by the same ConfigParser without importing Alembic (0.3 s of
    a pre-commit check): `get_alembic_option`, `get_main_option` and
    `get_version_locations_list` as alembic/config.py (1.16) defines them, errors with the
    same messages. tests/test_project_ini.py compares the two on every config it has."""

    def __init__(self, ini: Path, ini_text: str | None = None, section: str = "alembic") -> None:
        self.config_file_name = str(ini)
        self.config_ini_section = section
        self.file_config = _ini_parser(ini, ini_text, section)

    def get_main_option(self, name: str, default: str | None = None) -> str | None:
        if not self.file_config.has_section(self.config_ini_section):
            raise ValueError(f"No config file {self.config_file_name!r} found, or file has no "
                             f"'[{self.config_ini_section}]' section")
        if self.file_config.has_option(self.config_ini_section, name):
            return self.file_config.get(self.config_ini_section, name)
        return default

    def get_alembic_option(self, name: str, default: str | None = None) -> str | None:
        if self.file_config.has_option(self.config_ini_section, name):
            return self.file_config.get(self.config_ini_section, name)
        return default  # (no pyproject.toml: the toml part of Alembic's lookup is empty)

    def get_version_locations_list(self) -> list[str] | None:
        value = self.file_config.get(self.config_ini_section, "version_locations", fallback=None)
        if not value:
            return None
        for name in ("path_separator", "version_path_separator"):
            separator = self.get_main_option(name)
            if separator is not None:
                break
        else:
            return _SPACE_COMMA.split(value)  # Alembic's legacy splitting (it warns)
        if separator not in _SEPARATORS:
            raise ValueError(f"'{separator}' is not a valid value for {name}; "
                             "expected 'space', 'newline', 'os', ':', ';'")
        return [x.strip() for x in value.split(_SEPARATORS[separator]) if x]


def alembic_config(ini: Path | None, toml: Path | None = None, ini_text: str | None = None):
    """Alembic's own Config for the files, with the text read by us (regular files only,
    size-bounded: a FIFO named alembic.ini would block configparser forever) instead of by
    configparser/tomllib, and interpolation budgeted (ValueError for a bomb). Use it
    wherever a workspace's alembic.ini is read (models.py too)."""
    # here, not above: importing Alembic costs 0.4 s, and discovery needs it only for a
    # [tool.alembic] in pyproject.toml (IniConfig reads an alembic.ini alone)
    from alembic import util as alembic_util
    from alembic.config import Config

    from .alembic_api import fill_file_config, fill_toml_config

    config = Config(file_=str(ini) if ini else None, toml_file=str(toml) if toml else None)
    if ini is not None:  # as Config.file_config does, from our text
        config.config_args["here"] = ini.absolute().parent.as_posix()
        fill_file_config(config, _ini_parser(ini, ini_text, config.config_ini_section))
    if toml is not None:  # as Config.toml_alembic_config does
        config.toml_args["here"] = toml.absolute().parent.as_posix()
        data = toml_module().loads(read_file(toml, MAX_CONFIG_BYTES).decode("utf-8"))
        section = data.get("tool", {}).get("alembic", {}) if isinstance(data.get("tool", {}), dict) else None
        if not isinstance(section, dict):
            raise alembic_util.CommandError("Incorrect TOML format")
        fill_toml_config(config, section)
    return config


def _truncate_length(value, where: Path, problems: list[ConfigProblem]) -> int:
    """truncate_slug_length as Alembic reads it (int()), within reason; else 40 and one line."""
    if value is None:
        return 40
    text = str(value).strip()
    if isinstance(value, int) or re.fullmatch(r"[+-]?\d{1,6}", text):
        number = int(text)
        if 0 <= number <= 10_000:
            return number or 40  # Alembic: 0 means the default
    shown = text if len(text) <= 20 else text[:20] + "..."
    problems.append(ConfigProblem(where, f"{where.name}: truncate_slug_length must be a whole number "
                                         f"from 1 to 10000, not {shown!r}; using 40"))
    return 40


_TEMPLATE_KEYS = {"rev": "x", "slug": "x", "epoch": 0, "year": 2000, "month": 1, "day": 1, "hour": 0,
                  "minute": 0, "second": 0}


def _template_problem(template: str, where: Path) -> ConfigProblem | None:
    """A file_template Alembic could not fill (an unknown %(key)s, a stray %): one line."""
    try:
        template % _TEMPLATE_KEYS
    except (KeyError, ValueError, TypeError) as exc:
        reason = f"unknown key {exc}" if isinstance(exc, KeyError) else _one_line(exc)
        return ConfigProblem(where, f"{where.name}: file_template {template[:100]!r} cannot be used: {reason}")
    return None


# What reading a config can raise: configparser's errors; ValueError (an interpolation bomb, a
# bad path_separator, TOML syntax, undecodable bytes); OSError; and from Alembic's reading of
# [tool.alembic] values, `%` formatting errors (KeyError, TypeError) and AttributeError on a
# list that mixes tables and strings.
_CONFIG_ERRORS: tuple[type[Exception], ...] = (configparser.Error, ValueError, OSError, LookupError, TypeError,
                                               AttributeError)


def _config_errors(uses_alembic: bool) -> tuple[type[Exception], ...]:
    """_CONFIG_ERRORS, and Alembic's CommandError when its Config read the file (imported then
    only: an alembic.ini alone is read without Alembic)."""
    if not uses_alembic:
        return _CONFIG_ERRORS
    from alembic.util import CommandError

    return (*_CONFIG_ERRORS, CommandError)


def _environment_from_config(
    root: Path, ini: Path | None, toml: Path | None, problems: list[ConfigProblem], ini_text: str | None = None
) -> Environment | None:
    """The environment a config describes, without settings (settle() adds them)."""
    where = ini or toml
    assert where is not None
    base = where.parent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = IniConfig(ini, ini_text) if ini is not None and toml is None else alembic_config(ini, toml,
                                                                                                        ini_text)
            script_location = config.get_alembic_option("script_location")
            if script_location is None and ini and (base / "env.py").is_file():
                script_location = str(base)  # Flask-Migrate keeps alembic.ini inside migrations/
            if not script_location:
                return None  # an [alembic] section that only holds e.g. sqlalchemy.url
            if _TEMPLATE_FIELD.search(str(script_location)):
                # a template the project renders with str.format before use (jupyterhub ships
                # `script_location = {alembic_dir}`): no environment, and no failure either
                say_once(f"{_display(where, root)}: not an environment: script_location {str(script_location)[:100]!r} "
                         "is a template placeholder (the project fills it in before running Alembic)")
                return None
            location = _resolve_location(str(script_location), base, root)
            if not location.is_dir():
                problems.append(ConfigProblem(where, f"{where.name}: script_location {script_location} does not exist"))
                return None
            versions = config.get_version_locations_list()
            version_locations = tuple(
                _resolve_location(v, base, root) for v in (versions or []) if v and v.strip()
            ) or ((location / "versions").resolve(),)  # (a symlink: named by its target, as the server names files)
            file_template = config.get_alembic_option("file_template", "%(rev)s_%(slug)s")
            truncate = config.get_alembic_option("truncate_slug_length")
            timezone = config.get_alembic_option("timezone")
            url = config.get_main_option("sqlalchemy.url") if ini else None
        except _config_errors(toml is not None) as exc:
            reason = _one_line(exc)
            problems.append(ConfigProblem(where, f"{where.name}: cannot read Alembic configuration: {reason}"))
            return None
    template_problem = _template_problem(str(file_template), where)
    if template_problem:
        problems.append(template_problem)
    return Environment(
        name=_display(location, root),
        root=root,
        config_path=where,
        script_location=location,
        version_locations=version_locations,
        file_template=str(file_template),
        truncate_slug_length=_truncate_length(truncate, where, problems),
        timezone=str(timezone) if timezone else None,
        config_dialect=_dialect_from_url(str(url) if url else None),
        settings=None,  # type: ignore[arg-type]
    )


def _display(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
        return rel.as_posix() if str(rel) != "." else path.name
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------- orphan folders


def _quick_refs(text: str) -> tuple[set[str], set[str]]:
    """(ids and labels this file defines, ids and labels it refers to) by a cheap scan."""
    defines: set[str] = set()
    refers: set[str] = set()
    for m in _HEADER_VAR.finditer(text):
        values = set(_QUOTED.findall(m.group(2)))
        if m.group(1) in ("revision", "branch_labels"):
            defines |= values
        else:
            refers |= values
    return defines, refers


def looks_like_revision_file(text: str) -> bool:
    """Cheap test used by discovery outside configured version locations: both
    `revision = ...` and `down_revision = ...` assigned at module level."""
    names = {m.group(1) for m in _HEADER_VAR.finditer(text)}
    return {"revision", "down_revision"} <= names


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def discover(root: Path, overrides: dict | None = None, scan: Scan | None = None) -> Discovery:
    """All environments under `root` (a workspace folder); `scan`: `walk(root)`, when the
    caller already has it."""
    return settle(discover_bare(root, scan), overrides)


def discover_bare(root: Path, scan: Scan | None = None) -> Discovery:
    """discover() without settings (settings=None everywhere): what engine.py may cache.
    Settings choose the Python that runs and the module imported, so they are read again
    from the config files on every run (settle), never taken from a cache."""
    root = root.resolve()
    problems: list[ConfigProblem] = []
    scan = scan or walk(root)
    scan.report_skipped()

    configured: list[Environment] = []
    alembic_inis: list[tuple[Path, str]] = []
    for ini in scan.inis:
        text = _config_text(ini, problems if ini.name == "alembic.ini" else None)
        if "[alembic]" in text:
            alembic_inis.append((ini, text))
    ini_dirs = {ini.parent for ini, _ in alembic_inis}
    for ini, text in alembic_inis:
        toml = ini.parent / "pyproject.toml"
        env = _environment_from_config(
            root, ini, toml if os.path.isfile(toml) and _has_tool_alembic(toml) else None, problems, text
        )
        if env:
            configured.append(env)
    for toml in scan.pyprojects:
        if toml.parent not in ini_dirs and _has_tool_alembic(toml):
            env = _environment_from_config(root, None, toml, problems)
            if env:
                configured.append(env)
    configured = _dedupe(configured)

    # Configured locations the walk did not enter (outside the root, behind a symlink, in a
    # skipped folder) are walked on their own: Alembic reads them wherever they point.
    outside: list[Path] = []
    for env in configured:
        for loc in env.version_locations:
            if loc not in scan.visited and loc not in outside and os.path.isdir(loc):
                outside.append(loc)
    if outside:
        extra = walk_locations(outside)
        extra.report_skipped()
        for directory, paths in extra.py_by_dir.items():
            scan.py_by_dir.setdefault(directory, paths)
        scan.links |= extra.links

    # Revision files inside configured version locations (recursively: projects that set
    # version_locations in env.py nest releases below the versions directory).
    claimed: set[Path] = set()
    files_of: list[list[Path]] = []
    for env in configured:
        files: list[Path] = []
        for directory, paths in scan.py_by_dir.items():
            if any(_is_below(directory, loc) for loc in env.version_locations):
                for path in paths:
                    if path not in claimed and _REV_FILE.match(path.name):
                        files.append(path)
                        claimed.add(path)
        files_of.append(sorted(files))
    configured, files_of = _split_histories(root, configured, files_of)

    # Orphan folders: revision files nobody's config points at.
    orphan_groups: dict[Path, list[Path]] = {}
    heads: dict[Path, str] = {}
    for directory, paths in scan.py_by_dir.items():
        for path in paths:
            if path in claimed or path.name == "env.py" or not _REV_FILE.match(path.name):
                continue
            text = read_head(path)
            if looks_like_revision_file(text):
                orphan_groups.setdefault(_group_dir(directory), []).append(path)
                heads[path] = text

    envs = _unique_names(root, _connect(root, configured, files_of, orphan_groups, heads))
    if scan.links:
        envs = [replace(env, files=_canonical(env.files, scan.links)) for env in envs]
    return Discovery(root, tuple(envs), tuple(problems),
                     None, tuple(outside))  # type: ignore[arg-type]


def _canonical(files: tuple[Path, ...], links: set[Path]) -> tuple[Path, ...]:
    """A symlinked revision file named by the file it points to: the server resolves every
    path it is told about (an edit, a watcher's event), and one file has one name everywhere
    (two links to it are one file). As Alembic (1.16+) loads them: each file by its resolved
    path, chosen by that path's name (a link to `impl.txt` is no revision). A link to no
    regular file (dangling, /dev/stdin) keeps its own name: nothing is read through it, and
    its G010 names the file the user sees."""
    if not any(path in links for path in files):
        return files
    named = {_target(path) if path in links else path for path in files}
    return tuple(sorted(path for path in named if _REV_FILE.match(path.name)))


def _target(link: Path) -> Path:
    try:
        target = link.resolve()
    except (OSError, RuntimeError):  # a loop
        return link
    return target if os.path.isfile(target) else link


# Folder names that hold one dialect's history (prefect: versions/sqlite, versions/postgresql)
DIALECT_FOLDERS = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql",
                   "mariadb": "mariadb", "oracle": "oracle", "mssql": "mssql"}


def _split_histories(
    root: Path, configured: list[Environment], files_of: list[list[Path]]
) -> tuple[list[Environment], list[list[Path]]]:
    """Alternative histories per dialect are separate environments. A project that keeps
    `versions/sqlite/` and `versions/postgresql/` lets env.py choose one by the database's
    dialect (`context.script.version_locations = [...]`): merged into one graph they would
    be two bases and two heads. Split when every revision file of the (single) version
    location sits in a dialect-named folder and no folder refers to another's revisions;
    each part is named after its folder and checked with that folder's dialect."""
    envs: list[Environment] = []
    files_out: list[list[Path]] = []
    for env, files in zip(configured, files_of):
        parts = _dialect_parts(env, files)
        if parts is None:
            envs.append(env)
            files_out.append(files)
            continue
        for folder, paths in sorted(parts.items()):
            envs.append(replace(env, name=_display(folder, root), version_locations=(folder,),
                                history_dialect=DIALECT_FOLDERS[folder.name.lower()]))
            files_out.append(paths)
    return envs, files_out


def _dialect_parts(env: Environment, files: list[Path]) -> dict[Path, list[Path]] | None:
    if len(env.version_locations) != 1 or not files:
        return None
    location = env.version_locations[0]
    parts: dict[Path, list[Path]] = {}
    for path in files:
        try:
            rel = path.relative_to(location)
        except ValueError:
            return None
        if len(rel.parts) < 2 or rel.parts[0].lower() not in DIALECT_FOLDERS:
            return None  # a revision file outside the dialect folders: one history
        parts.setdefault(location / rel.parts[0], []).append(path)
    defined: dict[Path, set[str]] = {}
    referred: dict[Path, set[str]] = {}
    for folder, paths in parts.items():
        for path in paths:
            d, r = _quick_refs(read_head(path))
            defined.setdefault(folder, set()).update(d)
            referred.setdefault(folder, set()).update(r)
    for folder, refs in referred.items():
        outside = refs - defined.get(folder, set())
        if any(outside & defined.get(other, set()) for other in parts if other != folder):
            return None  # the folders are one history spread over several folders
    return parts


def settle(bare: Discovery, overrides: dict | None = None) -> Discovery:
    """The settings of a discovery, read from the config files now: the root's
    `[tool.migration-lsp]` under `overrides`, then, per environment, the
    `[[tool.migration-lsp.environments]]` entry whose `path` names it (README,
    Configuration). `models` and `initial-metadata` name one environment's metadata: from the
    top of the section (or the editor) they apply only when the workspace has one configured
    environment."""
    root = bare.root
    settings, problem = load_settings(root / "pyproject.toml")
    settings = settings.merged(overrides or {})
    problems = [problem] if problem else []
    problems += bare.problems
    entries, problem = _environment_entries(root / "pyproject.toml") if problem is None else ([], None)
    if problem:
        problems.append(problem)
    owners = _models_owners(bare.environments)
    if settings.models and bare.environments and not owners:
        say_once(f"`models = {settings.models!r}` is not used: the workspace has {len(bare.environments)} "
                 "environments; give each its own in [[tool.migration-lsp.environments]] (path = its folder)")
    if settings.initial_metadata and bare.environments and not owners:
        say_once(f"`initial-metadata = {settings.initial_metadata!r}` is not used: the workspace has "
                 f"{len(bare.environments)} environments; give it to one in [[tool.migration-lsp.environments]] "
                 "(path = its folder)")
    used: set[int] = set()
    envs = []
    for env in bare.environments:
        env_settings = settings if id(env) in owners else replace(settings, models=None, initial_metadata=None)
        for number, (path, entry) in enumerate(entries):
            if _names(env, path, root):
                env_settings = env_settings.merged(entry)
                used.add(number)
        envs.append(replace(env, settings=env_settings,
                            dialect=env.history_dialect or env_settings.dialect or env.config_dialect))
    for number, (path, _) in enumerate(entries):
        if number not in used:
            say_once(f"pyproject.toml: [[tool.migration-lsp.environments]] path {path!r} names no environment")
    return replace(bare, environments=tuple(envs), problems=tuple(problems), settings=settings)


def _environment_entries(pyproject: Path) -> tuple[list[tuple[str, dict]], ConfigProblem | None]:
    """`[[tool.migration-lsp.environments]]`: (path, settings) pairs, in order."""
    if not os.path.isfile(pyproject):
        return [], None
    tomllib = toml_module()
    try:
        data = tomllib.loads(read_file(pyproject, MAX_CONFIG_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return [], None  # load_settings said so already
    section = data.get("tool", {}).get("migration-lsp", {}) if isinstance(data.get("tool"), dict) else {}
    raw = section.get("environments", []) if isinstance(section, dict) else []
    if not isinstance(raw, list) or not all(isinstance(e, dict) and isinstance(e.get("path"), str) for e in raw):
        return [], ConfigProblem(pyproject, "[[tool.migration-lsp.environments]]: each entry must be a table "
                                            "with a `path` (the environment's folder or alembic.ini)")
    return [(e["path"], {k: v for k, v in e.items() if k != "path"}) for e in raw], None


def _names(env: Environment, path: str, root: Path) -> bool:
    """Does an entry's `path` name this environment: its name, its alembic.ini or that
    file's folder, its script_location, or one of its version locations?"""
    if path.strip().rstrip("/") == env.name:
        return True
    target = Path(os.path.normpath(root / path))
    places = [env.script_location, *env.version_locations]
    if env.config_path is not None:
        places += [env.config_path, env.config_path.parent]
    if any(p is not None and Path(os.path.normpath(p)) == target for p in places):
        return True
    try:  # (a symlinked versions folder: the locations are named by their targets)
        real = target.resolve()
    except (OSError, RuntimeError):
        return False
    return real != target and real in env.version_locations


def _models_owners(envs: tuple[Environment, ...]) -> set[int]:
    """The environments a workspace-wide `models` is for: those of the one config (an
    alembic.ini split into per-dialect histories is still one), else the only environment."""
    configs = {env.config_path for env in envs if env.config_path is not None}
    if len(configs) == 1:
        return {id(env) for env in envs if env.config_path in configs}
    if not configs and len(envs) == 1:
        return {id(envs[0])}
    return set()


def _unique_names(root: Path, envs: list[Environment]) -> list[Environment]:
    """Names are keys (JSON `environment`, the engine's state): two environments that share
    a script_location (two inis, or a configured folder and an orphan one) are told apart by
    their config's path, else their versions folder, relative to the root."""
    taken: dict[str, int] = {}
    for env in envs:
        taken[env.name] = taken.get(env.name, 0) + 1
    if all(n == 1 for n in taken.values()):
        return envs
    out = []
    used = {name for name, n in taken.items() if n == 1}
    for env in envs:
        if taken[env.name] == 1:
            out.append(env)
            continue
        candidates = [_display(p, root) for p in (env.config_path, *env.version_locations) if p is not None]
        name = next((c for c in candidates if c not in used and c not in taken), None)
        number = 2
        while name is None:
            name = f"{env.name} ({number})" if f"{env.name} ({number})" not in used else None
            number += 1
        used.add(name)
        out.append(replace(env, name=name))
    out.sort(key=lambda e: e.name)
    return out


def _group_dir(directory: Path) -> Path:
    """Revision files nested below a `versions` folder belong with that folder."""
    for parent in [directory, *directory.parents]:
        if parent.name == "versions":
            return parent
    return directory


def _dedupe(envs: list[Environment]) -> list[Environment]:
    seen: set[tuple[Path, ...]] = set()
    out = []
    for env in envs:
        key = env.version_locations
        if key not in seen:
            seen.add(key)
            out.append(env)
    return out


def _connect(
    root: Path,
    configured: list[Environment],
    files_of: list[list[Path]],
    orphan_groups: dict[Path, list[Path]],
    heads: dict[Path, str],
) -> list[Environment]:
    """Join orphan folders to each other and to configured environments by references."""
    if not orphan_groups:
        return [replace(env, files=tuple(files)) for env, files in sorted(
            zip(configured, files_of), key=lambda pair: pair[0].name)]
    groups: list[list[Path]] = [list(f) for f in files_of] + [sorted(v) for v in orphan_groups.values()]
    orphan_folders = list(orphan_groups)  # group n_configured + i is orphan_folders[i]
    defines: dict[str, set[int]] = {}
    refers: list[set[str]] = []
    for index, files in enumerate(groups):
        refs: set[str] = set()
        for path in files:
            d, r = _quick_refs(heads.get(path) or read_head(path))
            for name in d:
                defines.setdefault(name, set()).add(index)
            refs |= r
        refers.append(refs)
    uf = _UnionFind()
    n_configured = len(configured)
    for index, refs in enumerate(refers):
        for ref in refs:
            for other in defines.get(ref, ()):
                # two configured environments are never merged: their configs keep them apart
                if index >= n_configured or other >= n_configured:
                    uf.union(index, other)
    components: dict[int, list[int]] = {}
    for index in range(len(groups)):
        components.setdefault(uf.find(index), []).append(index)

    envs: list[Environment] = []
    for members in components.values():
        files = sorted({p for i in members for p in groups[i]})
        configured_members = [i for i in members if i < n_configured]
        if configured_members:
            env = configured[configured_members[0]]
            extra = tuple(orphan_folders[i - n_configured] for i in members if i >= n_configured)
            envs.append(replace(env, files=tuple(files), version_locations=env.version_locations + extra))
        else:
            locations = tuple(sorted(orphan_folders[i - n_configured] for i in members))
            common = Path(os.path.commonpath([str(p) for p in locations]))
            script_location = locations[0].parent if locations[0].name == "versions" and len(locations) == 1 else None
            envs.append(Environment(
                name=_display(locations[0] if len(locations) == 1 else common, root),
                root=root,
                script_location=script_location,
                version_locations=locations,
                files=tuple(files),
                settings=None,  # type: ignore[arg-type]
            ))
    envs.sort(key=lambda e: e.name)
    return envs
