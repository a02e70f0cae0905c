-- Driven by tests/e2e/test_nvim.py: `nvim --headless --clean -u nvim_e2e.lua`.
--
-- Does what a user does (rtp += editors/nvim, vim.lsp.enable('nearline')), opens a file with a
-- partially typed last line, waits for the client to attach and the model to be ready, asks
-- for textDocument/completion at the end of that line, then (0.11's completion fallback) asks
-- through the editor's own completion UI and accepts the first item. Everything it sees goes
-- to $NEARLINE_TEST_OUT as JSON; every wait is bounded, and any failure is recorded and ends
-- Neovim with a non-zero exit status.

local env = vim.env
local out_path = assert(env.NEARLINE_TEST_OUT, 'NEARLINE_TEST_OUT not set')
local result = { steps = {} }
local t0 = vim.uv.hrtime()

local function ms()
  return math.floor((vim.uv.hrtime() - t0) / 1e6)
end

local function step(name, data)
  table.insert(result.steps, { name = name, at_ms = ms(), data = data })
end

local function write()
  local f = assert(io.open(out_path, 'w'))
  f:write(vim.json.encode(result))
  f:close()
end

local function finish(err)
  if err then
    result.error = err
  end
  result.total_ms = ms()
  local ok, werr = pcall(write)
  if not ok then
    io.stderr:write('nvim_e2e: cannot write result: ' .. tostring(werr) .. '\n')
  end
  -- Stop the server politely first so that it does not outlive us.
  for _, c in ipairs(vim.lsp.get_clients({ name = 'nearline' })) do
    c:stop()
  end
  vim.wait(3000, function()
    return #vim.lsp.get_clients({ name = 'nearline' }) == 0
  end, 50)
  vim.cmd(err and 'cquit! 1' or 'qall!')
end

local function wait(what, timeout_ms, cond)
  local ok = vim.wait(timeout_ms, cond, 20)
  if not ok then
    error(('timed out after %d ms waiting for %s'):format(timeout_ms, what), 0)
  end
end

-- 1. The user's configuration: exactly what editors/nvim/README.md says, plus test settings.
vim.opt.runtimepath:append(assert(env.NEARLINE_TEST_RTP))
vim.g.nearline_cmd = vim.json.decode(assert(env.NEARLINE_TEST_CMD))
vim.lsp.config('nearline', { init_options = vim.json.decode(assert(env.NEARLINE_TEST_SETTINGS)) })
-- require('nearline').setup({...}) as editors/nvim/README.md shows (filetypes, trigger, keys).
local manual = false
if env.NEARLINE_TEST_SETUP and env.NEARLINE_TEST_SETUP ~= '' then
  local opts = vim.json.decode(env.NEARLINE_TEST_SETUP)
  require('nearline').setup(opts)
  manual = opts.trigger == 'manual'
end
vim.lsp.enable('nearline')
vim.o.completeopt = 'menu,menuone,noinsert'

local attached = nil ---@type { client_id: integer, bufnr: integer }?
vim.api.nvim_create_autocmd('LspAttach', {
  callback = function(args)
    local c = vim.lsp.get_client_by_id(args.data.client_id)
    if c and c.name == 'nearline' then
      attached = { client_id = c.id, bufnr = args.buf }
    end
  end,
})

local progress = {}
vim.api.nvim_create_autocmd('LspProgress', {
  callback = function(args)
    local v = args.data and args.data.params and args.data.params.value or {}
    table.insert(progress, { kind = v.kind, title = v.title, message = v.message, at_ms = ms() })
  end,
})

local function status(client, bufnr)
  local res, err = client:request_sync(
    'workspace/executeCommand',
    { command = 'nearline.status', arguments = {} },
    5000,
    bufnr
  )
  if not res then
    error('nearline.status: ' .. tostring(err), 0)
  end
  if res.err then
    error('nearline.status: ' .. vim.inspect(res.err), 0)
  end
  return res.result
end

-- 3. Through the editor's completion UI (0.11 fallback set up by plugin/nearline.lua):
-- enter insert mode at the end of the line, vim.lsp.completion.get(), wait for the menu,
-- accept with <C-y>. Runs from the main loop (typeahead is not read inside vim.wait).
local function ui_phase(client, bufnr, line_nr, before)
  local deadline = ms() + tonumber(env.NEARLINE_TEST_UI_TIMEOUT_MS or '30000')
  local phase = 'insert'
  local quiet_until = 0
  local timer = assert(vim.uv.new_timer())
  local function stop(err)
    timer:stop()
    timer:close()
    vim.schedule(function()
      finish(err)
    end)
  end
  vim.api.nvim_win_set_cursor(0, { line_nr, 0 })
  vim.api.nvim_feedkeys('A', 'n', false)
  timer:start(
    50,
    50,
    vim.schedule_wrap(function()
      if timer:is_closing() then
        return
      end
      local ok, err = pcall(function()
        local mode = vim.api.nvim_get_mode().mode
        if phase == 'insert' and mode == 'i' and manual then
          -- Manual mode: a trigger character opens nothing; the trigger keymap does.
          phase = 'quiet'
          quiet_until = ms() + tonumber(env.NEARLINE_TEST_QUIET_MS or '3000')
          step('insert_mode', { cursor = vim.api.nvim_win_get_cursor(0), manual = true })
          vim.api.nvim_feedkeys('.', 'n', false)
        elseif phase == 'quiet' then
          local info = vim.fn.complete_info({ 'items', 'pum_visible' })
          if #info.items > 0 or info.pum_visible == 1 then
            return stop('manual mode: the menu opened while typing')
          end
          if ms() > quiet_until then
            result.ui = { quiet_ms = tonumber(env.NEARLINE_TEST_QUIET_MS or '3000') }
            step('quiet')
            phase = 'menu'
            before = vim.api.nvim_buf_get_lines(bufnr, line_nr - 1, line_nr, true)[1]
            vim.api.nvim_feedkeys(vim.keycode(env.NEARLINE_TEST_TRIGGER_KEY or '<M-\\>'), 'm', false)
          end
        elseif phase == 'insert' and mode == 'i' then
          phase = 'menu'
          step('insert_mode', { cursor = vim.api.nvim_win_get_cursor(0) })
          vim.lsp.completion.get()
        elseif phase == 'menu' then
          local info = vim.fn.complete_info({ 'items', 'pum_visible', 'selected' })
          if #info.items > 0 then
            local first = info.items[1]
            step('menu', {
              count = #info.items,
              pum_visible = info.pum_visible,
              selected = info.selected,
              first_word = first.word,
            })
            local lsp_item = vim.tbl_get(first, 'user_data', 'nvim', 'lsp', 'completion_item') or {}
            result.ui = {
              quiet_ms = result.ui and result.ui.quiet_ms,
              menu_items = #info.items,
              first_word = first.word,
              first_new_text = vim.tbl_get(lsp_item, 'textEdit', 'newText'),
            }
            phase = 'accept'
            -- Select the first item if nothing is selected yet, then accept it.
            local keys = info.selected == -1 and '<C-n><C-y>' or '<C-y>'
            vim.api.nvim_feedkeys(vim.keycode(keys), 'n', false)
          end
        elseif phase == 'accept' then
          local line = vim.api.nvim_buf_get_lines(bufnr, line_nr - 1, line_nr, true)[1]
          if line ~= before then
            result.ui.line_after = line
            step('accepted', { line = line })
            phase = 'done'
            vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 'n', false)
            return stop(nil)
          end
        end
        if ms() > deadline then
          stop(('timed out in the completion UI (phase %s, mode %s)'):format(phase, mode))
        end
      end)
      if not ok then
        stop(tostring(err))
      end
    end)
  )
end

local function run()
  local file = assert(env.NEARLINE_TEST_FILE)
  local line_nr = tonumber(assert(env.NEARLINE_TEST_LINE))
  result.nvim_version = tostring(vim.version())

  -- 2. Open the file: FileType starts the server (vim.lsp.enable), LspAttach follows.
  vim.cmd.edit(vim.fn.fnameescape(file))
  step('opened', { filetype = vim.bo.filetype })
  wait('the nearline client to attach', tonumber(env.NEARLINE_TEST_ATTACH_TIMEOUT_MS or '15000'), function()
    return attached ~= nil
  end)
  local client = assert(vim.lsp.get_client_by_id(attached.client_id))
  local bufnr = attached.bufnr
  result.client = {
    name = client.name,
    cmd = client.config.cmd,
    root_dir = client.root_dir,
    offset_encoding = client.offset_encoding,
    inline_completion_provider = client.server_capabilities.inlineCompletionProvider ~= nil,
    completion_provider = client.server_capabilities.completionProvider ~= nil,
    settings = client.settings,
  }
  -- plugin/nearline.lua enabled the completion fallback (0.11) in this buffer?
  result.completion_enabled = pcall(vim.api.nvim_get_autocmds, { group = 'nvim.lsp.completion_' .. bufnr })
  if vim.lsp.inline_completion and vim.lsp.inline_completion.is_enabled then
    result.inline_completion_enabled = vim.lsp.inline_completion.is_enabled({ bufnr = bufnr })
  end
  step('attached', { client_id = client.id })

  local st
  wait('nearline.status state ready', tonumber(env.NEARLINE_TEST_READY_TIMEOUT_MS or '30000'), function()
    st = status(client, bufnr)
    return st.state == 'ready' or st.state == 'error'
  end)
  result.status = { state = st.state, error = st.error, settings = st.settings, engine = st.engine }
  if st.state ~= 'ready' then
    error('server state ' .. tostring(st.state) .. ': ' .. tostring(st.error), 0)
  end
  step('ready')
  -- The statusline follows $/progress (and nearline/status), which may arrive just after
  -- nearline.status says ready.
  vim.wait(5000, function()
    return require('nearline').status(bufnr) == 'ready'
  end, 20)
  result.statusline = require('nearline').status(bufnr)
  result.nearline_states = vim.inspect(require('nearline')._states)

  -- A file of a filetype turned off: the server is not started for it, status() says off.
  if env.NEARLINE_TEST_OFF_FILE and env.NEARLINE_TEST_OFF_FILE ~= '' then
    vim.cmd.edit(vim.fn.fnameescape(env.NEARLINE_TEST_OFF_FILE))
    local off_buf = vim.api.nvim_get_current_buf()
    vim.wait(1500, function()
      return false
    end, 50)
    result.off = {
      filetype = vim.bo[off_buf].filetype,
      clients = #vim.lsp.get_clients({ name = 'nearline', bufnr = off_buf }),
      status = require('nearline').status(off_buf),
    }
    step('off file', result.off)
    vim.cmd.buffer(bufnr)
  end

  -- The end of the partially typed line (where the cursor is after `A`; in normal mode the
  -- cursor cannot be past the last character, so the position is built by hand).
  local before = vim.api.nvim_buf_get_lines(bufnr, line_nr - 1, line_nr, true)[1]
  local params = {
    textDocument = vim.lsp.util.make_text_document_params(bufnr),
    position = { line = line_nr - 1, character = vim.str_utfindex(before, client.offset_encoding) },
    context = { triggerKind = 1 },
  }
  local res, err = client:request_sync(
    'textDocument/completion',
    params,
    tonumber(env.NEARLINE_TEST_REQUEST_TIMEOUT_MS or '30000'),
    bufnr
  )
  if not res then
    error('textDocument/completion: ' .. tostring(err), 0)
  end
  if res.err then
    error('textDocument/completion: ' .. vim.inspect(res.err), 0)
  end
  local list = res.result or {}
  result.completion = {
    position = params.position,
    line = before,
    is_incomplete = list.isIncomplete,
    items = list.items or list,
  }
  step('completion', { count = #(list.items or list) })
  result.progress = progress

  if env.NEARLINE_TEST_UI == '1' and vim.lsp.completion and result.completion_enabled then
    ui_phase(client, bufnr, line_nr, before)
  else
    finish(nil)
  end
end

vim.api.nvim_create_autocmd('VimEnter', {
  once = true,
  nested = true, -- so that :edit fires FileType (vim.lsp.enable starts the server from it)
  callback = function()
    local ok, err = xpcall(run, debug.traceback)
    if not ok then
      result.progress = progress
      finish(tostring(err))
    end
  end,
})
