-- Nearline for Neovim: per-filetype enablement, manual trigger, statusline, accept word/line.
--
--   require('nearline').setup({
--     filetypes = nil,                 -- allow list (nil: every filetype lsp/nearline.lua lists)
--     disabled_filetypes = { ... },    -- deny list (default: prose, as the server's default)
--     trigger = 'automatic',           -- or 'manual': suggest only on keymaps.trigger
--     keymaps = { trigger = '<M-\\>', accept = false, accept_word = false, accept_line = false },
--   })
--   vim.o.statusline = '%f %= %{v:lua.require("nearline").status()}'
--
-- setup() is optional (the defaults apply without it) but must run before the first file
-- opens: it decides which filetypes the server is started for.

local M = {}

-- The server's default completion.disabledLanguages, as Neovim filetypes (LSP language ids
-- are Neovim filetypes here: Neovim sends the filetype as languageId).
M.PROSE_FILETYPES = {
  'text',
  'markdown',
  'gitcommit',
  'gitrebase',
  'rst',
  'asciidoc',
  'help',
}

local defaults = {
  filetypes = nil,
  disabled_filetypes = M.PROSE_FILETYPES,
  trigger = 'automatic',
  keymaps = { trigger = '<M-\\>', accept = false, accept_word = false, accept_line = false },
}

M.options = vim.deepcopy(defaults)

-- Per client id: the last nearline/status state, and the URIs with a model run going.
local states = {} ---@type table<integer, { state: string, generating: table<string, boolean> }>
M._states = states -- for tests

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do
    s[v:lower()] = true
  end
  return s
end

--- Whether Nearline completes in `filetype`: the allow list wins when set (as the server's
--- completion.languages does), else everything not denied.
---@param filetype string
---@return boolean
function M.enabled_for(filetype)
  local ft = (filetype or ''):lower()
  if ft == '' then
    return false
  end
  local o = M.options
  if o.filetypes ~= nil then
    return set_of(o.filetypes)[ft] == true
  end
  return not set_of(o.disabled_filetypes)[ft]
end

--- The filetypes the server is started for: `filetypes` if given, else `base` (lsp/nearline.lua's
--- list) minus `disabled_filetypes`.
---@param base string[]
---@return string[]
function M.filetypes(base)
  local out = {}
  for _, ft in ipairs(M.options.filetypes or base or {}) do
    if M.enabled_for(ft) then
      table.insert(out, ft)
    end
  end
  return out
end

local function client_for(bufnr)
  return vim.lsp.get_clients({ name = 'nearline', bufnr = bufnr })[1]
end

--- `nearline/status` (the server sends it to clients declaring experimental.nearlineStatus).
---@param params { state: string, uri: string? }
---@param client_id integer
function M._on_status(params, client_id)
  local st = states[client_id] or { state = 'loading', generating = {} }
  states[client_id] = st
  local uri = params.uri
  if uri == vim.NIL then
    uri = nil
  end
  if params.state == 'generating' then
    st.generating[uri or ''] = true
    st.state = 'ready'
  elseif params.state == 'ready' then
    if uri then
      st.generating[uri] = nil
    else
      st.generating = {}
    end
    st.state = 'ready'
  elseif params.state == 'indexing' or params.state == 'loading' then
    st.state = params.state
  end
  vim.api.nvim_exec_autocmds('User', { pattern = 'NearlineStatus', modeline = false, data = params })
  vim.cmd.redrawstatus({ bang = true })
end

--- Seed the state from $/progress and nearline.status, for a server that sends no
--- nearline/status (older servers) and for the time before its first one.
function M._on_progress(client_id, token, value)
  local st = states[client_id] or { state = 'loading', generating = {} }
  states[client_id] = st
  st.progress = st.progress or {}
  local key = tostring(token)
  if value.kind == 'begin' then
    local title = value.title or ''
    st.progress[key] = title:match('index') and 'indexing' or title:match('model') and 'loading' or nil
  elseif value.kind == 'end' then
    -- The model-loading progress ends with the service's state as its message.
    if st.progress[key] == 'loading' and st.state == 'loading' then
      st.state = value.message == 'error' and 'error' or 'ready'
    end
    st.progress[key] = nil
  end
end

function M._on_attach(client)
  states[client.id] = states[client.id] or { state = 'loading', generating = {} }
  client:request('workspace/executeCommand', { command = 'nearline.status', arguments = {} }, function(err, res)
    local st = states[client.id]
    if not err and type(res) == 'table' and st and st.state == 'loading' then
      if res.state == 'ready' or res.state == 'loading' then
        st.state = res.state
      elseif res.state == 'idle' then
        st.state = 'loading'
      end
    end
  end)
end

function M._on_exit(client_id)
  states[client_id] = nil
end

--- For a statusline: 'off' (this filetype is not completed), 'indexing', 'loading', 'ready',
--- 'generating' (a model run for this buffer, or one not tied to a document), or '' (no
--- server attached).
---@param bufnr? integer
---@return string
function M.status(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local ft = vim.bo[bufnr].filetype
  if ft ~= '' and not M.enabled_for(ft) then
    return 'off'
  end
  local client = client_for(bufnr)
  if not client then
    return ''
  end
  local st = states[client.id]
  if not st then
    return 'loading'
  end
  local uri = vim.uri_from_bufnr(bufnr)
  if st.generating[uri] or st.generating[''] then
    return 'generating'
  end
  local busy = nil
  for _, what in pairs(st.progress or {}) do
    busy = (busy == 'loading' or what == 'loading') and 'loading' or what
  end
  return busy or st.state
end

-- Ghost text (0.12+) ---------------------------------------------------------------------

--- The text of `rest` up to the end of its first word (VS Code's acceptNextWord: leading
--- blanks, then a run of word characters or a run of other non-blank characters).
---@param rest string
---@return string
function M._next_word(rest)
  local lead = rest:match('^%s*') or ''
  local after = rest:sub(#lead + 1)
  local word = after:match('^[%w_]+') or after:match('^[^%w_%s]+') or ''
  return lead .. word
end

--- The text of `rest` up to its first line break; at a line break, that break and the line
--- after it (VS Code's acceptNextLine).
---@param rest string
---@return string
function M._next_line(rest)
  local nl = rest:find('\n', 1, true)
  if nl == nil then
    return rest
  end
  if nl > 1 then
    return rest:sub(1, nl - 1)
  end
  local nl2 = rest:find('\n', 2, true)
  return nl2 and rest:sub(1, nl2 - 1) or rest
end

--- What `item` (a vim.lsp.inline_completion.Item) would add after the cursor: its text
--- minus what is already typed between its range start and the cursor.
---@return string?
local function remaining(item, bufnr)
  local text = item.insert_text
  if type(text) ~= 'string' then
    return nil -- snippets: accepting part of one is not meaningful
  end
  local cursor = vim.api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  if item.range then
    local srow, scol = item.range.start.row, item.range.start.col
    if srow == row and scol <= col then
      local typed = vim.api.nvim_buf_get_text(bufnr, row, scol, row, col, {})[1] or ''
      if text:sub(1, #typed) == typed then
        return text:sub(#typed + 1)
      end
    end
  end
  return text
end

local function accept_part(pick)
  if not (vim.lsp.inline_completion and vim.lsp.inline_completion.get) then
    return false
  end
  local bufnr = vim.api.nvim_get_current_buf()
  return vim.lsp.inline_completion.get({
    on_accept = function(item)
      local rest = remaining(item, bufnr)
      if not rest then
        vim.snippet.expand(item.insert_text.value)
        return
      end
      local part = pick(rest)
      if part == '' then
        return
      end
      vim.api.nvim_paste(part, false, -1)
    end,
  })
end

--- Accept the whole suggestion (vim.lsp.inline_completion.get()). Returns false when there is
--- none, for a fallback in an <expr> mapping.
function M.accept()
  return vim.lsp.inline_completion ~= nil and vim.lsp.inline_completion.get() or false
end

--- Accept the suggestion's next word; the rest is asked for again (from the server's cache).
function M.accept_word()
  return accept_part(M._next_word)
end

--- Accept the suggestion up to the end of its line.
function M.accept_line()
  return accept_part(M._next_line)
end

-- Manual trigger -------------------------------------------------------------------------

--- Ask for a suggestion now (LSP triggerKind Invoked, which the server answers in manual mode
--- too): ghost text on 0.12+ where it is on in this buffer, else the completion menu.
function M.trigger()
  local bufnr = vim.api.nvim_get_current_buf()
  if vim.lsp.inline_completion and vim.lsp.inline_completion.is_enabled({ bufnr = bufnr }) then
    -- 0.12 has no public "request now": use its completor when it is there.
    local ok, cap = pcall(require, 'vim.lsp._capability')
    local completor = ok and cap.all and cap.all.inline_completion and cap.all.inline_completion.active[bufnr]
    if completor and completor.request then
      completor:request(1)
      return
    end
  end
  if vim.lsp.completion and vim.lsp.completion.get then
    vim.lsp.completion.get()
  end
end

--- Settings for the server from these options (merged into init_options by setup()).
function M._server_settings()
  return { completion = { trigger = M.options.trigger } }
end

local function map(lhs, fn, desc, expr_fallback)
  if not lhs then
    return
  end
  vim.keymap.set('i', lhs, function()
    if expr_fallback then
      if not fn() then
        return vim.keycode(lhs)
      end
      return ''
    end
    fn()
  end, { expr = expr_fallback or false, desc = desc })
end

---@param opts? table
function M.setup(opts)
  opts = opts or {}
  local o = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts)
  -- Lists replace, not merge.
  if opts.filetypes ~= nil then
    o.filetypes = opts.filetypes
  end
  if opts.disabled_filetypes ~= nil then
    o.disabled_filetypes = opts.disabled_filetypes
  end
  assert(o.trigger == 'automatic' or o.trigger == 'manual', "nearline: trigger must be 'automatic' or 'manual'")
  M.options = o

  -- The server starts only for enabled filetypes (no didOpen, so no warm-up, elsewhere), and
  -- learns the trigger mode so that it does not run the model for automatic requests.
  -- vim.lsp.config replaces lists and merges tables.
  local base = (vim.lsp.config.nearline or {}).filetypes or {}
  local fts = M.filetypes(base)
  if #fts == 0 then
    fts = { 'nearline-none' } -- an empty list would merge into, not replace, the default one
  end
  vim.lsp.config('nearline', { filetypes = fts, init_options = M._server_settings() })

  local k = o.keymaps or {}
  map(k.trigger, M.trigger, 'Nearline: suggest now')
  map(k.accept, M.accept, 'Nearline: accept suggestion', true)
  map(k.accept_word, M.accept_word, 'Nearline: accept next word', true)
  map(k.accept_line, M.accept_line, 'Nearline: accept next line', true)
end

return M
