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
               a user would expect when alembic.ini carries no URL); "environments": a list of
               `[[tool.migration-lsp.environments]]` entries (path + keys)
  user_env     environment variables a user of the project has set when migration-lsp runs, per
               dialect (prefect: the database URL its settings read)
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
    {
        "name": "buildbot", "version": "4.3.0",
        "pip": ["buildbot==4.3.0"],
        "copy": ["buildbot"],
        "envs": {"db": {"ini": "buildbot/db/migrations/alembic.ini"}},
        "dialects": ["sqlite", "postgresql"],
        "notes": "alembic.ini has no sqlalchemy.url (buildbot sets it from master.cfg); models are "
                 "sa.Table()s on `buildbot.db.model.Model.metadata`. A new database is made with "
                 "`metadata.create_all()` + `stamp head`; the migrations start from a pre-Alembic schema, "
                 "so `upgrade head` on an empty database fails and there is no ground truth to compare.",
    },
    {
        "name": "jupyterhub", "version": "6.1.1",
        "pip": ["jupyterhub==6.1.1"],
        "copy": ["jupyterhub"],
        # jupyterhub ships alembic.ini as a template ({alembic_dir}, {db_url}) that
        # `python -m jupyterhub.dbutil alembic ...` renders into a temp dir; a developer who wants
        # plain `alembic` (or an editor) renders it once at the checkout's root:
        "prepare": "import pathlib; t = pathlib.Path('jupyterhub/alembic.ini').read_text(); "
                   "pathlib.Path('alembic.ini').write_text(t.format("
                   "alembic_dir='%(here)s/jupyterhub/alembic', db_url='sqlite:///jupyterhub.sqlite'))",
        "envs": {"hub": {"ini": "alembic.ini"}},
        "dialects": ["sqlite", "postgresql"],
        "notes": "needs alembic.ini rendered from the shipped template (what jupyterhub.dbutil does); "
                 "the template itself (`script_location = {alembic_dir}`) stays in the checkout. A new "
                 "database is made with `create_all()` + `stamp head`; the base revision assumes the 0.5 "
                 "schema, so `upgrade head` on an empty database fails (no ground truth).",
    },
    {
        "name": "mlflow", "version": "3.17.2",
        "pip": ["mlflow-skinny==3.17.2", "sqlalchemy==2.1.9", "alembic==1.20.1", "flask==3.1.2", "flask-wtf==1.3.0",
                "aiohttp==3.14.5", "numpy==2.4.6", "pandas==3.1.1"],
        "copy": ["mlflow"],
        "envs": {
            # script_location = mlflow/store/db_migrations: relative to the repository root;
            # env.py needs config.attributes["connection"] (mlflow's _upgrade_db passes one)
            # a new database first gets mlflow's initial tables (mlflow.store.db.utils._initialize_tables
            # does this create_all, then upgrades), so the base revision finds them
            "tracking": {"ini": "mlflow/store/db_migrations/alembic.ini", "cwd": ".", "connection_attribute": True,
                         "bootstrap": "import sqlalchemy as sa\n"
                                      "from mlflow.store.tracking.dbmodels.initial_models import Base\n"
                                      "Base.metadata.create_all(sa.create_engine(url))"},
            # script_location = . (relative to the ini's folder); version_table alembic_version_auth
            "auth": {"ini": "mlflow/server/auth/db/migrations/alembic.ini"},
        },
        "dialects": ["sqlite", "postgresql"],
        # what the bootstrap above does, said to migration-lsp: the tracking environment's truth
        # pass creates mlflow's initial tables on the scratch database before the base revision
        "settings": {d: {"environments": [{"path": "mlflow/store/db_migrations",
                                           "initial-metadata": "mlflow.store.tracking.dbmodels.initial_models:Base"}]}
                     for d in ("sqlite", "postgresql")},
        "notes": "two environments in one package (tracking store, auth). mlflow-skinny + sqlalchemy + "
                 "alembic is what the tracking server's store needs (the full `mlflow` adds pandas, sklearn...). "
                 "env.py imports only the declarative Base; the revision modules import the models.",
    },
    {
        "name": "aim", "version": "3.29.1",
        "pip": ["aim==3.29.1"],
        "copy": ["aim"],
        "envs": {
            # URL from the environment variable env.py reads
            "storage": {"ini": "aim/storage/migrations/alembic.ini", "env": {"AIM_RUN_META_DATA_DB_URL": "{url}"}},
            # URL fixed by aim.web.api.db: sqlite:///<__AIM_UI_MOUNT_REPO_PATH__>/.aim/aim_db
            "web": {"ini": "aim/web/migrations/alembic.ini", "env": {"__AIM_UI_MOUNT_REPO_PATH__": "{tmp}"},
                    "setup": "import os; os.makedirs(os.path.join(job['tmp'], '.aim'), exist_ok=True)"},
        },
        "dialects": ["sqlite"],
        "notes": "two environments (run metadata, web UI); SQLite only (aim keeps its databases in the "
                 "repository folder); `script_location = aim:storage/migrations` (package resource form).",
    },
    {
        "name": "prefect", "version": "3.9.1",
        "pip": ["prefect==3.9.1"],
        "copy": ["prefect"],
        "envs": {"server": {
            "ini": "prefect/server/database/alembic.ini",
            "env": {"PREFECT_SERVER_DATABASE_CONNECTION_URL": "{url}", "PREFECT_HOME": "{tmp}"},
            "driver": {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"},
            # prefect runs its migrations from a worker thread of its event loop (run_sync_in_worker_thread)
            "anyio_thread": True,
        }},
        "dialects": ["sqlite", "postgresql"],
        # a prefect PostgreSQL user has the server's database URL in prefect's settings (this
        # variable, or a profile): env.py takes the PostgreSQL history and builds its async
        # engine from it; the truth pass redirects that engine to its scratch PostgreSQL (this
        # host must never be reached)
        "user_env": {"postgresql": {"PREFECT_SERVER_DATABASE_CONNECTION_URL":
                                    "postgresql+asyncpg://prefect:secret@prefect-db.invalid:5432/prefect"}},
        "notes": "`script_location = prefect:server:database:_migrations` (resource form) and one history "
                 "per dialect (versions/sqlite, versions/postgresql) chosen by env.py from the database URL; "
                 "async engine; include_object in env.py.",
    },
    {
        "name": "zenml", "version": "0.98.0",
        "pip": ["zenml[local]==0.98.0"],
        "copy": ["zenml"],
        # the wheel has no alembic.ini; a checkout has src/zenml/alembic.ini with
        # script_location = zen_stores/migrations (relative to src/zenml, where it is run from)
        "prepare": "import pathlib; pathlib.Path('zenml/alembic.ini').write_text("
                   "'[alembic]\\nscript_location = %(here)s/zen_stores/migrations\\nprepend_sys_path = .\\n"
                   "sqlalchemy.url = sqlite:///zenml.db\\n')",
        "envs": {"store": {
            "ini": "zenml/alembic.ini",
            "env": {"ZENML_STORE_URL": "{url}", "ZENML_STORE_TYPE": "sql", "ZENML_CONFIG_PATH": "{tmp}/config",
                    "ZENML_ANALYTICS_OPT_IN": "false", "ZENML_LOCAL_STORES_PATH": "{tmp}/stores"},
        }},
        "dialects": ["sqlite"],
        "notes": "needs the checkout's alembic.ini (not in the wheel); env.py builds the engine from ZenML's "
                 "global store configuration (ZENML_STORE_URL), not from alembic.ini; SQLite and MySQL only. "
                 "A new SQLite store is made with `create_all()` + stamp: revision 728c6369cfaa raises "
                 "NotImplementedError on SQLite, so `upgrade head` there has no ground truth.",
    },
    {
        "name": "arize-phoenix", "version": "20.26.1",
        "pip": ["arize-phoenix[pg]==20.26.1", "asyncpg==0.32.0"],
        "copy": ["phoenix"],
        "envs": {"db": {
            "ini": "phoenix/db/alembic.ini",  # script_location = migrations (run from the ini's folder)
            "driver": {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"},
            "env": {"PHOENIX_WORKING_DIR": "{tmp}"},
        }},
        "dialects": ["sqlite", "postgresql"],
        "notes": "env.py wraps the ini's URL in an AsyncEngine (aiosqlite / asyncpg drivers).",
    },
    {
        "name": "apache-airflow-core", "version": "3.3.2",
        "pip": ["apache-airflow-core==3.3.2", "asyncpg==0.32.0", "psycopg2-binary==2.9.13"],
        "copy": ["airflow"],
        "envs": {"airflow": {
            "ini": "airflow/alembic.ini",
            # env.py takes airflow.settings.engine, configured from the environment, not alembic.ini
            "env": {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "{url}", "AIRFLOW_HOME": "{tmp}",
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False"},
            # its migrations bind string parameters the way psycopg2 does (psycopg 3 fails in one of them)
            "driver": {"postgresql": "postgresql+psycopg2"},
        }},
        "dialects": ["sqlite", "postgresql"],
        "notes": "env.py uses `airflow.settings.engine` (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN) and has its "
                 "own include_object; `airflow db migrate` runs the same migrations (from an empty "
                 "database with `airflow db reset --use-migration-files`).",
    },
]
