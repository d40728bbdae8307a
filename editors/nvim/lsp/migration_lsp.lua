-- migration-lsp for Neovim 0.11+ (`vim.lsp.config` format).
--
-- Install:  pip install migration-lsp   (or use the project's venv; `migration-lsp` must be on PATH)
-- Enable:   vim.opt.runtimepath:append('/path/to/migration-lsp/editors/nvim')
--           vim.lsp.enable('migration_lsp')
-- Override any field without editing this file, e.g. a venv's server:
--           vim.lsp.config('migration_lsp', { cmd = { '/path/to/.venv/bin/migration-lsp', 'serve' } })
--
-- It runs next to your usual Python server (pyright, basedpyright, pylsp, ...): it only
-- reports on Alembic migration files, env.py and the models they are compared with.
---@type vim.lsp.Config
return {
  -- stdio language server
  cmd = { 'migration-lsp', 'serve' },
  filetypes = { 'python' },
  -- the nearest directory holding one of these is the workspace root; Alembic
  -- environments (alembic.ini, [tool.alembic], versions/ directories) are discovered below it
  root_markers = { 'alembic.ini', 'pyproject.toml', '.git' },
  -- sent on workspace/configuration and didChangeConfiguration; keys (all optional):
  -- models = 'pkg.module:Base.metadata', python = '/path/to/python', dialect = 'postgresql',
  -- select = { 'G', 'D' }, ignore = { 'S005' }, excludeTables = { 'spatial_ref_sys' }
  settings = { migrationLsp = {} },
  -- only `trusted = true` lets the server import the project's models (in a child process);
  -- for a repository you have not reviewed, override it per project:
  --   vim.lsp.config('migration_lsp', { init_options = { trusted = false } })
  -- and nothing from the workspace (models, env.py, script.py.mako, interpreters) is run
  init_options = { trusted = true },
}
