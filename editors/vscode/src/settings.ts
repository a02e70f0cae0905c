/**
 * VS Code settings (`nearline.*`) → what the server reads, and the server command.
 * Pure: no `vscode` import, so node's test runner can load it.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** Sections under `nearline` that configure this extension, not the server (`enable`: the
 * language-scoped switch, folded into the server's language lists by the extension). */
export const CLIENT_SECTIONS: ReadonlySet<string> = new Set(['server', 'editor', 'trace', 'enable']);

/** Server sections and keys this extension contributes (package.json), nested camelCase. */
export const SERVER_KEYS: Readonly<Record<string, readonly string[]>> = {
  model: [
    'id',
    'path',
    'format',
    'contextLength',
    'gpuLayers',
    'threads',
    'ropeFreqBase',
    'ropeScaling',
    'ropeScalingFactor',
    'yarnOrigContext',
    'stateCacheMb',
    'diskCacheMb',
    'draftTokens',
    'draftModel',
  ],
  completion: [
    'enabled',
    'maxTokens',
    'debounceMs',
    'timeoutMs',
    'warmUp',
    'suffixLines',
    'coldPromptTokens',
    'inComments',
    'inStrings',
    'syntaxCheck',
    'candidates',
    'speculate',
    'languages',
    'disabledLanguages',
    'trigger',
  ],
  context: ['composer', 'budgetTokens', 'prefixShare', 'layout'],
  index: ['exclude', 'maxFileBytes', 'watch'],
  stats: ['enabled'],
  engine: ['backend', 'url', 'model', 'apiKeyEnv', 'timeoutMs', 'connectTimeoutMs', 'isolation'],
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `null`, `undefined` and `""` mean "not set": the server then uses its own default. */
function isUnset(v: unknown): boolean {
  return v === null || v === undefined || (typeof v === 'string' && v.trim() === '');
}

function toJson(v: unknown): Json | undefined {
  if (v === null) return null;
  if (typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (Array.isArray(v)) {
    const out: Json[] = [];
    for (const item of v) {
      const j = toJson(item);
      if (j !== undefined) out.push(j);
    }
    return out;
  }
  if (isPlainObject(v)) {
    const out: JsonObject = {};
    for (const [k, item] of Object.entries(v)) {
      const j = toJson(item);
      if (j !== undefined) out[k] = j;
    }
    return out;
  }
  return undefined;
}

/** Dotted keys (`{"completion.maxTokens": 32}`) into nested objects; nested input passes. */
export function nest(raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const parts = key.split('.');
    let node = out;
    for (const part of parts.slice(0, -1)) {
      if (!isPlainObject(node[part])) node[part] = {};
      node = node[part] as Record<string, unknown>;
    }
    const last = parts[parts.length - 1];
    const existing = node[last];
    if (isPlainObject(value)) {
      node[last] = isPlainObject(existing) ? { ...existing, ...nest(value) } : nest(value);
    } else {
      node[last] = value;
    }
  }
  return out;
}

/**
 * The `nearline` configuration as VS Code reads it (`workspace.getConfiguration('nearline')`,
 * nested) → the server's settings: the client-only sections (`server`, `editor`, `trace`) are
 * dropped, and so are unset values, so the server's defaults (often "the catalog's") apply.
 * Unknown keys are passed on: the server reports them by name.
 */
export function toServerSettings(config: Record<string, unknown>): JsonObject {
  const nested = nest(config);
  const out: JsonObject = {};
  for (const [section, value] of Object.entries(nested)) {
    if (CLIENT_SECTIONS.has(section) || !isPlainObject(value)) continue;
    const sec: JsonObject = {};
    for (const [key, v] of Object.entries(value)) {
      if (isUnset(v) || typeof v === 'function') continue;
      const j = toJson(v);
      if (j !== undefined) sec[key] = j;
    }
    if (Object.keys(sec).length > 0) out[section] = sec;
  }
  return out;
}

export interface ServerCommand {
  command: string;
  args: string[];
}

/** Split a command line on blanks, honouring simple '…' and "…" quoting. */
export function splitCommandLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let has = false;
  for (const ch of line) {
    if (quote) {
      if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      has = true;
    } else if (/\s/.test(ch)) {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (quote) throw new Error(`unterminated ${quote} in ${JSON.stringify(line)}`);
  if (has) out.push(cur);
  return out;
}

export const DEFAULT_COMMAND: readonly string[] = ['nearline', 'serve'];

/**
 * `nearline.server.command` (a list of strings, or one string) → command and arguments.
 * Throws with a message naming the setting when it cannot be used.
 */
export function serverCommand(value: unknown): ServerCommand {
  let argv: string[];
  if (value === undefined || value === null) {
    argv = [...DEFAULT_COMMAND];
  } else if (typeof value === 'string') {
    argv = splitCommandLine(value);
  } else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
    argv = value as string[];
  } else {
    throw new Error('nearline.server.command must be a list of strings, e.g. ["nearline", "serve"]');
  }
  argv = argv.filter((a) => a !== '');
  if (argv.length === 0) {
    throw new Error('nearline.server.command is empty; the default is ["nearline", "serve"]');
  }
  return { command: argv[0], args: argv.slice(1) };
}

/** Settings whose change needs a new server process (the rest go by didChangeConfiguration). */
export const RESTART_SETTINGS: readonly string[] = ['nearline.server'];

/** Where `Nearline: Toggle` writes `completion.enabled`: the most specific scope that sets it. */
export function toggleTarget(inspect: {
  workspaceFolderValue?: unknown;
  workspaceValue?: unknown;
}): 'workspaceFolder' | 'workspace' | 'global' {
  if (inspect.workspaceFolderValue !== undefined) return 'workspaceFolder';
  if (inspect.workspaceValue !== undefined) return 'workspace';
  return 'global';
}
