"""migration-lsp: a language server and CI linter for Alembic migration scripts."""

__version__ = "0.1.0"
