-- Nearline: turn on completion UI when the nearline language server attaches.
--
--   Neovim 0.12+: inline completion (ghost text), vim.lsp.inline_completion.enable()
--   Neovim 0.11:  the completion menu, vim.lsp.completion.enable(..., { autotrigger = true })
--
-- vim.g.nearline_mode: 'auto' (default), 'inline', 'completion', or 'none' (you wire it up).
-- The server itself is configured in lsp/nearline.lua and started by vim.lsp.enable('nearline');
-- require('nearline').setup() (lua/nearline/init.lua) sets filetypes, trigger mode and keys.

if vim.g.loaded_nearline then
  return
end
vim.g.loaded_nearline = true

if vim.fn.has('nvim-0.11') ~= 1 then
  vim.notify_once('nearline: Neovim 0.11 or newer is needed (vim.lsp.config / vim.lsp.enable)', vim.log.levels.WARN)
  return
end

local has_inline = vim.fn.has('nvim-0.12') == 1 and vim.lsp.inline_completion ~= nil

local function mode()
  local m = vim.g.nearline_mode or 'auto'
  if m == 'auto' then
    return has_inline and 'inline' or 'completion'
  end
  return m
end

-- vim.lsp.completion inserts a plain-text item's textEdit only up to its first blank
-- ("quantity" of "quantity for item in warehouse)"). Nearline's items are whole-line
-- suggestions: make the inserted word the whole newText (single-line items only; other
-- servers' items in the same buffer are left as they are).
local function convert(item)
  local edit = item.textEdit
  if item.detail == 'Nearline' and type(edit) == 'table' and type(edit.newText) == 'string'
    and not edit.newText:find('\n', 1, true)
  then
    return { word = edit.newText }
  end
  return {}
end

local group = vim.api.nvim_create_augroup('nearline', { clear = true })

vim.api.nvim_create_autocmd('LspAttach', {
  group = group,
  desc = 'Nearline: enable inline completion (0.12+) or the completion menu (0.11)',
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if not client or client.name ~= 'nearline' then
      return
    end
    local bufnr = args.buf
    local nearline = require('nearline')
    nearline._on_attach(client)
    -- A filetype turned off (a user's own `filetypes` may still start the server for it).
    if not nearline.enabled_for(vim.bo[bufnr].filetype) then
      return
    end
    local m = mode()
    if m == 'inline' and has_inline and client:supports_method('textDocument/inlineCompletion', bufnr) then
      vim.lsp.inline_completion.enable(true, { bufnr = bufnr, client_id = client.id })
    elseif m == 'completion' and vim.lsp.completion and client:supports_method('textDocument/completion', bufnr) then
      -- Manual mode: the menu opens only on require('nearline').trigger() (its keymap).
      local auto = nearline.options.trigger ~= 'manual'
      vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = auto, convert = convert })
    end
  end,
})

-- The statusline's indexing / loading state from $/progress (servers without nearline/status).
vim.api.nvim_create_autocmd('LspProgress', {
  group = group,
  desc = 'Nearline: follow progress for require("nearline").status()',
  callback = function(args)
    local client = args.data and vim.lsp.get_client_by_id(args.data.client_id)
    local value = args.data and args.data.params and args.data.params.value
    if client and client.name == 'nearline' and type(value) == 'table' then
      require('nearline')._on_progress(client.id, args.data.params.token, value)
    end
  end,
})

-- Switching buffers: tell the server which document became active, so it restores that
-- document's saved model state and reads what changed before you type (LSP has no such
-- notification of its own).
vim.api.nvim_create_autocmd('BufEnter', {
  group = group,
  desc = 'Nearline: warm the model for the buffer you switch to',
  callback = function(args)
    local uri = vim.uri_from_bufnr(args.buf)
    for _, client in ipairs(vim.lsp.get_clients({ name = 'nearline', bufnr = args.buf })) do
      local win = vim.api.nvim_get_current_win()
      local pos = vim.api.nvim_win_get_cursor(win)
      local line = vim.api.nvim_buf_get_lines(args.buf, pos[1] - 1, pos[1], false)[1] or ''
      local character = vim.str_utfindex(line, client.offset_encoding or 'utf-16', pos[2], false)
      client:notify('nearline/didFocus', {
        textDocument = { uri = uri },
        position = { line = pos[1] - 1, character = character },
      })
    end
  end,
})

-- :NearlineStatus -- the server's state (idle, loading, ready, error), model and stats.
vim.api.nvim_create_user_command('NearlineStatus', function()
  local client = vim.lsp.get_clients({ name = 'nearline' })[1]
  if not client then
    vim.notify('nearline: no client running (vim.lsp.enable("nearline") and open a file)', vim.log.levels.WARN)
    return
  end
  client:request('workspace/executeCommand', { command = 'nearline.status', arguments = {} }, function(err, res)
    if err then
      vim.notify('nearline.status failed: ' .. vim.inspect(err), vim.log.levels.ERROR)
      return
    end
    res = res or {}
    local engine = type(res.engine) == 'table' and res.engine or {}
    local lines = { ('state: %s'):format(tostring(res.state)) }
    if res.error ~= nil and res.error ~= vim.NIL then
      table.insert(lines, 'error: ' .. tostring(res.error))
    end
    table.insert(lines, 'engine: ' .. vim.inspect(engine, { newline = ' ', indent = '' }))
    table.insert(lines, 'stats: ' .. vim.inspect(res.stats or {}, { newline = ' ', indent = '' }))
    vim.notify(table.concat(lines, '\n'))
  end)
end, { desc = 'Show the Nearline server status' })
