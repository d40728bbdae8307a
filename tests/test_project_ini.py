"""Discovery reads an alembic.ini without importing Alembic (project.IniConfig): every answer it
gives — values, interpolation, version location splitting, errors — must be the one Alembic's
own Config gives for the same text. Alembic is the oracle here."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from migration_lsp.project import IniConfig, alembic_config

ROOT = Path(__file__).resolve().parents[1]

OPTIONS = ["script_location", "file_template", "truncate_slug_length", "timezone", "prepend_sys_path",
           "sqlalchemy.url", "nothing_here"]

TEXTS = [
    "[alembic]\nscript_location = migrations\n",
    "[alembic]\nscript_location = %(here)s/migrations\nsqlalchemy.url = sqlite:///%(here)s/x.db\n",
    "[alembic]\nscript_location = myapp:migrations\nversion_locations = myapp:migrations/versions other:v\n",
    "[alembic]\nscript_location = prefect:server:database:_migrations\n",
    "[alembic]\nscript_location = m\nversion_locations = %(here)s/a %(here)s/b,%(here)s/c\n",
    "[alembic]\nscript_location = m\nversion_locations = a:b\npath_separator = os\n",
    "[alembic]\nscript_location = m\nversion_locations = a; b ;c\npath_separator = ;\n",
    "[alembic]\nscript_location = m\nversion_locations = a b  c\npath_separator = space\n",
    "[alembic]\nscript_location = m\nversion_locations =\n  a\n  b\npath_separator = newline\n",
    "[alembic]\nscript_location = m\nversion_locations = a:b\nversion_path_separator = :\n",
    "[alembic]\nscript_location = m\nversion_locations = a:b\npath_separator = comma\n",
    "[alembic]\nscript_location = m\nversion_locations =\n",
    ("[alembic]\nscript_location = m\nfile_template = %%(year)d_%%(rev)s_%%(slug)s\ntruncate_slug_length = 20\n"
     "timezone = UTC\n"),
    "[DEFAULT]\nbase = %(here)s/db\n[alembic]\nscript_location = %(base)s/migrations\n",
    "[alembic]\nscript_location = %(missing)s/x\n",
    "[alembic]\nscript_location = %(a)s\na = %(b)s\nb = %(a)s\n",
    "# [alembic] only in a comment\n[other]\nscript_location = m\n",
    "[alembic]\n",
    "[alembic]\nsqlalchemy.url = postgresql://u:p@h/db\n",
    "[alembic]\nScript_Location = m\nSQLALCHEMY.URL = mysql://x\n",
]


def _texts() -> list[tuple[str, str]]:
    found = [(f"text{n}", t) for n, t in enumerate(TEXTS)]
    for ini in sorted([*ROOT.joinpath("tests").rglob("*.ini"), *ROOT.joinpath("examples").rglob("*.ini")]):
        found.append((str(ini.relative_to(ROOT)), ini.read_text(encoding="utf-8", errors="replace")))
    return found


def _answer(call):
    try:
        return ("value", call())
    except Exception as exc:  # noqa: BLE001 — the oracle's error, whatever its type, is compared by message
        return ("error", str(exc))


def _answers(config) -> list:
    out = [_answer(lambda: config.get_version_locations_list())]
    for name in OPTIONS:
        out.append(_answer(lambda name=name: config.get_alembic_option(name)))
        out.append(_answer(lambda name=name: config.get_alembic_option(name, "default")))
        out.append(_answer(lambda name=name: config.get_main_option(name)))
    return out


@pytest.mark.parametrize("name, text", _texts(), ids=[n for n, _ in _texts()])
def test_ini_config_answers_as_alembic_does(tmp_path: Path, name: str, text: str):
    ini = tmp_path / "alembic.ini"
    ini.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = _answer(lambda: IniConfig(ini, text))
        theirs = _answer(lambda: alembic_config(ini, None, text))
        if ours[0] == "error" or theirs[0] == "error":
            assert ours == theirs
            return
        assert _answers(ours[1]) == _answers(theirs[1])


def test_the_texts_exercise_errors_and_values(tmp_path: Path):
    """The comparison above is not vacuous: some configs give errors, some values."""
    kinds = set()
    for _, text in _texts():
        ini = tmp_path / "alembic.ini"
        ini.write_text(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = _answer(lambda ini=ini, text=text: IniConfig(ini, text))
            if config[0] == "value":
                kinds.update(kind for kind, _ in _answers(config[1]))
                kinds.add(("locations", bool(config[1].get_version_locations_list())) if
                          _answer(config[1].get_version_locations_list)[0] == "value" else "bad separator")
            else:
                kinds.add("bad file")
    assert {"value", "error", ("locations", True), ("locations", False), "bad separator"} <= kinds
