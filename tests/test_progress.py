"""The progress line of `check` (migration_lsp/progress.py) on a real pseudo-terminal: it
appears while a slow check runs (models whose import takes two seconds), is erased at the
end, and never appears when stderr is piped or the output is machine-readable."""

from __future__ import annotations

import argparse
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MINIMAL_INI, migration_text as m, write_project
from migration_lsp.progress import ERASE, Progress, for_command

SLOW_MODELS = """\
import time

import sqlalchemy as sa

time.sleep(2)  # a slow import: the check takes more than a second
metadata = sa.MetaData()
users = sa.Table("users", metadata, sa.Column("id", sa.Integer, primary_key=True))
"""


# an env.py as `alembic init` writes it (loading the models runs it up to configure())
ENV_PY = """\
from alembic import context
from sqlalchemy import engine_from_config, pool

from app.models import metadata

target_metadata = metadata
config = context.config
connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                 poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
"""


@pytest.fixture
def slow_project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", {
        "alembic.ini": MINIMAL_INI.replace("[alembic]\n", "[alembic]\nprepend_sys_path = .\n"),
        "migrations/env.py": ENV_PY,
        "app/__init__.py": "",
        "app/models.py": SLOW_MODELS,
        "migrations/versions/1a2b3c4d5e6f_create_users.py": m(
            "1a2b3c4d5e6f", message="create users",
            upgrades="op.create_table('users', sa.Column('id', sa.Integer(), primary_key=True))",
            downgrades="op.drop_table('users')"),
    })


def _check_on_tty(project: Path, *args: str) -> tuple[int, str, str]:
    """Run `check` with stderr on a pseudo-terminal: (exit code, stdout, all the terminal got)."""
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm", COLUMNS="120")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "migration_lsp", "check", *args, str(project)],
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    received = bytearray()
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        received += chunk
    os.close(master)
    stdout = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=60), stdout, received.decode()


def _visible(terminal: str) -> str:
    """What the terminal's last line shows after `\\r`, `ESC[K` and plain characters."""
    line: list[str] = []
    cursor = 0
    i = 0
    while i < len(terminal):
        if terminal.startswith("\033[K", i):
            del line[cursor:]
            i += 3
            continue
        char = terminal[i]
        if char == "\r":
            cursor = 0
        elif char == "\n":
            line, cursor = [], 0
        else:
            line[cursor:cursor + 1] = [char]
            cursor += 1
        i += 1
    return "".join(line)


def test_shown_on_a_terminal_while_slow_and_erased_at_the_end(slow_project: Path) -> None:
    code, stdout, terminal = _check_on_tty(slow_project, "--static")  # (the truth pass says more)
    assert code == 0, (stdout, terminal)
    assert "migration-lsp: loading models" in terminal
    assert terminal.endswith(ERASE) and _visible(terminal) == ""
    assert "All checks passed" in stdout and "migration-lsp:" not in stdout


def test_never_with_machine_readable_output(slow_project: Path) -> None:
    code, stdout, terminal = _check_on_tty(slow_project, "--static", "--format", "json")
    assert code == 0 and terminal == ""
    json.loads(stdout)


@pytest.mark.parametrize("fmt", ["json", "sarif", "github", "gitlab"])
def test_enabled_for_the_text_report_on_a_terminal_only(fmt: str, monkeypatch) -> None:
    """The decision for each format, on a stderr that says it is a terminal (the slow runs
    above show the text and json cases end to end)."""
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setenv("TERM", "xterm")
    assert for_command(argparse.Namespace(command="check", format="text")).enabled
    assert not for_command(argparse.Namespace(command="check", format=fmt)).enabled
    assert not for_command(argparse.Namespace(command="graph", format="mermaid")).enabled
    monkeypatch.setenv("TERM", "dumb")
    assert not for_command(argparse.Namespace(command="check", format="text")).enabled


def test_never_when_piped(slow_project: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "migration_lsp", "check", "--static", str(slow_project)],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ, TERM="xterm"))
    assert result.returncode == 0 and result.stderr == ""
    assert "All checks passed" in result.stdout


def test_quick_work_shows_nothing() -> None:
    """Work that ends before the delay draws nothing (the thread is stopped while waiting)."""
    stream = io.StringIO()
    with Progress(stream, enabled=True) as status:
        status.stage("checking 3 revision files")
    assert stream.getvalue() == "" and not status.drawn
