"""Tiny blog application used as the migration-lsp demo project."""
