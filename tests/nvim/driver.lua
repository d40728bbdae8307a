-- Headless Neovim 0.11 driver for tests/test_nvim_e2e.py.
--
--   MLSP_OUT=out.json MLSP_RTP=<repo>/editors/nvim \
--     nvim --headless --clean -n -u tests/nvim/driver.lua <project>/migrations/versions/4327c6748b81_add_post_slug.py
--
-- Loads the shipped editors/nvim/lsp/migration_lsp.lua exactly as a user does (runtimepath +
-- vim.lsp.enable; `migration-lsp` is found on PATH), then plays a short session through
-- Neovim's own LSP UI functions and records what the editor saw as JSON. The test asserts;
-- the driver only records. Exit codes: 0 done, 2 no client, 3 global timeout, 4 Lua error.

local out_path = assert(os.getenv('MLSP_OUT'), 'MLSP_OUT not set')
local rtp = assert(os.getenv('MLSP_RTP'), 'MLSP_RTP not set')
local WAIT = tonumber(os.getenv('MLSP_WAIT_MS') or '15000')

local res = { steps = {} }

local function finish(code, extra)
  for k, v in pairs(extra or {}) do res[k] = v end
  res.exit_code = code
  res.lsp_log = vim.lsp.log.get_filename() -- spawn/config errors land here, not on stderr
  local f = assert(io.open(out_path, 'w'))
  f:write(vim.json.encode(res))
  f:close()
  vim.cmd('cquit ' .. code)
end

-- a hung server must never hang the test run
vim.defer_fn(function() finish(3, { error = 'global timeout' }) end, tonumber(os.getenv('MLSP_TIMEOUT_MS') or '60000'))

vim.lsp.log.set_level('warn')
vim.opt.runtimepath:prepend(rtp)
vim.opt.swapfile = false
vim.opt.hidden = true
-- exactly what the README tells users to do:
vim.lsp.enable('migration_lsp')

local function step(name) table.insert(res.steps, name) end

local function wait(pred, what)
  local ok = vim.wait(WAIT, pred, 20)
  if not ok then error('timed out waiting for ' .. what, 0) end
end

local function client_for(buf)
  return vim.lsp.get_clients({ bufnr = buf, name = 'migration_lsp' })[1]
end

local function diag_list(buf)
  return vim.tbl_map(function(d)
    return { lnum = d.lnum, col = d.col, end_col = d.end_col, code = d.code, severity = d.severity,
             source = d.source, message = d.message }
  end, vim.diagnostic.get(buf))
end

local function has_diag(buf, code, lnum)
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    if d.code == code and d.lnum == lnum then return true end
  end
  return false
end

-- put the cursor on `needle` (+ offset) in the first `down_revision` line containing it;
-- returns the 0-based line
local function cursor_on(buf, needle, offset)
  for i, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    local col = vim.startswith(line, 'down_revision') and line:find(needle, 1, true)
    if col then
      vim.api.nvim_win_set_cursor(0, { i, col - 1 + (offset or 0) })
      return i - 1
    end
  end
  error('not found: ' .. needle, 0)
end

local function float_text()
  for _, win in ipairs(vim.api.nvim_list_wins()) do
    if vim.api.nvim_win_get_config(win).relative ~= '' then
      local b = vim.api.nvim_win_get_buf(win)
      return table.concat(vim.api.nvim_buf_get_lines(b, 0, -1, false), '\n'), win
    end
  end
end

local function titles_at(buf, client, lnum)
  local params = vim.lsp.util.make_range_params(0, client.offset_encoding)
  params.range = { start = { line = lnum, character = 0 }, ['end'] = { line = lnum, character = 0 } }
  local diags = {}
  for _, d in ipairs(vim.diagnostic.get(buf, { lnum = lnum })) do
    table.insert(diags, d.user_data and d.user_data.lsp)
  end
  params.context = { diagnostics = diags }
  local resp = vim.lsp.buf_request_sync(buf, 'textDocument/codeAction', params, WAIT) or {}
  local r = resp[client.id] or {}
  if r.err then error('codeAction error: ' .. vim.inspect(r.err), 0) end
  local out = {}
  for _, a in ipairs(r.result or {}) do
    local kinds = {}
    if a.edit and a.edit.documentChanges then
      for _, c in ipairs(a.edit.documentChanges) do table.insert(kinds, c.kind or 'TextDocumentEdit') end
    end
    table.insert(out, { title = a.title, kind = a.kind, isPreferred = a.isPreferred or false,
                        has_edit = a.edit ~= nil, has_data = a.data ~= nil, command = a.command and (a.command.command or a.command) or nil,
                        document_changes = kinds })
  end
  return out
end

-- the real UI path: vim.lsp.buf.code_action picks and applies the single action the filter keeps
local function apply_action(prefix)
  vim.lsp.buf.code_action({
    apply = true,
    filter = function(a) return vim.startswith(a.title, prefix) end,
  })
end

local function run()
  local typo_buf = vim.api.nvim_get_current_buf()
  local typo_path = vim.api.nvim_buf_get_name(typo_buf)
  res.file = typo_path
  res.filetype = vim.bo[typo_buf].filetype
  local cfg = vim.lsp.config.migration_lsp or {}
  res.config = { cmd = cfg.cmd, filetypes = cfg.filetypes, root_markers = cfg.root_markers,
                 settings = cfg.settings, init_options = cfg.init_options }
  res.config_source = vim.api.nvim_get_runtime_file('lsp/migration_lsp.lua', true)

  -- 1. the client attaches and initialises
  local client
  local ok = vim.wait(WAIT, function()
    client = client_for(typo_buf)
    return client ~= nil and client.initialized
  end, 20)
  if not ok or not client then return finish(2, { error = 'no client attached' }) end
  step('attached')
  res.server_name = client.server_info and client.server_info.name
  res.offset_encoding = client.offset_encoding
  res.root_dir = client.root_dir
  res.pull_diagnostics = client.server_capabilities.diagnosticProvider ~= nil

  -- 2. diagnostics: G001 on the `revision =` line, G002 on the typo'd down_revision
  wait(function() return has_diag(typo_buf, 'G001', 14) and has_diag(typo_buf, 'G002', 15) end, 'G001+G002')
  res.diagnostics = diag_list(typo_buf)
  step('diagnostics')

  -- 3. quick fixes offered on the G002 line; apply "Change to ..." via vim.lsp.buf.code_action
  res.actions_g002 = titles_at(typo_buf, client, 15)
  cursor_on(typo_buf, 'bd474000086b', 2)
  apply_action("Change to 'bd474000068b'")
  wait(function()
    return vim.api.nvim_buf_get_lines(typo_buf, 15, 16, false)[1]:find('bd474000068b', 1, true) ~= nil
  end, 'the quick fix to change the buffer')
  res.line_after_fix = vim.api.nvim_buf_get_lines(typo_buf, 15, 16, false)[1]
  res.modified_after_fix = vim.bo[typo_buf].modified
  step('fix applied')

  -- 4. the server sees the unsaved edit: G002 goes away, G001 stays (two heads remain)
  wait(function() return not has_diag(typo_buf, 'G002', 15) and has_diag(typo_buf, 'G001', 14) end,
    'G002 to disappear')
  res.diagnostics_after_fix = diag_list(typo_buf)
  step('G002 cleared')

  -- 5. "Merge heads" on the G001 line: CreateFile + TextDocumentEdit, applied by Neovim
  res.actions_g001 = titles_at(typo_buf, client, 14)
  local before = {}
  for _, b in ipairs(vim.api.nvim_list_bufs()) do before[b] = true end
  vim.api.nvim_win_set_cursor(0, { 15, 0 })
  apply_action('Merge heads')
  local merge_buf
  wait(function()
    for _, b in ipairs(vim.api.nvim_list_bufs()) do
      if not before[b] and vim.api.nvim_buf_get_name(b):match('%.py$') and vim.api.nvim_buf_line_count(b) > 1 then
        merge_buf = b
        return true
      end
    end
    return false
  end, 'the merge revision buffer')
  res.merge_file = vim.api.nvim_buf_get_name(merge_buf)
  res.merge_file_on_disk = vim.uv.fs_stat(res.merge_file) ~= nil
  res.merge_text = table.concat(vim.api.nvim_buf_get_lines(merge_buf, 0, -1, false), '\n')
  step('merge created')
  -- write everything (as :wall would) and let the server see the new revision: no more heads
  vim.api.nvim_buf_call(merge_buf, function() vim.cmd('silent write') end)
  vim.api.nvim_buf_call(typo_buf, function() vim.cmd('silent write') end)
  wait(function() return not has_diag(typo_buf, 'G001', 14) end, 'G001 to disappear after the merge')
  res.diagnostics_after_merge = diag_list(typo_buf)
  step('heads merged')

  -- 6. hover on a down_revision id in another file, through vim.lsp.buf.hover's float
  vim.cmd('edit ' .. vim.fn.fnameescape(assert(os.getenv('MLSP_HOVER_FILE'))))
  local hover_buf = vim.api.nvim_get_current_buf()
  wait(function()
    local c = client_for(hover_buf)
    return c ~= nil and c.id == client.id
  end, 'the client to attach to the second buffer')
  res.hover_line = cursor_on(hover_buf, "'6a4961b6b2ca'", 3)
  local hp = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local hr = vim.lsp.buf_request_sync(hover_buf, 'textDocument/hover', hp, WAIT) or {}
  local h = hr[client.id] and hr[client.id].result
  res.hover = h and h.contents or vim.NIL
  vim.lsp.buf.hover()
  local text
  wait(function() text = float_text(); return text ~= nil end, 'the hover float')
  res.hover_float = text
  step('hover')
  vim.cmd('fclose!')

  -- 7. go to definition: vim.lsp.buf.definition jumps to the parent's file
  cursor_on(hover_buf, "'6a4961b6b2ca'", 3)
  local dr = vim.lsp.buf_request_sync(hover_buf, 'textDocument/definition',
    vim.lsp.util.make_position_params(0, client.offset_encoding), WAIT) or {}
  res.definition = dr[client.id] and dr[client.id].result or vim.NIL
  vim.lsp.buf.definition()
  wait(function() return vim.api.nvim_get_current_buf() ~= hover_buf end, 'the jump to the definition')
  res.definition_jump = { file = vim.api.nvim_buf_get_name(0), cursor = vim.api.nvim_win_get_cursor(0) }
  step('definition')

  finish(0)
end

vim.api.nvim_create_autocmd('VimEnter', {
  once = true,
  callback = function()
    vim.schedule(function()
      local ok, err = pcall(run)
      if not ok then finish(4, { error = tostring(err) }) end
    end)
  end,
})
