-- Nearline: local AI code completion over LSP (textDocument/inlineCompletion and
-- textDocument/completion). Neovim 0.11+.
--
--   set rtp+=/path/to/nearline/editors/nvim     (or let a plugin manager add it)
--   vim.lsp.enable('nearline')
--
-- plugin/nearline.lua (next to this directory) turns on ghost text (0.12+) or the completion
-- menu (0.11) when the server attaches. Override anything with vim.lsp.config():
--
--   vim.lsp.config('nearline', { init_options = { model = { id = 'smollm2-135m-instruct-q4_1' } } })
--
-- The server command is, in order: vim.g.nearline_cmd (a list, or a string split on spaces),
-- $NEARLINE_CMD (split on spaces), else { 'nearline', 'serve' } (the console script on $PATH,
-- e.g. /path/to/nearline/.venv/bin/nearline).

local function command()
  local override = vim.g.nearline_cmd
  if override == nil or override == '' then
    override = vim.env.NEARLINE_CMD
  end
  if type(override) == 'table' and #override > 0 then
    return override
  end
  if type(override) == 'string' and override ~= '' then
    return vim.split(override, '%s+', { trimempty = true })
  end
  return { 'nearline', 'serve' }
end

---@type vim.lsp.Config
return {
  cmd = command(),
  filetypes = {
    'python',
    'javascript',
    'javascriptreact',
    'typescript',
    'typescriptreact',
    'go',
    'rust',
    'java',
    'kotlin',
    'scala',
    'c',
    'cpp',
    'cuda',
    'objc',
    'objcpp',
    'cs',
    'swift',
    'lua',
    'ruby',
    'php',
    'perl',
    'r',
    'julia',
    'dart',
    'elixir',
    'erlang',
    'haskell',
    'ocaml',
    'zig',
    'sh',
    'bash',
    'zsh',
    'sql',
    'html',
    'css',
    'scss',
    'vue',
    'svelte',
  },
  root_markers = {
    '.git',
    'pyproject.toml',
    'setup.py',
    'package.json',
    'go.mod',
    'Cargo.toml',
    'pom.xml',
    'build.gradle',
    'build.gradle.kts',
    'CMakeLists.txt',
    'Makefile',
    'compile_commands.json',
    '.hg',
  },
  -- Nearline's settings (top-level README, "Settings"), nested camelCase as the server reads
  -- them. Only what differs from the server's defaults belongs here; for example:
  --   model = { id = 'smollm2-135m-instruct-q4_1', threads = 4 },
  --   completion = { maxTokens = 32, debounceMs = 50, timeoutMs = 2000, suffixLines = 0 },
  --   context = { composer = 'path-distance', budgetTokens = 1024 },
  --   index = { exclude = { 'build/**' }, maxFileBytes = 1000000, watch = true },
  --   engine = { backend = 'openai', url = 'http://gpu-box:8080', apiKeyEnv = 'NEARLINE_API_KEY' },
  -- (Not empty: an empty Lua table would be sent as a JSON array.)
  init_options = {
    completion = { enabled = true },
  },
  -- Ask the server for nearline/status notifications (indexing, loading, ready, generating),
  -- which require('nearline').status() shows in a statusline.
  capabilities = { experimental = { nearlineStatus = true } },
  handlers = {
    ['nearline/status'] = function(_, params, ctx)
      require('nearline')._on_status(params or {}, ctx.client_id)
    end,
  },
  -- The server also asks for its settings with workspace/configuration (section "nearline").
  -- Answer with init_options unless the user gave `settings = { nearline = ... }`, so that one
  -- vim.lsp.config('nearline', { init_options = ... }) is all it takes. Runs right after
  -- `initialized` is sent, before the server's first request is handled.
  on_init = function(client)
    client.settings = client.settings or {}
    if client.settings.nearline == nil then
      client.settings.nearline = vim.deepcopy(client.config.init_options or {})
    end
  end,
}
