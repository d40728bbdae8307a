"""Starts the migration-lsp bundled with the extension (bundled/libs).

Run as `python -I server.py serve`: isolated mode puts neither the current directory nor the
script's folder nor PYTHONPATH / user site-packages on sys.path, so no file of the workspace
(an `argparse.py`, a `migration_lsp/` package) can stand in for a module; the bundled
libraries are put first explicitly. `--version` prints the versions and exits.
"""

import os
import sys

if sys.version_info < (3, 10):
    sys.stderr.write("migration-lsp needs Python 3.10 or newer; this is %s (%s)\n"
                     % (sys.version.split()[0], sys.executable))
    sys.exit(3)

LIBS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "libs")
sys.path.insert(0, LIBS)

from migration_lsp.cli import run  # noqa: E402  (after the path is set)

sys.argv[0] = "migration-lsp"
run()
