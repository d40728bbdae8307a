"""The models state: each environment's target MetaData as loaded in a child process (only
in a trusted workspace), and M001–M004 against the schema at the heads, remembered in the
memo under the heads' revision keys."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache import Store, digest
from ..core import Diagnostic
from ..graph import RevisionGraph
from ..project import Environment, Settings
from .schema_pass import env_py_text
from .stored import decode_diagnostics, encode_diagnostics

if TYPE_CHECKING:
    from ..compare import CompareOptions, Difference
    from ..models import MetadataSource, ModelTables
    from ..replay import Replay

Key = tuple[Path, str]


def may_enable(settings: Settings, family: str) -> bool:
    """Could any code starting with `family` ("M") pass select / ignore?"""
    select = [s.upper() for s in settings.select]
    if select and "ALL" not in select and not any(s.startswith(family) or family.startswith(s) for s in select):
        return False
    return not any(family.startswith(s.upper()) for s in settings.ignore)


def heads_key(keys: dict[str, str], graph: RevisionGraph) -> str:
    """The memo key of the schema at the heads: their revision keys."""
    return digest("heads", *(keys.get(h) or "-" for h in sorted(graph.heads)))


class ModelsState:
    def __init__(self, trusted: bool, untrusted_reason: str) -> None:
        self.trusted = trusted  # project code (the models) may run, in a child process, only when trusted
        self.untrusted_reason = untrusted_reason
        self.models: dict[Key, ModelTables] = {}  # (changed through put / drop)
        # the models' files as a migration's evaluation first read them after the models were
        # loaded (saved_text): None for a file not readable then
        self._saved: dict[Path, str | None] = {}
        self._imported: frozenset[Path] | None = None  # the loaded models' files, until they change
        self._loads = 0  # put() calls: a read a load overtook (the rebuild thread's) is not kept

    def put(self, key: Key, models: ModelTables) -> None:
        """Models (re)loaded: their files are read again from the disk, as they now are."""
        old = self.models.get(key)
        self.models[key] = models
        self._loads += 1
        for path in {*models.files, *(old.files if old is not None else ())}:
            self._saved.pop(path, None)
        self._imported = None

    def drop(self, key: Key) -> None:
        self.models.pop(key, None)
        self._imported = None

    @staticmethod
    def metadata_source(env: Environment) -> MetadataSource:
        from ..models import metadata_source

        return metadata_source(env)

    def jobs(self, environments: Iterable[tuple[Key, Environment]]) -> list[tuple[Key, Environment, MetadataSource]]:
        """What loading the models means for each environment whose M rules may report
        anything (none when untrusted)."""
        if not self.trusted:
            return []
        return [(key, env, self.metadata_source(env)) for key, env in environments if may_enable(env.settings, "M")]

    def files(self) -> set[Path]:
        return {f for m in self.models.values() for f in m.files}

    def saved_text(self, path: Path) -> str | None:
        """In a trusted workspace, the text of a file the loaded models were imported from as
        the migrations' evaluation must read it (`User.__tablename__`): the saved one, read
        once after each load, not an unsaved buffer nor a later save. Why: the imported
        models are those of the saved file until they are loaded again (on the save), and
        the replay read from the buffer would differ from them meanwhile (a rename of
        `__tablename__` showed as an M001/M002 pair until the save). None: any other file
        (its buffer, else the disk, is read)."""
        if not self.trusted:
            return None
        if self._imported is None:
            self._imported = frozenset(f for m in self.models.values() if not m.error for f in m.files)
        if path not in self._imported:
            return None
        if path in self._saved:
            return self._saved[path]
        from .sources import read_source

        loads, text = self._loads, read_source(path)
        if loads == self._loads:
            self._saved[path] = text
        return text

    def needs_schema(self, key: Key) -> bool:
        """Do M001–M003 need the schema at the heads (models loaded without an error)?"""
        models = self.models.get(key) if self.trusted else None
        return models is not None and not models.error

    def remembered(self, key: Key, env: Environment, entry_models) -> tuple | None:
        """(filtered M diagnostics, differences) computed before for these heads, this
        environment and these models, else None."""
        models = self.models.get(key) if self.trusted else None
        if entry_models is not None and entry_models[0] == env and entry_models[1] is models:
            return entry_models[2]
        return None

    def findings(self, key: Key, env: Environment, graph: RevisionGraph, replay_of: Callable[[], Replay],
                 options: Callable[[], CompareOptions], store: Store
                 ) -> tuple[list[Diagnostic], list[Difference]]:
        """M001–M004. Untrusted, the answer (an M004 saying why) depends only on env.py and
        the settings, so it is cached on disk like the revisions' results."""
        models_off = None if self.trusted else self.untrusted_reason
        fallback = env.config_path or graph.scripts[0].path
        memo = digest("models-off", repr(env), models_off or "", env_py_text(env)) if models_off else None
        if memo is not None:
            cached = store.get("models", memo)
            decoded = decode_diagnostics(cached, None) if cached is not None else None
            if decoded is not None:
                return decoded, []
        from ..checks.models import check_models

        models = self.models.get(key) if self.trusted else None
        schema = replay_of().at_heads() if models is not None and not models_off else None
        found, differences = check_models(schema, models, self.metadata_source(env), options(), models_off,
                                          env.name, fallback)
        if memo is not None:
            store.put("models", memo, encode_diagnostics(found, None))
        return found, differences
