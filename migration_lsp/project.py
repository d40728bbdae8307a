"""Stage `project`: find every Alembic environment under a workspace root, with no settings.

Alembic's own `Config` reads alembic.ini / `[tool.alembic]` (interpolation of `%(here)s`,
`path_separator`, toml values), so we agree with Alembic on where the versions are. Beyond
what any config says, folders of revision files found by scanning become environments too:
packages that each ship an `alembic/` folder and reference each other's revisions form one
environment (connected by references), and revision files nested below a versions directory
belong to it. Nothing here imports project code.
"""

from __future__ import annotations

import configparser
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SKIP_DIRS = {
    ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".nox",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", "site-packages", ".eggs", "build", "dist",
    ".idea", ".vscode", ".cache",
}
HEAD_BYTES = 16384  # revision headers sit at the top of a file
_REV_FILE = re.compile(r"(?!\.#|__init__)(.*\.py)$")  # Alembic's _only_source_rev_file
_HEADER_VAR = re.compile(
    r"^(revision|down_revision|depends_on|branch_labels)\s*(?::[^=\n]*)?=\s*(.*)$", re.M
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

    def merged(self, overrides: dict) -> Settings:
        """Apply a mapping of keys (`exclude-tables` or `exclude_tables`) over these settings."""
        changes = {}
        for key, value in (overrides or {}).items():
            name = key.replace("-", "_")
            if name not in self.__dataclass_fields__ or value is None:
                continue
            if name in ("select", "ignore", "exclude_tables"):
                value = tuple(value.replace(",", " ").split()) if isinstance(value, str) else tuple(value)
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
    dialect: str | None = None
    settings: Settings = field(default_factory=Settings)

    @property
    def env_py(self) -> Path | None:
        if self.script_location and (self.script_location / "env.py").is_file():
            return self.script_location / "env.py"
        return None

    @property
    def template_path(self) -> Path | None:
        """The environment's own script.py.mako, if it has one."""
        if self.script_location and (self.script_location / "script.py.mako").is_file():
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


def read_head(path: Path, size: int = HEAD_BYTES) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(size).decode("utf-8", "replace")
    except OSError:
        return ""


def load_settings(pyproject: Path, base: Settings | None = None) -> tuple[Settings, ConfigProblem | None]:
    base = base or Settings()
    if not pyproject.is_file():
        return base, None
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
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


def walk(root: Path) -> Scan:
    scan = Scan()
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in SKIP_DIRS and not d.endswith(".egg-info")
            and not (here / d / "pyvenv.cfg").exists()
        )
        child = getattr(here, "_make_child_relpath", here.joinpath)  # (the fast way, where there is one)
        for name in sorted(filenames):
            if name.endswith(".ini"):
                scan.inis.append(child(name))
            elif name == "pyproject.toml":
                scan.pyprojects.append(child(name))
            elif name.endswith(".py"):
                scan.py_by_dir.setdefault(here, []).append(child(name))
    return scan


def _has_alembic_section(ini: Path) -> bool:
    try:
        if ini.stat().st_size > 1_000_000:
            return False
    except OSError:
        return False
    return "[alembic]" in read_head(ini, 1_000_000)


def _has_tool_alembic(pyproject: Path) -> bool:
    return "[tool.alembic" in read_head(pyproject, 1_000_000)


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
    """A script/version location: a path or `pkg.mod:sub/dir`; the first candidate that exists."""
    if ":" in value and not re.match(r"^[A-Za-z]:[\\/]", value) and not Path(value).is_absolute():
        package, _, sub = value.partition(":")
        rel = Path(*package.split(".")) / sub
    else:
        rel = Path(value)
        if rel.is_absolute():
            return rel.resolve()
    for start in _starts(base, root):
        if (start / rel).exists():
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
    return " ".join(str(exc).split()) or type(exc).__name__


KNOWN_DIALECTS = {"postgresql", "mysql", "mariadb", "sqlite", "oracle", "mssql"}


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


def _environment_from_config(
    root: Path, ini: Path | None, toml: Path | None, problems: list[ConfigProblem], settings: Settings
) -> Environment | None:
    where = ini or toml
    assert where is not None
    base = where.parent
    from alembic.config import Config  # here, not above: importing Alembic costs 0.4 s, and
    # a warm start (engine.py caches discovery) never needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = Config(file_=str(ini) if ini else None, toml_file=str(toml) if toml else None)
            script_location = config.get_alembic_option("script_location")
            if script_location is None and ini and (base / "env.py").is_file():
                script_location = str(base)  # Flask-Migrate keeps alembic.ini inside migrations/
            if not script_location:
                return None  # an [alembic] section that only holds e.g. sqlalchemy.url
            location = _resolve_location(str(script_location), base, root)
            if not location.is_dir():
                problems.append(ConfigProblem(where, f"{where.name}: script_location {script_location} does not exist"))
                return None
            versions = config.get_version_locations_list()
            version_locations = tuple(
                _resolve_location(v, base, root) for v in (versions or []) if v and v.strip()
            ) or (location / "versions",)
            file_template = config.get_alembic_option("file_template", "%(rev)s_%(slug)s")
            truncate = config.get_alembic_option("truncate_slug_length")
            timezone = config.get_alembic_option("timezone")
            url = config.get_main_option("sqlalchemy.url") if ini else None
        except Exception as exc:  # configparser, toml, OSError, alembic's CommandError...
            reason = _one_line(exc)
            problems.append(ConfigProblem(where, f"{where.name}: cannot read Alembic configuration: {reason}"))
            return None
    env_settings = settings
    if toml is None and (base / "pyproject.toml").is_file() and base != root:
        env_settings, problem = load_settings(base / "pyproject.toml", settings)
        if problem:
            problems.append(problem)
    try:
        truncate_len = int(truncate) if truncate is not None else 40
    except ValueError:
        truncate_len = 40
    return Environment(
        name=_display(location, root),
        root=root,
        config_path=where,
        script_location=location,
        version_locations=version_locations,
        file_template=str(file_template),
        truncate_slug_length=truncate_len,
        timezone=str(timezone) if timezone else None,
        dialect=env_settings.dialect or _dialect_from_url(url),
        settings=env_settings,
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


def _looks_like_revision_file(text: str) -> bool:
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
    root = root.resolve()
    problems: list[ConfigProblem] = []
    settings, problem = load_settings(root / "pyproject.toml")
    settings = settings.merged(overrides or {})
    if problem:
        problems.append(problem)
    scan = scan or walk(root)

    configured: list[Environment] = []
    alembic_inis = [ini for ini in scan.inis if _has_alembic_section(ini)]
    ini_dirs = {ini.parent for ini in alembic_inis}
    for ini in alembic_inis:
        toml = ini.parent / "pyproject.toml"
        env = _environment_from_config(
            root, ini, toml if toml.is_file() and _has_tool_alembic(toml) else None, problems, settings
        )
        if env:
            configured.append(env)
    for toml in scan.pyprojects:
        if toml.parent not in ini_dirs and _has_tool_alembic(toml):
            env = _environment_from_config(root, None, toml, problems, settings)
            if env:
                configured.append(env)
    configured = _dedupe(configured)

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

    # Orphan folders: revision files nobody's config points at.
    orphan_groups: dict[Path, list[Path]] = {}
    heads: dict[Path, str] = {}
    for directory, paths in scan.py_by_dir.items():
        for path in paths:
            if path in claimed or path.name == "env.py" or not _REV_FILE.match(path.name):
                continue
            text = read_head(path)
            if _looks_like_revision_file(text):
                orphan_groups.setdefault(_group_dir(directory), []).append(path)
                heads[path] = text

    return Discovery(root, tuple(_connect(root, configured, files_of, orphan_groups, heads, settings)), tuple(problems), settings)


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
    settings: Settings,
) -> list[Environment]:
    """Join orphan folders to each other and to configured environments by references."""
    if not orphan_groups:
        return [replace(env, files=tuple(files)) for env, files in sorted(
            zip(configured, files_of), key=lambda pair: pair[0].name)]
    groups: list[list[Path]] = [list(f) for f in files_of] + [sorted(v) for v in orphan_groups.values()]
    folders = [None] * len(configured) + list(orphan_groups)
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
            extra = tuple(folders[i] for i in members if i >= n_configured)
            envs.append(replace(env, files=tuple(files), version_locations=env.version_locations + extra))
        else:
            locations = tuple(sorted(folders[i] for i in members))  # type: ignore[type-var]
            common = Path(os.path.commonpath([str(p) for p in locations]))
            script_location = locations[0].parent if locations[0].name == "versions" and len(locations) == 1 else None
            envs.append(Environment(
                name=_display(locations[0] if len(locations) == 1 else common, root),
                root=root,
                script_location=script_location,
                version_locations=locations,
                files=tuple(files),
                dialect=settings.dialect,
                settings=settings,
            ))
    envs.sort(key=lambda e: e.name)
    return envs
