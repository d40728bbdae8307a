"""The language server over a real project of the corpus: the same findings as `check --static`.

    python benchmarks/realworld/server_parity.py --only optuna [--dialect sqlite]

For each project (its cached workspace under $TMPDIR/migration-lsp-realworld, laid out by
run.py) and dialect: `migration-lsp check --static --format json --no-cache .` in the
workspace, then the server (`migration-lsp serve` over stdio, a trusted workspace, the
truth pass off: `verify = "off"`) until what it has published stays the same for
--settle seconds; every diagnostic is compared as (path, line, column, code, message).
Prints what only one side has; exit 1 when they differ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run
from corpus import CORPUS


def from_check(ws: Path, environ: dict) -> set[tuple]:
    proc = subprocess.run([str(run.OURS), "check", "--static", "--format", "json", "--no-cache", "."], check=False, cwd=ws,
                          capture_output=True, text=True, timeout=run.RUN_TIMEOUT, env={**os.environ, **environ})
    return {(d["path"], d["line"], d["column"], d["code"], d["message"]) for d in json.loads(proc.stdout)["diagnostics"]}


async def from_server(ws: Path, environ: dict, settle: float, timeout: float) -> tuple[set[tuple], float]:
    from lsprotocol import types as t
    from pytest_lsp import client_capabilities, make_test_lsp_client

    client = make_test_lsp_client()

    @client.feature(t.CLIENT_REGISTER_CAPABILITY)
    def register_capability(params: t.RegistrationParams) -> None:
        """(what an editor does: the server asks to watch files)"""

    saved = {k: os.environ.get(k) for k in environ}
    os.environ.update(environ)  # (the server inherits the user's shell)
    try:
        await client.start_io(sys.executable, "-m", "migration_lsp", "serve", cwd=str(ws))
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    t0 = time.monotonic()
    try:
        await client.initialize_session(t.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"), root_uri=ws.as_uri(),
            workspace_folders=[t.WorkspaceFolder(uri=ws.as_uri(), name=ws.name)],
            initialization_options={"trusted": True, "settings": {"verify": "off"}}))

        def published() -> set[tuple]:
            out = set()
            for uri, diags in client.diagnostics.items():
                rel = os.path.relpath(unquote(urlparse(uri).path), ws)
                for d in diags:
                    out.add((rel, d.range.start.line + 1, d.range.start.character + 1, d.code, d.message))
            return out

        last, since = published(), time.monotonic()
        while time.monotonic() - t0 < timeout:
            await asyncio.sleep(0.5)
            now = published()
            if now != last:
                last, since = now, time.monotonic()
            elif now and time.monotonic() - since >= settle:
                break
        return last, since - t0
    finally:
        await client.shutdown_session()
        await client.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--dialect", choices=["sqlite", "postgresql"])
    ap.add_argument("--settle", type=float, default=30.0, help="seconds without a change that end the wait")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    differ = False
    for project in CORPUS:
        if args.only and project["name"] not in args.only:
            continue
        ws, _, error = run.ensure_installed(project)
        if error:
            print(project["name"], error)
            differ = True
            continue
        for dialect in project["dialects"]:
            if args.dialect not in (None, dialect):
                continue
            settings = dict(project.get("settings", {}).get(dialect, {}))
            if dialect != "sqlite":
                settings.setdefault("dialect", dialect)
            environ = project.get("user_env", {}).get(dialect, {})
            run.write_settings(ws, settings)
            try:
                cli = from_check(ws, environ)
                lsp, last_change = asyncio.run(from_server(ws, environ, args.settle, args.timeout))
            finally:
                run.write_settings(ws, {})
            codes: dict[str, int] = {}
            for d in cli:
                codes[d[3]] = codes.get(d[3], 0) + 1
            same = cli == lsp
            differ |= not same
            print(f"{project['name']} {dialect}: check {len(cli)}, server {len(lsp)} (last change at "
                  f"{last_change:.0f} s): {'same' if same else 'DIFFERENT'}; codes {dict(sorted(codes.items()))}",
                  flush=True)
            for d in sorted(cli - lsp):
                print("  only check: ", d)
            for d in sorted(lsp - cli):
                print("  only server:", d)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
