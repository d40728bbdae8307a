"""Runs in a child process (through child.py's sandbox): render a project's own
`script.py.mako` with Mako, as `alembic revision` does, and write the text as JSON. The
template is project code (`<% import os %>` runs), so it never renders in the server.

usage: python child.py render_child.py '<json: {"template": "...", "kwargs": {...}}>'
"""

import json
import os
import sys
from datetime import datetime


def main() -> None:
    config = json.loads(sys.argv[1])
    result: dict[str, str | None] = {"text": None, "error": None}
    try:
        from alembic import util
        from mako.template import Template

        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config["kwargs"].items()}
        kwargs["create_date"] = datetime.fromisoformat(config["kwargs"]["create_date"])
        kwargs["comma"] = util.format_as_comma
        result["text"] = Template(filename=config["template"]).render_unicode(**kwargs)
    except BaseException as exc:  # noqa: BLE001 - report, never traceback
        result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500] if str(exc) else type(exc).__name__
    with open(os.environ["MIGRATION_LSP_RESULT"], "w", encoding="utf-8") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
