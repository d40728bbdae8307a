"""The corpus: real PyPI packages that ship Alembic migrations AND SQLAlchemy models.

Each entry is pinned to an exact version. The workspace a developer has is mirrored by
copying the installed package's top-level folder (alembic.ini + env.py + versions + the models
package, as in a checkout of the project's repository) into
`$TMPDIR/migration-lsp-realworld/<name>-<version>/`, whose `.venv` is the project's own venv
(where migration-lsp looks for the interpreter that imports the models).

Fields:
  pip          what `pip install` gets (psycopg[binary] is added for PostgreSQL)
  copy         top-level package folders copied from site-packages into the workspace
  envs         the Alembic environments: {label: {"ini": path in the workspace, ...job keys}}
               job keys for truth_child.py: "url_option" (the ini key env.py reads the URL
               from, default sqlalchemy.url), "env" (environment variables), "setup" (python run
               before Alembic, e.g. to point a project setting at the scratch database),
               "main_options" (other ini keys a user sets), "section" (ini section)
  dialects     sqlite always when the project runs on it; postgresql when it supports it
  settings     `[tool.migration-lsp]` keys a user must write for migration-lsp, per dialect
               ({} = zero config; the PostgreSQL runs always set `dialect`, the one setting
               a user would expect when alembic.ini carries no URL)
  notes        what a user needs to know
"""

CORPUS = [
    {
        "name": "optuna", "version": "5.0.0",
        "pip": ["optuna==5.0.0"],
        "copy": ["optuna"],
        "envs": {"rdb": {"ini": "optuna/storages/_rdb/alembic.ini"}},
        "dialects": ["sqlite", "postgresql"],
        "notes": "alembic.ini says `script_location = alembic` (relative: Alembic is run from the "
                 "ini's folder, as optuna's RDBStorage does).",
    },
]
